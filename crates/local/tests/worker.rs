//! The worker use-case on the embedded backend with an encoder that always fails: failed
//! attempts back off, a Spot-tier item escalates to premium after two strikes, and once
//! its message has been received too often it is dead-lettered and the job fails with the
//! reason. Needs ffprobe (real probing); ffmpeg is replaced by `false`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
use support::backend;

use std::path::Path;
use std::time::Duration;
use vodpipe_core::ingest::ingest;
use vodpipe_core::job::JobStatus;
use vodpipe_core::pipeline::Config;
use vodpipe_core::ports::{JobStore, Queue, Tier, WorkQueue};
use vodpipe_core::worker::{Shutdown, Turn, Worker};
use vodpipe_local::Local;

#[test]
fn a_failing_item_escalates_then_dead_letters_and_fails_its_job() {
    let d = tempfile::tempdir().unwrap();
    let (local, mut cfg, source) = backend(d.path(), 1, "job1");
    cfg.ffmpeg = "false".into();
    cfg.retry_delay = Duration::ZERO;
    cfg.escalate_after = 2;
    cfg.settings.default_tier = Tier::Bulk;
    let ing = ingest(local.ports(), &cfg, &source, false).unwrap();
    assert_eq!(ing.status, JobStatus::Encoding);
    assert_eq!(
        local.state.depth(Queue::Work(Tier::Bulk)).unwrap(),
        1,
        "one chunk, no audio"
    );
    let announced = std::sync::Mutex::new(Vec::<String>::new());
    let mut w = Worker::new(
        local.ports(),
        cfg,
        "w1",
        vec![Tier::Premium, Tier::Standard, Tier::Bulk],
        Shutdown::new(),
    )
    .with_announcer(Box::new(|id: &str| {
        announced.lock().unwrap().push(id.into())
    }));
    // Two failed attempts on bulk, then the item moves to premium.
    assert_eq!(w.turn().unwrap(), Turn::Worked);
    assert_eq!(local.state.depth(Queue::Work(Tier::Bulk)).unwrap(), 1);
    assert_eq!(w.turn().unwrap(), Turn::Worked);
    assert_eq!(
        local.state.depth(Queue::Work(Tier::Bulk)).unwrap(),
        0,
        "not escalated"
    );
    assert_eq!(
        local.state.depth(Queue::Work(Tier::Premium)).unwrap(),
        1,
        "not escalated"
    );
    // Three receives on premium (the limit), then the dead letter fails the job.
    for _ in 0..8 {
        w.turn().unwrap();
    }
    let job = local.state.job("job1").unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let reason = job.error.unwrap();
    assert!(reason.contains("chunk 0 was delivered 3 times"), "{reason}");
    assert!(
        reason.contains("encode chunk 0 failed"),
        "the last error should be kept: {reason}"
    );
    assert_eq!(job.failures, 5);
    drop(w);
    // The failure is announced once (EventBridge, on AWS).
    assert_eq!(*announced.lock().unwrap(), ["job1"]);
}

fn planned(d: &Path) -> (Local, Config) {
    let (local, cfg, source) = backend(d, 1, "job2");
    ingest(local.ports(), &cfg, &source, false).unwrap();
    (local, cfg)
}

#[test]
fn a_stitch_request_lost_after_the_last_commit_is_asked_for_again() {
    use vodpipe_core::ports::{Acquired, Completion, ItemKind, ItemRef};
    let d = tempfile::tempdir().unwrap();
    let (local, cfg) = planned(d.path());
    let item = ItemRef {
        job_id: "job2".into(),
        kind: ItemKind::Video,
        index: 0,
    };
    // A worker commits the last item and dies before sending the stitch request.
    let Acquired::Lease(l) = local
        .state
        .acquire(&item, "doomed", Duration::from_secs(60))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(local.state.commit(&l, "[]", 1.0).unwrap(), Completion::Last);
    assert_eq!(local.state.depth(Queue::Stitch).unwrap(), 0);
    // Its message comes back (here: it was never deleted) and the next worker notices.
    let mut w = Worker::new(
        local.ports(),
        cfg,
        "w2",
        vec![Tier::Standard],
        Shutdown::new(),
    );
    assert_eq!(w.turn().unwrap(), Turn::Worked);
    assert_eq!(
        local.state.depth(Queue::Stitch).unwrap(),
        1,
        "stitch not requested again"
    );
    assert_eq!(local.state.depth(Queue::Work(Tier::Standard)).unwrap(), 0);
}

#[test]
fn a_message_for_a_held_item_waits_and_takes_the_item_over_when_its_holder_dies() {
    use vodpipe_core::ports::{ItemKind, ItemRef, Message};
    let d = tempfile::tempdir().unwrap();
    let (local, mut cfg) = planned(d.path());
    cfg.lease_ttl = Duration::from_secs(1);
    let item = ItemRef {
        job_id: "job2".into(),
        kind: ItemKind::Video,
        index: 0,
    };
    // A worker holds the item; it is about to die, and its own message is among the
    // copies going round (its visibility extension failed).
    let _held = local
        .state
        .acquire(&item, "doomed", Duration::from_secs(2))
        .unwrap();
    local
        .state
        .send(Queue::Work(Tier::Standard), &Message::Item(item.clone()))
        .unwrap();
    let mut w = Worker::new(
        local.ports(),
        cfg,
        "w2",
        vec![Tier::Standard],
        Shutdown::new(),
    );
    for _ in 0..2 {
        assert_eq!(w.turn().unwrap(), Turn::Worked);
    }
    assert_eq!(
        local.state.depth(Queue::Work(Tier::Standard)).unwrap(),
        2,
        "a message for a held item was dropped: if its holder dies, the item is lost"
    );
    // The holder dies (its lease runs out); a waiting copy comes back and finishes the job.
    std::thread::sleep(Duration::from_millis(2600));
    for _ in 0..8 {
        w.turn().unwrap();
        if local.state.job("job2").unwrap().unwrap().status == JobStatus::Published {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let job = local.state.job("job2").unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Published, "{job:?}");
    // The copy left over is dropped once it comes back: the item is done.
    std::thread::sleep(Duration::from_millis(2100));
    for _ in 0..3 {
        w.turn().unwrap();
    }
    assert_eq!(local.state.depth(Queue::Work(Tier::Standard)).unwrap(), 0);
}
