//! The frame index, a use-case of its own beside ingest and stitch: a source whose
//! container carries no frame table (MKV, MPEG-TS, MXF, AVI, fragmented MP4) gets one work
//! item that scans every packet, plans the chunks from the table (as ingest plans an
//! MP4's), saves the plan under its lease, and makes and queues the job's other items. The
//! scan's cost grows with the source, so it runs on a worker, not in the ingest function.

use crate::attempt::{Attempt, Ending};
use crate::domain::{ItemKind, ItemRef, JobRecord, Message, Queue};
use crate::pipeline::JobPlan;
use crate::ports::{PortError, PortResult};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

/// Scans, plans, saves, makes and queues the job's items, then ends for a commit. Each
/// step is safe to repeat: a retry after a crash between the save and the commit finds
/// the plan saved, scans nothing, makes only the items still missing and queues those
/// neither done nor held (a duplicate message finds its item leased or done). Until this
/// item commits, the job counts it as unfinished.
pub fn index_source(
    at: &Attempt<'_, '_>,
    job: &JobRecord,
    plan: &Arc<JobPlan>,
) -> PortResult<Ending> {
    let item = &at.lease.item;
    let mut indexed = plan.clone();
    if plan.index_pending() {
        let (frames, cancel) = (AtomicU64::new(0), Arc::new(AtomicBool::new(false)));
        let stop = [cancel.clone(), at.shutdown.flag()];
        let scanned = at.heartbeat(&frames, &cancel, || {
            let input = at.open_source(job, Duration::from_secs(6 * 3600))?;
            let timeout = crate::ingest::index_timeout(plan);
            Ok(crate::ingest::index_plan(
                at.cfg, &input, plan, timeout, &stop,
            )?)
        });
        let mut jp = match scanned {
            Ok(jp) => jp,
            Err(e) => return Ok(Ending::Failed(e)),
        };
        let items = crate::ingest::work_items(&item.job_id, &jp);
        let frames_total = jp.plan.total_frames;
        // The budget was checked at ingest on the container's duration; the frame table
        // settles the estimate status shows.
        let planned_cost = jp.planned_cost_usd(job.tier).unwrap_or(0.0);
        // Checked again on the table: a container that stated no duration, or a longer
        // one than it holds, was estimated on too little at ingest.
        if let Err(e) = crate::ingest::within_budget(
            planned_cost,
            job.settings.as_ref().and_then(|s| s.max_cost_usd.as_ref()),
        ) {
            return Ok(Ending::Failed(e.into()));
        }
        let (doc, duration) = crate::ingest::plan_record(&mut jp)?;
        match at.ports.jobs.save_index(
            at.lease,
            &doc,
            duration,
            frames_total,
            jp.rungs.len() as u32,
            planned_cost,
            &items,
        ) {
            Ok(true) => {
                tracing::info!(job = %item.job_id, chunks = jp.plan.chunks.len(), frames = frames_total, "frame index read; chunks planned");
            }
            // The job left ENCODING (failed, say): nothing to make or queue.
            Ok(false) => {
                tracing::info!(job = %item.job_id, "index not saved; the job moved on");
                return Ok(Ending::Commit("[]".into()));
            }
            Err(PortError::Conflict(why)) => {
                tracing::warn!(%why, "lease lost before the index was saved; scan discarded");
                return Ok(Ending::LeaseLost);
            }
            Err(e) => return Err(e),
        }
        indexed = Arc::new(jp);
    }
    fail::fail_point!("index-after-save", |_| Err(crate::ports::injected(
        "index-after-save"
    )));
    // A film's thousands of items and messages take a while: the lease and the message
    // are kept alive meanwhile, so no second worker takes the index over mid-way.
    let (frames, cancel) = (AtomicU64::new(0), AtomicBool::new(false));
    let made = at.heartbeat(&frames, &cancel, || {
        let items = crate::ingest::work_items(&item.job_id, &indexed);
        at.ports.jobs.create_items(at.lease, &items)?;
        // The analysis first, then audio (a track takes as long as several chunks), then
        // chunks (left out while an analysis is to run: it queues them).
        let mut order: Vec<ItemRef> = crate::ingest::unfinished(at.ports.jobs, &item.job_id)?
            .into_iter()
            .map(|(i, _)| i)
            .filter(|i| i.kind != ItemKind::Index)
            .collect();
        order.sort_by_key(|i| (i.kind != ItemKind::Analysis, i.kind == ItemKind::Video));
        let messages: Vec<Message> = order.into_iter().map(Message::Item).collect();
        at.ports.queue.send_many(Queue::Work(job.tier), &messages)
    });
    match made {
        Ok(()) => Ok(Ending::Commit("[]".into())),
        Err(PortError::Conflict(why)) => {
            tracing::warn!(%why, "lease lost while making the job's items");
            Ok(Ending::LeaseLost)
        }
        Err(e) => Err(e),
    }
}
