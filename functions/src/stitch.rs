//! The stitch function: publishes the jobs named on the stitch queue.
//!
//! Lambda's SQS event source hands over up to a batch of messages; each is stitched on its
//! own and only those that failed are reported back (`batchItemFailures`), so one bad job
//! never makes a whole batch run again. Stitching is idempotent (only a STITCHING job is
//! stitched, PUBLISHED is a conditional transition), which is what makes a redelivered
//! message harmless. A job this invocation moves to PUBLISHED or FAILED is announced (by the
//! stitch, through the ports) as a job-state event, once. The messages of a batch are stitched at once (each job is its
//! own, and each stitch waits on S3 and DynamoDB), so the mapping's concurrency times its
//! batch size is how many jobs publish together.

use crate::env::Shared;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use vodpipe_control::job::JobStatus;
use vodpipe_control::ports::{Message, PortError};
use vodpipe_control::stitch::stitch;

/// Most stitches one invocation runs at once: the largest batch Lambda's SQS event source
/// hands over. A stitch waits on S3 and DynamoDB, not the CPU, so a batch stitched at once
/// takes about as long as its slowest job instead of the sum of them.
pub const MAX_PARALLEL_STITCHES: usize = 10;

/// Stitches every message of `event`, up to [`MAX_PARALLEL_STITCHES`] at once; the
/// response lists the messages to redeliver.
pub fn handle(shared: &Shared, event: &SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for group in event.records.chunks(MAX_PARALLEL_STITCHES) {
        let failed: Vec<String> = std::thread::scope(|scope| {
            let running: Vec<_> = group
                .iter()
                .map(|record| scope.spawn(move || stitch_one(shared, record)))
                .collect();
            running
                .into_iter()
                .zip(group)
                .filter_map(|(h, record)| match h.join() {
                    Ok(failed) => failed,
                    // A panic is a bug, not the message's fault; it is tried again.
                    Err(_) => record.message_id.clone(),
                })
                .collect()
        });
        for id in failed {
            back_off(shared, group, &id);
            response.add_failure(id);
        }
    }
    response
}

/// Hides a failed request for a back-off ([`crate::ingest::retry_delay`]: 10 s doubling
/// with each receive, at most 15 minutes) instead of the queue's visibility timeout
/// (12 minutes, six times the function's timeout, as Lambda asks): a throttled table
/// or a lost response recovers in seconds, and its job should not wait a quarter hour.
fn back_off(shared: &Shared, records: &[aws_lambda_events::event::sqs::SqsMessage], id: &str) {
    let Some(record) = records.iter().find(|r| r.message_id.as_deref() == Some(id)) else {
        return;
    };
    let receives = record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(1);
    let delay = std::time::Duration::from_secs_f64(crate::ingest::retry_delay(receives));
    let queue = shared
        .aws
        .settings
        .queue_name(vodpipe_control::ports::Queue::Stitch);
    let set = shared.aws.state.queues.raw(&queue).and_then(|q| match q {
        Some(q) => q.delay(record.receipt_handle.as_deref().unwrap_or_default(), delay),
        None => Ok(()),
    });
    if let Err(e) = set {
        // It comes back after the queue's visibility timeout instead.
        tracing::warn!(message = %id, error = %e, "could not shorten the failed request's wait");
    }
}

/// Stitches one message's job; the message id when it must be delivered again.
fn stitch_one(
    shared: &Shared,
    record: &aws_lambda_events::event::sqs::SqsMessage,
) -> Option<String> {
    let id = record.message_id.clone().unwrap_or_default();
    let body = record.body.as_deref().unwrap_or_default();
    let job_id = match serde_json::from_str::<Message>(body) {
        Ok(Message::Stitch { job_id }) => job_id,
        Ok(Message::Item(item)) => {
            // Work sent to the wrong queue: it is not ours to do and nothing is lost
            // by dropping it (ingest and the workers re-queue unfinished items).
            tracing::warn!(message = %id, item = %item.describe(), "an item on the stitch queue; dropped");
            return None;
        }
        Err(e) => {
            // Redelivery would not make it parse; the worker re-requests the stitch of
            // any job left STITCHING, so dropping loses nothing.
            tracing::error!(message = %id, error = %e, "unreadable stitch message; dropped");
            return None;
        }
    };
    match stitch(shared.aws.ports(), &job_id) {
        // The change this request made (announced by the stitch), not a redelivered
        // request's no-op.
        Ok(Some(status)) => {
            tracing::info!(job = %job_id, %status, "stitched");
            if status == JobStatus::Published {
                // For the ingest bucket's retention rule; a source left untagged is
                // only kept longer, so a failure here fails nothing.
                if let Err(e) = shared.aws.mark_source_published(&job_id) {
                    tracing::warn!(job = %job_id, error = %e, "could not tag the published source");
                }
            }
            None
        }
        Ok(None) => {
            tracing::info!(job = %job_id, "nothing to stitch (already done)");
            None
        }
        // No such job (expired by TTL, or a request for another deployment): no retry
        // can make it exist.
        Err(PortError::NotFound(what)) if what == job_id => {
            tracing::warn!(job = %job_id, "stitch request for an unknown job; dropped");
            None
        }
        Err(e) => {
            vodpipe_control::stitch::note_failure(shared.aws.ports(), &job_id, &e);
            Some(id)
        }
    }
}
