//! Worker capacity on one machine: worker processes of this same binary.
//!
//! `ensure_capacity` starts `vodpipe worker` processes on the shared state directory until
//! the wanted number (capped) are alive; they exit by themselves when idle, which is how
//! the embedded fleet scales to zero.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use vodpipe_control::ports::{Cdn, Fleet, PortError, PortResult, Tier};

/// Spawns worker processes; `max` caps the total alive (0: never spawn, workers are
/// started by hand with `vodpipe worker`).
pub struct ProcessFleet {
    exe: PathBuf,
    state: PathBuf,
    max: u32,
    idle_exit_secs: u64,
    ffmpeg: Option<String>,
    drm_keys: Option<PathBuf>,
    children: Mutex<Vec<Child>>,
}

impl ProcessFleet {
    /// A fleet of `exe worker --state STATE` processes.
    pub fn new(exe: PathBuf, state: PathBuf, max: u32, idle_exit_secs: u64) -> Self {
        ProcessFleet {
            exe,
            state,
            max,
            idle_exit_secs,
            ffmpeg: None,
            drm_keys: None,
            children: Mutex::new(Vec::new()),
        }
    }

    /// Workers use this ffmpeg (the one the user chose for the whole run).
    pub fn with_ffmpeg(mut self, ffmpeg: &str) -> Self {
        self.ffmpeg = Some(ffmpeg.to_string());
        self
    }

    /// Workers encrypt with this key file (its path travels, never the key).
    pub fn with_drm_keys(mut self, path: &std::path::Path) -> Self {
        self.drm_keys = Some(path.to_path_buf());
        self
    }

    /// Workers alive now.
    pub fn alive(&self) -> u32 {
        self.children.lock().map_or(0, |mut c| {
            c.retain_mut(|ch| matches!(ch.try_wait(), Ok(None)));
            c.len() as u32
        })
    }

    /// Asks every worker to stop (SIGTERM: an idle worker exits at once, a busy one gives
    /// its item back) and waits for them. Used when there is no work left, so a run does not
    /// wait out the workers' idle timeout.
    pub fn stop_all(&self) {
        if let Ok(mut c) = self.children.lock() {
            for ch in c.iter() {
                let _ = Command::new("kill")
                    .args(["-TERM", &ch.id().to_string()])
                    .status();
            }
            for ch in c.iter_mut() {
                let _ = ch.wait();
            }
            c.clear();
        }
    }

    /// Waits for every worker to exit.
    pub fn wait_all(&self) {
        if let Ok(mut c) = self.children.lock() {
            for ch in c.iter_mut() {
                let _ = ch.wait();
            }
            c.clear();
        }
    }
}

impl Fleet for ProcessFleet {
    fn ensure_capacity(&self, _tier: Tier, workers: u32) -> PortResult<u32> {
        let mut children = self
            .children
            .lock()
            .map_err(|_| PortError::Backend("fleet lock poisoned".into()))?;
        children.retain_mut(|ch| matches!(ch.try_wait(), Ok(None)));
        let want = workers.min(self.max) as usize;
        while children.len() < want {
            // Every local worker serves every tier: one machine has one kind of capacity.
            let mut cmd = Command::new(&self.exe);
            cmd.arg("worker")
                .arg("--state")
                .arg(&self.state)
                .args(["--idle-exit", &self.idle_exit_secs.to_string()])
                .stdin(Stdio::null());
            if let Some(f) = &self.ffmpeg {
                cmd.env("VODPIPE_FFMPEG", f);
            }
            if let Some(k) = &self.drm_keys {
                cmd.env("VODPIPE_DRM_KEYS", k);
            }
            let child = cmd.spawn().map_err(|e| {
                PortError::Backend(format!("starting a worker ({}): {e}", self.exe.display()))
            })?;
            children.push(child);
        }
        Ok(children.len() as u32)
    }
}

impl Drop for ProcessFleet {
    fn drop(&mut self) {
        self.wait_all();
    }
}

/// Invalidations are recorded in the state database, so tests and `status` can see them.
impl Cdn for crate::state::SqliteState {
    fn invalidate(&self, paths: &[String], caller_reference: &str) -> PortResult<()> {
        self.record_invalidation(caller_reference, paths)
    }
}
