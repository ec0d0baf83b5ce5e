//! A SPEKE v2.0 client: asks a key server for an asset's keys with a CPIX 2.3 document
//! over HTTPS, as MediaConvert and MediaPackage do, so any SPEKE key server (AWS's
//! reference server behind API Gateway, or a DRM vendor's) serves vodpipe.
//!
//! The request names the content ID, one key ID for video and one for audio (derived from
//! the content ID, so every chunk of an asset asks for the same two and the server answers
//! with the same keys), the scheme, and each DRM system wanted; the answer carries the keys
//! in the clear (`pskc:PlainValue`, under TLS) and, per system, the `pssh` box and the HLS
//! signalling.

use super::{KeyError, KeyProvider};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use vodpipe_media::cenc::systems::uuid_string;
use vodpipe_media::cenc::{keys::SystemData, AssetKeys, ContentKey, DrmConfig, System, TrackKeys};

/// The SPEKE version this client speaks (sent as `X-Speke-Version`).
pub const SPEKE_VERSION: &str = "2.0";

/// Signs a request before it is sent: SigV4 for a key server behind API Gateway with IAM
/// authorisation (the AWS backend provides it; the embedded pipeline sends unsigned).
pub trait RequestSigner: Send + Sync {
    /// Adds the signature headers for a POST of `body` to `url` with `headers`.
    fn sign(
        &self,
        url: &str,
        headers: &mut Vec<(String, String)>,
        body: &[u8],
    ) -> Result<(), String>;
}

/// A SPEKE v2.0 key server.
pub struct Speke {
    url: String,
    signer: Option<Arc<dyn RequestSigner>>,
    timeout: Duration,
}

/// The key ID vodpipe asks a key server for: the asset's content ID and a label, hashed, so
/// it is the same on every request for the asset.
pub fn key_id(content_id: &str, track: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"vodpipe kid\0");
    h.update(content_id.as_bytes());
    h.update([0]);
    h.update(track.as_bytes());
    let d = h.finalize();
    let mut kid = [0u8; 16];
    kid.copy_from_slice(&d[..16]);
    kid
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The CPIX 2.3 request for `content_id`'s key `kid`, which every video and audio track
/// of the asset is encrypted with (no usage rules: one key for all tracks).
pub fn request_document(content_id: &str, drm: &DrmConfig, kid: &[u8; 16]) -> String {
    let scheme = drm.scheme.as_str();
    let kid = uuid_string(kid);
    let mut x = String::new();
    x.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    x.push_str(&format!(
        r#"<cpix:CPIX xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc" contentId="{}" version="2.3">"#,
        esc(content_id)
    ));
    x.push_str(&format!(
        r#"<cpix:ContentKeyList><cpix:ContentKey kid="{kid}" commonEncryptionScheme="{scheme}"/></cpix:ContentKeyList>"#
    ));
    x.push_str("<cpix:DRMSystemList>");
    for system in drm.systems() {
        x.push_str(&format!(
            r#"<cpix:DRMSystem kid="{kid}" systemId="{}">"#,
            system.uuid()
        ));
        if system != System::FairPlay {
            x.push_str("<cpix:PSSH/><cpix:ContentProtectionData/>");
        }
        x.push_str(r#"<cpix:HLSSignalingData playlist="media"/><cpix:HLSSignalingData playlist="master"/>"#);
        x.push_str("</cpix:DRMSystem>");
    }
    x.push_str("</cpix:DRMSystemList></cpix:CPIX>");
    x
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let mut b = [0u8; 16];
    hex::decode_to_slice(s.trim().replace('-', ""), &mut b).ok()?;
    Some(b)
}

/// The URI of an `#EXT-X-KEY` line.
fn key_uri(line: &str) -> Option<String> {
    let at = line.find("URI=\"")? + 5;
    let end = line[at..].find('"')? + at;
    Some(line[at..end].to_string())
}

/// Reads a key server's CPIX answer: the key of the KID asked for and each system's data,
/// for the asset's video and audio alike.
pub fn parse_response(doc: &str, drm: &DrmConfig, kid: &[u8; 16]) -> Result<AssetKeys, KeyError> {
    let refuse = |why: String| KeyError::Refused(format!("the key server's answer: {why}"));
    let x = roxmltree::Document::parse(doc).map_err(|e| refuse(format!("not XML ({e})")))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let local =
        |n: &roxmltree::Node<'_, '_>, name: &str| n.is_element() && n.tag_name().name() == name;
    let track = |kid: &[u8; 16]| -> Result<TrackKeys, KeyError> {
        let ck = x
            .descendants()
            .filter(|n| local(n, "ContentKey"))
            .find(|n| n.attribute("kid").and_then(parse_uuid).as_ref() == Some(kid))
            .ok_or_else(|| refuse(format!("no content key {}", uuid_string(kid))))?;
        let plain = ck
            .descendants()
            .find(|n| local(n, "PlainValue"))
            .and_then(|n| n.text())
            .ok_or_else(|| {
                refuse(format!(
                    "content key {} has no plain value (encrypted keys are not supported)",
                    uuid_string(kid)
                ))
            })?;
        let raw = b64
            .decode(plain.trim())
            .map_err(|_| refuse(format!("content key {} is not base64", uuid_string(kid))))?;
        let key: [u8; 16] = raw.as_slice().try_into().map_err(|_| {
            refuse(format!(
                "content key {} is {} bytes, not 16",
                uuid_string(kid),
                raw.len()
            ))
        })?;
        let mut systems = Vec::new();
        for system in drm.systems() {
            let node = x.descendants().filter(|n| local(n, "DRMSystem")).find(|n| {
                n.attribute("kid").and_then(parse_uuid).as_ref() == Some(kid)
                    && n.attribute("systemId").and_then(parse_uuid) == Some(system.id())
            });
            let Some(node) = node else {
                return Err(refuse(format!(
                    "no {} data for key {}",
                    system.as_str(),
                    uuid_string(kid)
                )));
            };
            let text = |name: &str| {
                node.children()
                    .find(|n| {
                        local(n, name) && n.attribute("playlist").is_none_or(|p| p == "media")
                    })
                    .and_then(|n| n.text())
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from)
            };
            let pssh =
                match text("PSSH") {
                    Some(p) => Some(b64.decode(p).map_err(|_| {
                        refuse(format!("the {} PSSH is not base64", system.as_str()))
                    })?),
                    None => None,
                };
            let hls_uri = match text("HLSSignalingData") {
                Some(h) => {
                    let line = b64
                        .decode(h)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or_else(|| {
                            refuse(format!(
                                "the {} HLS signalling is not base64 text",
                                system.as_str()
                            ))
                        })?;
                    key_uri(&line)
                }
                None => None,
            };
            if system != System::FairPlay && system != System::ClearKey && pssh.is_none() {
                return Err(refuse(format!("no {} PSSH", system.as_str())));
            }
            if system == System::FairPlay && hls_uri.is_none() {
                return Err(refuse("no FairPlay HLS signalling".into()));
            }
            systems.push(SystemData {
                system,
                pssh,
                hls_uri,
            });
        }
        Ok(TrackKeys {
            key: ContentKey { kid: *kid, key },
            systems,
        })
    };
    Ok(AssetKeys {
        video: track(kid)?,
        audio: track(kid)?,
    })
}

impl Speke {
    /// A client of the key server at `url`.
    pub fn new(url: String, signer: Option<Arc<dyn RequestSigner>>) -> Speke {
        Speke {
            url,
            signer,
            timeout: Duration::from_secs(15),
        }
    }
}

impl KeyProvider for Speke {
    fn asset_keys(&self, content_id: &str, drm: &DrmConfig) -> Result<AssetKeys, KeyError> {
        let kid = key_id(content_id, "asset");
        let body = request_document(content_id, drm, &kid);
        let mut headers = vec![
            ("Content-Type".to_string(), "application/xml".to_string()),
            ("X-Speke-Version".to_string(), SPEKE_VERSION.to_string()),
        ];
        if let Some(s) = &self.signer {
            s.sign(&self.url, &mut headers, body.as_bytes())
                .map_err(|e| KeyError::Unavailable(format!("signing the request: {e}")))?;
        }
        let mut req = ureq::post(&self.url).timeout(self.timeout);
        for (k, v) in &headers {
            req = req.set(k, v);
        }
        let host = self.url.split('/').nth(2).unwrap_or(&self.url).to_string();
        let answer = match req.send_bytes(body.as_bytes()) {
            Ok(r) => r
                .into_string()
                .map_err(|e| KeyError::Unavailable(format!("{host}: reading the answer: {e}")))?,
            Err(ureq::Error::Status(code, r)) => {
                let text: String = r
                    .into_string()
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect();
                return Err(if code >= 500 || code == 429 {
                    KeyError::Unavailable(format!("{host} answered {code}: {text}"))
                } else {
                    KeyError::Refused(format!(
                        "the key server {host} refused the request ({code}): {text}"
                    ))
                });
            }
            Err(e) => return Err(KeyError::Unavailable(format!("{host}: {e}"))),
        };
        parse_response(&answer, drm, &kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vodpipe_media::cenc::Scheme;

    fn drm() -> DrmConfig {
        DrmConfig {
            scheme: Scheme::Cbcs,
            systems: vec![System::Widevine, System::FairPlay],
            speke_url: Some("https://keys.example/speke".into()),
        }
    }

    #[test]
    fn the_request_names_the_content_the_keys_the_scheme_and_the_systems() {
        let v = key_id("film", "asset");
        assert_ne!(v, key_id("other film", "asset"));
        assert_eq!(v, key_id("film", "asset"));
        let doc = request_document("film & co", &drm(), &v);
        let x = roxmltree::Document::parse(&doc).unwrap();
        let root = x.root_element();
        assert_eq!(root.attribute("contentId"), Some("film & co"));
        assert_eq!(root.attribute("version"), Some("2.3"));
        let keys: Vec<_> = x
            .descendants()
            .filter(|n| n.tag_name().name() == "ContentKey")
            .collect();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].attribute("kid"), Some(uuid_string(&v).as_str()));
        assert!(keys
            .iter()
            .all(|k| k.attribute("commonEncryptionScheme") == Some("cbcs")));
        let systems: Vec<_> = x
            .descendants()
            .filter(|n| n.tag_name().name() == "DRMSystem")
            .map(|n| n.attribute("systemId").unwrap().to_string())
            .collect();
        assert_eq!(systems.len(), 2);
        assert!(systems.contains(&System::Widevine.uuid()));
        assert!(systems.contains(&System::FairPlay.uuid()));
    }

    #[test]
    fn an_answer_without_a_key_or_a_system_is_refused_with_the_reason() {
        let v = key_id("film", "asset");
        let doc = request_document("film", &drm(), &v);
        let err = parse_response(&doc, &drm(), &v).unwrap_err();
        assert!(err.to_string().contains("has no plain value"), "{err}");
        assert!(matches!(err, KeyError::Refused(_)));
    }
}
