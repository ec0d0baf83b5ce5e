//! The job store on DynamoDB: one table, jobs and their items side by side.
//!
//! Keys: a job is `pk = JOB#<id>, sk = JOB`; its items are `sk = ITEM#<kind>#<index>`.
//! A global secondary index on (`status`, `created_at`) answers "jobs in state S" and one on
//! (`source`, `created_at`) answers "jobs for this file": queries, never scans. Every
//! change that must not race is a conditional write: create-if-absent, leases that bump a
//! fencing token, heartbeats and releases that require the current token. Committing an
//! item is one transaction: the item done under its token, and the job's counter, which
//! the last committer moves to STITCHING in the same write (conditional on the count), so
//! no crash or throttle can leave a job with every item done and still ENCODING.
//!
//! Large documents (the plan of a feature-length source, an audio track's segment table)
//! never live in the job item or an item record: they are split into page records
//! (`sk = PLAN#<plan id>#<page>`, `RESULT#<item>#<attempt>#<page>`) of at most
//! [`PAGE_BYTES`], so every record stays far below DynamoDB's 400 KB item limit at any
//! length the input policy allows, and the job item a worker reads per item stays small.
//! Finished items carry a TTL attribute so they expire after the job is done.

use crate::backend;
use crate::config::Bridge;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use std::time::Duration;
use vodpipe_core::job::JobStatus;
use vodpipe_core::ports::{
    Acquired, Completion, ItemKind, ItemRef, ItemState, JobRecord, JobStore, Lease, PortError,
    PortResult, Release, Tier,
};
use vodpipe_core::process::now_secs;

/// Name of the index by state.
pub const STATUS_INDEX: &str = "by-status";
/// Name of the index by source.
pub const SOURCE_INDEX: &str = "by-source";
/// How long finished item records are kept.
const ITEM_TTL_SECS: f64 = 30.0 * 86400.0;
/// The most of a document one record carries. DynamoDB refuses items over 400 KB and bills
/// by the KB; a longer document is stored as several page records of this size.
pub const PAGE_BYTES: usize = 48 * 1024;
/// How often a commit retries its transaction when other commits of the same job win the
/// race for the job's counter first.
const COMMIT_ROUNDS: u32 = 16;

/// An item's size as DynamoDB counts it toward its 400 KB limit: attribute names plus
/// values, numbers at about a byte per two digits. Tests and the load report check every
/// record against a bound with it.
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::N(n) => n.len() / 2 + 1,
                    AttributeValue::B(b) => b.as_ref().len(),
                    _ => 1,
                }
        })
        .sum()
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

/// A random byte (for jitter); zero if the system has no randomness to give.
fn getrandom_byte() -> u8 {
    let mut b = [0u8; 1];
    getrandom::getrandom(&mut b).map_or(0, |_| b[0])
}

/// A random id for one saved plan, so two ingests planning the same job concurrently never
/// mix their pages: only the one whose plan is recorded on the job is ever read.
fn plan_nonce() -> PortResult<String> {
    let mut raw = [0u8; 8];
    getrandom::getrandom(&mut raw).map_err(|e| backend("plan id", e))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

type Attrs = HashMap<String, AttributeValue>;

/// A worker task ECS stopped with `stopCode: SpotInterruption`.
#[derive(Debug, Clone, PartialEq)]
pub struct Interruption {
    /// The stopped task.
    pub task_arn: String,
    /// The tier it served (from its `startedBy` tag), or empty when unknown.
    pub tier: String,
    /// ECS's `stoppedReason`.
    pub reason: String,
    /// When it was recorded (Unix seconds).
    pub at: f64,
}

/// The DynamoDB job store.
pub struct DynamoJobs {
    client: Client,
    table: String,
    bridge: std::sync::Arc<Bridge>,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn job_key(id: &str) -> Attrs {
    HashMap::from([
        ("pk".to_string(), s(format!("JOB#{id}"))),
        ("sk".to_string(), s("JOB")),
    ])
}

fn item_sk(item: &ItemRef) -> String {
    format!("ITEM#{}#{:06}", item.kind.as_str(), item.index)
}

fn item_key(item: &ItemRef) -> Attrs {
    HashMap::from([
        ("pk".to_string(), s(format!("JOB#{}", item.job_id))),
        ("sk".to_string(), s(item_sk(item))),
    ])
}

fn get_s(a: &Attrs, k: &str) -> Option<String> {
    a.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn get_f(a: &Attrs, k: &str) -> Option<f64> {
    a.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn get_u(a: &Attrs, k: &str) -> u64 {
    get_f(a, k).unwrap_or(0.0).max(0.0) as u64
}

fn get_b(a: &Attrs, k: &str) -> bool {
    a.get(k)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}

fn is_condition_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(
    e: &aws_sdk_dynamodb::error::SdkError<E>,
) -> bool {
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

fn item_ref(job_id: &str, a: &Attrs) -> Option<ItemRef> {
    let sk = get_s(a, "sk")?;
    let mut parts = sk.splitn(3, '#');
    let (_, kind, index) = (parts.next()?, parts.next()?, parts.next()?);
    Some(ItemRef {
        job_id: job_id.to_string(),
        kind: ItemKind::parse(kind)?,
        index: index.parse().ok()?,
    })
}

fn item_state(a: &Attrs, now: f64) -> ItemState {
    ItemState {
        done: get_b(a, "done"),
        attempts: get_u(a, "attempts") as u32,
        failures: get_u(a, "failures") as u32,
        interruptions: get_u(a, "interruptions") as u32,
        last_error: get_s(a, "last_error"),
        leased: get_f(a, "lease_until").unwrap_or(0.0) > now,
    }
}

impl DynamoJobs {
    /// The store over `table`.
    pub fn new(bridge: std::sync::Arc<Bridge>, sdk: &aws_config::SdkConfig, table: &str) -> Self {
        DynamoJobs {
            client: Client::new(sdk),
            table: table.to_string(),
            bridge,
        }
    }

    fn get(&self, key: Attrs) -> PortResult<Option<Attrs>> {
        let out = self
            .bridge
            .run(
                self.client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(key))
                    .consistent_read(true)
                    .send(),
            )
            .map_err(|e| backend("dynamodb get", e))?;
        Ok(out.item().cloned())
    }

    /// Every page of a query; `query` builds the request without its start key.
    fn query_all(
        &self,
        query: impl Fn() -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> PortResult<Vec<Attrs>> {
        let mut out = Vec::new();
        let mut start: Option<Attrs> = None;
        loop {
            let page = self
                .bridge
                .run(query().set_exclusive_start_key(start.take()).send())
                .map_err(|e| backend("dynamodb query", e))?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Records that the fleet lost a task to a Spot interruption, once per task however
    /// often EventBridge delivers the event. True when this call recorded it. The record
    /// lives beside the jobs (`pk = FLEET`) and expires with the same TTL as they do.
    pub fn record_interruption(&self, i: &Interruption) -> PortResult<bool> {
        let item: Attrs = HashMap::from([
            ("pk".to_string(), s("FLEET")),
            ("sk".to_string(), s(format!("INTERRUPTION#{}", i.task_arn))),
            ("task_arn".to_string(), s(&i.task_arn)),
            ("tier".to_string(), s(&i.tier)),
            ("reason".to_string(), s(&i.reason)),
            ("at".to_string(), n(i.at)),
            ("expires_at".to_string(), n((i.at + ITEM_TTL_SECS) as u64)),
        ]);
        self.put_if_absent(item, "dynamodb record interruption")
    }

    /// Every recorded Spot interruption (for `status` views, dashboards and tests).
    pub fn interruptions(&self) -> PortResult<Vec<Interruption>> {
        let rows = self.query_all(|| {
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :i)")
                .expression_attribute_values(":pk", s("FLEET"))
                .expression_attribute_values(":i", s("INTERRUPTION#"))
        })?;
        Ok(rows
            .iter()
            .map(|a| Interruption {
                task_arn: get_s(a, "task_arn").unwrap_or_default(),
                tier: get_s(a, "tier").unwrap_or_default(),
                reason: get_s(a, "reason").unwrap_or_default(),
                at: get_f(a, "at").unwrap_or(0.0),
            })
            .collect())
    }

    /// The largest record in the table, with its sort key. A full scan: for tests and the
    /// load report, never for the pipeline.
    pub fn largest_record(&self) -> PortResult<(usize, String)> {
        let mut largest = (0, String::new());
        let mut start: Option<Attrs> = None;
        loop {
            let page = self
                .bridge
                .run(
                    self.client
                        .scan()
                        .table_name(&self.table)
                        .set_exclusive_start_key(start.take())
                        .send(),
                )
                .map_err(|e| backend("dynamodb scan", e))?;
            for item in page.items() {
                let size = item_size(item);
                if size > largest.0 {
                    largest = (size, get_s(item, "sk").unwrap_or_default());
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(largest),
            }
        }
    }

    /// Writes `item` unless its key exists; true when this call wrote it.
    fn put_if_absent(&self, item: Attrs, what: &str) -> PortResult<bool> {
        match self.bridge.run(
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .send(),
        ) {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(backend(what, e)),
        }
    }

    /// Every item record of a job.
    fn item_records(&self, id: &str) -> PortResult<Vec<Attrs>> {
        self.prefixed(id, "ITEM#")
    }

    /// Every record of job `id` whose sort key starts with `prefix`, in sort-key order
    /// (a consistent query of the job's partition).
    fn prefixed(&self, id: &str, prefix: &str) -> PortResult<Vec<Attrs>> {
        self.query_all(|| {
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                .expression_attribute_values(":pk", s(format!("JOB#{id}")))
                .expression_attribute_values(":p", s(prefix))
                .consistent_read(true)
        })
    }

    /// Deletes `records` (by their keys).
    fn delete_records(&self, records: &[Attrs]) -> PortResult<()> {
        for r in records {
            let key: Attrs = [("pk", r.get("pk")), ("sk", r.get("sk"))]
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_string(), v?.clone())))
                .collect();
            self.bridge
                .run(
                    self.client
                        .delete_item()
                        .table_name(&self.table)
                        .set_key(Some(key))
                        .send(),
                )
                .map_err(|e| backend("dynamodb delete", e))?;
        }
        Ok(())
    }

    fn record(&self, a: &Attrs) -> PortResult<JobRecord> {
        let id =
            get_s(a, "id").ok_or_else(|| PortError::Backend("job record without id".into()))?;
        let items = self.item_records(&id)?;
        record_with(a, id, &items)
    }

    /// Writes `doc` as page records `<prefix>0000`, `<prefix>0001` … under job `id`;
    /// returns how many. Pages expire with the job's items.
    fn put_pages(&self, id: &str, prefix: &str, doc: &str) -> PortResult<u32> {
        let expires = (now_secs() + ITEM_TTL_SECS) as u64;
        let pages = split_pages(doc);
        for (i, page) in pages.iter().enumerate() {
            let rec: Attrs = HashMap::from([
                ("pk".to_string(), s(format!("JOB#{id}"))),
                ("sk".to_string(), s(format!("{prefix}{i:04}"))),
                ("doc".to_string(), s(*page)),
                ("expires_at".to_string(), n(expires)),
            ]);
            self.bridge
                .run(
                    self.client
                        .put_item()
                        .table_name(&self.table)
                        .set_item(Some(rec))
                        .send(),
                )
                .map_err(|e| backend("dynamodb put page", e))?;
        }
        Ok(pages.len() as u32)
    }

    /// The document written by [`Self::put_pages`], whole; an error if a page is missing.
    fn read_pages(&self, id: &str, prefix: &str, count: u32) -> PortResult<String> {
        let rows = self.prefixed(id, prefix)?;
        if rows.len() != count as usize {
            return Err(PortError::Backend(format!(
                "job {id}: document {prefix} has {} of its {count} pages",
                rows.len()
            )));
        }
        // A query returns its rows in sort-key order: the pages in order.
        Ok(rows.iter().filter_map(|r| get_s(r, "doc")).collect())
    }

    /// The job item's counters and state, read for a commit (a small projection).
    fn job_counts(&self, id: &str) -> PortResult<(u64, u64, String)> {
        let out = self
            .bridge
            .run(
                self.client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(job_key(id)))
                    .consistent_read(true)
                    .projection_expression("#d, #t, #s")
                    .expression_attribute_names("#d", "done")
                    .expression_attribute_names("#t", "total")
                    .expression_attribute_names("#s", "status")
                    .send(),
            )
            .map_err(|e| backend("dynamodb get", e))?;
        let a = out
            .item()
            .ok_or_else(|| PortError::NotFound(id.to_string()))?;
        Ok((
            get_u(a, "done"),
            get_u(a, "total"),
            get_s(a, "status").unwrap_or_default(),
        ))
    }
}

/// A job record from its item and its item records (none for a brief record, whose sums
/// are left at zero).
fn record_with(a: &Attrs, id: String, items: &[Attrs]) -> PortResult<JobRecord> {
    let sum = |k: &str| {
        items
            .iter()
            .map(|i| get_f(i, k).unwrap_or(0.0))
            .sum::<f64>()
    };
    let frames_done: u64 = items
        .iter()
        .filter(|i| get_s(i, "sk").is_some_and(|sk| sk.starts_with("ITEM#video")))
        .map(|i| get_u(i, "frames_done"))
        .sum();
    Ok(JobRecord {
        source: get_s(a, "source").unwrap_or_default(),
        asset: get_s(a, "asset").unwrap_or_default(),
        tier: get_s(a, "tier")
            .and_then(|t| Tier::parse(&t))
            .unwrap_or(Tier::Standard),
        status: get_s(a, "status")
            .and_then(|t| JobStatus::parse(&t))
            .unwrap_or(JobStatus::Failed),
        error: get_s(a, "error"),
        done: get_u(a, "done") as u32,
        total: get_u(a, "total") as u32,
        frames_done,
        frames_total: get_u(a, "frames_total"),
        duration_secs: get_f(a, "duration_secs").unwrap_or(0.0),
        rungs: get_u(a, "rungs") as u32,
        attempts: sum("attempts") as u32,
        failures: sum("failures") as u32,
        interruptions: sum("interruptions") as u32,
        encode_secs: sum("encode_secs"),
        wasted_secs: sum("wasted_secs"),
        created_at: get_f(a, "created_at").unwrap_or(0.0),
        queued_at: get_f(a, "queued_at"),
        started_at: get_f(a, "started_at"),
        stitch_started_at: get_f(a, "stitch_started_at"),
        finished_at: get_f(a, "finished_at"),
        stitch_count: get_u(a, "stitch_count") as u32,
        master_key: get_s(a, "master_key"),
        settings: get_s(a, "settings").and_then(|doc| serde_json::from_str(&doc).ok()),
        dash_key: get_s(a, "dash_key"),
        plan_id: get_s(a, "plan_ref"),
        id,
    })
}

impl DynamoJobs {
    fn query_index(
        &self,
        index: &str,
        key: &str,
        value: &str,
        newest_first: bool,
    ) -> PortResult<Vec<JobRecord>> {
        let keys = self.query_all(|| {
            self.client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression("#k = :v")
                .expression_attribute_names("#k", key)
                .expression_attribute_values(":v", s(value))
                .scan_index_forward(!newest_first)
        })?;
        let mut jobs = Vec::with_capacity(keys.len());
        for a in &keys {
            // The index projects keys only (and is eventually consistent): read the job
            // itself; its id is in the partition key.
            if let Some(id) =
                get_s(a, "pk").and_then(|pk| pk.strip_prefix("JOB#").map(str::to_string))
            {
                if let Some(j) = self.job(&id)? {
                    jobs.push(j);
                }
            }
        }
        Ok(jobs)
    }

    /// An update of one record, conditional; returns false when the condition failed.
    fn update(
        &self,
        key: Attrs,
        set: &str,
        cond: Option<&str>,
        values: Vec<(&str, AttributeValue)>,
    ) -> PortResult<bool> {
        let (set, cond, names) = aliased_update(set, cond.unwrap_or(""));
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(set)
            .set_expression_attribute_names(Some(names));
        if !cond.is_empty() {
            req = req.condition_expression(cond);
        }
        for (k, v) in values {
            req = req.expression_attribute_values(k, v);
        }
        match self.bridge.run(req.send()) {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(backend("dynamodb update", e)),
        }
    }
}

/// Expressions name attributes as `@name`; this turns each into an alias `#name` (so no
/// attribute can clash with DynamoDB's long list of reserved words) and lists the aliases.
fn aliased(expr: &str) -> (String, Vec<(String, String)>) {
    let mut names: Vec<(String, String)> = Vec::new();
    let mut out = String::with_capacity(expr.len());
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '@' {
            out.push(c);
            continue;
        }
        let mut name = String::new();
        while let Some(&d) = chars.peek() {
            if d.is_ascii_alphanumeric() || d == '_' {
                name.push(d);
                chars.next();
            } else {
                break;
            }
        }
        out.push('#');
        out.push_str(&name);
        if !names.iter().any(|(a, _)| a == &format!("#{name}")) {
            names.push((format!("#{name}"), name));
        }
    }
    (out, names)
}

/// An update and its condition with every `@name` aliased, and the alias map for both.
fn aliased_update(set: &str, cond: &str) -> (String, String, HashMap<String, String>) {
    let (set, mut names) = aliased(set);
    let (cond, more) = aliased(cond);
    names.extend(more);
    (set, cond, names.into_iter().collect())
}

fn statuses_condition(from: &[JobStatus]) -> (String, Vec<(String, AttributeValue)>) {
    let names: Vec<String> = (0..from.len()).map(|i| format!(":from{i}")).collect();
    let values = from
        .iter()
        .zip(&names)
        .map(|(st, k)| (k.clone(), s(st.as_str())))
        .collect();
    (format!("@status IN ({})", names.join(", ")), values)
}

impl JobStore for DynamoJobs {
    fn create_job(
        &self,
        id: &str,
        source: &str,
        asset: &str,
        tier: Tier,
        settings: &vodpipe_core::settings::JobSettings,
    ) -> PortResult<(JobRecord, bool)> {
        let mut item = job_key(id);
        item.insert("id".into(), s(id));
        item.insert("source".into(), s(source));
        item.insert("asset".into(), s(asset));
        item.insert("tier".into(), s(tier.as_str()));
        item.insert(
            "settings".into(),
            s(&serde_json::to_string(settings)
                .map_err(|e| PortError::Backend(format!("job settings: {e}")))?),
        );
        item.insert("status".into(), s(JobStatus::Queued.as_str()));
        item.insert("created_at".into(), n(now_secs()));
        // A nonce identifies this call's write: if the SDK retries a put whose first try
        // landed, the retry fails its condition, and the nonce tells us the job is ours.
        let nonce = format!(
            "{}-{:?}-{}",
            std::process::id(),
            std::thread::current().id(),
            now_secs()
        );
        item.insert("creator".into(), s(&nonce));
        for k in [
            "done",
            "total",
            "token_floor",
            "attempt_floor",
            "stitch_count",
        ] {
            item.insert(k.into(), n(0));
        }
        let created = self.put_if_absent(item, "dynamodb create job")?;
        let created = created
            || self
                .get(job_key(id))?
                .and_then(|a| get_s(&a, "creator"))
                .as_deref()
                == Some(nonce.as_str());
        let job = self
            .job(id)?
            .ok_or_else(|| PortError::NotFound(id.into()))?;
        Ok((job, created))
    }

    fn job(&self, id: &str) -> PortResult<Option<JobRecord>> {
        match self.get(job_key(id))? {
            Some(a) => Ok(Some(self.record(&a)?)),
            None => Ok(None),
        }
    }

    fn job_brief(&self, id: &str) -> PortResult<Option<JobRecord>> {
        self.get(job_key(id))?
            .map(|a| record_with(&a, id.to_string(), &[]))
            .transpose()
    }

    fn jobs_by_source(&self, source: &str) -> PortResult<Vec<JobRecord>> {
        self.query_index(SOURCE_INDEX, "source", source, true)
    }

    fn jobs_by_status(&self, status: Option<JobStatus>) -> PortResult<Vec<JobRecord>> {
        match status {
            Some(st) => self.query_index(STATUS_INDEX, "status", st.as_str(), false),
            None => {
                let mut all = Vec::new();
                for st in JobStatus::ALL {
                    all.extend(self.query_index(STATUS_INDEX, "status", st.as_str(), false)?);
                }
                all.sort_by(|a, b| a.created_at.total_cmp(&b.created_at));
                Ok(all)
            }
        }
    }

    fn transition(
        &self,
        id: &str,
        from: &[JobStatus],
        to: JobStatus,
        error: Option<&str>,
    ) -> PortResult<bool> {
        let (cond, values) = statuses_condition(from);
        let mut set = "SET @status = :to".to_string();
        let mut vals: Vec<(&str, AttributeValue)> = values
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        vals.push((":to", s(to.as_str())));
        if let Some(e) = error {
            set.push_str(", @error = :err");
            vals.push((":err", s(e)));
        }
        if to.is_final() {
            set.push_str(", @finished_at = :now");
            vals.push((":now", n(now_secs())));
        }
        if to == JobStatus::Probing {
            set.push_str(", @probing_since = :since");
            vals.push((":since", n(now_secs())));
        }
        let moved = self.update(
            job_key(id),
            &set,
            Some(&format!("attribute_exists(pk) AND {cond}")),
            vals,
        )?;
        if !moved && self.get(job_key(id))?.is_none() {
            return Err(PortError::NotFound(id.into()));
        }
        Ok(moved)
    }

    fn claim_asset(&self, asset: &str, source: &str) -> PortResult<String> {
        let key: Attrs = HashMap::from([
            ("pk".to_string(), s(format!("ASSET#{asset}"))),
            ("sk".to_string(), s("ASSET")),
        ]);
        let mut item = key.clone();
        item.insert("source".into(), s(source));
        item.insert("created_at".into(), n(now_secs()));
        self.put_if_absent(item, "dynamodb claim asset")?;
        self.get(key)?
            .and_then(|a| get_s(&a, "source"))
            .ok_or_else(|| PortError::Backend(format!("asset {asset} claimed by nobody")))
    }

    fn claim_probe(&self, id: &str, stale_secs: f64) -> PortResult<bool> {
        let now = now_secs();
        self.update(
            job_key(id),
            "SET @probing_since = :now",
            Some("@status = :probing AND (@probing_since < :cut OR (attribute_not_exists(@probing_since) AND @created_at < :cut))"),
            vec![
                (":now", n(now)),
                (":cut", n(now - stale_secs)),
                (":probing", s(JobStatus::Probing.as_str())),
            ],
        )
    }

    fn reset_failed(&self, id: &str) -> PortResult<bool> {
        let items = self.item_records(id)?;
        let token_floor = items.iter().map(|i| get_u(i, "token")).max().unwrap_or(0) + 1;
        let attempt_floor = items
            .iter()
            .map(|i| get_u(i, "attempts"))
            .max()
            .unwrap_or(0);
        let job = self.get(job_key(id))?;
        let old_token_floor = job.as_ref().map_or(0, |j| get_u(j, "token_floor"));
        let old_attempt_floor = job.as_ref().map_or(0, |j| get_u(j, "attempt_floor"));
        let reset = self.update(
            job_key(id),
            "SET @status = :queued, @done = :zero, @total = :zero, @token_floor = :tf, @attempt_floor = :af REMOVE @error, @plan_doc, @plan_ref, @plan_pages, @queued_at, @started_at, @stitch_started_at, @finished_at, @master_key, @dash_key",
            Some("@status = :failed"),
            vec![
                (":queued", s(JobStatus::Queued.as_str())),
                (":failed", s(JobStatus::Failed.as_str())),
                (":zero", n(0)),
                (":tf", n(token_floor.max(old_token_floor))),
                (":af", n(attempt_floor.max(old_attempt_floor))),
            ],
        )?;
        if reset {
            self.delete_records(&items)?;
            self.delete_records(&self.prefixed(id, "PLAN#")?)?;
            self.delete_records(&self.prefixed(id, "RESULT#")?)?;
        }
        Ok(reset)
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
        let job = self
            .get(job_key(id))?
            .ok_or_else(|| PortError::NotFound(id.into()))?;
        if get_s(&job, "status").as_deref() != Some(JobStatus::Probing.as_str()) {
            return Ok(false);
        }
        // Items and plan pages first, then the job: an ingest that dies in between leaves
        // the job in PROBING, which the next ingest takes over and plans again. Items are
        // created only where absent, so a second planner racing the first can never reset
        // an item a worker already holds; its plan pages, under their own id, are read only
        // if its write of the job wins.
        let (token_floor, attempt_floor) =
            (get_u(&job, "token_floor"), get_u(&job, "attempt_floor"));
        let plan_ref = plan_nonce()?;
        let plan_pages = self.put_pages(id, &format!("PLAN#{plan_ref}#"), plan_doc)?;
        for (item, frames) in items {
            let mut rec = item_key(item);
            rec.insert("frames".into(), n(*frames));
            rec.insert("frames_done".into(), n(0));
            rec.insert("done".into(), AttributeValue::Bool(false));
            rec.insert("lease_until".into(), n(0));
            rec.insert("token".into(), n(token_floor));
            rec.insert("attempts".into(), n(attempt_floor));
            for k in ["failures", "interruptions", "encode_secs", "wasted_secs"] {
                rec.insert(k.into(), n(0));
            }
            self.put_if_absent(rec, "dynamodb put item")?;
        }
        self.update(
            job_key(id),
            "SET @status = :enc, @plan_ref = :pref, @plan_pages = :pages, @duration_secs = :dur, @frames_total = :ft, @rungs = :r, @total = :total, @last_index = :last REMOVE @plan_doc, @queued_at",
            Some("@status = :probing"),
            vec![
                (":enc", s(JobStatus::Encoding.as_str())),
                (":probing", s(JobStatus::Probing.as_str())),
                (":pref", s(&plan_ref)),
                (":pages", n(plan_pages)),
                (":dur", n(duration_secs)),
                (":ft", n(frames_total)),
                (":r", n(rungs)),
                (":total", n(items.len())),
                // What a commit compares `done` with to know, without reading the job,
                // that it is not the last.
                (":last", n(items.len().saturating_sub(1))),
            ],
        )
    }

    fn all_queued(&self, id: &str) -> PortResult<()> {
        self.update(
            job_key(id),
            "SET @queued_at = if_not_exists(@queued_at, :now)",
            Some("attribute_exists(@pk)"),
            vec![(":now", n(now_secs()))],
        )?;
        Ok(())
    }

    fn plan_doc(&self, id: &str) -> PortResult<String> {
        let job = self
            .get(job_key(id))?
            .ok_or_else(|| PortError::NotFound(format!("plan of job {id}")))?;
        match (get_s(&job, "plan_ref"), get_s(&job, "plan_doc")) {
            (Some(plan_ref), _) => self.read_pages(
                id,
                &format!("PLAN#{plan_ref}#"),
                get_u(&job, "plan_pages") as u32,
            ),
            // A job planned before plans moved to pages.
            (None, Some(doc)) => Ok(doc),
            (None, None) => Err(PortError::NotFound(format!("plan of job {id}"))),
        }
    }

    fn acquire(&self, item: &ItemRef, owner: &str, ttl: Duration) -> PortResult<Acquired> {
        let Some(job) = self.get(job_key(&item.job_id))? else {
            return Ok(Acquired::Finished);
        };
        if get_s(&job, "status").as_deref() != Some(JobStatus::Encoding.as_str()) {
            return Ok(Acquired::Finished);
        }
        // The lease is taken by one conditional write (a single item's writes are atomic,
        // so of two racing workers one finds the lease live); the item is read only when
        // the write is refused, to say why.
        let now = now_secs();
        let (set, cond, names) = aliased_update(
            "SET @lease_until = :until, @owner = :owner, @frames_done = :zero ADD @token :one, @attempts :one",
            "attribute_exists(@pk) AND @done = :false AND @lease_until <= :now",
        );
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(item)))
            .update_expression(set)
            .condition_expression(cond)
            .set_expression_attribute_names(Some(names))
            .expression_attribute_values(":until", n(now + ttl.as_secs_f64()))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":now", n(now));
        req = req.return_values(ReturnValue::AllNew);
        let out = match self.bridge.run(req.send()) {
            Ok(o) => o,
            Err(e) if is_condition_failed(&e) => {
                return Ok(match self.get(item_key(item))? {
                    None => Acquired::Finished,
                    Some(rec) if get_b(&rec, "done") => Acquired::Finished,
                    Some(_) => Acquired::HeldByOther,
                })
            }
            Err(e) => return Err(backend("dynamodb acquire", e)),
        };
        let a = out.attributes().cloned().unwrap_or_default();
        // Only the first lease of a job writes the job item: hundreds of workers on one
        // film must not all write one key per acquisition.
        if get_f(&job, "started_at").is_none() {
            self.update(
                job_key(&item.job_id),
                "SET @started_at = :now",
                Some("attribute_not_exists(@started_at)"),
                vec![(":now", n(now))],
            )?;
        }
        Ok(Acquired::Lease(Lease {
            item: item.clone(),
            token: get_u(&a, "token"),
            attempt: get_u(&a, "attempts") as u32,
            failures: get_u(&a, "failures") as u32,
            interruptions: get_u(&a, "interruptions") as u32,
        }))
    }

    fn item_state(&self, item: &ItemRef) -> PortResult<Option<ItemState>> {
        Ok(self
            .get(item_key(item))?
            .map(|a| item_state(&a, now_secs())))
    }

    fn heartbeat(&self, lease: &Lease, ttl: Duration, frames_done: u64) -> PortResult<()> {
        let ok = self.update(
            item_key(&lease.item),
            "SET @lease_until = :until, @frames_done = :fd",
            Some("@token = :t AND @done = :false"),
            vec![
                (":until", n(now_secs() + ttl.as_secs_f64())),
                (":fd", n(frames_done)),
                (":t", n(lease.token)),
                (":false", AttributeValue::Bool(false)),
            ],
        )?;
        if !ok {
            return Err(lease.lost());
        }
        Ok(())
    }

    fn release_lease(&self, lease: &Lease, outcome: Release<'_>, secs: f64) -> PortResult<()> {
        let (failed, interrupted, reason) = match outcome {
            Release::Interrupted => (0, 1, None),
            Release::Failed(r) => (1, 0, Some(r)),
        };
        let mut set = "SET @lease_until = :zero, @frames_done = :zero REMOVE @owner ADD @failures :f, @interruptions :i, @wasted_secs :w".to_string();
        let mut vals = vec![
            (":zero", n(0)),
            (":f", n(failed)),
            (":i", n(interrupted)),
            (":w", n(secs)),
            (":t", n(lease.token)),
            (":false", AttributeValue::Bool(false)),
        ];
        if let Some(r) = reason {
            set = set.replacen("SET ", "SET @last_error = :err, ", 1);
            vals.push((":err", s(r)));
        }
        let (set, cond, names) = aliased_update(&set, "@token = :t AND @done = :false");
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(&lease.item)))
            .update_expression(set)
            .condition_expression(cond)
            .set_expression_attribute_names(Some(names));
        for (k, v) in vals {
            req = req.expression_attribute_values(k, v);
        }
        match self.bridge.run(req.send()) {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Err(lease.lost()),
            Err(e) => Err(backend("dynamodb release", e)),
        }
    }

    fn commit(&self, lease: &Lease, result_doc: &str, secs: f64) -> PortResult<Completion> {
        let now = now_secs();
        let job_id = &lease.item.job_id;
        // A result too large for one record goes to pages under this attempt first; only
        // the commit below makes them count (a lost commit leaves pages nobody reads).
        let (doc_set, doc_value) = if result_doc.len() > PAGE_BYTES {
            let prefix = format!("RESULT#{}#{:06}#", item_sk(&lease.item), lease.attempt);
            let pages = self.put_pages(job_id, &prefix, result_doc)?;
            ("@result_pages = :doc REMOVE @result_doc", n(pages))
        } else {
            ("@result_doc = :doc REMOVE @result_pages", s(result_doc))
        };
        let (set, cond, names) = aliased_update(
            &format!("SET @done = :true, @committed_attempt = :a, @frames_done = @frames, @lease_until = :zero, @expires_at = :exp, {doc_set} ADD @encode_secs :secs"),
            "@token = :t AND @done = :false",
        );
        let item_update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(item_key(&lease.item)))
            .update_expression(set)
            .condition_expression(cond)
            .set_expression_attribute_names(Some(names))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":a", n(lease.attempt))
            .expression_attribute_values(":doc", doc_value)
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":exp", n((now + ITEM_TTL_SECS) as u64))
            .expression_attribute_values(":secs", n(secs))
            .expression_attribute_values(":t", n(lease.token))
            .build()
            .map_err(|e| backend("building item update", e))?;
        // The job's counter and, for the last item, the move to STITCHING go in the same
        // transaction as the item. The first round assumes the common case, not the last
        // item (`done < last_index`, compared in the write itself, no read); every later
        // round guesses from a read of the job and makes the write conditional on the
        // guess; a commit of another item in between fails the condition, and the next
        // round reads again.
        let mut counts: Option<(u64, u64, String)> = None;
        for _ in 0..COMMIT_ROUNDS {
            let (encoding, last, before) = match &counts {
                None => (true, false, None),
                Some((done, total, status)) => {
                    let encoding = status == JobStatus::Encoding.as_str();
                    (encoding, encoding && done + 1 >= *total, Some(*done))
                }
            };
            let (set, cond) = match (encoding, last, before) {
                (true, _, None) => (
                    "ADD @done :one",
                    "@status = :encoding AND @done < @last_index",
                ),
                (true, true, Some(_)) => (
                    "SET @status = :stitching, @stitch_started_at = :now ADD @done :one",
                    "@status = :encoding AND @done = :before",
                ),
                (true, false, Some(_)) => {
                    ("ADD @done :one", "@status = :encoding AND @done = :before")
                }
                // The job failed or moved on: the item still counts, nothing else moves.
                (false, _, _) => ("ADD @done :one", "@status <> :encoding"),
            };
            let (set, cond, names) = aliased_update(set, cond);
            let mut job_update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(job_key(job_id)))
                .update_expression(set)
                .condition_expression(cond)
                .set_expression_attribute_names(Some(names))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":encoding", s(JobStatus::Encoding.as_str()));
            if let (true, Some(done)) = (encoding, before) {
                job_update = job_update.expression_attribute_values(":before", n(done));
            }
            if last {
                job_update = job_update
                    .expression_attribute_values(":stitching", s(JobStatus::Stitching.as_str()))
                    .expression_attribute_values(":now", n(now));
            }
            let job_update = job_update
                .build()
                .map_err(|e| backend("building job update", e))?;
            let tx = self
                .client
                .transact_write_items()
                .transact_items(
                    TransactWriteItem::builder()
                        .update(item_update.clone())
                        .build(),
                )
                .transact_items(TransactWriteItem::builder().update(job_update).build());
            match self.bridge.run(tx.send()) {
                Ok(_) if last => return Ok(Completion::Last),
                Ok(_) => return Ok(Completion::More),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_transaction_canceled_exception()) => {}
                Err(e) => return Err(backend("dynamodb commit", e)),
            }
            // Cancelled: the item's condition (done already, or a stale token) or the
            // job's (another item committed since the read).
            let rec = self
                .get(item_key(&lease.item))?
                .ok_or_else(|| PortError::NotFound(lease.item.describe()))?;
            if get_b(&rec, "done") {
                return Ok(Completion::AlreadyDone);
            }
            if get_u(&rec, "token") != lease.token {
                return Err(PortError::Conflict(format!(
                    "stale fencing token {} for {} of job {}",
                    lease.token,
                    lease.item.describe(),
                    job_id
                )));
            }
            // After a first guess that missed (the last item, most often) the next round
            // reads at once; after that, many workers finish one job together: spread out.
            if counts.is_some() {
                std::thread::sleep(Duration::from_millis(5 + u64::from(getrandom_byte()) / 4));
            }
            counts = Some(self.job_counts(job_id)?);
        }
        Err(PortError::Backend(format!(
            "committing {} of job {job_id}: the job's counter kept moving for {COMMIT_ROUNDS} rounds",
            lease.item.describe()
        )))
    }

    fn results(&self, id: &str) -> PortResult<Vec<(ItemRef, u32, String)>> {
        let mut out = Vec::new();
        for a in self.item_records(id)?.iter().filter(|a| get_b(a, "done")) {
            let Some(item) = item_ref(id, a) else {
                continue;
            };
            let attempt = get_u(a, "committed_attempt") as u32;
            let doc = match (get_s(a, "result_doc"), a.get("result_pages")) {
                (Some(doc), _) => doc,
                (None, Some(_)) => self.read_pages(
                    id,
                    &format!("RESULT#{}#{attempt:06}#", item_sk(&item)),
                    get_u(a, "result_pages") as u32,
                )?,
                (None, None) => continue,
            };
            out.push((item, attempt, doc));
        }
        out.sort_by_key(|(i, _, _)| (i.kind == ItemKind::Audio, i.index));
        Ok(out)
    }

    fn publish(&self, id: &str, master_key: &str, dash_key: &str) -> PortResult<bool> {
        self.update(
            job_key(id),
            "SET @status = :published, @master_key = :m, @dash_key = :d, @finished_at = :now ADD @stitch_count :one",
            Some("@status = :stitching"),
            vec![
                (":published", s(JobStatus::Published.as_str())),
                (":stitching", s(JobStatus::Stitching.as_str())),
                (":m", s(master_key)),
                (":d", s(dash_key)),
                (":now", n(now_secs())),
                (":one", n(1)),
            ],
        )
    }

    fn items(&self, id: &str) -> PortResult<Vec<(ItemRef, ItemState)>> {
        let now = now_secs();
        let mut out: Vec<(ItemRef, ItemState)> = self
            .item_records(id)?
            .iter()
            .filter_map(|a| Some((item_ref(id, a)?, item_state(a, now))))
            .collect();
        out.sort_by_key(|(i, _)| (i.kind == ItemKind::Audio, i.index));
        Ok(out)
    }
}
