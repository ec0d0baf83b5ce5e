//! Per-upload settings through the ingest function, on the emulator: metadata, a settings
//! file sent before or after the video, a mapped prefix and a stored profile each put the
//! job on the right tier's queue with the right ladder, recorded with where it came from;
//! bad settings fail the job with the reason (a result, never a retry).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vodpipe_testkit::emulator;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use vodpipe_control::job::JobStatus;
use vodpipe_control::ports::{JobRecord, JobStore, Queue, Tier, WorkQueue};
use vodpipe_control::settings::Origin;
use vodpipe_functions::env::Shared;

struct Fixture {
    shared: Arc<Shared>,
    s3: aws_sdk_s3::Client,
    clip: Vec<u8>,
}

/// One deployment for the whole binary, with the template's prefix map and a settings
/// wait of a few seconds.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let aws = emulator::deploy(&emulator::unique_name("set"));
        for (k, v) in aws.settings.env() {
            std::env::set_var(k, v);
        }
        std::env::set_var("VODPIPE_PREFIX_TIERS", "premium/=premium,archive/=bulk");
        std::env::set_var("VODPIPE_SETTINGS_WAIT_SECONDS", "4");
        std::env::set_var("VODPIPE_CHUNK_SECONDS", "4");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        let ok = Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=25",
            ])
            .args(["-t", "3", "-c:v", "libx264", "-preset", "ultrafast"])
            .arg(&path)
            .status()
            .expect("ffmpeg is required: run `make deps`")
            .success();
        assert!(ok);
        let bridge = vodpipe_aws::config::Bridge::new().unwrap();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&bridge.sdk_config())
                .force_path_style(true)
                .build(),
        );
        Fixture {
            shared: Shared::from_env().unwrap(),
            s3,
            clip: std::fs::read(path).unwrap(),
        }
    })
}

fn put(key: &str, body: &[u8], metadata: &[(&str, &str)]) {
    let f = fixture();
    let meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    f.shared
        .aws
        .bridge
        .run(
            f.s3.put_object()
                .bucket(&f.shared.aws.settings.ingest_bucket)
                .key(key)
                .body(body.to_vec().into())
                .set_metadata((!meta.is_empty()).then_some(meta))
                .send(),
        )
        .unwrap();
}

/// Delivers the S3 event for `key` to the ingest handler; returns its one outcome.
fn event(key: &str) -> Value {
    let f = fixture();
    let ev = json!({"Records": [{
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": f.shared.aws.settings.ingest_bucket}, "object": {"key": key.replace(' ', "+")}}
    }]});
    serde_json::to_value(vodpipe_functions::ingest::handle(&f.shared, &ev)).unwrap()["records"][0]
        .clone()
}

fn job_for(key: &str) -> JobRecord {
    let f = fixture();
    let uri = format!("s3://{}/{key}", f.shared.aws.settings.ingest_bucket);
    f.shared
        .aws
        .state
        .jobs_by_source(&uri)
        .unwrap()
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no job for {key}"))
}

fn plan(job: &JobRecord) -> Value {
    serde_json::from_str(&fixture().shared.aws.state.plan_doc(&job.id).unwrap()).unwrap()
}

#[test]
fn metadata_chooses_the_tier_and_a_stored_profile() {
    let f = fixture();
    put(
        "_vodpipe/profiles/mobile.json",
        br#"{"rungs": [{"name": "240p", "short_side": 240, "max_kbps": 500}], "crf": 25}"#,
        &[],
    );
    let before = f
        .shared
        .aws
        .state
        .depth(Queue::Work(Tier::Premium))
        .unwrap();
    put(
        "uploads/meta.mp4",
        &f.clip,
        &[
            ("vodpipe-tier", "premium"),
            ("vodpipe-ladder", "mobile"),
            ("vodpipe-segment-seconds", "2"),
        ],
    );
    let out = event("uploads/meta.mp4");
    assert_eq!(out["status"], "ENCODING", "{out:#}");
    let job = job_for("uploads/meta.mp4");
    let s = job.settings.clone().unwrap();
    assert_eq!((job.tier, s.tier.from), (Tier::Premium, Origin::Metadata));
    assert_eq!(
        (s.ladder.value.as_str(), s.ladder.from),
        ("mobile", Origin::Metadata)
    );
    assert_eq!(s.segment_seconds.value, 2.0);
    let p = plan(&job);
    assert_eq!(p["rungs"][0]["name"], "240p", "{p:#}");
    assert_eq!(p["config"]["crf"], 25);
    assert_eq!(p["plan"]["segment_secs"], 2.0);
    assert!(
        f.shared
            .aws
            .state
            .depth(Queue::Work(Tier::Premium))
            .unwrap()
            > before,
        "work went to the premium queue"
    );
    // The profile's own upload event is not a video.
    assert_eq!(event("_vodpipe/profiles/mobile.json")["outcome"], "skipped");
}

#[test]
fn a_settings_file_sent_first_or_a_little_later_is_used() {
    let f = fixture();
    put(
        "uploads/first.mp4.vodpipe.json",
        br#"{"tier": "bulk", "asset": "films/first-cut"}"#,
        &[],
    );
    assert_eq!(
        event("uploads/first.mp4.vodpipe.json")["outcome"],
        "skipped"
    );
    put("uploads/first.mp4", &f.clip, &[]);
    event("uploads/first.mp4");
    let job = job_for("uploads/first.mp4");
    let s = job.settings.unwrap();
    assert_eq!((job.tier, s.tier.from), (Tier::Bulk, Origin::SettingsFile));
    assert_eq!(job.asset, "films/first-cut");

    // The video first; its settings file a second later, while ingest waits for it.
    put("uploads/late.mp4", &f.clip, &[]);
    let late = std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        put(
            "uploads/late.mp4.vodpipe.json",
            br#"{"tier": "premium"}"#,
            &[],
        );
    });
    event("uploads/late.mp4");
    late.join().unwrap();
    let job = job_for("uploads/late.mp4");
    assert_eq!(
        (job.tier, job.settings.unwrap().tier.from),
        (Tier::Premium, Origin::SettingsFile)
    );
}

#[test]
fn a_mapped_prefix_chooses_the_tier_and_nothing_else_falls_to_the_default() {
    let f = fixture();
    put("archive/old film.mp4", &f.clip, &[]);
    event("archive/old film.mp4");
    let job = job_for("archive/old film.mp4");
    assert_eq!(
        (job.tier, job.settings.unwrap().tier.from),
        (Tier::Bulk, Origin::Prefix)
    );
    put("elsewhere/plain.mp4", &f.clip, &[]);
    event("elsewhere/plain.mp4");
    let job = job_for("elsewhere/plain.mp4");
    let s = job.settings.unwrap();
    assert_eq!((job.tier, s.tier.from), (Tier::Standard, Origin::Default));
    assert_eq!(s.ladder.value, "default");
}

#[test]
fn bad_settings_fail_the_job_with_the_reason_and_are_not_retried() {
    let f = fixture();
    for (key, meta, file, reason) in [
        (
            "bad/tier.mp4",
            Some(("vodpipe-tier", "gold")),
            None,
            "use premium, standard or bulk",
        ),
        (
            "bad/profile.mp4",
            Some(("vodpipe-ladder", "cinema")),
            None,
            "no such profile",
        ),
        ("bad/json.mp4", None, Some("{tier: premium"), "is not valid"),
        (
            "bad/codec.mp4",
            Some(("vodpipe-codecs", "h264,vp9")),
            None,
            "this deployment encodes h264, hevc, av1",
        ),
    ] {
        if let Some(body) = file {
            put(&format!("{key}.vodpipe.json"), body.as_bytes(), &[]);
        }
        put(key, &f.clip, &meta.map(|m| vec![m]).unwrap_or_default());
        let out = event(key);
        assert_eq!(out["outcome"], "job", "a verdict, not a retry: {out:#}");
        assert_eq!(out["status"], "FAILED", "{out:#}");
        let job = job_for(key);
        assert_eq!(job.status, JobStatus::Failed);
        let error = job.error.unwrap();
        assert!(error.contains(reason), "{key}: {error}");
    }
}
