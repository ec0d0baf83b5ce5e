//! Fargate, as processes: every task the emulator's ECS has RUNNING becomes a local
//! `worker-task` process with the task's environment overrides, and a process that exits
//! stops its task (so `ListTasks`, which the fleet counts, stays true).
//!
//! A Spot interruption is what ECS does to a reclaimed task: the task's desired status
//! becomes STOPPED, an ECS Task State Change with `stopCode: SpotInterruption` and
//! `lastStatus: RUNNING` (the two-minute warning) goes to the rule that targets the fleet
//! function together with SIGTERM to the process, and once the process has exited the task
//! is STOPPED and a second event says so. [`Fargate`] can do that to the first task it
//! catches running ffmpeg (a chunk, an audio track, subtitles or the ladder analysis),
//! frozen first so that it is mid-item by construction.

use crate::runtime_api::{FunctionHost, Outcome};
use crate::sources::eventbridge_event;
use aws_sdk_ecs::types::DesiredStatus;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vodpipe_aws::config::Bridge;

/// What ECS says of a reclaimed Spot task.
const SPOT_REASON: &str = "Your Spot Task was interrupted.";

/// What happened to the tasks.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FargateStats {
    /// Tasks started (processes spawned).
    pub started: u32,
    /// Tasks started, by `startedBy` (`vodpipe-<tier>`): which tiers got capacity.
    pub started_by: std::collections::BTreeMap<String, u32>,
    /// Tasks that ended with a non-zero exit (a crash loop shows here).
    pub crashed: u32,
    /// Tasks interrupted as Spot tasks are.
    pub interrupted: u32,
    /// Tasks that never started (their image could not be pulled).
    pub failed_to_start: u32,
    /// SIGTERM to exit for each interrupted task, milliseconds.
    pub interruption_exit_ms: Vec<u64>,
    /// Tasks running now.
    pub running: u32,
}

/// Where the tasks run.
pub struct Fargate {
    /// Runs SDK calls.
    pub bridge: Arc<Bridge>,
    /// ECS on the emulator.
    pub ecs: aws_sdk_ecs::Client,
    /// Cluster name.
    pub cluster: String,
    /// The `worker-task` binary.
    pub worker: PathBuf,
    /// Environment every task gets (the task definition's).
    pub env: Vec<(String, String)>,
    /// Task logs go here, one file per task.
    pub log_dir: PathBuf,
    /// The function the Spot-interruption rule targets.
    pub fleet_function: Arc<FunctionHost>,
    /// Interrupt the first task seen running ffmpeg.
    pub interrupt_once: bool,
    /// Until then, the worker image cannot be pulled: every task stops with
    /// `TaskFailedToStart`, as ECS stops it.
    pub image_missing_until: Option<Instant>,
    /// Set to end the loop (running tasks are then stopped).
    pub stop: Arc<AtomicBool>,
    /// Counters.
    pub stats: Arc<Mutex<FargateStats>>,
}

struct Task {
    child: Child,
    started_by: String,
    capacity_provider: String,
    sigterm_at: Option<Instant>,
    /// The ffmpeg frozen at the reclaim, killed once the task has exited should the
    /// worker have left it behind.
    frozen: Option<u32>,
}

/// The pid of an `ffmpeg` child of `pid`, if it has one (Linux /proc).
fn ffmpeg_child(pid: u32) -> Option<u32> {
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    threads.flatten().find_map(|t| {
        std::fs::read_to_string(t.path().join("children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
            .find(|c| {
                std::fs::read_to_string(format!("/proc/{c}/comm"))
                    .map(|comm| comm.trim() == "ffmpeg")
                    .unwrap_or(false)
            })
    })
}

/// The one-letter state of `pid` (`T` stopped, `Z` exited but not reaped), from
/// `/proc/<pid>/stat`, whose second field (the command) may itself hold spaces and parens.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Freezes the ffmpeg running under task `pid`, so that the reclaim lands mid-item for
/// certain: an ffmpeg that finished between the look and the signal would commit normally
/// and the test would have interrupted nothing. A stopped process cannot exit, and the
/// worker's cancel is SIGKILL, which needs no resume. Returns the frozen pid.
fn freeze_encoder(pid: u32) -> Option<u32> {
    let ffmpeg = ffmpeg_child(pid)?;
    signal(ffmpeg, "STOP");
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        match process_state(ffmpeg) {
            Some('T') => return Some(ffmpeg),
            // Exited (or reaped) before the signal landed: try again on the next tick.
            Some('Z' | 'X') | None => return None,
            Some(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    signal(ffmpeg, "CONT");
    None
}

/// Sends `SIG<name>` to `pid` (the workspace forbids `unsafe`, so through `kill(1)`).
fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn sigterm(pid: u32) {
    signal(pid, "TERM");
}

impl Fargate {
    fn stats(&self) -> std::sync::MutexGuard<'_, FargateStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs tasks until stopped.
    pub fn run(self) {
        let mut tasks: HashMap<String, Task> = HashMap::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut interrupted_one = false;
        while !self.stop.load(Ordering::SeqCst) {
            if let Err(e) = self.start_new(&mut tasks, &mut seen) {
                tracing::warn!(error = %e, "listing tasks");
            }
            let ended: Vec<String> = tasks
                .iter_mut()
                .filter_map(|(arn, t)| match t.child.try_wait() {
                    Ok(Some(_)) => Some(arn.clone()),
                    _ => None,
                })
                .collect();
            for arn in ended {
                if let Some(t) = tasks.remove(&arn) {
                    self.task_ended(&arn, t);
                }
            }
            if self.interrupt_once && !interrupted_one {
                let caught = tasks
                    .iter_mut()
                    .find_map(|(arn, t)| freeze_encoder(t.child.id()).map(|f| (arn, t, f)));
                if let Some((arn, t, frozen)) = caught {
                    tracing::warn!(
                        pid = t.child.id(),
                        ffmpeg = frozen,
                        "reclaiming a Spot task mid-item"
                    );
                    t.frozen = Some(frozen);
                    // ECS stops counting the task as wanted, warns, and signals it.
                    self.stop_task(arn, SPOT_REASON);
                    sigterm(t.child.id());
                    t.sigterm_at = Some(Instant::now());
                    self.tell_fleet(arn, t, "RUNNING", None);
                    interrupted_one = true;
                }
            }
            self.stats().running = tasks.len() as u32;
            std::thread::sleep(Duration::from_millis(100));
        }
        for t in tasks.values() {
            sigterm(t.child.id());
        }
        for (arn, mut t) in tasks {
            let _ = t.child.wait();
            self.stop_task(&arn, "emulator shutting down");
        }
        self.stats().running = 0;
    }

    fn start_new(
        &self,
        tasks: &mut HashMap<String, Task>,
        seen: &mut HashSet<String>,
    ) -> anyhow::Result<()> {
        let listed = self.bridge.run(
            self.ecs
                .list_tasks()
                .cluster(&self.cluster)
                .desired_status(DesiredStatus::Running)
                .send(),
        )?;
        let new: Vec<String> = listed
            .task_arns()
            .iter()
            .filter(|a| !seen.contains(*a))
            .cloned()
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let described = self.bridge.run(
            self.ecs
                .describe_tasks()
                .cluster(&self.cluster)
                .set_tasks(Some(new.clone()))
                .send(),
        )?;
        for task in described.tasks() {
            let arn = task.task_arn().unwrap_or_default().to_string();
            seen.insert(arn.clone());
            if self.image_missing_until.is_some_and(|t| Instant::now() < t) {
                self.fail_to_start(&arn, task.started_by().unwrap_or_default());
                continue;
            }
            let overrides: Vec<(String, String)> = task
                .overrides()
                .map(|o| o.container_overrides())
                .unwrap_or_default()
                .iter()
                .flat_map(|c| c.environment().iter())
                .map(|kv| {
                    (
                        kv.name().unwrap_or_default().to_string(),
                        kv.value().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            let short = arn.rsplit('/').next().unwrap_or("task").to_string();
            let log = File::create(self.log_dir.join(format!("task-{short}.log")))?;
            let child = Command::new(&self.worker)
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .envs(overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                // Each task has ephemeral storage of its own.
                .env("VODPIPE_SCRATCH", self.log_dir.join("scratch").join(&short))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .map_err(|e| anyhow::anyhow!("starting {}: {e}", self.worker.display()))?;
            tracing::info!(task = %short, pid = child.id(), ?overrides, "task started");
            {
                let mut st = self.stats();
                st.started += 1;
                *st.started_by
                    .entry(task.started_by().unwrap_or_default().to_string())
                    .or_insert(0) += 1;
            }
            tasks.insert(
                arn,
                Task {
                    child,
                    started_by: task.started_by().unwrap_or_default().to_string(),
                    capacity_provider: task
                        .capacity_provider_name()
                        .unwrap_or_default()
                        .to_string(),
                    sigterm_at: None,
                    frozen: None,
                },
            );
        }
        Ok(())
    }

    fn task_ended(&self, arn: &str, mut t: Task) {
        let status = t.child.wait().ok();
        // The worker kills what it runs; one it left behind frozen would be an orphan.
        // Only a process that is still a stopped ffmpeg is signalled (the pid may be reused).
        if let Some(ffmpeg) = t.frozen {
            let comm = std::fs::read_to_string(format!("/proc/{ffmpeg}/comm")).unwrap_or_default();
            if comm.trim() == "ffmpeg" && process_state(ffmpeg) == Some('T') {
                signal(ffmpeg, "KILL");
            }
        }
        let ok = status.is_some_and(|s| s.success());
        match t.sigterm_at {
            Some(at) => {
                let ms = at.elapsed().as_millis() as u64;
                {
                    let mut st = self.stats();
                    st.interrupted += 1;
                    st.interruption_exit_ms.push(ms);
                }
                self.stop_task(arn, SPOT_REASON);
                tracing::warn!(task = %arn, ms, "Spot task stopped; telling the fleet");
                self.tell_fleet(arn, &t, "STOPPED", status.and_then(|s| s.code()));
            }
            None => {
                if !ok {
                    self.stats().crashed += 1;
                    tracing::warn!(task = %arn, ?status, "task exited with an error");
                }
                self.stop_task(arn, "Essential container in task exited");
            }
        }
    }

    /// What ECS does with a task whose image cannot be pulled: it stops it with
    /// `TaskFailedToStart`, and the rule sends the change to the fleet function.
    fn fail_to_start(&self, arn: &str, started_by: &str) {
        const REASON: &str = "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref vodpipe-worker:latest: not found";
        self.stop_task(arn, REASON);
        self.stats().failed_to_start += 1;
        self.send_change(
            arn,
            json!({
                "startedBy": started_by,
                "lastStatus": "STOPPED",
                "stopCode": "TaskFailedToStart",
                "stoppedReason": REASON,
                "containers": [{"name": "worker", "lastStatus": "STOPPED", "reason": "CannotPullContainerError"}],
            }),
        );
    }

    /// The ECS Task State Change of a Spot interruption, sent to the fleet function.
    fn tell_fleet(&self, arn: &str, t: &Task, last_status: &str, exit_code: Option<i32>) {
        self.send_change(
            arn,
            json!({
                "startedBy": t.started_by,
                "capacityProviderName": t.capacity_provider,
                "lastStatus": last_status,
                "stopCode": "SpotInterruption",
                "stoppedReason": SPOT_REASON,
                "containers": [{"name": "worker", "lastStatus": last_status, "exitCode": exit_code}],
            }),
        );
    }

    /// An ECS Task State Change of a stopping task (`fields` over what every one says),
    /// sent to the fleet function as the rule would.
    fn send_change(&self, arn: &str, fields: serde_json::Value) {
        let mut detail = json!({
            "clusterArn": format!("arn:aws:ecs:us-east-1:123456789012:cluster/{}", self.cluster),
            "taskArn": arn,
            "group": "family:vodpipe-worker",
            "launchType": "FARGATE",
            "desiredStatus": "STOPPED",
        });
        if let (Some(d), Some(f)) = (detail.as_object_mut(), fields.as_object()) {
            d.extend(f.clone());
        }
        let stop_code = detail["stopCode"].clone();
        let event = eventbridge_event(
            "aws.ecs",
            "ECS Task State Change",
            &[arn.to_string()],
            detail,
        );
        if let Outcome::Response(r) = self.fleet_function.invoke(&event) {
            tracing::info!(%stop_code, response = %r, "fleet answered a task's stop");
        }
    }

    fn stop_task(&self, arn: &str, reason: &str) {
        if let Err(e) = self.bridge.run(
            self.ecs
                .stop_task()
                .cluster(&self.cluster)
                .task(arn)
                .reason(reason)
                .send(),
        ) {
            tracing::warn!(task = %arn, error = ?e, "stopping a task in the emulator");
        }
    }
}

/// The sibling binary `name` next to this executable (cargo puts every workspace binary
/// of a profile in one directory).
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no directory", exe.display()))?;
    Ok(dir.join(name))
}
