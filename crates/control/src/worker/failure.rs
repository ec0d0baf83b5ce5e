//! The failure policy: what happens to an item, its message and its job when an attempt
//! fails, is interrupted, or its message reaches a dead-letter queue.

use super::{Turn, Worker};
use crate::domain::{Message, Queue, Tier, Transition};
use crate::ports::{Delivery, Lease, PortError, PortResult, Release};
use std::time::Duration;

/// Whether an item given back from `queue` after its `strikes`-th failure or interruption
/// goes to the premium (On-Demand) queue: Spot-tier work that keeps failing or being
/// interrupted stops waiting for cheap capacity.
pub fn escalates(queue: Queue, strikes: u32, escalate_after: u32) -> bool {
    matches!(queue, Queue::Work(t) if crate::sweep::runs_on_spot(t)) && strikes >= escalate_after
}

/// A conflict means another worker owns the thing now; for the caller that is done.
pub(crate) fn ignore_conflict(r: PortResult<()>) -> PortResult<()> {
    match r {
        Err(PortError::Conflict(why)) => {
            tracing::info!(%why, "no longer ours");
            Ok(())
        }
        other => other,
    }
}

impl Worker<'_> {
    /// Fails a job that is still encoding, with `reason`; a job already past that keeps its
    /// state.
    pub(super) fn fail_job(&self, job_id: &str, reason: &str) -> PortResult<()> {
        crate::moves::apply(self.ports, job_id, Transition::FailEncode, Some(reason))?;
        Ok(())
    }

    /// A message that exhausted its receives: looked at again ([`crate::dead_letters`]),
    /// and its job failed only when its item or stitch is itself failing.
    pub(super) fn fail_dead_letter(&mut self, d: &Delivery) -> PortResult<()> {
        use crate::dead_letters::{self, Verdict};
        let (job_id, verdict) = match &d.message {
            Message::Item(item) => {
                let state = self.ports.jobs.item_state(item)?;
                let job = self.ports.jobs.job_brief(&item.job_id)?;
                let v = dead_letters::item(item, state.as_ref(), job.as_ref(), d.receive_count);
                (item.job_id.clone(), v)
            }
            Message::Stitch { job_id } => {
                let job = self.ports.jobs.job_brief(job_id)?;
                (job_id.clone(), dead_letters::stitch(job.as_ref()))
            }
        };
        match verdict {
            Verdict::Drop => {
                tracing::info!(job = %job_id, message = ?d.message, "dead letter with nothing waiting on it; dropped")
            }
            Verdict::Requeue(tier) => {
                tracing::warn!(job = %job_id, message = ?d.message, %tier, "dead letter for an item still to do; queued again");
                self.ports.queue.send(Queue::Work(tier), &d.message)?;
            }
            Verdict::Restitch => {
                // Counted as a failed stitch: one that timed out or crashed said nothing.
                let why = format!(
                    "the stitch request was delivered {} times without a publish (the stitch timed out, crashed or kept failing)",
                    d.receive_count
                );
                self.ports.jobs.note_stitch_failure(&job_id, &why)?;
                tracing::warn!(job = %job_id, "dead stitch request for a job still to publish; requested again");
                self.ports.queue.send(Queue::Stitch, &d.message)?;
            }
            Verdict::Fail(reason) => {
                tracing::error!(job = %job_id, %reason, "dead letter");
                let t = match d.message {
                    Message::Item(_) => Transition::FailEncode,
                    Message::Stitch { .. } => Transition::FailStitch,
                };
                crate::moves::apply(self.ports, &job_id, t, Some(&reason))?;
            }
        }
        self.ports.queue.delete(d)
    }

    /// An attempt that failed with `e`: given back after an interruption, the job failed
    /// for a permanent fault, retried after a passing one.
    pub(super) fn failed(
        &mut self,
        d: &Delivery,
        lease: &Lease,
        e: crate::Error,
        secs: f64,
    ) -> PortResult<Turn> {
        let item = &lease.item;
        if self.shutdown.is_triggered() {
            tracing::warn!(item = %item.describe(), error = %e, "interrupted; giving the item back");
            self.give_back(d, lease, Release::Interrupted, secs)?;
            return Ok(Turn::Interrupted);
        }
        if e.is_cancelled() {
            // Stopped because the lease was lost (or could not be renewed): not the item's
            // failure. Given back as interrupted if it is still ours.
            tracing::warn!(item = %item.describe(), error = %e, "attempt stopped without its lease");
            self.give_back(d, lease, Release::Interrupted, secs)?;
            return Ok(Turn::Worked);
        }
        if e.is_permanent() {
            let reason = format!("{} failed: {e}", item.describe());
            ignore_conflict(
                self.ports
                    .jobs
                    .release_lease(lease, Release::Failed(&reason), secs),
            )?;
            self.fail_job(&item.job_id, &reason)?;
            ignore_conflict(self.ports.queue.delete(d))?;
            return Ok(Turn::Worked);
        }
        let reason = e.to_string();
        tracing::warn!(item = %item.describe(), attempt = lease.attempt, error = %reason, "attempt failed");
        crate::metrics::emit(&[("Retries", 1.0, crate::metrics::Unit::Count)], &[]);
        let outcome = if e.is_infrastructure() {
            Release::Unavailable(&reason)
        } else {
            Release::Failed(&reason)
        };
        self.give_back(d, lease, outcome, secs)?;
        Ok(Turn::Worked)
    }

    /// Releases the lease (counting the outcome) and the message: at once after an
    /// interruption, after a back-off after a failure, and onto the premium queue once a
    /// Spot-tier item has been failed or interrupted `escalate_after` times. A lease that
    /// was already lost belongs to another worker: nothing is counted or escalated.
    pub(super) fn give_back(
        &mut self,
        d: &Delivery,
        lease: &Lease,
        outcome: Release<'_>,
        secs: f64,
    ) -> PortResult<()> {
        match self.ports.jobs.release_lease(lease, outcome, secs) {
            Ok(()) => {}
            Err(PortError::Conflict(why)) => {
                // The message too is the new holder's (see `finish`): left alone.
                tracing::info!(%why, "lease already lost; leaving the item to its new holder");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let strikes = lease.failures + lease.interruptions + 1;
        if escalates(d.queue, strikes, self.cfg.escalate_after) {
            tracing::warn!(item = %lease.item.describe(), strikes, "escalating to the premium tier");
            self.ports.queue.send(
                Queue::Work(Tier::Premium),
                &Message::Item(lease.item.clone()),
            )?;
            return ignore_conflict(self.ports.queue.delete(d));
        }
        let delay = match outcome {
            Release::Interrupted => Duration::ZERO,
            Release::Failed(_) | Release::Unavailable(_) => self.cfg.retry_delay,
        };
        ignore_conflict(self.ports.queue.release(d, delay))
    }
}
