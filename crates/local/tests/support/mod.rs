//! What the embedded backend's tests share: a small real clip, and a fresh backend with
//! that clip as the source of one job.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use vodpipe_control::ingest::Source;
use vodpipe_control::pipeline::Config;
use vodpipe_local::fleet::ProcessFleet;
use vodpipe_local::Local;

/// A `secs`-second 160x90 H.264 clip in `dir` (no audio: one video item per chunk).
pub fn clip(dir: &Path, secs: u32) -> PathBuf {
    let p = dir.join("clip.mp4");
    let ok = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args([
            "-i",
            "testsrc2=size=160x90:rate=25",
            "-t",
            &secs.to_string(),
        ])
        .args(["-c:v", "libx264", "-preset", "ultrafast"])
        .arg(&p)
        .status()
        .expect("ffmpeg is required for this test: run `make deps`")
        .success();
    assert!(ok);
    p
}

/// A backend in `dir` that starts no workers, its default config, and a source `job_id`
/// for a `secs`-second clip.
pub fn backend(dir: &Path, secs: u32, job_id: &str) -> (Local, Config, Source) {
    let src = clip(dir, secs);
    let state = dir.join("state");
    let fleet = ProcessFleet::new("/nonexistent".into(), state.clone(), 0, 1);
    let local = Local::open(&state, Some(&dir.join("out")), fleet, 3).unwrap();
    let cfg = Config::new(state.join("scratch"));
    let source = Source {
        uri: src.canonicalize().unwrap().display().to_string(),
        key: "clip.mp4".into(),
        job_id: job_id.into(),
        version: None,
        sequencer: None,
    };
    (local, cfg, source)
}
