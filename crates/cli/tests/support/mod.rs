//! Shared helpers for the end-to-end tests: make real media with ffmpeg, run the real
//! `vodpipe` binary, and check what it published with ffprobe.
//!
//! Tests need ffmpeg/ffprobe; when they are missing the tests fail loudly (`make test`
//! installs them), they never skip.

#![allow(dead_code)]

pub mod clipped;
pub mod overlaid;
pub mod protected;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Panics with an install hint when a tool is missing.
pub fn require(tool: &str) {
    let ok = Command::new(tool)
        .arg("-version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "{tool} is required for this test and was not found on PATH: run `make deps` (or `make test`, which installs it)");
}

/// Runs ffmpeg with `args`, panicking with its stderr on failure.
pub fn ffmpeg(args: &[&str]) {
    require("ffmpeg");
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// x264 settings that make joins hard: B-frames, open GOPs, a keyframe only every 10 s.
pub const HARD_H264: &[&str] = &[
    "-c:v",
    "libx264",
    "-preset",
    "veryfast",
    "-bf",
    "3",
    "-x264-params",
    "open-gop=1:keyint=300:min-keyint=300:scenecut=0",
    "-pix_fmt",
    "yuv420p",
];
/// Quick H.264 for clips whose encoding does not matter.
pub const FAST_H264: &[&str] = &["-c:v", "libx264", "-preset", "ultrafast"];

/// Writes a synthetic source to `path`: a moving test pattern of `size` at `rate` for
/// `secs`, with a sine tone (AAC) when `tone_hz` is set, video encoded with `video_args`.
pub fn make_clip(
    path: &Path,
    size: &str,
    rate: &str,
    secs: u32,
    tone_hz: Option<u32>,
    video_args: &[&str],
) {
    let pattern = format!("testsrc2=size={size}:rate={rate}");
    let tone = tone_hz.map(|hz| format!("sine=frequency={hz}:sample_rate=48000"));
    let secs = secs.to_string();
    let mut a: Vec<&str> = vec!["-f", "lavfi", "-i", &pattern];
    if let Some(t) = &tone {
        a.extend(["-f", "lavfi", "-i", t, "-c:a", "aac", "-shortest"]);
    }
    a.extend(["-t", &secs]);
    a.extend_from_slice(video_args);
    a.push(path.to_str().unwrap());
    ffmpeg(&a);
}

/// `video` with the SubRip file `srt` muxed in as an English mov_text track, written to
/// `out` (the video and audio copied as they are).
pub fn with_english_subtitles(video: &Path, srt: &Path, out: &Path) {
    ffmpeg(&[
        "-i",
        video.to_str().unwrap(),
        "-i",
        srt.to_str().unwrap(),
        "-map",
        "0",
        "-map",
        "1",
        "-c",
        "copy",
        "-c:s",
        "mov_text",
        "-metadata:s:s:0",
        "language=eng",
        out.to_str().unwrap(),
    ]);
}

/// Runs the two-input filter `graph` (`[0:v]` is `a`, `[1:v]` is `b`) to the end, for the
/// statistics files its filters write (`psnr`, `ssim`).
pub fn compare_with(a: &Path, b: &Path, graph: &str) {
    ffmpeg(&[
        "-i",
        a.to_str().unwrap(),
        "-i",
        b.to_str().unwrap(),
        "-lavfi",
        graph,
        "-f",
        "null",
        "-",
    ]);
}

/// The worst `psnr_avg` in an ffmpeg `psnr=stats_file=` log (`inf` for identical frames)
/// and how many frames it lists.
pub fn worst_psnr_in(stats: &Path) -> (f64, u64) {
    let log = std::fs::read_to_string(stats).unwrap();
    let worst = log
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("psnr_avg:"))
        })
        .map(|v| {
            if v == "inf" {
                f64::INFINITY
            } else {
                v.parse().unwrap()
            }
        })
        .fold(f64::INFINITY, f64::min);
    (worst, log.lines().count() as u64)
}

/// ffprobe JSON for `args` + `path`.
pub fn ffprobe_json(args: &[&str], path: &Path) -> Value {
    require("ffprobe");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe {path:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Decoded frame count of the first video stream.
pub fn decoded_frames(path: &Path) -> u64 {
    let v = ffprobe_json(
        &[
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
        ],
        path,
    );
    v["streams"][0]["nb_read_frames"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The result of `vodpipe run --json`: one object per job, plus the exit code.
pub struct RunResult {
    pub code: i32,
    pub jobs: Vec<Value>,
    pub stderr: String,
}

/// Runs `vodpipe run INPUTS --out OUT --json EXTRA…`.
pub fn vodpipe_run(inputs: &[&Path], out: &Path, extra: &[&str]) -> RunResult {
    require("ffmpeg");
    let out = Command::new(env!("CARGO_BIN_EXE_vodpipe"))
        .arg("run")
        .args(inputs)
        .arg("--out")
        .arg(out)
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    let jobs = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    RunResult {
        code: out.status.code().unwrap_or(-1),
        jobs,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The video renditions a job published (its `renditions` of kind `video`), in order.
pub fn video_renditions(job: &Value) -> Vec<&Value> {
    job["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "video")
        .collect()
}

/// The ids of [`video_renditions`].
pub fn video_ids(job: &Value) -> Vec<&str> {
    video_renditions(job)
        .into_iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect()
}

/// A published rendition, reassembled: the init segment followed by every media segment
/// of `playlist`, byte-concatenated into one file.
pub fn concat_rendition(playlist: &Path, dest: &Path) -> PathBuf {
    let dir = playlist.parent().unwrap();
    let text = std::fs::read_to_string(playlist).unwrap();
    let mut bytes = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            let uri = rest.split('"').next().unwrap();
            bytes.extend(std::fs::read(dir.join(uri)).unwrap());
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            bytes.extend(std::fs::read(dir.join(line.trim())).unwrap());
        }
        assert!(
            !line.contains("DISCONTINUITY"),
            "{playlist:?} has a discontinuity"
        );
    }
    std::fs::write(dest, bytes).unwrap();
    dest.to_path_buf()
}

/// The rendition playlists a master playlist lists (video variants, then audio media).
pub fn master_entries(master: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let dir = master.parent().unwrap();
    let text = std::fs::read_to_string(master).unwrap();
    let video = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| dir.join(l.trim()))
        .collect();
    let audio = text
        .lines()
        .filter(|l| l.starts_with("#EXT-X-MEDIA:TYPE=AUDIO"))
        .filter_map(|l| {
            l.split("URI=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(|u| dir.join(u))
        })
        .collect();
    (video, audio)
}

/// Asserts packet decode timestamps strictly increase and presentation timestamps have no
/// duplicates: one continuous timeline.
pub fn assert_monotonic(path: &Path) {
    let v = ffprobe_json(
        &[
            "-select_streams",
            "0",
            "-show_entries",
            "packet=pts,dts,duration",
        ],
        path,
    );
    let packets = v["packets"].as_array().unwrap();
    assert!(!packets.is_empty(), "{path:?} has no packets");
    let mut last_dts = i64::MIN;
    let mut pts: Vec<i64> = Vec::new();
    for p in packets {
        let dts = p["dts"].as_i64().unwrap();
        assert!(dts > last_dts, "{path:?}: dts {dts} after {last_dts}");
        last_dts = dts;
        pts.push(p["pts"].as_i64().unwrap());
    }
    pts.sort_unstable();
    for w in pts.windows(2) {
        assert!(w[1] > w[0], "{path:?}: duplicate pts {}", w[0]);
    }
}

/// Asserts every frame of `rendition` matches the same frame of `source` (scaled to the
/// rendition's size) with PSNR ≥ `min_db`; a shifted, dropped or duplicated frame fails.
pub fn assert_psnr_at_least(rendition: &Path, source: &Path, min_db: f64) {
    let s = ffprobe_json(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
        ],
        rendition,
    );
    let (w, h) = (
        s["streams"][0]["width"].as_i64().unwrap(),
        s["streams"][0]["height"].as_i64().unwrap(),
    );
    let stats = rendition.with_extension("psnr.log");
    let graph = format!(
        "[0:v]setpts=PTS-STARTPTS[a];[1:v]scale={w}:{h}:flags=bicubic,format=yuv420p,setpts=PTS-STARTPTS[b];[a][b]psnr=stats_file={}",
        stats.display()
    );
    ffmpeg(&[
        "-i",
        rendition.to_str().unwrap(),
        "-i",
        source.to_str().unwrap(),
        "-lavfi",
        &graph,
        "-fps_mode",
        "passthrough",
        "-f",
        "null",
        "-",
    ]);
    let (worst, frames) = worst_psnr_in(&stats);
    assert_eq!(
        frames,
        decoded_frames(source),
        "PSNR compared a different number of frames"
    );
    assert!(
        worst >= min_db,
        "{rendition:?}: worst frame PSNR {worst:.2} dB < {min_db} dB"
    );
}

/// Checks trick play: the master lists an I-frame playlist for every video variant, each
/// lists one byte range per segment of its rendition, and each range (after the init
/// segment) decodes to exactly one frame, a keyframe, at its segment's start: what a player
/// scrubbing with `#EXT-X-I-FRAME-STREAM-INF` fetches.
pub fn assert_trick_play(master: &Path, scratch: &Path) {
    let dir = master.parent().unwrap();
    let text = std::fs::read_to_string(master).unwrap();
    let (video, _) = master_entries(master);
    let iframe_uris: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("#EXT-X-I-FRAME-STREAM-INF:"))
        .filter_map(|l| l.split("URI=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(
        iframe_uris.len(),
        video.len(),
        "one I-frame playlist per variant: {text}"
    );
    for (n, uri) in iframe_uris.iter().enumerate() {
        let pl = dir.join(uri);
        let body = std::fs::read_to_string(&pl).unwrap();
        assert!(body.contains("#EXT-X-I-FRAMES-ONLY"), "{body}");
        let pl_dir = pl.parent().unwrap();
        let init_uri = body
            .lines()
            .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
            .and_then(|r| r.split('"').next())
            .unwrap();
        let init = std::fs::read(pl_dir.join(init_uri)).unwrap();
        let mut length = None;
        let mut entries = 0;
        for line in body.lines() {
            if let Some(r) = line.strip_prefix("#EXT-X-BYTERANGE:") {
                let (len, offset) = r.split_once('@').unwrap();
                assert_eq!(offset, "0", "{body}");
                length = Some(len.parse::<usize>().unwrap());
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let segment = std::fs::read(pl_dir.join(line.trim())).unwrap();
                let len = length.take().expect("a byte range before each segment");
                assert!(
                    len < segment.len(),
                    "the range is the whole segment: {line}"
                );
                let mut bytes = init.clone();
                bytes.extend_from_slice(&segment[..len]);
                let file = scratch.join(format!("iframe{n}-{entries}.mp4"));
                std::fs::write(&file, bytes).unwrap();
                let frames = ffprobe_json(
                    &["-show_frames", "-show_entries", "frame=key_frame,pict_type"],
                    &file,
                );
                let frames = frames["frames"].as_array().cloned().unwrap_or_default();
                assert_eq!(frames.len(), 1, "{line}: {frames:?}");
                assert_eq!(frames[0]["key_frame"], 1, "{line}: {frames:?}");
                entries += 1;
            }
        }
        let segments = std::fs::read_to_string(&video[n])
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .count();
        assert_eq!(entries, segments, "{uri}: an I-frame per segment");
    }
}

/// Checks a published job: every video rung has exactly the source's frame count and one
/// continuous timeline; audio renditions decode with a continuous timeline. Returns the
/// reassembled renditions (video first).
pub fn assert_published_correctly(job: &Value, source: &Path, scratch: &Path) -> Vec<PathBuf> {
    assert_eq!(job["status"], "PUBLISHED", "job: {job}");
    let master = PathBuf::from(job["master"].as_str().unwrap());
    let dash = PathBuf::from(job["dash"].as_str().unwrap());
    assert!(dash.exists(), "MPD missing");
    let (video, audio) = master_entries(&master);
    assert!(!video.is_empty(), "no variants in {master:?}");
    let want = decoded_frames(source);
    let mut out = Vec::new();
    for (i, pl) in video.iter().chain(audio.iter()).enumerate() {
        let file = concat_rendition(pl, &scratch.join(format!("rendition{i}.mp4")));
        assert_monotonic(&file);
        if i < video.len() {
            assert_eq!(
                decoded_frames(&file),
                want,
                "{pl:?}: frame count differs from the source"
            );
        }
        out.push(file);
    }
    out
}

/// Plays `hls` and `dash` (paths under `root`) to the end in hls.js and shaka-player in
/// headless Chromium (tests/player/check.mjs); panics with the player's report otherwise.
/// Returns the report: what each player listed (text tracks, cues, image tracks).
pub fn assert_plays(root: &Path, hls: &str, dash: &str) -> Value {
    assert_plays_with(root, hls, dash, &[])
}

/// [`assert_plays`] with more of check.mjs's arguments: `--clearkey KID:KEY` for a protected
/// asset, `--expect-refusal` (passes only if no player plays), `--stuck-secs N`.
pub fn assert_plays_with(root: &Path, hls: &str, dash: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--root".to_string(), root.display().to_string()];
    args.extend(["--hls", hls, "--dash", dash, "--timeout-secs", "180"].map(String::from));
    args.extend(extra.iter().map(|a| a.to_string()));
    node_report("check.mjs", &args, "playback check")
}

/// [`assert_plays`] restricted to the video variants of one codec string (the lowest of
/// them, locked): the players must play those, and report that they did.
pub fn assert_plays_codec(root: &Path, hls: &str, dash: &str, codec: &str) -> Value {
    let mut args = vec!["--root".to_string(), root.display().to_string()];
    args.extend(
        [
            "--hls",
            hls,
            "--dash",
            dash,
            "--video-codec",
            codec,
            "--timeout-secs",
            "180",
        ]
        .map(String::from),
    );
    node_report("check.mjs", &args, "playback check")
}

/// Runs `tests/player/SCRIPT ARGS` under node and returns its JSON report; panics with the
/// report (and node's stderr) unless it exited 0 with `"ok": true`. A playback whose only
/// fault was an underrun (the buffer ran dry at 8x with no hole: fetching fell behind on a
/// loaded machine) is played once more at 2x, where a content fault would recur.
fn node_report(script: &str, args: &[String], what: &str) -> Value {
    let player_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/player");
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        node_ok,
        "node is required for the {what}: run `make player-deps` (make test does)"
    );
    assert!(
        player_dir.join("node_modules").exists(),
        "player libraries missing: run `make player-deps` (make test does)"
    );
    let run = |extra: &[&str]| {
        let out = Command::new("node")
            .arg(player_dir.join(script))
            .args(args)
            .args(extra)
            .output()
            .expect("running node");
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        let v: Option<Value> = serde_json::from_str(&report).ok();
        (out, report, v)
    };
    let (mut out, mut report, mut v) = run(&[]);
    if v.as_ref().is_some_and(|v| v["retry_slower"] == true) {
        eprintln!("{what}: underrun at the default rate; playing again at 2x:\n{report}");
        (out, report, v) = run(&["--rate", "2"]);
    }
    assert!(
        out.status.success(),
        "{what} failed (exit {:?}):\n{report}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v = v.unwrap_or_else(|| panic!("{what}: the report is not JSON:\n{report}"));
    assert_eq!(v["ok"], true, "{report}");
    v
}

/// The cues of a WebVTT document as (start, end, text), seconds.
pub fn vtt_cues(doc: &str) -> Vec<(f64, f64, String)> {
    let secs = |t: &str| -> f64 {
        let parts: Vec<f64> = t.trim().split(':').map(|p| p.parse().unwrap()).collect();
        parts.iter().fold(0.0, |acc, p| acc * 60.0 + p)
    };
    doc.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|block| {
            let mut lines = block.lines().skip_while(|l| !l.contains("-->"));
            let timing = lines.next()?;
            let (a, b) = timing.split_once("-->")?;
            let b = b.split_whitespace().next()?;
            Some((secs(a), secs(b), lines.collect::<Vec<_>>().join("\n")))
        })
        .collect()
}

/// Mean luma (8-bit) of an image, from ffmpeg's signalstats.
pub fn mean_luma(image: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-show_entries",
            "frame_tags=lavfi.signalstats.YAVG",
            "-of",
            "csv=p=0",
        ])
        .arg(format!("movie={},signalstats", image.display()))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| {
            panic!(
                "no luma for {image:?} ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// `vodpipe aws bootstrap --name NAME` against the emulator (already started): the
/// environment it exports, plus a scratch state directory, for a test's `vodpipe` commands.
#[cfg(feature = "aws")]
pub fn aws_env(name: &str, scratch: &Path) -> std::collections::HashMap<String, String> {
    let boot = Command::new(env!("CARGO_BIN_EXE_vodpipe"))
        .args(["aws", "bootstrap", "--name", name])
        .output()
        .unwrap();
    assert!(
        boot.status.success(),
        "{}",
        String::from_utf8_lossy(&boot.stderr)
    );
    let mut env: std::collections::HashMap<String, String> = String::from_utf8_lossy(&boot.stdout)
        .lines()
        .filter_map(|l| {
            l.strip_prefix("export ")?
                .split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    assert_eq!(env.get("VODPIPE_BACKEND").map(String::as_str), Some("aws"));
    env.insert("VODPIPE_STATE".into(), scratch.display().to_string());
    env
}

/// Polls `vodpipe status JOB --json` (with `env`) until the job is PUBLISHED or FAILED;
/// panics after `limit`.
pub fn wait_for_final(
    env: &std::collections::HashMap<String, String>,
    job_id: &str,
    limit: std::time::Duration,
) -> Value {
    let started = std::time::Instant::now();
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_vodpipe"))
            .envs(env)
            .env_remove("FAILPOINTS")
            .args(["status", job_id, "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s: Value = serde_json::from_slice(&out.stdout).unwrap();
        if s["status"] == "PUBLISHED" || s["status"] == "FAILED" {
            return s;
        }
        assert!(started.elapsed() < limit, "not published in time: {s}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// Downloads what a job published on AWS (everything under its master's directory) into
/// `out`, and returns its status with `master` and `dash` at the local copies, ready for
/// [`assert_published_correctly`].
#[cfg(feature = "aws")]
pub fn download_published(aws: &vodpipe_aws::Aws, status: &Value, out: &Path) -> Value {
    use vodpipe_control::ports::ObjectStore;
    let master = status["master_key"].as_str().unwrap();
    let prefix = format!("{}/", master.rsplit_once('/').unwrap().0);
    for k in aws.objects.list(&prefix).unwrap() {
        let dest = out.join(&k);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(&dest, aws.objects.get(&k).unwrap()).unwrap();
    }
    let mut local = status.clone();
    for (field, key) in [("master", "master_key"), ("dash", "dash_key")] {
        local[field] = out
            .join(status[key].as_str().unwrap())
            .display()
            .to_string()
            .into();
    }
    local
}

/// An HTTP response, read by [`http`].
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One HTTP/1.1 request over a plain socket, the target sent exactly as given: no client
/// library normalises `..` or percent-escapes away, which is what a path-traversal test
/// needs. `addr` is `host:port`; the response must carry a Content-Length (or none).
pub fn http(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    assert!(
        !headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")),
        "{method} {target}: chunked responses are not read here"
    );
    HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// A running `vodpipe serve`; stopped (SIGTERM) when dropped.
pub struct Console {
    pub child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
}

impl Console {
    /// Starts `vodpipe serve ARGS --listen 127.0.0.1:0` with `env`, and reads the address
    /// it printed.
    pub fn start(args: &[&str], env: &std::collections::HashMap<String, String>) -> Console {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_vodpipe"))
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .envs(env)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("serve printed no address: {line:?}"))
            .to_string();
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Console { child, addr, url }
    }

    /// GET `target`.
    pub fn get(&self, target: &str) -> HttpResponse {
        http(&self.addr, "GET", target, &[], b"")
    }

    /// Stops it with SIGTERM and returns its exit code.
    pub fn stop(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = std::time::Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "vodpipe serve did not stop within 20 s of SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Drives the console in Chromium (tests/player/console.mjs) and returns its report;
/// `play` plays the job's asset to the end in both players.
pub fn console_report(url: &str, source_name: &str, play: bool, screenshots: &Path) -> Value {
    let mut args: Vec<String> = ["--url", url, "--source", source_name, "--screenshots"]
        .map(String::from)
        .to_vec();
    args.push(screenshots.display().to_string());
    if play {
        args.push("--play".into());
    }
    node_report("console.mjs", &args, "console check")
}

/// Each of the console's players (in a [`console_report`]) played to the end of an asset
/// of `secs` seconds without an error (a player that stood still once and played when
/// started again is reported on stderr); returns their reports.
pub fn assert_console_played(report: &Value, secs: f64) -> [&Value; 2] {
    ["hls", "shaka"].map(|kind| {
        let p = &report[kind];
        if p["retried"] == true {
            eprintln!(
                "{kind} stood still once and played when started again: {:#}",
                p["first_attempt"]
            );
        }
        assert!(p["error"].is_null(), "{kind}: {p:#}");
        assert_eq!(p["ended"], true, "{kind} did not reach the end: {p:#}");
        assert!(
            (p["duration"].as_f64().unwrap() - secs).abs() < 0.2,
            "{kind}: {p:#}"
        );
        p
    })
}
