//! `vodpipe-stitch`: the Lambda function on the stitch queue (SQS, partial batch
//! responses). See [`vodpipe_functions::stitch`].

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::LambdaEvent;
use vodpipe_functions::env::{serve, Shared};
use vodpipe_functions::stitch::handle;

fn main() -> Result<(), lambda_runtime::Error> {
    serve(
        |shared: std::sync::Arc<Shared>, event: LambdaEvent<SqsEvent>| async move {
            shared.run(move |s| handle(s, &event.payload)).await
        },
    )
}
