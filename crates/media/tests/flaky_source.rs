//! A source read over HTTP from a server that fails now and then, as S3 does (503 SlowDown,
//! a 500 after the request landed): the probe retries each read and learns the same as
//! from a good server, and its verdict on the bytes never depends on the server's mood.
//! Needs ffmpeg and ffprobe (`make test` installs them); fails loudly without them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use support::serve;
use vodpipe_media::policy::InputPolicy;
use vodpipe_media::probe::probe;

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
        let (url, served) = serve(std::fs::read(&path).unwrap(), Some(2));
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
    let (url, _) = serve(
        b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
            .to_vec(),
        Some(2),
    );
    match probe("ffprobe", Path::new(&url), &InputPolicy::default()) {
        Err(e) => assert!(e.is_permanent(), "{e}"),
        Ok(info) => panic!("a playlist was accepted: {info:?}"),
    }
}
