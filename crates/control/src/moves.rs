//! The one place a job's state is moved by a use-case and the move made known: a
//! transition from the lifecycle's table ([`Transition`]) is written through the job
//! store, and when it moved the job into a state a user acts on (planned, published,
//! failed) the new state is counted ([`crate::metrics`]) and announced on the events port.
//! Moves the job store makes inside a larger write (the plan saved, the last commit, the
//! publish) are reported here with [`entered`].

use crate::domain::{JobRecord, Transition};
use crate::pipeline::Ports;
use crate::ports::PortResult;

/// Makes transition `t` of job `id` (with `error` as the reason of a failure); counts and
/// announces it when it moved. Returns whether it moved: a job already elsewhere (another
/// worker failed it first, a redelivered request) moves nothing and announces nothing.
pub fn apply(ports: Ports<'_>, id: &str, t: Transition, error: Option<&str>) -> PortResult<bool> {
    let moved = ports.jobs.transition(id, t, error)?;
    if moved {
        let _ = entered(ports, id, t);
    }
    Ok(moved)
}

/// Counts and announces that job `id` made transition `t`, which the caller's own write
/// made; returns the job as read for the announcement, so a caller that needs it too does
/// not read it again. Never fails the caller: the job store is the truth, an announcement
/// a courtesy.
pub fn entered(ports: Ports<'_>, id: &str, t: Transition) -> Option<JobRecord> {
    if !t.announced() {
        return None;
    }
    crate::metrics::job_state(t.to());
    if !ports.events.enabled() {
        return None;
    }
    let job = match ports.jobs.job(id) {
        Ok(job) => job?,
        Err(e) => {
            tracing::warn!(job = %id, error = %e, "could not read the job to announce its state");
            return None;
        }
    };
    if let Err(e) = ports.events.job_changed(&job) {
        tracing::warn!(job = %id, error = %e, "could not announce the job's state");
    }
    Some(job)
}

/// What an announcement of `job` says: what a subscriber needs without reading the job
/// store (the detail of an EventBridge event, a line of the embedded events file).
pub fn detail(job: &JobRecord) -> serde_json::Value {
    serde_json::json!({
        "job_id": job.id,
        "status": job.status.as_str(),
        "source": job.source,
        "asset": job.asset,
        "tier": job.tier.as_str(),
        "settings": job.settings,
        "error": job.error,
        "master_key": job.master_key,
        "dash_key": job.dash_key,
        "duration_secs": job.duration_secs,
        "renditions": job.renditions,
        "protection": crate::outputs::protection(job),
        "subtitles": crate::outputs::subtitle_languages(job),
        "poster_key": crate::outputs::published_key(job, "poster"),
        "thumbnails_key": crate::outputs::published_key(job, "thumbnails"),
    })
}
