//! What a job costs, estimated from the compute it used.
//!
//! Encoding dominates; it is priced per worker-second at the tier's Fargate rate for the
//! worker size in [`WorkerSize`]. Wasted seconds (failed and interrupted attempts) are
//! paid too, which is why interruptions show up in the cost. Prices are public list
//! prices (us-east-1, Linux/ARM64) and only an estimate; override them in your own build if
//! your region differs.

use crate::domain::Tier;
use serde::{Deserialize, Serialize};

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
    fn output_minutes_count_every_rendition() {
        assert_eq!(output_minutes(120.0, 5), 10.0);
        assert_eq!(output_minutes(120.0, 0), 2.0);
    }
}
