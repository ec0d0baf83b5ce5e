//! The embedded backend: vodpipe on one machine with no AWS.
//!
//! Objects live in a directory ([`objects`]); jobs, items, leases and queues in one SQLite
//! database ([`state`]); worker capacity is processes of this binary ([`fleet`]); the CDN
//! records its invalidations in the database; job-state events go to a JSON-lines file
//! ([`events`]). [`Local`] bundles them into the core's
//! [`Ports`](vodpipe_control::pipeline::Ports).

pub mod events;
pub mod fleet;
pub mod objects;
pub mod state;

use std::path::{Path, PathBuf};
use vodpipe_control::pipeline::Ports;
use vodpipe_control::ports::PortResult;

/// The setting that records where published objects go, so every process agrees.
const OUT_SETTING: &str = "object_root";

/// One process's handle on a state directory.
pub struct Local {
    /// Jobs, items, leases, queues, invalidations.
    pub state: state::SqliteState,
    /// Published objects.
    pub objects: objects::Objects,
    /// Worker processes.
    pub fleet: fleet::ProcessFleet,
    /// Job-state events, `<state>/events.jsonl`.
    pub events: events::EventsFile,
}

impl Local {
    /// Opens `state_dir`. The object root is fixed by the first opener (`out`, or
    /// `<state>/out`) and read back by every later one.
    pub fn open(
        state_dir: &Path,
        out: Option<&Path>,
        fleet: fleet::ProcessFleet,
        max_receives: u32,
    ) -> PortResult<Local> {
        let state = state::SqliteState::open(state_dir, max_receives)?;
        let wanted = match out {
            Some(o) => absolute(o),
            None => state_dir.join("out"),
        };
        let root = state.setting_or_init(OUT_SETTING, &wanted.display().to_string())?;
        if let Some(o) = out {
            if Path::new(&root) != absolute(o) {
                return Err(vodpipe_control::ports::PortError::Conflict(format!(
                    "state {} publishes to {root}, not {}; use another --state for another output directory",
                    state_dir.display(),
                    o.display()
                )));
            }
        }
        Ok(Local {
            state,
            objects: objects::Objects::new(root),
            fleet,
            events: events::EventsFile::new(state_dir),
        })
    }

    /// The ports over this backend.
    pub fn ports(&self) -> Ports<'_> {
        Ports {
            objects: &self.objects,
            jobs: &self.state,
            queue: &self.state,
            fleet: &self.fleet,
            cdn: &self.state,
            events: &self.events,
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
