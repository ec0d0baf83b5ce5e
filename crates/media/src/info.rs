//! What probing learns about a source: the typed facts every later step reads (the
//! planner, the ladder, the encoder, the input policy). They sit below [`crate::probe`],
//! which produces them, and [`crate::policy`], which judges them, so neither of those has
//! to import the other's half.

use serde::{Deserialize, Serialize};

/// An exact rational (frame rates, time bases, aspect ratios).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rational {
    /// Numerator.
    pub num: i64,
    /// Denominator (never zero once parsed).
    pub den: i64,
}

impl Rational {
    /// Parses ffprobe's `"30000/1001"` or `"16:9"`; zero denominators give `None`.
    pub fn parse(s: &str) -> Option<Rational> {
        let (a, b) = s.split_once(['/', ':'])?;
        let (num, den) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        (den != 0).then_some(Rational { num, den })
    }

    /// As a float, for display and coarse maths only.
    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

impl std::fmt::Display for Rational {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

/// How the source's fields are ordered; anything but progressive gets deinterlaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldOrder {
    /// Whole frames (or unknown, which in practice means progressive).
    Progressive,
    /// Interlaced (tt, bb, tb, bt).
    Interlaced,
}

/// The video stream the ladder is made from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VideoInfo {
    /// Stream index in the container, used with `-map 0:<index>`.
    pub index: u32,
    /// Codec name (h264, hevc, prores, vp9 …).
    pub codec: String,
    /// Coded width in pixels.
    pub width: u32,
    /// Coded height in pixels.
    pub height: u32,
    /// Sample aspect ratio (1:1 unless anamorphic).
    pub sar: Rational,
    /// Display rotation in degrees (0, 90, 180, 270), from the display matrix.
    pub rotation: u32,
    /// Pixel format (yuv420p, yuv420p10le, yuv444p …).
    pub pix_fmt: String,
    /// Progressive or interlaced.
    pub field_order: FieldOrder,
    /// Average frame rate (for playlists and realtime factors).
    pub frame_rate: Rational,
    /// The stream's time base; frame timestamps are in these units.
    pub time_base: Rational,
    /// Whether frame durations vary (variable frame rate).
    pub vfr: bool,
    /// Presentation timestamp of every frame, ascending, in `time_base` units. Used for
    /// planning; empty in the plan stored with a job.
    pub frame_pts: Vec<i64>,
    /// The colour description and HDR static metadata the source states: what HDR rungs
    /// carry again, and what makes a source HDR ([`crate::colour`]).
    #[serde(default)]
    pub colour: crate::colour::Colour,
    /// Frame count the container's header declares (MP4/MOV), to detect truncation.
    #[serde(default)]
    pub declared_frames: Option<u64>,
}

impl VideoInfo {
    /// Display size after applying the sample aspect ratio and rotation: what a viewer sees.
    pub fn display_size(&self) -> (u32, u32) {
        let sar = if self.sar.num > 0 && self.sar.den > 0 {
            self.sar.as_f64()
        } else {
            1.0
        };
        let w = (self.width as f64 * sar).round().max(2.0) as u32;
        let h = self.height;
        if self.rotation % 180 == 90 {
            (h, w)
        } else {
            (w, h)
        }
    }

    /// Bit depth above 8 or chroma other than 4:2:0 needs conversion for H.264 High.
    pub fn needs_pixel_conversion(&self) -> bool {
        self.pix_fmt != "yuv420p" && self.pix_fmt != "yuvj420p"
    }

    /// Duration covered by the frames, in seconds (last frame's duration estimated).
    pub fn duration_secs(&self) -> f64 {
        match (self.frame_pts.first(), self.frame_pts.last()) {
            (Some(a), Some(b)) => {
                let frame = self.time_base.as_f64() * self.nominal_frame_ticks() as f64;
                (b - a) as f64 * self.time_base.as_f64() + frame
            }
            _ => 0.0,
        }
    }

    /// The typical frame duration in time-base ticks (median of the deltas).
    pub fn nominal_frame_ticks(&self) -> i64 {
        let mut d: Vec<i64> = self.frame_pts.windows(2).map(|w| w[1] - w[0]).collect();
        if d.is_empty() {
            let fr = self.frame_rate;
            if fr.num > 0 {
                return ((self.time_base.den * fr.den) as f64 / (self.time_base.num * fr.num) as f64)
                    .round()
                    .max(1.0) as i64;
            }
            return 1;
        }
        d.sort_unstable();
        d[d.len() / 2].max(1)
    }
}

/// One audio track; each is encoded once for the whole source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AudioInfo {
    /// Stream index in the container.
    pub index: u32,
    /// Codec name.
    pub codec: String,
    /// Channel count.
    pub channels: u32,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// ISO 639 language tag, if the source has one.
    pub language: Option<String>,
    /// Human title, if the source has one.
    pub title: Option<String>,
    /// First timestamp, in seconds on the container's clock.
    pub start_secs: f64,
}

/// One subtitle stream of the source. Text ones become WebVTT renditions; bitmap ones
/// (PGS, DVB, VobSub) cannot be turned into text without OCR and are listed as skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtitleInfo {
    /// Stream index in the container.
    pub index: u32,
    /// Codec name (`mov_text`, `subrip`, `ass`, `webvtt`, `hdmv_pgs_subtitle`, …).
    pub codec: String,
    /// ISO 639 language tag, if the source has one.
    pub language: Option<String>,
    /// Human title, if the source has one.
    pub title: Option<String>,
    /// Only for what the dialogue does not say (signs, foreign lines): shown without
    /// being chosen.
    #[serde(default)]
    pub forced: bool,
    /// Subtitles for the deaf and hard of hearing (sounds described too).
    #[serde(default)]
    pub hearing_impaired: bool,
}

/// What probing learned about a source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MediaInfo {
    /// The demuxer that accepted the file.
    pub format_name: String,
    /// Container duration in seconds, when known.
    pub duration_secs: Option<f64>,
    /// File size in bytes.
    pub size_bytes: u64,
    /// The video stream (None for an audio-only source, which publishes its audio alone).
    pub video: Option<VideoInfo>,
    /// Audio tracks in container order.
    pub audio: Vec<AudioInfo>,
    /// Subtitle streams in container order.
    #[serde(default)]
    pub subtitles: Vec<SubtitleInfo>,
    /// Where the video stream starts, in seconds on the container's clock.
    pub video_start_secs: f64,
    /// The container's start time in seconds; ffmpeg's `-ss` is relative to it.
    pub start_secs: f64,
    /// Where the published part of the source ends, in seconds on the container's clock,
    /// when it ends before the source does (a [`crate::clip::Clip`]): the audio and the
    /// subtitles are cut there as the frame table is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_secs: Option<f64>,
    /// Where the first chunk's input seek goes when the published part starts after the
    /// source's first frame (a clip): halfway between its first frame and the frame before,
    /// as every other chunk's seek is, in seconds from the file's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seek_secs: Option<f64>,
}
