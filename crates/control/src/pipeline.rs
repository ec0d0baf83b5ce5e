//! The pipeline's shared configuration and the bundle of ports the use-cases run on.

use crate::ports::{Cdn, Fleet, JobEvents, JobStore, ObjectStore, WorkQueue};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vodpipe_media::ladder::{av1_frames_per_segment, in_codecs, ladder_for, sizes_for};
use vodpipe_media::ladder::{LadderConfig, Rung};
use vodpipe_media::pertitle::{analyse, Title};
use vodpipe_media::plan::{Plan, PlanOptions};
use vodpipe_media::policy::InputPolicy;
use vodpipe_media::probe::{MediaInfo, VideoInfo};

/// The five ports, borrowed for one use-case call.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    /// Output objects (and source access).
    pub objects: &'a dyn ObjectStore,
    /// Jobs, items, leases.
    pub jobs: &'a dyn JobStore,
    /// Tier and stitch queues.
    pub queue: &'a dyn WorkQueue,
    /// Worker capacity.
    pub fleet: &'a dyn Fleet,
    /// CDN invalidations.
    pub cdn: &'a dyn Cdn,
    /// Job-state announcements.
    pub events: &'a dyn JobEvents,
}

/// Knobs every use-case shares. Defaults are what `vodpipe` ships with.
#[derive(Debug, Clone)]
pub struct Config {
    /// ffmpeg binary.
    pub ffmpeg: String,
    /// ffprobe binary.
    pub ffprobe: String,
    /// Ladder and encoder settings for new jobs.
    pub ladder: LadderConfig,
    /// Input limits.
    pub policy: InputPolicy,
    /// Segment and chunk durations for new jobs.
    pub plan: PlanOptions,
    /// Lease and message visibility; heartbeats renew both every third of it.
    pub lease_ttl: Duration,
    /// Failed plus interrupted attempts after which a Spot-tier item moves to premium.
    pub escalate_after: u32,
    /// Back-off before a failed item is retried.
    pub retry_delay: Duration,
    /// Scratch directory for ffmpeg outputs.
    pub scratch: PathBuf,
    /// The deployment's side of per-upload settings: default tier, prefix map, how long
    /// to wait for a settings file, command-line choices.
    pub settings: crate::settings::SettingsPolicy,
    /// Where protected assets' keys come from (a key file, a signer for key servers).
    pub keys: crate::keys::Keys,
}

impl Config {
    /// Defaults with scratch space under `scratch`.
    pub fn new(scratch: impl Into<PathBuf>) -> Self {
        Config {
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            ladder: LadderConfig::default(),
            policy: InputPolicy::default(),
            plan: PlanOptions::default(),
            lease_ttl: Duration::from_secs(30),
            escalate_after: 2,
            retry_delay: Duration::from_secs(2),
            scratch: scratch.into(),
            settings: crate::settings::SettingsPolicy::default(),
            keys: crate::keys::Keys::default(),
        }
    }
}

/// Everything decided at ingest that workers and the stitcher need: stored once with the
/// job, so later config changes never split one job across two ladders.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobPlan {
    /// Probe result.
    pub media: MediaInfo,
    /// Renditions.
    pub rungs: Vec<Rung>,
    /// Chunks and segments.
    pub plan: Plan,
    /// Encoder settings.
    pub config: LadderConfig,
    /// Subtitle renditions to publish (one work item each) and subtitle streams that
    /// cannot be, in order: the source's streams, then sidecar files by language.
    #[serde(default)]
    pub texts: Vec<TextTrack>,
    /// The per-title analysis that chose the rungs, when the ladder asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_title: Option<vodpipe_media::pertitle::Analysis>,
}

impl JobPlan {
    /// The plan of a probed source under `ladder`, with chunks of `opts`: for a video whose
    /// frame table is read, its rungs and frame-exact chunks; for one whose table is still
    /// to be read ([`vodpipe_media::probe::probe_header`] found no index in its container),
    /// provisional rungs and no chunks until its index item reads it
    /// ([`JobPlan::index_pending`]); for a source without video, no rungs and no chunks.
    /// The subtitle tracks are the source's own streams. A per-title ladder is left
    /// pending ([`JobPlan::ladder_pending`]).
    pub fn new(media: MediaInfo, ladder: &LadderConfig, opts: PlanOptions) -> JobPlan {
        let (rungs, plan) = match media.video.as_ref() {
            None => (Vec::new(), vodpipe_media::plan::audio_only(opts)),
            Some(v) if v.frame_pts.is_empty() => (
                ladder_for(v, ladder),
                vodpipe_media::plan::awaiting_index(v.time_base, opts),
            ),
            Some(v) => plan_video(v, media.start_secs, media.first_seek_secs, ladder, opts),
        };
        JobPlan {
            texts: TextTrack::from_streams(&media),
            media,
            rungs,
            plan,
            config: ladder.clone(),
            per_title: None,
        }
    }

    /// Whether the source's frame table is still to be read, by the job's index item
    /// ([`crate::domain::ItemKind::Index`]): the plan has no chunks yet and its rungs are
    /// provisional (a variable frame rate, known only from the table, rules AV1 out).
    pub fn index_pending(&self) -> bool {
        self.plan.awaiting_index.is_some() && self.media.video.is_some()
    }

    /// Completes a plan waiting for its index with `media`, this plan's own with the frame
    /// table read, and the source's `keyframes` ([`vodpipe_media::probe::index_frames`]):
    /// the rungs are chosen again and the chunks planned with the options ingest chose, by
    /// the same planner and the same AV1 rule as a source whose container carries its
    /// index; in a container without a seek index each chunk's seek reaches back to the
    /// keyframe it needs ([`vodpipe_media::plan::set_prerolls`]). The subtitle tracks
    /// (sidecars included) stay as ingest found them.
    pub fn index(&mut self, media: MediaInfo, keyframes: &[i64]) {
        let opts = self.plan.awaiting_index.unwrap_or(PlanOptions {
            segment_secs: self.plan.segment_secs,
            ..PlanOptions::default()
        });
        if let Some(v) = media.video.as_ref().filter(|v| !v.frame_pts.is_empty()) {
            (self.rungs, self.plan) = plan_video(
                v,
                media.start_secs,
                media.first_seek_secs,
                &self.config,
                opts,
            );
            if vodpipe_media::probe::seeks_without_index(&media.format_name) {
                vodpipe_media::plan::set_prerolls(&mut self.plan, &v.frame_pts, keyframes);
            }
        }
        self.media = media;
    }

    /// What this plan is estimated to cost on `tier` before anything is encoded
    /// ([`crate::cost::planned_cost`]): the planned frames, or for a plan still waiting for
    /// its frame index, the container's duration (cut to the clip, when there is one) at
    /// the nominal frame rate. None when neither is known (a container that states no
    /// duration, before its index is read).
    pub fn planned_cost_usd(&self, tier: crate::domain::Tier) -> Option<f64> {
        let clip = self.plan.awaiting_index.and_then(|o| o.clip);
        let whole = self.media.duration_secs.filter(|d| *d > 0.0);
        let duration = match (self.plan.total_frames, clip) {
            (n, _) if n > 0 => self.media.duration_secs.unwrap_or(0.0),
            (_, Some(c)) => {
                whole.map(|d| (c.end_secs.unwrap_or(d).min(d) - c.start_secs).max(0.0))?
            }
            (_, None) => whole?,
        };
        let frames = match (&self.media.video, self.plan.total_frames) {
            (_, n) if n > 0 => n,
            (Some(v), _) => (duration * v.frame_rate.as_f64()).round().max(0.0) as u64,
            (None, _) => 0,
        };
        Some(crate::cost::planned_cost(
            tier,
            &self.rungs,
            frames,
            self.media.audio.len(),
            duration,
            crate::cost::WorkerSize::default(),
        ))
    }

    /// Whether the rungs are the fixed ladder standing in until a per-title analysis
    /// chooses them (the ladder is `auto` and none has run): chunks must wait.
    pub fn ladder_pending(&self) -> bool {
        self.config.auto && self.per_title.is_none() && self.media.video.is_some()
    }

    /// Runs the per-title analysis on `source` (a path, or a URL ffmpeg reads with ranged
    /// requests) of a video `duration_secs` long, stopped at once by any of `cancel`, and
    /// replaces the rungs with the ladder it chooses. Chunks and segments stay as planned:
    /// they depend on the codecs, which the analysis keeps, never on sizes or rates.
    pub fn choose_ladder(
        &mut self,
        ffmpeg: &str,
        source: &Path,
        scratch: &Path,
        duration_secs: f64,
        cancel: &[std::sync::Arc<std::sync::atomic::AtomicBool>],
    ) -> vodpipe_media::Result<()> {
        let Some(video) = self.media.video.as_ref() else {
            return Ok(());
        };
        std::fs::create_dir_all(scratch).map_err(|e| {
            vodpipe_media::Error::Unavailable(format!("scratch {}: {e}", scratch.display()))
        })?;
        let fixed = sizes_for(video, &self.config);
        let title = Title {
            ffmpeg,
            source,
            video,
            duration_secs,
            start_secs: self.media.start_secs,
            scratch,
            cancel,
        };
        let (sizes, analysis) = analyse(&title, &self.config, &fixed)?;
        self.rungs = in_codecs(video, &self.config, sizes);
        self.per_title = Some(analysis);
        Ok(())
    }

    /// The subtitle tracks that become work items, with their item index.
    pub fn text_items(&self) -> impl Iterator<Item = (u32, &TextTrack)> {
        self.texts
            .iter()
            .enumerate()
            .filter(|(_, t)| t.skipped.is_none())
            .map(|(i, t)| (i as u32, t))
    }
}

/// The rungs and the chunk plan of `video` (its frame table read; the container starts at
/// `start_secs`). AV1 rungs need segments of equal frame counts (SVT-AV1 places keyframes
/// only every N frames); every codec shares them, so all rungs keep one timeline.
fn plan_video(
    video: &VideoInfo,
    start_secs: f64,
    first_seek_secs: Option<f64>,
    ladder: &LadderConfig,
    opts: PlanOptions,
) -> (Vec<Rung>, Plan) {
    let rungs = ladder_for(video, ladder);
    let plan = match av1_frames_per_segment(video, &rungs, opts.segment_secs) {
        Some(n) => {
            vodpipe_media::plan::plan_every(&video.frame_pts, video.time_base, start_secs, opts, n)
        }
        None => vodpipe_media::plan::plan(&video.frame_pts, video.time_base, start_secs, opts),
    };
    let mut plan = plan;
    if let (Some(seek), Some(c)) = (first_seek_secs, plan.chunks.first_mut()) {
        // A clip's first frame is not the source's: the first chunk seeks to it as every
        // other chunk seeks to its own, halfway from the frame before.
        c.seek_secs = seek;
    }
    (rungs, plan)
}

/// A subtitle track of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextTrack {
    /// Where its text is.
    pub from: TextSource,
    /// Language, if known.
    #[serde(default)]
    pub language: Option<String>,
    /// What players show for it.
    pub name: String,
    /// Why it is not published (a bitmap format, too many tracks), when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Forced subtitles (signs and foreign lines only).
    #[serde(default)]
    pub forced: bool,
    /// For the deaf and hard of hearing.
    #[serde(default)]
    pub hearing_impaired: bool,
    /// When a sidecar file was listed for conversion (Unix seconds): an upload of the file
    /// after this is a newer file, which a re-packaging converts again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed_at: Option<f64>,
}

/// Where a subtitle track's text comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextSource {
    /// A subtitle stream of the source (container index).
    Stream(u32),
    /// A sidecar file beside the source (its path or `s3://` URI).
    Sidecar(String),
}

impl TextTrack {
    /// The tracks of the source's own subtitle streams: text ones to publish, bitmap ones
    /// skipped with the reason.
    pub fn from_streams(media: &MediaInfo) -> Vec<TextTrack> {
        media
            .subtitles
            .iter()
            .enumerate()
            .map(|(n, s)| TextTrack {
                from: TextSource::Stream(s.index),
                language: s.language.clone(),
                name: s
                    .title
                    .clone()
                    .or_else(|| s.language.clone())
                    .unwrap_or_else(|| format!("Subtitles {}", n + 1)),
                skipped: (!vodpipe_media::captions::is_text_codec(&s.codec)).then(|| {
                    format!(
                        "{} subtitles cannot be converted to WebVTT text (bitmap subtitles need OCR)",
                        s.codec
                    )
                }),
                forced: s.forced,
                hearing_impaired: s.hearing_impaired,
                listed_at: None,
            })
            .collect()
    }

    /// A subtitle file beside the source, in `language`, listed at `listed_at`: what
    /// ingest and a re-packaging add for each.
    pub fn sidecar(language: String, uri: String, listed_at: f64) -> TextTrack {
        TextTrack {
            from: TextSource::Sidecar(uri),
            name: language.clone(),
            language: Some(language),
            skipped: None,
            forced: false,
            hearing_impaired: false,
            listed_at: Some(listed_at),
        }
    }

    /// Makes a job's list publishable: every name distinct (HLS requires it within a
    /// group: a second "eng" becomes "eng (2)"), and at most
    /// [`vodpipe_media::captions::MAX_TEXT_TRACKS`] published, the rest skipped.
    pub fn settle(texts: &mut [TextTrack]) {
        let mut published = 0;
        for t in texts.iter_mut().filter(|t| t.skipped.is_none()) {
            published += 1;
            if published > vodpipe_media::captions::MAX_TEXT_TRACKS {
                t.skipped = Some(format!(
                    "more than {} subtitle tracks",
                    vodpipe_media::captions::MAX_TEXT_TRACKS
                ));
            }
        }
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        for t in texts.iter_mut() {
            let base = t.name.clone();
            let mut n = 1;
            while !seen.insert(t.name.clone()) {
                n += 1;
                t.name = format!("{base} ({n})");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ItemKind;
    use vodpipe_media::probe::SubtitleInfo;

    /// A 12-second MPEG-TS header as ffprobe reports it: 25 fps on the 90 kHz clock,
    /// starting at 1.4 s, one audio track; no frame table yet.
    fn ts_header() -> MediaInfo {
        serde_json::from_value(serde_json::json!({
            "format_name": "mpegts", "duration_secs": 12.0, "size_bytes": 0,
            "video": {"index": 0, "codec": "h264", "width": 320, "height": 180,
                "sar": {"num": 1, "den": 1}, "rotation": 0, "pix_fmt": "yuv420p",
                "field_order": "progressive", "frame_rate": {"num": 25, "den": 1},
                "time_base": {"num": 1, "den": 90000}, "vfr": false, "frame_pts": []},
            "audio": [{"index": 1, "codec": "aac", "channels": 2, "sample_rate": 48000,
                "language": null, "title": null, "start_secs": 1.4}],
            "video_start_secs": 1.4, "start_secs": 1.4,
        }))
        .unwrap()
    }

    #[test]
    fn a_plan_waiting_for_its_index_is_one_item_until_the_index_plans_the_chunks() {
        let opts = PlanOptions {
            segment_secs: 2.0,
            chunk_secs: 4.0,
            clip: None,
        };
        let mut jp = JobPlan::new(ts_header(), &LadderConfig::default(), opts);
        assert!(jp.index_pending() && jp.plan.chunks.is_empty());
        let items = crate::ingest::work_items("j", &jp);
        let kinds: Vec<ItemKind> = items.iter().map(|(i, _)| i.kind).collect();
        assert_eq!(kinds, [ItemKind::Index], "audio waits for the index too");
        // Stored and read back, the plan still waits, with the options ingest chose.
        let stored: JobPlan = serde_json::from_str(&serde_json::to_string(&jp).unwrap()).unwrap();
        assert_eq!(stored.plan.awaiting_index, Some(opts));

        let mut media = jp.media.clone();
        let v = media.video.as_mut().unwrap();
        v.frame_pts = (0..300).map(|i| 126_000 + i * 3600).collect();
        // A keyframe every 2.2 s (x264's scene cuts do not fall on our segments).
        let keyframes: Vec<i64> = (0..6).map(|k| 126_000 + k * 55 * 3600).collect();
        jp.index(media, &keyframes);
        assert!(!jp.index_pending());
        assert_eq!(jp.plan.total_frames, 300);
        assert_eq!(jp.plan.chunks.len(), 3);
        assert_eq!(jp.plan.chunks[0].preroll_secs, 0.0);
        // Chunk 1 starts at frame 100 (4 s); its keyframe is frame 55 (2.2 s earlier).
        assert!((jp.plan.chunks[1].preroll_secs - (1.8 + 1.0)).abs() < 1e-9);
        let items = crate::ingest::work_items("j", &jp);
        let kinds: Vec<ItemKind> = items.iter().map(|(i, _)| i.kind).collect();
        assert_eq!(
            kinds,
            [
                ItemKind::Video,
                ItemKind::Video,
                ItemKind::Video,
                ItemKind::Audio
            ]
        );
        // A plan stored before plans could wait reads as indexed.
        let mut old = serde_json::to_value(&jp).unwrap();
        old["plan"]
            .as_object_mut()
            .unwrap()
            .remove("awaiting_index");
        let old: JobPlan = serde_json::from_value(old).unwrap();
        assert!(!old.index_pending());
    }

    #[test]
    fn bitmap_subtitle_streams_are_skipped_with_the_reason_and_make_no_work() {
        let media: MediaInfo = serde_json::from_value(serde_json::json!({
            "format_name": "matroska,webm", "duration_secs": 10.0, "size_bytes": 1,
            "video": null, "audio": [], "video_start_secs": 0.0, "start_secs": 0.0,
        }))
        .unwrap();
        let mut media = media;
        let sub =
            |index, codec: &str, title: Option<&str>, forced, hearing_impaired| SubtitleInfo {
                index,
                codec: codec.into(),
                language: None,
                title: title.map(str::to_string),
                forced,
                hearing_impaired,
            };
        media.subtitles = vec![
            sub(2, "hdmv_pgs_subtitle", None, false, false),
            sub(3, "ass", Some("Signs"), true, false),
            sub(4, "subrip", Some("Signs"), false, true),
        ];
        let mut texts = TextTrack::from_streams(&media);
        TextTrack::settle(&mut texts);
        assert!(texts[1].forced && texts[2].hearing_impaired);
        assert_eq!(texts[2].name, "Signs (2)", "names in one HLS group differ");
        assert!(texts[0]
            .skipped
            .as_deref()
            .is_some_and(|s| s.contains("hdmv_pgs_subtitle")));
        assert_eq!(texts[1].skipped, None);
        assert_eq!(texts[1].name, "Signs");
        assert_eq!(texts[1].from, TextSource::Stream(3));
        let jp = JobPlan {
            media,
            rungs: Vec::new(),
            plan: vodpipe_media::plan::audio_only(PlanOptions::default()),
            config: LadderConfig::default(),
            texts,
            per_title: None,
        };
        let items: Vec<u32> = jp.text_items().map(|(i, _)| i).collect();
        assert_eq!(items, [1, 2]);
        let mut many: Vec<TextTrack> = (0..40).map(|_| jp.texts[1].clone()).collect();
        TextTrack::settle(&mut many);
        assert_eq!(many.iter().filter(|t| t.skipped.is_none()).count(), 32);
    }
}
