//! The functions as `sam build` packages them (`make sam-build`, which `make test` runs):
//! arm64 binaries, and the ingest probe from the ffprobe layer, a static arm64 build run
//! here under qemu-aarch64-static. The layer's ffprobe reads sources the way it does in
//! Lambda, over plain HTTP from the function's loopback server (a hostname, `localhost`,
//! so name resolution in the static binary is exercised too), and must see exactly what
//! the host's ffprobe sees in the same files. A probe that cannot run leaves the job to be
//! retried instead of failing it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vodpipe_testkit::emulator;

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use vodpipe_aws::s3::SourceAccess;
use vodpipe_control::job::JobStatus;
use vodpipe_control::ports::{Cacheability, JobStore, ObjectStore, Tier};
use vodpipe_functions::env::Shared;
use vodpipe_media::policy::InputPolicy;

fn built() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.aws-sam/build")
}

/// A command that runs the layer's ffprobe: the binary itself on arm64, through QEMU
/// elsewhere.
fn layer_ffprobe(dir: &Path) -> String {
    let bin = built().join("ProbeLayer/bin/ffprobe");
    assert!(
        bin.is_file(),
        "{} is missing: run `make sam-build` (`make test` does)",
        bin.display()
    );
    if std::env::consts::ARCH == "aarch64" {
        return bin.display().to_string();
    }
    let qemu = Command::new("sh")
        .args(["-c", "command -v qemu-aarch64-static"])
        .output()
        .unwrap();
    assert!(
        qemu.status.success(),
        "qemu-aarch64-static is required: `make test` installs it (make layer-deps)"
    );
    let wrapper = dir.join("layer-ffprobe");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} {} \"$@\"\n",
            String::from_utf8(qemu.stdout).unwrap().trim(),
            bin.display()
        ),
    )
    .unwrap();
    assert!(Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .unwrap()
        .success());
    wrapper.display().to_string()
}

fn ffmpeg(args: &[&str], out: &Path) {
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(out)
        .status()
        .expect("ffmpeg is required: run `make deps`")
        .success();
    assert!(ok, "making {}", out.display());
}

/// Sources whose facts are easy to get wrong: interlaced MPEG-2 in a transport stream,
/// 10-bit HEVC in Matroska, and an MP4 with its index at the end (the probe must seek).
fn sources(dir: &Path) -> Vec<PathBuf> {
    let ts = dir.join("interlaced.ts");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=sample_rate=48000",
            "-t",
            "2",
            "-vf",
            "setfield=tff",
            "-flags",
            "+ilme+ildct",
            "-c:v",
            "mpeg2video",
            "-c:a",
            "mp2",
        ],
        &ts,
    );
    let mkv = dir.join("hevc10.mkv");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=24",
            "-t",
            "2",
            "-pix_fmt",
            "yuv420p10le",
            "-c:v",
            "libx265",
            // HDR10: the static metadata is in the first frame's SEI only (the muxer
            // writes the colour, not the mastering display), so the probe decodes a frame.
            "-x265-params",
            "log-level=error:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc:\
             master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50):\
             max-cll=1000,400:hdr10=1",
            "-color_primaries",
            "bt2020",
            "-color_trc",
            "smpte2084",
            "-colorspace",
            "bt2020nc",
        ],
        &mkv,
    );
    let mp4 = dir.join("moov-at-end.mp4");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=30000/1001",
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-t",
            "3",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
        ],
        &mp4,
    );
    vec![ts, mkv, mp4]
}

fn deployment() -> vodpipe_aws::Aws {
    emulator::deploy(&emulator::unique_name("layer"))
}

#[test]
fn the_layer_probe_sees_what_the_host_ffprobe_sees_over_localhost() {
    let dir = tempfile::tempdir().unwrap();
    let probe_cmd = layer_ffprobe(dir.path());
    let aws = deployment();
    let store = vodpipe_aws::s3::S3Objects::new(
        aws.bridge.clone(),
        &aws.bridge.sdk_config(),
        &aws.settings.output_bucket,
    )
    .with_source_access(SourceAccess::Loopback);
    let policy = InputPolicy::default();
    for src in sources(dir.path()) {
        let key = format!("in/{}", src.file_name().unwrap().to_string_lossy());
        aws.ingest
            .put(&key, &std::fs::read(&src).unwrap(), Cacheability::Immutable)
            .unwrap();
        let url = store
            .open_source(
                &format!("s3://{}/{key}", aws.settings.ingest_bucket),
                None,
                Duration::from_secs(60),
            )
            .unwrap();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let by_name = url.replace("127.0.0.1", "localhost");
        let host = vodpipe_media::probe::probe("ffprobe", &src, &policy).unwrap();
        let layer = vodpipe_media::probe::probe(&probe_cmd, Path::new(&by_name), &policy)
            .unwrap_or_else(|e| panic!("the layer's ffprobe on {key}: {e}"));
        let mut host = serde_json::to_value(&host).unwrap();
        let layer = serde_json::to_value(&layer).unwrap();
        // A URL's size comes from the object's metadata, not from the probe.
        host["size_bytes"] = json!(0);
        assert_eq!(layer, host, "{key}");
        assert!(
            !layer["video"]["frame_pts"].as_array().unwrap().is_empty(),
            "{key}: no frame table"
        );
        if key.ends_with("hevc10.mkv") {
            let c = &layer["video"]["colour"];
            assert_eq!(c["transfer"], "smpte2084", "{key}: {c}");
            assert_eq!(c["mastering"]["max_luminance"], 10_000_000, "{key}: {c}");
            assert_eq!(c["light"]["max_cll"], 1000, "{key}: {c}");
        }
    }
}

#[test]
fn the_ingest_function_probes_with_the_layer_and_retries_a_probe_that_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let probe_cmd = layer_ffprobe(dir.path());
    let aws = deployment();
    for (k, v) in aws.settings.env() {
        std::env::set_var(k, v);
    }
    std::env::set_var("VODPIPE_SOURCE_ACCESS", "loopback");
    std::env::set_var("VODPIPE_CHUNK_SECONDS", "4");
    let src = sources(dir.path()).pop().unwrap();
    let key = "uploads/probe me.mp4";
    aws.ingest
        .put(key, &std::fs::read(&src).unwrap(), Cacheability::Immutable)
        .unwrap();
    let event = json!({"Records": [{
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": aws.settings.ingest_bucket}, "object": {"key": "uploads/probe+me.mp4"}}
    }]});
    let with_probe = |ffprobe: &str| -> Arc<Shared> {
        std::env::set_var("VODPIPE_FFPROBE", ffprobe);
        Shared::from_env().unwrap()
    };

    // No probe at all (a layer missing from the function): the record fails, so Lambda
    // retries the event, and the job is left QUEUED for that retry, not FAILED.
    let broken = with_probe("/opt/bin/no-such-ffprobe");
    let report = vodpipe_functions::ingest::handle(&broken, &event);
    let first = serde_json::to_value(&report).unwrap();
    assert_eq!(first["records"][0]["outcome"], "failed", "{first:#}");
    assert!(
        first["records"][0]["error"]
            .as_str()
            .unwrap()
            .contains("cannot run /opt/bin/no-such-ffprobe"),
        "{first:#}"
    );
    let uri = format!("s3://{}/{key}", aws.settings.ingest_bucket);
    let jobs = aws.state.jobs_by_source(&uri).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status, JobStatus::Queued, "{:?}", jobs[0]);

    // The retry, with the layer's probe: the job is planned and queued.
    let fixed = with_probe(&probe_cmd);
    let second = serde_json::to_value(vodpipe_functions::ingest::handle(&fixed, &event)).unwrap();
    assert_eq!(second["records"][0]["outcome"], "job", "{second:#}");
    assert_eq!(second["records"][0]["status"], "ENCODING", "{second:#}");
    assert_eq!(second["records"][0]["job_id"], jobs[0].id.as_str());
    let job = aws.state.job(&jobs[0].id).unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Encoding);
    assert_eq!(job.tier, Tier::Standard);
    assert!(job.total >= 2, "a video chunk and the audio track: {job:?}");
}

#[test]
fn sam_build_packages_arm64_functions_and_attaches_the_layer() {
    for f in ["IngestFunction", "StitchFunction", "FleetFunction"] {
        let path = built().join(f).join("bootstrap");
        let head = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run `make sam-build`)", path.display()));
        assert_eq!(&head[..4], b"\x7fELF", "{f}");
        // e_machine at byte 18, little-endian: 183 is AArch64.
        assert_eq!(
            u16::from_le_bytes([head[18], head[19]]),
            183,
            "{f} is not arm64"
        );
    }
    let template = std::fs::read_to_string(built().join("template.yaml")).unwrap();
    let doc: serde_json::Value = yaml_to_json(&template);
    for f in ["IngestFunction", "FleetFunction"] {
        assert_eq!(
            doc["Resources"][f]["Properties"]["Layers"],
            json!([{"Ref": "ProbeLayer"}]),
            "{f}"
        );
    }
    // The layer is packaged from what the build wrote: its own directory, or (a build
    // `sam` found cached) the cache entry it copied from.
    let content = doc["Resources"]["ProbeLayer"]["Properties"]["ContentUri"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        content == "ProbeLayer" || content.starts_with("../cache/"),
        "{content}"
    );
    assert!(
        built().join(&content).join("bin/ffprobe").is_file(),
        "no bin/ffprobe under {content}"
    );
}

/// The built template is YAML with short-form tags; only plain maps and `!Ref` matter here.
fn yaml_to_json(text: &str) -> serde_json::Value {
    fn conv(y: &yaml_rust2::Yaml) -> serde_json::Value {
        use yaml_rust2::Yaml;
        match y {
            Yaml::Hash(h) => serde_json::Value::Object(
                h.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_string(), conv(v))))
                    .collect(),
            ),
            Yaml::Array(a) => serde_json::Value::Array(a.iter().map(conv).collect()),
            Yaml::String(s) => json!(s),
            Yaml::Integer(i) => json!(i),
            Yaml::Boolean(b) => json!(b),
            _ => serde_json::Value::Null,
        }
    }
    conv(&yaml_rust2::YamlLoader::load_from_str(text).unwrap()[0])
}
