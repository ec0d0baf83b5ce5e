//! `vodpipe run`: the whole pipeline on local files in one command, for someone who has
//! files and wants the ladder, not a deployment: an embedded state under the output
//! directory, a fleet of worker processes, progress until every job is final.

use crate::arg_values::parse_tier;
use crate::local_state::{local_source, open_with, with_profiles};
use crate::media_opts::{config, MediaOpts};
use crate::{backend, progress, status};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use vodpipe_control::ingest::ingest;
use vodpipe_control::job::JobStatus;
use vodpipe_control::ports::Tier;

/// Arguments of `vodpipe run`.
#[derive(Args)]
pub struct RunArgs {
    /// Source video files.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output directory: published assets appear under it.
    #[arg(long)]
    out: PathBuf,
    /// Worker processes (default: half the cores, at least two, at most one per core).
    /// Each encodes one chunk at a time with threads on every core; two or more keep the
    /// cores busy while one starts, seeks or drains its encoder (see the benchmark in
    /// docs/performance.md).
    #[arg(long)]
    workers: Option<u32>,
    /// Tier for the jobs; beats a settings file beside an input (default: the settings
    /// file's, else standard).
    #[arg(long, value_parser = parse_tier)]
    tier: Option<Tier>,
    /// Print one JSON object per job on stdout instead of progress bars.
    #[arg(long)]
    json: bool,
    /// State directory (default: OUT/.vodpipe).
    #[arg(long)]
    state: Option<PathBuf>,
    #[command(flatten)]
    media: MediaOpts,
}

/// `vodpipe run`: exits 1 when any job did not publish.
pub fn run(a: RunArgs) -> Result<i32> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let state = a
        .state
        .clone()
        .unwrap_or_else(|| a.out.join(backend::RUN_STATE));
    let workers = a.workers.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
        (cores / 2).max(2).min(cores.max(1))
    });
    let local = with_profiles(
        open_with(
            &state,
            Some(&a.out),
            workers,
            5,
            Some(&a.media.ffmpeg),
            a.media.drm_keys.as_deref(),
        )?,
        a.media.profiles.as_deref(),
    );
    let mut cfg = config(&state.join("scratch"), &a.media)?;
    cfg.settings.command_tier = a.tier;
    let mut ids = Vec::new();
    for input in &a.inputs {
        let source = local_source(input, None)?;
        let ing = ingest(local.ports(), &cfg, &source, true)?;
        ids.push(ing.job_id);
    }
    let labels: Vec<String> = a.inputs.iter().map(|p| progress::label(p)).collect();
    let jobs = progress::follow(&local, &ids, &labels, !a.json, workers)?;
    local.fleet.stop_all();
    let mut failed = 0;
    for j in &jobs {
        if a.json {
            println!("{}", status::job_json(&local.objects, j));
        } else if let (Some(m), Some(d)) = (&j.master_key, &j.dash_key) {
            use vodpipe_control::ports::ObjectStore;
            eprintln!(
                "{} PUBLISHED {}\n  HLS:  {}\n  DASH: {}",
                j.id,
                j.source,
                local.objects.locate(m),
                local.objects.locate(d)
            );
        } else {
            eprintln!(
                "{} {} {}: {}",
                j.id,
                j.status,
                j.source,
                j.error.as_deref().unwrap_or("")
            );
        }
        if j.status != JobStatus::Published {
            failed += 1;
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
