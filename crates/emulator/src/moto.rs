//! The moto server: started from the project's virtualenv on a free port, or reused when
//! `AWS_ENDPOINT_URL` already points at one.

use anyhow::{Context, Result};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running emulator (stopped on drop when this process started it).
pub struct Moto {
    /// Its endpoint.
    pub endpoint: String,
    child: Option<Child>,
}

/// The workspace root: the nearest directory above `from` with a Cargo.lock.
pub fn workspace_root(from: &Path) -> Option<PathBuf> {
    from.ancestors()
        .find(|p| p.join("Cargo.lock").exists())
        .map(Path::to_path_buf)
}

impl Moto {
    /// Uses `AWS_ENDPOINT_URL` if set, else starts `.venv/bin/moto_server` (or
    /// `VODPIPE_MOTO_SERVER`) and points this process's SDK environment at it.
    pub fn start_or_reuse() -> Result<Self> {
        let moto = if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
            Moto {
                endpoint,
                child: None,
            }
        } else {
            let exe = match std::env::var_os("VODPIPE_MOTO_SERVER") {
                Some(p) => PathBuf::from(p),
                None => {
                    let here = std::env::current_dir()?;
                    let exe_dir = std::env::current_exe()?;
                    workspace_root(&here)
                        .or_else(|| workspace_root(&exe_dir))
                        .context("no workspace root (Cargo.lock) above here")?
                        .join(".venv/bin/moto_server")
                }
            };
            anyhow::ensure!(
                exe.exists(),
                "moto_server not found at {} — run `make moto-deps` (make test and make e2e-aws do) or set VODPIPE_MOTO_SERVER",
                exe.display()
            );
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            // moto_server's own Python, running it through the project's launcher, which
            // keeps DynamoDB's write isolation under concurrent requests.
            let python = exe
                .parent()
                .map(|d| d.join("python"))
                .context("moto_server has no directory")?;
            let root = workspace_root(&std::env::current_dir()?)
                .or_else(|| workspace_root(&std::env::current_exe().ok()?))
                .context("no workspace root (Cargo.lock) above here")?;
            let child = Command::new(&python)
                .arg(root.join("scripts/moto_server.py"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", exe.display()))?;
            let started = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(30),
                    "moto_server did not start on port {port}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            Moto {
                endpoint: format!("http://127.0.0.1:{port}"),
                child: Some(child),
            }
        };
        for (k, v) in moto.env() {
            std::env::set_var(k, v);
        }
        Ok(moto)
    }

    /// The SDK environment for this emulator (credentials are placeholders moto accepts).
    pub fn env(&self) -> Vec<(String, String)> {
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", region.as_str()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The default VPC's subnets (one per AZ, two at least) and security group, read with
    /// boto3 from the emulator's virtualenv: the one EC2 call the set-up needs.
    pub fn default_network(&self) -> Result<(Vec<String>, String)> {
        let python = std::env::var_os("VODPIPE_MOTO_SERVER")
            .map(PathBuf::from)
            .and_then(|p| p.parent().map(|d| d.join("python")))
            .or_else(|| {
                workspace_root(&std::env::current_dir().ok()?).map(|r| r.join(".venv/bin/python"))
            })
            .context("no python next to moto_server")?;
        let root = workspace_root(&std::env::current_dir()?)
            .or_else(|| workspace_root(&std::env::current_exe().ok()?))
            .context("no workspace root (Cargo.lock) above here")?;
        let script = root.join("scripts/moto_default_network.py");
        let out = Command::new(&python)
            .arg(&script)
            .envs(self.env())
            .output()
            .with_context(|| format!("running {}", python.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "reading the default VPC: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let subnets: Vec<String> = v["subnets"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        anyhow::ensure!(
            subnets.len() >= 2,
            "the default VPC has fewer than two subnets"
        );
        Ok((subnets, v["sg"].as_str().unwrap_or_default().to_string()))
    }
}

/// One plain HTTP/1.0 request to one of the emulator's own endpoints (`/_vodpipe/…`, no
/// AWS signing) at `endpoint`; the JSON it answers.
pub fn control(
    endpoint: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value> {
    use std::io::{Read, Write};
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(host)
        .with_context(|| format!("connecting to the emulator at {host}"))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, reply) = text.split_once("\r\n\r\n").context("no HTTP body")?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "the emulator answered {} to {method} {path}",
        head.lines().next().unwrap_or("")
    );
    serde_json::from_str(reply).with_context(|| format!("{method} {path} answered {reply:?}"))
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
