//! The Lambda runtime API, served for one function binary.
//!
//! A deployed function is a process that long-polls `GET /runtime/invocation/next` on
//! `AWS_LAMBDA_RUNTIME_API` and posts each result back. [`FunctionHost`] is that API on
//! 127.0.0.1: it starts the real binary (the one `cargo lambda build` packages) with the
//! variables Lambda sets, queues invocations, and hands back the function's answer or
//! error. Like one Lambda execution environment, it runs one invocation at a time, keeps
//! the process warm between them, restarts it after a crash or a timeout, and measures
//! every cold start (process start to its first poll for work, which is Lambda's init).

use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PREFIX: &str = "/2018-06-01/runtime";

/// What an invocation came back with.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The function's response document.
    Response(Value),
    /// The function reported an error, crashed, or timed out.
    Error(String),
}

/// Counters a test or the e2e report reads.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FunctionStats {
    /// Invocations handed to the function.
    pub invocations: u32,
    /// Invocations that ended in an error.
    pub errors: u32,
    /// Each cold start's init time, milliseconds.
    pub init_ms: Vec<u64>,
    /// Time spent in invocations (waiting for the environment included), milliseconds:
    /// with `invocations`, the mean duration a simulation of the same work replays.
    pub busy_ms: u64,
}

struct Pending {
    id: String,
    body: Vec<u8>,
    deadline_ms: u128,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    results: HashMap<String, Outcome>,
    spawned_at: Option<Instant>,
    /// Bumped at every process start: a poll left over from a dead process must not take
    /// an invocation it can never answer.
    generation: u64,
    init_error: Option<String>,
    stats: FunctionStats,
    closed: bool,
}

struct Channel {
    state: Mutex<State>,
    changed: Condvar,
}

impl Channel {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicked holder leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One function: its binary, its environment, and the runtime API it polls.
pub struct FunctionHost {
    name: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    timeout: Duration,
    api: String,
    channel: Arc<Channel>,
    child: Mutex<Option<Child>>,
    serial: Mutex<u64>,
}

impl FunctionHost {
    /// Serves the runtime API for `binary` (not started until the first invocation), with
    /// `env` added to this process's environment and its output appended to `log`.
    pub fn new(
        name: &str,
        binary: &Path,
        env: Vec<(String, String)>,
        log: &Path,
        timeout: Duration,
    ) -> anyhow::Result<Arc<Self>> {
        anyhow::ensure!(
            binary.exists(),
            "function binary {} not found (build it with `cargo build --workspace --bins`)",
            binary.display()
        );
        let server = tiny_http::Server::http("127.0.0.1:0")
            .map_err(|e| anyhow::anyhow!("runtime API for {name}: {e}"))?;
        let api = server
            .server_addr()
            .to_ip()
            .map(|a| a.to_string())
            .ok_or_else(|| anyhow::anyhow!("runtime API for {name} has no IP address"))?;
        let channel = Arc::new(Channel {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let host = Arc::new(FunctionHost {
            name: name.to_string(),
            binary: binary.to_path_buf(),
            env,
            log: log.to_path_buf(),
            timeout,
            api,
            channel: channel.clone(),
            child: Mutex::new(None),
            serial: Mutex::new(0),
        });
        let fn_name = name.to_string();
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                let channel = channel.clone();
                let fn_name = fn_name.clone();
                // `next` blocks until there is work: one thread per request.
                std::thread::spawn(move || serve(&channel, &fn_name, request));
            }
        });
        Ok(host)
    }

    /// Invocations, errors and cold starts so far.
    pub fn stats(&self) -> FunctionStats {
        self.channel.lock().stats.clone()
    }

    /// Invokes the function with `event` and waits for its answer (synchronous invocation).
    pub fn invoke(&self, event: &Value) -> Outcome {
        let started = Instant::now();
        let outcome = self.invoke_timed(event);
        self.channel.lock().stats.busy_ms += started.elapsed().as_millis() as u64;
        outcome
    }

    fn invoke_timed(&self, event: &Value) -> Outcome {
        // One execution environment: invocations run one after another.
        let mut serial = self.serial.lock().unwrap_or_else(|p| p.into_inner());
        *serial += 1;
        let id = format!("{}-{:06}", self.name, *serial);
        if let Err(e) = self.ensure_running() {
            return self.finish(Outcome::Error(format!("cannot start the function: {e}")));
        }
        let deadline = Instant::now() + self.timeout;
        let deadline_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| (d + self.timeout).as_millis())
            .unwrap_or(0);
        {
            let mut st = self.channel.lock();
            st.stats.invocations += 1;
            st.queue.push_back(Pending {
                id: id.clone(),
                body: event.to_string().into_bytes(),
                deadline_ms,
            });
            self.channel.changed.notify_all();
        }
        loop {
            let mut st = self.channel.lock();
            if let Some(outcome) = st.results.remove(&id) {
                drop(st);
                return self.finish(outcome);
            }
            if let Some(e) = st.init_error.take() {
                st.queue.retain(|p| p.id != id);
                drop(st);
                self.kill();
                return self.finish(Outcome::Error(format!("init error: {e}")));
            }
            if Instant::now() >= deadline {
                st.queue.retain(|p| p.id != id);
                drop(st);
                // Lambda ends an environment whose invocation times out.
                self.kill();
                return self.finish(Outcome::Error(format!(
                    "Task timed out after {:.1} seconds",
                    self.timeout.as_secs_f64()
                )));
            }
            let (st, _) = self
                .channel
                .changed
                .wait_timeout(st, Duration::from_millis(200))
                .unwrap_or_else(|p| p.into_inner());
            drop(st);
            if let Some(code) = self.exited() {
                self.channel.lock().queue.retain(|p| p.id != id);
                return self.finish(Outcome::Error(format!(
                    "Runtime exited with {code} before answering"
                )));
            }
        }
    }

    fn finish(&self, outcome: Outcome) -> Outcome {
        if let Outcome::Error(e) = &outcome {
            self.channel.lock().stats.errors += 1;
            tracing::warn!(function = %self.name, error = %e, "invocation failed");
        }
        outcome
    }

    /// The exit status of a process that has ended (and is then forgotten).
    fn exited(&self) -> Option<String> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let status = child.as_mut()?.try_wait().ok()??;
        *child = None;
        Some(status.to_string())
    }

    fn ensure_running(&self) -> anyhow::Result<()> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = child.as_mut() {
            if c.try_wait()?.is_none() {
                return Ok(());
            }
        }
        let log = File::options().create(true).append(true).open(&self.log)?;
        let spawned = Command::new(&self.binary)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", &self.api)
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", self.name),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "emulator")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {}: {e}", self.binary.display()))?;
        let mut st = self.channel.lock();
        st.spawned_at = Some(Instant::now());
        st.generation += 1;
        self.channel.changed.notify_all();
        drop(st);
        *child = Some(spawned);
        Ok(())
    }

    fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the function process and the pollers waiting for work.
    pub fn shutdown(&self) {
        {
            let mut st = self.channel.lock();
            st.closed = true;
            self.channel.changed.notify_all();
        }
        self.kill();
    }
}

impl Drop for FunctionHost {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn respond(request: tiny_http::Request, code: u16, body: &str) {
    let _ = request.respond(tiny_http::Response::from_string(body).with_status_code(code));
}

fn header(name: &str, value: &str) -> Option<tiny_http::Header> {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

/// One runtime API request.
fn serve(channel: &Channel, fn_name: &str, mut request: tiny_http::Request) {
    let url = request.url().to_string();
    let Some(path) = url.strip_prefix(PREFIX) else {
        return respond(request, 404, "not a runtime API path");
    };
    let mut body = Vec::new();
    if request.as_reader().read_to_end(&mut body).is_err() {
        return respond(request, 400, "unreadable body");
    }
    match (request.method(), path) {
        (tiny_http::Method::Get, "/invocation/next") => {
            let mut st = channel.lock();
            let generation = st.generation;
            if let Some(at) = st.spawned_at.take() {
                st.stats.init_ms.push(at.elapsed().as_millis() as u64);
            }
            let pending = loop {
                if st.closed || st.generation != generation {
                    drop(st);
                    return respond(request, 410, "shutting down");
                }
                if let Some(p) = st.queue.pop_front() {
                    break p;
                }
                st = channel.changed.wait(st).unwrap_or_else(|p| p.into_inner());
            };
            drop(st);
            let arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{fn_name}");
            let mut response = tiny_http::Response::from_data(pending.body);
            for h in [
                header("Content-Type", "application/json"),
                header("Lambda-Runtime-Aws-Request-Id", &pending.id),
                header(
                    "Lambda-Runtime-Deadline-Ms",
                    &pending.deadline_ms.to_string(),
                ),
                header("Lambda-Runtime-Invoked-Function-Arn", &arn),
                header(
                    "Lambda-Runtime-Trace-Id",
                    &format!("Root=1-00000000-{:024}", pending.deadline_ms),
                ),
            ]
            .into_iter()
            .flatten()
            {
                response.add_header(h);
            }
            let _ = request.respond(response);
        }
        (tiny_http::Method::Post, "/init/error") => {
            let mut st = channel.lock();
            st.init_error = Some(String::from_utf8_lossy(&body).into_owned());
            channel.changed.notify_all();
            drop(st);
            respond(request, 202, "{}");
        }
        (tiny_http::Method::Post, p) => {
            let Some(rest) = p.strip_prefix("/invocation/") else {
                return respond(request, 404, "unknown path");
            };
            let Some((id, kind)) = rest.split_once('/') else {
                return respond(request, 404, "unknown path");
            };
            let outcome = match kind {
                "response" => Outcome::Response(if body.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&body).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&body).into_owned())
                    })
                }),
                "error" => Outcome::Error(String::from_utf8_lossy(&body).into_owned()),
                _ => return respond(request, 404, "unknown path"),
            };
            let mut st = channel.lock();
            st.results.insert(id.to_string(), outcome);
            channel.changed.notify_all();
            drop(st);
            respond(request, 202, "{}");
        }
        _ => respond(request, 404, "unknown path"),
    }
}
