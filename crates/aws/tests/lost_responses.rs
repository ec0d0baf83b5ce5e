//! AWS as it fails, adapter by adapter: the emulator's front door applies a request and
//! then loses its response (the SDK sees a 500 and sends the same request again), or
//! throttles it. A retry that meets its own earlier write must recognise it: a conditional
//! write that landed is reported as landed, never as a lost race, and nothing is counted
//! twice. Each test injects exactly one fault into one named resource.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vodpipe_testkit::emulator;

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use vodpipe_aws::config::Bridge;
use vodpipe_aws::AwsState;
use vodpipe_control::job::JobStatus;
use vodpipe_control::ports::{
    Acquired, Cacheability, ItemKind, ItemRef, JobStore, ObjectStore, Release, Tier,
};
use vodpipe_control::records::{Change, Cond, Fields, Key, RecordStore, Value, Write};

fn state(name: &str) -> AwsState {
    emulator::start();
    let bridge = Arc::new(Bridge::new().unwrap());
    let sdk = bridge.sdk_config();
    let settings = emulator::settings(name);
    vodpipe_aws::bootstrap::bootstrap(&bridge, &sdk, &settings).unwrap();
    AwsState::connect(bridge, &sdk, &settings).unwrap()
}

/// One lost response for `operation` on resources named `name`.
fn lose_one(operation: &str, name: &str) -> serde_json::Value {
    json!([{"service": "dynamodb", "operation": operation, "lost": 1.0, "limit": 1, "match": name}])
}

fn fields(pairs: &[(&str, Value)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

fn num(r: &Fields, k: &str) -> f64 {
    match r.get(k) {
        Some(Value::Num(n)) => *n,
        other => panic!("{k} is {other:?}"),
    }
}

#[test]
fn a_conditional_update_whose_response_was_lost_is_reported_as_applied_once() {
    let name = emulator::unique_name("lost-update");
    let s = state(&name);
    let key = Key::new("JOB#x", "JOB");
    s.create(&key, &fields(&[("status", Value::str("A"))]))
        .unwrap();
    let write = Write {
        key: key.clone(),
        when: Cond::Eq("status", Value::str("A")),
        changes: vec![
            Change::Set("status", Value::str("B")),
            Change::Add("moves", 1.0),
        ],
    };
    let (written, injected) =
        emulator::with_faults(lose_one("UpdateItem", &name), || s.update(&write).unwrap());
    assert_eq!(injected["dynamodb:UpdateItem"]["lost"], 1, "{injected}");
    let written = written.expect("the retry met its own write and took it for a lost race");
    assert_eq!(written.get("status"), Some(&Value::str("B")));
    assert_eq!(num(&written, "moves"), 1.0);
    // A second writer with the same condition does lose.
    assert!(s.update(&write).unwrap().is_none());
    assert_eq!(num(&s.get(&key).unwrap().unwrap(), "moves"), 1.0);
}

#[test]
fn a_create_whose_response_was_lost_still_says_it_created() {
    let name = emulator::unique_name("lost-create");
    let s = state(&name);
    let key = Key::new("JOB#y", "JOB");
    let (created, injected) = emulator::with_faults(lose_one("PutItem", &name), || {
        s.create(&key, &fields(&[("status", Value::str("A"))]))
            .unwrap()
    });
    assert_eq!(injected["dynamodb:PutItem"]["lost"], 1, "{injected}");
    assert!(
        created,
        "the retry found its own record and said another made it"
    );
    assert!(!s
        .create(&key, &fields(&[("status", Value::str("A"))]))
        .unwrap());
}

#[test]
fn a_transaction_whose_response_was_lost_succeeds_and_applies_once() {
    let name = emulator::unique_name("lost-transact");
    let s = state(&name);
    let (a, b) = (
        Key::new("JOB#t", "JOB"),
        Key::new("JOB#t", "ITEM#video#000000"),
    );
    s.create(&a, &fields(&[("done", Value::num(0))])).unwrap();
    s.create(&b, &fields(&[("done", Value::Bool(false))]))
        .unwrap();
    let writes = [
        Write {
            key: b.clone(),
            when: Cond::Eq("done", Value::Bool(false)),
            changes: vec![Change::Set("done", Value::Bool(true))],
        },
        Write {
            key: a.clone(),
            when: Cond::Exists,
            changes: vec![Change::Add("done", 1.0)],
        },
    ];
    let (ok, injected) = emulator::with_faults(lose_one("TransactWriteItems", &name), || {
        s.transact(&writes).unwrap()
    });
    assert_eq!(
        injected["dynamodb:TransactWriteItems"]["lost"], 1,
        "{injected}"
    );
    assert!(ok, "the retried transaction was taken for a lost race");
    assert_eq!(num(&s.get(&a).unwrap().unwrap(), "done"), 1.0);
}

#[test]
fn throttled_calls_are_retried_within_the_call() {
    let name = emulator::unique_name("throttled");
    let s = state(&name);
    let key = Key::new("JOB#z", "JOB");
    s.create(&key, &fields(&[("status", Value::str("A"))]))
        .unwrap();
    let rules = json!([{"service": "dynamodb", "operation": "GetItem", "throttle": 1.0, "limit": 2, "match": name}]);
    let (got, injected) = emulator::with_faults(rules, || s.get(&key).unwrap());
    assert_eq!(injected["dynamodb:GetItem"]["throttle"], 2, "{injected}");
    assert!(got.is_some());
}

#[test]
fn a_pointer_put_whose_response_was_lost_is_recognised() {
    let name = emulator::unique_name("lost-put");
    let aws = emulator::deploy(&name);
    let rules = json!([{"service": "s3", "operation": "PUT", "lost": 1.0, "limit": 1, "match": aws.settings.output_bucket}]);
    let (moved, injected) = emulator::with_faults(rules, || {
        aws.objects
            .put_if("a/master.m3u8", b"one", Cacheability::ShortLived, None)
            .unwrap()
    });
    assert_eq!(injected["s3:PUT"]["lost"], 1, "{injected}");
    assert!(
        moved,
        "the retried conditional put met its own object and said it lost"
    );
    assert!(!aws
        .objects
        .put_if("a/master.m3u8", b"two", Cacheability::ShortLived, None)
        .unwrap());
}

/// A job in PROBING, as ingest leaves it before saving the plan, on `s`; its one chunk.
fn probing_job(s: &AwsState, id: &str) -> ItemRef {
    let settings = vodpipe_control::settings::fallback(
        "k.mp4",
        &vodpipe_control::settings::SettingsPolicy::default(),
        4.0,
        &Default::default(),
        None,
    );
    s.create_job(id, "s3://b/k.mp4", "k", Tier::Standard, &settings)
        .unwrap();
    assert!(s
        .transition(id, vodpipe_control::domain::Transition::Claim, None)
        .unwrap());
    ItemRef {
        job_id: id.into(),
        kind: ItemKind::Video,
        index: 0,
    }
}

/// A job in ENCODING with one chunk, on `s`.
fn encoding_job(s: &AwsState, id: &str) -> ItemRef {
    let item = probing_job(s, id);
    assert!(s
        .save_plan(id, "{}", 4.0, 100, 1, 0.0, &[(item.clone(), 100)])
        .unwrap());
    item
}

#[test]
fn an_acquire_and_a_release_whose_responses_were_lost_are_not_lost_races() {
    let name = emulator::unique_name("lost-lease");
    let s = state(&name);
    let item = encoding_job(&s, "0000000000000001");
    let ttl = Duration::from_secs(30);
    let (got, _) = emulator::with_faults(lose_one("UpdateItem", &name), || {
        s.acquire(&item, "w1", ttl).unwrap()
    });
    let lease = match got {
        Acquired::Lease(l) => l,
        other => panic!("the worker's own lease came back as {other:?}"),
    };
    let (released, _) = emulator::with_faults(lose_one("UpdateItem", &name), || {
        s.release_lease(&lease, Release::Failed("ffmpeg said no"), 1.0)
    });
    released.expect("a release that landed was reported as a lost lease");
    let st = s.item_state(&item).unwrap().unwrap();
    assert_eq!(st.failures, 1, "the release was counted twice: {st:?}");
    assert!(!st.leased);
}

#[test]
fn a_publish_whose_response_was_lost_is_reported_as_published() {
    let name = emulator::unique_name("lost-publish");
    let s = state(&name);
    let item = encoding_job(&s, "0000000000000002");
    let lease = match s.acquire(&item, "w1", Duration::from_secs(30)).unwrap() {
        Acquired::Lease(l) => l,
        other => panic!("{other:?}"),
    };
    s.commit(&lease, "[]", 1.0).unwrap();
    let (published, _) = emulator::with_faults(lose_one("UpdateItem", &name), || {
        s.publish("0000000000000002", "k/master.m3u8", "k/manifest.mpd", &[])
            .unwrap()
    });
    assert!(
        published,
        "a publish that happened was reported as someone else's"
    );
    let job = s.job("0000000000000002").unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Published);
    assert_eq!(job.stitch_count, 1);
}

#[test]
fn a_plan_whose_final_write_lost_its_response_is_still_saved_and_queued() {
    let name = emulator::unique_name("lost-plan");
    let s = state(&name);
    let id = "0000000000000003";
    let item = probing_job(&s, id);
    // save_plan's one update is the move to ENCODING; its response is lost.
    let (saved, injected) = emulator::with_faults(lose_one("UpdateItem", &name), || {
        s.save_plan(id, "{}", 4.0, 100, 1, 0.0, &[(item, 100)])
            .unwrap()
    });
    assert_eq!(injected["dynamodb:UpdateItem"]["lost"], 1, "{injected}");
    assert!(saved, "ingest would return without queuing a single item");
    assert_eq!(s.job(id).unwrap().unwrap().status, JobStatus::Encoding);
}

#[test]
fn throttled_transactions_are_sent_again_whichever_way_dynamodb_says_so() {
    // DynamoDB throttles a transaction as a whole request (the SDK retries it) or as the
    // reason it was cancelled (the SDK does not): four throttles, of either shape.
    let name = emulator::unique_name("throttled-tx");
    let s = state(&name);
    let key = Key::new("JOB#u", "JOB");
    s.create(&key, &fields(&[("n", Value::num(0))])).unwrap();
    let writes = [Write {
        key: key.clone(),
        when: Cond::Exists,
        changes: vec![Change::Add("n", 1.0)],
    }];
    let rules = json!([{"service": "dynamodb", "operation": "TransactWriteItems", "throttle": 1.0, "limit": 4, "match": name}]);
    let (ok, injected) = emulator::with_faults(rules, || s.transact(&writes));
    assert_eq!(
        injected["dynamodb:TransactWriteItems"]["throttle"], 4,
        "{injected}"
    );
    assert!(ok.expect("throttling is weather, not an error"));
    assert_eq!(num(&s.get(&key).unwrap().unwrap(), "n"), 1.0);
}

#[test]
fn plan_items_are_created_in_batches_and_never_over_an_item_that_exists() {
    let name = emulator::unique_name("create-all");
    let s = state(&name);
    let keys: Vec<Key> = (0..230)
        .map(|i| Key::new("JOB#b", format!("ITEM#video#{i:06}")))
        .collect();
    // An item another planner created and a worker holds: a batch holding it is refused
    // and its items are created one by one, around it.
    s.create(&keys[150], &fields(&[("held", Value::Bool(true))]))
        .unwrap();
    let records: Vec<(Key, Fields)> = keys
        .iter()
        .map(|k| (k.clone(), fields(&[("held", Value::Bool(false))])))
        .collect();
    // The first batch's response is lost: its retry is the same transaction, which
    // answers as applied instead of failing on its own items.
    let ((), injected) = emulator::with_faults(lose_one("TransactWriteItems", &name), || {
        s.create_all(&records).unwrap()
    });
    assert_eq!(
        injected["dynamodb:TransactWriteItems"]["lost"], 1,
        "{injected}"
    );
    let rows = s.query("JOB#b", "ITEM#").unwrap();
    assert_eq!(rows.len(), 230, "every item exists once");
    let held: Vec<&String> = rows
        .iter()
        .filter(|(_, f)| f.get("held") == Some(&Value::Bool(true)))
        .map(|(sk, _)| sk)
        .collect();
    assert_eq!(
        held,
        ["ITEM#video#000150"],
        "the existing item was overwritten"
    );
}
