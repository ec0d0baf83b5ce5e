//! The worker task on the AWS backend (moto server): SIGTERM mid-chunk, as Fargate Spot
//! sends it, makes the task exit promptly with the interruption recorded and nothing lost;
//! a fresh task then finishes the job.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../crates/aws/tests/emulator/mod.rs"]
mod emulator;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vodpipe_core::ingest::{ingest, Source};
use vodpipe_core::job::JobStatus;
use vodpipe_core::pipeline::Config;
use vodpipe_core::ports::{Cacheability, JobStore, ObjectStore, Tier};

fn task(env: &[(String, String)]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_worker-task"))
        .envs(env.iter().cloned())
        .env("VODPIPE_IDLE_EXIT_SECS", "3")
        // No stitch function in this test: the task stitches too.
        .env("VODPIPE_WORKER_STITCHES", "true")
        .env("VODPIPE_LEASE_SECS", "6")
        .env("VODPIPE_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sigterm_mid_chunk_loses_no_work() {
    emulator::start();
    let d = std::env::temp_dir().join(emulator::unique_name("worker-task"));
    std::fs::create_dir_all(&d).unwrap();
    let src = d.join("clip.mp4");
    let st = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=960x540:rate=30",
            "-t",
            "24",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .arg(&src)
        .status()
        .expect("ffmpeg is required: run `make deps`");
    assert!(st.success());
    let settings = emulator::settings(&emulator::unique_name("wt"));
    let bridge = vodpipe_aws::config::Bridge::new().unwrap();
    vodpipe_aws::bootstrap::bootstrap(&bridge, &bridge.sdk_config(), &settings).unwrap();
    let aws = vodpipe_aws::Aws::connect(settings.clone()).unwrap();
    aws.ingest
        .put(
            "in/clip.mp4",
            &std::fs::read(&src).unwrap(),
            Cacheability::Immutable,
        )
        .unwrap();
    let source = Source {
        uri: format!("s3://{}/in/clip.mp4", settings.ingest_bucket),
        key: "in/clip.mp4".into(),
        job_id: "wt-job".into(),
    };
    let mut cfg = Config::new(d.join("scratch"));
    cfg.plan.chunk_secs = 8.0;
    let ing = ingest(aws.ports(), &cfg, &source, Tier::Standard, false).unwrap();
    assert_eq!(ing.status, JobStatus::Encoding);
    let mut env: Vec<(String, String)> = settings
        .exports()
        .lines()
        .filter_map(|l| {
            l.strip_prefix("export ")?
                .split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    env.push((
        "VODPIPE_SCRATCH".into(),
        d.join("task-scratch").display().to_string(),
    ));
    // Interrupt the first task once it holds a lease, as a Spot reclaim would.
    let mut first = task(&env);
    let started = Instant::now();
    while !aws
        .state
        .items("wt-job")
        .unwrap()
        .iter()
        .any(|(_, s)| s.leased)
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the task never took work"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = first.wait().unwrap();
    let took = t.elapsed();
    assert!(
        status.success(),
        "the interrupted task must exit cleanly: {status}"
    );
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM to exit took {took:?}"
    );
    let job = aws.state.job("wt-job").unwrap().unwrap();
    assert!(job.interruptions >= 1, "interruption not recorded: {job:?}");
    assert!(
        !aws.state
            .items("wt-job")
            .unwrap()
            .iter()
            .any(|(_, s)| s.leased),
        "a lease was left behind"
    );
    // A fresh task finishes everything and exits when idle.
    let mut second = task(&env);
    assert!(second.wait().unwrap().success());
    let job = aws.state.job("wt-job").unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Published, "{job:?}");
    assert!(aws.objects.get(job.master_key.as_deref().unwrap()).is_ok());
    eprintln!(
        "worker task: SIGTERM to exit {took:?}, {} interruption(s), {} attempts for {} items",
        job.interruptions, job.attempts, job.total
    );
    let _ = std::fs::remove_dir_all(&d);
}
