//! The ECS fleet and the CloudFront CDN adapters against moto server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vodpipe_testkit::emulator;

use std::sync::Arc;
use vodpipe_aws::cdn::CloudFrontCdn;
use vodpipe_aws::config::Bridge;
use vodpipe_aws::fleet::{EcsFleet, EcsSettings};
use vodpipe_control::ports::{Cdn, Fleet, Tier};

#[test]
fn the_fleet_starts_tasks_up_to_the_wanted_count_and_no_more() {
    emulator::start();
    let bridge = Arc::new(Bridge::new().unwrap());
    let sdk = bridge.sdk_config();
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    let cluster = emulator::unique_name("cluster");
    bridge
        .run(ecs.create_cluster().cluster_name(&cluster).send())
        .unwrap();
    let container = aws_sdk_ecs::types::ContainerDefinition::builder()
        .name("worker")
        .image("vodpipe-worker:test")
        .essential(true)
        .cpu(1024)
        .memory(2048)
        .build();
    bridge
        .run(
            ecs.register_task_definition()
                .family("vodpipe-worker")
                .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
                .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
                .cpu("1024")
                .memory("2048")
                .container_definitions(container)
                .send(),
        )
        .unwrap();
    let (subnets, security_group) = default_network();
    assert!(subnets.len() >= 2, "two AZs: {subnets:?}");
    // The table failed launches are recorded in.
    let settings = emulator::settings(&emulator::unique_name("fleet"));
    vodpipe_aws::bootstrap::bootstrap(&bridge, &sdk, &settings).unwrap();
    let fleet_warm = |max_per_tier: u32, warm_per_tier: u32| {
        EcsFleet::new(
            bridge.clone(),
            &sdk,
            EcsSettings {
                cluster: cluster.clone(),
                task_definition: "vodpipe-worker".into(),
                container: "worker".into(),
                subnets: subnets.clone(),
                security_groups: vec![security_group.clone()],
                assign_public_ip: true,
                max_per_tier,
                launch_backoff_secs: 600.0,
                warm_per_tier,
            },
            &settings.table,
        )
    };
    let fleet_capped_at = |max_per_tier: u32| fleet_warm(max_per_tier, 0);
    let fleet = fleet_capped_at(4);
    assert_eq!(fleet.ensure_capacity(Tier::Standard, 3).unwrap(), 3);
    assert_eq!(fleet.count(Tier::Standard).unwrap(), 3);
    assert_eq!(
        fleet.ensure_capacity(Tier::Standard, 2).unwrap(),
        3,
        "capacity is only ever added"
    );
    assert_eq!(
        fleet.ensure_capacity(Tier::Standard, 50).unwrap(),
        4,
        "capped per tier"
    );
    assert_eq!(
        fleet.count(Tier::Premium).unwrap(),
        0,
        "tiers are counted apart"
    );
    assert_eq!(fleet.ensure_capacity(Tier::Premium, 1).unwrap(), 1);

    // A burst larger than one RunTask call (10 tasks) is launched in paced calls.
    let wide = fleet_capped_at(40);
    assert_eq!(wide.ensure_capacity(Tier::Bulk, 25).unwrap(), 25);
    assert_eq!(wide.count(Tier::Bulk).unwrap(), 25);

    // Many callers at once (every ingest, Spot event and tick asks for capacity): one
    // decides at a time, so the cap holds however many ask.
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let fleet = fleet_capped_at(12);
            std::thread::spawn(move || fleet.ensure_capacity(Tier::Standard, 100))
        })
        .collect();
    for c in callers {
        let workers = c.join().unwrap().unwrap();
        assert!(workers <= 12, "a caller saw {workers} tasks");
    }
    assert_eq!(
        fleet.count(Tier::Standard).unwrap(),
        12,
        "concurrent callers launched past the cap"
    );

    // A warm minimum: an idle tier is brought up to it, with tasks that outlast the idle
    // exit of the others.
    let warm = fleet_warm(40, 27);
    assert_eq!(warm.ensure_capacity(Tier::Bulk, 0).unwrap(), 27);
    let arns = bridge
        .run(
            ecs.list_tasks()
                .cluster(&cluster)
                .started_by("vodpipe-bulk")
                .send(),
        )
        .unwrap()
        .task_arns()
        .to_vec();
    let tasks = bridge
        .run(
            ecs.describe_tasks()
                .cluster(&cluster)
                .set_tasks(Some(arns))
                .send(),
        )
        .unwrap();
    let kept: usize = tasks
        .tasks()
        .iter()
        .filter(|t| {
            t.overrides()
                .into_iter()
                .flat_map(|o| o.container_overrides())
                .flat_map(|c| c.environment())
                .any(|kv| kv.name() == Some("VODPIPE_IDLE_EXIT_SECS"))
        })
        .count();
    assert_eq!(
        kept, 2,
        "the two tasks past the 25 running are the warm ones"
    );

    // Tasks that failed to start (an image that cannot be pulled): the tier launches
    // nothing more until its back-off has passed or one of its workers started.
    use vodpipe_control::ports::JobStore;
    let state = vodpipe_aws::AwsState::connect(bridge.clone(), &sdk, &settings).unwrap();
    let why = "CannotPullContainerError: vodpipe-worker:latest: not found";
    assert_eq!(
        state
            .record_launch_failure(Tier::Premium, why, 600.0)
            .unwrap()
            .failures,
        1
    );
    let refused = fleet
        .ensure_capacity(Tier::Premium, 3)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("cannot start") && refused.contains(why),
        "{refused}"
    );
    assert_eq!(
        fleet.count(Tier::Premium).unwrap(),
        1,
        "launched while backing off"
    );
    state.clear_launch_trouble(Tier::Premium).unwrap();
    assert_eq!(fleet.ensure_capacity(Tier::Premium, 3).unwrap(), 3);
}

/// The emulator's default VPC: two subnets in different AZs and its default security
/// group, read with boto3 from the emulator's own virtualenv (test set-up only).
fn default_network() -> (Vec<String>, String) {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/moto_default_network.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let subnets = v["subnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    (subnets, v["sg"].as_str().unwrap().to_string())
}

#[test]
fn pointer_manifests_are_invalidated_on_every_distribution() {
    use aws_sdk_cloudfront::types::*;
    emulator::start();
    let bridge = Arc::new(Bridge::new().unwrap());
    let sdk = bridge.sdk_config();
    let cf = aws_sdk_cloudfront::Client::new(&sdk);
    let mut ids = Vec::new();
    for n in 0..2 {
        let origin = Origin::builder()
            .id("output")
            .domain_name("output.s3.amazonaws.com")
            .s3_origin_config(S3OriginConfig::builder().origin_access_identity("").build())
            .build()
            .unwrap();
        let behavior = DefaultCacheBehavior::builder()
            .target_origin_id("output")
            .viewer_protocol_policy(ViewerProtocolPolicy::RedirectToHttps)
            .cache_policy_id("658327ea-f89d-4fab-a63d-7e88639e58f6")
            .build()
            .unwrap();
        let config = DistributionConfig::builder()
            .caller_reference(emulator::unique_name(&format!("dist{n}")))
            .origins(
                Origins::builder()
                    .quantity(1)
                    .items(origin)
                    .build()
                    .unwrap(),
            )
            .default_cache_behavior(behavior)
            .comment("vodpipe test")
            .enabled(true)
            .build()
            .unwrap();
        let out = bridge
            .run(cf.create_distribution().distribution_config(config).send())
            .unwrap();
        ids.push(out.distribution().unwrap().id().to_string());
    }
    let cdn = CloudFrontCdn::new(bridge.clone(), &sdk, ids.clone());
    cdn.invalidate(
        &["/film/master.m3u8".into(), "/film/manifest.mpd".into()],
        "job123",
    )
    .unwrap();
    for id in &ids {
        assert_eq!(cdn.invalidations(id).unwrap().len(), 1, "distribution {id}");
    }
}

#[test]
fn segments_upload_in_parallel_and_large_objects_in_parts() {
    use vodpipe_control::ports::{Cacheability, ObjectStore};
    emulator::start();
    let bridge = Arc::new(Bridge::new().unwrap());
    let sdk = bridge.sdk_config();
    let settings = emulator::settings(&emulator::unique_name("s3"));
    vodpipe_aws::bootstrap::bootstrap(&bridge, &sdk, &settings).unwrap();
    let store = vodpipe_aws::s3::S3Objects::new(bridge.clone(), &sdk, &settings.output_bucket);
    let segments: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| {
            (
                format!("a/j/c00000.1/360p/{i:05}.m4s"),
                vec![i as u8; 1000 + i],
            )
        })
        .collect();
    let batch: Vec<(String, &[u8])> = segments
        .iter()
        .map(|(k, b)| (k.clone(), b.as_slice()))
        .collect();
    store.put_many(&batch, Cacheability::Immutable).unwrap();
    assert_eq!(store.list("a/j/").unwrap().len(), 20);
    assert_eq!(
        store.get("a/j/c00000.1/360p/00007.m4s").unwrap(),
        vec![7u8; 1007]
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let head = bridge
        .run(
            s3.head_object()
                .bucket(&settings.output_bucket)
                .key("a/j/c00000.1/360p/00007.m4s")
                .send(),
        )
        .unwrap();
    assert_eq!(head.content_type(), Some("video/iso.segment"));
    assert!(head
        .cache_control()
        .unwrap_or_default()
        .contains("immutable"));
    // Above the threshold: a multipart upload, read back intact.
    let big: Vec<u8> = (0..(vodpipe_aws::s3::MULTIPART_THRESHOLD + 5_000_000))
        .map(|i| (i % 251) as u8)
        .collect();
    store
        .put("a/master.m3u8.big", &big, Cacheability::ShortLived)
        .unwrap();
    assert_eq!(store.get("a/master.m3u8.big").unwrap(), big);
}

#[test]
fn retired_job_directories_are_tagged_for_the_lifecycle_rule() {
    use vodpipe_control::ports::{Cacheability, ObjectStore};
    emulator::start();
    let bridge = Arc::new(Bridge::new().unwrap());
    let sdk = bridge.sdk_config();
    let settings = emulator::settings(&emulator::unique_name("retire"));
    vodpipe_aws::bootstrap::bootstrap(&bridge, &sdk, &settings).unwrap();
    let store = vodpipe_aws::s3::S3Objects::new(bridge.clone(), &sdk, &settings.output_bucket);
    for k in [
        "a/old/master.m3u8",
        "a/old/c00000.1/360p/00000.m4s",
        "a/new/master.m3u8",
    ] {
        store.put(k, b"x", Cacheability::Immutable).unwrap();
    }
    assert_eq!(store.retire("a/old/").unwrap(), 2);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let tags = |key: &str| -> Vec<(String, String)> {
        bridge
            .run(
                s3.get_object_tagging()
                    .bucket(&settings.output_bucket)
                    .key(key)
                    .send(),
            )
            .unwrap()
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect()
    };
    let superseded = vec![(
        vodpipe_aws::s3::SUPERSEDED_TAG.to_string(),
        "true".to_string(),
    )];
    assert_eq!(tags("a/old/c00000.1/360p/00000.m4s"), superseded);
    assert!(
        tags("a/new/master.m3u8").is_empty(),
        "the current job is untouched"
    );
    // The lifecycle rule that expires them is on the bucket.
    let rules = bridge
        .run(
            s3.get_bucket_lifecycle_configuration()
                .bucket(&settings.output_bucket)
                .send(),
        )
        .unwrap();
    let rule = rules
        .rules()
        .iter()
        .find(|r| r.id() == Some("expire-superseded-jobs"))
        .expect("superseded rule");
    assert_eq!(
        rule.expiration().and_then(|e| e.days()),
        Some(vodpipe_aws::s3::SUPERSEDED_EXPIRY_DAYS)
    );
}
