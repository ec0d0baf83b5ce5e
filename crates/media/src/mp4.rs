//! The small part of ISO-BMFF that stitching needs: split a fragmented MP4 into its init
//! segment and media segments, read what each segment holds, and move a segment on the
//! timeline by rewriting its `tfdt` (baseMediaDecodeTime).
//!
//! Why: ffmpeg's mp4 muxer starts every output's decode time at 0, so the chunks of one
//! rendition would each start at 0. Each chunk's segments are shifted by the chunk's
//! offset from the source start (known exactly from the plan), giving one continuous
//! timeline with a single init segment, without re-muxing anything. The rewrite is in place
//! and size-preserving (ffmpeg writes 64-bit `tfdt`), so `trun` data offsets stay valid.

use crate::error::{Error, Result};

/// A fragmented MP4 split into parts.
#[derive(Debug, Clone)]
pub struct Fragmented {
    /// `ftyp` + `moov`: the init segment.
    pub init: Vec<u8>,
    /// One entry per `moof` + `mdat` pair.
    pub fragments: Vec<Fragment>,
}

/// One media segment and what it contains.
#[derive(Debug, Clone)]
pub struct Fragment {
    /// `moof` + `mdat` bytes, ready to store.
    pub bytes: Vec<u8>,
    /// The `tfdt` value.
    pub base_decode_time: u64,
    /// Samples (frames) in the fragment.
    pub samples: u64,
    /// Sum of sample durations, in the track timescale.
    pub duration: u64,
    /// Composition offset of the first sample (B-frame delay), in the track timescale.
    pub first_cts_offset: i64,
    /// Whether the first sample is a sync sample (keyframe).
    pub starts_with_sync: bool,
    /// Where the first sample's data ends, from the start of the fragment, when it is a
    /// keyframe: the bytes `0..key_frame_end` (`moof`, the `mdat` header and the keyframe)
    /// are what an HLS I-frame playlist points a player at for trick play.
    pub key_frame_end: Option<u64>,
}

/// A box header located in a buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BoxRef {
    pub(crate) kind: [u8; 4],
    pub(crate) start: usize,
    pub(crate) header: usize,
    pub(crate) end: usize,
}

impl BoxRef {
    pub(crate) fn body(&self) -> std::ops::Range<usize> {
        self.start + self.header..self.end
    }
}

fn err(context: &str, reason: impl Into<String>) -> Error {
    Error::Mp4 {
        context: context.into(),
        reason: reason.into(),
    }
}

pub(crate) fn be_u32(d: &[u8], at: usize) -> Option<u32> {
    d.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

pub(crate) fn be_u64(d: &[u8], at: usize) -> Option<u64> {
    d.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

/// Lists the boxes in `d[range]`.
pub(crate) fn boxes(d: &[u8], range: std::ops::Range<usize>, ctx: &str) -> Result<Vec<BoxRef>> {
    let mut out = Vec::new();
    let mut at = range.start;
    while at + 8 <= range.end {
        let size32 = be_u32(d, at).ok_or_else(|| err(ctx, "truncated box header"))?;
        let mut kind = [0u8; 4];
        kind.copy_from_slice(&d[at + 4..at + 8]);
        let (size, header) = match size32 {
            0 => ((range.end - at) as u64, 8),
            1 => (
                be_u64(d, at + 8).ok_or_else(|| err(ctx, "truncated large size"))?,
                16,
            ),
            n => (u64::from(n), 8),
        };
        let end = at
            .checked_add(usize::try_from(size).map_err(|_| err(ctx, "box too large"))?)
            .filter(|&e| e <= range.end && size >= header as u64)
            .ok_or_else(|| {
                err(
                    ctx,
                    format!("box {} overruns its parent", String::from_utf8_lossy(&kind)),
                )
            })?;
        out.push(BoxRef {
            kind,
            start: at,
            header,
            end,
        });
        at = end;
    }
    Ok(out)
}

pub(crate) fn child(
    d: &[u8],
    parent: std::ops::Range<usize>,
    kind: &[u8; 4],
    ctx: &str,
) -> Result<Option<BoxRef>> {
    Ok(boxes(d, parent, ctx)?.into_iter().find(|b| &b.kind == kind))
}

/// Splits a fragmented MP4 (as written with `-movflags frag_keyframe+empty_moov+
/// default_base_moof`) into init and media segments. Boxes other than ftyp/moov/moof/mdat
/// (free, sidx, mfra) are dropped.
pub fn split(d: &[u8], ctx: &str) -> Result<Fragmented> {
    let top = boxes(d, 0..d.len(), ctx)?;
    let mut init = Vec::new();
    let mut fragments = Vec::new();
    let mut pending_moof: Option<BoxRef> = None;
    let mut trex_duration = 0u32;
    for b in &top {
        match &b.kind {
            b"ftyp" => init.extend_from_slice(&d[b.start..b.end]),
            b"moov" => {
                init.extend_from_slice(&d[b.start..b.end]);
                trex_duration = trex_default_duration(d, *b, ctx)?.unwrap_or(0);
            }
            b"moof" => pending_moof = Some(*b),
            b"mdat" => {
                let moof = pending_moof
                    .take()
                    .ok_or_else(|| err(ctx, "mdat without moof"))?;
                let mut bytes = d[moof.start..moof.end].to_vec();
                bytes.extend_from_slice(&d[b.start..b.end]);
                let mut f = read_fragment(&bytes, trex_duration, ctx)?;
                f.bytes = bytes;
                fragments.push(f);
            }
            _ => {}
        }
    }
    if init.is_empty() {
        return Err(err(ctx, "no ftyp/moov (not a fragmented MP4)"));
    }
    Ok(Fragmented { init, fragments })
}

fn trex_default_duration(d: &[u8], moov: BoxRef, ctx: &str) -> Result<Option<u32>> {
    let Some(mvex) = child(d, moov.body(), b"mvex", ctx)? else {
        return Ok(None);
    };
    let Some(trex) = child(d, mvex.body(), b"trex", ctx)? else {
        return Ok(None);
    };
    Ok(be_u32(d, trex.body().start + 12))
}

/// Reads the `tfdt`, sample count, durations and first composition offset of one
/// `moof`+`mdat` (only the first `traf`; vodpipe writes one track per file).
fn read_fragment(d: &[u8], trex_duration: u32, ctx: &str) -> Result<Fragment> {
    let moof = boxes(d, 0..d.len(), ctx)?
        .into_iter()
        .find(|b| &b.kind == b"moof")
        .ok_or_else(|| err(ctx, "no moof"))?;
    let traf = child(d, moof.body(), b"traf", ctx)?.ok_or_else(|| err(ctx, "moof without traf"))?;
    let mut base_decode_time = None;
    let mut default_duration = trex_duration;
    let mut samples = 0u64;
    let mut duration = 0u64;
    let mut first_cts_offset = 0i64;
    let mut starts_with_sync = false;
    let mut default_flags = 0u32;
    let mut default_size = None;
    let mut first_sample_data: Option<(i64, u32)> = None;
    let mut first_trun = true;
    for b in boxes(d, traf.body(), ctx)? {
        let body = b.body();
        let version = d[body.start];
        let flags = be_u32(d, body.start).unwrap_or(0) & 0x00ff_ffff;
        match &b.kind {
            b"tfhd" => {
                let mut at = body.start + 8;
                if flags & 0x1 != 0 {
                    at += 8;
                }
                if flags & 0x2 != 0 {
                    at += 4;
                }
                if flags & 0x8 != 0 {
                    default_duration = be_u32(d, at).ok_or_else(|| err(ctx, "short tfhd"))?;
                    at += 4;
                }
                if flags & 0x10 != 0 {
                    default_size = be_u32(d, at);
                    at += 4;
                }
                if flags & 0x20 != 0 {
                    default_flags = be_u32(d, at).ok_or_else(|| err(ctx, "short tfhd"))?;
                }
            }
            b"tfdt" => {
                base_decode_time = Some(
                    if version == 1 {
                        be_u64(d, body.start + 4)
                    } else {
                        be_u32(d, body.start + 4).map(u64::from)
                    }
                    .ok_or_else(|| err(ctx, "short tfdt"))?,
                );
            }
            b"trun" => {
                let count = be_u32(d, body.start + 4).ok_or_else(|| err(ctx, "short trun"))?;
                let mut at = body.start + 8;
                // The data offset counts from the moof (default-base-is-moof, which is
                // how vodpipe's fragments are written).
                let mut data_offset = None;
                if flags & 0x1 != 0 {
                    data_offset = be_u32(d, at).map(|o| i64::from(o as i32));
                    at += 4;
                }
                let mut first_flags = None;
                if flags & 0x4 != 0 {
                    first_flags = be_u32(d, at);
                    at += 4;
                }
                for i in 0..count {
                    let mut dur = default_duration;
                    let mut sflags = if i == 0 {
                        first_flags.unwrap_or(default_flags)
                    } else {
                        default_flags
                    };
                    if flags & 0x100 != 0 {
                        dur = be_u32(d, at).ok_or_else(|| err(ctx, "short trun"))?;
                        at += 4;
                    }
                    let mut size = default_size;
                    if flags & 0x200 != 0 {
                        size = be_u32(d, at);
                        at += 4;
                    }
                    if first_trun && i == 0 {
                        first_sample_data = data_offset.zip(size);
                    }
                    if flags & 0x400 != 0 {
                        sflags = be_u32(d, at).ok_or_else(|| err(ctx, "short trun"))?;
                        at += 4;
                    }
                    if flags & 0x800 != 0 {
                        let raw = be_u32(d, at).ok_or_else(|| err(ctx, "short trun"))?;
                        if first_trun && i == 0 {
                            first_cts_offset = if version == 0 {
                                i64::from(raw)
                            } else {
                                i64::from(raw as i32)
                            };
                        }
                        at += 4;
                    }
                    if first_trun && i == 0 {
                        // sample_is_non_sync_sample is bit 16 of the sample flags.
                        starts_with_sync = sflags & 0x0001_0000 == 0;
                    }
                    duration += u64::from(dur);
                }
                samples += u64::from(count);
                first_trun = false;
            }
            _ => {}
        }
    }
    Ok(Fragment {
        bytes: Vec::new(),
        base_decode_time: base_decode_time.ok_or_else(|| err(ctx, "traf without tfdt"))?,
        samples,
        duration,
        first_cts_offset,
        starts_with_sync,
        key_frame_end: first_sample_data
            .filter(|_| starts_with_sync)
            .and_then(|(offset, size)| u64::try_from(offset + i64::from(size)).ok())
            .filter(|&end| end <= d.len() as u64),
    })
}

/// Adds `delta` to the fragment's `tfdt`, in place.
pub fn shift_decode_time(f: &mut Fragment, delta: u64, ctx: &str) -> Result<()> {
    let d = &mut f.bytes;
    let moof = boxes(d, 0..d.len(), ctx)?
        .into_iter()
        .find(|b| &b.kind == b"moof")
        .ok_or_else(|| err(ctx, "no moof"))?;
    let traf = child(d, moof.body(), b"traf", ctx)?.ok_or_else(|| err(ctx, "no traf"))?;
    let tfdt = child(d, traf.body(), b"tfdt", ctx)?.ok_or_else(|| err(ctx, "no tfdt"))?;
    let at = tfdt.body().start;
    let value = f.base_decode_time + delta;
    if d[at] == 1 {
        d[at + 4..at + 12].copy_from_slice(&value.to_be_bytes());
    } else {
        let v32 = u32::try_from(value).map_err(|_| err(ctx, "32-bit tfdt overflow"))?;
        d[at + 4..at + 8].copy_from_slice(&v32.to_be_bytes());
    }
    f.base_decode_time = value;
    Ok(())
}

/// Subtracts `shift` from every sample's composition offset, writing the `trun` as
/// version 1 (signed offsets), in place. With `shift` equal to the first sample's offset,
/// the fragment's first frame is presented at its decode time (`tfdt`): the video timeline
/// then starts at 0 instead of after the B-frame reorder delay, as CMAF recommends, and
/// chunks join with both decode and presentation times continuous.
pub fn shift_composition(f: &mut Fragment, shift: i64, ctx: &str) -> Result<()> {
    if shift == 0 {
        return Ok(());
    }
    let d = &mut f.bytes;
    let moof = boxes(d, 0..d.len(), ctx)?
        .into_iter()
        .find(|b| &b.kind == b"moof")
        .ok_or_else(|| err(ctx, "no moof"))?;
    let traf = child(d, moof.body(), b"traf", ctx)?.ok_or_else(|| err(ctx, "no traf"))?;
    for trun in boxes(d, traf.body(), ctx)?
        .into_iter()
        .filter(|b| &b.kind == b"trun")
    {
        let body = trun.body();
        let version = d[body.start];
        let flags = be_u32(d, body.start).unwrap_or(0) & 0x00ff_ffff;
        if flags & 0x800 == 0 {
            return Err(err(ctx, "trun has no composition offsets to shift"));
        }
        let count = be_u32(d, body.start + 4).ok_or_else(|| err(ctx, "short trun"))?;
        let mut at = body.start + 8;
        if flags & 0x1 != 0 {
            at += 4;
        }
        if flags & 0x4 != 0 {
            at += 4;
        }
        let per_sample = [0x100, 0x200, 0x400]
            .iter()
            .filter(|&&f| flags & f != 0)
            .count()
            * 4;
        for _ in 0..count {
            at += per_sample;
            let raw = be_u32(d, at).ok_or_else(|| err(ctx, "short trun"))?;
            let old = if version == 0 {
                i64::from(raw)
            } else {
                i64::from(raw as i32)
            };
            let new = i32::try_from(old - shift)
                .map_err(|_| err(ctx, "composition offset out of range"))?;
            d[at..at + 4].copy_from_slice(&new.to_be_bytes());
            at += 4;
        }
        d[body.start] = 1;
    }
    f.first_cts_offset -= shift;
    Ok(())
}

fn path(d: &[u8], names: &[&[u8; 4]], ctx: &str) -> Result<Option<BoxRef>> {
    let mut range = 0..d.len();
    let mut found = None;
    for name in names {
        let b = match child(d, range.clone(), name, ctx)? {
            Some(b) => b,
            None => return Ok(None),
        };
        range = b.body();
        found = Some(b);
    }
    Ok(found)
}

/// The track timescale (`mdhd`) of an init segment.
pub fn timescale(init: &[u8], ctx: &str) -> Result<u32> {
    let mdhd = path(init, &[b"moov", b"trak", b"mdia", b"mdhd"], ctx)?
        .ok_or_else(|| err(ctx, "no mdhd"))?;
    let body = mdhd.body();
    let at = if init[body.start] == 1 {
        body.start + 20
    } else {
        body.start + 12
    };
    be_u32(init, at).ok_or_else(|| err(ctx, "short mdhd"))
}

/// The sample description (`stsd`) bytes: two chunks' init segments are interchangeable
/// exactly when these agree (same codec configuration, SPS/PPS, dimensions).
pub fn sample_description(init: &[u8], ctx: &str) -> Result<Vec<u8>> {
    let stsd = path(
        init,
        &[b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"],
        ctx,
    )?
    .ok_or_else(|| err(ctx, "no stsd"))?;
    Ok(init[stsd.start..stsd.end].to_vec())
}

/// The first sample entry of the track's `stsd`, if it has one.
fn first_entry(init: &[u8], ctx: &str) -> Result<Option<BoxRef>> {
    let stsd = path(
        init,
        &[b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"],
        ctx,
    )?
    .ok_or_else(|| err(ctx, "no stsd"))?;
    let body = stsd.body();
    Ok(boxes(init, body.start + 8..body.end, ctx)?.first().copied())
}

/// The RFC 6381 codec string of the track (`avc1.64001F`, `mp4a.40.2`).
pub fn codec_string(init: &[u8], ctx: &str) -> Result<String> {
    let entry = &first_entry(init, ctx)?.ok_or_else(|| err(ctx, "empty stsd"))?;
    // A protected entry (`encv`/`enca`) names its codec in `sinf`/`frma`.
    let mut kind = entry.kind;
    if &kind == b"encv" || &kind == b"enca" {
        let fields = if &kind == b"enca" { 28 } else { 78 };
        let inner = entry.body().start + fields..entry.end;
        let sinf = child(init, inner, b"sinf", ctx)?.ok_or_else(|| err(ctx, "no sinf"))?;
        let frma = child(init, sinf.body(), b"frma", ctx)?.ok_or_else(|| err(ctx, "no frma"))?;
        kind.copy_from_slice(
            init.get(frma.body().start..frma.body().start + 4)
                .ok_or_else(|| err(ctx, "short frma"))?,
        );
    }
    match &kind {
        b"avc1" | b"avc3" => {
            // Visual sample entry: 8 reserved/index bytes + 70 bytes of fields, then boxes.
            let inner = entry.body().start + 78..entry.end;
            let avcc = child(init, inner, b"avcC", ctx)?.ok_or_else(|| err(ctx, "no avcC"))?;
            let b = avcc.body().start;
            let p = init
                .get(b + 1..b + 4)
                .ok_or_else(|| err(ctx, "short avcC"))?;
            Ok(format!(
                "{}.{:02X}{:02X}{:02X}",
                String::from_utf8_lossy(&kind),
                p[0],
                p[1],
                p[2]
            ))
        }
        b"hvc1" | b"hev1" => {
            let inner = entry.body().start + 78..entry.end;
            let hvcc = child(init, inner, b"hvcC", ctx)?.ok_or_else(|| err(ctx, "no hvcC"))?;
            let b = hvcc.body().start;
            let p = init.get(b..b + 13).ok_or_else(|| err(ctx, "short hvcC"))?;
            Ok(hevc_codec_string(&kind, p))
        }
        b"av01" => {
            let inner = entry.body().start + 78..entry.end;
            let av1c = child(init, inner, b"av1C", ctx)?.ok_or_else(|| err(ctx, "no av1C"))?;
            let b = av1c.body().start;
            let p = init.get(b..b + 3).ok_or_else(|| err(ctx, "short av1C"))?;
            let mut s = av1_codec_string(p);
            // The optional fields default to BT.709 limited range: an HDR rung's colour must
            // be spelled out, or a player reads it as SDR. SDR rungs keep the short form
            // they always had.
            if let Some(c) = colour(init, ctx)?.filter(|c| c.dynamic_range().is_hdr()) {
                s.push_str(&format!(
                    ".{}.{}{}{}.{:02}.{:02}.{:02}.{}",
                    u8::from(p[2] & 0x10 != 0),
                    u8::from(p[2] & 0x08 != 0),
                    u8::from(p[2] & 0x04 != 0),
                    p[2] & 0x03,
                    c.primaries,
                    c.transfer,
                    c.matrix,
                    u8::from(c.full_range)
                ));
            }
            Ok(s)
        }
        // vodpipe encodes AAC-LC only.
        b"mp4a" => Ok("mp4a.40.2".into()),
        other => Err(err(
            ctx,
            format!("unexpected sample entry {}", String::from_utf8_lossy(other)),
        )),
    }
}

/// A box of `kind` around `body` (32-bit size).
pub fn make_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(body.len() + 8);
    b.extend_from_slice(&((body.len() + 8) as u32).to_be_bytes());
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

/// A path element that matches any box.
pub(crate) const ANY: &[u8; 4] = b"****";

/// Rebuilds `parent`'s body with the boxes at `path` below it rewritten by `f` (the last
/// element may be [`ANY`]), every box on the way resized.
pub(crate) fn rewrite_entry(
    d: &[u8],
    parent: BoxRef,
    path: &[&[u8; 4]],
    f: &mut dyn FnMut(&[u8]) -> Result<Vec<u8>>,
    ctx: &str,
) -> Result<Vec<u8>> {
    let body = parent.body();
    let lead = if &parent.kind == b"stsd" { 8 } else { 0 };
    let mut out = d[body.start..body.start + lead].to_vec();
    for b in boxes(d, body.start + lead..body.end, ctx)? {
        match path.first() {
            Some(&name) if name == ANY => out.extend(f(&d[b.start..b.end])?),
            Some(&name) if *name == b.kind => {
                if b.header != 8 {
                    return Err(err(ctx, "a 64-bit box size on the way to the sample entry"));
                }
                out.extend(make_box(&b.kind, &rewrite_entry(d, b, &path[1..], f, ctx)?));
            }
            _ => out.extend_from_slice(&d[b.start..b.end]),
        }
    }
    Ok(out)
}

/// The path from `moov` down to every sample entry.
const ENTRY_PATH: [&[u8; 4]; 6] = [b"trak", b"mdia", b"minf", b"stbl", b"stsd", ANY];

/// The colour the track's sample entry states in its `colr` box (`nclx`), if it has one:
/// what the manifests signal (HLS `VIDEO-RANGE`, DASH's `cicp` descriptors).
pub fn colour(init: &[u8], ctx: &str) -> Result<Option<crate::colour::Cicp>> {
    let Some(entry) = first_entry(init, ctx)? else {
        return Ok(None);
    };
    if !matches!(
        &entry.kind,
        b"avc1" | b"avc3" | b"hvc1" | b"hev1" | b"av01" | b"encv"
    ) || entry.body().len() < 78
    {
        return Ok(None);
    }
    let inner = entry.body().start + 78..entry.end;
    Ok(child(init, inner, b"colr", ctx)?
        .and_then(|c| crate::colour::Cicp::from_colr(&init[c.body()])))
}

/// The init segment with `extra` (whole boxes) added to its video sample entry, right
/// after its `colr` box (or last, without one): how an HDR rung's `mdcv` and `clli` get
/// into the container when the muxer writes only `colr`.
pub fn add_to_sample_entry(init: &[u8], extra: &[u8], ctx: &str) -> Result<Vec<u8>> {
    if extra.is_empty() {
        return Ok(init.to_vec());
    }
    let mut add = |entry: &[u8]| -> Result<Vec<u8>> {
        if entry.len() < 8 + 78 {
            return Err(err(ctx, "short visual sample entry"));
        }
        let mut kind = [0u8; 4];
        kind.copy_from_slice(&entry[4..8]);
        let mut body = entry[8..8 + 78].to_vec();
        // Boxes of a kind `extra` brings are replaced, never doubled.
        let adding: Vec<[u8; 4]> = boxes(extra, 0..extra.len(), ctx)?
            .iter()
            .map(|b| b.kind)
            .collect();
        let children: Vec<BoxRef> = boxes(entry, 8 + 78..entry.len(), ctx)?
            .into_iter()
            .filter(|c| !adding.contains(&c.kind))
            .collect();
        let after = children.iter().position(|c| &c.kind == b"colr");
        for (i, c) in children.iter().enumerate() {
            body.extend_from_slice(&entry[c.start..c.end]);
            if after == Some(i) {
                body.extend_from_slice(extra);
            }
        }
        if after.is_none() {
            body.extend_from_slice(extra);
        }
        Ok(make_box(&kind, &body))
    };
    let mut out = Vec::with_capacity(init.len() + extra.len());
    for b in boxes(init, 0..init.len(), ctx)? {
        if &b.kind == b"moov" {
            out.extend(make_box(
                b"moov",
                &rewrite_entry(init, b, &ENTRY_PATH, &mut add, ctx)?,
            ));
        } else {
            out.extend_from_slice(&init[b.start..b.end]);
        }
    }
    Ok(out)
}

/// The HEVC codec string (ISO/IEC 14496-15 Annex E) from the first 13 bytes of an
/// `hvcC`: `hvc1.<space><profile>.<compatibility, bit-reversed hex>.<tier><level>` and the
/// constraint bytes up to the last non-zero one (`hvc1.1.6.L93.B0`).
fn hevc_codec_string(kind: &[u8], p: &[u8]) -> String {
    let space = ["", "A", "B", "C"][usize::from(p[1] >> 6)];
    let tier = if p[1] & 0x20 != 0 { 'H' } else { 'L' };
    let profile = p[1] & 0x1f;
    let compat = u32::from_be_bytes([p[2], p[3], p[4], p[5]]).reverse_bits();
    let constraints = &p[6..12];
    let used = constraints
        .iter()
        .rposition(|&c| c != 0)
        .map_or(0, |i| i + 1);
    let mut out = format!(
        "{}.{space}{profile}.{compat:X}.{tier}{}",
        String::from_utf8_lossy(kind),
        p[12]
    );
    for c in &constraints[..used] {
        out.push_str(&format!(".{c:X}"));
    }
    out
}

/// The AV1 codec string (AV1 ISOBMFF binding, "Codecs Parameter String") from the first
/// three bytes of an `av1C`: `av01.<profile>.<level><tier>.<bit depth>` (`av01.0.05M.08`).
fn av1_codec_string(p: &[u8]) -> String {
    let profile = p[1] >> 5;
    let level = p[1] & 0x1f;
    let tier = if p[2] & 0x80 != 0 { 'H' } else { 'M' };
    let depth = match (p[2] & 0x40 != 0, p[2] & 0x20 != 0) {
        (true, true) if profile == 2 => 12,
        (true, _) => 10,
        _ => 8,
    };
    format!("av01.{profile}.{level:02}{tier}.{depth:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    fn fragment(tfdt: u64, durations: &[u32]) -> Vec<u8> {
        let tfhd = bx(b"tfhd", &[0, 0x02, 0, 0, 0, 0, 0, 1]);
        let mut t = vec![1, 0, 0, 0];
        t.extend_from_slice(&tfdt.to_be_bytes());
        let tfdt = bx(b"tfdt", &t);
        let mut r = vec![0, 0, 0x01, 0x00];
        r.extend_from_slice(&(durations.len() as u32).to_be_bytes());
        for d in durations {
            r.extend_from_slice(&d.to_be_bytes());
        }
        let trun = bx(b"trun", &r);
        let traf = bx(b"traf", &[tfhd, tfdt, trun].concat());
        let moof = bx(b"moof", &traf);
        [moof, bx(b"mdat", &[1, 2, 3])].concat()
    }

    #[test]
    fn fragments_are_split_counted_and_shifted_in_place() {
        let file = [
            bx(b"ftyp", b"isom"),
            bx(b"moov", &[]),
            fragment(0, &[1001; 3]),
            fragment(3003, &[1001, 1001]),
        ]
        .concat();
        let mut f = split(&file, "t").unwrap();
        assert_eq!(f.init.len(), 12 + 8);
        assert_eq!(f.fragments.len(), 2);
        assert_eq!((f.fragments[1].samples, f.fragments[1].duration), (2, 2002));
        let len = f.fragments[1].bytes.len();
        shift_decode_time(&mut f.fragments[1], 120_120, "t").unwrap();
        assert_eq!(f.fragments[1].bytes.len(), len);
        let again = read_fragment(&f.fragments[1].bytes, 0, "t").unwrap();
        assert_eq!(again.base_decode_time, 123_123);
    }

    #[test]
    fn composition_offsets_become_signed_and_start_at_zero() {
        // flags: durations (0x100) and composition offsets (0x800).
        let tfhd = bx(b"tfhd", &[0, 0x02, 0, 0, 0, 0, 0, 1]);
        let tfdt = bx(b"tfdt", &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut r = vec![0, 0, 0x09, 0x00, 0, 0, 0, 3];
        for (dur, cts) in [(1001u32, 2002u32), (1001, 5005), (1001, 0)] {
            r.extend_from_slice(&dur.to_be_bytes());
            r.extend_from_slice(&cts.to_be_bytes());
        }
        let traf = bx(b"traf", &[tfhd, tfdt, bx(b"trun", &r)].concat());
        let file = [
            bx(b"ftyp", b"isom"),
            bx(b"moov", &[]),
            bx(b"moof", &traf),
            bx(b"mdat", &[0]),
        ]
        .concat();
        let mut f = split(&file, "t").unwrap();
        let frag = &mut f.fragments[0];
        assert_eq!(frag.first_cts_offset, 2002);
        shift_composition(frag, 2002, "t").unwrap();
        let again = read_fragment(&frag.bytes, 0, "t").unwrap();
        assert_eq!(again.first_cts_offset, 0);
        // The third sample's offset is now negative: -2002 as a signed 32-bit value.
        let tail = &frag.bytes[frag.bytes.len() - 9 - 4..frag.bytes.len() - 9];
        assert_eq!(i32::from_be_bytes(tail.try_into().unwrap()), -2002);
    }

    #[test]
    fn a_box_overrunning_its_parent_is_an_error_not_a_panic() {
        let mut file = bx(b"ftyp", b"isom");
        file[3] = 200;
        assert!(split(&file, "t").is_err());
        assert!(split(&[0, 0, 0], "t").is_err());
    }

    #[test]
    fn hevc_and_av1_codec_strings_follow_their_bindings() {
        // Main profile, compatible with Main and Main 10 (flags 0x60000000), main tier,
        // progressive source and frame-only constraints (0xB0), level 3.1 (93).
        let hvcc = [1, 0x01, 0x60, 0, 0, 0, 0xB0, 0, 0, 0, 0, 0, 93];
        assert_eq!(hevc_codec_string(b"hvc1", &hvcc), "hvc1.1.6.L93.B0");
        // Main 10, high tier, level 5.1 (153), no constraint flags.
        let hvcc = [1, 0x22, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 153];
        assert_eq!(hevc_codec_string(b"hvc1", &hvcc), "hvc1.2.4.H153");
        // Main profile, level 3.1 (index 5), main tier, 8 bits.
        assert_eq!(av1_codec_string(&[0x81, 0x05, 0x0C]), "av01.0.05M.08");
        // High profile, level 5.1 (13), high tier, 10 bits.
        assert_eq!(av1_codec_string(&[0x81, 0x2D, 0xC0]), "av01.1.13H.10");
    }

    /// A minimal init segment: moov/trak/mdia/minf/stbl/stsd with one visual entry of
    /// `kind` holding `children`.
    fn init_with(kind: &[u8; 4], children: &[u8]) -> Vec<u8> {
        let mut entry = vec![0u8; 78];
        entry.extend_from_slice(children);
        let mut stsd = vec![0, 0, 0, 0, 0, 0, 0, 1];
        stsd.extend(bx(kind, &entry));
        let stbl = bx(b"stbl", &bx(b"stsd", &stsd));
        let moov = bx(b"moov", &bx(b"trak", &bx(b"mdia", &bx(b"minf", &stbl))));
        [bx(b"ftyp", b"isom"), moov].concat()
    }

    #[test]
    fn hdr_boxes_go_after_colr_and_every_size_on_the_way_grows() {
        let colr = bx(b"colr", &[b'n', b'c', b'l', b'x', 0, 9, 0, 16, 0, 9, 0]);
        let pasp = bx(b"pasp", &[0, 0, 0, 1, 0, 0, 0, 1]);
        let init = init_with(b"hvc1", &[colr.clone(), pasp.clone()].concat());
        let extra = [bx(b"mdcv", &[1u8; 24]), bx(b"clli", &[0, 100, 0, 50])].concat();
        let out = add_to_sample_entry(&init, &extra, "t").unwrap();
        assert_eq!(out.len(), init.len() + extra.len());
        let c = colour(&out, "t").unwrap().unwrap();
        assert_eq!(c.dynamic_range(), crate::colour::DynamicRange::Pq);
        // The boxes parse all the way down, in order: colr, mdcv, clli, pasp.
        let stsd = path(
            &out,
            &[b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"],
            "t",
        )
        .unwrap()
        .unwrap();
        let entry = boxes(&out, stsd.body().start + 8..stsd.end, "t").unwrap()[0];
        let kinds: Vec<[u8; 4]> = boxes(&out, entry.body().start + 78..entry.end, "t")
            .unwrap()
            .iter()
            .map(|b| b.kind)
            .collect();
        assert_eq!(kinds, [*b"colr", *b"mdcv", *b"clli", *b"pasp"]);
        // Nothing to add leaves the init as it was; no colr puts them last.
        assert_eq!(add_to_sample_entry(&init, &[], "t").unwrap(), init);
        let bare = init_with(b"avc1", &pasp);
        assert!(colour(&bare, "t").unwrap().is_none());
        let out = add_to_sample_entry(&bare, &extra, "t").unwrap();
        assert_eq!(&out[out.len() - extra.len()..], &extra[..]);
    }

    #[test]
    fn an_hdr_av1_codec_string_spells_out_its_colour() {
        let colr = bx(b"colr", &[b'n', b'c', b'l', b'x', 0, 9, 0, 16, 0, 9, 0]);
        let av1c = bx(b"av1C", &[0x81, 0x05, 0x4D, 0]);
        let init = init_with(b"av01", &[av1c.clone(), colr].concat());
        assert_eq!(
            codec_string(&init, "t").unwrap(),
            "av01.0.05M.10.0.111.09.16.09.0"
        );
        // SDR (here BT.601) keeps the short form.
        let sdr = bx(b"colr", &[b'n', b'c', b'l', b'x', 0, 6, 0, 6, 0, 6, 0]);
        let init = init_with(b"av01", &[av1c, sdr].concat());
        assert_eq!(codec_string(&init, "t").unwrap(), "av01.0.05M.10");
    }
}
