//! The discrete-event simulation: virtual time, one event queue, and models of the AWS
//! services the pipeline leans on, driven by the control crate's own decisions: how many
//! workers a tier wants and may launch at once (`sweep::wanted_workers`,
//! `sweep::launch_target`), which queues a task serves and in what order
//! (`sweep::served_tiers`, `worker::TierPicker`), when an interrupted item escalates to
//! On-Demand (`worker::escalates`), and what compute costs (`cost::compute_cost`).
//!
//! The functions run as the template deploys them ([`crate::template`]): uploads wait in
//! the ingest queue and stitch requests in the stitch queue, each drained by its SQS
//! mapping (batches of at most `BatchSize`, at most `MaximumConcurrency` invocations, all
//! of them within the account's Lambda concurrency), so a rate the mappings cannot carry
//! shows as a growing backlog, not as a promise.

use crate::mix::{Mix, Upload};
use crate::model::{Gcra, Prices, Semaphore};
use crate::template::{Deployment, FunctionMapping};
use rand::{Rng, SeedableRng};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;
use vodpipe_control::cost::{compute_cost, output_minutes, WorkerSize};
use vodpipe_control::ports::{Queue, Tier};
use vodpipe_control::sweep::{launch_target, runs_on_spot, served_tiers, wanted_workers};
use vodpipe_control::worker::{escalates, should_exit, TierPicker, SCALE_IN_WINDOW};
use vodpipe_media::ladder::LadderConfig;

/// Pixels per vCPU-second the encoder gets through (the control plane's own estimate, so
/// the simulator and a plan's budget check price work alike).
pub use vodpipe_control::cost::BENCH_PIXELS_PER_VCPU_SECOND;

/// The three tiers, in queue priority order.
pub const TIERS: [Tier; 3] = [Tier::Premium, Tier::Standard, Tier::Bulk];

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Params {
    /// Upload rate.
    pub uploads_per_hour: f64,
    /// How long uploads keep arriving.
    pub hours: f64,
    /// What arrives.
    pub mix: Mix,
    /// The ladder settings every upload gets.
    pub ladder: LadderConfig,
    /// Spot interruptions per Spot task-hour.
    pub spot_interruptions_per_hour: f64,
    /// From RunTask to a worker taking work (image pull and start).
    pub task_start_secs: f64,
    /// Fargate vCPU quota, per pool (On-Demand and Spot each).
    pub vcpu_quota: u32,
    /// Fargate task launches a second, per pool.
    pub launch_rate: f64,
    /// Launch burst, per pool.
    pub launch_burst: f64,
    /// Lambda concurrent executions, per account.
    pub lambda_concurrency: u32,
    /// The deployed template's settings: the ingest and stitch mappings, the stack's
    /// `MaxWorkersPerTier` (a hard cap) and `WarmWorkersPerTier`.
    pub deployment: Deployment,
    /// How the stitch function runs the stitches of one batch (the code's choice, not the
    /// template's).
    pub stitch_batch: BatchRun,
    /// A worker stops after this long without work.
    pub idle_exit_secs: f64,
    /// Chunk length.
    pub chunk_secs: f64,
    /// Segment length.
    pub segment_secs: f64,
    /// Encoder throughput.
    pub pixels_per_vcpu_second: f64,
    /// Seconds an ingest takes to find that an upload has no settings file yet and defer
    /// it (a HEAD, a job lookup, a GET): the function time the settings-file wait costs.
    pub settings_check_secs: f64,
    /// Worker task size.
    pub worker: WorkerSize,
    /// How often the fleet function reconciles.
    pub fleet_tick_secs: f64,
    /// Failed and interrupted attempts before a Spot item goes to premium.
    pub escalate_after: u32,
    /// CloudFront invalidation paths per publish.
    pub invalidation: Invalidation,
    /// Random seed (same seed, same run).
    pub seed: u64,
    /// A fixed set of workers on one machine instead of Fargate (the embedded pipeline):
    /// no launches, no quotas, no Lambda.
    pub embedded_workers: Option<u32>,
    /// Fixed uploads instead of arrivals drawn from the mix (all at time 0).
    pub batch: Option<Vec<Upload>>,
    /// A burst instead of Poisson arrivals: to replay a measured load run.
    pub burst: Option<Burst>,
    /// Overheads (seconds) the model adds around the encode.
    pub overheads: Overheads,
    /// Virtual time between plot samples.
    pub sample_secs: f64,
}

/// What happens around encoding, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Overheads {
    /// Ingest: probe and plan one upload.
    pub ingest_secs: f64,
    /// Per item: open the source, seek, store the outputs, commit.
    pub item_secs: f64,
    /// Stitch and publish one job.
    pub stitch_secs: f64,
}

impl Default for Overheads {
    /// On AWS (the functions' measured warm durations are a few hundred ms; probing a
    /// large object over HTTPS and storing a chunk's segments take seconds).
    fn default() -> Self {
        Overheads {
            ingest_secs: 3.0,
            item_secs: 2.0,
            stitch_secs: 1.5,
        }
    }
}

/// `uploads` uploads drawn from the mix, arriving evenly spaced over `secs` seconds (all
/// at once when `secs` is 0), as a load harness submits them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    /// How many.
    pub uploads: u64,
    /// Over how long.
    pub secs: f64,
}

/// How one invocation handles the messages of its batch; it lasts as long as the slowest
/// (all at once) or as long as all of them (one after another).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchRun {
    /// All of the batch at once (what the stitch function does).
    Concurrently,
    /// One after another (the stitch function before it; ingest, whose batch is one).
    OneAfterAnother,
}

impl BatchRun {
    /// Its name in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchRun::Concurrently => "concurrently",
            BatchRun::OneAfterAnother => "one_after_another",
        }
    }
}

/// When the stitch invalidates CDN paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    /// Both pointers on every publish.
    EveryPublish,
    /// Only when a publish replaces an earlier version (the pointers are cached for 5 s
    /// and a first publish has nothing cached to replace).
    ReplacedOnly,
}

impl Params {
    /// AWS's default limits and the stack's defaults, at `uploads_per_hour` for `hours`.
    pub fn new(uploads_per_hour: f64, hours: f64) -> Params {
        Params {
            uploads_per_hour,
            hours,
            mix: Mix::default(),
            ladder: LadderConfig::default(),
            spot_interruptions_per_hour: 0.05,
            task_start_secs: 60.0,
            vcpu_quota: 6,
            launch_rate: 20.0,
            launch_burst: 100.0,
            lambda_concurrency: 1000,
            deployment: Deployment::default(),
            stitch_batch: BatchRun::Concurrently,
            idle_exit_secs: 60.0,
            chunk_secs: 20.0,
            segment_secs: 4.0,
            pixels_per_vcpu_second: BENCH_PIXELS_PER_VCPU_SECOND,
            settings_check_secs: 0.2,
            worker: WorkerSize::default(),
            fleet_tick_secs: 60.0,
            escalate_after: 2,
            invalidation: Invalidation::ReplacedOnly,
            seed: 1,
            embedded_workers: None,
            batch: None,
            burst: None,
            overheads: Overheads::default(),
            sample_secs: 60.0,
        }
    }

    /// Seconds over which uploads arrive (at least one): what averages "to keep up" are
    /// taken over.
    pub fn arrival_secs(&self) -> f64 {
        match self.burst {
            Some(b) => b.secs.max(1.0),
            None => (self.hours * 3600.0).max(1.0),
        }
    }
}

/// One point of the time series the plot draws.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Virtual time, seconds.
    pub t: f64,
    /// Visible messages per tier queue.
    pub depth: [u64; 3],
    /// Running or pending tasks per tier.
    pub tasks: [u32; 3],
    /// p95 publish latency of the jobs published since the last sample, per tier.
    pub p95: [Option<f64>; 3],
    /// Messages waiting in the ingest and stitch queues (not yet received).
    pub function_backlog: [u64; 2],
}

/// A function's queue over the run.
#[derive(Debug, Clone, Default)]
pub struct QueueStats {
    /// Most messages waiting at once (received ones not counted).
    pub backlog_peak: u64,
    /// When that was.
    pub backlog_peak_secs: f64,
    /// When the backlog last became empty; None if messages were still waiting when the
    /// run stopped; 0 if none ever waited.
    pub drained_secs: Option<f64>,
    /// Most invocations at once.
    pub concurrency_peak: u32,
    /// Invocations.
    pub invocations: u64,
    /// Messages received (a redelivery counts again).
    pub receives: u64,
    /// Messages whose invocation ran out of time before they were done.
    pub timeouts: u64,
    /// Messages sent to the dead-letter queue (received `max_receives` times).
    pub dead_letters: u64,
    /// The longest invocation the batches asked for (before the timeout cut it).
    pub longest_invocation_secs: f64,
    /// Invocation-seconds the arrivals asked for in full batches: over the arrival time,
    /// the concurrency needed just to keep up.
    pub full_batch_invocation_secs: f64,
    /// Messages that waited for the account's Lambda concurrency.
    pub account_waits: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Uploads that arrived.
    pub uploads: u64,
    /// Uploads published before the run stopped.
    pub published: u64,
    /// Output minutes of the published uploads.
    pub output_minutes: f64,
    /// Publish latency (upload to PUBLISHED) per tier, seconds, sorted.
    pub latency: [Vec<f64>; 3],
    /// Peak tasks (running or pending) per tier.
    pub tasks_peak: [u32; 3],
    /// Peak tasks the policy wanted per pool (On-Demand, Spot), before quotas.
    pub wanted_peak: [u32; 2],
    /// Task-seconds of work that arrived per pool: over the arrival time, the tasks the
    /// pool needs on average just to keep up.
    pub offered_task_secs: [f64; 2],
    /// Peak vCPUs in use per pool.
    pub vcpu_peak: [u32; 2],
    /// Peak launches in one second, per pool (what Fargate let through).
    pub launches_peak: [u32; 2],
    /// Peak launches asked for in one second, per pool (what the fleet policy wanted).
    pub launch_demand_peak: [u32; 2],
    /// Launches that waited for the pool's launch rate.
    pub launches_delayed: u64,
    /// Launches refused by the vCPU quota.
    pub quota_refusals: u64,
    /// Launches the stack's per-tier cap held back.
    pub capped: u64,
    /// Peak concurrent Lambda executions, and invocations that waited for one.
    pub lambda_peak: u32,
    /// Invocations that waited.
    pub lambda_waits: u64,
    /// Peak invalidation paths in progress.
    pub invalidation_paths_peak: u64,
    /// Peak PUTs a second under one job's prefix.
    pub puts_per_prefix_peak: u64,
    /// Peak writes a second to one job's partition key.
    pub writes_per_key_peak: u64,
    /// Spot interruptions.
    pub interruptions: u64,
    /// Items escalated to premium.
    pub escalations: u64,
    /// USD, by kind.
    pub cost: CostBreakdown,
    /// The job-level estimate status shows, summed: busy encode seconds at each job's tier.
    pub job_level_compute_usd: f64,
    /// First time (virtual seconds) each limit bit.
    pub first_hit: Vec<(LimitKind, f64)>,
    /// Virtual seconds at which the last upload was published (or the run stopped).
    pub makespan_secs: f64,
    /// When the first upload arrived.
    pub first_arrival_secs: f64,
    /// When the last upload was published (0 if none was).
    pub last_publish_secs: f64,
    /// The ingest queue and its function.
    pub ingest_queue: QueueStats,
    /// The stitch queue and its function.
    pub stitch_queue: QueueStats,
    /// Most stitches finished in one second.
    pub stitches_per_second_peak: u32,
    /// When each stitch by the stitch function finished, in order.
    pub stitch_times: Vec<f64>,
    /// Uploads an ingest deferred to wait for a settings file.
    pub deferrals: u64,
    /// The time series.
    pub samples: Vec<Sample>,
}

/// Costs in USD.
#[derive(Debug, Clone, Copy, Default)]
pub struct CostBreakdown {
    /// Worker tasks, billed from launch to stop.
    pub compute: f64,
    /// Function GB-seconds and requests.
    pub lambda: f64,
    /// SQS, DynamoDB and S3 requests.
    pub requests: f64,
    /// CloudFront invalidation paths.
    pub invalidations: f64,
    /// One month of the published outputs in S3 Standard.
    pub storage: f64,
}

impl CostBreakdown {
    /// All of it.
    pub fn total(&self) -> f64 {
        self.compute + self.lambda + self.requests + self.invalidations + self.storage
    }
}

/// A limit the run can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Fargate On-Demand vCPUs.
    OnDemandVcpu,
    /// Fargate Spot vCPUs.
    SpotVcpu,
    /// Fargate On-Demand launches a second.
    OnDemandLaunchRate,
    /// Fargate Spot launches a second.
    SpotLaunchRate,
    /// The stack's MaxWorkersPerTier.
    WorkersPerTier,
    /// Lambda concurrency.
    LambdaConcurrency,
    /// CloudFront invalidation paths in progress.
    InvalidationsInProgress,
    /// The ingest mapping's maximum concurrency (the stack's `IngestMaxConcurrency`).
    IngestConcurrency,
    /// The stitch mapping's maximum concurrency (the stack's `StitchMaxConcurrency`).
    StitchConcurrency,
    /// The ingest function's timeout.
    IngestTimeout,
    /// The stitch function's timeout.
    StitchTimeout,
}

/// The two functions fed by queues: indices into `World::fns`.
const INGEST: usize = 0;
const STITCH: usize = 1;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ev {
    Arrive(usize),
    /// Embedded only: the upload is planned.
    Ingested(usize),
    /// One message of an invocation of function `.0` is done (job `.1`).
    MessageDone(usize, usize),
    /// An invocation of function `.0` ends.
    InvocationEnd(usize),
    /// A message of function `.0` (job `.1`, received `.2` times) is visible again: after
    /// its invocation timed out, or after the delay an ingest deferred it for.
    Visible(usize, usize, u32),
    TaskUp(usize),
    ItemDone(usize, u64),
    Interrupt(usize, u64),
    IdleExit(usize, u64),
    /// Embedded only: the job is stitched.
    Stitched(usize),
    InvalidationDone(u64),
    FleetTick,
    Sample,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Scheduled {
    at: f64,
    seq: u64,
    ev: Ev,
}

impl Eq for Scheduled {}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        // Earliest first (BinaryHeap is a max-heap), then in scheduling order.
        other
            .at
            .total_cmp(&self.at)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone)]
struct Item {
    job: usize,
    /// Seconds a worker task is busy with it (encode plus overhead).
    busy_secs: f64,
    strikes: u32,
    queue: Tier,
    puts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Pending,
    Idle,
    Busy,
    Stopped,
}

#[derive(Debug)]
struct Task {
    tier: Tier,
    state: TaskState,
    picker: TierPicker,
    launched_at: f64,
    busy_since: f64,
    item: Option<Item>,
    /// Bumped on every state change, so stale timer events are ignored.
    epoch: u64,
    /// Where the task's scale-in window started, and how busy it has been since.
    window_start: f64,
    busy_in_window: f64,
    interrupt_at: f64,
}

#[derive(Debug)]
struct Job {
    arrived: f64,
    upload: Upload,
    items_left: u32,
    published: Option<f64>,
    busy_secs: f64,
}

/// A message in a function's queue: the job it is for, and how often it was received.
#[derive(Debug, Clone, Copy)]
struct Msg {
    job: usize,
    receives: u32,
    /// Already counted as waiting for the account's concurrency.
    throttled: bool,
}

/// A queue and the event-source mapping that drains it into a function.
#[derive(Debug)]
struct FnQueue {
    mapping: FunctionMapping,
    runs: BatchRun,
    /// Seconds of work one message is.
    secs: f64,
    /// Lambda memory, GB.
    gb: f64,
    waiting: VecDeque<Msg>,
    running: u32,
    /// When the backlog last became empty.
    emptied_at: f64,
    stats: QueueStats,
}

impl FnQueue {
    fn new(mapping: FunctionMapping, runs: BatchRun, secs: f64, gb: f64) -> FnQueue {
        FnQueue {
            mapping,
            runs,
            secs,
            gb,
            waiting: VecDeque::new(),
            running: 0,
            emptied_at: 0.0,
            stats: QueueStats {
                drained_secs: Some(0.0),
                ..QueueStats::default()
            },
        }
    }

    /// Invocation-seconds one message adds when batches are full.
    fn full_batch_secs(&self) -> f64 {
        match self.runs {
            BatchRun::Concurrently => self.secs / f64::from(self.mapping.batch_size.max(1)),
            BatchRun::OneAfterAnother => self.secs,
        }
    }
}

/// The world the events change.
struct World {
    p: Params,
    rng: rand::rngs::SmallRng,
    heap: BinaryHeap<Scheduled>,
    seq: u64,
    now: f64,
    jobs: Vec<Job>,
    tasks: Vec<Task>,
    queues: [VecDeque<Item>; 3],
    in_flight: [u64; 3],
    /// Tasks not stopped, per tier (what `ListTasks` counts), kept as tasks start and stop.
    live: [u32; 3],
    idle: [VecDeque<usize>; 3],
    pools: [Gcra; 2],
    lambda: Semaphore,
    /// The ingest and stitch queues with their mappings ([`INGEST`], [`STITCH`]).
    fns: [FnQueue; 2],
    /// Which function the next free Lambda execution goes to first (they take turns).
    next_fn: usize,
    stitches_this_second: (i64, u32),
    invalidations_in_progress: u64,
    out: Outcome,
    prices: Prices,
    launches_this_second: [(i64, u32); 2],
    requested_this_second: [(i64, u32); 2],
    puts_this_second: std::collections::HashMap<(usize, i64), u64>,
    window_latency: [Vec<f64>; 3],
    stop_at: f64,
}

fn tier_index(t: Tier) -> usize {
    match t {
        Tier::Premium => 0,
        Tier::Standard => 1,
        Tier::Bulk => 2,
    }
}

fn pool_of(t: Tier) -> usize {
    usize::from(runs_on_spot(t))
}

/// Runs the simulation.
pub fn simulate(p: Params) -> Outcome {
    let rng = rand::rngs::SmallRng::seed_from_u64(p.seed);
    let pools = [
        Gcra::new(p.launch_rate, p.launch_burst),
        Gcra::new(p.launch_rate, p.launch_burst),
    ];
    let lambda = Semaphore::new(p.lambda_concurrency);
    let fns = [
        FnQueue::new(
            p.deployment.ingest,
            BatchRun::OneAfterAnother,
            p.overheads.ingest_secs,
            1.0,
        ),
        FnQueue::new(
            p.deployment.stitch,
            p.stitch_batch,
            p.overheads.stitch_secs,
            0.5,
        ),
    ];
    // Arrivals stop after `hours`; the run then drains, but gives up a day later (a
    // starved fleet would otherwise take virtual years).
    let stop_at = p.hours * 3600.0 + 24.0 * 3600.0;
    let mut w = World {
        p,
        rng,
        heap: BinaryHeap::new(),
        seq: 0,
        now: 0.0,
        jobs: Vec::new(),
        tasks: Vec::new(),
        queues: Default::default(),
        in_flight: [0; 3],
        live: [0; 3],
        idle: Default::default(),
        pools,
        lambda,
        fns,
        next_fn: STITCH,
        stitches_this_second: (-1, 0),
        invalidations_in_progress: 0,
        out: Outcome::default(),
        prices: Prices::default(),
        launches_this_second: [(-1, 0); 2],
        requested_this_second: [(-1, 0); 2],
        puts_this_second: std::collections::HashMap::new(),
        window_latency: Default::default(),
        stop_at,
    };
    w.start();
    while let Some(s) = w.heap.pop() {
        if s.at > w.stop_at {
            break;
        }
        w.now = s.at;
        w.handle(s.ev);
        if w.done() {
            break;
        }
    }
    w.finish()
}

impl World {
    fn at(&mut self, delay: f64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Scheduled {
            at: self.now + delay.max(0.0),
            seq: self.seq,
            ev,
        });
    }

    fn start(&mut self) {
        if let Some(batch) = self.p.batch.take() {
            for u in batch {
                self.jobs.push(Job {
                    arrived: 0.0,
                    upload: u,
                    items_left: 0,
                    published: None,
                    busy_secs: 0.0,
                });
                let id = self.jobs.len() - 1;
                self.at(0.0, Ev::Arrive(id));
            }
        } else if let Some(b) = self.p.burst {
            // A burst, as a load harness submits it: evenly spaced over its seconds.
            for i in 0..b.uploads {
                let t = b.secs.max(0.0) * i as f64 / b.uploads as f64;
                let u = self.p.mix.draw(&mut self.rng, &self.p.ladder);
                self.jobs.push(Job {
                    arrived: t,
                    upload: u,
                    items_left: 0,
                    published: None,
                    busy_secs: 0.0,
                });
                let id = self.jobs.len() - 1;
                self.at(t, Ev::Arrive(id));
            }
        } else if self.p.uploads_per_hour > 0.0 {
            // Poisson arrivals.
            let rate = self.p.uploads_per_hour / 3600.0;
            let end = self.p.hours * 3600.0;
            let mut t = 0.0;
            loop {
                t += -(1.0 - self.rng.gen::<f64>()).ln() / rate;
                if t > end {
                    break;
                }
                let u = self.p.mix.draw(&mut self.rng, &self.p.ladder);
                self.jobs.push(Job {
                    arrived: t,
                    upload: u,
                    items_left: 0,
                    published: None,
                    busy_secs: 0.0,
                });
                let id = self.jobs.len() - 1;
                self.seq += 1;
                self.heap.push(Scheduled {
                    at: t,
                    seq: self.seq,
                    ev: Ev::Arrive(id),
                });
            }
        }
        self.out.uploads = self.jobs.len() as u64;
        self.out.first_arrival_secs = self
            .jobs
            .iter()
            .map(|j| j.arrived)
            .fold(f64::INFINITY, f64::min);
        if !self.out.first_arrival_secs.is_finite() {
            self.out.first_arrival_secs = 0.0;
        }
        match self.p.embedded_workers {
            Some(n) => {
                // The embedded fleet: n workers serving every tier, up from the start.
                for _ in 0..n {
                    let id = self.new_task(Tier::Standard, &TIERS);
                    self.tasks[id].state = TaskState::Idle;
                    self.receive(id);
                }
            }
            None => {
                self.start_warm();
                self.at(self.p.fleet_tick_secs, Ev::FleetTick);
            }
        }
        self.at(0.0, Ev::Sample);
    }

    /// The warm minimum per tier (`WarmWorkersPerTier`), running before the first upload:
    /// up and idle at time 0, billed from then, within the stack's cap and the pool's
    /// vCPU quota.
    fn start_warm(&mut self) {
        let warm = self.warm_floor();
        let vcpu = self.p.worker.vcpu.round() as u32;
        for tier in TIERS {
            let pool = pool_of(tier);
            for _ in 0..warm {
                if (self.pool_tasks(pool) + 1) * vcpu > self.p.vcpu_quota {
                    self.out.quota_refusals += 1;
                    self.hit(if pool == 0 {
                        LimitKind::OnDemandVcpu
                    } else {
                        LimitKind::SpotVcpu
                    });
                    break;
                }
                let id = self.new_task(tier, served_tiers(tier));
                if runs_on_spot(tier) && self.p.spot_interruptions_per_hour > 0.0 {
                    let mean = 3600.0 / self.p.spot_interruptions_per_hour;
                    self.tasks[id].interrupt_at = -(1.0 - self.rng.gen::<f64>()).ln() * mean;
                }
                self.tasks[id].state = TaskState::Idle;
                self.receive(id);
                let used = self.pool_tasks(pool) * vcpu;
                self.out.vcpu_peak[pool] = self.out.vcpu_peak[pool].max(used);
                let ti = tier_index(tier);
                self.out.tasks_peak[ti] = self.out.tasks_peak[ti].max(self.tasks_of(tier));
            }
        }
    }

    /// Tasks per tier that scale-in keeps and the fleet tick restores.
    fn warm_floor(&self) -> u32 {
        if self.p.embedded_workers.is_some() {
            return 0;
        }
        let d = &self.p.deployment;
        d.warm_workers_per_tier.min(d.max_workers_per_tier)
    }

    /// Whether a task of `tier` may stop without taking the tier below its warm minimum.
    fn may_scale_in(&self, tier: Tier) -> bool {
        self.tasks_of(tier) > self.warm_floor()
    }

    /// Every upload published or given up on (arrivals are all scheduled up front, so
    /// none is to come).
    fn done(&self) -> bool {
        let lost: u64 = self.fns.iter().map(|f| f.stats.dead_letters).sum();
        self.out.uploads > 0 && self.out.published + lost == self.out.uploads
    }

    fn new_task(&mut self, tier: Tier, serves: &[Tier]) -> usize {
        self.live[tier_index(tier)] += 1;
        self.tasks.push(Task {
            tier,
            state: TaskState::Pending,
            picker: TierPicker::new(serves.to_vec(), 4),
            launched_at: self.now,
            busy_since: self.now,
            item: None,
            epoch: 0,
            interrupt_at: f64::INFINITY,
            window_start: self.now,
            busy_in_window: 0.0,
        });
        self.tasks.len() - 1
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrive(j) => {
                if self.p.embedded_workers.is_some() {
                    self.at(self.p.overheads.ingest_secs, Ev::Ingested(j));
                } else {
                    // S3 sends the event to the ingest queue; the mapping receives and
                    // deletes it.
                    self.out.cost.requests += self.prices.sqs_request * 3.0;
                    self.send(INGEST, j);
                }
            }
            Ev::Ingested(j) => self.ingested(j),
            Ev::MessageDone(f, j) => {
                if f == INGEST {
                    self.ingested(j);
                } else {
                    self.count_stitch();
                    self.published(j);
                }
            }
            Ev::InvocationEnd(f) => {
                self.fns[f].running -= 1;
                self.lambda.release();
                self.pump();
            }
            Ev::Visible(f, j, receives) => {
                self.fns[f].waiting.push_back(Msg {
                    job: j,
                    receives,
                    throttled: false,
                });
                self.pump();
            }
            Ev::TaskUp(t) => {
                if self.tasks[t].state == TaskState::Pending {
                    self.tasks[t].state = TaskState::Idle;
                    self.receive(t);
                }
            }
            Ev::ItemDone(t, epoch) => {
                if self.tasks[t].epoch == epoch && self.tasks[t].state == TaskState::Busy {
                    self.item_done(t);
                }
            }
            Ev::Interrupt(t, epoch) => {
                if self.tasks[t].epoch == epoch {
                    self.interrupt(t);
                }
            }
            Ev::IdleExit(t, epoch) => {
                if self.tasks[t].epoch == epoch
                    && self.tasks[t].state == TaskState::Idle
                    && self.may_scale_in(self.tasks[t].tier)
                {
                    self.stop_task(t);
                }
            }
            Ev::Stitched(j) => self.published(j),
            Ev::InvalidationDone(paths) => {
                self.invalidations_in_progress -= paths;
            }
            Ev::FleetTick => {
                self.invoke_free(0.25 * 2.0);
                let warm = self.warm_floor();
                for tier in TIERS {
                    let depth = self.depth(tier);
                    // The policy's want, never below the warm minimum (which also
                    // replaces warm Spot tasks lost to an interruption).
                    let wanted = wanted_workers(tier, depth, 0).max(warm);
                    self.ensure_capacity(tier, wanted);
                }
                self.at(self.p.fleet_tick_secs, Ev::FleetTick);
            }
            Ev::Sample => {
                self.sample();
                if self.now < self.stop_at {
                    self.at(self.p.sample_secs, Ev::Sample);
                }
            }
        }
    }

    /// A message for function `f` about job `j`: into its queue, and the mappings poll.
    fn send(&mut self, f: usize, j: usize) {
        self.fns[f].waiting.push_back(Msg {
            job: j,
            receives: 0,
            throttled: false,
        });
        let q = &mut self.fns[f];
        q.stats.full_batch_invocation_secs += q.full_batch_secs();
        self.pump();
    }

    /// The mappings' pollers: while a queue has messages, its mapping has a free slot and
    /// the account a free execution, a batch goes out (whatever is there, up to the batch
    /// size: no batching window). The two functions take turns at free executions.
    fn pump(&mut self) {
        loop {
            let first = self.next_fn;
            let started = self.start_invocation(first) || self.start_invocation(1 - first);
            if !started {
                break;
            }
            self.next_fn = 1 - self.next_fn;
        }
        for f in [INGEST, STITCH] {
            self.note_backlog(f);
        }
    }

    /// Starts one invocation of `f` if its queue, its mapping and the account allow.
    fn start_invocation(&mut self, f: usize) -> bool {
        let q = &self.fns[f];
        if q.waiting.is_empty() || q.running >= q.mapping.max_concurrency {
            return false;
        }
        if !self.lambda.try_acquire() {
            self.hit(LimitKind::LambdaConcurrency);
            if let Some(m) = self.fns[f].waiting.front_mut() {
                if !m.throttled {
                    m.throttled = true;
                    self.out.lambda_waits += 1;
                    self.fns[f].stats.account_waits += 1;
                }
            }
            return false;
        }
        self.out.lambda_peak = self.out.lambda_peak.max(self.lambda.in_use());
        if self.lambda.in_use() >= self.lambda.limit() {
            self.hit(LimitKind::LambdaConcurrency);
        }
        let q = &mut self.fns[f];
        let n = (q.mapping.batch_size as usize).min(q.waiting.len());
        let batch: Vec<Msg> = q.waiting.drain(..n).collect();
        q.running += 1;
        q.stats.invocations += 1;
        q.stats.receives += n as u64;
        q.stats.concurrency_peak = q.stats.concurrency_peak.max(q.running);
        let (secs, runs, timeout) = (q.secs, q.runs, q.mapping.timeout_secs);
        let (visibility, max_receives, gb) =
            (q.mapping.visibility_secs, q.mapping.max_receives, q.gb);
        // An upload received less than SettingsFileWaitSeconds after it was sent, with
        // no settings file (none in the model has one), is deferred: a short check, then
        // its message comes back when the wait is over, instead of a sleep.
        let wait = self.p.deployment.settings_wait_secs;
        let defer_left: Vec<Option<f64>> = batch
            .iter()
            .map(|m| {
                let left = wait - (self.now - self.jobs[m.job].arrived);
                (f == INGEST && left > 1e-9).then_some(left)
            })
            .collect();
        // When each message of the batch is done, from the invocation's start.
        let mut finish = Vec::with_capacity(n);
        let mut elapsed = 0.0;
        for defer in &defer_left {
            let work = if defer.is_some() {
                self.p.settings_check_secs
            } else {
                secs
            };
            let t = match runs {
                BatchRun::Concurrently => work,
                BatchRun::OneAfterAnother => elapsed + work,
            };
            elapsed = t;
            finish.push(t);
        }
        let asked = finish.iter().copied().fold(0.0, f64::max);
        let lasts = asked.min(timeout);
        q.stats.longest_invocation_secs = q.stats.longest_invocation_secs.max(asked);
        for ((m, done_at), defer) in batch.into_iter().zip(finish).zip(defer_left) {
            if done_at <= timeout + 1e-9 {
                match defer {
                    Some(left) => {
                        self.out.deferrals += 1;
                        self.fns[f].stats.full_batch_invocation_secs += done_at;
                        // The receive and the visibility change that delays it.
                        self.out.cost.requests += self.prices.sqs_request * 2.0;
                        self.at(left.max(done_at), Ev::Visible(f, m.job, m.receives + 1));
                    }
                    None => self.at(done_at, Ev::MessageDone(f, m.job)),
                }
                continue;
            }
            // The invocation times out before this one is done: Lambda returns the
            // batch's messages to the queue, visible again after the visibility timeout,
            // until the queue's redrive policy dead-letters them. (The ones done before
            // the timeout come back too, but find their work done; not modelled.)
            self.fns[f].stats.timeouts += 1;
            self.hit(if f == INGEST {
                LimitKind::IngestTimeout
            } else {
                LimitKind::StitchTimeout
            });
            let receives = m.receives + 1;
            if receives >= max_receives {
                self.fns[f].stats.dead_letters += 1;
            } else {
                self.at(visibility, Ev::Visible(f, m.job, receives));
            }
        }
        self.out.cost.lambda +=
            gb * lasts * self.prices.lambda_gb_second + self.prices.lambda_request;
        self.at(lasts, Ev::InvocationEnd(f));
        true
    }

    /// Keeps a queue's backlog figures, and notes its mapping's concurrency as binding
    /// once more messages wait than one round of full batches would take.
    fn note_backlog(&mut self, f: usize) {
        let now = self.now;
        let q = &mut self.fns[f];
        let backlog = q.waiting.len() as u64;
        if backlog > q.stats.backlog_peak {
            q.stats.backlog_peak = backlog;
            q.stats.backlog_peak_secs = now;
        }
        if backlog == 0 {
            if q.stats.drained_secs.is_none() {
                q.emptied_at = now;
            }
            q.stats.drained_secs = Some(q.emptied_at);
        } else {
            q.stats.drained_secs = None;
        }
        let round = u64::from(q.mapping.max_concurrency) * u64::from(q.mapping.batch_size);
        if backlog > round {
            self.hit(if f == INGEST {
                LimitKind::IngestConcurrency
            } else {
                LimitKind::StitchConcurrency
            });
        }
    }

    fn count_stitch(&mut self) {
        let second = self.now.floor() as i64;
        let slot = &mut self.stitches_this_second;
        if slot.0 == second {
            slot.1 += 1;
        } else {
            *slot = (second, 1);
        }
        self.out.stitches_per_second_peak = self.out.stitches_per_second_peak.max(slot.1);
        self.out.stitch_times.push(self.now);
    }

    /// The fleet function's tick: tiny, and not worth a slot in the model.
    fn invoke_free(&mut self, gb_secs: f64) {
        if self.p.embedded_workers.is_none() {
            self.out.cost.lambda +=
                gb_secs * self.prices.lambda_gb_second + self.prices.lambda_request;
        }
    }

    fn ingested(&mut self, j: usize) {
        let u = self.jobs[j].upload.clone();
        let tier = u.tier;
        let chunks = (u.duration_secs / self.p.chunk_secs).ceil().max(1.0) as u64;
        let segments_per_chunk = (self.p.chunk_secs / self.p.segment_secs).round().max(1.0) as u64;
        let rate = u.ladder_pixel_rate() / (self.p.pixels_per_vcpu_second * self.vcpus());
        let mut items: Vec<Item> = Vec::new();
        // Audio first (a track takes as long as several chunks), as ingest queues it.
        for _ in 0..u.audio_tracks {
            items.push(Item {
                job: j,
                // AAC runs at about 100× realtime on one core.
                busy_secs: u.duration_secs / 100.0 + self.p.overheads.item_secs,
                strikes: 0,
                queue: tier,
                puts: (u.duration_secs / self.p.segment_secs).ceil() as u64 + 1,
            });
        }
        for c in 0..chunks {
            let secs = (u.duration_secs - c as f64 * self.p.chunk_secs).min(self.p.chunk_secs);
            items.push(Item {
                job: j,
                busy_secs: secs * rate + self.p.overheads.item_secs,
                strikes: 0,
                queue: tier,
                // Segments per rung, chunk 0's init segments, the sprite.
                puts: segments_per_chunk * u.rungs.len() as u64
                    + if c == 0 { u.rungs.len() as u64 + 1 } else { 1 },
            });
        }
        self.jobs[j].items_left = items.len() as u32;
        let offered: f64 = items.iter().map(|i| i.busy_secs).sum();
        self.out.offered_task_secs[pool_of(tier)] += offered;
        let n = items.len() as u32;
        let sqs = self.prices.sqs_request * n as f64;
        self.out.cost.requests += sqs
            + self.prices.dynamodb_write * 10.0
            + self.prices.dynamodb_read * 4.0
            + self.prices.s3_get * 4.0;
        for it in items {
            self.enqueue(it);
        }
        if self.p.embedded_workers.is_none() {
            self.ensure_capacity(tier, n);
        }
    }

    fn vcpus(&self) -> f64 {
        if let Some(n) = self.p.embedded_workers {
            // One machine: its vCPUs shared by the workers.
            self.p.worker.vcpu / f64::from(n.max(1))
        } else {
            self.p.worker.vcpu
        }
    }

    fn enqueue(&mut self, it: Item) {
        let q = tier_index(it.queue);
        self.queues[q].push_back(it);
        // Wake one idle worker that serves this queue.
        while let Some(t) = self.idle[q].pop_front() {
            if self.tasks[t].state == TaskState::Idle {
                self.receive(t);
                break;
            }
        }
    }

    /// The worker's receive: its picker's queue order (the worker code's own), the first
    /// queue with a message wins.
    fn receive(&mut self, t: usize) {
        let order = self.tasks[t].picker.next_order();
        for q in order {
            let Queue::Work(tier) = q else { continue };
            if let Some(it) = self.queues[tier_index(tier)].pop_front() {
                self.start_item(t, it);
                return;
            }
        }
        // Nothing: exit if mostly idle (the worker's own rule), else wait for work, or
        // exit after the idle timeout.
        if self.p.embedded_workers.is_none() {
            let task = &self.tasks[t];
            let watched = self.now - task.window_start;
            let scale_in = Some((
                Duration::from_secs_f64(task.busy_in_window.max(0.0)),
                Duration::from_secs_f64(watched.max(0.0)),
            ));
            let idle = Duration::from_secs_f64(self.p.idle_exit_secs.max(0.0));
            if should_exit(Duration::ZERO, idle, scale_in)
                && self.p.idle_exit_secs > 0.0
                && self.may_scale_in(task.tier)
            {
                self.stop_task(t);
                return;
            }
            if watched >= SCALE_IN_WINDOW.as_secs_f64() {
                let task = &mut self.tasks[t];
                task.window_start = self.now;
                task.busy_in_window = 0.0;
            }
        }
        let task = &mut self.tasks[t];
        task.state = TaskState::Idle;
        task.epoch += 1;
        let epoch = task.epoch;
        let serves: Vec<Tier> = if self.p.embedded_workers.is_some() {
            TIERS.to_vec()
        } else {
            served_tiers(task.tier).to_vec()
        };
        for s in serves {
            self.idle[tier_index(s)].push_back(t);
        }
        if self.p.embedded_workers.is_none() {
            self.at(self.p.idle_exit_secs, Ev::IdleExit(t, epoch));
        }
    }

    fn start_item(&mut self, t: usize, it: Item) {
        let busy = it.busy_secs;
        self.in_flight[tier_index(it.queue)] += 1;
        let task = &mut self.tasks[t];
        task.state = TaskState::Busy;
        task.epoch += 1;
        task.busy_since = self.now;
        let epoch = task.epoch;
        let interrupt_at = task.interrupt_at;
        task.item = Some(it);
        if interrupt_at < self.now + busy {
            self.at(interrupt_at - self.now, Ev::Interrupt(t, epoch));
        } else {
            self.at(busy, Ev::ItemDone(t, epoch));
        }
    }

    fn item_done(&mut self, t: usize) {
        let Some(it) = self.tasks[t].item.take() else {
            return;
        };
        self.in_flight[tier_index(it.queue)] -= 1;
        let busy = self.now - self.tasks[t].busy_since;
        self.tasks[t].busy_in_window += busy;
        let j = it.job;
        self.jobs[j].busy_secs += busy;
        // Requests: receive, delete and a visibility extension per heartbeat (every
        // 10 s); a lease, a heartbeat write each 10 s and a two-item commit transaction
        // (double price); the item's PUTs.
        let beats = (busy / 10.0).floor();
        self.out.cost.requests += self.prices.sqs_request * (2.0 + beats)
            + self.prices.dynamodb_write * (1.0 + beats + 4.0)
            + self.prices.dynamodb_read * 2.0
            + self.prices.s3_put * it.puts as f64
            + self.prices.s3_get * 3.0;
        let second = self.now.floor() as i64;
        let puts = self.puts_this_second.entry((j, second)).or_insert(0);
        *puts += it.puts;
        self.out.puts_per_prefix_peak = self.out.puts_per_prefix_peak.max(*puts);
        if self.puts_this_second.len() > 100_000 {
            self.puts_this_second.retain(|(_, s), _| *s >= second);
        }
        self.jobs[j].items_left -= 1;
        if self.jobs[j].items_left == 0 {
            self.out.cost.requests += self.prices.sqs_request * 3.0;
            if self.p.embedded_workers.is_some() {
                self.at(self.p.overheads.stitch_secs, Ev::Stitched(j));
            } else {
                self.send(STITCH, j);
            }
        }
        self.receive(t);
    }

    fn interrupt(&mut self, t: usize) {
        self.out.interruptions += 1;
        if let Some(mut it) = self.tasks[t].item.take() {
            self.in_flight[tier_index(it.queue)] -= 1;
            it.strikes += 1;
            self.out.cost.requests += self.prices.sqs_request + self.prices.dynamodb_write;
            if escalates(Queue::Work(it.queue), it.strikes, self.p.escalate_after) {
                it.queue = Tier::Premium;
                self.out.escalations += 1;
            }
            self.enqueue(it);
        }
        self.stop_task(t);
    }

    fn stop_task(&mut self, t: usize) {
        if self.tasks[t].state == TaskState::Stopped {
            return;
        }
        self.live[tier_index(self.tasks[t].tier)] -= 1;
        let task = &mut self.tasks[t];
        task.state = TaskState::Stopped;
        task.epoch += 1;
        let (tier, secs) = (task.tier, self.now - task.launched_at);
        self.out.cost.compute += compute_cost(tier, secs, self.p.worker);
    }

    fn published(&mut self, j: usize) {
        let job = &mut self.jobs[j];
        job.published = Some(self.now);
        let latency = self.now - job.arrived;
        let tier = tier_index(job.upload.tier);
        self.out.latency[tier].push(latency);
        self.window_latency[tier].push(latency);
        self.out.published += 1;
        let u = &job.upload;
        let minutes = output_minutes(u.duration_secs, u.rungs.len() as u32);
        self.out.output_minutes += minutes;
        self.out.job_level_compute_usd += compute_cost(u.tier, job.busy_secs, self.p.worker);
        // One month of the outputs: each rung at about 60 % of its bitrate cap, and the
        // audio.
        let kbps: f64 = u
            .rungs
            .iter()
            .map(|r| f64::from(r.max_kbps) * 0.6)
            .sum::<f64>()
            + f64::from(self.p.ladder.audio_kbps) * f64::from(u.audio_tracks);
        let gb = kbps * 1000.0 / 8.0 * u.duration_secs / 1e9;
        self.out.cost.storage += gb * self.prices.s3_gb_month;
        // Playlists, the MPD, the thumbnail track, the pointers.
        let puts = u.rungs.len() as f64 * 2.0 + f64::from(u.audio_tracks) + 5.0;
        self.out.cost.requests += self.prices.s3_put * puts
            + self.prices.dynamodb_write * 4.0
            + self.prices.dynamodb_read * 6.0;
        self.out.makespan_secs = self.out.makespan_secs.max(self.now);
        self.out.last_publish_secs = self.out.last_publish_secs.max(self.now);
        let paths = match self.p.invalidation {
            Invalidation::EveryPublish => 2,
            // Every upload in the model is a first publish.
            Invalidation::ReplacedOnly => 0,
        };
        if paths > 0 && self.p.embedded_workers.is_none() {
            self.out.cost.invalidations += self.prices.invalidation_path * paths as f64;
            self.invalidations_in_progress += paths;
            self.out.invalidation_paths_peak = self
                .out
                .invalidation_paths_peak
                .max(self.invalidations_in_progress);
            if self.invalidations_in_progress > 3000 {
                self.hit(LimitKind::InvalidationsInProgress);
            }
            // CloudFront takes about a minute to finish an invalidation.
            self.at(60.0, Ev::InvalidationDone(paths));
        }
    }

    /// What `WorkQueue::depth` answers: visible plus in-flight messages of a tier queue.
    fn depth(&self, tier: Tier) -> u64 {
        let i = tier_index(tier);
        self.queues[i].len() as u64 + self.in_flight[i]
    }

    fn tasks_of(&self, tier: Tier) -> u32 {
        self.live[tier_index(tier)]
    }

    fn pool_tasks(&self, pool: usize) -> u32 {
        TIERS
            .iter()
            .filter(|t| pool_of(**t) == pool)
            .map(|t| self.tasks_of(*t))
            .sum()
    }

    /// `Fleet::ensure_capacity` on Fargate, with the fleet crate's own target and the
    /// account's limits: the pool's launch rate (a launch over it waits, as the SDK's
    /// back-off would) and its vCPU quota (a launch over it fails, as RunTask reports).
    fn ensure_capacity(&mut self, tier: Tier, wanted: u32) {
        let have = self.tasks_of(tier);
        let max = self.p.deployment.max_workers_per_tier;
        let target = launch_target(have, wanted, max);
        let pool = pool_of(tier);
        let others = self.pool_tasks(pool) - have;
        // What the policy asks for, before the per-call step, the stack's cap and quotas.
        let want_total = others + wanted.max(have);
        self.out.wanted_peak[pool] = self.out.wanted_peak[pool].max(want_total);
        if wanted > max && have >= max {
            self.out.capped += u64::from(wanted - have);
            self.hit(LimitKind::WorkersPerTier);
        }
        let vcpu = self.p.worker.vcpu.round() as u32;
        for _ in have..target {
            let in_pool = self.pool_tasks(pool);
            if (in_pool + 1) * vcpu > self.p.vcpu_quota {
                self.out.quota_refusals += 1;
                self.hit(if pool == 0 {
                    LimitKind::OnDemandVcpu
                } else {
                    LimitKind::SpotVcpu
                });
                break;
            }
            let at = self.pools[pool].reserve(self.now);
            if at > self.now + 1e-9 {
                self.out.launches_delayed += 1;
                self.hit(if pool == 0 {
                    LimitKind::OnDemandLaunchRate
                } else {
                    LimitKind::SpotLaunchRate
                });
            }
            self.count_launch(pool, at);
            let serves = served_tiers(tier);
            let id = self.new_task(tier, serves);
            self.tasks[id].launched_at = at;
            if runs_on_spot(tier) && self.p.spot_interruptions_per_hour > 0.0 {
                let mean = 3600.0 / self.p.spot_interruptions_per_hour;
                let life = -(1.0 - self.rng.gen::<f64>()).ln() * mean;
                self.tasks[id].interrupt_at = at + self.p.task_start_secs + life;
            }
            self.at(at - self.now + self.p.task_start_secs, Ev::TaskUp(id));
            let used = self.pool_tasks(pool) * vcpu;
            self.out.vcpu_peak[pool] = self.out.vcpu_peak[pool].max(used);
            let tasks = self.tasks_of(tier);
            let ti = tier_index(tier);
            self.out.tasks_peak[ti] = self.out.tasks_peak[ti].max(tasks);
        }
    }

    fn count_launch(&mut self, pool: usize, at: f64) {
        let bump = |slot: &mut (i64, u32), t: f64| {
            let second = t.floor() as i64;
            if slot.0 == second {
                slot.1 += 1;
            } else if second > slot.0 {
                *slot = (second, 1);
            }
            slot.1
        };
        let done = bump(&mut self.launches_this_second[pool], at);
        self.out.launches_peak[pool] = self.out.launches_peak[pool].max(done);
        let asked = bump(&mut self.requested_this_second[pool], self.now);
        self.out.launch_demand_peak[pool] = self.out.launch_demand_peak[pool].max(asked);
    }

    fn hit(&mut self, kind: LimitKind) {
        if !self.out.first_hit.iter().any(|(k, _)| *k == kind) {
            self.out.first_hit.push((kind, self.now));
        }
    }

    fn sample(&mut self) {
        let mut s = Sample {
            t: self.now,
            function_backlog: [INGEST, STITCH].map(|f| self.fns[f].waiting.len() as u64),
            ..Default::default()
        };
        for tier in TIERS {
            let i = tier_index(tier);
            s.depth[i] = self.queues[i].len() as u64;
            s.tasks[i] = self.tasks_of(tier);
            let w = &mut self.window_latency[i];
            if !w.is_empty() {
                w.sort_by(f64::total_cmp);
                s.p95 = {
                    let mut p = s.p95;
                    p[i] = Some(percentile(w, 0.95));
                    p
                };
                w.clear();
            }
        }
        self.out.samples.push(s);
    }

    fn finish(mut self) -> Outcome {
        // Tasks still up when the run ends are billed to the end.
        for t in 0..self.tasks.len() {
            if self.tasks[t].state != TaskState::Stopped {
                self.stop_task(t);
            }
        }
        for l in &mut self.out.latency {
            l.sort_by(f64::total_cmp);
        }
        if self.out.makespan_secs == 0.0 {
            self.out.makespan_secs = self.now;
        }
        let [ingest, stitch] = &self.fns;
        self.out.ingest_queue = ingest.stats.clone();
        self.out.stitch_queue = stitch.stats.clone();
        self.out
    }
}

/// The `q` quantile of sorted `v` (nearest rank).
pub fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report;

    fn raised(uploads_per_hour: f64, hours: f64) -> Params {
        let mut p = Params::new(uploads_per_hour, hours);
        p.vcpu_quota = 1_000_000;
        p.deployment.max_workers_per_tier = 1_000_000;
        p
    }

    #[test]
    fn with_a_new_accounts_quotas_the_vcpu_quota_binds_first() {
        let p = Params::new(10_000.0, 0.1);
        let o = simulate(p.clone());
        let b = report::bottleneck(&report::limits(&p, &o)).expect("a limit bites");
        assert!(b.contains("vCPUs"), "{b}");
        assert!(o.vcpu_peak.iter().all(|v| *v <= 6), "{:?}", o.vcpu_peak);
    }

    #[test]
    fn with_raised_quotas_everything_publishes_within_the_launch_rate() {
        let p = raised(10_000.0, 0.25);
        let o = simulate(p.clone());
        assert_eq!(o.published, o.uploads);
        assert!(o.uploads > 2000, "{}", o.uploads);
        // Never more in a second than the burst and that second's share.
        assert!(o
            .launches_peak
            .iter()
            .all(|n| f64::from(*n) <= p.launch_burst + p.launch_rate));
        let p95 = percentile(&o.latency[0], 0.95);
        assert!(p95 > 0.0 && p95 < 600.0, "premium p95 {p95}");
        let j = report::json(&p, &o);
        assert!(
            j["cost_per_output_minute_usd"]["total"].as_f64().unwrap()
                < report::MEDIACONVERT_PER_MINUTE
        );
    }

    #[test]
    fn the_fleet_bill_is_the_job_level_estimate_when_no_task_waits() {
        // No start time, no idle time, no interruptions: every billed second is an
        // item's, so the fleet's compute equals the sum of the jobs' own estimates.
        let mut p = raised(2_000.0, 0.1);
        p.task_start_secs = 0.0;
        p.idle_exit_secs = 0.0;
        p.spot_interruptions_per_hour = 0.0;
        let o = simulate(p);
        let ratio = o.job_level_compute_usd / o.cost.compute;
        assert!((ratio - 1.0).abs() < 0.01, "{ratio}");
    }

    #[test]
    fn invalidating_every_publish_overruns_cloudfront_at_the_design_rate() {
        let mut p = raised(100_000.0, 0.1);
        p.invalidation = Invalidation::EveryPublish;
        let o = simulate(p.clone());
        assert!(
            o.invalidation_paths_peak > 3000,
            "{}",
            o.invalidation_paths_peak
        );
        assert!(o
            .first_hit
            .iter()
            .any(|(k, _)| *k == LimitKind::InvalidationsInProgress));
        // $0.005 a path, two per publish.
        assert!((o.cost.invalidations - 0.01 * o.published as f64).abs() < 1e-6);
        p.invalidation = Invalidation::ReplacedOnly;
        let o = simulate(p);
        assert_eq!(o.invalidation_paths_peak, 0);
        assert_eq!(o.cost.invalidations, 0.0);
    }

    #[test]
    fn interrupted_spot_work_escalates_after_two_strikes() {
        let mut p = raised(2_000.0, 0.2);
        // Spot tasks live a minute or so on average: most items are struck.
        p.spot_interruptions_per_hour = 40.0;
        let o = simulate(p);
        assert_eq!(o.published, o.uploads);
        assert!(
            o.interruptions > 0 && o.escalations > 0,
            "{} {}",
            o.interruptions,
            o.escalations
        );
    }

    /// Quotas raised, and the ingest mapping wide enough for 100k/h at 3 s an ingest, so
    /// the stitch mapping is what a test varies.
    fn design_rate(hours: f64) -> Params {
        let mut p = raised(100_000.0, hours);
        p.deployment.max_workers_per_tier = 10_000;
        p.deployment.ingest.max_concurrency = 100;
        p
    }

    fn p95s(o: &Outcome) -> [f64; 3] {
        [0, 1, 2].map(|i| percentile(&o.latency[i], 0.95))
    }

    fn bit(o: &Outcome, kind: LimitKind) -> bool {
        o.first_hit.iter().any(|(k, _)| *k == kind)
    }

    #[test]
    fn the_old_stitch_mapping_cannot_carry_100k_an_hour_and_the_new_one_can() {
        // The old mapping: batches of 10, at most 5 at once, a batch's stitches one after
        // another: 5 × 10 stitches per 15 s, 3.3 a second against 27.8 arriving.
        let mut old = design_rate(0.25);
        old.deployment.stitch.max_concurrency = 5;
        old.stitch_batch = BatchRun::OneAfterAnother;
        let o = simulate(old);
        assert_eq!(o.published, o.uploads);
        let q = &o.stitch_queue;
        // The backlog grows for as long as uploads arrive and takes hours to drain.
        assert!(q.backlog_peak > 15_000, "{q:?}");
        assert!(q.backlog_peak_secs > 0.9 * 900.0, "{q:?}");
        assert!(q.drained_secs.is_some_and(|t| t > 2.0 * 3600.0), "{q:?}");
        assert!(bit(&o, LimitKind::StitchConcurrency));
        let old_p95 = p95s(&o);
        assert!(old_p95.iter().all(|p| *p > 3600.0), "{old_p95:?}");
        // Five invocations of ten 1.5 s stitches in a row: 3.3 a second at best.
        let rate = report::stitch_rate_peak(&o.stitch_times, 10.0);
        assert!(rate <= 5.0 * 10.0 / 15.0 + 0.2, "{rate}");

        // The new defaults: batches of 10 run at once, at most 20 at once.
        let o = simulate(design_rate(0.25));
        assert_eq!(o.published, o.uploads);
        let q = &o.stitch_queue;
        assert!(q.backlog_peak <= 200, "{q:?}");
        assert!(!bit(&o, LimitKind::StitchConcurrency));
        assert!(q.longest_invocation_secs <= 1.5 + 1e-9, "{q:?}");
        let new_p95 = p95s(&o);
        // What is left is the fleet's cold start (minutes), not the stitch.
        assert!(new_p95.iter().all(|p| *p < 600.0), "{new_p95:?}");
        // Keeps up with the 27.8 a second arriving, with room to spare at the peak.
        let rate = report::stitch_rate_peak(&o.stitch_times, 10.0);
        assert!(rate >= 28.0, "{rate}");
    }

    #[test]
    fn fifty_ingests_at_once_carry_100k_an_hour_only_if_an_ingest_is_quick() {
        // 27.8 uploads a second × 3 s is 83 ingests at once; the mapping allows 50.
        let mut p = design_rate(0.25);
        p.deployment.ingest.max_concurrency = 50;
        let o = simulate(p.clone());
        let q = &o.ingest_queue;
        assert_eq!(q.concurrency_peak, 50);
        // 10.8 a second more arrive than leave: about 9,700 waiting after 15 minutes.
        assert!(
            q.backlog_peak > 9_000 && q.backlog_peak_secs > 890.0,
            "{q:?}"
        );
        assert!(bit(&o, LimitKind::IngestConcurrency));
        let limits = report::limits(&p, &o);
        let l = limits
            .iter()
            .find(|l| l.kind == LimitKind::IngestConcurrency)
            .expect("listed");
        assert!(l.needed >= 83.0 && l.available == 50.0, "{l:?}");
        // At 1 s an ingest (and 0.2 s to defer it for its settings file first), 50 at
        // once is 41 a second: it keeps up.
        p.overheads.ingest_secs = 1.0;
        let o = simulate(p);
        assert!(o.ingest_queue.backlog_peak <= 50, "{:?}", o.ingest_queue);
        assert!(!bit(&o, LimitKind::IngestConcurrency));
    }

    #[test]
    fn max_workers_per_tier_is_never_exceeded() {
        let mut p = raised(10_000.0, 0.25);
        p.deployment.max_workers_per_tier = 20;
        // A warm minimum above the cap is held to the cap.
        p.deployment.warm_workers_per_tier = 30;
        let o = simulate(p);
        assert!(o.tasks_peak.iter().all(|n| *n <= 20), "{:?}", o.tasks_peak);
        assert!(o.samples.iter().all(|s| s.tasks.iter().all(|n| *n <= 20)));
        assert!(bit(&o, LimitKind::WorkersPerTier));
        assert!(o.capped > 0);
    }

    #[test]
    fn warm_workers_cut_the_p95_at_a_low_rate_and_cost_their_hours() {
        // 100 uploads an hour: every job waits for tasks to start (a minute), unless a
        // warm one takes its work.
        let mut p = raised(100.0, 1.0);
        let cold = simulate(p.clone());
        p.deployment.warm_workers_per_tier = 10;
        let warm = simulate(p.clone());
        let (c, w) = (p95s(&cold), p95s(&warm));
        assert!(
            w[0] <= c[0] && w[1] < c[1] && w[2] < 0.6 * c[2],
            "cold {c:?}, warm {w:?}"
        );
        // Every tier keeps its ten from start to end, billed all along: the run costs more,
        // and at least the floor's hours.
        assert!(warm
            .samples
            .iter()
            .all(|s| s.tasks.iter().all(|n| *n >= 10 - 1)));
        let floor = report::warm_usd_per_hour(&p) * warm.makespan_secs / 3600.0;
        assert!(
            warm.cost.compute >= floor,
            "{} < {floor}",
            warm.cost.compute
        );
        assert!(
            warm.cost.compute > cold.cost.compute,
            "{} vs {}",
            warm.cost.compute,
            cold.cost.compute
        );
        // The floor's price: 10 On-Demand and 20 Spot tasks of 4 vCPU, 8 GiB.
        let hourly = report::warm_usd_per_hour(&p);
        assert!(
            (hourly - 10.0 * (0.158 + 2.0 * 0.0474)).abs() < 0.01,
            "{hourly}"
        );
    }

    #[test]
    fn a_burst_drains_through_the_ingest_mapping_fifty_at_a_time() {
        let mut p = raised(0.0, 0.0);
        p.deployment.ingest.max_concurrency = 50;
        p.burst = Some(Burst {
            uploads: 2000,
            secs: 0.0,
        });
        let o = simulate(p.clone());
        assert_eq!((o.uploads, o.published), (2000, 2000));
        let q = &o.ingest_queue;
        // 50 received at once, the rest wait. Each is first deferred for its settings
        // file (0.2 s each, 50 at a time: all within 8 s), and all come back 10 s after
        // the upload; then the last 50 go out after 39 rounds of 3 s.
        assert_eq!((q.backlog_peak, q.concurrency_peak), (1950, 50));
        assert_eq!(q.backlog_peak_secs, 0.0);
        assert_eq!((o.deferrals, q.invocations), (2000, 4000));
        assert!(
            (q.drained_secs.unwrap_or(f64::NAN) - 127.0).abs() < 1e-6,
            "{q:?}"
        );
        let j = report::json(&p, &o);
        let drain = j["drain_secs"].as_f64().unwrap();
        assert!((drain - (o.last_publish_secs - o.first_arrival_secs)).abs() < 0.1);
        assert!(drain > 120.0, "{drain}");
        assert_eq!(j["ingest_queue"]["backlog_peak"], 1950);

        // Uploads that do not wait for a settings file go straight to their ingest.
        let mut now = p.clone();
        now.deployment.settings_wait_secs = 0.0;
        let o = simulate(now);
        assert_eq!((o.deferrals, o.ingest_queue.invocations), (0, 2000));
        let drained = o.ingest_queue.drained_secs.unwrap_or(f64::NAN);
        assert!((drained - 117.0).abs() < 1e-6, "{drained}");

        // Spread over ten minutes: 3.3 a second, ten ingests at once, none waits.
        p.burst = Some(Burst {
            uploads: 2000,
            secs: 600.0,
        });
        let o = simulate(p);
        assert_eq!(o.ingest_queue.backlog_peak, 0);
        assert_eq!(o.first_arrival_secs, 0.0);
        assert!(o.last_publish_secs > 600.0);
    }

    #[test]
    fn a_stitch_past_the_timeout_is_noted_retried_and_dead_lettered() {
        let mut p = raised(0.0, 0.0);
        p.burst = Some(Burst {
            uploads: 3,
            secs: 0.0,
        });
        p.overheads.stitch_secs = 150.0;
        let o = simulate(p.clone());
        let q = &o.stitch_queue;
        // Received five times (the queue's maxReceiveCount), timed out each time.
        assert_eq!(o.published, 0);
        assert_eq!((q.timeouts, q.dead_letters), (15, 3), "{q:?}");
        assert!(bit(&o, LimitKind::StitchTimeout));
        let b = report::bottleneck(&report::limits(&p, &o)).expect("a limit bit");
        assert!(b.contains("stitch function's timeout"), "{b}");

        // Ten 13 s stitches one after another overrun 120 s; at once they do not.
        p.burst = Some(Burst {
            uploads: 200,
            secs: 0.0,
        });
        p.overheads.stitch_secs = 13.0;
        p.stitch_batch = BatchRun::OneAfterAnother;
        let o = simulate(p.clone());
        assert!(o.stitch_queue.timeouts > 0, "{:?}", o.stitch_queue);
        assert_eq!(o.published, o.uploads);
        p.stitch_batch = BatchRun::Concurrently;
        let o = simulate(p);
        assert_eq!(o.stitch_queue.timeouts, 0);
    }

    #[test]
    fn the_account_concurrency_is_shared_by_both_mappings() {
        let mut p = raised(0.0, 0.0);
        p.lambda_concurrency = 10;
        p.burst = Some(Burst {
            uploads: 500,
            secs: 0.0,
        });
        let o = simulate(p);
        assert_eq!(o.published, o.uploads);
        assert!(o.lambda_peak <= 10, "{}", o.lambda_peak);
        assert!(o.ingest_queue.concurrency_peak + o.stitch_queue.concurrency_peak <= 20);
        assert!(o.ingest_queue.concurrency_peak <= 10);
        assert!(o.lambda_waits > 0 && bit(&o, LimitKind::LambdaConcurrency));
    }
}
