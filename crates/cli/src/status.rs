//! `status` and `jobs`: where every job stands, for people (tables) and scripts (JSON).
//!
//! Everything comes from the job store's indexes (by id, by source, by state), never from
//! a scan of outputs.

use crate::arg_values::parse_status;
use crate::backend::{Backend, StateOpts};
use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Value};
use std::time::Duration;
use vodpipe_control::cost::{compute_cost, output_minutes, WorkerSize};
use vodpipe_control::job::JobStatus;
use vodpipe_control::ports::{JobRecord, ObjectStore, Queue, Tier};

/// Arguments of `vodpipe status`.
#[derive(Args)]
pub struct StatusArgs {
    /// Job id, or the source file it was ingested from.
    job: String,
    #[command(flatten)]
    state: StateOpts,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `vodpipe jobs`.
#[derive(Args)]
pub struct JobsArgs {
    #[command(flatten)]
    state: StateOpts,
    /// Only jobs in this state.
    #[arg(long, value_parser = parse_status)]
    status: Option<JobStatus>,
    /// Print JSON (one object per line).
    #[arg(long)]
    json: bool,
    /// Redraw every second until interrupted.
    #[arg(long)]
    watch: bool,
}

fn secs_between(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(b? - a?).map(|d| (d * 1000.0).round() / 1000.0)
}

/// The JSON view of a job: what `run --json` prints per line and `status --json` prints.
pub fn job_json(objects: &dyn ObjectStore, j: &JobRecord) -> Value {
    let locate = |k: &Option<String>| k.as_ref().map(|k| objects.locate(k));
    let spent = j.encode_secs + j.wasted_secs;
    let poster_key = vodpipe_control::outputs::published_key(j, "poster");
    let thumbnails_key = vodpipe_control::outputs::published_key(j, "thumbnails");
    json!({
        "job_id": j.id,
        "source": j.source,
        "status": j.status.as_str(),
        "tier": j.tier.as_str(),
        "settings": j.settings,
        "error": j.error,
        "master": locate(&j.master_key),
        "dash": locate(&j.dash_key),
        "master_key": j.master_key,
        "output_prefix": objects.locate(&format!("{}/", j.asset)),
        "dash_key": j.dash_key,
        "renditions": j.renditions,
        "protection": vodpipe_control::outputs::protection(j),
        "subtitles": vodpipe_control::outputs::subtitle_languages(j),
        "poster": locate(&poster_key),
        "poster_key": poster_key,
        "thumbnails": locate(&thumbnails_key),
        "thumbnails_key": thumbnails_key,
        "chunks_done": j.done,
        "chunks_total": j.total,
        "progress": if j.frames_total > 0 { (j.frames_done as f64 / j.frames_total as f64 * 1000.0).round() / 1000.0 } else { 0.0 },
        "attempts": j.attempts,
        "failures": j.failures,
        "interruptions": j.interruptions,
        "stitch_count": j.stitch_count,
        "duration_secs": j.duration_secs,
        "output_minutes": (output_minutes(j.duration_secs, j.rungs) * 1000.0).round() / 1000.0,
        "timings": {
            // A worker may start before the last message is sent: a wait is never negative.
            "queue_wait_secs": secs_between(j.queued_at, j.started_at).map(|w| w.max(0.0)),
            "encode_secs": (j.encode_secs * 1000.0).round() / 1000.0,
            "wasted_secs": (j.wasted_secs * 1000.0).round() / 1000.0,
            "stitch_secs": secs_between(j.stitch_started_at, j.finished_at).filter(|_| j.status == JobStatus::Published),
            "total_secs": secs_between(Some(j.created_at), j.finished_at),
        },
        "estimated_cost_usd": (compute_cost(j.tier, spent, WorkerSize::default()) * 1e6).round() / 1e6,
        // What the plan was estimated to cost before anything was encoded, and the budget
        // it was checked against.
        "planned_cost_usd": j.planned_cost_usd.map(|c| (c * 1e9).round() / 1e9),
        "max_cost_usd": j.settings.as_ref().and_then(|s| s.max_cost_usd.as_ref()).map(|b| b.value),
        "elapsed_secs": secs_between(Some(j.created_at), j.finished_at),
    })
}

/// Finds a job by id, or by the source it came from (the newest one).
fn find(backend: &Backend, job: &str) -> Result<JobRecord> {
    if let Some(j) = backend.jobs().job(job)? {
        return Ok(j);
    }
    let source = std::fs::canonicalize(job)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| job.to_string());
    backend
        .jobs()
        .jobs_by_source(&source)?
        .into_iter()
        .next()
        .with_context(|| format!("no job with id or source {job}"))
}

/// Why the workers a job waits for cannot start, if they cannot: its tier's, or
/// on-demand capacity's (where its items escalate), recorded failed launches.
fn workers_trouble(backend: &Backend, j: &JobRecord) -> Result<Option<String>> {
    if j.status.is_final() {
        return Ok(None);
    }
    for tier in [j.tier, Tier::Premium] {
        if let Some(t) = backend.jobs().launch_trouble(tier)? {
            return Ok(Some(vodpipe_control::sweep::launch_trouble_text(
                tier,
                &t,
                backend.launch_backoff_secs(),
            )));
        }
    }
    Ok(None)
}

/// `vodpipe status`.
pub fn status(a: StatusArgs) -> Result<i32> {
    let StatusArgs {
        job,
        state,
        json: as_json,
    } = a;
    let backend = state.open(None, 0, None, true)?;
    let j = find(&backend, &job)?;
    let mut v = job_json(backend.objects(), &j);
    let trouble = workers_trouble(&backend, &j)?;
    v["workers_cannot_start"] = json!(trouble);
    if as_json {
        println!("{v}");
        return Ok(0);
    }
    println!("job       {}", j.id);
    println!("source    {}", j.source);
    println!(
        "state     {}{}",
        j.status,
        j.error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    );
    println!("tier      {}{}", j.tier, from(&j, |s| s.tier.from));
    if let Some(s) = &j.settings {
        println!(
            "settings  ladder {} ({}), segments {} s ({}), codecs {} ({}), asset {} ({})",
            s.ladder.value,
            origin(s.ladder.from),
            s.segment_seconds.value,
            origin(s.segment_seconds.from),
            s.codecs.value.join(","),
            origin(s.codecs.from),
            s.asset.value,
            origin(s.asset.from)
        );
    }
    if let Some(p) = vodpipe_control::outputs::protection(&j) {
        println!("protected {}", p.describe());
    } else if let Some(d) = j.settings.as_ref().and_then(|s| s.drm.as_ref()) {
        println!(
            "protected {} ({}), keys from {}",
            d.value.scheme.as_str(),
            origin(d.from),
            d.value
                .speke_url
                .as_deref()
                .unwrap_or("the worker's key file")
        );
    }
    let budget = j
        .settings
        .as_ref()
        .and_then(|s| s.max_cost_usd.as_ref())
        .map(|b| {
            format!(
                ", budget {} ({})",
                vodpipe_control::cost::usd(b.value),
                origin(b.from)
            )
        })
        .unwrap_or_default();
    if let Some(c) = j.planned_cost_usd {
        println!(
            "planned   estimated cost {} before encoding{budget}",
            vodpipe_control::cost::usd(c)
        );
    } else if !budget.is_empty() {
        println!("planned   not yet{budget}");
    }
    println!(
        "progress  {}/{} items, {}/{} frames",
        j.done, j.total, j.frames_done, j.frames_total
    );
    if let Some(t) = &trouble {
        println!("workers   {t}");
    }
    println!(
        "attempts  {} ({} failed, {} interrupted)",
        j.attempts, j.failures, j.interruptions
    );
    println!("timings   {}", v["timings"]);
    println!(
        "output    {:.2} min, estimated cost ${:.4}",
        v["output_minutes"].as_f64().unwrap_or(0.0),
        v["estimated_cost_usd"].as_f64().unwrap_or(0.0)
    );
    if let (Some(m), Some(d)) = (v["master"].as_str(), v["dash"].as_str()) {
        println!("HLS       {m}\nDASH      {d}");
    }
    Ok(0)
}

fn origin(o: vodpipe_control::settings::Origin) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// " (from metadata)": where one of a job's settings came from, if it recorded them.
fn from(
    j: &JobRecord,
    which: impl Fn(&vodpipe_control::settings::JobSettings) -> vodpipe_control::settings::Origin,
) -> String {
    j.settings
        .as_ref()
        .map(|s| format!(" (from {})", origin(which(s))))
        .unwrap_or_default()
}

fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 {
        0
    } else {
        ((done as f64 / total as f64) * width as f64).round() as usize
    }
    .min(width);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

fn column(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Queued | JobStatus::Probing => "pending",
        JobStatus::Encoding | JobStatus::Stitching => "processing",
        JobStatus::Published => "published",
        JobStatus::Failed => "failed",
    }
}

fn table(backend: &Backend, jobs: &[JobRecord]) -> Result<String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let depth: Vec<String> = Tier::ALL
        .iter()
        .map(|t| Ok(format!("{t} {}", backend.queue().depth(Queue::Work(*t))?)))
        .collect::<Result<_>>()?;
    let count = |c: &str| jobs.iter().filter(|j| column(j.status) == c).count();
    let _ = writeln!(
        out,
        "{} pending  {} processing  {} published  {} failed   queues: {}",
        count("pending"),
        count("processing"),
        count("published"),
        count("failed"),
        depth.join(", ")
    );
    for tier in Tier::ALL {
        if let Some(t) = backend.jobs().launch_trouble(tier)? {
            let _ = writeln!(
                out,
                "WARNING: {}",
                vodpipe_control::sweep::launch_trouble_text(
                    tier,
                    &t,
                    backend.launch_backoff_secs()
                )
            );
        }
    }
    let _ = writeln!(
        out,
        "{:<16} {:<10} {:<9} {:<13} {:<22} {:>7} {:>5}  SOURCE",
        "JOB", "STATE", "TIER", "TIER FROM", "PROGRESS", "ITEMS", "INT"
    );
    for j in jobs {
        let _ = writeln!(
            out,
            "{:<16} {:<10} {:<9} {:<13} {:<22} {:>7} {:>5}  {}{}",
            j.id,
            j.status.as_str(),
            j.tier.as_str(),
            j.settings
                .as_ref()
                .map(|s| origin(s.tier.from))
                .unwrap_or_else(|| "-".into()),
            bar(j.frames_done, j.frames_total, 20),
            format!("{}/{}", j.done, j.total),
            j.interruptions,
            j.source,
            j.error
                .as_ref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        );
    }
    Ok(out)
}

/// `vodpipe jobs`.
pub fn jobs(a: JobsArgs) -> Result<i32> {
    let JobsArgs {
        state,
        status,
        json: as_json,
        watch,
    } = a;
    let backend = state.open(None, 0, None, true)?;
    loop {
        let jobs = backend.jobs().jobs_by_status(status)?;
        if as_json {
            for j in &jobs {
                println!("{}", job_json(backend.objects(), j));
            }
        } else {
            let t = table(&backend, &jobs)?;
            if watch {
                print!("\x1b[2J\x1b[H");
            }
            print!("{t}");
        }
        if !watch {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
