//! The worker: take a message, lease its item, encode it, commit it under the lease's
//! fencing token, and hand the job to the stitcher when it was the last item.
//!
//! What can go wrong is the normal case here. A duplicate message finds the item done or
//! leased by another worker and is dropped (the holder has its own message). A worker
//! killed with SIGKILL leaves its lease to expire and its message to reappear; another
//! worker redoes only that item under a new token and a new attempt directory. A worker
//! told to stop ([`Shutdown`], SIGTERM = a Spot interruption) kills ffmpeg, gives the lease
//! back, makes the message visible at once and records the interruption. An item that
//! keeps failing or being interrupted on Spot moves to the premium (on-demand) queue; one
//! received too often lands in the dead-letter queue and fails its job with the reason.
//! A lost stitch request is asked for again by the next message that finds its job
//! waiting to be stitched.

mod encode;
mod failure;
mod tiers;

pub use crate::shutdown::Shutdown;
pub use encode::{FfmpegEncoder, ItemEncoder};
pub use failure::escalates;
pub use tiers::{should_exit, TierPicker, SCALE_IN_BUSY_SHARE, SCALE_IN_WINDOW};

use crate::attempt::{Attempt, Ending};
use crate::domain::{ItemKind, ItemRef, JobRecord, JobStatus, Message, Queue, Tier};
use crate::pipeline::{Config, JobPlan, Ports};
use crate::ports::{Acquired, Completion, Delivery, Lease, PortError, PortResult};
use crate::stitch::stitch;
use failure::ignore_conflict;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one turn of the worker did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// Nothing was ready.
    Idle,
    /// A message was handled (encoded, dropped, stitched, dead-lettered).
    Worked,
    /// Stopped by the shutdown signal mid-item; the item was given back.
    Interrupted,
}

/// A worker bound to its ports.
pub struct Worker<'a> {
    ports: Ports<'a>,
    cfg: Config,
    owner: String,
    picker: TierPicker,
    shutdown: Shutdown,
    stitches: bool,
    scale_in: bool,
    /// The last plan read, under its job and plan id: a worker draining one film's chunks
    /// reads its plan (hundreds of KB for a feature) once, not once per chunk.
    plan_cache: Option<(String, String, Arc<JobPlan>)>,
    encoder: Box<dyn ItemEncoder + 'a>,
    /// Turns since the dead-letter queues were last looked at.
    turns_since_dead: u32,
}

/// A busy worker looks at the dead-letter queues every this many turns (an idle one on
/// every turn): dead letters are rare, and polling every queue on every turn was most of
/// the queue requests per item.
const DEAD_LETTER_EVERY: u32 = 16;

impl<'a> Worker<'a> {
    /// A worker named `owner` (shows in leases) serving `tiers`.
    pub fn new(
        ports: Ports<'a>,
        cfg: Config,
        owner: impl Into<String>,
        tiers: Vec<Tier>,
        shutdown: Shutdown,
    ) -> Self {
        Worker {
            ports,
            cfg,
            owner: owner.into(),
            picker: TierPicker::new(tiers, 4),
            shutdown,
            stitches: true,
            scale_in: false,
            plan_cache: None,
            encoder: Box::new(FfmpegEncoder),
            turns_since_dead: DEAD_LETTER_EVERY,
        }
    }

    /// Encodes with `encoder` instead of ffmpeg (a load test of the control plane).
    pub fn with_encoder(mut self, encoder: Box<dyn ItemEncoder + 'a>) -> Self {
        self.encoder = encoder;
        self
    }

    /// Leaves stitch requests to someone else: on AWS the stitch function consumes the
    /// stitch queue, and a worker task taking them too would only race it.
    pub fn without_stitching(mut self) -> Self {
        self.stitches = false;
        self
    }

    /// Stitch requests, encoding work, then dead letters (at once when there is no work,
    /// else every [`DEAD_LETTER_EVERY`] turns): one message at most.
    pub fn turn(&mut self) -> PortResult<Turn> {
        if self.shutdown.is_triggered() {
            return Ok(Turn::Idle);
        }
        let vis = self.visibility();
        let stitch_request = if self.stitches {
            self.ports.queue.receive(&[Queue::Stitch], vis)?
        } else {
            None
        };
        if let Some(d) = stitch_request {
            match &d.message {
                Message::Stitch { job_id } => match stitch(self.ports, job_id) {
                    Ok(_) => self.ports.queue.delete(&d)?,
                    Err(e) => {
                        // Try again later; a stitch that keeps failing dead-letters, is
                        // requested again, and fails its job only after many failures.
                        crate::stitch::note_failure(self.ports, job_id, &e);
                        ignore_conflict(self.ports.queue.release(&d, self.cfg.retry_delay))?;
                    }
                },
                Message::Item(_) => self.ports.queue.delete(&d)?,
            }
            return Ok(Turn::Worked);
        }
        self.turns_since_dead += 1;
        if self.turns_since_dead >= DEAD_LETTER_EVERY {
            self.turns_since_dead = 0;
            if let Some(d) = self.ports.queue.receive_dead(vis)? {
                self.fail_dead_letter(&d)?;
                return Ok(Turn::Worked);
            }
        }
        let order = self.picker.next_order();
        let Some(d) = self.ports.queue.receive(&order, vis)? else {
            self.turns_since_dead = 0;
            if let Some(d) = self.ports.queue.receive_dead(vis)? {
                self.fail_dead_letter(&d)?;
                return Ok(Turn::Worked);
            }
            return Ok(Turn::Idle);
        };
        if self.shutdown.is_triggered() {
            // Stopped between receive and lease: hand the message straight back.
            ignore_conflict(self.ports.queue.release(&d, Duration::ZERO))?;
            return Ok(Turn::Interrupted);
        }
        match d.message.clone() {
            Message::Item(item) => self.work(&d, &item),
            Message::Stitch { .. } => {
                self.ports.queue.delete(&d)?;
                Ok(Turn::Worked)
            }
        }
    }

    /// Also leaves when mostly idle ([`should_exit`]): for a fleet of tasks, where
    /// work spread over many pollers keeps every one of them from ever being idle for
    /// `idle_exit` in a row.
    pub fn with_scale_in(mut self) -> Self {
        self.scale_in = true;
        self
    }

    /// Runs turns until shutdown, or until idle for `idle_exit` (or, with
    /// [`Worker::with_scale_in`], mostly idle). A failing turn (a busy backend, one
    /// unreadable message) is logged and retried with back-off; it never takes the worker
    /// down.
    pub fn run(&mut self, idle_exit: Option<Duration>) -> PortResult<()> {
        let mut idle_since = Instant::now();
        let mut window = Instant::now();
        let mut busy = Duration::ZERO;
        let mut backoff = Duration::from_millis(200);
        while !self.shutdown.is_triggered() {
            let turn_started = Instant::now();
            let turn = match self.turn() {
                Ok(t) => {
                    backoff = Duration::from_millis(200);
                    t
                }
                Err(e) => {
                    tracing::error!(error = %e, "turn failed; backing off");
                    self.shutdown.sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            match turn {
                Turn::Idle => {
                    if let Some(d) = idle_exit {
                        let scale_in = self.scale_in.then_some((busy, window.elapsed()));
                        if should_exit(idle_since.elapsed(), d, scale_in) {
                            tracing::info!(busy_secs = busy.as_secs_f64(), "idle; exiting");
                            break;
                        }
                    }
                    if window.elapsed() >= SCALE_IN_WINDOW {
                        (window, busy) = (Instant::now(), Duration::ZERO);
                    }
                    self.shutdown.sleep(Duration::from_millis(200));
                }
                Turn::Interrupted => break,
                Turn::Worked => {
                    idle_since = Instant::now();
                    busy += turn_started.elapsed();
                }
            }
        }
        Ok(())
    }

    /// See [`crate::attempt::visibility`].
    fn visibility(&self) -> Duration {
        crate::attempt::visibility(&self.cfg)
    }

    /// The job's plan: the cached one when `job` names the same plan (a retried job gets a
    /// new plan id), else read afresh.
    fn plan(&mut self, job: &JobRecord) -> crate::Result<Arc<JobPlan>> {
        if let (Some((cached_job, cached_plan, plan)), Some(plan_id)) =
            (&self.plan_cache, &job.plan_id)
        {
            if *cached_job == job.id && cached_plan == plan_id {
                return Ok(plan.clone());
            }
        }
        let doc = self.ports.jobs.plan_doc(&job.id)?;
        let plan: Arc<JobPlan> = Arc::new(
            serde_json::from_str(&doc)
                .map_err(|e| crate::Error::corrupt(format!("the plan of job {}", job.id), e))?,
        );
        if let Some(plan_id) = &job.plan_id {
            self.plan_cache = Some((job.id.clone(), plan_id.clone(), plan.clone()));
        }
        Ok(plan)
    }

    fn work(&mut self, d: &Delivery, item: &ItemRef) -> PortResult<Turn> {
        let lease = match self
            .ports
            .jobs
            .acquire(item, &self.owner, self.cfg.lease_ttl)?
        {
            Acquired::Lease(l) => {
                fail::fail_point!("worker-after-lease", |_| Err(crate::ports::injected(
                    "worker-after-lease"
                )));
                l
            }
            Acquired::Finished => {
                // A job waiting to be stitched may have lost its stitch request with the
                // worker that committed last: ask again (stitching is idempotent).
                if self
                    .ports
                    .jobs
                    .job_brief(&item.job_id)?
                    .is_some_and(|j| j.status == JobStatus::Stitching)
                {
                    self.ports.queue.send(
                        Queue::Stitch,
                        &Message::Stitch {
                            job_id: item.job_id.clone(),
                        },
                    )?;
                }
                self.ports.queue.delete(d)?;
                return Ok(Turn::Worked);
            }
            Acquired::Early => {
                // The analysis queues every chunk once the ladder is chosen.
                tracing::debug!(item = %item.describe(), job = %item.job_id, "chunk before its ladder; dropped");
                ignore_conflict(self.ports.queue.delete(d))?;
                return Ok(Turn::Worked);
            }
            Acquired::HeldByOther => {
                // Another worker holds the item. This may be a duplicate, or the holder's
                // own message (its visibility extension failed and it came back): deleting
                // it could leave no message at all if the holder then dies. So it waits
                // until the lease would have run out, and is dropped once the item is done.
                ignore_conflict(self.ports.queue.release(d, self.cfg.lease_ttl * 2))?;
                return Ok(Turn::Worked);
            }
        };
        let started = Instant::now();
        // The job as the lease read it; a store that did not say reads it now.
        let job = match lease.job.clone() {
            Some(j) => Ok(Some(*j)),
            None => self.ports.jobs.job_brief(&item.job_id),
        };
        let prepared = job
            .and_then(|j| j.ok_or_else(|| PortError::NotFound(item.job_id.clone())))
            .map_err(crate::Error::from)
            .and_then(|j| Ok((self.plan(&j)?, j)))
            .map(|(p, j)| (j, p));
        // A store that did not answer is retried; a plan that does not read back fails the
        // job, since every retry would read the same bytes.
        let (job, plan) = match prepared {
            Ok(x) => x,
            Err(e) => return self.failed(d, &lease, e, 0.0),
        };
        let at = Attempt {
            ports: self.ports,
            cfg: &self.cfg,
            shutdown: &self.shutdown,
            delivery: d,
            lease: &lease,
            started,
        };
        let ending = match item.kind {
            ItemKind::Analysis => crate::analysis::choose_ladder(&at, &job, &plan)?,
            ItemKind::Index => crate::indexing::index_source(&at, &job, &plan)?,
            ItemKind::Video | ItemKind::Audio | ItemKind::Text => {
                self.encode_item(&at, &job, &plan)?
            }
        };
        let secs = at.secs();
        match ending {
            Ending::Commit(doc) => self.finish(d, &lease, &doc, secs),
            Ending::Failed(e) => self.failed(d, &lease, e, secs),
            Ending::LeaseLost => Ok(Turn::Worked),
        }
    }

    /// Commits the item's result under the lease, asks for the stitch when it was the
    /// job's last, and deletes the message.
    fn finish(&mut self, d: &Delivery, lease: &Lease, doc: &str, secs: f64) -> PortResult<Turn> {
        let item = &lease.item;
        fail::fail_point!("worker-before-commit", |_| Err(crate::ports::injected(
            "worker-before-commit"
        )));
        let committed = self.ports.jobs.commit(lease, doc, secs);
        fail::fail_point!("worker-after-commit", |_| Err(crate::ports::injected(
            "worker-after-commit"
        )));
        match committed {
            Ok(Completion::Last) => {
                tracing::info!(job = %item.job_id, "last item committed; requesting stitch");
                self.ports.queue.send(
                    Queue::Stitch,
                    &Message::Stitch {
                        job_id: item.job_id.clone(),
                    },
                )?;
            }
            Ok(Completion::More | Completion::AlreadyDone) => {}
            Err(PortError::Conflict(why)) => {
                // Another worker holds the item now, most likely through this very message
                // received again: deleting it with this (stale) receipt could leave the new
                // holder's work without a message. It comes back on its own if unneeded.
                tracing::warn!(%why, "lease lost before commit; result discarded");
                return Ok(Turn::Worked);
            }
            Err(e) => return Err(e),
        }
        ignore_conflict(self.ports.queue.delete(d))?;
        Ok(Turn::Worked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn premium_goes_first_but_bulk_gets_every_fourth_turn() {
        let mut p = TierPicker::new(vec![Tier::Bulk, Tier::Premium, Tier::Standard], 4);
        let firsts: Vec<Queue> = (0..8).map(|_| p.next_order()[0]).collect();
        let bulk_turns = firsts
            .iter()
            .filter(|q| **q == Queue::Work(Tier::Bulk))
            .count();
        assert_eq!(bulk_turns, 2);
        assert_eq!(firsts[0], Queue::Work(Tier::Premium));
        assert_eq!(p.next_order().len(), 3);
    }

    #[test]
    fn shutdown_is_shared_by_clones() {
        let s = Shutdown::new();
        let c = s.clone();
        assert!(!c.is_triggered());
        s.trigger();
        assert!(c.is_triggered());
    }
}
