//! The pipeline's use-cases on the embedded backend: ingest a file, work one item, stitch
//! and publish. The CLI's `run` is ingest + a few workers + a progress loop.
//!
//! Outputs are immutable and fenced: a chunk attempt writes under
//! `<asset>/<job>/c<chunk>.<attempt>/…` and counts only once committed under its lease's
//! token; the stitcher writes rendition playlists and the MPD under `<asset>/<job>/`, then
//! the pointer manifests `<asset>/master.m3u8` and `<asset>/manifest.mpd` last.

use crate::objects::Objects;
use crate::store::{Completion, Lease, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vodpipe_core::encode::{self, EncodeContext, TrackOutput};
use vodpipe_core::job::{asset_name, job_id, JobStatus};
use vodpipe_core::ladder::{ladder_for, LadderConfig, Rung};
use vodpipe_core::package::{self, SegmentRef, Track, TrackKind};
use vodpipe_core::plan::{plan, Plan, PlanOptions};
use vodpipe_core::policy::InputPolicy;
use vodpipe_core::probe::{probe, MediaInfo};

/// Errors from the use-cases (media errors become FAILED jobs instead).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the source or writing an object failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A stored document was unreadable.
    #[error("stored job document unreadable: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result alias.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Everything the use-cases need to know, shared by ingest, workers and stitch.
#[derive(Debug, Clone)]
pub struct Settings {
    /// ffmpeg binary.
    pub ffmpeg: String,
    /// ffprobe binary.
    pub ffprobe: String,
    /// Object root: outputs are published here.
    pub out: PathBuf,
    /// State directory: SQLite database and scratch space.
    pub state: PathBuf,
    /// Ladder and encoder settings.
    pub ladder: LadderConfig,
    /// Input limits.
    pub policy: InputPolicy,
    /// Segment and chunk durations.
    pub plan: PlanOptions,
    /// Lease length; heartbeats renew it well before it ends.
    pub lease: Duration,
    /// Attempts per work item before the job fails.
    pub max_attempts: i64,
}

impl Settings {
    /// Defaults for an output directory: state in `<out>/.vodpipe`.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        let out = out.into();
        Settings {
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            state: out.join(".vodpipe"),
            out,
            ladder: LadderConfig::default(),
            policy: InputPolicy::default(),
            plan: PlanOptions::default(),
            lease: Duration::from_secs(60),
            max_attempts: 3,
        }
    }
}

/// The outcome of ingesting one file.
#[derive(Debug, Clone)]
pub struct Ingested {
    /// The job id (the same for the same file version).
    pub job_id: String,
    /// False when the job already existed (nothing new was queued).
    pub created: bool,
}

/// Ingests `path`: creates the job idempotently, probes it under the input policy, plans
/// it and queues its work. A refused or unreadable source ends as a FAILED job with the
/// reason; only state-store failures are errors here. With `retry_failed`, a job that
/// already FAILED for this exact file starts over (the user asked for it again, perhaps
/// after fixing the cause); without it, the FAILED job is returned as it is.
pub fn ingest(
    settings: &Settings,
    store: &mut Store,
    path: &Path,
    retry_failed: bool,
) -> Result<Ingested> {
    let abs = std::fs::canonicalize(path)
        .map_err(|e| PipelineError::Io(format!("cannot read {}", path.display()), e))?;
    let meta =
        std::fs::metadata(&abs).map_err(|e| PipelineError::Io(abs.display().to_string(), e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = abs
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = job_id(&dir, &name, &format!("{}:{mtime}", meta.len()));
    let source = abs.display().to_string();
    let mut created = store.create_job(&id, &source, &asset_name(&name))?;
    if !created && retry_failed && store.reset_failed(&id)? {
        tracing::info!(job = %id, "retrying a failed job");
        created = true;
    }
    if !created || !store.transition(&id, &[JobStatus::Queued], JobStatus::Probing, None)? {
        return Ok(Ingested {
            job_id: id,
            created: false,
        });
    }
    match prepare(settings, &abs) {
        Ok(prepared) => {
            let items: Vec<(&str, u32, u64)> = prepared
                .plan
                .chunks
                .iter()
                .map(|c| ("video", c.index, c.frames))
                .chain((0..prepared.media.audio.len() as u32).map(|t| ("audio", t, 0)))
                .collect();
            let duration = prepared
                .media
                .video
                .as_ref()
                .map(|v| v.duration_secs())
                .unwrap_or(0.0);
            store.save_plan(
                &id,
                &serde_json::to_string(&prepared.media)?,
                &serde_json::to_string(&prepared.plan)?,
                &serde_json::to_string(&prepared.rungs)?,
                &serde_json::to_string(&settings.ladder)?,
                duration,
                prepared.plan.total_frames,
                &items,
            )?;
            tracing::info!(job = %id, chunks = prepared.plan.chunks.len(), rungs = prepared.rungs.len(), "planned");
        }
        Err(e) => {
            tracing::warn!(job = %id, error = %e, "ingest refused");
            store.transition(
                &id,
                &[JobStatus::Probing],
                JobStatus::Failed,
                Some(&e.to_string()),
            )?;
        }
    }
    Ok(Ingested {
        job_id: id,
        created: true,
    })
}

/// A probed and planned source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prepared {
    /// Probe result.
    pub media: MediaInfo,
    /// Renditions.
    pub rungs: Vec<Rung>,
    /// Chunks.
    pub plan: Plan,
}

/// Probe + ladder + plan, no state (what `vodpipe plan` shows).
pub fn prepare(settings: &Settings, path: &Path) -> Result<Prepared, vodpipe_core::Error> {
    let media = probe(&settings.ffprobe, path, &settings.policy)?;
    let video = media
        .video
        .as_ref()
        .ok_or_else(|| vodpipe_core::Error::Rejected("source has no video stream".into()))?;
    let rungs = ladder_for(video, &settings.ladder);
    let plan = plan(
        &video.frame_pts,
        video.time_base,
        media.start_secs,
        settings.plan,
    );
    Ok(Prepared { media, rungs, plan })
}

/// What a committed work item produced: its tracks, with object keys relative to the job
/// directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrackResult {
    /// Rung name or `audio_<n>`.
    pub name: String,
    /// RFC 6381 codec string.
    pub codec: String,
    /// Ticks per second.
    pub timescale: u32,
    /// Init segment key, relative to the job directory.
    pub init_uri: String,
    /// Hash of the sample description: chunks can share one init only if these agree.
    pub stsd_hash: String,
    /// Segments.
    pub segments: Vec<SegmentRef>,
}

/// What a worker needs to know about a job, read once per job from the store.
struct JobDocs {
    media: MediaInfo,
    plan: Plan,
    rungs: Vec<Rung>,
    config: LadderConfig,
}

/// A worker: one store connection and a cache of job documents.
pub struct Worker {
    settings: Settings,
    store: Store,
    objects: Objects,
    owner: String,
    cache: HashMap<String, Arc<JobDocs>>,
    /// Set to stop: the current encode is killed and its item released.
    pub shutdown: Arc<AtomicBool>,
}

impl Worker {
    /// A worker named `owner` (shows in leases).
    pub fn new(settings: Settings, owner: impl Into<String>) -> Result<Self> {
        let store = Store::open(&settings.state)?;
        Ok(Worker {
            objects: Objects::new(&settings.out),
            settings,
            store,
            owner: owner.into(),
            cache: HashMap::new(),
            shutdown: Arc::new(AtomicBool::new(false)),
        })
    }

    fn documents(&mut self, job: &str) -> Result<Arc<JobDocs>> {
        if let Some(d) = self.cache.get(job) {
            return Ok(d.clone());
        }
        let (m, p, r, c) = self.store.job_documents(job)?;
        let docs = Arc::new(JobDocs {
            media: serde_json::from_str(&m)?,
            plan: serde_json::from_str(&p)?,
            rungs: serde_json::from_str(&r)?,
            config: serde_json::from_str(&c)?,
        });
        self.cache.insert(job.to_string(), docs.clone());
        Ok(docs)
    }

    /// Leases and works one item; returns false when no work was ready.
    pub fn work_one(&mut self) -> Result<bool> {
        if self.shutdown.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let Some(lease) = self.store.claim(&self.owner, self.settings.lease)? else {
            return Ok(false);
        };
        let job = self
            .store
            .job(&lease.job_id)?
            .ok_or_else(|| StoreError::NoJob(lease.job_id.clone()))?;
        let docs = self.documents(&lease.job_id)?;
        let started = Instant::now();
        match self.encode(&lease, &job.source, &job.asset, &docs) {
            Ok(result) => match self
                .store
                .complete(&lease, &serde_json::to_string(&result)?)
            {
                Ok(Completion::Last) => {
                    tracing::info!(job = %lease.job_id, "last item done; stitching");
                    stitch(&self.settings, &mut self.store, &lease.job_id)?;
                }
                Ok(Completion::More) => {}
                Err(StoreError::LeaseLost(item)) => {
                    tracing::warn!(item, "lease lost before commit; result discarded");
                }
                Err(e) => return Err(e.into()),
            },
            Err(e) => {
                let what = if lease.kind == "video" {
                    format!("chunk {}", lease.index)
                } else {
                    format!("audio track {}", lease.index)
                };
                tracing::warn!(job = %lease.job_id, %what, attempt = lease.attempt, error = %e, "attempt failed");
                if self.shutdown.load(Ordering::SeqCst) {
                    // Interrupted, not failed: give the item back without burning an attempt's worth of blame.
                    let _ = self.store.fail_attempt(&lease, "interrupted", i64::MAX);
                    return Ok(true);
                }
                let exhausted = match self.store.fail_attempt(
                    &lease,
                    &e.to_string(),
                    self.settings.max_attempts,
                ) {
                    Ok(x) => x,
                    Err(StoreError::LeaseLost(_)) => return Ok(true),
                    Err(e) => return Err(e.into()),
                };
                if exhausted || e.is_permanent() {
                    let reason = format!("{what} failed after {} attempt(s): {e}", lease.attempt);
                    self.store.transition(
                        &lease.job_id,
                        &[JobStatus::Encoding],
                        JobStatus::Failed,
                        Some(&reason),
                    )?;
                }
            }
        }
        tracing::debug!(elapsed = ?started.elapsed(), "item done");
        Ok(true)
    }

    fn encode(
        &mut self,
        lease: &Lease,
        source: &str,
        asset: &str,
        docs: &JobDocs,
    ) -> Result<Vec<TrackResult>, vodpipe_core::Error> {
        let JobDocs {
            media,
            plan,
            rungs,
            config,
        } = docs;
        let scratch = self
            .settings
            .state
            .join("scratch")
            .join(format!("{}-{}-{}", lease.job_id, lease.item, lease.token));
        let cancel = Arc::new(AtomicBool::new(false));
        let chunk_secs = self.settings.plan.chunk_secs.max(plan.segment_secs);
        let timeout = Duration::from_secs_f64((chunk_secs * 30.0).max(300.0));
        let source_path = PathBuf::from(source);
        let ctx = EncodeContext {
            ffmpeg: &self.settings.ffmpeg,
            source: &source_path,
            media,
            plan,
            rungs,
            config,
            scratch: &scratch,
            timeout: if lease.kind == "audio" {
                timeout * 4
            } else {
                timeout
            },
            cancel: cancel.clone(),
        };
        let store = &mut self.store;
        let lease_len = self.settings.lease;
        let shutdown = self.shutdown.clone();
        let mut last_beat = Instant::now();
        let mut heartbeat = |frames: u64| {
            if shutdown.load(Ordering::SeqCst) {
                cancel.store(true, Ordering::SeqCst);
            }
            if last_beat.elapsed() >= Duration::from_secs(1) {
                last_beat = Instant::now();
                if store.heartbeat(lease, lease_len, frames).is_err() {
                    cancel.store(true, Ordering::SeqCst);
                }
            }
        };
        let encoded = if lease.kind == "video" {
            let chunk = plan.chunks.get(lease.index as usize).ok_or_else(|| {
                vodpipe_core::Error::PlanMismatch(format!("no chunk {}", lease.index))
            })?;
            encode::encode_chunk(&ctx, chunk, &mut heartbeat)
        } else {
            heartbeat(0);
            encode::encode_audio(&ctx, lease.index as usize).map(|t| vec![t])
        };
        // Scratch holds only ffmpeg's raw outputs; they are never needed after this.
        let _ = std::fs::remove_dir_all(&scratch);
        let tracks: Vec<TrackOutput> = encoded?;
        let prefix = if lease.kind == "video" {
            format!("c{:05}.{}", lease.index, lease.attempt)
        } else {
            format!("a{}.{}", lease.index, lease.attempt)
        };
        let job_dir = format!("{asset}/{}", lease.job_id);
        let mut results = Vec::new();
        for t in tracks {
            let dir = if lease.kind == "video" {
                format!("{prefix}/{}", t.name)
            } else {
                prefix.clone()
            };
            let put = |rel: &str, bytes: &[u8]| {
                self.objects
                    .put(&format!("{job_dir}/{rel}"), bytes)
                    .map_err(|e| vodpipe_core::Error::io(format!("writing {job_dir}/{rel}"), e))
            };
            let init_uri = format!("{dir}/init.mp4");
            put(&init_uri, &t.init)?;
            let first_segment = if lease.kind == "video" {
                plan.chunks
                    .get(lease.index as usize)
                    .and_then(|c| c.segments.first())
                    .map_or(0, |s| s.index)
            } else {
                0
            };
            let mut segments = Vec::new();
            for (i, s) in t.segments.iter().enumerate() {
                let uri = format!("{dir}/{:05}.m4s", first_segment as usize + i);
                put(&uri, &s.bytes)?;
                let start = s.base_decode_time as i64 + s.first_cts_offset;
                segments.push(SegmentRef {
                    uri,
                    start: start.max(0) as u64,
                    duration: s.duration,
                    bytes: s.bytes.len() as u64,
                });
            }
            results.push(TrackResult {
                codec: vodpipe_core::mp4::codec_string(&t.init, &t.name)?,
                stsd_hash: vodpipe_core::job::content_hash(&vodpipe_core::mp4::sample_description(
                    &t.init, &t.name,
                )?),
                name: t.name,
                timescale: t.timescale,
                init_uri,
                segments,
            });
        }
        Ok(results)
    }
}

/// Stitches a STITCHING job: rendition playlists and MPD under the job directory, then
/// the pointer manifests, then PUBLISHED. Safe to repeat.
pub fn stitch(settings: &Settings, store: &mut Store, job_id: &str) -> Result<()> {
    let job = store
        .job(job_id)?
        .ok_or_else(|| StoreError::NoJob(job_id.into()))?;
    if job.status != JobStatus::Stitching {
        return Ok(());
    }
    match build_tracks(store, job_id) {
        Ok(tracks) => {
            let objects = Objects::new(&settings.out);
            let job_dir = format!("{}/{job_id}", job.asset);
            let put = |key: String, body: &str| {
                objects
                    .put(&key, body.as_bytes())
                    .map_err(|e| PipelineError::Io(format!("writing {key}"), e))
            };
            for t in &tracks {
                put(
                    format!("{job_dir}/{}", package::media_playlist_name(t)),
                    &package::media_playlist(t),
                )?;
            }
            put(
                format!("{job_dir}/master.m3u8"),
                &package::master_playlist(&tracks, ""),
            )?;
            put(
                format!("{job_dir}/manifest.mpd"),
                &package::mpd(&tracks, ""),
            )?;
            // Pointers last: until now, players still see the previous version (if any).
            let prefix = format!("{job_id}/");
            let master = format!("{}/master.m3u8", job.asset);
            let dash = format!("{}/manifest.mpd", job.asset);
            put(master.clone(), &package::master_playlist(&tracks, &prefix))?;
            put(dash.clone(), &package::mpd(&tracks, &prefix))?;
            store.publish(job_id, &master, &dash)?;
            tracing::info!(job = %job_id, %master, "published");
        }
        Err(reason) => {
            store.transition(
                job_id,
                &[JobStatus::Stitching],
                JobStatus::Failed,
                Some(&reason),
            )?;
        }
    }
    Ok(())
}

/// Assembles each rendition's segment list from the committed results, checking that all
/// chunks of a rung can share one init segment.
fn build_tracks(store: &Store, job_id: &str) -> Result<Vec<Track>, String> {
    let (media_json, _, rungs_json, _) = store.job_documents(job_id).map_err(|e| e.to_string())?;
    let media: MediaInfo = serde_json::from_str(&media_json).map_err(|e| e.to_string())?;
    let rungs: Vec<Rung> = serde_json::from_str(&rungs_json).map_err(|e| e.to_string())?;
    let results = store.results(job_id).map_err(|e| e.to_string())?;
    let video = media.video.as_ref().ok_or("source has no video stream")?;
    let mut by_rung: HashMap<String, Track> = HashMap::new();
    let mut stsd: HashMap<String, String> = HashMap::new();
    let mut audio = Vec::new();
    for (kind, idx, json) in &results {
        let tracks: Vec<TrackResult> = serde_json::from_str(json).map_err(|e| e.to_string())?;
        for t in tracks {
            if kind == "audio" {
                let info = media.audio.get(*idx as usize);
                let language = info.and_then(|a| a.language.clone());
                let name = info
                    .and_then(|a| a.title.clone())
                    .or_else(|| language.clone())
                    .unwrap_or_else(|| format!("Audio {}", idx + 1));
                audio.push(Track {
                    id: t.name,
                    kind: TrackKind::Audio { language, name },
                    codec: t.codec,
                    timescale: t.timescale,
                    init_uri: t.init_uri,
                    segments: t.segments,
                });
                continue;
            }
            let expected = stsd
                .entry(t.name.clone())
                .or_insert_with(|| t.stsd_hash.clone());
            if *expected != t.stsd_hash {
                return Err(format!("chunk {idx} of rung {} has a different codec configuration than chunk 0; cannot share one init segment", t.name));
            }
            let rung = rungs
                .iter()
                .find(|r| r.name == t.name)
                .ok_or_else(|| format!("unknown rung {}", t.name))?;
            let entry = by_rung.entry(t.name.clone()).or_insert_with(|| Track {
                id: t.name.clone(),
                kind: TrackKind::Video {
                    width: rung.width,
                    height: rung.height,
                    frame_rate: (video.frame_rate.num, video.frame_rate.den),
                },
                codec: t.codec.clone(),
                timescale: t.timescale,
                init_uri: t.init_uri.clone(),
                segments: Vec::new(),
            });
            entry.segments.extend(t.segments);
        }
    }
    let mut tracks: Vec<Track> = rungs
        .iter()
        .filter_map(|r| by_rung.remove(&r.name))
        .collect();
    if tracks.len() != rungs.len() {
        return Err("some renditions have no committed segments".into());
    }
    audio.sort_by(|a, b| a.id.cmp(&b.id));
    tracks.extend(audio);
    Ok(tracks)
}
