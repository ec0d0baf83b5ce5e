//! Job identity: how a job is named, and the asset it publishes under.
//!
//! S3 and SQS deliver at least once, so a job's id is a hash of the source's identity
//! (where it lives and which version of it), never a random id: a duplicate event finds
//! the job already there. The asset name, under which outputs are published, derives from
//! the source key so published URLs are predictable.

pub use crate::domain::JobStatus;
use sha2::{Digest, Sha256};

/// A job id from the source identity: where it lives (bucket or directory, key) and which
/// version of it (version id, ETag, or size+mtime for local files).
pub fn job_id(location: &str, key: &str, version: &str) -> String {
    let mut h = Sha256::new();
    for part in [location, key, version] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

/// The order of two S3 event sequencers of one key (hex strings that S3 makes longer over
/// time): the shorter is left-padded with zeros, then the two compare as text, as S3's
/// documentation prescribes.
pub fn sequencer_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.trim().to_ascii_uppercase(), b.trim().to_ascii_uppercase());
    let width = a.len().max(b.len());
    format!("{a:0>width$}").cmp(&format!("{b:0>width$}"))
}

/// Hex SHA-256 of some bytes (used to compare init segments' sample descriptions).
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The asset name for a source key: the key without its extension, with every character
/// outside `[A-Za-z0-9._-]` (and any `..`) made safe, so it works as a path and a URL.
pub fn asset_name(key: &str) -> String {
    let file = key.rsplit('/').next().unwrap_or(key);
    let stem = match file.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() => s,
        _ => file,
    };
    let dir = key.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let clean = |s: &str| -> String {
        let c: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        c.replace("..", "_")
    };
    let mut parts: Vec<String> = dir
        .split('/')
        .filter(|p| !p.is_empty() && *p != "." && *p != "..")
        .map(clean)
        .collect();
    let stem = clean(stem);
    parts.push(if stem.is_empty() {
        "asset".into()
    } else {
        stem
    });
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_source_version_gets_the_same_job_id() {
        assert_eq!(job_id("b", "k.mp4", "v1"), job_id("b", "k.mp4", "v1"));
        assert_ne!(job_id("b", "k.mp4", "v1"), job_id("b", "k.mp4", "v2"));
        // Field boundaries matter: ("ab","c") is not ("a","bc").
        assert_ne!(job_id("ab", "c", ""), job_id("a", "bc", ""));
    }

    #[test]
    fn asset_names_are_safe_and_predictable() {
        assert_eq!(asset_name("uploads/My Film+1 é.mov"), "uploads/My_Film_1__");
        assert_eq!(asset_name("../../etc/passwd"), "etc/passwd");
        assert_eq!(asset_name("clip.mp4"), "clip");
        assert_eq!(asset_name(".hidden"), ".hidden");
    }

    #[test]
    fn sequencers_compare_after_left_padding() {
        use std::cmp::Ordering::*;
        assert_eq!(
            sequencer_order("0055AED6DCD90281E5", "0055AED6DCD90281E6"),
            Less
        );
        // A longer sequencer is not later by its length alone.
        assert_eq!(sequencer_order("9", "0000A"), Less);
        assert_eq!(sequencer_order("00ff", "FF"), Equal);
        assert_eq!(sequencer_order("1000", "0FFF"), Greater);
    }

    #[test]
    fn statuses_round_trip() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
        }
        assert!(JobStatus::Published.is_final() && !JobStatus::Encoding.is_final());
    }
}
