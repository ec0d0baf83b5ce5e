//! Common encryption against references: the H.264 slice headers it keeps clear end where
//! ffmpeg's own parser (`trace_headers`) says they end, every protected sample decrypts
//! back to the clear encode's (by this crate's decryptor, reading only the boxes), and
//! ffmpeg decrypts `cenc` tracks to the same frames as the clear ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use vodpipe_media::cenc::{
    self, avc::AvcParams, boxes, hevc::HevcParams, systems, ContentKey, Protection, Scheme,
};
use vodpipe_media::encode::TrackOutput;
use vodpipe_media::mp4;

const KEY: ContentKey = ContentKey {
    kid: [
        0x10, 0x77, 0xef, 0xec, 0xc0, 0xb2, 0x4d, 0x02, 0xac, 0xe3, 0x3c, 0x1e, 0x52, 0xe2, 0xfb,
        0x4b,
    ],
    key: [
        0x3a, 0x2f, 0x9c, 0x71, 0x05, 0xde, 0x44, 0x8b, 0x91, 0x6c, 0x0e, 0xa7, 0x5b, 0x13, 0xf2,
        0x68,
    ],
};

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg is required: run `make deps` (make test does)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fragmented MP4 as the chunk encoder writes it (one track).
fn fragmented(dir: &Path, name: &str, codec_args: &[&str], input: &[&str]) -> TrackOutput {
    let path = dir.join(format!("{name}.mp4"));
    let mut args: Vec<&str> = input.to_vec();
    args.extend(codec_args);
    args.extend([
        "-f",
        "mp4",
        "-movflags",
        "+frag_keyframe+empty_moov+default_base_moof+skip_trailer",
        "-frag_duration",
        "1000000",
        path.to_str().unwrap(),
    ]);
    ffmpeg(&args);
    let f = mp4::split(&std::fs::read(&path).unwrap(), name).unwrap();
    assert!(
        f.fragments.len() >= 2,
        "{name}: {} fragments",
        f.fragments.len()
    );
    TrackOutput {
        name: name.into(),
        timescale: mp4::timescale(&f.init, name).unwrap(),
        init: f.init,
        segments: f.fragments,
        protection: None,
    }
}

const VIDEO_IN: [&str; 6] = [
    "-f",
    "lavfi",
    "-i",
    "testsrc2=size=320x180:rate=25",
    "-t",
    "4",
];
const AUDIO_IN: [&str; 6] = [
    "-f",
    "lavfi",
    "-i",
    "sine=frequency=440:sample_rate=48000",
    "-t",
    "4",
];

/// The encodes the tests protect: x264 as the ladder uses it (CABAC, B-frames, weighted
/// prediction), a baseline CAVLC one with several slices per frame, x265 as the ladder uses
/// it (wavefront entry points, B-frames, weighted prediction, SAO), x265 with three slice
/// segments per picture, weighted bi-prediction and three references, and AAC.
fn tracks(dir: &Path) -> Vec<TrackOutput> {
    vec![
        fragmented(
            dir,
            "high",
            &[
                "-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-g", "25",
            ],
            &VIDEO_IN,
        ),
        fragmented(
            dir,
            "baseline",
            &[
                "-c:v",
                "libx264",
                "-profile:v",
                "baseline",
                "-x264-params",
                "slices=3:ref=3",
                "-g",
                "25",
            ],
            &VIDEO_IN,
        ),
        fragmented(
            dir,
            "hevc",
            &[
                "-c:v",
                "libx265",
                "-preset",
                "veryfast",
                "-tag:v",
                "hvc1",
                "-x265-params",
                "log-level=error:keyint=25:min-keyint=25:open-gop=0",
                "-g",
                "25",
            ],
            &VIDEO_IN,
        ),
        fragmented(
            dir,
            "hevc_slices",
            &[
                "-c:v",
                "libx265",
                "-preset",
                "medium",
                "-tag:v",
                "hvc1",
                "-x265-params",
                "log-level=error:slices=3:ref=3:weightb=1:keyint=25:min-keyint=25:open-gop=0",
                "-g",
                "25",
            ],
            &VIDEO_IN,
        ),
        fragmented(dir, "aac", &["-c:a", "aac", "-b:a", "96k"], &AUDIO_IN),
    ]
}

/// The slice header walker of a video track.
enum Params {
    Avc(AvcParams),
    Hevc(HevcParams),
}

impl Params {
    fn of(init: &[u8]) -> Params {
        let entry = boxes::sample_entry(init, "test").unwrap();
        let config = |k: &[u8; 4]| {
            entry
                .children
                .iter()
                .find(|(c, _)| c == k)
                .map(|(_, b)| b.clone())
        };
        match &entry.format {
            b"avc1" => Params::Avc(AvcParams::from_avcc(&config(b"avcC").unwrap()).unwrap()),
            b"hvc1" => Params::Hevc(HevcParams::from_hvcc(&config(b"hvcC").unwrap()).unwrap()),
            other => panic!("{other:?}"),
        }
    }
    fn length_size(&self) -> usize {
        match self {
            Params::Avc(p) => p.length_size,
            Params::Hevc(p) => p.length_size,
        }
    }
    fn bits(&self, nal: &[u8]) -> Option<usize> {
        match self {
            Params::Avc(p) => p.slice_header_bits(nal).unwrap(),
            Params::Hevc(p) => p.slice_header_bits(nal).unwrap(),
        }
    }
    fn len(&self, nal: &[u8]) -> Option<usize> {
        match self {
            Params::Avc(p) => p.slice_header_len(nal).unwrap(),
            Params::Hevc(p) => p.slice_header_len(nal).unwrap(),
        }
    }
}

fn nals(sample: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < sample.len() {
        let len = sample[at..at + n]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | b as usize);
        out.push(&sample[at + n..at + n + len]);
        at += n + len;
    }
    out
}

#[test]
fn slice_headers_end_where_ffmpeg_says() {
    let d = tempfile::tempdir().unwrap();
    for t in tracks(d.path()).into_iter().filter(|t| t.name != "aac") {
        let hevc = t.name.starts_with("hevc");
        // ffmpeg's parser: the bit after each slice header's last field.
        let file = d.path().join(format!("{}.mp4", t.name));
        let mut whole = t.init.clone();
        for s in &t.segments {
            whole.extend_from_slice(&s.bytes);
        }
        std::fs::write(&file, &whole).unwrap();
        let trace = Command::new("ffmpeg")
            .args(["-hide_banner", "-i"])
            .arg(&file)
            .args(["-c", "copy", "-bsf:v", "trace_headers", "-f", "null", "-"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&trace.stderr);
        let mut expected = Vec::new();
        let mut last_end: Option<usize> = None;
        let mut in_slice = false;
        for line in text.lines() {
            let Some(rest) = line.split("] ").nth(1) else {
                continue;
            };
            if rest.starts_with("Slice Header") || rest.starts_with("Slice Segment Header") {
                if let Some(e) = last_end.take() {
                    expected.push(e);
                }
                in_slice = true;
                continue;
            }
            let f: Vec<&str> = rest.split_whitespace().collect();
            let is_field = f.len() >= 4 && f[0].parse::<usize>().is_ok() && f[f.len() - 2] == "=";
            if !is_field {
                if in_slice && !rest.starts_with(char::is_numeric) {
                    if let Some(e) = last_end.take() {
                        expected.push(e);
                    }
                    in_slice = false;
                }
                continue;
            }
            // H.264's slice data starts with CABAC alignment bits; HEVC's header ends with
            // its own byte alignment.
            if in_slice && f[1] != "cabac_alignment_one_bit" {
                last_end = Some(f[0].parse::<usize>().unwrap() + f[f.len() - 3].len());
            }
        }
        if let Some(e) = last_end.take() {
            expected.push(e);
        }
        let params = Params::of(&t.init);
        let mut ours = Vec::new();
        for s in &t.segments {
            for sample in cenc::fragment_samples(&s.bytes, "test").unwrap() {
                for nal in nals(&sample, params.length_size()) {
                    if let Some(bits) = params.bits(nal) {
                        ours.push(bits);
                    }
                }
            }
        }
        if hevc {
            // A slice segment header ends on a byte boundary.
            assert!(ours.iter().all(|b| b % 8 == 0), "{}", t.name);
        }
        assert!(ours.len() >= 100, "{}: {} slices", t.name, ours.len());
        assert_eq!(ours, expected, "{}: slice header lengths (bits)", t.name);
    }
}

fn protection(scheme: Scheme) -> Protection {
    Protection {
        scheme,
        key: KEY,
        pssh: vec![
            systems::clearkey_pssh(&[KEY.kid]),
            systems::widevine_pssh(&[KEY.kid], "asset", scheme.fourcc()),
        ],
    }
}

#[test]
fn every_protected_sample_decrypts_to_the_clear_one_in_both_schemes() {
    let d = tempfile::tempdir().unwrap();
    let clear = tracks(d.path());
    for scheme in [Scheme::Cbcs, Scheme::Cenc] {
        for t in &clear {
            let mut p = t.clone();
            vodpipe_media::encode::protect_track(&mut p, &protection(scheme)).unwrap();
            let (s, format, tenc) = boxes::read_protection(&p.init, "test").unwrap();
            assert_eq!(s, scheme);
            assert_eq!(tenc.kid, KEY.kid);
            let entry = boxes::sample_entry_any(&p.init, "test").unwrap();
            let video = t.name != "aac";
            assert_eq!(&entry.format, if video { b"encv" } else { b"enca" });
            let original: &[u8; 4] = if !video {
                b"mp4a"
            } else if t.name.starts_with("hevc") {
                b"hvc1"
            } else {
                b"avc1"
            };
            assert_eq!(&format, original);
            // Both pssh boxes in the moov.
            for sys in [systems::System::ClearKey, systems::System::Widevine] {
                assert!(p.init.windows(16).any(|w| w == sys.id()), "{:?} pssh", sys);
            }
            // The same init whatever the chunk: what the stitch compares.
            let mut again = t.clone();
            vodpipe_media::encode::protect_track(&mut again, &protection(scheme)).unwrap();
            assert_eq!(
                again.init, p.init,
                "{} {scheme:?}: init differs between runs",
                t.name
            );
            let (mut changed, mut total) = (0, 0);
            for (c, e) in t.segments.iter().zip(&p.segments) {
                let want = cenc::fragment_samples(&c.bytes, "clear").unwrap();
                let stored = cenc::fragment_samples(&e.bytes, "protected").unwrap();
                let got = cenc::decrypt_samples(&p.init, &e.bytes, &KEY.key, "protected").unwrap();
                assert_eq!(
                    got, want,
                    "{} {scheme:?}: a sample does not round-trip",
                    t.name
                );
                changed += stored.iter().zip(&want).filter(|(a, b)| a != b).count();
                total += want.len();
                // The wrong key gives something else.
                let wrong =
                    cenc::decrypt_samples(&p.init, &e.bytes, &[0u8; 16], "protected").unwrap();
                assert_ne!(wrong, want);
                assert_eq!(e.samples, c.samples);
                assert_eq!(e.base_decode_time, c.base_decode_time);
                if let (Some(a), Some(b)) = (c.key_frame_end, e.key_frame_end) {
                    assert_eq!(b - a, (e.bytes.len() - c.bytes.len()) as u64);
                }
            }
            // Every sample of every track has protected bytes (a 1 fps-ish tiny frame may not).
            assert!(
                changed * 10 >= total * 9,
                "{} {scheme:?}: {changed}/{total} samples changed",
                t.name
            );
        }
    }
}

#[test]
fn clear_bytes_are_the_nal_and_slice_headers() {
    let d = tempfile::tempdir().unwrap();
    for t in tracks(d.path()).into_iter().filter(|t| t.name != "aac") {
        let params = Params::of(&t.init);
        let mut p = t.clone();
        vodpipe_media::encode::protect_track(&mut p, &protection(Scheme::Cbcs)).unwrap();
        let e = &p.segments[0];
        let aux = boxes::read_senc(&e.bytes, 0, "test").unwrap();
        let samples = cenc::fragment_samples(&t.segments[0].bytes, "clear").unwrap();
        let mut slices = 0;
        for (sample, a) in samples.iter().zip(&aux) {
            // Each protected range starts right after a slice header.
            let mut at = 0;
            let mut starts = Vec::new();
            for nal in nals(sample, params.length_size()) {
                if let Some(h) = params.len(nal) {
                    starts.push(at + params.length_size() + h);
                }
                at += params.length_size() + nal.len();
            }
            let mut pos = 0;
            let mut protected_starts = Vec::new();
            for s in &a.subsamples {
                pos += s.clear as usize;
                if s.protected > 0 {
                    protected_starts.push(pos);
                }
                pos += s.protected as usize;
            }
            assert_eq!(pos, sample.len(), "{}", t.name);
            assert_eq!(protected_starts, starts, "{}", t.name);
            slices += starts.len();
        }
        assert!(slices >= 20, "{}: {slices} slices", t.name);
    }
}

/// ffmpeg's decryptor, segment by segment (init + one fragment, as a player fetches them:
/// ffmpeg 5.1 loses its place in the sample auxiliary information of a file that holds
/// several fragments, with its own encryptor's output as with ours).
#[test]
fn ffmpeg_decrypts_cenc_to_the_clear_frames() {
    let d = tempfile::tempdir().unwrap();
    let md5 = |path: &Path, key: Option<&str>| {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-loglevel", "error"]);
        if let Some(k) = key {
            cmd.args(["-decryption_key", k]);
        }
        let out = cmd
            .arg("-i")
            .arg(path)
            .args(["-f", "framemd5", "-"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit(',').next().unwrap_or("").trim().to_string())
            .collect::<Vec<_>>()
    };
    for t in tracks(d.path()) {
        let mut p = t.clone();
        vodpipe_media::encode::protect_track(&mut p, &protection(Scheme::Cenc)).unwrap();
        let mut frames = 0;
        for (i, (c, e)) in t.segments.iter().zip(&p.segments).enumerate() {
            let write = |name: String, init: &[u8], frag: &[u8]| {
                let path = d.path().join(name);
                std::fs::write(&path, [init, frag].concat()).unwrap();
                path
            };
            let clear = write(format!("{}-{i}-clear.mp4", t.name), &t.init, &c.bytes);
            let prot = write(format!("{}-{i}-cenc.mp4", t.name), &p.init, &e.bytes);
            let want = md5(&clear, None);
            assert!(!want.is_empty());
            assert_eq!(
                md5(&prot, Some(&hex::encode(KEY.key))),
                want,
                "{} segment {i}",
                t.name
            );
            frames += want.len();
        }
        assert!(frames >= 90, "{}: {frames} frames", t.name);
    }
}

#[test]
fn av1_is_refused_with_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let t = fragmented(
        d.path(),
        "av1",
        &["-c:v", "libsvtav1", "-preset", "12", "-g", "25"],
        &VIDEO_IN,
    );
    let err = vodpipe_media::encode::protect_track(&mut t.clone(), &protection(Scheme::Cbcs))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("AV1 rungs cannot be protected yet"),
        "{err}"
    );
    assert!(err.is_permanent());
}
