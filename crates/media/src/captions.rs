//! Captions and subtitles: text subtitle streams of the source, and sidecar files beside
//! it, become WebVTT renditions.
//!
//! ffmpeg converts whatever text format the source carries (mov_text, SubRip, ASS, WebVTT)
//! to WebVTT; ASS styling is dropped there, the text never. The cues are then moved onto
//! the output timeline (0 is the first video frame) and cut on the video segment
//! boundaries, so HLS lists one subtitle segment per video segment, each with an
//! `X-TIMESTAMP-MAP` tying its cue times to the media timeline. A cue that spans a boundary
//! is repeated in both segments with the same times, as players expect. The whole file is
//! published too: DASH lists it as one text representation, and it is a download.
//!
//! Bitmap subtitles (PGS, DVB, VobSub) would need OCR to become text: they are listed as
//! skipped, never a failure.

use crate::error::{Error, Result};
use crate::probe::input_args;
use crate::process::ToolRun;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Subtitle codecs ffmpeg can turn into WebVTT text (`eia_608`: a MOV/MP4 closed-caption
/// track, as ProRes deliverables carry).
pub const TEXT_CODECS: &[&str] = &[
    "mov_text",
    "subrip",
    "srt",
    "ass",
    "ssa",
    "webvtt",
    "text",
    "microdvd",
    "subviewer",
    "eia_608",
];

/// Most subtitle tracks one job publishes (the source's text streams, then sidecars): each
/// is a work item, and one reads the whole source.
pub const MAX_TEXT_TRACKS: usize = 32;

/// Sidecar file extensions picked up beside a source (`<stem>.<lang>.srt|vtt`).
pub const SIDECAR_EXTENSIONS: &[&str] = &["srt", "vtt"];

/// Most sidecars one source picks up (a bound on the work items one upload makes).
pub const MAX_SIDECARS: usize = 32;

/// Demuxers a sidecar may be read with: nothing but the two text formats.
const SIDECAR_DEMUXERS: &str = "srt,webvtt";

/// Whether a subtitle stream of this codec can be published as text.
pub fn is_text_codec(codec: &str) -> bool {
    TEXT_CODECS.contains(&codec)
}

/// Whether a file name is a subtitle sidecar (an upload that goes with a video rather
/// than one of its own).
pub fn is_sidecar_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SIDECAR_EXTENSIONS
        .iter()
        .any(|e| lower.ends_with(&format!(".{e}")))
}

/// The language of `candidate` if it is a sidecar of `source` (both file names, no
/// directories): `<stem>.<lang>.srt` or `.vtt`, where `<stem>` is the source's name
/// without its extension and `<lang>` a BCP 47 tag such as `en`, `fra` or `pt-BR`.
pub fn sidecar_language(source: &str, candidate: &str) -> Option<String> {
    let stem = source.rsplit_once('.').map_or(source, |(s, _)| s);
    let rest = candidate.strip_prefix(stem)?.strip_prefix('.')?;
    let (lang, ext) = rest.rsplit_once('.')?;
    if !SIDECAR_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) {
        return None;
    }
    let mut parts = lang.split('-');
    let primary = parts.next()?;
    let primary_ok =
        (2..=3).contains(&primary.len()) && primary.chars().all(|c| c.is_ascii_alphabetic());
    let rest_ok =
        parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    (primary_ok && rest_ok).then(|| lang.to_string())
}

/// One cue, times in milliseconds on the output timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cue {
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms.
    pub end_ms: i64,
    /// Cue settings after the timing (`align:start line:90%`), possibly empty.
    pub settings: String,
    /// The cue text, lines joined by `\n`.
    pub text: String,
}

/// A published WebVTT rendition: the whole file and its segments.
#[derive(Debug, Clone, PartialEq)]
pub struct TextOutput {
    /// The whole file.
    pub whole: String,
    /// One WebVTT document per video segment, with its start and duration in ms.
    pub segments: Vec<TextSegment>,
    /// How many cues the source had (after dropping any that end before the video).
    pub cues: usize,
}

/// One subtitle segment.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSegment {
    /// The WebVTT document.
    pub body: String,
    /// Start on the output timeline, ms.
    pub start_ms: u64,
    /// Duration, ms.
    pub duration_ms: u64,
}

/// Where a text rendition comes from.
#[derive(Debug, Clone, Copy)]
pub enum TextInput {
    /// A subtitle stream of the source (its container index).
    Stream(u32),
    /// A sidecar file (SubRip or WebVTT).
    Sidecar,
}

/// How long and under which flags the conversion may run.
pub struct Limits {
    /// Run-time cap.
    pub timeout: Duration,
    /// Flags that stop it (lost lease, shutdown).
    pub cancel: Vec<Arc<AtomicBool>>,
    /// Where the output timeline ends, in seconds, when the published part of the source
    /// ends before the source does (a clip): cues from there on are dropped, and one that
    /// runs past it ends there.
    pub until_secs: Option<f64>,
}

/// Converts one subtitle source to WebVTT with ffmpeg, moves its cues by `-offset_secs`
/// (where the video starts on the subtitle file's clock) and cuts it on `bounds` (each
/// video segment's start and end, seconds on the output timeline).
pub fn webvtt_rendition(
    ffmpeg: &str,
    input: &Path,
    what: TextInput,
    offset_secs: f64,
    bounds: &[(f64, f64)],
    scratch: &Path,
    limits: &Limits,
) -> Result<TextOutput> {
    std::fs::create_dir_all(scratch).map_err(|e| Error::io("creating scratch dir", e))?;
    let out = scratch.join("subtitles.vtt");
    // The source's own clock, untouched: a sidecar's first cue must not be moved to 0.
    let mut args: Vec<String> = [
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "error",
        "-copyts",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut input = input_args(input);
    let map = match what {
        TextInput::Stream(index) => format!("0:{index}"),
        TextInput::Sidecar => {
            // A sidecar is text and nothing else: only the two subtitle demuxers.
            if let Some(i) = input.iter().position(|a| a == "-format_whitelist") {
                input[i + 1] = SIDECAR_DEMUXERS.to_string();
            }
            "0:s:0".to_string()
        }
    };
    args.extend(input);
    args.extend(
        ["-map", &map, "-c:s", "webvtt", "-f", "webvtt", "-y"]
            .iter()
            .map(|s| s.to_string()),
    );
    args.push(out.display().to_string());
    let mut run = ToolRun::new(ffmpeg, args, "convert subtitles").timeout(limits.timeout);
    for c in &limits.cancel {
        run = run.cancel_on(c.clone());
    }
    run.run()?;
    let text = std::fs::read_to_string(&out)
        .map_err(|e| Error::io(format!("reading {}", out.display()), e))?;
    let _ = std::fs::remove_file(&out);
    let offset_ms = (offset_secs * 1000.0).round() as i64;
    let mut cues = shift(parse(&text), -offset_ms);
    if let Some(until) = limits.until_secs {
        let until_ms = (until * 1000.0).round() as i64;
        cues.retain(|c| c.start_ms < until_ms);
        for c in &mut cues {
            c.end_ms = c.end_ms.min(until_ms);
        }
    }
    Ok(TextOutput {
        whole: whole(&cues),
        segments: segment(&cues, bounds),
        cues: cues.len(),
    })
}

/// Parses a WebVTT document's cues (header, NOTE, STYLE and REGION blocks skipped).
pub fn parse(text: &str) -> Vec<Cue> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut cues = Vec::new();
    for block in text.split("\n\n") {
        let mut lines = block.lines().skip_while(|l| l.trim().is_empty());
        let Some(mut first) = lines.next() else {
            continue;
        };
        if !first.contains("-->") {
            // A cue identifier, or a header/NOTE/STYLE block (no timing on the next line).
            match lines.next() {
                Some(l) if l.contains("-->") => first = l,
                _ => continue,
            }
        }
        let Some((start, rest)) = first.split_once("-->") else {
            continue;
        };
        let rest = rest.trim();
        let (end, settings) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let (Some(start_ms), Some(end_ms)) = (timestamp_ms(start.trim()), timestamp_ms(end)) else {
            continue;
        };
        let body: Vec<&str> = lines.collect();
        cues.push(Cue {
            start_ms,
            end_ms,
            settings: settings.trim().to_string(),
            text: body.join("\n"),
        });
    }
    cues
}

/// `hh:mm:ss.ttt` or `mm:ss.ttt` in milliseconds.
fn timestamp_ms(s: &str) -> Option<i64> {
    let (clock, frac) = s.split_once('.')?;
    let ms: i64 = frac.get(..3)?.parse().ok()?;
    let parts: Vec<i64> = clock
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let secs = match parts.as_slice() {
        [h, m, s] => h * 3600 + m * 60 + s,
        [m, s] => m * 60 + s,
        _ => return None,
    };
    Some(secs * 1000 + ms)
}

/// A millisecond time as a WebVTT timestamp (`hh:mm:ss.ttt`; negative times are 0).
pub fn timestamp(ms: i64) -> String {
    let ms = ms.max(0);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Moves cues by `delta_ms`, dropping any that then end at or before 0 and starting any
/// that straddle 0 at 0.
pub fn shift(cues: Vec<Cue>, delta_ms: i64) -> Vec<Cue> {
    cues.into_iter()
        .filter_map(|mut c| {
            c.start_ms = (c.start_ms + delta_ms).max(0);
            c.end_ms += delta_ms;
            (c.end_ms > c.start_ms).then_some(c)
        })
        .collect()
}

/// A WebVTT document of `cues`, with an `X-TIMESTAMP-MAP` header line when given.
fn document(cues: &[&Cue], map: Option<&str>) -> String {
    let mut s = String::from("WEBVTT\n");
    if let Some(m) = map {
        s.push_str(m);
        s.push('\n');
    }
    for c in cues {
        s.push('\n');
        s.push_str(&timestamp(c.start_ms));
        s.push_str(" --> ");
        s.push_str(&timestamp(c.end_ms));
        if !c.settings.is_empty() {
            s.push(' ');
            s.push_str(&c.settings);
        }
        s.push('\n');
        s.push_str(&c.text);
        s.push('\n');
    }
    s
}

/// The cues cut on `bounds`: one document per segment holding every cue that overlaps it.
/// Cue times are media times (the video's first frame is 0, where its first fragment's
/// decode time also starts), so every segment maps local 0 to MPEG-TS 0.
pub fn segment(cues: &[Cue], bounds: &[(f64, f64)]) -> Vec<TextSegment> {
    bounds
        .iter()
        .map(|&(start, end)| {
            let (s_ms, e_ms) = (
                (start * 1000.0).round() as i64,
                (end * 1000.0).round() as i64,
            );
            let inside: Vec<&Cue> = cues
                .iter()
                .filter(|c| c.start_ms < e_ms && c.end_ms > s_ms)
                .collect();
            TextSegment {
                body: document(&inside, Some("X-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000")),
                start_ms: s_ms.max(0) as u64,
                duration_ms: (e_ms - s_ms).max(0) as u64,
            }
        })
        .collect()
}

/// The whole-file document of `cues`.
pub fn whole(cues: &[Cue]) -> String {
    document(&cues.iter().collect::<Vec<_>>(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_are_named_for_their_source_and_a_language() {
        assert_eq!(
            sidecar_language("talk.mp4", "talk.en.srt").as_deref(),
            Some("en")
        );
        assert_eq!(
            sidecar_language("talk.mp4", "talk.pt-BR.vtt").as_deref(),
            Some("pt-BR")
        );
        assert_eq!(
            sidecar_language("talk.mp4", "talk.fra.SRT").as_deref(),
            Some("fra")
        );
        assert_eq!(sidecar_language("talk.mp4", "talk.srt"), None);
        assert_eq!(sidecar_language("talk.mp4", "talks.en.srt"), None);
        assert_eq!(sidecar_language("talk.mp4", "talk.en.txt"), None);
        assert_eq!(sidecar_language("talk.mp4", "talk.english!.srt"), None);
        assert!(is_sidecar_name("a/b.en.SRT") && is_sidecar_name("x.vtt"));
        assert!(!is_sidecar_name("x.mp4"));
    }

    #[test]
    fn cues_parse_with_identifiers_settings_and_both_clock_forms() {
        let vtt = "WEBVTT\r\n\r\nNOTE hi\r\n\r\n1\r\n00:01.500 --> 00:03.250 align:start\r\nHello\r\nthere\r\n\r\n01:00:00.000 --> 01:00:01.001\r\n<i>Bye</i>\r\n";
        let cues = parse(vtt);
        assert_eq!(cues.len(), 2, "{cues:?}");
        assert_eq!((cues[0].start_ms, cues[0].end_ms), (1500, 3250));
        assert_eq!(cues[0].settings, "align:start");
        assert_eq!(cues[0].text, "Hello\nthere");
        assert_eq!(
            (cues[1].start_ms, cues[1].end_ms),
            (3_600_000, 3_600_001 + 1000)
        );
        assert_eq!(parse(&whole(&cues)), cues);
    }

    #[test]
    fn segments_hold_every_cue_they_overlap_and_map_to_media_time() {
        let cues = shift(
            parse("WEBVTT\n\n00:00.200 --> 00:00.500\nearly\n\n00:03.000 --> 00:05.000\nspans\n\n00:09.000 --> 00:09.500\nlate\n"),
            -600,
        );
        // The first cue ended before the video started; the others moved 0.6 s earlier.
        assert_eq!(cues.len(), 2);
        assert_eq!((cues[0].start_ms, cues[0].end_ms), (2400, 4400));
        let segs = segment(&cues, &[(0.0, 4.004), (4.004, 8.008), (8.008, 9.0)]);
        assert_eq!(segs.len(), 3);
        assert!(segs.iter().all(|s| s
            .body
            .contains("X-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000")));
        assert!(segs[0]
            .body
            .contains("00:00:02.400 --> 00:00:04.400\nspans"));
        assert!(segs[1].body.contains("spans"), "a spanning cue is in both");
        assert!(!segs[2].body.contains("spans") && segs[2].body.contains("late"));
        assert_eq!((segs[1].start_ms, segs[1].duration_ms), (4004, 4004));
    }
}
