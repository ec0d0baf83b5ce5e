//! `vodpipe-ingest`: the Lambda function on the ingest bucket's ObjectCreated events.
//! See [`vodpipe_functions::ingest`]. The event is taken as JSON and read record by record,
//! so a malformed record fails alone.

use lambda_runtime::LambdaEvent;
use vodpipe_functions::env::{serve, Shared};
use vodpipe_functions::ingest::{handle, IngestReport};

fn main() -> Result<(), lambda_runtime::Error> {
    serve(
        |shared: std::sync::Arc<Shared>, event: LambdaEvent<serde_json::Value>| async move {
            let report: IngestReport = shared.run(move |s| handle(s, &event.payload)).await?;
            match report.failures() {
                Some(e) => Err(e),
                None => Ok(report),
            }
        },
    )
}
