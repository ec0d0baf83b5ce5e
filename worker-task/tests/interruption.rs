//! The worker task on the AWS backend (moto server): SIGTERM mid-chunk, as Fargate Spot
//! sends it, makes the task exit promptly with the interruption recorded and nothing lost;
//! a fresh task then finishes the job.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vodpipe_testkit::emulator;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vodpipe_control::job::JobStatus;
use vodpipe_control::ports::{JobStore, ObjectStore};

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
    let aws = emulator::deploy(&emulator::unique_name("wt"));
    let settings = aws.settings.clone();
    emulator::queued_job(&aws, &src, "wt-job", 8.0, &d.join("scratch"));
    let mut env = settings.env();
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
