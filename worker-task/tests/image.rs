//! The worker image, built the way `make worker-image` builds it (mmdebstrap + buildah, no
//! Docker) but for this machine's architecture, runs the real worker against the emulator:
//! a job queued on moto is encoded and published by the worker inside the image, with the
//! image's own ffmpeg (the container sees nothing of the host's file system).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vodpipe_testkit::emulator;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use vodpipe_control::job::JobStatus;
use vodpipe_control::ports::{JobStore, ObjectStore};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn buildah(root: &Path) -> Command {
    let mut c = Command::new("buildah");
    c.args(["--storage-driver", "vfs", "--root"])
        .arg(root.join("root"))
        .arg("--runroot")
        .arg(root.join("run"));
    c
}

fn host_arch() -> String {
    let out = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_worker_publishes_a_job_from_inside_its_image() {
    for tool in ["buildah", "mmdebstrap"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success(),
            "{tool} is required: `make test` installs it (make image-deps)"
        );
    }
    emulator::start();
    let d = std::env::temp_dir().join(emulator::unique_name("image"));
    std::fs::create_dir_all(&d).unwrap();
    let storage = workspace().join("target/buildah");

    // The image, with this build's worker binary (stripped: the debug build carries
    // hundreds of MB of debug info).
    let bin = d.join("worker-task");
    std::fs::copy(env!("CARGO_BIN_EXE_worker-task"), &bin).unwrap();
    assert!(Command::new("strip").arg(&bin).status().unwrap().success());
    let name = format!("localhost/vodpipe-worker:test-{}", std::process::id());
    let built = Command::new("bash")
        .arg(workspace().join("scripts/worker-image.sh"))
        .args(["--arch", &host_arch(), "--binary"])
        .arg(&bin)
        .args(["--name", &name])
        .env("VODPIPE_BUILDAH_ROOT", &storage)
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&built.stderr).into_owned();
    assert!(built.status.success(), "image build failed:\n{log}");
    eprintln!(
        "{}",
        log.lines()
            .filter(|l| l.starts_with("[worker-image]"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // A job on the emulator, probed and queued on the host.
    let src = d.join("clip.mp4");
    assert!(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", "testsrc2=size=640x360:rate=25", "-f", "lavfi"])
        .args(["-i", "sine=frequency=440:sample_rate=48000", "-t", "6"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
        .arg(&src)
        .status()
        .expect("ffmpeg is required: run `make deps`")
        .success());
    let aws = emulator::deploy(&emulator::unique_name("img"));
    let settings = aws.settings.clone();
    emulator::queued_job(&aws, &src, "image-job", 4.0, &d.join("scratch"));

    // The worker in the image, on the host's network (the emulator is on 127.0.0.1), with
    // a scratch volume its user owns, as Fargate mounts one.
    let ctr = String::from_utf8(
        buildah(&storage)
            .args(["from", "--quiet", &name])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    assert!(!ctr.is_empty(), "buildah from {name} failed");
    let scratch = d.join("volume");
    std::fs::create_dir_all(&scratch).unwrap();
    assert!(Command::new("chown")
        .args(["10001"])
        .arg(&scratch)
        .status()
        .unwrap()
        .success());
    let mut run = buildah(&storage);
    run.args([
        "run",
        "--isolation",
        "chroot",
        "--network",
        "host",
        "--volume",
    ])
    .arg(format!("{}:/tmp/vodpipe", scratch.display()));
    let mut env = settings.env();
    for k in [
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
    ] {
        env.push((k.into(), std::env::var(k).unwrap()));
    }
    env.extend(
        [
            ("VODPIPE_IDLE_EXIT_SECS", "3"),
            ("VODPIPE_WORKER_STITCHES", "true"),
            ("VODPIPE_LOG", "warn"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    for (k, v) in &env {
        run.arg("--env").arg(format!("{k}={v}"));
    }
    let out = run
        .arg(&ctr)
        .args(["--", "/usr/local/bin/worker-task"])
        .output()
        .unwrap();
    let _ = buildah(&storage).args(["rm", &ctr]).output();
    let _ = buildah(&storage).args(["rmi", &name]).output();
    assert!(
        out.status.success(),
        "the worker in the image failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let job = aws.state.job("image-job").unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Published, "{job:?}");
    assert_eq!(job.done, job.total);
    assert!(aws.objects.get(job.master_key.as_deref().unwrap()).is_ok());
    let _ = std::fs::remove_dir_all(&d);
}
