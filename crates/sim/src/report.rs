//! The run's answer: the JSON line `vodpipe simulate` prints last, with every limit the
//! run needed compared with what the account has, and the first one that bit, in words.

use crate::engine::{percentile, LimitKind, Outcome, Params, QueueStats, TIERS};
use serde_json::{json, Value};
use vodpipe_control::cost::compute_cost;

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
            LimitKind::IngestConcurrency => {
                "the ingest mapping's maximum concurrency (IngestMaxConcurrency)"
            }
            LimitKind::StitchConcurrency => {
                "the stitch mapping's maximum concurrency (StitchMaxConcurrency)"
            }
            LimitKind::IngestTimeout => "the ingest function's timeout, seconds",
            LimitKind::StitchTimeout => "the stitch function's timeout, seconds",
        }
    }

    /// Whether the stack's template sets it (rather than the account or the service).
    pub fn is_the_stacks(self) -> bool {
        matches!(
            self,
            LimitKind::WorkersPerTier
                | LimitKind::IngestConcurrency
                | LimitKind::StitchConcurrency
                | LimitKind::IngestTimeout
                | LimitKind::StitchTimeout
        )
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
            LimitKind::IngestConcurrency => {
                "the IngestMaxConcurrency stack parameter (at most 1,000), or a quicker ingest"
            }
            LimitKind::StitchConcurrency => {
                "the StitchMaxConcurrency or StitchBatchSize stack parameters"
            }
            LimitKind::IngestTimeout => "the IngestFunction's Timeout in the template",
            LimitKind::StitchTimeout => {
                "the StitchFunction's Timeout in the template, or a smaller StitchBatchSize"
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
    let span = p.arrival_secs();
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
            f64::from(p.deployment.max_workers_per_tier),
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
        // The concurrency to keep up with the arrivals in full batches, or the peak the
        // mapping reached, whichever is more.
        limit(
            LimitKind::IngestConcurrency,
            (o.ingest_queue.full_batch_invocation_secs / span)
                .ceil()
                .max(f64::from(o.ingest_queue.concurrency_peak)),
            f64::from(p.deployment.ingest.max_concurrency),
        ),
        limit(
            LimitKind::StitchConcurrency,
            (o.stitch_queue.full_batch_invocation_secs / span)
                .ceil()
                .max(f64::from(o.stitch_queue.concurrency_peak)),
            f64::from(p.deployment.stitch.max_concurrency),
        ),
        limit(
            LimitKind::IngestTimeout,
            o.ingest_queue.longest_invocation_secs,
            p.deployment.ingest.timeout_secs,
        ),
        limit(
            LimitKind::StitchTimeout,
            o.stitch_queue.longest_invocation_secs,
            p.deployment.stitch.timeout_secs,
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
                "{} after {:.0} s: needed {:.0}, {} {:.0} ({})",
                l.kind.name(),
                t,
                l.needed,
                if l.kind.is_the_stacks() {
                    "the stack allows"
                } else {
                    "the account has"
                },
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

/// A function queue's figures.
fn queue_json(q: &QueueStats) -> Value {
    json!({
        "backlog_peak": q.backlog_peak,
        "backlog_peak_secs": round(q.backlog_peak_secs, 1),
        "drained_secs": q.drained_secs.map(|t| round(t, 1)),
        "concurrency_peak": q.concurrency_peak,
        "invocations": q.invocations,
        "receives": q.receives,
        "batch_mean": round(q.receives as f64 / (q.invocations.max(1)) as f64, 2),
        "longest_invocation_secs": round(q.longest_invocation_secs, 2),
        "timeouts": q.timeouts,
        "dead_letters": q.dead_letters,
        "account_concurrency_waits": q.account_waits,
    })
}

/// What keeping `WarmWorkersPerTier` tasks up in every tier costs an hour, idle or not.
pub fn warm_usd_per_hour(p: &Params) -> f64 {
    let d = &p.deployment;
    let warm = f64::from(d.warm_workers_per_tier.min(d.max_workers_per_tier));
    TIERS
        .iter()
        .map(|t| warm * compute_cost(*t, 3600.0, p.worker))
        .sum()
}

/// Seconds from the first arrival to the last publish: how long a burst took to clear.
pub fn drain_secs(o: &Outcome) -> f64 {
    (o.last_publish_secs - o.first_arrival_secs).max(0.0)
}

/// Most stitches finished within any `window` seconds, per second (`times` in order): the
/// emulator's burst run reports its best ten seconds the same way.
pub fn stitch_rate_peak(times: &[f64], window: f64) -> f64 {
    let mut first = 0;
    let mut best = 0usize;
    for (i, t) in times.iter().enumerate() {
        while times[first] <= t - window {
            first += 1;
        }
        best = best.max(i + 1 - first);
    }
    best as f64 / window
}

/// The JSON the command prints last.
pub fn json(p: &Params, o: &Outcome) -> Value {
    let limits = limits(p, o);
    let minutes = o.output_minutes.max(f64::MIN_POSITIVE);
    let per_minute = |usd: f64| round(usd / minutes, 8);
    let c = &o.cost;
    let mut deployment = p.deployment.to_json();
    deployment["stitch"]["batch_runs"] = json!(p.stitch_batch.as_str());
    deployment["ingest"]["secs_per_upload"] = json!(p.overheads.ingest_secs);
    deployment["stitch"]["secs_per_job"] = json!(p.overheads.stitch_secs);
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
        "drain_secs": round(drain_secs(o), 1),
        "arrivals": match p.burst {
            Some(b) => json!({"burst": b.uploads, "over_secs": b.secs}),
            None => json!({"poisson_per_hour": p.uploads_per_hour, "hours": p.hours}),
        },
        "deployment": deployment,
        "ingest_queue": queue_json(&o.ingest_queue),
        "stitch_queue": queue_json(&o.stitch_queue),
        "stitch_jobs_per_second": {
            "peak_1s": o.stitches_per_second_peak,
            "peak_10s": round(stitch_rate_peak(&o.stitch_times, 10.0), 2),
            "mean": round(o.stitch_times.len() as f64 / drain_secs(o).max(f64::MIN_POSITIVE), 2),
        },
        "settings_file_deferrals": o.deferrals,
        "warm_workers": {
            "per_tier": p.deployment.warm_workers_per_tier.min(p.deployment.max_workers_per_tier),
            "usd_per_hour": round(warm_usd_per_hour(p), 4),
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stitch_rate_peak_is_the_busiest_window() {
        // One a second, then ten within one second.
        let mut t: Vec<f64> = (0..20).map(f64::from).collect();
        t.extend((0..10).map(|i| 20.0 + f64::from(i) / 10.0));
        assert_eq!(stitch_rate_peak(&t, 1.0), 10.0);
        // The best ten seconds: the ten at once and nine of the ones before.
        assert!((stitch_rate_peak(&t, 10.0) - 1.9).abs() < 1e-9);
        assert_eq!(stitch_rate_peak(&[], 10.0), 0.0);
    }
}
