//! `vodpipe serve`, the web console, on the embedded backend: its API, the output
//! directory it serves (byte ranges, CORS, nothing outside the output root), and the
//! console itself in Chromium: the table shows the job PUBLISHED, its page shows the
//! timeline and items, and both players play the asset to the end through the console's
//! own controls. Also the rough edges a new user met after `vodpipe run`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use support::*;

/// A 9 s 640x360 clip with an English mov_text subtitle track, named with a space.
fn clip_with_subtitles(dir: &Path) -> std::path::PathBuf {
    let srt = dir.join("subs.srt");
    std::fs::write(
        &srt,
        "1\n00:00:01,000 --> 00:00:03,000\nHello\n\n2\n00:00:05,000 --> 00:00:07,000\nWorld\n",
    )
    .unwrap();
    let src = dir.join("console clip.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-i",
        srt.to_str().unwrap(),
        "-t",
        "9",
        "-map",
        "0",
        "-map",
        "1",
        "-map",
        "2",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-c:a",
        "aac",
        "-c:s",
        "mov_text",
        "-metadata:s:s:0",
        "language=eng",
        src.to_str().unwrap(),
    ]);
    src
}

#[test]
fn the_console_lists_the_job_opens_its_page_and_plays_it_in_both_players() {
    let d = tempfile::tempdir().unwrap();
    let src = clip_with_subtitles(d.path());
    let out = d.path().join("out");
    let r = vodpipe_run(&[&src], &out, &["--chunk-seconds", "4"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A clean run ends without a warning from the workers it stopped.
    assert!(!r.stderr.contains("WARN"), "{}", r.stderr);
    let job_id = r.jobs[0]["job_id"].as_str().unwrap().to_string();

    // `--state` takes the directory `run --out` wrote to.
    let jobs = Command::new(env!("CARGO_BIN_EXE_vodpipe"))
        .args(["jobs", "--json", "--state"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        jobs.status.success(),
        "{}",
        String::from_utf8_lossy(&jobs.stderr)
    );
    assert!(String::from_utf8_lossy(&jobs.stdout).contains(&job_id));

    let console = Console::start(&["--state", out.to_str().unwrap()], &HashMap::new());

    // The API: the snapshot, a filter, one job with its items.
    let snap = console.get("/api/jobs").json();
    assert_eq!(snap["backend"], "local");
    let row = &snap["jobs"][0];
    assert_eq!(row["job_id"], job_id.as_str());
    assert_eq!(row["status"], "PUBLISHED");
    assert_eq!(row["name"], "console clip.mp4");
    assert_eq!(row["urls"]["hls"], "/media/console_clip/master.m3u8");
    assert_eq!(row["urls"]["dash"], "/media/console_clip/manifest.mpd");
    assert!(row["urls"]["thumbnails"].as_str().is_some(), "{row}");
    let failed = console.get("/api/jobs?status=failed").json();
    assert_eq!(failed["jobs"].as_array().unwrap().len(), 0);
    assert_eq!(console.get("/api/jobs?status=bogus").status, 400);
    assert_eq!(console.get("/api/jobs/no-such-job").status, 404);
    let detail = console.get(&format!("/api/jobs/{job_id}")).json();
    let items = detail["items"].as_array().unwrap();
    // Three chunks, the audio track and the subtitle track.
    assert_eq!(items.len(), 5, "{detail:#}");
    let (created, finished) = (
        detail["milestones"]["created"].as_f64().unwrap(),
        detail["milestones"]["finished"].as_f64().unwrap(),
    );
    for it in items {
        assert_eq!(it["state"], "done", "{it}");
        assert_eq!(it["attempts"], 1, "{it}");
        assert!(it["worker"].as_str().is_some_and(|w| !w.is_empty()), "{it}");
        let (leased, done) = (
            it["leased_at"].as_f64().unwrap(),
            it["done_at"].as_f64().unwrap(),
        );
        assert!(
            created <= leased && leased <= done && done <= finished,
            "{it}"
        );
    }
    let frames: u64 = items.iter().filter_map(|i| i["frames"].as_u64()).sum();
    assert_eq!(frames, 225, "every source frame is in a chunk: {detail:#}");

    // The output directory: byte ranges and CORS for players on other origins.
    let part = http(
        &console.addr,
        "GET",
        "/media/console_clip/master.m3u8",
        &[("Range", "bytes=0-6"), ("Origin", "http://player.example")],
        b"",
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.body, b"#EXTM3U");
    assert_eq!(part.header("access-control-allow-origin"), Some("*"));
    let preflight = http(
        &console.addr,
        "OPTIONS",
        "/media/console_clip/master.m3u8",
        &[
            ("Origin", "http://player.example"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "range"),
        ],
        b"",
    );
    assert_eq!(preflight.status, 200);
    assert!(preflight
        .header("access-control-allow-headers")
        .is_some_and(|h| h.contains("range")));

    // Nothing outside the output root, nor the state hidden inside it, is ever served.
    std::os::unix::fs::symlink("/etc/passwd", out.join("console_clip/escape")).unwrap();
    std::os::unix::fs::symlink(
        out.join(".vodpipe/vodpipe.db"),
        out.join("console_clip/state.db"),
    )
    .unwrap();
    std::fs::write(d.path().join("secret.txt"), "top secret").unwrap();
    for target in [
        "/media/../secret.txt",
        "/media/%2e%2e/secret.txt",
        "/media/..%2fsecret.txt",
        "/media/console_clip/../../secret.txt",
        "/media/console_clip/%2e%2e/%2e%2e/secret.txt",
        "/media/%2fetc%2fpasswd",
        "/media//etc/passwd",
        "/media/console_clip/escape",
        "/media/console_clip/state.db",
        "/media/.vodpipe/vodpipe.db",
        "/media/%2evodpipe/vodpipe.db",
        "/media/console_clip",
    ] {
        let r = console.get(target);
        assert_eq!(r.status, 404, "{target} answered {}", r.status);
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("top secret") && !body.contains("root:") && !body.contains("SQLite"),
            "{target} leaked {body}"
        );
    }

    // A page elsewhere that points its own name at 127.0.0.1 reads nothing.
    for target in ["/api/jobs", "/media/console_clip/master.m3u8", "/"] {
        let r = http(
            &console.addr,
            "GET",
            target,
            &[("Host", "rebound.example:80")],
            b"",
        );
        assert_eq!(r.status, 403, "{target}");
    }
    let port = console.addr.rsplit_once(':').unwrap().1;
    let by_name = http(
        &console.addr,
        "GET",
        "/api/jobs",
        &[("Host", &format!("localhost:{port}"))],
        b"",
    );
    assert_eq!(by_name.status, 200);

    // The console in Chromium, both players through its own toggle and selectors.
    let shots = d.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let report = console_report(&console.url, "console clip.mp4", true, &shots);
    assert_eq!(report["table_state"], "PUBLISHED", "{report:#}");
    assert_eq!(report["live"], "live", "{report:#}");
    assert_eq!(report["shown_in_own_filter"], true, "{report:#}");
    assert_eq!(report["shown_in_other_filter"], false, "{report:#}");
    assert_eq!(
        report["console_errors"].as_array().unwrap().len(),
        0,
        "{report:#}"
    );
    let job = &report["job"];
    assert!(job["title"].as_str().unwrap().contains("console clip.mp4"));
    assert_eq!(job["gantt_spans"], 5, "one bar per item: {report:#}");
    assert_eq!(job["items"].as_array().unwrap().len(), 5, "{report:#}");
    assert!(
        job["phases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "encoding"),
        "{report:#}"
    );
    for (kind, p) in ["hls", "shaka"]
        .into_iter()
        .zip(assert_console_played(&report, 9.0))
    {
        // 640x360 gets the 360p and 270p rungs; the console picked the lowest.
        assert_eq!(
            p["renditions"].as_array().unwrap().len(),
            2,
            "{kind}: {p:#}"
        );
        assert_eq!(p["video_height"], 270, "{kind}: {p:#}");
        assert_eq!(p["subtitles"].as_array().unwrap().len(), 1, "{kind}: {p:#}");
        assert_eq!(p["text_tracks_showing"], 1, "{kind}: {p:#}");
        assert!(p["cues_seen"].as_u64().unwrap() >= 2, "{kind}: {p:#}");
        assert_eq!(p["thumbnails"], 3, "{kind}: {p:#}");
    }
    let back = &report["back_to_hls"];
    assert!(back["error"].is_null(), "{back}");
    assert!(back["current_time"].as_f64().unwrap() > 1.0, "{back}");
    assert_eq!(back["videos"], 1, "{back}");
    assert!(shots.join("console-jobs.png").exists());
    assert!(shots.join("console-job.png").exists());
    // A stop is prompt and clean with an event stream open: the stream ends.
    let mut stream = std::net::TcpStream::connect(&console.addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    {
        use std::io::{Read, Write};
        write!(
            stream,
            "GET /api/events HTTP/1.1\r\nHost: {}\r\n\r\n",
            console.addr
        )
        .unwrap();
        let mut first = [0u8; 1024];
        assert!(stream.read(&mut first).unwrap() > 0);
        assert_eq!(console.stop(), Some(0));
        let mut rest = Vec::new();
        stream
            .read_to_end(&mut rest)
            .expect("the event stream ends when the console stops");
    }
}

#[test]
fn the_console_shows_a_failed_job_and_listens_beyond_loopback_only_when_told() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let vodpipe = || Command::new(env!("CARGO_BIN_EXE_vodpipe"));
    // No state yet: the error names what to give.
    let none = vodpipe()
        .args(["serve", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("`vodpipe run --out`"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
    // A job that fails at ingest.
    let bad = d.path().join("notes.mp4");
    std::fs::write(&bad, "this is not a video").unwrap();
    let ingest = vodpipe()
        .args(["ingest", "--json", "--state"])
        .arg(&state)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(ingest.status.code(), Some(1));

    let console = Console::start(&["--state", state.to_str().unwrap()], &HashMap::new());
    let snap = console.get("/api/jobs?status=FAILED").json();
    let row = &snap["jobs"][0];
    assert_eq!(row["name"], "notes.mp4");
    assert!(
        row["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{row}"
    );
    assert!(row["urls"]["hls"].is_null(), "{row}");
    assert_eq!(snap["queues"]["standard"], 0);
    // The event stream starts with the same snapshot.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&console.addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(
            s,
            "GET /api/events HTTP/1.1\r\nHost: {}\r\n\r\n",
            console.addr
        )
        .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("notes.mp4") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "stream closed: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&seen);
        assert!(text.contains("text/event-stream"), "{text}");
        assert!(text.contains("event: jobs"), "{text}");
    }
    // The page and its players are in the binary.
    let page = console.get("/");
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("/assets/console.js"));
    for asset in [
        "console.js",
        "console.css",
        "hls.min.js",
        "shaka-player.compiled.js",
    ] {
        assert_eq!(
            console.get(&format!("/assets/{asset}")).status,
            200,
            "{asset}"
        );
    }
    assert_eq!(console.stop(), Some(0));

    // Beyond loopback only with --allow-remote, and then with a warning.
    let refused = vodpipe()
        .args(["serve", "--listen", "0.0.0.0:0", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--allow-remote"));
    let mut remote = vodpipe()
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--allow-remote",
            "--state",
        ])
        .arg(&state)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(remote.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    remote.kill().unwrap();
    let out = remote.wait_with_output().unwrap();
    assert!(first.contains("http://0.0.0.0:"), "{first}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("WARNING: listening on 0.0.0.0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_console_serves_the_players_the_playback_tests_pin() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let node_modules = root.join("../../tests/player/node_modules");
    assert!(
        node_modules.exists(),
        "player libraries missing: run `make player-deps` (make test does)"
    );
    for (vendored, pinned) in [
        ("hls.min.js", "hls.js/dist/hls.min.js"),
        (
            "shaka-player.compiled.js",
            "shaka-player/dist/shaka-player.compiled.js",
        ),
    ] {
        let ours = std::fs::read(root.join("assets/vendor").join(vendored)).unwrap();
        let theirs = std::fs::read(node_modules.join(pinned)).unwrap();
        assert!(
            ours == theirs,
            "crates/cli/assets/vendor/{vendored} differs from the pinned npm package's {pinned}: \
             copy it over after changing tests/player/package.json"
        );
    }
}

/// The CloudFront stand-in (tests/player/cloudfront.mjs) serving `root` to requests signed
/// for `public_key`; killed when dropped.
#[cfg(feature = "aws")]
struct PrivateDistribution {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`: the origin signatures must name.
    url: String,
}

#[cfg(feature = "aws")]
impl PrivateDistribution {
    fn start(root: &Path, public_key: &Path) -> PrivateDistribution {
        use std::io::BufRead;
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/player/cloudfront.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .arg("--root")
            .arg(root)
            .arg("--public-key")
            .arg(public_key)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("node is required: run `make player-deps` (make test does)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("cloudfront.mjs printed {line:?}: {e}"));
        PrivateDistribution {
            child,
            url: v["url"].as_str().unwrap().to_string(),
        }
    }

    /// What it checked and refused so far.
    fn stats(&self) -> serde_json::Value {
        http(
            self.url.trim_start_matches("http://"),
            "GET",
            "/_stats",
            &[],
            b"",
        )
        .json()
    }
}

#[cfg(feature = "aws")]
impl Drop for PrivateDistribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private distribution: the output directory behind a stand-in for CloudFront with a
/// trusted key group, which serves only requests signed as CloudFront requires. Given the
/// playback key, the console signs the open asset's directory, and both of its players play
/// the asset to the end with the poster and thumbnails; an unsigned request is refused.
#[cfg(feature = "aws")]
#[test]
fn the_console_plays_a_private_asset_with_signed_requests() {
    let d = tempfile::tempdir().unwrap();
    let src = clip_with_subtitles(d.path());
    let out = d.path().join("out");
    let r = vodpipe_run(&[&src], &out, &["--chunk-seconds", "4"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let job_id = r.jobs[0]["job_id"].as_str().unwrap().to_string();
    let (key, public) = (
        d.path().join("playback.pem"),
        d.path().join("playback.pub.pem"),
    );
    for args in [
        vec!["genrsa", "-out", key.to_str().unwrap(), "2048"],
        vec![
            "rsa",
            "-in",
            key.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ],
    ] {
        let o = Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl is required: run `make deps` (make test does)");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let cdn = PrivateDistribution::start(&out, &public);
    let console = Console::start(
        &[
            "--state",
            out.to_str().unwrap(),
            "--playback-base",
            &cdn.url,
            "--playback-key-pair-id",
            "KCONSOLETEST",
            "--playback-private-key",
            key.to_str().unwrap(),
            "--playback-expires",
            "10m",
        ],
        &HashMap::new(),
    );
    let detail = console.get(&format!("/api/jobs/{job_id}")).json();
    let urls = &detail["urls"];
    assert_eq!(
        urls["hls"],
        format!("{}/console_clip/master.m3u8", cdn.url),
        "{detail:#}"
    );
    let query = urls["query"].as_str().unwrap();
    for part in [
        "Policy=",
        "Signature=",
        "Key-Pair-Id=KCONSOLETEST",
        "Hash-Algorithm=SHA256",
    ] {
        assert!(query.contains(part), "{query}");
    }
    let expires = urls["query_expires"].as_f64().unwrap();
    let left = expires - vodpipe_media::process::now_secs();
    assert!((500.0..=600.0).contains(&left), "{left}");
    // The table is not signed: a signature per job per snapshot would cost every tab.
    let snap = console.get("/api/jobs").json();
    assert!(snap["jobs"][0]["urls"]["query"].is_null(), "{snap:#}");
    // Unsigned, the distribution refuses; signed, it serves.
    let host = cdn.url.trim_start_matches("http://");
    let unsigned = http(host, "GET", "/console_clip/master.m3u8", &[], b"");
    assert_eq!(
        unsigned.status,
        403,
        "{}",
        String::from_utf8_lossy(&unsigned.body)
    );
    let ok = http(
        host,
        "GET",
        &format!("/console_clip/master.m3u8?{query}"),
        &[],
        b"",
    );
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let shots = d.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let report = console_report(&console.url, "console clip.mp4", true, &shots);
    assert_console_played(&report, 9.0);
    let stats = cdn.stats();
    // Only the one unsigned request above was refused: every player request was signed.
    assert_eq!(stats["refused"], 1, "{stats:#}");
    assert!(stats["checked"].as_u64().unwrap() > 20, "{stats:#}");
    assert_eq!(console.stop(), Some(0));
}
