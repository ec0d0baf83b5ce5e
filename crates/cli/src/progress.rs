//! Following jobs to the end: progress bars for people, silence for `--json`.
//!
//! Progress is read from the state store, not from the workers, so the same view works
//! whatever process does the work. While jobs are unfinished the fleet is reconciled every
//! second, so a worker that died is replaced.

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant};
use vodpipe_control::ports::{Fleet, JobRecord, JobStore};
use vodpipe_local::Local;

/// The label of a source in progress bars: its file name, shortened in the middle to at
/// most 32 characters so one long name does not push every bar off the screen.
pub fn label(path: &std::path::Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= 32 {
        return name;
    }
    let head: String = chars[..15].iter().collect();
    let tail: String = chars[chars.len() - 16..].iter().collect();
    format!("{head}…{tail}")
}

/// Polls `ids` until every job is final, drawing one bar per job when `bars` is set
/// (labelled with the job's entry in `labels`: people know their files, not job ids), and
/// keeping up to `workers` worker processes alive meanwhile. Returns the final records.
pub fn follow(
    local: &Local,
    ids: &[String],
    labels: &[String],
    bars: bool,
    workers: u32,
) -> anyhow::Result<Vec<JobRecord>> {
    let multi = MultiProgress::with_draw_target(if bars {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let template = format!("{{prefix:>{width}}} [{{bar:30}}] {{pos}}/{{len}} frames  {{msg}}");
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let started = Instant::now();
    let pbs: Vec<ProgressBar> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let pb = multi.add(ProgressBar::new(1));
            pb.set_style(style.clone());
            pb.set_prefix(labels.get(i).cloned().unwrap_or_else(|| id.clone()));
            pb
        })
        .collect();
    loop {
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            rows.push(
                local
                    .state
                    .job(id)?
                    .with_context(|| format!("job {id} vanished"))?,
            );
        }
        for (pb, j) in pbs.iter().zip(&rows) {
            pb.set_length(j.frames_total.max(1));
            pb.set_position(j.frames_done);
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
                "{} {}/{} items  {speed:.2}x realtime",
                j.status, j.done, j.total
            ));
        }
        let pending: Vec<&JobRecord> = rows.iter().filter(|j| !j.status.is_final()).collect();
        if pending.is_empty() {
            for pb in &pbs {
                pb.finish();
            }
            return Ok(rows);
        }
        // Reconcile capacity: replace workers that died, never more than there is work.
        let work: u32 = pending
            .iter()
            .map(|j| j.total.saturating_sub(j.done).max(1))
            .sum();
        if let Some(j) = pending.first() {
            local.fleet.ensure_capacity(j.tier, work.min(workers))?;
        }
        // Often enough that `run` returns within a blink of the last job finishing.
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::label;
    use std::path::Path;

    #[test]
    fn labels_are_file_names_shortened_in_the_middle() {
        assert_eq!(label(Path::new("/a/b/clip one.mp4")), "clip one.mp4");
        let long = label(Path::new(
            "/x/an-extremely-long-source-file-name-from-the-archive.mov",
        ));
        assert_eq!(long.chars().count(), 32);
        assert!(
            long.starts_with("an-extremely-lo") && long.ends_with("-the-archive.mov"),
            "{long}"
        );
    }
}
