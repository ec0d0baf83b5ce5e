//! More codecs in one CMAF presentation: `--codecs h264,av1` and `h264,hevc` publish every
//! rung in each codec on the same segments and timeline. Every rung of every codec is
//! frame-exact and continuous, the master lists each variant with its own CODECS string,
//! the MPD gives each codec its own AdaptationSet, and the AV1 variants play to the end
//! in hls.js and shaka-player (Chromium decodes AV1 through MSE).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::path::Path;
use support::*;

/// The CODECS attribute of each video variant of a master playlist, in order.
fn variant_codecs(master: &str) -> Vec<String> {
    master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .map(|l| {
            l.split("CODECS=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The `codecs` of each video AdaptationSet's representations, one list per set.
fn dash_video_sets(mpd: &str) -> Vec<Vec<String>> {
    mpd.split("<AdaptationSet ")
        .skip(1)
        .filter(|set| set.contains(r#"contentType="video""#))
        .map(|set| {
            set.split("<Representation ")
                .skip(1)
                .map(|r| {
                    r.split("codecs=\"")
                        .nth(1)
                        .and_then(|c| c.split('"').next())
                        .unwrap()
                        .to_string()
                })
                .collect()
        })
        .collect()
}

/// Publishes `src` with `--codecs codecs` and checks everything but playback; returns the
/// job and the master's variant codec strings.
fn publish(src: &Path, out: &Path, codecs: &str, scratch: &Path) -> (Value, Vec<String>) {
    let r = vodpipe_run(
        &[src],
        out,
        &[
            "--codecs",
            codecs,
            "--segment-seconds",
            "2",
            "--chunk-seconds",
            "4",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let job = r.jobs[0].clone();
    // Every rung of every codec: the source's frame count, one continuous timeline.
    assert_published_correctly(&job, src, scratch);
    let master_path = Path::new(job["master"].as_str().unwrap());
    let master = std::fs::read_to_string(master_path).unwrap();
    let codecs_listed = variant_codecs(&master);
    // Trick play holds for every codec: one keyframe at each segment's start.
    assert_trick_play(master_path, scratch);
    (job, codecs_listed)
}

#[test]
fn h264_and_av1_share_one_presentation_and_the_av1_variants_play() {
    let d = tempfile::tempdir().unwrap();
    // 29.97 fps: 2 s is not a whole number of frames, so AV1's even segments are tested.
    let src = d.path().join("cartoon.mp4");
    make_clip(&src, "640x360", "30000/1001", 9, Some(440), HARD_H264);
    let out = d.path().join("out");
    let (job, codecs) = publish(&src, &out, "h264,av1", d.path());

    // Two rungs (360p, 270p) in each codec, H.264 first; AV1 Main, 8 bits, main tier.
    assert_eq!(codecs.len(), 4, "{codecs:?}");
    assert!(
        codecs[..2].iter().all(|c| c.starts_with("avc1.64")),
        "{codecs:?}"
    );
    for c in &codecs[2..] {
        let parts: Vec<&str> = c.split('.').collect();
        assert_eq!(parts.len(), 4, "{c}");
        assert_eq!((parts[0], parts[1], parts[3]), ("av01", "0", "08"), "{c}");
        assert!(parts[2].ends_with('M') && parts[2].len() == 3, "{c}");
    }
    let names = video_ids(&job);
    assert_eq!(names, ["360p", "270p", "360p_av1", "270p_av1"], "{job}");

    // The codec string the master carries is the one the AV1 stream itself declares.
    let master_path = Path::new(job["master"].as_str().unwrap());
    let (variants, _) = master_entries(master_path);
    let av1 = concat_rendition(&variants[2], &d.path().join("av1.mp4"));
    let probe = ffprobe_json(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,codec_tag_string,profile",
        ],
        &av1,
    );
    assert_eq!(probe["streams"][0]["codec_name"], "av1", "{probe}");
    assert_eq!(probe["streams"][0]["codec_tag_string"], "av01", "{probe}");
    // The AV1 rung spends fewer bytes than the H.264 rung of the same size.
    let h264 = concat_rendition(&variants[0], &d.path().join("h264.mp4"));
    let (b264, bav1) = (
        std::fs::metadata(&h264).unwrap().len(),
        std::fs::metadata(&av1).unwrap().len(),
    );
    assert!(
        bav1 < b264,
        "AV1 {bav1} B is not smaller than H.264 {b264} B"
    );
    // And it is the same picture: every frame close to the source's.
    assert_psnr_at_least(&av1, &src, 30.0);

    // DASH: one AdaptationSet per codec, each with its two representations.
    let mpd = std::fs::read_to_string(job["dash"].as_str().unwrap()).unwrap();
    let sets = dash_video_sets(&mpd);
    assert_eq!(sets.len(), 2, "{mpd}");
    assert!(sets[0].iter().all(|c| c.starts_with("avc1.")), "{sets:?}");
    assert_eq!(sets[1], codecs[2..].to_vec(), "{sets:?}");

    // Both players play each AV1 variant to the end (and report that they did). Each rung
    // declares its own level, so its codec string picks it out.
    for av1_codec in &codecs[2..] {
        let report = assert_plays_codec(
            &out,
            "cartoon/master.m3u8",
            "cartoon/manifest.mpd",
            av1_codec,
        );
        for (player, stats) in [("hls", "codecs"), ("dash", "currentCodecs")] {
            let played = report[player]["player_stats"][stats].as_str().unwrap();
            assert_eq!(
                played.split(',').next().map(str::trim),
                Some(av1_codec.as_str()),
                "{player}: {report}"
            );
        }
    }
}

#[test]
fn h264_and_hevc_publish_hvc1_rungs_beside_h264() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("talk.mp4");
    make_clip(&src, "640x360", "25", 7, Some(440), HARD_H264);
    let out = d.path().join("out");
    let (job, codecs) = publish(&src, &out, "h264,hevc", d.path());
    assert_eq!(codecs.len(), 4, "{codecs:?}");
    // HEVC Main, parameter sets out of band (hvc1), main tier: `hvc1.1.6.L<level>.<constraints>`.
    for c in &codecs[2..] {
        assert!(c.starts_with("hvc1.1.6.L"), "{c}");
    }
    let (variants, _) = master_entries(Path::new(job["master"].as_str().unwrap()));
    let hevc = concat_rendition(&variants[2], &d.path().join("hevc.mp4"));
    let probe = ffprobe_json(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,codec_tag_string",
        ],
        &hevc,
    );
    assert_eq!(probe["streams"][0]["codec_tag_string"], "hvc1", "{probe}");
    assert_psnr_at_least(&hevc, &src, 30.0);
    let mpd = std::fs::read_to_string(job["dash"].as_str().unwrap()).unwrap();
    let sets = dash_video_sets(&mpd);
    assert_eq!(sets.len(), 2, "{mpd}");
    assert!(sets[1].iter().all(|c| c.starts_with("hvc1.")), "{sets:?}");
    // Players that cannot decode HEVC still play the presentation, in H.264.
    assert_plays(&out, "talk/master.m3u8", "talk/manifest.mpd");
}

#[test]
fn an_unknown_codec_is_refused_with_the_ones_there_are() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("a.mp4");
    make_clip(&src, "320x180", "25", 1, None, FAST_H264);
    let r = vodpipe_run(&[&src], &d.path().join("out"), &["--codecs", "h264,vp9"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("\"vp9\" is not a codec"), "{}", r.stderr);
    assert!(r.stderr.contains("h264, hevc, av1"), "{}", r.stderr);
}

/// The x264 settings of every chunk encode of `job`'s first rung, as x264 writes them into
/// its first picture (an SEI the packager keeps): one string per chunk.
fn x264_settings(job: &Value) -> Vec<String> {
    let (variants, _) = master_entries(Path::new(job["master"].as_str().unwrap()));
    let playlist = std::fs::read_to_string(&variants[0]).unwrap();
    let dir = variants[0].parent().unwrap();
    playlist
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|seg| {
            let bytes = std::fs::read(dir.join(seg)).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            let at = text.find("options: ")?;
            Some(text[at..].chars().take_while(|c| *c != '\0').collect())
        })
        .collect()
}

#[test]
fn a_title_tuned_for_animation_gets_the_animation_tuning_in_every_chunk() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("cartoon.mp4");
    make_clip(&src, "320x180", "25", 6, None, FAST_H264);
    let run = |tag: &str, extra: &[&str]| {
        let mut args = vec!["--segment-seconds", "2", "--chunk-seconds", "4"];
        args.extend_from_slice(extra);
        let r = vodpipe_run(&[&src], &d.path().join(tag), &args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_published_correctly(&r.jobs[0], &src, d.path());
        x264_settings(&r.jobs[0])
    };
    // Two chunks, each its own x264 run, each saying how it was tuned: animation's
    // stronger deblocking and lighter psychovisual weights, the ladder's B-frames kept.
    let tuned = run("tuned", &["--tune", "animation"]);
    assert_eq!(tuned.len(), 2, "{tuned:?}");
    for s in &tuned {
        assert!(s.contains(" deblock=1:1:1 "), "{s}");
        assert!(s.contains(" psy_rd=0.40:"), "{s}");
        assert!(s.contains(" bframes=3 "), "{s}");
    }
    // Untuned, the same clip gets x264's defaults.
    let plain = run("plain", &[]);
    assert_eq!(plain.len(), 2, "{plain:?}");
    for s in &plain {
        assert!(s.contains(" deblock=1:0:0 "), "{s}");
        assert!(s.contains(" psy_rd=1.00:"), "{s}");
    }
    // A tuning there is none of is refused, naming the ones there are.
    let r = vodpipe_run(&[&src], &d.path().join("bad"), &["--tune", "film"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("use animation or grain"), "{}", r.stderr);
}
