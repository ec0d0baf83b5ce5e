//! Job, work-item and queue state in SQLite.
//!
//! One database file in the state directory, in WAL mode, opened by every worker thread or
//! process. Every state change is one `BEGIN IMMEDIATE` transaction, so concurrent workers
//! serialise on the write lock instead of racing: a work item is leased to one worker at a
//! time, a lease carries a fencing token that grows on every acquisition, a completion is
//! accepted only with the current token, and the transition to STITCHING happens in the
//! same transaction as the last completion, so it fires exactly once.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vodpipe_core::job::JobStatus;

/// Errors from the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (locked past the busy timeout, disk full, corrupt file).
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored JSON document could not be read back.
    #[error("state database holds unreadable JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A commit arrived with an old fencing token: another worker owns the item now.
    #[error("lease lost: work item {0} was taken over by another worker")]
    LeaseLost(i64),
    /// No such job.
    #[error("no job {0}")]
    NoJob(String),
}

/// Result alias for the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Seconds since the epoch, as a float (sub-second timings).
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A job as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRow {
    /// Id (hash of the source identity).
    pub id: String,
    /// Source path or URI.
    pub source: String,
    /// Asset name; outputs live under it.
    pub asset: String,
    /// Current state.
    pub status: JobStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// Work items done / total.
    pub done: i64,
    /// Work items in all.
    pub total: i64,
    /// Frames encoded so far (including chunks in progress).
    pub frames_done: i64,
    /// Frames to encode (source frames; once per chunk, not per rung).
    pub frames_total: i64,
    /// Source duration, in seconds.
    pub duration_secs: f64,
    /// Encode attempts in all (including retries).
    pub attempts: i64,
    /// When it was created, seconds since the epoch.
    pub created_at: f64,
    /// When it was last changed.
    pub updated_at: f64,
    /// Master playlist path (object key), once published.
    pub master: Option<String>,
    /// MPD path (object key), once published.
    pub dash: Option<String>,
}

/// A leased work item.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Work item id.
    pub item: i64,
    /// Job id.
    pub job_id: String,
    /// `video` (a chunk) or `audio` (a track).
    pub kind: String,
    /// Chunk or track index.
    pub index: i64,
    /// Fencing token; required to commit.
    pub token: i64,
    /// Attempt number (1-based); outputs go under it.
    pub attempt: i64,
}

/// What completing an item led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// More work remains in the job.
    More,
    /// This was the last item: the job is now STITCHING and the caller must stitch.
    Last,
}

/// The SQLite store. Cheap to open; open one per thread.
pub struct Store {
    conn: Connection,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    asset TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    media_json TEXT,
    plan_json TEXT,
    rungs_json TEXT,
    config_json TEXT,
    duration_secs REAL NOT NULL DEFAULT 0,
    frames_total INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    master TEXT,
    dash TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_source ON jobs(source);
CREATE TABLE IF NOT EXISTS work (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs(id),
    kind TEXT NOT NULL,
    idx INTEGER NOT NULL,
    frames INTEGER NOT NULL DEFAULT 0,
    frames_done INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'queued',
    owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    token INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    committed_attempt INTEGER,
    last_error TEXT,
    result_json TEXT,
    UNIQUE(job_id, kind, idx)
);
CREATE INDEX IF NOT EXISTS work_ready ON work(status, lease_until);
"#;

impl Store {
    /// Opens (creating if needed) `state_dir/vodpipe.db`.
    pub fn open(state_dir: &Path) -> Result<Store> {
        let _ = std::fs::create_dir_all(state_dir);
        let conn = Connection::open(state_dir.join("vodpipe.db"))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store { conn })
    }

    /// Creates the job if it does not exist; returns whether it was created.
    pub fn create_job(&mut self, id: &str, source: &str, asset: &str) -> Result<bool> {
        let t = now();
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO jobs (id, source, asset, status, created_at, updated_at) VALUES (?1, ?2, ?3, 'QUEUED', ?4, ?4)",
            params![id, source, asset, t],
        )?;
        Ok(n == 1)
    }

    /// Puts a FAILED job back to QUEUED with no work items, so it can be ingested again
    /// (after the user fixed the cause). Returns whether it was FAILED.
    pub fn reset_failed(&mut self, id: &str) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE jobs SET status = 'QUEUED', error = NULL, done = 0, total = 0, master = NULL, dash = NULL, updated_at = ?2 WHERE id = ?1 AND status = 'FAILED'",
            params![id, now()],
        )?;
        if n == 1 {
            // A FAILED job was never published, so nothing references its attempts'
            // outputs; the new plan's attempts may reuse their directories.
            tx.execute("DELETE FROM work WHERE job_id = ?1", [id])?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// Moves a job to `to` if it is in one of `from`; returns whether it moved.
    pub fn transition(
        &mut self,
        id: &str,
        from: &[JobStatus],
        to: JobStatus,
        error: Option<&str>,
    ) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let cur: Option<String> = tx
            .query_row("SELECT status FROM jobs WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        let Some(cur) = cur else {
            return Err(StoreError::NoJob(id.into()));
        };
        if !from.iter().any(|s| s.as_str() == cur) {
            return Ok(false);
        }
        tx.execute(
            "UPDATE jobs SET status = ?2, error = COALESCE(?3, error), updated_at = ?4 WHERE id = ?1",
            params![id, to.as_str(), error, now()],
        )?;
        if to == JobStatus::Failed {
            // Nothing of a failed job should be picked up again.
            tx.execute(
                "UPDATE work SET status = 'cancelled' WHERE job_id = ?1 AND status != 'done'",
                [id],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// Stores the probe result and plan and queues the work items, moving PROBING →
    /// ENCODING. `items` are (kind, index, frames).
    #[allow(clippy::too_many_arguments)]
    pub fn save_plan(
        &mut self,
        id: &str,
        media_json: &str,
        plan_json: &str,
        rungs_json: &str,
        config_json: &str,
        duration_secs: f64,
        frames_total: u64,
        items: &[(&str, u32, u64)],
    ) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE jobs SET status = 'ENCODING', media_json = ?2, plan_json = ?3, rungs_json = ?4, config_json = ?5, duration_secs = ?6, frames_total = ?7, total = ?8, updated_at = ?9 WHERE id = ?1 AND status = 'PROBING'",
            params![id, media_json, plan_json, rungs_json, config_json, duration_secs, frames_total as i64, items.len() as i64, now()],
        )?;
        if n == 1 {
            for (kind, idx, frames) in items {
                tx.execute(
                    "INSERT OR IGNORE INTO work (job_id, kind, idx, frames) VALUES (?1, ?2, ?3, ?4)",
                    params![id, kind, idx, *frames as i64],
                )?;
            }
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// Leases the next ready item (queued, or leased with an expired lease) for `lease`.
    /// Video chunks go before audio so long tracks overlap with chunk encoding, oldest job
    /// first.
    pub fn claim(&mut self, owner: &str, lease: Duration) -> Result<Option<Lease>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let t = now();
        let row = tx
            .query_row(
                "SELECT w.id, w.job_id, w.kind, w.idx, w.token, w.attempts FROM work w JOIN jobs j ON j.id = w.job_id
                 WHERE j.status = 'ENCODING' AND (w.status = 'queued' OR (w.status = 'leased' AND w.lease_until < ?1))
                 ORDER BY j.created_at, CASE w.kind WHEN 'audio' THEN 0 ELSE 1 END, w.idx LIMIT 1",
                [t],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?, r.get::<_, i64>(4)?, r.get::<_, i64>(5)?)),
            )
            .optional()?;
        let Some((item, job_id, kind, index, token, attempts)) = row else {
            return Ok(None);
        };
        let (token, attempt) = (token + 1, attempts + 1);
        tx.execute(
            "UPDATE work SET status = 'leased', owner = ?2, lease_until = ?3, token = ?4, attempts = ?5, frames_done = 0 WHERE id = ?1",
            params![item, owner, t + lease.as_secs_f64(), token, attempt],
        )?;
        tx.commit()?;
        Ok(Some(Lease {
            item,
            job_id,
            kind,
            index,
            token,
            attempt,
        }))
    }

    /// Extends a lease and records progress; fails with [`StoreError::LeaseLost`] if the
    /// token is no longer current.
    pub fn heartbeat(&mut self, l: &Lease, lease: Duration, frames_done: u64) -> Result<()> {
        let n = self.conn.execute(
            "UPDATE work SET lease_until = ?3, frames_done = ?4 WHERE id = ?1 AND token = ?2 AND status = 'leased'",
            params![l.item, l.token, now() + lease.as_secs_f64(), frames_done as i64],
        )?;
        if n == 0 {
            return Err(StoreError::LeaseLost(l.item));
        }
        Ok(())
    }

    /// Commits a finished item under its fencing token. Exactly one caller ever sees
    /// [`Completion::Last`] for a job.
    pub fn complete(&mut self, l: &Lease, result_json: &str) -> Result<Completion> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE work SET status = 'done', committed_attempt = ?3, result_json = ?4, frames_done = frames, lease_until = 0 WHERE id = ?1 AND token = ?2 AND status = 'leased'",
            params![l.item, l.token, l.attempt, result_json],
        )?;
        if n == 0 {
            return Err(StoreError::LeaseLost(l.item));
        }
        tx.execute(
            "UPDATE jobs SET done = done + 1, updated_at = ?2 WHERE id = ?1",
            params![l.job_id, now()],
        )?;
        let last = tx.execute(
            "UPDATE jobs SET status = 'STITCHING', updated_at = ?2 WHERE id = ?1 AND status = 'ENCODING' AND done = total",
            params![l.job_id, now()],
        )?;
        tx.commit()?;
        Ok(if last == 1 {
            Completion::Last
        } else {
            Completion::More
        })
    }

    /// Gives an item back after a failed attempt. Returns `true` when attempts are used up
    /// (the caller fails the job).
    pub fn fail_attempt(&mut self, l: &Lease, reason: &str, max_attempts: i64) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE work SET status = CASE WHEN attempts >= ?4 THEN 'failed' ELSE 'queued' END, last_error = ?3, lease_until = 0, owner = NULL WHERE id = ?1 AND token = ?2 AND status = 'leased'",
            params![l.item, l.token, reason, max_attempts],
        )?;
        if n == 0 {
            return Err(StoreError::LeaseLost(l.item));
        }
        Ok(l.attempt >= max_attempts)
    }

    /// The job's stored documents: (media, plan, rungs, config) JSON.
    pub fn job_documents(&self, id: &str) -> Result<(String, String, String, String)> {
        self.conn
            .query_row(
                "SELECT media_json, plan_json, rungs_json, config_json FROM jobs WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .optional()?
            .and_then(|(a, b, c, d)| Some((a?, b?, c?, d?)))
            .ok_or_else(|| StoreError::NoJob(id.into()))
    }

    /// Committed results of a job, as (kind, index, result JSON), in index order.
    pub fn results(&self, id: &str) -> Result<Vec<(String, i64, String)>> {
        let mut st = self.conn.prepare(
            "SELECT kind, idx, result_json FROM work WHERE job_id = ?1 AND status = 'done' ORDER BY kind, idx",
        )?;
        let rows = st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Marks a STITCHING job PUBLISHED with its manifest keys; harmless to repeat.
    pub fn publish(&mut self, id: &str, master: &str, dash: &str) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE jobs SET status = 'PUBLISHED', master = ?2, dash = ?3, updated_at = ?4 WHERE id = ?1 AND status = 'STITCHING'",
            params![id, master, dash, now()],
        )?;
        Ok(n == 1)
    }

    fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
        let status: String = r.get(3)?;
        Ok(JobRow {
            id: r.get(0)?,
            source: r.get(1)?,
            asset: r.get(2)?,
            status: JobStatus::parse(&status).unwrap_or(JobStatus::Failed),
            error: r.get(4)?,
            done: r.get(5)?,
            total: r.get(6)?,
            frames_done: r.get(7)?,
            frames_total: r.get(8)?,
            duration_secs: r.get(9)?,
            attempts: r.get(10)?,
            created_at: r.get(11)?,
            updated_at: r.get(12)?,
            master: r.get(13)?,
            dash: r.get(14)?,
        })
    }

    const JOB_COLUMNS: &'static str = "j.id, j.source, j.asset, j.status, j.error, j.done, j.total,
        COALESCE((SELECT SUM(CASE WHEN w.kind = 'video' THEN w.frames_done ELSE 0 END) FROM work w WHERE w.job_id = j.id), 0),
        j.frames_total, j.duration_secs,
        COALESCE((SELECT SUM(w.attempts) FROM work w WHERE w.job_id = j.id), 0),
        j.created_at, j.updated_at, j.master, j.dash";

    /// One job by id.
    pub fn job(&self, id: &str) -> Result<Option<JobRow>> {
        let sql = format!("SELECT {} FROM jobs j WHERE j.id = ?1", Self::JOB_COLUMNS);
        Ok(self
            .conn
            .query_row(&sql, [id], Self::job_from_row)
            .optional()?)
    }

    /// All jobs, oldest first, optionally only those in `status` (uses the status index).
    pub fn jobs(&self, status: Option<JobStatus>) -> Result<Vec<JobRow>> {
        let sql = match status {
            Some(_) => format!(
                "SELECT {} FROM jobs j WHERE j.status = ?1 ORDER BY j.created_at",
                Self::JOB_COLUMNS
            ),
            None => format!(
                "SELECT {} FROM jobs j ORDER BY j.created_at",
                Self::JOB_COLUMNS
            ),
        };
        let mut st = self.conn.prepare(&sql)?;
        let rows = match status {
            Some(s) => st
                .query_map([s.as_str()], Self::job_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            None => st
                .query_map([], Self::job_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
        };
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_job(dir: &Path, items: &[(&str, u32, u64)]) -> Store {
        let mut s = Store::open(dir).unwrap();
        assert!(s.create_job("j1", "src.mp4", "src").unwrap());
        assert!(s
            .transition("j1", &[JobStatus::Queued], JobStatus::Probing, None)
            .unwrap());
        assert!(s
            .save_plan("j1", "{}", "{}", "[]", "{}", 10.0, 300, items)
            .unwrap());
        s
    }

    #[test]
    fn creating_a_job_twice_keeps_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        assert!(s.create_job("j", "a", "a").unwrap());
        assert!(!s.create_job("j", "a", "a").unwrap());
        assert_eq!(s.jobs(None).unwrap().len(), 1);
    }

    #[test]
    fn a_stale_token_cannot_commit_after_the_lease_expired_and_moved() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store_with_job(dir.path(), &[("video", 0, 300)]);
        let first = s.claim("w1", Duration::from_millis(0)).unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let second = s.claim("w2", Duration::from_secs(60)).unwrap().unwrap();
        assert_eq!(second.item, first.item);
        assert!(second.token > first.token);
        assert!(matches!(
            s.complete(&first, "{}"),
            Err(StoreError::LeaseLost(_))
        ));
        assert!(matches!(
            s.heartbeat(&first, Duration::from_secs(1), 0),
            Err(StoreError::LeaseLost(_))
        ));
        assert_eq!(s.complete(&second, "{}").unwrap(), Completion::Last);
    }

    #[test]
    fn last_chunk_done_fires_exactly_once_under_concurrent_completion() {
        let dir = tempfile::tempdir().unwrap();
        let items: Vec<(&str, u32, u64)> = (0..16).map(|i| ("video", i, 10)).collect();
        drop(store_with_job(dir.path(), &items));
        let lasts: usize = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..4)
                .map(|w| {
                    let p = dir.path().to_path_buf();
                    sc.spawn(move || {
                        let mut s = Store::open(&p).unwrap();
                        let mut lasts = 0;
                        while let Some(l) =
                            s.claim(&format!("w{w}"), Duration::from_secs(60)).unwrap()
                        {
                            if s.complete(&l, "{}").unwrap() == Completion::Last {
                                lasts += 1;
                            }
                        }
                        lasts
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(lasts, 1);
        let s = Store::open(dir.path()).unwrap();
        let j = s.job("j1").unwrap().unwrap();
        assert_eq!((j.status, j.done, j.total), (JobStatus::Stitching, 16, 16));
    }

    #[test]
    fn attempts_run_out_and_a_failed_job_hands_out_no_more_work() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store_with_job(dir.path(), &[("video", 0, 1), ("video", 1, 1)]);
        let l = s.claim("w", Duration::from_secs(60)).unwrap().unwrap();
        assert!(!s.fail_attempt(&l, "boom", 2).unwrap());
        let l = s.claim("w", Duration::from_secs(60)).unwrap().unwrap();
        assert_eq!(l.attempt, 2);
        assert!(s.fail_attempt(&l, "boom", 2).unwrap());
        assert!(s
            .transition(
                "j1",
                &[JobStatus::Encoding],
                JobStatus::Failed,
                Some("chunk 0: boom")
            )
            .unwrap());
        assert!(s.claim("w", Duration::from_secs(60)).unwrap().is_none());
        assert_eq!(
            s.job("j1").unwrap().unwrap().error.as_deref(),
            Some("chunk 0: boom")
        );
    }

    #[test]
    fn only_a_failed_job_can_be_reset() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store_with_job(dir.path(), &[("video", 0, 1)]);
        assert!(!s.reset_failed("j1").unwrap());
        s.transition("j1", &[JobStatus::Encoding], JobStatus::Failed, Some("x"))
            .unwrap();
        assert!(s.reset_failed("j1").unwrap());
        let j = s.job("j1").unwrap().unwrap();
        assert_eq!((j.status, j.total, j.error), (JobStatus::Queued, 0, None));
    }

    #[test]
    fn publishing_is_a_conditional_transition() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store_with_job(dir.path(), &[("audio", 0, 0)]);
        let l = s.claim("w", Duration::from_secs(60)).unwrap().unwrap();
        assert_eq!(s.complete(&l, "{}").unwrap(), Completion::Last);
        assert!(s.publish("j1", "m", "d").unwrap());
        assert!(!s.publish("j1", "m", "d").unwrap());
        assert_eq!(s.jobs(Some(JobStatus::Published)).unwrap().len(), 1);
    }
}
