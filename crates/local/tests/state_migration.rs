//! A state directory made before records (a table per entity) opens with every job, item
//! and asset name where the lifecycle expects them, and its jobs carry on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use vodpipe_control::job::JobStatus;
use vodpipe_control::ports::{Acquired, Completion, ItemKind, ItemRef, JobStore};
use vodpipe_local::state::SqliteState;

/// The tables as the embedded backend kept them before records.
const OLD_SCHEMA: &str = r#"
CREATE TABLE jobs (
    id TEXT PRIMARY KEY, source TEXT NOT NULL, asset TEXT NOT NULL, tier TEXT NOT NULL,
    status TEXT NOT NULL, error TEXT, plan_doc TEXT, duration_secs REAL NOT NULL DEFAULT 0,
    frames_total INTEGER NOT NULL DEFAULT 0, rungs INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0, done INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    queued_at REAL, started_at REAL, stitch_started_at REAL, finished_at REAL,
    stitch_count INTEGER NOT NULL DEFAULT 0, token_floor INTEGER NOT NULL DEFAULT 0,
    attempt_floor INTEGER NOT NULL DEFAULT 0, master_key TEXT, dash_key TEXT, settings TEXT,
    probing_since REAL
);
CREATE TABLE items (
    job_id TEXT NOT NULL, kind TEXT NOT NULL, idx INTEGER NOT NULL,
    frames INTEGER NOT NULL DEFAULT 0, frames_done INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0, owner TEXT, lease_until REAL NOT NULL DEFAULT 0,
    token INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0, interruptions INTEGER NOT NULL DEFAULT 0,
    last_error TEXT, committed_attempt INTEGER, result_doc TEXT,
    encode_secs REAL NOT NULL DEFAULT 0, wasted_secs REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, kind, idx)
);
CREATE TABLE assets (name TEXT PRIMARY KEY, source TEXT NOT NULL, created_at REAL NOT NULL);
INSERT INTO jobs (id, source, asset, tier, status, plan_doc, total, done, created_at, frames_total, rungs, queued_at, started_at)
    VALUES ('old', '/media/old.mp4', 'old', 'bulk', 'ENCODING', '{"plan":"legacy"}', 2, 1, 1000.0, 50, 3, 1001.0, 1002.0);
INSERT INTO items (job_id, kind, idx, frames, frames_done, done, token, attempts, committed_attempt, result_doc, encode_secs)
    VALUES ('old', 'video', 0, 25, 25, 1, 1, 1, 1, '{"chunk":0}', 2.5);
INSERT INTO items (job_id, kind, idx, frames, token, attempts, failures, last_error)
    VALUES ('old', 'video', 1, 25, 3, 2, 1, 'encoder crashed');
INSERT INTO assets (name, source, created_at) VALUES ('old', '/media/old.mp4', 1000.0);
"#;

#[test]
fn an_old_state_directory_keeps_its_jobs_and_they_finish() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = rusqlite::Connection::open(dir.path().join("vodpipe.db")).unwrap();
        c.execute_batch(OLD_SCHEMA).unwrap();
    }
    let s = SqliteState::open(dir.path(), 3).expect("the old state opens");
    let job = s.job("old").unwrap().expect("the job survived");
    assert_eq!(job.status, JobStatus::Encoding);
    assert_eq!(
        (job.done, job.total, job.frames_total, job.rungs),
        (1, 2, 50, 3)
    );
    assert_eq!((job.attempts, job.failures), (3, 1));
    assert_eq!(job.queued_at, Some(1001.0));
    assert_eq!(s.plan_doc("old").unwrap(), r#"{"plan":"legacy"}"#);
    assert_eq!(
        s.brief_jobs_by_status(JobStatus::Encoding).unwrap().len(),
        1
    );
    assert_eq!(s.jobs_by_source("/media/old.mp4").unwrap().len(), 1);
    assert_eq!(
        s.claim_asset("old", "/media/other.mp4").unwrap(),
        "/media/old.mp4",
        "the asset name changed hands"
    );
    let items = s.items("old").unwrap();
    assert_eq!(items.len(), 2);
    assert!(items[0].1.done && !items[1].1.done);
    assert_eq!(items[1].1.last_error.as_deref(), Some("encoder crashed"));
    // The job carries on: its last item leases above the old token and finishes it.
    let second = ItemRef {
        job_id: "old".into(),
        kind: ItemKind::Video,
        index: 1,
    };
    let Acquired::Lease(lease) = s.acquire(&second, "w", Duration::from_secs(60)).unwrap() else {
        panic!("the old job's item could not be leased");
    };
    assert_eq!((lease.token, lease.attempt), (4, 3));
    assert_eq!(
        s.commit(&lease, "{\"chunk\":1}", 1.0).unwrap(),
        Completion::Last
    );
    assert_eq!(s.job("old").unwrap().unwrap().status, JobStatus::Stitching);
    assert_eq!(s.results("old").unwrap().len(), 2);
    // Opening again (another worker process) finds the records, not the old tables.
    drop(s);
    let again = SqliteState::open(dir.path(), 3).unwrap();
    assert_eq!(
        again.job("old").unwrap().unwrap().status,
        JobStatus::Stitching
    );
}
