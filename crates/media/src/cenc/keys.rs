//! What an upload asks for (a scheme, the DRM systems, where the keys come from), the keys
//! a provider answers with, and what the manifests say about a protected track.
//!
//! The key travels only from the provider to the encrypting worker: settings and job
//! records hold the scheme, the systems and the key server's URL; manifests and status hold
//! the key ID; nothing stored holds the key.

use super::systems::{self, System};
use super::{ContentKey, Protection, Scheme};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Content protection as an upload or a profile asks for it (`"drm"` in a settings file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrmConfig {
    /// cbcs (every player) or cenc.
    pub scheme: Scheme,
    /// The DRM systems to signal; empty: the key source's default (Clear Key for a key
    /// file; Widevine, PlayReady and, with cbcs, FairPlay for a key server).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub systems: Vec<System>,
    /// A SPEKE v2.0 key server; None: the worker's key file (`--drm-keys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speke_url: Option<String>,
}

impl DrmConfig {
    /// The systems to signal, defaults applied.
    pub fn systems(&self) -> Vec<System> {
        if !self.systems.is_empty() {
            let mut s = self.systems.clone();
            s.sort();
            s.dedup();
            return s;
        }
        match (&self.speke_url, self.scheme) {
            (None, _) => vec![System::ClearKey],
            (Some(_), Scheme::Cbcs) => vec![System::Widevine, System::PlayReady, System::FairPlay],
            (Some(_), Scheme::Cenc) => vec![System::Widevine, System::PlayReady],
        }
    }

    /// Checks what an upload could get wrong; the reason names the rule.
    pub fn validate(&self) -> Result<(), String> {
        let systems = self.systems();
        if self.scheme == Scheme::Cenc && systems.contains(&System::FairPlay) {
            return Err(
                "FairPlay takes cbcs only; use \"scheme\": \"cbcs\" or drop fairplay".into(),
            );
        }
        if let Some(url) = &self.speke_url {
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url.len() <= 2048
                && !url.chars().any(char::is_whitespace);
            if !ok {
                return Err(format!("speke_url {url:?} is not an http(s) URL"));
            }
        } else if systems.contains(&System::PlayReady) {
            return Err(
                "PlayReady needs its header from a key server: give a speke_url, or drop playready"
                    .into(),
            );
        }
        Ok(())
    }
}

/// One DRM system's data for a track: its `pssh` box and, for HLS, its key URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemData {
    /// The system.
    pub system: System,
    /// The complete `pssh` box, when the system has one.
    pub pssh: Option<Vec<u8>>,
    /// The `#EXT-X-KEY` URI, when the system's is not derived from the `pssh` or the KID
    /// (FairPlay's `skd://`, or what a key server gave).
    pub hls_uri: Option<String>,
}

/// A track's key and its systems' data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackKeys {
    /// The key.
    pub key: ContentKey,
    /// One entry per system signalled.
    pub systems: Vec<SystemData>,
}

/// The keys of an asset: one for its video, one for its audio (the same key twice when a
/// provider gives one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetKeys {
    /// For every video rung.
    pub video: TrackKeys,
    /// For every audio rendition.
    pub audio: TrackKeys,
}

impl TrackKeys {
    /// The track's data for systems a key file can serve: Clear Key and Widevine `pssh`
    /// boxes, FairPlay's `skd://KID` URI.
    pub fn local(
        key: ContentKey,
        scheme: Scheme,
        systems: &[System],
        content_id: &str,
    ) -> Result<TrackKeys, String> {
        let kids = [key.kid];
        let data = systems
            .iter()
            .map(|&system| {
                Ok(match system {
                    System::ClearKey => SystemData {
                        system,
                        pssh: Some(systems::clearkey_pssh(&kids)),
                        hls_uri: None,
                    },
                    System::Widevine => SystemData {
                        system,
                        pssh: Some(systems::widevine_pssh(&kids, content_id, scheme.fourcc())),
                        hls_uri: None,
                    },
                    System::FairPlay => SystemData {
                        system,
                        pssh: None,
                        hls_uri: Some(format!("skd://{}", hex::encode(key.kid))),
                    },
                    System::PlayReady => {
                        return Err("PlayReady needs its header from a key server".to_string())
                    }
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(TrackKeys { key, systems: data })
    }

    /// How to encrypt with this key.
    pub fn protection(&self, scheme: Scheme) -> Protection {
        Protection {
            scheme,
            key: self.key.clone(),
            pssh: self.systems.iter().filter_map(|s| s.pssh.clone()).collect(),
        }
    }

    /// What the manifests say (no key).
    pub fn signalling(&self, scheme: Scheme) -> Signalling {
        let b64 = base64::engine::general_purpose::STANDARD;
        Signalling {
            scheme,
            kid: hex::encode(self.key.kid),
            systems: self
                .systems
                .iter()
                .map(|s| SystemSignal {
                    system: s.system,
                    pssh: s.pssh.as_ref().map(|p| b64.encode(p)),
                    hls_uri: s.hls_uri.clone(),
                })
                .collect(),
        }
    }
}

/// Reads a key file: `{"kid": "<32 hex>", "key": "<32 hex>"}` (one key for the asset), or
/// `{"video": {...}, "audio": {...}}` (one each). The error never quotes a key.
pub fn parse_key_file(bytes: &[u8]) -> Result<(ContentKey, ContentKey), String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pair {
        kid: String,
        key: String,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum File {
        One(Pair),
        Split { video: Pair, audio: Pair },
    }
    let file: File = serde_json::from_slice(bytes).map_err(|_| {
        "a key file is {\"kid\": \"<32 hex>\", \"key\": \"<32 hex>\"} or {\"video\": {…}, \"audio\": {…}}"
            .to_string()
    })?;
    let pair = |p: &Pair, what: &str| -> Result<ContentKey, String> {
        let mut kid = [0u8; 16];
        let mut key = [0u8; 16];
        hex::decode_to_slice(p.kid.trim().replace('-', ""), &mut kid)
            .map_err(|_| format!("the {what} kid is not 32 hex digits"))?;
        hex::decode_to_slice(p.key.trim(), &mut key)
            .map_err(|_| format!("the {what} key is not 32 hex digits"))?;
        Ok(ContentKey { kid, key })
    };
    match file {
        File::One(p) => {
            let k = pair(&p, "")?;
            Ok((k.clone(), k))
        }
        File::Split { video, audio } => Ok((pair(&video, "video")?, pair(&audio, "audio")?)),
    }
}

/// What the manifests and status say about a protected track: the scheme, the key ID and
/// each system's data. Never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signalling {
    /// The scheme.
    pub scheme: Scheme,
    /// The key ID, 32 lowercase hex digits.
    pub kid: String,
    /// One entry per system.
    pub systems: Vec<SystemSignal>,
}

/// One system's entry in [`Signalling`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemSignal {
    /// The system.
    pub system: System,
    /// Its `pssh` box, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pssh: Option<String>,
    /// Its HLS key URI, when not derived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hls_uri: Option<String>,
}

impl Signalling {
    /// The key ID as a UUID (`cenc:default_KID`).
    pub fn kid_uuid(&self) -> String {
        let mut b = [0u8; 16];
        let _ = hex::decode_to_slice(&self.kid, &mut b);
        systems::uuid_string(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_take_one_key_or_one_per_media_type_and_never_echo_a_key() {
        let (v, a) = parse_key_file(
            br#"{"kid": "0123456789abcdef0123456789abcdef", "key": "00112233445566778899aabbccddeeff"}"#,
        )
        .unwrap();
        assert_eq!(v, a);
        assert_eq!(hex::encode(v.kid), "0123456789abcdef0123456789abcdef");
        let (v, a) = parse_key_file(
            br#"{"video": {"kid": "01234567-89ab-cdef-0123-456789abcdef", "key": "00112233445566778899aabbccddeeff"},
                 "audio": {"kid": "11111111111111111111111111111111", "key": "22222222222222222222222222222222"}}"#,
        )
        .unwrap();
        assert_ne!(v, a);
        let err = parse_key_file(br#"{"kid": "0123456789abcdef0123456789abcdef", "key": "secretsecretsecretsecretsecretXX"}"#)
            .unwrap_err();
        assert!(err.contains("key is not 32 hex"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        assert!(!format!("{v:?}").contains("0011223344"), "{v:?}");
    }

    #[test]
    fn bad_choices_are_refused_with_the_rule() {
        let cfg = |scheme, systems: &[System], speke: Option<&str>| DrmConfig {
            scheme,
            systems: systems.to_vec(),
            speke_url: speke.map(String::from),
        };
        assert!(cfg(Scheme::Cenc, &[System::FairPlay], Some("https://k"))
            .validate()
            .unwrap_err()
            .contains("FairPlay takes cbcs"));
        assert!(cfg(Scheme::Cbcs, &[System::PlayReady], None)
            .validate()
            .unwrap_err()
            .contains("PlayReady needs"));
        assert!(cfg(Scheme::Cbcs, &[], Some("ftp://x")).validate().is_err());
        assert!(cfg(Scheme::Cbcs, &[], None).validate().is_ok());
        assert_eq!(
            cfg(Scheme::Cbcs, &[], None).systems(),
            vec![System::ClearKey]
        );
        assert_eq!(
            cfg(Scheme::Cenc, &[], Some("https://k")).systems(),
            vec![System::Widevine, System::PlayReady]
        );
    }
}
