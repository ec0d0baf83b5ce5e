//! `vodpipe aws bootstrap` and `infra/template.yaml` create the same names and settings:
//! the template is read as YAML, bootstrap is run against the emulator, and what it
//! created is read back through the SDK and compared, resource by resource.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vodpipe_testkit::emulator;

use std::collections::BTreeMap;
use std::path::Path;
use vodpipe_aws::bootstrap;
use vodpipe_aws::config::{AwsSettings, Bridge};
use vodpipe_control::ports::{Queue, Tier};
use yaml_rust2::{Yaml, YamlLoader};

/// The template with `${Name}` (and `!Ref Name`) standing for `name`, deployed in the
/// emulator's account and Region. Short-form tags (`!Sub`, `!GetAtt`) are dropped by the
/// loader, leaving their argument.
fn template(name: &str) -> Yaml {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("${Name}", name)
        .replace("${AWS::AccountId}", emulator::ACCOUNT)
        .replace("${AWS::Region}", emulator::REGION);
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

fn resource<'a>(t: &'a Yaml, logical: &str) -> &'a Yaml {
    let r = &t["Resources"][logical];
    assert!(!r.is_badvalue(), "no resource {logical} in the template");
    &r["Properties"]
}

fn int(y: &Yaml) -> i64 {
    y.as_i64()
        .or_else(|| y.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {y:?}"))
}

/// A `!Ref Param` (which the YAML reader gives as the bare name) as the parameter's
/// default; anything else as it is.
fn default_of(t: &Yaml, y: &Yaml) -> Yaml {
    match y.as_str() {
        Some(name) if !t["Parameters"][name].is_badvalue() => {
            t["Parameters"][name]["Default"].clone()
        }
        _ => y.clone(),
    }
}

/// Whether a condition of the form `!Equals [!Ref Param, value]` holds for the defaults.
fn condition_holds(t: &Yaml, name: &str) -> bool {
    let c = t["Conditions"][name]
        .as_vec()
        .unwrap_or_else(|| panic!("condition {name}"));
    let value = |y: &Yaml| match default_of(t, y) {
        Yaml::String(s) => s,
        other => format!("{other:?}"),
    };
    value(&c[0]) == value(&c[1])
}

/// An index: name, key schema (attribute, key type), projection.
type Index = (String, Vec<(String, String)>, String);

fn queue_logical(q: Queue) -> &'static str {
    match q {
        Queue::Work(Tier::Premium) => "Premium",
        Queue::Work(Tier::Standard) => "Standard",
        Queue::Work(Tier::Bulk) => "Bulk",
        Queue::Stitch => "Stitch",
    }
}

#[test]
fn names_match_for_the_same_deployment_name() {
    let name = "acme-vod";
    let t = template(name);
    let s = emulator::settings(name);
    assert_eq!(
        resource(&t, "IngestBucket")["BucketName"].as_str(),
        Some(s.ingest_bucket.as_str())
    );
    assert_eq!(
        resource(&t, "OutputBucket")["BucketName"].as_str(),
        Some(s.output_bucket.as_str())
    );
    assert_eq!(
        resource(&t, "JobsTable")["TableName"].as_str(),
        Some(s.table.as_str())
    );
    for q in AwsSettings::queues() {
        let l = queue_logical(q);
        assert_eq!(
            resource(&t, &format!("{l}Queue"))["QueueName"].as_str(),
            Some(s.queue_name(q).as_str())
        );
        assert_eq!(
            resource(&t, &format!("{l}Dlq"))["QueueName"].as_str(),
            Some(s.dlq_name(q).as_str())
        );
    }
    // The functions and the worker task are configured with exactly what bootstrap prints.
    let exports: BTreeMap<String, String> = s.env().into_iter().collect();
    let globals = &t["Globals"]["Function"]["Environment"]["Variables"];
    let worker: BTreeMap<String, String> = resource(&t, "WorkerTaskDefinition")
        ["ContainerDefinitions"][0]["Environment"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|kv| {
            (
                kv["Name"].as_str().unwrap().to_string(),
                kv["Value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (k, v) in &exports {
        let in_globals = globals[k.as_str()]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{k} missing from the functions' environment"));
        // `!Ref Name` loses its tag and leaves the parameter's name.
        let resolved = |x: String| if x == "Name" { name.to_string() } else { x };
        assert_eq!(&resolved(in_globals), v, "functions: {k}");
        assert_eq!(
            worker.get(k).cloned().map(resolved).as_ref(),
            Some(v),
            "worker task: {k}"
        );
    }
    // The task is the size the cost estimate prices.
    let size = vodpipe_control::cost::WorkerSize::default();
    let task = resource(&t, "WorkerTaskDefinition");
    assert_eq!(int(&task["Cpu"]) as f64 / 1024.0, size.vcpu);
    assert_eq!(int(&task["Memory"]) as f64 / 1024.0, size.memory_gib);
    // Timeouts and visibilities agree: six times the stitch function's timeout.
    assert_eq!(
        int(&resource(&t, "StitchFunction")["Timeout"]),
        i64::from(bootstrap::STITCH_TIMEOUT_SECS)
    );
    assert_eq!(
        int(&resource(&t, "WorkerTaskDefinition")["ContainerDefinitions"][0]["StopTimeout"]),
        120
    );
}

#[test]
fn bootstrap_creates_what_the_template_declares() {
    emulator::start();
    let name = emulator::unique_name("tmpl");
    let t = template(&name);
    let s = emulator::settings(&name);
    let bridge = Bridge::new().unwrap();
    let sdk = bridge.sdk_config();
    bootstrap::bootstrap(&bridge, &sdk, &s).unwrap();
    // Twice: idempotent.
    bootstrap::bootstrap(&bridge, &sdk, &s).unwrap();

    // Queues: visibility, retention, redrive, encryption.
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let attrs = |queue: &str| -> BTreeMap<String, String> {
        let url = bridge
            .run(sqs.get_queue_url().queue_name(queue).send())
            .unwrap()
            .queue_url()
            .unwrap()
            .to_string();
        bridge
            .run(
                sqs.get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(A::All)
                    .send(),
            )
            .unwrap()
            .attributes()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.clone()))
            .collect()
    };
    for q in AwsSettings::queues() {
        let l = queue_logical(q);
        let declared = resource(&t, &format!("{l}Queue"));
        let created = attrs(&s.queue_name(q));
        assert_eq!(
            created["VisibilityTimeout"],
            int(&declared["VisibilityTimeout"]).to_string(),
            "{l} visibility"
        );
        assert_eq!(created["SqsManagedSseEnabled"], "true", "{l} encryption");
        // Work waits up to 14 days (a quota wait must not drop it), as its dead letters do.
        assert_eq!(
            created["MessageRetentionPeriod"],
            int(&declared["MessageRetentionPeriod"]).to_string(),
            "{l} retention"
        );
        assert_eq!(
            created["MessageRetentionPeriod"],
            bootstrap::QUEUE_RETENTION_SECS.to_string()
        );
        assert_eq!(declared["SqsManagedSseEnabled"].as_bool(), Some(true));
        let redrive: serde_json::Value = serde_json::from_str(&created["RedrivePolicy"]).unwrap();
        assert_eq!(
            redrive["maxReceiveCount"].as_i64(),
            Some(int(&declared["RedrivePolicy"]["maxReceiveCount"])),
            "{l} redrive"
        );
        assert!(redrive["deadLetterTargetArn"]
            .as_str()
            .unwrap()
            .ends_with(&s.dlq_name(q)));
        let declared_dlq = resource(&t, &format!("{l}Dlq"));
        let dlq = attrs(&s.dlq_name(q));
        assert_eq!(
            dlq["MessageRetentionPeriod"],
            int(&declared_dlq["MessageRetentionPeriod"]).to_string(),
            "{l} dead-letter retention"
        );
    }

    // The table: keys, indexes, billing, TTL, point-in-time recovery.
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = bridge
        .run(ddb.describe_table().table_name(&s.table).send())
        .unwrap()
        .table
        .unwrap();
    let declared = resource(&t, "JobsTable");
    let keys = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| -> Vec<(String, String)> {
        schema
            .iter()
            .map(|k| {
                (
                    k.attribute_name().to_string(),
                    k.key_type().as_str().to_string(),
                )
            })
            .collect()
    };
    let declared_keys = |y: &Yaml| -> Vec<(String, String)> {
        y.as_vec()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["AttributeName"].as_str().unwrap().to_string(),
                    k["KeyType"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        keys(table.key_schema()),
        declared_keys(&declared["KeySchema"])
    );
    let mut attrs_created: Vec<(String, String)> = table
        .attribute_definitions()
        .iter()
        .map(|a| {
            (
                a.attribute_name().to_string(),
                a.attribute_type().as_str().to_string(),
            )
        })
        .collect();
    let mut attrs_declared: Vec<(String, String)> = declared["AttributeDefinitions"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["AttributeName"].as_str().unwrap().to_string(),
                a["AttributeType"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    attrs_created.sort();
    attrs_declared.sort();
    assert_eq!(attrs_created, attrs_declared);
    let mut gsis_created: Vec<Index> = table
        .global_secondary_indexes()
        .iter()
        .map(|g| {
            (
                g.index_name().unwrap().to_string(),
                keys(g.key_schema()),
                g.projection()
                    .and_then(|p| p.projection_type())
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let mut gsis_declared: Vec<Index> = declared["GlobalSecondaryIndexes"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["IndexName"].as_str().unwrap().to_string(),
                declared_keys(&g["KeySchema"]),
                g["Projection"]["ProjectionType"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    gsis_created.sort();
    gsis_declared.sort();
    assert_eq!(gsis_created, gsis_declared);
    assert_eq!(
        table
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|b| b.as_str()),
        declared["BillingMode"].as_str()
    );
    let ttl = bridge
        .run(ddb.describe_time_to_live().table_name(&s.table).send())
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description()
            .and_then(|d| d.attribute_name()),
        declared["TimeToLiveSpecification"]["AttributeName"].as_str()
    );
    let pitr = bridge
        .run(
            ddb.describe_continuous_backups()
                .table_name(&s.table)
                .send(),
        )
        .unwrap();
    let enabled = pitr
        .continuous_backups_description()
        .and_then(|c| c.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status())
        .map(|s| s.as_str().to_string());
    assert_eq!(enabled.as_deref(), Some("ENABLED"));
    assert_eq!(
        declared["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true)
    );

    // Buckets: private, encrypted, versioned ingest, the same lifecycle rules.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    for (logical, bucket) in [
        ("IngestBucket", &s.ingest_bucket),
        ("OutputBucket", &s.output_bucket),
    ] {
        let declared = resource(&t, logical);
        let pab = bridge
            .run(s3.get_public_access_block().bucket(bucket).send())
            .unwrap();
        let c = pab.public_access_block_configuration().unwrap();
        for (flag, on) in [
            ("BlockPublicAcls", c.block_public_acls()),
            ("BlockPublicPolicy", c.block_public_policy()),
            ("IgnorePublicAcls", c.ignore_public_acls()),
            ("RestrictPublicBuckets", c.restrict_public_buckets()),
        ] {
            assert_eq!(on, Some(true), "{bucket}: {flag}");
            assert_eq!(
                declared["PublicAccessBlockConfiguration"][flag].as_bool(),
                Some(true),
                "{logical}: {flag}"
            );
        }
        let enc = bridge
            .run(s3.get_bucket_encryption().bucket(bucket).send())
            .unwrap();
        let algo = enc.server_side_encryption_configuration().unwrap().rules()[0]
            .apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm()
            .as_str()
            .to_string();
        assert_eq!(
            Some(algo.as_str()),
            declared["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
                ["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
                .as_str()
        );
        // (Read by behaviour: the emulator's GetBucketVersioning answer does not parse.)
        for _ in 0..2 {
            bridge
                .run(
                    s3.put_object()
                        .bucket(bucket)
                        .key("probe")
                        .body(b"x".to_vec().into())
                        .send(),
                )
                .unwrap();
        }
        let versions = bridge
            .run(
                s3.list_object_versions()
                    .bucket(bucket)
                    .prefix("probe")
                    .send(),
            )
            .unwrap()
            .versions()
            .len();
        let versioned = declared["VersioningConfiguration"]["Status"].as_str() == Some("Enabled");
        assert_eq!(
            versions,
            if versioned { 2 } else { 1 },
            "{logical} versioning"
        );
        let rules = bridge
            .run(
                s3.get_bucket_lifecycle_configuration()
                    .bucket(bucket)
                    .send(),
            )
            .unwrap();
        let mut created: Vec<(String, Option<i32>)> = rules
            .rules()
            .iter()
            .map(|r| {
                let days = r
                    .expiration()
                    .and_then(|e| e.days())
                    .or(r.transitions().first().and_then(|t| t.days()))
                    .or(r
                        .noncurrent_version_expiration()
                        .and_then(|n| n.noncurrent_days()))
                    .or(r
                        .abort_incomplete_multipart_upload()
                        .and_then(|a| a.days_after_initiation()));
                (r.id().unwrap().to_string(), days)
            })
            .collect();
        let mut declared_rules: Vec<(String, Option<i32>)> = declared["LifecycleConfiguration"]
            ["Rules"]
            .as_vec()
            .unwrap()
            .iter()
            // `!If [Condition, rule, !Ref AWS::NoValue]`: the rule the defaults choose.
            .filter_map(|r| match r.as_vec() {
                Some(choice) => {
                    condition_holds(&t, choice[0].as_str().unwrap()).then(|| choice[1].clone())
                }
                None => Some(r.clone()),
            })
            .map(|r| {
                let days = [
                    &r["ExpirationInDays"],
                    &r["Transitions"][0]["TransitionInDays"],
                    &r["NoncurrentVersionExpiration"]["NoncurrentDays"],
                    &r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"],
                ]
                .into_iter()
                .find(|y| !y.is_badvalue())
                .map(|y| int(&default_of(&t, y)) as i32);
                (r["Id"].as_str().unwrap().to_string(), days)
            })
            .collect();
        created.sort();
        declared_rules.sort();
        assert_eq!(created, declared_rules, "{logical} lifecycle");
        // The TLS-only statement bootstrap writes on real AWS is the template's.
        let policy: serde_json::Value =
            serde_json::from_str(&bootstrap::tls_only_policy(bucket)).unwrap();
        let stmt = &policy["Statement"][0];
        let declared_stmt =
            &resource(&t, &format!("{logical}Policy"))["PolicyDocument"]["Statement"][0];
        assert_eq!(stmt["Sid"].as_str(), declared_stmt["Sid"].as_str());
        assert_eq!(stmt["Effect"].as_str(), declared_stmt["Effect"].as_str());
        assert_eq!(stmt["Action"].as_str(), declared_stmt["Action"].as_str());
        assert_eq!(
            stmt["Condition"]["Bool"]["aws:SecureTransport"].as_str(),
            declared_stmt["Condition"]["Bool"]["aws:SecureTransport"].as_str()
        );
    }
    let superseded = resource(&t, "OutputBucket")["LifecycleConfiguration"]["Rules"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|r| r["Id"].as_str() == Some("expire-superseded-jobs"))
        .cloned()
        .unwrap();
    assert_eq!(
        superseded["TagFilters"][0]["Key"].as_str(),
        Some(vodpipe_aws::s3::SUPERSEDED_TAG)
    );
}

#[test]
fn the_template_deploys_from_the_root_with_no_parameter_given() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let t = template("vodpipe");
    // Every parameter has a default, and the default name passes its own pattern.
    let params = t["Parameters"].as_hash().unwrap();
    for (k, v) in params {
        assert!(
            !v["Default"].is_badvalue(),
            "parameter {} has no default",
            k.as_str().unwrap()
        );
    }
    let name = &t["Parameters"]["Name"];
    let default_name = name["Default"].as_str().unwrap();
    let pattern = name["AllowedPattern"].as_str().unwrap();
    assert_eq!(pattern, "^[a-z0-9][a-z0-9-]{0,22}[a-z0-9]$");
    assert!(
        default_name.len() <= 24
            && default_name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    );
    // The longest allowed name in the longest Region name still makes a valid bucket name.
    let longest = vodpipe_aws::config::AwsSettings::for_name(
        &"n".repeat(24),
        "123456789012",
        "ap-southeast-3",
    );
    assert!(
        longest.output_bucket.len() <= 63,
        "{}",
        longest.output_bucket
    );
    // samconfig.toml at the root builds and validates infra/template.yaml.
    let samconfig = std::fs::read_to_string(root.join("samconfig.toml")).unwrap();
    assert!(
        samconfig.contains("[default.build.parameters]\ntemplate_file = \"infra/template.yaml\"")
    );
    assert!(!root.join("infra/samconfig.toml").exists());
    // The probe layer is built by `sam build` and attached where probing happens; its
    // binary is where the functions look for it.
    let layer = &t["Resources"]["ProbeLayer"];
    assert_eq!(layer["Metadata"]["BuildMethod"].as_str(), Some("makefile"));
    assert_eq!(
        layer["Metadata"]["BuildArchitecture"].as_str(),
        Some("arm64")
    );
    let makefile = std::fs::read_to_string(root.join("infra/ffprobe-layer/Makefile")).unwrap();
    assert!(makefile.contains("build-ProbeLayer:"));
    assert_eq!(
        t["Globals"]["Function"]["Environment"]["Variables"]["VODPIPE_FFPROBE"].as_str(),
        Some("/opt/bin/ffprobe"),
        "Lambda mounts a layer at /opt; build.sh puts the binary in bin/"
    );
    assert_eq!(
        t["Globals"]["Function"]["Environment"]["Variables"]["VODPIPE_SOURCE_ACCESS"].as_str(),
        Some("loopback"),
        "the layer's ffprobe has no TLS"
    );
    for f in ["IngestFunction", "FleetFunction"] {
        assert_eq!(
            resource(&t, f)["Layers"][0].as_str(),
            Some("ProbeLayer"),
            "{f} probes"
        );
    }
    // The worker image comes from the stack's own repository by default.
    assert_eq!(
        resource(&t, "WorkerRepository")["RepositoryName"].as_str(),
        Some("vodpipe-worker")
    );
    // The Spot rule sees the two-minute warning, not only the final STOPPED.
    let rule = &resource(&t, "FleetFunction")["Events"]["SpotInterruption"]["Properties"]
        ["Pattern"]["detail"];
    assert!(rule["lastStatus"].is_badvalue(), "{rule:?}");
    assert_eq!(rule["stopCode"][0].as_str(), Some("SpotInterruption"));
    // And tasks that never started, so the fleet backs off instead of relaunching them.
    assert_eq!(rule["stopCode"][1].as_str(), Some("TaskFailedToStart"));
    // Workers announce the jobs they fail: the bus in their environment, the right to use it.
    let task_env = resource(&t, "WorkerTaskDefinition")["ContainerDefinitions"][0]["Environment"]
        .as_vec()
        .unwrap()
        .iter()
        .any(|kv| kv["Name"].as_str() == Some("VODPIPE_EVENT_BUS"));
    assert!(task_env);
    let task_role = resource(&t, "WorkerTaskRole")["Policies"][0]["PolicyDocument"]["Statement"]
        .as_vec()
        .unwrap()
        .iter()
        .any(|s| s["Action"].as_str() == Some("events:PutEvents"));
    assert!(task_role);
    // The stack's own network: public subnets with an internet route and the free gateway
    // endpoints, which the functions hand to RunTask with public IPs on.
    for r in [
        "Vpc",
        "PublicSubnetA",
        "PublicSubnetB",
        "InternetRoute",
        "S3Endpoint",
        "DynamoDbEndpoint",
    ] {
        assert!(!t["Resources"][r].is_badvalue(), "no {r}");
    }
    assert_eq!(
        resource(&t, "InternetRoute")["DestinationCidrBlock"].as_str(),
        Some("0.0.0.0/0")
    );
}

/// Private playback is one parameter away and off by default: a public key makes the
/// distribution trust a key group of it on every cache behaviour, and the stack names the
/// key ID `vodpipe aws sign` takes.
#[test]
fn private_playback_is_a_key_group_the_distribution_trusts_when_a_key_is_given() {
    let t = template("vodpipe");
    assert_eq!(
        t["Parameters"]["PlaybackPublicKey"]["Default"].as_str(),
        Some("")
    );
    for r in ["PlaybackKey", "PlaybackKeyGroup"] {
        assert_eq!(
            t["Resources"][r]["Condition"].as_str(),
            Some("PrivatePlayback"),
            "{r}"
        );
    }
    assert_eq!(
        resource(&t, "PlaybackKey")["PublicKeyConfig"]["EncodedKey"].as_str(),
        Some("PlaybackPublicKey")
    );
    let cfg = &resource(&t, "Distribution")["DistributionConfig"];
    let behaviours: Vec<&Yaml> = std::iter::once(&cfg["DefaultCacheBehavior"])
        .chain(cfg["CacheBehaviors"].as_vec().unwrap().iter())
        .collect();
    assert_eq!(behaviours.len(), 3);
    for b in behaviours {
        let trusted = format!("{:?}", b["TrustedKeyGroups"]);
        assert!(
            trusted.contains("PrivatePlayback") && trusted.contains("PlaybackKeyGroup"),
            "{trusted}"
        );
    }
    assert!(!t["Outputs"]["PlaybackKeyPairId"].is_badvalue());
}
