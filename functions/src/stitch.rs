//! The stitch function: publishes the jobs named on the stitch queue.
//!
//! Lambda's SQS event source hands over up to a batch of messages; each is stitched on its
//! own and only those that failed are reported back (`batchItemFailures`), so one bad job
//! never makes a whole batch run again. Stitching is idempotent (only a STITCHING job is
//! stitched, PUBLISHED is a conditional transition), which is what makes a redelivered
//! message harmless. A job this invocation moves to PUBLISHED or FAILED is announced as a
//! job-state event, once.

use crate::env::Shared;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use vodpipe_control::ports::{Message, PortError};
use vodpipe_control::stitch::stitch;

/// Stitches every message of `event`; the response lists the messages to redeliver.
pub fn handle(shared: &Shared, event: &SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in &event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or_default();
        let job_id = match serde_json::from_str::<Message>(body) {
            Ok(Message::Stitch { job_id }) => job_id,
            Ok(Message::Item(item)) => {
                // Work sent to the wrong queue: it is not ours to do and nothing is lost
                // by dropping it (ingest and the workers re-queue unfinished items).
                tracing::warn!(message = %id, item = %item.describe(), "an item on the stitch queue; dropped");
                continue;
            }
            Err(e) => {
                // Redelivery would not make it parse; the worker re-requests the stitch of
                // any job left STITCHING, so dropping loses nothing.
                tracing::error!(message = %id, error = %e, "unreadable stitch message; dropped");
                continue;
            }
        };
        match stitch(shared.aws.ports(), &job_id) {
            // Announce the change this request made, not a redelivered request's no-op.
            Ok(Some(status)) => {
                tracing::info!(job = %job_id, %status, "stitched");
                shared.aws.announce(&job_id);
            }
            Ok(None) => tracing::info!(job = %job_id, "nothing to stitch (already done)"),
            // No such job (expired by TTL, or a request for another deployment): no retry
            // can make it exist.
            Err(PortError::NotFound(what)) if what == job_id => {
                tracing::warn!(job = %job_id, "stitch request for an unknown job; dropped");
            }
            Err(e) => {
                vodpipe_control::stitch::note_failure(shared.aws.ports(), &job_id, &e);
                response.add_failure(id);
            }
        }
    }
    response
}
