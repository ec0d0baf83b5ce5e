//! The run's answer: the JSON line `vodpipe simulate` prints last, with every limit the
//! run needed compared with what the account has, and the first one that bit, in words.

use crate::engine::{percentile, LimitKind, Outcome, Params, TIERS};
use serde_json::{json, Value};

/// MediaConvert's basic tier, per normalised (SD) output minute, us-east-1: the managed
/// service a user would pick instead (an HD minute counts double).
pub const MEDIACONVERT_PER_MINUTE: f64 = 0.0075;

/// A limit with what the run needed and what was available.
#[derive(Debug, Clone)]
pub struct Limit {
    /// Which.
    pub kind: LimitKind,
    /// The peak the run needed.
    pub needed: f64,
    /// What the account or stack has.
    pub available: f64,
    /// When it first bit (virtual seconds), if it did.
    pub first_hit_secs: Option<f64>,
}

impl LimitKind {
    /// The limit's name.
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::OnDemandVcpu => "Fargate On-Demand vCPUs",
            LimitKind::SpotVcpu => "Fargate Spot vCPUs",
            LimitKind::OnDemandLaunchRate => "Fargate On-Demand task launches per second",
            LimitKind::SpotLaunchRate => "Fargate Spot task launches per second",
            LimitKind::WorkersPerTier => "the stack's MaxWorkersPerTier",
            LimitKind::LambdaConcurrency => "Lambda concurrent executions",
            LimitKind::InvalidationsInProgress => "CloudFront invalidation paths in progress",
        }
    }

    /// What to raise, and where.
    pub fn remedy(self) -> &'static str {
        match self {
            LimitKind::OnDemandVcpu => {
                "Service Quotas: Fargate On-Demand vCPU resource count (L-3032A538)"
            }
            LimitKind::SpotVcpu => "Service Quotas: Fargate Spot vCPU resource count (L-36FBB829)",
            LimitKind::OnDemandLaunchRate | LimitKind::SpotLaunchRate => {
                "not adjustable: fewer, longer-lived tasks (idle-exit later) or warm capacity"
            }
            LimitKind::WorkersPerTier => "the MaxWorkersPerTier stack parameter",
            LimitKind::LambdaConcurrency => {
                "Service Quotas: Lambda concurrent executions (L-B99A9384)"
            }
            LimitKind::InvalidationsInProgress => {
                "not adjustable: invalidate only replaced versions (the default)"
            }
        }
    }
}

/// Every limit the run could meet.
pub fn limits(p: &Params, o: &Outcome) -> Vec<Limit> {
    let hit = |k: LimitKind| o.first_hit.iter().find(|(x, _)| *x == k).map(|(_, t)| *t);
    let vcpu = p.worker.vcpu;
    // vCPUs needed: the average the arriving work needs to keep up, or the policy's peak
    // want if that is lower (a fleet that never needs its average at once).
    let span = (p.hours * 3600.0).max(1.0);
    let vcpus_needed = |pool: usize| {
        (o.offered_task_secs[pool] / span)
            .min(f64::from(o.wanted_peak[pool]))
            .ceil()
            * vcpu
    };
    let limit = |kind, needed: f64, available: f64| Limit {
        kind,
        needed,
        available,
        first_hit_secs: hit(kind),
    };
    vec![
        limit(
            LimitKind::OnDemandVcpu,
            vcpus_needed(0).max(f64::from(o.vcpu_peak[0])),
            f64::from(p.vcpu_quota),
        ),
        limit(
            LimitKind::SpotVcpu,
            vcpus_needed(1).max(f64::from(o.vcpu_peak[1])),
            f64::from(p.vcpu_quota),
        ),
        limit(
            LimitKind::OnDemandLaunchRate,
            f64::from(o.launch_demand_peak[0]),
            p.launch_rate,
        ),
        limit(
            LimitKind::SpotLaunchRate,
            f64::from(o.launch_demand_peak[1]),
            p.launch_rate,
        ),
        limit(
            LimitKind::WorkersPerTier,
            f64::from(o.tasks_peak.iter().copied().max().unwrap_or(0))
                .max((o.offered_task_secs[1] / span / 2.0).ceil()),
            f64::from(p.max_workers_per_tier),
        ),
        limit(
            LimitKind::LambdaConcurrency,
            f64::from(o.lambda_peak) + if o.lambda_waits > 0 { 1.0 } else { 0.0 },
            f64::from(p.lambda_concurrency),
        ),
        limit(
            LimitKind::InvalidationsInProgress,
            o.invalidation_paths_peak as f64,
            3000.0,
        ),
    ]
}

/// The first limit that bit, in words; None when nothing did.
pub fn bottleneck(limits: &[Limit]) -> Option<String> {
    limits
        .iter()
        .filter_map(|l| l.first_hit_secs.map(|t| (t, l)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(t, l)| {
            format!(
                "{} after {:.0} s: needed {:.0}, the account has {:.0} ({})",
                l.kind.name(),
                t,
                l.needed,
                l.available,
                l.kind.remedy()
            )
        })
}

fn tier_map<T: serde::Serialize>(f: impl Fn(usize) -> T) -> Value {
    json!({
        "premium": f(0),
        "standard": f(1),
        "bulk": f(2),
    })
}

/// The JSON the command prints last.
pub fn json(p: &Params, o: &Outcome) -> Value {
    let limits = limits(p, o);
    let minutes = o.output_minutes.max(f64::MIN_POSITIVE);
    let per_minute = |usd: f64| round(usd / minutes, 8);
    let c = &o.cost;
    json!({
        "uploads": o.uploads,
        "published": o.published,
        "unpublished": o.uploads - o.published,
        "output_minutes": round(o.output_minutes, 1),
        "tasks_peak": tier_map(|i| o.tasks_peak[i]),
        "vcpu_peak": json!({"on_demand": o.vcpu_peak[0], "spot": o.vcpu_peak[1]}),
        "launches_per_second_peak": json!({"on_demand": o.launches_peak[0], "spot": o.launches_peak[1]}),
        "launches_asked_per_second_peak": json!({"on_demand": o.launch_demand_peak[0], "spot": o.launch_demand_peak[1]}),
        "publish_seconds": tier_map(|i| {
            let l = &o.latency[i];
            json!({
                "p50": round(percentile(l, 0.50), 1),
                "p95": round(percentile(l, 0.95), 1),
                "p99": round(percentile(l, 0.99), 1),
                "count": l.len(),
            })
        }),
        "cost_per_output_minute_usd": {
            "total": per_minute(c.total()),
            "compute": per_minute(c.compute),
            "lambda": per_minute(c.lambda),
            "requests": per_minute(c.requests),
            "invalidations": per_minute(c.invalidations),
            "storage": per_minute(c.storage),
        },
        "cost_usd": round(c.total(), 2),
        "mediaconvert_per_output_minute_usd": MEDIACONVERT_PER_MINUTE,
        "job_level_compute_usd": round(o.job_level_compute_usd, 2),
        "worker_utilisation": round(o.job_level_compute_usd / c.compute.max(f64::MIN_POSITIVE), 3),
        "interruptions": o.interruptions,
        "escalations": o.escalations,
        "launches_delayed": o.launches_delayed,
        "quota_refusals": o.quota_refusals,
        "lambda_waits": o.lambda_waits,
        "puts_per_prefix_peak": o.puts_per_prefix_peak,
        "makespan_secs": round(o.makespan_secs, 1),
        "limits": limits.iter().map(|l| json!({
            "limit": l.kind.name(),
            "needed": round(l.needed, 1),
            "available": l.available,
            "binding": l.first_hit_secs.is_some(),
            "first_hit_secs": l.first_hit_secs.map(|t| round(t, 1)),
            "raise": l.kind.remedy(),
        })).collect::<Vec<_>>(),
        "bottleneck": bottleneck(&limits),
        "tiers": TIERS.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
    })
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}
