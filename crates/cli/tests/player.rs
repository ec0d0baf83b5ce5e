//! The published output plays to the end without stalls in real players: hls.js on the
//! HLS master and shaka-player on the MPD, in headless Chromium (tests/player/check.mjs).
//! A hole or overlap between chunks would stall hls.js or leave two buffered ranges.
//! Audio-only uploads publish and play as well.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
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

/// Seconds of the first audio stream of `path`, from its packets.
fn audio_secs(path: &Path) -> f64 {
    let v = ffprobe_json(
        &["-select_streams", "a:0", "-show_entries", "format=duration"],
        path,
    );
    v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn audio_only_uploads_publish_audio_hls_and_dash_that_play_to_the_end() {
    let d = tempfile::tempdir().unwrap();
    let tone = "sine=frequency=440:sample_rate=44100:duration=9";
    let sources: Vec<std::path::PathBuf> = [
        ("podcast.m4a", vec!["-c:a", "aac"]),
        ("song.mp3", vec!["-c:a", "libmp3lame"]),
        ("master.wav", vec!["-c:a", "pcm_s16le"]),
        ("lossless.flac", vec!["-c:a", "flac"]),
    ]
    .into_iter()
    .map(|(name, codec)| {
        let p = d.path().join(name);
        let mut args = vec!["-f", "lavfi", "-i", tone];
        args.extend(codec);
        args.push(p.to_str().unwrap());
        ffmpeg(&args);
        p
    })
    .collect();
    let out = d.path().join("out");
    let refs: Vec<&Path> = sources.iter().map(|p| p.as_path()).collect();
    let r = vodpipe_run(&refs, &out, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.jobs.len(), sources.len());
    for (job, src) in r.jobs.iter().zip(&sources) {
        assert_eq!(job["status"], "PUBLISHED", "{job}");
        let master = Path::new(job["master"].as_str().unwrap());
        let text = std::fs::read_to_string(master).unwrap();
        assert!(text.contains(r#"CODECS="mp4a.40.2""#), "{src:?}: {text}");
        assert!(!text.contains("RESOLUTION"), "{src:?}: {text}");
        let mpd = std::fs::read_to_string(job["dash"].as_str().unwrap()).unwrap();
        assert!(
            mpd.contains(r#"contentType="audio""#) && !mpd.contains(r#"contentType="video""#),
            "{src:?}: {mpd}"
        );
        let listed = job["renditions"].as_array().unwrap();
        assert!(
            !listed.is_empty() && listed.iter().all(|r| r["kind"] == "audio"),
            "{job}"
        );
        let (variants, _) = master_entries(master);
        assert_eq!(variants.len(), 1, "{text}");
        let stem = src.file_stem().unwrap().to_str().unwrap();
        let file = concat_rendition(&variants[0], &d.path().join(format!("{stem}.mp4")));
        assert_monotonic(&file);
        let (want, got) = (audio_secs(src), audio_secs(&file));
        assert!(
            (want - got).abs() < 0.1,
            "{src:?}: the source lasts {want} s, the published audio {got} s"
        );
    }
    assert_plays(&out, "podcast/master.m3u8", "podcast/manifest.mpd");
    assert_plays(&out, "lossless/master.m3u8", "lossless/manifest.mpd");
}
