//! The per-title analysis, a use-case of its own beside ingest and stitch: a job whose
//! ladder is `auto` gets one work item that samples the source with probe encodes,
//! chooses the rungs, revises the plan under its lease and queues every chunk. It runs on
//! a worker, not in the ingest function, because it needs an encoder and the workers have
//! one.

use crate::attempt::{Attempt, Ending};
use crate::domain::{ItemKind, JobRecord, Message, Queue};
use crate::pipeline::JobPlan;
use crate::ports::{PortError, PortResult};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

/// Samples the source, chooses the rungs, revises the plan under the lease, queues every
/// chunk, then ends for a commit. A retry after a crash between the revision and the
/// commit finds the plan revised and only queues the chunks again (a duplicate message
/// finds its chunk leased or done).
pub fn choose_ladder(at: &Attempt<'_, '_>, job: &JobRecord, plan: &JobPlan) -> PortResult<Ending> {
    let item = &at.lease.item;
    if plan.ladder_pending() {
        let (frames, cancel) = (AtomicU64::new(0), Arc::new(AtomicBool::new(false)));
        let stop = [cancel.clone(), at.shutdown.flag()];
        let chosen = at.heartbeat(&frames, &cancel, || {
            let input = at.open_source(job, Duration::from_secs(3600))?;
            let scratch = at
                .cfg
                .scratch
                .join(format!("{}-analysis-{}", item.job_id, at.lease.token));
            let mut revised = plan.clone();
            let chosen =
                revised.choose_ladder(&at.cfg.ffmpeg, &input, &scratch, job.duration_secs, &stop);
            let _ = std::fs::remove_dir_all(&scratch);
            chosen.map(|()| revised).map_err(crate::Error::from)
        });
        let revised = match chosen {
            Ok(r) => r,
            Err(e) => return Ok(Ending::Failed(e)),
        };
        let doc = match serde_json::to_string(&revised) {
            Ok(doc) => doc,
            Err(e) => return Ok(Ending::Failed(crate::Error::corrupt("the revised plan", e))),
        };
        match at
            .ports
            .jobs
            .revise_plan(at.lease, &doc, revised.rungs.len() as u32)
        {
            Ok(true) => {
                let ratio = revised.per_title.as_ref().map_or(1.0, |a| a.bits_ratio);
                tracing::info!(job = %item.job_id, rungs = revised.rungs.len(), bits_ratio = ratio, "per-title ladder chosen; queuing the chunks");
            }
            // The job left ENCODING (failed, say): nothing to queue.
            Ok(false) => {
                tracing::info!(job = %item.job_id, "plan not revised; the job moved on");
                return Ok(Ending::Commit("[]".into()));
            }
            Err(PortError::Conflict(why)) => {
                tracing::warn!(%why, "lease lost before the plan was revised; analysis discarded");
                return Ok(Ending::LeaseLost);
            }
            Err(e) => return Err(e),
        }
    }
    fail::fail_point!("analysis-after-revise", |_| Err(crate::ports::injected(
        "analysis-after-revise"
    )));
    // A film's thousands of messages take a while: the lease and the message are kept
    // alive meanwhile, so no second worker takes the analysis over mid-way.
    let (frames, cancel) = (AtomicU64::new(0), AtomicBool::new(false));
    at.heartbeat(&frames, &cancel, || {
        let chunks: Vec<Message> = at
            .ports
            .jobs
            .items(&item.job_id)?
            .into_iter()
            .filter(|(chunk, state)| chunk.kind == ItemKind::Video && !state.done && !state.leased)
            .map(|(chunk, _)| Message::Item(chunk))
            .collect();
        at.ports.queue.send_many(Queue::Work(job.tier), &chunks)
    })?;
    Ok(Ending::Commit("[]".into()))
}
