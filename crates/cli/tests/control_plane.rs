//! The control-plane commands across processes on one `--state`: ingest (idempotent),
//! worker, status (by id and by source), jobs, and watch (a folder as the ingest bucket).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn vodpipe(args: &[&str], state: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_vodpipe"))
        .args(args)
        .arg("--state")
        .arg(state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vodpipe {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    if lines.len() == 1 {
        lines.into_iter().next().unwrap()
    } else {
        serde_json::Value::Array(lines)
    }
}

/// A worker that drains the queues of `state` and exits when idle.
fn drain(state: &Path) {
    let st = Command::new(env!("CARGO_BIN_EXE_vodpipe"))
        .args(["worker", "--idle-exit", "2", "--state"])
        .arg(state)
        .status()
        .unwrap();
    assert!(st.success());
}

/// `vodpipe jobs --json` on `state`, one value per job.
fn jobs_json(state: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_vodpipe"))
        .args(["jobs", "--json", "--state"])
        .arg(state)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn ingest_worker_status_and_jobs_work_across_processes() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let src = d.path().join("talk.mp4");
    make_clip(&src, "320x180", "25", 6, Some(500), FAST_H264);
    let src_s = src.to_str().unwrap();
    let first = vodpipe(
        &[
            "ingest",
            src_s,
            "--json",
            "--tier",
            "bulk",
            "--chunk-seconds",
            "4",
        ],
        &state,
    );
    let again = vodpipe(&["ingest", src_s, "--json"], &state);
    assert_eq!(first["job_id"], again["job_id"], "ingest is idempotent");
    assert_eq!(again["created"], false);
    let id = first["job_id"].as_str().unwrap().to_string();
    let listed = vodpipe(&["jobs", "--json", "--status", "ENCODING"], &state);
    assert_eq!(listed["job_id"], id.as_str());
    assert_eq!(listed["tier"], "bulk");
    // A worker drains the queues and exits when idle.
    drain(&state);
    let s = vodpipe(&["status", &id, "--json"], &state);
    assert_eq!(s["status"], "PUBLISHED", "{s}");
    assert_eq!(s["chunks_done"], s["chunks_total"]);
    assert!(s["timings"]["encode_secs"].as_f64().unwrap() > 0.0, "{s}");
    assert!(s["timings"]["queue_wait_secs"].as_f64().is_some(), "{s}");
    assert!(s["estimated_cost_usd"].as_f64().unwrap() > 0.0, "{s}");
    // The plan's estimate, made before anything was encoded, is kept.
    assert!(s["planned_cost_usd"].as_f64().unwrap() > 0.0, "{s}");
    assert!(s["output_minutes"].as_f64().unwrap() > 0.0, "{s}");
    assert!(Path::new(s["master"].as_str().unwrap()).exists());
    assert_published_correctly(&s, &src, d.path());
    // By source path, too; and the published list has it.
    let by_source = vodpipe(&["status", src_s, "--json"], &state);
    assert_eq!(by_source["job_id"], id.as_str());
    assert_eq!(
        vodpipe(&["jobs", "--json", "--status", "PUBLISHED"], &state)["job_id"],
        id.as_str()
    );
    // A first publish invalidates nothing: no cache can hold another version.
    let db = rusqlite::Connection::open(state.join("vodpipe.db")).unwrap();
    let count: i64 = db
        .query_row("SELECT COUNT(*) FROM invalidations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 0, "a first publish needs no invalidation");
    // A new version of the same file replaces the pointers: they are invalidated once,
    // under the new job's reference.
    make_clip(&src, "320x180", "25", 4, Some(700), FAST_H264);
    let second = vodpipe(&["ingest", src_s, "--json", "--chunk-seconds", "4"], &state);
    let id2 = second["job_id"].as_str().unwrap().to_string();
    assert_ne!(id2, id, "a changed file is a new version");
    drain(&state);
    assert_eq!(
        vodpipe(&["status", &id2, "--json"], &state)["status"],
        "PUBLISHED"
    );
    let (reference, paths): (String, String) = db
        .query_row(
            "SELECT caller_reference, paths FROM invalidations",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(reference, id2);
    assert!(
        paths.contains("/talk/master.m3u8") && paths.contains("/talk/manifest.mpd"),
        "{paths}"
    );
}

/// A budget: an upload whose plan is estimated above what its settings file allows fails
/// at ingest with both figures, before any encode (no item was ever attempted); one
/// within it is encoded, and a deployment's budget caps what an upload may ask for.
#[test]
fn a_plan_over_its_budget_fails_before_anything_is_encoded() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let src = d.path().join("pricey.mp4");
    make_clip(&src, "320x180", "25", 4, Some(440), FAST_H264);
    std::fs::write(
        d.path().join("pricey.mp4.vodpipe.json"),
        r#"{"max_cost_usd": 0.000000001}"#,
    )
    .unwrap();
    let refused = |args: &[&str]| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_vodpipe"))
            .args(args)
            .arg("--state")
            .arg(&state)
            .output()
            .unwrap();
        assert!(!out.status.success(), "vodpipe {args:?} should fail");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = refused(&["ingest", src.to_str().unwrap(), "--json"]);
    let id = first["job_id"].as_str().unwrap().to_string();
    let s = vodpipe(&["status", &id, "--json"], &state);
    assert_eq!(s["status"], "FAILED", "{s}");
    let why = s["error"].as_str().unwrap();
    assert!(
        why.contains("estimated cost $0.0000")
            && why.contains(
                "is over the budget of $0.00000000100 (\"max_cost_usd\" in its settings file)"
            )
            && why.contains("nothing was encoded"),
        "{why}"
    );
    assert_eq!(
        s["settings"]["max_cost_usd"]["from"], "settings-file",
        "{s}"
    );
    assert_eq!(s["attempts"], 0, "{s}");
    assert_eq!(s["chunks_total"], 0, "{s}");
    // Within a generous budget it publishes, and the deployment's lower budget wins over
    // what an upload asks for.
    std::fs::write(
        d.path().join("pricey.mp4.vodpipe.json"),
        r#"{"max_cost_usd": 5}"#,
    )
    .unwrap();
    let other = d.path().join("capped.mp4");
    std::fs::copy(&src, &other).unwrap();
    std::fs::write(
        d.path().join("capped.mp4.vodpipe.json"),
        r#"{"max_cost_usd": 5}"#,
    )
    .unwrap();
    let capped = refused(&[
        "ingest",
        other.to_str().unwrap(),
        "--max-cost-usd",
        "0.000000002",
        "--json",
    ]);
    let c = vodpipe(
        &["status", capped["job_id"].as_str().unwrap(), "--json"],
        &state,
    );
    assert_eq!(c["status"], "FAILED", "{c}");
    assert!(
        c["error"]
            .as_str()
            .unwrap()
            .contains("the deployment's MaxJobCostUsd"),
        "{c}"
    );
    assert_eq!(c["max_cost_usd"], 0.000000002, "{c}");
    let moved = d.path().join("fine.mp4");
    std::fs::copy(&src, &moved).unwrap();
    std::fs::write(
        d.path().join("fine.mp4.vodpipe.json"),
        r#"{"max_cost_usd": 5}"#,
    )
    .unwrap();
    let ok = vodpipe(&["ingest", moved.to_str().unwrap(), "--json"], &state);
    drain(&state);
    let o = vodpipe(
        &["status", ok["job_id"].as_str().unwrap(), "--json"],
        &state,
    );
    assert_eq!(o["status"], "PUBLISHED", "{o}");
    let planned = o["planned_cost_usd"].as_f64().unwrap();
    assert!(planned > 0.0 && planned < 5.0, "{o}");

    // A container that states no duration (a live-written Matroska) cannot be priced at
    // ingest: its index item reads the frame table, prices it, and fails it over budget
    // before a single chunk item exists.
    let live = d.path().join("live.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=25",
        "-t",
        "4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-f",
        "matroska",
        "-live",
        "1",
        live.to_str().unwrap(),
    ]);
    std::fs::write(
        d.path().join("live.mkv.vodpipe.json"),
        r#"{"max_cost_usd": 0.000000001}"#,
    )
    .unwrap();
    let l = vodpipe(&["ingest", live.to_str().unwrap(), "--json"], &state);
    drain(&state);
    let l = vodpipe(&["status", l["job_id"].as_str().unwrap(), "--json"], &state);
    assert_eq!(l["status"], "FAILED", "{l}");
    assert!(
        l["error"]
            .as_str()
            .unwrap()
            .contains("is over the budget of $0.00000000100"),
        "{l}"
    );
    assert_eq!(l["chunks_done"], 0, "{l}");
}

#[test]
fn a_watched_folder_ingests_a_file_once_it_stops_growing() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let inbox = d.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let src = d.path().join("upload.mp4");
    make_clip(&src, "320x180", "25", 3, Some(500), FAST_H264);
    let mut watch = Command::new(env!("CARGO_BIN_EXE_vodpipe"))
        .args(["watch"])
        .arg(&inbox)
        .args(["--stable-seconds", "2", "--workers", "1", "--state"])
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Upload slowly: half, a pause longer than the stability window would be if it were
    // measured from the first write, then the rest.
    let bytes = std::fs::read(&src).unwrap();
    let dest = inbox.join("upload.mp4");
    std::fs::write(&dest, &bytes[..bytes.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&dest)
            .unwrap();
        f.write_all(&bytes[bytes.len() / 2..]).unwrap();
    }
    let started = Instant::now();
    let job = loop {
        let jobs = jobs_json(&state);
        if let Some(j) = jobs
            .iter()
            .find(|j| j["status"] == "PUBLISHED" || j["status"] == "FAILED")
        {
            assert_eq!(jobs.len(), 1, "one upload, one job: {jobs:?}");
            break j.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "watched upload never published: {jobs:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        job["status"], "PUBLISHED",
        "a half-written upload was ingested: {job}"
    );
    assert_published_correctly(&job, &dest, d.path());
    // Its subtitles, dropped in after it published: a re-packaged version adds them.
    std::fs::write(
        inbox.join("upload.en.srt"),
        "1\n00:00:00,500 --> 00:00:01,500\nLate\n",
    )
    .unwrap();
    let started = Instant::now();
    let repackaged = loop {
        let jobs = jobs_json(&state);
        if let Some(j) = jobs.iter().find(|j| {
            !j["settings"]["repackage"].is_null()
                && (j["status"] == "PUBLISHED" || j["status"] == "FAILED")
        }) {
            break j.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the late subtitles were never added: {jobs:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let _ = Command::new("kill")
        .args(["-TERM", &watch.id().to_string()])
        .status();
    watch.wait().unwrap();
    assert_eq!(repackaged["status"], "PUBLISHED", "{repackaged}");
    assert_eq!(repackaged["settings"]["repackage"]["from"], job["job_id"]);
    assert_eq!(repackaged["subtitles"], serde_json::json!(["en"]));
    assert_published_correctly(&repackaged, &dest, d.path());
}

#[test]
fn a_watched_folder_honours_prefix_directories_settings_files_and_profiles() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let inbox = d.path().join("inbox");
    for dir in ["archive", "_vodpipe/profiles"] {
        std::fs::create_dir_all(inbox.join(dir)).unwrap();
    }
    let src = d.path().join("clip.mp4");
    make_clip(&src, "320x180", "25", 2, None, FAST_H264);
    std::fs::write(
        inbox.join("_vodpipe/profiles/small.json"),
        r#"{"rungs": [{"name": "144p", "short_side": 144, "max_kbps": 300}]}"#,
    )
    .unwrap();
    // Settings files first, as a tool that writes them before the video would.
    std::fs::write(
        inbox.join("chosen.mp4.vodpipe.json"),
        r#"{"tier": "premium", "ladder": "small"}"#,
    )
    .unwrap();
    std::fs::write(inbox.join("wrong.mp4.vodpipe.json"), r#"{"tier": "gold"}"#).unwrap();
    for name in ["archive/old.mp4", "chosen.mp4", "wrong.mp4"] {
        std::fs::copy(&src, inbox.join(name)).unwrap();
    }
    let mut watch = Command::new(env!("CARGO_BIN_EXE_vodpipe"))
        .args(["watch"])
        .arg(&inbox)
        .args(["--stable-seconds", "1", "--workers", "1", "--state"])
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let jobs = loop {
        let jobs = jobs_json(&state);
        if jobs.len() == 3
            && jobs
                .iter()
                .all(|j| j["status"] == "PUBLISHED" || j["status"] == "FAILED")
        {
            break jobs;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "watched uploads never finished: {jobs:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let _ = Command::new("kill")
        .args(["-TERM", &watch.id().to_string()])
        .status();
    watch.wait().unwrap();
    let by_name = |name: &str| {
        jobs.iter()
            .find(|j| j["source"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("no job for {name}: {jobs:?}"))
    };
    let old = by_name("archive/old.mp4");
    assert_eq!(old["status"], "PUBLISHED", "{old}");
    assert_eq!(
        (
            old["tier"].as_str(),
            old["settings"]["tier"]["from"].as_str()
        ),
        (Some("bulk"), Some("prefix"))
    );
    assert!(
        old["master_key"]
            .as_str()
            .unwrap()
            .starts_with("archive/old/"),
        "{old}"
    );
    let chosen = by_name("chosen.mp4");
    assert_eq!(chosen["status"], "PUBLISHED", "{chosen}");
    assert_eq!(chosen["tier"], "premium");
    assert_eq!(chosen["settings"]["tier"]["from"], "settings-file");
    assert_eq!(chosen["settings"]["ladder"]["value"], "small");
    let master = std::fs::read_to_string(
        state
            .join("out")
            .join(chosen["master_key"].as_str().unwrap()),
    )
    .unwrap();
    assert!(
        master.contains("RESOLUTION=256x144"),
        "the profile's one rung: {master}"
    );
    assert_eq!(master.matches("#EXT-X-STREAM-INF").count(), 1, "{master}");
    let wrong = by_name("wrong.mp4");
    assert_eq!(wrong["status"], "FAILED", "{wrong}");
    assert!(
        wrong["error"]
            .as_str()
            .unwrap()
            .contains("use premium, standard or bulk"),
        "{wrong}"
    );
}
