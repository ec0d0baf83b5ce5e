//! Where outputs go and what a committed item records about them.
//!
//! Keys are fenced by attempt: `<asset>/<job>/c<chunk>.<attempt>/<rung>/…` for video
//! (the chunk's thumbnail sprite and the poster beside the rungs), `a<track>.<attempt>/…`
//! for audio and `t<track>.<attempt>/…` for subtitles. An attempt's objects count only once
//! the job store has committed that attempt under the lease's token, so a zombie worker's
//! late upload lands in a directory nothing references.

pub use crate::domain::Rendition;
use crate::domain::{ItemKind, ItemRef, JobRecord, RenditionProtection};
use crate::job::content_hash;
use crate::pipeline::JobPlan;
use crate::ports::{Cacheability, ObjectStore};
use serde::{Deserialize, Serialize};
use vodpipe_media::encode::Encoded;
use vodpipe_media::mp4;
use vodpipe_media::package::{SegmentRef, Track, TrackKind};

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
    /// How the track was encrypted (scheme, key ID, each DRM system's data; never the
    /// key), when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protection: Option<vodpipe_media::cenc::Signalling>,
    /// The colour the rung's init segment states (`colr`), for the manifests' HDR
    /// signalling, when it states one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colour: Option<vodpipe_media::colour::Cicp>,
}

/// Where the stitch publishes the WebVTT thumbnail track, in the job directory.
pub const THUMBNAILS_VTT: &str = "thumbnails.vtt";

/// Where the stitch keeps what it published ([`Published`]), in the job directory.
pub const TRACKS_JSON: &str = "tracks.json";

/// What a version published: its tracks, and its files that are not tracks (the poster,
/// subtitles that could not be read), with URIs relative to its job directory. Kept beside
/// its manifests for as long as they are, so a later version can publish the same
/// segments under new manifests without the job's records, which expire
/// ([`crate::repackage`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// Video rungs, audio, subtitles and thumbnails, in manifest order.
    pub tracks: Vec<vodpipe_media::package::Track>,
    /// The renditions besides the tracks.
    pub extras: Vec<Rendition>,
}

/// The object key of `uri` (relative, as manifests hold it) seen from directory `dir`: a
/// re-packaged version's URIs climb into another version's directory (`../<job>/…`), which
/// a player resolves itself but an object key must not contain.
pub fn resolve(dir: &str, uri: &str) -> String {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in uri.split('/') {
        match part {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// The key of `job`'s published file of rendition kind `kind` (`poster`, `thumbnails`):
/// what status and job events point a CMS at.
pub fn published_key(job: &JobRecord, kind: &str) -> Option<String> {
    job.renditions
        .iter()
        .find(|r| r.kind == kind && r.skipped.is_none())
        .and_then(|r| r.uri.as_ref())
        .map(|uri| resolve(&job_dir(&job.asset, &job.id), uri))
}

/// The languages (or names, for a track without one) of `job`'s published subtitles.
pub fn subtitle_languages(job: &JobRecord) -> Vec<String> {
    job.renditions
        .iter()
        .filter(|r| r.kind == "text" && r.skipped.is_none())
        .map(|r| r.language.clone().unwrap_or_else(|| r.id.clone()))
        .collect()
}

/// How a job's published asset is protected: what status, events and the console say
/// (the scheme, the key IDs, the DRM systems; never a key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssetProtection {
    /// cbcs or cenc.
    pub scheme: vodpipe_media::cenc::Scheme,
    /// The video rungs' key ID.
    pub video_kid: Option<String>,
    /// The audio renditions' key ID.
    pub audio_kid: Option<String>,
    /// The DRM systems signalled.
    pub systems: Vec<vodpipe_media::cenc::System>,
}

impl AssetProtection {
    /// One line: `cbcs, KID 0123… (video) 4567… (audio), clearkey widevine`.
    pub fn describe(&self) -> String {
        let kids = match (&self.video_kid, &self.audio_kid) {
            (Some(v), Some(a)) if v == a => format!("KID {v}"),
            (v, a) => {
                let each: Vec<String> = [(v, "video"), (a, "audio")]
                    .into_iter()
                    .filter_map(|(k, what)| k.as_ref().map(|k| format!("{k} ({what})")))
                    .collect();
                format!("KID {}", each.join(" "))
            }
        };
        let systems: Vec<&str> = self.systems.iter().map(|s| s.as_str()).collect();
        format!("{}, {kids}, {}", self.scheme.as_str(), systems.join(" "))
    }
}

/// The protection of `job`'s published renditions, when they are protected.
pub fn protection(job: &JobRecord) -> Option<AssetProtection> {
    let of = |kind: &str| {
        job.renditions
            .iter()
            .find(|r| r.kind == kind)
            .and_then(|r| r.protection.as_ref())
    };
    let (v, a) = (of("video"), of("audio"));
    let first = v.or(a)?;
    Some(AssetProtection {
        scheme: first.scheme,
        video_kid: v.map(|p| p.kid.clone()),
        audio_kid: a.map(|p| p.kid.clone()),
        systems: first.systems.clone(),
    })
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
                protection: t.protection.as_ref().map(|p| RenditionProtection {
                    scheme: p.scheme,
                    kid: p.kid.clone(),
                    systems: p.systems.iter().map(|s| s.system).collect(),
                }),
                range: Some(t.dynamic_range()).filter(|r| r.is_hdr()),
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

/// Stores an encoded item's outputs under its attempt directory (the layout above) in one
/// batch, so a backend can upload them in parallel, and returns what the item's commit
/// records about them. Every chunk of a rung shares chunk 0's init segment, so only chunk 0
/// and the audio tracks store one.
pub fn store(
    objects: &dyn ObjectStore,
    item: &ItemRef,
    attempt: u32,
    asset: &str,
    jp: &JobPlan,
    out: Encoded,
) -> crate::Result<Vec<TrackResult>> {
    let tracks = out.tracks;
    let dir = attempt_dir(item, attempt);
    let jd = job_dir(asset, &item.job_id);
    let first_segment = match item.kind {
        ItemKind::Video => jp
            .plan
            .chunks
            .get(item.index as usize)
            .and_then(|c| c.segments.first())
            .map_or(0, |s| s.index),
        ItemKind::Audio | ItemKind::Text | ItemKind::Analysis | ItemKind::Index => 0,
    };
    let mut results = Vec::with_capacity(tracks.len());
    let mut uploads: Vec<(String, &[u8])> = Vec::new();
    for t in &tracks {
        // The stereo rendition of a track sits in its attempt directory, any other
        // rendition of it (5.1) in a directory of its own below.
        let tdir = match item.kind {
            ItemKind::Video => format!("{dir}/{}", t.name),
            ItemKind::Audio
                if t.name
                    != vodpipe_media::encode::audio_rendition_name(item.index as usize, 2) =>
            {
                format!("{dir}/{}", t.name)
            }
            ItemKind::Audio | ItemKind::Text | ItemKind::Analysis | ItemKind::Index => dir.clone(),
        };
        // Every chunk of a rung shares chunk 0's init segment (the stitch checks that
        // their sample descriptions agree, from the hash below), so only chunk 0 and the
        // audio tracks store one: a PUT per rung per chunk saved.
        let init_uri = if item.kind == ItemKind::Video && item.index > 0 {
            String::new()
        } else {
            let uri = format!("{tdir}/init.mp4");
            uploads.push((format!("{jd}/{uri}"), &t.init));
            uri
        };
        let mut segments = Vec::with_capacity(t.segments.len());
        for (i, s) in t.segments.iter().enumerate() {
            let uri = format!("{tdir}/{:05}.m4s", first_segment as usize + i);
            uploads.push((format!("{jd}/{uri}"), &s.bytes));
            let start = (s.base_decode_time as i64 + s.first_cts_offset).max(0) as u64;
            segments.push(SegmentRef {
                uri,
                start,
                duration: s.duration,
                bytes: s.bytes.len() as u64,
                key_frame_bytes: match item.kind {
                    ItemKind::Video => s.key_frame_end,
                    ItemKind::Audio | ItemKind::Text | ItemKind::Analysis | ItemKind::Index => None,
                },
            });
        }
        results.push(TrackResult {
            codec: mp4::codec_string(&t.init, &t.name)?,
            stsd_hash: content_hash(&mp4::sample_description(&t.init, &t.name)?),
            name: t.name.clone(),
            timescale: t.timescale,
            init_uri,
            segments,
            skipped: None,
            protection: t.protection.clone(),
            colour: mp4::colour(&t.init, &t.name)?,
        });
    }
    // Stills and subtitles: small files beside the segments, listed as tracks of their
    // own for the stitch.
    // Every segment's times, once per item (not once per tile: a film has thousands).
    let times = jp.plan.segment_times();
    let segment_ms = |i: usize| {
        times.get(i).map_or((0, 0), |&(a, b)| {
            let (a, b) = ((a * 1000.0).round() as u64, (b * 1000.0).round() as u64);
            (a, b.saturating_sub(a))
        })
    };
    let sprite_uri = format!("{dir}/thumbnails.jpg");
    let poster_uri = format!("{dir}/poster.jpg");
    if let (Some(sprite), Some(chunk)) =
        (&out.stills.sprite, jp.plan.chunks.get(item.index as usize))
    {
        uploads.push((format!("{jd}/{sprite_uri}"), sprite));
        results.push(still_result(
            "thumbnails",
            String::new(),
            chunk
                .segments
                .iter()
                .map(|seg| {
                    let (start, duration) = segment_ms(seg.index as usize);
                    SegmentRef {
                        uri: sprite_uri.clone(),
                        start,
                        duration,
                        bytes: sprite.len() as u64,
                        key_frame_bytes: None,
                    }
                })
                .collect(),
        ));
    }
    if let Some(poster) = &out.stills.poster {
        uploads.push((format!("{jd}/{poster_uri}"), poster));
        results.push(still_result("poster", poster_uri.clone(), Vec::new()));
    }
    let text_files: Vec<(String, &[u8])> = match &out.text {
        Some(text) => std::iter::once((format!("{dir}/subtitles.vtt"), text.whole.as_bytes()))
            .chain(
                text.segments
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (format!("{dir}/{i:05}.vtt"), s.body.as_bytes())),
            )
            .collect(),
        None => Vec::new(),
    };
    if let Some(text) = &out.text {
        results.push(TrackResult {
            name: format!("text_{}", item.index),
            codec: "wvtt".into(),
            timescale: 1000,
            init_uri: format!("{dir}/subtitles.vtt"),
            stsd_hash: String::new(),
            skipped: None,
            protection: None,
            colour: None,
            segments: text
                .segments
                .iter()
                .zip(text_files.iter().skip(1))
                .map(|(s, (uri, body))| SegmentRef {
                    uri: uri.clone(),
                    start: s.start_ms,
                    duration: s.duration_ms,
                    bytes: body.len() as u64,
                    key_frame_bytes: None,
                })
                .collect(),
        });
        tracing::info!(item = %item.describe(), cues = text.cues, "subtitles converted");
    }
    uploads.extend(
        text_files
            .iter()
            .map(|(uri, body)| (format!("{jd}/{uri}"), *body)),
    );
    // Every rung's segments in one batch, so a backend can upload them in parallel.
    objects
        .put_many(&uploads, Cacheability::Immutable)
        .map_err(|e| {
            tracing::warn!(dir = %format!("{jd}/{dir}"), error = %e, "could not store the item's outputs");
            e
        })?;
    Ok(results)
}

/// The result entry of a still (a JPEG, timescale ms): the chunk's sprite with one
/// segment per tile, or the poster with its key as `init_uri`.
fn still_result(name: &str, init_uri: String, segments: Vec<SegmentRef>) -> TrackResult {
    TrackResult {
        name: name.into(),
        codec: "jpeg".into(),
        timescale: 1000,
        init_uri,
        stsd_hash: String::new(),
        segments,
        skipped: None,
        protection: None,
        colour: None,
    }
}

/// The published track of subtitle item `index` of plan `jp`, or status's entry for it
/// when it could not be converted.
pub(crate) fn text_track(
    index: u32,
    t: TrackResult,
    jp: &JobPlan,
) -> Result<Track, Box<Rendition>> {
    let info = jp.texts.get(index as usize);
    if let Some(why) = t.skipped {
        return Err(Box::new(skipped_text(
            index as usize,
            info.and_then(|x| x.language.clone()),
            why,
        )));
    }
    Ok(Track {
        id: t.name,
        kind: TrackKind::Text {
            language: info.and_then(|x| x.language.clone()),
            name: info.map_or_else(|| format!("Subtitles {}", index + 1), |x| x.name.clone()),
            forced: info.is_some_and(|x| x.forced),
            hearing_impaired: info.is_some_and(|x| x.hearing_impaired),
        },
        codec: t.codec,
        timescale: t.timescale,
        init_uri: t.init_uri,
        segments: t.segments,
        protection: None,
        colour: None,
    })
}

/// Status's entry for subtitle track `index`, not published for `why`.
pub(crate) fn skipped_text(index: usize, language: Option<String>, why: String) -> Rendition {
    Rendition {
        id: format!("text_{index}"),
        kind: "text".into(),
        codec: String::new(),
        average_bps: 0,
        width: None,
        height: None,
        channels: None,
        language,
        trick_play: false,
        uri: None,
        skipped: Some(why),
        protection: None,
        range: None,
    }
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
