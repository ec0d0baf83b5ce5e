//! The published output plays to the end without stalls in real players: hls.js on the
//! HLS master and shaka-player on the MPD, in headless Chromium (tests/player/check.mjs).
//! A hole or overlap between chunks would stall hls.js or leave two buffered ranges.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;

#[test]
fn published_output_plays_to_the_end_in_hls_js_and_shaka() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("play.mp4");
    make_clip(&src, "640x360", "30000/1001", 14, Some(440), HARD_H264);
    let out = d.path().join("out");
    let r = vodpipe_run(&[&src], &out, &["--chunk-seconds", "4"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_plays(&out, "play/master.m3u8", "play/manifest.mpd");
}
