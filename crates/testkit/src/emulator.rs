//! Starts one moto server for the test binary, on a free port on 127.0.0.1, and points
//! the AWS SDK at it through the environment: every test of a binary shares it, so a
//! binary pays for one start, and tests keep apart by naming their resources with
//! [`unique_name`].

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static SERVER: OnceLock<Mutex<Child>> = OnceLock::new();

fn moto_server() -> PathBuf {
    if let Some(p) = std::env::var_os("VODPIPE_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    workspace_root().join(".venv/bin/moto_server")
}

/// The workspace root (where `make` puts .venv, and where the moto launcher script
/// lives): the nearest directory above this crate with a Cargo.lock.
fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|p| p.join("Cargo.lock").exists())
        .unwrap_or(&here)
        .to_path_buf()
}

/// Starts the emulator once and sets `AWS_ENDPOINT_URL` and test credentials.
pub fn start() {
    SERVER.get_or_init(|| {
        let exe = moto_server();
        assert!(exe.exists(), "moto_server not found at {} — run `make test` (it installs moto into .venv) or set VODPIPE_MOTO_SERVER", exe.display());
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // moto_server's own Python, through the project's launcher (DynamoDB's write
        // isolation kept under concurrent requests).
        let child = Command::new(exe.parent().unwrap().join("python"))
            .arg(workspace_root().join("scripts/moto_server.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "moto_server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let endpoint = format!("http://127.0.0.1:{port}");
        for (k, v) in [
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ] {
            std::env::set_var(k, v);
        }
        Mutex::new(child)
    });
}

/// A resource name no other test in this run uses.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// The emulator's account and Region (moto's defaults; `vodpipe aws bootstrap` reads them
/// through STS like any account's).
pub const ACCOUNT: &str = "123456789012";
/// See [`ACCOUNT`].
pub const REGION: &str = "us-east-1";

/// The names of deployment `name` on the emulator.
pub fn settings(name: &str) -> vodpipe_aws::config::AwsSettings {
    vodpipe_aws::config::AwsSettings::for_name(name, ACCOUNT, REGION)
}

/// Deployment `name` on the emulator: bootstrapped and connected.
pub fn deploy(name: &str) -> vodpipe_aws::Aws {
    start();
    let settings = settings(name);
    let bridge = vodpipe_aws::config::Bridge::new().unwrap();
    vodpipe_aws::bootstrap::bootstrap(&bridge, &bridge.sdk_config(), &settings).unwrap();
    vodpipe_aws::Aws::connect(settings).unwrap()
}

/// `src` uploaded to the ingest bucket as `in/clip.mp4` and ingested (probed on this
/// machine) as job `job_id` in chunks of `chunk_secs`: work queued on the standard tier.
pub fn queued_job(
    aws: &vodpipe_aws::Aws,
    src: &std::path::Path,
    job_id: &str,
    chunk_secs: f64,
    scratch: &std::path::Path,
) {
    use vodpipe_control::ports::ObjectStore;
    aws.ingest
        .put(
            "in/clip.mp4",
            &std::fs::read(src).unwrap(),
            vodpipe_control::ports::Cacheability::Immutable,
        )
        .unwrap();
    let source = vodpipe_control::ingest::Source {
        uri: format!("s3://{}/in/clip.mp4", aws.settings.ingest_bucket),
        key: "in/clip.mp4".into(),
        job_id: job_id.into(),
        version: None,
        sequencer: None,
    };
    let mut cfg = vodpipe_control::pipeline::Config::new(scratch);
    cfg.plan.chunk_secs = chunk_secs;
    let ing = vodpipe_control::ingest::ingest(aws.ports(), &cfg, &source, false).unwrap();
    assert_eq!(ing.status, vodpipe_control::job::JobStatus::Encoding);
}

/// The emulator's endpoint (after [`start`]).
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap()
}

/// One request to the emulator's own control endpoints (`/_vodpipe/…`); its JSON answer.
pub fn control(method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
    use std::io::{Read, Write};
    let endpoint = endpoint();
    let host = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, reply) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains(" 200 "), "{method} {path}: {head}");
    serde_json::from_str(reply).unwrap()
}

static FAULTS: Mutex<()> = Mutex::new(());

/// Runs `f` with the fault plan `rules` (the front door's rules; every caller is subject
/// to them), one test at a time, and returns what was injected by operation.
pub fn with_faults<T>(rules: serde_json::Value, f: impl FnOnce() -> T) -> (T, serde_json::Value) {
    let _one = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
    control(
        "POST",
        "/_vodpipe/faults",
        Some(serde_json::json!({"seed": 1, "scope": "all", "rules": rules})),
    );
    let out = f();
    let report = control("GET", "/_vodpipe/faults", None);
    control("DELETE", "/_vodpipe/faults", None);
    (out, report["injected"].clone())
}
