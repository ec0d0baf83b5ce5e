//! The fleet function: worker capacity that follows the queues, and Spot interruptions.
//!
//! On every schedule tick each tier gets as many worker tasks as it has queued or
//! in-flight messages, up to the per-tier cap; workers exit when idle, so with nothing
//! queued the fleet is zero tasks and costs nothing. Ingest asks for capacity too, so the
//! tick only repairs: tasks that failed to start (no Spot capacity), tasks that were
//! reclaimed, work re-queued after failures.
//!
//! The tick also runs the control plane's sweeps (`vodpipe_control::sweep`), so no upload
//! is silently lost and no job waits forever: jobs stranded in STITCHING get their stitch
//! requested again, jobs ENCODING whose messages are gone get their unfinished items queued
//! again, uploads whose every ingest try failed (their S3 events in the ingest function's
//! dead-letter queue) are ingested again, and ingests that died (a job left QUEUED or
//! PROBING far longer than a probe takes) are resumed. The tick is bounded by its
//! invocation's deadline: the repairs that probe start only while one still fits.
//! `vodpipe aws tick` runs the same [`tick`] once, from a shell.
//!
//! Fargate Spot warns two minutes ahead: an ECS Task State Change with
//! `stopCode: SpotInterruption` while the task still runs (`desiredStatus: STOPPED`), then
//! another when it has stopped. Whichever arrives first records the interruption (once per
//! task; EventBridge may also deliver either twice) and replaces the tier's capacity at
//! once, instead of at the next tick: a task ECS is stopping no longer counts as running.
//! Later deliveries for the same task change nothing. The interrupted worker has already
//! given its lease and message back on SIGTERM.
//!
//! A task that stopped with `TaskFailedToStart` (an image that cannot be pulled, a
//! missing secret) is recorded against its tier; the fleet then launches nothing for that
//! tier until a back-off has passed (a minute, doubling, up to half an hour) or one of its
//! tasks has started, and `vodpipe status`, `vodpipe jobs` and `vodpipe aws doctor` say
//! why work is waiting.
//!
//! Each tier is reconciled on its own: one tier's throttled or failing `RunTask` is
//! reported in that tier's line and never stops the others, and capacity is repaired before
//! the sweeps run.

use crate::env::Shared;
use crate::FunctionError;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use vodpipe_aws::dynamo::Interruption;
use vodpipe_control::ingest::Source;
use vodpipe_control::ports::{JobStore, Queue, Tier, WorkQueue};
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

/// What one invocation did (in a dry run: would do).
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct FleetReport {
    /// Why it ran: `schedule`, `spot-interruption`, `command` (`vodpipe aws tick`), or
    /// `ignored` (an ECS event that is not a Spot interruption).
    pub trigger: String,
    /// Nothing was changed: every list says what would have been done.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// A newly recorded interruption's task ARN.
    pub interruption: Option<String>,
    /// For a task that failed to start: its tier's failed launches in a row.
    #[serde(skip_serializing_if = "is_zero")]
    pub launch_failures: u32,
    /// Per tier: queued or in-flight messages, and the tasks it has (a dry run: wants).
    pub tiers: Vec<TierCapacity>,
    /// Jobs stranded in STITCHING whose stitch was requested again.
    pub restitched: Vec<String>,
    /// Jobs ENCODING whose messages were gone: each with the items queued again.
    pub requeued: Vec<Requeued>,
    /// Uploads whose ingest had failed on every try (their S3 events in the ingest
    /// function's dead-letter queue), ingested again: their keys.
    pub redriven: Vec<String>,
    /// Dead-lettered S3 events still waiting (after this tick).
    pub redrive_waiting: u64,
    /// Jobs an ingest abandoned (it died, its retries ran out) that this tick took over.
    pub resumed: Vec<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A stalled job queued again.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Requeued {
    /// Job id.
    pub job: String,
    /// Messages sent.
    pub items: usize,
}

/// The tier a task served, from its `startedBy` tag.
pub fn tier_of(started_by: Option<&str>) -> Option<Tier> {
    started_by?.strip_prefix("vodpipe-").and_then(Tier::parse)
}

/// What the tick leaves unspent of its invocation: the function's own answer and logs.
const TICK_MARGIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Handles a schedule tick or an ECS task event; `until` is when the invocation must have
/// answered (its deadline).
pub fn handle(
    shared: &Shared,
    event: &EventBridgeEvent,
    until: Instant,
) -> Result<FleetReport, FunctionError> {
    let tiers = Tier::ALL;
    if event.source == "aws.ecs" && event.detail_type == "ECS Task State Change" {
        let change: TaskStateChange = serde_json::from_value(event.detail.clone())
            .map_err(|e| FunctionError::Config(format!("unreadable ECS event detail: {e}")))?;
        let tier = tier_of(change.started_by.as_deref());
        // A task that never started (its image cannot be pulled, say) fails again on every
        // launch: recorded, so the tier's launches back off until one of its tasks starts.
        if change.stop_code.as_deref() == Some("TaskFailedToStart") {
            let reason = change
                .stopped_reason
                .clone()
                .unwrap_or_else(|| "the task failed to start".into());
            let mut report = FleetReport {
                trigger: "launch-failure".into(),
                ..Default::default()
            };
            if let Some(tier) = tier {
                let round = vodpipe_aws::config::launch_backoff_secs();
                let t = shared
                    .aws
                    .state
                    .jobs
                    .record_launch_failure(tier, &reason, round)?;
                tracing::error!(task = %change.task_arn, %tier, failures = t.failures, %reason, "a worker task failed to start");
                report.launch_failures = t.failures;
            }
            return Ok(report);
        }
        // Only Spot interruptions matter otherwise; the rule forwards nothing else, but a
        // broader rule someone adds must not start tasks on every task stop.
        if change.stop_code.as_deref() != Some("SpotInterruption") {
            return Ok(FleetReport {
                trigger: "ignored".into(),
                ..Default::default()
            });
        }
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
            report.tiers = reconcile(shared, &only, false)?;
        }
        return Ok(report);
    }
    let mut report = tick(shared, until, false)?;
    report.trigger = "schedule".into();
    Ok(report)
}

/// The tick: capacity first, then the cheap repairs (stitches requested again, stalled
/// jobs queued again, dead-lettered uploads ingested again), then abandoned ingests, which
/// probe and so start only while one still fits before `until`. What the fleet function
/// runs every minute and `vodpipe aws tick` runs once; a dry run reads and reports only.
pub fn tick(shared: &Shared, until: Instant, dry_run: bool) -> Result<FleetReport, FunctionError> {
    let until = until.checked_sub(TICK_MARGIN).unwrap_or_else(Instant::now);
    let ports = shared.aws.ports();
    let capacity = reconcile(shared, &Tier::ALL, dry_run)?;
    let restitched =
        sweep::restitch_stranded(ports.jobs, ports.queue, sweep::STITCH_STALE_SECS, dry_run)?;
    let requeued = sweep::requeue_stalled(
        ports.jobs,
        ports.queue,
        &shared.cfg,
        now_secs(),
        until,
        dry_run,
    )?
    .into_iter()
    .map(|(job, items)| Requeued { job, items })
    .collect();
    let (redriven, redrive_waiting) = redrive_ingest_events(shared, until, dry_run)?;
    let resumed = sweep::resume_abandoned(ports, &shared.cfg, until, dry_run, |job| Source {
        uri: job.source.clone(),
        key: vodpipe_aws::s3::parse_s3_uri(&job.source)
            .map(|(_, k)| k.to_string())
            .unwrap_or_default(),
        job_id: job.id.clone(),
        // The version (and upload order) the job was made for is in its recorded settings.
        version: None,
        sequencer: None,
    })?;
    Ok(FleetReport {
        trigger: "command".into(),
        dry_run,
        interruption: None,
        launch_failures: 0,
        tiers: capacity,
        restitched,
        requeued,
        redriven,
        redrive_waiting,
        resumed,
    })
}

/// Dead-lettered S3 events tried again per tick, at most: each may probe.
const MAX_REDRIVES_PER_TICK: usize = 10;

/// Ingests again the uploads whose every ingest try failed (Lambda put their S3 events in
/// the function's dead-letter queue): a failure before any job existed would otherwise
/// lose the upload without a trace. An event handled is deleted; one that fails again
/// waits (hidden) for a later tick, up to the queue's 14 days. Returns the keys handled and
/// how many events still wait. A dry run counts them only.
fn redrive_ingest_events(
    shared: &Shared,
    until: Instant,
    dry_run: bool,
) -> Result<(Vec<String>, u64), FunctionError> {
    let name = shared.aws.settings.ingest_events_dlq_name();
    let Some(dlq) = shared.aws.state.queues.raw(&name)? else {
        return Ok((Vec::new(), 0));
    };
    let mut handled = Vec::new();
    if !dry_run {
        let cost = sweep::resume_cost(&shared.cfg);
        let mut tried = 0;
        while tried < MAX_REDRIVES_PER_TICK && Instant::now() + cost <= until {
            tried += 1;
            // Hidden long enough that no other tick takes it while this one ingests it.
            let Some(m) = dlq.take(cost + TICK_MARGIN)? else {
                break;
            };
            let event: serde_json::Value = match serde_json::from_str(&m.body) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(error = %e, body = %m.body, "an ingest dead letter that is not an S3 event; dropped");
                    dlq.delete(&m)?;
                    continue;
                }
            };
            let report = crate::ingest::handle(shared, &event);
            // A subtitle file still waiting for its video stays, and is tried next tick.
            let waiting = report
                .records
                .iter()
                .any(|r| matches!(r, crate::ingest::RecordOutcome::Deferred { .. }));
            match report.failures() {
                None if waiting => {
                    tracing::info!("an upload still waits for its video; next tick");
                }
                None => {
                    dlq.delete(&m)?;
                    for r in &report.records {
                        if let crate::ingest::RecordOutcome::Job { key, .. } = r {
                            tracing::warn!(%key, "ingested an upload whose ingest had failed on every try");
                            handled.push(key.clone());
                        }
                    }
                }
                Some(e) => {
                    tracing::error!(error = %e, "an upload still cannot be ingested; next tick")
                }
            }
        }
    }
    Ok((handled, dlq.waiting()?))
}

/// Brings each tier's tasks up to what its queue depth wants (`sweep::wanted_workers`,
/// capped by the fleet), each tier on its own ([`sweep::reconcile_tiers`]). A dry run
/// reports each tier's depth and the workers it wants.
pub fn reconcile(
    shared: &Shared,
    tiers: &[Tier],
    dry_run: bool,
) -> Result<Vec<TierCapacity>, FunctionError> {
    let ports = shared.aws.ports();
    // An unreadable dead-letter depth must not cost the tiers their capacity: count none.
    let dead = shared.aws.state.queues.dead_letters().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not read the dead-letter queues");
        0
    });
    let warm = std::env::var("VODPIPE_WARM_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(sweep::reconcile_tiers(
        tiers,
        dead,
        warm,
        |tier| shared.aws.state.depth(Queue::Work(tier)),
        |tier, n| {
            if dry_run {
                Ok(n)
            } else {
                ports.fleet.ensure_capacity(tier, n)
            }
        },
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
