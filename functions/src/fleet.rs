//! The fleet function: worker capacity that follows the queues, and Spot interruptions.
//!
//! On every schedule tick each tier gets as many worker tasks as it has queued or
//! in-flight messages, up to the per-tier cap; workers exit when idle, so with nothing
//! queued the fleet is zero tasks and costs nothing. Ingest asks for capacity too, so the
//! tick only repairs: tasks that failed to start (no Spot capacity), tasks that were
//! reclaimed, work re-queued after failures.
//!
//! The tick also resumes ingests that died (a job left QUEUED or PROBING far longer than a
//! probe takes, after S3's retries of its event ran out), so no upload is silently lost.
//!
//! Fargate Spot warns two minutes ahead: an ECS Task State Change with
//! `stopCode: SpotInterruption` while the task still runs (`desiredStatus: STOPPED`), then
//! another when it has stopped. Whichever arrives first records the interruption (once per
//! task; EventBridge may also deliver either twice) and replaces the tier's capacity at
//! once, instead of at the next tick: a task ECS is stopping no longer counts as running.
//! Later deliveries for the same task change nothing. The interrupted worker has already
//! given its lease and message back on SIGTERM.
//!
//! Each tier is reconciled on its own: one tier's throttled or failing `RunTask` is
//! reported in that tier's line and never stops the others, and capacity is repaired before
//! the slower sweep of abandoned ingests runs.

use crate::env::Shared;
use crate::FunctionError;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use serde::{Deserialize, Serialize};
use vodpipe_aws::dynamo::Interruption;
use vodpipe_core::ingest::{abandoned_after, ingest, Source};
use vodpipe_core::job::JobStatus;
use vodpipe_core::ports::{JobStore, PortResult, Queue, Tier, WorkQueue};
use vodpipe_core::process::now_secs;

/// The part of an ECS Task State Change detail the fleet reads.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TaskStateChange {
    /// The task.
    pub task_arn: String,
    /// RUNNING, STOPPED, …
    pub last_status: String,
    /// Why ECS stopped it (`SpotInterruption`, `EssentialContainerExited`, …).
    pub stop_code: Option<String>,
    /// ECS's words for it.
    pub stopped_reason: Option<String>,
    /// The tag `RunTask` set (`vodpipe-<tier>`).
    pub started_by: Option<String>,
}

/// What one invocation did.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct FleetReport {
    /// Why it ran: `schedule`, `spot-interruption`, or `ignored` (an ECS event that is not
    /// a Spot interruption).
    pub trigger: String,
    /// A newly recorded interruption's task ARN.
    pub interruption: Option<String>,
    /// Per tier: queued or in-flight messages, and the tasks it has.
    pub tiers: Vec<TierCapacity>,
    /// Jobs an ingest abandoned (it died, its retries ran out) that this tick took over.
    pub resumed: Vec<String>,
}

/// One tier's reconcile.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TierCapacity {
    /// Tier.
    pub tier: String,
    /// Messages visible or in flight on its queue.
    pub depth: u64,
    /// Tasks running or starting after the reconcile (0 when capacity is managed outside
    /// vodpipe, i.e. no ECS cluster is configured).
    pub workers: u32,
    /// Why the tier could not be reconciled (throttling, a quota, an ECS error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The tier a task served, from its `startedBy` tag.
pub fn tier_of(started_by: Option<&str>) -> Option<Tier> {
    started_by?.strip_prefix("vodpipe-").and_then(Tier::parse)
}

/// Handles a schedule tick or an ECS task event.
pub fn handle(shared: &Shared, event: &EventBridgeEvent) -> Result<FleetReport, FunctionError> {
    let tiers = [Tier::Premium, Tier::Standard, Tier::Bulk];
    if event.source == "aws.ecs" && event.detail_type == "ECS Task State Change" {
        let change: TaskStateChange = serde_json::from_value(event.detail.clone())
            .map_err(|e| FunctionError::Config(format!("unreadable ECS event detail: {e}")))?;
        // Only Spot interruptions matter here; the rule forwards nothing else, but a
        // broader rule someone adds must not start tasks on every task stop.
        if change.stop_code.as_deref() != Some("SpotInterruption") {
            return Ok(FleetReport {
                trigger: "ignored".into(),
                ..Default::default()
            });
        }
        let tier = tier_of(change.started_by.as_deref());
        let recorded = shared.aws.state.jobs.record_interruption(&Interruption {
            task_arn: change.task_arn.clone(),
            tier: tier.map(|t| t.as_str().to_string()).unwrap_or_default(),
            reason: change.stopped_reason.clone().unwrap_or_default(),
            at: now_secs(),
        })?;
        tracing::warn!(task = %change.task_arn, ?tier, last_status = %change.last_status, recorded, "Spot interruption");
        let mut report = FleetReport {
            trigger: "spot-interruption".into(),
            ..Default::default()
        };
        if recorded {
            report.interruption = Some(change.task_arn.clone());
            vodpipe_core::metrics::emit(
                &[("SpotInterruptions", 1.0, vodpipe_core::metrics::Unit::Count)],
                &[],
            );
            // Replace the capacity of the task's tier (all tiers when the tag is unknown).
            let only: Vec<Tier> = tier.map(|t| vec![t]).unwrap_or_else(|| tiers.to_vec());
            report.tiers = reconcile(shared, &only)?;
        }
        return Ok(report);
    }
    // Capacity first: the sweep below may probe for minutes.
    let capacity = reconcile(shared, &tiers)?;
    let resumed = resume_abandoned(shared)?;
    Ok(FleetReport {
        trigger: "schedule".into(),
        interruption: None,
        tiers: capacity,
        resumed,
    })
}

/// How long one tick spends resuming abandoned ingests: each probes (up to minutes), and
/// the tick must end well inside the function's timeout; the rest waits for the next tick.
const RESUME_BUDGET: std::time::Duration = std::time::Duration::from_secs(150);

/// Ingests again every job left QUEUED or PROBING for longer than a probe can take: its
/// ingest died and S3's retries of the event are spent. `ingest` takes such a job over. A
/// job that fails to resume is logged and left for the next tick; it never stops the
/// others (and `ingest` fails a job whose probe keeps failing for long).
pub fn resume_abandoned(shared: &Shared) -> Result<Vec<String>, FunctionError> {
    let started = std::time::Instant::now();
    let cutoff = now_secs() - abandoned_after(&shared.cfg);
    let mut resumed = Vec::new();
    for status in [JobStatus::Queued, JobStatus::Probing] {
        for job in shared.aws.state.jobs_by_status(Some(status))? {
            if job.created_at > cutoff {
                continue;
            }
            if started.elapsed() > RESUME_BUDGET {
                tracing::info!(job = %job.id, "the tick's time for resuming is spent; next tick");
                return Ok(resumed);
            }
            let key = vodpipe_aws::s3::parse_s3_uri(&job.source)
                .map(|(_, k)| k.to_string())
                .unwrap_or_default();
            let source = Source {
                uri: job.source.clone(),
                key,
                job_id: job.id.clone(),
                // The version the job was made for is in its recorded settings.
                version: None,
            };
            match ingest(shared.aws.ports(), &shared.cfg, &source, false) {
                Ok(ing) => {
                    tracing::warn!(job = %job.id, status = %ing.status, "resumed an abandoned ingest");
                    shared.aws.announce(&job.id);
                    resumed.push(job.id);
                }
                Err(e) => {
                    tracing::error!(job = %job.id, error = %e, "could not resume an abandoned ingest; next tick")
                }
            }
        }
    }
    Ok(resumed)
}

/// Brings each tier's tasks up to its queue depth (capped by the fleet).
pub fn reconcile(shared: &Shared, tiers: &[Tier]) -> Result<Vec<TierCapacity>, FunctionError> {
    let ports = shared.aws.ports();
    // An unreadable dead-letter depth must not cost the tiers their capacity: count none.
    let dead = shared.aws.state.queues.dead_letters().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not read the dead-letter queues");
        0
    });
    Ok(reconcile_tiers(
        tiers,
        dead,
        |tier| shared.aws.state.depth(Queue::Work(tier)),
        |tier, n| ports.fleet.ensure_capacity(tier, n),
    ))
}

/// The reconcile of each tier, on its own: a tier whose depth cannot be read or whose
/// tasks cannot be started (throttled past the SDK's retries, a quota, an ECS error) is
/// reported with its error, and the others are still reconciled. With `dead` letters
/// waiting, the standard tier keeps one (Spot) worker: only workers drain them, failing
/// their jobs with the reason.
pub fn reconcile_tiers(
    tiers: &[Tier],
    dead: u64,
    depth: impl Fn(Tier) -> PortResult<u64>,
    ensure: impl Fn(Tier, u32) -> PortResult<u32>,
) -> Vec<TierCapacity> {
    let mut out = Vec::new();
    for &tier in tiers {
        let mut line = TierCapacity {
            tier: tier.as_str().to_string(),
            depth: 0,
            workers: 0,
            error: None,
        };
        let result = depth(tier).and_then(|d| {
            line.depth = d;
            let wanted = if tier == Tier::Standard && dead > 0 {
                d.max(1)
            } else {
                d
            };
            if wanted == 0 {
                return Ok(0);
            }
            ensure(tier, wanted.min(u64::from(u32::MAX)) as u32)
        });
        match result {
            Ok(workers) => {
                line.workers = workers;
                tracing::info!(%tier, depth = line.depth, dead, workers, "reconciled");
            }
            Err(e) => {
                tracing::error!(%tier, depth = line.depth, error = %e, "could not reconcile the tier");
                line.error = Some(e.to_string());
            }
        }
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vodpipe_core::ports::PortError;

    #[test]
    fn the_tier_comes_from_the_started_by_tag() {
        assert_eq!(tier_of(Some("vodpipe-bulk")), Some(Tier::Bulk));
        assert_eq!(tier_of(Some("vodpipe-premium")), Some(Tier::Premium));
        assert_eq!(tier_of(Some("someone-else")), None);
        assert_eq!(tier_of(None), None);
    }

    #[test]
    fn a_throttled_tier_is_reported_and_the_others_still_get_workers() {
        let lines = reconcile_tiers(
            &[Tier::Premium, Tier::Standard, Tier::Bulk],
            0,
            |_| Ok(3),
            |tier, n| match tier {
                Tier::Standard => Err(PortError::Backend(
                    "ecs run task: ThrottlingException: Rate exceeded".into(),
                )),
                _ => Ok(n),
            },
        );
        let by: Vec<(&str, u32, bool)> = lines
            .iter()
            .map(|l| (l.tier.as_str(), l.workers, l.error.is_some()))
            .collect();
        assert_eq!(
            by,
            [
                ("premium", 3, false),
                ("standard", 0, true),
                ("bulk", 3, false)
            ]
        );
    }

    #[test]
    fn dead_letters_keep_one_standard_worker() {
        let lines = reconcile_tiers(&[Tier::Standard, Tier::Bulk], 2, |_| Ok(0), |_, n| Ok(n));
        assert_eq!(lines[0].workers, 1);
        assert_eq!(lines[1].workers, 0);
    }

    #[test]
    fn the_spot_interruption_payload_parses() {
        let raw = include_str!("../../events/ecs-spot-interruption.json");
        let event: EventBridgeEvent = serde_json::from_str(raw).unwrap();
        let change: TaskStateChange = serde_json::from_value(event.detail).unwrap();
        assert_eq!(change.stop_code.as_deref(), Some("SpotInterruption"));
        assert_eq!(change.last_status, "STOPPED");
        assert_eq!(tier_of(change.started_by.as_deref()), Some(Tier::Standard));
    }
}
