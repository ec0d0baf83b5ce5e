//! Frame tables read from MP4/MOV sample tables against ffprobe's packet scan, on real
//! files made here with ffmpeg: whatever layout, the table is either exactly the scan's
//! or declined (and the probe scans). Needs ffmpeg and ffprobe (`make test` installs them);
//! fails loudly without them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use vodpipe_media::moov::{frame_table, read_moov, FrameTable, RangeSource};

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

/// ffprobe's packet scan of stream `index`: sorted, unique presentation times.
fn packet_scan(path: &Path, index: usize) -> Vec<i64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams"])
        .arg(index.to_string())
        .args(["-show_entries", "packet=pts,dts", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe must be installed (make test installs it)");
    assert!(out.status.success());
    let mut pts: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut p = l.split(',');
            let a = p.next().and_then(|s| s.trim().parse().ok());
            let b = p.next().and_then(|s| s.trim().parse().ok());
            a.or(b)
        })
        .collect();
    pts.sort_unstable();
    pts.dedup();
    pts
}

fn table(path: &Path, index: usize) -> (Option<FrameTable>, u64) {
    let src = RangeSource::open(path).unwrap();
    let t = read_moov(&src)
        .unwrap()
        .and_then(|m| frame_table(&m, index, src.size()).unwrap());
    (t, src.bytes_read())
}

struct Case {
    name: &'static str,
    args: Vec<&'static str>,
    video_index: usize,
    /// Whether the sample tables must answer (the common layouts), or may decline.
    must_answer: bool,
}

fn cases() -> Vec<Case> {
    let src = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x90:rate=25:duration=4",
    ];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut a = src.to_vec();
        a.extend_from_slice(extra);
        a
    };
    vec![
        Case {
            name: "bframes.mp4",
            args: with(&["-c:v", "libx264", "-bf", "3", "-g", "25"]),
            video_index: 0,
            must_answer: true,
        },
        Case {
            name: "faststart.mp4",
            args: with(&["-c:v", "libx264", "-movflags", "+faststart"]),
            video_index: 0,
            must_answer: true,
        },
        Case {
            name: "ntsc.mov",
            args: vec![
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=160x90:rate=30000/1001:duration=3",
                "-c:v",
                "libx264",
            ],
            video_index: 0,
            must_answer: true,
        },
        Case {
            name: "vfr.mp4",
            args: with(&[
                "-vf",
                "select='not(eq(mod(n\\,4)\\,1))'",
                "-fps_mode",
                "vfr",
                "-c:v",
                "libx264",
            ]),
            video_index: 0,
            must_answer: true,
        },
        Case {
            name: "audio-first.mp4",
            args: vec![
                "-f",
                "lavfi",
                "-i",
                "sine=duration=4",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=160x90:rate=25:duration=4",
                "-map",
                "0:a",
                "-map",
                "1:v",
                "-c:v",
                "libx264",
                "-c:a",
                "aac",
            ],
            video_index: 1,
            must_answer: true,
        },
        Case {
            name: "hevc.mp4",
            args: with(&[
                "-c:v",
                "libx265",
                "-tag:v",
                "hvc1",
                "-x265-params",
                "log-level=none",
            ]),
            video_index: 0,
            must_answer: true,
        },
        Case {
            name: "mpeg4.mov",
            args: with(&["-c:v", "mpeg4"]),
            video_index: 0,
            must_answer: true,
        },
        Case {
            name: "delayed.mp4",
            args: vec![
                "-itsoffset",
                "1",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=160x90:rate=25:duration=3",
                "-f",
                "lavfi",
                "-i",
                "sine=duration=4",
                "-map",
                "0:v",
                "-map",
                "1:a",
                "-c:v",
                "libx264",
                "-c:a",
                "aac",
            ],
            video_index: 0,
            must_answer: true,
        },
    ]
}

#[test]
fn sample_tables_give_exactly_the_packet_scan_or_decline() {
    let dir = tempfile::tempdir().unwrap();
    for case in cases() {
        let path = dir.path().join(case.name);
        let mut args = case.args.clone();
        let p = path.to_str().unwrap();
        args.push(p);
        ffmpeg(&args);
        let scan = packet_scan(&path, case.video_index);
        let (t, bytes) = table(&path, case.video_index);
        match t {
            Some(t) => {
                assert_eq!(t.pts, scan, "{}: table differs from the scan", case.name);
                assert_eq!(t.declared, scan.len() as u64, "{}", case.name);
                let size = std::fs::metadata(&path).unwrap().len();
                eprintln!("{}: {bytes} of {size} bytes read", case.name);
            }
            None => assert!(!case.must_answer, "{}: sample tables declined", case.name),
        }
    }
}

/// A trimmed copy (an edit list starting inside a GOP) and a cut-short file.
#[test]
fn trimmed_and_cut_files_match_the_scan_or_decline() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.mp4");
    let src = "testsrc2=size=160x90:rate=25:duration=6";
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        src,
        "-c:v",
        "libx264",
        "-g",
        "50",
        "-movflags",
        "+faststart",
        full.to_str().unwrap(),
    ]);
    let trimmed = dir.path().join("trimmed.mp4");
    ffmpeg(&[
        "-ss",
        "1.3",
        "-i",
        full.to_str().unwrap(),
        "-c",
        "copy",
        trimmed.to_str().unwrap(),
    ]);
    if let (Some(t), _) = table(&trimmed, 0) {
        assert_eq!(t.pts, packet_scan(&trimmed, 0), "trimmed copy");
    }
    // Cut short: moov first (faststart), the media data ends early.
    let mut bytes = Vec::new();
    std::fs::File::open(&full)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).unwrap();
    let (t, _) = table(&cut, 0);
    let t = t.expect("a cut faststart file still has its tables");
    assert_eq!(t.declared, 150);
    let scan = packet_scan(&cut, 0);
    assert!(
        t.pts.len() < 150 && t.pts.len().abs_diff(scan.len()) <= 1,
        "readable frames: tables {} scan {}",
        t.pts.len(),
        scan.len()
    );
}

/// Over HTTP the same table comes from a handful of range requests.
#[test]
fn over_http_the_tables_take_a_few_range_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("served.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x90:rate=25:duration=8",
        "-c:v",
        "libx264",
        path.to_str().unwrap(),
    ]);
    let data = std::fs::read(&path).unwrap();
    let (url, _) = support::serve(data.clone(), None);
    let src = RangeSource::open(Path::new(&url)).unwrap();
    let moov = read_moov(&src).unwrap().unwrap();
    let t = frame_table(&moov, 0, src.size()).unwrap().unwrap();
    assert_eq!(t.pts, packet_scan(&path, 0));
    assert!(src.reads() <= 8, "{} reads", src.reads());
    assert!(
        src.bytes_read() < data.len() as u64 / 4,
        "{} of {} bytes",
        src.bytes_read(),
        data.len()
    );
}
