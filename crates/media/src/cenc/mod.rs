//! Common encryption (ISO/IEC 23001-7) of the CMAF segments a chunk writes: `cbcs` (what
//! FairPlay, Widevine and PlayReady all accept) and `cenc`, so one encode serves every DRM.
//!
//! Why here, per chunk: the stitch does not re-mux, so each chunk encrypts its own
//! fragments as it stores them, with the asset's one key; the init segment is rewritten
//! the same way by every chunk (same key ID, same constant IV), so the stitch's check that
//! every chunk's sample description matches still holds.
//!
//! - [`avc`] and [`hevc`]: where an H.264 slice header or an HEVC slice segment header
//!   ends (it stays clear), over [`bits`];
//! - [`crypt`]: subsamples and AES-CBC/CTR over them;
//! - [`boxes`]: `encv`/`enca` + `sinf`, `pssh`, `senc`/`saiz`/`saio`;
//! - [`systems`]: the DRM systems and their `pssh` data;
//! - [`keys`]: what an upload asks for, the keys a provider gives, what manifests say.
//!
//! H.264, HEVC and AAC are protected; AV1 rungs are refused with the reason (their tile
//! headers are not walked yet).

pub mod avc;
pub mod bits;
pub mod boxes;
pub mod crypt;
pub mod hevc;
pub mod keys;
pub mod systems;

pub use keys::{AssetKeys, DrmConfig, Signalling, TrackKeys};
pub use systems::System;

use crate::error::{Error, Result};
use crate::mp4::Fragment;
use aes::cipher::{BlockEncrypt, KeyInit};
use avc::AvcParams;
use boxes::{SampleAux, Tenc};
use crypt::Pattern;
use hevc::HevcParams;
use serde::{Deserialize, Serialize};

/// The common encryption scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// AES-CBC with a 1:9 pattern on video and a constant IV: every modern player, and
    /// the only one FairPlay takes.
    Cbcs,
    /// AES-CTR, subsample encryption, a random IV per sample: older Widevine and
    /// PlayReady clients, and what ffmpeg can decrypt.
    Cenc,
}

impl Scheme {
    /// The `schm` scheme type.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            Scheme::Cbcs => *b"cbcs",
            Scheme::Cenc => *b"cenc",
        }
    }

    /// Its name in settings and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Cbcs => "cbcs",
            Scheme::Cenc => "cenc",
        }
    }

    /// Reads a name as [`Scheme::as_str`] writes it.
    pub fn parse(s: &str) -> Option<Scheme> {
        match s.trim() {
            "cbcs" => Some(Scheme::Cbcs),
            "cenc" => Some(Scheme::Cenc),
            _ => None,
        }
    }
}

/// A content key and its ID. The key never appears in `Debug` output, so it cannot reach
/// a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ContentKey {
    /// The key ID (public: manifests and init segments carry it).
    pub kid: [u8; 16],
    /// The AES-128 key.
    pub key: [u8; 16],
}

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentKey")
            .field("kid", &hex::encode(self.kid))
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ContentKey {
    /// The `cbcs` constant IV of this key: AES(key, KID). Every chunk derives the same one
    /// (their init segments must match), and it says nothing about the key.
    pub fn constant_iv(&self) -> [u8; 16] {
        let cipher = aes::Aes128::new((&self.key).into());
        let mut block = self.kid.into();
        cipher.encrypt_block(&mut block);
        block.into()
    }
}

/// How one track is protected: the scheme, its key and the `pssh` boxes of the DRM systems
/// asked for.
#[derive(Debug, Clone)]
pub struct Protection {
    /// cbcs or cenc.
    pub scheme: Scheme,
    /// The track's key.
    pub key: ContentKey,
    /// Complete `pssh` boxes for the init segment.
    pub pssh: Vec<Vec<u8>>,
}

fn refuse(why: impl Into<String>) -> Error {
    Error::Protection(why.into())
}

/// What a sample's bytes are, for choosing its subsamples.
enum Layout {
    /// Length-prefixed H.264 NAL units: headers and slice headers clear.
    Avc(AvcParams),
    /// Length-prefixed HEVC NAL units: headers and slice segment headers clear.
    Hevc(HevcParams),
    /// Every byte is payload (AAC): the whole sample is protected.
    Whole,
}

/// A track whose init segment is protected, ready to encrypt its fragments.
pub struct TrackProtector {
    scheme: Scheme,
    key: ContentKey,
    tenc: Tenc,
    layout: Layout,
}

/// Protects an init segment: returns the rewritten init and the protector for the
/// track's fragments. Refuses, with the reason, a codec it cannot protect.
pub fn protect_init(init: &[u8], p: &Protection, ctx: &str) -> Result<(Vec<u8>, TrackProtector)> {
    let entry = boxes::sample_entry(init, ctx)?;
    let fourcc = String::from_utf8_lossy(&entry.format).into_owned();
    let layout = match &entry.format {
        b"avc1" | b"avc3" => {
            let avcc = entry
                .children
                .iter()
                .find(|(k, _)| k == b"avcC")
                .ok_or_else(|| refuse(format!("{ctx}: an H.264 track without avcC")))?;
            Layout::Avc(
                AvcParams::from_avcc(&avcc.1)
                    .map_err(|e| refuse(format!("{ctx}: H.264 parameter sets: {}", e.0)))?,
            )
        }
        b"mp4a" => Layout::Whole,
        b"hvc1" | b"hev1" => {
            let hvcc = entry
                .children
                .iter()
                .find(|(k, _)| k == b"hvcC")
                .ok_or_else(|| refuse(format!("{ctx}: an HEVC track without hvcC")))?;
            Layout::Hevc(
                HevcParams::from_hvcc(&hvcc.1)
                    .map_err(|e| refuse(format!("{ctx}: HEVC parameter sets: {}", e.0)))?,
            )
        }
        b"av01" => {
            return Err(refuse(format!(
                "{ctx}: AV1 rungs cannot be protected yet (their tile headers are not walked); \
                 protect an H.264 ladder"
            )))
        }
        _ => {
            return Err(refuse(format!(
                "{ctx}: {fourcc} tracks cannot be protected"
            )))
        }
    };
    let video = !matches!(layout, Layout::Whole);
    let tenc = match p.scheme {
        Scheme::Cbcs => Tenc {
            kid: p.key.kid,
            iv_size: 0,
            constant_iv: Some(p.key.constant_iv()),
            pattern: if video {
                Pattern::VIDEO
            } else {
                Pattern::WHOLE
            },
        },
        Scheme::Cenc => Tenc {
            kid: p.key.kid,
            iv_size: 8,
            constant_iv: None,
            pattern: Pattern::WHOLE,
        },
    };
    let out = boxes::protect_init(init, p.scheme, &tenc, &p.pssh, ctx)?;
    Ok((
        out,
        TrackProtector {
            scheme: p.scheme,
            key: p.key.clone(),
            tenc,
            layout,
        },
    ))
}

impl TrackProtector {
    /// Encrypts a fragment's samples in place and adds their auxiliary information.
    pub fn protect(&mut self, f: &mut Fragment, ctx: &str) -> Result<()> {
        let found = boxes::samples(&f.bytes, ctx)?;
        let mut aux = Vec::with_capacity(found.ranges.len());
        for r in &found.ranges {
            let subs = match &mut self.layout {
                Layout::Avc(params) => nal_subsamples(params, &f.bytes[r.clone()], self.scheme)
                    .map_err(|e| refuse(format!("{ctx}: {e}")))?,
                Layout::Hevc(params) => nal_subsamples(params, &f.bytes[r.clone()], self.scheme)
                    .map_err(|e| refuse(format!("{ctx}: {e}")))?,
                Layout::Whole => Vec::new(),
            };
            let iv = match self.scheme {
                Scheme::Cbcs => Vec::new(),
                Scheme::Cenc => {
                    let mut iv = vec![0u8; 8];
                    getrandom::getrandom(&mut iv)
                        .map_err(|e| refuse(format!("no random IV from the OS: {e}")))?;
                    iv
                }
            };
            let full_iv = sample_iv(&self.tenc, &iv);
            crypt::encrypt(
                self.scheme,
                &self.key.key,
                &full_iv,
                self.tenc.pattern,
                &mut f.bytes[r.clone()],
                &subs,
            );
            aux.push(SampleAux {
                iv,
                subsamples: subs,
            });
        }
        let video = !matches!(self.layout, Layout::Whole);
        // cbcs audio: a constant IV and whole samples leave nothing to say per sample.
        if self.scheme == Scheme::Cbcs && !video {
            return Ok(());
        }
        let (bytes, added) = boxes::add_aux(&f.bytes, &aux, video, ctx)?;
        f.bytes = bytes;
        f.key_frame_end = f.key_frame_end.map(|e| e + added as u64);
        Ok(())
    }
}

/// A sample's 16-byte IV: the track's constant IV (cbcs), or its own from `senc`, zero
/// padded (an 8-byte cenc IV is the counter block's high half).
fn sample_iv(tenc: &Tenc, per_sample: &[u8]) -> [u8; 16] {
    match tenc.constant_iv {
        Some(iv) => iv,
        None => {
            let mut iv = [0u8; 16];
            let n = per_sample.len().min(16);
            iv[..n].copy_from_slice(&per_sample[..n]);
            iv
        }
    }
}

/// What finding a video sample's clear bytes takes: its NAL units' length field size, its
/// parameter sets (in band ones read as they come), and where each slice header ends.
trait NalHeaders {
    fn length_size(&self) -> usize;
    fn add(&mut self, nal: &[u8]) -> std::result::Result<(), String>;
    fn slice_header(&self, nal: &[u8]) -> std::result::Result<Option<usize>, String>;
}

impl NalHeaders for AvcParams {
    fn length_size(&self) -> usize {
        self.length_size
    }
    fn add(&mut self, nal: &[u8]) -> std::result::Result<(), String> {
        AvcParams::add(self, nal).map_err(|e| format!("H.264 parameter set: {}", e.0))
    }
    fn slice_header(&self, nal: &[u8]) -> std::result::Result<Option<usize>, String> {
        self.slice_header_len(nal)
            .map_err(|e| format!("H.264 slice header: {}", e.0))
    }
}

impl NalHeaders for HevcParams {
    fn length_size(&self) -> usize {
        self.length_size
    }
    fn add(&mut self, nal: &[u8]) -> std::result::Result<(), String> {
        HevcParams::add(self, nal).map_err(|e| format!("HEVC parameter set: {}", e.0))
    }
    fn slice_header(&self, nal: &[u8]) -> std::result::Result<Option<usize>, String> {
        self.slice_header_len(nal)
            .map_err(|e| format!("HEVC slice segment header: {}", e.0))
    }
}

/// The subsamples of one video sample: NAL length fields, NAL headers, parameter sets,
/// SEI and slice headers clear; slice data protected (for `cenc`, in whole blocks).
fn nal_subsamples(
    params: &mut impl NalHeaders,
    sample: &[u8],
    scheme: Scheme,
) -> std::result::Result<Vec<crypt::Subsample>, String> {
    let n = params.length_size();
    let mut ranges = Vec::new();
    let mut at = 0;
    while at < sample.len() {
        let len_bytes = sample
            .get(at..at + n)
            .ok_or_else(|| "a NAL length field past the sample's end".to_string())?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let nal = sample
            .get(at + n..at + n + len)
            .ok_or_else(|| "a NAL unit past the sample's end".to_string())?;
        params.add(nal)?;
        match params.slice_header(nal)? {
            Some(header) => {
                let mut clear = n + header;
                let mut protected = len - header;
                if scheme == Scheme::Cenc {
                    let rem = protected % 16;
                    clear += rem;
                    protected -= rem;
                }
                ranges.push((clear, protected));
            }
            None => ranges.push((n + len, 0)),
        }
        at += n + len;
    }
    Ok(crypt::subsamples(&ranges))
}

/// Decrypts a protected fragment's samples with `key`, from what its init segment and
/// `senc` say (nothing of the encryption side is reused): the clear samples in order.
/// What the round-trip tests check against the clear encode.
pub fn decrypt_samples(
    init: &[u8],
    frag: &[u8],
    key: &[u8; 16],
    ctx: &str,
) -> Result<Vec<Vec<u8>>> {
    let (scheme, _format, tenc) = boxes::read_protection(init, ctx)?;
    let found = boxes::samples(frag, ctx)?;
    let aux = match boxes::read_senc(frag, tenc.iv_size, ctx) {
        Ok(a) => a,
        // cbcs audio carries no per-sample information.
        Err(_) if tenc.iv_size == 0 => found
            .ranges
            .iter()
            .map(|_| SampleAux {
                iv: Vec::new(),
                subsamples: Vec::new(),
            })
            .collect(),
        Err(e) => return Err(e),
    };
    if aux.len() != found.ranges.len() {
        return Err(refuse(format!(
            "{ctx}: senc lists {} samples, trun {}",
            aux.len(),
            found.ranges.len()
        )));
    }
    let mut out = Vec::with_capacity(aux.len());
    for (r, a) in found.ranges.iter().zip(&aux) {
        let mut s = frag[r.clone()].to_vec();
        let iv = sample_iv(&tenc, &a.iv);
        crypt::decrypt(scheme, key, &iv, tenc.pattern, &mut s, &a.subsamples);
        out.push(s);
    }
    Ok(out)
}

/// A fragment's samples as stored (clear or not), for comparing with [`decrypt_samples`].
pub fn fragment_samples(frag: &[u8], ctx: &str) -> Result<Vec<Vec<u8>>> {
    Ok(boxes::samples(frag, ctx)?
        .ranges
        .into_iter()
        .map(|r| frag[r].to_vec())
        .collect())
}
