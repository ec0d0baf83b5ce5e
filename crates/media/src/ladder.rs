//! The ABR ladder: which renditions a source gets.
//!
//! The default follows the shape the big VOD services publish for H.264 (1080p at ~5 Mb/s
//! down to 270p at ~0.4 Mb/s). Rungs are defined by their short side so a portrait phone
//! video gets a portrait ladder; the source is never upscaled, dimensions are even (4:2:0),
//! and bitrates scale with the real pixel count when the aspect ratio is not 16:9.

use crate::colour::DynamicRange;
use crate::error::{Error, Result};
use crate::info::VideoInfo;
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

/// A video codec a ladder publishes. H.264 plays everywhere; HEVC and AV1 spend fewer
/// bits on the same picture, for the players that can decode them. Every codec's rungs
/// share the job's segments and timeline, so a player may switch between any of them.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    /// H.264 High (x264), `avc1`.
    #[default]
    H264,
    /// HEVC Main (x265), stored as `hvc1` (parameter sets out of band, as Apple requires).
    Hevc,
    /// AV1 Main (SVT-AV1), `av01`.
    Av1,
}

impl VideoCodec {
    /// Every codec, in the order ladders list them.
    pub const ALL: [VideoCodec; 3] = [VideoCodec::H264, VideoCodec::Hevc, VideoCodec::Av1];

    /// The name settings, flags and ladder files use.
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "h264",
            VideoCodec::Hevc => "hevc",
            VideoCodec::Av1 => "av1",
        }
    }

    /// The codec `name` names (case and spaces ignored).
    pub fn parse(name: &str) -> Option<VideoCodec> {
        let n = name.trim().to_ascii_lowercase();
        VideoCodec::ALL.into_iter().find(|c| c.name() == n)
    }

    /// The codecs of a comma-separated list (`h264,av1`), in order, without repeats; the
    /// error names what is wrong.
    pub fn parse_list(list: &str) -> std::result::Result<Vec<VideoCodec>, String> {
        let mut out = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let c = VideoCodec::parse(part).ok_or_else(|| {
                format!(
                    "{part:?} is not a codec vodpipe encodes; use {}",
                    VideoCodec::ALL.map(VideoCodec::name).join(", ")
                )
            })?;
            if !out.contains(&c) {
                out.push(c);
            }
        }
        if out.is_empty() {
            return Err("names no codec".into());
        }
        Ok(out)
    }

    /// What a rung of this codec appends to the ladder's rung name ("720p_av1"); H.264
    /// rungs keep their names, so an H.264-only ladder's paths never change.
    pub fn suffix(self) -> &'static str {
        match self {
            VideoCodec::H264 => "",
            VideoCodec::Hevc => "_hevc",
            VideoCodec::Av1 => "_av1",
        }
    }

    /// What encoding a rung in this codec costs against H.264, in CPU time, rounded up
    /// from `make codec-bench` (HEVC and AV1 at their default presets: 2.6× each), so a
    /// chunk's deadline grows with the codecs it encodes.
    pub fn relative_cost(self) -> f64 {
        match self {
            VideoCodec::H264 => 1.0,
            VideoCodec::Hevc | VideoCodec::Av1 => 3.0,
        }
    }

    /// The share of the H.264 rung's bitrate cap this codec's rung gets: the usual
    /// efficiency gains at equal quality (HEVC ~30 %, AV1 ~40 % fewer bits).
    pub fn cap_factor(self) -> f64 {
        match self {
            VideoCodec::H264 => 1.0,
            VideoCodec::Hevc => 0.7,
            VideoCodec::Av1 => 0.6,
        }
    }
}

/// What an HDR source (PQ or HLG) gets.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum HdrMode {
    /// HDR rungs (HEVC Main 10, and AV1 10-bit when the ladder asks for AV1) carrying the
    /// source's colour and static metadata, beside an SDR ladder of H.264 rungs tone-mapped
    /// to BT.709 for every screen that cannot show HDR.
    #[default]
    Keep,
    /// Tone-mapped SDR rungs only, in the ladder's codecs: for catalogues whose players
    /// are all SDR.
    SdrOnly,
}

impl HdrMode {
    /// The name settings and flags use.
    pub fn name(self) -> &'static str {
        match self {
            HdrMode::Keep => "keep",
            HdrMode::SdrOnly => "sdr-only",
        }
    }

    /// The mode `name` names.
    pub fn parse(name: &str) -> Option<HdrMode> {
        match name.trim().to_ascii_lowercase().as_str() {
            "keep" => Some(HdrMode::Keep),
            "sdr-only" | "sdr_only" | "sdr" => Some(HdrMode::SdrOnly),
            _ => None,
        }
    }
}

/// What the title is, for the encoder's psychovisual tuning (x264 and x265 `-tune`): an
/// uploader who knows their catalogue says so, and the encoder spends its bits the way
/// that content needs. Nothing is guessed: a detector cheap enough to run per title did not
/// tell real animation from live action here, and choosing the tuning by a metric turns
/// the encoder's psychovisual optimisations off, which VMAF rewards and the eye does not
/// (docs/performance.md).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Tune {
    /// Cel or CG animation: stronger deblocking, lighter psychovisual rate–distortion and
    /// adaptive quantisation (x264 and x265 `-tune animation`). On the real animation
    /// footage, 5.5 % fewer bits at the same VMAF on the top rung.
    Animation,
    /// Film grain to keep (x264 and x265 `-tune grain`): weaker deblocking (x264 −2:−2,
    /// x265 without SAO) and psychovisual weights that keep the grain's energy instead of
    /// smoothing it away. Not measured here: the grain clip's top rung is rate-capped.
    Grain,
}

impl Tune {
    /// The name settings, flags and the encoders use: one spelling everywhere, so a
    /// settings file says what `-tune` will be given.
    pub fn name(self) -> &'static str {
        match self {
            Tune::Animation => "animation",
            Tune::Grain => "grain",
        }
    }

    /// The tuning `name` names, forgiving case and spaces as metadata arrives; None for
    /// a name neither encoder takes, which callers refuse with the names there are.
    pub fn parse(name: &str) -> Option<Tune> {
        match name.trim().to_ascii_lowercase().as_str() {
            "animation" => Some(Tune::Animation),
            "grain" => Some(Tune::Grain),
            _ => None,
        }
    }
}

/// What an HDR rung's bitrate cap is against the same codec's SDR rung: 10-bit PQ and HLG
/// pictures spend about a quarter more bits for the same quality (Apple's HLS authoring
/// specification lists its HDR HEVC ladder about that much above its SDR HEVC one).
pub const HDR_CAP_FACTOR: f64 = 1.25;

/// What a rung name may not end with: HDR rungs are named `<size>_<codec>_hdr`.
pub const HDR_SUFFIX: &str = "_hdr";

/// The ladder and encoder settings, loadable from a JSON file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LadderConfig {
    /// Rungs, any order; duplicates after clamping to the source are dropped.
    pub rungs: Vec<RungSpec>,
    /// x264 preset (speed/quality trade-off).
    pub preset: String,
    /// The content's psychovisual tuning for H.264 and HEVC rungs (SVT-AV1 has no such
    /// tunings); none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tune: Option<Tune>,
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
    /// Video codecs to publish every rung in, in this order (H.264 only by default). Each
    /// extra codec is a full set of rungs in the same CMAF presentation.
    pub codecs: Vec<VideoCodec>,
    /// x265 constant-rate-factor for HEVC rungs (capped like H.264's): 24 looks about
    /// like x264's 21.
    pub hevc_crf: u32,
    /// x265 preset for HEVC rungs.
    pub hevc_preset: String,
    /// SVT-AV1 constant-rate-factor for AV1 rungs (1 to 63, capped by the rung's rate).
    pub av1_crf: u32,
    /// SVT-AV1 preset (0 slowest to 13 fastest).
    pub av1_preset: u32,
    /// Per-title ladder: a constant-quality probe encode of a few sampled seconds picks,
    /// for each rung of this ladder, the size and quality step that reach the same picture
    /// quality in the fewest bits (see [`crate::pertitle`]). Off by default.
    pub auto: bool,
    /// Common encryption of every rung and audio rendition (see [`crate::cenc`]); none by
    /// default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drm: Option<crate::cenc::DrmConfig>,
    /// What an HDR source gets: HDR rungs beside an SDR ladder (`keep`, the default), or
    /// SDR rungs only (`sdr-only`). SDR sources are not affected.
    #[serde(skip_serializing_if = "is_keep")]
    pub hdr: HdrMode,
    /// An image drawn over every rung (a watermark or a channel bug), in the chunk encode
    /// ([`crate::overlay`]); none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlay: Option<crate::overlay::Overlay>,
}

fn is_keep(m: &HdrMode) -> bool {
    *m == HdrMode::Keep
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
            tune: None,
            crf: 21,
            audio_kbps: 128,
            surround: false,
            loudness_lufs: None,
            thumbnails: true,
            codecs: vec![VideoCodec::H264],
            hevc_crf: 24,
            hevc_preset: "veryfast".into(),
            av1_crf: 35,
            av1_preset: 10,
            auto: false,
            drm: None,
            hdr: HdrMode::Keep,
            overlay: None,
        }
    }
}

impl LadderConfig {
    /// `-tune NAME` when the ladder names the content's tuning (x264 and x265 take the
    /// same names), for the rungs and the per-title probes alike, so the analysis measures
    /// the encoder the rungs get; nothing otherwise. ffmpeg applies the preset and the
    /// tuning first and the explicit options after them, so the ladder's `-bf 3` still
    /// holds (the animation tuning's extra B-frames would change the frame types).
    pub fn tune_args(&self) -> Vec<String> {
        self.tune
            .map(|t| vec!["-tune".to_string(), t.name().to_string()])
            .unwrap_or_default()
    }

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
        if self.codecs.is_empty() {
            return Err("codecs names no codec; use h264, hevc or av1".into());
        }
        if let Some(o) = &self.overlay {
            o.validate().map_err(|e| format!("overlay: {e}"))?;
        }
        if let Some(drm) = &self.drm {
            drm.validate().map_err(|e| format!("drm: {e}"))?;
            if self.codecs.contains(&VideoCodec::Av1) {
                return Err(
                    "drm: av1 rungs cannot be protected yet (their tile headers are not walked); use h264 and hevc"
                        .into(),
                );
            }
        }
        if let Some(c) = VideoCodec::ALL
            .iter()
            .find(|c| self.codecs.iter().filter(|x| x == c).count() > 1)
        {
            return Err(format!("codecs lists {} twice", c.name()));
        }
        if let Some(r) = self.rungs.iter().find(|r| {
            r.name.ends_with(HDR_SUFFIX)
                || VideoCodec::ALL
                    .iter()
                    .any(|c| !c.suffix().is_empty() && r.name.ends_with(c.suffix()))
        }) {
            return Err(format!(
                "rung name {:?} ends like another codec's or HDR rungs (_hevc, _av1, _hdr); choose another",
                r.name
            ));
        }
        if !(0..=51).contains(&self.hevc_crf) {
            return Err(format!("hevc_crf is {}; x265 takes 0 to 51", self.hevc_crf));
        }
        if !(1..=63).contains(&self.av1_crf) {
            return Err(format!(
                "av1_crf is {}; SVT-AV1 takes 1 to 63",
                self.av1_crf
            ));
        }
        if self.av1_preset > 13 {
            return Err(format!(
                "av1_preset is {}; SVT-AV1 takes 0 (slowest) to 13 (fastest)",
                self.av1_preset
            ));
        }
        if !PRESETS.contains(&self.hevc_preset.as_str()) {
            return Err(format!(
                "hevc_preset is {:?}; use one of {}",
                self.hevc_preset,
                PRESETS.join(", ")
            ));
        }
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
    /// The codec this rung is encoded in (H.264 for plans made before there was a choice).
    #[serde(default)]
    pub codec: VideoCodec,
    /// Constant-rate-factor steps above the codec's configured one that a per-title
    /// ladder chose for this rung (0: the ladder's own quality).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub crf_offset: u32,
    /// The dynamic range this rung is made for: an HDR rung keeps its source's colour and
    /// static metadata; an SDR rung of an HDR source is tone-mapped to BT.709.
    #[serde(default, skip_serializing_if = "is_sdr")]
    pub range: DynamicRange,
}

fn is_sdr(r: &DynamicRange) -> bool {
    !r.is_hdr()
}

fn is_zero(x: &u32) -> bool {
    *x == 0
}

impl Rung {
    /// The x264/x265 CRF of this rung, from the codec's base CRF: per-title steps on top,
    /// never past the encoder's range.
    pub fn crf(&self, base: u32) -> u32 {
        (base + self.crf_offset).min(51)
    }

    /// The SVT-AV1 CRF of this rung: its scale runs to 63, so a step counts 1.25 of
    /// x264's (both halve the bitrate in about the same distance along their scales).
    pub fn av1_crf(&self, base: u32) -> u32 {
        (base + (f64::from(self.crf_offset) * 1.25).round() as u32).min(63)
    }
}

/// Rounds to the nearest even number, at least 2.
fn even(x: f64) -> u32 {
    ((x / 2.0).round() as u32 * 2).max(2)
}

/// The rungs for `video` under `cfg`: every size, largest first, in each of the ladder's
/// codecs in turn (the first codec's rungs first). A source smaller than every rung gets
/// one rung at its own (even) size.
///
/// AV1 rungs need a source of constant frame rate: SVT-AV1 cannot place a keyframe on a
/// given frame, only every N frames, so a variable-frame-rate source (whose segments
/// hold different numbers of frames) gets its other codecs' rungs only.
pub fn ladder_for(video: &VideoInfo, cfg: &LadderConfig) -> Vec<Rung> {
    in_codecs(video, cfg, sizes_for(video, cfg))
}

/// `sizes` (H.264 rungs, from the fixed ladder or a per-title choice) in each of the
/// ladder's codecs, as [`ladder_for`] lists them.
///
/// An HDR source under [`HdrMode::Keep`] gets two ladders: the SDR one in H.264 (what every
/// player can show), then the HDR one in HEVC Main 10 and, when the ladder asks for AV1,
/// AV1 10-bit, named `<size>_hevc_hdr` and `<size>_av1_hdr`. Under [`HdrMode::SdrOnly`],
/// and for every SDR source, the ladder's codecs are all SDR.
pub fn in_codecs(video: &VideoInfo, cfg: &LadderConfig, sizes: Vec<Rung>) -> Vec<Rung> {
    let usable = |c: &VideoCodec| *c != VideoCodec::Av1 || !video.vfr;
    let source_range = video.colour.dynamic_range();
    let sets: Vec<(VideoCodec, DynamicRange)> = if source_range.is_hdr() && cfg.hdr == HdrMode::Keep
    {
        let mut sets = vec![
            (VideoCodec::H264, DynamicRange::Sdr),
            (VideoCodec::Hevc, source_range),
        ];
        if cfg.codecs.contains(&VideoCodec::Av1) && usable(&VideoCodec::Av1) {
            sets.push((VideoCodec::Av1, source_range));
        }
        sets
    } else {
        let mut codecs: Vec<VideoCodec> = cfg.codecs.iter().copied().filter(usable).collect();
        if codecs.is_empty() {
            codecs.push(VideoCodec::H264);
        }
        codecs.into_iter().map(|c| (c, DynamicRange::Sdr)).collect()
    };
    sets.iter()
        .flat_map(|&(codec, range)| {
            let (suffix, factor) = if range.is_hdr() {
                (HDR_SUFFIX, codec.cap_factor() * HDR_CAP_FACTOR)
            } else {
                ("", codec.cap_factor())
            };
            sizes.iter().map(move |r| Rung {
                name: format!("{}{}{suffix}", r.name, codec.suffix()),
                max_kbps: ((f64::from(r.max_kbps) * factor).round() as u32).max(100),
                codec,
                range,
                ..r.clone()
            })
        })
        .collect()
}

/// The frames per segment that put every segment start on a multiple of it, for a plan
/// with AV1 rungs: the segment duration in whole frames of the source's nominal rate.
/// None when no rung is AV1 (segments then follow the clock exactly).
pub fn av1_frames_per_segment(video: &VideoInfo, rungs: &[Rung], segment_secs: f64) -> Option<u64> {
    if !rungs.iter().any(|r| r.codec == VideoCodec::Av1) {
        return None;
    }
    let fps = video.frame_rate.num as f64 / video.frame_rate.den.max(1) as f64;
    Some(((segment_secs * fps).round() as u64).max(1))
}

/// The H.264 rungs (sizes and caps) for `video` under `cfg`: the fixed ladder.
pub fn sizes_for(video: &VideoInfo, cfg: &LadderConfig) -> Vec<Rung> {
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
            codec: VideoCodec::H264,
            crf_offset: 0,
            range: DynamicRange::Sdr,
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
            codec: VideoCodec::H264,
            crf_offset: 0,
            range: DynamicRange::Sdr,
        });
    }
    rungs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::{FieldOrder, Rational};

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
            colour: Default::default(),
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

    #[test]
    fn a_ladder_file_names_the_contents_tuning_and_the_encoders_are_told() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.json");
        std::fs::write(&p, r#"{"tune": "animation"}"#).unwrap();
        let cfg = LadderConfig::from_file(&p).unwrap();
        assert_eq!(cfg.tune, Some(Tune::Animation));
        assert_eq!(cfg.tune_args(), ["-tune", "animation"]);
        assert!(LadderConfig::default().tune_args().is_empty());
        // A tuning neither encoder has under that name is refused, naming the ones there are.
        std::fs::write(&p, r#"{"tune": "film"}"#).unwrap();
        let e = LadderConfig::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("animation") && e.contains("grain"), "{e}");
        // Untuned ladders are stored as before (stored plans keep their shape).
        let doc = serde_json::to_string(&LadderConfig::default()).unwrap();
        assert!(!doc.contains("tune"), "{doc}");
        assert_eq!(Tune::parse(" Grain "), Some(Tune::Grain));
        assert_eq!(Tune::parse("film"), None);
    }

    #[test]
    fn each_codec_gets_every_rung_named_after_h264s_and_capped_below_it() {
        let cfg = LadderConfig {
            codecs: vec![VideoCodec::H264, VideoCodec::Av1, VideoCodec::Hevc],
            ..LadderConfig::default()
        };
        let r = ladder_for(&video(1280, 720, 0), &cfg);
        let names: Vec<&str> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(&names[..5], ["720p", "540p", "432p", "360p", "270p"]);
        assert_eq!(&names[5..7], ["720p_av1", "540p_av1"]);
        assert_eq!(names[10], "720p_hevc");
        assert_eq!(r.len(), 15);
        assert_eq!(
            (r[0].max_kbps, r[5].max_kbps, r[10].max_kbps),
            (3000, 1800, 2100)
        );
        assert_eq!(
            (r[5].width, r[5].height, r[5].codec),
            (1280, 720, VideoCodec::Av1)
        );
        // AV1 rungs make the plan whole-frame segments; H.264-only ones do not.
        assert_eq!(
            av1_frames_per_segment(&video(1280, 720, 0), &r, 4.0),
            Some(120)
        );
        assert_eq!(
            av1_frames_per_segment(&video(1280, 720, 0), &r[..5], 4.0),
            None
        );
    }

    #[test]
    fn a_variable_frame_rate_source_gets_no_av1_rungs() {
        let cfg = LadderConfig {
            codecs: vec![VideoCodec::H264, VideoCodec::Av1],
            ..LadderConfig::default()
        };
        let mut v = video(640, 360, 0);
        v.vfr = true;
        let r = ladder_for(&v, &cfg);
        assert!(r.iter().all(|r| r.codec == VideoCodec::H264), "{r:?}");
        // AV1 alone falls back to H.264 rather than to nothing.
        let only = LadderConfig {
            codecs: vec![VideoCodec::Av1],
            ..LadderConfig::default()
        };
        assert!(ladder_for(&v, &only)
            .iter()
            .all(|r| r.codec == VideoCodec::H264));
    }

    #[test]
    fn codec_lists_are_parsed_and_checked() {
        assert_eq!(
            VideoCodec::parse_list(" H264, av1,h264 ").unwrap(),
            [VideoCodec::H264, VideoCodec::Av1]
        );
        let e = VideoCodec::parse_list("h264,vp9").unwrap_err();
        assert!(
            e.contains("\"vp9\"") && e.contains("h264, hevc, av1"),
            "{e}"
        );
        assert!(VideoCodec::parse_list(" , ").is_err());
        let bad = |cfg: LadderConfig| cfg.validate().unwrap_err();
        assert!(bad(LadderConfig {
            codecs: vec![],
            ..LadderConfig::default()
        })
        .contains("no codec"));
        assert!(bad(LadderConfig {
            codecs: vec![VideoCodec::Av1, VideoCodec::Av1],
            ..LadderConfig::default()
        })
        .contains("twice"));
        assert!(bad(LadderConfig {
            av1_crf: 70,
            ..LadderConfig::default()
        })
        .contains("av1_crf"));
        let mut named = LadderConfig::default();
        named.rungs[0].name = "1080p_av1".into();
        assert!(bad(named).contains("another codec"));
        // A ladder file names codecs in lower case.
        let cfg: LadderConfig =
            serde_json::from_str(r#"{"codecs": ["h264", "hevc"], "hevc_crf": 26}"#).unwrap();
        assert_eq!(cfg.codecs, [VideoCodec::H264, VideoCodec::Hevc]);
        assert_eq!(cfg.hevc_crf, 26);
        // Plans stored before codecs existed read as H.264.
        let old: Rung =
            serde_json::from_str(r#"{"name":"a","width":2,"height":2,"max_kbps":1}"#).unwrap();
        assert_eq!(old.codec, VideoCodec::H264);
    }

    #[test]
    fn an_hdr_source_gets_hdr_rungs_beside_an_sdr_h264_ladder_unless_told_otherwise() {
        let mut v = video(1280, 720, 0);
        v.colour.transfer = Some("smpte2084".into());
        let cfg = LadderConfig {
            codecs: vec![VideoCodec::H264, VideoCodec::Av1],
            ..LadderConfig::default()
        };
        let r = ladder_for(&v, &cfg);
        let names: Vec<&str> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(&names[..2], ["720p", "540p"]);
        assert_eq!(&names[5..7], ["720p_hevc_hdr", "540p_hevc_hdr"]);
        assert_eq!(&names[10..12], ["720p_av1_hdr", "540p_av1_hdr"]);
        assert_eq!(r.len(), 15);
        assert!(r[..5]
            .iter()
            .all(|r| r.codec == VideoCodec::H264 && !r.range.is_hdr()));
        assert!(r[5..].iter().all(|r| r.range == DynamicRange::Pq));
        // An HDR rung is capped a quarter above its codec's SDR cap.
        assert_eq!(
            r[5].max_kbps,
            (3000.0_f64 * 0.7 * HDR_CAP_FACTOR).round() as u32
        );
        // HLG stays HLG; sdr-only gives the ladder's own codecs, all SDR.
        v.colour.transfer = Some("arib-std-b67".into());
        assert!(ladder_for(&v, &cfg)[5..]
            .iter()
            .all(|r| r.range == DynamicRange::Hlg));
        let sdr = LadderConfig {
            hdr: HdrMode::SdrOnly,
            ..cfg.clone()
        };
        let r = ladder_for(&v, &sdr);
        assert_eq!(r.len(), 10);
        assert!(r.iter().all(|r| !r.range.is_hdr()));
        assert_eq!(r[5].name, "720p_av1");
        // An SDR source's ladder is untouched by any of it.
        let plain = ladder_for(&video(1280, 720, 0), &cfg);
        assert_eq!(plain.len(), 10);
        assert!(plain
            .iter()
            .all(|r| !r.range.is_hdr() && !r.name.ends_with(HDR_SUFFIX)));
        // Plans stored before ranges existed read as SDR, and SDR rungs store no range.
        let json = serde_json::to_string(&plain[0]).unwrap();
        assert!(!json.contains("range"), "{json}");
        assert_eq!(HdrMode::parse("SDR-only"), Some(HdrMode::SdrOnly));
        let mut named = LadderConfig::default();
        named.rungs[0].name = "1080p_hdr".into();
        assert!(named.validate().unwrap_err().contains("_hdr"));
    }
}
