//! `vodpipe repackage`: a published video published again, with the subtitle files beside it
//! that its version lacks, as a new version with no encode. Deployments do this by
//! themselves when a subtitle file is uploaded; this is the same step by hand, and, with
//! `--force`, manifests written again by this build from the same segments.

use crate::backend::{Kind, StateOpts};
use crate::local_state::{local_source, open_with, with_profiles};
use crate::media_opts::{config, MediaOpts};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use vodpipe_control::job::JobStatus;
use vodpipe_control::pipeline::Ports;
use vodpipe_control::repackage::{repackage as make_version, Outcome, Upload};

/// Arguments of `vodpipe repackage`.
#[derive(Args)]
pub struct RepackageArgs {
    /// The video whose published version to publish again: a file, or `s3://BUCKET/KEY`
    /// with `--backend aws`.
    input: String,
    #[command(flatten)]
    state: StateOpts,
    /// Where published assets go (fixed by the first command on a state directory).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Make a version even when no subtitle file changed: the manifests are written again
    /// by this build's packager.
    #[arg(long)]
    force: bool,
    /// A subtitle file beside the video to convert again, as if uploaded again (its
    /// published track is replaced), repeatable: a path, or an `s3://` URI on AWS. On one
    /// machine a file written since its track was made counts without this.
    #[arg(long = "replace", value_name = "FILE")]
    replace: Vec<String>,
    /// Print the job as JSON (as `vodpipe status --json`).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    media: MediaOpts,
}

/// `vodpipe repackage`: on the embedded backend, converts the new subtitle files and
/// publishes before it returns; exits 1 when the version did not publish. On AWS it makes
/// the version and leaves its work to the deployment.
pub fn repackage(a: RepackageArgs) -> Result<i32> {
    let cfg = config(&a.state.scratch()?, &a.media)?;
    let now = vodpipe_media::process::now_secs();
    let again = |uri: String| Upload {
        uri,
        version: format!("by hand at {now}"),
        at: now,
    };
    match a.state.backend {
        Kind::Local => {
            let local = with_profiles(
                open_with(
                    &a.state.state_dir()?,
                    a.out.as_deref(),
                    1,
                    a.state.max_receives,
                    Some(&a.media.ffmpeg),
                    a.media.drm_keys.as_deref(),
                )?,
                a.media.profiles.as_deref(),
            );
            let source = local_source(Path::new(&a.input), None)?;
            let mut uploads = local_uploads(local.ports(), &source.uri)?;
            for f in &a.replace {
                let abs = std::fs::canonicalize(f).with_context(|| format!("--replace {f}"))?;
                uploads.push(again(abs.display().to_string()));
            }
            let outcome = make_version(local.ports(), &cfg, &source.uri, &uploads, a.force)?;
            let id = started(outcome, &a.input)?;
            let jobs = crate::progress::follow(
                &local,
                std::slice::from_ref(&id),
                std::slice::from_ref(&a.input),
                !a.json,
                1,
            )?;
            local.fleet.stop_all();
            let job = jobs.into_iter().next().context("the job vanished")?;
            report(&local.objects, &job, a.json);
            Ok(if job.status == JobStatus::Published {
                0
            } else {
                1
            })
        }
        Kind::Aws => {
            let backend = a.state.open(a.out.as_deref(), 0, None, false)?;
            let uploads: Vec<Upload> = a.replace.iter().cloned().map(again).collect();
            let outcome = make_version(backend.ports(), &cfg, &a.input, &uploads, a.force)?;
            let id = started(outcome, &a.input)?;
            let job = backend.jobs().job(&id)?.context("the job vanished")?;
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"job_id": job.id, "status": job.status.as_str(), "error": job.error})
                );
            } else {
                println!("{} {}", job.id, job.status);
            }
            Ok(if job.status == JobStatus::Failed {
                1
            } else {
                0
            })
        }
    }
}

/// The job a request made, or why it made none.
fn started(outcome: Outcome, input: &str) -> Result<String> {
    match outcome {
        Outcome::Started(ing) => Ok(ing.job_id),
        Outcome::Unchanged { published } => bail!(
            "version {published} of {input} already has every subtitle file beside it; --force makes a version anyway"
        ),
        Outcome::InFlight { job_id, .. } => bail!(
            "version {job_id} of {input} is still being made; re-package it once it is published"
        ),
        Outcome::NothingPublished => bail!("no version of {input} is published"),
    }
}

/// Each subtitle file beside a local video as an upload: its size and modification time
/// tell a file written again from the one a version already has.
pub fn local_uploads(ports: Ports<'_>, source: &str) -> Result<Vec<Upload>> {
    let mut out = Vec::new();
    for (_, uri) in vodpipe_control::ingest::sidecars_beside(ports, source)? {
        let meta = std::fs::metadata(&uri).with_context(|| format!("cannot read {uri}"))?;
        out.push(local_upload(uri, &meta));
    }
    Ok(out)
}

/// The upload of local file `uri` as its metadata `meta` tells it: its modification time
/// is when it was uploaded, its size and that time which upload it is.
pub fn local_upload(uri: String, meta: &std::fs::Metadata) -> Upload {
    let at = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    Upload {
        uri,
        version: format!("{}:{at}", meta.len()),
        at,
    }
}

/// Prints the job as `vodpipe run` does.
fn report(
    objects: &impl vodpipe_control::ports::ObjectStore,
    job: &vodpipe_control::ports::JobRecord,
    json: bool,
) {
    if json {
        println!("{}", crate::status::job_json(objects, job));
    } else if let (Some(m), Some(d)) = (&job.master_key, &job.dash_key) {
        eprintln!(
            "{} PUBLISHED {}\n  HLS:  {}\n  DASH: {}",
            job.id,
            job.source,
            objects.locate(m),
            objects.locate(d)
        );
    } else {
        eprintln!(
            "{} {}: {}",
            job.id,
            job.status,
            job.error.as_deref().unwrap_or("")
        );
    }
}
