//! The AWS backend: every port on the real AWS SDKs.
//!
//! [`s3`] is the object store, [`sqs`] the tier, stitch and dead-letter queues, [`dynamo`]
//! the job store (one table, an index by state, conditional writes and a transaction for
//! exactly-once completion). [`config`] builds the clients from the environment, so the
//! same binary talks to AWS or to a local emulator (`AWS_ENDPOINT_URL`). [`bootstrap`]
//! creates the resources idempotently. The ports are synchronous; each adapter drives the
//! async SDK on a small runtime of its own.

pub mod bootstrap;
pub mod cdn;
pub mod config;
pub mod dynamo;
pub mod events;
pub mod fleet;
pub mod loopback;
pub mod s3;
pub mod signed_urls;
pub mod speke;
pub mod sqs;

use vodpipe_control::ports::PortError;

/// Maps an SDK error to a backend port error, keeping the service's message.
pub(crate) fn backend<E: std::fmt::Debug>(what: &str, e: E) -> PortError {
    PortError::Backend(format!("{what}: {e:?}"))
}

use std::sync::Arc;
use std::time::Duration;
use vodpipe_control::ports::{Delivery, JobStore, Message, PortResult, Queue, Tier, WorkQueue};
use vodpipe_control::records::{Fields, Index, Key, RecordStore, Write};

/// Worker capacity managed outside vodpipe (workers started by hand or by the fleet
/// function); `ensure_capacity` only reports. The ECS adapter replaces it in deployments.
pub struct ManualFleet;

impl vodpipe_control::ports::Fleet for ManualFleet {
    fn ensure_capacity(&self, tier: Tier, workers: u32) -> PortResult<u32> {
        tracing::info!(%tier, workers, "capacity is managed outside this process");
        Ok(0)
    }
}

/// No event bus configured (`VODPIPE_EVENT_BUS` unset): state changes are logged only.
pub struct NoEvents;

impl vodpipe_control::ports::JobEvents for NoEvents {
    fn job_changed(&self, job: &vodpipe_control::ports::JobRecord) -> PortResult<()> {
        tracing::debug!(job = %job.id, status = %job.status, "no event bus configured; state change not announced");
        Ok(())
    }

    fn enabled(&self) -> bool {
        false
    }
}

/// No CDN in front of the bucket: invalidations are logged only.
pub struct NoCdn;

impl vodpipe_control::ports::Cdn for NoCdn {
    fn invalidate(&self, paths: &[String], caller_reference: &str) -> PortResult<()> {
        tracing::info!(
            ?paths,
            caller_reference,
            "no CDN configured; nothing to invalidate"
        );
        Ok(())
    }
}

/// The tag a published source carries (the template's `SourceRetention` lifecycle rules
/// select by it).
pub const PUBLISHED_TAG: &str = "vodpipe-published";

/// Everything the CLI and the worker need on AWS, from the environment.
pub struct Aws {
    /// The runtime the adapters share.
    pub bridge: Arc<config::Bridge>,
    /// Resource names.
    pub settings: config::AwsSettings,
    /// Jobs and queues.
    pub state: AwsState,
    /// The output bucket.
    pub objects: s3::S3Objects,
    /// The ingest bucket (sources, for `head` and uploads).
    pub ingest: s3::S3Objects,
    /// Job-state events (`VODPIPE_EVENT_BUS`); none put when unset.
    events: Box<dyn vodpipe_control::ports::JobEvents>,
    fleet: Box<dyn vodpipe_control::ports::Fleet>,
    cdn: Box<dyn vodpipe_control::ports::Cdn>,
}

fn env_list(name: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl Aws {
    /// Connects with settings from `VODPIPE_…` variables and credentials, region and
    /// endpoint from the usual AWS ones.
    pub fn from_env() -> PortResult<Self> {
        let settings = config::AwsSettings::from_env()?;
        Self::connect(settings)
    }

    /// Connects to the resources named in `settings`.
    pub fn connect(settings: config::AwsSettings) -> PortResult<Self> {
        let bridge = Arc::new(config::Bridge::new()?);
        let sdk = bridge.sdk_config();
        // Capacity and CDN are optional: without an ECS cluster workers are started by
        // other means; without distributions there is nothing to invalidate.
        let fleet: Box<dyn vodpipe_control::ports::Fleet> =
            match std::env::var("VODPIPE_ECS_CLUSTER") {
                Ok(cluster) if !cluster.is_empty() => Box::new(fleet::EcsFleet::new(
                    bridge.clone(),
                    &sdk,
                    fleet::EcsSettings {
                        cluster,
                        task_definition: std::env::var("VODPIPE_TASK_DEFINITION")
                            .unwrap_or_else(|_| "vodpipe-worker".into()),
                        container: std::env::var("VODPIPE_WORKER_CONTAINER")
                            .unwrap_or_else(|_| "worker".into()),
                        subnets: env_list("VODPIPE_SUBNETS"),
                        security_groups: env_list("VODPIPE_SECURITY_GROUPS"),
                        assign_public_ip: std::env::var("VODPIPE_ASSIGN_PUBLIC_IP")
                            .is_ok_and(|v| v.eq_ignore_ascii_case("enabled")),
                        max_per_tier: std::env::var("VODPIPE_MAX_WORKERS")
                            .ok()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(20),
                        launch_backoff_secs: config::launch_backoff_secs(),
                        warm_per_tier: std::env::var("VODPIPE_WARM_WORKERS")
                            .ok()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0),
                    },
                    &settings.table,
                )),
                _ => Box::new(ManualFleet),
            };
        let events = std::env::var("VODPIPE_EVENT_BUS")
            .ok()
            .filter(|b| !b.is_empty())
            .map_or_else(
                || Box::new(NoEvents) as Box<dyn vodpipe_control::ports::JobEvents>,
                |bus| Box::new(events::BusEvents::new(bridge.clone(), &sdk, &bus)),
            );
        let distributions = env_list("VODPIPE_DISTRIBUTION_IDS");
        let cdn: Box<dyn vodpipe_control::ports::Cdn> = if distributions.is_empty() {
            Box::new(NoCdn)
        } else {
            Box::new(cdn::CloudFrontCdn::new(bridge.clone(), &sdk, distributions))
        };
        Ok(Aws {
            state: AwsState::connect(bridge.clone(), &sdk, &settings)?,
            objects: s3::S3Objects::new(bridge.clone(), &sdk, &settings.output_bucket)
                .with_source_access(s3::SourceAccess::from_env()?)
                .with_profiles_in(&settings.ingest_bucket),
            ingest: s3::S3Objects::new(bridge.clone(), &sdk, &settings.ingest_bucket),
            bridge,
            settings,
            events,
            fleet,
            cdn,
        })
    }

    /// An S3 object's identity as a job source: its URI, its key, and a job id from bucket,
    /// key and version id (or ETag when the bucket is not versioned). The CLI and the
    /// ingest function derive it the same way, so both find the same job.
    pub fn source(&self, uri: &str) -> PortResult<vodpipe_control::ingest::Source> {
        self.source_at(uri, None)
    }

    /// [`Self::source`] for one version of the object (the one an S3 event names), so an
    /// overwrite between the upload and its event cannot swap the bytes a job is made of.
    pub fn source_at(
        &self,
        uri: &str,
        version: Option<&str>,
    ) -> PortResult<vodpipe_control::ingest::Source> {
        let (bucket, key) = s3::parse_s3_uri(uri)
            .ok_or_else(|| PortError::Backend(format!("{uri} is not an s3://BUCKET/KEY URI")))?;
        let (identity, _size, version) = self.ingest.head_at(uri, version)?;
        Ok(vodpipe_control::ingest::Source {
            job_id: vodpipe_control::job::job_id(bucket, key, &identity),
            uri: uri.to_string(),
            key: key.to_string(),
            version,
            sequencer: None,
        })
    }

    /// Tags a published job's source `vodpipe-published=true` (the exact version the job
    /// was made of), which the ingest bucket's `SourceRetention` rule selects.
    pub fn mark_source_published(&self, job_id: &str) -> PortResult<()> {
        let job = self
            .state
            .jobs
            .job(job_id)?
            .ok_or_else(|| PortError::NotFound(job_id.into()))?;
        let version = job.settings.as_ref().and_then(|s| s.source_version.clone());
        self.ingest
            .tag(&job.source, version.as_deref(), PUBLISHED_TAG, "true")
    }

    /// The ports over AWS.
    pub fn ports(&self) -> vodpipe_control::pipeline::Ports<'_> {
        vodpipe_control::pipeline::Ports {
            objects: &self.objects,
            jobs: &self.state,
            queue: &self.state,
            fleet: &*self.fleet,
            cdn: &*self.cdn,
            events: &*self.events,
        }
    }
}

/// The backend's state half (DynamoDB jobs + SQS queues) as one value, the shape the
/// worker and the contract suite take.
pub struct AwsState {
    /// The job store.
    pub jobs: dynamo::DynamoJobs,
    /// The queues.
    pub queues: sqs::SqsQueues,
}

impl AwsState {
    /// Connects to the resources named in `settings`.
    pub fn connect(
        bridge: Arc<config::Bridge>,
        sdk: &aws_config::SdkConfig,
        settings: &config::AwsSettings,
    ) -> PortResult<Self> {
        Ok(AwsState {
            jobs: dynamo::DynamoJobs::new(bridge.clone(), sdk, &settings.table),
            queues: sqs::SqsQueues::new(bridge, sdk, settings)?,
        })
    }
}

/// The lifecycle runs on the table: `AwsState` is a job store through
/// [`vodpipe_control::lifecycle`], like every record store.
impl RecordStore for AwsState {
    fn get(&self, key: &Key) -> PortResult<Option<Fields>> {
        self.jobs.get(key)
    }
    fn create(&self, key: &Key, fields: &Fields) -> PortResult<bool> {
        self.jobs.create(key, fields)
    }
    fn put(&self, key: &Key, fields: &Fields) -> PortResult<()> {
        self.jobs.put(key, fields)
    }
    fn create_all(&self, records: &[(Key, Fields)]) -> PortResult<()> {
        self.jobs.create_all(records)
    }
    fn update(&self, w: &Write) -> PortResult<Option<Fields>> {
        self.jobs.update(w)
    }
    fn transact(&self, writes: &[Write]) -> PortResult<bool> {
        self.jobs.transact(writes)
    }
    fn query(&self, pk: &str, prefix: &str) -> PortResult<Vec<(String, Fields)>> {
        self.jobs.query(pk, prefix)
    }
    fn index(&self, index: Index, value: &str, newest_first: bool) -> PortResult<Vec<String>> {
        self.jobs.index(index, value, newest_first)
    }
    fn remove(&self, key: &Key) -> PortResult<()> {
        self.jobs.remove(key)
    }
}

impl WorkQueue for AwsState {
    fn send(&self, queue: Queue, message: &Message) -> PortResult<()> {
        self.queues.send(queue, message)
    }
    fn send_many(&self, queue: Queue, messages: &[Message]) -> PortResult<()> {
        self.queues.send_many(queue, messages)
    }
    fn receive(&self, queues: &[Queue], visibility: Duration) -> PortResult<Option<Delivery>> {
        self.queues.receive(queues, visibility)
    }
    fn extend(&self, d: &Delivery, visibility: Duration) -> PortResult<()> {
        self.queues.extend(d, visibility)
    }
    fn release(&self, d: &Delivery, delay: Duration) -> PortResult<()> {
        self.queues.release(d, delay)
    }
    fn delete(&self, d: &Delivery) -> PortResult<()> {
        self.queues.delete(d)
    }
    fn receive_dead(&self, visibility: Duration) -> PortResult<Option<Delivery>> {
        self.queues.receive_dead(visibility)
    }
    fn depth(&self, queue: Queue) -> PortResult<u64> {
        self.queues.depth(queue)
    }
}
