//! The embedded object store: keys are relative paths under one root directory.
//!
//! Writes go to a temporary file and are renamed into place, so a reader (a player, the
//! stitcher, another worker) never sees half an object, and a killed worker leaves at most
//! a stray temporary file under an attempt nobody references.

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;
use vodpipe_control::ports::{Cacheability, ObjectStore, PortError, PortResult};

/// A directory used as a bucket.
#[derive(Debug, Clone)]
pub struct Objects {
    root: PathBuf,
    profiles: Option<PathBuf>,
}

impl Objects {
    /// Uses `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Objects {
            root: root.into(),
            profiles: None,
        }
    }

    /// The same store, with ladder profiles read from `dir` (`<name>.json`).
    pub fn with_profiles(mut self, dir: impl Into<PathBuf>) -> Self {
        self.profiles = Some(dir.into());
        self
    }

    /// The directory objects live in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The local path of `key`; keys with `..`, absolute parts or empty segments are refused.
    pub fn path(&self, key: &str) -> std::io::Result<PathBuf> {
        let rel = Path::new(key);
        let ok = !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !ok {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("invalid object key {key:?}"),
            ));
        }
        Ok(self.root.join(rel))
    }

    /// Writes `key` atomically.
    pub fn put(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile_in(dir)?;
        tmp.1.write_all(bytes)?;
        tmp.1.sync_data()?;
        std::fs::rename(&tmp.0, &path)
    }

    /// Reads `key`.
    pub fn get(&self, key: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.path(key)?)
    }
}

fn io(key: &str, e: std::io::Error) -> PortError {
    if e.kind() == std::io::ErrorKind::NotFound {
        PortError::NotFound(key.to_string())
    } else {
        PortError::Backend(format!("{key}: {e}"))
    }
}

/// The tag of a local object: a digest of its bytes.
fn tag(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

impl ObjectStore for Objects {
    fn put(&self, key: &str, bytes: &[u8], _cache: Cacheability) -> PortResult<()> {
        Objects::put(self, key, bytes).map_err(|e| io(key, e))
    }

    fn get_tagged(&self, key: &str) -> PortResult<Option<(Vec<u8>, String)>> {
        match Objects::get(self, key) {
            Ok(b) => {
                let t = tag(&b);
                Ok(Some((b, t)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(key, e)),
        }
    }

    fn put_if(
        &self,
        key: &str,
        bytes: &[u8],
        _cache: Cacheability,
        expected: Option<&str>,
    ) -> PortResult<bool> {
        let path = self.path(key).map_err(|e| io(key, e))?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io(key, e))?;
        // Worker processes share the directory: compare and replace under a file lock
        // (hidden from listings like every temporary file).
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".tmp.pointers.lock"))
            .map_err(|e| io(key, e))?;
        lock.lock().map_err(|e| io(key, e))?;
        let current = match std::fs::read(&path) {
            Ok(b) => Some(tag(&b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(key, e)),
        };
        if current.as_deref() != expected {
            return Ok(false);
        }
        Objects::put(self, key, bytes).map_err(|e| io(key, e))?;
        Ok(true)
    }

    fn get(&self, key: &str) -> PortResult<Vec<u8>> {
        Objects::get(self, key).map_err(|e| io(key, e))
    }

    fn locate(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }

    fn list(&self, prefix: &str) -> PortResult<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(prefix, e)),
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name();
                if name.to_string_lossy().starts_with(".tmp.") || name == ".vodpipe" {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel.to_string_lossy().replace('\\', "/");
                    if key.starts_with(prefix) {
                        out.push(key);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, key: &str) -> PortResult<()> {
        match std::fs::remove_file(self.path(key).map_err(|e| io(key, e))?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(key, e)),
        }
    }

    fn presign(&self, key: &str, _ttl: Duration) -> PortResult<String> {
        Ok(self
            .path(key)
            .map_err(|e| io(key, e))?
            .display()
            .to_string())
    }

    fn source_siblings(&self, source: &str) -> PortResult<Vec<String>> {
        let path = Path::new(source);
        let (Some(dir), Some(stem)) = (path.parent(), path.file_stem()) else {
            return Ok(Vec::new());
        };
        let prefix = format!("{}.", stem.to_string_lossy());
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir.display().to_string(), e)),
        };
        let mut found: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix) && e.path() != path)
            .map(|e| e.path().display().to_string())
            .collect();
        found.sort();
        Ok(found)
    }

    fn source_settings_file(&self, source: &str) -> PortResult<Option<Vec<u8>>> {
        // One byte past the limit, so a file too large is seen to be and refused.
        read_optional(
            &vodpipe_control::settings::settings_key(source),
            vodpipe_control::settings::MAX_SETTINGS_FILE_BYTES as u64 + 1,
        )
    }

    fn overlay(&self, name: &str) -> PortResult<Option<Vec<u8>>> {
        // `<dir>/_vodpipe/overlays/` beside `<dir>/_vodpipe/profiles/`.
        match self.profiles.as_ref().and_then(|p| p.parent()) {
            Some(dir) => read_optional(
                &dir.join("overlays")
                    .join(format!("{name}.png"))
                    .display()
                    .to_string(),
                vodpipe_media::overlay::MAX_PNG_BYTES as u64 + 1,
            ),
            None => Ok(None),
        }
    }

    fn profile(&self, name: &str) -> PortResult<Option<Vec<u8>>> {
        match &self.profiles {
            Some(dir) => read_optional(
                &dir.join(format!("{name}.json")).display().to_string(),
                u64::MAX,
            ),
            None => Ok(None),
        }
    }

    fn open_source(
        &self,
        source: &str,
        _version: Option<&str>,
        _ttl: Duration,
    ) -> PortResult<String> {
        // Embedded sources are files on this machine, stored as absolute paths at ingest.
        if Path::new(source).is_absolute() {
            Ok(source.to_string())
        } else {
            Err(PortError::NotFound(format!(
                "source {source} is not a local absolute path"
            )))
        }
    }
}

/// A file's bytes (at most the first `limit`), or `None` when it does not exist.
fn read_optional(path: &str, limit: u64) -> PortResult<Option<Vec<u8>>> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path, e)),
    };
    let mut bytes = Vec::new();
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| io(path, e))?;
    Ok(Some(bytes))
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        ".tmp.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let path = dir.join(name);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_root() {
        let o = Objects::new("/tmp/x");
        assert!(o.path("../etc/passwd").is_err());
        assert!(o.path("/etc/passwd").is_err());
        assert!(o.path("a/b.m4s").is_ok());
    }

    #[test]
    fn put_then_get_round_trips_and_leaves_no_temporaries() {
        let d = tempfile::tempdir().unwrap();
        let o = Objects::new(d.path());
        o.put("a/b/c.txt", b"hi").unwrap();
        assert_eq!(o.get("a/b/c.txt").unwrap(), b"hi");
        assert_eq!(std::fs::read_dir(d.path().join("a/b")).unwrap().count(), 1);
    }
}
