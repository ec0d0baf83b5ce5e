//! Where outputs go and what a committed item records about them.
//!
//! Keys are fenced by attempt: `<asset>/<job>/c<chunk>.<attempt>/<rung>/…` for video
//! (the chunk's thumbnail sprite and the poster beside the rungs), `a<track>.<attempt>/…`
//! for audio and `t<track>.<attempt>/…` for subtitles. An attempt's objects count only once
//! the job store has committed that attempt under the lease's token, so a zombie worker's
//! late upload lands in a directory nothing references.

pub use crate::domain::Rendition;
use crate::domain::{ItemKind, ItemRef, JobRecord};
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
        ItemKind::Text => format!("t{}.{attempt}", item.index),
        ItemKind::Analysis => format!("l{}.{attempt}", item.index),
        ItemKind::Index => format!("i{}.{attempt}", item.index),
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
    /// Why the item published nothing (a subtitle file ffmpeg could not read), when so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// Where the stitch publishes the WebVTT thumbnail track, in the job directory.
pub const THUMBNAILS_VTT: &str = "thumbnails.vtt";

/// The key of `job`'s published file of rendition kind `kind` (`poster`, `thumbnails`):
/// what status and job events point a CMS at.
pub fn published_key(job: &JobRecord, kind: &str) -> Option<String> {
    job.renditions
        .iter()
        .find(|r| r.kind == kind && r.skipped.is_none())
        .and_then(|r| r.uri.as_ref())
        .map(|uri| format!("{}/{uri}", job_dir(&job.asset, &job.id)))
}

/// The languages (or names, for a track without one) of `job`'s published subtitles.
pub fn subtitle_languages(job: &JobRecord) -> Vec<String> {
    job.renditions
        .iter()
        .filter(|r| r.kind == "text" && r.skipped.is_none())
        .map(|r| r.language.clone().unwrap_or_else(|| r.id.clone()))
        .collect()
}

/// The renditions of `tracks`, in manifest order.
pub fn renditions(tracks: &[vodpipe_media::package::Track]) -> Vec<Rendition> {
    use vodpipe_media::package::{has_iframes, TrackKind};
    tracks
        .iter()
        .map(|t| {
            let mut r = Rendition {
                id: t.id.clone(),
                kind: "video".into(),
                codec: t.codec.clone(),
                average_bps: t.average_bps(),
                width: None,
                height: None,
                channels: None,
                language: None,
                trick_play: has_iframes(t),
                uri: None,
                skipped: None,
            };
            match &t.kind {
                TrackKind::Video { width, height, .. } => {
                    (r.width, r.height) = (Some(*width), Some(*height));
                }
                TrackKind::Audio {
                    language, channels, ..
                } => {
                    r.kind = "audio".into();
                    r.channels = Some(*channels);
                    r.language = language.clone();
                }
                TrackKind::Text { language, .. } => {
                    r.kind = "text".into();
                    r.language = language.clone();
                    r.uri = Some(t.init_uri.clone());
                }
                TrackKind::Thumbnails { width, height, .. } => {
                    r.kind = "thumbnails".into();
                    (r.width, r.height) = (Some(*width), Some(*height));
                    r.uri = Some(THUMBNAILS_VTT.into());
                }
            }
            r
        })
        .collect()
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
