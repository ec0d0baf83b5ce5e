//! `vodpipe watch`: a folder as the ingest bucket, so the embedded pipeline can be fed the
//! way a deployment is (files dropped in, settings files and prefixes choosing tiers),
//! with the sweeps a deployment's scheduled tick runs for work no event will finish.

use crate::arg_values::parse_tier;
use crate::backend::StateOpts;
use crate::local_state::{local_source, open_with, reconcile, with_profiles};
use crate::media_opts::{config, MediaOpts};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vodpipe_control::ingest::ingest;
use vodpipe_control::ports::Tier;
use vodpipe_control::sweep;
use vodpipe_control::worker::Shutdown;

/// Arguments of `vodpipe watch`.
#[derive(Args)]
pub struct WatchArgs {
    /// The folder to watch.
    dir: PathBuf,
    #[command(flatten)]
    state: StateOpts,
    /// Where published assets go (default STATE/out).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Tier for new jobs that choose none (by a settings file or a prefix directory).
    #[arg(long, default_value = "standard", value_parser = parse_tier)]
    tier: Tier,
    /// Sub-directories that choose a tier, PREFIX=TIER, comma-separated ("" for none).
    #[arg(long, default_value = "premium/=premium,archive/=bulk")]
    prefix_tiers: String,
    /// How long a stable file without a settings file waits for one, in seconds.
    #[arg(long, default_value_t = 2.0)]
    settings_wait: f64,
    /// A file is ingested once its size and mtime are unchanged for this long.
    #[arg(long, default_value_t = 2)]
    stable_seconds: u64,
    /// Worker processes to start when work arrives (0: run `vodpipe worker` yourself).
    #[arg(long, default_value_t = 1)]
    workers: u32,
    #[command(flatten)]
    media: MediaOpts,
}

/// `vodpipe watch`: runs until SIGTERM or SIGINT.
pub fn watch(a: WatchArgs) -> Result<i32> {
    let profiles = a
        .media
        .profiles
        .clone()
        .unwrap_or_else(|| a.dir.join(vodpipe_control::settings::PROFILES_PREFIX));
    let local = with_profiles(
        open_with(
            &a.state.state_dir()?,
            a.out.as_deref(),
            a.workers,
            a.state.max_receives,
            Some(&a.media.ffmpeg),
            a.media.drm_keys.as_deref(),
        )?,
        Some(&profiles),
    );
    let mut cfg = config(&a.state.scratch()?, &a.media)?;
    cfg.settings.default_tier = a.tier;
    cfg.settings.prefix_tiers =
        vodpipe_control::settings::SettingsPolicy::parse_prefix_tiers(&a.prefix_tiers)
            .map_err(|e| anyhow::anyhow!("--prefix-tiers: {e}"))?;
    if !(0.0..=120.0).contains(&a.settings_wait) {
        bail!("--settings-wait must be between 0 and 120 seconds");
    }
    cfg.settings.settings_wait = Duration::from_secs_f64(a.settings_wait);
    let shutdown = Shutdown::new();
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, shutdown.flag()).context("installing signal handlers")?;
    }
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    eprintln!("watching {} (Ctrl-C to stop)", a.dir.display());
    // path -> (size, mtime, since when unchanged)
    let mut seen: std::collections::HashMap<PathBuf, (u64, std::time::SystemTime, Instant)> =
        Default::default();
    let mut done: std::collections::HashSet<String> = Default::default();
    // Subtitle files handled, at the size and mtime they were handled at.
    let mut sidecars_done: std::collections::HashMap<PathBuf, (u64, std::time::SystemTime)> =
        Default::default();
    let mut last_sweep: Option<Instant> = None;
    while !shutdown.is_triggered() {
        // Once a minute, the sweeps for work no event will finish: stitches lost with the
        // worker that should have requested them (a job stranded in STITCHING), and jobs
        // whose items have no message left (ENCODING without progress).
        if last_sweep.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            last_sweep = Some(Instant::now());
            let swept = sweep::restitch_stranded(
                &local.state,
                &local.state,
                sweep::STITCH_STALE_SECS,
                false,
            )
            .and_then(|_| {
                sweep::requeue_stalled(
                    &local.state,
                    &local.state,
                    &cfg,
                    vodpipe_media::process::now_secs(),
                    Instant::now() + Duration::from_secs(10),
                    false,
                )
            })
            .and_then(|_| {
                // Jobs whose ingest (or re-packaging) died before planning them.
                sweep::resume_abandoned(
                    local.ports(),
                    &cfg,
                    Instant::now() + Duration::from_secs(30),
                    false,
                    |job| vodpipe_control::ingest::Source {
                        uri: job.source.clone(),
                        key: job.source.clone(),
                        job_id: job.id.clone(),
                        // Recorded in the job's settings.
                        version: None,
                        sequencer: None,
                    },
                )
            });
            if let Err(e) = swept {
                eprintln!("sweeping stranded jobs failed, will retry: {e}");
            }
        }
        let (uploads, sidecars) = uploads_under(&a.dir)?;
        let mut stable = |path: &PathBuf, meta: &std::fs::Metadata| {
            let (size, mtime) = (meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH));
            let e = seen
                .entry(path.clone())
                .or_insert((size, mtime, Instant::now()));
            if e.0 != size || e.1 != mtime {
                *e = (size, mtime, Instant::now());
                return None;
            }
            (e.2.elapsed() >= Duration::from_secs(a.stable_seconds)).then_some((size, mtime))
        };
        // A subtitle file written beside a published video publishes it again with the
        // file, as a deployment does; one beside a video still being made waits for it.
        for (path, meta) in &sidecars {
            let Some(stamp) = stable(path, meta) else {
                continue;
            };
            if sidecars_done.get(path) == Some(&stamp) {
                continue;
            }
            match add_sidecar(&local, &cfg, path, meta) {
                Ok(true) => {
                    sidecars_done.insert(path.clone(), stamp);
                }
                Ok(false) => {}
                Err(e) => eprintln!("adding {} failed, will retry: {e:#}", path.display()),
            }
        }
        for (path, meta) in uploads {
            if stable(&path, &meta).is_none() {
                continue;
            }
            // One unreadable or vanished file must not stop the watcher.
            let source = match local_source(&path, Some(&a.dir)) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("skipping {}: {e:#}", path.display());
                    continue;
                }
            };
            if !done.insert(source.job_id.clone()) {
                continue;
            }
            match ingest(local.ports(), &cfg, &source, false) {
                Ok(ing) => eprintln!("{} {} {}", ing.job_id, ing.status, path.display()),
                Err(e) => {
                    eprintln!("ingesting {} failed, will retry: {e}", path.display());
                    done.remove(&source.job_id);
                }
            }
        }
        // Keep workers alive while anything is unfinished (they exit when idle).
        reconcile(&local, a.workers)?;
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(0)
}

/// Re-packages the published videos beside subtitle file `path` with it; false while a
/// version of one of them is still being made (tried again on a later scan).
fn add_sidecar(
    local: &vodpipe_local::Local,
    cfg: &vodpipe_control::pipeline::Config,
    path: &Path,
    meta: &std::fs::Metadata,
) -> Result<bool> {
    use vodpipe_control::repackage::{repackage, videos_beside, Outcome};
    let abs = std::fs::canonicalize(path).with_context(|| format!("reading {}", path.display()))?;
    let upload = crate::repackage::local_upload(abs.display().to_string(), meta);
    for video in videos_beside(local.ports(), &upload.uri)? {
        match repackage(
            local.ports(),
            cfg,
            &video,
            std::slice::from_ref(&upload),
            false,
        )? {
            // Made, but not planned yet (its maker is someone else, or died): again later.
            Outcome::Started(ing)
                if matches!(
                    ing.status,
                    vodpipe_control::job::JobStatus::Queued
                        | vodpipe_control::job::JobStatus::Probing
                ) =>
            {
                return Ok(false)
            }
            Outcome::Started(ing) if ing.created => {
                eprintln!(
                    "{} re-packaging {} with {}",
                    ing.job_id,
                    video,
                    path.display()
                )
            }
            Outcome::InFlight { .. } => return Ok(false),
            _ => {}
        }
    }
    Ok(true)
}

/// Every file under `dir` that is an upload, and every subtitle file: sub-directories
/// (prefixes) included; hidden files, settings files and `_vodpipe/` (profiles) left out.
#[allow(clippy::type_complexity)]
fn uploads_under(
    dir: &Path,
) -> Result<(
    Vec<(PathBuf, std::fs::Metadata)>,
    Vec<(PathBuf, std::fs::Metadata)>,
)> {
    let mut out = Vec::new();
    let mut sidecars = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if d != dir => {
                eprintln!("skipping {}: {e}", d.display());
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", d.display())),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(meta) = entry.metadata() else { continue };
            if name.starts_with('.') || (d == dir && name == "_vodpipe") {
                continue;
            }
            if meta.is_dir() {
                todo.push(path);
            } else if meta.is_file() && vodpipe_media::captions::is_sidecar_name(&name) {
                sidecars.push((path, meta));
            } else if meta.is_file() && !vodpipe_control::settings::is_settings_key(&name) {
                out.push((path, meta));
            }
        }
    }
    Ok((out, sidecars))
}
