//! The three functions' runtime loops, and the choice between them. The functions ship as
//! one binary (`vodpipe-lambda`), each function's `Handler` naming its loop: Lambda passes
//! the handler to a custom runtime as `_HANDLER`. One binary is one link-time optimisation
//! in `sam build` instead of three (about 55 s each on two cores), one artefact to test,
//! and the same code in every function.

use crate::env::{serve, Shared};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::LambdaEvent;
use std::sync::Arc;

/// The function a handler name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// The upload queue (S3 → SQS), or an S3 event document sent directly.
    Ingest,
    /// The stitch queue.
    Stitch,
    /// The EventBridge schedule and ECS task state changes.
    Fleet,
}

impl Handler {
    /// Every handler, as the template names them.
    pub const ALL: [Handler; 3] = [Handler::Ingest, Handler::Stitch, Handler::Fleet];

    /// The name a function's `Handler` property gives.
    pub fn as_str(self) -> &'static str {
        match self {
            Handler::Ingest => "ingest",
            Handler::Stitch => "stitch",
            Handler::Fleet => "fleet",
        }
    }

    /// The handler named `name`.
    pub fn parse(name: &str) -> Option<Handler> {
        Handler::ALL.into_iter().find(|h| h.as_str() == name.trim())
    }
}

/// Runs the function `_HANDLER` names until the runtime API goes away; a handler that names
/// none of them is a deployment error, said as such before any event is taken.
pub fn run_from_env() -> Result<(), lambda_runtime::Error> {
    let name = std::env::var("_HANDLER").unwrap_or_default();
    match Handler::parse(&name) {
        Some(h) => run(h),
        None => Err(format!(
            "the function's Handler is {name:?}; vodpipe-lambda serves \"ingest\", \"stitch\" or \"fleet\""
        )
        .into()),
    }
}

/// Runs `handler`'s loop.
pub fn run(handler: Handler) -> Result<(), lambda_runtime::Error> {
    match handler {
        Handler::Ingest => ingest(),
        Handler::Stitch => stitch(),
        Handler::Fleet => fleet(),
    }
}

/// The upload queue's function; the event is taken as JSON and read record by record, so
/// a malformed record fails alone. See [`crate::ingest`].
fn ingest() -> Result<(), lambda_runtime::Error> {
    use crate::ingest::{handle, handle_queued, is_queue_event};
    serve(
        |shared: Arc<Shared>, event: LambdaEvent<serde_json::Value>| async move {
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

/// The stitch queue's function (partial batch responses). See [`crate::stitch`].
fn stitch() -> Result<(), lambda_runtime::Error> {
    serve(
        |shared: Arc<Shared>, event: LambdaEvent<SqsEvent>| async move {
            shared
                .run(move |s| crate::stitch::handle(s, &event.payload))
                .await
        },
    )
}

/// The schedule's and ECS events' function. See [`crate::fleet`].
fn fleet() -> Result<(), lambda_runtime::Error> {
    serve(
        |shared: Arc<Shared>, event: LambdaEvent<EventBridgeEvent>| async move {
            // The tick answers before the invocation's deadline, whatever it has left to do.
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let left =
                std::time::Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
            let until = std::time::Instant::now() + left;
            shared
                .run(move |s| crate::fleet::handle(s, &event.payload, until))
                .await?
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_handler_is_found_by_its_name_and_no_other_is() {
        for h in Handler::ALL {
            assert_eq!(Handler::parse(h.as_str()), Some(h));
        }
        assert_eq!(Handler::parse("bootstrap"), None);
        assert_eq!(Handler::parse(""), None);
    }
}
