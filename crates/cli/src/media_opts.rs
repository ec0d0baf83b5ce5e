//! The options that shape new jobs (segment and chunk lengths, the ladder, codecs,
//! profiles, the ffmpeg binaries), shared by every command that plans: `run`, `plan`,
//! `ingest` and `watch` accept and check them the same way.

use anyhow::{bail, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use vodpipe_control::pipeline::Config;
use vodpipe_media::ladder::{LadderConfig, VideoCodec};
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
    Ok(c)
}

/// The codecs `--codecs` names (one value, so clap does not split it into many).
#[derive(Clone, Debug)]
pub struct CodecList(Vec<VideoCodec>);

/// `--codecs`: a comma-separated list of codec names.
fn parse_codecs(s: &str) -> std::result::Result<CodecList, String> {
    VideoCodec::parse_list(s).map(CodecList)
}
