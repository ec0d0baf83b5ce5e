//! Per-title ladders: a ladder shaped to the title instead of to the average title.
//!
//! A fixed ladder spends the same constant quality (CRF) on every rung, so an easy title
//! (animation, a talking head) gets its low rungs at low resolutions that look worse, once
//! a player scales them to the screen, than a larger picture at a coarser quantiser in the
//! same bits. Per-title analysis measures that on the title itself: a few seconds sampled
//! from it are encoded at every rung size and at several CRF steps above the ladder's, each
//! probe point's picture quality is measured as the viewer sees it (scaled to the top
//! rung's size, PSNR against the source scaled the same way), and for every rung of the
//! fixed ladder the cheapest probe point of at least that rung's quality takes its place.
//! Hard content, where the caps already bind, keeps its fixed rungs: nothing cheaper
//! reaches their quality.
//!
//! The top rung is always the fixed one (nothing but the largest size at the ladder's own
//! CRF reaches its quality), every rung keeps within the bitrate cap of the rung it
//! replaces (the bandwidth a player picked it for), and a rung larger than the one it
//! replaces is named for its size and cap (`720p-1100k`).

use crate::error::{Error, Result};
use crate::info::{FieldOrder, VideoInfo};
use crate::ladder::{LadderConfig, Rung};
use crate::process::ToolRun;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// At most this many windows of the title are sampled (spread over it, away from its
/// ends).
pub const SAMPLES: u32 = 3;
/// Seconds per sampled window.
pub const SAMPLE_SECS: f64 = 2.0;
/// The CRF steps above the ladder's CRF each size is probed at (x264 halves its bitrate
/// about every 6 steps, so these span about a sixth of the rate to the full rate). Each
/// step is a full set of probe encodes: four keep the analysis near a tenth of a short
/// title's encode.
pub const STEPS: [u32; 4] = [0, 5, 10, 15];

/// A rung above that already publishes a rung's chosen point serves that rung's viewers
/// when the point's mean rate is at most this share of their cap (its peaks stay under
/// it).
pub const SERVED_SHARE: f64 = 0.5;

/// One probe encode: a size at a quality step, and what it cost and looked like.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Point {
    /// Encoded width.
    pub width: u32,
    /// Encoded height.
    pub height: u32,
    /// CRF steps above the ladder's.
    pub crf_offset: u32,
    /// Mean video bitrate over the samples, kb/s.
    pub kbps: f64,
    /// PSNR (Y, U and V, from the mean squared error over every sampled frame) at the top
    /// rung's size, in dB.
    pub psnr: f64,
    /// SSIM (all planes, mean over every sampled frame) at the top rung's size: PSNR
    /// alone favours a larger picture at a coarse step more than the eye does, so a
    /// choice must match both.
    pub ssim: f64,
    /// On the rate–quality frontier: no other point has at least its quality (PSNR and
    /// SSIM) for fewer bits.
    pub frontier: bool,
}

/// What per-title analysis did with one rung of the fixed ladder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Choice {
    /// The fixed rung's name.
    pub fixed: String,
    /// The fixed rung's probe bitrate, kb/s.
    pub fixed_kbps: f64,
    /// The fixed rung's probe quality, dB.
    pub fixed_psnr: f64,
    /// The fixed rung's probe SSIM.
    pub fixed_ssim: f64,
    /// The rung published in its place, or None when a rung above already publishes that
    /// point well inside this rung's cap (the rung is dropped).
    pub rung: Option<String>,
    /// The replacing point's bitrate, kb/s.
    pub kbps: f64,
    /// The replacing point's quality, dB.
    pub psnr: f64,
    /// The replacing point's SSIM.
    pub ssim: f64,
}

/// The analysis a job's plan keeps: what was probed and what it chose, so `vodpipe plan`
/// and the stored plan show why a title got its ladder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Analysis {
    /// The size quality was measured at (the top rung's), `WxH`.
    pub display: String,
    /// Seconds of the title sampled.
    pub sampled_secs: f64,
    /// Wall-clock seconds the analysis took.
    pub secs: f64,
    /// Every probe point, largest size first, then by step.
    pub points: Vec<Point>,
    /// One per fixed rung, in ladder order.
    pub choices: Vec<Choice>,
    /// Probe bits the chosen ladder spends against the fixed one's, over all rungs
    /// (0.8: 20 % fewer).
    pub bits_ratio: f64,
}

/// What analysis needs to know about the title.
pub struct Title<'a> {
    /// ffmpeg binary.
    pub ffmpeg: &'a str,
    /// The source (a path, or a URL ffmpeg reads with ranged requests).
    pub source: &'a Path,
    /// Its video stream.
    pub video: &'a VideoInfo,
    /// Its video's duration, seconds (a stored plan's stream has no frame table to tell).
    pub duration_secs: f64,
    /// Where the source's timeline starts (seeks are relative to it).
    pub start_secs: f64,
    /// Scratch space; the probe encodes are deleted when analysis ends.
    pub scratch: &'a Path,
    /// Flags that stop the probe runs at once (shutdown, a lost lease).
    pub cancel: &'a [Arc<AtomicBool>],
}

/// Samples `title`, probes every size of `fixed` (the H.264 rungs of the fixed ladder) at
/// every [`STEPS`] step, and chooses the per-title rungs. Returns the rungs (H.264; the
/// caller adds the other codecs) and the analysis.
pub fn analyse(
    title: &Title<'_>,
    cfg: &LadderConfig,
    fixed: &[Rung],
) -> Result<(Vec<Rung>, Analysis)> {
    let started = Instant::now();
    let Some(top) = fixed.first() else {
        return Err(Error::Rejected("per-title analysis needs a ladder".into()));
    };
    let display = (top.width, top.height);
    let dir = tempfile::Builder::new()
        .prefix("pertitle-")
        .tempdir_in(title.scratch)
        .map_err(|e| Error::Unavailable(format!("per-title scratch space: {e}")))?;
    let windows = windows(title.duration_secs);
    // bytes and (sum of per-frame MSE, frames) per (size, step), over all windows
    let n = fixed.len() * STEPS.len();
    let mut bytes = vec![0u64; n];
    let mut mse = vec![(0.0f64, 0u64); n];
    let mut ssim = vec![(0.0f64, 0u64); n];
    for (w, &(at, secs)) in windows.iter().enumerate() {
        let prefix = dir.path().join(format!("w{w}"));
        let timeout = Duration::from_secs_f64((secs * 120.0).max(120.0));
        let args = encode_args(title, cfg, fixed, at, secs, &prefix);
        let run = |args, step: String| {
            let mut run = ToolRun::new(title.ffmpeg, args, step).timeout(timeout);
            for flag in title.cancel {
                run = run.cancel_on(flag.clone());
            }
            run.run()
        };
        run(args, format!("per-title probe encode {w}"))?;
        let args = quality_args(title, fixed, display, at, secs, &prefix);
        run(args, format!("per-title quality {w}"))?;
        for k in 0..n {
            let enc = probe_path(&prefix, k, "h264");
            bytes[k] += std::fs::metadata(&enc).map(|m| m.len()).unwrap_or(0);
            let stats = std::fs::read_to_string(probe_path(&prefix, k, "psnr"))
                .map_err(|e| Error::Unavailable(format!("per-title quality stats: {e}")))?;
            let (sum, frames) = stat_sum(&stats, "mse_avg:");
            mse[k].0 += sum;
            mse[k].1 += frames;
            let stats = std::fs::read_to_string(probe_path(&prefix, k, "ssim"))
                .map_err(|e| Error::Unavailable(format!("per-title quality stats: {e}")))?;
            let (sum, frames) = stat_sum(&stats, "All:");
            ssim[k].0 += sum;
            ssim[k].1 += frames;
        }
    }
    let sampled: f64 = windows.iter().map(|w| w.1).sum();
    let mut points = Vec::with_capacity(n);
    for (i, r) in fixed.iter().enumerate() {
        for (j, &step) in STEPS.iter().enumerate() {
            let k = i * STEPS.len() + j;
            let (sum, frames) = mse[k];
            if frames == 0 {
                return Err(Error::Rejected(format!(
                    "per-title analysis measured no frames at {}x{}",
                    r.width, r.height
                )));
            }
            points.push(Point {
                width: r.width,
                height: r.height,
                crf_offset: step,
                kbps: bytes[k] as f64 * 8.0 / sampled.max(1e-3) / 1000.0,
                psnr: psnr(sum / frames as f64),
                ssim: ssim[k].0 / ssim[k].1.max(1) as f64,
                frontier: false,
            });
        }
    }
    mark_frontier(&mut points);
    let (rungs, choices) = choose(fixed, &points);
    let spent = |pick: &dyn Fn(&Choice) -> f64| choices.iter().map(pick).sum::<f64>();
    let fixed_bits = spent(&|c| c.fixed_kbps);
    let chosen_bits = spent(&|c| if c.rung.is_some() { c.kbps } else { 0.0 });
    let analysis = Analysis {
        display: format!("{}x{}", display.0, display.1),
        sampled_secs: sampled,
        secs: started.elapsed().as_secs_f64(),
        points,
        choices,
        bits_ratio: if fixed_bits > 0.0 {
            chosen_bits / fixed_bits
        } else {
            1.0
        },
    };
    tracing::info!(
        sampled_secs = sampled,
        secs = analysis.secs,
        bits_ratio = analysis.bits_ratio,
        rungs = rungs.len(),
        "per-title ladder chosen"
    );
    Ok((rungs, analysis))
}

/// The sampled windows (start, seconds) of a title `duration` long: one [`SAMPLE_SECS`]
/// window per two minutes of it, at most [`SAMPLES`], each centred in an equal part of the title
/// (so a short title's analysis stays small beside its encode), or the whole of a title
/// shorter than one window.
pub fn windows(duration: f64) -> Vec<(f64, f64)> {
    if duration <= SAMPLE_SECS {
        return vec![(0.0, duration.max(0.1))];
    }
    let n = ((duration / 120.0).ceil() as u32).clamp(1, SAMPLES);
    (0..n)
        .map(|i| {
            let centre = duration * f64::from(2 * i + 1) / f64::from(2 * n);
            ((centre - SAMPLE_SECS / 2.0).max(0.0), SAMPLE_SECS)
        })
        .collect()
}

/// The path of probe `k`'s file with extension `ext`.
fn probe_path(prefix: &Path, k: usize, ext: &str) -> std::path::PathBuf {
    let mut p = prefix.as_os_str().to_owned();
    p.push(format!("-{k}.{ext}"));
    p.into()
}

/// The input options of one window: the source from `at`, for `secs`.
fn window_input(title: &Title<'_>, at: f64, secs: f64) -> Vec<String> {
    let mut a = Vec::new();
    if at > 0.0 {
        a.extend(["-ss".into(), format!("{:.3}", title.start_secs + at)]);
    }
    a.extend([
        "-t".into(),
        format!("{secs:.3}"),
        "-i".into(),
        title.source.display().to_string(),
    ]);
    a
}

/// The source's picture as every encode sees it: timestamps from the window's first
/// frame, deinterlaced when interlaced.
fn source_chain(video: &VideoInfo) -> String {
    let mut chain = format!("[0:{}]setpts=PTS-STARTPTS", video.index);
    if video.field_order == FieldOrder::Interlaced {
        chain.push_str(",bwdif=mode=send_frame:parity=auto:deint=all");
    }
    chain
}

/// One ffmpeg that decodes the window once and encodes it at every size and step, each
/// capped like its rung, to raw H.264 (so its size is the video bits alone).
fn encode_args(
    title: &Title<'_>,
    cfg: &LadderConfig,
    fixed: &[Rung],
    at: f64,
    secs: f64,
    prefix: &Path,
) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]
        .map(String::from)
        .to_vec();
    a.extend(window_input(title, at, secs));
    let mut graph = format!("{},split={}", source_chain(title.video), fixed.len());
    for i in 0..fixed.len() {
        graph.push_str(&format!("[s{i}]"));
    }
    for (i, r) in fixed.iter().enumerate() {
        graph.push_str(&format!(
            ";[s{i}]scale={}:{}:flags=bicubic,setsar=1,format=yuv420p,split={}",
            r.width,
            r.height,
            STEPS.len()
        ));
        for j in 0..STEPS.len() {
            graph.push_str(&format!("[v{}]", i * STEPS.len() + j));
        }
    }
    a.extend(["-filter_complex".into(), graph]);
    for (i, r) in fixed.iter().enumerate() {
        for (j, step) in STEPS.iter().enumerate() {
            let k = i * STEPS.len() + j;
            a.extend([
                "-map".into(),
                format!("[v{k}]"),
                "-c:v".into(),
                "libx264".into(),
                "-preset".into(),
                cfg.preset.clone(),
            ]);
            // Probed as the rungs will be encoded: the title's tuning moves its frontier.
            a.extend(cfg.tune_args());
            a.extend([
                "-crf".into(),
                (cfg.crf + step).min(51).to_string(),
                "-maxrate".into(),
                format!("{}k", r.max_kbps),
                "-bufsize".into(),
                format!("{}k", r.max_kbps * 2),
                "-profile:v".into(),
                "high".into(),
                "-bf".into(),
                "3".into(),
                // One thread each: the encoders of a window already run side by side.
                "-threads".into(),
                "1".into(),
                "-fps_mode".into(),
                "passthrough".into(),
                "-an".into(),
                "-sn".into(),
                "-dn".into(),
                "-f".into(),
                "h264".into(),
                "-y".into(),
                probe_path(prefix, k, "h264").display().to_string(),
            ]);
        }
    }
    a
}

/// One ffmpeg that scales every probe encode of the window to the display size and
/// compares it, frame by frame, with the source scaled the same way; per-frame errors go
/// to a stats file per encode. Frames are paired by their number (raw H.264 carries no
/// timestamps), which holds because every encode kept every frame.
fn quality_args(
    title: &Title<'_>,
    fixed: &[Rung],
    display: (u32, u32),
    at: f64,
    secs: f64,
    prefix: &Path,
) -> Vec<String> {
    let n = fixed.len() * STEPS.len();
    let mut a: Vec<String> = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]
        .map(String::from)
        .to_vec();
    a.extend(window_input(title, at, secs));
    for k in 0..n {
        a.extend([
            "-i".into(),
            probe_path(prefix, k, "h264").display().to_string(),
        ]);
    }
    let (w, h) = display;
    // Every other frame is compared: half the work, and the errors of neighbouring frames
    // of one encode differ little.
    let frame_clock = "select='not(mod(n\\,2))',settb=1/25,setpts=N";
    let mut graph = format!(
        "{},scale={w}:{h}:flags=bicubic,setsar=1,format=yuv420p,{frame_clock},split={}",
        source_chain(title.video),
        2 * n
    );
    for k in 0..n {
        graph.push_str(&format!("[r{k}][rs{k}]"));
    }
    // Stats paths go inside the filter graph: escape what the graph parser reads.
    let stats = |k: usize, ext: &str| {
        probe_path(prefix, k, ext)
            .display()
            .to_string()
            .replace('\\', "\\\\\\\\")
            .replace(':', "\\\\:")
            .replace('\'', "\\\\\\'")
    };
    for k in 0..n {
        graph.push_str(&format!(
            ";[{}:v]scale={w}:{h}:flags=bicubic,setsar=1,format=yuv420p,{frame_clock},split[e{k}][es{k}];[e{k}][r{k}]psnr=stats_file={}[q{k}];[es{k}][rs{k}]ssim=stats_file={}[qs{k}]",
            k + 1,
            stats(k, "psnr"),
            stats(k, "ssim")
        ));
    }
    a.extend(["-filter_complex".into(), graph]);
    for k in 0..n {
        for q in [format!("[q{k}]"), format!("[qs{k}]")] {
            a.extend(["-map".into(), q, "-f".into(), "null".into(), "-".into()]);
        }
    }
    a
}

/// The sum over frames of the `key` field of a psnr (`mse_avg:`) or ssim (`All:`) stats
/// file, and the frame count.
fn stat_sum(stats: &str, key: &str) -> (f64, u64) {
    stats
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix(key))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .fold((0.0, 0), |(s, n), m| (s + m, n + 1))
}

/// PSNR of an 8-bit picture with mean squared error `mse` (100 dB for a perfect copy).
fn psnr(mse: f64) -> f64 {
    if mse <= 1e-10 {
        100.0
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// Marks the points no other point beats: none has at least their quality for fewer bits.
fn mark_frontier(points: &mut [Point]) {
    let all = points.to_vec();
    for p in points.iter_mut() {
        p.frontier = !all
            .iter()
            .any(|q| q.psnr >= p.psnr && q.ssim >= p.ssim && q.kbps < p.kbps);
    }
}

/// For each fixed rung, the cheapest probe point of at least its quality (PSNR and SSIM
/// both), capped at the
/// fixed rung's cap (and its own size's); a point already chosen is not published twice.
pub fn choose(fixed: &[Rung], points: &[Point]) -> (Vec<Rung>, Vec<Choice>) {
    let at = |w: u32, h: u32, step: u32| {
        points
            .iter()
            .find(|p| p.width == w && p.height == h && p.crf_offset == step)
    };
    let size_rung = |w: u32, h: u32| fixed.iter().find(|r| r.width == w && r.height == h);
    let mut rungs: Vec<Rung> = Vec::new();
    let mut choices = Vec::new();
    for r in fixed {
        let Some(own) = at(r.width, r.height, 0) else {
            rungs.push(r.clone());
            continue;
        };
        let best = points
            .iter()
            .filter(|p| p.psnr >= own.psnr && p.ssim >= own.ssim)
            .min_by(|a, b| a.kbps.total_cmp(&b.kbps).then(b.psnr.total_cmp(&a.psnr)))
            .unwrap_or(own);
        let base = size_rung(best.width, best.height).unwrap_or(r);
        let cap = base.max_kbps.min(r.max_kbps);
        // A point a rung above already publishes serves this rung's viewers too when its
        // rate sits well inside their bandwidth; otherwise it is published again under
        // this rung's cap, so a viewer with this much bandwidth still gets that quality.
        let served = rungs.iter().any(|x| {
            x.width == best.width
                && x.height == best.height
                && x.crf_offset == best.crf_offset
                && (best.kbps <= f64::from(r.max_kbps) * SERVED_SHARE || x.max_kbps <= cap)
        });
        let name = if served {
            None
        } else {
            let name = if rungs.iter().any(|x| x.name == base.name) {
                format!("{}-{cap}k", base.name)
            } else {
                base.name.clone()
            };
            rungs.push(Rung {
                name: name.clone(),
                width: best.width,
                height: best.height,
                max_kbps: cap,
                codec: r.codec,
                crf_offset: best.crf_offset,
                range: r.range,
            });
            Some(name)
        };
        choices.push(Choice {
            fixed: r.name.clone(),
            fixed_kbps: own.kbps,
            fixed_psnr: own.psnr,
            fixed_ssim: own.ssim,
            rung: name,
            kbps: best.kbps,
            psnr: best.psnr,
            ssim: best.ssim,
        });
    }
    (rungs, choices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ladder::VideoCodec;

    fn rung(name: &str, w: u32, h: u32, cap: u32) -> Rung {
        Rung {
            name: name.into(),
            width: w,
            height: h,
            max_kbps: cap,
            codec: VideoCodec::H264,
            crf_offset: 0,
            range: Default::default(),
        }
    }

    fn point(w: u32, h: u32, step: u32, kbps: f64, psnr: f64) -> Point {
        Point {
            width: w,
            height: h,
            crf_offset: step,
            kbps,
            psnr,
            // Monotone in PSNR, so these cases turn on PSNR alone.
            ssim: psnr / 100.0,
            frontier: false,
        }
    }

    #[test]
    fn an_easy_title_replaces_small_rungs_with_a_larger_picture_at_a_coarser_step() {
        // Shaped like animation: the larger picture at a coarser step beats the smaller one.
        let fixed = [rung("720p", 1280, 720, 3000), rung("360p", 640, 360, 730)];
        let points = [
            point(1280, 720, 0, 2900.0, 44.0),
            point(1280, 720, 10, 700.0, 36.0),
            point(640, 360, 0, 450.0, 32.5),
            point(640, 360, 10, 150.0, 31.0),
        ];
        // Here the 720p step-12 point costs more than 360p's own: 360p stays.
        let (rungs, choices) = choose(&fixed, &points);
        assert_eq!(rungs[0], fixed[0]);
        assert_eq!(rungs[1].name, "360p");
        assert_eq!(choices[1].kbps, 450.0);

        let points = [
            point(1280, 720, 0, 2900.0, 44.0),
            point(1280, 720, 10, 400.0, 33.0),
            point(640, 360, 0, 450.0, 32.5),
            point(640, 360, 10, 150.0, 31.0),
        ];
        let (rungs, choices) = choose(&fixed, &points);
        assert_eq!(rungs.len(), 2);
        assert_eq!(
            (rungs[1].name.as_str(), rungs[1].width, rungs[1].crf_offset),
            ("720p-730k", 1280, 10)
        );
        // Capped at the bandwidth of the rung it replaces.
        assert_eq!(rungs[1].max_kbps, 730);
        assert_eq!(choices[1].fixed, "360p");
        assert!(choices[1].psnr >= choices[1].fixed_psnr);
    }

    #[test]
    fn a_hard_title_keeps_its_fixed_rungs() {
        let fixed = [rung("720p", 1280, 720, 3000), rung("360p", 640, 360, 730)];
        let points = [
            point(1280, 720, 0, 3000.0, 34.0),
            point(1280, 720, 10, 900.0, 30.4),
            point(640, 360, 0, 730.0, 30.5),
            point(640, 360, 10, 150.0, 28.5),
        ];
        let (rungs, _) = choose(&fixed, &points);
        assert_eq!(rungs, fixed.to_vec());
    }

    #[test]
    fn a_point_must_match_both_psnr_and_ssim() {
        // Measured on animation: the coarsest 720p step beats 540p on PSNR, not on SSIM.
        let fixed = [rung("720p", 1280, 720, 3000), rung("540p", 960, 540, 2000)];
        let mut points = vec![
            point(1280, 720, 0, 2800.0, 45.0),
            point(1280, 720, 15, 570.0, 35.9),
            point(1280, 720, 10, 800.0, 37.9),
            point(960, 540, 0, 1200.0, 35.4),
        ];
        points[1].ssim = 0.9745;
        points[2].ssim = 0.985;
        points[3].ssim = 0.9783;
        let (rungs, choices) = choose(&fixed, &points);
        assert_eq!((rungs[1].width, rungs[1].crf_offset), (1280, 10));
        assert!(choices[1].ssim >= choices[1].fixed_ssim);
    }

    #[test]
    fn a_point_two_rungs_choose_is_published_once_unless_it_crowds_the_lower_cap() {
        let fixed = [rung("720p", 1280, 720, 3000), rung("540p", 960, 540, 2000)];
        let points = [
            point(1280, 720, 0, 1000.0, 44.0),
            point(960, 540, 0, 1200.0, 40.0),
        ];
        let (rungs, choices) = choose(&fixed, &points);
        assert_eq!(rungs.len(), 1);
        assert_eq!(choices[1].rung, None);
        // At 1900 kb/s the 720p rung's peaks would pass 540p's 2000 kb/s: published again,
        // capped for those viewers.
        let points = [
            point(1280, 720, 0, 1900.0, 44.0),
            point(960, 540, 0, 2000.0, 40.0),
        ];
        let (rungs, _) = choose(&fixed, &points);
        assert_eq!(rungs.len(), 2);
        assert_eq!(
            (rungs[1].name.as_str(), rungs[1].max_kbps),
            ("720p-2000k", 2000)
        );
    }

    #[test]
    fn frontier_and_windows() {
        let mut points = vec![
            point(2, 2, 0, 100.0, 40.0),
            point(2, 2, 3, 60.0, 38.0),
            point(4, 4, 0, 120.0, 39.0),
        ];
        mark_frontier(&mut points);
        assert_eq!(
            points.iter().map(|p| p.frontier).collect::<Vec<_>>(),
            [true, true, false]
        );
        assert_eq!(windows(1.5), vec![(0.0, 1.5)]);
        assert_eq!(windows(4.0), vec![(1.0, 2.0)]);
        assert_eq!(windows(30.0).len(), 1);
        assert_eq!(windows(200.0).len(), 2);
        let w = windows(3600.0);
        assert_eq!(w.len(), 3);
        assert_eq!(w[1], (1799.0, 2.0));
        assert_eq!(
            stat_sum(
                "n:1 mse_avg:2.00 mse_y:1\nn:2 mse_avg:4.00 mse_y:1\n",
                "mse_avg:"
            ),
            (6.0, 2)
        );
        assert_eq!(
            stat_sum(
                "n:1 Y:0.9 U:0.9 V:0.9 All:0.5 (3.0)\nn:2 All:0.25 (1.0)\n",
                "All:"
            ),
            (0.75, 2)
        );
        assert!((psnr(1.0) - 48.13).abs() < 0.01);
    }
}
