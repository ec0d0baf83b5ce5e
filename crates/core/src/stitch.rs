//! Stitch and publish: rendition playlists and the MPD under the job directory, then the
//! pointer manifests, then PUBLISHED, then CDN invalidation of the pointers.
//!
//! Only a STITCHING job is stitched, and PUBLISHED is a conditional transition, so a
//! duplicate stitch request (at-least-once delivery) rewrites identical manifests at most
//! and publishes nothing twice. Only the two pointers ever need invalidating: everything
//! they point to is immutable.

use crate::job::JobStatus;
use crate::outputs::{dash_pointer, job_dir, master_pointer, TrackResult};
use crate::package::{self, Track, TrackKind};
use crate::pipeline::{JobPlan, Ports};
use crate::ports::{Cacheability, ItemKind, ItemRef, PortError, PortResult};
use std::collections::HashMap;

/// Stitches and publishes `job_id` if it is STITCHING; a no-op otherwise.
pub fn stitch(ports: Ports<'_>, job_id: &str) -> PortResult<()> {
    let Some(job) = ports.jobs.job(job_id)? else {
        return Err(PortError::NotFound(job_id.into()));
    };
    if job.status != JobStatus::Stitching {
        tracing::info!(job = %job_id, status = %job.status, "not stitching; nothing to do");
        return Ok(());
    }
    // Store errors are retried (the request stays queued); content problems fail the job.
    let doc = ports.jobs.plan_doc(job_id)?;
    let results = ports.jobs.results(job_id)?;
    let tracks = match build_tracks(&doc, results) {
        Ok(t) => t,
        Err(reason) => {
            if ports.jobs.transition(
                job_id,
                &[JobStatus::Stitching],
                JobStatus::Failed,
                Some(&reason),
            )? {
                crate::metrics::job_state(JobStatus::Failed);
            }
            return Ok(());
        }
    };
    let jd = job_dir(&job.asset, job_id);
    for t in &tracks {
        ports.objects.put(
            &format!("{jd}/{}", package::media_playlist_name(t)),
            package::media_playlist(t).as_bytes(),
            Cacheability::Immutable,
        )?;
    }
    ports.objects.put(
        &format!("{jd}/master.m3u8"),
        package::master_playlist(&tracks, "").as_bytes(),
        Cacheability::Immutable,
    )?;
    ports.objects.put(
        &format!("{jd}/manifest.mpd"),
        package::mpd(&tracks, "").as_bytes(),
        Cacheability::Immutable,
    )?;
    // Pointers last: until they change, players keep seeing the previous version.
    let prefix = format!("{job_id}/");
    let (master, dash) = (master_pointer(&job.asset), dash_pointer(&job.asset));
    ports.objects.put(
        &master,
        package::master_playlist(&tracks, &prefix).as_bytes(),
        Cacheability::ShortLived,
    )?;
    ports.objects.put(
        &dash,
        package::mpd(&tracks, &prefix).as_bytes(),
        Cacheability::ShortLived,
    )?;
    if ports.jobs.publish(job_id, &master, &dash)? {
        tracing::info!(job = %job_id, %master, "published");
        publish_metrics(ports, job_id);
        if let Err(e) = ports
            .cdn
            .invalidate(&[format!("/{master}"), format!("/{dash}")], job_id)
        {
            // Pointers are short-lived in caches anyway; the publish stands.
            tracing::warn!(job = %job_id, error = %e, "CDN invalidation failed");
        }
        retire_superseded(ports, &job.asset, job_id);
    }
    Ok(())
}

/// What a published job adds to the dashboard: the state change, its output minutes, what
/// it cost, and how long its work waited for a worker.
fn publish_metrics(ports: Ports<'_>, job_id: &str) {
    use crate::metrics::{emit, job_state, Unit};
    job_state(JobStatus::Published);
    if !crate::metrics::enabled() {
        return;
    }
    let Ok(Some(j)) = ports.jobs.job(job_id) else {
        return;
    };
    let cost = crate::cost::compute_cost(
        j.tier,
        j.encode_secs + j.wasted_secs,
        crate::cost::WorkerSize::default(),
    );
    let mut values = vec![
        (
            "OutputMinutes",
            crate::cost::output_minutes(j.duration_secs, j.rungs),
            Unit::None,
        ),
        ("EstimatedCostUSD", cost, Unit::None),
    ];
    if let (Some(q), Some(s)) = (j.queued_at, j.started_at) {
        values.push(("QueueWaitSeconds", (s - q).max(0.0), Unit::Seconds));
    }
    emit(&values, &[]);
}

/// Marks the asset's earlier job directories as superseded (the output bucket's lifecycle
/// expires them). Best effort: a failure leaves old outputs in place, which costs storage
/// and nothing else.
fn retire_superseded(ports: Ports<'_>, asset: &str, job_id: &str) {
    let keys = match ports.objects.list(&format!("{asset}/")) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(%asset, error = %e, "could not list earlier outputs");
            return;
        }
    };
    let mut earlier: Vec<String> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(&format!("{asset}/")))
        // Job directories only: the pointers sit directly under the asset.
        .filter_map(|rest| rest.split_once('/').map(|(job, _)| job))
        .filter(|job| *job != job_id)
        .map(|job| format!("{asset}/{job}/"))
        .collect();
    earlier.dedup();
    for prefix in earlier {
        match ports.objects.retire(&prefix) {
            Ok(n) => tracing::info!(%prefix, objects = n, "superseded"),
            Err(e) => tracing::warn!(%prefix, error = %e, "could not mark as superseded"),
        }
    }
}

/// Each rendition's segments across chunks, checking all chunks of a rung can share one
/// init segment (same sample description).
fn build_tracks(doc: &str, mut results: Vec<(ItemRef, u32, String)>) -> Result<Vec<Track>, String> {
    let jp: JobPlan = serde_json::from_str(doc).map_err(|e| e.to_string())?;
    let video = jp
        .media
        .video
        .as_ref()
        .ok_or("source has no video stream")?;
    results.sort_by_key(|(item, _, _)| (item.kind == ItemKind::Audio, item.index));
    let mut by_rung: HashMap<String, Track> = HashMap::new();
    let mut stsd: HashMap<String, String> = HashMap::new();
    let mut audio = Vec::new();
    for (item, _attempt, doc) in &results {
        let tracks: Vec<TrackResult> = serde_json::from_str(doc).map_err(|e| e.to_string())?;
        for t in tracks {
            if item.kind == ItemKind::Audio {
                let info = jp.media.audio.get(item.index as usize);
                let language = info.and_then(|a| a.language.clone());
                let name = info
                    .and_then(|a| a.title.clone())
                    .or_else(|| language.clone())
                    .unwrap_or_else(|| format!("Audio {}", item.index + 1));
                audio.push(Track {
                    id: t.name,
                    kind: TrackKind::Audio { language, name },
                    codec: t.codec,
                    timescale: t.timescale,
                    init_uri: t.init_uri,
                    segments: t.segments,
                });
                continue;
            }
            let expected = stsd
                .entry(t.name.clone())
                .or_insert_with(|| t.stsd_hash.clone());
            if *expected != t.stsd_hash {
                return Err(format!("{} of rung {} has a different codec configuration than chunk 0; cannot share one init segment", item.describe(), t.name));
            }
            let rung = jp
                .rungs
                .iter()
                .find(|r| r.name == t.name)
                .ok_or_else(|| format!("unknown rung {}", t.name))?;
            let entry = by_rung.entry(t.name.clone()).or_insert_with(|| Track {
                id: t.name.clone(),
                kind: TrackKind::Video {
                    width: rung.width,
                    height: rung.height,
                    frame_rate: (video.frame_rate.num, video.frame_rate.den),
                },
                codec: t.codec.clone(),
                timescale: t.timescale,
                init_uri: t.init_uri.clone(),
                segments: Vec::new(),
            });
            entry.segments.extend(t.segments);
        }
    }
    let expected_segments = jp.plan.segments.len();
    let mut tracks: Vec<Track> = Vec::new();
    for r in &jp.rungs {
        let t = by_rung
            .remove(&r.name)
            .ok_or_else(|| format!("rendition {} has no committed segments", r.name))?;
        if t.segments.len() != expected_segments {
            return Err(format!(
                "rendition {} has {} segments, the plan has {expected_segments}",
                r.name,
                t.segments.len()
            ));
        }
        tracks.push(t);
    }
    audio.sort_by(|a, b| a.id.cmp(&b.id));
    tracks.extend(audio);
    Ok(tracks)
}
