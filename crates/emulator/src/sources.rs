//! Event sources: what turns emulator state into function invocations, as AWS would.
//!
//! - S3 → SQS → ingest, as the template wires it: the ingest bucket notifies the upload
//!   queue, and [`s3_to_function`] is the event source mapping from it to the ingest
//!   function (batches of one, partial batch responses, one poller per execution
//!   environment). It can deliver every event twice, as S3 may.
//! - SQS → stitch. [`sqs_to_function`] is Lambda's event source mapping: batches of up to
//!   ten messages as an SQS event, and only the messages the function did not list in
//!   `batchItemFailures` are deleted.
//! - Schedule → fleet. [`schedule`] sends an EventBridge "Scheduled Event" every tick.

use crate::runtime_api::{FunctionHost, Outcome};
use aws_sdk_sqs::primitives::{DateTime, DateTimeFormat};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vodpipe_aws::config::Bridge;

/// What a source loop needs.
#[derive(Clone)]
pub struct SourceCtx {
    /// Runs SDK calls.
    pub bridge: Arc<Bridge>,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// Set to end the loop.
    pub stop: Arc<AtomicBool>,
}

fn iso_now() -> String {
    let secs = vodpipe_media::process::now_secs() as i64;
    DateTime::from_secs(secs)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_default()
}

/// An EventBridge event envelope.
pub fn eventbridge_event(
    source: &str,
    detail_type: &str,
    resources: &[String],
    detail: Value,
) -> Value {
    json!({
        "version": "0",
        "id": format!("{:x}", std::process::id() as u128 * 1_000_003 + vodpipe_media::process::now_secs() as u128),
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": iso_now(),
        "region": "us-east-1",
        "resources": resources,
        "detail": detail,
    })
}

/// One long poll of `queue_url` with every system attribute; `None` after a failed receive
/// (logged, after a pause).
fn receive(
    ctx: &SourceCtx,
    queue_url: &str,
    max: i32,
    visibility_secs: i32,
) -> Option<Vec<aws_sdk_sqs::types::Message>> {
    let received = ctx.bridge.run(
        ctx.sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(max)
            .wait_time_seconds(1)
            .visibility_timeout(visibility_secs)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send(),
    );
    match received {
        Ok(out) => Some(out.messages().to_vec()),
        Err(e) => {
            tracing::warn!(error = ?e, "receiving from {queue_url}");
            std::thread::sleep(Duration::from_secs(1));
            None
        }
    }
}

/// Deletes a delivered message (logged, not fatal: it comes back and is delivered again,
/// which every function here tolerates).
fn delete_message(ctx: &SourceCtx, queue_url: &str, m: &aws_sdk_sqs::types::Message) {
    if let Err(e) = ctx.bridge.run(
        ctx.sqs
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(m.receipt_handle().unwrap_or_default())
            .send(),
    ) {
        tracing::warn!(error = ?e, "deleting a delivered message from {queue_url}");
    }
}

/// Where uploads go and how: the ingest bucket notifies the upload queue (the template's
/// `IngestEventsQueue`), and this is Lambda's event source mapping from it to the ingest
/// function, batches of one as the template maps them, with partial batch responses. Every
/// event can be delivered twice when `duplicate` (S3 delivers at least once); an event
/// received [`UPLOAD_MAX_RECEIVES`] times and failed again is counted in `dead_lettered`
/// (the queue's redrive policy moves it to the dead-letter queue); the events of a held
/// upload are kept back until it is let go.
pub struct S3Delivery {
    /// The upload queue.
    pub queue_url: String,
    /// Its ARN, as event records name it.
    pub queue_arn: String,
    /// The ingest function's execution environments: at most this many ingests run at
    /// once (the mapping's maximum concurrency, as far as the emulator scales).
    pub functions: Vec<Arc<FunctionHost>>,
    /// Deliver every event twice.
    pub duplicate: bool,
    /// Events given up on.
    pub dead_lettered: Arc<std::sync::atomic::AtomicU32>,
    /// The upload held back: its key, and once its first event was seen, its version.
    pub hold: Arc<std::sync::Mutex<Option<Hold>>>,
}

/// Receives of an upload event before SQS dead-letters it (the template's redrive).
pub const UPLOAD_MAX_RECEIVES: u32 = vodpipe_aws::bootstrap::INGEST_EVENTS_MAX_RECEIVES;

/// An upload whose event waits (a slow or retried ingest of an older version).
#[derive(Debug, Clone)]
pub struct Hold {
    /// The key (as S3 events encode it).
    pub key: String,
    /// The version held: the first event seen for the key.
    pub version: Option<String>,
}

/// An S3 event's key as uploaded (`+` a space, `%XX` a byte).
fn decode_key(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The held version, if `body` is an event of it (the first event of the held key is
/// taken as the held upload).
fn held(d: &S3Delivery, body: &Value) -> bool {
    let Ok(mut hold) = d.hold.lock() else {
        return false;
    };
    let Some(h) = hold.as_mut() else {
        return false;
    };
    let object = &body["Records"][0]["s3"]["object"];
    if object["key"].as_str().map(decode_key).as_deref() != Some(h.key.as_str()) {
        return false;
    }
    let version = object["versionId"].as_str().map(str::to_string);
    match &h.version {
        None => {
            h.version = version;
            true
        }
        Some(v) => version.as_deref() == Some(v.as_str()),
    }
}

/// An SQS event record for `m` from the queue `queue_arn`, as Lambda's event source
/// builds it.
fn sqs_record(m: &aws_sdk_sqs::types::Message, queue_arn: &str) -> Value {
    let attributes: serde_json::Map<String, Value> = m
        .attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.as_str().to_string(), Value::String(v.clone())))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "messageId": m.message_id(),
        "receiptHandle": m.receipt_handle(),
        "body": m.body(),
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": m.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    })
}

/// The message ids a function's answer lists in `batchItemFailures`; every id of the batch
/// when the answer is an error or lists an id the batch did not hold (what Lambda does).
fn failed_ids(outcome: Outcome, all: &[String]) -> Vec<String> {
    match outcome {
        Outcome::Response(r) => {
            let listed: Vec<Option<String>> = r["batchItemFailures"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|f| f["itemIdentifier"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if listed
                .iter()
                .all(|id| id.as_ref().is_some_and(|id| all.contains(id)))
            {
                listed.into_iter().flatten().collect()
            } else {
                tracing::warn!(response = %r, "malformed batchItemFailures; the whole batch comes back");
                all.to_vec()
            }
        }
        Outcome::Error(_) => all.to_vec(),
    }
}

/// Delivers the uploads on the upload queue until stopped, one poller per execution
/// environment (so as many ingests run at once as there are environments).
pub fn s3_to_function(ctx: SourceCtx, d: S3Delivery) {
    let d = Arc::new(d);
    let pollers: Vec<_> = d
        .functions
        .iter()
        .cloned()
        .map(|function| {
            let (ctx, d) = (ctx.clone(), d.clone());
            std::thread::spawn(move || upload_poller(&ctx, &d, &function))
        })
        .collect();
    for p in pollers {
        let _ = p.join();
    }
}

fn upload_poller(ctx: &SourceCtx, d: &S3Delivery, function: &FunctionHost) {
    let visibility = vodpipe_aws::bootstrap::INGEST_EVENTS_VISIBILITY_SECS as i32;
    while !ctx.stop.load(Ordering::SeqCst) {
        let Some(messages) = receive(ctx, &d.queue_url, 1, visibility) else {
            continue;
        };
        for m in messages {
            let body: Value =
                serde_json::from_str(m.body().unwrap_or_default()).unwrap_or(Value::Null);
            if held(d, &body) {
                let _ = ctx.bridge.run(
                    ctx.sqs
                        .change_message_visibility()
                        .queue_url(&d.queue_url)
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .visibility_timeout(1)
                        .send(),
                );
                continue;
            }
            let id = m.message_id().unwrap_or_default().to_string();
            let all = [id.clone()];
            let event = json!({ "Records": [sqs_record(&m, &d.queue_arn)] });
            let deliveries = if d.duplicate { 2 } else { 1 };
            let mut failed = false;
            for n in 0..deliveries {
                let outcome = function.invoke(&event);
                if let Outcome::Response(r) = &outcome {
                    tracing::info!(delivery = n + 1, response = %r, "ingest answered");
                }
                failed |= !failed_ids(outcome, &all).is_empty();
            }
            if !failed {
                delete_message(ctx, &d.queue_url, &m);
                continue;
            }
            let receives: u32 = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            if receives >= UPLOAD_MAX_RECEIVES {
                tracing::error!(
                    receives,
                    "the upload failed on every delivery; SQS dead-letters it"
                );
                d.dead_lettered.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// Lambda's SQS event source mapping from `queue_url` to `function`, batches of up to
/// `batch` messages, partial batch responses honoured.
pub fn sqs_to_function(
    ctx: SourceCtx,
    queue_url: String,
    queue_arn: String,
    function: Arc<FunctionHost>,
    batch: i32,
    visibility_secs: i32,
) {
    while !ctx.stop.load(Ordering::SeqCst) {
        let Some(messages) = receive(&ctx, &queue_url, batch, visibility_secs) else {
            continue;
        };
        if messages.is_empty() {
            continue;
        }
        let records: Vec<Value> = messages.iter().map(|m| sqs_record(m, &queue_arn)).collect();
        let all: Vec<String> = messages
            .iter()
            .filter_map(|m| m.message_id().map(str::to_string))
            .collect();
        let failed = failed_ids(function.invoke(&json!({ "Records": records })), &all);
        for m in &messages {
            if failed.iter().any(|f| Some(f.as_str()) == m.message_id()) {
                continue;
            }
            delete_message(&ctx, &queue_url, m);
        }
    }
}

/// Invokes `function` with a Scheduled Event every `every` until stopped.
pub fn schedule(ctx: SourceCtx, rule_arn: String, function: Arc<FunctionHost>, every: Duration) {
    let mut next = Instant::now() + every;
    while !ctx.stop.load(Ordering::SeqCst) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        next = Instant::now() + every;
        let event = eventbridge_event(
            "aws.events",
            "Scheduled Event",
            std::slice::from_ref(&rule_arn),
            json!({}),
        );
        if let Outcome::Response(r) = function.invoke(&event) {
            tracing::debug!(response = %r, "fleet tick");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventbridge_envelopes_carry_an_rfc3339_time() {
        let e = eventbridge_event("aws.events", "Scheduled Event", &[], json!({}));
        let t = e["time"].as_str().unwrap();
        assert!(
            t.len() == 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{t}"
        );
        assert_eq!(e["detail-type"], "Scheduled Event");
    }
}
