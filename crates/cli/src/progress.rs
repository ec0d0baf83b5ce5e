//! Following jobs to the end: progress bars for people, silence for `--json`.
//!
//! Progress is read from the state store, not from the workers, so the same view works
//! whether the workers are threads of this process or other processes.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant};
use vodpipe_local::store::{JobRow, Store};

/// Polls `ids` until every job is final (or every worker has stopped), drawing one bar per
/// job when `bars` is set. Returns the final rows.
pub fn follow<T>(
    store: &Store,
    ids: &[String],
    bars: bool,
    workers: &[std::thread::ScopedJoinHandle<'_, T>],
) -> anyhow::Result<Vec<JobRow>> {
    let multi = MultiProgress::with_draw_target(if bars {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} frames  {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let started = Instant::now();
    let pbs: Vec<ProgressBar> = ids
        .iter()
        .map(|id| {
            let pb = multi.add(ProgressBar::new(1));
            pb.set_style(style.clone());
            pb.set_prefix(id.clone());
            pb
        })
        .collect();
    loop {
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            rows.push(
                store
                    .job(id)?
                    .ok_or_else(|| anyhow::anyhow!("job {id} vanished"))?,
            );
        }
        for (pb, j) in pbs.iter().zip(&rows) {
            pb.set_length(j.frames_total.max(1) as u64);
            pb.set_position(j.frames_done.max(0) as u64);
            let secs = started.elapsed().as_secs_f64().max(0.001);
            let fps = if j.duration_secs > 0.0 {
                j.frames_total as f64 / j.duration_secs
            } else {
                0.0
            };
            let speed = if fps > 0.0 {
                j.frames_done as f64 / fps / secs
            } else {
                0.0
            };
            pb.set_message(format!(
                "{} chunks {}/{}  {speed:.2}x realtime",
                j.status, j.done, j.total
            ));
        }
        let all_final = rows.iter().all(|j| j.status.is_final());
        let workers_gone = workers.iter().all(|h| h.is_finished());
        if all_final || workers_gone {
            for pb in &pbs {
                pb.finish();
            }
            return Ok(rows);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
