//! Input clipping, frame-exact: `--clip START-END` (and `"clip"` in a settings file)
//! publishes only that range. The first published frame is the source's frame at START, the
//! last the one before END, each compared frame by frame with the source's; the audio and the
//! subtitles are cut to the same range and start at zero; nothing outside the range is
//! planned, so nothing outside it is encoded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::clipped::{assert_clipped, clip_source};
use support::*;

#[test]
fn a_clip_publishes_exactly_its_frames_audio_and_subtitles() {
    let d = tempfile::tempdir().unwrap();
    let src = clip_source(d.path());
    // The same source, clipped by a settings file beside it.
    let by_file = d.path().join("by-file.mp4");
    std::fs::copy(&src, &by_file).unwrap();
    std::fs::write(
        d.path().join("by-file.mp4.vodpipe.json"),
        r#"{"clip": "00:00:01.500-00:00:04.250"}"#,
    )
    .unwrap();
    let out = d.path().join("out");
    let r = vodpipe_run(
        &[&src, &by_file],
        &out,
        &["--segment-seconds", "1", "--chunk-seconds", "2"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plain = r
        .jobs
        .iter()
        .find(|j| j["source"].as_str().unwrap().ends_with("/src.mp4"))
        .unwrap();
    let clipped = r
        .jobs
        .iter()
        .find(|j| j["source"].as_str().unwrap().ends_with("by-file.mp4"))
        .unwrap();
    assert_eq!(
        clipped["settings"]["clip"]["from"], "settings-file",
        "{clipped}"
    );
    // 1.5 s to 4.25 s at 25 fps: frames 38 (1.52 s) to 106 (4.24 s).
    assert_clipped(clipped, &by_file, 38, 69, 2.76, d.path());
    // The unclipped job of the same source is whole, and the clipped one encoded only its
    // range: its chunks cover 69 frames, not 200.
    assert_published_correctly(plain, &src, d.path());
    assert!(
        clipped["duration_secs"].as_f64().unwrap() < 2.8,
        "{clipped}"
    );

    // On the command line, and refused with the reason when the range is outside.
    let out2 = d.path().join("out2");
    let r = vodpipe_run(
        &[&src],
        &out2,
        &[
            "--clip",
            "1.5-4.25",
            "--segment-seconds",
            "1",
            "--chunk-seconds",
            "2",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.jobs[0]["settings"]["clip"]["from"], "command");
    assert_clipped(&r.jobs[0], &src, 38, 69, 2.76, d.path());
    let r = vodpipe_run(&[&src], &d.path().join("out3"), &["--clip", "20-30"]);
    assert_ne!(r.code, 0);
    let why = r.jobs[0]["error"].as_str().unwrap();
    assert!(
        why.contains("the clip 20.000-30.000 s holds no frame of this 8.000 s source"),
        "{why}"
    );
}
