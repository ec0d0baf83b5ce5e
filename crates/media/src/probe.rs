//! Probing: ffprobe's JSON into typed media facts, under the input policy.
//!
//! Every source is hostile until probed. ffprobe is only ever allowed to open the one input
//! file (`-protocol_whitelist file`) through an allow-listed demuxer
//! (`-format_whitelist`), so an "mp4" that is really an HLS playlist or an ffconcat script
//! is refused before it can make ffmpeg read other files or fetch URLs. The same
//! restrictions are passed to every later ffmpeg run by [`input_args`].
//!
//! Planning needs every video frame's timestamp (frame-exact chunks). Reading them is done
//! in two steps, because one of them grows with the source:
//!
//! - [`probe_header`] is what ingest runs: the container's header and the streams' first
//!   packets (`-probesize`, `-analyzeduration`; for MPEG-TS also the last packets, where
//!   ffprobe finds the duration), the input policy, and for MP4 and MOV the frame table
//!   from the sample tables in `moov`, read with a few range requests ([`crate::moov`]).
//!   A source read over HTTP is read through a [`crate::relay::Relay`], in closed ranges,
//!   so the bytes the server sends are the bytes ffprobe reads.
//! - [`index_frames`] reads the table of any other container (MKV, MPEG-TS, MXF, AVI,
//!   fragmented MP4) from a scan of every packet of the video stream: nothing is decoded,
//!   but everything is read. It runs on a worker, as a work item of its own.
//!
//! [`probe`] does both, for tools that want a whole plan at once (`vodpipe plan`).

use crate::error::{Error, Result};
use crate::policy::{InputPolicy, ALLOWED_DEMUXERS};
use crate::process::ToolRun;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// The most bytes ffprobe reads from a source's start to learn its streams (ffmpeg's own
/// default, written out so the bound is ours: the header probe runs in the ingest function).
pub const PROBE_BYTES: u64 = 5_000_000;
/// The most media time, in microseconds, ffprobe reads to learn its streams (ffmpeg's
/// default; its MPEG-TS and MPEG-PS demuxers take 7 s whatever is asked).
pub const ANALYZE_MICROS: u64 = 5_000_000;

pub use crate::info::{AudioInfo, FieldOrder, MediaInfo, Rational, SubtitleInfo, VideoInfo};

/// Whether `input` is a presigned HTTP(S) URL rather than a local file.
pub fn is_url(input: &Path) -> bool {
    let s = input.to_string_lossy();
    s.starts_with("https://") || s.starts_with("http://")
}

/// The arguments that open an untrusted input in any ffmpeg/ffprobe run: only allow-listed
/// demuxers, and only the one protocol the input needs. A local file is opened through
/// `file` with an explicit `file:` prefix, so a name such as `http:…` or `concat:…` is never
/// read as a protocol. A presigned URL (an S3 source) is opened through HTTP(S) only, with
/// a read timeout, and every read that meets a 5xx answer or a network error is tried
/// again with back-off (S3 answers 503 SlowDown under load, and a 500 now and then): a
/// passing fault of the server must never read as a fault of the file. The demuxer
/// allow-list still refuses playlists that could point elsewhere.
pub fn input_args(input: &Path) -> Vec<String> {
    let s = input.to_string_lossy();
    let (protocols, target) = if s.starts_with("http://") {
        // A loopback URL (the Lambda layer's probe): plain HTTP only.
        ("http,tcp", s.into_owned())
    } else if is_url(input) {
        ("https,http,tls,tcp", s.into_owned())
    } else {
        ("file", format!("file:{}", input.display()))
    };
    let mut a = vec!["-protocol_whitelist".to_string(), protocols.to_string()];
    if is_url(input) {
        a.extend(["-rw_timeout".into(), "30000000".into()]);
        // Retries at 0, 1, 3 and 7 s, then the read fails.
        for (k, v) in [
            ("-reconnect", "1"),
            ("-reconnect_on_network_error", "1"),
            ("-reconnect_on_http_error", "5xx"),
            ("-reconnect_delay_max", "10"),
        ] {
            a.extend([k.to_string(), v.to_string()]);
        }
    }
    a.extend([
        "-format_whitelist".into(),
        ALLOWED_DEMUXERS.join(","),
        "-i".into(),
        target,
    ]);
    a
}

/// Probes `path` and checks it against `policy`, with the frame table read whatever the
/// container ([`probe_header`], then [`index_frames`] when the header had no table): what a
/// tool that plans at once needs. Ingest runs [`probe_header`] alone. Every refusal is an
/// [`Error::Rejected`] with a reason fit for a FAILED job.
pub fn probe(ffprobe: &str, path: &Path, policy: &InputPolicy) -> Result<MediaInfo> {
    let mut info = probe_header(ffprobe, path, policy)?;
    if info.video.as_ref().is_some_and(|v| v.frame_pts.is_empty()) {
        let timeout = Duration::from_secs(policy.probe_timeout_secs);
        index_frames(ffprobe, path, &mut info, policy, timeout, &[])?;
    }
    Ok(info)
}

/// What ingest reads of a source, a bounded amount whatever its size: the streams, the
/// duration, the input policy's checks, and the frame table when the container carries
/// one (MP4 and MOV sample tables). Without one the video's `frame_pts` is empty and
/// [`index_frames`] reads it later, on a worker; `video_start_secs` is then the stream's
/// start as the header says, until the table settles it. Every refusal is an
/// [`Error::Rejected`] with a reason fit for a FAILED job; a read that fails, or a probe
/// that runs out of time, is [`Error::Unavailable`]: nothing is known of the source yet.
pub fn probe_header(ffprobe: &str, path: &Path, policy: &InputPolicy) -> Result<MediaInfo> {
    let started = std::time::Instant::now();
    // A URL's size is checked by whoever presigned it (the object's metadata).
    let size = if is_url(path) {
        0
    } else {
        let meta =
            std::fs::metadata(path).map_err(|e| Error::io(format!("{}", path.display()), e))?;
        if meta.len() == 0 {
            return Err(Error::Rejected("source file is empty (0 bytes)".into()));
        }
        policy.check_size(meta.len())?;
        meta.len()
    };
    let src = Arc::new(crate::moov::RangeSource::open(path)?);
    let relay = if is_url(path) {
        Some(crate::relay::Relay::start(src.clone())?)
    } else {
        None
    };
    let input = relay
        .as_ref()
        .map_or_else(|| path.to_path_buf(), |r| PathBuf::from(r.url()));
    let timeout = Duration::from_secs(policy.probe_timeout_secs);
    let mut args: Vec<String> = ["-v", "error", "-hide_banner", "-of", "json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend([
        "-probesize".into(),
        PROBE_BYTES.to_string(),
        "-analyzeduration".into(),
        ANALYZE_MICROS.to_string(),
        "-show_format".into(),
        "-show_streams".into(),
    ]);
    args.extend(input_args(&input));
    // ffprobe takes the input as a positional argument, not -i.
    args.retain(|a| a != "-i");
    let out = run_checked(path, || {
        let failed_before = relay.as_ref().map_or(0, |r| r.failures().0);
        ToolRun::new(ffprobe, args.clone(), "probe")
            .timeout(timeout)
            .run()
            .map_err(|e| match &relay {
                Some(r) => relayed_failure(e, r, failed_before),
                None => reject_unreadable(e, false),
            })
    })?;
    let raw: RawProbe = serde_json::from_str(&out.stdout).map_err(|e| Error::Tool {
        step: "probe".into(),
        detail: format!("unreadable ffprobe output: {e}"),
    })?;
    let declared_start = video_start_pts(&raw);
    let header_start = video_start_secs(&raw);
    let mut info = from_raw(raw, size)?;
    if let Some(v) = info.video.as_mut() {
        if v.colour.dynamic_range().is_hdr()
            && (v.colour.mastering.is_none() || v.colour.light.is_none())
        {
            // The container said nothing of the static metadata: the first frame's SEI
            // says it (one frame decoded). Best effort: a probe without this stream's
            // decoder (the ingest layer has no AV1 decoder) still publishes the colour.
            match first_frame_side_data(ffprobe, &input, v.index, timeout) {
                Ok(side) => v.colour.read_side_data(&side),
                Err(e) => tracing::warn!(
                    source = %path.display(),
                    error = %e,
                    "the first frame's HDR static metadata could not be read; HDR rungs carry the colour description alone"
                ),
            }
        }
    }
    drop(relay);
    policy.check(&info)?;
    let format_name = info.format_name.clone();
    let table = info
        .video
        .as_ref()
        .and_then(|v| table_from_moov(&src, path, &format_name, v, declared_start));
    match (table, info.video.is_some()) {
        (Some(pts), _) => settle_frames(&mut info, pts, policy)?,
        (None, true) => info.video_start_secs = header_start.unwrap_or(info.start_secs),
        (None, false) => {
            if let Some(first) = info
                .audio
                .iter()
                .map(|a| a.start_secs)
                .min_by(f64::total_cmp)
            {
                // Without video, the timeline starts at the first audio sample.
                info.video_start_secs = first;
            }
        }
    }
    tracing::info!(
        source = %path.display(),
        format = %info.format_name,
        indexed = info.video.as_ref().is_none_or(|v| !v.frame_pts.is_empty()),
        bytes_read = src.bytes_read(),
        reads = src.reads(),
        secs = started.elapsed().as_secs_f64(),
        "header probed"
    );
    Ok(info)
}

/// The side data of the first frame of stream `index` (mastering display and light level
/// SEI, as the decoder exports them): one frame decoded.
fn first_frame_side_data(
    ffprobe: &str,
    input: &Path,
    index: u32,
    timeout: Duration,
) -> Result<Vec<serde_json::Value>> {
    let mut args: Vec<String> = ["-v", "error", "-hide_banner", "-of", "json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend([
        "-select_streams".into(),
        index.to_string(),
        "-read_intervals".into(),
        "%+#1".into(),
        "-show_entries".into(),
        "frame_side_data".into(),
    ]);
    args.extend(input_args(input));
    args.retain(|a| a != "-i");
    let out = ToolRun::new(ffprobe, args, "probe first frame")
        .timeout(timeout)
        .run()?;
    #[derive(Deserialize)]
    struct Frames {
        #[serde(default)]
        frames: Vec<Frame>,
    }
    #[derive(Deserialize)]
    struct Frame {
        #[serde(default)]
        side_data_list: Vec<serde_json::Value>,
    }
    let f: Frames = serde_json::from_str(&out.stdout).map_err(|e| Error::Tool {
        step: "probe first frame".into(),
        detail: format!("unreadable ffprobe output: {e}"),
    })?;
    Ok(f.frames
        .into_iter()
        .next()
        .map(|f| f.side_data_list)
        .unwrap_or_default())
}

/// Reads the frame table of `info`'s video from a scan of every packet of the stream in
/// `path` (everything is read, nothing decoded), for a source whose container carries no
/// index, and checks it as [`probe_header`] checks a table from the sample tables: frames
/// there are, as many as the header declares, the duration within `policy`. Returns the
/// keyframes' timestamps (where a container without a seek index must be sought from:
/// [`crate::plan::set_prerolls`]). The scan stops after `timeout`, or at once when any of
/// `cancel` is set. A scan whose reads failed is [`Error::Unavailable`]: a table cut short
/// must never be planned.
pub fn index_frames(
    ffprobe: &str,
    path: &Path,
    info: &mut MediaInfo,
    policy: &InputPolicy,
    timeout: Duration,
    cancel: &[Arc<AtomicBool>],
) -> Result<Vec<i64>> {
    let Some(index) = info.video.as_ref().map(|v| v.index) else {
        return Ok(Vec::new());
    };
    let started = std::time::Instant::now();
    let Scan {
        pts,
        keyframes,
        failed_read,
    } = frame_timestamps(ffprobe, path, index, timeout, cancel)?;
    if let Some(why) = failed_read {
        if cut_short(info, &pts) {
            return Err(Error::Unavailable(format!(
                "the packet scan met a failing read and its table ends early: {why}"
            )));
        }
        tracing::warn!(%why, "the packet scan met a failing read and recovered");
    }
    tracing::info!(
        source = %path.display(),
        frames = pts.len(),
        secs = started.elapsed().as_secs_f64(),
        "frame table read from a scan of every packet"
    );
    settle_frames(info, pts, policy)?;
    Ok(keyframes)
}

/// Whether ffmpeg's input seek in the container `format_name` (as ffprobe names it) lands
/// on any packet rather than on a keyframe: MPEG-TS and MPEG-PS carry no seek index, and
/// their chunks need a preroll ([`crate::plan::set_prerolls`]).
pub fn seeks_without_index(format_name: &str) -> bool {
    format_name.split(',').any(|f| f == "mpegts" || f == "mpeg")
}

/// Whether a table of `pts` (the video's) ends more than a second, or 1 %, before the
/// container's duration says the source does; without a duration, any table might.
fn cut_short(info: &MediaInfo, pts: &[i64]) -> bool {
    let (Some(v), Some(total), Some(&last)) = (&info.video, info.duration_secs, pts.last()) else {
        return true;
    };
    let end = last as f64 * v.time_base.as_f64() - info.start_secs;
    end < total - (total * 0.01).max(1.0)
}

/// Puts a frame table into `info` and checks it: frames there are, as many as the
/// container declares, the duration within `policy`; the frame rate's regularity and the
/// video's start follow from it.
fn settle_frames(info: &mut MediaInfo, pts: Vec<i64>, policy: &InputPolicy) -> Result<()> {
    let Some(v) = info.video.as_mut() else {
        return Ok(());
    };
    v.frame_pts = pts;
    if v.frame_pts.is_empty() {
        return Err(Error::Rejected("video stream has no frames".into()));
    }
    if let Some(declared) = v.declared_frames.filter(|&d| d > v.frame_pts.len() as u64) {
        return Err(Error::Rejected(format!(
            "source is truncated or damaged: its header declares {declared} video frames but only {} can be read",
            v.frame_pts.len()
        )));
    }
    v.vfr = is_vfr(&v.frame_pts);
    if let Some(&first) = v.frame_pts.first() {
        info.video_start_secs = first as f64 * v.time_base.as_f64();
    }
    policy.check_duration(v.duration_secs())
}

/// The video stream's start in seconds as the header says (`start_time`), where a source
/// without a frame table has its video begin until the table is read.
fn video_start_secs(raw: &RawProbe) -> Option<f64> {
    raw.streams
        .iter()
        .find(|s| s.codec_type == "video" && s.disposition.get("attached_pic") != Some(&1))
        .and_then(|s| s.start_time.as_deref())
        .and_then(|t| t.parse().ok())
}

/// A failed header probe read through `relay`: the source's reads failed during the run
/// (the relay's count grew past `before`) is the transport's fault, whatever ffprobe made
/// of the 503s; otherwise the relay's transport was sound, and the failure is judged as
/// a local file's would be, without the "Stream ends prematurely" every block's end makes
/// ffmpeg print.
fn relayed_failure(e: Error, relay: &crate::relay::Relay, before: u64) -> Error {
    let (failures, last) = relay.failures();
    if failures > before {
        return Error::Unavailable(format!(
            "reading the source failed: {}",
            last.unwrap_or_else(|| "no reason recorded".into())
        ));
    }
    match e {
        Error::Tool { step, detail } => {
            let detail: Vec<&str> = detail
                .lines()
                .filter(|l| !l.contains("Stream ends prematurely"))
                .collect();
            reject_unreadable(
                Error::Tool {
                    step,
                    detail: detail.join("\n"),
                },
                false,
            )
        }
        other => reject_unreadable(other, false),
    }
}

/// The video stream's first timestamp as ffprobe reports it, to check a frame table
/// read from the sample tables against.
fn video_start_pts(raw: &RawProbe) -> Option<i64> {
    raw.streams
        .iter()
        .find(|s| s.codec_type == "video" && s.disposition.get("attached_pic") != Some(&1))
        .and_then(|s| s.start_pts)
}

/// The frame table from an MP4/MOV's sample tables, read in a few ranged reads instead of
/// a scan of every packet ([`crate::moov`]); `None` sends the caller to the packet scan:
/// another container, a layout the sample tables do not settle, a read that failed, or a
/// table that disagrees with what ffprobe said about the stream (its time base, its frame
/// count, its first timestamp).
fn table_from_moov(
    src: &crate::moov::RangeSource,
    path: &Path,
    format_name: &str,
    v: &VideoInfo,
    start_pts: Option<i64>,
) -> Option<Vec<i64>> {
    if !format_name.split(',').any(|f| f == "mov" || f == "mp4") {
        return None;
    }
    let started = std::time::Instant::now();
    let attempt = || -> Result<Option<Vec<i64>>> {
        let Some(moov) = crate::moov::read_moov(src)? else {
            return Ok(None);
        };
        let Some(t) = crate::moov::frame_table(&moov, v.index as usize, src.size())? else {
            return Ok(None);
        };
        let agrees = v.time_base
            == (Rational {
                num: 1,
                den: i64::from(t.timescale),
            })
            && v.declared_frames.is_none_or(|n| n == t.declared)
            && start_pts.is_none_or(|s| t.pts.first() == Some(&s));
        if !agrees {
            tracing::warn!(
                source = %path.display(),
                "the sample tables disagree with ffprobe; the table is left to a packet scan"
            );
            return Ok(None);
        }
        tracing::info!(
            frames = t.pts.len(),
            bytes_read = src.bytes_read(),
            reads = src.reads(),
            size = src.size(),
            secs = started.elapsed().as_secs_f64(),
            "frame table read from the sample tables"
        );
        Ok(Some(t.pts))
    };
    match attempt() {
        Ok(pts) => pts,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the sample tables; the table is left to a packet scan");
            None
        }
    }
}

/// Runs a probe step; for a source read over HTTP, a refusal is looked at once more after
/// a pause before it stands: a read that failed past every retry can leave the demuxer
/// with bytes that look bad, and a rejection must mean the bytes are bad, nothing else.
/// A refusal the second run repeats is the file's; a second run that fails otherwise says
/// the server was at fault.
fn run_checked<T>(path: &Path, run: impl Fn() -> Result<T>) -> Result<T> {
    match run() {
        Err(Error::Rejected(first)) if is_url(path) => {
            tracing::warn!(source = %path.display(), reason = %first, "the probe refused a source read over HTTP; looking again");
            std::thread::sleep(Duration::from_secs(2));
            match run() {
                Err(Error::Rejected(second)) if same_verdict(&first, &second) => {
                    Err(Error::Rejected(first))
                }
                Err(Error::Rejected(second)) => Err(Error::Unavailable(format!(
                    "reading the source gave two different answers ({first}; then {second}): the server, not the file, is at fault"
                ))),
                other => other,
            }
        }
        other => other,
    }
}

/// Whether two refusals say the same of a file: equal once the addresses ffmpeg prints
/// with its messages (`[mov,mp4 @ 0x55d5c8a8a9c0]`), which differ from run to run, are
/// left out.
fn same_verdict(a: &str, b: &str) -> bool {
    fn without_addresses(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(at) = rest.find("0x") {
            out.push_str(&rest[..at]);
            let tail = &rest[at + 2..];
            let hex = tail
                .find(|c: char| !c.is_ascii_hexdigit())
                .unwrap_or(tail.len());
            rest = &tail[hex..];
        }
        out.push_str(rest);
        out
    }
    without_addresses(a) == without_addresses(b)
}

/// What ffmpeg's HTTP client prints when the server or the network failed, not the file:
/// a 5xx answer, a refused or dropped connection, a body cut short.
const TRANSPORT_FAILURES: &[&str] = &[
    "Server returned 5",
    "Connection refused",
    "Connection reset",
    "Connection timed out",
    "Network is unreachable",
    "Stream ends prematurely",
];

/// ffprobe refusing a file is a property of the file, not a transient failure; but for a
/// source read over HTTP (`url`), a failing server or network says nothing about the file
/// and is retried, and neither does a probe that ran out of time.
fn reject_unreadable(e: Error, url: bool) -> Error {
    match e {
        Error::Tool { detail, .. }
            if url && TRANSPORT_FAILURES.iter().any(|m| detail.contains(m)) =>
        {
            Error::Unavailable(format!("reading the source failed: {}", last_line(&detail)))
        }
        Error::Tool { detail, .. } => {
            // EINVAL is what ffmpeg says when the file *is* recognised, as a demuxer that
            // the allow-list refuses (playlists, concat scripts, images).
            let reason =
                if detail.contains("Invalid data found") || detail.contains("Invalid argument") {
                    format!(
                    "not a supported video file: ffprobe could not recognise it with the allowed \
                     container formats ({})",
                    ALLOWED_DEMUXERS.join(", ")
                )
                } else {
                    format!("source cannot be read: {}", last_line(&detail))
                };
            Error::Rejected(reason)
        }
        // A probe that runs out of time says nothing about the bytes: the machine was slow,
        // or the server (S3 at 0.6 vCPU's pace, a slow network). Retried, never a verdict.
        Error::TimedOut { step, secs } => Error::Unavailable(format!(
            "{step} did not finish within its time limit of {secs} s; it will be tried again"
        )),
        other => other,
    }
}

fn last_line(s: &str) -> &str {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
}

/// What a packet scan found: every frame's timestamp, the keyframes', and the last
/// failed read ffprobe reported for a source read over HTTP, if any (it may have
/// recovered, or ended the scan there).
struct Scan {
    pts: Vec<i64>,
    keyframes: Vec<i64>,
    failed_read: Option<String>,
}

/// Reads every packet timestamp of stream `index` (in its time base), sorted: presentation
/// order, one per frame; and which are keyframes. Stopped after `timeout` or when any of
/// `cancel` is set.
fn frame_timestamps(
    ffprobe: &str,
    path: &Path,
    index: u32,
    timeout: Duration,
    cancel: &[Arc<AtomicBool>],
) -> Result<Scan> {
    let mut args: Vec<String> = vec![
        "-v".into(),
        "error".into(),
        "-select_streams".into(),
        index.to_string(),
        "-show_entries".into(),
        "packet=pts,dts,flags".into(),
        "-of".into(),
        "csv=p=0".into(),
    ];
    args.extend(input_args(path));
    args.retain(|a| a != "-i");
    let out = run_checked(path, || {
        cancel
            .iter()
            .fold(
                ToolRun::new(ffprobe, args.clone(), "probe frames").timeout(timeout),
                |run, flag| run.cancel_on(flag.clone()),
            )
            .run()
            .map_err(|e| reject_unreadable(e, is_url(path)))
    })?;
    // ffprobe ends a packet scan whose reads failed past every retry as if the file had
    // ended there, and exits 0: what it printed is the only sign the table may be short.
    let failed_read = is_url(path)
        .then(|| {
            TRANSPORT_FAILURES
                .iter()
                .any(|m| out.stderr_tail.contains(*m))
                .then(|| last_line(&out.stderr_tail).to_string())
        })
        .flatten();
    let (mut pts, mut keyframes) = (Vec::new(), Vec::new());
    for line in out.stdout.lines() {
        let mut parts = line.split(',');
        let p = parts.next().and_then(|s| s.trim().parse::<i64>().ok());
        let d = parts.next().and_then(|s| s.trim().parse::<i64>().ok());
        let key = parts.next().is_some_and(|f| f.contains('K'));
        match p.or(d) {
            Some(t) => {
                pts.push(t);
                if key {
                    keyframes.push(t);
                }
            }
            None if line.trim().is_empty() => {}
            None => {
                return Err(Error::Rejected(
                    "video frames carry no timestamps; cannot plan frame-exact chunks".into(),
                ))
            }
        }
    }
    pts.sort_unstable();
    pts.dedup();
    keyframes.sort_unstable();
    keyframes.dedup();
    Ok(Scan {
        pts,
        keyframes,
        failed_read,
    })
}

/// Variable frame rate: some frame duration differs from the median by more than 1 %.
fn is_vfr(pts: &[i64]) -> bool {
    let mut d: Vec<i64> = pts.windows(2).map(|w| w[1] - w[0]).collect();
    if d.len() < 2 {
        return false;
    }
    d.sort_unstable();
    let median = d[d.len() / 2] as f64;
    let tol = (median * 0.01).max(1.0);
    d.iter().any(|&x| (x as f64 - median).abs() > tol)
}

#[derive(Deserialize)]
struct RawProbe {
    #[serde(default)]
    streams: Vec<RawStream>,
    format: Option<RawFormat>,
}

#[derive(Deserialize)]
struct RawFormat {
    format_name: String,
    duration: Option<String>,
    start_time: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawStream {
    index: u32,
    codec_type: String,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    sample_aspect_ratio: Option<String>,
    pix_fmt: Option<String>,
    color_range: Option<String>,
    color_space: Option<String>,
    color_transfer: Option<String>,
    color_primaries: Option<String>,
    field_order: Option<String>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    time_base: Option<String>,
    start_time: Option<String>,
    sample_rate: Option<String>,
    channels: Option<u32>,
    nb_frames: Option<String>,
    start_pts: Option<i64>,
    tags: std::collections::HashMap<String, String>,
    side_data_list: Vec<serde_json::Value>,
    disposition: std::collections::HashMap<String, i64>,
}

impl RawStream {
    /// The stream's language tag, unless missing or `und`.
    fn language(&self) -> Option<String> {
        self.tags
            .get("language")
            .filter(|l| !l.is_empty() && *l != "und")
            .cloned()
    }
}

fn from_raw(raw: RawProbe, size_bytes: u64) -> Result<MediaInfo> {
    let format = raw
        .format
        .ok_or_else(|| Error::Rejected("ffprobe found no container format".into()))?;
    let video = raw
        .streams
        .iter()
        .find(|s| s.codec_type == "video" && s.disposition.get("attached_pic") != Some(&1))
        .map(video_info)
        .transpose()?;
    let audio = raw
        .streams
        .iter()
        .filter(|s| s.codec_type == "audio")
        .map(|s| AudioInfo {
            index: s.index,
            codec: s.codec_name.clone().unwrap_or_default(),
            channels: s.channels.unwrap_or(2),
            sample_rate: s
                .sample_rate
                .as_deref()
                .and_then(|r| r.parse().ok())
                .unwrap_or(48000),
            language: s.language(),
            title: s.tags.get("title").cloned(),
            start_secs: s
                .start_time
                .as_deref()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0.0),
        })
        .collect();
    let subtitles = raw
        .streams
        .iter()
        .filter(|s| s.codec_type == "subtitle")
        .map(|s| SubtitleInfo {
            index: s.index,
            codec: s.codec_name.clone().unwrap_or_default(),
            language: s.language(),
            title: s.tags.get("title").cloned(),
            forced: s.disposition.get("forced") == Some(&1),
            hearing_impaired: s.disposition.get("hearing_impaired") == Some(&1),
        })
        .collect();
    Ok(MediaInfo {
        format_name: format.format_name,
        duration_secs: format.duration.and_then(|d| d.parse().ok()),
        size_bytes,
        video,
        audio,
        subtitles,
        video_start_secs: 0.0,
        start_secs: format
            .start_time
            .and_then(|t| t.parse().ok())
            .unwrap_or(0.0),
        end_secs: None,
        first_seek_secs: None,
    })
}

fn video_info(s: &RawStream) -> Result<VideoInfo> {
    let (width, height) = match (s.width, s.height) {
        (Some(w), Some(h)) if w > 0 && h > 0 => (w, h),
        _ => return Err(Error::Rejected("video stream has no picture size".into())),
    };
    let rotation = s
        .side_data_list
        .iter()
        .find_map(|d| d.get("rotation").and_then(|r| r.as_f64()))
        .or_else(|| s.tags.get("rotate").and_then(|r| r.parse::<f64>().ok()))
        .unwrap_or(0.0);
    let rotation = (((rotation.round() as i64) % 360 + 360) % 360) as u32;
    let interlaced = matches!(s.field_order.as_deref(), Some("tt" | "bb" | "tb" | "bt"));
    let frame_rate = s
        .avg_frame_rate
        .as_deref()
        .and_then(Rational::parse)
        .filter(|r| r.num > 0)
        .or_else(|| s.r_frame_rate.as_deref().and_then(Rational::parse))
        .unwrap_or(Rational { num: 25, den: 1 });
    let time_base = s
        .time_base
        .as_deref()
        .and_then(Rational::parse)
        .filter(|r| r.num > 0)
        .ok_or_else(|| Error::Rejected("video stream has no time base".into()))?;
    Ok(VideoInfo {
        index: s.index,
        codec: s.codec_name.clone().unwrap_or_default(),
        width,
        height,
        sar: s
            .sample_aspect_ratio
            .as_deref()
            .and_then(Rational::parse)
            .filter(|r| r.num > 0)
            .unwrap_or(Rational { num: 1, den: 1 }),
        rotation,
        pix_fmt: s.pix_fmt.clone().unwrap_or_else(|| "yuv420p".into()),
        field_order: if interlaced {
            FieldOrder::Interlaced
        } else {
            FieldOrder::Progressive
        },
        frame_rate,
        time_base,
        vfr: false,
        frame_pts: Vec::new(),
        colour: colour_of(s),
        declared_frames: s
            .nb_frames
            .as_deref()
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0),
    })
}

/// The stream's colour description as ffprobe states it ("unknown" and "reserved" are
/// not statements), with any static metadata the container carries.
fn colour_of(s: &RawStream) -> crate::colour::Colour {
    let stated = |v: &Option<String>| {
        v.clone()
            .filter(|x| !x.is_empty() && x != "unknown" && !x.starts_with("reserved"))
    };
    let mut c = crate::colour::Colour {
        primaries: stated(&s.color_primaries),
        transfer: stated(&s.color_transfer),
        matrix: stated(&s.color_space),
        range: stated(&s.color_range),
        ..Default::default()
    };
    c.read_side_data(&s.side_data_list);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rationals_parse_both_separators_and_refuse_zero_denominators() {
        assert_eq!(
            Rational::parse("30000/1001"),
            Some(Rational {
                num: 30000,
                den: 1001
            })
        );
        assert_eq!(Rational::parse("16:9"), Some(Rational { num: 16, den: 9 }));
        assert_eq!(Rational::parse("0/0"), None);
    }

    #[test]
    fn phone_rotation_comes_from_the_display_matrix() {
        let json = r#"{"streams":[{"index":0,"codec_type":"video","codec_name":"h264",
            "width":1920,"height":1080,"pix_fmt":"yuv420p","time_base":"1/90000",
            "avg_frame_rate":"30/1","side_data_list":[{"side_data_type":"Display Matrix",
            "rotation":-90}]}],"format":{"format_name":"mov,mp4"}}"#;
        let info = from_raw(serde_json::from_str(json).unwrap(), 10).unwrap();
        let v = info.video.unwrap();
        assert_eq!(v.rotation, 270);
        assert_eq!(v.display_size(), (1080, 1920));
    }

    #[test]
    fn cover_art_is_not_mistaken_for_the_video() {
        let json = r#"{"streams":[{"index":0,"codec_type":"video","codec_name":"mjpeg",
            "width":600,"height":600,"time_base":"1/90000","disposition":{"attached_pic":1}},
            {"index":1,"codec_type":"audio","codec_name":"mp3","tags":{"language":"eng"}}],
            "format":{"format_name":"mp3"}}"#;
        let info = from_raw(serde_json::from_str(json).unwrap(), 10).unwrap();
        assert!(info.video.is_none());
        assert_eq!(info.audio[0].language.as_deref(), Some("eng"));
    }

    #[test]
    fn vfr_is_detected_from_uneven_frame_durations() {
        assert!(!is_vfr(&[0, 1001, 2002, 3003, 4004]));
        assert!(is_vfr(&[0, 33, 66, 133, 166, 300]));
    }

    #[test]
    fn a_failing_server_is_retried_but_a_bad_file_over_http_is_refused() {
        let tool = |detail: &str| Error::Tool {
            step: "probe".into(),
            detail: detail.into(),
        };
        let e = reject_unreadable(
            tool("http://127.0.0.1:9/s/x: Server returned 5XX Server Error reply"),
            true,
        );
        assert!(e.is_infrastructure(), "{e}");
        let e = reject_unreadable(tool("x: Connection refused"), true);
        assert!(e.is_infrastructure(), "{e}");
        let e = reject_unreadable(tool("x: Invalid data found when processing input"), true);
        assert!(e.is_permanent(), "{e}");
        // A local file cannot have a server failing.
        let e = reject_unreadable(tool("x: Connection refused"), false);
        assert!(e.is_permanent(), "{e}");
    }

    #[test]
    fn refusals_that_differ_only_in_ffmpegs_addresses_are_the_same_verdict() {
        assert!(same_verdict(
            "source cannot be read: [mov,mp4 @ 0x55d5c8a8a9c0] moov atom not found",
            "source cannot be read: [mov,mp4 @ 0x5611f0e2b100] moov atom not found"
        ));
        assert!(!same_verdict(
            "source cannot be read: moov atom not found",
            "source cannot be read: Server returned 5XX Server Error reply"
        ));
    }

    #[test]
    fn inputs_are_opened_with_file_protocol_only() {
        let u = input_args(Path::new(
            "https://bucket.s3.amazonaws.com/k?X-Amz-Signature=1",
        ));
        assert!(u
            .windows(2)
            .any(|w| w[0] == "-protocol_whitelist" && w[1] == "https,http,tls,tcp"));
        assert!(!u.iter().any(|a| a.starts_with("file")));
        let l = input_args(Path::new("http://127.0.0.1:4000/s/ab12"));
        assert!(l
            .windows(2)
            .any(|w| w[0] == "-protocol_whitelist" && w[1] == "http,tcp"));
        let a = input_args(Path::new("/x/http:evil.mp4"));
        assert!(a
            .windows(2)
            .any(|w| w[0] == "-protocol_whitelist" && w[1] == "file"));
        assert_eq!(a.last().unwrap(), "file:/x/http:evil.mp4");
    }
}
