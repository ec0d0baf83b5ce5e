//! Crash windows, proved: the `vodpipe` binary is crashed (a panic, the process ends) at
//! each fail point of ingest, the worker and the stitch, and then, in a second round, made
//! to fail there with a backend error and carry on, on both backends; a retried ingest and
//! a healthy worker then finish the job, which must be PUBLISHED exactly once and
//! frame-exact. The test build of the binary has the fail points compiled in (the
//! `failpoints` feature of `vodpipe-control`, enabled by this crate's dev-dependencies); a
//! point that did not fire fails the test.
//!
//! Not here: a crash while a job is PROBING is taken over only after the probe would have
//! timed out (minutes); the port contract suite proves that claim with a short stale time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "aws")]
use vodpipe_testkit::emulator;
mod support;

use serde_json::Value;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;
#[cfg(feature = "aws")]
use vodpipe_control::ports::{Cacheability, ObjectStore};

/// Every fail point in the order a job meets them.
const POINTS: &[&str] = &[
    "ingest-after-create",
    "ingest-after-plan",
    "ingest-mid-send",
    "worker-after-lease",
    "analysis-after-revise",
    "worker-before-commit",
    "worker-after-commit",
    "stitch-after-playlists",
    "stitch-after-pointers",
    "stitch-after-publish",
];

fn vodpipe(env: &HashMap<String, String>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vodpipe"));
    c.envs(env).env_remove("FAILPOINTS").stdin(Stdio::null());
    c
}

fn json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What happens at the fail point.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// The process ends there (a panic): a crash, a SIGKILL, a lost machine.
    Crash,
    /// The call there fails with a backend error (throttling, a network fault) and the
    /// process carries on: the same handler must neither lose nor repeat work.
    Error,
}

/// Faults at `point` once, recovers as the deployment would (the event's retry ingests
/// again; another worker takes over), and returns the job's final status.
fn fault_and_recover(
    env: &HashMap<String, String>,
    point: &str,
    source: &str,
    fault: Fault,
) -> Value {
    let action = match fault {
        Fault::Crash => format!("{point}=1*panic"),
        Fault::Error => format!("{point}=1*return"),
    };
    let injected = format!("injected fault at {point}");
    let ingest = |fail: bool| {
        let mut c = vodpipe(env);
        c.args(["ingest", source, "--json", "--chunk-seconds", "4"]);
        // The analysis's point fires only for a job whose ladder is chosen per title.
        if point.starts_with("analysis-") {
            c.args(["--ladder", "auto"]);
        }
        if fail {
            c.env("FAILPOINTS", &action);
        }
        c.output().unwrap()
    };
    if point.starts_with("ingest-") {
        let faulted = ingest(true);
        assert!(
            !faulted.status.success(),
            "{point} ({fault:?}): the fail point did not fire"
        );
        if fault == Fault::Error {
            let stderr = String::from_utf8_lossy(&faulted.stderr);
            assert!(stderr.contains(&injected), "{point}: {stderr}");
        }
    }
    let job = json(&ingest(false));
    let job_id = job["job_id"].as_str().unwrap().to_string();
    if !point.starts_with("ingest-") {
        let faulted = vodpipe(env)
            .env("FAILPOINTS", &action)
            .args(["worker", "--idle-exit", "3", "--lease-seconds", "2"])
            .output()
            .unwrap();
        match fault {
            Fault::Crash => assert!(
                !faulted.status.success(),
                "{point}: the fail point did not fire"
            ),
            // The worker logs the failed turn and carries on with the job.
            Fault::Error => {
                let stderr = String::from_utf8_lossy(&faulted.stderr);
                assert!(
                    stderr.contains(&injected),
                    "{point}: the fail point did not fire: {stderr}"
                );
            }
        }
    }
    let mut worker = vodpipe(env)
        .args(["worker", "--idle-exit", "10", "--lease-seconds", "2"])
        .spawn()
        .unwrap();
    let status = wait_for_final(env, &job_id, Duration::from_secs(120));
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(
        status["status"], "PUBLISHED",
        "{point} ({fault:?}): {status}"
    );
    assert_eq!(status["stitch_count"], 1, "{point} ({fault:?}): {status}");
    status
}

/// Every (fault, point) pair, dealt into `LANES` lanes that run at once, each on a state
/// (or a deployment) of its own: a scenario mostly waits (a lease to expire, a worker to go
/// idle), so three lanes cut the wall time by half without sharing anything.
const LANES: usize = 3;

fn lanes() -> Vec<Vec<(Fault, &'static str)>> {
    let mut out = vec![Vec::new(); LANES];
    let all = [Fault::Crash, Fault::Error]
        .into_iter()
        .flat_map(|f| POINTS.iter().map(move |p| (f, *p)));
    for (i, s) in all.enumerate() {
        out[i % LANES].push(s);
    }
    out
}

#[test]
fn a_crash_or_an_error_at_any_fail_point_still_publishes_once_on_the_embedded_backend() {
    let d = tempfile::tempdir().unwrap();
    let clip = d.path().join("clip.mp4");
    make_clip(&clip, "320x180", "25", 6, None, FAST_H264);
    std::thread::scope(|s| {
        for (lane, scenarios) in lanes().into_iter().enumerate() {
            let (d, clip) = (d.path(), &clip);
            s.spawn(move || {
                let env = HashMap::from([(
                    "VODPIPE_STATE".to_string(),
                    d.join(format!("state-{lane}")).display().to_string(),
                )]);
                for (fault, point) in scenarios {
                    let src = d.join(format!("{point}-{fault:?}.mp4"));
                    std::fs::copy(clip, &src).unwrap();
                    let status = fault_and_recover(&env, point, src.to_str().unwrap(), fault);
                    let scratch = d.join(format!("check-{point}-{fault:?}"));
                    std::fs::create_dir_all(&scratch).unwrap();
                    assert_published_correctly(&status, &src, &scratch);
                }
            });
        }
    });
}

// The AWS backend is in the binary with the `aws` feature only (a default one).
#[cfg(feature = "aws")]
#[test]
fn a_crash_or_an_error_at_any_fail_point_still_publishes_once_on_the_aws_backend() {
    emulator::start();
    let d = tempfile::tempdir().unwrap();
    let clip = d.path().join("clip.mp4");
    make_clip(&clip, "320x180", "25", 6, None, FAST_H264);
    let bytes = std::fs::read(&clip).unwrap();
    std::thread::scope(|s| {
        for (lane, scenarios) in lanes().into_iter().enumerate() {
            let (d, clip, bytes) = (d.path(), &clip, &bytes);
            s.spawn(move || {
                let name = emulator::unique_name("fp");
                let env = aws_env(&name, &d.join(format!("scratch-{lane}")));
                let settings = emulator::settings(&name);
                let aws = vodpipe_aws::Aws::connect(settings.clone()).unwrap();
                for (fault, point) in scenarios {
                    let key = format!("fp/{point}-{fault:?}.mp4");
                    aws.ingest
                        .put(&key, bytes, Cacheability::Immutable)
                        .unwrap();
                    let uri = format!("s3://{}/{key}", settings.ingest_bucket);
                    let status = fault_and_recover(&env, point, &uri, fault);
                    let out = d.join(format!("download-{point}-{fault:?}"));
                    let local = download_published(&aws, &status, &out);
                    assert_published_correctly(&local, clip, &out);
                }
            });
        }
    });
}
