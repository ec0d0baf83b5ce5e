//! The Lambda functions' logic, kept apart from the Lambda runtime so it is tested with
//! real event payloads and real AWS SDK calls against the emulator.
//!
//! The three functions are one binary, `vodpipe-lambda`, whose [`runtime`] runs the loop
//! the function's `Handler` names, over one module here each: [`ingest`] turns S3 ObjectCreated records into jobs, [`stitch`] publishes jobs
//! from the stitch queue with partial batch failures, [`fleet`] keeps worker capacity in
//! line with queue depth and records Spot interruptions. [`env`] builds the AWS ports once
//! per execution environment and runs the synchronous use-cases off the runtime's threads.

pub mod env;
pub mod fleet;
pub mod ingest;
pub mod runtime;
pub mod s3_keys;
pub mod stitch;

/// What a function can fail with at its edge.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    /// The backend (S3, SQS, DynamoDB, ECS, CloudFront) failed; the event is retried.
    #[error(transparent)]
    Port(#[from] vodpipe_control::ports::PortError),
    /// Set-up is wrong (missing variable, bad value); no retry will help.
    #[error("configuration: {0}")]
    Config(String),
    /// Some records of an event could not be handled; Lambda retries the event, and the
    /// records that did succeed are no-ops the second time (ingest is idempotent).
    #[error("{failed} of {total} records failed: {first}")]
    Records {
        /// Records that failed.
        failed: usize,
        /// Records in the event.
        total: usize,
        /// The first failure, for the log line Lambda records.
        first: String,
    },
    /// The blocking task running a use-case panicked or was cancelled.
    #[error("use-case task: {0}")]
    Task(String),
}

impl From<FunctionError> for lambda_runtime::Diagnostic {
    /// Names the kind of failure in `errorType`, which is what CloudWatch and the
    /// invoke response show first.
    fn from(e: FunctionError) -> Self {
        let error_type = match &e {
            FunctionError::Port(_) => "vodpipe.Backend",
            FunctionError::Config(_) => "vodpipe.Configuration",
            FunctionError::Records { .. } => "vodpipe.RecordsFailed",
            FunctionError::Task(_) => "vodpipe.Task",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}
