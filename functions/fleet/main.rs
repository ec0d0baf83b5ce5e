//! `vodpipe-fleet`: the Lambda function on the EventBridge schedule and on ECS task state
//! changes. See [`vodpipe_functions::fleet`].

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::LambdaEvent;
use vodpipe_functions::env::{serve, Shared};
use vodpipe_functions::fleet::handle;

fn main() -> Result<(), lambda_runtime::Error> {
    serve(
        |shared: std::sync::Arc<Shared>, event: LambdaEvent<EventBridgeEvent>| async move {
            shared.run(move |s| handle(s, &event.payload)).await?
        },
    )
}
