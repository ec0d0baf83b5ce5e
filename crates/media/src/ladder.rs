//! The ABR ladder: which renditions a source gets.
//!
//! The default follows the shape the big VOD services publish for H.264 (1080p at ~5 Mb/s
//! down to 270p at ~0.4 Mb/s). Rungs are defined by their short side so a portrait phone
//! video gets a portrait ladder; the source is never upscaled, dimensions are even (4:2:0),
//! and bitrates scale with the real pixel count when the aspect ratio is not 16:9.

use crate::error::{Error, Result};
use crate::probe::VideoInfo;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One rung as configured: a target short side and a bitrate cap for a 16:9 picture.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RungSpec {
    /// Name used in paths and playlists ("720p").
    pub name: String,
    /// Target short side in pixels (height for landscape, width for portrait).
    pub short_side: u32,
    /// Peak bitrate for a 16:9 picture of this size, in kb/s.
    pub max_kbps: u32,
}

/// Output names a rung may not take: the chunk outputs that are not renditions.
pub const RESERVED_NAMES: &[&str] = &["thumbnails", "poster"];

/// The ladder and encoder settings, loadable from a JSON file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LadderConfig {
    /// Rungs, any order; duplicates after clamping to the source are dropped.
    pub rungs: Vec<RungSpec>,
    /// x264 preset (speed/quality trade-off).
    pub preset: String,
    /// Constant-rate-factor, capped by each rung's `max_kbps` (capped CRF).
    pub crf: u32,
    /// AAC bitrate per audio track, in kb/s (stereo; a 5.1 rendition gets three times it).
    pub audio_kbps: u32,
    /// Also publish a 5.1 AAC rendition of every track with six or more channels. The
    /// stereo downmix (ffmpeg's ITU-R BS.775 matrix: centre and surrounds at -3 dB, LFE
    /// dropped) is always published, and is the default rendition.
    pub surround: bool,
    /// Normalise every audio rendition to this integrated loudness (EBU R128, in LUFS:
    /// -23 for broadcast, -16 for streaming), with ffmpeg's `loudnorm`; none by default.
    pub loudness_lufs: Option<f64>,
    /// Publish a poster and scrubbing thumbnails (WebVTT sprites, a DASH image set), made
    /// in the chunk encodes from frames already decoded; on by default.
    pub thumbnails: bool,
}

impl Default for LadderConfig {
    fn default() -> Self {
        let rung = |name: &str, short_side, max_kbps| RungSpec {
            name: name.into(),
            short_side,
            max_kbps,
        };
        LadderConfig {
            rungs: vec![
                rung("1080p", 1080, 5000),
                rung("720p", 720, 3000),
                rung("540p", 540, 2000),
                rung("432p", 432, 1100),
                rung("360p", 360, 730),
                rung("270p", 270, 400),
            ],
            preset: "veryfast".into(),
            crf: 21,
            audio_kbps: 128,
            surround: false,
            loudness_lufs: None,
            thumbnails: true,
        }
    }
}

impl LadderConfig {
    /// Reads a JSON ladder file (the shape of [`LadderConfig`]; missing fields default).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.into(),
            reason: e.to_string(),
        })?;
        let cfg: LadderConfig = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.into(),
            reason: e.to_string(),
        })?;
        cfg.validate().map_err(|reason| Error::Config {
            path: path.into(),
            reason,
        })?;
        Ok(cfg)
    }

    /// Checks what a file or a profile could get wrong; the reason names the rule.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.rungs.is_empty()
            || self
                .rungs
                .iter()
                .any(|r| r.short_side < 16 || r.max_kbps == 0 || r.name.trim().is_empty())
        {
            return Err(
                "needs at least one rung, each with a name, short_side >= 16 and max_kbps > 0"
                    .into(),
            );
        }
        if let Some(r) = self
            .rungs
            .iter()
            .find(|r| RESERVED_NAMES.contains(&r.name.as_str()))
        {
            return Err(format!(
                "rung name {:?} is taken by the published thumbnails; choose another",
                r.name
            ));
        }
        if !(0..=51).contains(&self.crf) {
            return Err(format!("crf is {}; x264 takes 0 to 51", self.crf));
        }
        const PRESETS: &[&str] = &[
            "ultrafast",
            "superfast",
            "veryfast",
            "faster",
            "fast",
            "medium",
            "slow",
            "slower",
            "veryslow",
            "placebo",
        ];
        if !PRESETS.contains(&self.preset.as_str()) {
            return Err(format!(
                "preset is {:?}; use one of {}",
                self.preset,
                PRESETS.join(", ")
            ));
        }
        if !(16..=512).contains(&self.audio_kbps) {
            return Err(format!("audio_kbps is {}; use 16 to 512", self.audio_kbps));
        }
        if let Some(l) = self.loudness_lufs {
            if !(-70.0..=-5.0).contains(&l) {
                return Err(format!(
                    "loudness_lufs is {l}; loudnorm takes -70 to -5 (-23 broadcast, -16 streaming)"
                ));
            }
        }
        Ok(())
    }
}

/// A rendition to encode.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Rung {
    /// Name used in paths and playlists.
    pub name: String,
    /// Output width (even).
    pub width: u32,
    /// Output height (even).
    pub height: u32,
    /// Peak bitrate cap in kb/s (`-maxrate`).
    pub max_kbps: u32,
}

/// Rounds to the nearest even number, at least 2.
fn even(x: f64) -> u32 {
    ((x / 2.0).round() as u32 * 2).max(2)
}

/// The rungs for `video` under `cfg`, largest first. A source smaller than every rung gets
/// one rung at its own (even) size.
pub fn ladder_for(video: &VideoInfo, cfg: &LadderConfig) -> Vec<Rung> {
    let (dw, dh) = video.display_size();
    let portrait = dh > dw;
    let short = dw.min(dh);
    let aspect = dw as f64 / dh as f64;
    let size_for = |s: u32| -> (u32, u32) {
        if portrait {
            (even(s as f64), even(s as f64 / aspect))
        } else {
            (even(s as f64 * aspect), even(s as f64))
        }
    };
    let scaled_kbps = |spec: &RungSpec, w: u32, h: u32| -> u32 {
        let nominal = spec.short_side as f64 * spec.short_side as f64 * 16.0 / 9.0;
        let ratio = (w as f64 * h as f64) / nominal;
        ((spec.max_kbps as f64 * ratio).round() as u32).max(100)
    };
    let mut specs = cfg.rungs.clone();
    specs.sort_by_key(|s| std::cmp::Reverse(s.short_side));
    let mut rungs: Vec<Rung> = Vec::new();
    for spec in specs.iter().filter(|s| s.short_side <= short) {
        let (width, height) = size_for(spec.short_side);
        if rungs.iter().any(|r| r.width == width && r.height == height) {
            continue;
        }
        rungs.push(Rung {
            name: spec.name.clone(),
            width,
            height,
            max_kbps: scaled_kbps(spec, width, height),
        });
    }
    if rungs.is_empty() {
        // Smaller than the smallest rung: publish at source size, priced like that rung.
        let (width, height) = (even(dw as f64), even(dh as f64));
        let smallest = specs.last().cloned().unwrap_or(RungSpec {
            name: "270p".into(),
            short_side: 270,
            max_kbps: 400,
        });
        rungs.push(Rung {
            name: format!("{}p", width.min(height)),
            width,
            height,
            max_kbps: scaled_kbps(&smallest, width, height),
        });
    }
    rungs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{FieldOrder, Rational};

    fn video(w: u32, h: u32, rotation: u32) -> VideoInfo {
        VideoInfo {
            index: 0,
            codec: "h264".into(),
            width: w,
            height: h,
            sar: Rational { num: 1, den: 1 },
            rotation,
            pix_fmt: "yuv420p".into(),
            field_order: FieldOrder::Progressive,
            frame_rate: Rational { num: 30, den: 1 },
            time_base: Rational { num: 1, den: 30 },
            vfr: false,
            frame_pts: vec![],
            declared_frames: None,
        }
    }

    #[test]
    fn a_1080p_source_gets_the_full_ladder() {
        let r = ladder_for(&video(1920, 1080, 0), &LadderConfig::default());
        let sizes: Vec<_> = r.iter().map(|r| (r.width, r.height)).collect();
        assert_eq!(
            sizes,
            [
                (1920, 1080),
                (1280, 720),
                (960, 540),
                (768, 432),
                (640, 360),
                (480, 270)
            ]
        );
        assert_eq!(r[0].max_kbps, 5000);
    }

    #[test]
    fn the_source_is_never_upscaled() {
        let r = ladder_for(&video(640, 360, 0), &LadderConfig::default());
        assert_eq!(r[0].height, 360);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn rotated_phone_video_stays_portrait() {
        let r = ladder_for(&video(1920, 1080, 90), &LadderConfig::default());
        assert_eq!((r[0].width, r[0].height), (1080, 1920));
        assert!(r.iter().all(|r| r.height > r.width));
    }

    #[test]
    fn odd_dimensions_become_even() {
        let r = ladder_for(&video(333, 201, 0), &LadderConfig::default());
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].width % 2, r[0].height % 2), (0, 0));
    }

    #[test]
    fn anamorphic_sources_use_display_aspect() {
        let mut v = video(720, 576, 0);
        v.sar = Rational { num: 64, den: 45 };
        let r = ladder_for(&v, &LadderConfig::default());
        assert_eq!((r[0].width, r[0].height), (960, 540));
    }

    #[test]
    fn a_ladder_file_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.json");
        std::fs::write(
            &p,
            r#"{"rungs":[{"name":"a","short_side":240,"max_kbps":500}],"crf":23}"#,
        )
        .unwrap();
        let cfg = LadderConfig::from_file(&p).unwrap();
        assert_eq!(cfg.crf, 23);
        assert_eq!(cfg.preset, "veryfast");
        std::fs::write(&p, r#"{"rungs":[]}"#).unwrap();
        assert!(LadderConfig::from_file(&p).is_err());
    }
}
