//! Re-packaging: a published version's segments published again under new manifests, as a
//! new version of the asset, with no encode.
//!
//! Subtitles are delivered days after their video, and a subtitle file must not cost an
//! encode. A re-packaged version is a job like any other: made once (its id is a hash of
//! the version it starts from and a try number, so a repeated event, or a second file
//! uploaded at once, finds it), its new subtitle files converted by work items, then
//! stitched and published by moving the pointers, so every rule of versions holds: an
//! older version never takes the pointers back, a newer upload wins. Its manifests point into the directories of the versions that
//! made each segment (`../<job>/…`, as players resolve relative URIs), and no publish
//! retires a directory that the version holding the pointers points into
//! ([`crate::stitch::retired_dirs`]).
//!
//! What it starts from is what the published version kept beside its manifests
//! ([`crate::outputs::Published`]) and that version's plan, which the job store keeps for
//! 30 days after it was made; a version older than that is made again by uploading its
//! video again.

use crate::domain::{ItemKind, ItemRef, JobRecord, JobStatus, Message, Queue, Repackage};
use crate::domain::{Rendition, Transition};
use crate::ingest::Ingested;
use crate::outputs::{job_dir, Published, TrackResult, TRACKS_JSON};
use crate::pipeline::{Config, JobPlan, Ports, TextSource, TextTrack};
use crate::ports::{PortError, PortResult};
use crate::versions::uploaded_later;
use vodpipe_media::package::{Track, TrackKind};

/// What a request to re-package a source led to.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A re-packaged version was made (or found: the request was made before).
    Started(Ingested),
    /// The published version already has every subtitle file beside its source.
    Unchanged {
        /// The published version.
        published: String,
    },
    /// A version of the source is still being made; ask again once it is published (its
    /// subtitle files were listed when it was planned, and this one may not be among them).
    InFlight {
        /// The version being made.
        job_id: String,
        /// Whether it is a re-packaged version (done in seconds, not an encode).
        repackaging: bool,
    },
    /// No version of the source is published: its ingest lists the subtitle files beside it.
    NothingPublished,
}

/// One upload of a subtitle file: what tells a file uploaded again from the one a
/// published version already has.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    /// The file (a path or an `s3://` URI).
    pub uri: String,
    /// Which upload of it (an S3 version id or event sequencer, a local size and mtime).
    pub version: String,
    /// When it was uploaded (Unix seconds).
    pub at: f64,
}

/// How many re-packaged versions one published version may have tried (each failed one
/// makes way for the next): a bound on a file that fails the same way every time.
const MAX_TRIES: u32 = 8;

/// Re-packages the newest published version of `source_uri` with the subtitle files beside
/// it that it does not have yet, and those of `uploads` that it has but that were uploaded
/// again after it listed them, as a new version of the asset. With `force`, a version is
/// made even when nothing changed: the manifests are written again by this build's
/// packager.
///
/// One published version has one re-packaged version at a time: its id is a hash of the
/// version it starts from and a try number, and a conditional create decides between two
/// requests made at once. A request the version being made does not cover waits
/// ([`Outcome::InFlight`]) and is decided again against that version once it is published.
pub fn repackage(
    ports: Ports<'_>,
    cfg: &Config,
    source_uri: &str,
    uploads: &[Upload],
    force: bool,
) -> PortResult<Outcome> {
    let versions = ports.jobs.jobs_by_source(source_uri)?;
    let holder = versions
        .iter()
        .filter(|v| v.status == JobStatus::Published)
        .fold(None, |best: Option<&JobRecord>, v| match best {
            Some(b) if !uploaded_later(v, b) => Some(b),
            _ => Some(v),
        });
    let waiting = |v: &JobRecord| Outcome::InFlight {
        job_id: v.id.clone(),
        repackaging: v.settings.as_ref().is_some_and(|s| s.repackage.is_some()),
    };
    let in_flight = versions
        .iter()
        .find(|v| !v.status.is_final() && holder.is_none_or(|h| !uploaded_later(h, v)));
    let Some(holder) = holder else {
        return Ok(in_flight.map_or(Outcome::NothingPublished, waiting));
    };
    let sidecars = crate::ingest::sidecars_beside(ports, source_uri)?;
    let plan = match holder_plan(ports, &holder.id) {
        Ok(plan) => plan,
        // Expired: a job of its own says so, once, and fails with the reason.
        Err(PortError::NotFound(_)) => {
            let id = crate::job::job_id("repackage", &holder.id, "no plan");
            let (job, _) = create_version(ports, cfg, holder, &id, sidecars, Vec::new())?;
            return resume(ports, cfg, &job).map(Outcome::Started);
        }
        Err(e) => return Err(e),
    };
    // The live track of each file, and when the file was listed for it.
    let live: Vec<(&str, Option<f64>)> = plan
        .texts
        .iter()
        .filter(|t| t.skipped.is_none())
        .filter_map(|t| match &t.from {
            TextSource::Sidecar(uri) => Some((uri.as_str(), t.listed_at)),
            TextSource::Stream(_) => None,
        })
        .collect();
    let listed = |uri: &str| live.iter().find(|(u, _)| *u == uri).map(|(_, at)| *at);
    // Uploaded after its track's file was listed (by whichever version listed it).
    let again = |uri: &str| {
        let since = listed(uri).flatten().unwrap_or(holder.created_at);
        uploads.iter().any(|u| u.uri == uri && u.at > since)
    };
    let add: Vec<(String, String)> = sidecars
        .into_iter()
        .filter(|(_, uri)| listed(uri).is_none() || again(uri))
        .collect();
    let replace: Vec<String> = add
        .iter()
        .filter(|(_, uri)| listed(uri).is_some())
        .map(|(_, uri)| uri.clone())
        .collect();
    if add.is_empty() && !force {
        // A version being made may lack a file uploaded after its ingest listed them.
        return Ok(in_flight.map_or(
            Outcome::Unchanged {
                published: holder.id.clone(),
            },
            waiting,
        ));
    }
    if let Some(v) = in_flight {
        if v.settings
            .as_ref()
            .and_then(|s| s.repackage.as_ref())
            .is_none()
        {
            // A newer upload is being encoded: this request is decided once it publishes.
            return Ok(waiting(v));
        }
    }
    for attempt in 1..=MAX_TRIES {
        let id = crate::job::job_id("repackage", &holder.id, &attempt.to_string());
        let existing = match ports.jobs.job(&id)? {
            Some(job) => job,
            None => {
                let (job, created) =
                    create_version(ports, cfg, holder, &id, add.clone(), replace.clone())?;
                if created {
                    return resume(ports, cfg, &job).map(Outcome::Started);
                }
                // Another request created it first: decided below as any existing one.
                job
            }
        };
        if existing.status == JobStatus::Failed {
            continue;
        }
        // The version this request would make, or one made by another request: it serves
        // this one if it adds every file this one would.
        let covers = existing
            .settings
            .as_ref()
            .and_then(|s| s.repackage.as_ref())
            .is_some_and(|r| {
                add.iter().all(|a| r.add.contains(a))
                    && replace.iter().all(|u| r.replace.contains(u))
            });
        if covers {
            return resume(ports, cfg, &existing).map(Outcome::Started);
        }
        return Ok(waiting(&existing));
    }
    Err(PortError::Conflict(format!(
        "version {} of {source_uri} has failed to re-package {MAX_TRIES} times",
        holder.id
    )))
}

/// Creates re-packaged version `id` of `holder` (adding `add`, replacing `replace`) unless
/// it exists; the job, and whether this call created it.
fn create_version(
    ports: Ports<'_>,
    cfg: &Config,
    holder: &JobRecord,
    id: &str,
    add: Vec<(String, String)>,
    replace: Vec<String>,
) -> PortResult<(JobRecord, bool)> {
    let settings = settings_for(cfg, holder, add, replace);
    ports
        .jobs
        .create_job(id, &holder.source, &holder.asset, holder.tier, &settings)
}

/// The settings of a re-packaged version of `holder` that adds `add` and replaces
/// `replace`: the holder's own (the upload's choices), with what it is made of.
fn settings_for(
    cfg: &Config,
    holder: &JobRecord,
    add: Vec<(String, String)>,
    replace: Vec<String>,
) -> crate::domain::JobSettings {
    let from = holder.settings.as_ref().and_then(|s| s.repackage.as_ref());
    let mut reuses = from.map(|r| r.reuses.clone()).unwrap_or_default();
    reuses.push(holder.id.clone());
    let mut settings = match holder.settings.clone() {
        Some(s) => s,
        None => crate::settings::fallback(
            &holder.asset,
            &cfg.settings,
            cfg.plan.segment_secs,
            &cfg.ladder,
            None,
        ),
    };
    settings.refusal = None;
    settings.repackage = Some(Repackage {
        from: holder.id.clone(),
        reuses,
        revision: from.map_or(0, |r| r.revision) + 1,
        base_created_at: from.map_or(holder.created_at, |r| r.base_created_at),
        add,
        replace,
    });
    settings
}

/// Plans and queues re-packaged version `job` if nobody has (a new one, or one whose maker
/// died): the version it starts from with its subtitle files added, a work item for each,
/// and the stitch at once when there is none. What it plans was decided when it was made.
pub fn resume(ports: Ports<'_>, cfg: &Config, job: &JobRecord) -> PortResult<Ingested> {
    let unchanged = |status| {
        Ok(Ingested {
            job_id: job.id.clone(),
            created: false,
            status,
        })
    };
    let claimed = match job.status {
        JobStatus::Queued => crate::moves::apply(ports, &job.id, Transition::Claim, None)?,
        JobStatus::Probing => ports
            .jobs
            .claim_probe(&job.id, crate::ingest::abandoned_after(cfg))?,
        JobStatus::Encoding => {
            // As ingest does: a job whose items were all queued lately is left alone; one
            // whose maker died part-way has them queued again.
            let recent = job.queued_at.is_some_and(|q| {
                vodpipe_media::process::now_secs() - q < 2.0 * cfg.lease_ttl.as_secs_f64()
            });
            if !recent {
                crate::ingest::requeue_unfinished(ports, &job.id, job.tier)?;
            }
            // Nothing to convert, and its maker died before asking for the stitch.
            if job.total == 0 {
                request_stitch(ports, &job.id)?;
            }
            return unchanged(JobStatus::Encoding);
        }
        status => return unchanged(status),
    };
    if !claimed {
        let status = ports.jobs.job(&job.id)?.map_or(job.status, |j| j.status);
        return unchanged(status);
    }
    let Some(r) = job.settings.as_ref().and_then(|s| s.repackage.as_ref()) else {
        return Err(PortError::Backend(format!(
            "job {} is not a re-packaged version",
            job.id
        )));
    };
    let mut jp = match holder_plan(ports, &r.from) {
        Ok(jp) => jp,
        Err(PortError::NotFound(_)) => {
            let why = format!(
                "the plan of version {} is no longer kept (the job store keeps a plan 30 days); upload the video again to publish it with these subtitles",
                r.from
            );
            crate::moves::apply(ports, &job.id, Transition::Refuse, Some(&why))?;
            return unchanged(JobStatus::Failed);
        }
        Err(e) => {
            crate::moves::apply(ports, &job.id, Transition::GiveBack, None)?;
            return Err(e);
        }
    };
    let first_new = add_texts(&mut jp, r, job.created_at);
    let items: Vec<(ItemRef, u64)> = (first_new..jp.texts.len())
        .filter(|&i| jp.texts[i].skipped.is_none())
        .map(|i| {
            let item = ItemRef {
                job_id: job.id.clone(),
                kind: ItemKind::Text,
                index: i as u32,
            };
            (item, 0)
        })
        .collect();
    let (doc, duration) = crate::ingest::plan_record(&mut jp)?;
    if !ports.jobs.save_plan(
        &job.id,
        &doc,
        duration,
        jp.plan.total_frames,
        jp.rungs.len() as u32,
        0.0,
        &items,
    )? {
        let status = ports.jobs.job(&job.id)?.map_or(job.status, |j| j.status);
        return unchanged(status);
    }
    crate::moves::entered(ports, &job.id, Transition::Plan);
    if items.is_empty() {
        // Nothing to convert: straight to the stitch.
        request_stitch(ports, &job.id)?;
    } else {
        let messages: Vec<Message> = items
            .iter()
            .map(|(i, _)| Message::Item(i.clone()))
            .collect();
        ports.queue.send_many(Queue::Work(job.tier), &messages)?;
        ports.jobs.all_queued(&job.id)?;
        if let Err(e) = ports.fleet.ensure_capacity(job.tier, items.len() as u32) {
            tracing::warn!(error = %e, "could not ensure worker capacity; queued work waits for workers");
        }
    }
    tracing::info!(job = %job.id, from = %r.from, subtitles = items.len(), "re-packaging planned");
    Ok(Ingested {
        job_id: job.id.clone(),
        created: true,
        status: JobStatus::Encoding,
    })
}

/// Moves a re-packaged version with nothing to convert from ENCODING to STITCHING and asks
/// for its stitch; a repeat (the move already made) asks again, which a stitch of a job no
/// longer STITCHING ignores.
pub(crate) fn request_stitch(ports: Ports<'_>, id: &str) -> PortResult<()> {
    crate::moves::apply(ports, id, Transition::Complete, None)?;
    ports.queue.send(
        Queue::Stitch,
        &Message::Stitch {
            job_id: id.to_string(),
        },
    )
}

/// The plan of published version `id`.
fn holder_plan(ports: Ports<'_>, id: &str) -> PortResult<JobPlan> {
    let doc = ports.jobs.plan_doc(id)?;
    serde_json::from_str(&doc)
        .map_err(|e| PortError::Backend(format!("the plan of job {id} does not parse: {e}")))
}

/// Adds `r`'s subtitle files to the plan of the version it starts from, after every track
/// that version has (whose indices, and so whose track names, stay as they were), and marks
/// the tracks of files uploaded again as replaced. Returns the first new track's index.
fn add_texts(jp: &mut JobPlan, r: &Repackage, listed_at: f64) -> usize {
    for t in jp.texts.iter_mut().filter(|t| t.skipped.is_none()) {
        if matches!(&t.from, TextSource::Sidecar(uri) if r.replace.contains(uri)) {
            t.skipped = Some("replaced by a newer upload of its file".into());
            t.name = format!("{} (replaced)", t.name);
        }
    }
    let first = jp.texts.len();
    jp.texts.extend(
        r.add
            .iter()
            .map(|(language, uri)| TextTrack::sidecar(language.clone(), uri.clone(), listed_at)),
    );
    TextTrack::settle(&mut jp.texts);
    first
}

/// The tracks re-packaged version `job` publishes: those of the version it starts from
/// (their URIs pointed into that version's directory, unless they already point into
/// another), less the subtitles it replaces, with its own subtitle items' tracks. The
/// outer error is the store's (the stitch is retried); the inner one makes the job fail.
#[allow(clippy::type_complexity)]
pub fn tracks(
    ports: Ports<'_>,
    job: &JobRecord,
    r: &Repackage,
    doc: &str,
    results: Vec<(ItemRef, u32, String)>,
) -> PortResult<Result<(Vec<Track>, Vec<Rendition>), String>> {
    let key = format!("{}/{TRACKS_JSON}", job_dir(&job.asset, &r.from));
    let published: Published = match ports.objects.get(&key) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(p) => p,
            Err(e) => return Ok(Err(format!("{key} does not parse: {e}"))),
        },
        Err(PortError::NotFound(_)) => {
            return Ok(Err(format!(
                "version {} kept no list of its tracks ({key}: it was published by an earlier vodpipe); upload the video again",
                r.from
            )))
        }
        Err(e) => return Err(e),
    };
    let jp: JobPlan = match serde_json::from_str(doc) {
        Ok(jp) => jp,
        Err(e) => return Ok(Err(e.to_string())),
    };
    // Its own conversions first: a file uploaded again replaces its earlier track only if
    // the new upload converted (an unreadable correction must not take the subtitles away).
    let mut converted: Vec<Track> = Vec::new();
    let mut extras: Vec<Rendition> = Vec::new();
    let mut replaced_by: Vec<&str> = Vec::new();
    for (item, _, doc) in results {
        if item.kind != ItemKind::Text {
            return Ok(Err(format!(
                "a re-packaged version encoded {}",
                item.describe()
            )));
        }
        let done: Vec<TrackResult> = match serde_json::from_str(&doc) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e.to_string())),
        };
        for t in done {
            match crate::outputs::text_track(item.index, t, &jp) {
                Ok(track) => {
                    if let Some(TextSource::Sidecar(uri)) =
                        jp.texts.get(item.index as usize).map(|x| &x.from)
                    {
                        replaced_by.push(uri);
                    }
                    converted.push(track)
                }
                Err(skipped) => extras.push(*skipped),
            }
        }
    }
    // The ids of the tracks it replaces: a subtitle track is named for its index.
    let replaced: Vec<String> = jp
        .texts
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            t.skipped.is_some()
                && matches!(&t.from, TextSource::Sidecar(uri)
                    if r.replace.contains(uri) && replaced_by.contains(&uri.as_str()))
        })
        .map(|(i, _)| format!("text_{i}"))
        .collect();
    let mut tracks: Vec<Track> = Vec::new();
    let mut thumbnails: Vec<Track> = Vec::new();
    for mut t in published.tracks {
        if replaced.contains(&t.id) {
            continue;
        }
        t.init_uri = rebase(&t.init_uri, &r.from);
        for s in &mut t.segments {
            s.uri = rebase(&s.uri, &r.from);
        }
        match t.kind {
            TrackKind::Thumbnails { .. } => thumbnails.push(t),
            _ => tracks.push(t),
        }
    }
    extras.splice(
        0..0,
        published
            .extras
            .into_iter()
            .filter(|e| !replaced.contains(&e.id))
            .map(|mut e| {
                e.uri = e.uri.map(|u| rebase(&u, &r.from));
                e
            }),
    );
    tracks.extend(converted);
    // New files beyond the most subtitle tracks an asset publishes had no item.
    let first_new = jp.texts.len().saturating_sub(r.add.len());
    for (i, t) in jp.texts.iter().enumerate().skip(first_new) {
        if let Some(why) = &t.skipped {
            extras.push(crate::outputs::skipped_text(
                i,
                t.language.clone(),
                why.clone(),
            ));
        }
    }
    tracks.extend(thumbnails);
    Ok(Ok((tracks, extras)))
}

/// `uri`, relative to the directory of job `from`, made relative to a sibling directory
/// of the same asset: unchanged when it already points into a sibling (`../<job>/…`).
pub fn rebase(uri: &str, from: &str) -> String {
    if uri.is_empty() || uri.starts_with("../") {
        uri.to_string()
    } else {
        format!("../{from}/{uri}")
    }
}

/// The videos a subtitle file `sidecar` (`talk.en.srt`) belongs to: the files beside it
/// named `talk.<extension>` that are neither subtitles nor settings files. Each may have a
/// published version to re-package.
pub fn videos_beside(ports: Ports<'_>, sidecar: &str) -> PortResult<Vec<String>> {
    let (dir, name) = sidecar.rsplit_once('/').unwrap_or(("", sidecar));
    // `talk.en.srt`: the video's stem is the name less its language and extension.
    let mut parts = name.rsplitn(3, '.');
    let (Some(_ext), Some(_lang), Some(stem)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(Vec::new());
    };
    // Listing what is beside a made-up `<stem>.?` lists every `<stem>.*`.
    let probe = if dir.is_empty() {
        format!("{stem}.?")
    } else {
        format!("{dir}/{stem}.?")
    };
    Ok(ports
        .objects
        .source_siblings(&probe)?
        .into_iter()
        .filter(|uri| {
            let file = uri.rsplit('/').next().unwrap_or(uri);
            !vodpipe_media::captions::is_sidecar_name(file)
                && !crate::settings::is_settings_key(file)
                && file
                    .strip_prefix(stem)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|ext| !ext.is_empty() && !ext.contains('.'))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_point_into_the_directory_that_holds_the_segments() {
        assert_eq!(
            rebase("c00000.1/720p/init.mp4", "aaaa"),
            "../aaaa/c00000.1/720p/init.mp4"
        );
        // Already in a sibling: a re-packaging of a re-packaging points where the first did.
        assert_eq!(
            rebase("../bbbb/c00000.1/x.m4s", "aaaa"),
            "../bbbb/c00000.1/x.m4s"
        );
        assert_eq!(rebase("", "aaaa"), "");
        assert_eq!(
            crate::outputs::resolve("show/cccc", "../bbbb/c00000.1/poster.jpg"),
            "show/bbbb/c00000.1/poster.jpg"
        );
    }
}
