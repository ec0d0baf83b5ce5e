//! The functions' handlers on real event payloads (`events/`) against the emulator:
//! ingest handles each record on its own and a duplicate delivery makes no second job;
//! stitch reports exactly the messages that should come back; fleet records a Spot
//! interruption once however often it is delivered.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vodpipe_testkit::emulator;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use vodpipe_control::ports::{
    Cacheability, JobStore, Message, ObjectStore, Queue, Tier, WorkQueue,
};
use vodpipe_functions::env::Shared;

fn event(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// One deployment for the whole test binary (the functions read it from the environment).
fn shared() -> Arc<Shared> {
    static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            emulator::start();
            let name = emulator::unique_name("fn");
            let settings = emulator::settings(&name);
            let bridge = vodpipe_aws::config::Bridge::new().unwrap();
            vodpipe_aws::bootstrap::bootstrap(&bridge, &bridge.sdk_config(), &settings).unwrap();
            for (k, v) in settings.env() {
                std::env::set_var(k, v);
            }
            std::env::set_var("VODPIPE_CHUNK_SECONDS", "4");
            Shared::from_env().unwrap()
        })
        .clone()
}

/// A fleet invocation's deadline: the template's five minutes from now.
fn soon() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(300)
}

/// What a job for `key` records when nothing chose otherwise.
fn defaults(key: &str) -> vodpipe_control::settings::JobSettings {
    vodpipe_control::settings::fallback(key, &Default::default(), 4.0, &Default::default(), None)
}

fn clip(path: &Path) {
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x240:rate=25")
        .args(["-f", "lavfi", "-i", "sine=frequency=440"])
        .args([
            "-t",
            "3",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(path)
        .status()
        .expect("ffmpeg is required: run `make test` (it installs it)");
    assert!(ok.success());
}

#[test]
fn ingest_handles_each_record_on_its_own_and_a_duplicate_makes_no_second_job() {
    let s = shared();
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("clip.mp4");
    clip(&src);
    let key = "uploads/My Clip +1 é.mp4";
    s.aws
        .ingest
        .put(key, &std::fs::read(&src).unwrap(), Cacheability::Immutable)
        .unwrap();
    let bucket = s.aws.settings.ingest_bucket.clone();
    let mut ev = event("s3-multiple-records.json");
    // The sample's version id stands for the one S3 would send: the upload's.
    let (_, _, version) = s.aws.ingest.head(&format!("s3://{bucket}/{key}")).unwrap();
    for r in ev["Records"].as_array_mut().unwrap() {
        r["s3"]["bucket"]["name"] = json!(bucket);
        r["s3"]["object"]["versionId"] = json!(version);
    }
    // A fourth record from a bucket this deployment does not own.
    let mut foreign = ev["Records"][0].clone();
    foreign["s3"]["bucket"]["name"] = json!("someone-elses-bucket");
    ev["Records"].as_array_mut().unwrap().push(foreign);

    let first = vodpipe_functions::ingest::handle(&s, &ev);
    let v = serde_json::to_value(&first).unwrap();
    let outcomes: Vec<&str> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["job", "skipped", "skipped", "skipped"], "{v:#}");
    assert_eq!(v["records"][0]["key"], key);
    assert_eq!(v["records"][0]["created"], true);
    assert_eq!(v["records"][0]["status"], "ENCODING");
    assert!(v["records"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("no longer exists"));
    assert!(v["records"][2]["reason"]
        .as_str()
        .unwrap()
        .contains("not an ObjectCreated"));
    assert!(v["records"][3]["reason"]
        .as_str()
        .unwrap()
        .contains("not the ingest bucket"));
    assert!(first.failures().is_none());

    let again = serde_json::to_value(vodpipe_functions::ingest::handle(&s, &ev)).unwrap();
    assert_eq!(again["records"][0]["created"], false, "{again:#}");
    assert_eq!(again["records"][0]["job_id"], v["records"][0]["job_id"]);
    let jobs = s
        .aws
        .state
        .jobs_by_source(&format!("s3://{bucket}/{key}"))
        .unwrap();
    assert_eq!(jobs.len(), 1);
}

#[test]
fn stitch_reports_only_the_messages_that_should_come_back() {
    let s = shared();
    // A job that exists but is not STITCHING: its request is a harmless no-op.
    s.aws
        .state
        .create_job(
            "probing-job",
            "s3://x/y.mp4",
            "y",
            Tier::Standard,
            &defaults("y.mp4"),
        )
        .unwrap();
    // A STITCHING job whose plan cannot be read: a store problem, worth another try.
    s.aws
        .state
        .create_job(
            "broken-job",
            "s3://x/z.mp4",
            "z",
            Tier::Standard,
            &defaults("z.mp4"),
        )
        .unwrap();
    // No transition leads there (a job reaches STITCHING only with a plan): the record is
    // written as a store fault would leave it.
    use vodpipe_control::records::{Change, Cond, RecordStore, Value, Write};
    assert!(s
        .aws
        .state
        .jobs
        .update(&Write {
            key: vodpipe_control::lifecycle::job_key("broken-job"),
            when: Cond::Exists,
            changes: vec![Change::Set("status", Value::str("STITCHING"))],
        })
        .unwrap()
        .is_some());
    let template = event("sqs-stitch.json")["Records"][0].clone();
    let record = |id: &str, body: String| {
        let mut r = template.clone();
        r["messageId"] = json!(id);
        r["body"] = json!(body);
        r
    };
    let stitch =
        |job: &str| serde_json::to_string(&Message::Stitch { job_id: job.into() }).unwrap();
    let ev: SqsEvent = serde_json::from_value(json!({"Records": [
        record("missing", stitch("no-such-job")),
        record("garbage", "not json".into()),
        record("noop", stitch("probing-job")),
        record("broken", stitch("broken-job")),
    ]}))
    .unwrap();
    let response = vodpipe_functions::stitch::handle(&s, &ev);
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    // Only the request that can succeed later comes back; a request for a job that does
    // not exist, an unreadable body and a no-op are done with.
    assert_eq!(failed, ["broken"]);
}

#[test]
fn a_spot_interruption_is_handled_once_at_its_warning_and_a_tick_reports_queue_depth() {
    let s = shared();
    // The two-minute warning (the task still RUNNING, desired STOPPED) comes first.
    let warning: EventBridgeEvent = serde_json::from_value(event("ecs-spot-warning.json")).unwrap();
    let first = vodpipe_functions::fleet::handle(&s, &warning, soon()).unwrap();
    assert_eq!(first.trigger, "spot-interruption");
    assert!(first.interruption.is_some());
    assert_eq!(first.tiers.len(), 1, "capacity replaced at the warning");
    assert_eq!(first.tiers[0].tier, "standard");
    // Then the task stops, and EventBridge may deliver either event twice: nothing more.
    let stopped: EventBridgeEvent =
        serde_json::from_value(event("ecs-spot-interruption.json")).unwrap();
    for ev in [&stopped, &stopped, &warning] {
        let again = vodpipe_functions::fleet::handle(&s, ev, soon()).unwrap();
        assert_eq!(again.trigger, "spot-interruption");
        assert_eq!(again.interruption, None, "recorded once");
        assert!(again.tiers.is_empty(), "capacity replaced once: {again:?}");
    }
    let recorded = s.aws.state.jobs.interruptions().unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].tier, "standard");
    assert_eq!(recorded[0].reason, "Your Spot Task was interrupted.");
    // A task that stopped for another reason is not an interruption.
    let mut other = event("ecs-spot-interruption.json");
    other["detail"]["stopCode"] = json!("EssentialContainerExited");
    let other: EventBridgeEvent = serde_json::from_value(other).unwrap();
    assert_eq!(
        vodpipe_functions::fleet::handle(&s, &other, soon())
            .unwrap()
            .trigger,
        "ignored"
    );

    s.aws
        .state
        .send(
            Queue::Work(Tier::Bulk),
            &Message::Stitch {
                job_id: "depth-probe".into(),
            },
        )
        .unwrap();
    let tick: EventBridgeEvent = serde_json::from_value(event("schedule-tick.json")).unwrap();
    let report = vodpipe_functions::fleet::handle(&s, &tick, soon()).unwrap();
    assert_eq!(report.trigger, "schedule");
    let bulk = report.tiers.iter().find(|t| t.tier == "bulk").unwrap();
    assert!(bulk.depth >= 1, "{report:?}");
}

#[test]
fn a_task_that_failed_to_start_is_recorded_against_its_tier_until_a_worker_starts() {
    let s = shared();
    let failed: EventBridgeEvent =
        serde_json::from_value(event("ecs-task-failed-to-start.json")).unwrap();
    let first = vodpipe_functions::fleet::handle(&s, &failed, soon()).unwrap();
    assert_eq!(first.trigger, "launch-failure");
    assert!(
        first.tiers.is_empty(),
        "a failed start launched more: {first:?}"
    );
    // Delivered again (or another task of the same RunTask): the same launch round.
    let again = vodpipe_functions::fleet::handle(&s, &failed, soon()).unwrap();
    assert_eq!(again.launch_failures, first.launch_failures, "{again:?}");
    let trouble = s.aws.state.launch_trouble(Tier::Bulk).unwrap().unwrap();
    assert!(
        trouble.reason.contains("CannotPullContainerError"),
        "{trouble:?}"
    );
    // A worker of the tier started: the tier launches again.
    s.aws.state.clear_launch_trouble(Tier::Bulk).unwrap();
    assert_eq!(s.aws.state.launch_trouble(Tier::Bulk).unwrap(), None);
}

/// An SQS event of the upload queue for `doc`, with a real receipt (the message is sent
/// and received, hidden for a second, as Lambda's poller would hold it) and the given
/// `SentTimestamp` age.
fn queued_upload(s: &Shared, doc: &Value, age_secs: f64) -> (Value, String) {
    let sdk = s.aws.bridge.sdk_config();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = s
        .aws
        .bridge
        .run(
            sqs.get_queue_url()
                .queue_name(s.aws.settings.ingest_events_queue_name())
                .send(),
        )
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    s.aws
        .bridge
        .run(
            sqs.send_message()
                .queue_url(&url)
                .message_body(doc.to_string())
                .send(),
        )
        .unwrap();
    let got = s
        .aws
        .bridge
        .run(
            sqs.receive_message()
                .queue_url(&url)
                .visibility_timeout(1)
                .wait_time_seconds(2)
                .send(),
        )
        .unwrap();
    let m = got.messages().first().unwrap().clone();
    let sent_ms = (vodpipe_media::process::now_secs() - age_secs) * 1000.0;
    let event = json!({"Records": [{
        "messageId": m.message_id(),
        "receiptHandle": m.receipt_handle(),
        "body": m.body(),
        "attributes": {"SentTimestamp": format!("{sent_ms:.0}"), "ApproximateReceiveCount": "1"},
        "eventSource": "aws:sqs",
    }]});
    (event, url)
}

#[test]
fn an_upload_waits_for_its_settings_file_on_the_queue_not_in_the_function() {
    let s = shared();
    // The template's wait, on a deployment of its own (the variable is read at set-up).
    std::env::set_var("VODPIPE_SETTINGS_WAIT_SECONDS", "20");
    let waiting = Shared::from_env().unwrap();
    std::env::remove_var("VODPIPE_SETTINGS_WAIT_SECONDS");
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("clip.mp4");
    clip(&src);
    let key = "deferred/clip.mp4";
    s.aws
        .ingest
        .put(key, &std::fs::read(&src).unwrap(), Cacheability::Immutable)
        .unwrap();
    let bucket = s.aws.settings.ingest_bucket.clone();
    let uri = format!("s3://{bucket}/{key}");
    let (_, _, version) = s.aws.ingest.head(&uri).unwrap();
    let mut doc = event("s3-put-encoded-key.json");
    doc["Records"][0]["s3"]["bucket"]["name"] = json!(bucket);
    doc["Records"][0]["s3"]["object"]["key"] = json!(key);
    doc["Records"][0]["s3"]["object"]["versionId"] = json!(version);

    // Just uploaded, no settings file: delivered again later, no job yet.
    let (ev, url) = queued_upload(&waiting, &doc, 0.0);
    let r = serde_json::to_value(vodpipe_functions::ingest::handle_queued(&waiting, &ev)).unwrap();
    assert_eq!(r["records"][0]["outcome"], "deferred", "{r:#}");
    assert!(r["records"][0]["secs"].as_f64().unwrap() > 15.0, "{r:#}");
    assert_eq!(
        r["batchItemFailures"][0]["itemIdentifier"],
        ev["Records"][0]["messageId"]
    );
    assert!(waiting.aws.state.jobs_by_source(&uri).unwrap().is_empty());
    // Hidden for the rest of the wait (it was received for one second only).
    std::thread::sleep(std::time::Duration::from_secs(2));
    let sqs = aws_sdk_sqs::Client::new(&s.aws.bridge.sdk_config());
    let again = s
        .aws
        .bridge
        .run(sqs.receive_message().queue_url(&url).send())
        .unwrap();
    assert!(
        again.messages().is_empty(),
        "the deferred upload came straight back"
    );

    // Its settings file arrives; the next delivery (after the wait) makes the job with it.
    s.aws
        .ingest
        .put(
            "deferred/clip.mp4.vodpipe.json",
            br#"{"tier": "bulk"}"#,
            Cacheability::Immutable,
        )
        .unwrap();
    let (ev, _) = queued_upload(&waiting, &doc, 25.0);
    let r = serde_json::to_value(vodpipe_functions::ingest::handle_queued(&waiting, &ev)).unwrap();
    assert_eq!(r["records"][0]["outcome"], "job", "{r:#}");
    assert_eq!(r["batchItemFailures"], json!([]), "{r:#}");
    let jobs = waiting.aws.state.jobs_by_source(&uri).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].tier, Tier::Bulk, "the settings file was not read");
}

#[test]
fn failed_tries_back_off_doubling_to_a_quarter_hour() {
    use vodpipe_functions::ingest::retry_delay;
    assert_eq!(retry_delay(1), 10.0);
    assert_eq!(retry_delay(2), 20.0);
    assert_eq!(retry_delay(4), 80.0);
    assert_eq!(retry_delay(30), 900.0);
}
