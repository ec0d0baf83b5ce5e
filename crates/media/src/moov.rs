//! Frame tables of MP4/MOV sources from their sample tables, in a few ranged reads.
//!
//! Planning needs every video frame's presentation time. Asking ffprobe for the packet
//! table reads every packet, which for a source in S3 means downloading all of it inside
//! the ingest function's timeout: a feature-length master cannot be probed that way. An
//! MP4 or MOV file already carries that table in its `moov` box (decode durations in
//! `stts`, composition offsets in `ctts`, sizes and offsets in `stsz`/`stsc`/`stco`), so
//! this module reads the top-level box headers and the `moov` box with range requests
//! (a few MB at most for a feature) and derives the same timestamps ffmpeg would report.
//!
//! It only answers for files whose timing it reproduces exactly (no fragments, at most one
//! edit, a normal rate) and says `None` otherwise, so the caller scans packets instead;
//! [`crate::probe`] also checks the table against what ffprobe reports for the stream.

use crate::error::{Error, Result};
use crate::mp4::{be_u32, be_u64, boxes, child, BoxRef};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The largest `moov` read. A six-hour film's is a few MB; a larger one is hostile or
/// unusual, and the packet scan (bounded by the probe timeout) decides.
const MAX_MOOV_BYTES: u64 = 64 * 1024 * 1024;
/// The most samples a track may declare (a six-hour source at 240 fps has 5.2 million).
const MAX_SAMPLES: u64 = 20_000_000;
/// The most top-level boxes looked at before giving up on finding `moov`.
const MAX_TOP_BOXES: usize = 256;

/// A source read by byte ranges: a local file or an HTTP(S) URL. Counts what it reads, so
/// the probe can report its cost.
pub struct RangeSource {
    kind: Kind,
    size: u64,
    bytes_read: AtomicU64,
    reads: AtomicU64,
}

enum Kind {
    File(std::sync::Mutex<std::fs::File>),
    Http { url: String, agent: ureq::Agent },
}

impl RangeSource {
    /// Opens a local file or, for an `http(s)://` URL, asks for its first bytes to learn
    /// its size (from `Content-Range`).
    pub fn open(input: &Path) -> Result<RangeSource> {
        let s = input.to_string_lossy();
        if s.starts_with("http://") || s.starts_with("https://") {
            let agent = ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(10))
                .timeout_read(Duration::from_secs(30))
                .build();
            let mut src = RangeSource {
                kind: Kind::Http {
                    url: s.into_owned(),
                    agent,
                },
                size: 0,
                bytes_read: AtomicU64::new(0),
                reads: AtomicU64::new(0),
            };
            let (_, total) = src.get_range(0, 0)?;
            src.size = total;
            Ok(src)
        } else {
            let file = std::fs::File::open(input)
                .map_err(|e| Error::io(input.display().to_string(), e))?;
            let size = file
                .metadata()
                .map_err(|e| Error::io(input.display().to_string(), e))?
                .len();
            Ok(RangeSource {
                kind: Kind::File(std::sync::Mutex::new(file)),
                size,
                bytes_read: AtomicU64::new(0),
                reads: AtomicU64::new(0),
            })
        }
    }

    /// The source's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// Reads made so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// `len` bytes from `offset` (fewer at the end of the source).
    pub fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let len = len.min(self.size.saturating_sub(offset));
        if len == 0 {
            return Ok(Vec::new());
        }
        let data = match &self.kind {
            Kind::File(f) => {
                let mut f = f
                    .lock()
                    .map_err(|_| Error::Unavailable("source file lock poisoned".into()))?;
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| Error::io("seeking the source", e))?;
                let mut buf = Vec::with_capacity(len as usize);
                (&mut *f)
                    .take(len)
                    .read_to_end(&mut buf)
                    .map_err(|e| Error::io("reading the source", e))?;
                self.count(buf.len());
                buf
            }
            Kind::Http { .. } => self.get_range(offset, offset + len - 1)?.0,
        };
        if (data.len() as u64) < len {
            return Err(Error::Rejected(format!(
                "source is truncated: {len} bytes at offset {offset} cannot be read"
            )));
        }
        Ok(data)
    }

    fn count(&self, n: usize) {
        self.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    /// One ranged GET, tried again after a 5xx answer or a network error (S3's SlowDown,
    /// a dropped connection) at 0.2, 0.8 and 3.2 s: the bytes and the total size.
    fn get_range(&self, first: u64, last: u64) -> Result<(Vec<u8>, u64)> {
        let mut wait = Duration::from_millis(200);
        for _ in 0..3 {
            match self.get_range_once(first, last) {
                Err(Error::Unavailable(why)) => {
                    tracing::debug!(%why, "range read failed; trying again");
                    std::thread::sleep(wait);
                    wait *= 4;
                }
                other => return other,
            }
        }
        self.get_range_once(first, last)
    }

    /// [`Self::get_range`], once.
    fn get_range_once(&self, first: u64, last: u64) -> Result<(Vec<u8>, u64)> {
        let Kind::Http { url, agent } = &self.kind else {
            return Err(Error::Unavailable("not an HTTP source".into()));
        };
        let resp = agent
            .get(url)
            .set("Range", &format!("bytes={first}-{last}"))
            .call()
            .map_err(|e| match e {
                ureq::Error::Status(code, _) if code < 500 => {
                    Error::Rejected(format!("source cannot be read: HTTP {code}"))
                }
                other => Error::Unavailable(format!("reading the source failed: {other}")),
            })?;
        if resp.status() != 206 {
            return Err(Error::Unavailable(format!(
                "the source server answered a range request with HTTP {}",
                resp.status()
            )));
        }
        let total = resp
            .header("Content-Range")
            .and_then(|cr| cr.rsplit('/').next())
            .and_then(|t| t.trim().parse::<u64>().ok())
            .ok_or_else(|| Error::Unavailable("range answer without a total size".into()))?;
        let mut buf = Vec::new();
        resp.into_reader()
            .take(last - first + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::Unavailable(format!("reading the source failed: {e}")))?;
        self.count(buf.len());
        Ok((buf, total))
    }
}

/// What the sample tables say about one video track.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameTable {
    /// Presentation time of every sample whose bytes are in the file, ascending, in the
    /// track's timescale, as ffmpeg's mov demuxer reports them (edit shift applied).
    pub pts: Vec<i64>,
    /// Samples the track declares (more than `pts.len()` when the file is cut short).
    pub declared: u64,
    /// The track's timescale (`mdhd`): the stream's time base is `1/timescale`.
    pub timescale: u32,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Mp4 {
        context: "moov".into(),
        reason: reason.into(),
    }
}

/// Finds the `moov` box by walking top-level box headers, and reads it whole. `None` for a
/// fragmented file (`moof` before `moov` is found, or `mvex` inside it) or a huge `moov`.
pub fn read_moov(src: &RangeSource) -> Result<Option<Vec<u8>>> {
    let mut at = 0u64;
    for _ in 0..MAX_TOP_BOXES {
        if at + 8 > src.size() {
            return Ok(None);
        }
        let head = src.read_at(at, 16.min(src.size() - at))?;
        let size32 = be_u32(&head, 0).ok_or_else(|| bad("truncated box header"))?;
        let kind = &head[4..8];
        let size = match size32 {
            0 => src.size() - at,
            1 => be_u64(&head, 8).ok_or_else(|| bad("truncated large size"))?,
            n => u64::from(n),
        };
        if size < 8 {
            return Err(bad("a top-level box is smaller than its header"));
        }
        match kind {
            b"moov" if size <= MAX_MOOV_BYTES => return src.read_at(at, size).map(Some),
            b"moov" | b"moof" => return Ok(None),
            _ => {
                at = at
                    .checked_add(size)
                    .ok_or_else(|| bad("box sizes overflow"))?
            }
        }
    }
    Ok(None)
}

/// The frame table of the `ordinal`-th track (ffmpeg numbers streams in track order), if it
/// is a video track whose timing this module reproduces; `file_size` decides which samples
/// are really in the file.
pub fn frame_table(moov: &[u8], ordinal: usize, file_size: u64) -> Result<Option<FrameTable>> {
    let ctx = "moov";
    let top = boxes(moov, 0..moov.len(), ctx)?;
    let Some(moov_box) = top.iter().find(|b| &b.kind == b"moov") else {
        return Ok(None);
    };
    let body = moov_box.body();
    if child(moov, body.clone(), b"mvex", ctx)?.is_some() {
        return Ok(None);
    }
    let movie_timescale = child(moov, body.clone(), b"mvhd", ctx)?
        .map(|b| full_box_u32(moov, b, 12, 20))
        .transpose()?
        .unwrap_or(0);
    let traks: Vec<BoxRef> = boxes(moov, body, ctx)?
        .into_iter()
        .filter(|b| &b.kind == b"trak")
        .collect();
    let Some(trak) = traks.get(ordinal) else {
        return Ok(None);
    };
    let find = |path: &[&[u8; 4]]| -> Result<Option<BoxRef>> {
        let mut range = trak.body();
        let mut found = None;
        for name in path {
            match child(moov, range.clone(), name, ctx)? {
                Some(b) => {
                    range = b.body();
                    found = Some(b);
                }
                None => return Ok(None),
            }
        }
        Ok(found)
    };
    let hdlr = find(&[b"mdia", b"hdlr"])?.ok_or_else(|| bad("track without hdlr"))?;
    if moov.get(hdlr.body().start + 8..hdlr.body().start + 12) != Some(b"vide") {
        return Ok(None);
    }
    let mdhd = find(&[b"mdia", b"mdhd"])?.ok_or_else(|| bad("track without mdhd"))?;
    let timescale = full_box_u32(moov, mdhd, 12, 20)?;
    if timescale == 0 {
        return Err(bad("track timescale is zero"));
    }
    let stbl = [b"mdia", b"minf", b"stbl"];
    let table = |name: &[u8; 4]| -> Result<Option<BoxRef>> {
        let mut path: Vec<&[u8; 4]> = stbl.to_vec();
        path.push(name);
        find(&path)
    };
    let (Some(stts), Some(stsz), Some(stsc)) = (table(b"stts")?, table(b"stsz")?, table(b"stsc")?)
    else {
        return Err(bad("track without stts, stsz or stsc"));
    };
    let deltas = entries(moov, stts, 8, |d, at| {
        Ok((u64::from(u32_at(d, at)?), i64::from(u32_at(d, at + 4)?)))
    })?;
    let declared: u64 = deltas.iter().map(|(n, _)| n).sum();
    if declared > MAX_SAMPLES {
        return Ok(None);
    }
    let sizes = sample_sizes(moov, stsz)?;
    if sizes.len() as u64 != declared {
        return Err(bad("stts and stsz disagree on the sample count"));
    }
    let offsets = match (table(b"stco")?, table(b"co64")?) {
        (Some(b), _) => entries(moov, b, 4, |d, at| Ok(u64::from(u32_at(d, at)?)))?,
        (None, Some(b)) => entries(moov, b, 8, |d, at| {
            be_u64(d, at).ok_or_else(|| bad("truncated co64"))
        })?,
        (None, None) => return Err(bad("track without chunk offsets")),
    };
    let runs = entries(moov, stsc, 12, |d, at| {
        Ok((u64::from(u32_at(d, at)?), u64::from(u32_at(d, at + 4)?)))
    })?;
    let in_file = samples_in_file(&sizes, &offsets, &runs, file_size)?;
    let composition = match table(b"ctts")? {
        Some(b) => entries(moov, b, 8, |d, at| {
            // ffmpeg reads every offset as signed, whatever the box version says.
            Ok((
                u64::from(u32_at(d, at)?),
                i64::from(u32_at(d, at + 4)? as i32),
            ))
        })?,
        None => Vec::new(),
    };
    let Some((media_start, delay)) =
        edit_shift(moov, find(&[b"edts", b"elst"])?, timescale, movie_timescale)?
    else {
        return Ok(None);
    };
    let shift = media_start - delay;
    let mut pts = Vec::with_capacity(in_file.iter().filter(|&&b| b).count());
    let mut dts = 0i64;
    let mut ctts = composition
        .iter()
        .flat_map(|&(n, off)| std::iter::repeat_n(off, n as usize));
    let mut sample = 0usize;
    for &(count, delta) in &deltas {
        for _ in 0..count {
            let offset = ctts.next().unwrap_or(0);
            if in_file.get(sample).copied().unwrap_or(false) {
                pts.push(dts + offset - shift);
            }
            dts += delta;
            sample += 1;
        }
    }
    pts.sort_unstable();
    pts.dedup();
    // An edit that starts between two frames (a trimmed copy) is resolved by ffmpeg in
    // ways the tables alone do not settle: decline it.
    if media_start != 0 && pts.binary_search(&delay).is_err() {
        return Ok(None);
    }
    Ok(Some(FrameTable {
        pts,
        declared,
        timescale,
    }))
}

/// A full box's 32-bit field at `v0` bytes into its body (after version and flags), or at
/// `v1` for a version-1 box (64-bit times before it).
fn full_box_u32(d: &[u8], b: BoxRef, v0: usize, v1: usize) -> Result<u32> {
    let body = b.body().start;
    let version = *d.get(body).ok_or_else(|| bad("truncated full box"))?;
    u32_at(d, body + if version == 1 { v1 } else { v0 })
}

fn u32_at(d: &[u8], at: usize) -> Result<u32> {
    be_u32(d, at).ok_or_else(|| bad("truncated table"))
}

/// The entries of a table box (version/flags, a count, then `size`-byte entries).
fn entries<T>(
    d: &[u8],
    b: BoxRef,
    size: usize,
    read: impl Fn(&[u8], usize) -> Result<T>,
) -> Result<Vec<T>> {
    let body = b.body();
    let count = u32_at(d, body.start + 4)? as usize;
    let first = body.start + 8;
    if count
        .checked_mul(size)
        .and_then(|n| n.checked_add(first))
        .is_none_or(|end| end > body.end)
    {
        return Err(bad(format!(
            "{} declares more entries than it holds",
            String::from_utf8_lossy(&b.kind)
        )));
    }
    (0..count).map(|i| read(d, first + i * size)).collect()
}

/// Every sample's size (`stsz`: one size for all, or one per sample).
fn sample_sizes(d: &[u8], b: BoxRef) -> Result<Vec<u64>> {
    let body = b.body().start;
    let fixed = u32_at(d, body + 4)?;
    let count = u64::from(u32_at(d, body + 8)?);
    if count > MAX_SAMPLES {
        return Err(bad("stsz declares too many samples"));
    }
    if fixed != 0 {
        return Ok(vec![u64::from(fixed); count as usize]);
    }
    let end = body + 12 + count as usize * 4;
    if end > b.body().end {
        return Err(bad("stsz declares more sizes than it holds"));
    }
    (0..count as usize)
        .map(|i| u32_at(d, body + 12 + i * 4).map(u64::from))
        .collect()
}

/// Which samples lie wholly inside the first `file_size` bytes: where a cut-short file
/// ends, ffmpeg stops reading packets, and so does the frame table.
fn samples_in_file(
    sizes: &[u64],
    offsets: &[u64],
    runs: &[(u64, u64)],
    file_size: u64,
) -> Result<Vec<bool>> {
    let mut out = Vec::with_capacity(sizes.len());
    let mut sample = 0usize;
    for (chunk, &offset) in offsets.iter().enumerate() {
        let chunk_no = chunk as u64 + 1;
        let per_chunk = runs
            .iter()
            .take_while(|(first, _)| *first <= chunk_no)
            .last()
            .map(|&(_, n)| n)
            .ok_or_else(|| bad("stsc does not cover the first chunk"))?;
        let mut at = offset;
        for _ in 0..per_chunk {
            let Some(&size) = sizes.get(sample) else {
                break;
            };
            at = at.saturating_add(size);
            out.push(at <= file_size);
            sample += 1;
        }
    }
    if out.len() != sizes.len() {
        return Err(bad("the chunk tables do not place every sample"));
    }
    Ok(out)
}

/// How ffmpeg moves the track's timestamps for its edit list: back by the media time of
/// its one edit (the first value), and forward by any empty edits before it (a delayed
/// start; the second), rescaled from the movie's timescale as ffmpeg rounds it. `None` for
/// lists it treats otherwise (several real edits, another rate, a negative media time).
fn edit_shift(
    d: &[u8],
    elst: Option<BoxRef>,
    timescale: u32,
    movie_timescale: u32,
) -> Result<Option<(i64, i64)>> {
    let Some(elst) = elst else {
        return Ok(Some((0, 0)));
    };
    let body = elst.body().start;
    let version = *d.get(body).ok_or_else(|| bad("truncated elst"))?;
    let count = u32_at(d, body + 4)? as usize;
    let size = if version == 1 { 20 } else { 12 };
    if body + 8 + count * size > elst.body().end {
        return Err(bad("elst declares more entries than it holds"));
    }
    let mut empty: i64 = 0;
    let mut media: Option<i64> = None;
    for i in 0..count {
        let at = body + 8 + i * size;
        let (duration, media_time, rate) = if version == 1 {
            (
                be_u64(d, at).ok_or_else(|| bad("truncated elst"))? as i64,
                be_u64(d, at + 8).ok_or_else(|| bad("truncated elst"))? as i64,
                u32_at(d, at + 16)?,
            )
        } else {
            (
                i64::from(u32_at(d, at)?),
                i64::from(u32_at(d, at + 4)? as i32),
                u32_at(d, at + 8)?,
            )
        };
        match (media_time, media) {
            // Empty edits before the real one delay the track.
            (-1, None) => empty = empty.saturating_add(duration),
            (m, None) if m >= 0 && rate == 0x0001_0000 => media = Some(m),
            _ => return Ok(None),
        }
    }
    let Some(media) = media else {
        return Ok(Some((0, 0)));
    };
    if empty > 0 && movie_timescale == 0 {
        return Ok(None);
    }
    let delay = if empty > 0 {
        let (e, ts, mts) = (
            i128::from(empty),
            i128::from(timescale),
            i128::from(movie_timescale),
        );
        i64::try_from((e * ts + mts / 2) / mts).map_err(|_| bad("edit delay overflows"))?
    } else {
        0
    };
    Ok(Some((media, delay)))
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

    fn full(kind: &[u8; 4], words: &[u32]) -> Vec<u8> {
        let mut body = vec![0u8; 4];
        for w in words {
            body.extend_from_slice(&w.to_be_bytes());
        }
        bx(kind, &body)
    }

    /// A moov with one video track: 4 samples of 10 bytes at offset 100, B-frame order.
    fn moov(elst: Option<&[u32]>) -> Vec<u8> {
        let mut hdlr = vec![0u8; 8];
        hdlr.extend_from_slice(b"vide");
        hdlr.extend_from_slice(&[0u8; 12]);
        let stbl = [
            full(b"stts", &[1, 4, 512]),
            full(b"ctts", &[3, 1, 1024, 1, 2048, 2, 512]),
            full(b"stsz", &[10, 4]),
            full(b"stsc", &[1, 1, 4, 1]),
            full(b"stco", &[1, 100]),
        ]
        .concat();
        let minf = bx(b"minf", &bx(b"stbl", &stbl));
        let mdia = bx(
            b"mdia",
            &[
                full(b"mdhd", &[0, 0, 12800, 2048, 0]),
                bx(b"hdlr", &hdlr),
                minf,
            ]
            .concat(),
        );
        let mut trak = Vec::new();
        if let Some(e) = elst {
            trak.extend(bx(b"edts", &full(b"elst", e)));
        }
        trak.extend(mdia);
        bx(
            b"moov",
            &[full(b"mvhd", &[0, 0, 1000, 160]), bx(b"trak", &trak)].concat(),
        )
    }

    #[test]
    fn presentation_times_come_from_decode_durations_composition_offsets_and_the_edit() {
        let m = moov(Some(&[1, 160, 1024, 0x0001_0000]));
        let t = frame_table(&m, 0, 1000).unwrap().unwrap();
        assert_eq!(t.timescale, 12800);
        assert_eq!(t.declared, 4);
        // I P B B in decode order: dts 0,512,1024,1536 + ctts 1024,2048,512,512 - 1024.
        assert_eq!(t.pts, vec![0, 512, 1024, 1536]);
    }

    #[test]
    fn an_empty_edit_delays_the_track_by_its_duration_in_the_track_timescale() {
        // 10 ms empty (movie timescale 1000) = 128 ticks at 12800.
        let delayed = [2, 10, u32::MAX, 0x0001_0000, 160, 1024, 0x0001_0000];
        let t = frame_table(&moov(Some(&delayed)), 0, 1000)
            .unwrap()
            .unwrap();
        assert_eq!(t.pts, vec![128, 640, 1152, 1664]);
    }

    #[test]
    fn samples_past_the_end_of_a_cut_file_are_not_frames() {
        let t = frame_table(&moov(None), 0, 125).unwrap().unwrap();
        assert_eq!((t.declared, t.pts.len()), (4, 2));
    }

    #[test]
    fn edit_lists_it_cannot_reproduce_send_the_caller_to_the_packet_scan() {
        let two = [2, 80, 0, 0x0001_0000, 80, 1024, 0x0001_0000];
        assert_eq!(frame_table(&moov(Some(&two)), 0, 1000).unwrap(), None);
        let slow = [1, 160, 1024, 0x0000_8000];
        assert_eq!(frame_table(&moov(Some(&slow)), 0, 1000).unwrap(), None);
        assert_eq!(frame_table(&moov(None), 1, 1000).unwrap(), None);
    }

    #[test]
    fn a_table_declaring_more_than_it_holds_is_an_error_not_a_panic() {
        let mut m = moov(None);
        let at = m.windows(4).position(|w| w == b"stco").unwrap() + 8;
        m[at..at + 4].copy_from_slice(&1000u32.to_be_bytes());
        assert!(frame_table(&m, 0, 1000).is_err());
    }
}
