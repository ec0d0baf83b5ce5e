//! `vodpipe aws doctor` against deployments on the emulator (moto server): a healthy one
//! passes what moto can answer, a broken one fails each check with its fix. What moto
//! cannot answer (Fargate and Lambda quotas) must come out as a warning, never a crash.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vodpipe_testkit::emulator;

use std::path::Path;
use vodpipe_doctor::{Level, Options, Report};

/// Makes a deployment with `crates/doctor/tests/moto_stack.py` (boto3 from moto's .venv).
fn deploy(name: &str, mode: &str, extra: &[&str]) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/moto_stack.py"))
        .args([name, mode])
        .args(extra)
        .output()
        .expect("moto's .venv is required: `make test` installs it");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn doctor(stack: &str) -> Report {
    let bridge = vodpipe_aws::config::Bridge::new().unwrap();
    let sdk = bridge.sdk_config();
    vodpipe_doctor::run(
        &bridge,
        &sdk,
        &Options {
            stack: stack.into(),
            max_workers: None,
        },
    )
}

fn level(r: &Report, check: &str) -> Level {
    r.findings
        .iter()
        .find(|f| f.check == check)
        .unwrap_or_else(|| panic!("no {check} in\n{}", r.render()))
        .level
}

#[test]
fn a_healthy_deployment_passes_and_a_broken_one_says_what_to_fix() {
    emulator::start();
    // Before anything is deployed: the account checks run, the missing stack is a warning
    // and the missing ECS service-linked role a failure.
    let bare = doctor("nothing-here");
    assert_eq!(level(&bare, "credentials"), Level::Ok, "{}", bare.render());
    assert_eq!(level(&bare, "stack"), Level::Warn);
    assert_eq!(level(&bare, "ecs-service-linked-role"), Level::Fail);
    assert!(bare
        .render()
        .contains("fix: aws iam create-service-linked-role --aws-service-name ecs.amazonaws.com"));

    let healthy = emulator::unique_name("dr");
    let made = deploy(&healthy, "healthy", &["--service-linked-role"]);
    let r = doctor(&healthy);
    let text = r.render();
    eprintln!("{text}");
    assert_eq!(level(&r, "stack"), Level::Ok, "{text}");
    assert_eq!(level(&r, "ecs-service-linked-role"), Level::Ok, "{text}");
    // moto has no Fargate or Lambda quotas to read: a warning naming the command.
    assert_eq!(level(&r, "fargate-spot-vcpu"), Level::Warn, "{text}");
    assert!(
        text.contains("40 vCPU are needed for 10 tasks of 4 vCPU"),
        "MaxWorkersPerTier 5 × 2 Spot tiers is read from the stack:\n{text}"
    );
    assert_eq!(level(&r, "worker-image"), Level::Ok, "{text}");
    assert_eq!(
        level(&r, &format!("probe-layer {healthy}-ingest")),
        Level::Ok,
        "{text}"
    );
    assert_eq!(
        level(&r, &format!("probe-layer {healthy}-fleet")),
        Level::Ok,
        "{text}"
    );
    for s in made["subnets"].as_array().unwrap() {
        assert_eq!(
            level(&r, &format!("subnet {}", s.as_str().unwrap())),
            Level::Ok,
            "{text}"
        );
    }
    assert_eq!(level(&r, "s3-gateway-endpoint"), Level::Ok, "{text}");
    assert_eq!(level(&r, "worker-launches standard"), Level::Ok, "{text}");
    assert_ne!(r.worst(), Level::Fail, "{text}");

    let broken = emulator::unique_name("dr");
    let made = deploy(&broken, "broken", &[]);
    let r = doctor(&broken);
    let text = r.render();
    eprintln!("{text}");
    assert_eq!(level(&r, "worker-image"), Level::Fail, "{text}");
    assert!(text.contains("fix: make worker-image"), "{text}");
    assert_eq!(
        level(&r, &format!("probe-layer {broken}-ingest")),
        Level::Fail,
        "{text}"
    );
    let subnet = made["subnets"][0].as_str().unwrap();
    assert_eq!(
        level(&r, &format!("subnet {subnet}")),
        Level::Fail,
        "{text}"
    );
    assert!(
        text.contains("no default route and no VPC endpoint for ecr.api"),
        "{text}"
    );
    assert_eq!(level(&r, "s3-gateway-endpoint"), Level::Warn, "{text}");
    // Work waits on a tier whose tasks never start, and the doctor says why.
    assert_eq!(level(&r, "worker-launches standard"), Level::Fail, "{text}");
    assert!(text.contains("CannotPullContainerError"), "{text}");
    assert_eq!(r.worst(), Level::Fail);
}
