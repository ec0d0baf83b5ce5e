//! Stitch and publish: rendition playlists and the MPD under the job directory, then the
//! pointer manifests, then PUBLISHED, then CDN invalidation of the pointers.
//!
//! Only a STITCHING job is stitched, and PUBLISHED is a conditional transition, so a
//! duplicate stitch request (at-least-once delivery) rewrites identical manifests at most
//! and publishes nothing twice. Only the two pointers ever need invalidating: everything
//! they point to is immutable.
//!
//! Versions of one source are ordered by upload, never by when their ingests ran: by the
//! sequencer of their S3 events (S3's own order of one key's events), else by when their
//! jobs were created ([`uploaded_later`]). A job that finishes after a newer upload of the
//! same object was published is published at its own job directory, leaves the pointers
//! alone and is retired at once; publishing the newest version retires the earlier
//! versions' directories (finished jobs only) for the store's lifecycle.

use crate::domain::Rendition;
use crate::domain::{ItemKind, ItemRef, JobRecord};
use crate::domain::{JobStatus, Transition};
use crate::outputs::{
    dash_pointer, job_dir, master_pointer, skipped_text, text_track, TrackResult,
};
use crate::pipeline::{JobPlan, Ports};
use crate::ports::{Cacheability, PortError, PortResult};
use crate::versions::{revision, upload_time, uploaded_later};
use std::collections::HashMap;
use vodpipe_media::package::{self, SegmentRef, Track, TrackKind};

/// Stitches and publishes `job_id` if it is STITCHING; a no-op otherwise. Returns the state
/// this call moved the job to (PUBLISHED, or FAILED for unusable results), or `None` when
/// it moved nothing (a redelivered request, another stitcher won).
pub fn stitch(ports: Ports<'_>, job_id: &str) -> PortResult<Option<JobStatus>> {
    let Some(job) = ports.jobs.job(job_id)? else {
        return Err(PortError::NotFound(job_id.into()));
    };
    if job.status != JobStatus::Stitching {
        tracing::info!(job = %job_id, status = %job.status, "not stitching; nothing to do");
        return Ok(None);
    }
    // Store errors are retried (the request stays queued); content problems fail the job.
    let doc = ports.jobs.plan_doc(job_id)?;
    let results = ports.jobs.results(job_id)?;
    // A re-packaged version publishes another version's tracks with its own subtitles.
    let built = match job.settings.as_ref().and_then(|s| s.repackage.as_ref()) {
        Some(r) => crate::repackage::tracks(ports, &job, r, &doc, results)?,
        None => build_tracks(&doc, results),
    };
    let (tracks, extras) = match built {
        Ok(t) => t,
        Err(reason) => {
            if crate::moves::apply(ports, job_id, Transition::FailStitch, Some(&reason))? {
                return Ok(Some(JobStatus::Failed));
            }
            return Ok(None);
        }
    };
    let jd = job_dir(&job.asset, job_id);
    let mut published = crate::outputs::renditions(&tracks);
    published.extend(extras.iter().cloned());
    let record = serde_json::to_string(&crate::outputs::Published {
        tracks: tracks.clone(),
        extras,
    })
    .map_err(|e| PortError::Backend(format!("the published tracks: {e}")))?;
    // Each rendition's playlist, for each video rung its I-frame playlist (trick play:
    // byte ranges into the same segments), and the WebVTT thumbnail track, in one batch.
    let mut playlists: Vec<(String, String)> = Vec::new();
    for t in &tracks {
        if let Some(vtt) = package::thumbnail_vtt(t) {
            playlists.push((format!("{jd}/{}", crate::outputs::THUMBNAILS_VTT), vtt));
            continue;
        }
        playlists.push((
            format!("{jd}/{}", package::media_playlist_name(t)),
            package::media_playlist(t),
        ));
        if let Some(p) = package::iframe_playlist(t) {
            playlists.push((format!("{jd}/{}", package::iframe_playlist_name(t)), p));
        }
    }
    playlists.push((format!("{jd}/{}", crate::outputs::TRACKS_JSON), record));
    let batch: Vec<(String, &[u8])> = playlists
        .iter()
        .map(|(k, p)| (k.clone(), p.as_bytes()))
        .collect();
    ports.objects.put_many(&batch, Cacheability::Immutable)?;
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
    fail::fail_point!("stitch-after-playlists", |_| Err(crate::ports::injected(
        "stitch-after-playlists"
    )));
    // A newer version of this source already holds the pointers: publish this one at its
    // own directory and leave them alone.
    let versions = ports.jobs.jobs_by_source(&job.source)?;
    if let Some(newer) = newer_published(&job, &versions) {
        tracing::warn!(job = %job_id, newer = %newer.id, "a newer upload is already published; pointers left to it");
        return publish_superseded(ports, &job, &jd, &published);
    }
    // Pointers last: until they change, players keep seeing the previous version. Each
    // moves by a conditional replace, so two versions stitching at once cannot leave the
    // older one in place (the check above alone could be overtaken).
    let prefix = format!("{job_id}/");
    let (master, dash) = (master_pointer(&job.asset), dash_pointer(&job.asset));
    let moved_master = move_pointer(
        ports,
        &job,
        &master,
        &package::master_playlist(&tracks, &prefix),
    )?;
    let moved_dash = move_pointer(ports, &job, &dash, &package::mpd(&tracks, &prefix))?;
    if moved_master == Moved::Kept || moved_dash == Moved::Kept {
        tracing::warn!(job = %job_id, "a newer upload took the pointers meanwhile; published at its own directory");
        return publish_superseded(ports, &job, &jd, &published);
    }
    fail::fail_point!("stitch-after-pointers", |_| Err(crate::ports::injected(
        "stitch-after-pointers"
    )));
    if !ports.jobs.publish(job_id, &master, &dash, &published)? {
        return Ok(None);
    }
    fail::fail_point!("stitch-after-publish", |_| Err(crate::ports::injected(
        "stitch-after-publish"
    )));
    tracing::info!(job = %job_id, %master, "published");
    publish_metrics(ports, job_id);
    // Only a replaced version can be in a cache (the distribution caches no 404 and 403):
    // a first publish invalidates nothing. At 100,000 uploads an hour, two paths on every
    // publish would cost about $1,000 an hour and overrun CloudFront's 3,000 paths in
    // progress (`vodpipe simulate --invalidate-every-publish`).
    if moved_master == Moved::Replaced || moved_dash == Moved::Replaced {
        if let Err(e) = ports
            .cdn
            .invalidate(&[format!("/{master}"), format!("/{dash}")], job_id)
        {
            // Pointers are short-lived in caches anyway; the publish stands.
            tracing::warn!(job = %job_id, error = %e, "CDN invalidation failed");
        }
    }
    for dir in retired_dirs(&job, &versions) {
        // Best effort: a failure leaves old outputs in place, which costs storage only.
        match ports.objects.retire(&dir) {
            Ok(n) => tracing::info!(%dir, objects = n, "superseded"),
            Err(e) => tracing::warn!(%dir, error = %e, "could not mark as superseded"),
        }
    }
    Ok(Some(JobStatus::Published))
}

/// Records a stitch of `job_id` that failed with `e` (logged; a record that cannot be
/// written costs only the count). The request is redelivered; its dead letter is requested
/// again until many stitches have failed ([`crate::dead_letters::stitch`]).
pub fn note_failure(ports: Ports<'_>, job_id: &str, e: &PortError) {
    tracing::warn!(job = %job_id, error = %e, "stitch failed; it will be retried");
    if let Err(x) = ports.jobs.note_stitch_failure(job_id, &e.to_string()) {
        tracing::warn!(job = %job_id, error = %x, "could not record the failed stitch");
    }
}

/// Publishes a job that a newer upload of its source has overtaken at its own directory,
/// and retires that directory at once: no pointer will ever name it, so it goes the way
/// the newer upload's publish would have sent it had this job finished first.
fn publish_superseded(
    ports: Ports<'_>,
    job: &JobRecord,
    jd: &str,
    published: &[Rendition],
) -> PortResult<Option<JobStatus>> {
    let (master, dash) = (format!("{jd}/master.m3u8"), format!("{jd}/manifest.mpd"));
    if !ports.jobs.publish(&job.id, &master, &dash, published)? {
        return Ok(None);
    }
    publish_metrics(ports, &job.id);
    match ports.objects.retire(&format!("{jd}/")) {
        Ok(n) => tracing::info!(dir = %jd, objects = n, "superseded on arrival"),
        Err(e) => tracing::warn!(dir = %jd, error = %e, "could not mark as superseded"),
    }
    Ok(Some(JobStatus::Published))
}

/// The job directories `job`'s publication retires: the versions it supersedes
/// ([`superseded_dirs`]) and the directories those re-packaged versions pointed into,
/// except every directory `job` itself points into.
pub fn retired_dirs(job: &JobRecord, versions: &[JobRecord]) -> Vec<String> {
    let reuses = |j: &JobRecord| -> Vec<String> {
        j.settings
            .as_ref()
            .and_then(|s| s.repackage.as_ref())
            .map(|r| r.reuses.clone())
            .unwrap_or_default()
    };
    let keep: Vec<String> = reuses(job)
        .iter()
        .map(|id| format!("{}/", job_dir(&job.asset, id)))
        .collect();
    let mut dirs = superseded_dirs(job, versions);
    for v in versions {
        if dirs.contains(&format!("{}/", job_dir(&v.asset, &v.id))) {
            for id in reuses(v) {
                let dir = format!("{}/", job_dir(&v.asset, &id));
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
    }
    dirs.retain(|d| !keep.contains(d));
    dirs
}

/// How often a pointer is read and replaced again when other publishers keep replacing
/// it in between.
const POINTER_ROUNDS: u32 = 8;

/// What moving a pointer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moved {
    /// A newer version holds it; left alone.
    Kept,
    /// It points at the job now; nothing (or this same job) was there before, so no cache
    /// can hold another version of it.
    First,
    /// It points at the job now, in place of another version, which caches may still hold.
    Replaced,
}

/// Points `key` at `job` (writes `body`) unless it already points at a newer version of
/// the asset. The replace is conditional on the pointer read, so a publisher that lost a
/// race reads the winner and decides again.
fn move_pointer(ports: Ports<'_>, job: &JobRecord, key: &str, body: &str) -> PortResult<Moved> {
    for _ in 0..POINTER_ROUNDS {
        let current = ports.objects.get_tagged(key)?;
        let holder = current
            .as_ref()
            .map(|(bytes, _)| pointed_job(&String::from_utf8_lossy(bytes)));
        if let Some(Some(h)) = holder.as_ref().filter(|h| h.as_deref() != Some(&job.id)) {
            let newer = ports
                .jobs
                .job_brief(h)?
                .is_some_and(|h| uploaded_later(&h, job));
            if newer {
                return Ok(Moved::Kept);
            }
        }
        let expected = current.as_ref().map(|(_, tag)| tag.as_str());
        if ports
            .objects
            .put_if(key, body.as_bytes(), Cacheability::ShortLived, expected)?
        {
            // Replaced: something was there that was not this job (an unreadable pointer
            // counts, to be safe).
            let replaced = match &holder {
                None => false,
                Some(Some(h)) => *h != job.id,
                Some(None) => true,
            };
            return Ok(if replaced {
                Moved::Replaced
            } else {
                Moved::First
            });
        }
    }
    Err(PortError::Conflict(format!(
        "pointer {key} kept changing for {POINTER_ROUNDS} rounds"
    )))
}

/// The job a pointer document points at: the job directory every URI in it starts with
/// (a job id is 16 hex digits), as [`package::master_playlist`] and [`package::mpd`] write
/// them with the job's prefix.
fn pointed_job(doc: &str) -> Option<String> {
    let bytes = doc.as_bytes();
    (0..bytes.len().saturating_sub(16)).find_map(|i| {
        let starts = i == 0 || matches!(bytes[i - 1], b'"' | b'\n');
        let id = &bytes[i..i + 16];
        (starts
            && bytes.get(i + 16) == Some(&b'/')
            && id
                .iter()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| String::from_utf8_lossy(id).into_owned())
    })
}

/// A published job of the same source and asset uploaded after `job`, if any.
fn newer_published<'a>(job: &JobRecord, versions: &'a [JobRecord]) -> Option<&'a JobRecord> {
    versions.iter().find(|v| {
        v.id != job.id
            && v.asset == job.asset
            && v.status == JobStatus::Published
            && uploaded_later(v, job)
    })
}

/// The job directories `job`'s publication supersedes: earlier versions of the same source
/// and asset that are finished (a version still encoding keeps its files), newest first,
/// down to and including the previously published one; anything older was retired when
/// that one was published. Directories are named by job id, never by listing, so another
/// asset nested under this one's prefix is never touched.
pub fn superseded_dirs(job: &JobRecord, versions: &[JobRecord]) -> Vec<String> {
    let mut earlier: Vec<&JobRecord> = versions
        .iter()
        .filter(|v| v.id != job.id && v.asset == job.asset && uploaded_later(job, v))
        .collect();
    // Newest upload first, by one total order: sequencers when every version has one,
    // else creation (a mixed comparison need not be transitive, and a sort needs that).
    let sequencer = |j: &JobRecord| j.settings.as_ref().and_then(|s| s.source_sequencer.clone());
    if earlier.iter().all(|v| sequencer(v).is_some()) {
        earlier.sort_by(|a, b| {
            crate::job::sequencer_order(
                &sequencer(b).unwrap_or_default(),
                &sequencer(a).unwrap_or_default(),
            )
            .then_with(|| revision(b).cmp(&revision(a)))
            .then_with(|| b.created_at.total_cmp(&a.created_at))
        });
    } else {
        earlier.sort_by(|a, b| {
            upload_time(b)
                .total_cmp(&upload_time(a))
                .then_with(|| revision(b).cmp(&revision(a)))
                .then_with(|| b.created_at.total_cmp(&a.created_at))
        });
    }
    let mut dirs = Vec::new();
    for v in earlier {
        if v.status.is_final() {
            dirs.push(format!("{}/", job_dir(&v.asset, &v.id)));
        }
        if v.status == JobStatus::Published {
            break;
        }
    }
    dirs
}

/// What a published job adds to the dashboard: the state change, its output minutes, what
/// it cost, and how long its work waited for a worker.
fn publish_metrics(ports: Ports<'_>, job_id: &str) {
    use crate::metrics::{emit, Unit};
    let announced = crate::moves::entered(ports, job_id, Transition::Publish);
    if !crate::metrics::enabled() {
        return;
    }
    // The job as the announcement read it, else read now: one read per publish.
    let j = match announced {
        Some(j) => j,
        None => match ports.jobs.job(job_id) {
            Ok(Some(j)) => j,
            _ => return,
        },
    };
    let cost = crate::cost::compute_cost(
        j.tier,
        j.encode_secs + j.wasted_secs,
        crate::cost::WorkerSize::default(),
    );
    // A re-packaged version encoded no rung: its minutes were counted once, when encoded.
    let repackaged = j.settings.as_ref().is_some_and(|s| s.repackage.is_some());
    let output_minutes = if repackaged {
        0.0
    } else {
        crate::cost::output_minutes(j.duration_secs, j.rungs)
    };
    let mut values = vec![
        ("OutputMinutes", output_minutes, Unit::None),
        ("EstimatedCostUSD", cost, Unit::None),
    ];
    if let (Some(q), Some(s)) = (j.queued_at, j.started_at) {
        values.push(("QueueWaitSeconds", (s - q).max(0.0), Unit::Seconds));
    }
    emit(&values, &[]);
}

/// Each rendition's segments across chunks, checking all chunks of a rung can share one
/// init segment (same sample description); then the audio, subtitle and thumbnail tracks.
/// Also returns what is published besides tracks (the poster) and the source's subtitle
/// streams that are not (bitmap ones), for status.
fn build_tracks(
    doc: &str,
    mut results: Vec<(ItemRef, u32, String)>,
) -> Result<(Vec<Track>, Vec<Rendition>), String> {
    let jp: JobPlan = serde_json::from_str(doc).map_err(|e| e.to_string())?;
    let frame_rate = jp
        .media
        .video
        .as_ref()
        .map_or((0, 1), |v| (v.frame_rate.num, v.frame_rate.den));
    let order = |k: ItemKind| match k {
        ItemKind::Video => 0,
        ItemKind::Audio => 1,
        ItemKind::Text => 2,
        ItemKind::Analysis | ItemKind::Index => 3,
    };
    results.sort_by_key(|(item, _, _)| (order(item.kind), item.index));
    let mut by_rung: HashMap<String, Track> = HashMap::new();
    let mut stsd: HashMap<String, String> = HashMap::new();
    let mut audio = Vec::new();
    let mut texts = Vec::new();
    let mut tiles: Vec<SegmentRef> = Vec::new();
    let mut poster: Option<String> = None;
    let mut extras: Vec<Rendition> = Vec::new();
    for (item, _attempt, doc) in &results {
        let tracks: Vec<TrackResult> = serde_json::from_str(doc).map_err(|e| e.to_string())?;
        for t in tracks {
            if item.kind == ItemKind::Text {
                match text_track(item.index, t, &jp) {
                    Ok(track) => texts.push(track),
                    Err(skipped) => extras.push(*skipped),
                }
                continue;
            }
            if item.kind == ItemKind::Audio {
                let info = jp.media.audio.get(item.index as usize);
                let language = info.and_then(|a| a.language.clone());
                let mut name = info
                    .and_then(|a| a.title.clone())
                    .or_else(|| language.clone())
                    .unwrap_or_else(|| format!("Audio {}", item.index + 1));
                let surround =
                    t.name == vodpipe_media::encode::audio_rendition_name(item.index as usize, 6);
                if surround {
                    name.push_str(" 5.1");
                }
                audio.push(Track {
                    id: t.name,
                    kind: TrackKind::Audio {
                        language,
                        name,
                        channels: if surround { 6 } else { 2 },
                    },
                    codec: t.codec,
                    timescale: t.timescale,
                    init_uri: t.init_uri,
                    segments: t.segments,
                    protection: t.protection,
                    colour: None,
                });
                continue;
            }
            match t.name.as_str() {
                "thumbnails" => {
                    tiles.extend(t.segments);
                    continue;
                }
                "poster" => {
                    poster = Some(t.init_uri);
                    continue;
                }
                _ => {}
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
            if !by_rung.contains_key(&t.name) && t.init_uri.is_empty() {
                return Err(format!(
                    "{} of rung {} comes first but stored no init segment",
                    item.describe(),
                    t.name
                ));
            }
            let entry = by_rung.entry(t.name.clone()).or_insert_with(|| Track {
                id: t.name.clone(),
                kind: TrackKind::Video {
                    width: rung.width,
                    height: rung.height,
                    frame_rate,
                },
                codec: t.codec.clone(),
                timescale: t.timescale,
                init_uri: t.init_uri.clone(),
                segments: Vec::new(),
                protection: t.protection.clone(),
                colour: t.colour,
            });
            // One init segment and one key for every chunk of a rung.
            if entry.protection != t.protection {
                return Err(format!(
                    "{} of rung {} is protected differently from chunk 0 (scheme or key ID); cannot share one init segment",
                    item.describe(),
                    t.name
                ));
            }
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
    if tracks.is_empty() && audio.is_empty() {
        return Err("the job published nothing: no video rung and no audio track".into());
    }
    tracks.extend(audio);
    tracks.extend(texts);
    // Thumbnails only when every segment has its tile (a job planned before thumbnails
    // existed, or with them off, has none).
    if let Some(v) = jp.media.video.as_ref() {
        if !tiles.is_empty() && tiles.len() == expected_segments && jp.plan.end_ticks > 0 {
            let (width, height) = vodpipe_media::encode::thumbnail_size(v);
            tracks.push(Track {
                id: "thumbnails".into(),
                kind: TrackKind::Thumbnails {
                    width,
                    height,
                    columns: jp.plan.segments_per_chunk().max(1),
                },
                codec: "jpeg".into(),
                timescale: 1000,
                init_uri: String::new(),
                segments: tiles,
                protection: None,
                colour: None,
            });
        }
    }
    if let Some(uri) = poster {
        let size = vodpipe_media::encode::poster_size(&jp.rungs);
        extras.push(Rendition {
            id: "poster".into(),
            kind: "poster".into(),
            codec: "jpeg".into(),
            average_bps: 0,
            width: size.map(|s| s.0),
            height: size.map(|s| s.1),
            channels: None,
            language: None,
            trick_play: false,
            uri: Some(uri),
            protection: None,
            skipped: None,
            range: None,
        });
    }
    for (i, t) in jp.texts.iter().enumerate() {
        if let Some(why) = &t.skipped {
            extras.push(skipped_text(i, t.language.clone(), why.clone()));
        }
    }
    Ok((tracks, extras))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Tier;

    fn job(id: &str, asset: &str, created_at: f64, status: JobStatus) -> JobRecord {
        JobRecord {
            id: id.into(),
            source: "s3://in/show.mp4".into(),
            asset: asset.into(),
            tier: Tier::Standard,
            status,
            error: None,
            done: 0,
            total: 0,
            frames_done: 0,
            frames_total: 0,
            duration_secs: 0.0,
            rungs: 0,
            planned_cost_usd: None,
            attempts: 0,
            failures: 0,
            interruptions: 0,
            encode_secs: 0.0,
            wasted_secs: 0.0,
            created_at,
            queued_at: None,
            started_at: None,
            stitch_started_at: None,
            finished_at: None,
            stitch_count: 0,
            progress_at: None,
            stitch_failures: 0,
            stitch_error: None,
            repaired_at: None,
            master_key: None,
            dash_key: None,
            settings: None,
            renditions: Vec::new(),
            plan_id: None,
        }
    }

    #[test]
    fn only_finished_earlier_versions_down_to_the_last_published_are_retired() {
        let current = job("v5", "show", 50.0, JobStatus::Stitching);
        let versions = vec![
            job("v6", "show", 60.0, JobStatus::Encoding), // newer: untouched
            current.clone(),
            job("v4", "show", 40.0, JobStatus::Encoding), // still encoding: keeps its files
            job("v3", "show", 30.0, JobStatus::Failed),
            job("v2", "show", 20.0, JobStatus::Published),
            job("v1", "show", 10.0, JobStatus::Published), // retired when v2 was published
            job("x9", "show/ep1", 5.0, JobStatus::Published), // another asset
        ];
        assert_eq!(
            superseded_dirs(&current, &versions),
            vec!["show/v3/".to_string(), "show/v2/".to_string()]
        );
    }

    /// A re-packaged version of `from`, pointing into `reuses`.
    fn repackaged(
        id: &str,
        created_at: f64,
        from: &str,
        reuses: &[&str],
        revision: u32,
        status: JobStatus,
    ) -> JobRecord {
        let mut j = uploaded(id, created_at, "0055AED6DCD90281E5", status);
        if let Some(s) = j.settings.as_mut() {
            s.repackage = Some(crate::domain::Repackage {
                from: from.into(),
                reuses: reuses.iter().map(|r| r.to_string()).collect(),
                revision,
                base_created_at: 10.0,
                add: Vec::new(),
                replace: Vec::new(),
            });
        }
        j
    }

    #[test]
    fn no_publish_retires_a_directory_the_pointers_holder_points_into() {
        // v1 encoded; r1 and r2 re-packaged it (r2 also uses r1's subtitles).
        let v1 = uploaded("v1", 10.0, "0055AED6DCD90281E5", JobStatus::Published);
        let r1 = repackaged("r1", 20.0, "v1", &["v1"], 1, JobStatus::Published);
        let r2 = repackaged("r2", 30.0, "r1", &["v1", "r1"], 2, JobStatus::Stitching);
        // One upload's versions are ordered by re-packaging, whatever their clocks say.
        assert!(uploaded_later(&r2, &r1) && uploaded_later(&r1, &v1));
        let early = repackaged("r0", 1.0, "v1", &["v1"], 1, JobStatus::Stitching);
        assert!(uploaded_later(&early, &v1));
        // Without sequencers, a re-packaged version stands where its encoded version does:
        // behind an upload made after that one, whenever it was itself made.
        let plain = |j: &JobRecord| {
            let mut j = j.clone();
            if let Some(s) = j.settings.as_mut() {
                s.source_sequencer = None;
            }
            j
        };
        let newer = plain(&uploaded("v2", 15.0, "", JobStatus::Stitching));
        let late = plain(&repackaged(
            "r9",
            99.0,
            "v1",
            &["v1"],
            1,
            JobStatus::Stitching,
        ));
        assert!(uploaded_later(&newer, &late) && !uploaded_later(&late, &newer));
        assert!(uploaded_later(&late, &plain(&v1)));
        // r1 publishing retires nothing: v1 holds its segments.
        assert!(retired_dirs(&r1, std::slice::from_ref(&v1)).is_empty());
        // r2 publishing retires nothing either: it points into v1 and r1.
        let versions = vec![r2.clone(), r1.clone(), v1.clone()];
        assert!(retired_dirs(&r2, &versions).is_empty());
        // A new upload retires r2 and everything r2 pointed into.
        let done = repackaged("r2", 30.0, "r1", &["v1", "r1"], 2, JobStatus::Published);
        let v2 = uploaded("v2", 40.0, "0055AED6DCD90281F0", JobStatus::Stitching);
        let mut dirs = retired_dirs(&v2, &[done, r1, v1]);
        dirs.sort();
        assert_eq!(dirs, ["show/r1/", "show/r2/", "show/v1/"]);
    }

    #[test]
    fn an_older_version_finishing_late_does_not_take_the_pointers() {
        let late = job("v1", "show", 10.0, JobStatus::Stitching);
        let versions = vec![job("v2", "show", 20.0, JobStatus::Published), late.clone()];
        assert_eq!(
            newer_published(&late, &versions).map(|j| j.id.as_str()),
            Some("v2")
        );
        let newest = job("v3", "show", 30.0, JobStatus::Stitching);
        assert!(newer_published(&newest, &versions).is_none());
    }

    /// A job with the S3 event sequencer of its upload.
    fn uploaded(id: &str, created_at: f64, sequencer: &str, status: JobStatus) -> JobRecord {
        let mut j = job(id, "show", created_at, status);
        let mut s = crate::settings::fallback(
            "show.mp4",
            &crate::settings::SettingsPolicy::default(),
            4.0,
            &Default::default(),
            None,
        );
        s.source_sequencer = Some(sequencer.into());
        j.settings = Some(s);
        j
    }

    #[test]
    fn versions_are_ordered_by_upload_not_by_when_their_ingest_ran() {
        // The older upload's ingest was retried and ran after the newer one had published.
        let older = uploaded("v1", 90.0, "0055AED6DCD90281E5", JobStatus::Stitching);
        let newer = uploaded("v2", 20.0, "0055AED6DCD90281F0", JobStatus::Published);
        let versions = vec![older.clone(), newer.clone()];
        assert!(uploaded_later(&newer, &older) && !uploaded_later(&older, &newer));
        assert_eq!(
            newer_published(&older, &versions).map(|j| j.id.as_str()),
            Some("v2"),
            "the older upload would take the pointers"
        );
        // The older upload supersedes nothing; the newer retires it only once it is done.
        assert!(superseded_dirs(&older, &versions).is_empty());
        assert_eq!(
            superseded_dirs(&newer, std::slice::from_ref(&older)),
            Vec::<String>::new()
        );
        let done_older = uploaded("v1", 90.0, "0055AED6DCD90281E5", JobStatus::Published);
        assert_eq!(
            superseded_dirs(&newer, &[done_older]),
            vec!["show/v1/".to_string()]
        );
    }
}
