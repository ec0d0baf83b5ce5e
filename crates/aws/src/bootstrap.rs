//! Creating the backend's resources, idempotently: the same names and settings the SAM
//! template declares, for a first deployment by hand, for development, and for the
//! emulator in tests. Running it twice changes nothing.

use crate::backend;
use crate::config::{AwsSettings, Bridge};
use crate::dynamo::{SOURCE_INDEX, STATUS_INDEX};
use crate::s3::{SUPERSEDED_EXPIRY_DAYS, SUPERSEDED_TAG};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, Projection, ProjectionType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketVersioningStatus,
    ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
    NoncurrentVersionExpiration, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tag, Transition, TransitionStorageClass, VersioningConfiguration,
};
use aws_sdk_sqs::types::QueueAttributeName;
use vodpipe_control::ports::{PortError, PortResult, Queue};

/// SQS visibility timeout of the tier queues (workers set their own on every receive).
pub const WORK_VISIBILITY_SECS: u32 = 60;
/// The stitch function's timeout; Lambda wants the queue's visibility at six times it.
pub const STITCH_TIMEOUT_SECS: u32 = 120;
/// SQS visibility timeout of the stitch queue.
pub const STITCH_VISIBILITY_SECS: u32 = 6 * STITCH_TIMEOUT_SECS;
/// How long a dead letter is kept (the SQS maximum, 14 days).
pub const DLQ_RETENTION_SECS: u32 = 1_209_600;
/// How long work and stitch requests are kept: also the SQS maximum. SQS's default of four
/// days would silently drop the backlog of a long wait for capacity (a quota increase, a
/// Spot drought) and strand its jobs.
pub const QUEUE_RETENTION_SECS: u32 = 1_209_600;
/// The attribute DynamoDB expires finished jobs by.
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// The ingest function's timeout; the upload queue's visibility is six times it.
pub const INGEST_TIMEOUT_SECS: u32 = 300;
/// SQS visibility timeout of the upload queue (a failed or deferred try sets its own).
pub const INGEST_EVENTS_VISIBILITY_SECS: u32 = 6 * INGEST_TIMEOUT_SECS;
/// Receives of an upload event before it is dead-lettered: a deferral for a settings file
/// and several failed tries.
pub const INGEST_EVENTS_MAX_RECEIVES: u32 = 8;
/// Days a replaced source version is kept in the (versioned) ingest bucket.
pub const NONCURRENT_SOURCE_DAYS: i32 = 30;
/// Days after upload a published source moves to Standard-IA (the template's
/// `SourceRetentionDays` default).
pub const PUBLISHED_SOURCE_DAYS: i32 = 30;
/// Days after which an unfinished multipart upload is aborted.
pub const ABORT_MULTIPART_DAYS: i32 = 7;

/// The visibility timeout a queue is created with.
pub fn visibility_secs(q: Queue) -> u32 {
    match q {
        Queue::Stitch => STITCH_VISIBILITY_SECS,
        Queue::Work(_) => WORK_VISIBILITY_SECS,
    }
}

/// A bucket policy that refuses every request not made over TLS.
pub fn tls_only_policy(bucket: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "TlsOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}
        }]
    })
    .to_string()
}

/// S3's rules for a bucket name, checked before anything is created so a long deployment
/// name fails with a reason instead of half a deployment.
pub fn check_bucket_name(bucket: &str) -> PortResult<()> {
    let chars_ok = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if (3..=63).contains(&bucket.len()) && chars_ok {
        return Ok(());
    }
    Err(PortError::Backend(format!(
        "bucket name {bucket:?} is not valid for S3 (3-63 lower-case letters, digits, dashes): \
         use a deployment name of at most 24 such characters"
    )))
}

/// Waits (up to five minutes) for a new table to leave CREATING: DynamoDB refuses TTL and
/// backup settings on a table that is not ACTIVE yet.
fn wait_active(bridge: &Bridge, ddb: &aws_sdk_dynamodb::Client, table: &str) -> PortResult<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let status = bridge
            .run(ddb.describe_table().table_name(table).send())
            .map_err(|e| backend(&format!("describing table {table}"), e))?
            .table()
            .and_then(|t| t.table_status().cloned());
        if status == Some(aws_sdk_dynamodb::types::TableStatus::Active) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(PortError::Backend(format!(
                "table {table} is still {status:?} after five minutes"
            )));
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

/// Maps an SDK error about `bucket` to a port error.
fn fail<E: std::fmt::Debug>(bucket: &str, what: &str) -> impl FnOnce(E) -> PortError {
    let what = format!("{what} on {bucket}");
    move |e| backend(&what, e)
}

/// Private, encrypted, TLS-only; the ingest bucket versioned (a re-upload is a new job and
/// the replaced version stays for a while); lifecycles that clean up after themselves.
fn secure_bucket(
    bridge: &Bridge,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    ingest: bool,
    plain_http: bool,
) -> PortResult<()> {
    bridge
        .run(
            s3.put_public_access_block()
                .bucket(bucket)
                .public_access_block_configuration(
                    PublicAccessBlockConfiguration::builder()
                        .block_public_acls(true)
                        .block_public_policy(true)
                        .ignore_public_acls(true)
                        .restrict_public_buckets(true)
                        .build(),
                )
                .send(),
        )
        .map_err(fail(bucket, "blocking public access"))?;
    bridge
        .run(
            s3.put_bucket_encryption()
                .bucket(bucket)
                .server_side_encryption_configuration(
                    ServerSideEncryptionConfiguration::builder()
                        .rules(
                            ServerSideEncryptionRule::builder()
                                .apply_server_side_encryption_by_default(
                                    ServerSideEncryptionByDefault::builder()
                                        .sse_algorithm(ServerSideEncryption::Aes256)
                                        .build()
                                        .map_err(fail(bucket, "encryption"))?,
                                )
                                .build(),
                        )
                        .build()
                        .map_err(fail(bucket, "encryption"))?,
                )
                .send(),
        )
        .map_err(fail(bucket, "setting default encryption"))?;
    if plain_http {
        // An emulator on plain HTTP would refuse every request under this policy.
        tracing::warn!(%bucket, "endpoint is plain HTTP: TLS-only bucket policy not set");
    } else {
        bridge
            .run(
                s3.put_bucket_policy()
                    .bucket(bucket)
                    .policy(tls_only_policy(bucket))
                    .send(),
            )
            .map_err(fail(bucket, "setting the TLS-only policy"))?;
    }
    let abort = LifecycleRule::builder()
        .id("abort-incomplete-uploads")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(ABORT_MULTIPART_DAYS)
                .build(),
        )
        .build()
        .map_err(fail(bucket, "lifecycle"))?;
    let mut rules = vec![abort];
    if ingest {
        bridge
            .run(
                s3.put_bucket_versioning()
                    .bucket(bucket)
                    .versioning_configuration(
                        VersioningConfiguration::builder()
                            .status(BucketVersioningStatus::Enabled)
                            .build(),
                    )
                    .send(),
            )
            .map_err(fail(bucket, "enabling versioning"))?;
        rules.push(
            LifecycleRule::builder()
                .id("expire-replaced-sources")
                .status(ExpirationStatus::Enabled)
                .filter(LifecycleRuleFilter::builder().prefix("").build())
                .noncurrent_version_expiration(
                    NoncurrentVersionExpiration::builder()
                        .noncurrent_days(NONCURRENT_SOURCE_DAYS)
                        .build(),
                )
                .build()
                .map_err(fail(bucket, "lifecycle"))?,
        );
        // The template's default `SourceRetention`: a published source moves to
        // Standard-IA after `SourceRetentionDays`.
        rules.push(
            LifecycleRule::builder()
                .id("published-sources-to-infrequent-access")
                .status(ExpirationStatus::Enabled)
                .filter(
                    LifecycleRuleFilter::builder()
                        .tag(
                            Tag::builder()
                                .key(crate::PUBLISHED_TAG)
                                .value("true")
                                .build()
                                .map_err(fail(bucket, "lifecycle"))?,
                        )
                        .build(),
                )
                .transitions(
                    Transition::builder()
                        .days(PUBLISHED_SOURCE_DAYS)
                        .storage_class(TransitionStorageClass::StandardIa)
                        .build(),
                )
                .build()
                .map_err(fail(bucket, "lifecycle"))?,
        );
    } else {
        rules.push(
            LifecycleRule::builder()
                .id("expire-superseded-jobs")
                .status(ExpirationStatus::Enabled)
                .filter(
                    LifecycleRuleFilter::builder()
                        .tag(
                            Tag::builder()
                                .key(SUPERSEDED_TAG)
                                .value("true")
                                .build()
                                .map_err(fail(bucket, "lifecycle"))?,
                        )
                        .build(),
                )
                .expiration(
                    LifecycleExpiration::builder()
                        .days(SUPERSEDED_EXPIRY_DAYS)
                        .build(),
                )
                .build()
                .map_err(fail(bucket, "lifecycle"))?,
        );
    }
    bridge
        .run(
            s3.put_bucket_lifecycle_configuration()
                .bucket(bucket)
                .lifecycle_configuration(
                    BucketLifecycleConfiguration::builder()
                        .set_rules(Some(rules))
                        .build()
                        .map_err(fail(bucket, "lifecycle"))?,
                )
                .send(),
        )
        .map_err(fail(bucket, "setting the lifecycle"))?;
    Ok(())
}

/// Creates (or finds) every resource of `settings`.
pub fn bootstrap(
    bridge: &Bridge,
    sdk: &aws_config::SdkConfig,
    settings: &AwsSettings,
) -> PortResult<()> {
    for bucket in [&settings.ingest_bucket, &settings.output_bucket] {
        check_bucket_name(bucket)?;
    }
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    );
    let plain_http = sdk.endpoint_url().is_some_and(|u| u.starts_with("http://"));
    for (bucket, ingest) in [
        (&settings.ingest_bucket, true),
        (&settings.output_bucket, false),
    ] {
        let exists = bridge.run(s3.head_bucket().bucket(bucket).send()).is_ok();
        if !exists {
            bridge
                .run(s3.create_bucket().bucket(bucket).send())
                .map_err(|e| backend(&format!("creating bucket {bucket}"), e))?;
        }
        secure_bucket(bridge, &s3, bucket, ingest, plain_http)?;
    }
    let sqs = aws_sdk_sqs::Client::new(sdk);
    for q in AwsSettings::queues() {
        let dlq = bridge
            .run(
                sqs.create_queue()
                    .queue_name(settings.dlq_name(q))
                    .attributes(
                        QueueAttributeName::MessageRetentionPeriod,
                        DLQ_RETENTION_SECS.to_string(),
                    )
                    .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
                    .send(),
            )
            .map_err(|e| backend("creating a dead-letter queue", e))?;
        let dlq_url = dlq.queue_url().unwrap_or_default().to_string();
        let arn = bridge
            .run(
                sqs.get_queue_attributes()
                    .queue_url(&dlq_url)
                    .attribute_names(QueueAttributeName::QueueArn)
                    .send(),
            )
            .map_err(|e| backend("reading a dead-letter queue", e))?
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .unwrap_or_default();
        let redrive = serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": settings.max_receives}).to_string();
        let name = settings.queue_name(q);
        let created = bridge.run(
            sqs.create_queue()
                .queue_name(&name)
                .attributes(
                    QueueAttributeName::VisibilityTimeout,
                    visibility_secs(q).to_string(),
                )
                .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
                .attributes(QueueAttributeName::RedrivePolicy, redrive.clone())
                .attributes(
                    QueueAttributeName::MessageRetentionPeriod,
                    QUEUE_RETENTION_SECS.to_string(),
                )
                .send(),
        );
        if let Err(e) = created {
            // Exists with other attributes: bring the redrive policy up to date.
            let url = bridge
                .run(sqs.get_queue_url().queue_name(&name).send())
                .map_err(|_| backend(&format!("creating queue {name}"), e))?
                .queue_url()
                .unwrap_or_default()
                .to_string();
            bridge
                .run(
                    sqs.set_queue_attributes()
                        .queue_url(url)
                        .attributes(QueueAttributeName::RedrivePolicy, redrive)
                        .attributes(
                            QueueAttributeName::VisibilityTimeout,
                            visibility_secs(q).to_string(),
                        )
                        .attributes(
                            QueueAttributeName::MessageRetentionPeriod,
                            QUEUE_RETENTION_SECS.to_string(),
                        )
                        .send(),
                )
                .map_err(|e| backend("updating a redrive policy", e))?;
        }
    }
    // The S3 events the ingest function gave up on; the fleet's tick handles them again.
    bridge
        .run(
            sqs.create_queue()
                .queue_name(settings.ingest_events_dlq_name())
                .attributes(
                    QueueAttributeName::MessageRetentionPeriod,
                    DLQ_RETENTION_SECS.to_string(),
                )
                .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
                .send(),
        )
        .map_err(|e| backend("creating the ingest events' dead-letter queue", e))?;
    // The queue uploads wait on for the ingest function (the template's
    // `IngestEventsQueue`), dead-lettering into the queue above.
    let dlq_url = bridge
        .run(
            sqs.get_queue_url()
                .queue_name(settings.ingest_events_dlq_name())
                .send(),
        )
        .map_err(|e| backend("finding the ingest events' dead-letter queue", e))?
        .queue_url()
        .unwrap_or_default()
        .to_string();
    let dlq_arn = bridge
        .run(
            sqs.get_queue_attributes()
                .queue_url(&dlq_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send(),
        )
        .map_err(|e| backend("reading the ingest events' dead-letter queue", e))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": INGEST_EVENTS_MAX_RECEIVES,
    })
    .to_string();
    bridge
        .run(
            sqs.create_queue()
                .queue_name(settings.ingest_events_queue_name())
                .attributes(QueueAttributeName::RedrivePolicy, redrive)
                .attributes(
                    QueueAttributeName::VisibilityTimeout,
                    INGEST_EVENTS_VISIBILITY_SECS.to_string(),
                )
                .attributes(
                    QueueAttributeName::MessageRetentionPeriod,
                    QUEUE_RETENTION_SECS.to_string(),
                )
                .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
                .send(),
        )
        .map_err(|e| backend("creating the upload queue", e))?;
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    if bridge
        .run(ddb.describe_table().table_name(&settings.table).send())
        .is_err()
    {
        let attr = |name: &str, t: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(t)
                .build()
        };
        let key = |name: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
        };
        let gsi = |index: &str, pk: &str| {
            GlobalSecondaryIndex::builder()
                .index_name(index)
                .key_schema(key(pk, KeyType::Hash).map_err(|e| backend("schema", e))?)
                .key_schema(key("created_at", KeyType::Range).map_err(|e| backend("schema", e))?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::KeysOnly)
                        .build(),
                )
                .build()
                .map_err(|e| backend("index", e))
        };
        let req = ddb
            .create_table()
            .table_name(&settings.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                attr("pk", ScalarAttributeType::S).map_err(|e| backend("schema", e))?,
            )
            .attribute_definitions(
                attr("sk", ScalarAttributeType::S).map_err(|e| backend("schema", e))?,
            )
            .attribute_definitions(
                attr("status", ScalarAttributeType::S).map_err(|e| backend("schema", e))?,
            )
            .attribute_definitions(
                attr("source", ScalarAttributeType::S).map_err(|e| backend("schema", e))?,
            )
            .attribute_definitions(
                attr("created_at", ScalarAttributeType::N).map_err(|e| backend("schema", e))?,
            )
            .key_schema(key("pk", KeyType::Hash).map_err(|e| backend("schema", e))?)
            .key_schema(key("sk", KeyType::Range).map_err(|e| backend("schema", e))?)
            .global_secondary_indexes(gsi(STATUS_INDEX, "status")?)
            .global_secondary_indexes(gsi(SOURCE_INDEX, "source")?);
        bridge
            .run(req.send())
            .map_err(|e| backend(&format!("creating table {}", settings.table), e))?;
        wait_active(bridge, &ddb, &settings.table)?;
        bridge
            .run(
                ddb.update_time_to_live()
                    .table_name(&settings.table)
                    .time_to_live_specification(
                        TimeToLiveSpecification::builder()
                            .enabled(true)
                            .attribute_name(TTL_ATTRIBUTE)
                            .build()
                            .map_err(|e| backend("ttl", e))?,
                    )
                    .send(),
            )
            .map_err(|e| backend("enabling TTL", e))?;
    }
    bridge
        .run(
            ddb.update_continuous_backups()
                .table_name(&settings.table)
                .point_in_time_recovery_specification(
                    PointInTimeRecoverySpecification::builder()
                        .point_in_time_recovery_enabled(true)
                        .build()
                        .map_err(|e| backend("point-in-time recovery", e))?,
                )
                .send(),
        )
        .map_err(|e| backend("enabling point-in-time recovery", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_name_too_long_for_a_bucket_is_refused_before_anything_is_made() {
        let ok = AwsSettings::for_name(&"a".repeat(24), "123456789012", "ap-southeast-3");
        assert!(check_bucket_name(&ok.output_bucket).is_ok());
        let long = AwsSettings::for_name(&"a".repeat(30), "123456789012", "ap-southeast-3");
        let e = check_bucket_name(&long.output_bucket).unwrap_err();
        assert!(e.to_string().contains("at most 24"), "{e}");
        assert!(check_bucket_name("Upper-Case").is_err());
    }
}
