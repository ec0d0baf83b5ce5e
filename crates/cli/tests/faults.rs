//! Fault injection: several jobs, three worker processes, and workers killed (SIGKILL and
//! SIGTERM alternately) and respawned over and over. Every job must end PUBLISHED and
//! frame-exact, no published manifest may reference an attempt that was not committed, no
//! job may be stitched twice, and a SIGTERM'd worker must exit within 10 s.
//!
//! Kills follow progress, not the clock: a worker is killed only once it has committed an
//! item in its present life, so the test means the same on a fast machine and on a busy
//! one (killed on a fixed period, a slow machine's long audio item never finished).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn vodpipe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vodpipe"))
}

fn spawn_worker(state: &Path) -> Child {
    vodpipe()
        .args([
            "worker",
            "--lease-seconds",
            "3",
            "--max-receives",
            "20",
            "--state",
        ])
        .arg(state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The name a worker process leases under (`vodpipe worker`: host name and process id).
fn owner(w: &Child) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "local".into());
    format!("{host}-{}", w.id())
}

/// Items the worker process `w` has committed.
fn committed_by(db: &rusqlite::Connection, w: &Child) -> i64 {
    db.query_row(
        "SELECT count(*) FROM records WHERE sk LIKE 'ITEM#%'
         AND json_extract(doc, '$.done') AND json_extract(doc, '$.owner') = ?1",
        [owner(w)],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

fn status(state: &Path, job: &str) -> serde_json::Value {
    let out = vodpipe()
        .args(["status", job, "--json", "--state"])
        .arg(state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every segment and init URI a published job's manifests reference, relative to the
/// job directory.
fn referenced_uris(job_dir: &Path) -> Vec<String> {
    let mut uris = Vec::new();
    for entry in std::fs::read_dir(job_dir).unwrap().flatten() {
        let path = entry.path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        match path.extension().and_then(|e| e.to_str()) {
            Some("m3u8") => {
                for line in text.lines() {
                    if let Some(rest) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
                        uris.push(rest.split('"').next().unwrap().to_string());
                    } else if !line.starts_with('#') && line.contains(".m4s") {
                        uris.push(line.trim().to_string());
                    }
                }
            }
            Some("mpd") => {
                for part in text.split(['"']) {
                    if part.ends_with(".m4s") || part.ends_with("init.mp4") {
                        uris.push(part.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    assert!(!uris.is_empty(), "no URIs in {job_dir:?}");
    uris
}

#[test]
fn workers_killed_again_and_again_lose_no_work_and_publish_frame_exact() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let out = d.path().join("out");
    let mut sources = Vec::new();
    for (i, hz) in [330, 440, 550].iter().enumerate() {
        let src = d.path().join(format!("clip{i}.mp4"));
        make_clip(&src, "640x360", "30000/1001", 28, Some(*hz), FAST_H264);
        sources.push(src);
    }
    let mut jobs = Vec::new();
    for (i, src) in sources.iter().enumerate() {
        let tier = ["premium", "standard", "bulk"][i];
        let o = vodpipe()
            .args([
                "ingest",
                "--json",
                "--chunk-seconds",
                "4",
                "--tier",
                tier,
                "--state",
            ])
            .arg(&state)
            .arg("--out")
            .arg(&out)
            .arg(src)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        jobs.push(v["job_id"].as_str().unwrap().to_string());
    }
    let mut workers: Vec<Child> = (0..3).map(|_| spawn_worker(&state)).collect();
    let db = rusqlite::Connection::open(state.join("vodpipe.db")).unwrap();
    let started = Instant::now();
    let (mut sigkills, mut sigterms) = (0u32, 0u32);
    let mut worst_term = Duration::ZERO;
    let mut next = 0usize;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let statuses: Vec<serde_json::Value> = jobs.iter().map(|j| status(&state, j)).collect();
        if statuses
            .iter()
            .all(|s| s["status"] == "PUBLISHED" || s["status"] == "FAILED")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "jobs did not finish: {statuses:?}"
        );
        // The next worker, in turn, that has committed an item in this life.
        let Some(pick) = (0..3)
            .map(|k| (next + k) % 3)
            .find(|&i| committed_by(&db, &workers[i]) > 0)
        else {
            continue;
        };
        next = pick;
        let victim = &mut workers[next];
        if (sigkills + sigterms).is_multiple_of(2) {
            victim.kill().unwrap(); // SIGKILL
            victim.wait().unwrap();
            sigkills += 1;
        } else {
            let t = Instant::now();
            sigterm(victim.id());
            loop {
                if victim.try_wait().unwrap().is_some() {
                    break;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "a SIGTERM'd worker did not exit within 10 s"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            worst_term = worst_term.max(t.elapsed());
            sigterms += 1;
        }
        workers[next] = spawn_worker(&state);
        next += 1;
    }
    for w in &mut workers {
        sigterm(w.id());
        w.wait().unwrap();
    }
    // Every job published, frame-exact, stitched once.
    let mut redone = 0i64;
    let mut interruptions = 0i64;
    for (job, src) in jobs.iter().zip(&sources) {
        let s = status(&state, job);
        assert_eq!(s["status"], "PUBLISHED", "{s}");
        assert_eq!(s["stitch_count"], 1, "job stitched more than once: {s}");
        let scratch = d.path().join(format!("check-{job}"));
        std::fs::create_dir_all(&scratch).unwrap();
        assert_published_correctly(&s, src, &scratch);
        // No manifest references an attempt that was not the committed one.
        let committed: HashMap<String, i64> = db
            .prepare(
                "SELECT sk, CAST(json_extract(doc, '$.committed_attempt') AS INTEGER) FROM records
                 WHERE pk = 'JOB#' || ?1 AND sk LIKE 'ITEM#%' AND json_extract(doc, '$.done')",
            )
            .unwrap()
            .query_map([job], |r| {
                let sk: String = r.get(0)?;
                let mut parts = sk.split('#').skip(1);
                let (kind, idx) = (
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                );
                let idx: i64 = idx.parse().unwrap_or(-1);
                let dir = if kind == "video" {
                    format!("c{idx:05}")
                } else {
                    format!("a{idx}")
                };
                Ok((dir, r.get(1)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let job_dir: PathBuf = Path::new(s["master"].as_str().unwrap())
            .parent()
            .unwrap()
            .join(job);
        for uri in referenced_uris(&job_dir) {
            let attempt_dir = uri.split('/').next().unwrap();
            let (item, attempt) = attempt_dir.split_once('.').unwrap();
            assert_eq!(
                Some(&attempt.parse::<i64>().unwrap()),
                committed.get(item),
                "{uri} is not the committed attempt"
            );
        }
        let total: i64 = s["chunks_total"].as_i64().unwrap();
        redone += s["attempts"].as_i64().unwrap() - total;
        interruptions += s["interruptions"].as_i64().unwrap();
    }
    let kills = sigkills + sigterms;
    assert!(
        kills >= 6,
        "the test must actually kill workers (killed {kills})"
    );
    eprintln!(
        "fault test: {kills} kills survived ({sigkills} SIGKILL, {sigterms} SIGTERM), {redone} attempts redone \
         ({:.2} per kill), {interruptions} interruptions recorded, worst SIGTERM-to-exit {:.0} ms, {:.0} s in all",
        redone as f64 / f64::from(kills),
        worst_term.as_secs_f64() * 1000.0,
        started.elapsed().as_secs_f64()
    );
}

/// Sends SIGTERM (a Spot interruption notice) to a child, through kill(1) because the
/// workspace forbids unsafe code.
fn sigterm(pid: u32) {
    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -TERM {pid} failed");
}
