//! The pipeline on the AWS backend, over the real SDKs against moto server: a clip uploaded
//! to the ingest bucket under a key with spaces, `+` and non-ASCII characters is ingested
//! with `--backend aws`, encoded by two worker processes, and published to the output
//! bucket; the published asset, downloaded, is frame-exact and plays in hls.js and shaka.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The AWS backend is in the binary with the `aws` feature only (a default one).
#![cfg(feature = "aws")]

use vodpipe_testkit::emulator;
mod support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;
use vodpipe_control::ports::{Cacheability, JobStore, ObjectStore};

fn vodpipe(env: &HashMap<String, String>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vodpipe"));
    c.envs(env);
    c
}

fn json(out: std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn an_upload_with_an_awkward_key_is_published_through_s3_sqs_and_dynamodb() {
    emulator::start();
    let d = tempfile::tempdir().unwrap();
    let name = emulator::unique_name("e2e");
    let env = aws_env(&name, &d.path().join("scratch"));
    // Upload the source under an awkward key.
    let src = d.path().join("src.mp4");
    make_clip(&src, "640x360", "30000/1001", 10, Some(440), HARD_H264);
    let key = "uploads/My Clip +1 é.mp4";
    let settings = emulator::settings(&name);
    let aws = vodpipe_aws::Aws::connect(settings.clone()).unwrap();
    aws.ingest
        .put(key, &std::fs::read(&src).unwrap(), Cacheability::Immutable)
        .unwrap();
    let uri = format!("s3://{}/{key}", settings.ingest_bucket);
    let first = json(
        vodpipe(&env)
            .args(["ingest", &uri, "--json", "--chunk-seconds", "4"])
            .output()
            .unwrap(),
    );
    let again = json(
        vodpipe(&env)
            .args(["ingest", &uri, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        first["job_id"], again["job_id"],
        "re-ingesting the same object version makes no new job"
    );
    let job_id = first["job_id"].as_str().unwrap().to_string();
    // Two worker processes drain the queues.
    let mut workers: Vec<_> = (0..2)
        .map(|_| {
            vodpipe(&env)
                .args(["worker", "--idle-exit", "4", "--lease-seconds", "10"])
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let status = wait_for_final(&env, &job_id, Duration::from_secs(300));
    for w in &mut workers {
        w.wait().unwrap();
    }
    assert_eq!(status["status"], "PUBLISHED", "{status}");
    assert_eq!(status["stitch_count"], 1);
    let asset = "uploads/My_Clip__1__";
    assert_eq!(status["master_key"], format!("{asset}/master.m3u8"));
    assert_eq!(status["dash_key"], format!("{asset}/manifest.mpd"));
    assert_eq!(
        status["output_prefix"],
        format!("s3://{}/{asset}/", settings.output_bucket)
    );
    // Download the published asset and check it like a local one.
    let out = d.path().join("download");
    let local_job = download_published(&aws, &status, &out);
    let renditions = assert_published_correctly(&local_job, &src, d.path());
    assert_psnr_at_least(&renditions[0], &src, 30.0);
    // And it plays.
    assert_plays(
        &out,
        &format!("{asset}/master.m3u8"),
        &format!("{asset}/manifest.mpd"),
    );

    // The console on this deployment: jobs from the table, players on the playback base.
    // The emulator's bucket, made publicly readable, stands in for CloudFront in front of
    // the output bucket (moto has no CloudFront to serve from).
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let moto = endpoint.trim_start_matches("http://");
    let bucket = &settings.output_bucket;
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": "*", "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{bucket}/*")}]});
    let put = http(
        moto,
        "PUT",
        &format!("/{bucket}?policy"),
        &[],
        policy.to_string().as_bytes(),
    );
    assert!(put.status < 300, "{}", String::from_utf8_lossy(&put.body));
    let base = format!("{endpoint}/{bucket}");
    let console = Console::start(&["--playback-base", &base], &env);
    let snap = console.get("/api/jobs").json();
    assert_eq!(snap["backend"], "aws");
    let row = snap["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_id"] == job_id.as_str())
        .unwrap_or_else(|| panic!("job {job_id} not listed: {snap:#}"));
    assert_eq!(row["status"], "PUBLISHED");
    assert_eq!(row["name"], "My Clip +1 é.mp4");
    assert_eq!(row["urls"]["hls"], format!("{base}/{asset}/master.m3u8"));
    assert_eq!(row["urls"]["dash"], format!("{base}/{asset}/manifest.mpd"));
    let detail = console.get(&format!("/api/jobs/{job_id}")).json();
    let items = detail["items"].as_array().unwrap();
    assert!(!items.is_empty());
    for it in items {
        assert_eq!(it["state"], "done", "{it}");
        assert!(it["worker"].as_str().is_some(), "{it}");
        assert!(
            it["done_at"].as_f64().unwrap() >= it["leased_at"].as_f64().unwrap(),
            "{it}"
        );
    }
    // Nothing is served from this machine on AWS.
    assert_eq!(
        console.get(&format!("/media/{asset}/master.m3u8")).status,
        404
    );
    let shots = d.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let report = console_report(&console.url, "My Clip +1 é.mp4", true, &shots);
    assert_eq!(report["table_state"], "PUBLISHED", "{report:#}");
    assert_console_played(&report, 10.0);
    assert_eq!(console.stop(), Some(0));
}

/// An upload that overwrites the key while the job made from the first version is still
/// encoding makes its own job; the first job reads only its own version's bytes, and
/// publishes exactly those.
#[test]
fn an_overwrite_mid_encode_does_not_change_the_bytes_a_job_encodes() {
    emulator::start();
    let d = tempfile::tempdir().unwrap();
    let name = emulator::unique_name("pin");
    let env = aws_env(&name, &d.path().join("scratch"));
    let (first, second) = (d.path().join("v1.mp4"), d.path().join("v2.mp4"));
    make_clip(&first, "320x180", "25", 6, Some(440), FAST_H264);
    make_clip(&second, "320x180", "30", 3, None, FAST_H264);
    let settings = emulator::settings(&name);
    let aws = vodpipe_aws::Aws::connect(settings.clone()).unwrap();
    let key = "pinned/show.mp4";
    let uri = format!("s3://{}/{key}", settings.ingest_bucket);
    aws.ingest
        .put(
            key,
            &std::fs::read(&first).unwrap(),
            Cacheability::Immutable,
        )
        .unwrap();
    let job = json(
        vodpipe(&env)
            .args(["ingest", &uri, "--json", "--chunk-seconds", "4"])
            .output()
            .unwrap(),
    );
    let job_id = job["job_id"].as_str().unwrap().to_string();
    // The key is overwritten before any worker has read a byte.
    aws.ingest
        .put(
            key,
            &std::fs::read(&second).unwrap(),
            Cacheability::Immutable,
        )
        .unwrap();
    let mut worker = vodpipe(&env)
        .args(["worker", "--idle-exit", "4", "--lease-seconds", "10"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_for_final(&env, &job_id, Duration::from_secs(300));
    worker.wait().unwrap();
    assert_eq!(status["status"], "PUBLISHED", "{status}");
    let out = d.path().join("download");
    let local_job = download_published(&aws, &status, &out);
    // Frame-exact against the first version (150 frames), not the second (90).
    assert_published_correctly(&local_job, &first, d.path());
}

/// A feature-length source near the input policy's six-hour limit goes through S3, SQS
/// and DynamoDB and publishes frame-exact; no record in the table comes near DynamoDB's
/// item limit on the way. (160x90 at 2 fps, looped with `-c copy`, so it is cheap.)
#[test]
fn a_five_and_a_half_hour_source_publishes_frame_exact_on_the_aws_backend() {
    emulator::start();
    let d = tempfile::tempdir().unwrap();
    let clip = d.path().join("minute.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x90:rate=2",
        "-t",
        "60",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "8",
        clip.to_str().unwrap(),
    ]);
    let list = d.path().join("list.txt");
    let line = format!("file '{}'\n", clip.display());
    std::fs::write(&list, line.repeat(330)).unwrap();
    let src = d.path().join("feature.mp4");
    ffmpeg(&[
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
        list.to_str().unwrap(),
        "-c",
        "copy",
        src.to_str().unwrap(),
    ]);
    let name = emulator::unique_name("long");
    let env = aws_env(&name, &d.path().join("scratch"));
    let settings = emulator::settings(&name);
    let aws = vodpipe_aws::Aws::connect(settings.clone()).unwrap();
    let key = "features/long.mp4";
    aws.ingest
        .put(key, &std::fs::read(&src).unwrap(), Cacheability::Immutable)
        .unwrap();
    let uri = format!("s3://{}/{key}", settings.ingest_bucket);
    let job = json(
        vodpipe(&env)
            .args(["ingest", &uri, "--json", "--chunk-seconds", "120"])
            .output()
            .unwrap(),
    );
    assert_eq!(job["status"], "ENCODING", "{job}");
    let job_id = job["job_id"].as_str().unwrap().to_string();
    let mut workers: Vec<_> = (0..2)
        .map(|_| {
            vodpipe(&env)
                .args(["worker", "--idle-exit", "6", "--lease-seconds", "30"])
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let status = wait_for_final(&env, &job_id, Duration::from_secs(1500));
    for w in &mut workers {
        w.wait().unwrap();
    }
    assert_eq!(status["status"], "PUBLISHED", "{status}");
    assert!(
        (status["duration_secs"].as_f64().unwrap() - 19800.0).abs() < 1.0,
        "{status}"
    );
    assert_eq!(status["chunks_total"], 165, "{status}");
    // No record near the item limit: plans and results are paged.
    let (largest, _) = aws.state.jobs.largest_record().unwrap();
    assert!(largest < 64 * 1024, "a record of {largest} bytes");
    let out = d.path().join("download");
    let local_job = download_published(&aws, &status, &out);
    assert_published_correctly(&local_job, &src, d.path());
}

/// S3 bytes served from `bucket` so far (GETs), as the emulator counted them.
fn bytes_read_from(bucket: &str) -> u64 {
    emulator::control("GET", "/_vodpipe/requests/s3", None)[format!("{bucket}:GET")]["bytes_out"]
        .as_u64()
        .unwrap_or(0)
}

/// Two-hour sources without an index (Matroska, MPEG-TS) publish through S3, SQS and
/// DynamoDB, frame-exact, and the ingest reads a sliver of each (its header; the packet
/// scan is the index item's, on a worker). (160x90 at 1 fps, looped with `-c copy`.)
#[test]
fn two_hour_unindexed_sources_publish_and_their_ingest_reads_under_five_percent() {
    emulator::start();
    let d = tempfile::tempdir().unwrap();
    let clip = d.path().join("minute.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x90:rate=1",
        "-t",
        "60",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "4",
        clip.to_str().unwrap(),
    ]);
    let list = d.path().join("list.txt");
    std::fs::write(&list, format!("file '{}'\n", clip.display()).repeat(120)).unwrap();
    let name = emulator::unique_name("unindexed");
    let env = aws_env(&name, &d.path().join("scratch"));
    let settings = emulator::settings(&name);
    let aws = vodpipe_aws::Aws::connect(settings.clone()).unwrap();
    let mut jobs = Vec::new();
    for ext in ["mkv", "ts"] {
        let src = d.path().join(format!("feature.{ext}"));
        ffmpeg(&[
            "-f",
            "concat",
            "-safe",
            "0",
            "-i",
            list.to_str().unwrap(),
            "-c",
            "copy",
            src.to_str().unwrap(),
        ]);
        let size = std::fs::metadata(&src).unwrap().len();
        let key = format!("features/long.{ext}");
        aws.ingest
            .put(&key, &std::fs::read(&src).unwrap(), Cacheability::Immutable)
            .unwrap();
        let uri = format!("s3://{}/{key}", settings.ingest_bucket);
        let before = bytes_read_from(&settings.ingest_bucket);
        let job = json(
            vodpipe(&env)
                .args(["ingest", &uri, "--json", "--chunk-seconds", "600"])
                .output()
                .unwrap(),
        );
        let read = bytes_read_from(&settings.ingest_bucket) - before;
        assert_eq!(job["status"], "ENCODING", "{job}");
        let share = read as f64 / size as f64;
        eprintln!(
            "{ext}: ingest read {read} of {size} bytes ({:.2} %)",
            share * 100.0
        );
        assert!(share <= 0.05, "{ext}: ingest read {read} of {size} bytes");
        jobs.push((job["job_id"].as_str().unwrap().to_string(), src));
    }
    let mut workers: Vec<_> = (0..2)
        .map(|_| {
            vodpipe(&env)
                .args(["worker", "--idle-exit", "6", "--lease-seconds", "30"])
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let finals: Vec<_> = jobs
        .iter()
        .map(|(id, _)| wait_for_final(&env, id, Duration::from_secs(1500)))
        .collect();
    for w in &mut workers {
        w.wait().unwrap();
    }
    for ((_, src), status) in jobs.iter().zip(&finals) {
        assert_eq!(status["status"], "PUBLISHED", "{status}");
        assert!(
            (status["duration_secs"].as_f64().unwrap() - 7200.0).abs() < 2.0,
            "{status}"
        );
        let out = d.path().join(format!(
            "download-{}",
            src.extension().unwrap().to_str().unwrap()
        ));
        let local_job = download_published(&aws, status, &out);
        assert_published_correctly(&local_job, src, d.path());
    }
}

/// `vodpipe aws tick` runs the fleet function's repairs from a shell. An upload whose
/// ingest failed on every try (its S3 event in the ingest function's dead-letter queue,
/// as Lambda leaves it) would be lost without a trace: the tick ingests it again. A dry
/// run says so and changes nothing.
#[test]
fn the_tick_ingests_again_an_upload_whose_every_ingest_failed() {
    emulator::start();
    let d = tempfile::tempdir().unwrap();
    let name = emulator::unique_name("tick");
    let env = aws_env(&name, &d.path().join("scratch"));
    let src = d.path().join("src.mp4");
    make_clip(&src, "320x180", "25", 4, None, FAST_H264);
    let settings = emulator::settings(&name);
    let aws = vodpipe_aws::Aws::connect(settings.clone()).unwrap();
    let key = "lost/one upload.mp4";
    aws.ingest
        .put(key, &std::fs::read(&src).unwrap(), Cacheability::Immutable)
        .unwrap();
    // What Lambda puts in the function's dead-letter queue: the event as it was sent.
    let event = serde_json::json!({"Records": [{
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": settings.ingest_bucket}, "object": {"key": "lost/one+upload.mp4", "sequencer": "00AA"}},
    }]});
    let dlq = aws
        .state
        .queues
        .raw(&settings.ingest_events_dlq_name())
        .unwrap()
        .expect("bootstrap makes the ingest events' dead-letter queue");
    let bridge = vodpipe_aws::config::Bridge::new().unwrap();
    let sqs = aws_sdk_sqs::Client::new(&bridge.sdk_config());
    let url = bridge
        .run(
            sqs.get_queue_url()
                .queue_name(settings.ingest_events_dlq_name())
                .send(),
        )
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    bridge
        .run(
            sqs.send_message()
                .queue_url(url)
                .message_body(event.to_string())
                .send(),
        )
        .unwrap();
    assert_eq!(dlq.waiting().unwrap(), 1);
    let uri = format!("s3://{}/{key}", settings.ingest_bucket);
    let dry = json(
        vodpipe(&env)
            .args(["aws", "tick", "--dry-run", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(dry["dry_run"], true, "{dry:#}");
    assert_eq!(dry["redrive_waiting"], 1, "{dry:#}");
    assert!(
        aws.state.jobs_by_source(&uri).unwrap().is_empty(),
        "a dry run ingested"
    );
    let tick = json(
        vodpipe(&env)
            .args(["aws", "tick", "--json"])
            .env("VODPIPE_CHUNK_SECONDS", "4")
            .output()
            .unwrap(),
    );
    assert_eq!(tick["redriven"], serde_json::json!([key]), "{tick:#}");
    assert_eq!(tick["redrive_waiting"], 0, "{tick:#}");
    let jobs = aws.state.jobs_by_source(&uri).unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].status, vodpipe_control::job::JobStatus::Encoding);
    assert_eq!(
        jobs[0]
            .settings
            .as_ref()
            .and_then(|s| s.source_sequencer.as_deref()),
        Some("00AA"),
        "the upload keeps its place among the key's uploads"
    );
}
