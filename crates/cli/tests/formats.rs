//! Real-world source shapes all publish correctly: every rung keeps the source's frame
//! count on one continuous timeline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use support::*;

/// Makes `name` with ffmpeg `args` (inputs and encoding options, output path appended),
/// publishes it, checks it and returns the job JSON with the directory holding it.
fn publishes(name: &str, args: &[&str], extra: &[&str]) -> (tempfile::TempDir, serde_json::Value) {
    let d = tempfile::tempdir().unwrap();
    let src: PathBuf = d.path().join(name);
    let mut a: Vec<&str> = args.to_vec();
    a.push(src.to_str().unwrap());
    ffmpeg(&a);
    let r = vodpipe_run(&[&src], &d.path().join("out"), extra);
    assert_eq!(r.code, 0, "{name}: {}\n{:?}", r.stderr, r.jobs);
    assert_published_correctly(&r.jobs[0], &src, d.path());
    (d, r.jobs[0].clone())
}

fn master_text(job: &serde_json::Value) -> String {
    std::fs::read_to_string(Path::new(job["master"].as_str().unwrap())).unwrap()
}

const MOVING: &str = "testsrc2=size=480x270:rate=30";
const TONE: &str = "sine=frequency=300:sample_rate=44100";

/// Writes a 90° display matrix into the (only) `tkhd` of an MP4, as phones do for
/// portrait recordings (ffmpeg 5.1 cannot set one when encoding).
fn rotate_90(path: &Path) {
    let mut d = std::fs::read(path).unwrap();
    let at = d.windows(4).position(|w| w == b"tkhd").unwrap() - 4;
    assert_eq!(d[at + 8], 0, "expects a version-0 tkhd");
    let matrix: [u32; 9] = [
        0,
        0x0001_0000,
        0,
        0xFFFF_0000,
        0,
        0,
        270 << 16,
        0,
        0x4000_0000,
    ];
    for (i, v) in matrix.iter().enumerate() {
        let o = at + 48 + i * 4;
        d[o..o + 4].copy_from_slice(&v.to_be_bytes());
    }
    std::fs::write(path, d).unwrap();
}

#[test]
fn rotated_portrait_phone_video_publishes_portrait() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("phone.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=480x270:rate=30",
        "-t",
        "5",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-an",
        src.to_str().unwrap(),
    ]);
    rotate_90(&src);
    let probe = ffprobe_json(&["-show_streams"], &src);
    assert!(
        probe.to_string().contains("rotation"),
        "fixture has no display matrix: {probe}"
    );
    let r = vodpipe_run(&[&src], &d.path().join("out"), &["--chunk-seconds", "4"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_published_correctly(&r.jobs[0], &src, d.path());
    let m = master_text(&r.jobs[0]);
    assert!(m.contains("RESOLUTION=270x480"), "{m}");
}

#[test]
fn odd_dimensions_publish_with_even_renditions() {
    let (_d, job) = publishes(
        "odd.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=333x201:rate=24",
            "-t",
            "3",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv444p",
        ],
        &[],
    );
    assert!(
        master_text(&job).contains("RESOLUTION=334x200")
            || master_text(&job).contains("RESOLUTION=332x200"),
        "{}",
        master_text(&job)
    );
}

#[test]
fn ten_bit_hevc_is_converted() {
    publishes(
        "hevc10.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            MOVING,
            "-t",
            "5",
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error",
            "-pix_fmt",
            "yuv420p10le",
        ],
        &["--chunk-seconds", "4"],
    );
}

#[test]
fn interlaced_mpeg2_ts_is_deinterlaced() {
    let (_d, job) = publishes(
        "interlaced.ts",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=720x480:rate=30000/1001",
            "-f",
            "lavfi",
            "-i",
            TONE,
            "-t",
            "6",
            "-vf",
            "setfield=tff",
            "-c:v",
            "mpeg2video",
            "-flags",
            "+ilme+ildct",
            "-top",
            "1",
            "-b:v",
            "4M",
            "-c:a",
            "mp2",
            "-shortest",
        ],
        &["--chunk-seconds", "4"],
    );
    assert_eq!(job["status"], "PUBLISHED");
}

#[test]
fn vfr_matroska_keeps_every_frame() {
    // Frame durations alternate 1/30 s and 1/15 s.
    publishes(
        "vfr.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
            "-t",
            "9",
            "-vf",
            "setpts='N/30/TB+floor(N/2)/30/TB'",
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
        &["--chunk-seconds", "4"],
    );
}

#[test]
fn prores_with_two_audio_languages_gets_two_audio_renditions() {
    let (_d, job) = publishes(
        "prores.mov",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=25",
            "-f",
            "lavfi",
            "-i",
            TONE,
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=600:sample_rate=48000",
            "-t",
            "5",
            "-map",
            "0",
            "-map",
            "1",
            "-map",
            "2",
            "-c:v",
            "prores_ks",
            "-profile:v",
            "0",
            "-c:a",
            "pcm_s16le",
            "-metadata:s:a:0",
            "language=eng",
            "-metadata:s:a:1",
            "language=fra",
            "-shortest",
        ],
        &[],
    );
    let m = master_text(&job);
    assert!(
        m.contains(r#"LANGUAGE="eng""#) && m.contains(r#"LANGUAGE="fra""#),
        "{m}"
    );
}

#[test]
fn vp9_webm_publishes() {
    publishes(
        "vp9.webm",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=30",
            "-f",
            "lavfi",
            "-i",
            TONE,
            "-t",
            "5",
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-c:a",
            "libopus",
            "-shortest",
        ],
        &["--chunk-seconds", "4"],
    );
}

#[test]
fn a_clip_shorter_than_one_segment_publishes() {
    let (_d, job) = publishes(
        "short.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            MOVING,
            "-f",
            "lavfi",
            "-i",
            TONE,
            "-t",
            "1.5",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-shortest",
        ],
        &[],
    );
    assert_eq!(job["chunks_total"], 2, "one chunk + one audio track: {job}");
}

#[test]
fn a_source_without_audio_publishes_video_only() {
    let (_d, job) = publishes(
        "silent.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            MOVING,
            "-t",
            "5",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
        &["--chunk-seconds", "4"],
    );
    let m = master_text(&job);
    assert!(!m.contains("TYPE=AUDIO") && !m.contains("mp4a"), "{m}");
}

/// Per-channel RMS levels (dB) of `path`'s first audio stream, from ffmpeg's `astats`.
fn channel_rms_db(path: &Path) -> Vec<f64> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(path)
        .args([
            "-map",
            "0:a:0",
            "-af",
            "astats=measure_overall=none",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.split("RMS level dB:").nth(1))
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

/// Integrated loudness (LUFS) of `path`, from ffmpeg's `ebur128`.
fn integrated_lufs(path: &Path) -> f64 {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(path)
        .args(["-map", "0:a:0", "-af", "ebur128", "-f", "null", "-"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("I:"))
        .and_then(|v| v.trim().trim_end_matches("LUFS").trim().parse().ok())
        .unwrap_or_else(|| panic!("no integrated loudness in: {text}"))
}

#[test]
fn a_five_one_source_gets_a_stereo_downmix_and_a_surround_rendition_at_the_chosen_loudness() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("surround.mp4");
    // A tone in the centre channel only (5.1: FL FR FC LFE BL BR): a downmix that drops
    // the centre would be silent.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=25",
        "-f",
        "lavfi",
        "-i",
        "aevalsrc=0|0|0.05*sin(440*2*PI*t)|0|0|0:c=5.1:s=48000",
        "-t",
        "8",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-b:a",
        "384k",
        "-shortest",
        src.to_str().unwrap(),
    ]);
    let ladder = d.path().join("ladder.json");
    std::fs::write(&ladder, r#"{"surround": true, "loudness_lufs": -16}"#).unwrap();
    let r = vodpipe_run(
        &[&src],
        &d.path().join("out"),
        &["--ladder", ladder.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let job = &r.jobs[0];
    let renditions = assert_published_correctly(job, &src, d.path());
    let m = master_text(job);
    let media: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("#EXT-X-MEDIA:TYPE=AUDIO"))
        .collect();
    assert_eq!(media.len(), 2, "{m}");
    assert!(
        media[0].contains(r#"CHANNELS="2""#) && media[0].contains("DEFAULT=YES"),
        "the stereo downmix is the default: {m}"
    );
    assert!(media[1].contains(r#"CHANNELS="6""#), "{m}");
    let mpd = std::fs::read_to_string(job["dash"].as_str().unwrap()).unwrap();
    assert!(
        mpd.contains(r#"audio_channel_configuration:2011" value="6""#)
            && mpd.contains(r#"audio_channel_configuration:2011" value="2""#),
        "{mpd}"
    );
    // The renditions after the video rungs: the stereo downmix, then 5.1.
    let (stereo, surround) = (
        &renditions[renditions.len() - 2],
        &renditions[renditions.len() - 1],
    );
    let levels = channel_rms_db(stereo);
    assert_eq!(levels.len(), 2, "stereo: {levels:?}");
    assert!(
        levels.iter().all(|&db| db > -40.0),
        "the centre channel is in both sides of the downmix: {levels:?}"
    );
    assert_eq!(channel_rms_db(surround).len(), 6, "5.1 keeps six channels");
    // Status lists what was published.
    let listed = job["renditions"].as_array().unwrap();
    let audio: Vec<(&str, i64)> = listed
        .iter()
        .filter(|r| r["kind"] == "audio")
        .map(|r| (r["id"].as_str().unwrap(), r["channels"].as_i64().unwrap()))
        .collect();
    assert_eq!(audio, [("audio_0", 2), ("audio_0_51", 6)], "{job}");
    assert!(
        listed
            .iter()
            .filter(|r| r["kind"] == "video")
            .all(|r| r["trick_play"] == true && r["width"].as_i64().unwrap() > 0),
        "{job}"
    );
    let lufs = integrated_lufs(stereo);
    assert!(
        (lufs + 16.0).abs() < 2.0,
        "normalised to -16 LUFS, measured {lufs}"
    );
}

/// Counts the decoded frames of `path` and those carrying ATSC A/53 closed captions.
fn frames_with_captions(path: &Path) -> (usize, usize) {
    let v = ffprobe_json(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=pts:frame_side_data=side_data_type",
        ],
        path,
    );
    let frames = v["frames"].as_array().unwrap();
    let with_cc = frames
        .iter()
        .filter(|f| {
            f["side_data_list"].as_array().is_some_and(|l| {
                l.iter()
                    .any(|s| s["side_data_type"] == "ATSC A53 Part 4 Closed Captions")
            })
        })
        .count();
    (frames.len(), with_cc)
}

#[test]
fn cea_608_captions_in_h264_sei_are_carried_through_the_encode() {
    let d = tempfile::tempdir().unwrap();
    // An H.264 elementary stream with an access unit delimiter before every picture; a
    // CEA-608 caption SEI (ATSC A/53 user data, `GA94`) goes in after each delimiter.
    let raw = d.path().join("plain.h264");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=25:duration=10",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-bf",
        "0",
        "-x264-params",
        "aud=1",
        "-f",
        "h264",
        raw.to_str().unwrap(),
    ]);
    let payload: Vec<u8> = [0xB5, 0x00, 0x31]
        .into_iter()
        .chain(*b"GA94")
        // cc_data: process flag and two triplets (field 1: EDM, then padding).
        .chain([
            0x03,
            0x40 | 2,
            0xFF,
            0xFC,
            0x94,
            0x2C,
            0xFC,
            0x80,
            0x80,
            0xFF,
        ])
        .collect();
    let mut sei = vec![0, 0, 0, 1, 0x06, 0x04, payload.len() as u8];
    sei.extend(&payload);
    sei.push(0x80);
    let stream = std::fs::read(&raw).unwrap();
    let aud = [0u8, 0, 0, 1, 0x09];
    let mut with_cc = Vec::new();
    let mut i = 0;
    while i < stream.len() {
        if stream[i..].starts_with(&aud) {
            // The delimiter and its one payload byte, then the caption SEI.
            with_cc.extend_from_slice(&stream[i..i + 6]);
            with_cc.extend_from_slice(&sei);
            i += 6;
        } else {
            with_cc.push(stream[i]);
            i += 1;
        }
    }
    let cc = d.path().join("cc.h264");
    std::fs::write(&cc, with_cc).unwrap();
    let src = d.path().join("captioned.mp4");
    ffmpeg(&[
        "-r",
        "25",
        "-i",
        cc.to_str().unwrap(),
        "-c",
        "copy",
        src.to_str().unwrap(),
    ]);
    let (frames, captioned) = frames_with_captions(&src);
    assert_eq!(
        (frames, captioned),
        (250, 250),
        "the source carries captions"
    );
    let r = vodpipe_run(&[&src], &d.path().join("out"), &["--chunk-seconds", "4"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let renditions = assert_published_correctly(&r.jobs[0], &src, d.path());
    // Every frame of every rung, across chunk joins, still carries its captions.
    for file in &renditions[..renditions.len() - 1] {
        assert_eq!(frames_with_captions(file), (250, 250), "{file:?}");
    }
}

#[test]
fn an_unreadable_sidecar_is_skipped_with_its_reason_and_a_dark_source_still_gets_a_poster() {
    let d = tempfile::tempdir().unwrap();
    // Black from start to end: no frame is bright enough, so the poster is the chunk's
    // first frame.
    let src = d.path().join("night.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=black:s=320x180:r=25:d=6",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        src.to_str().unwrap(),
    ]);
    // A sidecar that is not subtitles at all, and one that is.
    std::fs::write(d.path().join("night.de.srt"), [0u8, 159, 146, 150, 1, 2, 3]).unwrap();
    std::fs::write(
        d.path().join("night.en.vtt"),
        "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nIt is dark\n",
    )
    .unwrap();
    let r = vodpipe_run(&[&src], &d.path().join("out"), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let job = &r.jobs[0];
    assert_eq!(job["status"], "PUBLISHED", "{job:#}");
    assert_eq!(job["subtitles"], serde_json::json!(["en"]), "{job:#}");
    let skipped: Vec<&serde_json::Value> = job["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["skipped"].is_string())
        .collect();
    assert_eq!(skipped.len(), 1, "{job:#}");
    assert_eq!(skipped[0]["language"], "de", "{job:#}");
    assert!(
        skipped[0]["skipped"].as_str().unwrap().contains("subtitle"),
        "the reason names the step: {job:#}"
    );
    let poster = Path::new(job["poster"].as_str().unwrap());
    assert!(poster.exists(), "{job:#}");
    assert!(
        mean_luma(poster) < 20.0,
        "the fallback is the (black) first frame"
    );
}
