//! `vodpipe simulate`: the flags, a summary for people on stderr, the JSON line last.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use vodpipe_sim::engine::{Invalidation, Params, BENCH_PIXELS_PER_VCPU_SECOND};
use vodpipe_sim::mix::Mix;

/// What to simulate; the limits default to a new AWS account's and the stack's defaults.
#[derive(Args)]
pub struct SimulateArgs {
    /// Uploads arriving per hour (Poisson).
    #[arg(long, default_value_t = 1000.0)]
    uploads_per_hour: f64,
    /// Hours of arrivals (the run then drains, for at most a day).
    #[arg(long, default_value_t = 1.0)]
    hours: f64,
    /// Upload mix (JSON: {"classes": [{"name", "weight", "min_secs", "max_secs", "width",
    /// "height", "fps", "audio_tracks", "tiers": {"premium", "standard", "bulk"}}]}).
    #[arg(long)]
    mix: Option<PathBuf>,
    /// Spot interruptions per Spot task-hour.
    #[arg(long, default_value_t = 0.05)]
    spot_interruptions_per_hour: f64,
    /// Seconds from RunTask to a worker taking work (image pull and start).
    #[arg(long, default_value_t = 60.0)]
    task_start_seconds: f64,
    /// Fargate vCPU quota per pool (On-Demand and Spot each; AWS's default is 6).
    #[arg(long, default_value_t = 6)]
    vcpu_quota: u32,
    /// Fargate task launches per second per pool.
    #[arg(long, default_value_t = 20.0)]
    launch_rate: f64,
    /// Lambda concurrent executions.
    #[arg(long, default_value_t = 1000)]
    lambda_concurrency: u32,
    /// The stack's MaxWorkersPerTier.
    #[arg(long, default_value_t = 20)]
    max_workers_per_tier: u32,
    /// Seconds a worker waits for work before it exits.
    #[arg(long, default_value_t = 60.0)]
    idle_exit_seconds: f64,
    /// Encoder throughput, pixels per vCPU-second (default: `make bench` on this code).
    #[arg(long, default_value_t = BENCH_PIXELS_PER_VCPU_SECOND)]
    encode_speed: f64,
    /// Invalidate both pointers on every publish (the old policy) instead of only when a
    /// publish replaces a version.
    #[arg(long)]
    invalidate_every_publish: bool,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print only the JSON line.
    #[arg(long)]
    json: bool,
    /// Write queue depth, tasks and p95 latency over time to this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// Runs the simulation and prints its answer.
pub fn simulate(a: SimulateArgs) -> Result<i32> {
    anyhow::ensure!(
        a.uploads_per_hour > 0.0 && a.hours > 0.0,
        "--uploads-per-hour and --hours must be positive"
    );
    anyhow::ensure!(a.encode_speed > 0.0, "--encode-speed must be positive");
    let mut p = Params::new(a.uploads_per_hour, a.hours);
    if let Some(path) = &a.mix {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        p.mix = Mix::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    p.spot_interruptions_per_hour = a.spot_interruptions_per_hour;
    p.task_start_secs = a.task_start_seconds;
    p.vcpu_quota = a.vcpu_quota;
    p.launch_rate = a.launch_rate;
    p.lambda_concurrency = a.lambda_concurrency;
    p.max_workers_per_tier = a.max_workers_per_tier;
    p.idle_exit_secs = a.idle_exit_seconds;
    p.pixels_per_vcpu_second = a.encode_speed;
    p.seed = a.seed;
    if a.invalidate_every_publish {
        p.invalidation = Invalidation::EveryPublish;
    }
    let started = std::time::Instant::now();
    let outcome = vodpipe_sim::simulate(p.clone());
    let report = vodpipe_sim::report::json(&p, &outcome);
    if let Some(path) = &a.plot {
        let title = format!(
            "{} uploads/h for {} h: queued items, worker tasks, p95 publish latency",
            a.uploads_per_hour, a.hours
        );
        let svg = vodpipe_sim::plot::svg(&outcome.samples, &title)
            .map_err(|e| anyhow::anyhow!("drawing the plot: {e}"))?;
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    if !a.json {
        eprintln!(
            "{} uploads, {} published, {:.0} output minutes in {:.1} s of simulation",
            outcome.uploads,
            outcome.published,
            outcome.output_minutes,
            started.elapsed().as_secs_f64()
        );
        eprintln!(
            "peak tasks: premium {}, standard {}, bulk {}",
            outcome.tasks_peak[0], outcome.tasks_peak[1], outcome.tasks_peak[2]
        );
        eprintln!(
            "cost per output minute: ${:.6} (MediaConvert basic: ${})",
            report["cost_per_output_minute_usd"]["total"],
            vodpipe_sim::report::MEDIACONVERT_PER_MINUTE
        );
        match report["bottleneck"].as_str() {
            Some(b) => eprintln!("bottleneck: {b}"),
            None => eprintln!("no limit was hit"),
        }
    }
    println!("{report}");
    Ok(0)
}
