//! The job lifecycle, decided once: every state transition, lease, commit and fencing rule
//! as conditional writes on a [`RecordStore`].
//!
//! Any record store is a [`JobStore`] through the implementation below, so the rules that
//! used to be written twice (SQL in the embedded backend, condition expressions for
//! DynamoDB) exist once, and the contract suite proves them on every backend. The rules:
//!
//! - A job is created once (put-if-absent; a nonce tells a retried create that it won).
//! - Every transition is one conditional write on the job's `status`.
//! - A lease is one conditional write on the item (free or expired, not done) that bumps
//!   its fencing token; heartbeats, releases and commits must carry the current token.
//! - A commit is one transaction: the item done under its token, and the job's counter,
//!   which the last committer moves to STITCHING in the same write. The first try assumes
//!   it is not the last (`done < last_index`, compared in the write, no read).
//! - A reset moves the fencing floors above every token and attempt the old plan used.
//! - A job whose source carries no frame index starts with one item, the index; its holder
//!   saves the chunk plan in one write fenced by its token (counting itself in the job's
//!   total, so the job cannot finish before it), then makes the other items, absent ones
//!   only, and commits last.
//! - Documents (plans, large results) live in page records of at most [`PAGE_BYTES`],
//!   outside the job record, so no record nears DynamoDB's 400 KB item limit.

use crate::domain::{ItemKind, ItemRef, JobRecord, Tier};
use crate::domain::{JobStatus, Transition};
use crate::ports::{
    Acquired, Completion, ItemState, JobStore, LaunchClaim, LaunchTrouble, Lease, PortError,
    PortResult, Release,
};
use crate::records::{Change, Cond, Fields, Index, Key, RecordStore, Value, Write};
use std::time::Duration;
use vodpipe_media::process::now_secs;

/// The most of a document one record carries. DynamoDB refuses items over 400 KB and bills
/// by the KB; a longer document is stored as several page records of this size.
pub const PAGE_BYTES: usize = 48 * 1024;
/// How long finished item records and pages are kept (a TTL attribute where the backend
/// expires records).
const ITEM_TTL_SECS: f64 = 30.0 * 86400.0;
/// How often a commit retries its transaction when other commits of the same job win the
/// race for the job's counter first.
const COMMIT_ROUNDS: u32 = 16;

/// The key of job `id`'s record.
pub fn job_key(id: &str) -> Key {
    Key::new(job_pk(id), "JOB")
}

fn job_pk(id: &str) -> String {
    format!("JOB#{id}")
}

/// An item's sort key: items sort by kind, then index.
pub fn item_sk(item: &ItemRef) -> String {
    format!("ITEM#{}#{:06}", item.kind.as_str(), item.index)
}

/// The key of an item's record.
pub fn item_key(item: &ItemRef) -> Key {
    Key::new(job_pk(&item.job_id), item_sk(item))
}

/// The record of a tier's failed launches, beside the jobs.
fn launch_key(tier: Tier) -> Key {
    Key::new("FLEET", format!("LAUNCH#{}", tier.as_str()))
}

/// The record of who decides a tier's launches now.
fn launching_key(tier: Tier) -> Key {
    Key::new("FLEET", format!("LAUNCHING#{}", tier.as_str()))
}

/// Moves a job to the plan whose pages were written under `prefix`, with `writes` (the
/// lease holder's item fenced by its token, the job while it still waits on `pending`):
/// a plan revision and an index's plan differ only in the flag. A refused transaction
/// is retried after a concurrent commit of the same job; a lost lease is an error and a
/// job no longer waiting is `false`, and either way the unused pages are removed. The
/// pages of a plan replaced a moment ago stay (they expire with the job's records): a
/// reader that named them still reads them whole.
fn swap_plan<S: RecordStore + ?Sized>(
    store: &S,
    lease: &Lease,
    writes: &[Write],
    prefix: &str,
    pending: &str,
    what: &str,
) -> PortResult<bool> {
    let id = &lease.item.job_id;
    for _ in 0..COMMIT_ROUNDS {
        if store.transact(writes)? {
            return Ok(true);
        }
        let lost = match store.get(&item_key(&lease.item))? {
            None => true,
            Some(r) => get_u(&r, "token") != lease.token || get_b(&r, "done"),
        };
        let job = store.get(&job_key(id))?;
        let open = job
            .as_ref()
            .is_some_and(|j| status_of(j) == Some(JobStatus::Encoding) && get_b(j, pending));
        if lost || !open {
            delete_prefixed(store, id, prefix)?;
            return if lost { Err(lease.lost()) } else { Ok(false) };
        }
    }
    delete_prefixed(store, id, prefix)?;
    Err(PortError::Backend(format!(
        "job {id}: {what} lost {COMMIT_ROUNDS} rounds to concurrent writes"
    )))
}

fn launch_trouble(r: &Fields) -> LaunchTrouble {
    LaunchTrouble {
        failures: get_u(r, "failures") as u32,
        reason: get_s(r, "reason").unwrap_or_default(),
        last_at: get_f(r, "last_at").unwrap_or(0.0),
    }
}

fn asset_key(asset: &str) -> Key {
    Key::new(format!("ASSET#{asset}"), "ASSET")
}

fn item_from_sk(job_id: &str, sk: &str) -> Option<ItemRef> {
    let mut parts = sk.splitn(3, '#');
    let (_, kind, index) = (parts.next()?, parts.next()?, parts.next()?);
    Some(ItemRef {
        job_id: job_id.to_string(),
        kind: ItemKind::parse(kind)?,
        index: index.parse().ok()?,
    })
}

fn get_s(r: &Fields, k: &str) -> Option<String> {
    match r.get(k) {
        Some(Value::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

fn get_f(r: &Fields, k: &str) -> Option<f64> {
    match r.get(k) {
        Some(Value::Num(n)) => Some(*n),
        _ => None,
    }
}

fn get_u(r: &Fields, k: &str) -> u64 {
    get_f(r, k).unwrap_or(0.0).max(0.0) as u64
}

fn get_b(r: &Fields, k: &str) -> bool {
    matches!(r.get(k), Some(Value::Bool(true)))
}

fn status_of(r: &Fields) -> Option<JobStatus> {
    get_s(r, "status").and_then(|s| JobStatus::parse(&s))
}

fn st(status: JobStatus) -> Value {
    Value::str(status.as_str())
}

/// The condition of transition `t`'s write: the job is in a state `t` leaves.
fn leaving(t: Transition) -> Cond {
    match t.from() {
        [one] => Cond::Eq("status", st(*one)),
        many => Cond::In("status", many.iter().map(|s| st(*s)).collect()),
    }
}

/// The change transition `t` makes to the job's state.
fn entering(t: Transition) -> Change {
    Change::Set("status", st(t.to()))
}

fn fields(pairs: Vec<(&str, Value)>) -> Fields {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Eight random bytes in hex: a plan's id, a create's nonce. Zero bytes where the system
/// has no randomness (ids then still differ by the time mixed into them by callers).
fn random_hex() -> String {
    let mut raw = [0u8; 8];
    if getrandom::getrandom(&mut raw).is_err() {
        raw = now_secs().to_bits().to_le_bytes();
    }
    hex::encode(raw)
}

/// A random byte, for jitter.
fn random_byte() -> u8 {
    let mut b = [0u8; 1];
    getrandom::getrandom(&mut b).map_or(0, |_| b[0])
}

/// `doc` cut into pages of at most [`PAGE_BYTES`] bytes, on character boundaries.
fn split_pages(doc: &str) -> Vec<&str> {
    let mut pages = Vec::new();
    let mut rest = doc;
    while !rest.is_empty() {
        let mut end = rest.len().min(PAGE_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (page, tail) = rest.split_at(end);
        pages.push(page);
        rest = tail;
    }
    pages
}

/// Writes `doc` as page records `<prefix>0000`, `<prefix>0001` … in job `id`'s partition;
/// returns how many. Only a later conditional write that names them makes them count.
fn put_pages<S: RecordStore + ?Sized>(s: &S, id: &str, prefix: &str, doc: &str) -> PortResult<u32> {
    let expires = (now_secs() + ITEM_TTL_SECS).floor();
    let pages = split_pages(doc);
    for (i, page) in pages.iter().enumerate() {
        s.put(
            &Key::new(job_pk(id), format!("{prefix}{i:04}")),
            &fields(vec![
                ("doc", Value::str(*page)),
                ("expires_at", Value::num(expires)),
            ]),
        )?;
    }
    Ok(pages.len() as u32)
}

/// The document written by [`put_pages`], whole; an error if a page is missing.
fn read_pages<S: RecordStore + ?Sized>(
    s: &S,
    id: &str,
    prefix: &str,
    count: u32,
) -> PortResult<String> {
    let rows = s.query(&job_pk(id), prefix)?;
    // Every page gone: the document expired with the job's records (a TTL), for good.
    if rows.is_empty() && count > 0 {
        return Err(PortError::NotFound(format!(
            "job {id}: document {prefix} (its pages expired)"
        )));
    }
    if rows.len() != count as usize {
        return Err(PortError::Backend(format!(
            "job {id}: document {prefix} has {} of its {count} pages",
            rows.len()
        )));
    }
    Ok(rows.iter().filter_map(|(_, r)| get_s(r, "doc")).collect())
}

fn delete_prefixed<S: RecordStore + ?Sized>(s: &S, id: &str, prefix: &str) -> PortResult<()> {
    for (sk, _) in s.query(&job_pk(id), prefix)? {
        s.remove(&Key::new(job_pk(id), sk))?;
    }
    Ok(())
}

fn item_state(r: &Fields, now: f64) -> ItemState {
    ItemState {
        done: get_b(r, "done"),
        attempts: get_u(r, "attempts") as u32,
        failures: get_u(r, "failures") as u32,
        interruptions: get_u(r, "interruptions") as u32,
        last_error: get_s(r, "last_error"),
        last_error_transient: get_b(r, "last_error_transient"),
        leased: get_f(r, "lease_until").unwrap_or(0.0) > now,
        worker: get_s(r, "owner"),
        leased_at: get_f(r, "leased_at"),
        done_at: get_f(r, "done_at"),
        frames: if get_b(r, "done") {
            get_u(r, "frames")
        } else {
            get_u(r, "frames_done")
        },
        encode_secs: get_f(r, "encode_secs").unwrap_or(0.0),
        wasted_secs: get_f(r, "wasted_secs").unwrap_or(0.0),
    }
}

/// A job from its record and its item records (none for a brief record, whose sums are
/// left at zero).
fn job_record(r: &Fields, id: String, items: &[(String, Fields)]) -> JobRecord {
    let sum = |k: &str| {
        items
            .iter()
            .map(|(_, i)| get_f(i, k).unwrap_or(0.0))
            .sum::<f64>()
    };
    let frames_done: u64 = items
        .iter()
        .filter(|(sk, _)| sk.starts_with("ITEM#video"))
        .map(|(_, i)| get_u(i, "frames_done"))
        .sum();
    JobRecord {
        source: get_s(r, "source").unwrap_or_default(),
        asset: get_s(r, "asset").unwrap_or_default(),
        tier: get_s(r, "tier")
            .and_then(|t| Tier::parse(&t))
            .unwrap_or(Tier::Standard),
        status: status_of(r).unwrap_or(JobStatus::Failed),
        error: get_s(r, "error"),
        done: get_u(r, "done") as u32,
        total: get_u(r, "total") as u32,
        frames_done,
        frames_total: get_u(r, "frames_total"),
        duration_secs: get_f(r, "duration_secs").unwrap_or(0.0),
        rungs: get_u(r, "rungs") as u32,
        planned_cost_usd: get_f(r, "planned_cost_usd"),
        attempts: sum("attempts") as u32,
        failures: sum("failures") as u32,
        interruptions: sum("interruptions") as u32,
        encode_secs: sum("encode_secs"),
        wasted_secs: sum("wasted_secs"),
        created_at: get_f(r, "created_at").unwrap_or(0.0),
        queued_at: get_f(r, "queued_at"),
        started_at: get_f(r, "started_at"),
        stitch_started_at: get_f(r, "stitch_started_at"),
        finished_at: get_f(r, "finished_at"),
        stitch_count: get_u(r, "stitch_count") as u32,
        progress_at: get_f(r, "progress_at"),
        stitch_failures: get_u(r, "stitch_failures") as u32,
        stitch_error: get_s(r, "stitch_error"),
        repaired_at: get_f(r, "repaired_at"),
        master_key: get_s(r, "master_key"),
        dash_key: get_s(r, "dash_key"),
        settings: get_s(r, "settings").and_then(|doc| serde_json::from_str(&doc).ok()),
        renditions: get_s(r, "renditions")
            .and_then(|doc| serde_json::from_str(&doc).ok())
            .unwrap_or_default(),
        plan_id: get_s(r, "plan_ref"),
        id,
    }
}

/// The jobs named by index entries, read one by one, whole or brief (an index may lag a
/// delete: entries whose job is gone are skipped).
fn jobs_at<S: RecordStore + ?Sized>(
    s: &S,
    pks: Vec<String>,
    brief: bool,
) -> PortResult<Vec<JobRecord>> {
    let mut jobs = Vec::with_capacity(pks.len());
    for pk in pks {
        if let Some(id) = pk.strip_prefix("JOB#") {
            let job = if brief { s.job_brief(id)? } else { s.job(id)? };
            jobs.extend(job);
        }
    }
    Ok(jobs)
}

impl<S: RecordStore + ?Sized> JobStore for S {
    fn create_job(
        &self,
        id: &str,
        source: &str,
        asset: &str,
        tier: Tier,
        settings: &crate::domain::JobSettings,
    ) -> PortResult<(JobRecord, bool)> {
        // The nonce tells this call its create landed even when a retry of the same write
        // (by the SDK, after a lost response) found the record there.
        let nonce = random_hex();
        let settings = serde_json::to_string(settings)
            .map_err(|e| PortError::Backend(format!("job settings: {e}")))?;
        let mut record = fields(vec![
            ("id", Value::str(id)),
            ("source", Value::str(source)),
            ("asset", Value::str(asset)),
            ("tier", Value::str(tier.as_str())),
            ("settings", Value::str(settings)),
            ("status", st(JobStatus::Queued)),
            ("created_at", Value::num(now_secs())),
            ("creator", Value::str(&nonce)),
        ]);
        for k in [
            "done",
            "total",
            "token_floor",
            "attempt_floor",
            "stitch_count",
        ] {
            record.insert(k.into(), Value::num(0));
        }
        let created = self.create(&job_key(id), &record)?
            || self
                .get(&job_key(id))?
                .and_then(|r| get_s(&r, "creator"))
                .as_deref()
                == Some(nonce.as_str());
        let job = self
            .job(id)?
            .ok_or_else(|| PortError::NotFound(id.into()))?;
        Ok((job, created))
    }

    fn claim_asset(&self, asset: &str, source: &str) -> PortResult<String> {
        self.create(
            &asset_key(asset),
            &fields(vec![
                ("source", Value::str(source)),
                ("created_at", Value::num(now_secs())),
            ]),
        )?;
        self.get(&asset_key(asset))?
            .and_then(|r| get_s(&r, "source"))
            .ok_or_else(|| PortError::Backend(format!("asset {asset} claimed by nobody")))
    }

    fn job(&self, id: &str) -> PortResult<Option<JobRecord>> {
        let Some(r) = self.get(&job_key(id))? else {
            return Ok(None);
        };
        let items = self.query(&job_pk(id), "ITEM#")?;
        Ok(Some(job_record(&r, id.to_string(), &items)))
    }

    fn job_brief(&self, id: &str) -> PortResult<Option<JobRecord>> {
        Ok(self
            .get(&job_key(id))?
            .map(|r| job_record(&r, id.to_string(), &[])))
    }

    fn jobs_by_source(&self, source: &str) -> PortResult<Vec<JobRecord>> {
        jobs_at(self, self.index(Index::Source, source, true)?, false)
    }

    fn jobs_by_status(&self, status: Option<JobStatus>) -> PortResult<Vec<JobRecord>> {
        match status {
            Some(s) => jobs_at(self, self.index(Index::Status, s.as_str(), false)?, false),
            None => {
                let mut all = Vec::new();
                for s in JobStatus::ALL {
                    all.extend(jobs_at(
                        self,
                        self.index(Index::Status, s.as_str(), false)?,
                        false,
                    )?);
                }
                // A job that changed state between two index reads (STITCHING, then
                // PUBLISHED) is in both: the record read last is the newer.
                let mut newest: std::collections::HashMap<String, usize> =
                    std::collections::HashMap::new();
                for (i, j) in all.iter().enumerate() {
                    newest.insert(j.id.clone(), i);
                }
                let mut all: Vec<JobRecord> = all
                    .into_iter()
                    .enumerate()
                    .filter(|(i, j)| newest.get(&j.id) == Some(i))
                    .map(|(_, j)| j)
                    .collect();
                all.sort_by(|a, b| a.created_at.total_cmp(&b.created_at));
                Ok(all)
            }
        }
    }

    fn brief_jobs_by_status(&self, status: JobStatus) -> PortResult<Vec<JobRecord>> {
        jobs_at(
            self,
            self.index(Index::Status, status.as_str(), false)?,
            true,
        )
    }

    fn transition(&self, id: &str, t: Transition, error: Option<&str>) -> PortResult<bool> {
        let to = t.to();
        let mut changes = vec![entering(t)];
        if let Some(e) = error {
            changes.push(Change::Set("error", Value::str(e)));
        }
        if to.is_final() {
            changes.push(Change::Set("finished_at", Value::num(now_secs())));
        }
        // Entering PROBING records when, which an abandoned-probe takeover compares with.
        if to == JobStatus::Probing {
            changes.push(Change::Set("probing_since", Value::num(now_secs())));
        }
        let moved = self
            .update(&Write {
                key: job_key(id),
                when: leaving(t),
                changes,
            })?
            .is_some();
        if !moved && self.get(&job_key(id))?.is_none() {
            return Err(PortError::NotFound(id.into()));
        }
        Ok(moved)
    }

    fn claim_repair(&self, id: &str, status: JobStatus, stale_secs: f64) -> PortResult<bool> {
        let now = now_secs();
        Ok(self
            .update(&Write {
                key: job_key(id),
                when: Cond::All(vec![
                    Cond::Eq("status", st(status)),
                    Cond::Any(vec![
                        Cond::Missing("repaired_at"),
                        Cond::Lt("repaired_at", Value::num(now - stale_secs)),
                    ]),
                ]),
                changes: vec![Change::Set("repaired_at", Value::num(now))],
            })?
            .is_some())
    }

    fn note_stitch_failure(&self, id: &str, reason: &str) -> PortResult<u32> {
        let written = self.update(&Write {
            key: job_key(id),
            when: Cond::Eq("status", st(JobStatus::Stitching)),
            changes: vec![
                Change::Add("stitch_failures", 1.0),
                Change::Set("stitch_error", Value::str(reason)),
            ],
        })?;
        Ok(written.map_or(0, |r| get_u(&r, "stitch_failures") as u32))
    }

    fn record_launch_failure(
        &self,
        tier: Tier,
        reason: &str,
        round_secs: f64,
    ) -> PortResult<LaunchTrouble> {
        let key = launch_key(tier);
        let now = now_secs();
        for _ in 0..COMMIT_ROUNDS {
            // A new round counts (none in a row yet, or the last counted a round ago) ...
            let counted = self.update(&Write {
                key: key.clone(),
                when: Cond::Any(vec![
                    Cond::Eq("failures", Value::num(0)),
                    Cond::Lt("last_at", Value::num(now - round_secs)),
                ]),
                changes: vec![
                    Change::Add("failures", 1.0),
                    Change::Set("reason", Value::str(reason)),
                    Change::Set("last_at", Value::num(now)),
                ],
            })?;
            if let Some(r) = counted {
                return Ok(launch_trouble(&r));
            }
            // ... a failure of the same round only updates the reason.
            let same_round = self.update(&Write {
                key: key.clone(),
                when: Cond::Exists,
                changes: vec![Change::Set("reason", Value::str(reason))],
            })?;
            if let Some(r) = same_round {
                return Ok(launch_trouble(&r));
            }
            let first = fields(vec![
                ("failures", Value::num(1)),
                ("reason", Value::str(reason)),
                ("last_at", Value::num(now)),
            ]);
            if self.create(&key, &first)? {
                return Ok(launch_trouble(&first));
            }
        }
        Err(PortError::Backend(format!(
            "recording a failed launch of {tier}: the record kept changing"
        )))
    }

    fn launch_trouble(&self, tier: Tier) -> PortResult<Option<LaunchTrouble>> {
        Ok(self
            .get(&launch_key(tier))?
            .map(|r| launch_trouble(&r))
            .filter(|t| t.failures > 0))
    }

    fn clear_launch_trouble(&self, tier: Tier) -> PortResult<()> {
        self.update(&Write {
            key: launch_key(tier),
            when: Cond::Ne("failures", Value::num(0)),
            changes: vec![Change::Set("failures", Value::num(0))],
        })?;
        Ok(())
    }

    fn claim_launches(
        &self,
        tier: Tier,
        holder: &str,
        hold_secs: f64,
    ) -> PortResult<Option<LaunchClaim>> {
        let now = now_secs();
        let claimed = self.update(&Write {
            key: launching_key(tier),
            when: Cond::Lt("held_until", Value::num(now)),
            changes: vec![
                Change::Set("held_until", Value::num(now + hold_secs)),
                Change::Set("holder", Value::str(holder)),
            ],
        })?;
        if let Some(r) = claimed {
            return Ok(Some(LaunchClaim {
                last: get_f(&r, "left_at").map(|at| (get_u(&r, "left_tasks") as u32, at)),
            }));
        }
        // The tier's first launch: whoever creates the record holds it. Otherwise another
        // caller holds the launches now (or just took them).
        let first = fields(vec![
            ("held_until", Value::num(now + hold_secs)),
            ("holder", Value::str(holder)),
        ]);
        Ok(self
            .create(&launching_key(tier), &first)?
            .then_some(LaunchClaim::default()))
    }

    fn release_launches(&self, tier: Tier, holder: &str, tasks: Option<u32>) -> PortResult<()> {
        let mut changes = vec![Change::Set("held_until", Value::num(0))];
        if let Some(tasks) = tasks {
            changes.push(Change::Set("left_tasks", Value::num(tasks)));
            changes.push(Change::Set("left_at", Value::num(now_secs())));
        }
        self.update(&Write {
            key: launching_key(tier),
            when: Cond::Eq("holder", Value::str(holder)),
            changes,
        })?;
        Ok(())
    }

    fn claim_probe(&self, id: &str, stale_secs: f64) -> PortResult<bool> {
        let now = now_secs();
        let cut = Value::num(now - stale_secs);
        Ok(self
            .update(&Write {
                key: job_key(id),
                when: Cond::All(vec![
                    Cond::Eq("status", st(JobStatus::Probing)),
                    Cond::Any(vec![
                        Cond::Lt("probing_since", cut.clone()),
                        Cond::All(vec![
                            Cond::Missing("probing_since"),
                            Cond::Lt("created_at", cut),
                        ]),
                    ]),
                ]),
                changes: vec![Change::Set("probing_since", Value::num(now))],
            })?
            .is_some())
    }

    fn reset_failed(&self, id: &str) -> PortResult<bool> {
        let Some(job) = self.get(&job_key(id))? else {
            return Ok(false);
        };
        if status_of(&job) != Some(JobStatus::Failed) {
            return Ok(false);
        }
        let items = self.query(&job_pk(id), "ITEM#")?;
        let floor = |item_attr: &str, job_attr: &str, plus: u64| {
            let used = items
                .iter()
                .map(|(_, i)| get_u(i, item_attr))
                .max()
                .map_or(0, |m| m + plus);
            used.max(get_u(&job, job_attr))
        };
        // The next plan's tokens start above every token handed out, and its attempts
        // above every attempt, so a worker still busy with the failed plan can neither
        // commit nor write into the directory of a new attempt. One more of each than was
        // read: a worker that saw the job ENCODING just before it failed may still land one
        // lease (a token and an attempt) after the read.
        let (token_floor, attempt_floor) = (
            floor("token", "token_floor", 2),
            floor("attempts", "attempt_floor", 1),
        );
        // Three steps, each safe to repeat after a crash: the floors are recorded while the
        // job is still FAILED (a repeat computes them from what is left and the recorded
        // ones, never lower); then the old items and pages go, so nothing of the failed plan
        // can be taken for the new one's; only then does the job leave FAILED.
        if self
            .update(&Write {
                key: job_key(id),
                when: leaving(Transition::Reset),
                changes: vec![
                    Change::Set("token_floor", Value::num(token_floor as f64)),
                    Change::Set("attempt_floor", Value::num(attempt_floor as f64)),
                ],
            })?
            .is_none()
        {
            return Ok(false);
        }
        for (sk, _) in &items {
            self.remove(&Key::new(job_pk(id), sk.clone()))?;
        }
        delete_prefixed(self, id, "PLAN#")?;
        delete_prefixed(self, id, "RESULT#")?;
        let mut changes = vec![
            entering(Transition::Reset),
            Change::Set("done", Value::num(0)),
            Change::Set("total", Value::num(0)),
            // A reset job is new work: the sweep for abandoned ingests counts from here.
            Change::Set("created_at", Value::num(now_secs())),
        ];
        for k in [
            "error",
            "plan_doc",
            "plan_ref",
            "plan_pages",
            "last_index",
            "queued_at",
            "started_at",
            "stitch_started_at",
            "finished_at",
            "master_key",
            "dash_key",
            "probing_since",
            "renditions",
            "ladder_pending",
            "index_pending",
            "progress_at",
            "repaired_at",
            "stitch_failures",
            "stitch_error",
        ] {
            changes.push(Change::Remove(k));
        }
        Ok(self
            .update(&Write {
                key: job_key(id),
                when: leaving(Transition::Reset),
                changes,
            })?
            .is_some())
    }

    fn save_plan(
        &self,
        id: &str,
        plan_doc: &str,
        duration_secs: f64,
        frames_total: u64,
        rungs: u32,
        planned_cost_usd: f64,
        items: &[(ItemRef, u64)],
    ) -> PortResult<bool> {
        let job = self
            .get(&job_key(id))?
            .ok_or_else(|| PortError::NotFound(id.into()))?;
        if status_of(&job) != Some(JobStatus::Probing) {
            return Ok(false);
        }
        // Items and plan pages first, then the job: an ingest that dies in between leaves
        // the job in PROBING, which the next ingest takes over and plans again. Items are
        // created only where absent, so a second planner racing the first can never reset
        // an item a worker already holds; its plan pages, under their own id, are read only
        // if its write of the job wins.
        let (token_floor, attempt_floor) =
            (get_u(&job, "token_floor"), get_u(&job, "attempt_floor"));
        let plan_ref = random_hex();
        let plan_pages = put_pages(self, id, &format!("PLAN#{plan_ref}#"), plan_doc)?;
        let mut records = Vec::with_capacity(items.len());
        for (item, frames) in items {
            records.push((
                item_key(item),
                new_item(*frames, token_floor, attempt_floor),
            ));
        }
        self.create_all(&records)?;
        Ok(self
            .update(&Write {
                key: job_key(id),
                when: leaving(Transition::Plan),
                changes: vec![
                    entering(Transition::Plan),
                    Change::Set("plan_ref", Value::str(&plan_ref)),
                    Change::Set("plan_pages", Value::num(plan_pages)),
                    Change::Set("duration_secs", Value::num(duration_secs)),
                    Change::Set("frames_total", Value::num(frames_total as f64)),
                    Change::Set("rungs", Value::num(rungs)),
                    Change::Set("planned_cost_usd", Value::num(planned_cost_usd)),
                    Change::Set("total", Value::num(items.len() as f64)),
                    // What a commit compares `done` with to know, without reading the
                    // job, that it is not the last.
                    Change::Set(
                        "last_index",
                        Value::num(items.len().saturating_sub(1) as f64),
                    ),
                    Change::Remove("plan_doc"),
                    Change::Remove("queued_at"),
                    // Chunks wait for a per-title analysis to choose their ladder.
                    if items.iter().any(|(i, _)| i.kind == ItemKind::Analysis) {
                        Change::Set("ladder_pending", Value::Bool(true))
                    } else {
                        Change::Remove("ladder_pending")
                    },
                    // The chunks are planned by the index item, which saves them.
                    if items.iter().any(|(i, _)| i.kind == ItemKind::Index) {
                        Change::Set("index_pending", Value::Bool(true))
                    } else {
                        Change::Remove("index_pending")
                    },
                ],
            })?
            .is_some())
    }

    fn all_queued(&self, id: &str) -> PortResult<()> {
        self.update(&Write {
            key: job_key(id),
            when: Cond::Exists,
            changes: vec![Change::SetIfMissing("queued_at", Value::num(now_secs()))],
        })?;
        Ok(())
    }

    fn plan_doc(&self, id: &str) -> PortResult<String> {
        let job = self
            .get(&job_key(id))?
            .ok_or_else(|| PortError::NotFound(format!("plan of job {id}")))?;
        match (get_s(&job, "plan_ref"), get_s(&job, "plan_doc")) {
            (Some(plan_ref), _) => read_pages(
                self,
                id,
                &format!("PLAN#{plan_ref}#"),
                get_u(&job, "plan_pages") as u32,
            ),
            // A job planned before plans moved to pages.
            (None, Some(doc)) => Ok(doc),
            (None, None) => Err(PortError::NotFound(format!("plan of job {id}"))),
        }
    }

    fn revise_plan(&self, lease: &Lease, plan_doc: &str, rungs: u32) -> PortResult<bool> {
        let id = &lease.item.job_id;
        let plan_ref = random_hex();
        let prefix = format!("PLAN#{plan_ref}#");
        let pages = put_pages(self, id, &prefix, plan_doc)?;
        let writes = [
            // Fenced: only the analysis's current holder revises.
            Write {
                key: item_key(&lease.item),
                when: held(lease),
                changes: vec![Change::Set("revised_at", Value::num(now_secs()))],
            },
            Write {
                key: job_key(id),
                when: Cond::All(vec![
                    Cond::Eq("status", st(JobStatus::Encoding)),
                    Cond::Eq("ladder_pending", Value::Bool(true)),
                ]),
                changes: vec![
                    Change::Set("plan_ref", Value::str(&plan_ref)),
                    Change::Set("plan_pages", Value::num(pages)),
                    Change::Set("rungs", Value::num(rungs)),
                    Change::Remove("ladder_pending"),
                ],
            },
        ];
        swap_plan(
            self,
            lease,
            &writes,
            &prefix,
            "ladder_pending",
            "the plan revision",
        )
    }

    fn save_index(
        &self,
        lease: &Lease,
        plan_doc: &str,
        duration_secs: f64,
        frames_total: u64,
        rungs: u32,
        planned_cost_usd: f64,
        items: &[(ItemRef, u64)],
    ) -> PortResult<bool> {
        let id = &lease.item.job_id;
        let plan_ref = random_hex();
        let prefix = format!("PLAN#{plan_ref}#");
        let pages = put_pages(self, id, &prefix, plan_doc)?;
        let made: Vec<&ItemRef> = items
            .iter()
            .map(|(i, _)| i)
            .filter(|i| i.kind != ItemKind::Index)
            .collect();
        // The index item counts too: until it commits, the job is not done.
        let total = made.len() + 1;
        let mut changes = vec![
            Change::Set("plan_ref", Value::str(&plan_ref)),
            Change::Set("plan_pages", Value::num(pages)),
            Change::Set("duration_secs", Value::num(duration_secs)),
            Change::Set("frames_total", Value::num(frames_total as f64)),
            Change::Set("rungs", Value::num(rungs)),
            Change::Set("planned_cost_usd", Value::num(planned_cost_usd)),
            Change::Set("total", Value::num(total as f64)),
            Change::Set("last_index", Value::num((total - 1) as f64)),
            Change::Remove("index_pending"),
        ];
        if made.iter().any(|i| i.kind == ItemKind::Analysis) {
            changes.push(Change::Set("ladder_pending", Value::Bool(true)));
        }
        let writes = [
            // Fenced: only the index item's current holder saves.
            Write {
                key: item_key(&lease.item),
                when: held(lease),
                changes: vec![Change::Set("indexed_at", Value::num(now_secs()))],
            },
            Write {
                key: job_key(id),
                when: Cond::All(vec![
                    Cond::Eq("status", st(JobStatus::Encoding)),
                    Cond::Eq("index_pending", Value::Bool(true)),
                ]),
                changes,
            },
        ];
        swap_plan(
            self,
            lease,
            &writes,
            &prefix,
            "index_pending",
            "saving the index",
        )
    }

    fn create_items(&self, lease: &Lease, items: &[(ItemRef, u64)]) -> PortResult<()> {
        let id = &lease.item.job_id;
        let job = self
            .get(&job_key(id))?
            .ok_or_else(|| PortError::NotFound(id.clone()))?;
        let holder = self.get(&item_key(&lease.item))?;
        if !held(lease).holds(holder.as_ref()) {
            return Err(lease.lost());
        }
        if status_of(&job) != Some(JobStatus::Encoding) {
            return Ok(());
        }
        let (token_floor, attempt_floor) =
            (get_u(&job, "token_floor"), get_u(&job, "attempt_floor"));
        // Put-if-absent, in batches: an item a worker already holds keeps its lease and
        // token.
        let records: Vec<(Key, Fields)> = items
            .iter()
            .filter(|(i, _)| i.kind != ItemKind::Index)
            .map(|(item, frames)| {
                (
                    item_key(item),
                    new_item(*frames, token_floor, attempt_floor),
                )
            })
            .collect();
        self.create_all(&records)
    }

    fn acquire(&self, item: &ItemRef, owner: &str, ttl: Duration) -> PortResult<Acquired> {
        let Some(job) = self.get(&job_key(&item.job_id))? else {
            return Ok(Acquired::Finished);
        };
        if status_of(&job) != Some(JobStatus::Encoding) {
            return Ok(Acquired::Finished);
        }
        if item.kind == ItemKind::Video && get_b(&job, "ladder_pending") {
            return Ok(Acquired::Early);
        }
        // One conditional write (a record's writes are atomic, so of two racing workers
        // one finds the lease live); the item is read only when the write is refused, to
        // say why.
        let now = now_secs();
        let taken = self.update(&Write {
            key: item_key(item),
            when: Cond::All(vec![
                Cond::Eq("done", Value::Bool(false)),
                Cond::Le("lease_until", Value::num(now)),
            ]),
            changes: vec![
                Change::Set("lease_until", Value::num(now + ttl.as_secs_f64())),
                Change::Set("owner", Value::str(owner)),
                Change::Set("leased_at", Value::num(now)),
                Change::Set("frames_done", Value::num(0)),
                Change::Add("token", 1.0),
                Change::Add("attempts", 1.0),
            ],
        })?;
        let Some(r) = taken else {
            return Ok(match self.get(&item_key(item))? {
                None => Acquired::Finished,
                Some(rec) if get_b(&rec, "done") => Acquired::Finished,
                Some(_) => Acquired::HeldByOther,
            });
        };
        // Only the first lease of a job writes the job record: hundreds of workers on one
        // film must not all write one key per acquisition.
        if get_f(&job, "started_at").is_none() {
            self.update(&Write {
                key: job_key(&item.job_id),
                when: Cond::Missing("started_at"),
                changes: vec![Change::Set("started_at", Value::num(now))],
            })?;
        }
        Ok(Acquired::Lease(Lease {
            item: item.clone(),
            token: get_u(&r, "token"),
            attempt: get_u(&r, "attempts") as u32,
            failures: get_u(&r, "failures") as u32,
            interruptions: get_u(&r, "interruptions") as u32,
            job: Some(Box::new(job_record(&job, item.job_id.clone(), &[]))),
        }))
    }

    fn item_state(&self, item: &ItemRef) -> PortResult<Option<ItemState>> {
        Ok(self
            .get(&item_key(item))?
            .map(|r| item_state(&r, now_secs())))
    }

    fn heartbeat(&self, lease: &Lease, ttl: Duration, frames_done: u64) -> PortResult<()> {
        self.update(&Write {
            key: item_key(&lease.item),
            when: held(lease),
            changes: vec![
                Change::Set("lease_until", Value::num(now_secs() + ttl.as_secs_f64())),
                Change::Set("frames_done", Value::num(frames_done as f64)),
            ],
        })?
        .map(|_| ())
        .ok_or_else(|| lease.lost())
    }

    fn release_lease(&self, lease: &Lease, outcome: Release<'_>, secs: f64) -> PortResult<()> {
        let (failed, interrupted, reason) = match outcome {
            Release::Interrupted => (0.0, 1.0, None),
            Release::Failed(r) | Release::Unavailable(r) => (1.0, 0.0, Some(r)),
        };
        let mut changes = vec![
            Change::Set("lease_until", Value::num(0)),
            Change::Set("frames_done", Value::num(0)),
            Change::Add("failures", failed),
            Change::Add("interruptions", interrupted),
            Change::Add("wasted_secs", secs),
        ];
        if let Some(r) = reason {
            changes.push(Change::Set("last_error", Value::str(r)));
            changes.push(Change::Set(
                "last_error_transient",
                Value::Bool(matches!(outcome, Release::Unavailable(_))),
            ));
        }
        self.update(&Write {
            key: item_key(&lease.item),
            when: held(lease),
            changes,
        })?
        .map(|_| ())
        .ok_or_else(|| lease.lost())
    }

    fn commit(&self, lease: &Lease, result_doc: &str, secs: f64) -> PortResult<Completion> {
        let now = now_secs();
        let job_id = &lease.item.job_id;
        // A result too large for one record goes to pages under this attempt first; only
        // the commit below makes them count (a lost commit leaves pages nobody reads).
        let doc = if result_doc.len() > PAGE_BYTES {
            let prefix = format!("RESULT#{}#{:06}#", item_sk(&lease.item), lease.attempt);
            let pages = put_pages(self, job_id, &prefix, result_doc)?;
            [
                Change::Set("result_pages", Value::num(pages)),
                Change::Remove("result_doc"),
            ]
        } else {
            [
                Change::Set("result_doc", Value::str(result_doc)),
                Change::Remove("result_pages"),
            ]
        };
        let mut changes = vec![
            Change::Set("done", Value::Bool(true)),
            Change::Set("committed_attempt", Value::num(lease.attempt)),
            Change::Set("done_at", Value::num(now)),
            Change::Copy("frames_done", "frames"),
            Change::Set("lease_until", Value::num(0)),
            Change::Set("expires_at", Value::num((now + ITEM_TTL_SECS).floor())),
            Change::Add("encode_secs", secs),
        ];
        changes.extend(doc);
        let item_write = Write {
            key: item_key(&lease.item),
            when: held(lease),
            changes,
        };
        let encoding = || Cond::Eq("status", st(JobStatus::Encoding));
        // The job's counter and, for the last item, the move to STITCHING go in the same
        // transaction as the item. The first round assumes the common case, not the last
        // item; every later round guesses from a read of the job and makes the write
        // conditional on the guess; a commit of another item in between fails the
        // condition, and the next round reads again.
        let mut counts: Option<(u64, u64, Option<JobStatus>)> = None;
        for _ in 0..COMMIT_ROUNDS {
            let count = Change::Add("done", 1.0);
            let progress = Change::Set("progress_at", Value::num(now));
            let (when, changes, last) = match counts {
                None => (
                    Cond::All(vec![encoding(), Cond::LtAttr("done", "last_index")]),
                    vec![count, progress],
                    false,
                ),
                Some((done, total, Some(JobStatus::Encoding))) => {
                    let when =
                        Cond::All(vec![encoding(), Cond::Eq("done", Value::num(done as f64))]);
                    if done + 1 >= total {
                        let to = vec![
                            count,
                            progress,
                            entering(Transition::Complete),
                            Change::Set("stitch_started_at", Value::num(now)),
                        ];
                        (when, to, true)
                    } else {
                        (when, vec![count, progress], false)
                    }
                }
                // The job failed or moved on: the item still counts, nothing else moves.
                Some(_) => (
                    Cond::Ne("status", st(JobStatus::Encoding)),
                    vec![count],
                    false,
                ),
            };
            let job_write = Write {
                key: job_key(job_id),
                when,
                changes,
            };
            if self.transact(&[item_write.clone(), job_write])? {
                return Ok(if last {
                    Completion::Last
                } else {
                    Completion::More
                });
            }
            // Refused: the item's condition (done already, or a stale token) or the job's
            // (another item committed since the read).
            // An item that is gone belonged to a plan a reset threw away: the lease is lost.
            let rec = self
                .get(&item_key(&lease.item))?
                .ok_or_else(|| lease.lost())?;
            if get_b(&rec, "done") {
                return Ok(Completion::AlreadyDone);
            }
            if get_u(&rec, "token") != lease.token {
                return Err(PortError::Conflict(format!(
                    "stale fencing token {} for {} of job {job_id}",
                    lease.token,
                    lease.item.describe(),
                )));
            }
            // After a first guess that missed (the last item, most often) the next round
            // reads at once; after that, many workers finish one job together: spread out.
            if counts.is_some() {
                std::thread::sleep(Duration::from_millis(5 + u64::from(random_byte()) / 4));
            }
            let job = self
                .get(&job_key(job_id))?
                .ok_or_else(|| PortError::NotFound(job_id.clone()))?;
            counts = Some((get_u(&job, "done"), get_u(&job, "total"), status_of(&job)));
        }
        Err(PortError::Backend(format!(
            "committing {} of job {job_id}: the job's counter kept moving for {COMMIT_ROUNDS} rounds",
            lease.item.describe()
        )))
    }

    fn results(&self, id: &str) -> PortResult<Vec<(ItemRef, u32, String)>> {
        let mut out = Vec::new();
        for (sk, r) in self.query(&job_pk(id), "ITEM#")? {
            let Some(item) = item_from_sk(id, &sk) else {
                continue;
            };
            if !get_b(&r, "done") {
                continue;
            }
            let attempt = get_u(&r, "committed_attempt") as u32;
            let doc = match (get_s(&r, "result_doc"), get_f(&r, "result_pages")) {
                (Some(doc), _) => doc,
                (None, Some(pages)) => read_pages(
                    self,
                    id,
                    &format!("RESULT#{sk}#{attempt:06}#"),
                    pages as u32,
                )?,
                (None, None) => continue,
            };
            out.push((item, attempt, doc));
        }
        out.sort_by_key(|(i, _, _)| (i.kind == ItemKind::Audio, i.index));
        Ok(out)
    }

    fn publish(
        &self,
        id: &str,
        master_key: &str,
        dash_key: &str,
        renditions: &[crate::domain::Rendition],
    ) -> PortResult<bool> {
        let renditions = serde_json::to_string(renditions)
            .map_err(|e| PortError::Backend(format!("renditions: {e}")))?;
        Ok(self
            .update(&Write {
                key: job_key(id),
                when: leaving(Transition::Publish),
                changes: vec![
                    entering(Transition::Publish),
                    Change::Set("master_key", Value::str(master_key)),
                    Change::Set("dash_key", Value::str(dash_key)),
                    Change::Set("renditions", Value::str(renditions)),
                    Change::Set("finished_at", Value::num(now_secs())),
                    Change::Add("stitch_count", 1.0),
                ],
            })?
            .is_some())
    }

    fn items(&self, id: &str) -> PortResult<Vec<(ItemRef, ItemState)>> {
        let now = now_secs();
        let mut out: Vec<(ItemRef, ItemState)> = self
            .query(&job_pk(id), "ITEM#")?
            .iter()
            .filter_map(|(sk, r)| Some((item_from_sk(id, sk)?, item_state(r, now))))
            .collect();
        out.sort_by_key(|(i, _)| {
            let rank = match i.kind {
                ItemKind::Index => 0,
                ItemKind::Analysis => 1,
                ItemKind::Video => 2,
                ItemKind::Audio => 3,
                ItemKind::Text => 4,
            };
            (rank, i.index)
        });
        Ok(out)
    }
}

/// A new item's record: free, never leased, its fencing token and attempts starting at the
/// job's floors (above everything a reset plan handed out).
fn new_item(frames: u64, token_floor: u64, attempt_floor: u64) -> Fields {
    let mut rec = fields(vec![
        ("frames", Value::num(frames as f64)),
        ("done", Value::Bool(false)),
        ("token", Value::num(token_floor as f64)),
        ("attempts", Value::num(attempt_floor as f64)),
    ]);
    for k in [
        "frames_done",
        "lease_until",
        "failures",
        "interruptions",
        "encode_secs",
        "wasted_secs",
    ] {
        rec.insert(k.into(), Value::num(0));
    }
    rec
}

/// The item is still held under the lease's token and not done: what every write by a
/// lease holder requires.
fn held(lease: &Lease) -> Cond {
    Cond::All(vec![
        Cond::Eq("token", Value::num(lease.token as f64)),
        Cond::Eq("done", Value::Bool(false)),
    ])
}
