//! The deployed pipeline end to end on the emulator, as `make e2e-aws` runs it: an upload
//! to the ingest bucket reaches the ingest function through the bucket's notification and
//! the Lambda runtime API; worker tasks (one of them reclaimed mid-chunk like a Spot task)
//! encode; the stitch function publishes from its SQS event; the fleet function records
//! the interruption and replaces the capacity. The published asset, downloaded, is
//! frame-exact and plays in hls.js and shaka. A hostile upload ends FAILED once, with its
//! reason, and starts no worker.
//!
//! The binaries (`vodpipe-emulator`, the three functions, `worker-task`) must be built:
//! `make test` builds every binary before it runs the tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

fn emulator() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_vodpipe")).with_file_name("vodpipe-emulator");
    for name in ["vodpipe-emulator", "vodpipe-lambda", "worker-task"] {
        assert!(
            exe.with_file_name(name).exists(),
            "{name} is not built: run `cargo build --workspace --bins` (make test does)"
        );
    }
    exe
}

/// Runs `vodpipe-emulator e2e` (what `make e2e-aws` runs); its exit code and report.
fn e2e(input: &Path, key: &str, out: &Path, name: &str, extra: &[&str]) -> (i32, Value) {
    let run = Command::new(emulator())
        .args(["e2e", "--input"])
        .arg(input)
        .args(["--key", key, "--out"])
        .arg(out)
        .args([
            "--name",
            name,
            "--duplicate-events",
            "--timeout-secs",
            "600",
        ])
        .args(extra)
        // Each run starts an emulator of its own.
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    let report: Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("no report ({e}); stderr:\n{stderr}"));
    (run.status.code().unwrap_or(-1), report)
}

/// The states the job-state events announced, in order.
fn statuses(emu: &Value) -> Vec<&str> {
    emu["job_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect()
}

/// A 12-second clip with an English mov_text track inside, and a Spanish SubRip sidecar
/// for it: the source and the sidecar.
fn captioned_clip(d: &Path) -> (PathBuf, PathBuf) {
    let clip = d.join("clip.mp4");
    make_clip(&clip, "640x360", "30000/1001", 12, Some(440), HARD_H264);
    let (en, es) = (d.join("en.srt"), d.join("clip.es.srt"));
    std::fs::write(
        &en,
        "1\n00:00:01,000 --> 00:00:02,500\nHello\n\n2\n00:00:06,000 --> 00:00:09,000\nAcross\n",
    )
    .unwrap();
    std::fs::write(&es, "1\n00:00:03,000 --> 00:00:04,500\nHola\n").unwrap();
    let src = d.join("src.mp4");
    with_english_subtitles(&clip, &en, &src);
    (src, es)
}

#[test]
fn an_upload_is_published_by_the_deployed_functions_and_worker_tasks() {
    let d = tempfile::tempdir().unwrap();
    let (src, es) = captioned_clip(d.path());
    let out = d.path().join("out");
    let key = "uploads/My Clip +1 é.mp4";
    let (code, job) = e2e(
        &src,
        key,
        &out,
        "e2e-pub",
        &[
            "--interrupt",
            "--chunk-seconds",
            "4",
            "--workers",
            "2",
            "--sidecar",
            es.to_str().unwrap(),
        ],
    );
    let emu = &job["emulator"];
    assert_eq!(code, 0, "{job:#}");
    assert_eq!(job["status"], "PUBLISHED", "{job:#}");
    // The upload queue's messages (S3's test event when the notification was set and the
    // sidecar's, both skipped, and the video's), each delivered twice, made one job.
    assert_eq!(emu["functions"]["ingest"]["invocations"], 6, "{emu:#}");
    assert_eq!(emu["functions"]["ingest"]["errors"], 0, "{emu:#}");
    assert_eq!(emu["jobs_for_source"], 1, "{emu:#}");
    assert_eq!(emu["ingest_events_dead_lettered"], 0, "{emu:#}");
    // Tagged for the ingest bucket's retention rule once published.
    assert_eq!(emu["source_tags"]["vodpipe-published"], "true", "{emu:#}");
    assert_eq!(
        job["source"],
        format!("s3://e2e-pub-123456789012-us-east-1-ingest/{key}"),
        "the key was URL-decoded"
    );
    // A worker task was reclaimed mid-chunk; the fleet function recorded it once, the
    // item was redone by another task, and nothing crashed.
    assert_eq!(emu["fargate"]["interrupted"], 1, "{emu:#}");
    assert_eq!(emu["interruptions_recorded"], 1, "{emu:#}");
    assert!(job["interruptions"].as_u64().unwrap() >= 1, "{job:#}");
    assert_eq!(emu["fargate"]["crashed"], 0, "{emu:#}");
    assert_eq!(emu["fargate"]["running"], 0, "the fleet drained: {emu:#}");
    assert_eq!(job["chunks_done"], job["chunks_total"]);
    // Stitched once by the stitch function, state announced; a first publish invalidates
    // nothing (no cache holds another version; a replaced version is invalidated, which
    // control_plane.rs checks through the same stitch code).
    assert_eq!(job["stitch_count"], 1, "{job:#}");
    assert!(emu["functions"]["stitch"]["invocations"].as_u64().unwrap() >= 1);
    let invalidated = emu["invalidated_paths"].as_array().unwrap();
    assert!(invalidated.is_empty(), "{invalidated:?}");
    let (master_key, dash_key) = (
        job["master_key"].as_str().unwrap(),
        job["dash_key"].as_str().unwrap(),
    );
    assert_eq!(statuses(emu), ["ENCODING", "PUBLISHED"], "{emu:#}");
    // Embedded metrics for the dashboard came out of the functions and the tasks.
    let metrics = &emu["metrics"];
    for name in [
        "ChunkEncodeSeconds",
        "RealtimeFactor",
        "JobStateChanges:ENCODING",
        "JobStateChanges:PUBLISHED",
        "OutputMinutes",
        "EstimatedCostUSD",
        "QueueWaitSeconds",
        "SpotInterruptions",
    ] {
        assert!(
            metrics[name].as_u64().unwrap_or(0) >= 1,
            "no {name} metric: {metrics:#}"
        );
    }
    assert_eq!(metrics["JobStateChanges:PUBLISHED"], 1, "{metrics:#}");
    // Every function started once and measured its init.
    for f in ["ingest", "stitch", "fleet"] {
        assert_eq!(
            emu["functions"][f]["init_ms"].as_array().unwrap().len(),
            1,
            "{f} cold-started more than once: {emu:#}"
        );
    }
    // The downloaded asset is frame-exact, close to the source, and plays.
    let master = PathBuf::from(job["master"].as_str().unwrap());
    assert!(master.starts_with(&out), "{master:?} is under OUT");
    let renditions = assert_published_correctly(&job, &src, d.path());
    assert_psnr_at_least(&renditions[0], &src, 30.0);
    // Captions and thumbnails were published on AWS too, and the players list them.
    assert_eq!(
        job["subtitles"],
        serde_json::json!(["eng", "es"]),
        "{job:#}"
    );
    for file in ["poster", "thumbnails"] {
        let path = PathBuf::from(job[file].as_str().unwrap());
        assert!(path.starts_with(&out) && path.exists(), "{file}: {path:?}");
    }
    let report = assert_plays(&out, master_key, dash_key);
    assert_eq!(
        report["hls"]["text_tracks"].as_array().unwrap().len(),
        2,
        "{report:#}"
    );
    assert_eq!(
        report["dash"]["image_tracks"].as_array().unwrap().len(),
        1,
        "{report:#}"
    );
    assert!(
        report["hls"]["cues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["text"] == "Hello"),
        "{report:#}"
    );
}

#[test]
fn a_hostile_upload_fails_once_with_its_reason_and_starts_no_worker() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("evil.mp4");
    // An HLS playlist dressed as an MP4: ffprobe would follow it to other files.
    std::fs::write(
        &src,
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
    )
    .unwrap();
    let out = d.path().join("out");
    let (code, job) = e2e(&src, "uploads/evil.mp4", &out, "e2e-bad", &[]);
    let emu = &job["emulator"];
    assert_eq!(code, 1, "{job:#}");
    assert_eq!(job["status"], "FAILED", "{job:#}");
    let reason = job["error"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "FAILED without a reason: {job:#}");
    // A result, not an error: no retries, and the duplicate event changed nothing.
    assert_eq!(emu["functions"]["ingest"]["errors"], 0, "{emu:#}");
    assert_eq!(emu["jobs_for_source"], 1, "{emu:#}");
    assert_eq!(emu["fargate"]["started"], 0, "{emu:#}");
    assert_eq!(emu["fargate"]["crashed"], 0, "{emu:#}");
    assert_eq!(emu["objects_downloaded"], 0, "{emu:#}");
    assert_eq!(statuses(emu), ["FAILED"], "{emu:#}");
    assert_eq!(emu["metrics"]["JobStateChanges:FAILED"], 1, "{emu:#}");
}

/// A budget on the deployed shape: the stack allows $5 a job (`MaxJobCostUsd`), the upload's
/// metadata asks for less than its plan is estimated at. The ingest function fails the
/// job with both figures and starts no worker: nothing is encoded.
#[test]
fn an_upload_over_its_budget_fails_at_ingest_and_starts_no_worker() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src.mp4");
    make_clip(&src, "320x180", "25", 4, Some(440), FAST_H264);
    let out = d.path().join("out");
    let (code, job) = e2e(
        &src,
        "uploads/pricey.mp4",
        &out,
        "e2e-budget",
        &[
            "--max-job-cost-usd",
            "5",
            "--metadata",
            "vodpipe-max-cost-usd=0.000000001",
        ],
    );
    let emu = &job["emulator"];
    assert_eq!(code, 1, "{job:#}");
    assert_eq!(job["status"], "FAILED", "{job:#}");
    let reason = job["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("is over the budget of $0.00000000100 (x-amz-meta-vodpipe-max-cost-usd); nothing was encoded"),
        "{job:#}"
    );
    assert_eq!(
        job["settings"]["max_cost_usd"]["from"], "metadata",
        "{job:#}"
    );
    assert_eq!(emu["functions"]["ingest"]["errors"], 0, "{emu:#}");
    assert_eq!(emu["fargate"]["started"], 0, "{emu:#}");
    assert_eq!(statuses(emu), ["FAILED"], "{emu:#}");
}

/// Clipping on the deployed shape: an upload whose metadata asks for 1.5-4.25 s publishes
/// exactly the source's frames 38 to 106, its audio and subtitles cut to them.
#[test]
fn a_clipped_upload_publishes_only_its_range() {
    let d = tempfile::tempdir().unwrap();
    let src = support::clipped::clip_source(d.path());
    let out = d.path().join("out");
    let (code, job) = e2e(
        &src,
        "uploads/clipped.mp4",
        &out,
        "e2e-clip",
        &[
            "--metadata",
            "vodpipe-clip=1.5-4.25",
            "--chunk-seconds",
            "2",
        ],
    );
    assert_eq!(code, 0, "{job:#}");
    assert_eq!(job["settings"]["clip"]["from"], "metadata", "{job:#}");
    support::clipped::assert_clipped(&job, &src, 38, 69, 2.76, d.path());
}

/// Subtitles delivered after their video published, on the deployed shape: the upload of
/// `talk.en.srt` beside the published `talk.mp4` reaches the ingest function, which makes a
/// re-packaged version; a worker task converts the file and the stitch function publishes
/// it with the first version's segments. Not one segment is encoded for it (the asset's
/// segments are counted before and after), the pointers move to it (and are invalidated:
/// they were cached), and both players show the subtitles.
#[test]
fn a_subtitle_file_uploaded_after_its_video_published_is_added_without_an_encode() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src.mp4");
    make_clip(&src, "320x180", "25", 4, Some(440), FAST_H264);
    let srt = d.path().join("talk.en.srt");
    std::fs::write(
        &srt,
        "1\n00:00:00,500 --> 00:00:01,500\nHello\n\n2\n00:00:02,000 --> 00:00:03,000\nLater\n",
    )
    .unwrap();
    let out = d.path().join("out");
    let late = srt.display().to_string();
    let (code, report) = e2e(
        &src,
        "uploads/talk.mp4",
        &out,
        "e2e-late-subs",
        &["--late-sidecar", &late, "--chunk-seconds", "2"],
    );
    assert_eq!(code, 0, "{report:#}");
    let emu = &report["emulator"];
    let jobs = emu["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{emu:#}");
    let (first, second) = (&jobs[0], &jobs[1]);
    assert_eq!(first["subtitles"], serde_json::json!([]), "{first:#}");
    assert_eq!(second["status"], "PUBLISHED", "{second:#}");
    assert_eq!(
        second["settings"]["repackage"]["from"], first["job_id"],
        "{second:#}"
    );
    assert_eq!(second["subtitles"], serde_json::json!(["en"]), "{second:#}");
    assert_eq!(emu["pointer_job"], second["job_id"], "{emu:#}");
    let segments = &emu["late_sidecar_segments"];
    assert!(segments["before"].as_u64().unwrap() > 0, "{emu:#}");
    assert_eq!(segments["before"], segments["after"], "{emu:#}");
    // Replaced pointers were in caches: both are invalidated, once.
    let invalidated: Vec<&str> = emu["invalidated_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        invalidated,
        ["/uploads/talk/master.m3u8", "/uploads/talk/manifest.mpd"],
        "{emu:#}"
    );
    assert_eq!(emu["iam"]["denials"], serde_json::json!([]), "{emu:#}");
    // Publishing the new version retired nothing: it plays the first version's segments.
    for job in [first, second] {
        let dir = &emu["superseded"][job["job_id"].as_str().unwrap()];
        assert!(dir["objects"].as_u64().unwrap() > 0, "{emu:#}");
        assert_eq!(dir["superseded"], 0, "{emu:#}");
    }
    assert_published_correctly(second, &src, d.path());
    let report = assert_plays(
        &out,
        second["master_key"].as_str().unwrap(),
        second["dash_key"].as_str().unwrap(),
    );
    for kind in ["hls", "dash"] {
        let texts: Vec<&str> = report[kind]["cues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, ["Hello", "Later"], "{kind}: {report:#}");
    }
}

/// An overlay on the deployed shape: an operator puts a PNG under `_vodpipe/overlays/`,
/// an upload's metadata names it, and the worker tasks draw it over every rung.
#[test]
fn an_upload_naming_an_overlay_gets_it_in_every_rung() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src.mp4");
    make_clip(&src, "640x360", "25", 4, Some(440), FAST_H264);
    let logo = d.path().join("logo.png");
    support::overlaid::magenta_logo(&logo);
    let out = d.path().join("out");
    let image = format!("brand={}", logo.display());
    let (code, job) = e2e(
        &src,
        "uploads/branded.mp4",
        &out,
        "e2e-overlay",
        &[
            "--overlay-image",
            &image,
            "--metadata",
            "vodpipe-overlay=brand",
            "--metadata",
            "vodpipe-overlay-position=top-right",
            "--chunk-seconds",
            "2",
        ],
    );
    assert_eq!(code, 0, "{job:#}");
    assert_eq!(job["settings"]["overlay"]["from"], "metadata", "{job:#}");
    // The defaults: 15 % of the width, 2 % from the edges, always.
    let seen = support::overlaid::assert_overlaid(&job, &src, 0.15, 0.02, (0.0, 1e9), d.path());
    assert_eq!(seen, 2 * 100);
}

/// Two uploads choose their tiers, and the first its ladder too: a deployment profile
/// asking for a per-title ladder, whose analysis the worker tasks run as the job's first
/// item before its chunks.
#[test]
fn two_uploads_choose_their_tiers_by_metadata_and_by_prefix() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src.mp4");
    make_clip(&src, "320x180", "25", 6, Some(440), FAST_H264);
    let profile = d.path().join("per-title.json");
    std::fs::write(&profile, r#"{"auto": true}"#).unwrap();
    let profile_arg = format!("per-title={}", profile.display());
    let out = d.path().join("out");
    let (code, report) = e2e(
        &src,
        "uploads/paid.mp4",
        &out,
        "e2e-tiers",
        &[
            "--profile",
            &profile_arg,
            "--metadata",
            "vodpipe-tier=premium",
            "--metadata",
            "vodpipe-ladder=per-title",
            "--also",
            "archive/old.mp4",
            "--chunk-seconds",
            "4",
        ],
    );
    let emu = &report["emulator"];
    assert_eq!(code, 0, "{report:#}");
    let jobs = emu["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    let (paid, old) = (&jobs[0], &jobs[1]);
    for j in [paid, old] {
        assert_eq!(j["status"], "PUBLISHED", "{j:#}");
    }
    // `vodpipe status --json` says which tier and why.
    assert_eq!(paid["tier"], "premium", "{paid:#}");
    assert_eq!(paid["settings"]["tier"]["from"], "metadata", "{paid:#}");
    assert_eq!(old["tier"], "bulk", "{old:#}");
    assert_eq!(old["settings"]["tier"]["from"], "prefix", "{old:#}");
    // The per-title job had one item more than the fixed one: its ladder analysis.
    assert_eq!(paid["settings"]["ladder"]["value"], "per-title", "{paid:#}");
    assert_eq!(paid["settings"]["ladder"]["from"], "metadata", "{paid:#}");
    assert_eq!(
        paid["chunks_total"].as_u64(),
        old["chunks_total"].as_u64().map(|n| n + 1),
        "{emu:#}"
    );
    // Each was encoded by its own tier's capacity: premium tasks serve only the premium
    // queue, Spot tasks (started for bulk) the standard and bulk queues.
    let started = &emu["fargate"]["started_by"];
    assert!(
        started["vodpipe-premium"].as_u64().unwrap_or(0) >= 1,
        "{emu:#}"
    );
    assert!(
        started["vodpipe-bulk"].as_u64().unwrap_or(0) >= 1,
        "{emu:#}"
    );
    assert_eq!(emu["metrics"]["JobsIngested"], 2, "{emu:#}");
}

/// AWS as it fails, on the deployed shape: every function and task signs with exactly its
/// template role (IAM enforced), 5 % of responses are lost after the request was applied,
/// 5 % of requests are throttled and 10 % of transactions conflict, on every service; a
/// worker task is reclaimed mid-item; S3 delivers every event twice; and an older upload
/// of the same key, whose ingest is held back until the newer one has published, arrives
/// last. Every job ends PUBLISHED exactly once, frame-exact; the pointers serve the newer
/// upload; both subtitle languages are published; nothing is left on a queue.
#[test]
fn the_deployed_shape_survives_aws_as_it_fails() {
    let d = tempfile::tempdir().unwrap();
    let (src, es) = captioned_clip(d.path());
    let older = d.path().join("older.mp4");
    make_clip(&older, "320x180", "25", 6, Some(330), FAST_H264);
    let out = d.path().join("out");
    let (code, report) = e2e(
        &src,
        "uploads/talk.mp4",
        &out,
        "e2e-chaos",
        &[
            "--interrupt",
            "--chunk-seconds",
            "4",
            "--workers",
            "2",
            "--sidecar",
            es.to_str().unwrap(),
            "--older",
            older.to_str().unwrap(),
            "--fault",
            "dynamodb:TransactWriteItems@lost=0.05,throttle=0.05,conflict=0.1,latency-ms=0-20",
            "--fault",
            "lost=0.05,throttle=0.05,latency-ms=0-20",
            "--fault-seed",
            "7",
        ],
    );
    let emu = &report["emulator"];
    assert_eq!(code, 0, "{report:#}");
    // IAM was enforced on every call and refused none.
    assert_eq!(emu["iam"]["enforced"], true, "{emu:#}");
    assert_eq!(emu["iam"]["denials"], serde_json::json!([]), "{emu:#}");
    assert!(emu["iam"]["checked"].as_u64().unwrap() > 100, "{emu:#}");
    // The faults were there: lost responses and throttling on DynamoDB, S3 and SQS.
    let by = &emu["faults"]["by_service"];
    for service in ["dynamodb", "s3", "sqs"] {
        let n = |k: &str| by[service][k].as_u64().unwrap_or(0);
        assert!(n("lost") + n("throttle") >= 2, "{service}: {by:#}");
    }
    // Both uploads published once; the pointers serve the newer one.
    let jobs = emu["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{emu:#}");
    let (newer, older_job) = (&jobs[0], &jobs[1]);
    for j in jobs {
        assert_eq!(j["status"], "PUBLISHED", "{j:#}");
        assert_eq!(j["stitch_count"], 1, "{j:#}");
    }
    assert_eq!(emu["pointer_job"], newer["job_id"], "{emu:#}");
    if older_job["master_key"] == newer["master_key"] {
        // The older upload held the pointers at some time. That is right only before the
        // newer one published: a put whose response was lost and was sent again makes a
        // second older version, whose event the harness's hold does not know. Never after.
        let published = |id: &serde_json::Value| {
            emu["job_events"]
                .as_array()
                .unwrap()
                .iter()
                .position(|e| e["job_id"] == *id && e["status"] == "PUBLISHED")
                .unwrap_or_else(|| panic!("no PUBLISHED event for {id}: {emu:#}"))
        };
        assert!(
            published(&older_job["job_id"]) < published(&newer["job_id"]),
            "the older upload took the pointers after the newer one published: {emu:#}"
        );
    }
    assert_eq!(newer["master_key"], "uploads/talk/master.m3u8");
    // No subtitle language was lost to a fault.
    assert_eq!(
        newer["subtitles"],
        serde_json::json!(["eng", "es"]),
        "{newer:#}"
    );
    // The reclaimed task's item was redone; nothing crashed, nothing is left to do.
    assert_eq!(emu["fargate"]["interrupted"], 1, "{emu:#}");
    assert_eq!(emu["fargate"]["crashed"], 0, "{emu:#}");
    assert_eq!(emu["queued_after"], 0, "{emu:#}");
    // The newer upload, downloaded, is frame-exact and close to its source.
    let renditions = assert_published_correctly(&report, &src, d.path());
    assert_psnr_at_least(&renditions[0], &src, 30.0);
    eprintln!(
        "chaos: faults {by}, {} IAM checks, {:.1} s",
        emu["iam"]["checked"], emu["wall_secs"]
    );
}

/// A worker image that cannot be pulled: every task stops with `TaskFailedToStart`. The
/// fleet records it against the tier and backs off (a task is billed for every failed
/// start) instead of launching on every tick, and once the image is there the job
/// publishes.
#[test]
fn a_worker_image_that_cannot_be_pulled_is_retried_with_back_off_not_in_a_loop() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src.mp4");
    make_clip(&src, "320x180", "25", 6, Some(440), FAST_H264);
    let out = d.path().join("out");
    let (code, report) = e2e(
        &src,
        "uploads/late-image.mp4",
        &out,
        "e2e-pull",
        &[
            "--chunk-seconds",
            "4",
            "--tick-secs",
            "1",
            "--image-missing-for",
            "20",
        ],
    );
    let emu = &report["emulator"];
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["status"], "PUBLISHED", "{report:#}");
    let failed = emu["fargate"]["failed_to_start"].as_u64().unwrap();
    // A tick a second for 20 s would launch up to 2 tasks each time: 40 failed starts.
    // Backing off from 2 s, doubling per failure, leaves a handful.
    assert!((1..=8).contains(&failed), "{failed} failed starts: {emu:#}");
    assert_eq!(emu["fargate"]["crashed"], 0, "{emu:#}");
}

/// Content protection on the deployed shape: an upload whose metadata asks for cbcs keys
/// from a SPEKE key server is encrypted by the worker tasks (each request SigV4-signed
/// for `execute-api`, as API Gateway requires), published by the stitch function with its
/// keys signalled, and every downloaded segment decrypts with the server's keys.
#[test]
fn a_protected_upload_gets_its_keys_from_a_speke_server_and_publishes_encrypted() {
    use support::protected::*;
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src.mp4");
    make_clip(&src, "320x180", "25", 6, Some(440), FAST_H264);
    let ks = key_server(0);
    let out = d.path().join("out");
    let (code, report) = e2e(
        &src,
        "uploads/protected.mp4",
        &out,
        "e2e-drm",
        &[
            "--metadata",
            "vodpipe-drm=cbcs",
            "--metadata",
            &format!("vodpipe-drm-speke-url={}", ks.url),
            "--metadata",
            "vodpipe-drm-systems=clearkey,widevine",
            "--chunk-seconds",
            "4",
        ],
    );
    assert_eq!(code, 0, "{report:#}");
    let job = &report["emulator"]["jobs"][0];
    assert_eq!(job["status"], "PUBLISHED", "{job:#}");
    assert_eq!(job["settings"]["drm"]["from"], "metadata", "{job:#}");
    assert_eq!(job["protection"]["scheme"], "cbcs", "{job:#}");
    // Every request was signed with SigV4 for execute-api.
    let auths = ks.authorizations.lock().unwrap().clone();
    assert!(auths.len() >= 3, "{auths:?}");
    for a in &auths {
        let a = a.as_deref().unwrap_or("");
        assert!(a.starts_with("AWS4-HMAC-SHA256 Credential="), "{a}");
        assert!(a.contains("/execute-api/aws4_request"), "{a}");
        assert!(
            a.contains("SignedHeaders=") && a.contains("x-speke-version"),
            "{a}"
        );
    }
    // The segments downloaded from the output bucket decrypt with the server's keys.
    let asset = job["settings"]["asset"]["value"].as_str().unwrap();
    let files = job_files(&out, job);
    let mut checked = 0;
    for (name, path) in files.iter().filter(|(k, _)| k.ends_with(".m4s")) {
        let kind = if name.starts_with('a') {
            "audio_kid"
        } else {
            "video_kid"
        };
        let mut kid = [0u8; 16];
        hex::decode_to_slice(job["protection"][kind].as_str().unwrap(), &mut kid).unwrap();
        let key = derived_key(asset, &kid);
        let init = std::fs::read(init_for(&files, name)).unwrap();
        let bytes = std::fs::read(path).unwrap();
        let clear = vodpipe_media::cenc::decrypt_samples(&init, &bytes, &key, name).unwrap();
        let stored = vodpipe_media::cenc::fragment_samples(&bytes, name).unwrap();
        assert_ne!(clear, stored, "{name} is stored clear");
        checked += 1;
    }
    assert!(checked >= 4, "{files:?}");
    let master = std::fs::read_to_string(job["master"].as_str().unwrap()).unwrap();
    assert!(
        master.contains("#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,"),
        "{master}"
    );
}
