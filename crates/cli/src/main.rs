//! `vodpipe`: the command-line face of the pipeline. Parses arguments, opens the embedded
//! backend and calls one use-case in `vodpipe-control`; nothing here decides anything about
//! media or state.

mod backend;
mod progress;
mod serve;
mod simulate;
mod status;

use anyhow::{bail, Context, Result};
use backend::StateOpts;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vodpipe_control::ingest::{ingest, prepare_local, Source};
use vodpipe_control::job::{job_id, JobStatus};
use vodpipe_control::pipeline::Config;
use vodpipe_control::ports::Tier;
use vodpipe_control::sweep;
use vodpipe_control::worker::{Shutdown, Worker};
use vodpipe_local::fleet::ProcessFleet;
use vodpipe_local::Local;
use vodpipe_media::ladder::{LadderConfig, VideoCodec};
use vodpipe_media::plan::PlanOptions;

/// Video-on-demand transcoding: a source video in, an HLS + DASH ladder out.
#[derive(Parser)]
#[command(name = "vodpipe", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline on local files: ingest, a fleet of workers, wait, report.
    Run(RunArgs),
    /// Probe a file and show its ladder and chunk plan, without encoding.
    Plan(PlanArgs),
    /// Ingest a file into a state directory: probe, plan, queue its work.
    Ingest(IngestArgs),
    /// Work queued items until stopped (SIGTERM/SIGINT) or idle.
    Worker(WorkerArgs),
    /// One job's state, progress, attempts, timings and cost.
    Status(StatusArgs),
    /// Every job, as a table or JSON; `--watch` keeps it live.
    Jobs(JobsArgs),
    /// Treat a folder as the ingest bucket: ingest each file once it stops growing.
    Watch(WatchArgs),
    /// AWS backend administration.
    Aws(AwsArgs),
    /// What N uploads an hour would need from AWS and cost, in virtual time.
    Simulate(simulate::SimulateArgs),
    /// A web console on localhost: live jobs, each job's timeline, a player for what
    /// was published.
    Serve(serve::ServeArgs),
}

#[derive(Args)]
struct AwsArgs {
    #[command(subcommand)]
    command: AwsCommand,
}

#[derive(Subcommand)]
enum AwsCommand {
    /// Create (idempotently) the buckets, queues and table for NAME and print the
    /// `export VODPIPE_…` lines the other commands need.
    Bootstrap {
        /// Deployment name: the table is NAME-jobs, the queues NAME-premium …, the buckets
        /// NAME-ACCOUNT-REGION-ingest and -output (as the SAM template names them).
        #[arg(long)]
        name: String,
        /// Receives before a message moves to its dead-letter queue.
        #[arg(long, default_value_t = 5)]
        max_receives: u32,
    },
    /// Read-only preflight of the account and the deployed stack: Fargate vCPU quotas
    /// against MaxWorkersPerTier, the ECS service-linked role, Lambda concurrency, the
    /// worker image, the workers' network, the probe layer. One line per check with OK,
    /// WARN or FAIL and the command that fixes it; exits 1 if anything FAILs.
    Doctor {
        /// The CloudFormation stack (`sam deploy`'s stack name).
        #[arg(long, default_value = "vodpipe")]
        stack: String,
        /// Worker tasks per tier to size the quota checks for (default: the stack's
        /// MaxWorkersPerTier, or 20).
        #[arg(long)]
        max_workers: Option<u32>,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The fleet function's tick, once, from here: capacity per tier, stitches requested
    /// again, stalled jobs' items queued again, uploads whose ingest failed on every try
    /// ingested again, abandoned ingests resumed. For an operator who will not wait for the
    /// next minute, or a deployment without the function. Resources from the `VODPIPE_…`
    /// variables, or from the stack's fleet function with `--stack`.
    Tick {
        /// Read the fleet function's settings from this deployed stack (variables already
        /// set win; the function's layer ffprobe is not used here).
        #[arg(long)]
        stack: Option<String>,
        /// Read only: say what the tick would do.
        #[arg(long)]
        dry_run: bool,
        /// Give the tick this long (resumed ingests start only while one fits).
        #[arg(long, default_value_t = 300)]
        seconds: u64,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Options for planning new jobs.
#[derive(Args, Clone)]
struct MediaOpts {
    /// Segment duration in seconds.
    #[arg(long, default_value_t = 4.0)]
    segment_seconds: f64,
    /// Target chunk duration in seconds (a run of whole segments, one ffmpeg each).
    #[arg(long, default_value_t = 20.0)]
    chunk_seconds: f64,
    /// Ladder and encoder settings as JSON (see README); defaults to the built-in ladder.
    /// `auto`: the built-in ladder shaped per title (a probe encode of sampled seconds
    /// picks each rung's size and quality step). Given here, it beats an upload's settings.
    #[arg(long)]
    ladder: Option<PathBuf>,
    /// Video codecs to publish every rung in, comma-separated, in order: h264, hevc, av1
    /// (e.g. `h264,av1`). Beats an upload's own choice; default: the ladder's (h264).
    #[arg(long, value_parser = parse_codecs)]
    codecs: Option<CodecList>,
    /// Directory of named ladders (`<name>.json`) uploads may choose with a settings file
    /// (`"ladder": "<name>"`); `watch` defaults to DIR/_vodpipe/profiles.
    #[arg(long, env = "VODPIPE_PROFILES")]
    profiles: Option<PathBuf>,
    /// ffmpeg binary.
    #[arg(long, env = "VODPIPE_FFMPEG", default_value = "ffmpeg")]
    ffmpeg: String,
    /// ffprobe binary.
    #[arg(long, env = "VODPIPE_FFPROBE", default_value = "ffprobe")]
    ffprobe: String,
}

#[derive(Args)]
struct RunArgs {
    /// Source video files.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output directory: published assets appear under it.
    #[arg(long)]
    out: PathBuf,
    /// Worker processes (default: half the cores, at least two, at most one per core).
    /// Each encodes one chunk at a time with threads on every core; two or more keep the
    /// cores busy while one starts, seeks or drains its encoder (see the README's
    /// benchmark).
    #[arg(long)]
    workers: Option<u32>,
    /// Tier for the jobs; beats a settings file beside an input (default: the settings
    /// file's, else standard).
    #[arg(long, value_parser = parse_tier)]
    tier: Option<Tier>,
    /// Print one JSON object per job on stdout instead of progress bars.
    #[arg(long)]
    json: bool,
    /// State directory (default: OUT/.vodpipe).
    #[arg(long)]
    state: Option<PathBuf>,
    #[command(flatten)]
    media: MediaOpts,
}

#[derive(Args)]
struct PlanArgs {
    /// Source video file.
    input: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    media: MediaOpts,
}

#[derive(Args)]
struct IngestArgs {
    /// Source video: a file, or `s3://BUCKET/KEY` with `--backend aws`.
    input: String,
    #[command(flatten)]
    state: StateOpts,
    /// Where published assets go (fixed by the first command on a state directory;
    /// default STATE/out).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Tier: premium (on-demand capacity, first), standard, bulk. Beats the upload's own
    /// settings (metadata, settings file); default: those, else standard.
    #[arg(long, value_parser = parse_tier)]
    tier: Option<Tier>,
    /// Print `{"job_id": …}`.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    media: MediaOpts,
}

#[derive(Args)]
struct WorkerArgs {
    #[command(flatten)]
    state: StateOpts,
    /// Tiers to serve, comma-separated, in any order (premium is always tried first).
    #[arg(long, env = "VODPIPE_TIERS", value_delimiter = ',', default_value = "premium,standard,bulk", value_parser = parse_tier)]
    tiers: Vec<Tier>,
    /// Exit after this many seconds without work (default: never).
    #[arg(long)]
    idle_exit: Option<u64>,
    /// Lease and message visibility, in seconds; heartbeats renew them every third.
    #[arg(long, default_value_t = 30)]
    lease_seconds: u64,
    /// ffmpeg binary.
    #[arg(long, env = "VODPIPE_FFMPEG", default_value = "ffmpeg")]
    ffmpeg: String,
    /// Leave the stitch queue alone (a deployed stack's stitch function consumes it).
    #[arg(long)]
    no_stitch: bool,
}

#[derive(Args)]
struct StatusArgs {
    /// Job id, or the source file it was ingested from.
    job: String,
    #[command(flatten)]
    state: StateOpts,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct JobsArgs {
    #[command(flatten)]
    state: StateOpts,
    /// Only jobs in this state.
    #[arg(long, value_parser = parse_status)]
    status: Option<JobStatus>,
    /// Print JSON (one object per line).
    #[arg(long)]
    json: bool,
    /// Redraw every second until interrupted.
    #[arg(long)]
    watch: bool,
}

#[derive(Args)]
struct WatchArgs {
    /// The folder to watch.
    dir: PathBuf,
    #[command(flatten)]
    state: StateOpts,
    /// Where published assets go (default STATE/out).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Tier for new jobs that choose none (by a settings file or a prefix directory).
    #[arg(long, default_value = "standard", value_parser = parse_tier)]
    tier: Tier,
    /// Sub-directories that choose a tier, PREFIX=TIER, comma-separated ("" for none).
    #[arg(long, default_value = "premium/=premium,archive/=bulk")]
    prefix_tiers: String,
    /// How long a stable file without a settings file waits for one, in seconds.
    #[arg(long, default_value_t = 2.0)]
    settings_wait: f64,
    /// A file is ingested once its size and mtime are unchanged for this long.
    #[arg(long, default_value_t = 2)]
    stable_seconds: u64,
    /// Worker processes to start when work arrives (0: run `vodpipe worker` yourself).
    #[arg(long, default_value_t = 1)]
    workers: u32,
    #[command(flatten)]
    media: MediaOpts,
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    Tier::parse(s).ok_or_else(|| format!("unknown tier {s:?} (premium, standard, bulk)"))
}

fn parse_status(s: &str) -> Result<JobStatus, String> {
    JobStatus::parse(s).ok_or_else(|| {
        format!("unknown state {s:?} (QUEUED, PROBING, ENCODING, STITCHING, PUBLISHED, FAILED)")
    })
}

fn main() {
    // Fail points named in FAILPOINTS; they exist only in test builds (the crash-window
    // tests), and this does nothing elsewhere.
    let _failpoints = fail::FailScenario::setup();
    let cli = Cli::parse();
    let json_logs =
        matches!(cli.command, Command::Worker(_)) && std::env::var_os("VODPIPE_LOG_JSON").is_some();
    let filter = tracing_subscriber::EnvFilter::try_from_env("VODPIPE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    if json_logs {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let result = match cli.command {
        Command::Run(a) => run(a),
        Command::Plan(a) => plan(a),
        Command::Ingest(a) => ingest_cmd(a),
        Command::Worker(a) => worker(a),
        Command::Status(a) => status::status(a.job, &a.state, a.json),
        Command::Jobs(a) => status::jobs(&a.state, a.status, a.json, a.watch),
        Command::Aws(a) => aws_cmd(a),
        Command::Watch(a) => watch(a),
        Command::Simulate(a) => simulate::simulate(a),
        Command::Serve(a) => serve::serve(a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("vodpipe: {e:#}");
            std::process::exit(2);
        }
    }
}

/// The pipeline configuration from the media options.
fn config(scratch: &Path, m: &MediaOpts) -> Result<Config> {
    let mut c = Config::new(scratch);
    c.ffmpeg = m.ffmpeg.clone();
    c.ffprobe = m.ffprobe.clone();
    if !(1.0..=20.0).contains(&m.segment_seconds) {
        bail!("--segment-seconds must be between 1 and 20");
    }
    if m.chunk_seconds < m.segment_seconds {
        bail!("--chunk-seconds must be at least --segment-seconds");
    }
    c.plan = PlanOptions {
        segment_secs: m.segment_seconds,
        chunk_secs: m.chunk_seconds,
    };
    if let Some(p) = &m.ladder {
        c.ladder = if p.as_os_str() == "auto" && !p.exists() {
            LadderConfig {
                auto: true,
                ..LadderConfig::default()
            }
        } else {
            LadderConfig::from_file(p)?
        };
        c.settings.command_ladder = true;
    }
    if let Some(CodecList(codecs)) = &m.codecs {
        c.ladder.codecs = codecs.clone();
        c.settings.command_codecs = Some(codecs.clone());
    }
    Ok(c)
}

/// The codecs `--codecs` names (one value, so clap does not split it into many).
#[derive(Clone, Debug)]
struct CodecList(Vec<VideoCodec>);

/// `--codecs`: a comma-separated list of codec names.
fn parse_codecs(s: &str) -> std::result::Result<CodecList, String> {
    VideoCodec::parse_list(s).map(CodecList)
}

/// The embedded backend reading ladder profiles from `dir`, if one is given.
fn with_profiles(mut local: Local, dir: Option<&Path>) -> Local {
    if let Some(d) = dir {
        local.objects = local.objects.clone().with_profiles(d);
    }
    local
}

/// Opens the embedded backend; `workers` > 0 lets ingest start worker processes, which
/// use `ffmpeg` when given.
pub(crate) fn open_with(
    state: &Path,
    out: Option<&Path>,
    workers: u32,
    max_receives: u32,
    ffmpeg: Option<&str>,
) -> Result<Local> {
    // Absolute, so workers started from another directory agree on every path.
    let state =
        std::path::absolute(state).with_context(|| format!("resolving {}", state.display()))?;
    let exe = std::env::current_exe().context("locating the vodpipe binary")?;
    let mut fleet = ProcessFleet::new(exe, state.clone(), workers, 2);
    if let Some(f) = ffmpeg {
        fleet = fleet.with_ffmpeg(f);
    }
    Local::open(&state, out, fleet, max_receives)
        .with_context(|| format!("opening state {}", state.display()))
}

/// Starts workers (up to `max`) while jobs are unfinished, so retries and redeliveries
/// that become visible after the last worker went idle are still picked up: the control
/// plane's sweep for a fleet sized by outstanding work ([`sweep::outstanding_work`]).
fn reconcile(local: &Local, max: u32) -> Result<()> {
    use vodpipe_control::ports::Fleet;
    if max == 0 {
        return Ok(());
    }
    if let Some((tier, work)) = sweep::outstanding_work(&local.state)? {
        local.fleet.ensure_capacity(tier, work.min(max))?;
    }
    Ok(())
}

/// A local file's identity: directory, name, and size + mtime as its version. Its key
/// (what prefix maps and asset names read) is its name, or its path under `root` (a
/// watched directory, the local stand-in for a bucket).
fn local_source(path: &Path, root: Option<&Path>) -> Result<Source> {
    let abs =
        std::fs::canonicalize(path).with_context(|| format!("cannot read {}", path.display()))?;
    let meta = std::fs::metadata(&abs).with_context(|| format!("cannot read {}", abs.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let dir = abs
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let key = root
        .and_then(|r| std::fs::canonicalize(r).ok())
        .and_then(|r| {
            abs.strip_prefix(r)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| name.clone());
    Ok(Source {
        job_id: job_id(&dir, &name, &format!("{}:{mtime}", meta.len())),
        version: None,
        // A file rewritten in place is a newer upload when its modification time is later.
        sequencer: Some(format!("{mtime:032X}")),
        uri: abs.display().to_string(),
        key,
    })
}

fn run(a: RunArgs) -> Result<i32> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let state = a
        .state
        .clone()
        .unwrap_or_else(|| a.out.join(backend::RUN_STATE));
    let workers = a.workers.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
        (cores / 2).max(2).min(cores.max(1))
    });
    let local = with_profiles(
        open_with(&state, Some(&a.out), workers, 5, Some(&a.media.ffmpeg))?,
        a.media.profiles.as_deref(),
    );
    let mut cfg = config(&state.join("scratch"), &a.media)?;
    cfg.settings.command_tier = a.tier;
    let mut ids = Vec::new();
    for input in &a.inputs {
        let source = local_source(input, None)?;
        let ing = ingest(local.ports(), &cfg, &source, true)?;
        ids.push(ing.job_id);
    }
    let labels: Vec<String> = a.inputs.iter().map(|p| progress::label(p)).collect();
    let jobs = progress::follow(&local, &ids, &labels, !a.json, workers)?;
    local.fleet.stop_all();
    let mut failed = 0;
    for j in &jobs {
        if a.json {
            println!("{}", status::job_json(&local.objects, j));
        } else if let (Some(m), Some(d)) = (&j.master_key, &j.dash_key) {
            use vodpipe_control::ports::ObjectStore;
            eprintln!(
                "{} PUBLISHED {}\n  HLS:  {}\n  DASH: {}",
                j.id,
                j.source,
                local.objects.locate(m),
                local.objects.locate(d)
            );
        } else {
            eprintln!(
                "{} {} {}: {}",
                j.id,
                j.status,
                j.source,
                j.error.as_deref().unwrap_or("")
            );
        }
        if j.status != JobStatus::Published {
            failed += 1;
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

fn ingest_cmd(a: IngestArgs) -> Result<i32> {
    let backend = match a.state.open(a.out.as_deref(), 0, None, false)? {
        backend::Backend::Local(l) => {
            backend::Backend::Local(Box::new(with_profiles(*l, a.media.profiles.as_deref())))
        }
        aws => aws,
    };
    let mut cfg = config(&a.state.scratch()?, &a.media)?;
    cfg.settings.command_tier = a.tier;
    let source = match &backend {
        backend::Backend::Aws(aws) => aws
            .source(&a.input)
            .with_context(|| format!("cannot read {}", a.input))?,
        backend::Backend::Local(_) => local_source(Path::new(&a.input), None)?,
    };
    let ing = ingest(backend.ports(), &cfg, &source, true)?;
    let job = backend
        .jobs()
        .job(&ing.job_id)?
        .context("job vanished after ingest")?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"job_id": ing.job_id, "created": ing.created, "status": job.status.as_str(), "error": job.error})
        );
    } else {
        println!(
            "{} {}{}",
            ing.job_id,
            job.status,
            job.error.map(|e| format!(": {e}")).unwrap_or_default()
        );
    }
    Ok(if job.status == JobStatus::Failed {
        1
    } else {
        0
    })
}

fn worker(a: WorkerArgs) -> Result<i32> {
    let backend = a.state.open(None, 0, None, false)?;
    let shutdown = Shutdown::new();
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, shutdown.flag()).context("installing signal handlers")?;
    }
    let mut cfg = Config::new(a.state.scratch()?);
    cfg.ffmpeg = a.ffmpeg;
    cfg.lease_ttl = Duration::from_secs(a.lease_seconds.max(3));
    let owner = format!("{}-{}", hostname(), std::process::id());
    let mut w = Worker::new(backend.ports(), cfg, owner, a.tiers, shutdown.clone());
    if a.no_stitch {
        w = w.without_stitching();
    }
    let started = Instant::now();
    w.run(a.idle_exit.map(Duration::from_secs))?;
    // A stop is news only when it cut an attempt short, and that attempt already said so
    // ("interrupted; giving the item back"); an idle worker stopped by `run` is routine.
    if shutdown.is_triggered() {
        tracing::info!(after = ?started.elapsed(), "stopped by signal");
    }
    Ok(0)
}

fn aws_cmd(a: AwsArgs) -> Result<i32> {
    match a.command {
        AwsCommand::Bootstrap { name, max_receives } => {
            let bridge = vodpipe_aws::config::Bridge::new()?;
            let sdk = bridge.sdk_config();
            let mut settings = vodpipe_aws::config::AwsSettings::resolve(&bridge, &sdk, &name)?;
            settings.max_receives = max_receives;
            vodpipe_aws::bootstrap::bootstrap(&bridge, &sdk, &settings)?;
            print!("{}", settings.exports());
            Ok(0)
        }
        AwsCommand::Doctor {
            stack,
            max_workers,
            json,
        } => {
            let bridge = vodpipe_aws::config::Bridge::new()?;
            let sdk = bridge.sdk_config();
            let report = vodpipe_doctor::run(
                &bridge,
                &sdk,
                &vodpipe_doctor::Options { stack, max_workers },
            );
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            Ok(i32::from(report.worst() == vodpipe_doctor::Level::Fail))
        }
        AwsCommand::Tick {
            stack,
            dry_run,
            seconds,
            json,
        } => aws_tick(stack, dry_run, seconds, json),
    }
}

/// `vodpipe aws tick`.
fn aws_tick(stack: Option<String>, dry_run: bool, seconds: u64, json: bool) -> Result<i32> {
    if let Some(stack) = stack {
        let bridge = vodpipe_aws::config::Bridge::new()?;
        let env = vodpipe_doctor::fleet_environment(&bridge, &bridge.sdk_config(), &stack)
            .map_err(|e| anyhow::anyhow!("reading stack {stack}: {e}"))?;
        for (k, v) in env {
            // The function's probe is a layer this machine does not have.
            if k.starts_with("VODPIPE_") && k != "VODPIPE_FFPROBE" && std::env::var_os(&k).is_none()
            {
                std::env::set_var(k, v);
            }
        }
    }
    let shared = vodpipe_functions::env::Shared::from_env().context("connecting to AWS")?;
    let until = Instant::now() + Duration::from_secs(seconds);
    let report = vodpipe_functions::fleet::tick(&shared, until, dry_run)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    let would = if dry_run { "would " } else { "" };
    for t in &report.tiers {
        match &t.error {
            Some(e) => println!(
                "{:<9} {} queued; capacity not reconciled: {e}",
                t.tier, t.depth
            ),
            None => println!(
                "{:<9} {} queued, {} workers{}",
                t.tier,
                t.depth,
                t.workers,
                if dry_run { " wanted" } else { "" }
            ),
        }
    }
    let list = |what: &str, ids: &[String]| {
        println!(
            "{what}: {}",
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        );
    };
    list(
        &format!("stitch {would}requested again"),
        &report.restitched,
    );
    let requeued: Vec<String> = report
        .requeued
        .iter()
        .map(|r| format!("{} ({} items)", r.job, r.items))
        .collect();
    list(&format!("stalled jobs {would}queued again"), &requeued);
    if dry_run {
        println!(
            "failed uploads that would be ingested again: {}",
            report.redrive_waiting
        );
    } else {
        list("failed uploads ingested again", &report.redriven);
        if report.redrive_waiting > 0 {
            println!(
                "failed uploads still waiting (next tick): {}",
                report.redrive_waiting
            );
        }
    }
    list(
        &format!("abandoned ingests {would}resumed"),
        &report.resumed,
    );
    Ok(0)
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "local".into())
}

fn plan(a: PlanArgs) -> Result<i32> {
    let cfg = config(&std::env::temp_dir(), &a.media)?;
    // A preview runs the per-title analysis in place, where a job runs it as a work item.
    let prepared = prepare_local(&cfg, &a.input).and_then(|mut p| {
        if p.ladder_pending() {
            let secs = p.media.video.as_ref().map_or(0.0, |v| v.duration_secs());
            p.choose_ladder(&cfg.ffmpeg, &a.input, &cfg.scratch, secs, &[])?;
        }
        Ok(p)
    });
    let p = match prepared {
        Ok(p) => p,
        Err(e) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"source": a.input, "error": e.to_string()})
                );
            } else {
                eprintln!("{}: {e}", a.input.display());
            }
            return Ok(1);
        }
    };
    let v = p.media.video.as_ref().context("no video")?;
    if a.json {
        let mut media = serde_json::to_value(&p.media)?;
        if let Some(video) = media.get_mut("video").and_then(|v| v.as_object_mut()) {
            video.remove("frame_pts");
        }
        println!(
            "{}",
            serde_json::json!({
                "source": a.input,
                "media": media,
                "frames": p.plan.total_frames,
                "duration_secs": v.duration_secs(),
                "rungs": p.rungs,
                "per_title": p.per_title,
                "segments": p.plan.segments.len(),
                "chunks": p.plan.chunks.iter().map(|c| serde_json::json!({
                    "index": c.index, "first_frame": c.first_frame, "frames": c.frames,
                    "segments": c.segments.len(), "seek_secs": c.seek_secs})).collect::<Vec<_>>(),
            })
        );
        return Ok(0);
    }
    let (dw, dh) = v.display_size();
    println!("{}", a.input.display());
    println!(
        "  container {}  video {} {}x{} (display {dw}x{dh}, rotation {}°) {} {:.3} fps{}{}",
        p.media.format_name,
        v.codec,
        v.width,
        v.height,
        v.rotation,
        v.pix_fmt,
        v.frame_rate.as_f64(),
        if v.vfr { " VFR" } else { "" },
        if v.field_order == vodpipe_media::probe::FieldOrder::Interlaced {
            " interlaced"
        } else {
            ""
        },
    );
    for t in &p.media.audio {
        println!(
            "  audio #{} {} {} ch {} Hz {}",
            t.index,
            t.codec,
            t.channels,
            t.sample_rate,
            t.language.as_deref().unwrap_or("und")
        );
    }
    println!(
        "  {} frames, {:.3} s",
        p.plan.total_frames,
        v.duration_secs()
    );
    if let Some(a) = &p.per_title {
        print_per_title(a);
    }
    println!("ladder:");
    for r in &p.rungs {
        let step = if r.crf_offset > 0 {
            format!("  crf +{}", r.crf_offset)
        } else {
            String::new()
        };
        println!(
            "  {:>6}  {}x{}  max {} kb/s{step}",
            r.name, r.width, r.height, r.max_kbps
        );
    }
    println!(
        "plan: {} segments of ~{} s in {} chunks",
        p.plan.segments.len(),
        p.plan.segment_secs,
        p.plan.chunks.len()
    );
    for c in &p.plan.chunks {
        println!(
            "  chunk {:>4}: frames {:>7}..{:<7} ({} segments, seek {:.3} s)",
            c.index,
            c.first_frame,
            c.first_frame + c.frames,
            c.segments.len(),
            c.seek_secs
        );
    }
    Ok(0)
}

/// The per-title analysis: every probe point (`*` on the rate–quality frontier) and what
/// replaced each fixed rung (bitrate, PSNR and SSIM of each).
fn print_per_title(a: &vodpipe_media::pertitle::Analysis) {
    println!(
        "per-title: {:.1} s sampled, quality at {}, {:.1} s; probe bits {:.0} % of the fixed ladder's",
        a.sampled_secs,
        a.display,
        a.secs,
        a.bits_ratio * 100.0
    );
    for pt in &a.points {
        println!(
            "  {:>9} crf +{:<2} {:>6.0} kb/s {:>6.2} dB  SSIM {:.4}{}",
            format!("{}x{}", pt.width, pt.height),
            pt.crf_offset,
            pt.kbps,
            pt.psnr,
            pt.ssim,
            if pt.frontier { "  *" } else { "" }
        );
    }
    for c in &a.choices {
        println!(
            "  {:>6} ({:.0} kb/s, {:.2} dB, {:.4}) -> {} ({:.0} kb/s, {:.2} dB, {:.4})",
            c.fixed,
            c.fixed_kbps,
            c.fixed_psnr,
            c.fixed_ssim,
            c.rung
                .as_deref()
                .unwrap_or("dropped: a rung above is already that point"),
            c.kbps,
            c.psnr,
            c.ssim
        );
    }
}

fn watch(a: WatchArgs) -> Result<i32> {
    let profiles = a
        .media
        .profiles
        .clone()
        .unwrap_or_else(|| a.dir.join(vodpipe_control::settings::PROFILES_PREFIX));
    let local = with_profiles(
        open_with(
            &a.state.state_dir()?,
            a.out.as_deref(),
            a.workers,
            a.state.max_receives,
            Some(&a.media.ffmpeg),
        )?,
        Some(&profiles),
    );
    let mut cfg = config(&a.state.scratch()?, &a.media)?;
    cfg.settings.default_tier = a.tier;
    cfg.settings.prefix_tiers =
        vodpipe_control::settings::SettingsPolicy::parse_prefix_tiers(&a.prefix_tiers)
            .map_err(|e| anyhow::anyhow!("--prefix-tiers: {e}"))?;
    if !(0.0..=120.0).contains(&a.settings_wait) {
        bail!("--settings-wait must be between 0 and 120 seconds");
    }
    cfg.settings.settings_wait = Duration::from_secs_f64(a.settings_wait);
    let shutdown = Shutdown::new();
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, shutdown.flag()).context("installing signal handlers")?;
    }
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    eprintln!("watching {} (Ctrl-C to stop)", a.dir.display());
    // path -> (size, mtime, since when unchanged)
    let mut seen: std::collections::HashMap<PathBuf, (u64, std::time::SystemTime, Instant)> =
        Default::default();
    let mut done: std::collections::HashSet<String> = Default::default();
    let mut last_sweep: Option<Instant> = None;
    while !shutdown.is_triggered() {
        // Once a minute, the sweeps for work no event will finish: stitches lost with the
        // worker that should have requested them (a job stranded in STITCHING), and jobs
        // whose items have no message left (ENCODING without progress).
        if last_sweep.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            last_sweep = Some(Instant::now());
            let swept = sweep::restitch_stranded(
                &local.state,
                &local.state,
                sweep::STITCH_STALE_SECS,
                false,
            )
            .and_then(|_| {
                sweep::requeue_stalled(
                    &local.state,
                    &local.state,
                    &cfg,
                    vodpipe_media::process::now_secs(),
                    Instant::now() + Duration::from_secs(10),
                    false,
                )
            });
            if let Err(e) = swept {
                eprintln!("sweeping stranded jobs failed, will retry: {e}");
            }
        }
        for (path, meta) in uploads_under(&a.dir)? {
            let (size, mtime) = (meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH));
            let e = seen
                .entry(path.clone())
                .or_insert((size, mtime, Instant::now()));
            if e.0 != size || e.1 != mtime {
                *e = (size, mtime, Instant::now());
                continue;
            }
            if e.2.elapsed() < Duration::from_secs(a.stable_seconds) {
                continue;
            }
            // One unreadable or vanished file must not stop the watcher.
            let source = match local_source(&path, Some(&a.dir)) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("skipping {}: {e:#}", path.display());
                    continue;
                }
            };
            if !done.insert(source.job_id.clone()) {
                continue;
            }
            match ingest(local.ports(), &cfg, &source, false) {
                Ok(ing) => eprintln!("{} {} {}", ing.job_id, ing.status, path.display()),
                Err(e) => {
                    eprintln!("ingesting {} failed, will retry: {e}", path.display());
                    done.remove(&source.job_id);
                }
            }
        }
        // Keep workers alive while anything is unfinished (they exit when idle).
        reconcile(&local, a.workers)?;
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(0)
}

/// Every file under `dir` that is an upload: sub-directories (prefixes) included; hidden
/// files, settings files and `_vodpipe/` (profiles) left out.
fn uploads_under(dir: &Path) -> Result<Vec<(PathBuf, std::fs::Metadata)>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if d != dir => {
                eprintln!("skipping {}: {e}", d.display());
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", d.display())),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(meta) = entry.metadata() else { continue };
            if name.starts_with('.') || (d == dir && name == "_vodpipe") {
                continue;
            }
            if meta.is_dir() {
                todo.push(path);
            } else if meta.is_file()
                && !vodpipe_control::settings::is_settings_key(&name)
                && !vodpipe_media::captions::is_sidecar_name(&name)
            {
                out.push((path, meta));
            }
        }
    }
    Ok(out)
}
