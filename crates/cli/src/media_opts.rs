//! The options that shape new jobs (segment and chunk lengths, the ladder, codecs,
//! profiles, the ffmpeg binaries, content protection), shared by every command that plans: `run`, `plan`,
//! `ingest` and `watch` accept and check them the same way.

use anyhow::{anyhow, bail, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vodpipe_control::keys::KeyFile;
use vodpipe_control::pipeline::Config;
use vodpipe_media::cenc::{DrmConfig, Scheme, System};
use vodpipe_media::ladder::{HdrMode, LadderConfig, Tune, VideoCodec};
use vodpipe_media::plan::PlanOptions;

/// Options for planning new jobs.
#[derive(Args, Clone)]
pub struct MediaOpts {
    /// Segment duration in seconds.
    #[arg(long, default_value_t = 4.0)]
    pub segment_seconds: f64,
    /// Target chunk duration in seconds (a run of whole segments, one ffmpeg each).
    #[arg(long, default_value_t = 20.0)]
    pub chunk_seconds: f64,
    /// Ladder and encoder settings as JSON (see docs/ladders-and-codecs.md); defaults to the built-in ladder.
    /// `auto`: the built-in ladder shaped per title (a probe encode of sampled seconds
    /// picks each rung's size and quality step). Given here, it beats an upload's settings.
    #[arg(long)]
    pub ladder: Option<PathBuf>,
    /// Video codecs to publish every rung in, comma-separated, in order: h264, hevc, av1
    /// (e.g. `h264,av1`). Beats an upload's own choice; default: the ladder's (h264).
    #[arg(long, value_parser = parse_codecs)]
    pub codecs: Option<CodecList>,
    /// Directory of named ladders (`<name>.json`) uploads may choose with a settings file
    /// (`"ladder": "<name>"`); `watch` defaults to DIR/_vodpipe/profiles.
    #[arg(long, env = "VODPIPE_PROFILES")]
    pub profiles: Option<PathBuf>,
    /// ffmpeg binary.
    #[arg(long, env = "VODPIPE_FFMPEG", default_value = "ffmpeg")]
    pub ffmpeg: String,
    /// ffprobe binary.
    #[arg(long, env = "VODPIPE_FFPROBE", default_value = "ffprobe")]
    pub ffprobe: String,
    /// Encrypt every video rung and audio rendition (H.264 ladders): `cbcs` (every
    /// player, FairPlay included) or `cenc`. Beats an upload's own choice.
    #[arg(long, value_parser = parse_scheme)]
    pub drm: Option<Scheme>,
    /// The key file workers encrypt with when a job asks for protection without a key
    /// server: `{"kid": "<32 hex>", "key": "<32 hex>"}`, or `{"video": {…}, "audio": {…}}`.
    #[arg(long, env = "VODPIPE_DRM_KEYS")]
    pub drm_keys: Option<PathBuf>,
    /// DRM systems to signal with `--drm`, comma-separated: clearkey, widevine, playready,
    /// fairplay (default: clearkey with a key file; widevine, playready and, for cbcs,
    /// fairplay with a key server).
    #[arg(long, value_delimiter = ',', value_parser = parse_system)]
    pub drm_systems: Vec<System>,
    /// A SPEKE v2.0 key server to get the keys from (instead of `--drm-keys`).
    #[arg(long)]
    pub drm_speke: Option<String>,
    /// What an HDR source (PQ or HLG) gets: `keep` (HEVC Main 10 rungs, and AV1 10-bit
    /// with `--codecs …av1`, beside tone-mapped H.264 SDR rungs) or `sdr-only`
    /// (tone-mapped rungs only). Beats an upload's own choice; default: keep.
    #[arg(long, value_parser = parse_hdr)]
    pub hdr: Option<HdrMode>,
    /// What the content is, for the H.264 and HEVC encoders' psychovisual tuning:
    /// `animation` (on real CG animation, 5.5 % fewer bits at the same VMAF, for more
    /// banding) or `grain` (x264's and x265's tuning for film grain). Beats an upload's own
    /// and its profile's. Default: none (the encoders' general tuning).
    #[arg(long, value_parser = parse_tune)]
    pub tune: Option<Tune>,
    /// The most a job may cost, in USD, by its plan's estimate (list prices for its
    /// pixels and codecs): a job estimated above it fails before anything is encoded. An
    /// upload may ask for less (`"max_cost_usd"`, `vodpipe-max-cost-usd`), never more.
    #[arg(long, value_parser = parse_budget)]
    pub max_cost_usd: Option<f64>,
    /// Publish only this range of the source, frame-exact: `START-END` (or `START-`, to
    /// the end), each time as seconds or HH:MM:SS.mmm from its first frame. Audio and
    /// subtitles are cut to it, and nothing outside it is encoded. Beats an upload's own.
    #[arg(long, value_parser = parse_clip)]
    pub clip: Option<vodpipe_media::clip::Clip>,
    /// Draw a PNG over every rung: `FILE.png[,position=top-right][,width=0.15]
    /// [,margin=0.02][,opacity=1][,between=START-END]` (width and margin as shares of the
    /// picture's width, times on the published timeline). Beats an upload's own.
    #[arg(long)]
    pub overlay: Option<String>,
}

/// The pipeline configuration from the media options.
pub fn config(scratch: &Path, m: &MediaOpts) -> Result<Config> {
    let mut c = Config::new(scratch);
    c.ffmpeg = m.ffmpeg.clone();
    c.ffprobe = m.ffprobe.clone();
    if !(1.0..=20.0).contains(&m.segment_seconds) {
        bail!("--segment-seconds must be between 1 and 20");
    }
    if m.chunk_seconds < m.segment_seconds {
        bail!("--chunk-seconds must be at least --segment-seconds");
    }
    c.plan = PlanOptions {
        segment_secs: m.segment_seconds,
        chunk_secs: m.chunk_seconds,
        clip: None,
    };
    if let Some(p) = &m.ladder {
        c.ladder = if p.as_os_str() == "auto" && !p.exists() {
            LadderConfig {
                auto: true,
                ..LadderConfig::default()
            }
        } else {
            LadderConfig::from_file(p)?
        };
        c.settings.command_ladder = true;
    }
    if let Some(CodecList(codecs)) = &m.codecs {
        c.ladder.codecs = codecs.clone();
        c.settings.command_codecs = Some(codecs.clone());
    }
    c.settings.max_job_cost_usd = m.max_cost_usd;
    c.plan.clip = m.clip;
    c.settings.command_clip = m.clip;
    if let Some(spec) = &m.overlay {
        let o = vodpipe_media::overlay::Overlay::parse_spec(spec)
            .map_err(|e| anyhow!("--overlay: {e}"))?;
        let png =
            std::fs::read(&o.image).map_err(|e| anyhow!("--overlay: reading {}: {e}", o.image))?;
        let file = o.image.clone();
        let o = o
            .with_png(png)
            .map_err(|e| anyhow!("--overlay {file}: {e}"))?;
        c.ladder.overlay = Some(o.clone());
        c.settings.command_overlay = Some(o);
    }
    if let Some(t) = m.tune {
        c.ladder.tune = Some(t);
        c.settings.command_tune = Some(t);
    }
    if let Some(mode) = m.hdr {
        c.ladder.hdr = mode;
        c.settings.command_hdr = Some(mode);
    }
    if let Some(path) = &m.drm_keys {
        c.keys.file = Some(Arc::new(
            KeyFile::read(path).map_err(|e| anyhow!("--drm-keys {e}"))?,
        ));
    }
    match m.drm {
        Some(scheme) => {
            let drm = DrmConfig {
                scheme,
                systems: m.drm_systems.clone(),
                speke_url: m.drm_speke.clone(),
            };
            drm.validate().map_err(|e| anyhow!("--drm: {e}"))?;
            if drm.speke_url.is_none() && m.drm_keys.is_none() {
                bail!("--drm needs a key source: --drm-keys FILE or --drm-speke URL");
            }
            c.ladder.drm = Some(drm.clone());
            c.ladder.validate().map_err(|e| anyhow!("{e}"))?;
            c.settings.command_drm = Some(drm);
        }
        None if m.drm_speke.is_some() || !m.drm_systems.is_empty() => {
            bail!("--drm-speke and --drm-systems go with --drm cbcs|cenc");
        }
        None => {}
    }
    Ok(c)
}

/// `--clip`: START-END.
fn parse_clip(s: &str) -> std::result::Result<vodpipe_media::clip::Clip, String> {
    vodpipe_media::clip::Clip::parse(s)
}

/// `--max-cost-usd`: a positive number of dollars.
fn parse_budget(s: &str) -> std::result::Result<f64, String> {
    s.trim()
        .trim_start_matches('$')
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n > 0.0)
        .ok_or_else(|| format!("{s:?} is not a budget; use a positive number of US dollars"))
}

/// `--hdr`: keep or sdr-only.
fn parse_hdr(s: &str) -> std::result::Result<HdrMode, String> {
    HdrMode::parse(s).ok_or_else(|| format!("{s:?} is not an HDR choice; use keep or sdr-only"))
}

/// `--tune`: a content tuning's name.
fn parse_tune(s: &str) -> std::result::Result<Tune, String> {
    Tune::parse(s).ok_or_else(|| format!("{s:?} is not a tuning; use animation or grain"))
}

/// `--drm`: a scheme name.
fn parse_scheme(s: &str) -> std::result::Result<Scheme, String> {
    Scheme::parse(s).ok_or_else(|| format!("{s:?} is not a scheme; use cbcs or cenc"))
}

/// `--drm-systems`: one system name.
fn parse_system(s: &str) -> std::result::Result<System, String> {
    System::parse(s).ok_or_else(|| {
        format!("{s:?} is not a DRM system; use clearkey, widevine, playready or fairplay")
    })
}

/// The codecs `--codecs` names (one value, so clap does not split it into many).
#[derive(Clone, Debug)]
pub struct CodecList(Vec<VideoCodec>);

/// `--codecs`: a comma-separated list of codec names.
fn parse_codecs(s: &str) -> std::result::Result<CodecList, String> {
    VideoCodec::parse_list(s).map(CodecList)
}
