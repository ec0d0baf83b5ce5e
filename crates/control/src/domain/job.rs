//! A job as everyone reads it: its state, its record and what it published.

use super::{JobSettings, Tier};
use serde::{Deserialize, Serialize};

/// The states a job moves through, in order; PUBLISHED and FAILED are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Accepted, not yet probed.
    Queued,
    /// Being probed and planned.
    Probing,
    /// Chunks and audio are being encoded.
    Encoding,
    /// All work done; manifests are being written.
    Stitching,
    /// Manifests published; final.
    Published,
    /// Stopped with a reason; final.
    Failed,
}

impl JobStatus {
    /// All states, in lifecycle order.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Probing,
        JobStatus::Encoding,
        JobStatus::Stitching,
        JobStatus::Published,
        JobStatus::Failed,
    ];

    /// The stored/displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "QUEUED",
            JobStatus::Probing => "PROBING",
            JobStatus::Encoding => "ENCODING",
            JobStatus::Stitching => "STITCHING",
            JobStatus::Published => "PUBLISHED",
            JobStatus::Failed => "FAILED",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    /// Whether nothing more will happen to the job.
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Published | JobStatus::Failed)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every change of a job's state the lifecycle allows, named for why it happens. Each
/// names the states it leaves and the one it enters ([`Transition::from`],
/// [`Transition::to`]), so the job store's conditional writes take both from here and no
/// caller picks a pair of its own. A job is born QUEUED ([`crate::ports::JobStore::create_job`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// An ingest takes a job nobody is probing (new, or given back) to probe it.
    Claim,
    /// An ingest that could not probe, for reasons not the source's own, gives it back.
    GiveBack,
    /// The plan is saved and every item made: encoding starts.
    Plan,
    /// The source or the upload's settings are refused.
    Refuse,
    /// The last item commits: the job waits for its stitch.
    Complete,
    /// The stitch published the asset's pointers.
    Publish,
    /// An item failed for good (a permanent error, a dead letter): the encode stops.
    FailEncode,
    /// The stitch found the results unusable, or its request kept dying.
    FailStitch,
    /// A failed job is made again from its source (a new upload of the same version).
    Reset,
}

impl Transition {
    /// Every transition.
    pub const ALL: [Transition; 9] = [
        Transition::Claim,
        Transition::GiveBack,
        Transition::Plan,
        Transition::Refuse,
        Transition::Complete,
        Transition::Publish,
        Transition::FailEncode,
        Transition::FailStitch,
        Transition::Reset,
    ];

    /// The states it leaves: the condition of its write.
    pub fn from(self) -> &'static [JobStatus] {
        use JobStatus::*;
        match self {
            Transition::Claim => &[Queued],
            Transition::GiveBack | Transition::Plan | Transition::Refuse => &[Probing],
            Transition::Complete | Transition::FailEncode => &[Encoding],
            Transition::Publish | Transition::FailStitch => &[Stitching],
            Transition::Reset => &[Failed],
        }
    }

    /// The state it enters.
    pub fn to(self) -> JobStatus {
        match self {
            Transition::Claim => JobStatus::Probing,
            Transition::GiveBack | Transition::Reset => JobStatus::Queued,
            Transition::Plan => JobStatus::Encoding,
            Transition::Complete => JobStatus::Stitching,
            Transition::Publish => JobStatus::Published,
            Transition::Refuse | Transition::FailEncode | Transition::FailStitch => {
                JobStatus::Failed
            }
        }
    }

    /// Whether the state it enters is one a user acts on (planned, published, failed):
    /// those are counted and announced ([`crate::moves`]); the steps between are not.
    pub fn announced(self) -> bool {
        matches!(
            self,
            Transition::Plan
                | Transition::Publish
                | Transition::Refuse
                | Transition::FailEncode
                | Transition::FailStitch
        )
    }

    /// The transition from `from` to `to`, if the lifecycle has one.
    pub fn between(from: JobStatus, to: JobStatus) -> Option<Transition> {
        Transition::ALL
            .into_iter()
            .find(|t| t.to() == to && t.from().contains(&from))
    }
}

/// A job as the job store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job id.
    pub id: String,
    /// Source URI or path.
    pub source: String,
    /// Asset name (output prefix).
    pub asset: String,
    /// Tier.
    pub tier: Tier,
    /// State.
    pub status: JobStatus,
    /// Reason, when FAILED.
    pub error: Option<String>,
    /// Items done.
    pub done: u32,
    /// Items in all.
    pub total: u32,
    /// Frames encoded (chunks done plus progress of chunks in flight).
    pub frames_done: u64,
    /// Source frames.
    pub frames_total: u64,
    /// Source duration, seconds.
    pub duration_secs: f64,
    /// Video renditions.
    pub rungs: u32,
    /// What the plan was estimated to cost before anything was encoded (USD, list
    /// prices); none before the job is planned.
    pub planned_cost_usd: Option<f64>,
    /// Encode attempts started.
    pub attempts: u32,
    /// Attempts that failed.
    pub failures: u32,
    /// Attempts cut short by an interruption (SIGTERM, Spot reclaim).
    pub interruptions: u32,
    /// Seconds of encoding that produced committed results.
    pub encode_secs: f64,
    /// Seconds of encoding thrown away (failed or interrupted attempts).
    pub wasted_secs: f64,
    /// Created (seconds since the epoch).
    pub created_at: f64,
    /// Every item's message sent (just after ENCODING is entered).
    pub queued_at: Option<f64>,
    /// First item leased.
    pub started_at: Option<f64>,
    /// STITCHING entered.
    pub stitch_started_at: Option<f64>,
    /// PUBLISHED or FAILED entered.
    pub finished_at: Option<f64>,
    /// Times published (the conditional transition keeps it at 1; counted to prove it).
    pub stitch_count: u32,
    /// The last item committed (seconds since the epoch): how the sweep for stalled jobs
    /// tells a job still moving from one whose messages are gone.
    #[serde(default)]
    pub progress_at: Option<f64>,
    /// Stitches of this job that failed (a store or S3 error; content problems fail the
    /// job at once), and the last one's reason.
    #[serde(default)]
    pub stitch_failures: u32,
    /// See `stitch_failures`.
    #[serde(default)]
    pub stitch_error: Option<String>,
    /// When a sweep last queued the job's items or requested its stitch again.
    #[serde(default)]
    pub repaired_at: Option<f64>,
    /// Master playlist key, once published.
    pub master_key: Option<String>,
    /// MPD key, once published.
    pub dash_key: Option<String>,
    /// What was published, once PUBLISHED (empty before, and for jobs published before it
    /// was recorded).
    #[serde(default)]
    pub renditions: Vec<Rendition>,
    /// What the upload chose (tier, ladder, segments, codecs, asset) and where each came
    /// from; none for jobs made before settings were recorded.
    pub settings: Option<JobSettings>,
    /// Names the saved plan: a new plan (after a reset) gets a new id, so a worker may keep
    /// a plan it read under its id instead of reading it again for every item. None where
    /// reading the plan costs nothing worth saving (SQLite) or before the plan exists.
    #[serde(default)]
    pub plan_id: Option<String>,
}

/// One published rendition, as status, the job record and job events list it: what a
/// person checking an upload wants to know without reading the manifests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendition {
    /// Rendition id (`720p`, `audio_0`, `audio_0_51`).
    pub id: String,
    /// `video` or `audio`.
    pub kind: String,
    /// RFC 6381 codec string.
    pub codec: String,
    /// Average bitrate measured from the segments, bits per second.
    pub average_bps: u64,
    /// Picture size, for video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Picture size, for video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Channels, for audio (2, or 6 for 5.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u32>,
    /// Language, for audio, when the source names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Whether an I-frame playlist lists it for trick play.
    #[serde(default)]
    pub trick_play: bool,
    /// The file to fetch, relative to the job directory, for what is one file: a
    /// subtitle track's whole WebVTT, the thumbnail track (`thumbnails.vtt`), the poster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Why a track of the source is not published (bitmap subtitles), when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// How it is encrypted, when it is: the scheme, the key ID and the DRM systems
    /// signalled (never the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protection: Option<RenditionProtection>,
    /// The dynamic range of an HDR video rendition (`PQ`, `HLG`); absent for SDR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<vodpipe_media::colour::DynamicRange>,
}

/// A protected rendition's scheme, key ID and DRM systems, as status and events say them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenditionProtection {
    /// cbcs or cenc.
    pub scheme: vodpipe_media::cenc::Scheme,
    /// The key ID, 32 lowercase hex digits.
    pub kid: String,
    /// The DRM systems its manifests signal.
    pub systems: Vec<vodpipe_media::cenc::System>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_is_reachable_and_final_states_leave_only_by_a_reset() {
        for st in JobStatus::ALL {
            let entered = Transition::ALL.iter().any(|t| t.to() == st);
            assert!(entered || st == JobStatus::Queued, "{st} cannot be reached");
        }
        for t in Transition::ALL {
            assert!(!t.from().contains(&t.to()), "{t:?} goes nowhere");
            if t.from().iter().any(|s| s.is_final()) {
                assert_eq!(t, Transition::Reset, "{t:?} leaves a final state");
            }
        }
        assert_eq!(
            Transition::between(JobStatus::Published, JobStatus::Queued),
            None,
            "a published job is never made again: a new upload is a new job"
        );
        assert_eq!(
            Transition::between(JobStatus::Encoding, JobStatus::Failed),
            Some(Transition::FailEncode)
        );
    }
}
