//! The encode: one chunk, audio track or subtitle track through ffmpeg (or a stand-in
//! [`ItemEncoder`]), its outputs stored under the attempt's directory while the lease is
//! kept alive.

use super::Worker;
use crate::attempt::{Attempt, Ending};
use crate::domain::{ItemKind, ItemRef, JobRecord};
use crate::outputs::TrackResult;
use crate::pipeline::{JobPlan, TextSource};
use crate::ports::PortResult;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vodpipe_media::captions::TextInput;
use vodpipe_media::encode::{self, EncodeContext, Encoded};

/// Turns one item into encoded tracks. The worker's own runs ffmpeg ([`encode`]); a load
/// test of the control plane swaps in one that makes no media, so everything else the
/// worker does (leases, heartbeats, uploads, commits, retries) runs for real without it.
pub trait ItemEncoder: Send + Sync {
    /// Encodes `item` of the plan in `ctx`, reporting frames done through `on_frames`.
    fn encode(
        &self,
        ctx: &EncodeContext<'_>,
        item: &ItemRef,
        on_frames: &(dyn Fn(u64) + Sync),
    ) -> vodpipe_media::Result<Encoded>;
}

/// The encoder workers use: ffmpeg, one process per chunk or audio track.
pub struct FfmpegEncoder;

impl ItemEncoder for FfmpegEncoder {
    fn encode(
        &self,
        ctx: &EncodeContext<'_>,
        item: &ItemRef,
        on_frames: &(dyn Fn(u64) + Sync),
    ) -> vodpipe_media::Result<Encoded> {
        match item.kind {
            ItemKind::Video => match ctx.plan.chunks.get(item.index as usize) {
                Some(chunk) => encode::encode_chunk(ctx, chunk, on_frames),
                None => Err(vodpipe_media::Error::PlanMismatch(format!(
                    "no chunk {}",
                    item.index
                ))),
            },
            ItemKind::Audio => encode::encode_audio(ctx, item.index as usize).map(Encoded::from),
            ItemKind::Text => encode::encode_text(ctx),
            ItemKind::Analysis | ItemKind::Index => Err(vodpipe_media::Error::PlanMismatch(
                format!("{} is not an encode", item.describe()),
            )),
        }
    }
}

/// Seconds of media an item covers (a video chunk, or the whole audio track).
fn chunk_media_secs(jp: &JobPlan, item: &ItemRef) -> f64 {
    match item.kind {
        ItemKind::Video => {
            let fps = jp
                .media
                .video
                .as_ref()
                .map_or(25.0, |v| v.frame_rate.as_f64().max(1.0));
            jp.plan
                .chunks
                .get(item.index as usize)
                .map_or(jp.plan.segment_secs, |c| c.frames as f64 / fps)
        }
        ItemKind::Audio | ItemKind::Text => jp.media.duration_secs.unwrap_or(0.0),
        ItemKind::Analysis | ItemKind::Index => 0.0,
    }
}

impl Worker<'_> {
    /// Encodes a chunk, an audio track or a subtitle track and stores its outputs, ending
    /// for a commit with the tracks' record, or with the error. A subtitle file ffmpeg
    /// cannot read fails once more (a passing fault gets its retry), then is published as
    /// skipped with ffmpeg's reason: captions that cannot be read must not cost the viewer
    /// the video.
    pub(super) fn encode_item(
        &self,
        at: &Attempt<'_, '_>,
        job: &JobRecord,
        plan: &JobPlan,
    ) -> PortResult<Ending> {
        let (item, lease) = (&at.lease.item, at.lease);
        let mut result = self.encode_and_store(at, job, plan);
        let secs = at.secs();
        if let Err(e) = &result {
            if item.kind == ItemKind::Text
                && lease.failures >= 1
                && !self.shutdown.is_triggered()
                && !e.is_infrastructure()
                && !e.is_cancelled()
            {
                tracing::warn!(item = %item.describe(), error = %e, "subtitle track cannot be converted; published as skipped");
                result = Ok(vec![TrackResult {
                    name: format!("text_{}", item.index),
                    codec: String::new(),
                    timescale: 1000,
                    init_uri: String::new(),
                    stsd_hash: String::new(),
                    segments: Vec::new(),
                    skipped: Some(e.to_string()),
                    protection: None,
                    colour: None,
                }]);
            }
        }
        let tracks = match result {
            Ok(tracks) => tracks,
            Err(e) => return Ok(Ending::Failed(e)),
        };
        let doc = match serde_json::to_string(&tracks) {
            Ok(doc) => doc,
            Err(e) => {
                return Ok(Ending::Failed(crate::Error::corrupt(
                    "the item's result",
                    e,
                )))
            }
        };
        // Subtitle conversion is not encoding: it would skew the encode metrics.
        if item.kind != ItemKind::Text {
            let media_secs = chunk_media_secs(plan, item);
            crate::metrics::emit(
                &[
                    ("ChunkEncodeSeconds", secs, crate::metrics::Unit::Seconds),
                    (
                        "RealtimeFactor",
                        if secs > 0.0 { media_secs / secs } else { 0.0 },
                        crate::metrics::Unit::None,
                    ),
                ],
                &[],
            );
        }
        Ok(Ending::Commit(doc))
    }

    /// Encodes the item and stores its outputs under the attempt's directory, with a
    /// heartbeat thread renewing the lease and the message every third of the TTL the
    /// whole time (uploads included, whatever ffmpeg prints), and stopping the attempt
    /// when the lease is lost.
    fn encode_and_store(
        &self,
        at: &Attempt<'_, '_>,
        job: &JobRecord,
        jp: &JobPlan,
    ) -> crate::Result<Vec<TrackResult>> {
        let lease = at.lease;
        let (source, asset) = (job.source.as_str(), job.asset.as_str());
        let version = job
            .settings
            .as_ref()
            .and_then(|s| s.source_version.as_deref());
        let item = &lease.item;
        // A subtitle item reads its sidecar file, or a stream of the source.
        let text = match item.kind {
            ItemKind::Text => match jp.texts.get(item.index as usize).map(|t| &t.from) {
                Some(TextSource::Stream(i)) => Some((TextInput::Stream(*i), None)),
                Some(TextSource::Sidecar(uri)) => Some((TextInput::Sidecar, Some(uri.as_str()))),
                None => {
                    return Err(vodpipe_media::Error::PlanMismatch(format!(
                        "no subtitle track {}",
                        item.index
                    ))
                    .into())
                }
            },
            _ => None,
        };
        let (source, version) = match text {
            Some((_, Some(sidecar))) => (sidecar, None),
            _ => (source, version),
        };
        let input = at.open_input(source, version, Duration::from_secs(6 * 3600))?;
        let scratch = self.cfg.scratch.join(format!(
            "{}-{}-{}-{}",
            item.job_id,
            item.kind.as_str(),
            item.index,
            lease.token
        ));
        let cancel = Arc::new(AtomicBool::new(false));
        let timeout = match item.kind {
            // 30× the chunk's duration for an H.264 ladder, more for one that also
            // encodes every rung in a slower codec.
            ItemKind::Video => {
                let mut codecs: Vec<_> = jp.rungs.iter().map(|r| r.codec).collect();
                codecs.dedup();
                let cost: f64 = codecs.iter().map(|c| c.relative_cost()).sum();
                Duration::from_secs_f64(
                    (chunk_media_secs(jp, item) * 30.0 * cost.max(1.0)).max(300.0),
                )
            }
            ItemKind::Audio => {
                Duration::from_secs_f64((jp.media.duration_secs.unwrap_or(3600.0) * 2.0).max(600.0))
            }
            // Demuxing a film for its subtitle packets reads the whole file.
            ItemKind::Text => {
                Duration::from_secs_f64((jp.media.duration_secs.unwrap_or(3600.0) / 4.0).max(600.0))
            }
            // Never encoded here ([`crate::analysis`], [`crate::indexing`]); their
            // probe runs and scans time themselves.
            ItemKind::Analysis | ItemKind::Index => Duration::from_secs(600),
        };
        let ctx = EncodeContext {
            ffmpeg: &self.cfg.ffmpeg,
            source: &input,
            media: &jp.media,
            plan: &jp.plan,
            rungs: &jp.rungs,
            config: &jp.config,
            scratch: &scratch,
            timeout,
            cancel: cancel.clone(),
            shutdown: self.shutdown.flag(),
            text: text.map(|(t, _)| t),
        };
        let frames = AtomicU64::new(0);
        let on_frames = |n: u64| frames.store(n, Ordering::Relaxed);
        at.heartbeat(&frames, &cancel, || {
            let encoded = self.encoder.encode(&ctx, item, &on_frames);
            let _ = std::fs::remove_dir_all(&scratch);
            let out = encoded?;
            if cancel.load(Ordering::SeqCst) || self.shutdown.is_triggered() {
                return Err(vodpipe_media::Error::Cancelled {
                    step: format!("store {}", item.describe()),
                    why: "the lease was lost or the worker is stopping".into(),
                }
                .into());
            }
            let out = self.protect(out, job, jp, item)?;
            crate::outputs::store(self.ports.objects, item, lease.attempt, asset, jp, out)
        })
    }

    /// Encrypts an item's video rungs or audio renditions when its job asks for content
    /// protection, with the asset's keys from the key provider (asked on every item: the
    /// key is never stored). Subtitles and stills stay clear.
    fn protect(
        &self,
        mut out: Encoded,
        job: &JobRecord,
        jp: &JobPlan,
        item: &ItemRef,
    ) -> crate::Result<Encoded> {
        let Some(drm) = &jp.config.drm else {
            return Ok(out);
        };
        if out.tracks.is_empty() {
            return Ok(out);
        }
        let keys = self.cfg.keys.asset_keys(&job.asset, drm)?;
        let track_keys = match item.kind {
            ItemKind::Audio => &keys.audio,
            _ => &keys.video,
        };
        let protection = track_keys.protection(drm.scheme);
        for t in &mut out.tracks {
            vodpipe_media::encode::protect_track(t, &protection)?;
            t.protection = Some(track_keys.signalling(drm.scheme));
        }
        tracing::info!(item = %item.describe(), scheme = drm.scheme.as_str(), kid = %hex::encode(track_keys.key.kid), "protected");
        Ok(out)
    }
}
