//! `vodpipe`: the command-line face of the pipeline. Parses arguments, builds settings and
//! calls the use-cases in `vodpipe-local`; nothing here decides anything about media.

mod progress;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use vodpipe_core::ladder::LadderConfig;
use vodpipe_core::plan::PlanOptions;
use vodpipe_local::pipeline::{self, Settings, Worker};
use vodpipe_local::store::{JobRow, Store};

/// Video-on-demand transcoding: a source video in, an HLS + DASH ladder out.
#[derive(Parser)]
#[command(name = "vodpipe", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline on local files: ingest, encode, stitch, publish.
    Run(RunArgs),
    /// Probe a file and show its ladder and chunk plan, without encoding.
    Plan(PlanArgs),
}

/// Options shared by every command that plans.
#[derive(Args, Clone)]
struct MediaOpts {
    /// Segment duration in seconds.
    #[arg(long, default_value_t = 4.0)]
    segment_seconds: f64,
    /// Target chunk duration in seconds (a run of whole segments, one ffmpeg each).
    #[arg(long, default_value_t = 20.0)]
    chunk_seconds: f64,
    /// Ladder and encoder settings as JSON (see README); defaults to the built-in ladder.
    #[arg(long)]
    ladder: Option<PathBuf>,
    /// ffmpeg binary.
    #[arg(long, env = "VODPIPE_FFMPEG", default_value = "ffmpeg")]
    ffmpeg: String,
    /// ffprobe binary.
    #[arg(long, env = "VODPIPE_FFPROBE", default_value = "ffprobe")]
    ffprobe: String,
}

#[derive(Args)]
struct RunArgs {
    /// Source video files.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output directory: published assets appear under it.
    #[arg(long)]
    out: PathBuf,
    /// Parallel encoders (default: one per two cores, at least one).
    #[arg(long)]
    workers: Option<usize>,
    /// Print one JSON object per job on stdout instead of progress bars.
    #[arg(long)]
    json: bool,
    /// State directory (default: OUT/.vodpipe).
    #[arg(long)]
    state: Option<PathBuf>,
    #[command(flatten)]
    media: MediaOpts,
}

#[derive(Args)]
struct PlanArgs {
    /// Source video file.
    input: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    media: MediaOpts,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VODPIPE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run(a),
        Command::Plan(a) => plan(a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("vodpipe: {e:#}");
            std::process::exit(2);
        }
    }
}

fn settings(out: PathBuf, state: Option<PathBuf>, m: &MediaOpts) -> Result<Settings> {
    let mut s = Settings::new(out);
    if let Some(state) = state {
        s.state = state;
    }
    s.ffmpeg = m.ffmpeg.clone();
    s.ffprobe = m.ffprobe.clone();
    if !(m.segment_seconds >= 1.0 && m.segment_seconds <= 20.0) {
        bail!("--segment-seconds must be between 1 and 20");
    }
    if m.chunk_seconds < m.segment_seconds {
        bail!("--chunk-seconds must be at least --segment-seconds");
    }
    s.plan = PlanOptions {
        segment_secs: m.segment_seconds,
        chunk_secs: m.chunk_seconds,
    };
    if let Some(p) = &m.ladder {
        s.ladder = LadderConfig::from_file(p)?;
    }
    Ok(s)
}

/// The JSON line `run --json` prints per job.
fn job_json(settings: &Settings, j: &JobRow) -> serde_json::Value {
    let path = |k: &Option<String>| {
        k.as_ref()
            .map(|k| settings.out.join(k).display().to_string())
    };
    serde_json::json!({
        "job_id": j.id,
        "source": j.source,
        "status": j.status.as_str(),
        "master": path(&j.master),
        "dash": path(&j.dash),
        "error": j.error,
        "chunks_done": j.done,
        "chunks_total": j.total,
        "attempts": j.attempts,
        "duration_secs": j.duration_secs,
        "elapsed_secs": (j.updated_at - j.created_at),
    })
}

fn run(a: RunArgs) -> Result<i32> {
    let settings = settings(a.out.clone(), a.state.clone(), &a.media)?;
    std::fs::create_dir_all(&settings.out)
        .with_context(|| format!("creating {}", settings.out.display()))?;
    let mut store = Store::open(&settings.state)?;
    let mut ids = Vec::new();
    for input in &a.inputs {
        let ing = pipeline::ingest(&settings, &mut store, input, true)?;
        ids.push(ing.job_id);
    }
    let workers = a.workers.unwrap_or_else(|| {
        (std::thread::available_parallelism().map_or(2, |n| n.get()) / 2).max(1)
    });
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let jobs = std::thread::scope(|scope| -> Result<Vec<JobRow>> {
        let mut handles = Vec::new();
        for n in 0..workers {
            let settings = settings.clone();
            let done = done.clone();
            handles.push(scope.spawn(move || -> Result<()> {
                let mut w = Worker::new(settings, format!("{}-{n}", std::process::id()))?;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    if !w.work_one()? {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
                Ok(())
            }));
        }
        let jobs = progress::follow(&store, &ids, !a.json, &handles);
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        for h in handles {
            match h.join() {
                Ok(r) => r?,
                Err(_) => bail!("a worker thread panicked"),
            }
        }
        jobs
    })?;
    let mut failed = 0;
    for j in &jobs {
        if a.json {
            println!("{}", job_json(&settings, j));
        } else if let Some(m) = &j.master {
            eprintln!(
                "{} PUBLISHED {}\n  HLS:  {}\n  DASH: {}",
                j.id,
                j.source,
                settings.out.join(m).display(),
                settings.out.join(j.dash.as_deref().unwrap_or("")).display()
            );
        } else {
            eprintln!(
                "{} {} {}: {}",
                j.id,
                j.status,
                j.source,
                j.error.as_deref().unwrap_or("")
            );
        }
        if j.status != vodpipe_core::job::JobStatus::Published {
            failed += 1;
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

fn plan(a: PlanArgs) -> Result<i32> {
    let settings = settings(PathBuf::from("."), None, &a.media)?;
    let p = match pipeline::prepare(&settings, &a.input) {
        Ok(p) => p,
        Err(e) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"source": a.input, "error": e.to_string()})
                );
            } else {
                eprintln!("{}: {e}", a.input.display());
            }
            return Ok(1);
        }
    };
    let v = p.media.video.as_ref().context("no video")?;
    if a.json {
        let mut media = serde_json::to_value(&p.media)?;
        if let Some(video) = media.get_mut("video").and_then(|v| v.as_object_mut()) {
            video.remove("frame_pts");
        }
        println!(
            "{}",
            serde_json::json!({
                "source": a.input,
                "media": media,
                "frames": p.plan.total_frames,
                "duration_secs": v.duration_secs(),
                "rungs": p.rungs,
                "segments": p.plan.segments.len(),
                "chunks": p.plan.chunks.iter().map(|c| serde_json::json!({
                    "index": c.index, "first_frame": c.first_frame, "frames": c.frames,
                    "segments": c.segments.len(), "seek_secs": c.seek_secs})).collect::<Vec<_>>(),
            })
        );
        return Ok(0);
    }
    let (dw, dh) = v.display_size();
    println!("{}", a.input.display());
    println!(
        "  container {}  video {} {}x{} (display {dw}x{dh}, rotation {}°) {} {} fps{}{}",
        p.media.format_name,
        v.codec,
        v.width,
        v.height,
        v.rotation,
        v.pix_fmt,
        format_args!("{:.3}", v.frame_rate.as_f64()),
        if v.vfr { " VFR" } else { "" },
        if v.field_order == vodpipe_core::probe::FieldOrder::Interlaced {
            " interlaced"
        } else {
            ""
        },
    );
    for t in &p.media.audio {
        println!(
            "  audio #{} {} {} ch {} Hz {}",
            t.index,
            t.codec,
            t.channels,
            t.sample_rate,
            t.language.as_deref().unwrap_or("und")
        );
    }
    println!(
        "  {} frames, {:.3} s",
        p.plan.total_frames,
        v.duration_secs()
    );
    println!("ladder:");
    for r in &p.rungs {
        println!(
            "  {:>6}  {}x{}  max {} kb/s",
            r.name, r.width, r.height, r.max_kbps
        );
    }
    println!(
        "plan: {} segments of ~{} s in {} chunks",
        p.plan.segments.len(),
        p.plan.segment_secs,
        p.plan.chunks.len()
    );
    for c in &p.plan.chunks {
        println!(
            "  chunk {:>4}: frames {:>7}..{:<7} ({} segments, seek {:.3} s)",
            c.index,
            c.first_frame,
            c.first_frame + c.frames,
            c.segments.len(),
            c.seek_secs
        );
    }
    Ok(0)
}
