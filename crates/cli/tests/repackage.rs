//! Re-packaging without re-encoding: subtitles delivered after their video published are
//! added as a new version that reuses every encoded segment. The encoder runs are counted
//! (ffmpeg behind a wrapper that logs every run): a re-packaging converts subtitles and
//! encodes nothing, the pointers move to it, both players show the subtitles, and a file
//! uploaded again replaces its track.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const FIRST: &str =
    "1\n00:00:00,500 --> 00:00:01,500\nHello\n\n2\n00:00:02,000 --> 00:00:03,200\nSecond line\n";
const FIXED: &str = "1\n00:00:00,500 --> 00:00:01,500\nHello, fixed\n\n2\n00:00:02,000 --> 00:00:03,200\nSecond line\n";
const FRENCH: &str = "1\n00:00:01,000 --> 00:00:02,500\nBonjour\n";

/// An ffmpeg that appends each run's arguments to `log` before running the real one.
fn counting_ffmpeg(dir: &Path, log: &Path) -> PathBuf {
    let wrapper = dir.join("ffmpeg-counting.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec ffmpeg \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// The ffmpeg runs `log` recorded since it was last cleared, as (runs, runs that encode
/// video or audio).
fn runs(log: &Path) -> (Vec<String>, Vec<String>) {
    let all: Vec<String> = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let encodes = all
        .iter()
        .filter(|l| {
            ["libx264", "libx265", "libsvtav1", "-c:a", "-c:v"]
                .iter()
                .any(|e| l.contains(e))
        })
        .cloned()
        .collect();
    (all, encodes)
}

/// `vodpipe repackage SOURCE --state OUT --json` with `extra`, as (exit code, job, stderr).
fn repackage(src: &Path, out: &Path, ffmpeg: &Path, extra: &[&str]) -> (i32, Value, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_vodpipe"))
        .arg("repackage")
        .arg(src)
        .arg("--state")
        .arg(out)
        .arg("--ffmpeg")
        .arg(ffmpeg)
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let job = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (
        o.status.code().unwrap_or(-1),
        job,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Every URI in every playlist of the master pointer `master` resolves to a file, and the
/// media segments all live in `segments_in` (the encoded version's directory).
fn assert_resolves(master: &Path, segments_in: &str) {
    let asset = master.parent().unwrap();
    let uris = |playlist: &Path| -> Vec<String> {
        let text = std::fs::read_to_string(playlist).unwrap();
        text.lines()
            .flat_map(|l| {
                if l.starts_with('#') {
                    l.split("URI=\"")
                        .skip(1)
                        .filter_map(|r| r.split('"').next())
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                } else if l.trim().is_empty() {
                    Vec::new()
                } else {
                    vec![l.trim().to_string()]
                }
            })
            .collect()
    };
    let mut media = 0;
    for playlist in uris(master) {
        let playlist = asset.join(&playlist);
        assert!(playlist.exists(), "{playlist:?}");
        let dir = playlist.parent().unwrap();
        for uri in uris(&playlist) {
            let file = std::fs::canonicalize(dir.join(&uri))
                .unwrap_or_else(|e| panic!("{uri} in {playlist:?}: {e}"));
            if uri.ends_with(".m4s") {
                media += 1;
                assert!(
                    file.starts_with(std::fs::canonicalize(asset.join(segments_in)).unwrap()),
                    "{uri} of {playlist:?} is not the encoded version's"
                );
            }
        }
    }
    assert!(media > 0, "no media segments under {master:?}");
}

/// The cues a player showed, as text.
fn cue_texts(report: &Value, kind: &str) -> Vec<String> {
    report[kind]["cues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn late_subtitles_publish_a_new_version_without_a_single_encode() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("talk.mp4");
    make_clip(&src, "320x180", "25", 4, Some(440), FAST_H264);
    let out = d.path().join("out");
    let r = vodpipe_run(
        &[&src],
        &out,
        &["--segment-seconds", "1", "--chunk-seconds", "2"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = r.jobs[0].clone();
    let first_id = first["job_id"].as_str().unwrap().to_string();
    assert_eq!(first["subtitles"], serde_json::json!([]), "{first:#}");
    let log = d.path().join("ffmpeg-runs.log");
    let ffmpeg = counting_ffmpeg(d.path(), &log);

    // Nothing beside it changed: nothing to do, and said so.
    let (code, _, stderr) = repackage(&src, &out, &ffmpeg, &[]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("already has every subtitle file beside it"),
        "{stderr}"
    );

    // Days later, the English subtitles.
    std::fs::write(d.path().join("talk.en.srt"), FIRST).unwrap();
    let (code, second, stderr) = repackage(&src, &out, &ffmpeg, &[]);
    assert_eq!(code, 0, "{stderr}");
    let (all, encodes) = runs(&log);
    assert!(encodes.is_empty(), "a re-packaging encoded: {encodes:#?}");
    assert_eq!(all.len(), 1, "one subtitle conversion: {all:#?}");
    assert!(all[0].contains("talk.en.srt"), "{all:#?}");
    assert_eq!(second["status"], "PUBLISHED", "{second:#}");
    assert_eq!(second["subtitles"], serde_json::json!(["en"]), "{second:#}");
    let repack = &second["settings"]["repackage"];
    assert_eq!(repack["from"], first_id.as_str(), "{second:#}");
    assert_eq!(repack["revision"], 1, "{second:#}");
    let second_id = second["job_id"].as_str().unwrap().to_string();
    assert_ne!(second_id, first_id);

    // The pointers moved to it; every segment it lists is the first version's, frame-exact
    // and continuous as published.
    let master = PathBuf::from(second["master"].as_str().unwrap());
    let pointer = std::fs::read_to_string(&master).unwrap();
    assert!(
        pointer.contains(&format!("{second_id}/")) && !pointer.contains(&first_id),
        "{pointer}"
    );
    assert!(pointer.contains("TYPE=SUBTITLES"), "{pointer}");
    assert_resolves(&master, &first_id);
    assert_published_correctly(&second, &src, d.path());
    // The poster and thumbnails status points at are the first version's files.
    for file in ["poster", "thumbnails"] {
        let path = PathBuf::from(second[file].as_str().unwrap());
        assert!(path.exists(), "{file}: {path:?}");
    }
    let report = assert_plays(&out, "talk/master.m3u8", "talk/manifest.mpd");
    for kind in ["hls", "dash"] {
        assert_eq!(
            cue_texts(&report, kind),
            ["Hello", "Second line"],
            "{kind}: {report:#}"
        );
    }

    // The English file corrected and a French one added: the corrected track replaces the
    // first, still with no encode.
    std::fs::write(&log, "").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(d.path().join("talk.en.srt"), FIXED).unwrap();
    std::fs::write(d.path().join("talk.fr.srt"), FRENCH).unwrap();
    let (code, third, stderr) = repackage(&src, &out, &ffmpeg, &[]);
    assert_eq!(code, 0, "{stderr}");
    let (all, encodes) = runs(&log);
    assert!(encodes.is_empty(), "a re-packaging encoded: {encodes:#?}");
    assert_eq!(all.len(), 2, "two subtitle conversions: {all:#?}");
    assert_eq!(
        third["subtitles"],
        serde_json::json!(["en", "fr"]),
        "{third:#}"
    );
    let repack = &third["settings"]["repackage"];
    assert_eq!(repack["from"], second_id.as_str(), "{third:#}");
    assert_eq!(repack["revision"], 2, "{third:#}");
    assert_eq!(
        repack["reuses"],
        serde_json::json!([first_id, second_id]),
        "{third:#}"
    );
    assert_resolves(&master, &first_id);
    let report = assert_plays(&out, "talk/master.m3u8", "talk/manifest.mpd");
    let langs: Vec<&str> = report["dash"]["text_tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["language"].as_str().unwrap())
        .collect();
    assert_eq!(langs, ["en", "fr"], "{report:#}");
    for kind in ["hls", "dash"] {
        assert_eq!(
            cue_texts(&report, kind),
            ["Hello, fixed", "Second line"],
            "{kind}: {report:#}"
        );
    }

    // A packaging-only change: --force writes the manifests again, encodes nothing and
    // converts nothing; asked twice of one version, it makes one.
    std::fs::write(&log, "").unwrap();
    let (code, fourth, stderr) = repackage(&src, &out, &ffmpeg, &["--force"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(runs(&log).0.is_empty(), "{:#?}", runs(&log).0);
    assert_eq!(
        fourth["subtitles"],
        serde_json::json!(["en", "fr"]),
        "{fourth:#}"
    );
    assert_eq!(fourth["settings"]["repackage"]["revision"], 3, "{fourth:#}");
    assert_resolves(&master, &first_id);

    // A correction that cannot be read: published as skipped with ffmpeg's reason, and the
    // English track it was to replace stays.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let garbage: Vec<u8> = (0..3000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(d.path().join("talk.en.srt"), garbage).unwrap();
    let (code, fifth, stderr) = repackage(&src, &out, &ffmpeg, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(fifth["status"], "PUBLISHED", "{fifth:#}");
    assert_eq!(
        fifth["subtitles"],
        serde_json::json!(["en", "fr"]),
        "{fifth:#}"
    );
    let skipped: Vec<&Value> = fifth["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "text" && !r["skipped"].is_null())
        .collect();
    assert_eq!(skipped.len(), 1, "{fifth:#}");
    assert!(
        skipped[0]["skipped"]
            .as_str()
            .unwrap()
            .contains("Invalid data"),
        "{fifth:#}"
    );
    let report = assert_plays(&out, "talk/master.m3u8", "talk/manifest.mpd");
    assert_eq!(
        cue_texts(&report, "hls"),
        ["Hello, fixed", "Second line"],
        "{report:#}"
    );
}
