//! The fleet function: worker capacity that follows the queues, and Spot interruptions.
//!
//! On every schedule tick each tier gets as many worker tasks as it has queued or
//! in-flight messages, up to the per-tier cap; workers exit when idle, so with nothing
//! queued the fleet is zero tasks and costs nothing. Ingest asks for capacity too, so the
//! tick only repairs: tasks that failed to start (no Spot capacity), tasks that were
//! reclaimed, work re-queued after failures.
//!
//! The tick also runs the control plane's sweeps (`vodpipe_control::sweep`): ingests that
//! died (a job left QUEUED or PROBING far longer than a probe takes, after S3's retries of
//! its event ran out) are resumed, and jobs stranded in STITCHING get their stitch
//! requested again, so no upload is silently lost.
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
use vodpipe_control::ingest::Source;
use vodpipe_control::ports::{Queue, Tier, WorkQueue};
pub use vodpipe_control::sweep::{self, TierCapacity};
use vodpipe_media::process::now_secs;

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
    /// Jobs stranded in STITCHING whose stitch this tick requested again.
    pub restitched: Vec<String>,
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
            vodpipe_control::metrics::emit(
                &[(
                    "SpotInterruptions",
                    1.0,
                    vodpipe_control::metrics::Unit::Count,
                )],
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
    let (resumed, restitched) = sweep_stranded(shared)?;
    Ok(FleetReport {
        trigger: "schedule".into(),
        interruption: None,
        tiers: capacity,
        resumed,
        restitched,
    })
}

/// How long one tick spends resuming abandoned ingests: each probes (up to minutes), and
/// the tick must end well inside the function's timeout; the rest waits for the next tick.
const RESUME_BUDGET: std::time::Duration = std::time::Duration::from_secs(150);

/// The control plane's sweeps on this deployment: abandoned ingests taken over (the job's
/// source rebuilt from its record, at the version its settings pinned) and stitches
/// requested again for jobs stranded in STITCHING. Each resumed job's state is announced.
pub fn sweep_stranded(shared: &Shared) -> Result<(Vec<String>, Vec<String>), FunctionError> {
    let ports = shared.aws.ports();
    let resumed = sweep::resume_abandoned(ports, &shared.cfg, RESUME_BUDGET, |job| Source {
        uri: job.source.clone(),
        key: vodpipe_aws::s3::parse_s3_uri(&job.source)
            .map(|(_, k)| k.to_string())
            .unwrap_or_default(),
        job_id: job.id.clone(),
        // The version (and upload order) the job was made for is in its recorded settings.
        version: None,
        sequencer: None,
    })?;
    for id in &resumed {
        shared.aws.announce(id);
    }
    let restitched = sweep::restitch_stranded(ports.jobs, ports.queue, sweep::STITCH_STALE_SECS)?;
    Ok((resumed, restitched))
}

/// Brings each tier's tasks up to what its queue depth wants (`sweep::wanted_workers`,
/// capped by the fleet), each tier on its own ([`sweep::reconcile_tiers`]).
pub fn reconcile(shared: &Shared, tiers: &[Tier]) -> Result<Vec<TierCapacity>, FunctionError> {
    let ports = shared.aws.ports();
    // An unreadable dead-letter depth must not cost the tiers their capacity: count none.
    let dead = shared.aws.state.queues.dead_letters().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not read the dead-letter queues");
        0
    });
    Ok(sweep::reconcile_tiers(
        tiers,
        dead,
        |tier| shared.aws.state.depth(Queue::Work(tier)),
        |tier, n| ports.fleet.ensure_capacity(tier, n),
    ))
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
