//! A dead letter is a question, not a verdict, and a store that is slow for a moment costs
//! no lease: on the embedded backend, with the worker use-case as deployed.
//!
//! - An item whose workers were only ever interrupted reaches its dead-letter queue: its
//!   job keeps going, the item moves to on-demand capacity.
//! - A stitch request that dead-lettered while its job can still be stitched is asked for
//!   again.
//! - A heartbeat refused once (throttling past the SDK's retries) neither stops the
//!   attempt nor turns a subtitle track with an earlier failure into a skipped one.
//!
//! Needs ffmpeg and ffprobe (`make deps`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;
use support::backend;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use vodpipe_control::ingest::ingest;
use vodpipe_control::job::JobStatus;
use vodpipe_control::pipeline::Ports;
use vodpipe_control::ports::{
    Acquired, Completion, ItemKind, ItemRef, JobStore, Message, PortError, PortResult, Queue,
    Release, Tier, WorkQueue,
};
use vodpipe_control::records::{Change, Fields, Index, Key, RecordStore, Write};
use vodpipe_control::worker::{FfmpegEncoder, ItemEncoder, Shutdown, Worker};

/// Receives the message on `queue` until the queue's limit moves it to the dead letters.
fn receive_until_dead(local: &vodpipe_local::Local, queue: Queue) {
    for _ in 0..10 {
        match local.state.receive(&[queue], Duration::ZERO).unwrap() {
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(local.state.depth(queue).unwrap(), 0, "not dead-lettered");
}

#[test]
fn an_item_whose_workers_were_only_interrupted_never_fails_its_job() {
    let d = tempfile::tempdir().unwrap();
    let (local, cfg, source) = backend(d.path(), 1, "job-int");
    ingest(local.ports(), &cfg, &source, false).unwrap();
    let item = ItemRef {
        job_id: "job-int".into(),
        kind: ItemKind::Video,
        index: 0,
    };
    // Five workers each took the item and were stopped (Spot reclaims) before finishing.
    for n in 0..5 {
        let Acquired::Lease(l) = local
            .state
            .acquire(&item, &format!("w{n}"), Duration::from_secs(60))
            .unwrap()
        else {
            panic!("no lease")
        };
        local
            .state
            .release_lease(&l, Release::Interrupted, 1.0)
            .unwrap();
    }
    receive_until_dead(&local, Queue::Work(Tier::Standard));
    let mut w = Worker::new(local.ports(), cfg, "w", vec![Tier::Bulk], Shutdown::new());
    w.turn().unwrap();
    let job = local.state.job("job-int").unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Encoding, "{job:?}");
    assert_eq!(
        local.state.depth(Queue::Work(Tier::Premium)).unwrap(),
        1,
        "the interrupted item should move to on-demand capacity"
    );
}

#[test]
fn a_dead_stitch_request_is_asked_for_again_while_its_job_can_be_stitched() {
    let d = tempfile::tempdir().unwrap();
    let (local, cfg, source) = backend(d.path(), 1, "job-st");
    ingest(local.ports(), &cfg, &source, false).unwrap();
    let item = ItemRef {
        job_id: "job-st".into(),
        kind: ItemKind::Video,
        index: 0,
    };
    let Acquired::Lease(l) = local
        .state
        .acquire(&item, "w0", Duration::from_secs(60))
        .unwrap()
    else {
        panic!("no lease")
    };
    assert_eq!(local.state.commit(&l, "[]", 1.0).unwrap(), Completion::Last);
    let request = Message::Stitch {
        job_id: "job-st".into(),
    };
    local.state.send(Queue::Stitch, &request).unwrap();
    // The stitch met a passing fault three times in a row.
    for _ in 0..3 {
        let failed = PortError::Backend("s3 put: SlowDown".into());
        vodpipe_control::stitch::note_failure(local.ports(), "job-st", &failed);
    }
    receive_until_dead(&local, Queue::Stitch);
    // A worker that leaves stitching to a function still drains dead letters.
    let mut w =
        Worker::new(local.ports(), cfg, "w", vec![Tier::Bulk], Shutdown::new()).without_stitching();
    w.turn().unwrap();
    let job = local.state.job("job-st").unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Stitching, "{job:?}");
    // The three failed stitches, and the dead letter itself (a stitch that timed out or
    // crashed reports nothing, so a dead letter counts as one).
    assert_eq!(job.stitch_failures, 4);
    assert_eq!(
        local.state.depth(Queue::Stitch).unwrap(),
        1,
        "not requested again"
    );
}

/// The embedded store, whose first heartbeat is refused as a throttled DynamoDB would
/// refuse it once the SDK's retries are spent.
struct Throttled<'a> {
    inner: &'a vodpipe_local::state::SqliteState,
    refused: AtomicU32,
}

impl RecordStore for Throttled<'_> {
    fn get(&self, key: &Key) -> PortResult<Option<Fields>> {
        self.inner.get(key)
    }
    fn create(&self, key: &Key, fields: &Fields) -> PortResult<bool> {
        self.inner.create(key, fields)
    }
    fn put(&self, key: &Key, fields: &Fields) -> PortResult<()> {
        self.inner.put(key, fields)
    }
    fn update(&self, w: &Write) -> PortResult<Option<Fields>> {
        let heartbeat = matches!(w.changes.first(), Some(Change::Set("lease_until", _)))
            && w.changes.len() == 2;
        if heartbeat && self.refused.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(PortError::Backend(
                "dynamodb update: ThrottlingException: Rate of requests exceeds the allowed throughput".into(),
            ));
        }
        self.inner.update(w)
    }
    fn transact(&self, writes: &[Write]) -> PortResult<bool> {
        self.inner.transact(writes)
    }
    fn query(&self, pk: &str, prefix: &str) -> PortResult<Vec<(String, Fields)>> {
        self.inner.query(pk, prefix)
    }
    fn index(&self, index: Index, value: &str, newest_first: bool) -> PortResult<Vec<String>> {
        self.inner.index(index, value, newest_first)
    }
    fn remove(&self, key: &Key) -> PortResult<()> {
        self.inner.remove(key)
    }
}

/// ffmpeg, slowed down past two heartbeats on subtitle tracks.
struct SlowText;

impl ItemEncoder for SlowText {
    fn encode(
        &self,
        ctx: &vodpipe_media::encode::EncodeContext<'_>,
        item: &ItemRef,
        on_frames: &(dyn Fn(u64) + Sync),
    ) -> vodpipe_media::Result<vodpipe_media::encode::Encoded> {
        if item.kind == ItemKind::Text {
            std::thread::sleep(Duration::from_millis(2500));
        }
        FfmpegEncoder.encode(ctx, item, on_frames)
    }
}

#[test]
fn a_refused_heartbeat_costs_no_lease_and_no_subtitle_track() {
    let d = tempfile::tempdir().unwrap();
    let (local, mut cfg, mut source) = backend(d.path(), 6, "job-hb");
    // The clip with an English subtitle stream inside.
    let srt = d.path().join("en.srt");
    std::fs::write(&srt, "1\n00:00:01,000 --> 00:00:02,500\nHello\n").unwrap();
    let with_subs = d.path().join("subs.mp4");
    let ok = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&source.uri)
        .arg("-i")
        .arg(&srt)
        .args(["-map", "0", "-map", "1", "-c", "copy", "-c:s", "mov_text"])
        .args(["-metadata:s:s:0", "language=eng"])
        .arg(&with_subs)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    source.uri = with_subs.display().to_string();
    cfg.lease_ttl = Duration::from_secs(3);
    ingest(local.ports(), &cfg, &source, false).unwrap();
    let text = ItemRef {
        job_id: "job-hb".into(),
        kind: ItemKind::Text,
        index: 0,
    };
    // The track failed once before (a passing fault), so one more error would publish it
    // as skipped.
    let Acquired::Lease(l) = local
        .state
        .acquire(&text, "earlier", Duration::from_secs(60))
        .unwrap()
    else {
        panic!("no lease")
    };
    local
        .state
        .release_lease(&l, Release::Failed("a passing fault"), 1.0)
        .unwrap();
    let store = Throttled {
        inner: &local.state,
        refused: AtomicU32::new(0),
    };
    let ports = Ports {
        jobs: &store,
        ..local.ports()
    };
    let mut w = Worker::new(ports, cfg, "w", vec![Tier::Standard], Shutdown::new())
        .with_encoder(Box::new(SlowText));
    for _ in 0..20 {
        w.turn().unwrap();
        if local.state.job("job-hb").unwrap().unwrap().status == JobStatus::Published {
            break;
        }
    }
    let job = local.state.job("job-hb").unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Published, "{job:?}");
    let skipped: Vec<_> = job
        .renditions
        .iter()
        .filter(|r| serde_json::to_string(r).unwrap().contains("skipped"))
        .collect();
    assert!(
        skipped.is_empty(),
        "a caption track was skipped: {skipped:?}"
    );
    assert_eq!(
        vodpipe_control::outputs::subtitle_languages(&job),
        vec!["eng".to_string()]
    );
    assert!(
        store.refused.load(Ordering::SeqCst) >= 2,
        "the refused heartbeat was never tried again"
    );
}
