//! The input policy: what vodpipe agrees to transcode.
//!
//! Caps exist because uploads are untrusted: a 100 000 × 100 000 "video", a ten-hour file
//! or a decompression bomb must fail fast with a reason, not eat a worker. Audio-only
//! sources are refused (the product publishes video renditions); the reason says so.

use crate::error::{Error, Result};
use crate::info::MediaInfo;
use serde::{Deserialize, Serialize};

/// Demuxers ffmpeg may use on an upload. Playlist and script demuxers (hls, dash, concat,
/// ffconcat, image2 sequences, …) are deliberately absent: they open other files or URLs.
pub const ALLOWED_DEMUXERS: &[&str] = &[
    "mov", "matroska", "webm", "mpegts", "avi", "flv", "mxf", "mpeg", "asf", "ogg", "ivf",
    // audio-only containers: a podcast or a song publishes as audio-only HLS and DASH
    "wav", "mp3", "aac", "flac",
];

/// Limits applied to every source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct InputPolicy {
    /// Largest accepted file, in bytes.
    pub max_bytes: u64,
    /// Longest accepted duration, in seconds.
    pub max_duration_secs: f64,
    /// Largest accepted width or height (after rotation), in pixels.
    pub max_dimension: u32,
    /// Largest accepted picture area, in pixels.
    pub max_pixels: u64,
    /// Highest accepted average frame rate.
    pub max_fps: f64,
    /// Run-time cap for each ffprobe call, in seconds.
    pub probe_timeout_secs: u64,
}

impl Default for InputPolicy {
    fn default() -> Self {
        InputPolicy {
            max_bytes: 100 * 1024 * 1024 * 1024,
            max_duration_secs: 6.0 * 3600.0,
            max_dimension: 8192,
            max_pixels: 8192 * 4320,
            max_fps: 120.0,
            probe_timeout_secs: 120,
        }
    }
}

impl InputPolicy {
    /// Size check, before ffprobe touches the file.
    pub fn check_size(&self, bytes: u64) -> Result<()> {
        if bytes > self.max_bytes {
            return Err(Error::Rejected(format!(
                "source is {bytes} bytes; the limit is {} bytes",
                self.max_bytes
            )));
        }
        Ok(())
    }

    /// Duration check, once the frame table is known.
    pub fn check_duration(&self, secs: f64) -> Result<()> {
        if secs > self.max_duration_secs {
            return Err(Error::Rejected(format!(
                "source lasts {secs:.0} s; the limit is {:.0} s",
                self.max_duration_secs
            )));
        }
        Ok(())
    }

    /// Stream checks on the probe result.
    pub fn check(&self, info: &MediaInfo) -> Result<()> {
        let Some(v) = &info.video else {
            // An audio-only source (a podcast, a song) publishes as audio-only HLS and
            // DASH; its length is all there is to check.
            if info.audio.is_empty() {
                return Err(Error::Rejected(
                    "source has no video or audio stream".into(),
                ));
            }
            return self.check_duration(info.duration_secs.unwrap_or(0.0));
        };
        let (w, h) = v.display_size();
        if w.max(h) > self.max_dimension || u64::from(w) * u64::from(h) > self.max_pixels {
            return Err(Error::Rejected(format!(
                "picture is {w}x{h}; the limit is {} pixels on a side and {} pixels in all",
                self.max_dimension, self.max_pixels
            )));
        }
        let fps = v.frame_rate.as_f64();
        if fps > self.max_fps {
            return Err(Error::Rejected(format!(
                "frame rate {fps:.2} fps is above the limit of {} fps",
                self.max_fps
            )));
        }
        if let Some(d) = info.duration_secs {
            self.check_duration(d)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::{FieldOrder, Rational, VideoInfo};

    fn media(w: u32, h: u32) -> MediaInfo {
        MediaInfo {
            format_name: "mov".into(),
            duration_secs: Some(10.0),
            size_bytes: 1,
            video: Some(VideoInfo {
                index: 0,
                codec: "h264".into(),
                width: w,
                height: h,
                sar: Rational { num: 1, den: 1 },
                rotation: 0,
                pix_fmt: "yuv420p".into(),
                field_order: FieldOrder::Progressive,
                frame_rate: Rational { num: 30, den: 1 },
                time_base: Rational { num: 1, den: 30 },
                vfr: false,
                frame_pts: vec![],
                colour: Default::default(),
                declared_frames: None,
            }),
            audio: vec![],
            subtitles: vec![],
            video_start_secs: 0.0,
            start_secs: 0.0,
            end_secs: None,
            first_seek_secs: None,
        }
    }

    #[test]
    fn a_huge_picture_is_rejected_with_its_size() {
        let err = InputPolicy::default()
            .check(&media(20000, 20000))
            .unwrap_err();
        assert!(err.to_string().contains("20000x20000"), "{err}");
    }

    #[test]
    fn audio_only_sources_pass_within_the_length_limit_and_empty_ones_do_not() {
        let mut m = media(10, 10);
        m.video = None;
        let err = InputPolicy::default().check(&m).unwrap_err();
        assert!(err.to_string().contains("no video or audio"), "{err}");
        m.audio.push(crate::info::AudioInfo {
            index: 0,
            codec: "aac".into(),
            channels: 2,
            sample_rate: 48000,
            language: None,
            title: None,
            start_secs: 0.0,
        });
        m.duration_secs = Some(60.0);
        assert!(InputPolicy::default().check(&m).is_ok());
        m.duration_secs = Some(1e6);
        let err = InputPolicy::default().check(&m).unwrap_err();
        assert!(err.to_string().contains("the limit is"), "{err}");
    }

    #[test]
    fn an_overlong_source_is_rejected() {
        let mut m = media(640, 360);
        m.duration_secs = Some(1e6);
        assert!(InputPolicy::default().check(&m).is_err());
        assert!(InputPolicy::default().check(&media(640, 360)).is_ok());
    }
}
