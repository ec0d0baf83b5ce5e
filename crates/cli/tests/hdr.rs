//! HDR through chunking: an HDR10 source (PQ, with a mastering display and content light
//! levels) and an HLG source publish HDR rungs (HEVC Main 10, and AV1 10-bit with
//! `--codecs h264,av1`) beside a tone-mapped H.264 SDR ladder.
//!
//! Every segment of every HDR rung, decoded on its own behind its init segment, states the
//! source's primaries, transfer and matrix, and (HDR10) its mastering display and light
//! levels twice: in the container (`mdcv`, `clli`) and in the bitstream of the segment's
//! first frame (SEI, metadata OBUs). Every SDR segment states BT.709, and its picture is
//! as bright as a reference tone-map of the source, not as the HDR signal read as SDR. The
//! manifests say each variant's range; both players pick the SDR ladder by default and the
//! PQ rungs when asked to prefer HDR. An upload that asks for `"hdr": "sdr-only"` gets the
//! tone-mapped ladder alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use support::*;

/// The mastering display the HDR10 source is graded on (P3 primaries in x265's G, B, R
/// order, D65, 1000 cd/m² peak, 0.005 black), and its light levels.
const MASTER_DISPLAY: &str =
    "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)";
const MAX_CLL: &str = "1000,400";

/// Writes an HDR source: the SDR test pattern turned into BT.2020 light with `transfer`
/// (PQ or HLG, 100 cd/m² as SDR white), 10-bit HEVC, with the static metadata when
/// `static_metadata`.
fn make_hdr_source(path: &Path, transfer: &str, static_metadata: bool) {
    let zimg_transfer = transfer;
    let to_hdr = format!(
        "format=yuv420p,setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv,\
         zscale=t=linear:npl=100,format=gbrpf32le,\
         zscale=p=2020:t={zimg_transfer}:m=2020_ncl:r=tv:npl=100,format=yuv420p10le"
    );
    let mut params =
        format!("colorprim=bt2020:transfer={transfer}:colormatrix=bt2020nc:log-level=error");
    if static_metadata {
        params.push_str(&format!(
            ":master-display={MASTER_DISPLAY}:max-cll={MAX_CLL}:hdr10=1"
        ));
    }
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=24",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "4",
        "-vf",
        &to_hdr,
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        &params,
        "-color_primaries",
        "bt2020",
        "-color_trc",
        transfer,
        "-colorspace",
        "bt2020nc",
        "-tag:v",
        "hvc1",
        "-c:a",
        "aac",
        "-shortest",
        path.to_str().unwrap(),
    ]);
}

/// The static metadata ffprobe reads in a side data list, as numbers: the mastering
/// display (chromaticities and luminances as decimals) and the light levels.
#[derive(Debug, Default)]
struct Static {
    mastering: Option<Vec<f64>>,
    light: Option<(u64, u64)>,
}

fn ratio(v: &Value) -> f64 {
    let s = v.as_str().unwrap();
    let (a, b) = s.split_once('/').unwrap();
    a.parse::<f64>().unwrap() / b.parse::<f64>().unwrap()
}

fn static_of(list: &Value) -> Static {
    let mut s = Static::default();
    for d in list.as_array().into_iter().flatten() {
        match d["side_data_type"].as_str() {
            Some("Mastering display metadata") => {
                s.mastering = Some(
                    [
                        "red_x",
                        "red_y",
                        "green_x",
                        "green_y",
                        "blue_x",
                        "blue_y",
                        "white_point_x",
                        "white_point_y",
                        "min_luminance",
                        "max_luminance",
                    ]
                    .iter()
                    .map(|k| ratio(&d[*k]))
                    .collect(),
                )
            }
            Some("Content light level metadata") => {
                s.light = Some((
                    d["max_content"].as_u64().unwrap(),
                    d["max_average"].as_u64().unwrap(),
                ))
            }
            _ => {}
        }
    }
    s
}

/// Equal within what each carriage can say: AV1's metadata OBU keeps chromaticities in
/// 1/65536 steps and the black level in 1/16384 cd/m² (the SEI and `mdcv` in 1/50000 and
/// 1/10000), so values agree to a few parts in ten thousand.
fn assert_same_static(got: &Static, want: &Static, what: &str) {
    let (g, w) = (
        got.mastering
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: no mastering display")),
        want.mastering.as_ref().unwrap(),
    );
    for (i, (a, b)) in g.iter().zip(w).enumerate() {
        let tol = if i == 8 { b * 0.01 } else { 1e-4 * b.max(1.0) };
        assert!(
            (a - b).abs() <= tol,
            "{what}: mastering display value {i} is {a}, the source's {b}"
        );
    }
    assert_eq!(got.light, want.light, "{what}: content light levels");
}

/// ffprobe's `entries` of the video stream of `file`.
fn video_stream(file: &Path, entries: &str) -> Value {
    ffprobe_json(&["-select_streams", "v", "-show_entries", entries], file)["streams"][0].clone()
}

/// ffprobe's `entries` of the first video frame of `file` (one frame decoded).
fn first_frame(file: &Path, entries: &str) -> Value {
    ffprobe_json(
        &[
            "-select_streams",
            "v",
            "-read_intervals",
            "%+#1",
            "-show_entries",
            entries,
        ],
        file,
    )["frames"][0]
        .clone()
}

/// The source's own colour and static metadata (stream tags; SEI of the first frame).
fn source_facts(src: &Path) -> (Value, Static) {
    let s = video_stream(src, "stream=color_primaries,color_transfer,color_space");
    let f = first_frame(src, "frame_side_data");
    (s, static_of(&f["side_data_list"]))
}

/// Each segment of a media playlist behind its init segment, as one file each.
fn segments_of(playlist: &Path, scratch: &Path) -> Vec<PathBuf> {
    let dir = playlist.parent().unwrap();
    let text = std::fs::read_to_string(playlist).unwrap();
    let init = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .map(|r| std::fs::read(dir.join(r.split('"').next().unwrap())).unwrap())
        .unwrap();
    let name = playlist.file_stem().unwrap().to_string_lossy().into_owned();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let mut bytes = init.clone();
            bytes.extend(std::fs::read(dir.join(l.trim())).unwrap());
            let p = scratch.join(format!("{name}-{i}.mp4"));
            std::fs::write(&p, bytes).unwrap();
            p
        })
        .collect()
}

/// Mean luma (8-bit) over every frame ffmpeg's `filter` makes of `input`.
fn mean_luma_of(input: &Path, filter: &str) -> f64 {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(input)
        .args([
            "-vf",
            &format!("{filter},signalstats,metadata=print:key=lavfi.signalstats.YAVG"),
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    let v: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split("lavfi.signalstats.YAVG=").nth(1))
        .map(|v| v.trim().parse().unwrap())
        .collect();
    assert!(!v.is_empty(), "no luma from {input:?}: {text}");
    v.iter().sum::<f64>() / v.len() as f64
}

/// The PSNR (average, dB) of `rendition` against `source` made into a reference by
/// `filter`, frame for frame.
fn psnr(rendition: &Path, source: &Path, filter: &str) -> f64 {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(rendition)
        .arg("-i")
        .arg(source)
        .args([
            "-lavfi",
            &format!("[1:v]{filter}[ref];[0:v][ref]psnr"),
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .filter_map(|l| l.split("average:").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .next()
        .unwrap_or_else(|| panic!("no PSNR for {rendition:?}: {text}"))
}

/// The master's variant lines (`#EXT-X-STREAM-INF` and `#EXT-X-I-FRAME-STREAM-INF`).
fn variant_lines(master: &str) -> Vec<&str> {
    master
        .lines()
        .filter(|l| {
            l.starts_with("#EXT-X-STREAM-INF:") || l.starts_with("#EXT-X-I-FRAME-STREAM-INF:")
        })
        .collect()
}

/// Checks one published HDR job: its rungs, every segment, its manifests. `range` is the
/// HLS name (PQ or HLG), `transfer` ffmpeg's.
fn check_hdr_job(job: &Value, src: &Path, range: &str, transfer: &str, scratch: &Path) {
    assert_published_correctly(job, src, scratch);
    let ids = video_ids(job);
    assert_eq!(
        ids,
        [
            "360p",
            "270p",
            "360p_hevc_hdr",
            "270p_hevc_hdr",
            "360p_av1_hdr",
            "270p_av1_hdr"
        ],
        "{job}"
    );
    for r in video_renditions(job) {
        let hdr = r["id"].as_str().unwrap().ends_with("_hdr");
        assert_eq!(r["range"].as_str(), hdr.then_some(range), "{r}");
    }
    let (want_colour, want_static) = source_facts(src);
    assert_eq!(want_colour["color_transfer"], transfer);
    let master_path = PathBuf::from(job["master"].as_str().unwrap());
    let master = std::fs::read_to_string(&master_path).unwrap();
    let (playlists, _) = master_entries(&master_path);
    let mut checked = 0;
    for pl in &playlists {
        let name = pl.file_stem().unwrap().to_string_lossy().into_owned();
        let hdr = name.ends_with("_hdr");
        for seg in segments_of(pl, scratch) {
            let what = format!("{}", seg.display());
            let st = &video_stream(
                &seg,
                "stream=pix_fmt,color_primaries,color_transfer,color_space:stream_side_data",
            );
            let fr = &first_frame(
                &seg,
                "frame=key_frame,color_primaries,color_transfer,color_space:frame_side_data",
            );
            assert_eq!(fr["key_frame"], 1, "{what}: does not start on a key frame");
            if hdr {
                assert_eq!(st["pix_fmt"], "yuv420p10le", "{what}");
                for (k, kf) in [
                    ("color_primaries", "color_primaries"),
                    ("color_transfer", "color_transfer"),
                    ("color_space", "color_space"),
                ] {
                    assert_eq!(st[k], want_colour[k], "{what}: stream {k}");
                    assert_eq!(fr[kf], want_colour[k], "{what}: frame {kf}");
                }
                let container = static_of(&st["side_data_list"]);
                let bitstream = static_of(&fr["side_data_list"]);
                if want_static.mastering.is_some() {
                    assert_same_static(&container, &want_static, &format!("{what} (mdcv, clli)"));
                    assert_same_static(&bitstream, &want_static, &format!("{what} (first frame)"));
                } else {
                    assert!(
                        container.mastering.is_none() && bitstream.mastering.is_none(),
                        "{what}: static metadata the source does not have"
                    );
                }
            } else {
                assert_eq!(st["pix_fmt"], "yuv420p", "{what}");
                for k in ["color_primaries", "color_transfer", "color_space"] {
                    assert_eq!(st[k], "bt709", "{what}: stream {k}");
                    assert_eq!(fr[k], "bt709", "{what}: frame {k}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} segments checked");

    // Manifests: every variant and I-frame stream says its range; SDR variants first.
    let lines = variant_lines(&master);
    assert_eq!(lines.len(), 12, "{master}");
    for l in &lines {
        let want = if l.contains("avc1.") { "SDR" } else { range };
        assert!(l.contains(&format!("VIDEO-RANGE={want}")), "{l}");
    }
    assert!(lines[0].contains("VIDEO-RANGE=SDR"), "{master}");
    let tc = if range == "PQ" { "16" } else { "18" };
    assert!(
        lines.iter().any(|l| l.contains("CODECS=\"hvc1.2.4.")),
        "HEVC HDR rungs are Main 10 (hvc1.2.4): {master}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("av01.0.") && l.contains(&format!("M.10.0.111.09.{tc}.09.0"))),
        "AV1 HDR rungs spell out their colour in CODECS: {master}"
    );
    let mpd = std::fs::read_to_string(job["dash"].as_str().unwrap()).unwrap();
    let sets: Vec<&str> = mpd
        .split("<AdaptationSet ")
        .skip(1)
        .filter(|s| s.contains(r#"contentType="video""#))
        .collect();
    assert_eq!(sets.len(), 3, "{mpd}");
    for set in sets {
        let hdr = !set.contains("codecs=\"avc1.");
        let (kind, value) = if hdr {
            ("Essential", tc)
        } else {
            ("Supplemental", "1")
        };
        assert!(
            set.contains(&format!(
                r#"<{kind}Property schemeIdUri="urn:mpeg:mpegB:cicp:TransferCharacteristics" value="{value}"/>"#
            )),
            "{set}"
        );
        let (p, m) = if hdr { ("9", "9") } else { ("1", "1") };
        assert!(
            set.contains(&format!(r#"cicp:ColourPrimaries" value="{p}""#)),
            "{set}"
        );
        assert!(
            set.contains(&format!(r#"cicp:MatrixCoefficients" value="{m}""#)),
            "{set}"
        );
    }

    // The SDR picture is tone-mapped: close to a reference tone-map of the source at the
    // same size, picture for picture, and far from the HDR signal read as if it were SDR.
    let sdr = concat_rendition(&playlists[0], &scratch.join("sdr.mp4"));
    let reference = format!(
        "scale=640:360,zscale=tin={transfer}:pin=2020:min=2020_ncl:rin=limited:t=linear:npl=100,\
         format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=mobius:desat=0,\
         zscale=t=bt709:m=bt709:r=tv,format=yuv420p"
    );
    let to_reference = psnr(&sdr, src, &reference);
    let to_untouched = psnr(&sdr, src, "scale=640:360,format=yuv420p");
    assert!(
        to_reference > 35.0 && to_untouched < to_reference - 10.0,
        "SDR rung against a reference tone-map: {to_reference:.1} dB; against the HDR signal read as SDR: {to_untouched:.1} dB"
    );
    let got = mean_luma_of(&sdr, "null");
    let want = mean_luma_of(src, &reference);
    assert!(
        (got - want).abs() < 3.0,
        "SDR rung's mean luma {got:.1}, a reference tone-map's {want:.1}"
    );
    // The poster is from the tone-mapped picture too.
    let p = mean_luma(Path::new(job["poster"].as_str().unwrap()));
    assert!(
        (p - got).abs() < 15.0,
        "poster luma {p:.1}, SDR rung {got:.1}"
    );
}

#[test]
fn hdr10_and_hlg_keep_their_signalling_in_every_segment_beside_a_tone_mapped_sdr_ladder() {
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("pq.mp4");
    let hlg = dir.path().join("hlg.mp4");
    let sdr_only = dir.path().join("sdr-only.mp4");
    make_hdr_source(&pq, "smpte2084", true);
    make_hdr_source(&hlg, "arib-std-b67", false);
    std::fs::copy(&pq, &sdr_only).unwrap();
    std::fs::write(
        dir.path().join("sdr-only.mp4.vodpipe.json"),
        r#"{"hdr": "sdr-only"}"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let r = vodpipe_run(
        &[&pq, &hlg, &sdr_only],
        &out,
        &[
            "--codecs",
            "h264,av1",
            "--segment-seconds",
            "1",
            "--chunk-seconds",
            "2",
        ],
    );
    assert_eq!(r.code, 0, "{}\n{:?}", r.stderr, r.jobs);
    let job = |name: &str| {
        r.jobs
            .iter()
            .find(|j| j["source"].as_str().unwrap_or_default().ends_with(name))
            .unwrap_or_else(|| panic!("no job for {name}: {:?}", r.jobs))
            .clone()
    };
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    check_hdr_job(&job("/pq.mp4"), &pq, "PQ", "smpte2084", &scratch);
    check_hdr_job(&job("/hlg.mp4"), &hlg, "HLG", "arib-std-b67", &scratch);

    // sdr-only: the tone-mapped ladder alone, in the codecs asked for, and manifests as an
    // SDR source's.
    let s = job("/sdr-only.mp4");
    assert_published_correctly(&s, &sdr_only, &scratch);
    assert_eq!(
        video_ids(&s),
        ["360p", "270p", "360p_av1", "270p_av1"],
        "{s}"
    );
    let master = std::fs::read_to_string(s["master"].as_str().unwrap()).unwrap();
    assert!(!master.contains("VIDEO-RANGE"), "{master}");
    let (playlists, _) = master_entries(Path::new(s["master"].as_str().unwrap()));
    for pl in &playlists {
        let seg = &segments_of(pl, &scratch)[0];
        let st = video_stream(seg, "stream=pix_fmt,color_transfer");
        assert_eq!(st["color_transfer"], "bt709", "{pl:?}");
        assert_eq!(st["pix_fmt"], "yuv420p", "{pl:?}");
    }

    // Both players pick the SDR ladder on an SDR screen, and the PQ rungs when asked to
    // prefer HDR (Chromium decodes AV1 10-bit; it has no HEVC on Linux).
    let root = out.as_path();
    let rel = |p: &str| {
        Path::new(p)
            .strip_prefix(root)
            .unwrap()
            .display()
            .to_string()
    };
    let pq_job = job("/pq.mp4");
    let (hls, dash) = (
        rel(pq_job["master"].as_str().unwrap()),
        rel(pq_job["dash"].as_str().unwrap()),
    );
    let played = |report: &Value, player: &str| -> (String, String) {
        let s = &report[player]["player_stats"];
        let codecs = s["codecs"]
            .as_str()
            .or_else(|| s["currentCodecs"].as_str())
            .unwrap_or_default()
            .to_string();
        (codecs, s["range"].as_str().unwrap_or_default().to_string())
    };
    let report = assert_plays(root, &hls, &dash);
    for player in ["hls", "dash"] {
        let (codecs, range) = played(&report, player);
        assert!(
            codecs.starts_with("avc1."),
            "{player} played {codecs}: {report}"
        );
        assert_eq!(range, "SDR", "{player}: {report}");
        let listed = report[player]["variants_listed"].as_array().unwrap();
        assert!(
            listed.iter().any(|v| v["range"] == "PQ"),
            "{player} lists no PQ variant: {report}"
        );
    }
    let report = assert_plays_with(root, &hls, &dash, &["--prefer-range", "PQ"]);
    for player in ["hls", "dash"] {
        let (codecs, range) = played(&report, player);
        assert!(
            codecs.starts_with("av01."),
            "{player} played {codecs}: {report}"
        );
        assert_eq!(range, "PQ", "{player}: {report}");
    }
}
