//! Protected assets in the tests: a SPEKE v2.0 key server stand-in (it checks each CPIX
//! request as the reference server reads it and answers with keys it derives from the
//! content ID and KID), and the files of a published job.

use base64::Engine as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use vodpipe_media::cenc;

/// Every file under the job directory of a published job, by path relative to it.
pub fn job_files(out: &Path, job: &serde_json::Value) -> BTreeMap<String, PathBuf> {
    let master = PathBuf::from(job["master"].as_str().unwrap());
    let asset_dir = master.parent().unwrap();
    let job_dir = asset_dir.join(job["job_id"].as_str().unwrap());
    assert!(job_dir.starts_with(out));
    files_under(&job_dir)
        .into_iter()
        .map(|p| (p.strip_prefix(&job_dir).unwrap().display().to_string(), p))
        .collect()
}

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files
}

/// The init segment a segment's rendition shares (chunk 0's for video).
pub fn init_for(files: &BTreeMap<String, PathBuf>, segment: &str) -> PathBuf {
    let parts: Vec<&str> = segment.split('/').collect();
    let key = match parts.as_slice() {
        [audio, _] => format!("{audio}/init.mp4"),
        [_, rung, _] => files
            .keys()
            .find(|k| k.starts_with("c00000.") && k.ends_with(&format!("/{rung}/init.mp4")))
            .unwrap()
            .clone(),
        _ => panic!("unexpected segment path {segment}"),
    };
    files[&key].clone()
}

/// A SPEKE v2.0 key server stand-in: checks each CPIX request as the reference server
/// reads it and answers with keys derived from the content ID and KID, the systems' PSSH
/// and FairPlay's HLS signalling. The first `fail_first` requests get a 503.
pub struct KeyServer {
    /// Where it listens.
    pub url: String,
    /// Requests received, refused ones included.
    pub requests: Arc<AtomicU32>,
    /// The CPIX documents answered, in order.
    pub seen: Arc<Mutex<Vec<String>>>,
    /// The `Authorization` header of each answered request (SigV4 on AWS).
    pub authorizations: Arc<Mutex<Vec<Option<String>>>>,
}

/// The key the stand-in gives `kid` of `content_id`.
pub fn derived_key(content_id: &str, kid: &[u8; 16]) -> [u8; 16] {
    use sha2::Digest;
    let d = sha2::Sha256::new()
        .chain_update(content_id)
        .chain_update(kid)
        .finalize();
    d[..16].try_into().unwrap()
}

/// Starts a stand-in whose first `fail_first` requests get a 503.
pub fn key_server(fail_first: u32) -> KeyServer {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}/speke/v2", server.server_addr().to_ip().unwrap());
    let requests = Arc::new(AtomicU32::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let authorizations = Arc::new(Mutex::new(Vec::new()));
    let (n, log, auths) = (requests.clone(), seen.clone(), authorizations.clone());
    std::thread::spawn(move || {
        for mut req in server.incoming_requests() {
            let i = n.fetch_add(1, Ordering::SeqCst);
            let mut body = String::new();
            req.as_reader().read_to_string(&mut body).unwrap();
            let version = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("X-Speke-Version"))
                .map(|h| h.value.to_string());
            if i < fail_first {
                let _ = req.respond(tiny_http::Response::from_string("busy").with_status_code(503));
                continue;
            }
            let answer = answer(&body, version.as_deref());
            log.lock().unwrap().push(body);
            auths.lock().unwrap().push(
                req.headers()
                    .iter()
                    .find(|h| h.field.equiv("Authorization"))
                    .map(|h| h.value.to_string()),
            );
            let _ = match answer {
                Ok(doc) => req.respond(tiny_http::Response::from_string(doc)),
                Err(why) => {
                    req.respond(tiny_http::Response::from_string(why).with_status_code(400))
                }
            };
        }
    });
    KeyServer {
        url,
        requests,
        seen,
        authorizations,
    }
}

/// What the stand-in answers a CPIX request with, or why it refuses it.
fn answer(body: &str, version: Option<&str>) -> Result<String, String> {
    if version != Some("2.0") {
        return Err(format!("X-Speke-Version is {version:?}"));
    }
    let x = roxmltree::Document::parse(body).map_err(|e| e.to_string())?;
    let root = x.root_element();
    let content_id = root
        .attribute("contentId")
        .ok_or("no contentId")?
        .to_string();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut keys = String::new();
    let mut systems = String::new();
    let kids: Vec<[u8; 16]> = x
        .descendants()
        .filter(|n| n.tag_name().name() == "ContentKey")
        .map(|n| {
            let scheme = n.attribute("commonEncryptionScheme").unwrap_or("");
            assert!(
                scheme == "cbcs" || scheme == "cenc",
                "commonEncryptionScheme {scheme:?}"
            );
            let mut kid = [0u8; 16];
            hex::decode_to_slice(n.attribute("kid").unwrap().replace('-', ""), &mut kid).unwrap();
            kid
        })
        .collect();
    if kids.is_empty() {
        return Err("no content key asked for".into());
    }
    for kid in &kids {
        let uuid = cenc::systems::uuid_string(kid);
        keys.push_str(&format!(
            r#"<cpix:ContentKey kid="{uuid}" commonEncryptionScheme="cbcs"><cpix:Data><pskc:Secret><pskc:PlainValue>{}</pskc:PlainValue></pskc:Secret></cpix:Data></cpix:ContentKey>"#,
            b64.encode(derived_key(&content_id, kid))
        ));
    }
    for n in x
        .descendants()
        .filter(|n| n.tag_name().name() == "DRMSystem")
    {
        let (kid_s, sys) = (
            n.attribute("kid").unwrap(),
            n.attribute("systemId").unwrap(),
        );
        let mut kid = [0u8; 16];
        hex::decode_to_slice(kid_s.replace('-', ""), &mut kid).unwrap();
        let system = cenc::System::ALL
            .into_iter()
            .find(|s| s.uuid() == sys)
            .ok_or(format!("system {sys}"))?;
        let inner = match system {
            cenc::System::FairPlay => format!(
                r#"<cpix:HLSSignalingData playlist="media">{}</cpix:HLSSignalingData>"#,
                b64.encode(format!(
                    r#"#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://{}",KEYFORMAT="com.apple.streamingkeydelivery",KEYFORMATVERSIONS="1""#,
                    hex::encode(kid)
                ))
            ),
            cenc::System::ClearKey => format!("<cpix:PSSH>{}</cpix:PSSH>", b64.encode(cenc::systems::clearkey_pssh(&[kid]))),
            cenc::System::Widevine => format!(
                "<cpix:PSSH>{}</cpix:PSSH>",
                b64.encode(cenc::systems::widevine_pssh(&[kid], &content_id, *b"cbcs"))
            ),
            cenc::System::PlayReady => format!(
                "<cpix:PSSH>{}</cpix:PSSH>",
                b64.encode(cenc::systems::pssh_box(cenc::System::PlayReady.id(), &[], b"<WRMHEADER/>"))
            ),
        };
        systems.push_str(&format!(
            r#"<cpix:DRMSystem kid="{kid_s}" systemId="{sys}">{inner}</cpix:DRMSystem>"#
        ));
    }
    Ok(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><cpix:CPIX xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc" contentId="{content_id}" version="2.3"><cpix:ContentKeyList>{keys}</cpix:ContentKeyList><cpix:DRMSystemList>{systems}</cpix:DRMSystemList></cpix:CPIX>"#
    ))
}
