//! The control plane under load, small enough for every test run: jobs through the real
//! worker and stitch on moto with a stand-in encoder, worker processes killed mid-item,
//! duplicate messages injected, and the workers' AWS failing as AWS does (responses lost
//! after the request was applied, throttling, transaction conflicts); nothing may be lost,
//! failed or published twice. (`make load-control` runs
//! the full size and prints the figures docs/performance.md quotes.) Needs moto (`make test`
//! installs it) and ffmpeg for one template segment; fails loudly without them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn killed_workers_duplicates_and_failing_aws_lose_nothing_and_publish_nothing_twice() {
    let out = Command::new(env!("CARGO_BIN_EXE_vodpipe-emulator"))
        .args(["load", "--jobs", "24", "--items", "5", "--workers", "4"])
        .args([
            "--kill-every",
            "1.5",
            "--duplicates",
            "0.2",
            "--lease-seconds",
            "3",
        ])
        .args(["--timeout", "600", "--json"])
        .args([
            "--fault",
            "dynamodb:TransactWriteItems@lost=0.05,throttle=0.05,conflict=0.05",
            "--fault",
            "lost=0.05,throttle=0.05",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no report; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let r: serde_json::Value = serde_json::from_str(line).unwrap();
    assert!(out.status.success(), "{r}");
    assert_eq!(r["published"], 24, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["published_twice"], 0, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert!(r["kills"].as_u64().unwrap() >= 2, "{r}");
    assert!(r["duplicates"].as_u64().unwrap() > 0, "{r}");
    assert!(r["largest_item_bytes"].as_u64().unwrap() < 64 * 1024, "{r}");
    for service in ["s3", "sqs", "dynamodb"] {
        assert!(
            r["calls_per_item_by_service"][service].as_f64().unwrap() > 0.0,
            "{r}"
        );
        let f = &r["faults"][service];
        let injected = f["lost"].as_u64().unwrap_or(0) + f["throttle"].as_u64().unwrap_or(0);
        assert!(injected > 0, "no faults reached {service}: {r}");
    }
}

/// A burst of uploads through the deployed shape: S3 events on the upload queue, the real
/// ingest and stitch functions behind their mappings (the stitch's batches stitched at
/// once), workers killed mid-item, and the functions' and workers' AWS failing as AWS
/// does. Every upload publishes exactly once. Needs the function binaries beside the
/// emulator (`make test` builds every binary first).
#[test]
fn a_burst_of_uploads_through_the_deployed_shape_publishes_each_exactly_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_vodpipe-emulator"))
        .args(["load", "--deployed", "--jobs", "30", "--items", "2"])
        .args([
            "--burst-seconds",
            "5",
            "--workers",
            "3",
            "--kill-every",
            "4",
        ])
        .args(["--ingest-environments", "2", "--stitch-environments", "2"])
        .args(["--lease-seconds", "3", "--timeout", "600", "--json"])
        .args(["--fault", "lost=0.05,throttle=0.05"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no report; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let r: serde_json::Value = serde_json::from_str(line).unwrap();
    assert!(out.status.success(), "{r}");
    assert_eq!(r["published"], 30, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["published_twice"], 0, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    // The uploads waited on their queue for the two ingest environments.
    assert!(r["largest_backlog"]["uploads"].as_u64().unwrap() > 2, "{r}");
    for service in ["s3", "sqs", "dynamodb"] {
        let f = &r["faults"][service];
        let injected = f["lost"].as_u64().unwrap_or(0) + f["throttle"].as_u64().unwrap_or(0);
        assert!(injected > 0, "no faults reached {service}: {r}");
    }
}
