//! Permissions as code, on the paths a happy run never takes: each test signs as one role
//! of `infra/template.yaml` (resolved to the emulator's ARNs, enforced by the emulator's
//! front door with AWS's rules) and drives a rare path of the code that role runs. A call
//! the template does not allow is refused and recorded; each test asserts none was.
//! Needs moto in `.venv` (`make test` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use vodpipe_aws::config::{AwsSettings, Bridge};
use vodpipe_aws::s3::S3Objects;
use vodpipe_aws::AwsState;
use vodpipe_control::ports::{
    Acquired, Cacheability, ItemKind, ItemRef, JobStore, ObjectStore, PortError, Tier,
};
use vodpipe_emulator::iam::{self, Credentials, EmulatedNames};
use vodpipe_emulator::moto::{self, Moto};

struct Deployment {
    endpoint: String,
    names: EmulatedNames,
    bridge: Arc<Bridge>,
    creds: BTreeMap<String, Credentials>,
}

/// The emulator, started once for the test binary.
fn emulator() -> String {
    static MOTO: OnceLock<Mutex<Moto>> = OnceLock::new();
    let moto = MOTO.get_or_init(|| {
        let moto = Moto::start_or_reuse().unwrap();
        moto::control(
            &moto.endpoint,
            "POST",
            "/_vodpipe/iam",
            Some(&json!({"enforce": true})),
        )
        .unwrap();
        Mutex::new(moto)
    });
    moto.lock()
        .unwrap_or_else(|p| p.into_inner())
        .endpoint
        .clone()
}

/// Deployment `name` on the emulator: resources bootstrapped and the template's roles
/// made (roles of their own, so each test reads only its own refusals).
fn deployment(name: &str) -> Deployment {
    let endpoint = emulator();
    let bridge = Arc::new(Bridge::new().unwrap());
    let sdk = bridge.sdk_config();
    let settings = AwsSettings::for_name(name, "123456789012", "us-east-1");
    vodpipe_aws::bootstrap::bootstrap(&bridge, &sdk, &settings).unwrap();
    let names = EmulatedNames {
        settings,
        name: name.into(),
        account: "123456789012".into(),
        region: "us-east-1".into(),
        cluster: name.into(),
        distribution: "E2TEST".into(),
    };
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml"),
    )
    .unwrap();
    let creds = iam::create_roles(&bridge, &sdk, &names, &template).unwrap();
    Deployment {
        endpoint,
        names,
        bridge,
        creds,
    }
}

impl Deployment {
    /// The SDK configuration of `principal`'s role.
    fn sdk(&self, principal: &str) -> aws_config::SdkConfig {
        self.creds[principal].sdk_config(&self.bridge)
    }

    /// The refusals recorded for `role` so far.
    fn denials(&self, principal: &str) -> Vec<String> {
        let report = moto::control(&self.endpoint, "GET", "/_vodpipe/iam", None).unwrap();
        let role = self.names.role_name(principal);
        iam::denials(&report)
            .into_iter()
            .filter(|d| d.starts_with(&format!("{role}:")))
            .collect()
    }
}

#[test]
fn the_worker_can_discard_a_plan_revision_it_lost() {
    let d = deployment("iam-revise");
    let admin =
        AwsState::connect(d.bridge.clone(), &d.bridge.sdk_config(), &d.names.settings).unwrap();
    let worker = AwsState::connect(d.bridge.clone(), &d.sdk("worker"), &d.names.settings).unwrap();
    let id = "00000000000000aa";
    let settings = vodpipe_control::settings::fallback(
        "k.mp4",
        &vodpipe_control::settings::SettingsPolicy::default(),
        4.0,
        &Default::default(),
        None,
    );
    admin
        .create_job(id, "s3://b/k.mp4", "k", Tier::Standard, &settings)
        .unwrap();
    admin
        .transition(id, vodpipe_control::domain::Transition::Claim, None)
        .unwrap();
    let analysis = ItemRef {
        job_id: id.into(),
        kind: ItemKind::Analysis,
        index: 0,
    };
    let chunk = ItemRef {
        job_id: id.into(),
        kind: ItemKind::Video,
        index: 0,
    };
    assert!(admin
        .save_plan(
            id,
            "{}",
            4.0,
            100,
            1,
            0.0,
            &[(chunk, 100), (analysis.clone(), 0)]
        )
        .unwrap());
    let lease = |a: Acquired| match a {
        Acquired::Lease(l) => l,
        other => panic!("{other:?}"),
    };
    // The worker's lease expires and another worker takes the analysis over; the first
    // worker's revision then loses, and it removes the plan pages it wrote.
    let stale = lease(
        worker
            .acquire(&analysis, "w1", Duration::from_millis(1))
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(20));
    let _holder = lease(
        admin
            .acquire(&analysis, "w2", Duration::from_secs(60))
            .unwrap(),
    );
    match worker.revise_plan(&stale, r#"{"revised":1}"#, 3) {
        Err(PortError::Conflict(_)) => {}
        other => panic!("a lost revision should say the lease was lost, not {other:?}"),
    }
    assert_eq!(d.denials("worker"), Vec::<String>::new());
}

#[test]
fn a_missing_sidecar_reads_as_missing_to_the_worker_not_as_forbidden() {
    let d = deployment("iam-sidecar");
    let ingest = S3Objects::new(
        d.bridge.clone(),
        &d.sdk("worker"),
        &d.names.settings.ingest_bucket,
    );
    let uri = format!("s3://{}/gone/talk.en.srt", d.names.settings.ingest_bucket);
    match ingest.source_metadata(&uri, None) {
        Err(PortError::NotFound(_)) => {}
        other => panic!("a missing object read as {other:?}"),
    }
}

#[test]
fn the_stitch_can_abort_an_upload_in_parts_that_failed() {
    let d = deployment("iam-abort");
    let out = S3Objects::new(
        d.bridge.clone(),
        &d.sdk("stitch"),
        &d.names.settings.output_bucket,
    );
    // Every part of this one object is refused for longer than the SDK retries.
    moto::control(
        &d.endpoint,
        "POST",
        "/_vodpipe/faults",
        Some(&json!({"seed": 1, "scope": "roles", "rules": [
            {"service": "s3", "operation": "PUT", "throttle": 1.0, "match": "big/parts.mp4"}
        ]})),
    )
    .unwrap();
    let big = vec![7u8; vodpipe_aws::s3::MULTIPART_THRESHOLD + 1];
    let put = out.put("big/parts.mp4", &big, Cacheability::Immutable);
    moto::control(&d.endpoint, "DELETE", "/_vodpipe/faults", None).unwrap();
    assert!(
        put.is_err(),
        "every part was refused, yet the upload succeeded"
    );
    assert_eq!(d.denials("stitch"), Vec::<String>::new());
}
