//! Broken and hostile inputs end as FAILED jobs with a clear reason, and nothing outside
//! the input is read: no local file, no URL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;

/// Runs one file and returns (status, error).
fn run_one(dir: &Path, src: &Path) -> (String, String) {
    let r = vodpipe_run(&[src], &dir.join("out"), &[]);
    assert_eq!(r.jobs.len(), 1, "{}", r.stderr);
    let j = &r.jobs[0];
    if j["status"] == "FAILED" {
        assert_eq!(r.code, 1, "a failed job must make `run` exit non-zero");
    }
    (
        j["status"].as_str().unwrap().to_string(),
        j["error"].as_str().unwrap_or("").to_string(),
    )
}

fn assert_rejected(dir: &Path, src: &Path, reason_has: &str) {
    let (status, error) = run_one(dir, src);
    assert_eq!(status, "FAILED", "{src:?} should fail");
    assert!(
        error.contains(reason_has),
        "{src:?}: reason {error:?} should mention {reason_has:?}"
    );
}

/// A TCP listener that records whether anything connected.
fn canary_server() -> (String, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    let hit = Arc::new(AtomicBool::new(false));
    let h = hit.clone();
    std::thread::spawn(move || {
        for _ in 0..600 {
            if let Ok((mut s, _)) = l.accept() {
                h.store(true, Ordering::SeqCst);
                let _ = s.read(&mut [0u8; 64]);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    (format!("http://{addr}/secret.ts"), hit)
}

#[test]
fn an_empty_file_fails_with_a_reason() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("empty.mp4");
    std::fs::write(&p, b"").unwrap();
    assert_rejected(d.path(), &p, "empty");
}

#[test]
fn a_text_file_named_mp4_fails_with_a_reason() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("notes.mp4");
    std::fs::write(
        &p,
        "these are not the frames you are looking for\n".repeat(100),
    )
    .unwrap();
    assert_rejected(d.path(), &p, "not a supported video file");
}

#[test]
fn a_truncated_file_fails_with_a_reason() {
    let d = tempfile::tempdir().unwrap();
    let full = d.path().join("full.mp4");
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
        full.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&full).unwrap();
    // moov at the end: cutting the tail loses the index.
    let tail_cut = d.path().join("tail_cut.mp4");
    std::fs::write(&tail_cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_rejected(d.path(), &tail_cut, "rejected");
    // moov at the start (faststart): the index promises frames the file no longer has.
    let fast = d.path().join("fast.mp4");
    ffmpeg(&[
        "-i",
        full.to_str().unwrap(),
        "-c",
        "copy",
        "-movflags",
        "+faststart",
        fast.to_str().unwrap(),
    ]);
    let fb = std::fs::read(&fast).unwrap();
    let head_only = d.path().join("head_only.mp4");
    std::fs::write(&head_only, &fb[..fb.len() * 2 / 3]).unwrap();
    assert_rejected(d.path(), &head_only, "truncated");
}

#[cfg(unix)]
#[test]
fn an_hls_playlist_named_mp4_reads_no_local_file_and_fetches_no_url() {
    let d = tempfile::tempdir().unwrap();
    let (url, hit) = canary_server();
    let fifo = d.path().join("local-secret.ts");
    let opened = fifo_canary(&fifo);
    let playlist = format!("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\n{url}\n#EXTINF:4,\nfile://{}\n#EXT-X-ENDLIST\n", fifo.display());
    // Named as a video, and named as what it is: both refused.
    for name in ["playlist.mp4", "playlist.m3u8"] {
        let p = d.path().join(name);
        std::fs::write(&p, &playlist).unwrap();
        assert_rejected(d.path(), &p, "not a supported video file");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !hit.load(Ordering::SeqCst),
        "a URL from the playlist was fetched"
    );
    assert!(!opened(), "a local file from the playlist was opened");
    // The canary works: unrestricted ffprobe does open the local file the playlist names.
    std::fs::remove_file(&fifo).unwrap();
    let opened = fifo_canary(&fifo);
    let mut child = std::process::Command::new("ffprobe")
        .args(["-v", "quiet"])
        .arg(d.path().join("playlist.m3u8"))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        opened(),
        "canary self-check: plain ffprobe should have opened the local file"
    );
}

#[cfg(unix)]
#[test]
fn an_ffconcat_file_named_mp4_reads_no_local_file() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("other.mp4");
    let opened = fifo_canary(&fifo);
    let (url, hit) = canary_server();
    let p = d.path().join("concat.mp4");
    std::fs::write(
        &p,
        format!(
            "ffconcat version 1.0\nfile '{}'\nfile '{url}'\n",
            fifo.display()
        ),
    )
    .unwrap();
    assert_rejected(d.path(), &p, "not a supported video file");
    assert!(
        !hit.load(Ordering::SeqCst),
        "a URL from the concat script was fetched"
    );
    assert!(!opened(), "a local file from the concat script was opened");
}

#[test]
fn a_huge_still_image_fails_with_a_reason() {
    let d = tempfile::tempdir().unwrap();
    let png = d.path().join("huge.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=red:size=9000x9000",
        "-frames:v",
        "1",
        "-c:v",
        "png",
        "-f",
        "image2",
        png.to_str().unwrap(),
    ]);
    assert_rejected(d.path(), &png, "not a supported video file");
    // The same picture in a real container passes the demuxer check and hits the size cap.
    let mov = d.path().join("huge_in_mov.mov");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=red:size=9000x9000",
        "-frames:v",
        "1",
        "-c:v",
        "mjpeg",
        "-q:v",
        "31",
        mov.to_str().unwrap(),
    ]);
    assert_rejected(d.path(), &mov, "9000x9000");
}

/// Makes `path` a FIFO; the returned closure says whether anyone opened it for reading.
#[cfg(unix)]
fn fifo_canary(path: &Path) -> impl Fn() -> bool {
    let st = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
    let opened = Arc::new(AtomicBool::new(false));
    let o = opened.clone();
    let p = path.to_path_buf();
    // Opening a FIFO for writing blocks until a reader opens it.
    std::thread::spawn(move || {
        if std::fs::OpenOptions::new().write(true).open(&p).is_ok() {
            o.store(true, Ordering::SeqCst);
        }
    });
    let p = path.to_path_buf();
    move || {
        let was = opened.load(Ordering::SeqCst);
        if !was {
            // Release the writer thread.
            let _ = std::fs::File::open(&p);
            std::thread::sleep(Duration::from_millis(50));
        }
        was
    }
}
