//! The key provider port: where a protected asset's content keys come from.
//!
//! Every chunk of an asset must encrypt with the same key, and the key must never be
//! stored in the clear (job store, queue, logs, events). So the worker asks the provider
//! for the asset's keys on every item, under its lease: a key file gives the same key each
//! time, and a SPEKE key server answers the same content ID and key IDs with the same keys.
//! Nothing the pipeline stores holds more than the key ID.

pub mod speke;

use std::sync::Arc;
use vodpipe_media::cenc::keys::parse_key_file;
use vodpipe_media::cenc::{AssetKeys, ContentKey, DrmConfig, TrackKeys};

/// Why a provider gave no keys.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    /// The key server did not answer, or answered with a server error: retried like any
    /// other fault of a service.
    #[error("the key server did not answer: {0}")]
    Unavailable(String),
    /// The request cannot succeed as asked (no key source, a key server that refuses the
    /// request, an answer without the keys asked for): the job fails with the reason.
    #[error("{0}")]
    Refused(String),
}

impl From<KeyError> for crate::Error {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Unavailable(why) => {
                vodpipe_media::Error::Unavailable(format!("content protection: {why}")).into()
            }
            KeyError::Refused(why) => vodpipe_media::Error::Protection(why).into(),
        }
    }
}

/// Gives an asset's keys: one for its video, one for its audio, with each DRM system's
/// data.
pub trait KeyProvider: Send + Sync {
    /// The keys of the asset `content_id` as `drm` asks for them.
    fn asset_keys(&self, content_id: &str, drm: &DrmConfig) -> Result<AssetKeys, KeyError>;
}

/// A static key file (`--drm-keys`): the embedded pipeline's and the tests' keys.
#[derive(Clone)]
pub struct KeyFile {
    video: ContentKey,
    audio: ContentKey,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("video", &self.video)
            .field("audio", &self.audio)
            .finish()
    }
}

impl KeyFile {
    /// Reads a key file (see [`parse_key_file`]); the error names the file, never a key.
    pub fn read(path: &std::path::Path) -> Result<KeyFile, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (video, audio) =
            parse_key_file(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(KeyFile { video, audio })
    }

    /// The key IDs, for messages and status.
    pub fn kids(&self) -> (String, String) {
        (hex::encode(self.video.kid), hex::encode(self.audio.kid))
    }
}

impl KeyProvider for KeyFile {
    fn asset_keys(&self, content_id: &str, drm: &DrmConfig) -> Result<AssetKeys, KeyError> {
        let systems = drm.systems();
        let track = |key: &ContentKey| {
            TrackKeys::local(key.clone(), drm.scheme, &systems, content_id)
                .map_err(KeyError::Refused)
        };
        Ok(AssetKeys {
            video: track(&self.video)?,
            audio: track(&self.audio)?,
        })
    }
}

/// The worker's key sources: its key file, if given, and how it signs requests to a key
/// server (SigV4 on AWS), chosen per job by its DRM settings.
#[derive(Clone, Default)]
pub struct Keys {
    /// The key file given to the worker.
    pub file: Option<Arc<KeyFile>>,
    /// Signs SPEKE requests (None: sent unsigned).
    pub signer: Option<Arc<dyn speke::RequestSigner>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("file", &self.file.as_ref().map(|k| k.kids()))
            .field("signed", &self.signer.is_some())
            .finish()
    }
}

impl Keys {
    /// The keys of `content_id` under `drm`: from its key server when it names one, else
    /// from the worker's key file.
    pub fn asset_keys(&self, content_id: &str, drm: &DrmConfig) -> Result<AssetKeys, KeyError> {
        match (&drm.speke_url, &self.file) {
            (Some(url), _) => speke::Speke::new(url.clone(), self.signer.clone()).asset_keys(content_id, drm),
            (None, Some(file)) => file.asset_keys(content_id, drm),
            (None, None) => Err(KeyError::Refused(
                "the job asks for content protection, and there is no key source: give the worker --drm-keys FILE, or the upload a speke_url".into(),
            )),
        }
    }
}
