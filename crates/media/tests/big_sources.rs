//! Big sources without an index: the header probe ingest runs reads a small, bounded part
//! of a two-hour MKV and MPEG-TS served over HTTP (counted at the server, as S3 bills it),
//! and the packet scan a worker runs reads the rest. A probe that runs out of time is a
//! fault to retry, never a verdict on the file. Needs ffmpeg and ffprobe (`make test`
//! installs them); fails loudly without them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::serve_counting;
use vodpipe_media::policy::InputPolicy;
use vodpipe_media::probe::{index_frames, probe_header};

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg must be installed (make test installs it)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two hours at 64x36 and 2 fps, the picture noise (so the bytes are real and the file is
/// tens of MB, not kilobytes), with an 8 kHz mono AAC track (ten seconds of tone encoded
/// once and copied on a loop: encoding two hours of audio would take longer than all the
/// rest). A few seconds to make. Returns the MKV and the same streams in MPEG-TS.
fn two_hour_sources(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (tone, mkv, ts) = (
        dir.join("tone.m4a"),
        dir.join("two-hours.mkv"),
        dir.join("two-hours.ts"),
    );
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=f=440:r=8000:d=10",
        "-c:a",
        "aac",
        "-b:a",
        "8k",
        "-ac",
        "1",
        tone.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "nullsrc=s=64x36:r=2:d=7200,format=yuv420p,noise=alls=20:allf=t",
        "-stream_loop",
        "-1",
        "-i",
        tone.to_str().unwrap(),
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-t",
        "7200",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "36",
        "-g",
        "8",
        "-c:a",
        "copy",
        mkv.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-i",
        mkv.to_str().unwrap(),
        "-c",
        "copy",
        ts.to_str().unwrap(),
    ]);
    (mkv, ts)
}

#[test]
fn the_header_probe_of_a_two_hour_mkv_and_mpeg_ts_reads_under_5_percent() {
    let dir = tempfile::tempdir().unwrap();
    let made = Instant::now();
    let (mkv, ts) = two_hour_sources(dir.path());
    eprintln!(
        "two-hour sources made in {:.1} s",
        made.elapsed().as_secs_f64()
    );
    let policy = InputPolicy::default();
    for path in [mkv, ts] {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        let size = data.len() as u64;
        assert!(
            size < 60_000_000,
            "{name}: {size} bytes is more than a test needs"
        );
        let (url, requests, sent) = serve_counting(data, None);
        let url = Path::new(&url);
        let started = Instant::now();
        let mut info = probe_header("ffprobe", url, &policy)
            .unwrap_or_else(|e| panic!("{name}: the header probe said: {e}"));
        let header_bytes = sent.load(Ordering::SeqCst);
        let fraction = header_bytes as f64 / size as f64;
        eprintln!(
            "{name}: {size} bytes; the header probe read {header_bytes} ({:.2} %) in {} requests, {:.2} s",
            fraction * 100.0,
            requests.load(Ordering::SeqCst),
            started.elapsed().as_secs_f64()
        );
        let duration = info.duration_secs.unwrap();
        assert!(
            (duration - 7200.0).abs() < 2.0,
            "{name}: duration {duration}"
        );
        assert_eq!(info.audio.len(), 1, "{name}");
        let video = info.video.as_ref().unwrap();
        assert_eq!((video.width, video.height), (64, 36), "{name}");
        assert!(
            video.frame_pts.is_empty(),
            "{name}: a container without an index must not be scanned at ingest"
        );
        assert!(
            fraction <= 0.05,
            "{name}: the header probe read {:.2} % of the source",
            fraction * 100.0
        );
        // The scan a worker runs instead reads every packet, and finds every frame.
        let scanned = Instant::now();
        index_frames(
            "ffprobe",
            url,
            &mut info,
            &policy,
            Duration::from_secs(120),
            &[],
        )
        .unwrap_or_else(|e| panic!("{name}: the packet scan said: {e}"));
        let video = info.video.as_ref().unwrap();
        assert_eq!(video.frame_pts.len(), 14_400, "{name}");
        assert!((video.duration_secs() - 7200.0).abs() < 0.01, "{name}");
        eprintln!(
            "{name}: the packet scan read {:.0} % more in {:.2} s",
            (sent.load(Ordering::SeqCst) - header_bytes) as f64 / size as f64 * 100.0,
            scanned.elapsed().as_secs_f64()
        );
    }
}

#[test]
fn a_probe_that_runs_out_of_time_is_a_fault_to_retry_not_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("clip.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x36:rate=5:duration=1",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        source.to_str().unwrap(),
    ]);
    // An ffprobe that never answers (a slow machine, a stalled read).
    let stalled = dir.path().join("ffprobe");
    std::fs::write(&stalled, "#!/bin/sh\nexec sleep 30\n").unwrap();
    let mut mode = std::fs::metadata(&stalled).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o755);
    std::fs::set_permissions(&stalled, mode).unwrap();
    let policy = InputPolicy {
        probe_timeout_secs: 1,
        ..InputPolicy::default()
    };
    let started = Instant::now();
    let err = probe_header(stalled.to_str().unwrap(), &source, &policy).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        err.is_infrastructure() && !err.is_permanent(),
        "a probe out of time must be retried, not refused: {err}"
    );
    assert!(err.to_string().contains("time limit of 1 s"), "{err}");
}
