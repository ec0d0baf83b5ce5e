//! `vodpipe worker`: one worker process, the unit the embedded fleet starts (and a person
//! may start by hand, on either backend): leases queued items and encodes them until
//! stopped or idle.

use crate::arg_values::parse_tier;
use crate::backend::StateOpts;
use anyhow::{Context, Result};
use clap::Args;
use std::time::{Duration, Instant};
use vodpipe_control::pipeline::Config;
use vodpipe_control::ports::Tier;
use vodpipe_control::worker::{Shutdown, Worker};

/// Arguments of `vodpipe worker`.
#[derive(Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    state: StateOpts,
    /// Tiers to serve, comma-separated, in any order (premium is always tried first).
    #[arg(long, env = "VODPIPE_TIERS", value_delimiter = ',', default_value = "premium,standard,bulk", value_parser = parse_tier)]
    tiers: Vec<Tier>,
    /// Exit after this many seconds without work (default: never).
    #[arg(long)]
    idle_exit: Option<u64>,
    /// Lease and message visibility, in seconds; heartbeats renew them every third.
    #[arg(long, default_value_t = 30)]
    lease_seconds: u64,
    /// ffmpeg binary.
    #[arg(long, env = "VODPIPE_FFMPEG", default_value = "ffmpeg")]
    ffmpeg: String,
    /// Leave the stitch queue alone (a deployed stack's stitch function consumes it).
    #[arg(long)]
    no_stitch: bool,
    /// The key file to encrypt with when a job asks for protection without a key server
    /// (see `vodpipe run --drm-keys`).
    #[arg(long, env = "VODPIPE_DRM_KEYS")]
    drm_keys: Option<std::path::PathBuf>,
}

/// `vodpipe worker`: runs until SIGTERM, SIGINT or `--idle-exit`.
pub fn worker(a: WorkerArgs) -> Result<i32> {
    let backend = a.state.open(None, 0, None, false)?;
    let shutdown = Shutdown::new();
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, shutdown.flag()).context("installing signal handlers")?;
    }
    let mut cfg = Config::new(a.state.scratch()?);
    cfg.ffmpeg = a.ffmpeg;
    cfg.lease_ttl = Duration::from_secs(a.lease_seconds.max(3));
    if let Some(path) = &a.drm_keys {
        cfg.keys.file = Some(std::sync::Arc::new(
            vodpipe_control::keys::KeyFile::read(path)
                .map_err(|e| anyhow::anyhow!("--drm-keys {e}"))?,
        ));
    }
    let owner = format!("{}-{}", hostname(), std::process::id());
    let mut w = Worker::new(backend.ports(), cfg, owner, a.tiers, shutdown.clone());
    if a.no_stitch {
        w = w.without_stitching();
    }
    let started = Instant::now();
    w.run(a.idle_exit.map(Duration::from_secs))?;
    // A stop is news only when it cut an attempt short, and that attempt already said so
    // ("interrupted; giving the item back"); an idle worker stopped by `run` is routine.
    if shutdown.is_triggered() {
        tracing::info!(after = ?started.elapsed(), "stopped by signal");
    }
    Ok(0)
}

/// This machine's name, for the lease owner: which machine holds an item is what an
/// operator reading a job's attempts wants to know.
fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "local".into())
}
