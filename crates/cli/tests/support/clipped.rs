//! What a clipped job must have published: the source's range frame for frame, audio and
//! subtitles cut to it (shared by the embedded and the deployed clipping tests).

use super::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// An 8 s 320×180 25 fps source with a tone and an English mov_text track whose cues fall
/// before, inside, across the end of and after the clip 1.5-4.25.
pub fn clip_source(d: &Path) -> PathBuf {
    let plain = d.join("plain.mp4");
    make_clip(&plain, "320x180", "25", 8, Some(440), FAST_H264);
    let srt = d.join("cues.srt");
    std::fs::write(
        &srt,
        "1\n00:00:00,500 --> 00:00:01,000\nBefore\n\n\
         2\n00:00:02,000 --> 00:00:03,000\nInside\n\n\
         3\n00:00:04,000 --> 00:00:05,000\nAcross the end\n\n\
         4\n00:00:06,000 --> 00:00:07,000\nAfter\n",
    )
    .unwrap();
    let src = d.join("src.mp4");
    with_english_subtitles(&plain, &srt, &src);
    src
}

/// The worst per-frame PSNR of `rendition` against the source's frames
/// `first..first + count` (scaled to the rendition), and how many frames were compared.
fn worst_psnr_against(rendition: &Path, source: &Path, first: u64, count: u64) -> (f64, u64) {
    let stats = rendition.with_extension(format!("{first}.psnr.log"));
    let graph = format!(
        "[1:v]trim=start_frame={first}:end_frame={},setpts=PTS-STARTPTS,format=yuv420p[b];\
         [0:v]setpts=PTS-STARTPTS[a];[a][b]psnr=stats_file={}",
        first + count,
        stats.display()
    );
    compare_with(rendition, source, &graph);
    worst_psnr_in(&stats)
}

/// Checks a job that published `source` clipped to frames `first..first + frames`
/// (`secs` long): every rung and the audio on one timeline from 0, the top rung frame for
/// frame the source's range, the subtitles those of the range.
pub fn assert_clipped(
    job: &Value,
    source: &Path,
    first: u64,
    frames: u64,
    secs: f64,
    scratch: &Path,
) {
    assert_eq!(job["status"], "PUBLISHED", "{job}");
    let master = PathBuf::from(job["master"].as_str().unwrap());
    let (video, audio) = master_entries(&master);
    for (i, pl) in video.iter().enumerate() {
        let file = concat_rendition(pl, &scratch.join(format!("clip-v{i}.mp4")));
        assert_monotonic(&file);
        assert_eq!(decoded_frames(&file), frames, "{pl:?}");
        if i == 0 {
            // The top rung is the source's size: the clip's frames, one for one. A plan
            // off by one frame either way would compare each frame with its neighbour.
            let (worst, n) = worst_psnr_against(&file, source, first, frames);
            assert_eq!(n, frames);
            assert!(
                worst > 30.0,
                "worst frame {worst:.1} dB against the source's range"
            );
            for shifted in [first - 1, first + 1] {
                let (off, _) = worst_psnr_against(&file, source, shifted, frames);
                assert!(off < worst - 5.0, "one frame off compares as well ({off:.1} dB vs {worst:.1} dB): the check cannot tell");
            }
        }
    }
    assert_eq!(audio.len(), 1);
    let a = concat_rendition(&audio[0], &scratch.join("clip-a.mp4"));
    assert_monotonic(&a);
    let d = ffprobe_json(&["-show_entries", "format=duration"], &a);
    let dur: f64 = d["format"]["duration"].as_str().unwrap().parse().unwrap();
    // The audio ends within one AAC frame (21 ms) of the video.
    assert!(
        (dur - secs).abs() < 0.05,
        "audio lasts {dur} s, the clip {secs} s"
    );
    // Subtitles: only what the range shows, moved to start at 0 and cut at its end.
    // A text rendition's uri is relative to the job directory, where the playlists are.
    let uri = job["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "text")
        .and_then(|r| r["uri"].as_str())
        .unwrap_or_else(|| panic!("no text rendition: {job}"));
    let text = std::fs::read_to_string(video[0].parent().unwrap().join(uri)).unwrap();
    let cues = vtt_cues(&text);
    let texts: Vec<&str> = cues.iter().map(|(_, _, t)| t.as_str()).collect();
    assert_eq!(texts, ["Inside", "Across the end"], "{text}");
    // The output's 0 is the first published frame, 1.52 s into the source; the clip
    // ends at 4.25 s on the source's clock.
    let t0 = first as f64 / 25.0;
    assert!((cues[0].0 - (2.0 - t0)).abs() < 0.01, "{cues:?}");
    assert!(
        (cues[1].1 - (4.25 - t0)).abs() < 0.01,
        "the last cue ends at the clip's end: {cues:?}"
    );
}
