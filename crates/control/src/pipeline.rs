//! The pipeline's shared configuration and the bundle of ports the use-cases run on.

use crate::ports::{Cdn, Fleet, JobStore, ObjectStore, WorkQueue};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;
use vodpipe_media::ladder::LadderConfig;
use vodpipe_media::ladder::Rung;
use vodpipe_media::plan::{Plan, PlanOptions};
use vodpipe_media::policy::InputPolicy;
use vodpipe_media::probe::MediaInfo;

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
}
