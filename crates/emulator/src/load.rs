//! `load`: the control plane alone under load, on the emulator, with the project's own
//! worker and stitch code and a stand-in encoder that makes no media.
//!
//! Jobs are planned and queued as ingest does (the plan of a synthetic 360p source, so no
//! probe), while worker processes (this program, `load-worker`) drain the queues with the
//! real [`Worker`]: leases, heartbeats, uploads of every segment and init segment, commits,
//! retries, stitching and conditional pointer publication all run for real against S3,
//! SQS and DynamoDB on moto. Meanwhile worker processes are killed (SIGKILL, mid-item) and
//! restarted, and duplicate messages are injected. At the end every job must be PUBLISHED
//! exactly once with every item done; the run prints its throughput, the AWS requests per
//! item by service (counted by the emulator itself, so a killed process's calls count
//! too), what they cost at list prices per 1,000 output minutes, and the largest record
//! in the table.

use crate::moto::Moto;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vodpipe_aws::config::{AwsSettings, Bridge};
use vodpipe_aws::Aws;
use vodpipe_control::job::JobStatus;
use vodpipe_control::pipeline::{Config, JobPlan};
use vodpipe_control::ports::{
    ItemKind, ItemRef, JobStore, Message, PortError, Queue, Tier, WorkQueue,
};
use vodpipe_control::worker::{ItemEncoder, Shutdown, Worker};
use vodpipe_media::encode::{EncodeContext, Encoded, TrackOutput};
use vodpipe_media::ladder::{ladder_for, LadderConfig};
use vodpipe_media::mp4::Fragment;
use vodpipe_media::plan::{plan, PlanOptions};
use vodpipe_media::probe::{FieldOrder, MediaInfo, Rational, VideoInfo};

/// Arguments of `load`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Jobs to plan and publish.
    #[arg(long, default_value_t = 500)]
    pub jobs: u32,
    /// Video items (4-second chunks) per job.
    #[arg(long, default_value_t = 20)]
    pub items: u32,
    /// Worker processes.
    #[arg(long, default_value_t = 8)]
    pub workers: u32,
    /// Kill one worker process (SIGKILL) this often, in seconds, and start another; 0
    /// kills none.
    #[arg(long, default_value_t = 5.0)]
    pub kill_every: f64,
    /// The share of items that get a second, duplicate message.
    #[arg(long, default_value_t = 0.05)]
    pub duplicates: f64,
    /// How long the stand-in encoder takes per item, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub encode_ms: u64,
    /// Lease length for the workers, in seconds (a killed worker's item is taken over
    /// after about 1.5 times this).
    #[arg(long, default_value_t = 6)]
    pub lease_seconds: u64,
    /// Most jobs planned and not yet finished at once (0: no bound). Uploads arrive over
    /// time, not in one second, and a bounded backlog keeps the emulator's queues short:
    /// moto scans a queue's every message on each receive.
    #[arg(long, default_value_t = 50)]
    pub in_flight: u32,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
    /// Print only the final JSON line.
    #[arg(long)]
    pub json: bool,
    /// A fault the workers' calls meet, as AWS's do (repeatable, first match wins; see
    /// `vodpipe-emulator e2e --help`), e.g. `lost=0.05,throttle=0.05,conflict=0.05`.
    #[arg(long = "fault", value_name = "RULE")]
    pub faults: Vec<String>,
    /// The faults' seed.
    #[arg(long, default_value_t = 1)]
    pub fault_seed: u64,
    /// Through the deployed shape instead: `--jobs` uploads of a real clip of `--items`
    /// four-second chunks within `--burst-seconds`, S3 events on the upload queue, the real
    /// ingest and stitch functions behind their mappings (`make load`).
    #[arg(long)]
    pub deployed: bool,
    /// With `--deployed`: the seconds the uploads arrive within.
    #[arg(long, default_value_t = 60.0)]
    pub burst_seconds: f64,
    /// With `--deployed`: ingest functions at once (execution environments).
    #[arg(long, default_value_t = 4)]
    pub ingest_environments: u32,
    /// With `--deployed`: stitch functions at once (execution environments).
    #[arg(long, default_value_t = 4)]
    pub stitch_environments: u32,
    /// With `--deployed`: stitch requests per invocation (the template's StitchBatchSize).
    #[arg(long, default_value_t = 10)]
    pub stitch_batch: i32,
    /// With `--deployed`: where the function binaries are (default: beside this program).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// Arguments of `load-worker` (started by `load`).
#[derive(clap::Args, Debug, Clone)]
pub struct LoadWorkerArgs {
    /// An init segment the stand-in encoder hands out for every rung.
    #[arg(long)]
    pub init: PathBuf,
    /// Milliseconds per item.
    #[arg(long)]
    pub encode_ms: u64,
    /// Lease length, seconds.
    #[arg(long)]
    pub lease_seconds: u64,
    /// Leave stitch requests to the stitch function (the deployed shape).
    #[arg(long)]
    pub no_stitch: bool,
}

/// The stand-in encoder: sleeps as long as an encode would take, then hands back every
/// rung's segments for the chunk, placed on the timeline as ffmpeg's would be (an init
/// segment made once by ffmpeg, and small media segments).
struct StandInEncoder {
    init: Vec<u8>,
    delay: Duration,
}

impl ItemEncoder for StandInEncoder {
    fn encode(
        &self,
        ctx: &EncodeContext<'_>,
        item: &ItemRef,
        on_frames: &(dyn Fn(u64) + Sync),
    ) -> vodpipe_media::Result<Encoded> {
        std::thread::sleep(self.delay);
        let video = ctx.media.video.as_ref().ok_or_else(|| {
            vodpipe_media::Error::PlanMismatch("the load's plan has no video".into())
        })?;
        let chunk = ctx
            .plan
            .chunks
            .get(item.index as usize)
            .filter(|_| item.kind == ItemKind::Video)
            .ok_or_else(|| vodpipe_media::Error::PlanMismatch(format!("no {}", item.describe())))?;
        let ticks = (video.time_base.den * video.frame_rate.den / video.frame_rate.num) as u64;
        on_frames(chunk.frames);
        Ok(Encoded::from(
            ctx.rungs
                .iter()
                .map(|r| TrackOutput {
                    name: r.name.clone(),
                    init: self.init.clone(),
                    segments: chunk
                        .segments
                        .iter()
                        .map(|s| Fragment {
                            bytes: vec![0u8; 2048],
                            base_decode_time: s.first_frame * ticks,
                            samples: s.frames,
                            duration: s.frames * ticks,
                            first_cts_offset: 0,
                            starts_with_sync: true,
                            key_frame_end: Some(1024),
                        })
                        .collect(),
                    timescale: video.time_base.den as u32,
                    protection: None,
                })
                .collect::<Vec<_>>(),
        ))
    }
}

/// The plan of a synthetic 640x360 25 fps source of `items` four-second chunks.
fn synthetic_plan(items: u32) -> JobPlan {
    let time_base = Rational { num: 1, den: 12800 };
    let frames = u64::from(items) * 100;
    let pts: Vec<i64> = (0..frames as i64).map(|i| i * 512).collect();
    let plan = plan(
        &pts,
        time_base,
        0.0,
        PlanOptions {
            segment_secs: 4.0,
            chunk_secs: 4.0,
            clip: None,
        },
    );
    let video = VideoInfo {
        index: 0,
        codec: "h264".into(),
        width: 640,
        height: 360,
        sar: Rational { num: 1, den: 1 },
        rotation: 0,
        pix_fmt: "yuv420p".into(),
        field_order: FieldOrder::Progressive,
        frame_rate: Rational { num: 25, den: 1 },
        time_base,
        vfr: false,
        frame_pts: Vec::new(),
        colour: Default::default(),
        declared_frames: None,
    };
    let config = LadderConfig::default();
    let rungs = ladder_for(&video, &config);
    JobPlan {
        media: MediaInfo {
            format_name: "mov,mp4,m4a,3gp,3g2,mj2".into(),
            duration_secs: Some(frames as f64 / 25.0),
            size_bytes: 0,
            video: Some(video),
            audio: Vec::new(),
            subtitles: Vec::new(),
            video_start_secs: 0.0,
            start_secs: 0.0,
            end_secs: None,
            first_seek_secs: None,
        },
        rungs,
        plan,
        config,
        per_title: None,
        texts: Vec::new(),
    }
}

/// Plans and queues one job the way ingest does once it has probed: the job, its asset
/// name, PROBING, the plan and items, a message per item.
fn plan_job(aws: &Aws, id: &str, doc: &str, jp: &JobPlan) -> Result<Vec<ItemRef>> {
    let ports = aws.ports();
    let key = format!("load/{id}.mp4");
    let uri = format!("s3://{}/{key}", aws.settings.ingest_bucket);
    let settings = vodpipe_control::settings::fallback(
        &key,
        &vodpipe_control::settings::SettingsPolicy::default(),
        4.0,
        &jp.config,
        None,
    );
    ports.jobs.claim_asset(&settings.asset.value, &uri)?;
    ports
        .jobs
        .create_job(id, &uri, &settings.asset.value, Tier::Standard, &settings)?;
    ports
        .jobs
        .transition(id, vodpipe_control::domain::Transition::Claim, None)?;
    let items = vodpipe_control::ingest::work_items(id, jp);
    ports.jobs.save_plan(
        id,
        doc,
        jp.media.duration_secs.unwrap_or(0.0),
        jp.plan.total_frames,
        jp.rungs.len() as u32,
        0.0,
        &items,
    )?;
    let messages: Vec<Message> = items
        .iter()
        .map(|(i, _)| Message::Item(i.clone()))
        .collect();
    ports
        .queue
        .send_many(Queue::Work(Tier::Standard), &messages)?;
    Ok(items.into_iter().map(|(i, _)| i).collect())
}

/// Ingests planning jobs at once.
const PLANNERS: u32 = 4;

/// The id of the load's `j`-th job (16 hex digits, like a real job id).
fn load_job_id(j: u32) -> String {
    format!(
        "{:016x}",
        0x1_0000_0000u64 * u64::from(std::process::id()) + u64::from(j)
    )
}

/// A small deterministic generator for picking victims and duplicates.
pub(crate) struct Dice(pub(crate) u64);

impl Dice {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
}

/// The emulator's request counts: (service:operation) → (requests, bytes in, bytes out).
pub(crate) fn request_counts(endpoint: &str) -> Result<BTreeMap<String, (u64, u64, u64)>> {
    let v = crate::moto::control(endpoint, "GET", "/_vodpipe/requests", None)?;
    let mut out = BTreeMap::new();
    for (k, e) in v.as_object().context("request counts are not an object")? {
        out.insert(
            k.clone(),
            (
                e["requests"].as_u64().unwrap_or(0),
                e["bytes_in"].as_u64().unwrap_or(0),
                e["bytes_out"].as_u64().unwrap_or(0),
            ),
        );
    }
    Ok(out)
}

/// A role that may do anything, assumed for the workers: what their calls are told apart
/// by (the fault plan's `roles` scope).
pub(crate) fn worker_role(
    bridge: &Bridge,
    sdk: &aws_config::SdkConfig,
    name: &str,
) -> Result<crate::iam::Credentials> {
    let (account, _) = vodpipe_aws::config::caller_account(bridge, sdk)?;
    let all = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    crate::iam::make_role(
        bridge,
        sdk,
        &account,
        &format!("{name}-load-worker"),
        Some(&all),
    )
}

/// What a run of requests costs at us-east-1 list prices: S3 $0.005 per 1,000 PUT/POST/
/// LIST and $0.0004 per 1,000 GET/HEAD; SQS $0.40 per million (per 64 KB); DynamoDB
/// on-demand $0.625 per million write units (1 KB) and $0.125 per million read units
/// (4 KB strongly consistent), transactions at twice. Units are estimated from the
/// request and response sizes the emulator saw.
fn request_cost(service: &str, op: &str, requests: u64, bytes_in: u64, bytes_out: u64) -> f64 {
    let n = requests as f64;
    match service {
        "s3" => match op {
            "GET" | "HEAD" => n * 0.0004 / 1000.0,
            _ => n * 0.005 / 1000.0,
        },
        "sqs" => n.max((bytes_in as f64 / 65536.0).ceil()) * 0.40 / 1e6,
        "dynamodb" => {
            let per = |bytes: u64, unit: f64| {
                (bytes as f64 / requests.max(1) as f64 / unit)
                    .ceil()
                    .max(1.0)
            };
            match op {
                "GetItem" | "Query" | "Scan" | "BatchGetItem" => {
                    n * per(bytes_out, 4096.0) * 0.125 / 1e6
                }
                "TransactWriteItems" => 2.0 * n * per(bytes_in, 1024.0) * 0.625 / 1e6,
                "TransactGetItems" => 2.0 * n * per(bytes_out, 4096.0) * 0.125 / 1e6,
                _ => n * per(bytes_in, 1024.0) * 0.625 / 1e6,
            }
        }
        _ => 0.0,
    }
}

/// The fleet tick's stitch sweep, as a deployment runs it: a worker killed between its
/// last commit and its stitch request leaves its job STITCHING with no request, which
/// only the sweep asks for again (once the stitch queue is empty). Stale after two leases.
pub(crate) fn sweep_stitches(aws: &Aws, lease_seconds: u64, say: &dyn Fn(String)) {
    let stale = (2 * lease_seconds) as f64;
    if let Err(e) = vodpipe_control::sweep::restitch_stranded(&aws.state, &aws.state, stale, false)
    {
        say(format!("the stitch sweep failed: {e}"));
    }
}

/// Jobs in `status`, counted with one query on the status index.
pub(crate) fn count_in(aws: &Aws, db: &aws_sdk_dynamodb::Client, status: JobStatus) -> Result<u64> {
    let mut total = 0u64;
    let mut start = None;
    loop {
        let page = aws
            .bridge
            .run(
                db.query()
                    .table_name(&aws.settings.table)
                    .index_name(vodpipe_aws::dynamo::STATUS_INDEX)
                    .key_condition_expression("#s = :s")
                    .expression_attribute_names("#s", "status")
                    .expression_attribute_values(
                        ":s",
                        aws_sdk_dynamodb::types::AttributeValue::S(status.as_str().into()),
                    )
                    .select(aws_sdk_dynamodb::types::Select::Count)
                    .set_exclusive_start_key(start.take())
                    .send(),
            )
            .context("counting jobs")?;
        total += page.count().max(0) as u64;
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return Ok(total),
        }
    }
}

/// An init segment made once with ffmpeg (the only media the run needs).
pub(crate) fn template_init(dir: &Path) -> Result<PathBuf> {
    let clip = dir.join("template.mp4");
    let ok = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=64x36:rate=25",
        ])
        .args(["-t", "1", "-c:v", "libx264", "-f", "mp4"])
        .args(["-movflags", "+frag_keyframe+empty_moov+default_base_moof"])
        .arg(&clip)
        .status()
        .context("running ffmpeg (make deps installs it)")?;
    if !ok.success() {
        bail!("ffmpeg could not make the template segment");
    }
    let split = vodpipe_media::mp4::split(&std::fs::read(&clip)?, "template")?;
    let init = dir.join("init.mp4");
    std::fs::write(&init, split.init)?;
    Ok(init)
}

/// Starts a `load-worker` process; with `no_stitch`, one that leaves the stitch queue to
/// the stitch function.
pub(crate) fn spawn_worker(
    env: &[(String, String)],
    a: &LoadArgs,
    init: &Path,
    no_stitch: bool,
) -> Result<Child> {
    Ok(Command::new(std::env::current_exe()?)
        .arg("load-worker")
        .args(no_stitch.then_some("--no-stitch"))
        .arg("--init")
        .arg(init)
        .args(["--encode-ms", &a.encode_ms.to_string()])
        .args(["--lease-seconds", &a.lease_seconds.to_string()])
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?)
}

/// Runs the control-plane load (`--deployed` is [`crate::burst::run`]) and prints its
/// report; non-zero when a job was lost or published twice.
pub fn run(a: LoadArgs) -> Result<i32> {
    let moto = Moto::start_or_reuse()?;
    let endpoint = moto
        .env()
        .into_iter()
        .find(|(k, _)| k == "AWS_ENDPOINT_URL")
        .map(|(_, v)| v)
        .context("no emulator endpoint")?;
    let bridge = Bridge::new()?;
    let sdk = bridge.sdk_config();
    let name = format!("load{}", std::process::id());
    let settings = AwsSettings::resolve(&bridge, &sdk, &name)?;
    vodpipe_aws::bootstrap::bootstrap(&bridge, &sdk, &settings)?;
    let aws = Aws::connect(settings.clone())?;
    let db = aws_sdk_dynamodb::Client::new(&sdk);
    let scratch = std::env::temp_dir().join(format!("vodpipe-load-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let init = template_init(&scratch)?;
    let mut env = moto.env();
    env.extend(settings.env());
    if !a.faults.is_empty() {
        // The workers sign as a role of their own, so the faults reach their calls and not
        // the run's own bookkeeping.
        env.extend(worker_role(&bridge, &sdk, &name)?.env());
        let plan = crate::faults::plan(a.fault_seed, false, &a.faults)?;
        crate::moto::control(&endpoint, "POST", "/_vodpipe/faults", Some(&plan))?;
    } else {
        crate::moto::control(&endpoint, "DELETE", "/_vodpipe/faults", None)?;
    }
    env.push((
        "VODPIPE_STATE".into(),
        scratch.join("workers").display().to_string(),
    ));
    let jp = synthetic_plan(a.items);
    let doc = serde_json::to_string(&jp)?;
    let say = |s: String| {
        if !a.json {
            eprintln!("{s}");
        }
    };
    say(format!(
        "load: {} jobs × {} items ({} rungs), at most {} in flight, {} workers, a kill every {} s, {:.0} % duplicates",
        a.jobs,
        a.items,
        jp.rungs.len(),
        a.in_flight,
        a.workers,
        a.kill_every,
        a.duplicates * 100.0
    ));
    crate::moto::control(&endpoint, "DELETE", "/_vodpipe/requests", None)?;
    let started = Instant::now();
    let mut workers: Vec<Child> = (0..a.workers)
        .map(|_| spawn_worker(&env, &a, &init, false))
        .collect::<Result<_>>()?;
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let mut kills = 0u32;
    let mut last_kill = Instant::now();
    let mut polls = 0u64;
    let mut chaos = |workers: &mut Vec<Child>, dice: &mut Dice, kills: &mut u32| -> Result<()> {
        if a.kill_every > 0.0 && last_kill.elapsed().as_secs_f64() >= a.kill_every {
            last_kill = Instant::now();
            let victim = (dice.next() % workers.len() as u64) as usize;
            workers[victim].kill()?;
            workers[victim].wait()?;
            workers[victim] = spawn_worker(&env, &a, &init, false)?;
            *kills += 1;
        }
        Ok(())
    };
    // Uploads arrive from several ingests at once, as S3 events do; the main thread kills
    // and restarts workers meanwhile.
    let next = std::sync::atomic::AtomicU32::new(0);
    let dup_count = std::sync::atomic::AtomicU32::new(0);
    let planners_done = std::sync::atomic::AtomicU32::new(0);
    // Jobs finished (published or failed), as the main thread last counted them.
    let finished = std::sync::atomic::AtomicU64::new(0);
    let planned: Result<()> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..PLANNERS)
            .map(|p| {
                let (aws, doc, jp, next, dup_count, planners_done, finished) = (
                    &aws,
                    &doc,
                    &jp,
                    &next,
                    &dup_count,
                    &planners_done,
                    &finished,
                );
                scope.spawn(move || -> Result<()> {
                    let mut dice = Dice(0x2545_f491_4f6c_dd1d ^ ((u64::from(p) + 1) * 0x9e37));
                    let result = (|| -> Result<()> {
                        loop {
                            let j = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            if j >= a.jobs {
                                return Ok(());
                            }
                            while a.in_flight > 0
                                && u64::from(j)
                                    >= finished.load(std::sync::atomic::Ordering::SeqCst)
                                        + u64::from(a.in_flight)
                            {
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            for item in plan_job(aws, &load_job_id(j), doc, jp)? {
                                if dice.chance(a.duplicates) {
                                    aws.state
                                        .send(Queue::Work(Tier::Standard), &Message::Item(item))?;
                                    dup_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                }
                            }
                        }
                    })();
                    planners_done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    result
                })
            })
            .collect();
        let mut last_count = Instant::now();
        while planners_done.load(std::sync::atomic::Ordering::SeqCst) < PLANNERS {
            chaos(&mut workers, &mut dice, &mut kills)?;
            if a.in_flight > 0 && last_count.elapsed() >= Duration::from_secs(1) {
                last_count = Instant::now();
                let done = count_in(&aws, &db, JobStatus::Published)?
                    + count_in(&aws, &db, JobStatus::Failed)?;
                polls += 2;
                finished.store(done, std::sync::atomic::Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a planner panicked"))??;
        }
        Ok(())
    });
    planned?;
    let duplicates = dup_count.load(std::sync::atomic::Ordering::SeqCst);
    let planned = started.elapsed().as_secs_f64();
    say(format!(
        "planned and queued in {planned:.1} s; waiting for PUBLISHED"
    ));
    let mut last_report = Instant::now();
    let mut last_sweep = Instant::now();
    let (published, failed) = loop {
        let published = count_in(&aws, &db, JobStatus::Published)?;
        let failed = count_in(&aws, &db, JobStatus::Failed)?;
        polls += 2;
        if published + failed >= u64::from(a.jobs) {
            break (published, failed);
        }
        if started.elapsed() > Duration::from_secs(a.timeout) {
            say(format!("timed out: {published} published, {failed} failed"));
            break (published, failed);
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            last_report = Instant::now();
            say(format!(
                "  {:.0} s: {published}/{} published, {kills} kills",
                started.elapsed().as_secs_f64(),
                a.jobs
            ));
        }
        chaos(&mut workers, &mut dice, &mut kills)?;
        // The fleet's sweep, as a deployment's tick runs it: a worker killed between its
        // last commit and sending the stitch request leaves its job STITCHING with no
        // request, which only the sweep asks for again (once the stitch queue is empty).
        if last_sweep.elapsed() >= Duration::from_secs(5) {
            last_sweep = Instant::now();
            sweep_stitches(&aws, a.lease_seconds, &say);
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let elapsed = started.elapsed().as_secs_f64();
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let counts = request_counts(&endpoint)?;
    let injected = crate::moto::control(&endpoint, "GET", "/_vodpipe/faults", None)?;
    // The checks below read the table; the counts above are the run's own.
    let mut lost = Vec::new();
    let mut twice = Vec::new();
    let mut output_minutes = 0.0;
    for j in 0..a.jobs {
        let id = load_job_id(j);
        match aws.state.job_brief(&id)? {
            Some(job) if job.status == JobStatus::Published && job.done == job.total => {
                output_minutes +=
                    vodpipe_control::cost::output_minutes(job.duration_secs, job.rungs);
                if job.stitch_count != 1 {
                    twice.push(id);
                }
            }
            _ => lost.push(id),
        }
    }
    let (largest, largest_key) = aws.state.jobs.largest_record()?;
    let items_total = f64::from(a.jobs) * f64::from(a.items);
    let mut by_service: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    let mut by_operation = serde_json::Map::new();
    for (key, (n, bytes_in, bytes_out)) in &counts {
        let (service, op) = key.split_once(':').unwrap_or((key.as_str(), ""));
        // The run's own progress polls are not the pipeline's.
        let n = if key == "dynamodb:Query" {
            n.saturating_sub(polls)
        } else {
            *n
        };
        let cost = request_cost(service, op, n, *bytes_in, *bytes_out);
        let e = by_service.entry(service.to_string()).or_default();
        e.0 += n;
        e.1 += cost;
        by_operation.insert(key.clone(), serde_json::json!(n));
    }
    let per_item: serde_json::Map<String, serde_json::Value> = by_service
        .iter()
        .filter(|(s, _)| ["s3", "sqs", "dynamodb"].contains(&s.as_str()))
        .map(|(s, (n, _))| {
            (
                s.clone(),
                serde_json::json!((*n as f64 / items_total * 100.0).round() / 100.0),
            )
        })
        .collect();
    let total_calls: u64 = by_service
        .iter()
        .filter(|(s, _)| ["s3", "sqs", "dynamodb"].contains(&s.as_str()))
        .map(|(_, (n, _))| n)
        .sum();
    let cost: f64 = by_service.values().map(|(_, c)| c).sum();
    let report = serde_json::json!({
        "jobs": a.jobs,
        "items": a.jobs * a.items,
        "in_flight": a.in_flight,
        "workers": a.workers,
        "kills": kills,
        "duplicates": duplicates,
        "published": published,
        "failed": failed,
        "lost": lost.len(),
        "published_twice": twice.len(),
        "seconds": (elapsed * 10.0).round() / 10.0,
        "jobs_per_second": (f64::from(a.jobs) / elapsed * 100.0).round() / 100.0,
        "items_per_second": (items_total / elapsed * 10.0).round() / 10.0,
        "calls_per_item": (total_calls as f64 / items_total * 100.0).round() / 100.0,
        "calls_per_item_by_service": per_item,
        "calls_by_operation": by_operation,
        "output_minutes": (output_minutes * 10.0).round() / 10.0,
        "request_cost_per_1000_output_minutes_usd": if output_minutes > 0.0 { (cost / output_minutes * 1000.0 * 10000.0).round() / 10000.0 } else { 0.0 },
        "largest_item_bytes": largest,
        "largest_item": largest_key,
        "faults": crate::faults::by_service(&injected),
    });
    if !a.json {
        eprintln!(
            "{} jobs, {} items in {elapsed:.1} s: {:.2} jobs/s, {:.1} items/s; {kills} workers killed, {duplicates} duplicate messages",
            a.jobs,
            a.jobs * a.items,
            f64::from(a.jobs) / elapsed,
            items_total / elapsed
        );
        for (s, (n, c)) in &by_service {
            eprintln!(
                "  {s:<10} {n:>8} calls  {:>6.2} per item  ${c:.4}",
                *n as f64 / items_total
            );
        }
        eprintln!(
            "lost {}, published twice {}, largest record {largest} bytes ({largest_key})",
            lost.len(),
            twice.len()
        );
    }
    println!("{report}");
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(if lost.is_empty() && twice.is_empty() && failed == 0 {
        0
    } else {
        1
    })
}

/// A worker process of the load: the real worker, with the stand-in encoder.
pub fn worker(a: LoadWorkerArgs) -> Result<i32> {
    let aws = Aws::from_env()?;
    let init = std::fs::read(&a.init).with_context(|| format!("reading {}", a.init.display()))?;
    let scratch = std::env::var("VODPIPE_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("vodpipe-load-worker"));
    let mut cfg = Config::new(scratch.join(std::process::id().to_string()));
    cfg.lease_ttl = Duration::from_secs(a.lease_seconds.max(2));
    cfg.retry_delay = Duration::from_secs(1);
    let w = Worker::new(
        aws.ports(),
        cfg,
        format!("load-{}", std::process::id()),
        Tier::ALL.to_vec(),
        Shutdown::new(),
    )
    .with_encoder(Box::new(StandInEncoder {
        init,
        delay: Duration::from_millis(a.encode_ms),
    }));
    let mut w = if a.no_stitch {
        w.without_stitching()
    } else {
        w
    };
    match w.run(None) {
        Ok(()) => Ok(0),
        Err(PortError::Backend(e)) => bail!("worker: {e}"),
        Err(e) => bail!("worker: {e}"),
    }
}
