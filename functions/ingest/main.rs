//! `vodpipe-ingest`: the Lambda function on the upload queue (S3 → SQS, partial batch
//! responses), which also takes an S3 event document sent to it directly. See
//! [`vodpipe_functions::ingest`]. The event is taken as JSON and read record by record,
//! so a malformed record fails alone.

use lambda_runtime::LambdaEvent;
use vodpipe_functions::env::{serve, Shared};
use vodpipe_functions::ingest::{handle, handle_queued, is_queue_event};

fn main() -> Result<(), lambda_runtime::Error> {
    serve(
        |shared: std::sync::Arc<Shared>, event: LambdaEvent<serde_json::Value>| async move {
            let payload = event.payload;
            if is_queue_event(&payload) {
                let report = shared.run(move |s| handle_queued(s, &payload)).await?;
                return Ok(serde_json::to_value(report).unwrap_or_default());
            }
            let report = shared.run(move |s| handle(s, &payload)).await?;
            match report.failures() {
                Some(e) => Err(e),
                None => Ok(serde_json::to_value(report).unwrap_or_default()),
            }
        },
    )
}
