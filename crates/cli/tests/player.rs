//! The published output plays to the end without stalls in real players: hls.js on the
//! HLS master and shaka-player on the MPD, in headless Chromium (tests/player/check.mjs).
//! A hole or overlap between chunks would stall hls.js or leave two buffered ranges.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

fn player_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/player")
}

#[test]
fn published_output_plays_to_the_end_in_hls_js_and_shaka() {
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        node_ok,
        "node is required for the playback check: run `make player-deps` (make test does)"
    );
    assert!(
        player_dir().join("node_modules").exists(),
        "player libraries missing: run `make player-deps` (make test does)"
    );
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("play.mp4");
    make_clip(&src, "640x360", "30000/1001", 14, Some(440), HARD_H264);
    let out = d.path().join("out");
    let r = vodpipe_run(&[&src], &out, &["--chunk-seconds", "4"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let check = Command::new("node")
        .arg(player_dir().join("check.mjs"))
        .arg("--root")
        .arg(&out)
        .args([
            "--hls",
            "play/master.m3u8",
            "--dash",
            "play/manifest.mpd",
            "--timeout-secs",
            "180",
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "playback check failed (exit {:?}):\n{report}\n{}",
        check.status.code(),
        String::from_utf8_lossy(&check.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v["ok"], true, "{report}");
}
