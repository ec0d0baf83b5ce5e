//! Content protection end to end on the embedded backend: `vodpipe run --drm cbcs|cenc`
//! (H.264 and HEVC rungs) with a key file, and with keys from a SPEKE v2.0 key server (a stand-in that checks the
//! CPIX request as the reference server would read it). Every protected segment decrypts
//! back to the clear run's samples (x264 is deterministic, so a clear run of the same
//! source is the reference); ffmpeg decodes the `cenc` segments with the key; both players
//! play the assets to the end in Chromium with the Clear Key and refuse them without it;
//! the key appears nowhere the pipeline writes; bad settings fail the job with the reason,
//! and a key server that is down is retried, not a verdict.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use base64::Engine as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use support::protected::*;
use support::*;
use vodpipe_media::cenc;

const KID: &str = "0123456789abcdef0123456789abcdef";
const KEY: &str = "00112233445566778899aabbccddeeff";

fn key_bytes(hex_key: &str) -> [u8; 16] {
    let mut k = [0u8; 16];
    hex::decode_to_slice(hex_key, &mut k).unwrap();
    k
}

/// An 8 s 320x180 clip with a tone.
fn clip(dir: &Path) -> PathBuf {
    let src = dir.join("protected clip.mp4");
    make_clip(
        &src,
        "320x180",
        "25",
        8,
        Some(440),
        &["-c:v", "libx264", "-preset", "veryfast"],
    );
    src
}

/// A ladder whose rate caps never bind on the clip: x264's VBV under frame threads is
/// not repeatable, and the round trip compares against a clear run byte for byte.
fn loose_ladder(dir: &Path) -> PathBuf {
    let f = dir.join("ladder.json");
    std::fs::write(
        &f,
        r#"{"rungs": [{"name": "180p", "short_side": 180, "max_kbps": 20000}, {"name": "144p", "short_side": 144, "max_kbps": 20000}]}"#,
    )
    .unwrap();
    f
}

fn key_file(dir: &Path) -> PathBuf {
    let f = dir.join("keys.json");
    std::fs::write(&f, format!(r#"{{"kid": "{KID}", "key": "{KEY}"}}"#)).unwrap();
    f
}

/// Every protected segment decrypts to the clear run's samples; returns how many.
fn assert_round_trips(
    clear: &BTreeMap<String, PathBuf>,
    prot: &BTreeMap<String, PathBuf>,
    key: &[u8; 16],
) -> usize {
    let segments: Vec<&String> = prot.keys().filter(|k| k.ends_with(".m4s")).collect();
    assert_eq!(
        segments.len(),
        clear.keys().filter(|k| k.ends_with(".m4s")).count(),
        "{segments:?}"
    );
    for s in &segments {
        let init = std::fs::read(init_for(prot, s)).unwrap();
        let bytes = std::fs::read(&prot[*s]).unwrap();
        let want = cenc::fragment_samples(&std::fs::read(&clear[*s]).unwrap(), s).unwrap();
        let stored = cenc::fragment_samples(&bytes, s).unwrap();
        assert_ne!(stored, want, "{s} is stored clear");
        let got = cenc::decrypt_samples(&init, &bytes, key, s).unwrap();
        assert_eq!(got, want, "{s} does not decrypt to the clear samples");
    }
    // Thumbnails and subtitles stay clear: byte for byte the clear run's.
    for (k, p) in prot.iter().filter(|(k, _)| k.ends_with(".jpg")) {
        assert_eq!(
            std::fs::read(p).unwrap(),
            std::fs::read(&clear[k]).unwrap(),
            "{k}"
        );
    }
    segments.len()
}

/// Whether `needle` appears in any file under `dir` (the key in hex, base64 or raw).
fn key_appears_under(dir: &Path, key: &[u8; 16]) -> Option<PathBuf> {
    let forms: Vec<Vec<u8>> = vec![
        hex::encode(key).into_bytes(),
        hex::encode_upper(key).into_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(key)
            .trim_end_matches('=')
            .as_bytes()
            .to_vec(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(key)
            .into_bytes(),
        key.to_vec(),
    ];
    files_under(dir).into_iter().find(|p| {
        let bytes = std::fs::read(p).unwrap();
        forms
            .iter()
            .any(|f| bytes.windows(f.len()).any(|w| w == f.as_slice()))
    })
}

#[test]
fn cbcs_and_cenc_round_trip_play_with_the_key_and_are_refused_without_it() {
    let d = tempfile::tempdir().unwrap();
    let src = clip(d.path());
    let keys = key_file(d.path());
    let ladder = loose_ladder(d.path());
    let ladder = ladder.to_str().unwrap();
    let clear_out = d.path().join("clear");
    let r = vodpipe_run(
        &[&src],
        &clear_out,
        &[
            "--chunk-seconds",
            "4",
            "--ladder",
            ladder,
            "--codecs",
            "h264,hevc",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let clear = job_files(&clear_out, &r.jobs[0]);
    assert!(r.jobs[0]["protection"].is_null());

    for scheme in ["cbcs", "cenc"] {
        let out = d.path().join(scheme);
        let r = vodpipe_run(
            &[&src],
            &out,
            &[
                "--chunk-seconds",
                "4",
                "--ladder",
                ladder,
                "--codecs",
                "h264,hevc",
                "--drm",
                scheme,
                "--drm-keys",
                keys.to_str().unwrap(),
                "--drm-systems",
                "clearkey,widevine",
            ],
        );
        assert_eq!(r.code, 0, "{scheme}: {}", r.stderr);
        let job = &r.jobs[0];
        assert_eq!(job["status"], "PUBLISHED", "{job:#}");
        // Status says it is protected, and with which key ID; never with which key.
        let p = &job["protection"];
        assert_eq!(p["scheme"], scheme, "{job:#}");
        assert_eq!(p["video_kid"], KID);
        assert_eq!(p["audio_kid"], KID);
        assert_eq!(p["systems"], serde_json::json!(["clearkey", "widevine"]));
        assert_eq!(job["settings"]["drm"]["from"], "command");
        for rendition in job["renditions"].as_array().unwrap() {
            let protected = rendition["kind"] == "video" || rendition["kind"] == "audio";
            assert_eq!(
                rendition["protection"].is_object(),
                protected,
                "{rendition}"
            );
        }

        let prot = job_files(&out, job);
        let n = assert_round_trips(&clear, &prot, &key_bytes(KEY));
        // Two H.264 and two HEVC rungs of two segments each, and the audio.
        assert!(n >= 10, "{scheme}: {n} segments");
        assert!(prot.keys().any(|k| k.contains("_hevc/")), "{prot:?}");

        // The manifests: a key line per system in every media and I-frame playlist, the
        // session keys in the master, ContentProtection in the MPD.
        let method = if scheme == "cbcs" {
            "SAMPLE-AES,"
        } else {
            "SAMPLE-AES-CTR,"
        };
        let master = std::fs::read_to_string(job["master"].as_str().unwrap()).unwrap();
        assert_eq!(
            master.matches("#EXT-X-SESSION-KEY:METHOD=").count(),
            2,
            "{master}"
        );
        assert!(
            master.contains(&format!("#EXT-X-SESSION-KEY:METHOD={method}")),
            "{master}"
        );
        for (name, path) in prot
            .iter()
            .filter(|(k, _)| k.ends_with(".m3u8") && !k.starts_with("text") && *k != "master.m3u8")
        {
            let pl = std::fs::read_to_string(path).unwrap();
            assert!(
                pl.contains(r#"KEYFORMAT="org.w3.clearkey""#),
                "{name}: {pl}"
            );
            assert!(
                pl.contains(r#"KEYFORMAT="urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed""#),
                "{name}"
            );
            let (key, map) = (pl.find("#EXT-X-KEY"), pl.find("#EXT-X-MAP"));
            assert!(key.is_some() && map.is_some() && key < map, "{name}: {pl}");
        }
        let mpd = std::fs::read_to_string(job["dash"].as_str().unwrap()).unwrap();
        assert!(
            mpd.contains(&format!(
                r#"value="{scheme}" cenc:default_KID="01234567-89ab-cdef-0123-456789abcdef""#
            )),
            "{mpd}"
        );
        assert!(mpd.contains("<cenc:pssh>"), "{mpd}");

        if scheme == "cenc" {
            // ffmpeg's own decryptor, segment by segment: every frame decodes.
            for (name, path) in prot
                .iter()
                .filter(|(k, _)| k.ends_with(".m4s") && k.starts_with('c'))
            {
                let whole = d.path().join("seg.mp4");
                let init = std::fs::read(init_for(&prot, name)).unwrap();
                std::fs::write(&whole, [init, std::fs::read(path).unwrap()].concat()).unwrap();
                let f = Command::new("ffmpeg")
                    .args(["-hide_banner", "-v", "error", "-decryption_key", KEY, "-i"])
                    .arg(&whole)
                    .args(["-f", "framemd5", "-"])
                    .output()
                    .unwrap();
                assert!(
                    f.status.success() && f.stderr.is_empty(),
                    "{name}: {}",
                    String::from_utf8_lossy(&f.stderr)
                );
                let frames = String::from_utf8_lossy(&f.stdout)
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .count();
                assert_eq!(frames, 100, "{name}");
            }
        }

        // The key is nowhere the pipeline wrote: outputs, state database, events.
        assert_eq!(key_appears_under(&out, &key_bytes(KEY)), None, "{scheme}");
        assert!(!r.stderr.contains(KEY), "{}", r.stderr);

        // Both players, with the Clear Key (hls.js licenses it from the check's server),
        // and neither without it.
        let rel = |k: &str| {
            Path::new(job[k].as_str().unwrap())
                .strip_prefix(&out)
                .unwrap()
                .display()
                .to_string()
        };
        let (hls, dash) = (rel("master"), rel("dash"));
        let played = assert_plays_with(&out, &hls, &dash, &["--clearkey", &format!("{KID}:{KEY}")]);
        assert_eq!(played["ok"], true);
        assert!(
            played["licences"].as_u64().unwrap() >= 1,
            "hls.js licensed no key: {played:#}"
        );
        for kind in ["hls", "dash"] {
            assert_eq!(played[kind]["ended"], true, "{kind}: {:#}", played[kind]);
        }
        let refused = assert_plays_with(
            &out,
            &hls,
            &dash,
            &["--expect-refusal", "--stuck-secs", "5"],
        );
        for kind in ["hls", "dash"] {
            assert_ne!(
                refused[kind]["ended"], true,
                "{kind} played without the key"
            );
        }
        let wrong = assert_plays_with(
            &out,
            &hls,
            &dash,
            &[
                "--expect-refusal",
                "--stuck-secs",
                "5",
                "--clearkey",
                &format!("{KID}:{}", "f".repeat(32)),
            ],
        );
        for kind in ["hls", "dash"] {
            assert_ne!(
                wrong[kind]["ended"], true,
                "{kind} played with the wrong key"
            );
        }
    }
}

/// Runs `vodpipe run` on `src` with a settings file beside it.
fn run_with_settings(dir: &Path, name: &str, settings: &str, extra: &[&str]) -> RunResult {
    let src = dir.join(format!("{name}.mp4"));
    make_clip(
        &src,
        "160x90",
        "25",
        2,
        Some(440),
        &["-c:v", "libx264", "-preset", "ultrafast"],
    );
    std::fs::write(dir.join(format!("{name}.mp4.vodpipe.json")), settings).unwrap();
    vodpipe_run(&[&src], &dir.join(format!("{name}-out")), extra)
}

#[test]
fn an_upload_chooses_protection_and_bad_choices_fail_the_job_with_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let keys = key_file(d.path());
    let with_keys = ["--drm-keys", keys.to_str().unwrap()];

    let ok = run_with_settings(d.path(), "ok", r#"{"drm": {"scheme": "cbcs"}}"#, &with_keys);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(ok.jobs[0]["settings"]["drm"]["from"], "settings-file");
    assert_eq!(ok.jobs[0]["protection"]["scheme"], "cbcs");
    assert_eq!(
        ok.jobs[0]["protection"]["systems"],
        serde_json::json!(["clearkey"])
    );

    let cases = [
        (
            "fairplay_cenc",
            r#"{"drm": {"scheme": "cenc", "systems": ["fairplay"]}}"#,
            &with_keys[..],
            "FairPlay takes cbcs",
        ),
        (
            "av1",
            r#"{"codecs": ["h264", "av1"], "drm": {"scheme": "cbcs"}}"#,
            &with_keys[..],
            "av1 rungs cannot be protected yet",
        ),
        (
            "playready_file",
            r#"{"drm": {"scheme": "cbcs", "systems": ["playready"]}}"#,
            &with_keys[..],
            "PlayReady needs",
        ),
        (
            "no_key_source",
            r#"{"drm": {"scheme": "cbcs"}}"#,
            &[][..],
            "there is no key source",
        ),
        (
            "bad_scheme",
            r#"{"drm": {"scheme": "aes-128"}}"#,
            &with_keys[..],
            "is not valid",
        ),
    ];
    for (name, settings, extra, why) in cases {
        let r = run_with_settings(d.path(), name, settings, extra);
        assert_eq!(r.code, 1, "{name}: {}", r.stderr);
        let job = &r.jobs[0];
        assert_eq!(job["status"], "FAILED", "{name}: {job:#}");
        let error = job["error"].as_str().unwrap();
        assert!(error.contains(why), "{name}: {error}");
        // Nothing published.
        assert!(job["master"].is_null(), "{name}");
    }
}

#[test]
fn keys_from_a_speke_key_server_survive_its_outage_and_play_in_the_console() {
    let d = tempfile::tempdir().unwrap();
    let src = clip(d.path());
    // The key server is down for the first two requests: retried, not a verdict.
    let ks = key_server(2);
    let out = d.path().join("speke");
    let r = vodpipe_run(
        &[&src],
        &out,
        &[
            "--chunk-seconds",
            "4",
            "--drm",
            "cbcs",
            "--drm-speke",
            &ks.url,
            "--drm-systems",
            "clearkey,widevine,fairplay",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let job = &r.jobs[0];
    assert_eq!(job["status"], "PUBLISHED", "{job:#}");
    // The two refused requests were two attempts given back as transient and retried.
    assert_eq!(job["failures"], 2, "{job:#}");
    // Every item asked (two chunks, the audio), plus the two refused.
    assert!(ks.requests.load(Ordering::SeqCst) >= 5);

    // What the key server was asked: the asset, two key IDs, the scheme, every system.
    let seen = ks.seen.lock().unwrap().clone();
    let asset = job["settings"]["asset"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let first = roxmltree::Document::parse(&seen[0]).unwrap();
    assert_eq!(
        first.root_element().attribute("contentId"),
        Some(asset.as_str())
    );
    let systems: std::collections::BTreeSet<&str> = first
        .descendants()
        .filter(|n| n.tag_name().name() == "DRMSystem")
        .map(|n| n.attribute("systemId").unwrap())
        .collect();
    assert_eq!(systems.len(), 3, "{systems:?}");
    // Every request names the same key IDs: every chunk encrypts with the same keys.
    assert!(seen.iter().all(|s| s == &seen[0]));

    // The keys the server derived decrypt every segment.
    let kid_hex = job["protection"]["video_kid"].as_str().unwrap();
    let mut kid = [0u8; 16];
    hex::decode_to_slice(kid_hex, &mut kid).unwrap();
    let video_key = derived_key(&asset, &kid);
    let prot = job_files(&out, job);
    let master = std::fs::read_to_string(job["master"].as_str().unwrap()).unwrap();
    assert!(
        master.contains(&format!(r#"URI="skd://{kid_hex}""#)),
        "{master}"
    );
    for (name, path) in prot
        .iter()
        .filter(|(k, _)| k.ends_with(".m4s") && k.starts_with('c'))
    {
        let init = std::fs::read(init_for(&prot, name)).unwrap();
        let samples =
            cenc::decrypt_samples(&init, &std::fs::read(path).unwrap(), &video_key, name).unwrap();
        // Decrypted H.264 samples are NAL units of the right lengths end to end.
        for s in samples {
            let mut at = 0;
            while at < s.len() {
                at += 4 + u32::from_be_bytes(s[at..at + 4].try_into().unwrap()) as usize;
            }
            assert_eq!(at, s.len(), "{name}");
        }
    }
    assert_eq!(key_appears_under(&out, &video_key), None);

    // The console plays it, with its Clear Key licence from the same key server.
    let console = Console::start(
        &["--state", out.to_str().unwrap()],
        &std::collections::HashMap::new(),
    );
    let shots = d.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let report = console_report(&console.url, "protected clip.mp4", true, &shots);
    assert_console_played(&report, 8.0);
    assert!(report["job"]["title"]
        .as_str()
        .unwrap()
        .contains("PUBLISHED"));
}
