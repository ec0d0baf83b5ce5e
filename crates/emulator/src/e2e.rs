//! `vodpipe-emulator e2e`: the deployed pipeline, end to end, on the emulator.
//!
//! Bootstraps the resources, wires what the SAM template wires (bucket notification,
//! queue mappings, schedule, Spot-interruption rule, job-state rule, CloudFront), runs the
//! real function binaries under the runtime API and worker tasks as Fargate would, then
//! uploads one object and waits for its job. The published asset is downloaded into the
//! output directory and the job's status JSON is printed with `master` and `dash` as paths
//! there. Exit status 0 means PUBLISHED (a first publish invalidates nothing).

use crate::fargate::{sibling, Fargate, FargateStats};
use crate::moto::Moto;
use crate::runtime_api::FunctionHost;
use crate::sources::{s3_to_function, schedule, sqs_to_function, Hold, S3Delivery, SourceCtx};
use anyhow::{bail, Context, Result};
use aws_sdk_cloudfront::types::{
    DefaultCacheBehavior, DistributionConfig, Origin, Origins, S3OriginConfig, ViewerProtocolPolicy,
};
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vodpipe_aws::config::{AwsSettings, Bridge};
use vodpipe_control::job::JobStatus;
use vodpipe_control::ports::{JobStore, ObjectStore, Queue};

/// `e2e` options.
#[derive(Debug, clap::Args)]
pub struct E2eArgs {
    /// The video to upload.
    #[arg(long)]
    pub input: PathBuf,
    /// The object key to upload it under (spaces, `+` and non-ASCII welcome).
    #[arg(long)]
    pub key: String,
    /// User metadata on that upload, NAME=VALUE (`vodpipe-tier=premium`), repeatable.
    #[arg(long = "metadata", value_name = "NAME=VALUE")]
    pub metadata: Vec<String>,
    /// A ladder profile to put in the deployment first, NAME=PATH (a JSON ladder file),
    /// repeatable: what an operator adds under `_vodpipe/profiles/` for uploads to name
    /// with `--metadata vodpipe-ladder=NAME`.
    #[arg(long = "profile", value_name = "NAME=PATH")]
    pub profiles: Vec<String>,
    /// An overlay image to put in the deployment first, NAME=PATH (a PNG), repeatable: what
    /// an operator adds under `_vodpipe/overlays/` for uploads to name with
    /// `--metadata vodpipe-overlay=NAME`.
    #[arg(long = "overlay-image", value_name = "NAME=PATH")]
    pub overlay_images: Vec<String>,
    /// A subtitle sidecar to upload beside the video first, repeatable: `talk.es.srt` goes
    /// up as `<key without its extension>.es.srt`.
    #[arg(long = "sidecar", value_name = "PATH")]
    pub sidecars: Vec<PathBuf>,
    /// A subtitle file to upload beside the video once every upload is final, as subtitles
    /// delivered days later are, repeatable (named as `--sidecar`): the deployment adds them
    /// by a re-packaged version, whose job the run also waits for.
    #[arg(long = "late-sidecar", value_name = "PATH")]
    pub late_sidecars: Vec<PathBuf>,
    /// Upload the input again under this key too (no metadata), repeatable: several jobs
    /// in one run, e.g. one under a prefix the prefix map sends to another tier.
    #[arg(long = "also", value_name = "KEY")]
    pub also: Vec<String>,
    /// The stack's key-prefix map (the template's default).
    #[arg(long, default_value = "premium/=premium,archive/=bulk")]
    pub prefix_tiers: String,
    /// How long ingest waits for a settings file, seconds (the template's default is 10;
    /// test uploads that have one send it first).
    #[arg(long, default_value_t = 0.0)]
    pub settings_wait: f64,
    /// The stack's `MaxJobCostUsd` (empty, the template's default: no budget).
    #[arg(long, default_value = "")]
    pub max_job_cost_usd: String,
    /// Where the published asset is downloaded.
    #[arg(long)]
    pub out: PathBuf,
    /// Deployment name (prefix of every resource).
    #[arg(long, default_value = "vodpipe-e2e")]
    pub name: String,
    /// Most worker tasks per tier.
    #[arg(long, default_value_t = 2)]
    pub workers: u32,
    /// Deliver every S3 event twice, as S3 may.
    #[arg(long)]
    pub duplicate_events: bool,
    /// Reclaim the first worker task caught running ffmpeg, as Fargate Spot does.
    #[arg(long)]
    pub interrupt: bool,
    /// The worker image cannot be pulled for this many seconds from the start: tasks stop
    /// with `TaskFailedToStart` until then (an image pushed late).
    #[arg(long, value_name = "SECS")]
    pub image_missing_for: Option<u64>,
    /// Chunk duration new jobs are planned with (the ingest function's
    /// `VODPIPE_CHUNK_SECONDS`).
    #[arg(long, default_value_t = 20.0)]
    pub chunk_seconds: f64,
    /// Seconds between fleet schedule ticks.
    #[arg(long, default_value_t = 5)]
    pub tick_secs: u64,
    /// Give up after this long.
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,
    /// Directory with the function, worker-task and vodpipe binaries (default: this
    /// executable's).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// An older version of the same object: uploaded under `--key` first, its S3 event held
    /// back until the upload of INPUT (the newer version) has published, as a slow or
    /// retried ingest would deliver it. The pointers must stay with the newer version.
    #[arg(long, value_name = "PATH")]
    pub older: Option<PathBuf>,
    /// Let every function and task do anything. By default each signs with a role holding
    /// exactly its statements from the template, and a call the template does not allow
    /// fails the run.
    #[arg(long)]
    pub no_iam: bool,
    /// A fault the deployment's calls meet, as AWS's do (repeatable, first match wins):
    /// `[SERVICE[:OPERATION]@]lost=P,throttle=P,conflict=P,latency-ms=LO-HI[,match=TEXT][,limit=N]`,
    /// e.g. `lost=0.05,throttle=0.05,conflict=0.05`.
    #[arg(long = "fault", value_name = "RULE")]
    pub faults: Vec<String>,
    /// The faults' seed: the same seed injects the same faults into the same calls.
    #[arg(long, default_value_t = 1)]
    pub fault_seed: u64,
    /// The SAM template whose roles the functions and tasks run with (default: the
    /// workspace's infra/template.yaml).
    #[arg(long)]
    pub template: Option<PathBuf>,
}

struct Wiring {
    settings: AwsSettings,
    account: String,
    region: String,
    events_queue: (String, String),
    job_events_queue: String,
    stitch_queue: (String, String),
    cluster: String,
    task_definition: String,
    distribution: String,
    subnets: Vec<String>,
    security_group: String,
}

/// The URL and ARN of queue `name`, created if it does not exist.
pub(crate) fn queue(
    bridge: &Bridge,
    sqs: &aws_sdk_sqs::Client,
    name: &str,
) -> Result<(String, String)> {
    let existing = bridge
        .run(sqs.get_queue_url().queue_name(name).send())
        .ok()
        .and_then(|o| o.queue_url().map(str::to_string));
    let url = match existing {
        Some(url) => url,
        None => bridge
            .run(sqs.create_queue().queue_name(name).send())
            .with_context(|| format!("creating queue {name}"))?
            .queue_url()
            .unwrap_or_default()
            .to_string(),
    };
    let arn = bridge
        .run(
            sqs.get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send(),
        )?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    Ok((url, arn))
}

/// Creates the resources `vodpipe aws bootstrap` creates, plus what the template wires
/// around them, on the emulator.
fn wire(bridge: &Bridge, sdk: &aws_config::SdkConfig, moto: &Moto, name: &str) -> Result<Wiring> {
    let (account, region) =
        vodpipe_aws::config::caller_account(bridge, sdk).context("naming the deployment")?;
    let settings = AwsSettings::for_name(name, &account, &region);
    vodpipe_aws::bootstrap::bootstrap(bridge, sdk, &settings).context("bootstrap")?;
    let sqs = aws_sdk_sqs::Client::new(sdk);
    // S3 → the upload queue (made by bootstrap, as the template makes it) → ingest.
    let (events_url, events_arn) = queue(bridge, &sqs, &settings.ingest_events_queue_name())?;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    );
    bridge
        .run(
            s3.put_bucket_notification_configuration()
                .bucket(&settings.ingest_bucket)
                .notification_configuration(
                    NotificationConfiguration::builder()
                        .queue_configurations(
                            QueueConfiguration::builder()
                                .id("vodpipe-ingest")
                                .queue_arn(&events_arn)
                                .events(Event::from("s3:ObjectCreated:*"))
                                .build()?,
                        )
                        .build(),
                )
                .send(),
        )
        .context("configuring the ingest bucket's notifications")?;
    // Job-state events → a queue this command reads back.
    let (job_events_url, job_events_arn) = queue(bridge, &sqs, &format!("{name}-job-events"))?;
    let eb = aws_sdk_eventbridge::Client::new(sdk);
    bridge
        .run(
            eb.put_rule()
                .name(format!("{name}-job-state"))
                .event_pattern(json!({"source": [vodpipe_aws::events::SOURCE]}).to_string())
                .send(),
        )
        .context("creating the job-state rule")?;
    bridge
        .run(
            eb.put_targets()
                .rule(format!("{name}-job-state"))
                .targets(
                    aws_sdk_eventbridge::types::Target::builder()
                        .id("job-events")
                        .arn(&job_events_arn)
                        .build()?,
                )
                .send(),
        )
        .context("targeting the job-state rule")?;
    let (stitch_url, stitch_arn) = queue(bridge, &sqs, &settings.queue_name(Queue::Stitch))?;
    // ECS: the cluster and the worker task definition.
    let ecs = aws_sdk_ecs::Client::new(sdk);
    let cluster = name.to_string();
    bridge
        .run(ecs.create_cluster().cluster_name(&cluster).send())
        .context("creating the cluster")?;
    let family = format!("{name}-worker");
    bridge
        .run(
            ecs.register_task_definition()
                .family(&family)
                .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
                .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
                .cpu("2048")
                .memory("4096")
                // The template's roles: RunTask passes both (iam:PassRole).
                .task_role_arn(format!("arn:aws:iam::{}:role/{name}-worker", account))
                .execution_role_arn(format!(
                    "arn:aws:iam::{}:role/{name}-worker-execution",
                    account
                ))
                .container_definitions(
                    aws_sdk_ecs::types::ContainerDefinition::builder()
                        .name("worker")
                        .image("vodpipe-worker:latest")
                        .essential(true)
                        .cpu(2048)
                        .memory(4096)
                        .stop_timeout(120)
                        .build(),
                )
                .send(),
        )
        .context("registering the task definition")?;
    let (subnets, security_group) = moto.default_network()?;
    // CloudFront in front of the output bucket.
    let cf = aws_sdk_cloudfront::Client::new(sdk);
    let origin_domain = format!("{}.s3.amazonaws.com", settings.output_bucket);
    let config = DistributionConfig::builder()
        .caller_reference(format!("{name}-{}", vodpipe_media::process::now_secs()))
        .comment(format!("{name} outputs"))
        .enabled(true)
        .origins(
            Origins::builder()
                .quantity(1)
                .items(
                    Origin::builder()
                        .id("output")
                        .domain_name(&origin_domain)
                        .s3_origin_config(
                            S3OriginConfig::builder().origin_access_identity("").build(),
                        )
                        .build()?,
                )
                .build()?,
        )
        .default_cache_behavior(
            DefaultCacheBehavior::builder()
                .target_origin_id("output")
                .viewer_protocol_policy(ViewerProtocolPolicy::RedirectToHttps)
                .build()?,
        )
        .build()?;
    let distribution = bridge
        .run(cf.create_distribution().distribution_config(config).send())
        .context("creating the distribution")?
        .distribution()
        .map(|d| d.id().to_string())
        .context("no distribution id")?;
    Ok(Wiring {
        settings,
        account,
        region,
        events_queue: (events_url, events_arn),
        job_events_queue: job_events_url,
        stitch_queue: (stitch_url, stitch_arn),
        cluster,
        task_definition: family,
        distribution,
        subnets,
        security_group,
    })
}

fn find_bin(dir: &Option<PathBuf>, name: &str) -> Result<PathBuf> {
    let path = match dir {
        Some(d) => d.join(name),
        None => sibling(name)?,
    };
    anyhow::ensure!(
        path.is_file(),
        "{} not found: build every binary first (`cargo build --workspace --bins`; make e2e-aws does)",
        path.display()
    );
    Ok(path)
}

fn invalidated_paths(
    bridge: &Bridge,
    cf: &aws_sdk_cloudfront::Client,
    distribution: &str,
) -> Result<Vec<String>> {
    let list = bridge.run(cf.list_invalidations().distribution_id(distribution).send())?;
    let mut paths = Vec::new();
    for inv in list
        .invalidation_list()
        .map(|l| l.items())
        .unwrap_or_default()
    {
        let got = bridge.run(
            cf.get_invalidation()
                .distribution_id(distribution)
                .id(inv.id())
                .send(),
        )?;
        if let Some(batch) = got.invalidation().and_then(|i| i.invalidation_batch()) {
            if let Some(p) = batch.paths() {
                paths.extend(p.items().iter().cloned());
            }
        }
    }
    Ok(paths)
}

fn job_events(bridge: &Bridge, sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let Ok(got) = bridge.run(
            sqs.receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send(),
        ) else {
            break;
        };
        if got.messages().is_empty() {
            break;
        }
        for m in got.messages() {
            if let Ok(v) = serde_json::from_str::<Value>(m.body().unwrap_or_default()) {
                out.push(v["detail"].clone());
            }
            let _ = bridge.run(
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send(),
            );
        }
    }
    out
}

/// The resources the deployment's environments name.
pub struct EnvNames {
    /// Buckets, table, queues.
    pub settings: AwsSettings,
    /// ECS cluster.
    pub cluster: String,
    /// Worker task definition family.
    pub task_definition: String,
    /// Comma-separated subnets.
    pub subnets: String,
    /// The workers' security group.
    pub security_group: String,
    /// CloudFront distribution id.
    pub distribution: String,
}

/// What the emulator runs faster or smaller than a deployment does.
pub struct TestKnobs {
    /// Most worker tasks per tier.
    pub workers: u32,
    /// Chunk duration new jobs are planned with.
    pub chunk_seconds: f64,
    /// Scratch space (functions and tasks keep out of /tmp/vodpipe).
    pub scratch: PathBuf,
    /// The prefix map (the template's default unless a test says otherwise).
    pub prefix_tiers: String,
    /// How long ingest waits for a settings file (short: test uploads send it at once).
    pub settings_wait: f64,
    /// The stack's `MaxJobCostUsd` (empty: none).
    pub max_job_cost_usd: String,
}

/// The functions' environment: the template's `Globals` and per-function variables (the
/// template test in this crate compares the names), with the emulator's values.
pub fn function_env(n: &EnvNames, k: &TestKnobs) -> Vec<(String, String)> {
    let mut env = n.settings.env();
    for (key, v) in [
        ("VODPIPE_EVENT_BUS", "default".to_string()),
        ("VODPIPE_ECS_CLUSTER", n.cluster.clone()),
        ("VODPIPE_TASK_DEFINITION", n.task_definition.clone()),
        ("VODPIPE_WORKER_CONTAINER", "worker".to_string()),
        ("VODPIPE_SUBNETS", n.subnets.clone()),
        ("VODPIPE_SECURITY_GROUPS", n.security_group.clone()),
        ("VODPIPE_ASSIGN_PUBLIC_IP", "ENABLED".to_string()),
        ("VODPIPE_MAX_WORKERS", k.workers.to_string()),
        ("VODPIPE_WARM_WORKERS", "0".to_string()),
        ("VODPIPE_DEFAULT_TIER", "standard".to_string()),
        ("VODPIPE_PREFIX_TIERS", k.prefix_tiers.clone()),
        ("VODPIPE_SETTINGS_WAIT_SECONDS", k.settings_wait.to_string()),
        // The template's defaults: no stack-wide protection, no key server (an upload
        // names its own).
        ("VODPIPE_MAX_JOB_COST_USD", k.max_job_cost_usd.clone()),
        ("VODPIPE_DRM", "none".to_string()),
        ("VODPIPE_DRM_SYSTEMS", String::new()),
        ("VODPIPE_SPEKE_URL", String::new()),
        ("VODPIPE_METRICS", "emf".to_string()),
        // The host's ffprobe, fed through the loopback server exactly as the layer's is.
        ("VODPIPE_FFPROBE", "ffprobe".to_string()),
        ("VODPIPE_SOURCE_ACCESS", "loopback".to_string()),
        ("VODPIPE_DISTRIBUTION_IDS", n.distribution.clone()),
        ("VODPIPE_CHUNK_SECONDS", k.chunk_seconds.to_string()),
        (
            "VODPIPE_SEGMENT_SECONDS",
            k.chunk_seconds.min(4.0).to_string(),
        ),
        ("VODPIPE_LOG", "info".to_string()),
        ("VODPIPE_SCRATCH", k.scratch.display().to_string()),
        // Failed launches back off from two seconds (a deployment: a minute).
        ("VODPIPE_LAUNCH_BACKOFF_SECS", "2".to_string()),
    ] {
        env.push((key.to_string(), v));
    }
    env
}

/// The worker task definition's environment, with the emulator's values (shorter idle
/// exit and leases than a deployment's, so runs end quickly).
pub fn task_env(n: &EnvNames, k: &TestKnobs) -> Vec<(String, String)> {
    let mut env = n.settings.env();
    for (key, v) in [
        ("VODPIPE_IDLE_EXIT_SECS", "5".to_string()),
        ("VODPIPE_LEASE_SECS", "10".to_string()),
        ("VODPIPE_SCRATCH", k.scratch.display().to_string()),
        ("VODPIPE_METRICS", "emf".to_string()),
        ("VODPIPE_EVENT_BUS", "default".to_string()),
        ("VODPIPE_LOG", "info".to_string()),
        // The template's default: key server requests signed with the task role.
        ("VODPIPE_SPEKE_ROLE_ARN", String::new()),
    ] {
        env.push((key.to_string(), v));
    }
    env
}

/// The template's roles made for this deployment; each principal's credentials (none with
/// `--no-iam`: everything then signs as the emulator's owner).
fn deploy_roles(
    a: &E2eArgs,
    w: &Wiring,
    bridge: &Bridge,
    sdk: &aws_config::SdkConfig,
) -> Result<std::collections::BTreeMap<String, crate::iam::Credentials>> {
    if a.no_iam {
        return Ok(Default::default());
    }
    let path = match &a.template {
        Some(p) => p.clone(),
        None => crate::moto::workspace_root(&std::env::current_dir()?)
            .or_else(|| crate::moto::workspace_root(&std::env::current_exe().ok()?))
            .context("no workspace root (Cargo.lock) above here; give --template")?
            .join("infra/template.yaml"),
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let names = crate::iam::EmulatedNames {
        settings: w.settings.clone(),
        name: a.name.clone(),
        account: w.account.clone(),
        region: w.region.clone(),
        cluster: w.cluster.clone(),
        distribution: w.distribution.clone(),
    };
    crate::iam::create_roles(bridge, sdk, &names, &text)
}

/// Switches IAM enforcement on (unless `--no-iam`) and sets the fault plan.
fn arm_front_door(a: &E2eArgs, endpoint: &str) -> Result<()> {
    crate::moto::control(endpoint, "DELETE", "/_vodpipe/iam", None)?;
    if !a.no_iam {
        crate::moto::control(
            endpoint,
            "POST",
            "/_vodpipe/iam",
            Some(&json!({"enforce": true})),
        )?;
    }
    if a.faults.is_empty() {
        crate::moto::control(endpoint, "DELETE", "/_vodpipe/faults", None)?;
    } else {
        let plan = crate::faults::plan(a.fault_seed, false, &a.faults)?;
        eprintln!("faults: {plan}");
        crate::moto::control(endpoint, "POST", "/_vodpipe/faults", Some(&plan))?;
    }
    Ok(())
}

/// Runs the whole pipeline once; returns the process exit code.
pub fn run(a: E2eArgs) -> Result<i32> {
    let started = Instant::now();
    let input =
        std::fs::read(&a.input).with_context(|| format!("reading {}", a.input.display()))?;
    // The three functions are one binary; each host's `_HANDLER` picks its function, as
    // the template's `Handler` does on Lambda.
    let function_bin = find_bin(&a.bin_dir, "vodpipe-lambda")?;
    let worker_bin = find_bin(&a.bin_dir, "worker-task")?;
    let vodpipe_bin = find_bin(&a.bin_dir, "vodpipe")?;
    std::fs::create_dir_all(&a.out)?;
    let work = a.out.join(".emulator");
    std::fs::create_dir_all(&work)?;

    let moto = Moto::start_or_reuse()?;
    eprintln!("emulator at {}", moto.endpoint);
    let bridge = Arc::new(Bridge::new()?);
    let sdk = bridge.sdk_config();
    let w = wire(&bridge, &sdk, &moto, &a.name)?;
    eprintln!(
        "resources for {:?} ready ({:.1} s); logs in {}",
        a.name,
        started.elapsed().as_secs_f64(),
        work.display()
    );

    let names = EnvNames {
        settings: w.settings.clone(),
        cluster: w.cluster.clone(),
        task_definition: w.task_definition.clone(),
        subnets: w.subnets.join(","),
        security_group: w.security_group.clone(),
        distribution: w.distribution.clone(),
    };
    let knobs = TestKnobs {
        workers: a.workers,
        chunk_seconds: a.chunk_seconds,
        scratch: work.join("scratch"),
        prefix_tiers: a.prefix_tiers.clone(),
        settings_wait: a.settings_wait,
        max_job_cost_usd: a.max_job_cost_usd.clone(),
    };
    // The harness and `vodpipe status` see the emulator as its owner does.
    let env: Vec<(String, String)> = moto
        .env()
        .into_iter()
        .chain(function_env(&names, &knobs))
        .collect();
    // Each function and the tasks sign with their own role's credentials.
    let creds = deploy_roles(&a, &w, &bridge, &sdk)?;
    let signed = |principal: &str| -> Vec<(String, String)> {
        creds.get(principal).map(|c| c.env()).unwrap_or_default()
    };
    let task_env: Vec<(String, String)> = moto
        .env()
        .into_iter()
        .chain(task_env(&names, &knobs))
        .chain(signed("worker"))
        .collect();
    arm_front_door(&a, &moto.endpoint)?;

    // One execution environment per function, with the template's timeouts.
    let host = |name: &str, secs: u64| {
        let handler = name.trim_start_matches("vodpipe-");
        let log = work.join(format!("{handler}.log"));
        let mut fenv = env.clone();
        fenv.extend(signed(handler));
        fenv.push(("_HANDLER".into(), handler.into()));
        FunctionHost::new(name, &function_bin, fenv, &log, Duration::from_secs(secs))
    };
    let ingest = host("vodpipe-ingest", 300)?;
    let stitch_timeout = u64::from(vodpipe_aws::bootstrap::STITCH_TIMEOUT_SECS);
    let stitch = host("vodpipe-stitch", stitch_timeout)?;
    let fleet = host("vodpipe-fleet", 300)?;
    let dead_lettered = Arc::new(std::sync::atomic::AtomicU32::new(0));

    let stop = Arc::new(AtomicBool::new(false));
    let ctx = SourceCtx {
        bridge: bridge.clone(),
        sqs: aws_sdk_sqs::Client::new(&sdk),
        stop: stop.clone(),
    };
    let fargate_stats = Arc::new(Mutex::new(FargateStats::default()));
    let mut threads = Vec::new();
    let hold: Arc<Mutex<Option<Hold>>> = Arc::default();
    {
        let delivery = S3Delivery {
            queue_url: w.events_queue.0.clone(),
            queue_arn: w.events_queue.1.clone(),
            functions: vec![ingest.clone()],
            duplicate: a.duplicate_events,
            dead_lettered: dead_lettered.clone(),
            hold: hold.clone(),
        };
        let ctx = ctx.clone();
        threads.push(std::thread::spawn(move || s3_to_function(ctx, delivery)));
    }
    {
        let (ctx, f) = (ctx.clone(), stitch.clone());
        let (url, arn) = w.stitch_queue.clone();
        threads.push(std::thread::spawn(move || {
            let visibility = vodpipe_aws::bootstrap::STITCH_VISIBILITY_SECS as i32;
            sqs_to_function(ctx, url, arn, f, 10, visibility)
        }));
    }
    {
        let (ctx, f) = (ctx.clone(), fleet.clone());
        let rule = format!(
            "arn:aws:events:us-east-1:123456789012:rule/{}-fleet-tick",
            a.name
        );
        let every = Duration::from_secs(a.tick_secs.max(1));
        threads.push(std::thread::spawn(move || schedule(ctx, rule, f, every)));
    }
    {
        let fargate = Fargate {
            bridge: bridge.clone(),
            ecs: aws_sdk_ecs::Client::new(&sdk),
            cluster: w.cluster.clone(),
            worker: worker_bin,
            env: task_env,
            log_dir: work.clone(),
            fleet_function: fleet.clone(),
            interrupt_once: a.interrupt,
            image_missing_until: a
                .image_missing_for
                .map(|s| started + Duration::from_secs(s)),
            stop: stop.clone(),
            stats: fargate_stats.clone(),
        };
        threads.push(std::thread::spawn(move || fargate.run()));
    }

    // Whatever happens from here, the sources stop and every task is stopped before this
    // returns: nothing is left running against a dead emulator.
    let followed = follow(&a, &w, &input, &fargate_stats, &hold, &work, started);
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    for f in [&ingest, &stitch, &fleet] {
        f.shutdown();
    }
    if followed.is_err() {
        // A refused call is the likeliest reason a run got nowhere: say so first.
        if let Ok(report) = crate::moto::control(&moto.endpoint, "GET", "/_vodpipe/iam", None) {
            for d in crate::iam::denials(&report) {
                eprintln!("IAM refused: {d}");
            }
        }
    }
    let (aws, uploads, late_segments) = followed?;
    let uri = uploads[0].0.clone();

    // Download the published assets; each job's status as `vodpipe status --json` says it.
    let mut downloaded = 0;
    let mut statuses = Vec::new();
    for (_, j) in &uploads {
        if j.status == JobStatus::Published {
            for key in aws.objects.list(&format!("{}/", j.asset))? {
                let dest = a.out.join(&key);
                if let Some(dir) = dest.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&dest, aws.objects.get(&key)?)?;
                downloaded += 1;
            }
        }
        let status = std::process::Command::new(&vodpipe_bin)
            .args(["status", &j.id, "--json"])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .context("running vodpipe status")?;
        anyhow::ensure!(
            status.status.success(),
            "vodpipe status failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        let mut v: Value = serde_json::from_slice(&status.stdout)?;
        let local = |k: &Value| k.as_str().map(|k| a.out.join(k).display().to_string());
        v["master"] = json!(local(&v["master_key"]));
        v["dash"] = json!(local(&v["dash_key"]));
        v["poster"] = json!(local(&v["poster_key"]));
        v["thumbnails"] = json!(local(&v["thumbnails_key"]));
        statuses.push(v);
    }
    let mut report = statuses[0].clone();
    // Which upload's job the asset's master pointer serves.
    let pointer = aws
        .objects
        .get(&vodpipe_control::outputs::master_pointer(
            &uploads[0].1.asset,
        ))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let pointer_job = uploads
        .iter()
        .map(|(_, j)| j.id.clone())
        .find(|id| pointer.contains(&format!("{id}/")));

    let cf = aws_sdk_cloudfront::Client::new(&sdk);
    let invalidated = invalidated_paths(&bridge, &cf, &w.distribution)?;
    let events = job_events(&bridge, &ctx.sqs, &w.job_events_queue);
    let interruptions = aws.state.jobs.interruptions()?;
    let iam_report = crate::moto::control(&moto.endpoint, "GET", "/_vodpipe/iam", None)?;
    let denials = crate::iam::denials(&iam_report);
    for d in &denials {
        eprintln!("IAM refused: {d}");
    }
    let fault_report = crate::moto::control(&moto.endpoint, "GET", "/_vodpipe/faults", None)?;
    let injected = crate::faults::by_service(&fault_report);
    if !injected.is_empty() {
        let line: Vec<String> = injected.iter().map(|(s, k)| format!("{s} {k}")).collect();
        eprintln!("faults injected: {}", line.join(", "));
    }
    let jobs_for_source = aws.state.jobs_by_source(&uri)?.len();
    // The source's tags: a published one carries what the retention rule selects by.
    let source_tags: serde_json::Map<String, Value> = {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        let (bucket, key) = vodpipe_aws::s3::parse_s3_uri(&uri).unwrap_or_default();
        bridge
            .run(s3.get_object_tagging().bucket(bucket).key(key).send())
            .map(|o| {
                o.tag_set()
                    .iter()
                    .map(|t| (t.key().to_string(), json!(t.value())))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Each job directory's objects marked superseded for the bucket's lifecycle, of all
    // its objects: what publishing retired.
    let superseded: serde_json::Map<String, Value> = {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        let mut out = serde_json::Map::new();
        for (_, j) in &uploads {
            let keys = aws.objects.list(&format!("{}/{}/", j.asset, j.id))?;
            let tagged = keys
                .iter()
                .filter(|k| {
                    bridge
                        .run(
                            s3.get_object_tagging()
                                .bucket(&aws.settings.output_bucket)
                                .key(k.as_str())
                                .send(),
                        )
                        .map(|o| {
                            o.tag_set()
                                .iter()
                                .any(|t| t.key() == vodpipe_aws::s3::SUPERSEDED_TAG)
                        })
                        .unwrap_or(false)
                })
                .count();
            out.insert(
                j.id.clone(),
                json!({"objects": keys.len(), "superseded": tagged}),
            );
        }
        out
    };
    let fargate = fargate_stats.lock().map(|s| s.clone()).unwrap_or_default();
    report["emulator"] = json!({
        "superseded": superseded,
        "endpoint": moto.endpoint,
        "uri": uri,
        "objects_downloaded": downloaded,
        "jobs_for_source": jobs_for_source,
        "source_tags": source_tags,
        "pointer_job": pointer_job,
        "invalidated_paths": invalidated,
        "job_events": events,
        "interruptions_recorded": interruptions.len(),
        "iam": {
            "enforced": iam_report["enforce"],
            "checked": iam_report["checked"],
            "denials": denials,
        },
        "faults": {
            "plan": fault_report["plan"],
            "injected": fault_report["injected"],
            "by_service": injected,
        },
        "ingest_events_dead_lettered": dead_lettered.load(Ordering::SeqCst),
        // Segments under the asset before the late subtitle files and once their
        // re-packaged version was final: equal when nothing was encoded for it.
        "late_sidecar_segments": late_segments
            .map(|(before, after)| json!({"before": before, "after": after})),
        "fargate": fargate,
        "functions": {
            "ingest": ingest.stats(),
            "stitch": stitch.stats(),
            "fleet": fleet.stats(),
        },
        "metrics": emf_metrics(&work),
        "jobs": statuses,
        "wall_secs": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        // Work left on any queue, dead letters included, once every job was final.
        "queued_after": Queue::all()
            .into_iter()
            .map(|q| vodpipe_control::ports::WorkQueue::depth(&aws.state, q).unwrap_or(0))
            .sum::<u64>()
            + aws.state.queues.dead_letters().unwrap_or(0),
        "logs": work,
    });
    println!("{report}");
    // Every upload here is a first publish, which invalidates nothing (only a replaced
    // version can be cached).
    let published = uploads
        .iter()
        .all(|(_, j)| j.status == JobStatus::Published && j.master_key.is_some());
    // A call the template does not allow fails the run, whatever else happened.
    Ok(if published && denials.is_empty() {
        0
    } else {
        1
    })
}

/// Embedded-metric documents in the function and task logs under `dir`: how many
/// observations of each metric (with `State` appended for job-state changes), which is
/// what CloudWatch would have extracted.
fn emf_metrics(dir: &std::path::Path) -> std::collections::BTreeMap<String, u32> {
    let mut counts = std::collections::BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return counts;
    };
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("\"_aws\"")) {
            let Ok(doc) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let name = m["Name"].as_str().unwrap_or_default();
                let key = match doc["State"].as_str() {
                    Some(state) => format!("{name}:{state}"),
                    None => name.to_string(),
                };
                *counts.entry(key).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// Uploads the input (under `--key` with its metadata, then under each `--also` key) and
/// waits for every job to be final and the fleet to drain. Returns each upload's URI and
/// job, in upload order.
/// The job made for version `version` of `uri` (the newest job of the source when the
/// bucket keeps no versions).
fn job_of(
    aws: &vodpipe_aws::Aws,
    uri: &str,
    version: Option<&str>,
) -> Result<Option<vodpipe_control::ports::JobRecord>> {
    let jobs = aws.state.jobs_by_source(uri)?;
    Ok(match version {
        Some(v) => jobs.into_iter().find(|j| {
            j.settings
                .as_ref()
                .and_then(|s| s.source_version.as_deref())
                == Some(v)
        }),
        None => jobs.into_iter().next(),
    })
}

/// What following the uploads found: the deployment's state, each upload's job (then the
/// re-packaged versions the late subtitle files made), and the asset's segments before the
/// late subtitle files and after their version was final.
type Followed = (
    vodpipe_aws::Aws,
    Vec<(String, vodpipe_control::ports::JobRecord)>,
    Option<(usize, usize)>,
);

fn follow(
    a: &E2eArgs,
    w: &Wiring,
    input: &[u8],
    fargate_stats: &Mutex<FargateStats>,
    hold: &Mutex<Option<Hold>>,
    work: &std::path::Path,
    started: Instant,
) -> Result<Followed> {
    // The user's one action: an upload (with metadata, as `aws s3 cp --metadata` sends it).
    let aws = vodpipe_aws::Aws::connect(w.settings.clone())?;
    let bridge = Bridge::new()?;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&bridge.sdk_config())
            .force_path_style(true)
            .build(),
    );
    let mut metadata = std::collections::HashMap::new();
    for pair in &a.metadata {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("--metadata {pair:?} is not NAME=VALUE"))?;
        metadata.insert(k.to_string(), v.to_string());
    }
    // A file from this machine into the ingest bucket under `key`.
    let upload = |path: &std::path::Path, key: &str, what: &str| -> Result<()> {
        let body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        bridge
            .run(
                s3.put_object()
                    .bucket(&w.settings.ingest_bucket)
                    .key(key)
                    .body(body.into())
                    .send(),
            )
            .with_context(|| format!("uploading the {what} as {key}"))?;
        eprintln!(
            "uploaded {} to s3://{}/{key}",
            path.display(),
            w.settings.ingest_bucket
        );
        Ok(())
    };
    for pair in &a.profiles {
        let (name, path) = pair
            .split_once('=')
            .with_context(|| format!("--profile {pair:?} is not NAME=PATH"))?;
        let key = vodpipe_control::settings::profile_key(name);
        upload(std::path::Path::new(path), &key, "profile")?;
    }
    for pair in &a.overlay_images {
        let (name, path) = pair
            .split_once('=')
            .with_context(|| format!("--overlay-image {pair:?} is not NAME=PATH"))?;
        let key = vodpipe_control::settings::overlay_key(name);
        upload(std::path::Path::new(path), &key, "overlay image")?;
    }
    // Sidecars go up first, as a tool uploading a video with its subtitles would, so the
    // video's ingest finds them.
    let stem = a.key.rsplit_once('.').map_or(a.key.as_str(), |(s, _)| s);
    let sidecar_key = |path: &std::path::Path| -> Result<String> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let suffix = name
            .split_once('.')
            .map(|(_, rest)| rest.to_string())
            .with_context(|| format!("sidecar {} has no language and extension", path.display()))?;
        Ok(format!("{stem}.{suffix}"))
    };
    for path in &a.sidecars {
        upload(path, &sidecar_key(path)?, "sidecar")?;
    }
    // An older upload of the same key first, its event held back (a slow or retried ingest)
    // until the newer one has published.
    let mut uploads: Vec<(String, Option<String>)> = Vec::new();
    let mut older: Option<(String, Option<String>)> = None;
    if let Some(path) = &a.older {
        if let Ok(mut h) = hold.lock() {
            *h = Some(Hold {
                key: a.key.clone(),
                version: None,
            });
        }
        let body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let put = bridge
            .run(
                s3.put_object()
                    .bucket(&w.settings.ingest_bucket)
                    .key(&a.key)
                    .body(body.into())
                    .send(),
            )
            .with_context(|| format!("uploading the older version as {}", a.key))?;
        let version = put.version_id().map(str::to_string);
        if let Ok(mut h) = hold.lock() {
            *h = Some(Hold {
                key: a.key.clone(),
                version: version.clone(),
            });
        }
        eprintln!(
            "uploaded {} to s3://{}/{} (version {version:?}; its event held back)",
            path.display(),
            w.settings.ingest_bucket,
            a.key
        );
        older = Some((
            format!("s3://{}/{}", w.settings.ingest_bucket, a.key),
            version,
        ));
    }
    for (i, key) in std::iter::once(&a.key).chain(&a.also).enumerate() {
        let put = bridge
            .run(
                s3.put_object()
                    .bucket(&w.settings.ingest_bucket)
                    .key(key)
                    .body(input.to_vec().into())
                    .set_metadata((i == 0 && !metadata.is_empty()).then(|| metadata.clone()))
                    .send(),
            )
            .with_context(|| format!("uploading the input as {key}"))?;
        let uri = format!("s3://{}/{key}", w.settings.ingest_bucket);
        eprintln!("uploaded {} to {uri}", a.input.display());
        uploads.push((uri, put.version_id().map(str::to_string)));
    }
    uploads.extend(older.clone());

    let deadline = started + Duration::from_secs(a.timeout_secs);
    let mut last = String::new();
    let jobs = loop {
        let mut found = Vec::new();
        for (uri, version) in &uploads {
            if let Some(j) = job_of(&aws, uri, version.as_deref())? {
                found.push((uri.clone(), j));
            }
        }
        let line = found
            .iter()
            .map(|(_, j)| format!("{} {} {} {}/{}", j.id, j.tier, j.status, j.done, j.total))
            .collect::<Vec<_>>()
            .join(", ");
        if line != last {
            eprintln!("  {:6.1}s  {line}", started.elapsed().as_secs_f64());
            last = line;
        }
        // The newer upload is published: the older one's ingest may run now.
        let released = hold.lock().map(|h| h.is_none()).unwrap_or(true);
        if !released && found.first().is_some_and(|(_, j)| j.status.is_final()) {
            eprintln!(
                "  {:6.1}s  the newer upload is {}; letting the older upload's event go",
                started.elapsed().as_secs_f64(),
                found[0].1.status
            );
            if let Ok(mut h) = hold.lock() {
                *h = None;
            }
        }
        if found.len() == uploads.len() && found.iter().all(|(_, j)| j.status.is_final()) {
            break found;
        }
        if Instant::now() > deadline {
            bail!(
                "no final state for every upload after {} s (logs in {})",
                a.timeout_secs,
                work.display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut jobs = jobs;
    let mut late_segments = None;
    if !a.late_sidecars.is_empty() {
        // Subtitles delivered after the video published: a re-packaged version of the
        // first upload, and no segment encoded for it.
        let (uri, first) = (jobs[0].0.clone(), jobs[0].1.clone());
        let segments = || -> Result<usize> {
            Ok(aws
                .objects
                .list(&format!("{}/", first.asset))?
                .iter()
                .filter(|k| k.ends_with(".m4s"))
                .count())
        };
        let before = segments()?;
        for path in &a.late_sidecars {
            upload(path, &sidecar_key(path)?, "late subtitle file")?;
        }
        let repackaged = loop {
            let versions = aws.state.jobs_by_source(&uri)?;
            let made: Vec<_> = versions
                .into_iter()
                .filter(|j| j.settings.as_ref().is_some_and(|s| s.repackage.is_some()))
                .collect();
            if !made.is_empty() && made.iter().all(|j| j.status.is_final()) {
                break made;
            }
            if Instant::now() > deadline {
                bail!(
                    "no re-packaged version of {uri} was final after {} s (logs in {})",
                    a.timeout_secs,
                    work.display()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let after = segments()?;
        eprintln!(
            "  {:6.1}s  re-packaged: {} ({before} segments before, {after} after)",
            started.elapsed().as_secs_f64(),
            repackaged
                .iter()
                .map(|j| format!("{} {}", j.id, j.status))
                .collect::<Vec<_>>()
                .join(", ")
        );
        late_segments = Some((before, after));
        jobs.extend(repackaged.into_iter().map(|j| (uri.clone(), j)));
    }
    // Let the fleet drain: idle workers exit and nothing is started again, which is what
    // "no crash loop" and "scales to zero" look like.
    let drain_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = fargate_stats.lock().map(|s| s.running).unwrap_or(0);
        let queued: u64 = [
            Queue::Work(vodpipe_control::ports::Tier::Premium),
            Queue::Work(vodpipe_control::ports::Tier::Standard),
            Queue::Work(vodpipe_control::ports::Tier::Bulk),
        ]
        .into_iter()
        .map(|q| vodpipe_control::ports::WorkQueue::depth(&aws.state, q).unwrap_or(0))
        .sum();
        if running == 0 && queued == 0 {
            break;
        }
        if Instant::now() > drain_deadline {
            eprintln!("the fleet did not drain within 60 s ({running} tasks, {queued} messages)");
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    Ok((aws, jobs, late_segments))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::BTreeSet;
    use yaml_rust2::{Yaml, YamlLoader};

    /// Variables the emulator sets that the template leaves to their defaults: planning
    /// and logging knobs for short test clips.
    const EMULATOR_ONLY_ENV: &[&str] = &[
        "VODPIPE_CHUNK_SECONDS",
        "VODPIPE_SEGMENT_SECONDS",
        "VODPIPE_LOG",
        "VODPIPE_LAUNCH_BACKOFF_SECS",
    ];

    fn template() -> Yaml {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
        YamlLoader::load_from_str(&std::fs::read_to_string(path).unwrap())
            .unwrap()
            .remove(0)
    }

    fn keys(map: &Yaml) -> BTreeSet<String> {
        map.as_hash()
            .map(|h| {
                h.keys()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn names() -> (EnvNames, TestKnobs) {
        (
            EnvNames {
                settings: AwsSettings::for_name("n", "123456789012", "us-east-1"),
                cluster: "c".into(),
                task_definition: "t".into(),
                subnets: "s1,s2".into(),
                security_group: "sg".into(),
                distribution: "d".into(),
            },
            TestKnobs {
                workers: 2,
                chunk_seconds: 4.0,
                scratch: PathBuf::from("/tmp/x"),
                prefix_tiers: String::new(),
                settings_wait: 0.0,
                max_job_cost_usd: String::new(),
            },
        )
    }

    fn without_emulator_only(env: Vec<(String, String)>) -> BTreeSet<String> {
        env.into_iter()
            .map(|(k, _)| k)
            .filter(|k| !EMULATOR_ONLY_ENV.contains(&k.as_str()))
            .collect()
    }

    #[test]
    fn functions_get_the_variables_the_template_sets() {
        let t = template();
        let mut declared = keys(&t["Globals"]["Function"]["Environment"]["Variables"]);
        for f in ["IngestFunction", "StitchFunction", "FleetFunction"] {
            declared.extend(keys(
                &t["Resources"][f]["Properties"]["Environment"]["Variables"],
            ));
        }
        let (n, k) = names();
        assert_eq!(without_emulator_only(function_env(&n, &k)), declared);
    }

    #[test]
    fn tasks_get_the_variables_the_task_definition_sets() {
        let t = template();
        let declared: BTreeSet<String> = t["Resources"]["WorkerTaskDefinition"]["Properties"]
            ["ContainerDefinitions"][0]["Environment"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|kv| kv["Name"].as_str().unwrap().to_string())
            .collect();
        let (n, k) = names();
        assert_eq!(without_emulator_only(task_env(&n, &k)), declared);
    }
}
