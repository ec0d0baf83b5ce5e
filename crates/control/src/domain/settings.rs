//! What an upload chose, and where each choice came from, as its job records it. How the
//! choices are resolved is [`crate::settings`].

use super::Tier;
use serde::{Deserialize, Serialize};
use vodpipe_media::ladder::LadderConfig;

/// Where a setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// A command-line flag.
    Command,
    /// The object's `x-amz-meta-vodpipe-*` metadata.
    Metadata,
    /// The `<key>.vodpipe.json` settings file.
    SettingsFile,
    /// The deployment's key-prefix map.
    Prefix,
    /// The deployment's default.
    Default,
}

/// One resolved setting and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setting<T> {
    /// The value.
    pub value: T,
    /// Where it was set.
    pub from: Origin,
}

impl<T> Setting<T> {
    pub(crate) fn new(value: T, from: Origin) -> Self {
        Setting { value, from }
    }
}

/// Everything an upload chose, as recorded on its job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSettings {
    /// The tier (queue and capacity) the job runs on.
    pub tier: Setting<Tier>,
    /// The ladder: a profile name, or `inline` for rungs written in the settings file.
    pub ladder: Setting<String>,
    /// Segment duration, seconds.
    pub segment_seconds: Setting<f64>,
    /// Video codecs.
    pub codecs: Setting<Vec<String>>,
    /// The asset name outputs are published under.
    pub asset: Setting<String>,
    /// The ladder itself, as it was when the job was made (a profile may change later;
    /// the job keeps what it was planned with).
    #[serde(default)]
    pub ladder_config: LadderConfig,
    /// Why the upload's own settings could not be used: the job fails with this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// The exact version of the source the job was made from (an S3 version id), read by
    /// every later step: an upload that overwrites the key mid-encode makes its own job and
    /// never feeds new bytes to this job's plan. None where sources have no versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    /// The upload's place among the uploads of its key: the `sequencer` of its S3 event
    /// (S3's own order of one key's events), or a local file's modification time. Versions
    /// of a source are published in this order, never in the order their ingests ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sequencer: Option<String>,
    /// Content protection, when the upload (or its ladder) asks for it: the scheme, the
    /// DRM systems and the key server, never a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drm: Option<Setting<vodpipe_media::cenc::DrmConfig>>,
    /// The most the job may cost, in USD, by its plan's estimate: the upload's own budget
    /// or the deployment's, whichever is lower. A plan estimated above it fails before
    /// anything is encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<Setting<f64>>,
    /// The part of the source to publish, when not all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<Setting<vodpipe_media::clip::Clip>>,
    /// The image drawn over every rung, by name (its bytes are in `ladder_config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<Setting<String>>,
    /// What a re-packaged version is made of, when the job is one: another version's
    /// segments under new manifests, with no encode ([`crate::repackage`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repackage: Option<Repackage>,
}

/// A re-packaged version: the published version it starts from and what it changes, decided
/// once when it is made, so a resumed job plans exactly the same thing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repackage {
    /// The published job whose tracks it publishes again.
    pub from: String,
    /// Every job whose directory its manifests point into (segments are never copied): no
    /// publish retires these while this version may hold the pointers.
    pub reuses: Vec<String>,
    /// Re-packagings since the last encode of this upload: orders versions made from one
    /// upload, which share its sequencer.
    pub revision: u32,
    /// When the encoded version it descends from was made: where it stands among uploads
    /// that have no sequencer to order them by (its own creation would put it after an
    /// upload made meanwhile).
    #[serde(default)]
    pub base_created_at: f64,
    /// The subtitle files it adds, as (language, file): each is converted by a work item.
    pub add: Vec<(String, String)>,
    /// The subtitle files it replaces (uploaded again): the published tracks made from them
    /// are left out, and the new upload is among `add`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace: Vec<String>,
}
