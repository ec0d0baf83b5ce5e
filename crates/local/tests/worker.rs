//! The worker use-case on the embedded backend with an encoder that always fails: failed
//! attempts back off, a Spot-tier item escalates to premium after two strikes, and once
//! its message has been received too often it is dead-lettered and the job fails with the
//! reason. Needs ffprobe (real probing); ffmpeg is replaced by `false`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
use support::backend;

use std::path::Path;
use std::time::Duration;
use vodpipe_control::ingest::ingest;
use vodpipe_control::job::JobStatus;
use vodpipe_control::pipeline::Config;
use vodpipe_control::ports::{JobStore, Queue, Tier, WorkQueue};
use vodpipe_control::worker::{Shutdown, Turn, Worker};
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
    let mut w = Worker::new(
        local.ports(),
        cfg,
        "w1",
        vec![Tier::Premium, Tier::Standard, Tier::Bulk],
        Shutdown::new(),
    );
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
    // The plan and the failure are announced, each once (EventBridge, on AWS).
    let events = std::fs::read_to_string(local.events.path()).unwrap();
    let states: Vec<String> = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|e| {
            format!(
                "{} {}",
                e["job_id"].as_str().unwrap(),
                e["status"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(states, ["job1 ENCODING", "job1 FAILED"], "{events}");
}

fn planned(d: &Path) -> (Local, Config) {
    let (local, cfg, source) = backend(d, 1, "job2");
    ingest(local.ports(), &cfg, &source, false).unwrap();
    (local, cfg)
}

#[test]
fn a_stitch_request_lost_after_the_last_commit_is_asked_for_again() {
    use vodpipe_control::ports::{Acquired, Completion, ItemKind, ItemRef};
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
    use vodpipe_control::ports::{ItemKind, ItemRef, Message};
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

/// Two versions of one source stitching at once: the newer one has written its pointers
/// but is not PUBLISHED yet when the older one publishes. The older one must not take the
/// pointers back (a check of "a newer version is published" would pass here).
#[test]
fn an_older_version_never_takes_the_pointers_from_a_newer_one_mid_publish() {
    use vodpipe_control::ingest::Source;
    use vodpipe_control::outputs::{dash_pointer, master_pointer};
    let d = tempfile::tempdir().unwrap();
    let (older, newer) = ("00000000000000a1", "00000000000000b2");
    let (local, cfg, source) = backend(d.path(), 1, older);
    ingest(local.ports(), &cfg, &source, false).unwrap();
    let mut w = Worker::new(
        local.ports(),
        cfg.clone(),
        "w",
        vec![Tier::Standard],
        Shutdown::new(),
    )
    .without_stitching();
    for _ in 0..5 {
        w.turn().unwrap();
    }
    let job = local.state.job(older).unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Stitching, "{job:?}");
    // A newer version of the same source, in the middle of publishing: its pointers are
    // written, its job not yet PUBLISHED.
    std::thread::sleep(Duration::from_millis(20));
    let v2 = Source {
        job_id: newer.into(),
        ..source.clone()
    };
    ingest(local.ports(), &cfg, &v2, false).unwrap();
    let (master, dash) = (master_pointer(&job.asset), dash_pointer(&job.asset));
    let theirs = format!("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n{newer}/v0.m3u8\n");
    let theirs_mpd = format!("<MPD><SegmentURL media=\"{newer}/v0/0.m4s\"/></MPD>");
    local.objects.put(&master, theirs.as_bytes()).unwrap();
    local.objects.put(&dash, theirs_mpd.as_bytes()).unwrap();
    assert_eq!(
        vodpipe_control::stitch::stitch(local.ports(), older).unwrap(),
        Some(JobStatus::Published)
    );
    assert_eq!(
        String::from_utf8(local.objects.get(&master).unwrap()).unwrap(),
        theirs,
        "the older version took the master pointer"
    );
    assert_eq!(
        String::from_utf8(local.objects.get(&dash).unwrap()).unwrap(),
        theirs_mpd
    );
    let published = local.state.job(older).unwrap().unwrap();
    assert_eq!(
        published.master_key.as_deref(),
        Some(format!("{}/{older}/master.m3u8", job.asset).as_str()),
        "the older version is published at its own directory"
    );
}
