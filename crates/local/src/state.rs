//! Jobs, items, leases and queues in one SQLite database: the embedded backend's
//! [`JobStore`] and [`WorkQueue`].
//!
//! The file lives in the state directory, in WAL mode, and is opened by every worker
//! process. Every change is one `BEGIN IMMEDIATE` transaction, so concurrent workers
//! serialise on the write lock instead of racing: a lease is a conditional update that
//! bumps a fencing token, a commit is accepted only with the current token, and the
//! transition to STITCHING happens in the same transaction as the last commit, so exactly
//! one caller ever sees it. Queues mimic SQS: a receive hides the message for a visibility
//! timeout and changes its receipt; a message received more than `max_receives` times moves
//! to the dead-letter queue.

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vodpipe_core::job::JobStatus;
use vodpipe_core::ports::{
    Acquired, Completion, Delivery, ItemKind, ItemRef, ItemState, JobRecord, JobStore, Lease,
    Message, PortError, PortResult, Queue, Release, Tier, WorkQueue,
};
use vodpipe_core::settings::JobSettings;

/// Seconds since the epoch (sub-second precision).
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn backend(e: rusqlite::Error) -> PortError {
    PortError::Backend(format!("state database: {e}"))
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    asset TEXT NOT NULL,
    tier TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    plan_doc TEXT,
    duration_secs REAL NOT NULL DEFAULT 0,
    frames_total INTEGER NOT NULL DEFAULT 0,
    rungs INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    queued_at REAL,
    started_at REAL,
    stitch_started_at REAL,
    finished_at REAL,
    stitch_count INTEGER NOT NULL DEFAULT 0,
    token_floor INTEGER NOT NULL DEFAULT 0,
    attempt_floor INTEGER NOT NULL DEFAULT 0,
    master_key TEXT,
    dash_key TEXT,
    settings TEXT,
    probing_since REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_source ON jobs(source, created_at);
CREATE TABLE IF NOT EXISTS items (
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    idx INTEGER NOT NULL,
    frames INTEGER NOT NULL DEFAULT 0,
    frames_done INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    token INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    interruptions INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    committed_attempt INTEGER,
    result_doc TEXT,
    encode_secs REAL NOT NULL DEFAULT 0,
    wasted_secs REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, kind, idx)
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    dead INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages(dead, queue, visible_at, id);
CREATE TABLE IF NOT EXISTS assets (
    name TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS invalidations (
    caller_reference TEXT PRIMARY KEY,
    paths TEXT NOT NULL,
    created_at REAL NOT NULL
);
"#;

/// Adds `column` to `table` unless it is there (several processes may race to add it:
/// the losers see SQLite's "duplicate column" and have nothing to do).
fn add_column(c: &Connection, table: &str, column: &str, decl: &str) -> rusqlite::Result<()> {
    let has: bool = c.query_row(
        "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
        params![table, column],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if has {
        return Ok(());
    }
    match c.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}")) {
        Err(rusqlite::Error::SqliteFailure(_, Some(msg))) if msg.contains("duplicate column") => {
            Ok(())
        }
        other => other,
    }
}

/// The embedded job store and queues.
pub struct SqliteState {
    conn: Mutex<Connection>,
    dir: PathBuf,
    max_receives: u32,
}

impl SqliteState {
    /// Opens (creating) `state_dir/vodpipe.db`. Messages received more than
    /// `max_receives` times go to the dead-letter queue.
    pub fn open(state_dir: &Path, max_receives: u32) -> PortResult<Self> {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| PortError::Backend(format!("creating {}: {e}", state_dir.display())))?;
        let conn = Connection::open(state_dir.join("vodpipe.db")).map_err(backend)?;
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(backend)?;
        // Switching to WAL and creating the schema can report SQLITE_BUSY at once, without
        // the busy handler, when several processes open a new database together (a fleet
        // starting up): retry those for a while instead of failing the worker.
        let init = |c: &Connection| -> rusqlite::Result<()> {
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", "NORMAL")?;
            c.execute_batch(SCHEMA)?;
            // State directories made before jobs recorded their settings, and before
            // ingests recorded when they claimed a job for probing.
            add_column(c, "jobs", "settings", "TEXT")?;
            add_column(c, "jobs", "probing_since", "REAL")?;
            Ok(())
        };
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            match init(&conn) {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if matches!(
                        e.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) && started.elapsed() < Duration::from_secs(60) =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(e) => return Err(backend(e)),
            }
        }
        Ok(SqliteState {
            conn: Mutex::new(conn),
            dir: state_dir.to_path_buf(),
            max_receives: max_receives.max(1),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> PortResult<T> {
        let mut c = self
            .conn
            .lock()
            .map_err(|_| PortError::Backend("state connection poisoned".into()))?;
        f(&mut c).map_err(backend)
    }

    fn tx<T>(&self, f: impl FnOnce(&Transaction<'_>) -> PortResult<T>) -> PortResult<T> {
        let mut c = self
            .conn
            .lock()
            .map_err(|_| PortError::Backend("state connection poisoned".into()))?;
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let out = f(&tx)?;
        tx.commit().map_err(backend)?;
        Ok(out)
    }

    /// A setting stored in the database (the object root, so every process agrees).
    pub fn setting(&self, name: &str) -> PortResult<Option<String>> {
        self.with(|c| {
            c.query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
        })
    }

    /// Stores `value` unless the setting exists; returns the stored value.
    pub fn setting_or_init(&self, name: &str, value: &str) -> PortResult<String> {
        self.tx(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO settings (name, value) VALUES (?1, ?2)",
                params![name, value],
            )
            .map_err(backend)?;
            tx.query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .map_err(backend)
        })
    }

    /// Invalidations recorded by the embedded CDN: (caller reference, paths JSON).
    pub fn invalidations(&self) -> PortResult<Vec<(String, String)>> {
        self.with(|c| {
            let mut st =
                c.prepare("SELECT caller_reference, paths FROM invalidations ORDER BY created_at")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// Records an invalidation once per caller reference.
    pub fn record_invalidation(&self, caller_reference: &str, paths: &[String]) -> PortResult<()> {
        let json = serde_json::to_string(paths).map_err(|e| PortError::Backend(e.to_string()))?;
        self.with(|c| c.execute("INSERT OR IGNORE INTO invalidations (caller_reference, paths, created_at) VALUES (?1, ?2, ?3)", params![caller_reference, json, now()]))
            .map(|_| ())
    }
}

const JOB_COLUMNS: &str = "j.id, j.source, j.asset, j.tier, j.status, j.error, j.done, j.total,
    COALESCE((SELECT SUM(CASE WHEN i.kind = 'video' THEN i.frames_done ELSE 0 END) FROM items i WHERE i.job_id = j.id), 0),
    j.frames_total, j.duration_secs, j.rungs,
    COALESCE((SELECT SUM(i.attempts) FROM items i WHERE i.job_id = j.id), 0),
    COALESCE((SELECT SUM(i.failures) FROM items i WHERE i.job_id = j.id), 0),
    COALESCE((SELECT SUM(i.interruptions) FROM items i WHERE i.job_id = j.id), 0),
    COALESCE((SELECT SUM(i.encode_secs) FROM items i WHERE i.job_id = j.id), 0),
    COALESCE((SELECT SUM(i.wasted_secs) FROM items i WHERE i.job_id = j.id), 0),
    j.created_at, j.queued_at, j.started_at, j.stitch_started_at, j.finished_at, j.stitch_count, j.master_key, j.dash_key, j.settings";

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    let tier: String = r.get(3)?;
    let status: String = r.get(4)?;
    Ok(JobRecord {
        id: r.get(0)?,
        source: r.get(1)?,
        asset: r.get(2)?,
        tier: Tier::parse(&tier).unwrap_or(Tier::Standard),
        status: JobStatus::parse(&status).unwrap_or(JobStatus::Failed),
        error: r.get(5)?,
        done: r.get(6)?,
        total: r.get(7)?,
        frames_done: r.get::<_, i64>(8)?.max(0) as u64,
        frames_total: r.get::<_, i64>(9)?.max(0) as u64,
        duration_secs: r.get(10)?,
        rungs: r.get(11)?,
        attempts: r.get(12)?,
        failures: r.get(13)?,
        interruptions: r.get(14)?,
        encode_secs: r.get(15)?,
        wasted_secs: r.get(16)?,
        created_at: r.get(17)?,
        queued_at: r.get(18)?,
        started_at: r.get(19)?,
        stitch_started_at: r.get(20)?,
        finished_at: r.get(21)?,
        stitch_count: r.get(22)?,
        master_key: r.get(23)?,
        dash_key: r.get(24)?,
        settings: r
            .get::<_, Option<String>>(25)?
            .and_then(|doc| serde_json::from_str(&doc).ok()),
        plan_id: None,
    })
}

fn get_job(c: &Connection, id: &str) -> rusqlite::Result<Option<JobRecord>> {
    c.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM jobs j WHERE j.id = ?1"),
        [id],
        job_row,
    )
    .optional()
}

impl JobStore for SqliteState {
    fn create_job(
        &self,
        id: &str,
        source: &str,
        asset: &str,
        tier: Tier,
        settings: &JobSettings,
    ) -> PortResult<(JobRecord, bool)> {
        let settings = serde_json::to_string(settings)
            .map_err(|e| PortError::Backend(format!("job settings: {e}")))?;
        self.tx(|tx| {
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO jobs (id, source, asset, tier, status, created_at, settings) VALUES (?1, ?2, ?3, ?4, 'QUEUED', ?5, ?6)",
                    params![id, source, asset, tier.as_str(), now(), settings],
                )
                .map_err(backend)?;
            let job = get_job(tx, id).map_err(backend)?.ok_or_else(|| PortError::NotFound(id.into()))?;
            Ok((job, n == 1))
        })
    }

    fn job(&self, id: &str) -> PortResult<Option<JobRecord>> {
        self.with(|c| get_job(c, id))
    }

    fn jobs_by_source(&self, source: &str) -> PortResult<Vec<JobRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs j WHERE j.source = ?1 ORDER BY j.created_at DESC"
            ))?;
            let rows = st.query_map([source], job_row)?;
            rows.collect()
        })
    }

    fn jobs_by_status(&self, status: Option<JobStatus>) -> PortResult<Vec<JobRecord>> {
        self.with(|c| match status {
            Some(s) => {
                let mut st = c.prepare(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs j WHERE j.status = ?1 ORDER BY j.created_at"
                ))?;
                let rows = st.query_map([s.as_str()], job_row)?;
                rows.collect()
            }
            None => {
                let mut st = c.prepare(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs j ORDER BY j.created_at"
                ))?;
                let rows = st.query_map([], job_row)?;
                rows.collect()
            }
        })
    }

    fn transition(
        &self,
        id: &str,
        from: &[JobStatus],
        to: JobStatus,
        error: Option<&str>,
    ) -> PortResult<bool> {
        self.tx(|tx| {
            let cur: Option<String> = tx.query_row("SELECT status FROM jobs WHERE id = ?1", [id], |r| r.get(0)).optional().map_err(backend)?;
            let Some(cur) = cur else { return Err(PortError::NotFound(id.into())) };
            if !from.iter().any(|s| s.as_str() == cur) {
                return Ok(false);
            }
            let t = now();
            tx.execute(
                "UPDATE jobs SET status = ?2, error = COALESCE(?3, error),
                   finished_at = CASE WHEN ?2 IN ('PUBLISHED', 'FAILED') THEN ?4 ELSE finished_at END,
                   probing_since = CASE WHEN ?2 = 'PROBING' THEN ?4 ELSE probing_since END
                 WHERE id = ?1",
                params![id, to.as_str(), error, t],
            )
            .map_err(backend)?;
            Ok(true)
        })
    }

    fn claim_asset(&self, asset: &str, source: &str) -> PortResult<String> {
        self.tx(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO assets (name, source, created_at) VALUES (?1, ?2, ?3)",
                params![asset, source, now()],
            )
            .map_err(backend)?;
            tx.query_row("SELECT source FROM assets WHERE name = ?1", [asset], |r| {
                r.get(0)
            })
            .map_err(backend)
        })
    }

    fn claim_probe(&self, id: &str, stale_secs: f64) -> PortResult<bool> {
        let t = now();
        let n = self.with(|c| {
            c.execute(
                "UPDATE jobs SET probing_since = ?2 WHERE id = ?1 AND status = 'PROBING' AND COALESCE(probing_since, created_at) < ?3",
                params![id, t, t - stale_secs],
            )
        })?;
        Ok(n == 1)
    }

    fn reset_failed(&self, id: &str) -> PortResult<bool> {
        self.tx(|tx| {
            let n = tx
                .execute(
                    "UPDATE jobs SET status = 'QUEUED', error = NULL, done = 0, total = 0, plan_doc = NULL, queued_at = NULL, started_at = NULL,
                       stitch_started_at = NULL, finished_at = NULL, master_key = NULL, dash_key = NULL WHERE id = ?1 AND status = 'FAILED'",
                    [id],
                )
                .map_err(backend)?;
            if n == 1 {
                // The next plan's tokens start above every old one, and its attempts above
                // every old attempt directory, so a worker still busy with the failed plan
                // can neither commit nor write where the new plan writes.
                tx.execute(
                    "UPDATE jobs SET
                       token_floor = MAX(token_floor, COALESCE((SELECT MAX(token) FROM items WHERE job_id = ?1), 0) + 1),
                       attempt_floor = MAX(attempt_floor, COALESCE((SELECT MAX(attempts) FROM items WHERE job_id = ?1), 0))
                     WHERE id = ?1",
                    [id],
                )
                .map_err(backend)?;
                tx.execute("DELETE FROM items WHERE job_id = ?1", [id]).map_err(backend)?;
            }
            Ok(n == 1)
        })
    }

    fn save_plan(
        &self,
        id: &str,
        plan_doc: &str,
        duration_secs: f64,
        frames_total: u64,
        rungs: u32,
        items: &[(ItemRef, u64)],
    ) -> PortResult<bool> {
        self.tx(|tx| {
            let n = tx
                .execute(
                    "UPDATE jobs SET status = 'ENCODING', plan_doc = ?2, duration_secs = ?3, frames_total = ?4, rungs = ?5, total = ?6
                     WHERE id = ?1 AND status = 'PROBING'",
                    params![id, plan_doc, duration_secs, frames_total as i64, rungs, items.len() as i64],
                )
                .map_err(backend)?;
            if n == 1 {
                for (item, frames) in items {
                    tx.execute(
                        "INSERT OR IGNORE INTO items (job_id, kind, idx, frames, token, attempts)
                         SELECT ?1, ?2, ?3, ?4, token_floor, attempt_floor FROM jobs WHERE id = ?1",
                        params![id, item.kind.as_str(), item.index, *frames as i64],
                    )
                    .map_err(backend)?;
                }
            }
            Ok(n == 1)
        })
    }

    fn all_queued(&self, id: &str) -> PortResult<()> {
        self.with(|c| {
            c.execute(
                "UPDATE jobs SET queued_at = COALESCE(queued_at, ?2) WHERE id = ?1",
                params![id, now()],
            )
        })?;
        Ok(())
    }

    fn plan_doc(&self, id: &str) -> PortResult<String> {
        self.with(|c| {
            c.query_row("SELECT plan_doc FROM jobs WHERE id = ?1", [id], |r| {
                r.get::<_, Option<String>>(0)
            })
            .optional()
        })?
        .flatten()
        .ok_or_else(|| PortError::NotFound(format!("plan of job {id}")))
    }

    fn acquire(&self, item: &ItemRef, owner: &str, ttl: Duration) -> PortResult<Acquired> {
        self.tx(|tx| {
            let t = now();
            let row: Option<(bool, f64, i64, i64, i64, i64, String)> = tx
                .query_row(
                    "SELECT i.done, i.lease_until, i.token, i.attempts, i.failures, i.interruptions, j.status FROM items i JOIN jobs j ON j.id = i.job_id
                     WHERE i.job_id = ?1 AND i.kind = ?2 AND i.idx = ?3",
                    params![item.job_id, item.kind.as_str(), item.index],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
                )
                .optional()
                .map_err(backend)?;
            let Some((done, lease_until, token, attempts, failures, interruptions, status)) = row else {
                return Ok(Acquired::Finished);
            };
            if done || status != "ENCODING" {
                return Ok(Acquired::Finished);
            }
            if lease_until > t {
                return Ok(Acquired::HeldByOther);
            }
            let (token, attempt) = (token + 1, attempts + 1);
            tx.execute(
                "UPDATE items SET owner = ?4, lease_until = ?5, token = ?6, attempts = ?7, frames_done = 0 WHERE job_id = ?1 AND kind = ?2 AND idx = ?3",
                params![item.job_id, item.kind.as_str(), item.index, owner, t + ttl.as_secs_f64(), token, attempt],
            )
            .map_err(backend)?;
            tx.execute("UPDATE jobs SET started_at = COALESCE(started_at, ?2) WHERE id = ?1", params![item.job_id, t]).map_err(backend)?;
            Ok(Acquired::Lease(Lease { item: item.clone(), token: token as u64, attempt: attempt as u32, failures: failures as u32, interruptions: interruptions as u32 }))
        })
    }

    fn item_state(&self, item: &ItemRef) -> PortResult<Option<ItemState>> {
        self.with(|c| {
            c.query_row(
                "SELECT done, attempts, failures, interruptions, last_error, lease_until FROM items WHERE job_id = ?1 AND kind = ?2 AND idx = ?3",
                params![item.job_id, item.kind.as_str(), item.index],
                |r| {
                    Ok(ItemState {
                        done: r.get(0)?,
                        attempts: r.get(1)?,
                        failures: r.get(2)?,
                        interruptions: r.get(3)?,
                        last_error: r.get(4)?,
                        leased: r.get::<_, f64>(5)? > now(),
                    })
                },
            )
            .optional()
        })
    }

    fn heartbeat(&self, lease: &Lease, ttl: Duration, frames_done: u64) -> PortResult<()> {
        let i = &lease.item;
        let n = self.with(|c| {
            c.execute(
                "UPDATE items SET lease_until = ?5, frames_done = ?6 WHERE job_id = ?1 AND kind = ?2 AND idx = ?3 AND token = ?4 AND done = 0",
                params![i.job_id, i.kind.as_str(), i.index, lease.token as i64, now() + ttl.as_secs_f64(), frames_done as i64],
            )
        })?;
        if n == 0 {
            return Err(lease.lost());
        }
        Ok(())
    }

    fn release_lease(&self, lease: &Lease, outcome: Release<'_>, secs: f64) -> PortResult<()> {
        let i = &lease.item;
        let (failed, interrupted, reason) = match outcome {
            Release::Interrupted => (0, 1, None),
            Release::Failed(r) => (1, 0, Some(r)),
        };
        let n = self.with(|c| {
            c.execute(
                "UPDATE items SET lease_until = 0, owner = NULL, frames_done = 0, failures = failures + ?5, interruptions = interruptions + ?6,
                   last_error = COALESCE(?7, last_error), wasted_secs = wasted_secs + ?8
                 WHERE job_id = ?1 AND kind = ?2 AND idx = ?3 AND token = ?4 AND done = 0",
                params![i.job_id, i.kind.as_str(), i.index, lease.token as i64, failed, interrupted, reason, secs],
            )
        })?;
        if n == 0 {
            return Err(lease.lost());
        }
        Ok(())
    }

    fn commit(&self, lease: &Lease, result_doc: &str, secs: f64) -> PortResult<Completion> {
        let i = &lease.item;
        self.tx(|tx| {
            let done: Option<bool> = tx
                .query_row("SELECT done FROM items WHERE job_id = ?1 AND kind = ?2 AND idx = ?3", params![i.job_id, i.kind.as_str(), i.index], |r| r.get(0))
                .optional()
                .map_err(backend)?;
            if done == Some(true) {
                return Ok(Completion::AlreadyDone);
            }
            let n = tx
                .execute(
                    "UPDATE items SET done = 1, committed_attempt = ?5, result_doc = ?6, frames_done = frames, lease_until = 0, encode_secs = encode_secs + ?7
                     WHERE job_id = ?1 AND kind = ?2 AND idx = ?3 AND token = ?4 AND done = 0",
                    params![i.job_id, i.kind.as_str(), i.index, lease.token as i64, lease.attempt, result_doc, secs],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(PortError::Conflict(format!("stale fencing token {} for {} of job {}", lease.token, i.describe(), i.job_id)));
            }
            tx.execute("UPDATE jobs SET done = done + 1 WHERE id = ?1", [&i.job_id]).map_err(backend)?;
            let last = tx
                .execute(
                    "UPDATE jobs SET status = 'STITCHING', stitch_started_at = ?2 WHERE id = ?1 AND status = 'ENCODING' AND done = total",
                    params![i.job_id, now()],
                )
                .map_err(backend)?;
            Ok(if last == 1 { Completion::Last } else { Completion::More })
        })
    }

    fn results(&self, id: &str) -> PortResult<Vec<(ItemRef, u32, String)>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT kind, idx, committed_attempt, result_doc FROM items WHERE job_id = ?1 AND done = 1 ORDER BY kind DESC, idx")?;
            let rows = st.query_map([id], |r| {
                let kind: String = r.get(0)?;
                Ok((ItemRef { job_id: id.to_string(), kind: ItemKind::parse(&kind).unwrap_or(ItemKind::Video), index: r.get(1)? }, r.get(2)?, r.get(3)?))
            })?;
            rows.collect()
        })
    }

    fn publish(&self, id: &str, master_key: &str, dash_key: &str) -> PortResult<bool> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE jobs SET status = 'PUBLISHED', master_key = ?2, dash_key = ?3, finished_at = ?4, stitch_count = stitch_count + 1
                 WHERE id = ?1 AND status = 'STITCHING'",
                params![id, master_key, dash_key, now()],
            )
        })?;
        Ok(n == 1)
    }

    fn items(&self, id: &str) -> PortResult<Vec<(ItemRef, ItemState)>> {
        let t = now();
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT kind, idx, done, attempts, failures, interruptions, last_error, lease_until FROM items WHERE job_id = ?1 ORDER BY kind DESC, idx",
            )?;
            let rows = st.query_map([id], |r| {
                let kind: String = r.get(0)?;
                Ok((
                    ItemRef { job_id: id.to_string(), kind: ItemKind::parse(&kind).unwrap_or(ItemKind::Video), index: r.get(1)? },
                    ItemState {
                        done: r.get(2)?,
                        attempts: r.get(3)?,
                        failures: r.get(4)?,
                        interruptions: r.get(5)?,
                        last_error: r.get(6)?,
                        leased: r.get::<_, f64>(7)? > t,
                    },
                ))
            })?;
            rows.collect()
        })
    }
}

/// A receipt names the message and the receive it came from, so a stale holder cannot
/// act on a message that has since been received again.
fn receipt(id: i64, count: i64) -> String {
    format!("{id}:{count}")
}

fn parse_receipt(r: &str) -> PortResult<(i64, i64)> {
    let (a, b) = r
        .split_once(':')
        .ok_or_else(|| PortError::NotFound(format!("receipt {r}")))?;
    match (a.parse(), b.parse()) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        _ => Err(PortError::NotFound(format!("receipt {r}"))),
    }
}

fn decode(body: &str) -> PortResult<Message> {
    serde_json::from_str(body)
        .map_err(|e| PortError::Backend(format!("unreadable message {body:?}: {e}")))
}

impl SqliteState {
    fn update_by_receipt(&self, d: &Delivery, sql: &str, value: f64) -> PortResult<()> {
        let (id, count) = parse_receipt(&d.receipt)?;
        let n = self.with(|c| c.execute(sql, params![id, count, value]))?;
        if n == 0 {
            return Err(PortError::Conflict(format!(
                "message {id} was received again since receipt {}",
                d.receipt
            )));
        }
        Ok(())
    }
}

impl WorkQueue for SqliteState {
    fn send(&self, queue: Queue, message: &Message) -> PortResult<()> {
        let body = serde_json::to_string(message).map_err(|e| PortError::Backend(e.to_string()))?;
        let t = now();
        self.with(|c| {
            c.execute(
                "INSERT INTO messages (queue, body, sent_at, visible_at) VALUES (?1, ?2, ?3, ?3)",
                params![queue.as_str(), body, t],
            )
        })
        .map(|_| ())
    }

    fn receive(&self, queues: &[Queue], visibility: Duration) -> PortResult<Option<Delivery>> {
        let max = i64::from(self.max_receives);
        self.tx(|tx| {
            let t = now();
            for q in queues {
                loop {
                    let row: Option<(i64, String, i64)> = tx
                        .query_row(
                            "SELECT id, body, receive_count FROM messages WHERE dead = 0 AND queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, id LIMIT 1",
                            params![q.as_str(), t],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                        .optional()
                        .map_err(backend)?;
                    let Some((id, body, count)) = row else { break };
                    if count >= max {
                        // Redrive: too many receives, park it in the dead-letter queue.
                        tx.execute("UPDATE messages SET dead = 1, visible_at = ?2 WHERE id = ?1", params![id, t]).map_err(backend)?;
                        continue;
                    }
                    let count = count + 1;
                    tx.execute("UPDATE messages SET receive_count = ?2, visible_at = ?3 WHERE id = ?1", params![id, count, t + visibility.as_secs_f64()])
                        .map_err(backend)?;
                    return Ok(Some(Delivery { receipt: receipt(id, count), queue: *q, message: decode(&body)?, receive_count: count as u32 }));
                }
            }
            Ok(None)
        })
    }

    fn extend(&self, d: &Delivery, visibility: Duration) -> PortResult<()> {
        self.update_by_receipt(
            d,
            "UPDATE messages SET visible_at = ?3 WHERE id = ?1 AND receive_count = ?2",
            now() + visibility.as_secs_f64(),
        )
    }

    fn release(&self, d: &Delivery, delay: Duration) -> PortResult<()> {
        self.update_by_receipt(
            d,
            "UPDATE messages SET visible_at = ?3 WHERE id = ?1 AND receive_count = ?2",
            now() + delay.as_secs_f64(),
        )
    }

    fn delete(&self, d: &Delivery) -> PortResult<()> {
        let (id, count) = parse_receipt(&d.receipt)?;
        self.with(|c| {
            c.execute(
                "DELETE FROM messages WHERE id = ?1 AND receive_count = ?2",
                params![id, count],
            )
        })
        .map(|_| ())
    }

    fn receive_dead(&self, visibility: Duration) -> PortResult<Option<Delivery>> {
        self.tx(|tx| {
            let t = now();
            let row: Option<(i64, String, String, i64)> = tx
                .query_row(
                    "SELECT id, queue, body, receive_count FROM messages WHERE dead = 1 AND visible_at <= ?1 ORDER BY id LIMIT 1",
                    [t],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(backend)?;
            let Some((id, queue, body, count)) = row else { return Ok(None) };
            // A fresh receipt, so a slow holder of the last live delivery cannot touch it.
            let next = count + 1;
            tx.execute("UPDATE messages SET visible_at = ?2, receive_count = ?3 WHERE id = ?1", params![id, t + visibility.as_secs_f64(), next]).map_err(backend)?;
            let queue = Queue::parse(&queue).ok_or_else(|| PortError::Backend(format!("unknown queue {queue}")))?;
            Ok(Some(Delivery { receipt: receipt(id, next), queue, message: decode(&body)?, receive_count: count as u32 }))
        })
    }

    fn depth(&self, queue: Queue) -> PortResult<u64> {
        self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM messages WHERE dead = 0 AND queue = ?1",
                [queue.as_str()],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|n| n.max(0) as u64)
    }
}
