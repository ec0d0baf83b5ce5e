//! What the console shows, read from the job store: the live table (one snapshot for
//! every browser, read on a fixed period) and one job's detail (read on demand).

use super::{Console, Media};
use crate::status::job_json;
use anyhow::Result;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use vodpipe_control::job::JobStatus;
use vodpipe_control::ports::{ItemKind, JobRecord, ObjectStore, Queue, Tier};
use vodpipe_media::process::now_secs;

/// Reads the store and publishes a snapshot whenever it differs from the last one. A
/// failed read keeps the last jobs on screen and says what failed, so a throttled table
/// or a moment without network does not blank the console.
pub(super) struct Poller {
    max_jobs: usize,
    jobs: Vec<Value>,
    queues: Value,
    total: usize,
    sent: String,
    /// Finished jobs' rows by id, with the brief record they were read under.
    finished: HashMap<String, (String, Value)>,
}

impl Poller {
    /// Keeps at most `max_jobs` jobs in a snapshot.
    pub(super) fn new(max_jobs: usize) -> Poller {
        Poller {
            max_jobs,
            jobs: Vec::new(),
            queues: json!({}),
            total: 0,
            sent: String::new(),
            finished: HashMap::new(),
        }
    }

    /// One read of the store.
    pub(super) fn tick(&mut self, console: &Console, tx: &watch::Sender<Arc<String>>) {
        let error = match read(console, self.max_jobs, &mut self.finished) {
            Ok((jobs, queues, total)) => {
                (self.jobs, self.queues, self.total) = (jobs, queues, total);
                None
            }
            Err(e) => Some(format!("reading the job store failed: {e:#}")),
        };
        let snap = json!({
            "backend": console.backend.name(),
            "playable": !matches!(console.media, Media::Base(None)),
            "error": error,
            "queues": self.queues,
            "total_jobs": self.total,
            "jobs": self.jobs,
        });
        let text = snap.to_string();
        if text != self.sent {
            self.sent.clone_from(&text);
            tx.send_replace(Arc::new(text));
        }
    }

    /// Ticks every `period` until the console stops.
    pub(super) fn run(
        mut self,
        console: &Console,
        tx: &watch::Sender<Arc<String>>,
        period: Duration,
    ) {
        while !*console.stopping.borrow() {
            let started = Instant::now();
            // Sleep out the period in short steps, so a stop is seen at once.
            while started.elapsed() < period && !*console.stopping.borrow() {
                std::thread::sleep(Duration::from_millis(50).min(period));
            }
            if *console.stopping.borrow() {
                break;
            }
            self.tick(console, tx);
        }
    }
}

/// The newest `max_jobs` jobs (newest first), the queue depths and how many jobs exist.
///
/// Each tick reads the state index and every listed job's own record (its brief form);
/// the sums over a job's items are read only for a job still moving, or one whose record
/// changed since its last full read. A finished job's row is kept from that read, so a
/// console left open on a table of thousands of published jobs does not query each one's
/// items every second.
fn read(
    console: &Console,
    max_jobs: usize,
    finished: &mut HashMap<String, (String, Value)>,
) -> Result<(Vec<Value>, Value, usize)> {
    let b = &console.backend;
    let mut briefs = Vec::new();
    for status in JobStatus::ALL {
        briefs.extend(b.jobs().brief_jobs_by_status(status)?);
    }
    let total = briefs.len();
    briefs.sort_by(|x, y| y.created_at.total_cmp(&x.created_at));
    briefs.truncate(max_jobs);
    let mut jobs = Vec::with_capacity(briefs.len());
    let mut kept = HashMap::with_capacity(finished.len());
    for brief in briefs {
        let key = serde_json::to_string(&brief)?;
        let cached = finished
            .remove(&brief.id)
            .filter(|(k, _)| brief.status.is_final() && *k == key);
        let value = match cached {
            Some((_, v)) => v,
            None => {
                let Some(full) = b.jobs().job(&brief.id)? else {
                    continue;
                };
                row(b.objects(), &console.media, &full)
            }
        };
        if brief.status.is_final() {
            kept.insert(brief.id.clone(), (key, value.clone()));
        }
        jobs.push(value);
    }
    *finished = kept;
    let mut queues = serde_json::Map::new();
    for q in Tier::ALL
        .iter()
        .map(|t| Queue::Work(*t))
        .chain([Queue::Stitch])
    {
        queues.insert(q.as_str().into(), json!(b.queue().depth(q)?));
    }
    Ok((jobs, Value::Object(queues), total))
}

/// A job as the console shows it: what `vodpipe status --json` says, plus its file name,
/// its milestones and the URLs a browser plays it from.
fn row(objects: &dyn ObjectStore, media: &Media, j: &JobRecord) -> Value {
    let mut v = job_json(objects, j);
    let url = |k: Option<&String>| k.and_then(|k| media.url(k));
    let name = j
        .source
        .rsplit(['/', '\\'])
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or(&j.source)
        .to_string();
    if let Some(o) = v.as_object_mut() {
        o.insert("name".into(), json!(name));
        o.insert(
            "milestones".into(),
            json!({
                "created": j.created_at,
                "queued": j.queued_at,
                "started": j.started_at,
                "stitching": j.stitch_started_at,
                "finished": j.finished_at,
            }),
        );
        let published = j.status == JobStatus::Published;
        let key = |kind: &str| vodpipe_control::outputs::published_key(j, kind);
        o.insert(
            "urls".into(),
            json!({
                "hls": url(j.master_key.as_ref()).filter(|_| published),
                "dash": url(j.dash_key.as_ref()).filter(|_| published),
                "poster": url(key("poster").as_ref()),
                "thumbnails": url(key("thumbnails").as_ref()),
            }),
        );
    }
    v
}

/// One job with every item's attempts, worker and times; None when there is no such job.
pub(super) fn job_detail(console: &Console, id: &str) -> Result<Option<Value>> {
    let b = &console.backend;
    let Some(j) = b.jobs().job(id)? else {
        return Ok(None);
    };
    let items: Vec<Value> = b
        .jobs()
        .items(id)?
        .into_iter()
        .map(|(item, s)| {
            json!({
                "kind": item.kind.as_str(),
                "index": item.index,
                "name": item.describe(),
                "state": if s.done { "done" } else if s.leased { "running" } else if s.failures > 0 || s.interruptions > 0 { "retrying" } else { "queued" },
                "attempts": s.attempts,
                "failures": s.failures,
                "interruptions": s.interruptions,
                "worker": s.worker,
                "leased_at": s.leased_at,
                "done_at": s.done_at,
                "frames": if item.kind == ItemKind::Video { Some(s.frames) } else { None },
                "encode_secs": s.encode_secs,
                "wasted_secs": s.wasted_secs,
                "last_error": s.last_error,
            })
        })
        .collect();
    let mut v = row(b.objects(), &console.media, &j);
    // A private distribution: the query string that lets this page's players fetch the
    // asset's objects, for a while (signed when the page is opened, never for the table).
    if let (Some(signer), Some(dir)) = (
        &console.private,
        console.media.url(&format!("{}/", j.asset)),
    ) {
        if j.status == JobStatus::Published {
            let signed = signer.sign_dir(&dir)?;
            v["urls"]["query"] = json!(signed.0);
            v["urls"]["query_expires"] = json!(signed.1);
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.insert("items".into(), json!(items));
        o.insert("now".into(), json!(now_secs()));
    }
    Ok(Some(v))
}
