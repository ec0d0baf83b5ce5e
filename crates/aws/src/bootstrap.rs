//! Creating the backend's resources, idempotently: the same names and settings the SAM
//! template declares, for a first deployment by hand, for development, and for the
//! emulator in tests. Running it twice changes nothing.

use crate::backend;
use crate::config::{AwsSettings, Bridge};
use crate::dynamo::{SOURCE_INDEX, STATUS_INDEX};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use vodpipe_core::ports::PortResult;

/// SQS visibility timeout new queues get (workers set their own on every receive).
const QUEUE_VISIBILITY_SECS: u32 = 60;

/// Creates (or finds) every resource of `settings`.
pub fn bootstrap(
    bridge: &Bridge,
    sdk: &aws_config::SdkConfig,
    settings: &AwsSettings,
) -> PortResult<()> {
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    );
    for bucket in [&settings.ingest_bucket, &settings.output_bucket] {
        let exists = bridge.run(s3.head_bucket().bucket(bucket).send()).is_ok();
        if !exists {
            bridge
                .run(s3.create_bucket().bucket(bucket).send())
                .map_err(|e| backend(&format!("creating bucket {bucket}"), e))?;
        }
    }
    let sqs = aws_sdk_sqs::Client::new(sdk);
    for q in AwsSettings::queues() {
        let dlq = bridge
            .run(
                sqs.create_queue()
                    .queue_name(settings.dlq_name(q))
                    .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
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
                    QUEUE_VISIBILITY_SECS.to_string(),
                )
                .attributes(QueueAttributeName::RedrivePolicy, redrive.clone())
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
                        .send(),
                )
                .map_err(|e| backend("updating a redrive policy", e))?;
        }
    }
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
        bridge
            .run(
                ddb.update_time_to_live()
                    .table_name(&settings.table)
                    .time_to_live_specification(
                        TimeToLiveSpecification::builder()
                            .enabled(true)
                            .attribute_name("expires_at")
                            .build()
                            .map_err(|e| backend("ttl", e))?,
                    )
                    .send(),
            )
            .map_err(|e| backend("enabling TTL", e))?;
    }
    Ok(())
}
