//! Settings from the environment and the SDK clients built from them.
//!
//! Every resource name comes from one `VODPIPE_…` variable, printed by `vodpipe aws
//! bootstrap`. `AWS_ENDPOINT_URL` (honoured by the SDK itself) points every client at an
//! emulator. Timeouts and retries are set deliberately: a worker would rather fail an SDK
//! call in seconds and retry the turn than hang for the SDK's defaults.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use std::future::Future;
use std::time::Duration;
use vodpipe_control::ports::{PortError, PortResult, Queue};

/// Names of everything the backend uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// Bucket sources are uploaded to.
    pub ingest_bucket: String,
    /// Bucket outputs are published to.
    pub output_bucket: String,
    /// The DynamoDB table.
    pub table: String,
    /// Queue name prefix: `<prefix>-premium`, `-standard`, `-bulk`, `-stitch`, each with
    /// a `-dlq` twin.
    pub queue_prefix: String,
    /// Receives before a message moves to its dead-letter queue.
    pub max_receives: u32,
}

impl AwsSettings {
    /// The names for a deployment called `name` in `account` and `region`, as the SAM
    /// template makes them: S3 bucket names are global, so they carry the account and the
    /// Region (`<name>-<account>-<region>-ingest`) and need no editing to be unique; the
    /// table and queues are per account and Region already.
    pub fn for_name(name: &str, account: &str, region: &str) -> Self {
        AwsSettings {
            ingest_bucket: format!("{name}-{account}-{region}-ingest"),
            output_bucket: format!("{name}-{account}-{region}-output"),
            table: format!("{name}-jobs"),
            queue_prefix: name.to_string(),
            max_receives: 5,
        }
    }

    /// [`AwsSettings::for_name`] in the account the credentials belong to (STS
    /// `GetCallerIdentity`) and the configured Region.
    pub fn resolve(bridge: &Bridge, sdk: &SdkConfig, name: &str) -> PortResult<Self> {
        let (account, region) = caller_account(bridge, sdk)?;
        Ok(Self::for_name(name, &account, &region))
    }

    /// Reads `VODPIPE_INGEST_BUCKET`, `VODPIPE_OUTPUT_BUCKET`, `VODPIPE_TABLE`,
    /// `VODPIPE_QUEUE_PREFIX` and `VODPIPE_MAX_RECEIVES`.
    pub fn from_env() -> PortResult<Self> {
        let var = |k: &str| {
            std::env::var(k).map_err(|_| {
                PortError::Backend(format!(
                    "{k} is not set (run `vodpipe aws bootstrap` and export what it prints)"
                ))
            })
        };
        Ok(AwsSettings {
            ingest_bucket: var("VODPIPE_INGEST_BUCKET")?,
            output_bucket: var("VODPIPE_OUTPUT_BUCKET")?,
            table: var("VODPIPE_TABLE")?,
            queue_prefix: var("VODPIPE_QUEUE_PREFIX")?,
            max_receives: std::env::var("VODPIPE_MAX_RECEIVES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(5),
        })
    }

    /// The environment that configures other processes (commands, functions, tasks) for
    /// these resources.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("VODPIPE_BACKEND", "aws".to_string()),
            ("VODPIPE_INGEST_BUCKET", self.ingest_bucket.clone()),
            ("VODPIPE_OUTPUT_BUCKET", self.output_bucket.clone()),
            ("VODPIPE_TABLE", self.table.clone()),
            ("VODPIPE_QUEUE_PREFIX", self.queue_prefix.clone()),
            ("VODPIPE_MAX_RECEIVES", self.max_receives.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// [`AwsSettings::env`] as `export` lines for a shell.
    pub fn exports(&self) -> String {
        self.env()
            .iter()
            .map(|(k, v)| format!("export {k}={v}\n"))
            .collect()
    }

    /// The name of a queue.
    pub fn queue_name(&self, q: Queue) -> String {
        format!("{}-{}", self.queue_prefix, q.as_str())
    }

    /// The queue uploads reach the ingest function through (the ingest bucket's
    /// notifications; the template's `IngestEventsQueue`).
    pub fn ingest_events_queue_name(&self) -> String {
        format!("{}-ingest-events", self.queue_prefix)
    }

    /// The ingest function's dead-letter queue (the S3 events it gave up on; the
    /// template's `IngestEventsDlq`).
    pub fn ingest_events_dlq_name(&self) -> String {
        format!("{}-ingest-events-dlq", self.queue_prefix)
    }

    /// The name of a queue's dead-letter queue.
    pub fn dlq_name(&self, q: Queue) -> String {
        format!("{}-{}-dlq", self.queue_prefix, q.as_str())
    }

    /// Every queue, in priority order.
    pub fn queues() -> [Queue; 4] {
        Queue::all()
    }
}

/// How long a tier's launches wait after its first failed launch in a row (doubling with
/// each further round, `vodpipe_control::sweep::launch_allowed_at`): a deployment's
/// `VODPIPE_LAUNCH_BACKOFF_SECS`, 60 by default. Failures closer together than this are
/// one launch round.
pub fn launch_backoff_secs() -> f64 {
    std::env::var("VODPIPE_LAUNCH_BACKOFF_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
        .unwrap_or(60.0)
}

/// The account id the credentials belong to and the configured Region.
pub fn caller_account(bridge: &Bridge, sdk: &SdkConfig) -> PortResult<(String, String)> {
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .ok_or_else(|| PortError::Backend("no AWS Region configured (set AWS_REGION)".into()))?;
    let who = bridge
        .run(aws_sdk_sts::Client::new(sdk).get_caller_identity().send())
        .map_err(|e| crate::backend("sts get caller identity", e))?;
    let account = who
        .account()
        .ok_or_else(|| PortError::Backend("STS named no account".into()))?
        .to_string();
    Ok((account, region))
}

/// A small tokio runtime that runs SDK futures for the synchronous ports. `block_on` may
/// be called from several threads at once.
pub struct Bridge {
    rt: tokio::runtime::Runtime,
}

impl Bridge {
    /// A two-thread runtime.
    pub fn new() -> PortResult<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| PortError::Backend(format!("starting the AWS runtime: {e}")))?;
        Ok(Bridge { rt })
    }

    /// Runs `f` to completion.
    pub fn run<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Loads the SDK configuration (credentials, region, endpoint) from the environment.
    pub fn sdk_config(&self) -> SdkConfig {
        self.run(loader().load())
    }

    /// [`Self::sdk_config`] signing with `credentials` instead of the environment's: one
    /// process acting as several roles (the emulated deployment's tests).
    pub fn sdk_config_as(&self, credentials: aws_sdk_sts::config::Credentials) -> SdkConfig {
        self.run(loader().credentials_provider(credentials).load())
    }
}

/// Every client's settings: retries and timeouts a worker can live with.
fn loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(4))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .operation_timeout(Duration::from_secs(120))
                .build(),
        )
}
