//! Event sources: what turns emulator state into function invocations, as AWS would.
//!
//! - S3 → ingest. The emulator cannot invoke a function without Docker, so the ingest
//!   bucket notifies an SQS queue instead, and [`s3_to_function`] invokes the function with
//!   each notification body, which is the S3 event document S3 would have sent to Lambda
//!   (same records, same URL-encoded keys). It can deliver every event twice, as S3 may.
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

/// Invocations of an S3 event before it is given up, as Lambda's asynchronous invocation
/// does (the first and two retries; then the function's dead-letter queue).
pub const ASYNC_ATTEMPTS: u32 = 3;

/// Where S3 events go and how: the ingest function, each event delivered twice when
/// `duplicate` (S3 delivers at least once), an event that failed [`ASYNC_ATTEMPTS`] times
/// sent to `dlq_url` (the function's dead-letter queue, as Lambda does) and counted in
/// `dead_lettered`, and the events of a held upload kept back until it is let go.
pub struct S3Delivery {
    /// The bucket notification queue.
    pub queue_url: String,
    /// The ingest function.
    pub function: Arc<FunctionHost>,
    /// Deliver every event twice.
    pub duplicate: bool,
    /// Events given up on.
    pub dead_lettered: Arc<std::sync::atomic::AtomicU32>,
    /// The ingest function's dead-letter queue.
    pub dlq_url: String,
    /// The upload held back: its key, and once its first event was seen, its version.
    pub hold: Arc<std::sync::Mutex<Option<Hold>>>,
}

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

/// Delivers the S3 notifications queued on the notification queue until stopped.
pub fn s3_to_function(ctx: SourceCtx, d: S3Delivery) {
    let mut failures: std::collections::HashMap<String, u32> = Default::default();
    while !ctx.stop.load(Ordering::SeqCst) {
        let Some(messages) = receive(&ctx, &d.queue_url, 10, 30) else {
            continue;
        };
        for m in messages {
            let body: Value =
                serde_json::from_str(m.body().unwrap_or_default()).unwrap_or(Value::Null);
            let delete = || delete_message(&ctx, &d.queue_url, &m);
            // S3 sends a test event when the notification is configured; Lambda never sees it.
            if body.get("Event").and_then(Value::as_str) == Some("s3:TestEvent")
                || body.get("Records").is_none()
            {
                delete();
                continue;
            }
            if held(&d, &body) {
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
            let deliveries = if d.duplicate { 2 } else { 1 };
            let mut ok = true;
            for n in 0..deliveries {
                match d.function.invoke(&body) {
                    Outcome::Response(r) => {
                        tracing::info!(delivery = n + 1, response = %r, "ingest answered")
                    }
                    Outcome::Error(e) => {
                        tracing::warn!(delivery = n + 1, error = %e, "ingest failed; the event is delivered again later");
                        ok = false;
                    }
                }
            }
            let id = m.message_id().unwrap_or_default().to_string();
            if ok {
                failures.remove(&id);
                delete();
                continue;
            }
            let failed = failures.entry(id.clone()).or_insert(0);
            *failed += 1;
            if *failed >= ASYNC_ATTEMPTS {
                tracing::error!(
                    attempts = *failed,
                    "ingest failed on every attempt; the event goes to the dead-letter queue"
                );
                let sent = ctx.bridge.run(
                    ctx.sqs
                        .send_message()
                        .queue_url(&d.dlq_url)
                        .message_body(body.to_string())
                        .send(),
                );
                if let Err(e) = sent {
                    tracing::warn!(error = ?e, "could not dead-letter the event; it comes back");
                    continue;
                }
                d.dead_lettered.fetch_add(1, Ordering::SeqCst);
                failures.remove(&id);
                delete();
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
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
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
            })
            .collect();
        let all: Vec<String> = messages
            .iter()
            .filter_map(|m| m.message_id().map(str::to_string))
            .collect();
        let failed: Vec<String> = match function.invoke(&json!({ "Records": records })) {
            Outcome::Response(r) => {
                let listed: Vec<Option<String>> = r["batchItemFailures"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|f| f["itemIdentifier"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                // Lambda treats an empty or unknown identifier as the whole batch failing.
                if listed
                    .iter()
                    .all(|id| id.as_ref().is_some_and(|id| all.contains(id)))
                {
                    listed.into_iter().flatten().collect()
                } else {
                    tracing::warn!(response = %r, "malformed batchItemFailures; the whole batch comes back");
                    all.clone()
                }
            }
            // A failed invocation returns the whole batch to the queue.
            Outcome::Error(_) => all.clone(),
        };
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
