//! Where outputs go and what a committed item records about them.
//!
//! Keys are fenced by attempt: `<asset>/<job>/c<chunk>.<attempt>/<rung>/…` for video and
//! `<asset>/<job>/a<track>.<attempt>/…` for audio. An attempt's objects count only once the
//! job store has committed that attempt under the lease's token, so a zombie worker's late
//! upload lands in a directory nothing references.

use crate::ports::{ItemKind, ItemRef};
use serde::{Deserialize, Serialize};
use vodpipe_media::package::SegmentRef;

/// The job directory: rendition playlists and the per-job MPD live here; segment URIs in
/// results are relative to it.
pub fn job_dir(asset: &str, job_id: &str) -> String {
    format!("{asset}/{job_id}")
}

/// The attempt directory of an item, relative to the job directory.
pub fn attempt_dir(item: &ItemRef, attempt: u32) -> String {
    match item.kind {
        ItemKind::Video => format!("c{:05}.{attempt}", item.index),
        ItemKind::Audio => format!("a{}.{attempt}", item.index),
    }
}

/// The HLS master pointer of an asset.
pub fn master_pointer(asset: &str) -> String {
    format!("{asset}/master.m3u8")
}

/// The DASH MPD pointer of an asset.
pub fn dash_pointer(asset: &str) -> String {
    format!("{asset}/manifest.mpd")
}

/// What a committed item produced: its tracks, with keys relative to the job directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackResult {
    /// Rung name or `audio_<n>`.
    pub name: String,
    /// RFC 6381 codec string.
    pub codec: String,
    /// Ticks per second.
    pub timescale: u32,
    /// Init segment key, relative to the job directory; empty for a video chunk other than
    /// the first, which shares the first chunk's init segment.
    pub init_uri: String,
    /// Hash of the sample description: chunks may share one init only if these agree.
    pub stsd_hash: String,
    /// Segments.
    pub segments: Vec<SegmentRef>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_get_their_own_directories() {
        let v = ItemRef {
            job_id: "j".into(),
            kind: ItemKind::Video,
            index: 3,
        };
        assert_eq!(attempt_dir(&v, 2), "c00003.2");
        assert_ne!(attempt_dir(&v, 1), attempt_dir(&v, 2));
        let a = ItemRef {
            job_id: "j".into(),
            kind: ItemKind::Audio,
            index: 1,
        };
        assert_eq!(attempt_dir(&a, 1), "a1.1");
    }
}
