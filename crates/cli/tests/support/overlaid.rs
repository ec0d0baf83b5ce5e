//! What a job with an overlay must have published: the image in every rung at its place,
//! only inside its time window, and the rest of the picture as the source's (shared by
//! the embedded and the deployed overlay tests).

use super::*;
use serde_json::Value;
use std::path::Path;

/// A 64×32 opaque magenta PNG, the logo the tests overlay (Y 107, U 202, V 222 in BT.601
/// limited range: nothing in the test pattern comes near both).
pub fn magenta_logo(path: &Path) {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=magenta:s=64x32,format=rgba",
        "-frames:v",
        "1",
        path.to_str().unwrap(),
    ]);
}

/// Per frame of `file` (its presentation time), the mean U and V of the region `crop`
/// (`w:h:x:y`) after `pre` (a scale, for the source).
fn region_uv(file: &Path, pre: &str, crop: &str) -> Vec<(f64, f64, f64)> {
    let v = ffprobe_json(
        &[
            "-f",
            "lavfi",
            "-show_entries",
            "frame=pts_time:frame_tags=lavfi.signalstats.UAVG,lavfi.signalstats.VAVG",
        ],
        Path::new(&format!(
            "movie={}{pre},setpts=PTS-STARTPTS,crop={crop},signalstats",
            file.display()
        )),
    );
    v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let n = |k: &str| -> f64 { f["tags"][k].as_str().unwrap().parse().unwrap() };
            (
                f["pts_time"].as_str().unwrap().parse().unwrap(),
                n("lavfi.signalstats.UAVG"),
                n("lavfi.signalstats.VAVG"),
            )
        })
        .collect()
}

/// Checks every video rung of `job` (published from `source`) carries the 64×32 logo
/// `width` of the picture wide, `margin` from the top right corner, from `from` to
/// `until` seconds and at no other time, and that the picture's bottom half is the
/// source's. Returns the number of frames seen with the logo, over all rungs.
pub fn assert_overlaid(
    job: &Value,
    source: &Path,
    width: f64,
    margin: f64,
    (from, until): (f64, f64),
    scratch: &Path,
) -> usize {
    assert_eq!(job["status"], "PUBLISHED", "{job}");
    let master = std::path::PathBuf::from(job["master"].as_str().unwrap());
    let (video, _) = master_entries(&master);
    let mut seen = 0;
    for (i, pl) in video.iter().enumerate() {
        let file = concat_rendition(pl, &scratch.join(format!("overlay-v{i}.mp4")));
        let s = ffprobe_json(
            &[
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=width,height",
            ],
            &file,
        );
        let (w, h) = (
            s["streams"][0]["width"].as_u64().unwrap() as f64,
            s["streams"][0]["height"].as_u64().unwrap() as f64,
        );
        let logo_w = ((w * width / 2.0).round() * 2.0).max(2.0);
        let logo_h = (logo_w / 2.0 / 2.0).round() * 2.0;
        let m = (w * margin).round();
        // The logo's inside, two pixels in from its edges (chroma is subsampled).
        let crop = format!(
            "{}:{}:{}:{}",
            logo_w - 4.0,
            logo_h - 4.0,
            w - logo_w - m + 2.0,
            m + 2.0
        );
        let got = region_uv(&file, "", &crop);
        let want = region_uv(source, &format!(",scale={w}:{h}:flags=bicubic"), &crop);
        assert_eq!(got.len(), want.len(), "{pl:?}: frame counts");
        for ((t, u, v), (_, su, sv)) in got.iter().zip(&want) {
            let inside = *t >= from - 1e-3 && *t < until - 1e-3;
            if inside {
                assert!(
                    (u - 202.0).abs() < 12.0 && (v - 222.0).abs() < 12.0,
                    "{pl:?} at {t} s: the logo's place is U {u:.0} V {v:.0}, not magenta"
                );
                seen += 1;
            } else {
                assert!(
                    (u - su).abs() < 10.0 && (v - sv).abs() < 10.0,
                    "{pl:?} at {t} s (outside {from}-{until} s): U {u:.0} V {v:.0}, the source's U {su:.0} V {sv:.0}"
                );
            }
        }
        // Elsewhere, the picture is the source's as any encode's is.
        let stats = scratch.join(format!("overlay-v{i}.psnr.log"));
        let half = format!("crop={w}:{}:0:{}", (h / 2.0).round(), (h / 2.0).round());
        compare_with(
            &file,
            source,
            &format!(
                "[0:v]setpts=PTS-STARTPTS,{half}[a];[1:v]scale={w}:{h}:flags=bicubic,format=yuv420p,setpts=PTS-STARTPTS,{half}[b];[a][b]psnr=stats_file={}",
                stats.display()
            ),
        );
        let (worst, _) = worst_psnr_in(&stats);
        assert!(
            worst > 30.0,
            "{pl:?}: the bottom half's worst frame is {worst:.1} dB"
        );
    }
    seen
}
