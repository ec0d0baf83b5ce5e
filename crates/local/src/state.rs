//! Records and queues in one SQLite database: the embedded backend's [`RecordStore`] (and
//! through it the job lifecycle, decided in `vodpipe_control::lifecycle`) and [`WorkQueue`].
//!
//! The file lives in the state directory, in WAL mode, and is opened by every worker
//! process. Every conditional write is one `BEGIN IMMEDIATE` transaction that reads the
//! record, decides the condition with the lifecycle's own [`vodpipe_control::records::Cond`]
//! evaluator and writes the result, so concurrent workers serialise on the write lock
//! instead of racing. Records are JSON documents keyed like DynamoDB's (partition and sort
//! key), with the two indexed attributes of job records in their own columns. Queues mimic SQS: a receive hides the message for a visibility
//! timeout and changes its receipt; a message received more than `max_receives` times moves
//! to the dead-letter queue.

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vodpipe_control::ports::{Delivery, Message, PortError, PortResult, Queue, WorkQueue};
use vodpipe_control::records::{Change, Fields, Index, Key, RecordStore, Value, Write};

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
CREATE TABLE IF NOT EXISTS records (
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    doc TEXT NOT NULL,
    status TEXT,
    source TEXT,
    created_at REAL,
    PRIMARY KEY (pk, sk)
);
CREATE INDEX IF NOT EXISTS records_by_status ON records(status, created_at) WHERE status IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_by_source ON records(source, created_at) WHERE source IS NOT NULL;
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
CREATE TABLE IF NOT EXISTS invalidations (
    caller_reference TEXT PRIMARY KEY,
    paths TEXT NOT NULL,
    created_at REAL NOT NULL
);
"#;

/// Moves a state directory made before records (tables `jobs`, `items`, `assets` with a
/// column per attribute) into the record layout, in one transaction, so an upgrade loses no
/// job: each row becomes the record the lifecycle would have written, column names as
/// attribute names.
fn migrate_tables(c: &mut Connection) -> rusqlite::Result<()> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let old: i64 = tx.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('jobs', 'items', 'assets')",
        [],
        |r| r.get(0),
    )?;
    if old == 0 {
        return Ok(());
    }
    let rows = |table: &str| -> rusqlite::Result<Vec<Fields>> {
        let exists: i64 = tx.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )?;
        if exists == 0 {
            return Ok(Vec::new());
        }
        let mut st = tx.prepare(&format!("SELECT * FROM {table}"))?;
        let names: Vec<String> = st.column_names().iter().map(|n| n.to_string()).collect();
        let out = st.query_map([], |r| {
            let mut f = Fields::new();
            for (i, name) in names.iter().enumerate() {
                let v = match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Integer(n) => Value::Num(n as f64),
                    rusqlite::types::ValueRef::Real(n) => Value::Num(n),
                    rusqlite::types::ValueRef::Text(t) => {
                        Value::Str(String::from_utf8_lossy(t).into_owned())
                    }
                    _ => continue,
                };
                f.insert(name.clone(), v);
            }
            Ok(f)
        })?;
        out.collect()
    };
    let text = |f: &Fields, k: &str| match f.get(k) {
        Some(Value::Str(s)) => s.clone(),
        Some(Value::Num(n)) => format!("{n}"),
        _ => String::new(),
    };
    let mut records: Vec<(Key, Fields)> = Vec::new();
    for f in rows("jobs")? {
        records.push((Key::new(format!("JOB#{}", text(&f, "id")), "JOB"), f));
    }
    for mut f in rows("items")? {
        let index = match f.get("idx") {
            Some(Value::Num(n)) => *n as u32,
            _ => 0,
        };
        let key = Key::new(
            format!("JOB#{}", text(&f, "job_id")),
            format!("ITEM#{}#{index:06}", text(&f, "kind")),
        );
        for k in ["job_id", "kind", "idx"] {
            f.remove(k);
        }
        let done = matches!(f.get("done"), Some(Value::Num(n)) if *n != 0.0);
        f.insert("done".into(), Value::Bool(done));
        records.push((key, f));
    }
    for mut f in rows("assets")? {
        let name = text(&f, "name");
        f.remove("name");
        records.push((Key::new(format!("ASSET#{name}"), "ASSET"), f));
    }
    for (key, f) in &records {
        let (status, source, created) = indexed(key, f);
        let doc = serde_json::to_string(f)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        tx.execute(
            "INSERT OR IGNORE INTO records (pk, sk, doc, status, source, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![key.pk, key.sk, doc, status, source, created],
        )?;
    }
    tx.execute_batch(
        "DROP TABLE IF EXISTS jobs; DROP TABLE IF EXISTS items; DROP TABLE IF EXISTS assets;",
    )?;
    tx.commit()
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
            Ok(())
        };
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(5);
        let mut conn = conn;
        loop {
            match init(&conn).and_then(|()| migrate_tables(&mut conn)) {
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

    fn lock(&self) -> PortResult<std::sync::MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| PortError::Backend("state connection poisoned".into()))
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

/// A record's stored form: its attributes as one JSON object.
fn encode_fields(f: &Fields) -> PortResult<String> {
    serde_json::to_string(f).map_err(|e| PortError::Backend(format!("encoding a record: {e}")))
}

fn decode_fields(doc: &str) -> rusqlite::Result<Fields> {
    serde_json::from_str(doc).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// The indexed attributes of a job record (none for other records).
fn indexed(key: &Key, f: &Fields) -> (Option<String>, Option<String>, Option<f64>) {
    if key.sk != "JOB" {
        return (None, None, None);
    }
    let text = |k: &str| match f.get(k) {
        Some(Value::Str(s)) => Some(s.clone()),
        _ => None,
    };
    let created = match f.get("created_at") {
        Some(Value::Num(n)) => Some(*n),
        _ => None,
    };
    (text("status"), text("source"), created)
}

fn read_record(c: &Connection, key: &Key) -> PortResult<Option<Fields>> {
    c.query_row(
        "SELECT doc FROM records WHERE pk = ?1 AND sk = ?2",
        params![key.pk, key.sk],
        |r| decode_fields(&r.get::<_, String>(0)?),
    )
    .optional()
    .map_err(backend)
}

fn write_record(c: &Connection, key: &Key, f: &Fields) -> PortResult<()> {
    let (status, source, created) = indexed(key, f);
    c.execute(
        "INSERT OR REPLACE INTO records (pk, sk, doc, status, source, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![key.pk, key.sk, encode_fields(f)?, status, source, created],
    )
    .map_err(backend)?;
    Ok(())
}

/// Applies `w` inside the caller's transaction, deciding its condition with
/// [`Cond::holds`]: the one definition every backend's conditions are checked against.
fn apply_write(c: &Connection, w: &Write) -> PortResult<Option<Fields>> {
    let Some(mut f) = read_record(c, &w.key)? else {
        return Ok(None);
    };
    if !w.when.holds(Some(&f)) {
        return Ok(None);
    }
    Change::apply_all(&w.changes, &mut f)
        .map_err(|e| PortError::Backend(format!("refused write to {:?}: {e}", w.key)))?;
    write_record(c, &w.key, &f)?;
    Ok(Some(f))
}

impl RecordStore for SqliteState {
    fn get(&self, key: &Key) -> PortResult<Option<Fields>> {
        let c = self.lock()?;
        read_record(&c, key)
    }

    fn create(&self, key: &Key, fields: &Fields) -> PortResult<bool> {
        let (status, source, created) = indexed(key, fields);
        let doc = encode_fields(fields)?;
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO records (pk, sk, doc, status, source, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![key.pk, key.sk, doc, status, source, created],
            )
        })
        .map(|n| n == 1)
    }

    fn put(&self, key: &Key, fields: &Fields) -> PortResult<()> {
        let c = self.lock()?;
        write_record(&c, key, fields)
    }

    fn update(&self, w: &Write) -> PortResult<Option<Fields>> {
        self.tx(|tx| apply_write(tx, w))
    }

    fn transact(&self, writes: &[Write]) -> PortResult<bool> {
        let mut c = self.lock()?;
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        for w in writes {
            if apply_write(&tx, w)?.is_none() {
                // Dropping the transaction rolls back the writes before this one.
                return Ok(false);
            }
        }
        tx.commit().map_err(backend)?;
        Ok(true)
    }

    fn query(&self, pk: &str, prefix: &str) -> PortResult<Vec<(String, Fields)>> {
        // Sort keys are ASCII: every key starting with `prefix` sorts below `prefix` + DEL.
        let upper = format!("{prefix}\u{7f}");
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT sk, doc FROM records WHERE pk = ?1 AND sk >= ?2 AND sk < ?3 ORDER BY sk",
            )?;
            let rows = st.query_map(params![pk, prefix, upper], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    decode_fields(&r.get::<_, String>(1)?)?,
                ))
            })?;
            rows.collect()
        })
    }

    fn index(&self, index: Index, value: &str, newest_first: bool) -> PortResult<Vec<String>> {
        let order = if newest_first { "DESC" } else { "ASC" };
        let column = match index {
            Index::Status => "status",
            Index::Source => "source",
        };
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT pk FROM records WHERE {column} = ?1 ORDER BY created_at {order}, pk"
            ))?;
            let rows = st.query_map([value], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
    }

    fn remove(&self, key: &Key) -> PortResult<()> {
        self.with(|c| {
            c.execute(
                "DELETE FROM records WHERE pk = ?1 AND sk = ?2",
                params![key.pk, key.sk],
            )
        })
        .map(|_| ())
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
        self.send_many(queue, std::slice::from_ref(message))
    }

    fn send_many(&self, queue: Queue, messages: &[Message]) -> PortResult<()> {
        let bodies = messages
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PortError::Backend(e.to_string()))?;
        let t = now();
        // One transaction: one fsync for a film's chunks, not one per message.
        self.tx(|tx| {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO messages (queue, body, sent_at, visible_at) VALUES (?1, ?2, ?3, ?3)",
                )
                .map_err(backend)?;
            for body in &bodies {
                insert
                    .execute(params![queue.as_str(), body, t])
                    .map_err(backend)?;
            }
            Ok(())
        })
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
