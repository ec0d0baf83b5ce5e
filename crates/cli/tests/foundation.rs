//! End to end on the embedded backend: real clips through `vodpipe run`, checked frame by
//! frame.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use support::*;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A 17 s moving 29.97 fps clip with B-frames, open GOPs and keyframes only every 10 s.
fn moving_clip(dir: &Path) -> PathBuf {
    let p = dir.join("moving.mp4");
    make_clip(&p, "640x360", "30000/1001", 17, Some(440), HARD_H264);
    p
}

#[test]
fn chunk_joins_are_frame_exact_at_29_97_with_open_gops_and_b_frames() {
    let d = tmp();
    let src = moving_clip(d.path());
    let r = vodpipe_run(
        &[&src],
        &d.path().join("out"),
        &["--chunk-seconds", "4", "--workers", "2"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.jobs.len(), 1);
    let job = &r.jobs[0];
    assert!(
        job["chunks_total"].as_i64().unwrap() >= 5,
        "want ≥4 chunks + audio: {job}"
    );
    let renditions = assert_published_correctly(job, &src, d.path());
    assert_trick_play(Path::new(job["master"].as_str().unwrap()), d.path());
    // The top rung is at source size: every frame must be the source's frame.
    assert_psnr_at_least(&renditions[0], &src, 30.0);
    assert_psnr_at_least(&renditions[1], &src, 25.0);
}

/// `a b.mp4` and `a_b.mov` clean to the same asset name; the second gets a name of its
/// own, and each published master plays its own source.
#[test]
fn two_files_with_one_asset_name_never_publish_over_each_other() {
    let d = tmp();
    let (a, b) = (d.path().join("a b.mp4"), d.path().join("a_b.mov"));
    make_clip(&a, "320x180", "25", 2, None, FAST_H264);
    make_clip(&b, "320x180", "25", 3, None, FAST_H264);
    let r = vodpipe_run(&[&a, &b], &d.path().join("out"), &["--workers", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let job = |src: &Path| {
        r.jobs
            .iter()
            .find(|j| {
                j["source"]
                    .as_str()
                    .unwrap()
                    .ends_with(&*src.file_name().unwrap().to_string_lossy())
            })
            .unwrap()
            .clone()
    };
    let (ja, jb) = (job(&a), job(&b));
    assert_ne!(ja["master_key"], jb["master_key"], "{ja}\n{jb}");
    for (j, src, scratch) in [(&ja, &a, "ra"), (&jb, &b, "rb")] {
        let scratch = d.path().join(scratch);
        std::fs::create_dir_all(&scratch).unwrap();
        assert_published_correctly(j, src, &scratch);
    }
}

#[test]
fn running_the_same_file_twice_reuses_the_job() {
    let d = tmp();
    let src = d.path().join("short.mp4");
    make_clip(&src, "320x180", "25", 2, None, FAST_H264);
    let out = d.path().join("out");
    let a = vodpipe_run(&[&src], &out, &[]);
    let b = vodpipe_run(&[&src], &out, &[]);
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert_eq!(a.jobs[0]["job_id"], b.jobs[0]["job_id"]);
    assert_eq!(b.jobs[0]["status"], "PUBLISHED");
    assert_eq!(
        a.jobs[0]["attempts"], b.jobs[0]["attempts"],
        "no work was redone"
    );
}

#[test]
fn the_psnr_check_catches_a_one_frame_shift() {
    let d = tmp();
    let src = moving_clip(d.path());
    // Same frame count, every frame one later: drop the first, repeat the last.
    let shifted = d.path().join("shifted.mp4");
    ffmpeg(&[
        "-i",
        src.to_str().unwrap(),
        "-vf",
        "trim=start_frame=1,setpts=PTS-STARTPTS,tpad=stop=1:stop_mode=clone",
        "-an",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "10",
        shifted.to_str().unwrap(),
    ]);
    assert_eq!(decoded_frames(&shifted), decoded_frames(&src));
    let caught = std::panic::catch_unwind(|| assert_psnr_at_least(&shifted, &src, 30.0));
    assert!(caught.is_err(), "a shifted rendition passed the PSNR check");
}

#[test]
fn a_missing_probe_is_an_error_to_fix_not_a_failed_job() {
    let d = tmp();
    let src = d.path().join("clip.mp4");
    make_clip(&src, "320x180", "25", 2, None, FAST_H264);
    let out = d.path().join("out");
    let broken = std::process::Command::new(env!("CARGO_BIN_EXE_vodpipe"))
        .args(["run", "--json", "--out"])
        .arg(&out)
        .arg(&src)
        .env("VODPIPE_FFPROBE", "/nonexistent/ffprobe")
        .output()
        .unwrap();
    assert_ne!(broken.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(
        stderr.contains("cannot run /nonexistent/ffprobe"),
        "{stderr}"
    );
    // Nothing is known about the source, so no verdict was recorded on it.
    assert!(
        !String::from_utf8_lossy(&broken.stdout).contains("FAILED"),
        "{}",
        String::from_utf8_lossy(&broken.stdout)
    );
    let fixed = vodpipe_run(&[&src], &out, &[]);
    assert_eq!(fixed.code, 0, "{}", fixed.stderr);
    assert_eq!(fixed.jobs[0]["failures"], 0);
    assert_published_correctly(&fixed.jobs[0], &src, d.path());
}
