//! A source read over HTTP from a server that fails now and then, as S3 does (503 SlowDown,
//! a 500 after the request landed): the probe retries each read and learns the same as
//! from a good server, and its verdict on the bytes never depends on the server's mood.
//! Needs ffmpeg and ffprobe (`make test` installs them); fails loudly without them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use vodpipe_media::policy::InputPolicy;
use vodpipe_media::probe::probe;

/// Serves `data` with range support on 127.0.0.1, answering every `fail_every`-th request
/// (the first included) with 503 SlowDown; returns the URL and the request counter.
fn flaky_server(data: Vec<u8>, fail_every: u32) -> (String, Arc<AtomicU32>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let count = Arc::new(AtomicU32::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            if n.is_multiple_of(fail_every) {
                let _ = req.respond(
                    tiny_http::Response::from_string("<Error><Code>SlowDown</Code></Error>")
                        .with_status_code(503),
                );
                continue;
            }
            let range = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Range"))
                .map(|h| h.value.as_str().to_string());
            let (a, b) = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.split_once('-'))
                .map(|(a, b)| {
                    let a: usize = a.parse().unwrap();
                    let b: usize = b.parse().unwrap_or(data.len() - 1);
                    (a, b.min(data.len() - 1))
                })
                .unwrap_or((0, data.len() - 1));
            let resp = tiny_http::Response::from_data(data[a..=b].to_vec())
                .with_status_code(if range.is_some() { 206 } else { 200 })
                .with_header(
                    tiny_http::Header::from_bytes(
                        "Content-Range",
                        format!("bytes {a}-{b}/{}", data.len()),
                    )
                    .unwrap(),
                )
                .with_header(tiny_http::Header::from_bytes("Accept-Ranges", "bytes").unwrap());
            let _ = req.respond(resp);
        }
    });
    (format!("http://127.0.0.1:{port}/source.mp4"), count)
}

fn clip(path: &Path, container_args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=160x90:rate=25:duration=6")
        .args(["-c:v", "libx264", "-g", "25"])
        .args(container_args)
        .arg(path)
        .output()
        .expect("ffmpeg must be installed (make test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_source_whose_server_fails_every_other_read_is_probed_as_if_it_had_not() {
    let dir = tempfile::tempdir().unwrap();
    for (name, args) in [("a.mp4", &[][..]), ("b.mkv", &[][..])] {
        let path = dir.path().join(name);
        clip(&path, args);
        let (url, served) = flaky_server(std::fs::read(&path).unwrap(), 2);
        let info = probe("ffprobe", Path::new(&url), &InputPolicy::default())
            .unwrap_or_else(|e| panic!("{name}: a flaky server made the probe say: {e}"));
        let frames = info.video.as_ref().map(|v| v.frame_pts.len());
        assert_eq!(frames, Some(150), "{name}");
        assert!(
            served.load(Ordering::SeqCst) >= 2,
            "{name}: the server was not used"
        );
    }
}

#[test]
fn bad_bytes_over_a_flaky_server_are_still_refused_as_bad_bytes() {
    // A playlist dressed as a video: refused for what it is, however the server behaves.
    let (url, _) = flaky_server(
        b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
            .to_vec(),
        2,
    );
    match probe("ffprobe", Path::new(&url), &InputPolicy::default()) {
        Err(e) => assert!(e.is_permanent(), "{e}"),
        Ok(info) => panic!("a playlist was accepted: {info:?}"),
    }
}
