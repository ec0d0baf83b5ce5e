//! The worker use-case on the embedded backend with an encoder that always fails: failed
//! attempts back off, a Spot-tier item escalates to premium after two strikes, and once
//! its message has been received too often it is dead-lettered and the job fails with the
//! reason. Needs ffprobe (real probing); ffmpeg is replaced by `false`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vodpipe_core::ingest::{ingest, Source};
use vodpipe_core::job::JobStatus;
use vodpipe_core::pipeline::Config;
use vodpipe_core::ports::{JobStore, Queue, Tier, WorkQueue};
use vodpipe_core::worker::{Shutdown, Turn, Worker};
use vodpipe_local::fleet::ProcessFleet;
use vodpipe_local::Local;

fn clip(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("clip.mp4");
    let st = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x90:rate=25",
            "-t",
            "1",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .arg(&p)
        .status()
        .expect("ffmpeg is required for this test: run `make deps`");
    assert!(st.success());
    p
}

#[test]
fn a_failing_item_escalates_then_dead_letters_and_fails_its_job() {
    let d = tempfile::tempdir().unwrap();
    let src = clip(d.path());
    let state = d.path().join("state");
    let fleet = ProcessFleet::new("/nonexistent".into(), state.clone(), 0, 1);
    let local = Local::open(&state, Some(&d.path().join("out")), fleet, 3).unwrap();
    let mut cfg = Config::new(state.join("scratch"));
    cfg.ffmpeg = "false".into();
    cfg.retry_delay = Duration::ZERO;
    cfg.escalate_after = 2;
    let source = Source {
        uri: src.canonicalize().unwrap().display().to_string(),
        key: "clip.mp4".into(),
        job_id: "job1".into(),
    };
    let ing = ingest(local.ports(), &cfg, &source, Tier::Bulk, false).unwrap();
    assert_eq!(ing.status, JobStatus::Encoding);
    assert_eq!(
        local.state.depth(Queue::Work(Tier::Bulk)).unwrap(),
        1,
        "one chunk, no audio"
    );
    let mut w = Worker::new(
        local.ports(),
        cfg,
        "w1",
        vec![Tier::Premium, Tier::Standard, Tier::Bulk],
        Shutdown::new(),
    );
    // Two failed attempts on bulk, then the item moves to premium.
    assert_eq!(w.turn().unwrap(), Turn::Worked);
    assert_eq!(local.state.depth(Queue::Work(Tier::Bulk)).unwrap(), 1);
    assert_eq!(w.turn().unwrap(), Turn::Worked);
    assert_eq!(
        local.state.depth(Queue::Work(Tier::Bulk)).unwrap(),
        0,
        "not escalated"
    );
    assert_eq!(
        local.state.depth(Queue::Work(Tier::Premium)).unwrap(),
        1,
        "not escalated"
    );
    // Three receives on premium (the limit), then the dead letter fails the job.
    for _ in 0..8 {
        w.turn().unwrap();
    }
    let job = local.state.job("job1").unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let reason = job.error.unwrap();
    assert!(reason.contains("chunk 0 was delivered 3 times"), "{reason}");
    assert!(
        reason.contains("encode chunk 0 failed"),
        "the last error should be kept: {reason}"
    );
    assert_eq!(job.failures, 5);
}
