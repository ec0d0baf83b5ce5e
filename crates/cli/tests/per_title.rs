//! Per-title ladders (`--ladder auto`): on the tests' animated clip, the per-title ladder
//! publishes, for every rung of the fixed ladder, a rung of at least its picture quality
//! (measured on the whole published title, as a viewer sees it: scaled to the source's
//! size) for fewer bytes, and at least 15 % fewer video bytes in all; it stays
//! frame-exact and plays. `vodpipe plan` shows the probe points and the frontier chosen
//! from.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use support::*;

/// Mean PSNR (dB) of `rendition` scaled up to `w`x`h` against `source`, frame by frame.
fn psnr_at_source_size(rendition: &Path, source: &Path, w: u64, h: u64) -> f64 {
    let graph = format!(
        "[0:v]scale={w}:{h}:flags=bicubic,format=yuv420p,setpts=PTS-STARTPTS[a];[1:v]format=yuv420p,setpts=PTS-STARTPTS[b];[a][b]psnr"
    );
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-i"])
        .arg(rendition)
        .arg("-i")
        .arg(source)
        .args(["-lavfi", &graph, "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .rfind(|l| l.contains("PSNR") && l.contains("average:"))
        .unwrap_or_else(|| panic!("no PSNR in {err}"));
    line.split("average:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Each video rendition of a published job: (name, bytes, PSNR at the source's size).
fn rungs(job: &Value, source: &Path, scratch: &Path, tag: &str) -> Vec<(String, u64, f64)> {
    let (variants, _) = master_entries(Path::new(job["master"].as_str().unwrap()));
    let videos = video_renditions(job);
    assert_eq!(videos.len(), variants.len(), "{job}");
    videos
        .iter()
        .zip(&variants)
        .map(|(r, playlist)| {
            let name = r["id"].as_str().unwrap().to_string();
            let file = concat_rendition(playlist, &scratch.join(format!("{tag}-{name}.mp4")));
            let bytes = std::fs::metadata(&file).unwrap().len();
            (name, bytes, psnr_at_source_size(&file, source, 1280, 720))
        })
        .collect()
}

#[test]
fn an_animated_title_gets_the_same_quality_in_fewer_bytes() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("cartoon.mp4");
    make_clip(&src, "1280x720", "25", 6, Some(440), HARD_H264);
    let args = ["--segment-seconds", "2", "--chunk-seconds", "4"];

    // The plan shows the analysis: every size at every step, the frontier, the choices.
    let plan = Command::new(env!("CARGO_BIN_EXE_vodpipe"))
        .args(["plan", "--ladder", "auto", "--json"])
        .arg(&src)
        .output()
        .unwrap();
    assert!(plan.status.success(), "{plan:?}");
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let analysis = &plan["per_title"];
    let points = analysis["points"].as_array().unwrap();
    assert_eq!(points.len(), 5 * 4, "{analysis}");
    assert!(points.iter().any(|p| p["frontier"] == true), "{analysis}");
    assert_eq!(analysis["choices"].as_array().unwrap().len(), 5);
    // On animation a larger picture at a coarser step replaces a smaller rung.
    let planned = plan["rungs"].as_array().unwrap();
    assert!(
        planned
            .iter()
            .any(|r| r["crf_offset"].as_u64().unwrap_or(0) > 0),
        "{plan}"
    );

    let fixed_out = d.path().join("fixed");
    let r = vodpipe_run(&[&src], &fixed_out, &args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let fixed_job = r.jobs[0].clone();
    let auto_out = d.path().join("auto");
    let mut auto_args = args.to_vec();
    auto_args.extend(["--ladder", "auto"]);
    let r = vodpipe_run(&[&src], &auto_out, &auto_args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let auto_job = r.jobs[0].clone();
    // The analysis ran as the job's first work item (ingest only planned): one item more
    // than the fixed ladder's job, committed like the rest.
    assert_eq!(
        auto_job["chunks_total"].as_u64(),
        fixed_job["chunks_total"].as_u64().map(|n| n + 1),
        "fixed {fixed_job}\nauto {auto_job}"
    );
    assert_eq!(auto_job["chunks_done"], auto_job["chunks_total"]);
    // Frame-exact and continuous on every per-title rung, like any ladder.
    assert_published_correctly(&auto_job, &src, d.path());
    let published = video_ids(&auto_job);
    let chosen: Vec<&str> = planned
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        published, chosen,
        "the job publishes the planned per-title rungs"
    );

    let fixed = rungs(&fixed_job, &src, d.path(), "fixed");
    let auto = rungs(&auto_job, &src, d.path(), "auto");
    // Every fixed rung has a per-title rung at least as good for no more bytes.
    for (name, bytes, db) in &fixed {
        let better = auto
            .iter()
            .filter(|(_, b, q)| q >= db && b <= bytes)
            .min_by_key(|(_, b, _)| *b);
        assert!(
            better.is_some(),
            "no per-title rung matches fixed {name} ({bytes} B, {db:.2} dB): {auto:?}"
        );
    }
    let total = |rs: &[(String, u64, f64)]| rs.iter().map(|r| r.1).sum::<u64>() as f64;
    let ratio = total(&auto) / total(&fixed);
    assert!(
        ratio <= 0.85,
        "per-title spends {:.0} % of the fixed ladder's bytes: fixed {fixed:?}, auto {auto:?}",
        ratio * 100.0
    );

    // Two rungs of one size at different rates play like any others.
    assert_plays(&auto_out, "cartoon/master.m3u8", "cartoon/manifest.mpd");
}
