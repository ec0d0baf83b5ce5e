//! Image overlays: a PNG drawn over every rung in the chunk encode, at the same relative
//! place in each, only inside its time window (which crosses chunk joins here), the rest
//! of the picture untouched. From the command line (`--overlay`) and from a settings file
//! naming a deployment image (`_vodpipe/overlays/<name>.png` beside the watched folder's
//! profiles); an image that is not there, or not a PNG, fails the job with the reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::overlaid::{assert_overlaid, magenta_logo};
use support::*;

#[test]
fn an_overlay_is_in_every_rung_at_its_place_and_only_in_its_window() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("film.mp4");
    make_clip(&src, "640x360", "25", 6, Some(440), FAST_H264);
    let logo = d.path().join("logo.png");
    magenta_logo(&logo);
    let out = d.path().join("out");
    let spec = format!(
        "{},position=top-right,width=0.2,margin=0.05,between=1.5-4.5",
        logo.display()
    );
    let r = vodpipe_run(
        &[&src],
        &out,
        &[
            "--overlay",
            &spec,
            "--segment-seconds",
            "1",
            "--chunk-seconds",
            "2",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let job = &r.jobs[0];
    assert_eq!(job["settings"]["overlay"]["from"], "command", "{job}");
    // The job's record keeps the image's fingerprint, not its bytes (they are in the plan).
    let kept = &job["settings"]["ladder_config"]["overlay"];
    assert!(kept["png"].is_null(), "{kept}");
    assert_eq!(kept["sha256"].as_str().unwrap().len(), 64, "{kept}");
    assert_eq!(video_ids(job), ["360p", "270p"]);
    // 3 s of 25 fps in each of two rungs.
    let seen = assert_overlaid(job, &src, 0.2, 0.05, (1.5, 4.5), d.path());
    assert_eq!(seen, 2 * 75, "frames with the logo");
    assert_published_correctly(job, &src, d.path());

    // A settings file naming a deployment image beside the profiles, and one naming an
    // image that is not there, and a file that is not a PNG.
    let profiles = d.path().join("_vodpipe/profiles");
    let overlays = d.path().join("_vodpipe/overlays");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::create_dir_all(&overlays).unwrap();
    std::fs::copy(&logo, overlays.join("brand.png")).unwrap();
    std::fs::write(overlays.join("fake.png"), b"GIF89a not a png").unwrap();
    let mut inputs = Vec::new();
    for (name, settings) in [
        (
            "named",
            r#"{"overlay": {"image": "brand", "width": 0.2, "margin": 0.05}}"#,
        ),
        ("missing", r#"{"overlay": {"image": "nobody"}}"#),
        ("fake", r#"{"overlay": {"image": "fake"}}"#),
    ] {
        let p = d.path().join(format!("{name}.mp4"));
        std::fs::copy(&src, &p).unwrap();
        std::fs::write(d.path().join(format!("{name}.mp4.vodpipe.json")), settings).unwrap();
        inputs.push(p);
    }
    let out2 = d.path().join("out2");
    let refs: Vec<&std::path::Path> = inputs.iter().map(|p| p.as_path()).collect();
    let r = vodpipe_run(
        &refs,
        &out2,
        &[
            "--profiles",
            profiles.to_str().unwrap(),
            "--segment-seconds",
            "2",
        ],
    );
    let job = |n: &str| {
        r.jobs
            .iter()
            .find(|j| {
                j["source"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("/{n}.mp4"))
            })
            .unwrap()
    };
    let named = job("named");
    assert_eq!(named["settings"]["overlay"]["value"], "brand", "{named}");
    assert_eq!(
        named["settings"]["overlay"]["from"], "settings-file",
        "{named}"
    );
    let seen = assert_overlaid(named, &inputs[0], 0.2, 0.05, (0.0, 1e9), d.path());
    assert_eq!(seen, 2 * 150);
    let why = job("missing")["error"].as_str().unwrap().to_string();
    assert!(
        why.contains("the overlay \"nobody\" does not exist (_vodpipe/overlays/nobody.png)"),
        "{why}"
    );
    let why = job("fake")["error"].as_str().unwrap().to_string();
    assert!(why.contains("the image is not a PNG"), "{why}");

    // An HDR source keeps HDR rungs by default, which an 8-bit overlay cannot be drawn
    // on: refused with the way out.
    let hdr = d.path().join("hdr.mp4");
    make_clip(
        &hdr,
        "320x180",
        "25",
        1,
        None,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-color_primaries",
            "bt2020",
            "-color_trc",
            "smpte2084",
            "-colorspace",
            "bt2020nc",
        ],
    );
    let r = vodpipe_run(&[&hdr], &d.path().join("out3"), &["--overlay", &spec]);
    assert_ne!(r.code, 0);
    let why = r.jobs[0]["error"].as_str().unwrap();
    assert!(
        why.contains("an overlay cannot be drawn on HDR rungs yet"),
        "{why}"
    );
}
