//! `vodpipe plan`: what a source would become (its probe, the ladder chosen for it, the
//! chunk plan) before anything is encoded, so a ladder or chunk size can be judged
//! without spending the encode.

use crate::media_opts::{config, MediaOpts};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use vodpipe_control::cost::usd;
use vodpipe_control::ingest::prepare_local;
use vodpipe_media::ladder::VideoCodec;

/// Arguments of `vodpipe plan`.
#[derive(Args)]
pub struct PlanArgs {
    /// Source video file.
    input: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    media: MediaOpts,
}

/// `vodpipe plan`: exits 1 when the source cannot be planned.
pub fn plan(a: PlanArgs) -> Result<i32> {
    let cfg = config(&std::env::temp_dir(), &a.media)?;
    // A preview runs the per-title analysis in place, where a job runs it as a work item.
    let prepared = prepare_local(&cfg, &a.input).and_then(|mut p| {
        if p.ladder_pending() {
            let secs = p.media.video.as_ref().map_or(0.0, |v| v.duration_secs());
            p.choose_ladder(&cfg.ffmpeg, &a.input, &cfg.scratch, secs, &[])?;
        }
        Ok(p)
    });
    let p = match prepared {
        Ok(p) => p,
        Err(e) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"source": a.input, "error": e.to_string()})
                );
            } else {
                eprintln!("{}: {e}", a.input.display());
            }
            return Ok(1);
        }
    };
    let v = p.media.video.as_ref().context("no video")?;
    let tier = cfg
        .settings
        .command_tier
        .unwrap_or(cfg.settings.default_tier);
    if a.json {
        let mut media = serde_json::to_value(&p.media)?;
        if let Some(video) = media.get_mut("video").and_then(|v| v.as_object_mut()) {
            video.remove("frame_pts");
        }
        println!(
            "{}",
            serde_json::json!({
                "source": a.input,
                "media": media,
                "frames": p.plan.total_frames,
                "duration_secs": v.duration_secs(),
                "rungs": p.rungs,
                "planned_cost_usd": p.planned_cost_usd(tier),
                "per_title": p.per_title,
                "segments": p.plan.segments.len(),
                "chunks": p.plan.chunks.iter().map(|c| serde_json::json!({
                    "index": c.index, "first_frame": c.first_frame, "frames": c.frames,
                    "segments": c.segments.len(), "seek_secs": c.seek_secs})).collect::<Vec<_>>(),
            })
        );
        return Ok(0);
    }
    let (dw, dh) = v.display_size();
    println!("{}", a.input.display());
    println!(
        "  container {}  video {} {}x{} (display {dw}x{dh}, rotation {}°) {} {:.3} fps{}{}",
        p.media.format_name,
        v.codec,
        v.width,
        v.height,
        v.rotation,
        v.pix_fmt,
        v.frame_rate.as_f64(),
        if v.vfr { " VFR" } else { "" },
        if v.field_order == vodpipe_media::probe::FieldOrder::Interlaced {
            " interlaced"
        } else {
            ""
        },
    );
    if v.colour.dynamic_range().is_hdr() {
        println!("  colour {}", v.colour.describe());
        println!(
            "  hdr {}: {}",
            p.config.hdr.name(),
            match p.config.hdr.name() {
                "keep" => "HDR rungs beside a tone-mapped SDR ladder",
                _ => "tone-mapped SDR rungs only",
            }
        );
    }
    for t in &p.media.audio {
        println!(
            "  audio #{} {} {} ch {} Hz {}",
            t.index,
            t.codec,
            t.channels,
            t.sample_rate,
            t.language.as_deref().unwrap_or("und")
        );
    }
    println!(
        "  {} frames, {:.3} s",
        p.plan.total_frames,
        v.duration_secs()
    );
    if let Some(a) = &p.per_title {
        print_per_title(a);
    }
    // SVT-AV1 has no such tunings: an AV1-only ladder is not tuned, whatever it says.
    let tuned = p
        .config
        .tune
        .filter(|_| p.rungs.iter().any(|r| r.codec != VideoCodec::Av1));
    match tuned {
        Some(t) => println!("ladder (tuned for {}):", t.name()),
        None => println!("ladder:"),
    }
    for r in &p.rungs {
        let step = if r.crf_offset > 0 {
            format!("  crf +{}", r.crf_offset)
        } else {
            String::new()
        };
        let range = if r.range.is_hdr() {
            format!("  {}", r.range.hls_name())
        } else {
            String::new()
        };
        println!(
            "  {:>6}  {}x{}  max {} kb/s{step}{range}",
            r.name, r.width, r.height, r.max_kbps
        );
    }
    let cost = p.planned_cost_usd(tier).unwrap_or(0.0);
    let budget = match cfg.settings.max_job_cost_usd {
        Some(b) if cost > b => format!(": over the budget of {}, a job would fail", usd(b)),
        Some(b) => format!(", within the budget of {}", usd(b)),
        None => String::new(),
    };
    println!(
        "cost: estimated {} on the {tier} tier (list prices){budget}",
        usd(cost)
    );
    println!(
        "plan: {} segments of ~{} s in {} chunks",
        p.plan.segments.len(),
        p.plan.segment_secs,
        p.plan.chunks.len()
    );
    for c in &p.plan.chunks {
        println!(
            "  chunk {:>4}: frames {:>7}..{:<7} ({} segments, seek {:.3} s)",
            c.index,
            c.first_frame,
            c.first_frame + c.frames,
            c.segments.len(),
            c.seek_secs
        );
    }
    Ok(0)
}

/// The per-title analysis: every probe point (`*` on the rate–quality frontier) and what
/// replaced each fixed rung (bitrate, PSNR and SSIM of each).
fn print_per_title(a: &vodpipe_media::pertitle::Analysis) {
    println!(
        "per-title: {:.1} s sampled, quality at {}, {:.1} s; probe bits {:.0} % of the fixed ladder's",
        a.sampled_secs,
        a.display,
        a.secs,
        a.bits_ratio * 100.0
    );
    for pt in &a.points {
        println!(
            "  {:>9} crf +{:<2} {:>6.0} kb/s {:>6.2} dB  SSIM {:.4}{}",
            format!("{}x{}", pt.width, pt.height),
            pt.crf_offset,
            pt.kbps,
            pt.psnr,
            pt.ssim,
            if pt.frontier { "  *" } else { "" }
        );
    }
    for c in &a.choices {
        println!(
            "  {:>6} ({:.0} kb/s, {:.2} dB, {:.4}) -> {} ({:.0} kb/s, {:.2} dB, {:.4})",
            c.fixed,
            c.fixed_kbps,
            c.fixed_psnr,
            c.fixed_ssim,
            c.rung
                .as_deref()
                .unwrap_or("dropped: a rung above is already that point"),
            c.kbps,
            c.psnr,
            c.ssim
        );
    }
}
