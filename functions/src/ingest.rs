//! The ingest function: S3 ObjectCreated records become jobs.
//!
//! Uploads arrive through a queue (S3 → SQS → ingest, [`handle_queued`]): a burst waits
//! there, at most the mapping's maximum concurrency runs at once, and an upload whose
//! settings file may still follow is delivered again later instead of sleeping in the
//! function. A failed try comes back after a back-off the function sets on its message.
//! An S3 event document sent straight to the function ([`handle`]) is handled too: a test
//! event, a replay, or the fleet ingesting a dead-lettered upload again.
//!
//! Each record is handled on its own: a key is URL-decoded, the object is read through
//! `head` for its version (so the job id matches what `vodpipe ingest` derives), and the
//! job is created idempotently: a duplicate delivery finds the job and queues nothing
//! new. The upload's own settings (metadata, a `<key>.vodpipe.json` beside it, the prefix
//! map) choose its tier and ladder ([`vodpipe_control::settings`]); settings files and
//! profiles are vodpipe's, not videos, and their events are skipped. A refused source (hostile, unsupported, unreadable) becomes a FAILED job with its
//! reason; that is a result, not an error, so it is never retried into a crash loop. Only
//! backend failures make the invocation fail, and Lambda then retries the whole event,
//! which the idempotent records before and after it survive unchanged.

use crate::env::Shared;
use crate::s3_keys::decode_key;
use crate::FunctionError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vodpipe_control::ingest::ingest;
use vodpipe_control::job::JobStatus;
use vodpipe_control::ports::PortError;

/// What happened to one record.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RecordOutcome {
    /// A job exists for the object (created now, or found from an earlier delivery).
    Job {
        /// Decoded object key.
        key: String,
        /// Job id.
        job_id: String,
        /// False for a duplicate delivery.
        created: bool,
        /// The job's state after this record.
        status: String,
    },
    /// Nothing to do: not an ObjectCreated event, another bucket, or the object is gone.
    Skipped {
        /// Decoded object key (raw when it did not decode).
        key: String,
        /// Why.
        reason: String,
    },
    /// A new upload without its settings file yet, younger than the settings wait, or a
    /// subtitle file whose video is being made: it is delivered again when the wait is over.
    Deferred {
        /// Decoded object key.
        key: String,
        /// Seconds until it is delivered again (the first time, with `backoff`).
        secs: f64,
        /// Whether the wait doubles with every delivery: a subtitle file waits for its
        /// video, which takes as long as it takes.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        backoff: bool,
    },
    /// A backend failure; the event is retried.
    Failed {
        /// Decoded object key.
        key: String,
        /// The error.
        error: String,
    },
}

/// The function's answer: one outcome per record, in event order.
#[derive(Debug, Clone, Serialize, Default)]
pub struct IngestReport {
    /// Outcomes.
    pub records: Vec<RecordOutcome>,
}

impl IngestReport {
    /// The failed records' count and first error.
    pub fn failures(&self) -> Option<FunctionError> {
        let failed: Vec<&String> = self
            .records
            .iter()
            .filter_map(|r| match r {
                RecordOutcome::Failed { error, .. } => Some(error),
                _ => None,
            })
            .collect();
        let first = failed.first()?;
        Some(FunctionError::Records {
            failed: failed.len(),
            total: self.records.len(),
            first: (*first).clone(),
        })
    }
}

/// The fields of an S3 event record ingest reads. Records are read one by one and only
/// for these fields, so one odd record (or a field S3 adds or an emulator leaves out)
/// costs that record, never the whole event.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct S3Record {
    /// `ObjectCreated:Put`, `ObjectRemoved:Delete`, …
    #[serde(rename = "eventName")]
    pub event_name: String,
    /// When the object was uploaded (ISO 8601, UTC).
    #[serde(rename = "eventTime")]
    pub event_time: Option<String>,
    /// Bucket and object.
    pub s3: S3Entity,
}

/// `s3` of a record.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct S3Entity {
    /// The bucket.
    pub bucket: S3Bucket,
    /// The object.
    pub object: S3Object,
}

/// `s3.bucket`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct S3Bucket {
    /// Bucket name.
    pub name: String,
}

/// `s3.object`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct S3Object {
    /// The key, URL-encoded as S3 sends it.
    pub key: String,
    /// The version the event is about (versioned buckets): the job is made for, and
    /// reads, exactly this version.
    #[serde(rename = "versionId")]
    pub version_id: Option<String>,
    /// S3's order of this key's events: a later upload of the key has a greater one,
    /// whichever event is delivered (or retried) first.
    pub sequencer: Option<String>,
}

/// Handles every record of an S3 event document (`{"Records": [...]}`), waiting in the
/// function for a missing settings file (up to `VODPIPE_SETTINGS_WAIT_SECONDS`).
pub fn handle(shared: &Shared, event: &Value) -> IngestReport {
    handle_document(shared, event, &shared.cfg, None)
}

/// Handles an S3 event document under `cfg`; with `defer`, a new upload without a settings
/// file is [`RecordOutcome::Deferred`] for that long instead of ingested.
fn handle_document(
    shared: &Shared,
    event: &Value,
    cfg: &vodpipe_control::pipeline::Config,
    defer: Option<f64>,
) -> IngestReport {
    let mut report = IngestReport::default();
    let records = event["Records"].as_array().cloned().unwrap_or_default();
    for raw in records {
        let outcome = match serde_json::from_value::<S3Record>(raw) {
            Ok(record) => handle_record(shared, &record, cfg, defer),
            Err(e) => RecordOutcome::Skipped {
                key: String::new(),
                reason: format!("not an S3 event record: {e}"),
            },
        };
        match &outcome {
            RecordOutcome::Failed { key, error } => {
                tracing::error!(%key, %error, "record failed; the event will be retried")
            }
            RecordOutcome::Skipped { key, reason } => tracing::info!(%key, %reason, "skipped"),
            RecordOutcome::Deferred { key, secs, .. } => {
                tracing::info!(%key, secs, "waiting (for a settings file, or for a version of its video to publish); delivered again later")
            }
            RecordOutcome::Job {
                key,
                job_id,
                created,
                status,
            } => tracing::info!(%key, job = %job_id, created, %status, "ingested"),
        }
        report.records.push(outcome);
    }
    report
}

/// One message of the upload queue's event: its id for `batchItemFailures`, the S3 event
/// document it carries, and what SQS says of its deliveries.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct QueuedUpload {
    /// The message id.
    #[serde(rename = "messageId")]
    pub message_id: String,
    /// Where a delay is set.
    #[serde(rename = "receiptHandle")]
    pub receipt_handle: String,
    /// The S3 event document (or S3's `s3:TestEvent`).
    pub body: String,
    /// `SentTimestamp` (ms, about when the upload completed) and
    /// `ApproximateReceiveCount`.
    pub attributes: std::collections::HashMap<String, String>,
}

/// A message to deliver again (`batchItemFailures` of an SQS partial batch response).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ItemFailure {
    /// The message id.
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// The answer to an invocation from the upload queue: the messages Lambda must not
/// delete, and what became of each upload.
#[derive(Debug, Clone, Serialize, Default)]
pub struct QueueReport {
    /// Failed tries and deferred uploads, delivered again after the delay set on them.
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<ItemFailure>,
    /// Every upload's outcome, in event order.
    pub records: Vec<RecordOutcome>,
}

/// How long a failed try waits before the upload is delivered again: doubling from 10 s
/// with each receive, at most 15 minutes (a throttled table or a flaky source recovers in
/// seconds; an outage takes longer, and the queue keeps uploads 14 days).
pub fn retry_delay(receive_count: u32) -> f64 {
    (10.0 * 2f64.powi(receive_count.saturating_sub(1).min(16) as i32)).min(900.0)
}

/// Handles an SQS event from the upload queue (batch size 1 in the template, any size
/// here). Nothing sleeps: an upload waiting for its settings file and a failed try are
/// both hidden on the queue for as long as they should wait and listed in
/// `batchItemFailures`, so Lambda leaves them there.
pub fn handle_queued(shared: &Shared, event: &Value) -> QueueReport {
    let mut report = QueueReport::default();
    let wait = shared.cfg.settings.settings_wait.as_secs_f64();
    // The wait is the queue's: the ingest itself never sleeps for a settings file.
    let mut cfg = shared.cfg.clone();
    cfg.settings.settings_wait = std::time::Duration::ZERO;
    let records = event["Records"].as_array().cloned().unwrap_or_default();
    for raw in records {
        let Ok(m) = serde_json::from_value::<QueuedUpload>(raw) else {
            tracing::error!("an SQS record without its fields; left to Lambda");
            continue;
        };
        let Ok(doc) = serde_json::from_str::<Value>(&m.body) else {
            // Redelivery would not make it parse; nothing in it can be ingested.
            tracing::error!(message = %m.message_id, "unreadable upload event; dropped");
            continue;
        };
        if doc.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
            continue;
        }
        let now_ms = vodpipe_media::process::now_secs() * 1000.0;
        let sent_ms = m
            .attributes
            .get("SentTimestamp")
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(now_ms);
        let left = wait - (now_ms - sent_ms) / 1000.0;
        let defer = (left > 0.0).then_some(left);
        let outcome = handle_document(shared, &doc, &cfg, defer);
        let receives = m
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(1);
        let delay = outcome
            .records
            .iter()
            .filter_map(|r| match r {
                RecordOutcome::Deferred {
                    secs,
                    backoff: true,
                    ..
                } => Some(deferral(*secs, receives)),
                RecordOutcome::Deferred { secs, .. } => Some(*secs),
                RecordOutcome::Failed { .. } => Some(retry_delay(receives)),
                _ => None,
            })
            .fold(None, |a: Option<f64>, s| Some(a.map_or(s, |a| a.max(s))));
        if let Some(secs) = delay {
            // Looked up only when needed: most uploads are ingested on their first try.
            let delayed = shared
                .aws
                .state
                .queues
                .raw(&shared.aws.settings.ingest_events_queue_name())
                .and_then(|q| match q {
                    Some(q) => q.delay(&m.receipt_handle, std::time::Duration::from_secs_f64(secs)),
                    None => Ok(()),
                });
            if let Err(e) = delayed {
                // It comes back after the queue's own visibility timeout instead.
                tracing::warn!(message = %m.message_id, error = %e, "could not set the upload's delay");
            }
            report.batch_item_failures.push(ItemFailure {
                item_identifier: m.message_id.clone(),
            });
        }
        report.records.extend(outcome.records);
    }
    report
}

/// Whether an invocation's event came from SQS (the upload queue) rather than from S3.
pub fn is_queue_event(event: &Value) -> bool {
    event["Records"][0]["eventSource"].as_str() == Some("aws:sqs")
}

fn handle_record(
    shared: &Shared,
    record: &S3Record,
    cfg: &vodpipe_control::pipeline::Config,
    defer: Option<f64>,
) -> RecordOutcome {
    let raw = record.s3.object.key.clone();
    let event_name = record.event_name.clone();
    let skipped = |key: &str, reason: String| RecordOutcome::Skipped {
        key: key.to_string(),
        reason,
    };
    if !event_name.starts_with("ObjectCreated:") {
        return skipped(&raw, format!("{event_name} is not an ObjectCreated event"));
    }
    let key = match decode_key(&raw) {
        Ok(k) => k,
        Err(e) => return skipped(&raw, e.to_string()),
    };
    if key.ends_with('/') {
        return skipped(&key, "a folder marker, not a video".into());
    }
    if vodpipe_control::settings::is_settings_key(&key) {
        // Read by the ingest of the video it belongs to (which waits a while for it).
        return skipped(
            &key,
            "a vodpipe settings file or profile, not a video".into(),
        );
    }
    let bucket = record.s3.bucket.name.clone();
    if bucket != shared.aws.settings.ingest_bucket {
        return skipped(
            &key,
            format!(
                "bucket {bucket:?} is not the ingest bucket {:?}",
                shared.aws.settings.ingest_bucket
            ),
        );
    }
    let uri = format!("s3://{bucket}/{key}");
    let version = record
        .s3
        .object
        .version_id
        .as_deref()
        .filter(|v| !v.is_empty() && *v != "null");
    if vodpipe_media::captions::is_sidecar_name(&key) {
        // This upload of the file: its version, else its event's place among the key's.
        let upload = version
            .map(str::to_string)
            .or_else(|| record.s3.object.sequencer.clone())
            .unwrap_or_default();
        let upload = vodpipe_control::repackage::Upload {
            uri: uri.clone(),
            version: upload,
            // Without a time (S3 always sends one) it counts as the file already listed:
            // a new file is still added, and a redelivery never re-converts.
            at: record
                .event_time
                .as_deref()
                .and_then(event_time_secs)
                .unwrap_or(0.0),
        };
        return handle_sidecar(shared, cfg, key, upload);
    }
    let source = match shared.aws.source_at(&uri, version) {
        Ok(s) => vodpipe_control::ingest::Source {
            sequencer: record.s3.object.sequencer.clone().filter(|s| !s.is_empty()),
            ..s
        },
        // Deleted (or overwritten and deleted) before the event arrived: nothing to encode.
        Err(PortError::NotFound(_)) => return skipped(&key, "the object no longer exists".into()),
        Err(e) => {
            return RecordOutcome::Failed {
                key,
                error: e.to_string(),
            }
        }
    };
    if let Some(secs) = defer {
        match vodpipe_control::ingest::awaits_settings_file(shared.aws.ports(), &source) {
            Ok(true) => {
                return RecordOutcome::Deferred {
                    key,
                    secs,
                    backoff: false,
                }
            }
            Ok(false) => {}
            Err(e) => {
                return RecordOutcome::Failed {
                    key,
                    error: e.to_string(),
                }
            }
        }
    }
    // A FAILED job is not retried on a duplicate delivery: the same bytes would fail the
    // same way. Uploading the object again (a new version) makes a new job.
    match ingest(shared.aws.ports(), cfg, &source, false) {
        // Another ingest holds the job in PROBING (a concurrent delivery, or one that died).
        // Fail the record so Lambda retries it; once the holder is presumed dead the retry
        // takes the job over, and the fleet's sweep covers whatever retries do not.
        Ok(ing) if matches!(ing.status, JobStatus::Queued | JobStatus::Probing) => {
            RecordOutcome::Failed {
                key,
                error: format!("job {} is being probed by another ingest", ing.job_id),
            }
        }
        Ok(ing) => RecordOutcome::Job {
            key,
            job_id: ing.job_id,
            created: ing.created,
            status: ing.status.as_str().to_string(),
        },
        Err(e) => RecordOutcome::Failed {
            key,
            error: e.to_string(),
        },
    }
}

/// A subtitle file uploaded beside a video: before the video, its ingest picks the file up;
/// after the video published, a re-packaged version adds it with no encode; while a version
/// is being made, the upload waits on the queue and is tried again.
fn handle_sidecar(
    shared: &Shared,
    cfg: &vodpipe_control::pipeline::Config,
    key: String,
    upload: vodpipe_control::repackage::Upload,
) -> RecordOutcome {
    use vodpipe_control::repackage::{repackage, videos_beside, Outcome};
    let ports = shared.aws.ports();
    let failed = |key: String, e: PortError| RecordOutcome::Failed {
        key,
        error: e.to_string(),
    };
    let videos = match videos_beside(ports, &upload.uri) {
        Ok(v) => v,
        Err(e) => return failed(key, e),
    };
    let again = [upload];
    let mut outcome = RecordOutcome::Skipped {
        key: key.clone(),
        reason: "a subtitle file with no video beside it yet: the video's ingest picks it up"
            .into(),
    };
    for video in videos {
        match repackage(ports, cfg, &video, &again, false) {
            Ok(Outcome::Started(ing)) => {
                outcome = RecordOutcome::Job {
                    key: key.clone(),
                    job_id: ing.job_id,
                    created: ing.created,
                    status: ing.status.as_str().to_string(),
                }
            }
            Ok(Outcome::InFlight {
                job_id,
                repackaging,
            }) => {
                tracing::info!(%key, job = %job_id, "a version of its video is being made; tried again later");
                return RecordOutcome::Deferred {
                    key,
                    secs: if repackaging {
                        REPACKAGE_RETRY_SECS
                    } else {
                        ENCODE_RETRY_SECS
                    },
                    backoff: true,
                };
            }
            Ok(Outcome::Unchanged { published }) => {
                if matches!(outcome, RecordOutcome::Skipped { .. }) {
                    outcome = RecordOutcome::Skipped {
                        key: key.clone(),
                        reason: format!("version {published} of {video} already has it"),
                    };
                }
            }
            Ok(Outcome::NothingPublished) => {}
            Err(e) => return failed(key, e),
        }
    }
    outcome
}

/// An S3 event's `eventTime` (`2026-12-06T23:39:21.123Z`, always UTC) in Unix seconds.
fn event_time_secs(s: &str) -> Option<f64> {
    let (date, time) = s.trim_end_matches('Z').split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec = t.next()?.parse::<f64>().ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + sec)
}

/// How long a subtitle file uploaded while its video is being encoded first waits on the
/// queue before it is tried again; each wait doubles ([`deferral`]).
const ENCODE_RETRY_SECS: f64 = 900.0;

/// The same while another re-packaged version is being made (another subtitle file
/// uploaded with this one): seconds of work.
const REPACKAGE_RETRY_SECS: f64 = 60.0;

/// The longest a message may stay hidden (SQS's visibility limit, 12 hours).
const MAX_HIDDEN_SECS: f64 = 43_200.0;

/// The wait before delivery `receives + 1` of an upload deferred by `first` seconds: it
/// doubles with each delivery, at most 12 hours. From 15 minutes, the upload queue's 8
/// receives span about 40 hours before the upload goes to the dead letters, where the
/// fleet's tick keeps trying it (`fleet::redrive_ingest_events`).
pub fn deferral(first: f64, receives: u32) -> f64 {
    (first * 2f64.powi(receives.saturating_sub(1).min(16) as i32)).min(MAX_HIDDEN_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(path: &str) -> Vec<S3Record> {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        v["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| serde_json::from_value(r.clone()).unwrap())
            .collect()
    }

    #[test]
    fn the_sample_events_parse_and_their_keys_decode() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../events/");
        let put = records(&format!("{dir}s3-put-encoded-key.json"));
        assert_eq!(put[0].event_name, "ObjectCreated:Put");
        assert_eq!(
            put[0].s3.object.sequencer.as_deref(),
            Some("0055AED6DCD90281E5")
        );
        assert_eq!(
            decode_key(&put[0].s3.object.key).unwrap(),
            "uploads/My Clip +1 é.mp4"
        );
        let many = records(&format!("{dir}s3-multiple-records.json"));
        assert_eq!(many.len(), 3);
        assert_eq!(many[2].event_name, "ObjectRemoved:Delete");
    }

    #[test]
    fn event_times_read_as_unix_seconds() {
        assert_eq!(event_time_secs("1970-01-01T00:00:00.000Z"), Some(0.0));
        assert_eq!(event_time_secs("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        assert_eq!(
            event_time_secs("2026-12-06T23:39:21.5Z"),
            Some(1_796_600_361.5)
        );
        assert_eq!(event_time_secs("yesterday"), None);
    }

    #[test]
    fn a_subtitle_file_waits_longer_each_time_up_to_the_visibility_limit() {
        let waits: Vec<f64> = (1..=8).map(|r| deferral(ENCODE_RETRY_SECS, r)).collect();
        assert_eq!(
            waits,
            [900.0, 1800.0, 3600.0, 7200.0, 14_400.0, 28_800.0, 43_200.0, 43_200.0]
        );
        // About 40 hours before the dead letters, where the tick keeps trying it.
        assert!((waits.iter().sum::<f64>() / 3600.0 - 39.75).abs() < 0.01);
        assert_eq!(deferral(REPACKAGE_RETRY_SECS, 1), 60.0);
    }

    #[test]
    fn a_record_without_optional_sections_still_parses() {
        // What an emulator (or a hand-written test event) may send: no userIdentity,
        // requestParameters or responseElements.
        let r: S3Record = serde_json::from_value(serde_json::json!({
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "b"}, "object": {"key": "a+b.mp4"}}
        }))
        .unwrap();
        assert_eq!(r.s3.bucket.name, "b");
        assert_eq!(decode_key(&r.s3.object.key).unwrap(), "a b.mp4");
    }
}
