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
//! An ECS Task State Change with `stopCode: SpotInterruption` is recorded once per task
//! (EventBridge may deliver it twice) and answered with a reconcile of the task's tier,
//! which replaces the capacity at once instead of at the next tick. The interrupted
//! worker has already given its lease and message back on SIGTERM.

use crate::env::Shared;
use crate::FunctionError;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use serde::{Deserialize, Serialize};
use vodpipe_aws::dynamo::Interruption;
use vodpipe_core::ingest::{abandoned_after, ingest, Source};
use vodpipe_core::job::JobStatus;
use vodpipe_core::ports::{JobStore, Queue, Tier, WorkQueue};
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
    /// Why it ran: `schedule`, `spot-interruption`, `task-stopped`, or `ignored`.
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
        if change.last_status != "STOPPED" {
            return Ok(FleetReport {
                trigger: "ignored".into(),
                ..Default::default()
            });
        }
        let tier = tier_of(change.started_by.as_deref());
        let mut report = FleetReport {
            trigger: "task-stopped".into(),
            ..Default::default()
        };
        if change.stop_code.as_deref() == Some("SpotInterruption") {
            report.trigger = "spot-interruption".into();
            let recorded = shared.aws.state.jobs.record_interruption(&Interruption {
                task_arn: change.task_arn.clone(),
                tier: tier.map(|t| t.as_str().to_string()).unwrap_or_default(),
                reason: change.stopped_reason.clone().unwrap_or_default(),
                at: now_secs(),
            })?;
            tracing::warn!(task = %change.task_arn, ?tier, recorded, "Spot interruption");
            if recorded {
                report.interruption = Some(change.task_arn.clone());
                vodpipe_core::metrics::emit(
                    &[("SpotInterruptions", 1.0, vodpipe_core::metrics::Unit::Count)],
                    &[],
                );
            }
        }
        // Replace the capacity of the task's tier (all tiers when the tag is unknown).
        let only: Vec<Tier> = tier.map(|t| vec![t]).unwrap_or_else(|| tiers.to_vec());
        report.tiers = reconcile(shared, &only)?;
        return Ok(report);
    }
    let resumed = resume_abandoned(shared)?;
    Ok(FleetReport {
        trigger: "schedule".into(),
        interruption: None,
        tiers: reconcile(shared, &tiers)?,
        resumed,
    })
}

/// Ingests again every job left QUEUED or PROBING for longer than a probe can take: its
/// ingest died and S3's retries of the event are spent. `ingest` takes such a job over.
pub fn resume_abandoned(shared: &Shared) -> Result<Vec<String>, FunctionError> {
    let cutoff = now_secs() - abandoned_after(&shared.cfg);
    let mut resumed = Vec::new();
    for status in [JobStatus::Queued, JobStatus::Probing] {
        for job in shared.aws.state.jobs_by_status(Some(status))? {
            if job.created_at > cutoff {
                continue;
            }
            let key = vodpipe_aws::s3::parse_s3_uri(&job.source)
                .map(|(_, k)| k.to_string())
                .unwrap_or_default();
            let source = Source {
                uri: job.source.clone(),
                key,
                job_id: job.id.clone(),
            };
            let ing = ingest(shared.aws.ports(), &shared.cfg, &source, job.tier, false)?;
            tracing::warn!(job = %job.id, status = %ing.status, "resumed an abandoned ingest");
            shared.aws.announce(&job.id);
            resumed.push(job.id);
        }
    }
    Ok(resumed)
}

/// Brings each tier's tasks up to its queue depth (capped by the fleet).
pub fn reconcile(shared: &Shared, tiers: &[Tier]) -> Result<Vec<TierCapacity>, FunctionError> {
    let ports = shared.aws.ports();
    // Dead letters are drained (their jobs failed with the reason) by workers only: with
    // any waiting and no other work, one standard (Spot) worker is wanted for them.
    let dead = shared.aws.state.queues.dead_letters()?;
    let mut out = Vec::new();
    for &tier in tiers {
        let depth = shared.aws.state.depth(Queue::Work(tier))?;
        let wanted = if tier == Tier::Standard && dead > 0 {
            depth.max(1)
        } else {
            depth
        };
        let workers = if wanted > 0 {
            ports
                .fleet
                .ensure_capacity(tier, wanted.min(u64::from(u32::MAX)) as u32)?
        } else {
            0
        };
        tracing::info!(%tier, depth, dead, workers, "reconciled");
        out.push(TierCapacity {
            tier: tier.as_str().to_string(),
            depth,
            workers,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tier_comes_from_the_started_by_tag() {
        assert_eq!(tier_of(Some("vodpipe-bulk")), Some(Tier::Bulk));
        assert_eq!(tier_of(Some("vodpipe-premium")), Some(Tier::Premium));
        assert_eq!(tier_of(Some("someone-else")), None);
        assert_eq!(tier_of(None), None);
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
