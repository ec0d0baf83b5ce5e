//! The Fargate worker task: configuration from the environment, JSON logs, one worker on
//! the AWS backend until it is idle (so the fleet scales to zero) or told to stop.
//!
//! Fargate Spot sends SIGTERM two minutes before reclaiming the task (`stopTimeout` 120):
//! the worker kills ffmpeg within milliseconds, gives its lease and message back, records
//! the interruption and exits well inside the window.
//!
//! Environment: the `VODPIPE_…` names printed by `vodpipe aws bootstrap`, plus
//! `VODPIPE_TIERS` (default all), `VODPIPE_IDLE_EXIT_SECS` (default 60),
//! `VODPIPE_LEASE_SECS` (default 30), `VODPIPE_SCRATCH` (default /tmp/vodpipe) and
//! `VODPIPE_FFMPEG` (default `ffmpeg`), `VODPIPE_METRICS` (`emf`: CloudWatch embedded
//! metrics on stdout), `VODPIPE_EVENT_BUS` (job-state events for the jobs this task fails)
//! and `VODPIPE_WORKER_STITCHES` (default `false`: the stitch function consumes the stitch
//! queue; `true` where no function is deployed), and `VODPIPE_WARM` (`true` on the tasks
//! the fleet starts to keep a tier's warm minimum: they leave after their idle time only,
//! never by the fleet's scale-in rule), and `VODPIPE_SPEKE_ROLE_ARN` (a role to assume for
//! signing requests to a SPEKE key server; default: the task role).

use anyhow::{Context, Result};
use std::time::Duration;
use vodpipe_control::pipeline::Config;
use vodpipe_control::ports::Tier;
use vodpipe_control::worker::{Shutdown, Worker};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VODPIPE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    vodpipe_control::metrics::enable_from_env();
    let shutdown = Shutdown::new();
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, shutdown.flag()).context("installing signal handlers")?;
    }
    let tiers: Vec<Tier> = env_or("VODPIPE_TIERS", "premium,standard,bulk")
        .split(',')
        .filter_map(Tier::parse)
        .collect();
    anyhow::ensure!(
        !tiers.is_empty(),
        "VODPIPE_TIERS names no tier (premium, standard, bulk)"
    );
    let idle = Duration::from_secs(
        env_or("VODPIPE_IDLE_EXIT_SECS", "60")
            .parse()
            .context("VODPIPE_IDLE_EXIT_SECS")?,
    );
    let mut cfg = Config::new(env_or("VODPIPE_SCRATCH", "/tmp/vodpipe"));
    cfg.ffmpeg = env_or("VODPIPE_FFMPEG", "ffmpeg");
    cfg.lease_ttl = Duration::from_secs(
        env_or("VODPIPE_LEASE_SECS", "30")
            .parse::<u64>()
            .context("VODPIPE_LEASE_SECS")?
            .max(3),
    );
    let aws = vodpipe_aws::Aws::from_env().context("connecting to AWS")?;
    // Requests to a SPEKE key server are signed (SigV4, execute-api), as the reference
    // server behind API Gateway requires, with the task role or VODPIPE_SPEKE_ROLE_ARN.
    let role = env_or("VODPIPE_SPEKE_ROLE_ARN", "");
    cfg.keys.signer = Some(std::sync::Arc::new(
        vodpipe_aws::speke::SpekeSigner::new(
            aws.bridge.clone(),
            (!role.is_empty()).then_some(role.as_str()),
        )
        .map_err(|e| anyhow::anyhow!("SPEKE signing: {e}"))?,
    ));
    // A Fargate task's host name is its own (its private address), so leases and the
    // console's timeline can tell tasks apart; the process id separates tasks that share
    // a host (the emulator).
    let owner = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "task".into()),
        std::process::id()
    );
    let stitches = match env_or("VODPIPE_WORKER_STITCHES", "false").as_str() {
        "true" | "1" => true,
        "false" | "0" => false,
        other => anyhow::bail!("VODPIPE_WORKER_STITCHES is {other:?}; use true or false"),
    };
    tracing::info!(?tiers, ?idle, stitches, "worker task starting");
    // This task started: its tiers' launches work (a failed-launch back-off ends here).
    for tier in &tiers {
        if let Err(e) = vodpipe_control::ports::JobStore::clear_launch_trouble(&aws.state, *tier) {
            tracing::warn!(%tier, error = %e, "could not clear the tier's failed launches");
        }
    }
    let warm = match env_or("VODPIPE_WARM", "false").as_str() {
        "true" | "1" => true,
        "false" | "0" => false,
        other => anyhow::bail!("VODPIPE_WARM is {other:?}; use true or false"),
    };
    // Jobs this task fails (or publishes, where it stitches) are announced through the
    // ports, on EventBridge (`VODPIPE_EVENT_BUS`), like the functions' changes.
    let mut worker = Worker::new(aws.ports(), cfg, owner, tiers, shutdown.clone());
    // A task of a fleet also leaves when mostly idle, so the fleet shrinks after a peak;
    // a warm one is there to be idle.
    if !warm {
        worker = worker.with_scale_in();
    }
    if !stitches {
        worker = worker.without_stitching();
    }
    worker.run(Some(idle))?;
    tracing::info!(interrupted = shutdown.is_triggered(), "worker task exiting");
    Ok(())
}
