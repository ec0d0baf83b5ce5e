//! The box layout of common encryption: the protected sample entry (`encv`/`enca` with
//! `sinf`: `frma`, `schm`, `schi`/`tenc`) and `pssh` in the init segment, and the sample
//! auxiliary information (`senc`, `saiz`, `saio`) in each fragment's `traf`.
//!
//! No crate writes these correctly over ffmpeg's output without re-muxing it, and the
//! rewrite is small: boxes are appended, and every size and offset that moves with them
//! (the ancestors' sizes, `trun`'s data offset) is rewritten.

use super::crypt::{Pattern, Subsample};
use super::Scheme;
use crate::error::{Error, Result};
use crate::mp4::{be_u32, boxes, child, make_box, rewrite_entry, BoxRef, ANY};

fn err(ctx: &str, reason: impl Into<String>) -> Error {
    Error::Mp4 {
        context: ctx.into(),
        reason: reason.into(),
    }
}

fn full_box(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(body.len() + 4);
    b.push(version);
    b.extend_from_slice(&flags.to_be_bytes()[1..]);
    b.extend_from_slice(body);
    make_box(kind, &b)
}

/// What the `tenc` box says: the scheme's defaults for every sample of the track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenc {
    /// The key's ID.
    pub kid: [u8; 16],
    /// Bytes of per-sample IV in `senc` (8 for `cenc`, 0 for `cbcs`).
    pub iv_size: u8,
    /// The IV every sample starts from when `iv_size` is 0.
    pub constant_iv: Option<[u8; 16]>,
    /// The encryption pattern (`cbcs`; whole blocks for `cenc`).
    pub pattern: Pattern,
}

fn tenc_box(t: &Tenc, scheme: Scheme) -> Vec<u8> {
    let mut b = vec![0u8];
    let version = match scheme {
        Scheme::Cbcs => {
            b.push((t.pattern.crypt << 4) | (t.pattern.skip & 0x0f));
            1
        }
        Scheme::Cenc => {
            b.push(0);
            0
        }
    };
    b.push(1); // default_isProtected
    b.push(t.iv_size);
    b.extend_from_slice(&t.kid);
    if let (0, Some(iv)) = (t.iv_size, t.constant_iv) {
        b.push(16);
        b.extend_from_slice(&iv);
    }
    full_box(b"tenc", version, 0, &b)
}

/// The `sinf` for a sample entry whose original format is `format`.
fn sinf_box(format: [u8; 4], scheme: Scheme, t: &Tenc) -> Vec<u8> {
    let frma = make_box(b"frma", &format);
    let mut schm = scheme.fourcc().to_vec();
    schm.extend_from_slice(&0x0001_0000u32.to_be_bytes());
    let schm = full_box(b"schm", 0, 0, &schm);
    let schi = make_box(b"schi", &tenc_box(t, scheme));
    make_box(b"sinf", &[frma, schm, schi].concat())
}

/// The sample entry of an init segment, and where it sits.
pub struct SampleEntry {
    /// Its four-character code (`avc1`, `mp4a` …).
    pub format: [u8; 4],
    /// Bytes of fields before its child boxes.
    pub fields: usize,
    /// The entry's child boxes, by kind and body.
    pub children: Vec<([u8; 4], Vec<u8>)>,
}

const TRACK_PATH: [&[u8; 4]; 6] = [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"];

/// The single sample entry of an init segment's single track, and the bytes of fields
/// before its child boxes (ISO/IEC 14496-12: 78 for a visual entry, 28 for an audio one).
fn entry(init: &[u8], ctx: &str) -> Result<(BoxRef, usize)> {
    let mut range = 0..init.len();
    for name in TRACK_PATH {
        let b = child(init, range, name, ctx)?
            .ok_or_else(|| err(ctx, format!("no {}", String::from_utf8_lossy(name))))?;
        range = b.body();
    }
    let entries = boxes(init, range.start + 8..range.end, ctx)?;
    let [e] = entries.as_slice() else {
        return Err(err(ctx, "the track has not exactly one sample entry"));
    };
    let fields = match &e.kind {
        b"avc1" | b"avc3" | b"hvc1" | b"hev1" | b"av01" | b"vp09" | b"encv" => 78,
        b"mp4a" | b"ac-3" | b"ec-3" | b"Opus" | b"fLaC" | b"enca" => 28,
        other => {
            return Err(err(
                ctx,
                format!(
                    "sample entry {} is not one vodpipe writes",
                    String::from_utf8_lossy(other)
                ),
            ))
        }
    };
    if e.body().len() < fields {
        return Err(err(ctx, "short sample entry"));
    }
    Ok((*e, fields))
}

fn read_entry(init: &[u8], e: BoxRef, fields: usize, ctx: &str) -> Result<SampleEntry> {
    let body = e.body();
    let children = boxes(init, body.start + fields..body.end, ctx)?
        .into_iter()
        .map(|c| (c.kind, init[c.body()].to_vec()))
        .collect();
    Ok(SampleEntry {
        format: e.kind,
        fields,
        children,
    })
}

/// Reads the (single) sample entry of a clear init segment's (single) track.
pub fn sample_entry(init: &[u8], ctx: &str) -> Result<SampleEntry> {
    let (e, fields) = entry(init, ctx)?;
    if &e.kind == b"encv" || &e.kind == b"enca" {
        return Err(err(ctx, "the track is protected already"));
    }
    if fields == 28 && init[e.body().start + 8..e.body().start + 10] != [0, 0] {
        return Err(err(ctx, "a QuickTime sound description (version 1 or 2)"));
    }
    read_entry(init, e, fields, ctx)
}

/// The protected init segment: the sample entry renamed `encv`/`enca` with a `sinf`
/// appended, and `pssh` boxes appended to `moov`.
pub fn protect_init(
    init: &[u8],
    scheme: Scheme,
    tenc: &Tenc,
    pssh: &[Vec<u8>],
    ctx: &str,
) -> Result<Vec<u8>> {
    // Down to stsd, then its sample entry whatever its kind.
    let path = [b"trak", b"mdia", b"minf", b"stbl", b"stsd", ANY];
    let mut with_sinf = |entry: &[u8]| -> Result<Vec<u8>> {
        let mut format = [0u8; 4];
        format.copy_from_slice(&entry[4..8]);
        let renamed: &[u8; 4] = match &format {
            b"mp4a" | b"ac-3" | b"ec-3" | b"Opus" | b"fLaC" => b"enca",
            _ => b"encv",
        };
        let mut body = entry[8..].to_vec();
        body.extend(sinf_box(format, scheme, tenc));
        Ok(make_box(renamed, &body))
    };
    let mut out = Vec::with_capacity(init.len() + 512);
    for b in boxes(init, 0..init.len(), ctx)? {
        if &b.kind != b"moov" {
            out.extend_from_slice(&init[b.start..b.end]);
            continue;
        }
        let mut body = rewrite_entry(init, b, &path, &mut with_sinf, ctx)?;
        for p in pssh {
            body.extend_from_slice(p);
        }
        out.extend(make_box(b"moov", &body));
    }
    Ok(out)
}

/// Where a fragment's samples are, from its `moof`.
pub struct Samples {
    /// Each sample's byte range in the fragment.
    pub ranges: Vec<std::ops::Range<usize>>,
}

/// Finds the samples of a fragment (`moof` with one `traf` and one `trun`, then `mdat`,
/// data offsets relative to the `moof`, as ffmpeg's `default_base_moof` writes).
pub fn samples(frag: &[u8], ctx: &str) -> Result<Samples> {
    let top = boxes(frag, 0..frag.len(), ctx)?;
    let moof = top
        .iter()
        .find(|b| &b.kind == b"moof")
        .ok_or_else(|| err(ctx, "no moof"))?;
    let trafs: Vec<BoxRef> = boxes(frag, moof.body(), ctx)?
        .into_iter()
        .filter(|b| &b.kind == b"traf")
        .collect();
    let [traf] = trafs.as_slice() else {
        return Err(err(ctx, "a fragment with more than one track"));
    };
    let tfhd = child(frag, traf.body(), b"tfhd", ctx)?.ok_or_else(|| err(ctx, "no tfhd"))?;
    let tflags = be_u32(frag, tfhd.body().start).unwrap_or(0) & 0x00ff_ffff;
    if tflags & 0x1 != 0 {
        return Err(err(ctx, "an explicit base data offset"));
    }
    let mut at = tfhd.body().start + 8;
    for bit in [0x2u32, 0x8] {
        if tflags & bit != 0 {
            at += 4;
        }
    }
    let default_size = if tflags & 0x10 != 0 {
        be_u32(frag, at).ok_or_else(|| err(ctx, "short tfhd"))?
    } else {
        0
    };
    let truns: Vec<BoxRef> = boxes(frag, traf.body(), ctx)?
        .into_iter()
        .filter(|b| &b.kind == b"trun")
        .collect();
    let [trun] = truns.as_slice() else {
        return Err(err(ctx, "a track fragment without exactly one trun"));
    };
    let body = trun.body();
    let flags = be_u32(frag, body.start).unwrap_or(0) & 0x00ff_ffff;
    let count = be_u32(frag, body.start + 4).ok_or_else(|| err(ctx, "short trun"))? as usize;
    let mut at = body.start + 8;
    if flags & 0x1 == 0 {
        return Err(err(ctx, "a trun without a data offset"));
    }
    let offset = i64::from(be_u32(frag, at).ok_or_else(|| err(ctx, "short trun"))? as i32);
    at += 4;
    if flags & 0x4 != 0 {
        at += 4;
    }
    let per = [0x100u32, 0x200, 0x400, 0x800]
        .iter()
        .filter(|&&b| flags & b != 0)
        .count()
        * 4;
    let mut ranges = Vec::with_capacity(count);
    let mut pos = moof.start as i64 + offset;
    for i in 0..count {
        let entry = at + i * per;
        let size = if flags & 0x200 != 0 {
            let skip = if flags & 0x100 != 0 { 4 } else { 0 };
            be_u32(frag, entry + skip).ok_or_else(|| err(ctx, "short trun"))?
        } else {
            default_size
        };
        let start = usize::try_from(pos).map_err(|_| err(ctx, "sample before the fragment"))?;
        let end = start + size as usize;
        if end > frag.len() {
            return Err(err(ctx, "sample data past the fragment's end"));
        }
        ranges.push(start..end);
        pos += i64::from(size);
    }
    Ok(Samples { ranges })
}

/// Per-sample auxiliary information: the IV (when per-sample) and the subsamples.
pub struct SampleAux {
    /// The per-sample IV (`iv_size` bytes; empty for a constant IV).
    pub iv: Vec<u8>,
    /// The subsamples (empty: the whole sample is protected).
    pub subsamples: Vec<Subsample>,
}

/// Appends `senc`, `saiz` and `saio` to the fragment's `traf` and moves `trun`'s data
/// offset (and so the samples) by the bytes added. Returns the new fragment and the
/// number of bytes added before the `mdat`.
pub fn add_aux(
    frag: &[u8],
    aux: &[SampleAux],
    use_subsamples: bool,
    ctx: &str,
) -> Result<(Vec<u8>, usize)> {
    let top = boxes(frag, 0..frag.len(), ctx)?;
    let moof = *top
        .iter()
        .find(|b| &b.kind == b"moof")
        .ok_or_else(|| err(ctx, "no moof"))?;
    if moof.start != 0 || moof.header != 8 {
        return Err(err(ctx, "the fragment does not start with a 32-bit moof"));
    }
    // senc: the entries, saiz: their sizes, saio: where the first entry is.
    let mut senc = (aux.len() as u32).to_be_bytes().to_vec();
    let mut sizes = Vec::with_capacity(aux.len());
    for a in aux {
        let before = senc.len();
        senc.extend_from_slice(&a.iv);
        if use_subsamples {
            senc.extend_from_slice(&(a.subsamples.len() as u16).to_be_bytes());
            for s in &a.subsamples {
                senc.extend_from_slice(&s.clear.to_be_bytes());
                senc.extend_from_slice(&s.protected.to_be_bytes());
            }
        }
        let size = senc.len() - before;
        sizes.push(u8::try_from(size).map_err(|_| err(ctx, "a sample with too many subsamples"))?);
    }
    let senc = full_box(b"senc", 0, if use_subsamples { 2 } else { 0 }, &senc);
    let all_same = sizes.windows(2).all(|w| w[0] == w[1]);
    let mut saiz = vec![if all_same {
        sizes.first().copied().unwrap_or(0)
    } else {
        0
    }];
    saiz.extend_from_slice(&(aux.len() as u32).to_be_bytes());
    if !all_same {
        saiz.extend_from_slice(&sizes);
    }
    let saiz = full_box(b"saiz", 0, 0, &saiz);
    let saio_len = 8 + 4 + 4 + 4;
    let added = senc.len() + saiz.len() + saio_len;

    let mut moof_body = Vec::with_capacity(moof.end - moof.start + added);
    let mut saio_at = None;
    for b in boxes(frag, moof.body(), ctx)? {
        if &b.kind != b"traf" {
            moof_body.extend_from_slice(&frag[b.start..b.end]);
            continue;
        }
        if b.header != 8 {
            return Err(err(ctx, "a 64-bit traf"));
        }
        let mut traf = frag[b.body()].to_vec();
        // trun's data offset moves by what is added to the moof.
        let body_start = b.body().start;
        for c in boxes(frag, b.body(), ctx)? {
            if &c.kind == b"trun" {
                let flags = be_u32(frag, c.body().start).unwrap_or(0);
                if flags & 0x1 != 0 {
                    let at = c.body().start + 8;
                    let old = be_u32(frag, at).ok_or_else(|| err(ctx, "short trun"))? as i32;
                    let new = old
                        .checked_add(added as i32)
                        .ok_or_else(|| err(ctx, "trun data offset overflow"))?;
                    traf[at - body_start..at - body_start + 4].copy_from_slice(&new.to_be_bytes());
                }
            }
        }
        // Offsets within the new moof: moof header, boxes before this traf, traf header.
        let traf_start = 8 + moof_body.len();
        let senc_entries = traf_start + 8 + traf.len() + 8 + 4 + 4;
        traf.extend_from_slice(&senc);
        traf.extend_from_slice(&saiz);
        let mut saio = 1u32.to_be_bytes().to_vec();
        saio.extend_from_slice(&(senc_entries as u32).to_be_bytes());
        traf.extend(full_box(b"saio", 0, 0, &saio));
        saio_at = Some(senc_entries);
        moof_body.extend(make_box(b"traf", &traf));
    }
    if saio_at.is_none() {
        return Err(err(ctx, "no traf"));
    }
    let mut out = make_box(b"moof", &moof_body);
    out.extend_from_slice(&frag[moof.end..]);
    Ok((out, added))
}

/// Reads a protected init segment's scheme and `tenc` (for decryption and checks).
pub fn read_protection(init: &[u8], ctx: &str) -> Result<(Scheme, [u8; 4], Tenc)> {
    let entry = sample_entry_any(init, ctx)?;
    let sinf = entry
        .children
        .iter()
        .find(|(k, _)| k == b"sinf")
        .map(|(_, b)| b.clone())
        .ok_or_else(|| err(ctx, "no sinf: the track is not protected"))?;
    let kids = boxes(&sinf, 0..sinf.len(), ctx)?;
    let get = |k: &[u8; 4]| {
        kids.iter()
            .find(|b| &b.kind == k)
            .map(|b| sinf[b.body()].to_vec())
    };
    let frma = get(b"frma").ok_or_else(|| err(ctx, "no frma"))?;
    let schm = get(b"schm").ok_or_else(|| err(ctx, "no schm"))?;
    let schi = get(b"schi").ok_or_else(|| err(ctx, "no schi"))?;
    let scheme = match schm.get(4..8) {
        Some(b"cbcs") => Scheme::Cbcs,
        Some(b"cenc") => Scheme::Cenc,
        other => {
            return Err(err(
                ctx,
                format!("scheme {:?}", other.map(String::from_utf8_lossy)),
            ))
        }
    };
    let tenc = child(&schi, 0..schi.len(), b"tenc", ctx)?.ok_or_else(|| err(ctx, "no tenc"))?;
    let t = &schi[tenc.body()];
    if t.len() < 24 {
        return Err(err(ctx, "short tenc"));
    }
    let pattern = if t[0] >= 1 {
        Pattern {
            crypt: t[5] >> 4,
            skip: t[5] & 0x0f,
        }
    } else {
        Pattern::WHOLE
    };
    let iv_size = t[7];
    let mut kid = [0u8; 16];
    kid.copy_from_slice(&t[8..24]);
    let constant_iv = if iv_size == 0 {
        let n = usize::from(*t.get(24).ok_or_else(|| err(ctx, "no constant IV"))?);
        let iv = t
            .get(25..25 + n)
            .ok_or_else(|| err(ctx, "short constant IV"))?;
        let mut full = [0u8; 16];
        full[..n.min(16)].copy_from_slice(&iv[..n.min(16)]);
        Some(full)
    } else {
        None
    };
    let mut format = [0u8; 4];
    format.copy_from_slice(frma.get(..4).ok_or_else(|| err(ctx, "short frma"))?);
    Ok((
        scheme,
        format,
        Tenc {
            kid,
            iv_size,
            constant_iv,
            pattern,
        },
    ))
}

/// [`sample_entry`] that also reads a protected (`encv`/`enca`) one.
pub fn sample_entry_any(init: &[u8], ctx: &str) -> Result<SampleEntry> {
    let (e, fields) = entry(init, ctx)?;
    read_entry(init, e, fields, ctx)
}

/// Reads a fragment's `senc` entries.
pub fn read_senc(frag: &[u8], iv_size: u8, ctx: &str) -> Result<Vec<SampleAux>> {
    let moof = boxes(frag, 0..frag.len(), ctx)?
        .into_iter()
        .find(|b| &b.kind == b"moof")
        .ok_or_else(|| err(ctx, "no moof"))?;
    let traf = child(frag, moof.body(), b"traf", ctx)?.ok_or_else(|| err(ctx, "no traf"))?;
    let senc = child(frag, traf.body(), b"senc", ctx)?.ok_or_else(|| err(ctx, "no senc"))?;
    let b = &frag[senc.body()];
    let flags = be_u32(b, 0).unwrap_or(0) & 0x00ff_ffff;
    let count = be_u32(b, 4).ok_or_else(|| err(ctx, "short senc"))? as usize;
    let mut at = 8;
    let mut out = Vec::with_capacity(count);
    let short = || err(ctx, "short senc");
    for _ in 0..count {
        let iv = b
            .get(at..at + usize::from(iv_size))
            .ok_or_else(short)?
            .to_vec();
        at += usize::from(iv_size);
        let mut subsamples = Vec::new();
        if flags & 2 != 0 {
            let n = b.get(at..at + 2).ok_or_else(short)?;
            let n = u16::from_be_bytes([n[0], n[1]]);
            at += 2;
            for _ in 0..n {
                let e = b.get(at..at + 6).ok_or_else(short)?;
                subsamples.push(Subsample {
                    clear: u16::from_be_bytes([e[0], e[1]]),
                    protected: u32::from_be_bytes([e[2], e[3], e[4], e[5]]),
                });
                at += 6;
            }
        }
        out.push(SampleAux { iv, subsamples });
    }
    Ok(out)
}
