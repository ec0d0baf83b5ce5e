//! `vodpipe simulate`: the flags, a summary for people on stderr, the JSON line last.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use vodpipe_sim::engine::{BatchRun, Burst, Invalidation, Params, BENCH_PIXELS_PER_VCPU_SECOND};
use vodpipe_sim::mix::Mix;
use vodpipe_sim::template::{self, Reading, MAX_WORKERS_PER_TIER};

/// What to simulate; the limits default to a new AWS account's, the deployment's come
/// from the stack's template (`infra/template.yaml`).
#[derive(Args)]
pub struct SimulateArgs {
    /// Uploads arriving per hour (Poisson).
    #[arg(long, default_value_t = 1000.0)]
    uploads_per_hour: f64,
    /// Hours of arrivals (the run then drains, for at most a day).
    #[arg(long, default_value_t = 1.0)]
    hours: f64,
    /// Instead of Poisson arrivals: this many uploads, evenly spaced over
    /// --burst-seconds (to replay a measured load run).
    #[arg(long)]
    burst: Option<u64>,
    /// The seconds the --burst arrives over (0: all at once).
    #[arg(long, default_value_t = 0.0, requires = "burst")]
    burst_seconds: f64,
    /// The SAM template whose settings to model (default: infra/template.yaml in this
    /// directory or the nearest one above it; without one, the built-in defaults).
    #[arg(long)]
    template: Option<PathBuf>,
    /// A template parameter's value, Name=Value, as `sam deploy --parameter-overrides`
    /// would give it (repeatable), e.g. StitchMaxConcurrency=40 or WarmWorkersPerTier=2.
    #[arg(long = "parameter", value_name = "NAME=VALUE")]
    parameters: Vec<String>,
    /// Model the stitch function running a batch's stitches one after another (as the old
    /// stitch function did) instead of all at once.
    #[arg(long)]
    stitch_one_after_another: bool,
    /// Seconds one ingest takes (probe, plan, queue the items).
    #[arg(long, default_value_t = 3.0)]
    ingest_seconds: f64,
    /// Seconds one job's stitch takes (manifests, pointers, publish).
    #[arg(long, default_value_t = 1.5)]
    stitch_seconds: f64,
    /// Seconds a worker spends on an item around its encode (source, seek, store,
    /// commit).
    #[arg(long, default_value_t = 2.0)]
    item_seconds: f64,
    /// Seconds of video per chunk (the ingest function's `VODPIPE_CHUNK_SECONDS`).
    #[arg(long, default_value_t = 20.0)]
    chunk_seconds: f64,
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
    /// The stack's MaxWorkersPerTier (default: the template's; the same as
    /// --parameter MaxWorkersPerTier=N).
    #[arg(long)]
    max_workers_per_tier: Option<u32>,
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
    anyhow::ensure!(
        [a.ingest_seconds, a.stitch_seconds, a.item_seconds, a.task_start_seconds]
            .iter()
            .all(|s| s.is_finite() && *s >= 0.0),
        "--ingest-seconds, --stitch-seconds, --item-seconds and --task-start-seconds must be 0 or more"
    );
    anyhow::ensure!(
        a.burst_seconds.is_finite() && a.burst_seconds >= 0.0,
        "--burst-seconds must be 0 or more"
    );
    let reading = deployment(&a)?;
    let mut p = Params::new(a.uploads_per_hour, a.hours);
    p.deployment = reading.deployment;
    if let Some(n) = a.burst {
        anyhow::ensure!(n > 0, "--burst must be at least 1");
        p.burst = Some(Burst {
            uploads: n,
            secs: a.burst_seconds,
        });
    }
    if a.stitch_one_after_another {
        p.stitch_batch = BatchRun::OneAfterAnother;
    }
    p.overheads.ingest_secs = a.ingest_seconds;
    p.overheads.stitch_secs = a.stitch_seconds;
    p.overheads.item_secs = a.item_seconds;
    anyhow::ensure!(
        a.chunk_seconds >= p.segment_secs,
        "--chunk-seconds must be at least the segment duration ({} s)",
        p.segment_secs
    );
    p.chunk_secs = a.chunk_seconds;
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
    p.idle_exit_secs = a.idle_exit_seconds;
    p.pixels_per_vcpu_second = a.encode_speed;
    p.seed = a.seed;
    if a.invalidate_every_publish {
        p.invalidation = Invalidation::EveryPublish;
    }
    let started = std::time::Instant::now();
    let outcome = vodpipe_sim::simulate(p.clone());
    let mut report = vodpipe_sim::report::json(&p, &outcome);
    report["template"] = serde_json::json!({
        "source": reading.source,
        "notes": reading.notes,
    });
    if let Some(path) = &a.plot {
        let arrivals = match p.burst {
            Some(b) => format!("{} uploads over {} s", b.uploads, b.secs),
            None => format!("{} uploads/h for {} h", a.uploads_per_hour, a.hours),
        };
        let title =
            format!("{arrivals}: queued items, worker tasks, p95 publish latency, function queues");
        let svg = vodpipe_sim::plot::svg(&outcome.samples, &title)
            .map_err(|e| anyhow::anyhow!("drawing the plot: {e}"))?;
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    if !a.json {
        summary(&p, &reading, &outcome, &report);
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
        let p95 = |t: &str| report["publish_seconds"][t]["p95"].as_f64().unwrap_or(0.0);
        eprintln!(
            "p95 publish: premium {:.0} s, standard {:.0} s, bulk {:.0} s; drain {:.0} s (first upload to last publish)",
            p95("premium"),
            p95("standard"),
            p95("bulk"),
            vodpipe_sim::report::drain_secs(&outcome)
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

/// The deployment to model: the template (given, or found above the current directory)
/// with the --parameter overrides, or the built-in defaults when there is none.
fn deployment(a: &SimulateArgs) -> Result<Reading> {
    let mut overrides = template::parse_overrides(&a.parameters)?;
    if let Some(n) = a.max_workers_per_tier {
        let n = n.to_string();
        match overrides.get(MAX_WORKERS_PER_TIER) {
            Some(v) if *v != n => anyhow::bail!(
                "--max-workers-per-tier {n} and --parameter {MAX_WORKERS_PER_TIER}={v} disagree"
            ),
            _ => {
                overrides.insert(MAX_WORKERS_PER_TIER.to_string(), n);
            }
        }
    }
    let path = match &a.template {
        Some(p) => Some(p.clone()),
        None => {
            let here = std::env::current_dir().context("the current directory")?;
            template::find_default(&here)
                .map(|p| p.strip_prefix(&here).map_or(p.clone(), PathBuf::from))
        }
    };
    Ok(match path {
        Some(path) => template::read(&path, &overrides)?,
        None => template::defaults_only(
            &overrides,
            "no infra/template.yaml here or above (and no --template)",
        )?,
    })
}

/// The deployment the run modelled and what its function queues did, for people.
fn summary(p: &Params, reading: &Reading, o: &vodpipe_sim::Outcome, report: &serde_json::Value) {
    let d = &p.deployment;
    let from = format!("(from {})", reading.source);
    eprintln!(
        "ingest: batch {}, at most {} at once, {} s timeout {from}; {} s an upload, after waiting {} s for a settings file",
        d.ingest.batch_size,
        d.ingest.max_concurrency,
        d.ingest.timeout_secs,
        p.overheads.ingest_secs,
        d.settings_wait_secs
    );
    eprintln!(
        "stitch: batch {}, at most {} at once, {} s timeout {from}; a batch's stitches run {}, {} s each",
        d.stitch.batch_size,
        d.stitch.max_concurrency,
        d.stitch.timeout_secs,
        match p.stitch_batch {
            BatchRun::Concurrently => "at once",
            BatchRun::OneAfterAnother => "one after another",
        },
        p.overheads.stitch_secs
    );
    eprintln!(
        "workers: at most {} per tier, {} per tier kept warm (${:.2}/h) {from}",
        d.max_workers_per_tier,
        d.warm_workers_per_tier,
        vodpipe_sim::report::warm_usd_per_hour(p)
    );
    for n in &reading.notes {
        eprintln!("note: {n}");
    }
    for (name, q) in [("ingest", &o.ingest_queue), ("stitch", &o.stitch_queue)] {
        let backlog = match q.drained_secs {
            _ if q.backlog_peak == 0 => "no message waited".to_string(),
            Some(t) => format!(
                "largest backlog {} at {:.0} s, drained at {t:.0} s",
                q.backlog_peak, q.backlog_peak_secs
            ),
            None => format!(
                "largest backlog {} at {:.0} s, still waiting when the run stopped",
                q.backlog_peak, q.backlog_peak_secs
            ),
        };
        eprintln!(
            "{name} queue: {backlog}; at most {} invocations at once",
            q.concurrency_peak
        );
    }
    let rate = &report["stitch_jobs_per_second"];
    eprintln!(
        "stitch rate: {} jobs/s at most in a second, {} in the best 10 s, {} over the drain",
        rate["peak_1s"], rate["peak_10s"], rate["mean"]
    );
    if o.stitch_queue.timeouts > 0 || o.ingest_queue.timeouts > 0 {
        eprintln!(
            "timeouts: {} stitches and {} ingests ran past their function's timeout ({} and {} dead-lettered)",
            o.stitch_queue.timeouts,
            o.ingest_queue.timeouts,
            o.stitch_queue.dead_letters,
            o.ingest_queue.dead_letters
        );
    }
}
