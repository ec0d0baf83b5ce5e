//! Sweeps: what no event will ever finish, and the capacity each tier needs.
//!
//! Events drive the pipeline (an upload, a message, a commit), and each handler is
//! idempotent, so a redelivery repairs most crashes. What remains is work whose every event
//! is spent: an ingest that died after S3's retries ran out (a job left QUEUED or PROBING),
//! a job ENCODING whose messages are gone (an ingest that died between saving the plan and
//! queuing it, a message a worker lost), a stitch request lost with the worker that should
//! have sent it (a job left STITCHING), and workers that never started (capacity). A
//! periodic tick runs these sweeps: the fleet function on AWS (and `vodpipe aws tick`), the
//! `run`/`watch` loop on one machine. They live here, beside the lifecycle, so both
//! backends repair the same way. Nothing waits forever: every state short of PUBLISHED or
//! FAILED has a sweep that finishes it.
//!
//! Each sweep is bounded: repairs are claimed per job ([`JobStore::claim_repair`]), so
//! overlapping ticks never repeat one, and a repair is not repeated for a while after it
//! was made; the slow one (resuming an ingest, which probes) starts only when the tick has
//! the time to finish it. Order matters: capacity first, then the cheap repairs, the
//! probes last; each job and each tier on its own, so one failure never stops the repair
//! of the others. A dry run says what each would do and changes nothing.

use crate::domain::JobStatus;
use crate::domain::{JobRecord, Message, Queue, Tier};
use crate::ingest::{abandoned_after, ingest, Source};
use crate::pipeline::{Config, Ports};
use crate::ports::{JobStore, PortResult, WorkQueue};
use serde::Serialize;
use std::time::{Duration, Instant};
use vodpipe_media::process::now_secs;

/// How long a job may stay STITCHING before its stitch is requested again: far longer than
/// a stitch of a feature-length job takes, so a second request is a repair, not a race (a
/// duplicate stitch is harmless anyway: publication is conditional). A job's stitch is
/// requested again at most once per this period.
pub const STITCH_STALE_SECS: f64 = 900.0;

/// How long a job may stay ENCODING with nothing happening to it (no item committed, no
/// repair) before its unfinished items (neither done nor leased) are queued again, when its
/// tier's queues are empty: nothing is coming for it.
pub const STALL_SECS: f64 = 900.0;

/// The same, whatever the queues hold: a job whose items are behind a long backlog gets a
/// duplicate message per unfinished item at most this often (a duplicate finds its item
/// leased or done and is dropped).
pub const STALL_BUSY_SECS: f64 = 7200.0;

/// Stalled jobs one tick re-queues, at most: a film's thousands of messages each.
pub const MAX_REQUEUES_PER_TICK: usize = 25;

/// The longest one resumed ingest can take (two probes at their time limit, the settings
/// wait, ten seconds for the rest): a tick starts one only with this much time left.
pub fn resume_cost(cfg: &Config) -> Duration {
    Duration::from_secs(2 * cfg.policy.probe_timeout_secs + 10) + cfg.settings.settings_wait
}

/// Ingests again every job left QUEUED or PROBING for longer than a probe can take: its
/// ingest died and the event's retries are spent. `ingest` takes such a job over, by one
/// caller only (a conditional claim), so overlapping ticks never probe one job twice.
/// A resume starts only while [`resume_cost`] still fits before `until` (the rest waits
/// for the next tick). A job that fails to resume is logged and left; it never stops the
/// others. A dry run lists the jobs it would resume.
pub fn resume_abandoned(
    ports: Ports<'_>,
    cfg: &Config,
    until: Instant,
    dry_run: bool,
    source_of: impl Fn(&JobRecord) -> Source,
) -> PortResult<Vec<String>> {
    let cutoff = now_secs() - abandoned_after(cfg);
    let mut resumed = Vec::new();
    for status in [JobStatus::Queued, JobStatus::Probing] {
        for job in ports.jobs.brief_jobs_by_status(status)? {
            if job.created_at > cutoff {
                continue;
            }
            if dry_run {
                resumed.push(job.id);
                continue;
            }
            if Instant::now() + resume_cost(cfg) > until {
                tracing::info!(job = %job.id, "no time left in this tick to resume an ingest; next tick");
                return Ok(resumed);
            }
            // A re-packaged version is planned as one, never from its source.
            let outcome = if job.settings.as_ref().is_some_and(|s| s.repackage.is_some()) {
                crate::repackage::resume(ports, cfg, &job)
            } else {
                ingest(ports, cfg, &source_of(&job), false)
            };
            match outcome {
                Ok(ing) => {
                    tracing::warn!(job = %job.id, status = %ing.status, "resumed an abandoned ingest");
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

/// Requests the stitch again for every job STITCHING for longer than `stale_secs`: the
/// worker whose commit moved it there died before sending the request, and the item's
/// redelivery (which would send it too) was deleted or dead-lettered. Returns the jobs (a
/// dry run: that it would).
///
/// A request is only ever repeated when none can be outstanding: when the stitch queue
/// holds nothing (no message waiting or being stitched, so this job's request is gone),
/// and then at most once per `stale_secs`. While the queue holds a backlog, the job's
/// request may be in it, and repeating it would only deepen the backlog this is reacting
/// to: a job is then asked for again only after [`STALL_BUSY_SECS`], far longer than any
/// backlog a working stitch mapping builds.
pub fn restitch_stranded<J, Q>(
    jobs: &J,
    queue: &Q,
    stale_secs: f64,
    dry_run: bool,
) -> PortResult<Vec<String>>
where
    J: JobStore + ?Sized,
    Q: WorkQueue + ?Sized,
{
    let stitching = jobs.brief_jobs_by_status(JobStatus::Stitching)?;
    if stitching.is_empty() {
        return Ok(Vec::new());
    }
    let stale_secs = if queue.depth(Queue::Stitch)? == 0 {
        stale_secs
    } else {
        stale_secs.max(STALL_BUSY_SECS)
    };
    let cutoff = now_secs() - stale_secs;
    let mut sent = Vec::new();
    for job in stitching {
        if job.stitch_started_at.unwrap_or(job.created_at) > cutoff {
            continue;
        }
        if dry_run {
            sent.push(job.id);
            continue;
        }
        if !jobs.claim_repair(&job.id, JobStatus::Stitching, stale_secs)? {
            continue;
        }
        let request = Message::Stitch {
            job_id: job.id.clone(),
        };
        match queue.send(Queue::Stitch, &request) {
            Ok(()) => {
                tracing::warn!(job = %job.id, "stitch requested again for a job stranded in STITCHING");
                sent.push(job.id);
            }
            Err(e) => {
                tracing::error!(job = %job.id, error = %e, "could not request the stitch again")
            }
        }
    }
    Ok(sent)
}

/// A job ENCODING whose messages may be gone: never fully queued (its ingest died after
/// saving the plan) and older than an ingest's retries, or with nothing happening to it
/// (no item committed, no repair) for [`STALL_SECS`] while its tier has nothing queued, or
/// for [`STALL_BUSY_SECS`] whatever.
pub fn is_stalled(job: &JobRecord, now: f64, cfg: &Config, queues_idle: bool) -> bool {
    if job.queued_at.is_none() && job.repaired_at.is_none() {
        return now - job.created_at > abandoned_after(cfg);
    }
    let last = [
        job.queued_at,
        job.started_at,
        job.progress_at,
        job.repaired_at,
    ]
    .into_iter()
    .flatten()
    .fold(job.created_at, f64::max);
    let idle_for = now - last;
    (queues_idle && idle_for > STALL_SECS) || idle_for > STALL_BUSY_SECS
}

/// Queues again the unfinished items (neither done nor leased) of every job stalled at
/// `now` ([`is_stalled`]), at most [`MAX_REQUEUES_PER_TICK`] jobs and none after `until`,
/// each item on the queue it was last on (an item that failed or was interrupted
/// `escalate_after` times on Spot goes to premium). Returns the jobs and how many messages
/// each got (a dry run: would get).
pub fn requeue_stalled<J, Q>(
    jobs: &J,
    queue: &Q,
    cfg: &Config,
    now: f64,
    until: Instant,
    dry_run: bool,
) -> PortResult<Vec<(String, usize)>>
where
    J: JobStore + ?Sized,
    Q: WorkQueue + ?Sized,
{
    let mut idle: std::collections::HashMap<Tier, bool> = Default::default();
    let mut requeued = Vec::new();
    for job in jobs.brief_jobs_by_status(JobStatus::Encoding)? {
        if requeued.len() >= MAX_REQUEUES_PER_TICK || Instant::now() > until {
            tracing::info!("stalled jobs left for the next tick");
            break;
        }
        let queues_idle = match idle.get(&job.tier) {
            Some(v) => *v,
            None => {
                // Escalated items wait on premium too.
                let v = [Queue::Work(job.tier), Queue::Work(Tier::Premium)]
                    .into_iter()
                    .map(|q| queue.depth(q).unwrap_or(1))
                    .sum::<u64>()
                    == 0;
                idle.insert(job.tier, v);
                v
            }
        };
        if !is_stalled(&job, now, cfg, queues_idle) {
            continue;
        }
        let items = crate::ingest::unfinished(jobs, &job.id)?;
        // A job with no work at all (a re-packaged version with nothing to convert) whose
        // maker died between planning it and asking for its stitch: the stitch is asked
        // for now.
        if items.is_empty() && job.total == 0 && !dry_run {
            if jobs.transition(&job.id, crate::domain::Transition::Complete, None)? {
                tracing::warn!(job = %job.id, "a job with no items was left ENCODING; stitching it");
                let request = Message::Stitch {
                    job_id: job.id.clone(),
                };
                queue.send(Queue::Stitch, &request)?;
            }
            continue;
        }
        if items.is_empty() {
            continue;
        }
        let n = items.len();
        if !dry_run {
            if !jobs.claim_repair(&job.id, JobStatus::Encoding, STALL_SECS)? {
                continue;
            }
            // Each on the queue it was last sent to: escalated items stay on premium.
            let (escalated, own): (Vec<_>, Vec<_>) = items.into_iter().partition(|(_, s)| {
                runs_on_spot(job.tier) && s.failures + s.interruptions >= cfg.escalate_after
            });
            let sent = [(Tier::Premium, escalated), (job.tier, own)]
                .into_iter()
                .filter(|(_, batch)| !batch.is_empty())
                .try_for_each(|(tier, batch)| {
                    let messages: Vec<Message> =
                        batch.into_iter().map(|(i, _)| Message::Item(i)).collect();
                    queue.send_many(Queue::Work(tier), &messages)
                });
            if let Err(e) = sent {
                tracing::error!(job = %job.id, error = %e, "could not queue a stalled job's items again");
                continue;
            }
            // Every item has a message again: the job no longer looks never-queued.
            jobs.all_queued(&job.id)?;
            tracing::warn!(job = %job.id, items = n, "queued a stalled job's unfinished items again");
        }
        requeued.push((job.id, n));
    }
    Ok(requeued)
}

/// The longest a tier's launches wait after failures in a row (half an hour).
pub const LAUNCH_BACKOFF_MAX_SECS: f64 = 1800.0;

/// When a tier whose launches failed may launch again: `base_secs` after the first failure
/// in a row, twice that after the second, and so on up to [`LAUNCH_BACKOFF_MAX_SECS`]. A
/// task that cannot start (an image that is not there) is billed and fails again on every
/// launch; backing off stops that, and the first task that starts clears it.
pub fn launch_allowed_at(t: &crate::ports::LaunchTrouble, base_secs: f64) -> f64 {
    let exp = t.failures.saturating_sub(1).min(16) as i32;
    t.last_at + (base_secs * 2f64.powi(exp)).min(LAUNCH_BACKOFF_MAX_SECS)
}

/// What `status`, `jobs` and the doctor say of a tier whose launches fail.
pub fn launch_trouble_text(tier: Tier, t: &crate::ports::LaunchTrouble, base_secs: f64) -> String {
    let wait = (launch_allowed_at(t, base_secs) - now_secs()).max(0.0);
    format!(
        "{tier} workers cannot start: {} ({} failed launches in a row; next launch in {:.0} s)",
        t.reason, t.failures, wait
    )
}

/// One tier's reconcile.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TierCapacity {
    /// Tier.
    pub tier: String,
    /// Messages visible or in flight on its queue.
    pub depth: u64,
    /// Workers running or starting after the reconcile (0 when capacity is managed outside
    /// vodpipe).
    pub workers: u32,
    /// Why the tier could not be reconciled (throttling, a quota, an ECS error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Tasks per `RunTask` call (the ECS API's maximum).
pub const TASKS_PER_RUN_TASK: u32 = 10;
/// Launches one caller aims for per second, below Fargate's 20 per pool.
pub const LAUNCHES_PER_SECOND: f64 = 15.0;
/// Most tasks one `ensure_capacity` call launches; the next reconcile (a minute later, or
/// the next ingest) continues, so a burst of uploads never holds a function for long.
pub const MAX_LAUNCHES_PER_CALL: u32 = 300;

/// How many tasks a tier should have once an `ensure_capacity` call that found `have`
/// running or pending and was asked for `wanted` is done: never above the deployment's cap,
/// and never more than [`MAX_LAUNCHES_PER_CALL`] new ones at a time.
pub fn launch_target(have: u32, wanted: u32, max_per_tier: u32) -> u32 {
    wanted
        .min(max_per_tier)
        .min(have.saturating_add(MAX_LAUNCHES_PER_CALL))
}

/// The queues a tier's workers serve: premium tasks serve premium work only (it is where
/// escalated items go); Spot tasks serve standard and bulk.
pub fn served_tiers(tier: Tier) -> &'static [Tier] {
    match tier {
        Tier::Premium => &[Tier::Premium],
        Tier::Standard | Tier::Bulk => &[Tier::Standard, Tier::Bulk],
    }
}

/// Queued or in-flight items per worker a tier's fleet is sized for. A new task takes about
/// a minute to start, as long as several chunk encodes, so one task per queued item
/// overshoots and then idles; the cheaper the tier, the more items each worker is meant
/// to drain in turn (premium keeps one each: its latency is what it pays for).
pub fn items_per_worker(tier: Tier) -> u64 {
    match tier {
        Tier::Premium => 1,
        Tier::Standard => 2,
        Tier::Bulk => 4,
    }
}

/// Whether a tier's workers run on Spot capacity (premium runs On-Demand: it is where
/// work goes that must not be interrupted again).
pub fn runs_on_spot(tier: Tier) -> bool {
    tier != Tier::Premium
}

/// The workers a tier needs: one per [`items_per_worker`] queued or in-flight messages
/// (workers exit when idle, so an empty queue costs nothing). With `dead` letters waiting the standard tier keeps
/// one: only workers drain them, failing their jobs with the reason.
pub fn wanted_workers(tier: Tier, depth: u64, dead: u64) -> u32 {
    let depth = depth.div_ceil(items_per_worker(tier));
    let wanted = if tier == Tier::Standard && dead > 0 {
        depth.max(1)
    } else {
        depth
    };
    wanted.min(u64::from(u32::MAX)) as u32
}

/// Brings each tier up to [`wanted_workers`], and at least `warm` (the warm minimum
/// kept through idle spells), each on its own: a tier whose depth cannot
/// be read or whose workers cannot be started (throttled past the SDK's retries, a quota,
/// an ECS error) is reported with its error, and the others are still reconciled.
pub fn reconcile_tiers(
    tiers: &[Tier],
    dead: u64,
    warm: u32,
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
            match wanted_workers(tier, d, dead).max(warm) {
                0 => Ok(0),
                n => ensure(tier, n),
            }
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

/// The work left in unfinished jobs, for a fleet that sizes itself by jobs rather than
/// queue depth (local worker processes, which share one pool): items not yet done, at
/// least one per job (its stitch), and the tier of the most recent such job.
pub fn outstanding_work<J: JobStore + ?Sized>(jobs: &J) -> PortResult<Option<(Tier, u32)>> {
    let mut work = 0u32;
    let mut tier = None;
    for status in [JobStatus::Encoding, JobStatus::Stitching] {
        for j in jobs.brief_jobs_by_status(status)? {
            work = work.saturating_add(j.total.saturating_sub(j.done).max(1));
            tier = Some(j.tier);
        }
    }
    Ok(tier.map(|t| (t, work)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::PortError;

    #[test]
    fn an_idle_tier_keeps_its_warm_minimum_and_a_busy_one_grows_past_it() {
        let lines = reconcile_tiers(
            &[Tier::Premium, Tier::Bulk],
            0,
            2,
            |tier| Ok(if tier == Tier::Bulk { 40 } else { 0 }),
            |_, n| Ok(n),
        );
        assert_eq!(lines[0].workers, 2, "idle premium keeps two");
        assert_eq!(lines[1].workers, 10, "40 bulk items at four a worker");
    }

    #[test]
    fn a_throttled_tier_is_reported_and_the_others_still_get_workers() {
        let lines = reconcile_tiers(
            &[Tier::Premium, Tier::Standard, Tier::Bulk],
            0,
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
                ("bulk", 1, false)
            ]
        );
    }

    #[test]
    fn dead_letters_keep_one_standard_worker_through_the_reconcile() {
        let lines = reconcile_tiers(&[Tier::Standard, Tier::Bulk], 2, 0, |_| Ok(0), |_, n| Ok(n));
        assert_eq!(lines[0].workers, 1);
        assert_eq!(lines[1].workers, 0);
    }

    #[test]
    fn failed_launches_back_off_doubling_up_to_half_an_hour() {
        let t = |failures| crate::ports::LaunchTrouble {
            failures,
            reason: "CannotPullContainerError".into(),
            last_at: 1000.0,
        };
        assert_eq!(launch_allowed_at(&t(1), 60.0), 1060.0);
        assert_eq!(launch_allowed_at(&t(2), 60.0), 1120.0);
        assert_eq!(launch_allowed_at(&t(4), 60.0), 1480.0);
        assert_eq!(
            launch_allowed_at(&t(40), 60.0),
            1000.0 + LAUNCH_BACKOFF_MAX_SECS
        );
    }

    #[test]
    fn dead_letters_keep_one_standard_worker() {
        assert_eq!(wanted_workers(Tier::Standard, 0, 2), 1);
        assert_eq!(wanted_workers(Tier::Bulk, 0, 2), 0);
        assert_eq!(wanted_workers(Tier::Standard, 5, 2), 3);
        // One worker per item for premium, per two for standard, per four for bulk.
        assert_eq!(wanted_workers(Tier::Premium, 9, 0), 9);
        assert_eq!(wanted_workers(Tier::Standard, 9, 0), 5);
        assert_eq!(wanted_workers(Tier::Bulk, 9, 0), 3);
        assert_eq!(wanted_workers(Tier::Standard, 0, 0), 0);
    }
}
