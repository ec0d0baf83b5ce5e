//! The work queues on SQS: one queue per tier and one for stitch requests, each with a
//! dead-letter queue through its redrive policy (SQS moves a message there after
//! `max_receives` receives; we never count receives ourselves).
//!
//! Receives try the queues in the order the worker asks (premium first, with its fairness
//! turns), without waiting on the first ones and with a short long-poll on the last, so an
//! idle worker costs one request a second, not a busy loop.

use crate::backend;
use crate::config::{AwsSettings, Bridge};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use aws_sdk_sqs::Client;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use vodpipe_control::ports::{Delivery, Message, PortError, PortResult, Queue, WorkQueue};

/// The SQS work queue.
pub struct SqsQueues {
    client: Client,
    bridge: Arc<Bridge>,
    urls: HashMap<Queue, String>,
    dlq_urls: HashMap<Queue, String>,
}

fn is_receipt_gone<E: aws_sdk_sqs::error::ProvideErrorMetadata>(
    e: &aws_sdk_sqs::error::SdkError<E>,
) -> bool {
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|c| {
            c.contains("ReceiptHandleIsInvalid")
                || c.contains("InvalidParameterValue")
                || c.contains("MessageNotInflight")
        })
}

/// Visibility in whole seconds (SQS's unit), never rounding a real wait down to zero.
fn secs(d: Duration) -> i32 {
    let s = d.as_secs_f64().ceil() as i64;
    s.clamp(0, 43_200) as i32
}

impl SqsQueues {
    /// Looks up the queue URLs of `settings` (they must exist: see bootstrap).
    pub fn new(
        bridge: Arc<Bridge>,
        sdk: &aws_config::SdkConfig,
        settings: &AwsSettings,
    ) -> PortResult<Self> {
        let client = Client::new(sdk);
        let mut urls = HashMap::new();
        let mut dlq_urls = HashMap::new();
        for q in AwsSettings::queues() {
            for (name, map) in [
                (settings.queue_name(q), &mut urls),
                (settings.dlq_name(q), &mut dlq_urls),
            ] {
                let out = bridge
                    .run(client.get_queue_url().queue_name(&name).send())
                    .map_err(|e| {
                        backend(&format!("queue {name} (run `vodpipe aws bootstrap`)"), e)
                    })?;
                let url = out
                    .queue_url()
                    .ok_or_else(|| PortError::NotFound(name.clone()))?
                    .to_string();
                map.insert(q, url);
            }
        }
        Ok(SqsQueues {
            client,
            bridge,
            urls,
            dlq_urls,
        })
    }

    /// Messages waiting in the dead-letter queues. Only a worker drains them (failing the
    /// jobs they belong to), so the fleet starts one when this is not zero.
    pub fn dead_letters(&self) -> PortResult<u64> {
        self.dlq_urls.values().map(|url| self.visible(url)).sum()
    }

    /// Messages visible on the queue at `url` (in flight ones not counted).
    fn visible(&self, url: &str) -> PortResult<u64> {
        let out = self
            .bridge
            .run(
                self.client
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                    .send(),
            )
            .map_err(|e| backend("sqs depth", e))?;
        Ok(out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0))
    }

    fn url(&self, q: Queue) -> PortResult<&str> {
        self.urls
            .get(&q)
            .map(String::as_str)
            .ok_or_else(|| PortError::NotFound(format!("queue {}", q.as_str())))
    }

    fn receive_from(
        &self,
        url: &str,
        queue: Queue,
        visibility: Duration,
        wait: i32,
    ) -> PortResult<Option<Delivery>> {
        let out = self
            .bridge
            .run(
                self.client
                    .receive_message()
                    .queue_url(url)
                    .max_number_of_messages(1)
                    .visibility_timeout(secs(visibility).max(1))
                    .wait_time_seconds(wait)
                    .message_system_attribute_names(
                        MessageSystemAttributeName::ApproximateReceiveCount,
                    )
                    .send(),
            )
            .map_err(|e| backend("sqs receive", e))?;
        let Some(m) = out.messages().first() else {
            return Ok(None);
        };
        let body = m.body().unwrap_or_default();
        let message: Message = serde_json::from_str(body)
            .map_err(|e| PortError::Backend(format!("unreadable message {body:?}: {e}")))?;
        let receive_count = m
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        let handle = m.receipt_handle().unwrap_or_default();
        Ok(Some(Delivery {
            receipt: format!("{url}|{handle}"),
            queue,
            message,
            receive_count,
        }))
    }

    fn split(receipt: &str) -> PortResult<(&str, &str)> {
        receipt
            .split_once('|')
            .ok_or_else(|| PortError::NotFound(format!("receipt {receipt}")))
    }

    fn change_visibility(&self, d: &Delivery, visibility: Duration) -> PortResult<()> {
        let (url, handle) = Self::split(&d.receipt)?;
        match self.bridge.run(
            self.client
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(handle)
                .visibility_timeout(secs(visibility))
                .send(),
        ) {
            Ok(_) => Ok(()),
            Err(e) if is_receipt_gone(&e) => Err(PortError::Conflict(format!(
                "message on {} was received again or deleted",
                d.queue.as_str()
            ))),
            Err(e) => Err(backend("sqs change visibility", e)),
        }
    }
}

/// A queue handled below the pipeline's message types: documents other than its messages
/// (the S3 events of the upload queue and its dead-letter queue), read and deleted as they
/// are, and messages a function received from Lambda (by their receipt) delayed.
pub struct RawQueue<'a> {
    queues: &'a SqsQueues,
    url: String,
}

/// One document taken from a [`RawQueue`].
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// The body as sent.
    pub body: String,
    /// For [`RawQueue::delete`].
    pub receipt: String,
}

impl SqsQueues {
    /// The queue `name`, or `None` when it does not exist (a deployment without it).
    pub fn raw(&self, name: &str) -> PortResult<Option<RawQueue<'_>>> {
        match self
            .bridge
            .run(self.client.get_queue_url().queue_name(name).send())
        {
            Ok(out) => Ok(out.queue_url().map(|url| RawQueue {
                queues: self,
                url: url.to_string(),
            })),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_queue_does_not_exist()) =>
            {
                Ok(None)
            }
            Err(e) => Err(backend(&format!("sqs queue {name}"), e)),
        }
    }
}

impl RawQueue<'_> {
    /// Takes one document, hidden from others for `visibility`.
    pub fn take(&self, visibility: Duration) -> PortResult<Option<RawMessage>> {
        let out = self
            .queues
            .bridge
            .run(
                self.queues
                    .client
                    .receive_message()
                    .queue_url(&self.url)
                    .max_number_of_messages(1)
                    .visibility_timeout(secs(visibility).max(1))
                    .send(),
            )
            .map_err(|e| backend("sqs receive", e))?;
        Ok(out.messages().first().map(|m| RawMessage {
            body: m.body().unwrap_or_default().to_string(),
            receipt: m.receipt_handle().unwrap_or_default().to_string(),
        }))
    }

    /// Removes a document that was handled.
    pub fn delete(&self, m: &RawMessage) -> PortResult<()> {
        self.queues
            .bridge
            .run(
                self.queues
                    .client
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(&m.receipt)
                    .send(),
            )
            .map_err(|e| backend("sqs delete", e))?;
        Ok(())
    }

    /// Hides the message with `receipt` (a handle Lambda's event source passed on) for
    /// `delay` from now: an upload deferred for its settings file, a failed try backed off.
    /// A message received again or deleted since is nothing to delay.
    pub fn delay(&self, receipt: &str, delay: Duration) -> PortResult<()> {
        match self.queues.bridge.run(
            self.queues
                .client
                .change_message_visibility()
                .queue_url(&self.url)
                .receipt_handle(receipt)
                .visibility_timeout(secs(delay).clamp(0, 43_200))
                .send(),
        ) {
            Ok(_) => Ok(()),
            Err(e) if is_receipt_gone(&e) => Ok(()),
            Err(e) => Err(backend("sqs change visibility", e)),
        }
    }

    /// Documents waiting (visible only).
    pub fn waiting(&self) -> PortResult<u64> {
        self.queues.visible(&self.url)
    }
}

/// Most entries in one `SendMessageBatch`.
const BATCH_ENTRIES: usize = 10;
/// Most bytes of bodies in one `SendMessageBatch`: 256 KiB, the batch payload every queue
/// takes (SQS's newer 1 MiB needs a queue created for it).
const BATCH_BYTES: usize = 256 * 1024;
/// Requests for one batch, the first included, before entries still refused are an error.
const BATCH_TRIES: u32 = 5;

/// Cuts `bodies` into runs of at most [`BATCH_ENTRIES`] entries and [`BATCH_BYTES`] bytes
/// (a body over the limit goes alone, and SQS says why it is refused).
fn batches(bodies: &[String]) -> Vec<&[String]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, b) in bodies.iter().enumerate() {
        if i > start && (i - start == BATCH_ENTRIES || bytes + b.len() > BATCH_BYTES) {
            out.push(&bodies[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += b.len();
    }
    if start < bodies.len() {
        out.push(&bodies[start..]);
    }
    out
}

impl SqsQueues {
    /// One `SendMessageBatch`, its failed entries sent again (SQS can refuse some entries
    /// of a batch it accepts, for throttling or an internal error) until all are in; an
    /// entry refused as the sender's fault is an error at once.
    fn send_batch(&self, url: &str, batch: &[String]) -> PortResult<()> {
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        for attempt in 0..BATCH_TRIES {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(100 << attempt));
            }
            let entries = pending
                .iter()
                .map(|&i| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&batch[i])
                        .build()
                        .map_err(|e| PortError::Backend(format!("sqs batch entry: {e}")))
                })
                .collect::<PortResult<Vec<_>>>()?;
            let out = self
                .bridge
                .run(
                    self.client
                        .send_message_batch()
                        .queue_url(url)
                        .set_entries(Some(entries))
                        .send(),
                )
                .map_err(|e| backend("sqs send batch", e))?;
            if let Some(f) = out.failed().iter().find(|f| f.sender_fault()) {
                return Err(PortError::Backend(format!(
                    "sqs refused a message: {} {}",
                    f.code(),
                    f.message().unwrap_or_default()
                )));
            }
            pending = out
                .failed()
                .iter()
                .map(|f| {
                    f.id().parse().map_err(|_| {
                        PortError::Backend(format!(
                            "sqs named an entry it was not sent: {}",
                            f.id()
                        ))
                    })
                })
                .collect::<PortResult<_>>()?;
            if pending.is_empty() {
                return Ok(());
            }
            tracing::warn!(
                failed = pending.len(),
                attempt,
                "sqs batch entries refused; sending them again"
            );
        }
        Err(PortError::Backend(format!(
            "sqs kept refusing {} of a batch of {} messages",
            pending.len(),
            batch.len()
        )))
    }
}

impl WorkQueue for SqsQueues {
    fn send(&self, queue: Queue, message: &Message) -> PortResult<()> {
        let body = serde_json::to_string(message).map_err(|e| PortError::Backend(e.to_string()))?;
        self.bridge
            .run(
                self.client
                    .send_message()
                    .queue_url(self.url(queue)?)
                    .message_body(body)
                    .send(),
            )
            .map_err(|e| backend("sqs send", e))?;
        Ok(())
    }

    fn send_many(&self, queue: Queue, messages: &[Message]) -> PortResult<()> {
        let url = self.url(queue)?;
        let bodies = messages
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PortError::Backend(e.to_string()))?;
        for batch in batches(&bodies) {
            self.send_batch(url, batch)?;
        }
        Ok(())
    }

    fn receive(&self, queues: &[Queue], visibility: Duration) -> PortResult<Option<Delivery>> {
        for (i, q) in queues.iter().enumerate() {
            let wait = if i + 1 == queues.len() && *q != Queue::Stitch {
                1
            } else {
                0
            };
            if let Some(d) = self.receive_from(self.url(*q)?, *q, visibility, wait)? {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    fn extend(&self, d: &Delivery, visibility: Duration) -> PortResult<()> {
        self.change_visibility(d, visibility)
    }

    fn release(&self, d: &Delivery, delay: Duration) -> PortResult<()> {
        self.change_visibility(d, delay)
    }

    fn delete(&self, d: &Delivery) -> PortResult<()> {
        let (url, handle) = Self::split(&d.receipt)?;
        match self.bridge.run(
            self.client
                .delete_message()
                .queue_url(url)
                .receipt_handle(handle)
                .send(),
        ) {
            Ok(_) => Ok(()),
            Err(e) if is_receipt_gone(&e) => {
                Err(PortError::Conflict("message already gone".into()))
            }
            Err(e) => Err(backend("sqs delete", e)),
        }
    }

    fn receive_dead(&self, visibility: Duration) -> PortResult<Option<Delivery>> {
        for q in AwsSettings::queues() {
            if let Some(url) = self.dlq_urls.get(&q) {
                if let Some(d) = self.receive_from(url, q, visibility, 0)? {
                    return Ok(Some(d));
                }
            }
        }
        Ok(None)
    }

    fn depth(&self, queue: Queue) -> PortResult<u64> {
        let out = self
            .bridge
            .run(
                self.client
                    .get_queue_attributes()
                    .queue_url(self.url(queue)?)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                    .send(),
            )
            .map_err(|e| backend("sqs depth", e))?;
        Ok(out
            .attributes()
            .map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_ten_entries_and_the_size_limit() {
        let small: Vec<String> = (0..23).map(|i| format!("m{i}")).collect();
        let sizes: Vec<usize> = batches(&small).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [10, 10, 3]);
        let big = "x".repeat(100 * 1024);
        let bodies = vec![big.clone(), big.clone(), big.clone(), "y".into()];
        let sizes: Vec<usize> = batches(&bodies).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [2, 2], "two 100 KiB bodies fill a batch");
        let huge = vec!["z".repeat(300 * 1024), "a".into()];
        let sizes: Vec<usize> = batches(&huge).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [1, 1], "an oversized body goes alone");
        assert!(batches(&[]).is_empty());
    }
}
