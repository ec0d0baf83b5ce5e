//! `load --deployed`: a burst of uploads through the deployed shape, on the emulator.
//!
//! Uploads of a real clip land in the ingest bucket within `--burst-seconds`; the bucket
//! notifies the upload queue; the real ingest function probes, plans and queues each one
//! behind its event source mapping (`--ingest-environments` at once, as the template's
//! `IngestMaxConcurrency` would allow as far as one machine can run them); worker
//! processes (the real worker with the stand-in encoder, killed and restarted as in
//! `load`) encode; the real stitch function publishes behind its mapping with the
//! template's batch (`--stitch-batch`) and `--stitch-environments` at once. Every function
//! and worker signs as an assumed role, so `--fault` reaches all of their calls and none
//! of the run's own.
//!
//! The run reports the time from the first upload to the last publish (the drain), the
//! largest backlog seen on each queue, the stitch rate, the AWS calls per item, the mean
//! ingest and stitch invocation and item times (what `vodpipe simulate --burst` replays),
//! and checks that every upload published exactly once.

use crate::load::{
    count_in, request_counts, spawn_worker, sweep_stitches, template_init, worker_role, LoadArgs,
};
use crate::moto::Moto;
use crate::runtime_api::FunctionHost;
use crate::sources::{s3_to_function, sqs_to_function, S3Delivery, SourceCtx};
use anyhow::{bail, Context, Result};
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vodpipe_aws::config::{AwsSettings, Bridge};
use vodpipe_aws::Aws;
use vodpipe_control::job::JobStatus;
use vodpipe_control::ports::{JobStore, Queue, Tier, WorkQueue};

/// A function binary beside this program (the same build), or in `dir`.
fn function_bin(dir: &Option<PathBuf>, name: &str) -> Result<PathBuf> {
    let dir = match dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .context("where this program lives")?,
    };
    let bin = dir.join(name);
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build the functions with this program (`cargo build --release -p vodpipe-functions`)",
        bin.display()
    );
    Ok(bin)
}

/// A real clip of `secs` seconds at 160x90 (an MP4 with its index first, as uploads are).
fn make_clip(dir: &Path, secs: u32) -> Result<Vec<u8>> {
    let clip = dir.join("upload.mp4");
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=160x90:rate=25")
        .args(["-t", &secs.to_string(), "-c:v", "libx264", "-g", "25"])
        .args(["-pix_fmt", "yuv420p", "-movflags", "+faststart"])
        .arg(&clip)
        .status()
        .context("running ffmpeg (make deps installs it)")?;
    if !ok.success() {
        bail!("ffmpeg could not make the upload");
    }
    Ok(std::fs::read(&clip)?)
}

/// The object key of the burst's `j`-th upload.
fn upload_key(j: u32) -> String {
    format!("burst/{j:05}.mp4")
}

/// Visible and in-flight messages on the queue at `url`.
fn queue_depth(bridge: &Bridge, sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    bridge
        .run(
            sqs.get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .send(),
        )
        .ok()
        .and_then(|o| {
            o.attributes()
                .map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum())
        })
        .unwrap_or(0)
}

/// Runs the burst and prints its report; non-zero when an upload was lost, failed or was
/// published twice.
pub fn run(a: LoadArgs) -> Result<i32> {
    let moto = Moto::start_or_reuse()?;
    let endpoint = moto.endpoint.clone();
    let bridge = Arc::new(Bridge::new()?);
    let sdk = bridge.sdk_config();
    let name = format!("burst{}", std::process::id());
    let settings = AwsSettings::resolve(&bridge, &sdk, &name)?;
    vodpipe_aws::bootstrap::bootstrap(&bridge, &sdk, &settings)?;
    let aws = Aws::connect(settings.clone())?;
    let db = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let scratch = std::env::temp_dir().join(format!("vodpipe-burst-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let init = template_init(&scratch)?;
    let clip = make_clip(&scratch, a.items * 4)?;
    let say = |s: String| {
        if !a.json {
            eprintln!("{s}");
        }
    };

    // S3 → the upload queue, as the template wires it.
    let uploads_queue = crate::e2e::queue(&bridge, &sqs, &settings.ingest_events_queue_name())?;
    let stitch_queue = crate::e2e::queue(&bridge, &sqs, &settings.queue_name(Queue::Stitch))?;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
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
                                .queue_arn(&uploads_queue.1)
                                .events(Event::from("s3:ObjectCreated:*"))
                                .build()?,
                        )
                        .build(),
                )
                .send(),
        )
        .context("configuring the ingest bucket's notifications")?;

    // Functions and workers sign as a role of their own: the faults reach them only.
    let role = worker_role(&bridge, &sdk, &name)?;
    let mut env = moto.env();
    env.extend(settings.env());
    env.extend(role.env());
    if a.faults.is_empty() {
        crate::moto::control(&endpoint, "DELETE", "/_vodpipe/faults", None)?;
    } else {
        let plan = crate::faults::plan(a.fault_seed, false, &a.faults)?;
        crate::moto::control(&endpoint, "POST", "/_vodpipe/faults", Some(&plan))?;
    }
    let mut fenv = env.clone();
    for (k, v) in [
        ("VODPIPE_CHUNK_SECONDS", "4".to_string()),
        ("VODPIPE_SEGMENT_SECONDS", "4".to_string()),
        ("VODPIPE_SETTINGS_WAIT_SECONDS", "0".to_string()),
        ("VODPIPE_FFPROBE", "ffprobe".to_string()),
        ("VODPIPE_SOURCE_ACCESS", "loopback".to_string()),
        ("VODPIPE_LOG", "warn".to_string()),
        (
            "VODPIPE_SCRATCH",
            scratch.join("functions").display().to_string(),
        ),
    ] {
        fenv.push((k.to_string(), v));
    }
    // The functions' one binary; `_HANDLER` picks the function, as the template's `Handler`
    // does on Lambda.
    let bin = function_bin(&a.bin_dir, "vodpipe-lambda")?;
    let hosts = |handler: &str, n: u32, timeout: u32| -> Result<Vec<Arc<FunctionHost>>> {
        let stem = format!("vodpipe-{handler}");
        let mut env = fenv.clone();
        env.push(("_HANDLER".to_string(), handler.to_string()));
        (0..n.max(1))
            .map(|i| {
                FunctionHost::new(
                    &stem,
                    &bin,
                    env.clone(),
                    &scratch.join(format!("{stem}-{i}.log")),
                    Duration::from_secs(u64::from(timeout)),
                )
            })
            .collect()
    };
    let ingests = hosts(
        "ingest",
        a.ingest_environments,
        vodpipe_aws::bootstrap::INGEST_TIMEOUT_SECS,
    )?;
    let stitches = hosts(
        "stitch",
        a.stitch_environments,
        vodpipe_aws::bootstrap::STITCH_TIMEOUT_SECS,
    )?;
    let mut wenv = env.clone();
    wenv.push((
        "VODPIPE_STATE".into(),
        scratch.join("workers").display().to_string(),
    ));

    say(format!(
        "burst: {} uploads of a {} s clip within {} s; {} ingest and {} stitch environments (batches of {}), {} workers, a kill every {} s",
        a.jobs,
        a.items * 4,
        a.burst_seconds,
        ingests.len(),
        stitches.len(),
        a.stitch_batch,
        a.workers,
        a.kill_every
    ));
    crate::moto::control(&endpoint, "DELETE", "/_vodpipe/requests", None)?;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let ctx = SourceCtx {
        bridge: bridge.clone(),
        sqs: sqs.clone(),
        stop: stop.clone(),
    };
    let mut threads = Vec::new();
    {
        let delivery = S3Delivery {
            queue_url: uploads_queue.0.clone(),
            queue_arn: uploads_queue.1.clone(),
            functions: ingests.clone(),
            duplicate: false,
            dead_lettered: Arc::default(),
            hold: Arc::default(),
        };
        let ctx = ctx.clone();
        threads.push(std::thread::spawn(move || s3_to_function(ctx, delivery)));
    }
    for f in &stitches {
        let (ctx, f, (url, arn)) = (ctx.clone(), f.clone(), stitch_queue.clone());
        let batch = a.stitch_batch;
        threads.push(std::thread::spawn(move || {
            let visibility = vodpipe_aws::bootstrap::STITCH_VISIBILITY_SECS as i32;
            sqs_to_function(ctx, url, arn, f, batch, visibility)
        }));
    }
    let mut workers = (0..a.workers)
        .map(|_| spawn_worker(&wenv, &a, &init, true))
        .collect::<Result<Vec<_>>>()?;

    // The uploads, evenly over the burst.
    let uploader = {
        let (bridge, s3, bucket, clip, n, secs) = (
            bridge.clone(),
            s3.clone(),
            settings.ingest_bucket.clone(),
            clip.clone(),
            a.jobs,
            a.burst_seconds,
        );
        std::thread::spawn(move || -> Result<()> {
            let t0 = Instant::now();
            for j in 0..n {
                let at = Duration::from_secs_f64(secs * f64::from(j) / f64::from(n.max(1)));
                if let Some(wait) = at.checked_sub(t0.elapsed()) {
                    std::thread::sleep(wait);
                }
                bridge
                    .run(
                        s3.put_object()
                            .bucket(&bucket)
                            .key(upload_key(j))
                            .body(clip.clone().into())
                            .send(),
                    )
                    .with_context(|| format!("uploading {}", upload_key(j)))?;
            }
            Ok(())
        })
    };

    let mut dice = crate::load::Dice(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let (mut kills, mut last_kill, mut polls) = (0u32, Instant::now(), 0u64);
    let mut backlog: BTreeMap<&str, u64> = BTreeMap::new();
    // (seconds since the start, jobs published): the stitch rate's raw series.
    let mut published_at: Vec<(f64, u64)> = Vec::new();
    let mut last_report = Instant::now();
    let mut last_sweep = Instant::now();
    let (published, failed) = loop {
        std::thread::sleep(Duration::from_secs(1));
        for (label, url) in [
            ("uploads", uploads_queue.0.as_str()),
            ("stitch", stitch_queue.0.as_str()),
        ] {
            let d = queue_depth(&bridge, &sqs, url);
            let e = backlog.entry(label).or_default();
            *e = (*e).max(d);
        }
        let work = aws.state.depth(Queue::Work(Tier::Standard)).unwrap_or(0);
        let e = backlog.entry("standard").or_default();
        *e = (*e).max(work);
        let published = count_in(&aws, &db, JobStatus::Published)?;
        let failed = count_in(&aws, &db, JobStatus::Failed)?;
        polls += 2;
        published_at.push((started.elapsed().as_secs_f64(), published));
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
                "  {:.0} s: {published}/{} published; backlog now: uploads {}, standard {work}",
                started.elapsed().as_secs_f64(),
                a.jobs,
                queue_depth(&bridge, &sqs, &uploads_queue.0),
            ));
        }
        // The fleet tick's stitch sweep (a worker killed between its last commit and its
        // stitch request strands the job otherwise).
        if last_sweep.elapsed() >= Duration::from_secs(5) {
            last_sweep = Instant::now();
            sweep_stitches(&aws, a.lease_seconds, &say);
        }
        if a.kill_every > 0.0 && last_kill.elapsed().as_secs_f64() >= a.kill_every {
            last_kill = Instant::now();
            let victim = (dice.next() % workers.len() as u64) as usize;
            workers[victim].kill()?;
            workers[victim].wait()?;
            workers[victim] = spawn_worker(&wenv, &a, &init, true)?;
            kills += 1;
        }
    };
    let drain = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    for t in threads {
        let _ = t.join();
    }
    uploader
        .join()
        .map_err(|_| anyhow::anyhow!("the uploader panicked"))??;
    let (ingest_stats, stitch_stats) = (
        ingests.iter().map(|f| f.stats()).collect::<Vec<_>>(),
        stitches.iter().map(|f| f.stats()).collect::<Vec<_>>(),
    );
    for f in ingests.iter().chain(&stitches) {
        f.shutdown();
    }
    let counts = request_counts(&endpoint)?;
    let injected = crate::moto::control(&endpoint, "GET", "/_vodpipe/faults", None)?;

    // Every upload: exactly one job, PUBLISHED once, every item done.
    let (mut lost, mut twice, mut items) = (Vec::new(), Vec::new(), 0u64);
    // Seconds workers spent on items, lease to stored segments (what each job sums).
    let mut item_secs = 0.0;
    for j in 0..a.jobs {
        let uri = format!("s3://{}/{}", settings.ingest_bucket, upload_key(j));
        let jobs = aws.state.jobs_by_source(&uri)?;
        match jobs.as_slice() {
            [job] if job.status == JobStatus::Published && job.done == job.total => {
                items += u64::from(job.total);
                item_secs += job.encode_secs;
                if job.stitch_count != 1 {
                    twice.push(upload_key(j));
                }
            }
            [] | [_] => lost.push(upload_key(j)),
            _ => twice.push(upload_key(j)),
        }
    }
    let calls: u64 = counts
        .iter()
        .filter(|(k, _)| {
            ["s3:", "sqs:", "dynamodb:"]
                .iter()
                .any(|s| k.starts_with(s))
        })
        .map(|(k, (n, _, _))| {
            if k == "dynamodb:Query" {
                n.saturating_sub(polls)
            } else {
                *n
            }
        })
        .sum();
    let mean = |stats: &[crate::runtime_api::FunctionStats]| {
        let (busy, n) = stats
            .iter()
            .fold((0u64, 0u32), |(b, n), s| (b + s.busy_ms, n + s.invocations));
        (busy as f64 / f64::from(n.max(1)) / 1000.0 * 100.0).round() / 100.0
    };
    // The best ten seconds of publishing, and the mean over the drain.
    let peak = published_at
        .iter()
        .filter_map(|(t, n)| {
            let earlier = published_at.iter().rev().find(|(u, _)| *u <= t - 10.0)?;
            Some((n - earlier.1) as f64 / (t - earlier.0))
        })
        .fold(0.0f64, f64::max);
    let report = json!({
        "uploads": a.jobs,
        "burst_seconds": a.burst_seconds,
        "clip_seconds": a.items * 4,
        "items": items,
        "workers": a.workers,
        "kills": kills,
        "ingest_environments": ingests.len(),
        "stitch_environments": stitches.len(),
        "stitch_batch": a.stitch_batch,
        "published": published,
        "failed": failed,
        "lost": lost.len(),
        "published_twice": twice.len(),
        "drain_secs": (drain * 10.0).round() / 10.0,
        "largest_backlog": backlog,
        "stitch_jobs_per_second": {
            "peak_10s": (peak * 100.0).round() / 100.0,
            "mean": (published as f64 / drain * 100.0).round() / 100.0,
        },
        "calls_per_item": (calls as f64 / items.max(1) as f64 * 100.0).round() / 100.0,
        "mean_ingest_secs": mean(&ingest_stats),
        "mean_stitch_invocation_secs": mean(&stitch_stats),
        "mean_item_secs": (item_secs / items.max(1) as f64 * 1000.0).round() / 1000.0,
        "ingest_invocations": ingest_stats.iter().map(|s| s.invocations).sum::<u32>(),
        "stitch_invocations": stitch_stats.iter().map(|s| s.invocations).sum::<u32>(),
        "faults": crate::faults::by_service(&injected),
    });
    if !a.json {
        eprintln!(
            "{} uploads drained in {drain:.1} s: {published} published, {failed} failed, {} lost, {} published twice; {} kills",
            a.jobs,
            lost.len(),
            twice.len(),
            kills
        );
    }
    println!("{report}");
    let ok = lost.is_empty() && twice.is_empty() && failed == 0;
    if ok {
        let _ = std::fs::remove_dir_all(&scratch);
    } else {
        eprintln!("function logs kept in {}", scratch.display());
    }
    Ok(if ok { 0 } else { 1 })
}
