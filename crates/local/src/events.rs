//! Job-state events on the embedded backend: one JSON line per announced state change
//! (planned, published, failed) appended to `<state>/events.jsonl`, with the same detail
//! an EventBridge event carries on AWS, so a script follows jobs with `tail -f` as a rule
//! follows them on AWS.

use std::io::Write;
use std::path::{Path, PathBuf};
use vodpipe_control::ports::{JobEvents, JobRecord, PortError, PortResult};

/// The events file's name in a state directory.
pub const EVENTS_FILE: &str = "events.jsonl";

/// Appends events to one file. Each event is one `write` of one line on a file opened for
/// appending, so the worker processes sharing a state directory never interleave lines.
pub struct EventsFile {
    path: PathBuf,
}

impl EventsFile {
    /// Events in `state_dir`'s [`EVENTS_FILE`].
    pub fn new(state_dir: &Path) -> Self {
        EventsFile {
            path: state_dir.join(EVENTS_FILE),
        }
    }

    /// Where the events go.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl JobEvents for EventsFile {
    fn job_changed(&self, job: &JobRecord) -> PortResult<()> {
        let mut event = vodpipe_control::moves::detail(job);
        event["time"] = serde_json::json!(vodpipe_media::process::now_secs());
        let mut line = event.to_string();
        line.push('\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| PortError::Backend(format!("{}: {e}", self.path.display())))
    }
}
