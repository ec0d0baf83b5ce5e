//! The record store on DynamoDB: one table, jobs and their items side by side, and
//! through it the job lifecycle (`vodpipe_control::lifecycle`), which decides every write.
//!
//! Keys: a job is `pk = JOB#<id>, sk = JOB`; its items are `sk = ITEM#<kind>#<index>`,
//! its documents' pages `sk = PLAN#<plan id>#<page>` and `RESULT#<item>#<attempt>#<page>`
//! (at most [`PAGE_BYTES`] each, so no record nears the 400 KB item limit). A global
//! secondary index on (`status`, `created_at`) answers "jobs in state S" and one on
//! (`source`, `created_at`) answers "jobs for this file": queries, never scans.
//!
//! This module only translates: a [`Cond`] becomes a condition expression, a list of
//! [`Change`]s an update expression, a [`RecordStore::transact`] one `TransactWriteItems`.
//! The contract suite checks that DynamoDB decides each condition as [`Cond::holds`] does.
//! Finished items and pages carry a TTL attribute (`expires_at`) so they expire after the
//! job is done.

use crate::backend;
use crate::config::Bridge;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, ReturnValue, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use vodpipe_control::ports::{PortError, PortResult};
use vodpipe_control::records::{Change, Cond, Fields, Index, Key, RecordStore, Value, Write};

/// Most writes in one `TransactWriteItems` (DynamoDB's limit).
pub const ITEMS_PER_TRANSACTION: usize = 100;
/// Name of the index by state.
pub const STATUS_INDEX: &str = "by-status";
/// Name of the index by source.
pub const SOURCE_INDEX: &str = "by-source";
/// How long finished item records are kept.
const ITEM_TTL_SECS: f64 = 30.0 * 86400.0;
pub use vodpipe_control::lifecycle::PAGE_BYTES;

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

fn get_s(a: &Attrs, k: &str) -> Option<String> {
    a.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn get_f(a: &Attrs, k: &str) -> Option<f64> {
    a.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn is_condition_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(
    e: &aws_sdk_dynamodb::error::SdkError<E>,
) -> bool {
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
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

    fn get_item(&self, key: Attrs) -> PortResult<Option<Attrs>> {
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

    /// Writes `item` unless its key exists; true when this call wrote it. The item carries
    /// a write id, so when the SDK sends the request again after a lost response and finds
    /// the item there, a read tells whether that item is this call's own.
    fn put_if_absent(&self, mut item: Attrs, what: &str) -> PortResult<bool> {
        let wid = random_token();
        item.insert(WRITE_ID.to_string(), s(&wid));
        let key = HashMap::from([
            (
                "pk".to_string(),
                item.get("pk").cloned().unwrap_or_else(|| s("")),
            ),
            (
                "sk".to_string(),
                item.get("sk").cloned().unwrap_or_else(|| s("")),
            ),
        ]);
        match self.bridge.run(
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .send(),
        ) {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(self
                .get_item(key)?
                .is_some_and(|found| get_s(&found, WRITE_ID).as_deref() == Some(wid.as_str()))),
            Err(e) => Err(backend(what, e)),
        }
    }
}

/// The attribute every conditional write of this adapter stamps with its own random id:
/// how a write the SDK retried after a lost response recognises, from the record, that
/// the first try landed (its retry then fails its own condition). It holds the last
/// write's id only: should another write reach the record between the lost response and
/// the retry (within a second or so), the retry is judged on its condition alone. The
/// lifecycle's state changes are fenced (a token, a status) so that cannot apply one
/// twice; a counter could count twice. Never shown to callers.
const WRITE_ID: &str = "_wid";

/// A random idempotency token for one write (32 hex digits).
pub(crate) fn random_token() -> String {
    let mut raw = [0u8; 16];
    if getrandom::getrandom(&mut raw).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        raw.copy_from_slice(&nanos.to_le_bytes());
    }
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn to_attr(v: &Value) -> AttributeValue {
    match v {
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Num(x) => n(x),
        Value::Str(t) => s(t),
    }
}

fn from_attr(a: &AttributeValue) -> Option<Value> {
    match a {
        AttributeValue::Bool(b) => Some(Value::Bool(*b)),
        AttributeValue::N(x) => x.parse().ok().map(Value::Num),
        AttributeValue::S(t) => Some(Value::Str(t.clone())),
        _ => None,
    }
}

fn key_attrs(key: &Key) -> Attrs {
    HashMap::from([
        ("pk".to_string(), s(&key.pk)),
        ("sk".to_string(), s(&key.sk)),
    ])
}

/// A record's attributes, without its key and the adapter's write id.
fn fields_of(a: &Attrs) -> Fields {
    a.iter()
        .filter(|(k, _)| !matches!(k.as_str(), "pk" | "sk" | WRITE_ID))
        .filter_map(|(k, v)| Some((k.clone(), from_attr(v)?)))
        .collect()
}

fn item_of(key: &Key, f: &Fields) -> Attrs {
    let mut a = key_attrs(key);
    a.extend(f.iter().map(|(k, v)| (k.clone(), to_attr(v))));
    a
}

/// Names and values of one expression, aliased (`#a0`, `:v0`) so no attribute clashes
/// with DynamoDB's reserved words.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, attr: &str) -> String {
        if let Some((alias, _)) = self.names.iter().find(|(_, a)| a.as_str() == attr) {
            return alias.clone();
        }
        let alias = format!("#a{}", self.names.len());
        self.names.insert(alias.clone(), attr.to_string());
        alias
    }

    fn value(&mut self, v: &Value) -> String {
        let alias = format!(":v{}", self.values.len());
        self.values.insert(alias.clone(), to_attr(v));
        alias
    }

    /// The condition expression of `c`, as [`Cond::holds`] decides it.
    fn cond(&mut self, c: &Cond) -> String {
        const FALSE: &str = "(attribute_exists(pk) AND attribute_not_exists(pk))";
        match c {
            Cond::Exists => "attribute_exists(pk)".into(),
            Cond::Absent => "attribute_not_exists(pk)".into(),
            Cond::Eq(a, v) => format!("{} = {}", self.name(a), self.value(v)),
            Cond::Ne(a, v) => {
                let a = self.name(a);
                format!("(attribute_exists({a}) AND {a} <> {})", self.value(v))
            }
            Cond::In(_, vs) if vs.is_empty() => FALSE.into(),
            Cond::In(a, vs) => {
                let a = self.name(a);
                let vs: Vec<String> = vs.iter().map(|v| self.value(v)).collect();
                format!("{a} IN ({})", vs.join(", "))
            }
            Cond::Lt(a, v) => format!("{} < {}", self.name(a), self.value(v)),
            Cond::Le(a, v) => format!("{} <= {}", self.name(a), self.value(v)),
            Cond::LtAttr(a, b) => format!("{} < {}", self.name(a), self.name(b)),
            Cond::Missing(a) => format!("attribute_not_exists({})", self.name(a)),
            Cond::All(cs) if cs.is_empty() => "attribute_exists(pk)".into(),
            Cond::All(cs) => {
                let parts: Vec<String> = cs.iter().map(|c| self.cond(c)).collect();
                format!("({})", parts.join(" AND "))
            }
            Cond::Any(cs) if cs.is_empty() => FALSE.into(),
            Cond::Any(cs) => {
                let parts: Vec<String> = cs.iter().map(|c| self.cond(c)).collect();
                format!("({})", parts.join(" OR "))
            }
        }
    }

    /// The update expression of `changes` (each attribute changed at most once, as
    /// DynamoDB requires).
    fn update(&mut self, changes: &[Change]) -> String {
        let (mut set, mut remove) = (Vec::new(), Vec::new());
        for c in changes {
            match c {
                Change::Set(a, v) => set.push(format!("{} = {}", self.name(a), self.value(v))),
                Change::SetIfMissing(a, v) => {
                    let a = self.name(a);
                    set.push(format!("{a} = if_not_exists({a}, {})", self.value(v)));
                }
                Change::Add(a, by) => {
                    let a = self.name(a);
                    let zero = self.value(&Value::num(0));
                    set.push(format!(
                        "{a} = if_not_exists({a}, {zero}) + {}",
                        self.value(&Value::Num(*by))
                    ));
                }
                Change::Remove(a) => remove.push(self.name(a)),
                Change::Copy(to, from) => {
                    set.push(format!("{} = {}", self.name(to), self.name(from)))
                }
            }
        }
        let mut out = String::new();
        if !set.is_empty() {
            out = format!("SET {}", set.join(", "));
        }
        if !remove.is_empty() {
            out.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        out
    }
}

/// The update request parts of `w`: expression, condition (which always requires the
/// record to exist: a write never creates one), names and values.
fn update_parts(w: &Write) -> (String, String, Expr) {
    let mut e = Expr::default();
    let update = e.update(&w.changes);
    let cond = format!("attribute_exists(pk) AND {}", e.cond(&w.when));
    (update, cond, e)
}

/// [`update_parts`] for a write stamped with write id `wid`: it sets the id, and its
/// condition also requires the record not to carry it yet, so a retry of a write that
/// landed is refused instead of applied twice (an `Add` counted twice), and the refusal is
/// told apart from a lost race by the id in the record.
fn stamped_update_parts(w: &Write, wid: &str) -> (String, String, Expr) {
    let (update, cond, mut e) = update_parts(w);
    let name = e.name(WRITE_ID);
    let value = e.value(&Value::str(wid));
    let update = if update.is_empty() {
        format!("SET {name} = {value}")
    } else if let Some(rest) = update.strip_prefix("SET ") {
        format!("SET {name} = {value}, {rest}")
    } else {
        format!("SET {name} = {value}{update}")
    };
    let cond = format!("{cond} AND (attribute_not_exists({name}) OR {name} <> {value})");
    (update, cond, e)
}

/// Tries of a transaction cancelled for throttling, besides the last.
const TRANSACT_THROTTLED_TRIES: u32 = 3;

/// What one `TransactWriteItems` came to.
enum Sent {
    /// Every write applied.
    Applied,
    /// A condition failed or a concurrent transaction won: the caller reads and decides
    /// again.
    Refused,
    /// Cancelled for throttling (the reasons named): to be sent again.
    Throttled(String),
}

impl DynamoJobs {
    /// Sends a transaction until it is decided: applied (true) or refused (false). The
    /// token makes the SDK's retry of a transaction whose first try landed (its response
    /// lost) succeed as that same transaction, instead of failing its own conditions and
    /// being taken for a lost race; one cancelled for throttling (a reason, not the SDK's
    /// retried error) is sent again here, the same token making a landed one answer as
    /// landed.
    fn send_until_decided(
        &self,
        tx: aws_sdk_dynamodb::operation::transact_write_items::builders::TransactWriteItemsFluentBuilder,
    ) -> PortResult<bool> {
        let tx = tx.client_request_token(random_token());
        let mut wait = std::time::Duration::from_millis(100);
        for _ in 0..TRANSACT_THROTTLED_TRIES {
            match self.send_transaction(tx.clone())? {
                Sent::Throttled(_) => {
                    std::thread::sleep(wait);
                    wait *= 4;
                }
                Sent::Applied => return Ok(true),
                Sent::Refused => return Ok(false),
            }
        }
        match self.send_transaction(tx)? {
            Sent::Applied => Ok(true),
            Sent::Refused => Ok(false),
            Sent::Throttled(why) => Err(PortError::Backend(format!(
                "dynamodb transaction cancelled: {why}"
            ))),
        }
    }

    fn send_transaction(
        &self,
        tx: aws_sdk_dynamodb::operation::transact_write_items::builders::TransactWriteItemsFluentBuilder,
    ) -> PortResult<Sent> {
        let e = match self.bridge.run(tx.send()) {
            Ok(_) => return Ok(Sent::Applied),
            Err(e) => e,
        };
        match e.as_service_error() {
            // Refused: a condition failed, or a concurrent transaction on the same records
            // won. Throttling is weather: sent again. Any other reason (a malformed write)
            // is the backend's error, not a lost race.
            Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                let reasons: Vec<&str> = c
                    .cancellation_reasons()
                    .iter()
                    .filter_map(|r| r.code())
                    .filter(|c| *c != "None")
                    .collect();
                let throttled = |c: &&str| {
                    matches!(
                        *c,
                        "ThrottlingError"
                            | "ProvisionedThroughputExceeded"
                            | "RequestLimitExceeded"
                    )
                };
                if reasons
                    .iter()
                    .all(|c| *c == "ConditionalCheckFailed" || *c == "TransactionConflict")
                {
                    Ok(Sent::Refused)
                } else if reasons.iter().any(throttled) {
                    Ok(Sent::Throttled(reasons.join(", ")))
                } else {
                    Err(PortError::Backend(format!(
                        "dynamodb transaction cancelled: {}",
                        reasons.join(", ")
                    )))
                }
            }
            _ => Err(backend("dynamodb transaction", e)),
        }
    }
}

impl RecordStore for DynamoJobs {
    fn get(&self, key: &Key) -> PortResult<Option<Fields>> {
        Ok(self.get_item(key_attrs(key))?.map(|a| fields_of(&a)))
    }

    fn create(&self, key: &Key, fields: &Fields) -> PortResult<bool> {
        self.put_if_absent(item_of(key, fields), "dynamodb create")
    }

    fn put(&self, key: &Key, fields: &Fields) -> PortResult<()> {
        self.bridge
            .run(
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item_of(key, fields)))
                    .send(),
            )
            .map_err(|e| backend("dynamodb put", e))?;
        Ok(())
    }

    fn update(&self, w: &Write) -> PortResult<Option<Fields>> {
        let wid = random_token();
        let (update, cond, e) = stamped_update_parts(w, &wid);
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_attrs(&w.key)))
            .update_expression(update)
            .condition_expression(cond)
            .set_expression_attribute_names((!e.names.is_empty()).then_some(e.names))
            .set_expression_attribute_values((!e.values.is_empty()).then_some(e.values))
            .return_values(ReturnValue::AllNew);
        match self.bridge.run(req.send()) {
            Ok(out) => Ok(Some(out.attributes().map(fields_of).unwrap_or_default())),
            // Refused: a lost race, or this very write applied by an earlier try whose
            // response was lost. The record says which.
            Err(e) if is_condition_failed(&e) => Ok(self
                .get_item(key_attrs(&w.key))?
                .filter(|r| get_s(r, WRITE_ID).as_deref() == Some(wid.as_str()))
                .map(|r| fields_of(&r))),
            Err(e) => Err(backend("dynamodb update", e)),
        }
    }

    fn transact(&self, writes: &[Write]) -> PortResult<bool> {
        let mut tx = self.client.transact_write_items();
        for w in writes {
            let (update, cond, e) = update_parts(w);
            let item = if update.is_empty() {
                // Nothing to change: the write is its condition alone.
                TransactWriteItem::builder()
                    .condition_check(
                        ConditionCheck::builder()
                            .table_name(&self.table)
                            .set_key(Some(key_attrs(&w.key)))
                            .condition_expression(cond)
                            .set_expression_attribute_names(
                                (!e.names.is_empty()).then_some(e.names),
                            )
                            .set_expression_attribute_values(
                                (!e.values.is_empty()).then_some(e.values),
                            )
                            .build()
                            .map_err(|e| backend("building a transaction", e))?,
                    )
                    .build()
            } else {
                let u = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_attrs(&w.key)))
                    .update_expression(update)
                    .condition_expression(cond)
                    .set_expression_attribute_names((!e.names.is_empty()).then_some(e.names))
                    .set_expression_attribute_values((!e.values.is_empty()).then_some(e.values))
                    .build()
                    .map_err(|e| backend("building a transaction", e))?;
                TransactWriteItem::builder().update(u).build()
            };
            tx = tx.transact_items(item);
        }
        self.send_until_decided(tx)
    }

    fn create_all(&self, records: &[(Key, Fields)]) -> PortResult<()> {
        for batch in records.chunks(ITEMS_PER_TRANSACTION) {
            let mut tx = self.client.transact_write_items();
            for (key, fields) in batch {
                let put = aws_sdk_dynamodb::types::Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item_of(key, fields)))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(|e| backend("building a transaction", e))?;
                tx = tx.transact_items(TransactWriteItem::builder().put(put).build());
            }
            // All new (the usual case): one request for up to a hundred. Some exist (a
            // planner racing another, or a retry of a plan half written): each is created
            // on its own where absent, never overwriting an item a worker may hold.
            if !self.send_until_decided(tx)? {
                for (key, fields) in batch {
                    self.create(key, fields)?;
                }
            }
        }
        Ok(())
    }

    fn query(&self, pk: &str, prefix: &str) -> PortResult<Vec<(String, Fields)>> {
        let rows = self.query_all(|| {
            let q = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true);
            // DynamoDB refuses an empty string in a key condition.
            if prefix.is_empty() {
                q.key_condition_expression("pk = :pk")
            } else {
                q.key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                    .expression_attribute_values(":p", s(prefix))
            }
        })?;
        // A query returns its rows in sort-key order.
        Ok(rows
            .iter()
            .filter_map(|a| Some((get_s(a, "sk")?, fields_of(a))))
            .collect())
    }

    fn index(&self, index: Index, value: &str, newest_first: bool) -> PortResult<Vec<String>> {
        let name = match index {
            Index::Status => STATUS_INDEX,
            Index::Source => SOURCE_INDEX,
        };
        let keys = self.query_all(|| {
            self.client
                .query()
                .table_name(&self.table)
                .index_name(name)
                .key_condition_expression("#k = :v")
                .expression_attribute_names("#k", index.attribute())
                .expression_attribute_values(":v", s(value))
                .scan_index_forward(!newest_first)
        })?;
        // The index projects keys only: the caller reads each job itself.
        Ok(keys.iter().filter_map(|a| get_s(a, "pk")).collect())
    }

    fn remove(&self, key: &Key) -> PortResult<()> {
        self.bridge
            .run(
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(key_attrs(key)))
                    .send(),
            )
            .map_err(|e| backend("dynamodb delete", e))?;
        Ok(())
    }
}
