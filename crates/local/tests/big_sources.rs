//! Sources without a frame index (MKV, MPEG-TS) on the embedded backend: ingest reads
//! their header only and queues one item, the index; a worker scans the packets, plans
//! the chunks, makes and queues the job's other items, and the job publishes frame-exact.
//! The index item is safe to retry: a retry after a crash half-way neither loses nor
//! duplicates items, and the job is not finished while the index item is undone. A probe
//! that runs out of time leaves the job to be retried. Needs ffmpeg and ffprobe
//! (`make test` installs them); fails loudly without them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use vodpipe_control::ingest::{index_plan, index_timeout, ingest, work_items, Source};
use vodpipe_control::job::JobStatus;
use vodpipe_control::pipeline::{Config, JobPlan};
use vodpipe_control::ports::{
    Acquired, Completion, ItemKind, ItemRef, JobStore, Message, ObjectStore, Queue, Tier, WorkQueue,
};
use vodpipe_control::worker::{Shutdown, Worker};
use vodpipe_local::fleet::ProcessFleet;
use vodpipe_local::Local;

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg is required for this test: run `make deps`");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ffprobe_json(args: &[&str], path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(path)
        .output()
        .expect("ffprobe is required for this test: run `make deps`");
    assert!(
        out.status.success(),
        "ffprobe {path:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A `secs`-second 160x90 moving pattern at 5 fps with B-frames (frames out of decode
/// order: the scan must sort them) and keyframes 10 s apart (an MPEG-TS chunk must be
/// sought from far before its start), with an 8 kHz tone when `audio`, in the container
/// `name`'s extension chooses.
fn source(dir: &Path, name: &str, secs: u32, audio: bool) -> PathBuf {
    let path = dir.join(name);
    let secs = secs.to_string();
    let mut a = vec!["-f", "lavfi", "-i", "testsrc2=size=160x90:rate=5"];
    if audio {
        a.extend(["-f", "lavfi", "-i", "sine=frequency=300:sample_rate=8000"]);
        a.extend(["-c:a", "aac", "-b:a", "16k", "-ac", "1"]);
    }
    a.extend(["-t", &secs, "-c:v", "libx264", "-preset", "veryfast"]);
    a.extend(["-bf", "2", "-g", "50", "-pix_fmt", "yuv420p"]);
    a.push(path.to_str().unwrap());
    ffmpeg(&a);
    path
}

/// A backend in `dir` that starts no worker processes (the test turns a worker itself),
/// its config, and the job source for `path`.
fn backend(dir: &Path, path: &Path, job_id: &str) -> (Local, Config, Source) {
    let state = dir.join("state");
    let fleet = ProcessFleet::new("/nonexistent".into(), state.clone(), 0, 1);
    let local = Local::open(&state, Some(&dir.join("out")), fleet, 5).unwrap();
    let mut cfg = Config::new(state.join("scratch"));
    cfg.retry_delay = Duration::ZERO;
    let source = Source {
        uri: path.canonicalize().unwrap().display().to_string(),
        key: path.file_name().unwrap().to_string_lossy().into_owned(),
        job_id: job_id.into(),
        version: None,
        sequencer: None,
    };
    (local, cfg, source)
}

fn worker<'a>(local: &'a Local, cfg: &Config, name: &str) -> Worker<'a> {
    Worker::new(
        local.ports(),
        cfg.clone(),
        name,
        vec![Tier::Premium, Tier::Standard, Tier::Bulk],
        Shutdown::new(),
    )
}

fn index_item(job_id: &str) -> ItemRef {
    ItemRef {
        job_id: job_id.into(),
        kind: ItemKind::Index,
        index: 0,
    }
}

/// Turns `w` until job `id` is in `status` (or panics after `limit`).
fn turn_until(local: &Local, w: &mut Worker<'_>, id: &str, status: JobStatus, limit: Duration) {
    let started = Instant::now();
    while local.state.job(id).unwrap().unwrap().status != status {
        assert!(
            started.elapsed() < limit,
            "job {id} never reached {status:?}: {:?}",
            local.state.job(id).unwrap()
        );
        if w.turn().unwrap() == vodpipe_control::worker::Turn::Idle {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn decoded_frames(path: &Path) -> u64 {
    let v = ffprobe_json(
        &[
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
        ],
        path,
    );
    v["streams"][0]["nb_read_frames"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The rendition playlists a master playlist lists: video variants, then audio media.
fn master_entries(master: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let dir = master.parent().unwrap();
    let text = std::fs::read_to_string(master).unwrap();
    let video = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| dir.join(l.trim()))
        .collect();
    let audio = text
        .lines()
        .filter(|l| l.starts_with("#EXT-X-MEDIA:TYPE=AUDIO"))
        .filter_map(|l| {
            l.split("URI=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(|u| dir.join(u))
        })
        .collect();
    (video, audio)
}

/// A rendition reassembled: its init segment and every media segment, byte-concatenated
/// (one fragmented MP4, if the chunks joined on one timeline).
fn concat_rendition(playlist: &Path, dest: &Path) -> PathBuf {
    let dir = playlist.parent().unwrap();
    let text = std::fs::read_to_string(playlist).unwrap();
    let mut bytes = Vec::new();
    for line in text.lines() {
        assert!(!line.contains("DISCONTINUITY"), "{playlist:?}: {line}");
        if let Some(rest) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            let uri = rest.split('"').next().unwrap();
            bytes.extend(std::fs::read(dir.join(uri)).unwrap());
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            bytes.extend(std::fs::read(dir.join(line.trim())).unwrap());
        }
    }
    std::fs::write(dest, bytes).unwrap();
    dest.to_path_buf()
}

/// Decode timestamps strictly increase and no presentation timestamp repeats.
fn assert_monotonic(path: &Path) {
    let v = ffprobe_json(
        &["-select_streams", "0", "-show_entries", "packet=pts,dts"],
        path,
    );
    let packets = v["packets"].as_array().unwrap();
    assert!(!packets.is_empty(), "{path:?} has no packets");
    let mut last = i64::MIN;
    let mut pts: Vec<i64> = Vec::new();
    for p in packets {
        let dts = p["dts"].as_i64().unwrap();
        assert!(dts > last, "{path:?}: dts {dts} after {last}");
        last = dts;
        pts.push(p["pts"].as_i64().unwrap());
    }
    pts.sort_unstable();
    assert!(
        pts.windows(2).all(|w| w[1] > w[0]),
        "{path:?}: a pts repeats"
    );
}

/// Every frame of `rendition` against the same frame of `source`: a shifted, dropped or
/// repeated frame at a chunk join drops far below `min_db` on a moving pattern.
fn assert_psnr_at_least(rendition: &Path, source: &Path, min_db: f64) {
    let stats = rendition.with_extension("psnr.log");
    let graph = format!(
        "[0:v]setpts=PTS-STARTPTS[a];[1:v]format=yuv420p,setpts=PTS-STARTPTS[b];[a][b]psnr=stats_file={}",
        stats.display()
    );
    ffmpeg(&[
        "-i",
        rendition.to_str().unwrap(),
        "-i",
        source.to_str().unwrap(),
        "-lavfi",
        &graph,
        "-fps_mode",
        "passthrough",
        "-f",
        "null",
        "-",
    ]);
    let log = std::fs::read_to_string(&stats).unwrap();
    let worst = log
        .lines()
        .map(|l| {
            let avg = l
                .split_whitespace()
                .find_map(|f| f.strip_prefix("psnr_avg:"))
                .unwrap();
            avg.parse::<f64>().unwrap_or(f64::INFINITY)
        })
        .fold(f64::INFINITY, f64::min);
    assert_eq!(log.lines().count() as u64, decoded_frames(source));
    assert!(worst >= min_db, "{rendition:?}: worst frame {worst:.2} dB");
}

/// Ingests `name`, a three-minute source without a frame index, and has a worker publish
/// it: ingest queues the index alone, the index plans and queues the rest, and every
/// video rendition has the source's every frame, each where it belongs, on one timeline.
fn publishes_frame_exact(name: &str) {
    let started = Instant::now();
    let d = tempfile::tempdir().unwrap();
    let src = source(d.path(), name, 180, true);
    let (local, mut cfg, job_source) = backend(d.path(), &src, "job1");
    // Five chunks: joins enough, and few ffmpeg starts (most of a small chunk's cost).
    cfg.plan.chunk_secs = 36.0;
    let ing = ingest(local.ports(), &cfg, &job_source, false).unwrap();
    assert_eq!(ing.status, JobStatus::Encoding, "{name}");
    // Ingest read the header only: one item, the index, on the queue.
    let items = local.state.items("job1").unwrap();
    let kinds: Vec<ItemKind> = items.iter().map(|(i, _)| i.kind).collect();
    assert_eq!(kinds, [ItemKind::Index], "{name}");
    let job = local.state.job("job1").unwrap().unwrap();
    assert_eq!((job.total, job.frames_total), (1, 0), "{name}");
    assert_eq!(local.state.depth(Queue::Work(Tier::Standard)).unwrap(), 1);
    let plan: JobPlan = serde_json::from_str(&local.state.plan_doc("job1").unwrap()).unwrap();
    assert!(
        plan.index_pending() && plan.plan.chunks.is_empty(),
        "{name}"
    );

    let mut w = worker(&local, &cfg, "w");
    turn_until(
        &local,
        &mut w,
        "job1",
        JobStatus::Published,
        Duration::from_secs(120),
    );
    let job = local.state.job("job1").unwrap().unwrap();
    let plan: JobPlan = serde_json::from_str(&local.state.plan_doc("job1").unwrap()).unwrap();
    let want = decoded_frames(&src);
    assert_eq!(want, 900, "{name}");
    assert_eq!(job.frames_total, want, "{name}: the index missed frames");
    assert_eq!(plan.plan.chunks.len(), 5, "{name}: 180 s in 36 s chunks");
    assert_eq!(
        (job.done, job.total),
        (7, 7),
        "{name}: 5 chunks, 1 audio track and the index"
    );
    let master = PathBuf::from(local.objects.locate(job.master_key.as_deref().unwrap()));
    let (video, audio) = master_entries(&master);
    assert!(!video.is_empty() && audio.len() == 1, "{name}: {master:?}");
    for (i, pl) in video.iter().chain(audio.iter()).enumerate() {
        let file = concat_rendition(pl, &d.path().join(format!("rendition{i}.mp4")));
        assert_monotonic(&file);
        if i < video.len() {
            assert_eq!(decoded_frames(&file), want, "{name}: {pl:?}");
            assert_psnr_at_least(&file, &src, 30.0);
        }
    }
    eprintln!(
        "{name}: ingested, indexed, encoded, published and checked in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_long_mkv_without_an_index_publishes_frame_exact() {
    publishes_frame_exact("three-minutes.mkv");
}

#[test]
fn a_long_mpeg_ts_publishes_frame_exact_with_every_chunk_sought_from_its_keyframe() {
    publishes_frame_exact("three-minutes.ts");
}

/// A source, ingested, and the index a worker would make of it, saved under a lease
/// taken by a worker that is about to die: the saved plan's items, not yet made.
fn saved_by_a_doomed_worker(
    d: &Path,
) -> (
    Local,
    Config,
    vodpipe_control::ports::Lease,
    Vec<(ItemRef, u64)>,
) {
    let src = source(d, "short.mkv", 12, false);
    // 12 s in chunks of 4 s: three chunks.
    let (local, mut cfg, job_source) = backend(d, &src, "job2");
    cfg.plan.chunk_secs = 4.0;
    cfg.lease_ttl = Duration::from_secs(1);
    ingest(local.ports(), &cfg, &job_source, false).unwrap();
    let Acquired::Lease(lease) = local
        .state
        .acquire(&index_item("job2"), "doomed", Duration::from_secs(1))
        .unwrap()
    else {
        panic!("the index item could not be leased")
    };
    let jp: JobPlan = serde_json::from_str(&local.state.plan_doc("job2").unwrap()).unwrap();
    let mut indexed = index_plan(&cfg, &src, &jp, index_timeout(&jp), &[]).unwrap();
    let items = work_items("job2", &indexed);
    let (frames, duration) = {
        let v = indexed.media.video.as_mut().unwrap();
        let duration = v.duration_secs();
        v.frame_pts = Vec::new();
        (indexed.plan.total_frames, duration)
    };
    let doc = serde_json::to_string(&indexed).unwrap();
    let rungs = indexed.rungs.len() as u32;
    assert!(local
        .state
        .save_index(&lease, &doc, duration, frames, rungs, 0.0, &items)
        .unwrap());
    // A second save (a retry that scanned again) changes nothing.
    assert!(!local
        .state
        .save_index(&lease, &doc, duration, frames, rungs, 0.0, &items)
        .unwrap());
    (local, cfg, lease, items)
}

/// Acquires and commits `item` as a worker that encoded it would; what the commit led to.
fn commit(local: &Local, item: &ItemRef) -> Completion {
    let Acquired::Lease(l) = local
        .state
        .acquire(item, "encoder", Duration::from_secs(60))
        .unwrap()
    else {
        panic!("{} could not be leased", item.describe())
    };
    local.state.commit(&l, "[]", 1.0).unwrap()
}

#[test]
fn an_index_item_that_dies_half_way_is_retried_without_losing_or_duplicating_items() {
    let d = tempfile::tempdir().unwrap();
    let (local, cfg, lease, items) = saved_by_a_doomed_worker(d.path());
    assert_eq!(items.len(), 3, "12 s in 4 s chunks, no audio: {items:?}");
    // The doomed worker makes one item, which another worker encodes, and dies.
    local.state.create_items(&lease, &items[..1]).unwrap();
    assert_eq!(commit(&local, &items[0].0), Completion::More);
    let job = local.state.job("job2").unwrap().unwrap();
    assert_eq!((job.done, job.total), (1, 4), "three chunks and the index");
    std::thread::sleep(Duration::from_millis(1100));
    // Its lease runs out; the ingest's message for the index comes to the next worker,
    // which finds the plan saved, makes what is missing and queues it.
    let mut w = worker(&local, &cfg, "w").without_stitching();
    assert_eq!(
        w.turn().unwrap(),
        vodpipe_control::worker::Turn::Worked,
        "the index was not retried"
    );
    let listed = local.state.items("job2").unwrap();
    let names: Vec<(ItemKind, u32, bool)> = listed
        .iter()
        .map(|(i, s)| (i.kind, i.index, s.done))
        .collect();
    assert_eq!(
        names,
        [
            (ItemKind::Index, 0, true),
            (ItemKind::Video, 0, true),
            (ItemKind::Video, 1, false),
            (ItemKind::Video, 2, false),
        ],
        "the chunk already encoded must not be made again"
    );
    assert_eq!(
        local.state.depth(Queue::Work(Tier::Standard)).unwrap(),
        2,
        "only the chunks still to do are queued"
    );
    turn_until(
        &local,
        &mut w,
        "job2",
        JobStatus::Stitching,
        Duration::from_secs(60),
    );
    let job = local.state.job("job2").unwrap().unwrap();
    assert_eq!((job.done, job.total), (4, 4));
    // A copy of the index's message delivered late finds it done and is dropped.
    local
        .state
        .send(
            Queue::Work(Tier::Standard),
            &Message::Item(index_item("job2")),
        )
        .unwrap();
    w.turn().unwrap();
    assert_eq!(local.state.depth(Queue::Work(Tier::Standard)).unwrap(), 0);
    assert_eq!(local.state.items("job2").unwrap().len(), 4);
}

#[test]
fn a_job_is_not_finished_while_its_index_item_is_undone() {
    let d = tempfile::tempdir().unwrap();
    let (local, cfg, lease, items) = saved_by_a_doomed_worker(d.path());
    // The doomed worker makes every item and dies before committing the index; the items
    // are all encoded meanwhile.
    local.state.create_items(&lease, &items).unwrap();
    for (item, _) in &items {
        assert_eq!(commit(&local, item), Completion::More, "{item:?}");
    }
    let job = local.state.job("job2").unwrap().unwrap();
    assert_eq!(
        job.status,
        JobStatus::Encoding,
        "finished without its index"
    );
    assert_eq!((job.done, job.total), (3, 4));
    // The index's retry makes nothing, queues nothing, and its commit is the last.
    std::thread::sleep(Duration::from_millis(1100));
    let mut w = worker(&local, &cfg, "w").without_stitching();
    w.turn().unwrap();
    let job = local.state.job("job2").unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Stitching);
    assert_eq!((job.done, job.total), (4, 4));
    assert_eq!(local.state.depth(Queue::Work(Tier::Standard)).unwrap(), 0);
    assert_eq!(local.state.depth(Queue::Stitch).unwrap(), 1);
}

#[test]
fn a_probe_that_runs_out_of_time_leaves_the_job_to_be_retried() {
    let d = tempfile::tempdir().unwrap();
    let src = source(d.path(), "short.ts", 2, false);
    let (local, mut cfg, job_source) = backend(d.path(), &src, "job3");
    let stalled = d.path().join("ffprobe");
    std::fs::write(&stalled, "#!/bin/sh\nexec sleep 30\n").unwrap();
    let mut mode = std::fs::metadata(&stalled).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o755);
    std::fs::set_permissions(&stalled, mode).unwrap();
    cfg.ffprobe = stalled.display().to_string();
    cfg.policy.probe_timeout_secs = 1;
    let err = ingest(local.ports(), &cfg, &job_source, false).unwrap_err();
    assert!(err.to_string().contains("time limit"), "{err}");
    let job = local.state.job("job3").unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued, "{job:?}");
    // The next attempt, on a machine whose probe answers, plans the job.
    cfg.ffprobe = "ffprobe".into();
    let ing = ingest(local.ports(), &cfg, &job_source, false).unwrap();
    assert_eq!(ing.status, JobStatus::Encoding);
}
