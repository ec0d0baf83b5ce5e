//! Ingest: a source becomes a planned job with its work queued, exactly once.
//!
//! The job id derives from the source identity, so a duplicate event (S3 and SQS deliver
//! at least once) finds the job already there and queues nothing. A source the input
//! policy refuses, or that cannot be read, ends as a FAILED job with the reason.

use crate::domain::{ItemKind, ItemRef, Message, Queue};
use crate::domain::{JobStatus, Transition};
use crate::pipeline::{Config, JobPlan, Ports, TextTrack};
use crate::ports::PortResult;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use vodpipe_media::probe::{index_frames, probe_header};

/// Where a source is and which version of it.
#[derive(Debug, Clone)]
pub struct Source {
    /// What status shows and ingest stores (a path or `s3://bucket/key`).
    pub uri: String,
    /// The key the asset name derives from.
    pub key: String,
    /// The job id (from location, key and version).
    pub job_id: String,
    /// The object version (an S3 version id) every read of the job pins, when the store
    /// keeps versions.
    pub version: Option<String>,
    /// The upload's order among the uploads of its key (an S3 event's `sequencer`), when
    /// known: see [`crate::job::sequencer_order`].
    pub sequencer: Option<String>,
}

/// The outcome of an ingest.
#[derive(Debug, Clone)]
pub struct Ingested {
    /// The job id.
    pub job_id: String,
    /// False when the job already existed and nothing new was queued.
    pub created: bool,
    /// The job's state after ingest (ENCODING, FAILED, or whatever it already was).
    pub status: JobStatus,
}

/// Probes, plans and queues `source` with the settings its upload chose (see
/// [`crate::settings`]; the deployment's side is `cfg.settings`). With `retry_failed`, a
/// job that already FAILED for this exact source starts over.
pub fn ingest(
    ports: Ports<'_>,
    cfg: &Config,
    source: &Source,
    retry_failed: bool,
) -> PortResult<Ingested> {
    // A job's settings are decided once, when it is made, and every later attempt (a
    // retry, a duplicate event, the fleet's sweep) plans with what was recorded: a settings
    // file that arrives or changes later cannot split one job across two ladders.
    let existing = ports.jobs.job(&source.job_id)?;
    // A re-packaged version is never planned from its source ([`crate::repackage::resume`]
    // plans it; the sweeps route it there).
    if let Some(job) = existing
        .as_ref()
        .filter(|j| j.settings.as_ref().is_some_and(|s| s.repackage.is_some()))
    {
        return Ok(Ingested {
            job_id: job.id.clone(),
            created: false,
            status: job.status,
        });
    }
    let settings = match existing.as_ref().map(|j| j.settings.clone()) {
        Some(Some(recorded)) => recorded,
        // A job from before settings were recorded: resolved now, without waiting.
        Some(None) => settings_for(ports, cfg, source, Duration::ZERO)?,
        // A new upload without a settings file waits a bounded time for one (a tool that
        // uploads it just after the video).
        None => settings_for(ports, cfg, source, cfg.settings.settings_wait)?,
    };
    // The overlay's image is read now, whoever made the settings: a new job records its
    // fingerprint, a recorded one must find the same image again. Its bytes go into the
    // plan (stored in pages), never into the job's record.
    let mut settings = match with_overlay_image(ports, cfg, settings.clone()) {
        Ok(s) => s,
        Err(e) if e.is_infrastructure() => {
            return Err(crate::ports::PortError::Backend(e.to_string()))
        }
        Err(e) => crate::domain::JobSettings {
            refusal: Some(e.to_string()),
            ..settings
        },
    };
    if existing.is_none() {
        settings.source_version = source.version.clone();
        settings.source_sequencer = source.sequencer.clone();
        settings.asset.value = unique_asset(ports, &settings.asset.value, &source.uri)?;
    }
    let mut recorded = settings.clone();
    recorded.ladder_config.overlay = recorded.ladder_config.overlay.map(|o| o.without_png());
    let (job, mut created) = ports.jobs.create_job(
        &source.job_id,
        &source.uri,
        &settings.asset.value,
        settings.tier.value,
        &recorded,
    )?;
    fail::fail_point!("ingest-after-create", |_| Err(crate::ports::injected(
        "ingest-after-create"
    )));
    if !created
        && retry_failed
        && job.status == JobStatus::Failed
        && ports.jobs.reset_failed(&job.id)?
    {
        tracing::info!(job = %job.id, "retrying a failed job");
        created = true;
    }
    if !created {
        match job.status {
            // A duplicate event for a job being encoded: re-queue whatever is neither done
            // nor held, in case the ingest that planned it died before queuing everything.
            // Extra messages are harmless: a worker drops a message whose item is done or
            // leased by another.
            JobStatus::Encoding => {
                // Duplicates usually arrive seconds after the original, whose messages are
                // all queued; re-queuing then would only double the queue (and the fleet).
                // `queued_at` is only set once every message was sent: without it the ingest
                // that planned the job died part-way, and its items are queued again now.
                let recent = job.queued_at.is_some_and(|q| {
                    vodpipe_media::process::now_secs() - q < 2.0 * cfg.lease_ttl.as_secs_f64()
                });
                if !recent {
                    requeue_unfinished(ports, &job.id, job.tier)?;
                }
                return Ok(Ingested {
                    job_id: job.id,
                    created: false,
                    status: JobStatus::Encoding,
                });
            }
            // QUEUED: nobody is probing it (an ingest released it after an infrastructure
            // failure, or died before claiming it). Whoever wins the conditional move to
            // PROBING probes it.
            JobStatus::Queued => {
                if !crate::moves::apply(ports, &job.id, Transition::Claim, None)? {
                    let status = ports.jobs.job(&job.id)?.map_or(job.status, |j| j.status);
                    return Ok(Ingested {
                        job_id: job.id,
                        created: false,
                        status,
                    });
                }
                tracing::info!(job = %job.id, "probing a queued job");
            }
            // An ingest that died while probing leaves the job in PROBING; one that has been
            // there far longer than a probe may take is taken over, by one caller only.
            JobStatus::Probing if ports.jobs.claim_probe(&job.id, abandoned_after(cfg))? => {
                tracing::warn!(job = %job.id, "taking over an abandoned ingest");
            }
            status => {
                return Ok(Ingested {
                    job_id: job.id,
                    created: false,
                    status,
                })
            }
        }
    } else if !crate::moves::apply(ports, &job.id, Transition::Claim, None)? {
        let status = ports.jobs.job(&job.id)?.map_or(job.status, |j| j.status);
        return Ok(Ingested {
            job_id: job.id,
            created: false,
            status,
        });
    }
    let mut job_cfg = cfg.clone();
    job_cfg.ladder = settings.ladder_config.clone();
    job_cfg.plan.segment_secs = settings.segment_seconds.value;
    job_cfg.plan.chunk_secs = job_cfg.plan.chunk_secs.max(job_cfg.plan.segment_secs);
    job_cfg.plan.clip = settings.clip.as_ref().map(|c| c.value);
    // A per-title ladder is chosen by the job's first work item, on a worker (which has an
    // encoder; the ingest function has a probe only): the plan is saved with the fixed
    // ladder standing in (`ladder_pending`), and the analysis revises it before any chunk
    // is leased.
    let prepared = match &settings.refusal {
        Some(reason) => Err(vodpipe_media::Error::Rejected(reason.clone())),
        None => prepare(
            ports,
            &job_cfg,
            &source.uri,
            settings.source_version.as_deref(),
        ),
    };
    let tier = job.tier;
    // An overlay is drawn in 8-bit BT.709: HDR rungs would show it in the wrong colours.
    let prepared = prepared.and_then(|jp| {
        if jp.config.overlay.is_some() && jp.rungs.iter().any(|r| r.range.is_hdr()) {
            return Err(vodpipe_media::Error::Rejected(
                "an overlay cannot be drawn on HDR rungs yet; ask for \"hdr\": \"sdr-only\" to publish this HDR source with it".into(),
            ));
        }
        Ok(jp)
    });
    // A plan over its budget fails here, before anything is encoded. One whose duration
    // is not known yet is checked by its index item, which reads it.
    let prepared = prepared.and_then(|jp| {
        let cost = jp.planned_cost_usd(tier);
        match cost {
            Some(c) => within_budget(c, settings.max_cost_usd.as_ref()).map(|()| (jp, c)),
            None => Ok((jp, 0.0)),
        }
    });
    match prepared {
        Ok((mut jp, planned_cost)) => {
            let items = work_items(&job.id, &jp);
            let (doc, duration) = plan_record(&mut jp)?;
            if ports.jobs.save_plan(
                &job.id,
                &doc,
                duration,
                jp.plan.total_frames,
                jp.rungs.len() as u32,
                planned_cost,
                &items,
            )? {
                fail::fail_point!("ingest-after-plan", |_| Err(crate::ports::injected(
                    "ingest-after-plan"
                )));
                // The ladder analysis first, then audio (a track takes as long as several
                // chunks, so it starts early); chunks waiting for the analysis are queued by
                // it.
                let pending = jp.ladder_pending();
                let mut order: Vec<&ItemRef> = items
                    .iter()
                    .map(|(i, _)| i)
                    .filter(|i| !(pending && i.kind == ItemKind::Video))
                    .collect();
                order.sort_by_key(|i| (i.kind != ItemKind::Analysis, i.kind == ItemKind::Video));
                // In batches (a film's chunks are thousands of messages); a crash part-way
                // leaves the job unmarked as queued, and the retry sends every item that is
                // neither done nor leased again.
                let messages: Vec<Message> = order
                    .into_iter()
                    .map(|i| Message::Item(i.clone()))
                    .collect();
                let (first, rest) = messages.split_at(messages.len().min(1));
                ports.queue.send_many(Queue::Work(tier), first)?;
                fail::fail_point!("ingest-mid-send", |_| Err(crate::ports::injected(
                    "ingest-mid-send"
                )));
                ports.queue.send_many(Queue::Work(tier), rest)?;
                ports.jobs.all_queued(&job.id)?;
                // Capacity for every item, chunks waiting for an analysis included: they
                // follow it within seconds.
                let wanted = items.len().min(u32::MAX as usize) as u32;
                if let Err(e) = ports.fleet.ensure_capacity(tier, wanted) {
                    tracing::warn!(error = %e, "could not ensure worker capacity; queued work waits for workers");
                }
                tracing::info!(job = %job.id, chunks = jp.plan.chunks.len(), rungs = jp.rungs.len(), %tier, "planned and queued");
                crate::moves::entered(ports, &job.id, Transition::Plan);
                crate::metrics::job_ingested(&settings);
            }
            Ok(Ingested {
                job_id: job.id,
                created: true,
                status: JobStatus::Encoding,
            })
        }
        // The probe could not run (missing or crashing ffprobe, S3 not answering): nothing
        // is known about the source. The job goes back to QUEUED, where the next attempt
        // (the event's retry, the fleet's sweep) claims it, and the caller sees an error.
        // A fault that outlasts every retry (a probe that crashes on this very file, say)
        // ends the job instead of looping: after `give_up_after`, it fails with the fault.
        Err(e)
            if e.is_infrastructure()
                && vodpipe_media::process::now_secs() - job.created_at < give_up_after(cfg, &e) =>
        {
            tracing::error!(job = %job.id, error = %e, "ingest could not probe; left for a retry");
            crate::moves::apply(ports, &job.id, Transition::GiveBack, None)?;
            Err(crate::ports::PortError::Backend(format!(
                "job {}: {e}",
                job.id
            )))
        }
        Err(e) => {
            let e = if e.is_infrastructure() {
                vodpipe_media::Error::Rejected(format!(
                    "the source could not be probed for {:.0} minutes, for reasons not its own (upload it again once they are fixed): {e}",
                    give_up_after(cfg, &e) / 60.0
                ))
            } else {
                e
            };
            tracing::warn!(job = %job.id, error = %e, "ingest refused");
            if crate::moves::apply(ports, &job.id, Transition::Refuse, Some(&e.to_string()))? {
                crate::metrics::job_ingested(&settings);
            }
            Ok(Ingested {
                job_id: job.id,
                created: true,
                status: JobStatus::Failed,
            })
        }
    }
}

/// Whether a plan estimated at `cost` USD may be encoded under `budget`: a refusal naming
/// both and where the budget came from when it may not.
pub fn within_budget(
    cost: f64,
    budget: Option<&crate::domain::Setting<f64>>,
) -> vodpipe_media::Result<()> {
    use crate::domain::Origin;
    let Some(b) = budget else {
        return Ok(());
    };
    if cost <= b.value {
        return Ok(());
    }
    let from = match b.from {
        Origin::Metadata => "x-amz-meta-vodpipe-max-cost-usd",
        Origin::SettingsFile => "\"max_cost_usd\" in its settings file",
        _ => "the deployment's MaxJobCostUsd (--max-cost-usd)",
    };
    Err(vodpipe_media::Error::Rejected(format!(
        "estimated cost {} is over the budget of {} ({from}); nothing was encoded",
        crate::cost::usd(cost),
        crate::cost::usd(b.value)
    )))
}

/// The work items of a plan, with the frames each covers: every video chunk, then every
/// audio track (encoded once, whole), then every subtitle track to convert, then the
/// ladder analysis when the plan waits for one. A plan waiting for its frame index has
/// that item alone: the audio's and the subtitles' timing follow the video's first frame
/// and its segments, which only the index settles.
pub fn work_items(job_id: &str, jp: &JobPlan) -> Vec<(ItemRef, u64)> {
    let item = |kind, index| ItemRef {
        job_id: job_id.to_string(),
        kind,
        index,
    };
    if jp.index_pending() {
        return vec![(item(ItemKind::Index, 0), 0)];
    }
    jp.plan
        .chunks
        .iter()
        .map(|c| (item(ItemKind::Video, c.index), c.frames))
        .chain((0..jp.media.audio.len() as u32).map(|t| (item(ItemKind::Audio, t), 0)))
        .chain(jp.text_items().map(|(t, _)| (item(ItemKind::Text, t), 0)))
        .chain(
            jp.ladder_pending()
                .then(|| (item(ItemKind::Analysis, 0), 0)),
        )
        .collect()
}

/// The plan as a job stores it, and the duration the job records: the frame table was for
/// planning only (a long film's would make the stored plan megabytes, too big for a
/// DynamoDB item, and no worker needs it), so it is left out. The duration is the frame
/// table's; without one (an audio-only source, or a video waiting for its index) the
/// container's.
pub(crate) fn plan_record(jp: &mut JobPlan) -> PortResult<(String, f64)> {
    let duration = jp
        .media
        .video
        .as_ref()
        .filter(|v| !v.frame_pts.is_empty())
        .map_or(jp.media.duration_secs.unwrap_or(0.0), |v| v.duration_secs());
    if let Some(v) = jp.media.video.as_mut() {
        v.frame_pts = Vec::new();
    }
    let doc =
        serde_json::to_string(&jp).map_err(|e| crate::ports::PortError::Backend(e.to_string()))?;
    Ok((doc, duration))
}

/// `asset`, or, when another source already publishes under that name, the name with a
/// short hash of this source added: a collision is never an overwrite.
fn unique_asset(ports: Ports<'_>, asset: &str, source: &str) -> PortResult<String> {
    if ports.jobs.claim_asset(asset, source)? == source {
        return Ok(asset.to_string());
    }
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(source.as_bytes()));
    let alt = format!("{asset}-{}", &digest[..8]);
    let holder = ports.jobs.claim_asset(&alt, source)?;
    if holder != source {
        return Err(crate::ports::PortError::Conflict(format!(
            "output names {asset} and {alt} both belong to other sources ({holder})"
        )));
    }
    tracing::warn!(%asset, %alt, %source, "the asset name belongs to another source; publishing under another");
    Ok(alt)
}

/// Seconds after its upload past which a job whose probe keeps failing for reasons not
/// its own fails instead of being retried. A probe that crashes or cannot start may be the
/// file's doing (a file that crashes ffprobe every time must not loop forever): ten probe
/// time limits, which Lambda's retries and the fleet's sweeps spend on several tries. A
/// source that cannot be read (S3 or the network failing) says nothing about the file:
/// it is retried for a day, an outage's worth, before the job gives up.
pub fn give_up_after(cfg: &Config, e: &vodpipe_media::Error) -> f64 {
    match e {
        vodpipe_media::Error::Unavailable(_) => 86_400.0,
        _ => cfg.policy.probe_timeout_secs as f64 * 10.0,
    }
}

/// The settings a new job gets from its upload, resolved under `cfg`. A refusal (bad
/// settings, or the source gone) is kept in the settings, for the job to fail with;
/// infrastructure errors are errors.
fn settings_for(
    ports: Ports<'_>,
    cfg: &Config,
    source: &Source,
    wait: Duration,
) -> PortResult<crate::domain::JobSettings> {
    let refused = |e: String| {
        crate::settings::fallback(
            &source.key,
            &cfg.settings,
            cfg.plan.segment_secs,
            &cfg.ladder,
            Some(e),
        )
    };
    let upload = match upload_settings(ports, source, wait) {
        Ok(u) => u,
        Err(crate::ports::PortError::NotFound(_)) => {
            return Ok(refused("the source no longer exists".into()))
        }
        Err(e) => return Err(e),
    };
    let resolved = crate::settings::resolve(
        &upload,
        &cfg.settings,
        &cfg.ladder,
        cfg.plan.segment_secs,
        &|name| {
            ports.objects.profile(name).map_err(|e| {
                vodpipe_media::Error::Unavailable(format!("reading profile {name}: {e}"))
            })
        },
    );
    match resolved {
        Ok(s) => Ok(s),
        Err(e) if e.is_infrastructure() => Err(crate::ports::PortError::Backend(e.to_string())),
        // The upload's settings are wrong: the job is filed where it would have gone by
        // default and fails with the reason.
        Err(vodpipe_media::Error::Rejected(reason)) => Ok(refused(reason)),
        Err(e) => Ok(refused(e.to_string())),
    }
}

/// Settings whose overlay names a deployment image, with that image's bytes read (once,
/// here: the job keeps them, whatever happens to the file later); a name without an image,
/// or an image that is not a PNG or is too large, is a refusal.
fn with_overlay_image(
    ports: Ports<'_>,
    cfg: &Config,
    mut s: crate::domain::JobSettings,
) -> vodpipe_media::Result<crate::domain::JobSettings> {
    let Some(o) = s.ladder_config.overlay.take() else {
        return Ok(s);
    };
    if !o.png.is_empty() {
        s.ladder_config.overlay = Some(o);
        return Ok(s);
    }
    // The command line's image is read by the command; the deployment's from its store.
    let from_command = cfg
        .settings
        .command_overlay
        .as_ref()
        .filter(|c| {
            c.image == o.image
                && s.overlay
                    .as_ref()
                    .is_some_and(|x| x.from == crate::domain::Origin::Command)
        })
        .map(|c| c.png.clone());
    let key = crate::settings::overlay_key(&o.image);
    let png = match from_command {
        Some(png) => png,
        None => ports
            .objects
            .overlay(&o.image)
            .map_err(|e| vodpipe_media::Error::Unavailable(format!("reading overlay {key}: {e}")))?
            .ok_or_else(|| {
                vodpipe_media::Error::Rejected(format!(
                    "the overlay {:?} does not exist ({key})",
                    o.image
                ))
            })?,
    };
    let o = o
        .with_png(png)
        .map_err(|e| vodpipe_media::Error::Rejected(format!("overlay {key}: {e}")))?;
    s.ladder_config.overlay = Some(o);
    Ok(s)
}

/// Whether `source` is a new upload still without its settings file: what an ingest that
/// waits by redelivery (the upload queue on AWS) asks before deciding to come back later
/// instead of sleeping. A job that exists already has its settings, whatever arrives.
pub fn awaits_settings_file(ports: Ports<'_>, source: &Source) -> PortResult<bool> {
    if ports.jobs.job_brief(&source.job_id)?.is_some() {
        return Ok(false);
    }
    Ok(ports.objects.source_settings_file(&source.uri)?.is_none())
}

/// What the upload says about its job: the source's metadata and its settings file,
/// waiting up to `wait` for the file to arrive.
fn upload_settings(
    ports: Ports<'_>,
    source: &Source,
    wait: Duration,
) -> PortResult<crate::settings::UploadSettings> {
    let metadata = ports
        .objects
        .source_metadata(&source.uri, source.version.as_deref())?;
    let deadline = std::time::Instant::now() + wait;
    let settings_file = loop {
        match ports.objects.source_settings_file(&source.uri)? {
            Some(f) => break Some(f),
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(500))
            }
            None => break None,
        }
    };
    Ok(crate::settings::UploadSettings {
        key: source.key.clone(),
        metadata,
        settings_file,
    })
}

/// Seconds after which a job still PROBING is taken to be abandoned by a dead ingest (a
/// probe has its own timeout, well inside this) and may be taken over.
pub fn abandoned_after(cfg: &Config) -> f64 {
    (cfg.policy.probe_timeout_secs as f64) * 2.0 + 60.0
}

/// Sends a message for every item of the job that is neither done nor leased, but none
/// for chunks while the ladder analysis is unfinished: it queues them itself.
pub(crate) fn requeue_unfinished(
    ports: Ports<'_>,
    job_id: &str,
    tier: crate::domain::Tier,
) -> PortResult<()> {
    let messages: Vec<Message> = unfinished(ports.jobs, job_id)?
        .into_iter()
        .map(|(item, _)| Message::Item(item))
        .collect();
    ports.queue.send_many(Queue::Work(tier), &messages)
}

/// A job's items that are neither done nor leased, with their state (chunks waiting for
/// an unfinished ladder analysis left out).
pub(crate) fn unfinished<J: crate::ports::JobStore + ?Sized>(
    jobs: &J,
    job_id: &str,
) -> PortResult<Vec<(ItemRef, crate::ports::ItemState)>> {
    let items = jobs.items(job_id)?;
    let analysing = items
        .iter()
        .any(|(i, s)| i.kind == ItemKind::Analysis && !s.done);
    Ok(items
        .into_iter()
        .filter(|(item, state)| {
            let waits_for_analysis = analysing && item.kind == ItemKind::Video;
            !(state.done || state.leased || waits_for_analysis)
        })
        .collect())
}

/// Header probe + ladder + plan of a source (at `version`, when pinned), with no state
/// touched: what ingest plans with. It reads a bounded amount of the source whatever its
/// size ([`plan_source`]); a source without a frame index gets a plan that waits for its
/// index item.
pub fn prepare(
    ports: Ports<'_>,
    cfg: &Config,
    source_uri: &str,
    version: Option<&str>,
) -> vodpipe_media::Result<JobPlan> {
    let input = ports
        .objects
        .open_source(source_uri, version, Duration::from_secs(3600))
        .map_err(|e| match e {
            crate::ports::PortError::NotFound(_) => {
                vodpipe_media::Error::Rejected(format!("source cannot be opened: {e}"))
            }
            other => vodpipe_media::Error::Unavailable(format!("source cannot be opened: {other}")),
        })?;
    let mut jp = plan_source(cfg, Path::new(&input))?;
    // Sidecars are picked up now, once: one uploaded later is added by a re-packaged
    // version ([`crate::repackage`]).
    let listed_at = vodpipe_media::process::now_secs();
    let sidecars = sidecars_beside(ports, source_uri).map_err(|e| {
        vodpipe_media::Error::Unavailable(format!("listing subtitle sidecars: {e}"))
    })?;
    jp.texts.extend(
        sidecars
            .into_iter()
            .map(|(language, uri)| TextTrack::sidecar(language, uri, listed_at)),
    );
    TextTrack::settle(&mut jp.texts);
    Ok(jp)
}

/// The subtitle files beside `source_uri` (`talk.en.srt` beside `talk.mp4`), as
/// (language, file), sorted, at most [`vodpipe_media::captions::MAX_SIDECARS`].
pub fn sidecars_beside(ports: Ports<'_>, source_uri: &str) -> PortResult<Vec<(String, String)>> {
    let name = |uri: &str| uri.rsplit('/').next().unwrap_or(uri).to_string();
    let mut sidecars: Vec<(String, String)> = ports
        .objects
        .source_siblings(source_uri)?
        .into_iter()
        .filter_map(|uri| {
            vodpipe_media::captions::sidecar_language(&name(source_uri), &name(&uri))
                .map(|lang| (lang, uri))
        })
        .collect();
    sidecars.sort();
    sidecars.truncate(vodpipe_media::captions::MAX_SIDECARS);
    Ok(sidecars)
}

/// A whole plan of a file on this machine, its frame table read whatever the container
/// (the packet scan, where the container has no index, runs here and now): what
/// `vodpipe plan` shows. A per-title ladder is left pending ([`JobPlan::ladder_pending`]):
/// the analysis is a work item of its own.
pub fn prepare_local(cfg: &Config, path: &Path) -> vodpipe_media::Result<JobPlan> {
    let jp = plan_source(cfg, path)?;
    if !jp.index_pending() {
        return Ok(jp);
    }
    index_plan(cfg, path, &jp, index_timeout(&jp), &[])
}

/// What ingest makes of a source: its header probed ([`probe_header`]: a bounded read,
/// the frame table included only where the container carries one) and planned under
/// `cfg`; a video without its frame table is planned by its index item later
/// ([`index_plan`]).
pub fn plan_source(cfg: &Config, path: &Path) -> vodpipe_media::Result<JobPlan> {
    let mut media = probe_header(&cfg.ffprobe, path, &cfg.policy)?;
    // A clip cuts the frame table; one not read yet is cut when its index item reads it.
    if let Some(clip) = cfg.plan.clip {
        if media.video.as_ref().is_none_or(|v| !v.frame_pts.is_empty()) {
            clip.apply(&mut media)?;
        }
    }
    Ok(JobPlan::new(media, &cfg.ladder, cfg.plan))
}

/// The plan `jp`, waiting for its index, completed from a scan of every packet of the
/// source at `input` (a path, or a URL read with ranged requests): the work of an index
/// item. The table is checked under `cfg.policy` as a table from an MP4's sample tables is
/// at ingest; the scan stops after `timeout` or when any of `cancel` is set.
pub fn index_plan(
    cfg: &Config,
    input: &Path,
    jp: &JobPlan,
    timeout: Duration,
    cancel: &[Arc<AtomicBool>],
) -> vodpipe_media::Result<JobPlan> {
    let mut media = jp.media.clone();
    let keyframes = index_frames(
        &cfg.ffprobe,
        input,
        &mut media,
        &cfg.policy,
        timeout,
        cancel,
    )?;
    if let Some(clip) = jp.plan.awaiting_index.and_then(|o| o.clip) {
        clip.apply(&mut media)?;
    }
    let mut indexed = jp.clone();
    indexed.index(media, &keyframes);
    Ok(indexed)
}

/// How long an index item's packet scan may run: a quarter of the source's duration (a
/// scan reads everything, so a longer source takes longer), and at least ten minutes.
pub fn index_timeout(jp: &JobPlan) -> Duration {
    Duration::from_secs_f64((jp.media.duration_secs.unwrap_or(3600.0) / 4.0).max(600.0))
}
