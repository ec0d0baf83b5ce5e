//! What a job costs, estimated from the compute it used.
//!
//! Encoding dominates; it is priced per worker-second at the tier's Fargate rate for the
//! worker size in [`WorkerSize`]. Wasted seconds (failed and interrupted attempts) are
//! paid too, which is why interruptions show up in the cost. Prices are public list
//! prices (us-east-1, Linux/ARM64) and only an estimate; override them in your own build if
//! your region differs.

use crate::domain::Tier;
use serde::{Deserialize, Serialize};
use vodpipe_media::ladder::Rung;

/// Pixels per vCPU-second the encoder gets through, from `make bench` on this code: 60 s
/// of 1280×720 at 29.97 fps into the five-rung 720p ladder (2,131,776 px a frame) took
/// `vodpipe run` 32.07 s on 2 vCPUs (docs/performance.md, "Encoding: make bench", median
/// run): 3.83e9 px over 64.1 vCPU-s. The clip is synthetic (testsrc2); camera footage
/// encodes slower, so a plan's estimate is a floor more than a promise.
pub const BENCH_PIXELS_PER_VCPU_SECOND: f64 = 5.98e7;

/// How many times realtime one core encodes AAC (a track is encoded once, whole).
const AAC_REALTIME_PER_VCPU: f64 = 100.0;

/// The worker task size the estimate assumes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WorkerSize {
    /// vCPUs per worker.
    pub vcpu: f64,
    /// Memory per worker, GiB.
    pub memory_gib: f64,
}

impl Default for WorkerSize {
    fn default() -> Self {
        WorkerSize {
            vcpu: 4.0,
            memory_gib: 8.0,
        }
    }
}

/// Fargate ARM64 on-demand, per vCPU-hour and GiB-hour (us-east-1 list price).
const VCPU_HOUR: f64 = 0.03238;
const GIB_HOUR: f64 = 0.00356;
/// Fargate Spot is typically ~70 % below on-demand.
const SPOT_FACTOR: f64 = 0.3;

/// Estimated USD for `secs` worker-seconds on `tier`.
pub fn compute_cost(tier: Tier, secs: f64, size: WorkerSize) -> f64 {
    let hourly = size.vcpu * VCPU_HOUR + size.memory_gib * GIB_HOUR;
    let factor = if tier == Tier::Premium {
        1.0
    } else {
        SPOT_FACTOR
    };
    secs.max(0.0) / 3600.0 * hourly * factor
}

/// What a plan is estimated to cost before anything is encoded: every rung's pixels for
/// `frames` frames at [`BENCH_PIXELS_PER_VCPU_SECOND`] (times its codec's
/// [`relative_cost`](vodpipe_media::ladder::VideoCodec::relative_cost)), plus each audio
/// track once, on workers of `size` priced at `tier`'s rate. What an upload's budget
/// (`max_cost_usd`, `MaxJobCostUsd`) is checked against.
pub fn planned_cost(
    tier: Tier,
    rungs: &[Rung],
    frames: u64,
    audio_tracks: usize,
    duration_secs: f64,
    size: WorkerSize,
) -> f64 {
    let video_vcpu_secs: f64 = rungs
        .iter()
        .map(|r| f64::from(r.width) * f64::from(r.height) * frames as f64 * r.codec.relative_cost())
        .sum::<f64>()
        / BENCH_PIXELS_PER_VCPU_SECOND;
    let audio_vcpu_secs = audio_tracks as f64 * duration_secs.max(0.0) / AAC_REALTIME_PER_VCPU;
    compute_cost(
        tier,
        (video_vcpu_secs + audio_vcpu_secs) / size.vcpu.max(1.0),
        size,
    )
}

/// A dollar amount as people read one: cents for a dollar or more, three significant
/// digits below (a test clip costs a fraction of a cent: `$1.25`, `$0.0421`,
/// `$0.000000321`).
pub fn usd(x: f64) -> String {
    if !x.is_finite() || x.abs() >= 1.0 || x == 0.0 {
        return format!("${x:.2}");
    }
    let decimals = (2 - x.abs().log10().floor() as i32).clamp(2, 12) as usize;
    format!("${x:.decimals$}")
}

/// Output minutes: minutes of source times video renditions (what managed services bill),
/// or the minutes of an audio-only source.
pub fn output_minutes(duration_secs: f64, rungs: u32) -> f64 {
    // An audio-only job (no rung) publishes one output: its audio.
    duration_secs / 60.0 * f64::from(rungs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spot_is_cheaper_than_on_demand_and_cost_scales_with_time() {
        let s = WorkerSize::default();
        let p = compute_cost(Tier::Premium, 3600.0, s);
        let b = compute_cost(Tier::Bulk, 3600.0, s);
        assert!((p - (4.0 * VCPU_HOUR + 8.0 * GIB_HOUR)).abs() < 1e-12);
        assert!(b < p);
        assert!(
            (compute_cost(Tier::Standard, 7200.0, s)
                - 2.0 * compute_cost(Tier::Standard, 3600.0, s))
            .abs()
                < 1e-12
        );
    }

    #[test]
    fn a_plan_costs_its_pixels_and_its_codecs() {
        use vodpipe_media::ladder::VideoCodec;
        let rung = |w, h, codec| Rung {
            name: "r".into(),
            width: w,
            height: h,
            max_kbps: 1000,
            codec,
            crf_offset: 0,
            range: Default::default(),
        };
        let size = WorkerSize::default();
        // One minute of 720p30 at the benchmark's rate: 1800 frames of 921,600 px.
        let one = planned_cost(
            Tier::Premium,
            &[rung(1280, 720, VideoCodec::H264)],
            1800,
            0,
            60.0,
            size,
        );
        let vcpu_secs = 1280.0 * 720.0 * 1800.0 / BENCH_PIXELS_PER_VCPU_SECOND;
        let want = compute_cost(Tier::Premium, vcpu_secs / size.vcpu, size);
        assert!((one - want).abs() < 1e-12, "{one} {want}");
        // HEVC costs three H.264s; Spot is cheaper; audio adds a little.
        let hevc = planned_cost(
            Tier::Premium,
            &[rung(1280, 720, VideoCodec::Hevc)],
            1800,
            0,
            60.0,
            size,
        );
        assert!((hevc / one - 3.0).abs() < 1e-9);
        assert!(
            planned_cost(
                Tier::Bulk,
                &[rung(1280, 720, VideoCodec::H264)],
                1800,
                0,
                60.0,
                size
            ) < one
        );
        assert!(
            planned_cost(
                Tier::Premium,
                &[rung(1280, 720, VideoCodec::H264)],
                1800,
                1,
                60.0,
                size
            ) > one
        );
    }

    #[test]
    fn dollars_read_with_three_significant_digits_below_one() {
        assert_eq!(usd(1.254), "$1.25");
        assert_eq!(usd(0.0421), "$0.0421");
        assert_eq!(usd(0.000000321), "$0.000000321");
        assert_eq!(usd(0.0), "$0.00");
    }

    #[test]
    fn output_minutes_count_every_rendition() {
        assert_eq!(output_minutes(120.0, 5), 10.0);
        assert_eq!(output_minutes(120.0, 0), 2.0);
    }
}
