//! `vodpipe ingest`: one upload into a state (a file on the embedded backend, an S3 object
//! on AWS), probed, planned and queued, for when workers run elsewhere or later.

use crate::arg_values::parse_tier;
use crate::backend::{Backend, StateOpts};
use crate::local_state::{local_source, with_profiles};
use crate::media_opts::{config, MediaOpts};
use anyhow::{Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use vodpipe_control::job::JobStatus;
use vodpipe_control::ports::Tier;

/// Arguments of `vodpipe ingest`.
#[derive(Args)]
pub struct IngestArgs {
    /// Source video: a file, or `s3://BUCKET/KEY` with `--backend aws`.
    input: String,
    #[command(flatten)]
    state: StateOpts,
    /// Where published assets go (fixed by the first command on a state directory;
    /// default STATE/out).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Tier: premium (on-demand capacity, first), standard, bulk. Beats the upload's own
    /// settings (metadata, settings file); default: those, else standard.
    #[arg(long, value_parser = parse_tier)]
    tier: Option<Tier>,
    /// Print `{"job_id": …}`.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    media: MediaOpts,
}

/// `vodpipe ingest`: exits 1 when the job failed at ingest (a source that cannot be
/// transcoded).
pub fn ingest(a: IngestArgs) -> Result<i32> {
    let backend = match a.state.open(a.out.as_deref(), 0, None, false)? {
        Backend::Local(l) => {
            Backend::Local(Box::new(with_profiles(*l, a.media.profiles.as_deref())))
        }
        #[cfg(feature = "aws")]
        aws => aws,
    };
    let mut cfg = config(&a.state.scratch()?, &a.media)?;
    cfg.settings.command_tier = a.tier;
    let source = match &backend {
        #[cfg(feature = "aws")]
        Backend::Aws(aws) => aws
            .source(&a.input)
            .with_context(|| format!("cannot read {}", a.input))?,
        Backend::Local(_) => local_source(Path::new(&a.input), None)?,
    };
    let ing = vodpipe_control::ingest::ingest(backend.ports(), &cfg, &source, true)?;
    let job = backend
        .jobs()
        .job(&ing.job_id)?
        .context("job vanished after ingest")?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"job_id": ing.job_id, "created": ing.created, "status": job.status.as_str(), "error": job.error})
        );
    } else {
        println!(
            "{} {}{}",
            ing.job_id,
            job.status,
            job.error.map(|e| format!(": {e}")).unwrap_or_default()
        );
    }
    Ok(if job.status == JobStatus::Failed {
        1
    } else {
        0
    })
}
