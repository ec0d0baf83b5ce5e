//! The simulator against reality: a real embedded batch (several clips, two workers) and
//! the simulator's prediction of the same batch, with the encoder's speed measured on this
//! machine in the same run; and `vodpipe simulate` at the design target.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::time::Instant;
use support::*;
use vodpipe_sim::engine::{Overheads, Params};
use vodpipe_sim::mix::{Mix, TierShares, UploadClass};

/// Clip durations of the batch, seconds (640x360, 25 fps, with audio).
const CLIPS: [f64; 4] = [30.0, 22.0, 34.0, 26.0];

#[test]
fn the_simulator_predicts_an_embedded_batch_within_a_quarter() {
    let d = tempfile::tempdir().unwrap();
    let clips: Vec<PathBuf> = CLIPS
        .iter()
        .enumerate()
        .map(|(i, secs)| {
            let p = d.path().join(format!("clip{i}.mp4"));
            ffmpeg(&[
                "-f",
                "lavfi",
                "-i",
                &format!("testsrc2=size=640x360:rate=25:duration={secs}"),
                "-f",
                "lavfi",
                "-i",
                &format!("sine=frequency=440:duration={secs}"),
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-c:a",
                "aac",
                p.to_str().unwrap(),
            ]);
            p
        })
        .collect();
    // The encoder's speed on this machine: plain ffmpeg making the same two rungs
    // (360p and 270p, what the default ladder gives a 360p source) from the first clip,
    // the fastest of three runs (a one-off stall elsewhere on the machine must not make
    // the prediction slow).
    let plain = (0..3)
        .map(|_| {
            let started = Instant::now();
            ffmpeg(&[
                "-i",
                clips[0].to_str().unwrap(),
                "-filter_complex",
                "[0:v]split=2[a][b];[a]scale=640:360[v0];[b]scale=480:270[v1]",
                "-map",
                "[v0]",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "21",
                "-maxrate",
                "730k",
                "-bufsize",
                "1460k",
                "-f",
                "mp4",
                "-y",
                d.path().join("p0.mp4").to_str().unwrap(),
                "-map",
                "[v1]",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "21",
                "-maxrate",
                "400k",
                "-bufsize",
                "800k",
                "-f",
                "mp4",
                "-y",
                d.path().join("p1.mp4").to_str().unwrap(),
            ]);
            started.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    let pixels = CLIPS[0] * 25.0 * (640.0 * 360.0 + 480.0 * 270.0);
    let speed = pixels / (plain * cores);

    // The real batch.
    let started = Instant::now();
    let refs: Vec<&std::path::Path> = clips.iter().map(|p| p.as_path()).collect();
    let r = vodpipe_run(&refs, &d.path().join("out"), &["--workers", "2"]);
    let measured = started.elapsed().as_secs_f64();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.jobs.len(), CLIPS.len());

    // The same batch in the simulator: two workers sharing this machine's cores.
    let mut p = Params::new(0.0, 0.0);
    p.embedded_workers = Some(2);
    p.worker.vcpu = cores;
    p.pixels_per_vcpu_second = speed;
    // Measured on the development machine: a probe, one item's process start, seek,
    // segment parsing and SQLite commit, a stitch.
    p.overheads = Overheads {
        ingest_secs: 0.3,
        item_secs: 0.4,
        stitch_secs: 0.1,
    };
    let mix = Mix {
        classes: vec![UploadClass {
            name: "clip".into(),
            weight: 1.0,
            min_secs: 1.0,
            max_secs: 1.0,
            width: 640,
            height: 360,
            fps: 25.0,
            audio_tracks: 1,
            tiers: TierShares {
                premium: 0.0,
                standard: 1.0,
                bulk: 0.0,
            },
        }],
    };
    let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(1);
    p.batch = Some(
        CLIPS
            .iter()
            .map(|secs| {
                let mut u = mix.draw(&mut rng, &p.ladder);
                u.duration_secs = *secs;
                u
            })
            .collect(),
    );
    let predicted = vodpipe_sim::simulate(p).makespan_secs;
    let error = (predicted - measured) / measured;
    eprintln!(
        "plain ffmpeg {plain:.2} s for {} s ({speed:.3e} px/vCPU-s); batch measured {measured:.2} s, predicted {predicted:.2} s ({:+.0} %)",
        CLIPS[0],
        error * 100.0
    );
    assert!(
        error.abs() <= 0.25,
        "predicted {predicted:.2} s, measured {measured:.2} s ({:+.0} %)",
        error * 100.0
    );
}
