//! Ingest on the embedded backend, where a probe cannot run: the job keeps the settings it
//! was made with through every retry (a settings file changed afterwards does not split
//! it), and a fault that never clears ends the job instead of retrying forever.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
use support::backend;

use std::path::{Path, PathBuf};
use vodpipe_control::ingest::{ingest, Source};
use vodpipe_control::job::JobStatus;
use vodpipe_control::pipeline::{Config, JobPlan};
use vodpipe_control::ports::{JobStore, Tier};
use vodpipe_control::settings::Origin;
use vodpipe_local::Local;

fn setup(d: &Path) -> (Local, Config, Source, PathBuf) {
    let (local, cfg, source) = backend(d, 3, "job1");
    let sidecar = PathBuf::from(format!("{}.vodpipe.json", source.uri));
    (local, cfg, source, sidecar)
}

#[test]
fn a_retried_ingest_plans_with_the_settings_the_job_was_made_with() {
    let d = tempfile::tempdir().unwrap();
    let (local, mut cfg, source, sidecar) = setup(d.path());
    std::fs::write(&sidecar, r#"{"tier": "premium", "segment_seconds": 2}"#).unwrap();
    // The probe cannot run: an error for the caller, the job left QUEUED with its settings.
    cfg.ffprobe = "/nonexistent/ffprobe".into();
    let err = ingest(local.ports(), &cfg, &source, false).unwrap_err();
    assert!(
        err.to_string().contains("cannot run /nonexistent/ffprobe"),
        "{err}"
    );
    let job = local.state.job("job1").unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    let settings = job.settings.unwrap();
    assert_eq!(
        (settings.tier.value, settings.tier.from),
        (Tier::Premium, Origin::SettingsFile)
    );
    // The settings file changes before the retry; the job keeps what it was made with.
    std::fs::write(&sidecar, r#"{"tier": "bulk", "segment_seconds": 6}"#).unwrap();
    cfg.ffprobe = "ffprobe".into();
    let ing = ingest(local.ports(), &cfg, &source, false).unwrap();
    assert_eq!(ing.status, JobStatus::Encoding);
    let job = local.state.job("job1").unwrap().unwrap();
    assert_eq!(job.tier, Tier::Premium);
    let plan: JobPlan = serde_json::from_str(&local.state.plan_doc("job1").unwrap()).unwrap();
    assert_eq!(plan.plan.segment_secs, 2.0);
}

#[test]
fn a_probe_fault_that_never_clears_ends_the_job_with_its_reason() {
    let d = tempfile::tempdir().unwrap();
    let (local, mut cfg, source, _) = setup(d.path());
    cfg.ffprobe = "/nonexistent/ffprobe".into();
    // Past the time given to retries (here: at once).
    cfg.policy.probe_timeout_secs = 0;
    let ing = ingest(local.ports(), &cfg, &source, false).unwrap();
    assert_eq!(ing.status, JobStatus::Failed);
    let job = local.state.job("job1").unwrap().unwrap();
    let error = job.error.unwrap();
    assert!(
        error.contains("could not be probed for 0 minutes"),
        "{error}"
    );
    assert!(error.contains("cannot run /nonexistent/ffprobe"), "{error}");
}
