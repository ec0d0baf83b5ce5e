//! The embedded backend as the commands open it: a state directory whose fleet starts
//! this same binary as worker processes, ladder profiles read from a directory, a fleet
//! kept sized to the outstanding work, and local files given the identity an upload has
//! in a bucket. `run`, `ingest`, `watch` and the backend choice all open it this way.

use anyhow::{Context, Result};
use std::path::Path;
use vodpipe_control::ingest::Source;
use vodpipe_control::job::job_id;
use vodpipe_control::sweep;
use vodpipe_local::fleet::ProcessFleet;
use vodpipe_local::Local;

/// The embedded backend reading ladder profiles from `dir`, if one is given.
pub fn with_profiles(mut local: Local, dir: Option<&Path>) -> Local {
    if let Some(d) = dir {
        local.objects = local.objects.clone().with_profiles(d);
    }
    local
}

/// Opens the embedded backend; `workers` > 0 lets ingest start worker processes, which
/// use `ffmpeg` when given.
pub fn open_with(
    state: &Path,
    out: Option<&Path>,
    workers: u32,
    max_receives: u32,
    ffmpeg: Option<&str>,
    drm_keys: Option<&Path>,
) -> Result<Local> {
    // Absolute, so workers started from another directory agree on every path.
    let state =
        std::path::absolute(state).with_context(|| format!("resolving {}", state.display()))?;
    let exe = std::env::current_exe().context("locating the vodpipe binary")?;
    let mut fleet = ProcessFleet::new(exe, state.clone(), workers, 2);
    if let Some(f) = ffmpeg {
        fleet = fleet.with_ffmpeg(f);
    }
    if let Some(k) = drm_keys {
        let k = std::path::absolute(k).with_context(|| format!("resolving {}", k.display()))?;
        fleet = fleet.with_drm_keys(&k);
    }
    Local::open(&state, out, fleet, max_receives)
        .with_context(|| format!("opening state {}", state.display()))
}

/// Starts workers (up to `max`) while jobs are unfinished, so retries and redeliveries
/// that become visible after the last worker went idle are still picked up: the control
/// plane's sweep for a fleet sized by outstanding work ([`sweep::outstanding_work`]).
pub fn reconcile(local: &Local, max: u32) -> Result<()> {
    use vodpipe_control::ports::Fleet;
    if max == 0 {
        return Ok(());
    }
    if let Some((tier, work)) = sweep::outstanding_work(&local.state)? {
        local.fleet.ensure_capacity(tier, work.min(max))?;
    }
    Ok(())
}

/// A local file's identity: directory, name, and size + mtime as its version. Its key
/// (what prefix maps and asset names read) is its name, or its path under `root` (a
/// watched directory, the local stand-in for a bucket).
pub fn local_source(path: &Path, root: Option<&Path>) -> Result<Source> {
    let abs =
        std::fs::canonicalize(path).with_context(|| format!("cannot read {}", path.display()))?;
    let meta = std::fs::metadata(&abs).with_context(|| format!("cannot read {}", abs.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let dir = abs
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let key = root
        .and_then(|r| std::fs::canonicalize(r).ok())
        .and_then(|r| {
            abs.strip_prefix(r)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| name.clone());
    Ok(Source {
        job_id: job_id(&dir, &name, &format!("{}:{mtime}", meta.len())),
        version: None,
        // A file rewritten in place is a newer upload when its modification time is later.
        sequencer: Some(format!("{mtime:032X}")),
        uri: abs.display().to_string(),
        key,
    })
}
