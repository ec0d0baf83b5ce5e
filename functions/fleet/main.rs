//! `vodpipe-fleet`: the Lambda function on the EventBridge schedule and on ECS task state
//! changes. See [`vodpipe_functions::fleet`].

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::LambdaEvent;
use vodpipe_functions::env::{serve, Shared};
use vodpipe_functions::fleet::handle;

fn main() -> Result<(), lambda_runtime::Error> {
    serve(
        |shared: std::sync::Arc<Shared>, event: LambdaEvent<EventBridgeEvent>| async move {
            // The tick answers before the invocation's deadline, whatever it has left to do.
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let left =
                std::time::Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
            let until = std::time::Instant::now() + left;
            shared
                .run(move |s| handle(s, &event.payload, until))
                .await?
        },
    )
}
