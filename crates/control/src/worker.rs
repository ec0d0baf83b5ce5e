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

use crate::domain::JobRecord;
use crate::domain::JobStatus;
use crate::domain::{ItemKind, ItemRef, Message, Queue, Tier};
use crate::job::content_hash;
use crate::outputs::{attempt_dir, job_dir, TrackResult};
use crate::pipeline::{Config, JobPlan, Ports, TextSource};
use crate::ports::{
    Acquired, Cacheability, Completion, Delivery, Lease, PortError, PortResult, Release,
};
use crate::stitch::stitch;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vodpipe_media::captions::TextInput;
use vodpipe_media::encode::{self, EncodeContext, Encoded};
use vodpipe_media::mp4;
use vodpipe_media::package::SegmentRef;

/// A shutdown signal every long-running piece holds: set once (SIGTERM, SIGINT), seen by
/// the receive loop and by the running ffmpeg, which is killed within milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// A signal not yet given.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// The flag, for signal handlers (`signal_hook::flag::register`) and tool runs.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }

    /// Asks everything holding this to stop.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether stopping was asked for.
    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Sleeps for `d`, or less when stopping is asked for meanwhile: an idle worker told
    /// to stop leaves within milliseconds, not at the end of its nap.
    pub fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.is_triggered() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(10)));
        }
    }
}

/// Queue order for a worker serving several tiers: higher tiers first, but every
/// `fairness`-th receive starts from the lowest tier, so bulk work is never starved by a
/// steady stream of premium work.
#[derive(Debug, Clone)]
pub struct TierPicker {
    tiers: Vec<Tier>,
    fairness: u32,
    turn: u32,
}

impl TierPicker {
    /// Serves `tiers`; every `fairness`-th turn (≥ 2) is the lowest tier's.
    pub fn new(mut tiers: Vec<Tier>, fairness: u32) -> Self {
        tiers.sort();
        tiers.dedup();
        TierPicker {
            tiers,
            fairness: fairness.max(2),
            turn: 0,
        }
    }

    /// The queue order for the next receive.
    pub fn next_order(&mut self) -> Vec<Queue> {
        self.turn = self.turn.wrapping_add(1);
        let mut order: Vec<Queue> = self.tiers.iter().map(|t| Queue::Work(*t)).collect();
        if self.turn.is_multiple_of(self.fairness) {
            order.reverse();
        }
        order
    }
}

/// How long a worker of a fleet watches its own load before it may scale in.
pub const SCALE_IN_WINDOW: Duration = Duration::from_secs(300);
/// A fleet worker busy less than this share of [`SCALE_IN_WINDOW`] leaves when it next
/// finds nothing to do: the fleet has more workers than work.
pub const SCALE_IN_BUSY_SHARE: f64 = 0.25;

/// Whether a worker that found nothing to do should exit: idle for `idle_exit` in a row,
/// or (`scale_in`: its busy time and how long it has watched) busy less than
/// [`SCALE_IN_BUSY_SHARE`] of a full [`SCALE_IN_WINDOW`]. With many workers polling, work
/// reaches every one now and then and none is idle for long in a row, so idle time alone
/// never shrinks a fleet (`vodpipe simulate` found the fleet staying at its peak).
pub fn should_exit(
    idle_for: Duration,
    idle_exit: Duration,
    scale_in: Option<(Duration, Duration)>,
) -> bool {
    idle_for >= idle_exit
        || scale_in.is_some_and(|(busy, watched)| {
            watched >= SCALE_IN_WINDOW
                && busy.as_secs_f64() < SCALE_IN_BUSY_SHARE * watched.as_secs_f64()
        })
}

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

/// Told the id of every job this worker moved to a final state (PUBLISHED by a stitch,
/// FAILED by a dead letter), so a deployment can announce it (EventBridge on AWS).
pub type Announcer<'a> = Box<dyn Fn(&str) + Send + Sync + 'a>;

/// Turns one item into encoded tracks. The worker's own runs ffmpeg ([`encode`]); a load
/// test of the control plane swaps in one that makes no media, so everything else the
/// worker does (leases, heartbeats, uploads, commits, retries) runs for real without it.
pub trait ItemEncoder: Send + Sync {
    /// Encodes `item` of the plan in `ctx`, reporting frames done through `on_frames`.
    fn encode(
        &self,
        ctx: &EncodeContext<'_>,
        item: &ItemRef,
        on_frames: &(dyn Fn(u64) + Sync),
    ) -> vodpipe_media::Result<Encoded>;
}

/// The encoder workers use: ffmpeg, one process per chunk or audio track.
pub struct FfmpegEncoder;

impl ItemEncoder for FfmpegEncoder {
    fn encode(
        &self,
        ctx: &EncodeContext<'_>,
        item: &ItemRef,
        on_frames: &(dyn Fn(u64) + Sync),
    ) -> vodpipe_media::Result<Encoded> {
        match item.kind {
            ItemKind::Video => match ctx.plan.chunks.get(item.index as usize) {
                Some(chunk) => encode::encode_chunk(ctx, chunk, on_frames),
                None => Err(vodpipe_media::Error::PlanMismatch(format!(
                    "no chunk {}",
                    item.index
                ))),
            },
            ItemKind::Audio => encode::encode_audio(ctx, item.index as usize).map(Encoded::from),
            ItemKind::Text => encode::encode_text(ctx),
            ItemKind::Analysis | ItemKind::Index => Err(vodpipe_media::Error::PlanMismatch(
                format!("{} is not an encode", item.describe()),
            )),
        }
    }
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
    announce: Option<Announcer<'a>>,
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
            announce: None,
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

    /// Calls `announce` with each job this worker moves to a final state.
    pub fn with_announcer(mut self, announce: Announcer<'a>) -> Self {
        self.announce = Some(announce);
        self
    }

    fn announce(&self, job_id: &str) {
        if let Some(a) = &self.announce {
            a(job_id);
        }
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
                    Ok(changed) => {
                        if changed.is_some() {
                            self.announce(job_id);
                        }
                        self.ports.queue.delete(&d)?
                    }
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

    /// Messages stay hidden half as long again as a lease lasts, so when a dead worker's
    /// message reappears its lease has already expired and the next worker can take it.
    fn visibility(&self) -> Duration {
        self.cfg.lease_ttl + self.cfg.lease_ttl / 2
    }

    /// The job's plan: the cached one when `job` names the same plan (a retried job gets a
    /// new plan id), else read afresh.
    fn plan(&mut self, job: &JobRecord) -> PortResult<Arc<JobPlan>> {
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
                .map_err(|e| PortError::Backend(format!("job {} plan unreadable: {e}", job.id)))?,
        );
        if let Some(plan_id) = &job.plan_id {
            self.plan_cache = Some((job.id.clone(), plan_id.clone(), plan.clone()));
        }
        Ok(plan)
    }

    /// Fails a job that is still encoding, with `reason`; a job already past that keeps its
    /// state.
    fn fail_job(&self, job_id: &str, reason: &str) -> PortResult<()> {
        let failed = self.ports.jobs.transition(
            job_id,
            &[JobStatus::Encoding],
            JobStatus::Failed,
            Some(reason),
        )?;
        if failed {
            crate::metrics::job_state(JobStatus::Failed);
            self.announce(job_id);
        }
        Ok(())
    }

    /// A message that exhausted its receives: looked at again ([`crate::dead_letters`]),
    /// and its job failed only when its item or stitch is itself failing.
    fn fail_dead_letter(&mut self, d: &Delivery) -> PortResult<()> {
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
                let from = match d.message {
                    Message::Item(_) => JobStatus::Encoding,
                    Message::Stitch { .. } => JobStatus::Stitching,
                };
                if self
                    .ports
                    .jobs
                    .transition(&job_id, &[from], JobStatus::Failed, Some(&reason))?
                {
                    crate::metrics::job_state(JobStatus::Failed);
                    self.announce(&job_id);
                }
            }
        }
        self.ports.queue.delete(d)
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
            .and_then(|j| Ok((self.plan(&j)?, j)))
            .map(|(p, j)| (j, p));
        let (job, plan) = match prepared {
            Ok(x) => x,
            Err(e) => {
                let reason = format!("cannot read the job: {e}");
                self.give_back(d, &lease, Release::Failed(&reason), 0.0)?;
                return Ok(Turn::Worked);
            }
        };
        if item.kind == ItemKind::Analysis {
            return self.choose_ladder(d, &lease, &job, &plan, started);
        }
        if item.kind == ItemKind::Index {
            return self.index_source(d, &lease, &job, &plan, started);
        }
        let mut result = self.encode_and_store(d, &lease, &job, &plan);
        let secs = started.elapsed().as_secs_f64();
        // A subtitle file ffmpeg cannot read fails once more (a passing fault gets its
        // retry), then is published as skipped with ffmpeg's reason: captions that cannot
        // be read must not cost the viewer the video.
        if let Err(e) = &result {
            if item.kind == ItemKind::Text
                && lease.failures >= 1
                && !self.shutdown.is_triggered()
                && !e.is_infrastructure()
                && !matches!(e, vodpipe_media::Error::Cancelled { .. })
            {
                tracing::warn!(item = %item.describe(), error = %e, "subtitle track cannot be converted; published as skipped");
                result = Ok(vec![TrackResult {
                    name: format!("text_{}", item.index),
                    codec: String::new(),
                    timescale: 1000,
                    init_uri: String::new(),
                    stsd_hash: String::new(),
                    segments: Vec::new(),
                    skipped: Some(e.to_string()),
                }]);
            }
        }
        match result {
            Ok(tracks) => {
                let doc = serde_json::to_string(&tracks)
                    .map_err(|e| PortError::Backend(e.to_string()))?;
                let media_secs = chunk_media_secs(&plan, item);
                // Subtitle conversion is not encoding: it would skew the encode metrics.
                if item.kind != ItemKind::Text {
                    crate::metrics::emit(
                        &[
                            ("ChunkEncodeSeconds", secs, crate::metrics::Unit::Seconds),
                            (
                                "RealtimeFactor",
                                if secs > 0.0 { media_secs / secs } else { 0.0 },
                                crate::metrics::Unit::None,
                            ),
                        ],
                        &[],
                    );
                }
                self.finish(d, &lease, &doc, secs)
            }
            Err(e) => self.failed(d, &lease, e, secs),
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

    /// An attempt that failed with `e`: given back after an interruption, the job failed
    /// for a permanent fault, retried after a passing one.
    fn failed(
        &mut self,
        d: &Delivery,
        lease: &Lease,
        e: vodpipe_media::Error,
        secs: f64,
    ) -> PortResult<Turn> {
        let item = &lease.item;
        if self.shutdown.is_triggered() {
            tracing::warn!(item = %item.describe(), error = %e, "interrupted; giving the item back");
            self.give_back(d, lease, Release::Interrupted, secs)?;
            return Ok(Turn::Interrupted);
        }
        if matches!(e, vodpipe_media::Error::Cancelled { .. }) {
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

    /// The ladder analysis of a per-title job: samples the source, chooses the rungs,
    /// revises the plan under the lease, queues every chunk, then commits. A retry after a
    /// crash between the revision and the commit finds the plan revised and only queues
    /// the chunks again (a duplicate message finds its chunk leased or done).
    fn choose_ladder(
        &mut self,
        d: &Delivery,
        lease: &Lease,
        job: &JobRecord,
        plan: &JobPlan,
        started: Instant,
    ) -> PortResult<Turn> {
        let item = &lease.item;
        if plan.ladder_pending() {
            let version = job
                .settings
                .as_ref()
                .and_then(|s| s.source_version.as_deref());
            let (frames, cancel) = (AtomicU64::new(0), Arc::new(AtomicBool::new(false)));
            let stop = [cancel.clone(), self.shutdown.flag()];
            let chosen = self.with_heartbeat(d, lease, &frames, &cancel, || {
                let input = self.open_input(&job.source, version, Duration::from_secs(3600))?;
                let scratch = self
                    .cfg
                    .scratch
                    .join(format!("{}-analysis-{}", item.job_id, lease.token));
                let mut revised = plan.clone();
                let chosen = revised.choose_ladder(
                    &self.cfg.ffmpeg,
                    &input,
                    &scratch,
                    job.duration_secs,
                    &stop,
                );
                let _ = std::fs::remove_dir_all(&scratch);
                chosen.map(|()| revised)
            });
            let revised = match chosen {
                Ok(r) => r,
                Err(e) => return self.failed(d, lease, e, started.elapsed().as_secs_f64()),
            };
            let doc =
                serde_json::to_string(&revised).map_err(|e| PortError::Backend(e.to_string()))?;
            match self
                .ports
                .jobs
                .revise_plan(lease, &doc, revised.rungs.len() as u32)
            {
                Ok(true) => {
                    let ratio = revised.per_title.as_ref().map_or(1.0, |a| a.bits_ratio);
                    tracing::info!(job = %item.job_id, rungs = revised.rungs.len(), bits_ratio = ratio, "per-title ladder chosen; queuing the chunks");
                }
                // The job left ENCODING (failed, say): nothing to queue.
                Ok(false) => {
                    tracing::info!(job = %item.job_id, "plan not revised; the job moved on");
                    return self.finish(d, lease, "[]", started.elapsed().as_secs_f64());
                }
                Err(PortError::Conflict(why)) => {
                    // The message is the new holder's now (see `finish`).
                    tracing::warn!(%why, "lease lost before the plan was revised; analysis discarded");
                    return Ok(Turn::Worked);
                }
                Err(e) => return Err(e),
            }
        }
        fail::fail_point!("analysis-after-revise", |_| Err(crate::ports::injected(
            "analysis-after-revise"
        )));
        // A film's thousands of messages take a while: the lease and the message are kept
        // alive meanwhile, so no second worker takes the analysis over mid-way.
        let (frames, cancel) = (AtomicU64::new(0), AtomicBool::new(false));
        self.with_heartbeat(d, lease, &frames, &cancel, || {
            let chunks: Vec<Message> = self
                .ports
                .jobs
                .items(&item.job_id)?
                .into_iter()
                .filter(|(chunk, state)| {
                    chunk.kind == ItemKind::Video && !state.done && !state.leased
                })
                .map(|(chunk, _)| Message::Item(chunk))
                .collect();
            self.ports.queue.send_many(Queue::Work(job.tier), &chunks)
        })?;
        self.finish(d, lease, "[]", started.elapsed().as_secs_f64())
    }

    /// The frame index of a source whose container carries none: scans every packet of
    /// the video stream, plans the chunks from the table (as ingest plans an MP4's), saves
    /// the plan under the lease, makes the job's other items and queues them, then
    /// commits. Each step is safe to repeat: a retry after a crash between the save and
    /// the commit finds the plan saved, scans nothing, makes only the items still missing
    /// and queues those neither done nor held (a duplicate message finds its item leased
    /// or done). Until this item commits, the job counts it as unfinished.
    fn index_source(
        &mut self,
        d: &Delivery,
        lease: &Lease,
        job: &JobRecord,
        plan: &Arc<JobPlan>,
        started: Instant,
    ) -> PortResult<Turn> {
        let item = &lease.item;
        let mut indexed = plan.clone();
        if plan.index_pending() {
            let version = job
                .settings
                .as_ref()
                .and_then(|s| s.source_version.as_deref());
            let (frames, cancel) = (AtomicU64::new(0), Arc::new(AtomicBool::new(false)));
            let stop = [cancel.clone(), self.shutdown.flag()];
            let scanned = self.with_heartbeat(d, lease, &frames, &cancel, || {
                let input = self.open_input(&job.source, version, Duration::from_secs(6 * 3600))?;
                let timeout = crate::ingest::index_timeout(plan);
                crate::ingest::index_plan(&self.cfg, &input, plan, timeout, &stop)
            });
            let mut jp = match scanned {
                Ok(jp) => jp,
                Err(e) => return self.failed(d, lease, e, started.elapsed().as_secs_f64()),
            };
            let items = crate::ingest::work_items(&item.job_id, &jp);
            let frames_total = jp.plan.total_frames;
            let (doc, duration) = crate::ingest::plan_record(&mut jp)?;
            match self.ports.jobs.save_index(
                lease,
                &doc,
                duration,
                frames_total,
                jp.rungs.len() as u32,
                &items,
            ) {
                Ok(true) => {
                    tracing::info!(job = %item.job_id, chunks = jp.plan.chunks.len(), frames = frames_total, "frame index read; chunks planned");
                }
                // The job left ENCODING (failed, say): nothing to make or queue.
                Ok(false) => {
                    tracing::info!(job = %item.job_id, "index not saved; the job moved on");
                    return self.finish(d, lease, "[]", started.elapsed().as_secs_f64());
                }
                Err(PortError::Conflict(why)) => {
                    // The message is the new holder's now (see `finish`).
                    tracing::warn!(%why, "lease lost before the index was saved; scan discarded");
                    return Ok(Turn::Worked);
                }
                Err(e) => return Err(e),
            }
            indexed = Arc::new(jp);
        }
        fail::fail_point!("index-after-save", |_| Err(crate::ports::injected(
            "index-after-save"
        )));
        // A film's thousands of items and messages take a while: the lease and the message
        // are kept alive meanwhile, so no second worker takes the index over mid-way.
        let (frames, cancel) = (AtomicU64::new(0), AtomicBool::new(false));
        let made = self.with_heartbeat(d, lease, &frames, &cancel, || {
            let items = crate::ingest::work_items(&item.job_id, &indexed);
            self.ports.jobs.create_items(lease, &items)?;
            // The analysis first, then audio (a track takes as long as several chunks),
            // then chunks (left out while an analysis is to run: it queues them).
            let mut order: Vec<ItemRef> = crate::ingest::unfinished(self.ports.jobs, &item.job_id)?
                .into_iter()
                .map(|(i, _)| i)
                .filter(|i| i.kind != ItemKind::Index)
                .collect();
            order.sort_by_key(|i| (i.kind != ItemKind::Analysis, i.kind == ItemKind::Video));
            let messages: Vec<Message> = order.into_iter().map(Message::Item).collect();
            self.ports.queue.send_many(Queue::Work(job.tier), &messages)
        });
        match made {
            Ok(()) => self.finish(d, lease, "[]", started.elapsed().as_secs_f64()),
            Err(PortError::Conflict(why)) => {
                tracing::warn!(%why, "lease lost while making the job's items");
                Ok(Turn::Worked)
            }
            Err(e) => Err(e),
        }
    }

    /// Releases the lease (counting the outcome) and the message: at once after an
    /// interruption, after a back-off after a failure, and onto the premium queue once a
    /// Spot-tier item has been failed or interrupted `escalate_after` times. A lease that
    /// was already lost belongs to another worker: nothing is counted or escalated.
    fn give_back(
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

    /// Encodes the item and stores its outputs under the attempt's directory, with a
    /// heartbeat thread renewing the lease and the message every third of the TTL the
    /// whole time (uploads included, whatever ffmpeg prints), and stopping the attempt
    /// when the lease is lost.
    fn encode_and_store(
        &self,
        d: &Delivery,
        lease: &Lease,
        job: &JobRecord,
        jp: &JobPlan,
    ) -> vodpipe_media::Result<Vec<TrackResult>> {
        let (source, asset) = (job.source.as_str(), job.asset.as_str());
        let version = job
            .settings
            .as_ref()
            .and_then(|s| s.source_version.as_deref());
        let item = &lease.item;
        // A subtitle item reads its sidecar file, or a stream of the source.
        let text = match item.kind {
            ItemKind::Text => match jp.texts.get(item.index as usize).map(|t| &t.from) {
                Some(TextSource::Stream(i)) => Some((TextInput::Stream(*i), None)),
                Some(TextSource::Sidecar(uri)) => Some((TextInput::Sidecar, Some(uri.as_str()))),
                None => {
                    return Err(vodpipe_media::Error::PlanMismatch(format!(
                        "no subtitle track {}",
                        item.index
                    )))
                }
            },
            _ => None,
        };
        let (source, version) = match text {
            Some((_, Some(sidecar))) => (sidecar, None),
            _ => (source, version),
        };
        let input = self.open_input(source, version, Duration::from_secs(6 * 3600))?;
        let scratch = self.cfg.scratch.join(format!(
            "{}-{}-{}-{}",
            item.job_id,
            item.kind.as_str(),
            item.index,
            lease.token
        ));
        let cancel = Arc::new(AtomicBool::new(false));
        let timeout = match item.kind {
            // 30× the chunk's duration for an H.264 ladder, more for one that also
            // encodes every rung in a slower codec.
            ItemKind::Video => {
                let mut codecs: Vec<_> = jp.rungs.iter().map(|r| r.codec).collect();
                codecs.dedup();
                let cost: f64 = codecs.iter().map(|c| c.relative_cost()).sum();
                Duration::from_secs_f64(
                    (chunk_media_secs(jp, item) * 30.0 * cost.max(1.0)).max(300.0),
                )
            }
            ItemKind::Audio => {
                Duration::from_secs_f64((jp.media.duration_secs.unwrap_or(3600.0) * 2.0).max(600.0))
            }
            // Demuxing a film for its subtitle packets reads the whole file.
            ItemKind::Text => {
                Duration::from_secs_f64((jp.media.duration_secs.unwrap_or(3600.0) / 4.0).max(600.0))
            }
            // Never encoded here ([`Worker::choose_ladder`], [`Worker::index_source`]); their
            // probe runs and scans time themselves.
            ItemKind::Analysis | ItemKind::Index => Duration::from_secs(600),
        };
        let ctx = EncodeContext {
            ffmpeg: &self.cfg.ffmpeg,
            source: &input,
            media: &jp.media,
            plan: &jp.plan,
            rungs: &jp.rungs,
            config: &jp.config,
            scratch: &scratch,
            timeout,
            cancel: cancel.clone(),
            shutdown: self.shutdown.flag(),
            text: text.map(|(t, _)| t),
        };
        let frames = AtomicU64::new(0);
        let on_frames = |n: u64| frames.store(n, Ordering::Relaxed);
        self.with_heartbeat(d, lease, &frames, &cancel, || {
            let encoded = self.encoder.encode(&ctx, item, &on_frames);
            let _ = std::fs::remove_dir_all(&scratch);
            encoded.and_then(|out| {
                if cancel.load(Ordering::SeqCst) || self.shutdown.is_triggered() {
                    return Err(vodpipe_media::Error::Cancelled {
                        step: format!("store {}", item.describe()),
                        why: "the lease was lost or the worker is stopping".into(),
                    });
                }
                self.store_outputs(item, lease.attempt, asset, jp, out)
            })
        })
    }

    /// What ffmpeg opens for `source` at `version`: a path, or a URL valid for `ttl`.
    fn open_input(
        &self,
        source: &str,
        version: Option<&str>,
        ttl: Duration,
    ) -> vodpipe_media::Result<PathBuf> {
        self.ports
            .objects
            .open_source(source, version, ttl)
            .map(PathBuf::from)
            .map_err(|e| vodpipe_media::Error::Unavailable(format!("open source: {e}")))
    }

    /// Runs `work` while a thread renews the lease (with `frames` done) and the message
    /// every third of the TTL, setting `cancel` when the lease is lost. A renewal that
    /// fails for the store's sake (throttled, a network fault) is no lost lease: it is
    /// tried again every second, and the work stops only when the lease would run out
    /// unconfirmed (another worker may then take the item).
    fn with_heartbeat<T>(
        &self,
        d: &Delivery,
        lease: &Lease,
        frames: &AtomicU64,
        cancel: &AtomicBool,
        work: impl FnOnce() -> T,
    ) -> T {
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let beat_every = self.cfg.lease_ttl / 3;
                let (mut last_try, mut confirmed) = (Instant::now(), Instant::now());
                let mut wait = beat_every;
                while !done.load(Ordering::SeqCst) {
                    if last_try.elapsed() >= wait {
                        last_try = Instant::now();
                        match self.ports.jobs.heartbeat(
                            lease,
                            self.cfg.lease_ttl,
                            frames.load(Ordering::Relaxed),
                        ) {
                            Ok(()) => {
                                (confirmed, wait) = (Instant::now(), beat_every);
                                if let Err(e) = self.ports.queue.extend(d, self.visibility()) {
                                    tracing::warn!(error = %e, "could not extend the message's visibility");
                                }
                            }
                            Err(PortError::Conflict(why)) => {
                                tracing::warn!(%why, "lease lost; stopping this attempt");
                                cancel.store(true, Ordering::SeqCst);
                                break;
                            }
                            Err(e) if confirmed.elapsed() + beat_every / 2 >= self.cfg.lease_ttl => {
                                tracing::warn!(error = %e, "the lease could not be renewed before it ran out; stopping this attempt");
                                cancel.store(true, Ordering::SeqCst);
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "heartbeat failed; trying again within the lease");
                                wait = Duration::from_secs(1).min(beat_every);
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            let out = work();
            done.store(true, Ordering::SeqCst);
            out
        })
    }

    fn store_outputs(
        &self,
        item: &ItemRef,
        attempt: u32,
        asset: &str,
        jp: &JobPlan,
        out: Encoded,
    ) -> vodpipe_media::Result<Vec<TrackResult>> {
        let tracks = out.tracks;
        let dir = attempt_dir(item, attempt);
        let jd = job_dir(asset, &item.job_id);
        let first_segment = match item.kind {
            ItemKind::Video => jp
                .plan
                .chunks
                .get(item.index as usize)
                .and_then(|c| c.segments.first())
                .map_or(0, |s| s.index),
            ItemKind::Audio | ItemKind::Text | ItemKind::Analysis | ItemKind::Index => 0,
        };
        let mut results = Vec::with_capacity(tracks.len());
        let mut uploads: Vec<(String, &[u8])> = Vec::new();
        for t in &tracks {
            // The stereo rendition of a track sits in its attempt directory, any other
            // rendition of it (5.1) in a directory of its own below.
            let tdir = match item.kind {
                ItemKind::Video => format!("{dir}/{}", t.name),
                ItemKind::Audio
                    if t.name
                        != vodpipe_media::encode::audio_rendition_name(item.index as usize, 2) =>
                {
                    format!("{dir}/{}", t.name)
                }
                ItemKind::Audio | ItemKind::Text | ItemKind::Analysis | ItemKind::Index => {
                    dir.clone()
                }
            };
            // Every chunk of a rung shares chunk 0's init segment (the stitch checks that
            // their sample descriptions agree, from the hash below), so only chunk 0 and the
            // audio tracks store one: a PUT per rung per chunk saved.
            let init_uri = if item.kind == ItemKind::Video && item.index > 0 {
                String::new()
            } else {
                let uri = format!("{tdir}/init.mp4");
                uploads.push((format!("{jd}/{uri}"), &t.init));
                uri
            };
            let mut segments = Vec::with_capacity(t.segments.len());
            for (i, s) in t.segments.iter().enumerate() {
                let uri = format!("{tdir}/{:05}.m4s", first_segment as usize + i);
                uploads.push((format!("{jd}/{uri}"), &s.bytes));
                let start = (s.base_decode_time as i64 + s.first_cts_offset).max(0) as u64;
                segments.push(SegmentRef {
                    uri,
                    start,
                    duration: s.duration,
                    bytes: s.bytes.len() as u64,
                    key_frame_bytes: match item.kind {
                        ItemKind::Video => s.key_frame_end,
                        ItemKind::Audio | ItemKind::Text | ItemKind::Analysis | ItemKind::Index => {
                            None
                        }
                    },
                });
            }
            results.push(TrackResult {
                codec: mp4::codec_string(&t.init, &t.name)?,
                stsd_hash: content_hash(&mp4::sample_description(&t.init, &t.name)?),
                name: t.name.clone(),
                timescale: t.timescale,
                init_uri,
                segments,
                skipped: None,
            });
        }
        // Stills and subtitles: small files beside the segments, listed as tracks of their
        // own for the stitch.
        // Every segment's times, once per item (not once per tile: a film has thousands).
        let times = jp.plan.segment_times();
        let segment_ms = |i: usize| {
            times.get(i).map_or((0, 0), |&(a, b)| {
                let (a, b) = ((a * 1000.0).round() as u64, (b * 1000.0).round() as u64);
                (a, b.saturating_sub(a))
            })
        };
        let sprite_uri = format!("{dir}/thumbnails.jpg");
        let poster_uri = format!("{dir}/poster.jpg");
        if let (Some(sprite), Some(chunk)) =
            (&out.stills.sprite, jp.plan.chunks.get(item.index as usize))
        {
            uploads.push((format!("{jd}/{sprite_uri}"), sprite));
            results.push(still_result(
                "thumbnails",
                String::new(),
                chunk
                    .segments
                    .iter()
                    .map(|seg| {
                        let (start, duration) = segment_ms(seg.index as usize);
                        SegmentRef {
                            uri: sprite_uri.clone(),
                            start,
                            duration,
                            bytes: sprite.len() as u64,
                            key_frame_bytes: None,
                        }
                    })
                    .collect(),
            ));
        }
        if let Some(poster) = &out.stills.poster {
            uploads.push((format!("{jd}/{poster_uri}"), poster));
            results.push(still_result("poster", poster_uri.clone(), Vec::new()));
        }
        let text_files: Vec<(String, &[u8])> = match &out.text {
            Some(text) => std::iter::once((format!("{dir}/subtitles.vtt"), text.whole.as_bytes()))
                .chain(
                    text.segments
                        .iter()
                        .enumerate()
                        .map(|(i, s)| (format!("{dir}/{i:05}.vtt"), s.body.as_bytes())),
                )
                .collect(),
            None => Vec::new(),
        };
        if let Some(text) = &out.text {
            results.push(TrackResult {
                name: format!("text_{}", item.index),
                codec: "wvtt".into(),
                timescale: 1000,
                init_uri: format!("{dir}/subtitles.vtt"),
                stsd_hash: String::new(),
                skipped: None,
                segments: text
                    .segments
                    .iter()
                    .zip(text_files.iter().skip(1))
                    .map(|(s, (uri, body))| SegmentRef {
                        uri: uri.clone(),
                        start: s.start_ms,
                        duration: s.duration_ms,
                        bytes: body.len() as u64,
                        key_frame_bytes: None,
                    })
                    .collect(),
            });
            tracing::info!(item = %item.describe(), cues = text.cues, "subtitles converted");
        }
        uploads.extend(
            text_files
                .iter()
                .map(|(uri, body)| (format!("{jd}/{uri}"), *body)),
        );
        // Every rung's segments in one batch, so a backend can upload them in parallel.
        self.ports
            .objects
            .put_many(&uploads, Cacheability::Immutable)
            .map_err(|e| vodpipe_media::Error::Unavailable(format!("store {jd}/{dir}: {e}")))?;
        Ok(results)
    }
}

/// The result entry of a still (a JPEG, timescale ms): the chunk's sprite with one
/// segment per tile, or the poster with its key as `init_uri`.
fn still_result(name: &str, init_uri: String, segments: Vec<SegmentRef>) -> TrackResult {
    TrackResult {
        name: name.into(),
        codec: "jpeg".into(),
        timescale: 1000,
        init_uri,
        stsd_hash: String::new(),
        segments,
        skipped: None,
    }
}

/// Whether an item given back from `queue` after its `strikes`-th failure or interruption
/// goes to the premium (On-Demand) queue: Spot-tier work that keeps failing or being
/// interrupted stops waiting for cheap capacity.
pub fn escalates(queue: Queue, strikes: u32, escalate_after: u32) -> bool {
    matches!(queue, Queue::Work(t) if crate::sweep::runs_on_spot(t)) && strikes >= escalate_after
}

/// A conflict means another worker owns the thing now; for the caller that is done.
fn ignore_conflict(r: PortResult<()>) -> PortResult<()> {
    match r {
        Err(PortError::Conflict(why)) => {
            tracing::info!(%why, "no longer ours");
            Ok(())
        }
        other => other,
    }
}

/// Seconds of media an item covers (a video chunk, or the whole audio track).
fn chunk_media_secs(jp: &JobPlan, item: &ItemRef) -> f64 {
    match item.kind {
        ItemKind::Video => {
            let fps = jp
                .media
                .video
                .as_ref()
                .map_or(25.0, |v| v.frame_rate.as_f64().max(1.0));
            jp.plan
                .chunks
                .get(item.index as usize)
                .map_or(jp.plan.segment_secs, |c| c.frames as f64 / fps)
        }
        ItemKind::Audio | ItemKind::Text => jp.media.duration_secs.unwrap_or(0.0),
        ItemKind::Analysis | ItemKind::Index => 0.0,
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
