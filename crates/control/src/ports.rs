//! The ports: the few capabilities the pipeline needs from the outside world, named for
//! what the pipeline does with them, not for AWS or SQLite.
//!
//! Every backend implements five ([`ObjectStore`], [`crate::records::RecordStore`],
//! [`WorkQueue`], [`Fleet`], [`Cdn`]) and one contract test suite runs against each
//! implementation, so a use-case proven on the embedded backend behaves the same on AWS.
//! The use-cases see jobs through [`JobStore`], which [`crate::lifecycle`] implements once
//! for every record store: no backend decides a rule of the job's life. The traits are
//! synchronous: the worker's real work is a blocking ffmpeg process, and async adapters
//! bridge with their runtime's `block_on`.

pub use crate::domain::{ItemKind, ItemRef, JobRecord, Message, Queue, Tier};
use crate::domain::{JobStatus, Transition};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Why a port call failed.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The object, job or message does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A conditional write lost: another worker holds the lease, the token is stale, the
    /// state moved on. Callers treat this as "someone else owns it", never as a crash.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend failed (I/O, network, throttling past retries). Retry later.
    #[error("backend: {0}")]
    Backend(String),
}

/// The error a fail point returns when a test injects a fault there (`FAILPOINTS=point=return`)
/// instead of a crash (`…=panic`): what a throttled or failing backend call at that step
/// would return. Fail points exist only in builds with the `failpoints` feature.
pub fn injected(point: &str) -> PortError {
    PortError::Backend(format!("injected fault at {point}"))
}

/// Result alias for port calls.
pub type PortResult<T> = std::result::Result<T, PortError>;

/// How long an object may be cached; the object store sets headers from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cacheability {
    /// Segments and per-job manifests: immutable, cacheable for a year.
    Immutable,
    /// Pointer manifests: replaced on re-publish, cacheable for seconds.
    ShortLived,
}

/// Where objects live (S3, a directory).
pub trait ObjectStore: Send + Sync {
    /// Stores `bytes` under `key` atomically (readers see all or nothing).
    fn put(&self, key: &str, bytes: &[u8], cache: Cacheability) -> PortResult<()>;
    /// Stores several objects; a backend may upload them in parallel (S3 does). All or an
    /// error: on error some may be stored, which is harmless under an uncommitted attempt.
    fn put_many(&self, objects: &[(String, &[u8])], cache: Cacheability) -> PortResult<()> {
        for (key, bytes) in objects {
            self.put(key, bytes, cache)?;
        }
        Ok(())
    }
    /// Reads `key`.
    fn get(&self, key: &str) -> PortResult<Vec<u8>>;
    /// Reads `key` with a tag naming exactly this content (an ETag), or `None` when it
    /// does not exist: what [`ObjectStore::put_if`] compares against.
    fn get_tagged(&self, key: &str) -> PortResult<Option<(Vec<u8>, String)>>;
    /// Stores `bytes` under `key` only if the object is still the one `expected` tagged
    /// (`None`: only if there is none); false when another writer replaced it first. This
    /// is how pointers move: a publisher that lost the race reads again and decides again.
    fn put_if(
        &self,
        key: &str,
        bytes: &[u8],
        cache: Cacheability,
        expected: Option<&str>,
    ) -> PortResult<bool>;
    /// Where `key` is for a person: a local path or an `s3://` URI.
    fn locate(&self, key: &str) -> String;
    /// Keys under `prefix`, sorted.
    fn list(&self, prefix: &str) -> PortResult<Vec<String>>;
    /// Removes `key` (absent keys are fine).
    fn delete(&self, key: &str) -> PortResult<()>;
    /// Something ffmpeg can open for `key`: a local path, or a presigned URL valid for
    /// `ttl` (reads use ranges; nothing is downloaded whole).
    fn presign(&self, key: &str, ttl: Duration) -> PortResult<String>;
    /// Something ffmpeg can open for a job's source (a local path, or a presigned URL for
    /// an object in the ingest bucket), at `version` when given: the version the job was
    /// made from, whatever was uploaded under the key since.
    fn open_source(&self, source: &str, version: Option<&str>, ttl: Duration)
        -> PortResult<String>;
    /// The source's user metadata (at `version` when given), names lower-cased without
    /// `x-amz-meta-`: settings an uploader set in the same PUT ([`crate::settings`]).
    /// Stores without metadata have none (the default).
    fn source_metadata(
        &self,
        source: &str,
        version: Option<&str>,
    ) -> PortResult<std::collections::BTreeMap<String, String>> {
        let _ = (source, version);
        Ok(std::collections::BTreeMap::new())
    }
    /// The files beside a source whose names start with its name without the extension
    /// and a dot (`talk.en.srt` beside `talk.mp4`), as URIs [`ObjectStore::open_source`]
    /// opens: where ingest looks for subtitle sidecars. Stores without any have none.
    fn source_siblings(&self, source: &str) -> PortResult<Vec<String>> {
        let _ = source;
        Ok(Vec::new())
    }
    /// The settings file beside a source (`<source>.vodpipe.json`), if there is one.
    fn source_settings_file(&self, source: &str) -> PortResult<Option<Vec<u8>>> {
        let _ = source;
        Ok(None)
    }
    /// The deployment's ladder profile `name` (a JSON ladder file), if it has one.
    fn profile(&self, name: &str) -> PortResult<Option<Vec<u8>>> {
        let _ = name;
        Ok(None)
    }
    /// The deployment's overlay image `name` (`_vodpipe/overlays/<name>.png`, beside the
    /// profiles), if it has one; read up to one byte past
    /// [`vodpipe_media::overlay::MAX_PNG_BYTES`], so one too large is seen to be.
    fn overlay(&self, name: &str) -> PortResult<Option<Vec<u8>>> {
        let _ = name;
        Ok(None)
    }
    /// Marks every object under `prefix` as superseded, for the store's lifecycle to remove
    /// after a grace period: players that loaded the previous pointers keep working until
    /// then. Returns how many objects were marked. Stores without a lifecycle keep them
    /// (the default), and an operator removes old job directories by hand.
    fn retire(&self, prefix: &str) -> PortResult<u32> {
        let _ = prefix;
        Ok(0)
    }
}

/// A message taken from a queue; invisible to others until its visibility ends.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Handle for extend/release/delete; changes on every receive.
    pub receipt: String,
    /// The queue it came from.
    pub queue: Queue,
    /// The message.
    pub message: Message,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
}

/// Queues with visibility timeouts and dead-letter queues (SQS, SQLite). A message
/// received more than the queue's limit moves to its dead-letter queue instead of being
/// delivered again.
pub trait WorkQueue: Send + Sync {
    /// Enqueues `message` on `queue`.
    fn send(&self, queue: Queue, message: &Message) -> PortResult<()>;
    /// Enqueues every one of `messages` on `queue`: a film's chunks are thousands of
    /// messages, and a queue that takes several per request (SQS batches of ten) sends them
    /// in a tenth of the calls. On error some may have been sent; sending again is safe
    /// (a duplicate finds its item leased or done).
    fn send_many(&self, queue: Queue, messages: &[Message]) -> PortResult<()> {
        messages.iter().try_for_each(|m| self.send(queue, m))
    }
    /// Receives at most one message, trying `queues` in the order given, hidden for
    /// `visibility`.
    fn receive(&self, queues: &[Queue], visibility: Duration) -> PortResult<Option<Delivery>>;
    /// Keeps a message hidden for `visibility` from now (heartbeat).
    fn extend(&self, d: &Delivery, visibility: Duration) -> PortResult<()>;
    /// Makes a message visible again after `delay` (zero: at once, for an interruption).
    fn release(&self, d: &Delivery, delay: Duration) -> PortResult<()>;
    /// Removes a handled message.
    fn delete(&self, d: &Delivery) -> PortResult<()>;
    /// Takes one message from the dead-letter queues, hidden for `visibility`.
    fn receive_dead(&self, visibility: Duration) -> PortResult<Option<Delivery>>;
    /// Visible plus in-flight messages on `queue` (capacity decisions, status).
    fn depth(&self, queue: Queue) -> PortResult<u64>;
}

/// A lease on one item: who may work it, until when, under which fencing token.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// The item.
    pub item: ItemRef,
    /// Fencing token: grows on every acquisition; commits must carry the current one.
    pub token: u64,
    /// Attempt number (1-based); outputs are written under it.
    pub attempt: u32,
    /// Failed attempts so far (for escalation).
    pub failures: u32,
    /// Interrupted attempts so far (for escalation).
    pub interruptions: u32,
    /// The job as the acquisition read it (brief: no sums over items), so the worker need
    /// not read it again: one store call fewer per item.
    pub job: Option<Box<JobRecord>>,
}

impl Lease {
    /// The error every store returns when this lease's token is no longer current.
    pub fn lost(&self) -> PortError {
        PortError::Conflict(format!(
            "lease on {} of job {} was lost",
            self.item.describe(),
            self.item.job_id
        ))
    }
}

/// What committing an item led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// More items remain.
    More,
    /// This was the last item: the job is now STITCHING, and only this caller was told.
    Last,
    /// The item was already done (a duplicate delivery); nothing changed.
    AlreadyDone,
}

/// Job, item and lease state: the use-cases' view of the lifecycle. Implemented once, in
/// [`crate::lifecycle`], for every [`crate::records::RecordStore`]; backends provide records,
/// never rules.
pub trait JobStore: Send + Sync {
    /// Creates the job in QUEUED unless it exists, with the settings its upload chose;
    /// returns the stored job and whether this call created it.
    fn create_job(
        &self,
        id: &str,
        source: &str,
        asset: &str,
        tier: Tier,
        settings: &crate::domain::JobSettings,
    ) -> PortResult<(JobRecord, bool)>;
    /// Claims the output name `asset` for `source` (every version of one source shares its
    /// name) unless another source holds it; returns the source holding it now. Two keys
    /// that clean to the same name (`a b.mp4`, `a_b.mov`) thus never publish over each
    /// other's pointers.
    fn claim_asset(&self, asset: &str, source: &str) -> PortResult<String>;
    /// The job, if any, with its sums over items (attempts, failures, frames in flight).
    fn job(&self, id: &str) -> PortResult<Option<JobRecord>>;
    /// The job without the sums over its items (attempts, failures, interruptions, encode
    /// and wasted seconds, frames in flight are left at zero; `done` and `total` are kept):
    /// what workers and the stitch need per item, in one read whatever the job's length.
    /// Stores whose sums are cheap return the whole job (the default).
    fn job_brief(&self, id: &str) -> PortResult<Option<JobRecord>> {
        self.job(id)
    }
    /// Jobs for a source, newest first.
    fn jobs_by_source(&self, source: &str) -> PortResult<Vec<JobRecord>>;
    /// Jobs in a state (an index, never a scan), oldest first; all jobs when `None`.
    fn jobs_by_status(&self, status: Option<JobStatus>) -> PortResult<Vec<JobRecord>>;
    /// Jobs in a state without their sums over items (as [`JobStore::job_brief`]), oldest
    /// first: what sweeps read on every tick, one read per job whatever its length.
    fn brief_jobs_by_status(&self, status: JobStatus) -> PortResult<Vec<JobRecord>>;
    /// Makes transition `t` (conditional on the job being in one of the states it leaves),
    /// recording `error` as the reason; returns whether it moved. Use-cases go through
    /// [`crate::moves::apply`], which also counts and announces the change.
    fn transition(&self, id: &str, t: Transition, error: Option<&str>) -> PortResult<bool>;
    /// Claims the repair of a job still in `status` (its items re-queued, its stitch
    /// requested again): true for exactly one of several callers, and at most once per
    /// `stale_secs` (the claim's time is recorded), so overlapping sweeps, and the sweeps of
    /// ticks to come, never repeat a repair that may still be under way.
    fn claim_repair(&self, id: &str, status: JobStatus, stale_secs: f64) -> PortResult<bool>;
    /// Records that stitching job `id` failed with `reason` (a store or S3 error); returns
    /// how many of its stitches have failed. The dead-letter handler fails the job only
    /// after many.
    fn note_stitch_failure(&self, id: &str, reason: &str) -> PortResult<u32>;
    /// Records that a launch of `tier`'s workers failed (a task that never started: an
    /// image that cannot be pulled, a quota, no capacity); returns the tier's failed
    /// launches in a row. Failures within `round_secs` of the last counted one are one
    /// launch round (the ten tasks of one `RunTask`, an event delivered twice) and count
    /// once.
    fn record_launch_failure(
        &self,
        tier: Tier,
        reason: &str,
        round_secs: f64,
    ) -> PortResult<LaunchTrouble>;
    /// The tier's failed launches in a row, if its last launches failed.
    fn launch_trouble(&self, tier: Tier) -> PortResult<Option<LaunchTrouble>>;
    /// A worker of the tier started: its launches work again.
    fn clear_launch_trouble(&self, tier: Tier) -> PortResult<()>;
    /// Makes `holder` the only caller deciding the tier's launches for `hold_secs` (or
    /// until it lets go): `None` while another holds them. Every ingest, Spot event and
    /// tick may ask for capacity at once, and each would count the same tasks and launch
    /// on top of the others; with one decider at a time the cap holds. The claim carries
    /// what the last holder left running, which a count just after a launch may not show.
    fn claim_launches(
        &self,
        tier: Tier,
        holder: &str,
        hold_secs: f64,
    ) -> PortResult<Option<LaunchClaim>>;
    /// Lets go of the tier's launches. A holder that started tasks records the `tasks` it
    /// leaves running or pending (`Some`), which the next holder trusts over a count for a
    /// little while; one that started none leaves the last record to age.
    fn release_launches(&self, tier: Tier, holder: &str, tasks: Option<u32>) -> PortResult<()>;
    /// Takes over a job left in PROBING by an ingest that died: true for exactly one of
    /// several callers, and only when the job entered PROBING (or was last taken over) more
    /// than `stale_secs` ago. Entering PROBING through [`JobStore::transition`] records the
    /// time this compares with, and a successful claim renews it, so two sweeps that
    /// overlap never probe and plan the same job at once.
    fn claim_probe(&self, id: &str, stale_secs: f64) -> PortResult<bool>;
    /// Puts a FAILED job back to QUEUED with no items; returns whether it was FAILED. The
    /// next plan's fencing tokens and attempt numbers continue above the old ones, so a
    /// worker still busy with the failed plan can neither commit nor share a directory.
    fn reset_failed(&self, id: &str) -> PortResult<bool>;
    /// Stores the plan document and creates the items, PROBING → ENCODING. `items` are
    /// (item, frames). With an [`ItemKind::Analysis`] among them, the job's chunks wait
    /// ([`Acquired::Early`]) until [`JobStore::revise_plan`] replaces the plan. With an
    /// [`ItemKind::Index`] (then the only item), the job waits for
    /// [`JobStore::save_index`] to plan its chunks.
    ///
    /// `planned_cost_usd` is what the plan is estimated to cost before anything is
    /// encoded ([`crate::cost::planned_cost`]), kept for status.
    #[allow(clippy::too_many_arguments)]
    fn save_plan(
        &self,
        id: &str,
        plan_doc: &str,
        duration_secs: f64,
        frames_total: u64,
        rungs: u32,
        planned_cost_usd: f64,
        items: &[(ItemRef, u64)],
    ) -> PortResult<bool>;
    /// Records that every item of the job has its message on the queue (`queued_at`): a
    /// duplicate ingest of a job without it re-queues the items, since the ingest that
    /// planned it died before sending them all.
    fn all_queued(&self, id: &str) -> PortResult<()>;
    /// The plan document saved with the job.
    fn plan_doc(&self, id: &str) -> PortResult<String>;
    /// Replaces the plan of a job whose ladder waits for its analysis with `plan_doc` (the
    /// chosen ladder, `rungs` video renditions), under the analysis item's `lease`: one
    /// write fenced by its token, after which the job's chunks may be leased. False when
    /// the plan was already revised (a retried analysis) or the job left ENCODING;
    /// [`PortError::Conflict`] when the lease was lost.
    fn revise_plan(&self, lease: &Lease, plan_doc: &str, rungs: u32) -> PortResult<bool>;
    /// Replaces the plan of a job waiting for its index with `plan_doc` (its chunks planned
    /// from the frame table the index item read), under that item's `lease`: one write
    /// fenced by its token, which also records the job's `duration_secs`, `frames_total`
    /// and `rungs`, and counts `items` (the plan's items, the index item not among them)
    /// plus the index item itself as the job's total, so the job cannot be finished before
    /// the index item is. Sets the job's ladder to wait for its analysis when `items` hold
    /// one. The items themselves are made by [`JobStore::create_items`]. False when the job
    /// no longer waits for its index (a retried index item) or left ENCODING;
    /// [`PortError::Conflict`] when the lease was lost.
    #[allow(clippy::too_many_arguments)]
    fn save_index(
        &self,
        lease: &Lease,
        plan_doc: &str,
        duration_secs: f64,
        frames_total: u64,
        rungs: u32,
        planned_cost_usd: f64,
        items: &[(ItemRef, u64)],
    ) -> PortResult<bool>;
    /// Creates the `items` (item, frames) of the plan [`JobStore::save_index`] saved, those
    /// that do not exist yet, while `lease` (the index item's) is held and the job is
    /// ENCODING: a retried index item that finds its plan saved makes whatever the
    /// attempt before it did not, and never resets an item already made (a worker may hold
    /// it). [`PortError::Conflict`] when the lease was lost; nothing is made for a job that
    /// left ENCODING.
    fn create_items(&self, lease: &Lease, items: &[(ItemRef, u64)]) -> PortResult<()>;
    /// Takes the item's lease for `ttl` if it is free or its lease expired, incrementing the
    /// fencing token. A chunk of a job whose ladder waits for its analysis is
    /// [`Acquired::Early`].
    fn acquire(&self, item: &ItemRef, owner: &str, ttl: Duration) -> PortResult<Acquired>;
    /// The item's state, if it exists.
    fn item_state(&self, item: &ItemRef) -> PortResult<Option<ItemState>>;
    /// Extends the lease and records progress; [`PortError::Conflict`] if it was lost.
    fn heartbeat(&self, lease: &Lease, ttl: Duration, frames_done: u64) -> PortResult<()>;
    /// Gives the lease up after an interruption (counted) or failure (counted, with the
    /// reason), spending `secs` of wasted work.
    fn release_lease(&self, lease: &Lease, outcome: Release<'_>, secs: f64) -> PortResult<()>;
    /// Commits the item's result under the lease's token; exactly one caller per job ever
    /// sees [`Completion::Last`].
    fn commit(&self, lease: &Lease, result_doc: &str, secs: f64) -> PortResult<Completion>;
    /// Committed results of a job: (item, attempt, result document).
    fn results(&self, id: &str) -> PortResult<Vec<(ItemRef, u32, String)>>;
    /// STITCHING → PUBLISHED with the manifest keys and what was published; false if it
    /// was not STITCHING.
    fn publish(
        &self,
        id: &str,
        master_key: &str,
        dash_key: &str,
        renditions: &[crate::domain::Rendition],
    ) -> PortResult<bool>;
    /// Every item of a job with its state (to re-queue after an interrupted ingest).
    fn items(&self, id: &str) -> PortResult<Vec<(ItemRef, ItemState)>>;
}

/// Launches of a tier's workers that failed in a row, and the last one's reason: what
/// the fleet backs off on, and `status`, `jobs` and `vodpipe aws doctor` show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchTrouble {
    /// Failed launches since the tier's last worker started.
    pub failures: u32,
    /// Why the last one failed, in the platform's words.
    pub reason: String,
    /// When it failed (seconds since the epoch).
    pub last_at: f64,
}

/// What the previous decider of a tier's launches left behind.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LaunchClaim {
    /// The tasks it left running or pending, and when (seconds since the epoch).
    pub last: Option<(u32, f64)>,
}

/// The outcome of asking for a lease.
#[derive(Debug, Clone, PartialEq)]
pub enum Acquired {
    /// Ours until the lease expires or is lost.
    Lease(Lease),
    /// Another worker holds a live lease: leave the message for later.
    HeldByOther,
    /// Nothing to do: the item is done or its job is no longer encoding. Drop the message.
    Finished,
    /// A chunk of a job whose per-title ladder is not chosen yet. Drop the message: the
    /// analysis queues every chunk once it has revised the plan (and its retry does again).
    Early,
}

/// An item's bookkeeping, for status, dead-letter reasons and the console's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemState {
    /// Committed.
    pub done: bool,
    /// Attempts started.
    pub attempts: u32,
    /// Attempts failed.
    pub failures: u32,
    /// Attempts interrupted.
    pub interruptions: u32,
    /// The last failure's reason.
    pub last_error: Option<String>,
    /// Whether the last failure was the machine's or a service's, not the item's.
    #[serde(default)]
    pub last_error_transient: bool,
    /// Whether a worker holds a live lease on it right now.
    pub leased: bool,
    /// The worker of the latest attempt (it stays after the attempt ends, so a timeline
    /// can say who committed or lost the item).
    #[serde(default)]
    pub worker: Option<String>,
    /// When the latest attempt took its lease (seconds since the epoch).
    #[serde(default)]
    pub leased_at: Option<f64>,
    /// When the item was committed.
    #[serde(default)]
    pub done_at: Option<f64>,
    /// Frames encoded: the committed count, or the live attempt's progress.
    #[serde(default)]
    pub frames: u64,
    /// Seconds of the committed attempt.
    #[serde(default)]
    pub encode_secs: f64,
    /// Seconds of attempts that failed or were interrupted.
    #[serde(default)]
    pub wasted_secs: f64,
}

/// Why a lease is given back.
#[derive(Debug, Clone, Copy)]
pub enum Release<'a> {
    /// Interrupted (shutdown, Spot reclaim): not the item's fault.
    Interrupted,
    /// The attempt failed with this reason.
    Failed(&'a str),
    /// The attempt failed for the machine's or a service's sake (a crashed or missing
    /// tool, S3 not answering) with this reason: counted, but a dead letter weighs it
    /// less than a failure of the item's own ([`crate::dead_letters`]).
    Unavailable(&'a str),
}

/// Worker capacity per tier (ECS tasks, local processes).
pub trait Fleet: Send + Sync {
    /// Makes sure at least `workers` workers serve `tier`; returns how many run now.
    fn ensure_capacity(&self, tier: Tier, workers: u32) -> PortResult<u32>;
}

/// A CDN in front of the output bucket (CloudFront, nothing).
pub trait Cdn: Send + Sync {
    /// Invalidates `paths`; `caller_reference` makes retries idempotent.
    fn invalidate(&self, paths: &[String], caller_reference: &str) -> PortResult<()>;
}

/// Where a job's state changes are announced (EventBridge on AWS, a JSON-lines file beside
/// the embedded state), so notifications and downstream workflows follow jobs without
/// polling the store. Best effort by design: the job store is the truth, and
/// [`crate::moves`], the one caller, logs a failed announcement and carries on.
pub trait JobEvents: Send + Sync {
    /// Announces `job` in the state it has just entered.
    fn job_changed(&self, job: &JobRecord) -> PortResult<()>;

    /// Whether announcements go anywhere: where none is configured, the job is not even
    /// read for one (a read of the job store per announced state, at volume).
    fn enabled(&self) -> bool {
        true
    }
}
