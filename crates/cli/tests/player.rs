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

/// Subtitle cues written into the test sources: (start, end, text).
type Cues = &'static [(f64, f64, &'static str)];
const ENGLISH: Cues = &[
    (1.0, 2.5, "Hello"),
    (5.5, 8.5, "Across a segment boundary"),
    (10.0, 11.0, "The end"),
];
const FRENCH: Cues = &[(1.2, 2.0, "Bonjour"), (9.0, 10.0, "Au revoir")];
const SPANISH: Cues = &[(3.0, 4.5, "Hola")];

/// A SubRip file of `cues`.
fn write_srt(path: &Path, cues: Cues) {
    let t = |s: f64| {
        let ms = (s * 1000.0).round() as u64;
        format!(
            "{:02}:{:02}:{:02},{:03}",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000
        )
    };
    let body: String = cues
        .iter()
        .enumerate()
        .map(|(i, (a, b, text))| format!("{}\n{} --> {}\n{text}\n\n", i + 1, t(*a), t(*b)))
        .collect();
    std::fs::write(path, body).unwrap();
}

/// Asserts `got` holds each of `want`'s cues with start and end within one frame (25 fps).
fn assert_cues_match(got: &[(f64, f64, String)], want: Cues, what: &str) {
    for (a, b, text) in want {
        assert!(
            got.iter()
                .any(|(ga, gb, gt)| gt == text && (ga - a).abs() <= 0.04 && (gb - b).abs() <= 0.04),
            "{what}: no cue {text:?} at {a}-{b}: {got:?}"
        );
    }
}

#[test]
fn captions_thumbnails_and_a_poster_are_published_and_both_players_list_them() {
    let d = tempfile::tempdir().unwrap();
    let (en, fr) = (d.path().join("en.srt"), d.path().join("fr.srt"));
    write_srt(&en, ENGLISH);
    write_srt(&fr, FRENCH);
    // Five black seconds, then picture: the poster must not be black. Two mov_text tracks
    // inside, a Spanish SubRip sidecar beside it.
    let src = d.path().join("talk.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=black:s=320x180:r=25:d=5",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=320x180:r=25:d=7",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=12",
        "-i",
        en.to_str().unwrap(),
        "-i",
        fr.to_str().unwrap(),
        "-filter_complex",
        "[0][1]concat=n=2:v=1:a=0[v]",
        "-map",
        "[v]",
        "-map",
        "2",
        "-map",
        "3",
        "-map",
        "4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-c:s",
        "mov_text",
        "-metadata:s:s:0",
        "language=eng",
        "-metadata:s:s:1",
        "language=fra",
        src.to_str().unwrap(),
    ]);
    write_srt(&d.path().join("talk.es.srt"), SPANISH);
    let out = d.path().join("out");
    // 8 s chunks of 4 s segments: two tiles per sprite, the last sprite half full.
    let r = vodpipe_run(&[&src], &out, &["--chunk-seconds", "8"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let job = &r.jobs[0];
    assert_eq!(
        job["subtitles"],
        serde_json::json!(["eng", "fra", "es"]),
        "{job:#}"
    );
    let master = std::path::PathBuf::from(job["master"].as_str().unwrap());
    let jd = master
        .parent()
        .unwrap()
        .join(job["job_id"].as_str().unwrap());

    // Each subtitle track: the whole file has the source's cues within a frame, and its
    // playlist has one WebVTT segment per video segment, each mapped to media time.
    let renditions = job["renditions"].as_array().unwrap();
    let texts: Vec<&serde_json::Value> =
        renditions.iter().filter(|r| r["kind"] == "text").collect();
    assert_eq!(texts.len(), 3, "{job:#}");
    for (t, want) in texts.iter().zip([ENGLISH, FRENCH, SPANISH]) {
        let whole = std::fs::read_to_string(jd.join(t["uri"].as_str().unwrap())).unwrap();
        assert_cues_match(&vtt_cues(&whole), want, t["id"].as_str().unwrap());
        let playlist =
            std::fs::read_to_string(jd.join(format!("{}.m3u8", t["id"].as_str().unwrap())))
                .unwrap();
        let segments: Vec<&str> = playlist.lines().filter(|l| l.ends_with(".vtt")).collect();
        assert_eq!(segments.len(), 3, "{playlist}");
        for s in &segments {
            let body = std::fs::read_to_string(jd.join(s)).unwrap();
            assert!(
                body.starts_with("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000"),
                "{body}"
            );
        }
        if t["language"] == "eng" {
            // The cue across the 8 s boundary is in both segments, with its own times.
            for s in &segments[1..] {
                let cues = vtt_cues(&std::fs::read_to_string(jd.join(s)).unwrap());
                assert_cues_match(&cues, &ENGLISH[1..2], s);
            }
        }
    }
    let hls = std::fs::read_to_string(&master).unwrap();
    for lang in ["eng", "fra", "es"] {
        assert!(
            hls.lines()
                .any(|l| l.starts_with("#EXT-X-MEDIA:TYPE=SUBTITLES,")
                    && l.contains(&format!("LANGUAGE=\"{lang}\""))),
            "{hls}"
        );
    }
    assert!(hls.contains("SUBTITLES=\"subs\""), "{hls}");
    let mpd = std::fs::read_to_string(job["dash"].as_str().unwrap()).unwrap();
    assert_eq!(mpd.matches("contentType=\"text\"").count(), 3, "{mpd}");

    // Thumbnails: one cue per segment into 2-tile sprites of 160x90 tiles.
    let thumbs_vtt = std::path::PathBuf::from(job["thumbnails"].as_str().unwrap());
    let thumbs = std::fs::read_to_string(&thumbs_vtt).unwrap();
    let cues = vtt_cues(&thumbs);
    assert_eq!(cues.len(), 3, "{thumbs}");
    assert!(cues[0].2.ends_with("#xywh=0,0,160,90"), "{thumbs}");
    assert!(cues[1].2.ends_with("#xywh=160,0,160,90"), "{thumbs}");
    assert!(cues[2].2.ends_with("#xywh=0,0,160,90"), "{thumbs}");
    for (_, _, target) in &cues {
        let sprite = jd.join(target.split('#').next().unwrap());
        let v = ffprobe_json(
            &["-show_entries", "stream=codec_name,width,height"],
            &sprite,
        );
        assert_eq!(v["streams"][0]["codec_name"], "mjpeg", "{sprite:?}");
        assert_eq!(v["streams"][0]["width"], 320, "{sprite:?}");
        assert_eq!(v["streams"][0]["height"], 90, "{sprite:?}");
    }
    // The poster: the top rung's size, and not the black opening.
    let poster = std::path::PathBuf::from(job["poster"].as_str().unwrap());
    let v = ffprobe_json(&["-show_entries", "stream=width,height"], &poster);
    assert_eq!(
        (
            v["streams"][0]["width"].as_u64(),
            v["streams"][0]["height"].as_u64()
        ),
        (Some(320), Some(180))
    );
    let luma = mean_luma(&poster);
    assert!(luma > 40.0, "the poster is dark (mean luma {luma})");

    // Both players list the tracks and load the shown track's cues at the right times;
    // shaka finds the thumbnail a seek bar at 5 s would show.
    let report = assert_plays(&out, "talk/master.m3u8", "talk/manifest.mpd");
    let langs = |kind: &str| -> Vec<String> {
        report[kind]["text_tracks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["language"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(langs("hls"), ["eng", "fra", "es"], "{report:#}");
    assert_eq!(langs("dash"), ["en", "fr", "es"], "{report:#}");
    for kind in ["hls", "dash"] {
        let seen: Vec<(f64, f64, String)> = report[kind]["cues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["start"].as_f64().unwrap(),
                    c["end"].as_f64().unwrap(),
                    c["text"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_cues_match(&seen, ENGLISH, kind);
    }
    let images = report["dash"]["image_tracks"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{report:#}");
    assert_eq!(images[0]["tiles"], "2x1", "{report:#}");
    let at5 = &report["dash"]["thumbnail_at_5s"];
    assert_eq!(
        at5["x"], 160,
        "the second tile of the first sprite: {report:#}"
    );
    assert!(
        at5["uris"][0].as_str().unwrap().ends_with("thumbnails.jpg"),
        "{report:#}"
    );
}
