//! Packaging: HLS and DASH manifests over the committed segments.
//!
//! Nothing is re-muxed or copied: every segment stays where its chunk attempt wrote it
//! (immutable, cacheable forever) and the manifests reference it there. Each rendition
//! has one init segment (the first chunk's; the stitcher checks every chunk's sample
//! description matches), and one continuous timeline (the encoder placed each segment's
//! `tfdt`), so there are no discontinuity tags. Bandwidths are measured from the real
//! segment sizes, not copied from the ladder.

use crate::cenc::{Scheme, Signalling, System};
use crate::colour::DynamicRange;
use base64::Engine as _;
use m3u8_rs::{
    AlternativeMedia, AlternativeMediaType, ByteRange, Map, MasterPlaylist, MediaPlaylist,
    MediaPlaylistType, MediaSegment, QuotedOrUnquoted, Resolution, VariantStream,
};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// A stored media segment, as the stitcher sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRef {
    /// URI relative to the job directory (where the rendition playlists live).
    pub uri: String,
    /// Presentation start, in track ticks.
    pub start: u64,
    /// Duration, in track ticks.
    pub duration: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// How many bytes from the segment's start hold its keyframe (`moof`, `mdat` header,
    /// first sample): the byte range an I-frame playlist lists. None for audio, and for
    /// segments stored before trick play existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_frame_bytes: Option<u64>,
}

/// What kind of rendition a track is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TrackKind {
    /// A video rung.
    Video {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Frame rate as num/den.
        frame_rate: (i64, i64),
    },
    /// An audio track.
    Audio {
        /// ISO 639 language, if known.
        language: Option<String>,
        /// Display name.
        name: String,
        /// Channels: 2 (the stereo downmix every track gets) or 6 (a 5.1 rendition).
        #[serde(default = "stereo")]
        channels: u32,
    },
    /// A WebVTT subtitle rendition: its segments are WebVTT documents (timescale ms) cut
    /// on the video segments, and its `init_uri` is the whole file (what DASH lists).
    Text {
        /// BCP 47 / ISO 639 language, if known.
        language: Option<String>,
        /// Display name (unique among the job's text tracks).
        name: String,
        /// Forced subtitles: only what the dialogue does not say.
        #[serde(default)]
        forced: bool,
        /// For the deaf and hard of hearing (sounds described too).
        #[serde(default)]
        hearing_impaired: bool,
    },
    /// Scrubbing thumbnails: each segment is one tile (timescale ms: the video segment it
    /// stands for), and tiles sharing a URI sit left to right in that sprite sheet.
    Thumbnails {
        /// Tile width in pixels.
        width: u32,
        /// Tile height in pixels.
        height: u32,
        /// Tiles per sprite row (every sprite has one row).
        columns: u32,
    },
}

fn stereo() -> u32 {
    2
}

/// One rendition ready to be listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Rendition id (`720p`, `audio_0`); also its playlist name.
    pub id: String,
    /// Video or audio details.
    pub kind: TrackKind,
    /// RFC 6381 codec string.
    pub codec: String,
    /// Ticks per second.
    pub timescale: u32,
    /// Init segment URI, relative to the job directory.
    pub init_uri: String,
    /// Media segments, in order.
    pub segments: Vec<SegmentRef>,
    /// How the track is encrypted, when it is: what its playlists and its adaptation set
    /// signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protection: Option<Signalling>,
    /// The colour a video track's sample entry states (`colr`): what HLS's `VIDEO-RANGE`
    /// and DASH's `cicp` descriptors say of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colour: Option<crate::colour::Cicp>,
}

impl Track {
    /// The dynamic range the track's colour states (SDR when it states none).
    pub fn dynamic_range(&self) -> DynamicRange {
        self.colour.map_or(DynamicRange::Sdr, |c| c.dynamic_range())
    }

    fn secs(&self, ticks: u64) -> f64 {
        ticks as f64 / f64::from(self.timescale)
    }

    /// Total duration in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.secs(self.segments.iter().map(|s| s.duration).sum())
    }

    /// Peak bitrate over segments, bits per second (HLS BANDWIDTH).
    pub fn peak_bps(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.duration > 0)
            .map(|s| bits_per_second(s.bytes, s.duration, self.timescale))
            .max()
            .unwrap_or(0)
    }

    /// Average bitrate, bits per second (HLS AVERAGE-BANDWIDTH).
    pub fn average_bps(&self) -> u64 {
        let bytes = self.segments.iter().map(|s| s.bytes).sum();
        let ticks = self.segments.iter().map(|s| s.duration).sum();
        bits_per_second(bytes, ticks, self.timescale)
    }
}

/// `bytes` over `ticks`, in bits per second, rounded up (exact integer maths).
fn bits_per_second(bytes: u64, ticks: u64, timescale: u32) -> u64 {
    if ticks == 0 {
        return 0;
    }
    let num = u128::from(bytes) * 8 * u128::from(timescale);
    u64::try_from(num.div_ceil(u128::from(ticks))).unwrap_or(u64::MAX)
}

/// Where a playlist is named: rendition playlists live next to the segments' job
/// directory as `<id>.m3u8`.
pub fn media_playlist_name(track: &Track) -> String {
    format!("{}.m3u8", track.id)
}

/// Where a video track's I-frame playlist is named.
pub fn iframe_playlist_name(track: &Track) -> String {
    format!("{}_iframes.m3u8", track.id)
}

/// Whether the track can be listed for trick play: a video track whose every segment
/// knows its keyframe's byte range.
pub fn has_iframes(track: &Track) -> bool {
    matches!(track.kind, TrackKind::Video { .. })
        && !track.segments.is_empty()
        && track.segments.iter().all(|s| s.key_frame_bytes.is_some())
}

/// The I-frame playlist of a video track (`EXT-X-I-FRAMES-ONLY`): each segment's keyframe
/// as a byte range of the segment itself, so trick play (scrubbing previews, fast
/// forward) costs no extra encode and no extra object. Every segment starts with an IDR
/// and holds no other, so each keyframe stands for its whole segment. None when the track
/// cannot be listed ([`has_iframes`]).
pub fn iframe_playlist(track: &Track) -> Option<String> {
    has_iframes(track).then(|| vod_playlist(track, true))
}

/// The I-frame stream's peak bitrate: the largest keyframe over its segment's duration.
fn iframe_peak_bps(track: &Track) -> u64 {
    track
        .segments
        .iter()
        .filter(|s| s.duration > 0)
        .map(|s| bits_per_second(s.key_frame_bytes.unwrap_or(0), s.duration, track.timescale))
        .max()
        .unwrap_or(0)
}

/// The media playlist of one track.
pub fn media_playlist(track: &Track) -> String {
    vod_playlist(track, false)
}

/// A VOD playlist over the track's segments (one init segment, no discontinuity), whole
/// segments or, for an I-frame playlist, each segment's keyframe as a byte range.
fn vod_playlist(track: &Track, iframes: bool) -> String {
    m3u8_rs::WRITE_OPT_FLOAT_PRECISION.store(6, std::sync::atomic::Ordering::Relaxed);
    let target = track
        .segments
        .iter()
        .map(|s| track.secs(s.duration))
        .fold(0.0, f64::max)
        .round()
        .max(1.0) as u64;
    let segments = track
        .segments
        .iter()
        .enumerate()
        .map(|(i, s)| MediaSegment {
            uri: s.uri.clone(),
            duration: track.secs(s.duration) as f32,
            byte_range: s
                .key_frame_bytes
                .filter(|_| iframes)
                .map(|length| ByteRange {
                    length,
                    offset: Some(0),
                }),
            map: (i == 0 && !matches!(track.kind, TrackKind::Text { .. })).then(|| Map {
                uri: track.init_uri.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let pl = MediaPlaylist {
        version: Some(7),
        target_duration: target,
        media_sequence: 0,
        segments,
        end_list: true,
        playlist_type: Some(MediaPlaylistType::Vod),
        i_frames_only: iframes,
        independent_segments: true,
        ..Default::default()
    };
    let text = write_playlist(|w| pl.write_to(w));
    match &track.protection {
        // The keys apply to the init segment and every segment after them.
        Some(p) => insert_before(&text, &["#EXT-X-MAP", "#EXTINF"], &hls_keys(p, "EXT-X-KEY")),
        None => text,
    }
}

/// `text` with `lines` inserted before the first line starting with one of `markers`.
fn insert_before(text: &str, markers: &[&str], lines: &[String]) -> String {
    let mut out = String::with_capacity(text.len() + lines.iter().map(String::len).sum::<usize>());
    let mut done = false;
    for line in text.lines() {
        if !done && markers.iter().any(|m| line.starts_with(m)) {
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
            done = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The `#EXT-X-KEY` (or `#EXT-X-SESSION-KEY`) lines of a protected track, one per DRM
/// system: `SAMPLE-AES` for cbcs, `SAMPLE-AES-CTR` for cenc, with each system's
/// `KEYFORMAT` and the URI its players read (the KID for Clear Key, the `pssh` for
/// Widevine, the key server's data for PlayReady, `skd://` for FairPlay).
fn hls_keys(p: &Signalling, tag: &str) -> Vec<String> {
    let method = match p.scheme {
        Scheme::Cbcs => "SAMPLE-AES",
        Scheme::Cenc => "SAMPLE-AES-CTR",
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut kid = [0u8; 16];
    let _ = hex::decode_to_slice(&p.kid, &mut kid);
    p.systems
        .iter()
        .filter_map(|s| {
            let (format, uri) = match s.system {
                System::ClearKey => (
                    "org.w3.clearkey",
                    format!("data:text/plain;base64,{}", b64.encode(kid)),
                ),
                System::Widevine => (
                    "urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed",
                    s.hls_uri.clone().or_else(|| {
                        s.pssh.as_ref().map(|b| format!("data:text/plain;base64,{b}"))
                    })?,
                ),
                System::PlayReady => ("com.microsoft.playready", s.hls_uri.clone()?),
                System::FairPlay => ("com.apple.streamingkeydelivery", s.hls_uri.clone()?),
            };
            let keyid = match s.system {
                System::Widevine | System::ClearKey => format!(",KEYID=0x{}", p.kid),
                System::PlayReady | System::FairPlay => String::new(),
            };
            Some(format!(
                r#"#{tag}:METHOD={method},URI="{uri}"{keyid},KEYFORMAT="{format}",KEYFORMATVERSIONS="1""#
            ))
        })
        .collect()
}

/// The session keys of a master playlist: every protected track's keys, once each, so a
/// player can license before it loads a rendition.
fn session_keys(tracks: &[Track]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in tracks.iter().filter_map(|t| t.protection.as_ref()) {
        for line in hls_keys(p, "EXT-X-SESSION-KEY") {
            if !out.contains(&line) {
                out.push(line);
            }
        }
    }
    out
}

/// A master playlist with the session keys of `tracks` after its header.
fn with_session_keys(text: String, tracks: &[Track]) -> String {
    let keys = session_keys(tracks);
    if keys.is_empty() {
        return text;
    }
    insert_before(
        &text,
        &[
            "#EXT-X-MEDIA",
            "#EXT-X-STREAM-INF",
            "#EXT-X-I-FRAME-STREAM-INF",
        ],
        &keys,
    )
}

fn write_playlist(f: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = f(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The HLS master playlist. `prefix` is prepended to every playlist URI (the master
/// pointer lives above the job directory). A protected asset's keys are listed as session
/// keys.
pub fn master_playlist(tracks: &[Track], prefix: &str) -> String {
    with_session_keys(master_body(tracks, prefix), tracks)
}

fn master_body(tracks: &[Track], prefix: &str) -> String {
    let audio: Vec<&Track> = tracks
        .iter()
        .filter(|t| matches!(t.kind, TrackKind::Audio { .. }))
        .collect();
    if !tracks
        .iter()
        .any(|t| matches!(t.kind, TrackKind::Video { .. }))
    {
        return audio_only_master(&audio, &subtitle_renditions(tracks, prefix), prefix);
    }
    let subtitles = subtitle_renditions(tracks, prefix);
    let subtitle_group = (!subtitles.is_empty()).then(|| SUBTITLE_GROUP.to_string());
    let alternatives = audio
        .iter()
        .enumerate()
        .map(|(i, t)| {
            audio_rendition(
                t,
                i == 0,
                Some(format!("{prefix}{}", media_playlist_name(t))),
            )
        })
        .chain(subtitles)
        .collect();
    let audio_peak = audio.iter().map(|t| t.peak_bps()).max().unwrap_or(0);
    let audio_avg = audio.iter().map(|t| t.average_bps()).max().unwrap_or(0);
    let audio_codec = audio.first().map(|t| t.codec.clone());
    // An asset with HDR renditions says every variant's range, so a player that cannot
    // show HDR keeps to the SDR ones; an SDR-only asset's playlists stay as they were.
    let signal_range = tracks.iter().any(|t| t.dynamic_range().is_hdr());
    let range = |t: &Track| {
        signal_range.then(|| {
            std::collections::HashMap::from([(
                "VIDEO-RANGE".to_string(),
                QuotedOrUnquoted::Unquoted(t.dynamic_range().hls_name().to_string()),
            )])
        })
    };
    let variants = tracks
        .iter()
        .filter_map(|t| match t.kind {
            TrackKind::Video {
                width,
                height,
                frame_rate,
            } => Some(VariantStream {
                uri: format!("{prefix}{}", media_playlist_name(t)),
                bandwidth: t.peak_bps() + audio_peak,
                average_bandwidth: Some(t.average_bps() + audio_avg),
                codecs: Some(match &audio_codec {
                    Some(a) => format!("{},{a}", t.codec),
                    None => t.codec.clone(),
                }),
                resolution: Some(Resolution {
                    width: u64::from(width),
                    height: u64::from(height),
                }),
                frame_rate: Some(
                    (frame_rate.0 as f64 / frame_rate.1.max(1) as f64 * 1000.0).round() / 1000.0,
                ),
                audio: audio_codec.as_ref().map(|_| "audio".to_string()),
                subtitles: subtitle_group.clone(),
                other_attributes: range(t),
                ..Default::default()
            }),
            _ => None,
        })
        .chain(tracks.iter().filter(|t| has_iframes(t)).filter_map(|t| {
            let TrackKind::Video { width, height, .. } = t.kind else {
                return None;
            };
            Some(VariantStream {
                is_i_frame: true,
                uri: format!("{prefix}{}", iframe_playlist_name(t)),
                bandwidth: iframe_peak_bps(t),
                codecs: Some(t.codec.clone()),
                resolution: Some(Resolution {
                    width: u64::from(width),
                    height: u64::from(height),
                }),
                other_attributes: range(t),
                ..Default::default()
            })
        }))
        .collect();
    let pl = MasterPlaylist {
        version: Some(7),
        independent_segments: true,
        variants,
        alternatives,
        ..Default::default()
    };
    write_playlist(|w| pl.write_to(w))
}

/// The group every subtitle rendition belongs to.
const SUBTITLE_GROUP: &str = "subs";

/// The text tracks as renditions of the subtitle group; none is on by default (a viewer
/// or the player's language preference turns one on).
fn subtitle_renditions(tracks: &[Track], prefix: &str) -> Vec<AlternativeMedia> {
    tracks
        .iter()
        .filter_map(|t| match &t.kind {
            TrackKind::Text {
                language,
                name,
                forced,
                hearing_impaired,
            } => Some(AlternativeMedia {
                media_type: AlternativeMediaType::Subtitles,
                uri: Some(format!("{prefix}{}", media_playlist_name(t))),
                group_id: SUBTITLE_GROUP.into(),
                language: language.clone(),
                name: name.clone(),
                default: false,
                autoselect: true,
                forced: *forced,
                characteristics: hearing_impaired.then(|| {
                    "public.accessibility.transcribes-spoken-dialog,public.accessibility.describes-music-and-sound".to_string()
                }),
                ..Default::default()
            }),
            _ => None,
        })
        .collect()
}

/// An audio track as a rendition of the `audio` group (`uri` None: the variant's own).
fn audio_rendition(t: &Track, default: bool, uri: Option<String>) -> AlternativeMedia {
    let (language, name, channels) = match &t.kind {
        TrackKind::Audio {
            language,
            name,
            channels,
        } => (language.clone(), name.clone(), *channels),
        _ => (None, t.id.clone(), 2),
    };
    AlternativeMedia {
        media_type: AlternativeMediaType::Audio,
        uri,
        group_id: "audio".into(),
        language,
        name,
        default,
        autoselect: true,
        channels: Some(channels.to_string()),
        ..Default::default()
    }
}

/// The master of a source without video: one variant, the first audio track's playlist,
/// and the other tracks as renditions of its audio group (the first one's rendition has no
/// URI: its audio is the variant itself, as HLS specifies for audio in the main playlist).
fn audio_only_master(audio: &[&Track], subtitles: &[AlternativeMedia], prefix: &str) -> String {
    let Some(first) = audio.first() else {
        return write_playlist(|w| MasterPlaylist::default().write_to(w));
    };
    let group = (audio.len() > 1).then(|| "audio".to_string());
    let mut alternatives: Vec<AlternativeMedia> = if group.is_some() {
        audio
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let uri = (i > 0).then(|| format!("{prefix}{}", media_playlist_name(t)));
                audio_rendition(t, i == 0, uri)
            })
            .collect()
    } else {
        Vec::new()
    };
    alternatives.extend(subtitles.iter().cloned());
    let pl = MasterPlaylist {
        version: Some(7),
        independent_segments: true,
        variants: vec![VariantStream {
            uri: format!("{prefix}{}", media_playlist_name(first)),
            bandwidth: audio.iter().map(|t| t.peak_bps()).max().unwrap_or(0),
            average_bandwidth: Some(audio.iter().map(|t| t.average_bps()).max().unwrap_or(0)),
            codecs: Some(first.codec.clone()),
            audio: group,
            subtitles: (!subtitles.is_empty()).then(|| SUBTITLE_GROUP.to_string()),
            ..Default::default()
        }],
        alternatives,
        ..Default::default()
    };
    write_playlist(|w| pl.write_to(w))
}

/// The `ContentProtection` elements of a protected adaptation set: the common scheme with
/// the default KID, then one per DRM system with its `pssh` (FairPlay has none in DASH).
fn content_protection(x: &mut String, p: &Signalling) {
    let _ = writeln!(
        x,
        r#"      <ContentProtection schemeIdUri="urn:mpeg:dash:mp4protection:2011" value="{}" cenc:default_KID="{}"/>"#,
        p.scheme.as_str(),
        p.kid_uuid()
    );
    for s in &p.systems {
        let value = match s.system {
            System::ClearKey => "ClearKey1.0",
            System::Widevine => "Widevine",
            System::PlayReady => "MSPR 2.0",
            System::FairPlay => continue,
        };
        let _ = write!(
            x,
            r#"      <ContentProtection schemeIdUri="urn:uuid:{}" value="{value}""#,
            s.system.uuid()
        );
        match &s.pssh {
            Some(pssh) => {
                let _ = writeln!(
                    x,
                    ">\n        <cenc:pssh>{pssh}</cenc:pssh>\n      </ContentProtection>"
                );
            }
            None => {
                let _ = writeln!(x, "/>");
            }
        }
    }
}

/// An adaptation set's colour as DASH-IF's interoperability guidelines signal it (the
/// `urn:mpeg:mpegB:cicp` schemes of ISO/IEC 23001-8): an HDR transfer as an essential
/// property, so a player that does not know PQ or HLG skips the set rather than
/// showing it washed out; everything else as supplemental properties.
fn colour_properties(x: &mut String, c: crate::colour::Cicp) {
    let scheme = "urn:mpeg:mpegB:cicp";
    // An SDR Representation's transfer is only informative: no player may skip it.
    let kind = if c.dynamic_range().is_hdr() {
        "Essential"
    } else {
        "Supplemental"
    };
    let _ = writeln!(
        x,
        r#"      <{kind}Property schemeIdUri="{scheme}:TransferCharacteristics" value="{}"/>"#,
        c.transfer
    );
    let _ = writeln!(
        x,
        r#"      <SupplementalProperty schemeIdUri="{scheme}:ColourPrimaries" value="{}"/>"#,
        c.primaries
    );
    let _ = writeln!(
        x,
        r#"      <SupplementalProperty schemeIdUri="{scheme}:MatrixCoefficients" value="{}"/>"#,
        c.matrix
    );
}

fn iso_duration(secs: f64) -> String {
    format!("PT{secs:.3}S")
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The DASH MPD (static, isoff-live profile) over the same segments: a `SegmentList` with an
/// explicit `SegmentTimeline`, because segment names follow their chunk attempt, not a
/// number template. `prefix` is prepended to every URI.
pub fn mpd(tracks: &[Track], prefix: &str) -> String {
    let duration = tracks.iter().map(Track::duration_secs).fold(0.0, f64::max);
    let mut x = String::new();
    let _ = writeln!(x, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let cenc_ns = if tracks.iter().any(|t| t.protection.is_some()) {
        r#" xmlns:cenc="urn:mpeg:cenc:2013""#
    } else {
        ""
    };
    let _ = writeln!(
        x,
        r#"<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"{cenc_ns} profiles="urn:mpeg:dash:profile:isoff-live:2011" type="static" mediaPresentationDuration="{}" minBufferTime="PT4S">"#,
        iso_duration(duration)
    );
    let _ = writeln!(x, r#"  <Period id="0" start="PT0S">"#);
    let videos: Vec<&Track> = tracks
        .iter()
        .filter(|t| matches!(t.kind, TrackKind::Video { .. }))
        .collect();
    // One adaptation set per codec and range (players switch within a set, never across
    // codecs, and never between HDR and SDR), in the order they first appear.
    let signal_range = videos.iter().any(|t| t.dynamic_range().is_hdr());
    let mut families: Vec<(&str, DynamicRange)> = Vec::new();
    for t in &videos {
        let f = (codec_family(&t.codec), t.dynamic_range());
        if !families.contains(&f) {
            families.push(f);
        }
    }
    for (set, family) in families.iter().enumerate() {
        let in_set = |t: &&&Track| (codec_family(&t.codec), t.dynamic_range()) == *family;
        let _ = writeln!(
            x,
            r#"    <AdaptationSet id="{set}" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1">"#
        );
        if let Some(p) = videos
            .iter()
            .find(in_set)
            .and_then(|t| t.protection.as_ref())
        {
            content_protection(&mut x, p);
        }
        // A set's Representations share their range (the sets are split by it), and
        // players read the colour where DASH-IF puts it: on the set.
        if let (true, Some(c)) = (
            signal_range,
            videos.iter().find(in_set).and_then(|t| t.colour),
        ) {
            colour_properties(&mut x, c);
        }
        for t in videos.iter().filter(in_set) {
            if let TrackKind::Video {
                width,
                height,
                frame_rate,
            } = t.kind
            {
                let _ = writeln!(
                    x,
                    r#"      <Representation id="{}" codecs="{}" bandwidth="{}" width="{width}" height="{height}" frameRate="{}/{}" sar="1:1">"#,
                    xml_escape(&t.id),
                    t.codec,
                    t.peak_bps(),
                    frame_rate.0,
                    frame_rate.1
                );
                segment_list(&mut x, t, prefix);
                let _ = writeln!(x, "      </Representation>");
            }
        }
        let _ = writeln!(x, "    </AdaptationSet>");
    }
    let first_audio_set = families.len().max(1);
    for (i, t) in tracks
        .iter()
        .filter(|t| matches!(t.kind, TrackKind::Audio { .. }))
        .enumerate()
    {
        let lang = match &t.kind {
            TrackKind::Audio {
                language: Some(l), ..
            } => format!(r#" lang="{}""#, xml_escape(l)),
            _ => String::new(),
        };
        let _ = writeln!(
            x,
            r#"    <AdaptationSet id="{}" contentType="audio" mimeType="audio/mp4"{lang} segmentAlignment="true" startWithSAP="1">"#,
            first_audio_set + i
        );
        if let Some(p) = &t.protection {
            content_protection(&mut x, p);
        }
        if i == 0 {
            let _ = writeln!(
                x,
                r#"      <Role schemeIdUri="urn:mpeg:dash:role:2011" value="main"/>"#
            );
        }
        let _ = writeln!(
            x,
            r#"      <Representation id="{}" codecs="{}" bandwidth="{}" audioSamplingRate="{}">"#,
            xml_escape(&t.id),
            t.codec,
            t.peak_bps(),
            t.timescale
        );
        let channels = match t.kind {
            TrackKind::Audio { channels, .. } => channels,
            _ => 2,
        };
        let _ = writeln!(
            x,
            r#"        <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="{channels}"/>"#
        );
        segment_list(&mut x, t, prefix);
        let _ = writeln!(x, "      </Representation>");
        let _ = writeln!(x, "    </AdaptationSet>");
    }
    let mut id = first_audio_set
        + tracks
            .iter()
            .filter(|t| matches!(t.kind, TrackKind::Audio { .. }))
            .count();
    for t in tracks {
        match &t.kind {
            TrackKind::Text {
                language,
                forced,
                hearing_impaired,
                ..
            } => {
                let lang = language
                    .as_ref()
                    .map(|l| format!(r#" lang="{}""#, xml_escape(l)))
                    .unwrap_or_default();
                let _ = writeln!(
                    x,
                    r#"    <AdaptationSet id="{id}" contentType="text" mimeType="text/vtt"{lang}>"#
                );
                let role = if *forced {
                    "forced-subtitle"
                } else {
                    "subtitle"
                };
                let _ = writeln!(
                    x,
                    r#"      <Role schemeIdUri="urn:mpeg:dash:role:2011" value="{role}"/>"#
                );
                if *hearing_impaired {
                    // DVB/DASH-IF: captions for the hard of hearing.
                    let _ = writeln!(
                        x,
                        r#"      <Accessibility schemeIdUri="urn:tva:metadata:cs:AudioPurposeCS:2007" value="2"/>"#
                    );
                }
                let _ = writeln!(
                    x,
                    r#"      <Representation id="{}" bandwidth="{}">"#,
                    xml_escape(&t.id),
                    t.average_bps().max(1)
                );
                let _ = writeln!(
                    x,
                    "        <BaseURL>{prefix}{}</BaseURL>",
                    xml_escape(&t.init_uri)
                );
                let _ = writeln!(x, "      </Representation>\n    </AdaptationSet>");
                id += 1;
            }
            TrackKind::Thumbnails {
                width,
                height,
                columns,
            } => {
                image_set(&mut x, t, id, (*width, *height, *columns), prefix);
                id += 1;
            }
            _ => {}
        }
    }
    let _ = writeln!(x, "  </Period>\n</MPD>");
    x
}

/// A codec string's sample-entry part (`avc1`, `hvc1`, `av01`): what decides whether a
/// player can decode a rendition at all.
fn codec_family(codec: &str) -> &str {
    codec.split('.').next().unwrap_or(codec)
}

/// The sprite sheets of a thumbnails track: each distinct URI in order, with the time its
/// first tile starts.
pub fn sprites(track: &Track) -> Vec<(&str, u64, u32)> {
    let mut out: Vec<(&str, u64, u32)> = Vec::new();
    for s in &track.segments {
        match out.last_mut() {
            Some((uri, _, n)) if *uri == s.uri.as_str() => *n += 1,
            _ => out.push((s.uri.as_str(), s.start, 1)),
        }
    }
    out
}

/// A DASH-IF thumbnail image set: one image segment per sprite, its grid in an
/// `EssentialProperty`. A player finds tile `i` of an image at `t + i × d / columns`, so
/// each image lasts as long as its tiles together (the sprites never overlap); the short
/// last sprite is padded with blank tiles of the nominal length, and ends past the
/// presentation.
fn image_set(x: &mut String, t: &Track, id: usize, (w, h, columns): (u32, u32, u32), prefix: &str) {
    let sprites = sprites(t);
    // The nominal tile length: the longest segment (all but the last are about equal).
    let tile = t
        .segments
        .iter()
        .map(|s| s.duration)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut spans: Vec<(u64, u64)> = Vec::with_capacity(sprites.len());
    let mut next = t.segments.iter();
    for (_, start, count) in &sprites {
        let covered: u64 = next
            .by_ref()
            .take(*count as usize)
            .map(|s| s.duration)
            .sum();
        let pad = u64::from(columns.saturating_sub(*count)) * tile;
        spans.push((*start, covered + pad));
    }
    let bytes: u64 =
        t.segments.iter().map(|s| s.bytes).sum::<u64>() / t.segments.len().max(1) as u64;
    let _ = writeln!(
        x,
        r#"    <AdaptationSet id="{id}" contentType="image" mimeType="image/jpeg">"#
    );
    let _ = writeln!(
        x,
        r#"      <Representation id="{}" bandwidth="{}" width="{}" height="{h}">"#,
        xml_escape(&t.id),
        bits_per_second(bytes, tile * u64::from(columns), t.timescale).max(1),
        w * columns
    );
    let _ = writeln!(
        x,
        r#"        <EssentialProperty schemeIdUri="http://dashif.org/thumbnail_tile" value="{columns}x1"/>"#
    );
    let _ = writeln!(x, r#"        <SegmentList timescale="{}">"#, t.timescale);
    let _ = writeln!(x, "          <SegmentTimeline>");
    for (start, d) in &spans {
        let _ = writeln!(x, r#"            <S t="{start}" d="{d}"/>"#);
    }
    let _ = writeln!(x, "          </SegmentTimeline>");
    for (uri, _, _) in &sprites {
        let _ = writeln!(
            x,
            r#"          <SegmentURL media="{prefix}{}"/>"#,
            xml_escape(uri)
        );
    }
    let _ = writeln!(
        x,
        "        </SegmentList>\n      </Representation>\n    </AdaptationSet>"
    );
}

/// The WebVTT thumbnail track players' seek-bar previews read (video.js, JW Player,
/// Bitmovin, shaka's UI): one cue per segment pointing into its sprite with `#xywh=`.
/// URIs are relative to the job directory, where this file is published.
pub fn thumbnail_vtt(track: &Track) -> Option<String> {
    let TrackKind::Thumbnails { width, height, .. } = track.kind else {
        return None;
    };
    let mut out = String::from("WEBVTT\n");
    let mut column = 0u32;
    let mut previous: Option<&str> = None;
    for s in &track.segments {
        column = if previous == Some(s.uri.as_str()) {
            column + 1
        } else {
            0
        };
        previous = Some(s.uri.as_str());
        let ms = |ticks: u64| ticks * 1000 / u64::from(track.timescale.max(1));
        let _ = write!(
            out,
            "\n{} --> {}\n{}#xywh={},0,{width},{height}\n",
            vtt_time(ms(s.start)),
            vtt_time(ms(s.start + s.duration)),
            s.uri,
            column * width
        );
    }
    Some(out)
}

fn vtt_time(ms: u64) -> String {
    crate::captions::timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn segment_list(x: &mut String, t: &Track, prefix: &str) {
    let _ = writeln!(x, r#"        <SegmentList timescale="{}">"#, t.timescale);
    let _ = writeln!(
        x,
        r#"          <Initialization sourceURL="{prefix}{}"/>"#,
        xml_escape(&t.init_uri)
    );
    let _ = writeln!(x, "          <SegmentTimeline>");
    for s in &t.segments {
        let _ = writeln!(x, r#"            <S t="{}" d="{}"/>"#, s.start, s.duration);
    }
    let _ = writeln!(x, "          </SegmentTimeline>");
    for s in &t.segments {
        let _ = writeln!(
            x,
            r#"          <SegmentURL media="{prefix}{}"/>"#,
            xml_escape(&s.uri)
        );
    }
    let _ = writeln!(x, "        </SegmentList>");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video() -> Track {
        Track {
            id: "360p".into(),
            kind: TrackKind::Video {
                width: 640,
                height: 360,
                frame_rate: (30000, 1001),
            },
            codec: "avc1.64001E".into(),
            timescale: 30000,
            init_uri: "c00000.1/360p/init.mp4".into(),
            protection: None,
            colour: None,
            segments: vec![
                SegmentRef {
                    uri: "c00000.1/360p/00000.m4s".into(),
                    start: 2002,
                    duration: 120120,
                    bytes: 500_500,
                    key_frame_bytes: Some(40_040),
                },
                SegmentRef {
                    uri: "c00001.1/360p/00001.m4s".into(),
                    start: 122122,
                    duration: 60060,
                    bytes: 100_000,
                    key_frame_bytes: Some(30_000),
                },
            ],
        }
    }

    fn audio() -> Track {
        Track {
            id: "audio_0".into(),
            kind: TrackKind::Audio {
                language: Some("fra".into()),
                name: "Français".into(),
                channels: 2,
            },
            codec: "mp4a.40.2".into(),
            timescale: 48000,
            init_uri: "audio_0/init.mp4".into(),
            protection: None,
            colour: None,
            segments: vec![SegmentRef {
                uri: "audio_0/00000.m4s".into(),
                start: 0,
                duration: 288000,
                bytes: 96000,
                key_frame_bytes: None,
            }],
        }
    }

    #[test]
    fn bandwidth_is_measured_from_segments() {
        let t = video();
        // 500 500 bytes over 4.004 s is exactly 1 000 000 b/s.
        assert_eq!(t.peak_bps(), 1_000_000);
        assert_eq!(t.average_bps(), (600_500u64 * 8 * 30000).div_ceil(180_180));
    }

    #[test]
    fn master_lists_codecs_resolution_frame_rate_and_the_audio_group() {
        let m = master_playlist(&[video(), audio()], "job/");
        assert!(m.contains(r#"CODECS="avc1.64001E,mp4a.40.2""#), "{m}");
        assert!(m.contains("RESOLUTION=640x360"), "{m}");
        assert!(m.contains("FRAME-RATE=29.97"), "{m}");
        assert!(m.contains(r#"AUDIO="audio""#), "{m}");
        assert!(m.contains(r#"LANGUAGE="fra""#), "{m}");
        assert!(m.contains("AVERAGE-BANDWIDTH="), "{m}");
        assert!(m.contains("job/360p.m3u8"), "{m}");
    }

    #[test]
    fn media_playlist_has_one_map_no_discontinuity_and_an_end() {
        let p = media_playlist(&video());
        assert_eq!(p.matches("#EXT-X-MAP").count(), 1, "{p}");
        assert!(!p.contains("DISCONTINUITY"), "{p}");
        assert!(p.contains("#EXT-X-TARGETDURATION:4"), "{p}");
        assert!(p.contains("#EXTINF:4.004000,"), "{p}");
        assert!(p.trim_end().ends_with("#EXT-X-ENDLIST"), "{p}");
    }

    #[test]
    fn iframe_playlists_list_each_keyframe_as_a_byte_range_of_its_segment() {
        let p = iframe_playlist(&video()).expect("a video track with keyframes");
        assert!(p.contains("#EXT-X-I-FRAMES-ONLY"), "{p}");
        assert_eq!(p.matches("#EXT-X-MAP").count(), 1, "{p}");
        assert!(
            p.contains("#EXT-X-BYTERANGE:40040@0\n#EXTINF:4.004000,\nc00000.1/360p/00000.m4s"),
            "{p}"
        );
        assert!(
            p.contains("#EXT-X-BYTERANGE:30000@0\n#EXTINF:2.002000,\nc00001.1/360p/00001.m4s"),
            "{p}"
        );
        assert!(iframe_playlist(&audio()).is_none());
        let m = master_playlist(&[video(), audio()], "job/");
        // 30 000 bytes over 2.002 s (119 881 b/s, rounded up) is the peak; 40 040 over
        // 4.004 s is 80 000.
        assert!(
            m.contains(r#"#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=119881,CODECS="avc1.64001E",RESOLUTION=640x360,URI="job/360p_iframes.m3u8""#),
            "{m}"
        );
        let mut old = video();
        old.segments[1].key_frame_bytes = None;
        assert!(iframe_playlist(&old).is_none());
        assert!(!master_playlist(&[old], "").contains("I-FRAME"));
    }

    #[test]
    fn an_audio_only_master_has_one_variant_and_the_other_tracks_as_renditions() {
        let one = master_playlist(&[audio()], "job/");
        assert!(
            one.contains("#EXT-X-STREAM-INF:BANDWIDTH=") && one.contains("job/audio_0.m3u8"),
            "{one}"
        );
        assert!(one.contains(r#"CODECS="mp4a.40.2""#), "{one}");
        assert!(
            !one.contains("#EXT-X-MEDIA") && !one.contains("RESOLUTION"),
            "{one}"
        );
        let mut second = audio();
        second.id = "audio_1".into();
        second.kind = TrackKind::Audio {
            language: Some("eng".into()),
            name: "English".into(),
            channels: 6,
        };
        let two = master_playlist(&[audio(), second], "");
        assert_eq!(two.matches("#EXT-X-STREAM-INF").count(), 1, "{two}");
        assert!(two.contains(r#"AUDIO="audio""#), "{two}");
        // The first track is the variant's own audio: its rendition names no URI.
        let media: Vec<&str> = two
            .lines()
            .filter(|l| l.starts_with("#EXT-X-MEDIA"))
            .collect();
        assert_eq!(media.len(), 2, "{two}");
        assert!(
            !media[0].contains("URI=") && media[0].contains("DEFAULT=YES"),
            "{two}"
        );
        assert!(media[1].contains(r#"URI="audio_1.m3u8""#), "{two}");
        assert!(media[1].contains(r#"CHANNELS="6""#), "{two}");
        let m = mpd(&[audio()], "");
        assert!(!m.contains("contentType=\"video\""), "{m}");
        assert!(m.contains("contentType=\"audio\""), "{m}");
    }

    fn text() -> Track {
        Track {
            id: "text_0".into(),
            kind: TrackKind::Text {
                language: Some("en".into()),
                name: "English".into(),
                forced: false,
                hearing_impaired: false,
            },
            codec: "wvtt".into(),
            timescale: 1000,
            init_uri: "t0.1/subtitles.vtt".into(),
            protection: None,
            colour: None,
            segments: vec![
                SegmentRef {
                    uri: "t0.1/00000.vtt".into(),
                    start: 0,
                    duration: 4004,
                    bytes: 100,
                    key_frame_bytes: None,
                },
                SegmentRef {
                    uri: "t0.1/00001.vtt".into(),
                    start: 4004,
                    duration: 2002,
                    bytes: 60,
                    key_frame_bytes: None,
                },
            ],
        }
    }

    fn thumbnails() -> Track {
        let tile = |uri: &str, start, duration| SegmentRef {
            uri: uri.into(),
            start,
            duration,
            bytes: 9000,
            key_frame_bytes: None,
        };
        Track {
            id: "thumbnails".into(),
            kind: TrackKind::Thumbnails {
                width: 160,
                height: 90,
                columns: 2,
            },
            codec: "jpeg".into(),
            timescale: 1000,
            init_uri: String::new(),
            protection: None,
            colour: None,
            segments: vec![
                tile("c00000.1/thumbnails.jpg", 0, 4004),
                tile("c00000.1/thumbnails.jpg", 4004, 4004),
                tile("c00001.1/thumbnails.jpg", 8008, 2002),
            ],
        }
    }

    #[test]
    fn subtitles_are_a_group_every_variant_names_and_a_text_set_in_dash() {
        let m = master_playlist(&[video(), audio(), text()], "job/");
        assert!(
            m.contains(r#"#EXT-X-MEDIA:TYPE=SUBTITLES,URI="job/text_0.m3u8",GROUP-ID="subs",LANGUAGE="en",NAME="English""#),
            "{m}"
        );
        assert!(m.contains(r#"SUBTITLES="subs""#), "{m}");
        let p = media_playlist(&text());
        assert!(!p.contains("EXT-X-MAP"), "{p}");
        assert!(p.contains("#EXTINF:4.004000,\nt0.1/00000.vtt"), "{p}");
        let d = mpd(&[video(), audio(), text()], "job/");
        assert!(
            d.contains(r#"contentType="text" mimeType="text/vtt" lang="en""#),
            "{d}"
        );
        assert!(
            d.contains("<BaseURL>job/t0.1/subtitles.vtt</BaseURL>"),
            "{d}"
        );
        let audio_only = master_playlist(&[audio(), text()], "");
        assert!(audio_only.contains(r#"SUBTITLES="subs""#), "{audio_only}");
    }

    #[test]
    fn thumbnails_are_a_webvtt_track_of_sprite_tiles_and_a_dash_image_set() {
        let vtt = thumbnail_vtt(&thumbnails()).expect("a thumbnails track");
        assert!(
            vtt.contains(
                "00:00:04.004 --> 00:00:08.008\nc00000.1/thumbnails.jpg#xywh=160,0,160,90"
            ),
            "{vtt}"
        );
        assert!(
            vtt.contains("00:00:08.008 --> 00:00:10.010\nc00001.1/thumbnails.jpg#xywh=0,0,160,90"),
            "{vtt}"
        );
        assert!(thumbnail_vtt(&video()).is_none());
        let d = mpd(&[video(), thumbnails()], "job/");
        assert!(
            d.contains(r#"contentType="image" mimeType="image/jpeg""#),
            "{d}"
        );
        assert!(d.contains(r#"value="2x1""#), "{d}");
        assert!(d.contains(r#"width="320" height="90""#), "{d}");
        // A sprite lasts as long as its tiles; the last one's blank tile is one nominal
        // tile long.
        assert!(
            d.contains(r#"<S t="0" d="8008"/>"#) && d.contains(r#"<S t="8008" d="6006"/>"#),
            "{d}"
        );
        assert!(
            d.contains(r#"<SegmentURL media="job/c00001.1/thumbnails.jpg"/>"#),
            "{d}"
        );
        assert!(!master_playlist(&[video(), thumbnails()], "").contains("thumbnails"));
    }

    #[test]
    fn mpd_has_a_timeline_per_representation() {
        let m = mpd(&[video(), audio()], "job/");
        assert!(m.contains(r#"<S t="122122" d="60060"/>"#), "{m}");
        assert!(m.contains(r#"lang="fra""#), "{m}");
        assert!(
            m.contains(r#"sourceURL="job/c00000.1/360p/init.mp4""#),
            "{m}"
        );
        assert!(m.contains("mediaPresentationDuration=\"PT6.006S\""), "{m}");
    }

    #[test]
    fn each_codec_is_an_adaptation_set_of_its_own_and_a_variant_with_its_codecs() {
        let mut av1 = video();
        av1.id = "360p_av1".into();
        av1.codec = "av01.0.04M.08".into();
        let mut small = video();
        small.id = "270p".into();
        let tracks = [video(), small, av1, audio()];
        let m = mpd(&tracks, "job/");
        let sets: Vec<&str> = m.split("<AdaptationSet ").skip(1).collect();
        assert_eq!(sets.len(), 3, "{m}");
        assert!(sets[0].contains(r#"id="0" contentType="video""#), "{m}");
        assert_eq!(sets[0].matches("<Representation ").count(), 2, "{m}");
        assert!(sets[1].contains(r#"id="1" contentType="video""#), "{m}");
        assert!(sets[1].contains(r#"codecs="av01.0.04M.08""#), "{m}");
        assert!(!sets[1].contains("avc1"), "{m}");
        assert!(sets[2].contains(r#"id="2" contentType="audio""#), "{m}");
        let master = master_playlist(&tracks, "job/");
        assert!(
            master.contains(r#"CODECS="av01.0.04M.08,mp4a.40.2""#),
            "{master}"
        );
        assert!(
            master.contains(r#"CODECS="avc1.64001E,mp4a.40.2""#),
            "{master}"
        );
    }

    #[test]
    fn hdr_tracks_make_every_variant_say_its_range_and_get_sets_of_their_own() {
        use crate::colour::Cicp;
        let cicp = |p, t, m| Cicp {
            primaries: p,
            transfer: t,
            matrix: m,
            full_range: false,
        };
        // An SDR asset's manifests say nothing of ranges, colr or not.
        let mut sdr = video();
        sdr.colour = Some(cicp(1, 1, 1));
        let plain = [sdr.clone(), audio()];
        assert!(!master_playlist(&plain, "job/").contains("VIDEO-RANGE"));
        assert!(!mpd(&plain, "job/").contains("cicp"));
        // With a PQ rung beside it, every variant and I-frame stream says its range.
        let mut pq = video();
        pq.id = "360p_hevc_hdr".into();
        pq.codec = "hvc1.2.4.L63.90".into();
        pq.colour = Some(cicp(9, 16, 9));
        let tracks = [sdr, pq, audio()];
        let master = master_playlist(&tracks, "job/");
        let lines: Vec<&str> = master
            .lines()
            .filter(|l| l.contains("STREAM-INF"))
            .collect();
        assert_eq!(lines.len(), 4, "{master}");
        for l in &lines {
            let want = if l.contains("hvc1") { "PQ" } else { "SDR" };
            assert!(l.contains(&format!("VIDEO-RANGE={want}")), "{l}");
        }
        let m = mpd(&tracks, "job/");
        let sets: Vec<&str> = m.split("<AdaptationSet ").skip(1).collect();
        assert!(sets[0].contains(
            r#"<SupplementalProperty schemeIdUri="urn:mpeg:mpegB:cicp:TransferCharacteristics" value="1"/>"#
        ), "{m}");
        assert!(sets[1].contains(
            r#"<EssentialProperty schemeIdUri="urn:mpeg:mpegB:cicp:TransferCharacteristics" value="16"/>"#
        ), "{m}");
        assert!(
            sets[1].contains(r#"cicp:ColourPrimaries" value="9""#),
            "{m}"
        );
        // Two ranges of one codec never share a set.
        let mut hevc_sdr = tracks[1].clone();
        hevc_sdr.id = "360p_hevc".into();
        hevc_sdr.colour = Some(cicp(1, 1, 1));
        let m = mpd(&[tracks[1].clone(), hevc_sdr, audio()], "job/");
        assert_eq!(m.matches(r#"contentType="video""#).count(), 2, "{m}");
    }

    fn protected(mut t: Track, scheme: Scheme) -> Track {
        use crate::cenc::{keys::SystemSignal, Signalling};
        t.protection = Some(Signalling {
            scheme,
            kid: "0123456789abcdef0123456789abcdef".into(),
            systems: vec![
                SystemSignal {
                    system: System::ClearKey,
                    pssh: Some("Y2s=".into()),
                    hls_uri: None,
                },
                SystemSignal {
                    system: System::Widevine,
                    pssh: Some("d3Y=".into()),
                    hls_uri: None,
                },
                SystemSignal {
                    system: System::FairPlay,
                    pssh: None,
                    hls_uri: Some("skd://k".into()),
                },
            ],
        });
        t
    }

    #[test]
    fn protected_tracks_signal_their_keys_in_every_playlist_and_adaptation_set() {
        let v = protected(video(), Scheme::Cbcs);
        let media = media_playlist(&v);
        let keys: Vec<&str> = media
            .lines()
            .filter(|l| l.starts_with("#EXT-X-KEY:"))
            .collect();
        assert_eq!(keys.len(), 3, "{media}");
        assert!(keys
            .iter()
            .all(|k| k.starts_with("#EXT-X-KEY:METHOD=SAMPLE-AES,")));
        assert!(
            keys[0].contains(r#"KEYFORMAT="org.w3.clearkey""#)
                && keys[0].contains("URI=\"data:text/plain;base64,ASNFZ4mrze8BI0VniavN7w==\"")
        );
        assert!(
            keys[1].contains(r#"URI="data:text/plain;base64,d3Y=""#)
                && keys[1].contains("KEYID=0x0123456789abcdef0123456789abcdef")
        );
        assert!(keys[2].contains(r#"URI="skd://k",KEYFORMAT="com.apple.streamingkeydelivery""#));
        assert!(media.find("#EXT-X-KEY").unwrap() < media.find("#EXT-X-MAP").unwrap());
        let iframes = iframe_playlist(&v).unwrap();
        assert_eq!(iframes.matches("#EXT-X-KEY:").count(), 3, "{iframes}");
        let master = master_playlist(&[v.clone(), protected(audio(), Scheme::Cbcs)], "j/");
        assert_eq!(master.matches("#EXT-X-SESSION-KEY:").count(), 3, "{master}");
        assert!(master.find("#EXT-X-SESSION-KEY").unwrap() < master.find("#EXT-X-MEDIA").unwrap());
        // cenc is SAMPLE-AES-CTR.
        let c = media_playlist(&protected(video(), Scheme::Cenc));
        assert!(c.contains("#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,"), "{c}");
        // DASH: the common scheme with the default KID, then a system per pssh.
        let m = mpd(&[v, protected(audio(), Scheme::Cbcs)], "");
        assert!(m.contains(r#"xmlns:cenc="urn:mpeg:cenc:2013""#));
        assert_eq!(
            m.matches(r#"<ContentProtection schemeIdUri="urn:mpeg:dash:mp4protection:2011" value="cbcs" cenc:default_KID="01234567-89ab-cdef-0123-456789abcdef"/>"#).count(),
            2,
            "{m}"
        );
        assert!(m.contains("<cenc:pssh>d3Y=</cenc:pssh>"));
        assert!(
            !m.contains("94ce86fb"),
            "FairPlay has no DASH signalling: {m}"
        );
        // A clear asset says nothing of it.
        assert!(!mpd(&[video()], "").contains("cenc"));
        assert!(!master_playlist(&[video(), audio()], "").contains("KEY"));
    }
}
