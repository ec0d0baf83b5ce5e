//! Per-upload job settings: the tier, ladder, segment duration, codecs and asset name an
//! upload gets, chosen by whoever uploads it.
//!
//! An upload is the product's main interface, so its settings travel with it. Each setting
//! is resolved on its own; the first place that names it wins:
//!
//! 1. an explicit choice on the command line (`vodpipe ingest --tier`, `--ladder`);
//! 2. the object's metadata, set in the same PUT (`x-amz-meta-vodpipe-tier`, `-ladder`,
//!    `-codecs`, `-segment-seconds`, `-asset`);
//! 3. a settings file beside the source (`<key>.vodpipe.json`: the ladder file's fields
//!    plus `tier`, `ladder`, `codecs`, `segment_seconds`, `asset`), for tools that cannot
//!    set metadata;
//! 4. the deployment's key-prefix map (`premium/` → premium, `archive/` → bulk);
//! 5. the deployment's default.
//!
//! Named ladders ("profiles": `mobile`, `archive`, …) are JSON ladder files the deployment
//! keeps under [`PROFILES_PREFIX`], so an operator adds one without a redeploy. A job keeps
//! every value with where it came from, so anyone can see why a job went where it went. A
//! value that does not parse or is out of range is a verdict on the upload: the job fails
//! with the reason and is never retried.

use crate::domain::Tier;
pub use crate::domain::{JobSettings, Origin, Setting};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use vodpipe_media::cenc::{DrmConfig, Scheme, System};
use vodpipe_media::error::{Error, Result};
use vodpipe_media::ladder::{HdrMode, LadderConfig, Tune, VideoCodec};

/// The largest settings file read, in bytes: settings are a few lines, and an upload must
/// not make ingest read an arbitrarily large object into memory.
pub const MAX_SETTINGS_FILE_BYTES: usize = 64 * 1024;

/// A settings file's name is its source's key plus this.
pub const SETTINGS_SUFFIX: &str = ".vodpipe.json";
/// Metadata keys vodpipe reads start with this (S3 lower-cases user metadata names).
pub const METADATA_PREFIX: &str = "vodpipe-";
/// Where the deployment keeps its named ladders, `<name>.json`, beside the uploads (in the
/// ingest bucket, or the watched directory).
pub const PROFILES_PREFIX: &str = "_vodpipe/profiles/";
/// Where the deployment keeps the images uploads may overlay, `<name>.png`, beside its
/// profiles.
pub const OVERLAYS_PREFIX: &str = "_vodpipe/overlays/";
/// Shortest and longest segment duration an upload may ask for, in seconds.
pub const SEGMENT_SECONDS: (f64, f64) = (1.0, 30.0);
/// The ladder name that means the deployment's own default.
pub const DEFAULT_PROFILE: &str = "default";

/// The deployment's side of the resolution.
#[derive(Debug, Clone)]
pub struct SettingsPolicy {
    /// The tier when nothing else names one.
    pub default_tier: Tier,
    /// Key prefixes and the tier uploads under them get, longest match first.
    pub prefix_tiers: Vec<(String, Tier)>,
    /// How long an upload without a settings file waits for one to arrive (a tool that
    /// uploads the file after the video); zero does not wait.
    pub settings_wait: Duration,
    /// A tier given on the command line: beats everything else.
    pub command_tier: Option<Tier>,
    /// A ladder file given on the command line: beats everything else.
    pub command_ladder: bool,
    /// Codecs given on the command line (`--codecs`): beat everything else.
    pub command_codecs: Option<Vec<VideoCodec>>,
    /// Content protection given on the command line (`--drm`): beats everything else.
    pub command_drm: Option<DrmConfig>,
    /// What HDR sources get, given on the command line (`--hdr`): beats everything else.
    pub command_hdr: Option<HdrMode>,
    /// What the content is, for the encoders' tuning, given on the command line
    /// (`--tune`): beats everything else, a named profile's included, so a folder of
    /// cartoons watched with `--tune animation` is tuned whatever profile it names.
    pub command_tune: Option<Tune>,
    /// The deployment's key server: an upload that asks for protection without naming
    /// one gets its keys from here (on AWS, where workers have no key file).
    pub default_speke_url: Option<String>,
    /// A clip given on the command line (`--clip`): beats everything else.
    pub command_clip: Option<vodpipe_media::clip::Clip>,
    /// An overlay given on the command line (`--overlay`, its image read): beats
    /// everything else.
    pub command_overlay: Option<vodpipe_media::overlay::Overlay>,
    /// The most any job may cost, in USD, by its plan's estimate (`--max-cost-usd`, the
    /// template's `MaxJobCostUsd`): an upload may ask for less, never for more.
    pub max_job_cost_usd: Option<f64>,
}

impl Default for SettingsPolicy {
    fn default() -> Self {
        SettingsPolicy {
            default_tier: Tier::Standard,
            prefix_tiers: Vec::new(),
            settings_wait: Duration::ZERO,
            command_tier: None,
            command_ladder: false,
            command_codecs: None,
            command_drm: None,
            command_hdr: None,
            command_tune: None,
            default_speke_url: None,
            command_clip: None,
            command_overlay: None,
            max_job_cost_usd: None,
        }
    }
}

impl SettingsPolicy {
    /// Parses a prefix map, `premium/=premium,archive/=bulk` (empty: none).
    pub fn parse_prefix_tiers(spec: &str) -> std::result::Result<Vec<(String, Tier)>, String> {
        let mut out = Vec::new();
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (prefix, tier) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not PREFIX=TIER"))?;
            let tier = Tier::parse(tier)
                .ok_or_else(|| format!("{tier:?} is not a tier (premium, standard, bulk)"))?;
            if prefix.trim().is_empty() {
                return Err(format!("{pair:?} has an empty prefix"));
            }
            out.push((prefix.trim().to_string(), tier));
        }
        out.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(out)
    }

    /// The tier the prefix map gives `key`, if any.
    fn prefix_tier(&self, key: &str) -> Option<Tier> {
        self.prefix_tiers
            .iter()
            .find(|(p, _)| key.starts_with(p.as_str()))
            .map(|(_, t)| *t)
    }
}

/// What an upload brings with it, as the backend read it.
#[derive(Debug, Clone, Default)]
pub struct UploadSettings {
    /// The source's key (relative path for a watched directory).
    pub key: String,
    /// User metadata, names lower-cased without `x-amz-meta-`.
    pub metadata: BTreeMap<String, String>,
    /// The settings file's bytes, when there is one.
    pub settings_file: Option<Vec<u8>>,
}

/// The settings file: the ladder file's fields, plus what metadata can say.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    tier: Option<String>,
    ladder: Option<String>,
    codecs: Option<Vec<String>>,
    segment_seconds: Option<f64>,
    asset: Option<String>,
    rungs: Option<Vec<vodpipe_media::ladder::RungSpec>>,
    preset: Option<String>,
    tune: Option<String>,
    crf: Option<u32>,
    audio_kbps: Option<u32>,
    surround: Option<bool>,
    loudness_lufs: Option<f64>,
    thumbnails: Option<bool>,
    auto: Option<bool>,
    drm: Option<DrmConfig>,
    hdr: Option<String>,
    max_cost_usd: Option<f64>,
    clip: Option<String>,
    overlay: Option<vodpipe_media::overlay::Overlay>,
}

/// Is `key` one of vodpipe's own files (a settings file, anything under `_vodpipe/`), not
/// an upload?
pub fn is_settings_key(key: &str) -> bool {
    key.ends_with(SETTINGS_SUFFIX) || key.starts_with("_vodpipe/")
}

/// The settings file that goes with a source key.
pub fn settings_key(source_key: &str) -> String {
    format!("{source_key}{SETTINGS_SUFFIX}")
}

/// The key an overlay image is stored under.
pub fn overlay_key(name: &str) -> String {
    format!("{OVERLAYS_PREFIX}{name}.png")
}

/// The key a profile is stored under.
pub fn profile_key(name: &str) -> String {
    format!("{PROFILES_PREFIX}{name}.json")
}

fn reject(msg: String) -> Error {
    Error::Rejected(msg)
}

fn parse_tier(value: &str, what: &str) -> Result<Tier> {
    Tier::parse(value).ok_or_else(|| {
        reject(format!(
            "{what} is {value:?}; use premium, standard or bulk"
        ))
    })
}

fn parse_segment(value: f64, what: &str) -> Result<f64> {
    let (lo, hi) = SEGMENT_SECONDS;
    if value.is_finite() && (lo..=hi).contains(&value) {
        Ok(value)
    } else {
        Err(reject(format!(
            "{what} is {value}; segments last {lo} to {hi} seconds"
        )))
    }
}

/// The names of `codecs`, as settings record them.
fn codec_names(codecs: &[VideoCodec]) -> Vec<String> {
    codecs.iter().map(|c| c.name().to_string()).collect()
}

fn parse_codecs(values: &[String], what: &str) -> Result<Vec<String>> {
    let mut codecs: Vec<String> = Vec::new();
    for c in values
        .iter()
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
    {
        if !codecs.contains(&c) {
            codecs.push(c);
        }
    }
    if codecs.is_empty() {
        return Err(reject(format!("{what} names no codec")));
    }
    if let Some(bad) = codecs.iter().find(|c| VideoCodec::parse(c).is_none()) {
        return Err(reject(format!(
            "{what} asks for {bad:?}; this deployment encodes {}",
            VideoCodec::ALL.map(VideoCodec::name).join(", ")
        )));
    }
    Ok(codecs)
}

fn parse_clip(value: &str, what: &str) -> Result<vodpipe_media::clip::Clip> {
    vodpipe_media::clip::Clip::parse(value).map_err(|e| reject(format!("{what}: {e}")))
}

fn parse_budget(value: f64, what: &str) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(reject(format!(
            "{what} is {value}; a budget is a positive number of US dollars"
        )))
    }
}

fn parse_tune(value: &str, what: &str) -> Result<Tune> {
    Tune::parse(value).ok_or_else(|| reject(format!("{what} is {value:?}; use animation or grain")))
}

fn parse_hdr(value: &str, what: &str) -> Result<HdrMode> {
    HdrMode::parse(value)
        .ok_or_else(|| reject(format!("{what} is {value:?}; use keep or sdr-only")))
}

fn parse_asset(value: &str, what: &str) -> Result<String> {
    let clean = crate::job::asset_name(&format!("{value}.x"));
    let ok = !value.trim().is_empty()
        && value.len() <= 200
        && value
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
        && clean == value;
    if ok {
        Ok(clean)
    } else {
        Err(reject(format!(
            "{what} is {value:?}; an asset name is letters, digits, '.', '_', '-' and '/' between non-empty parts"
        )))
    }
}

fn parse_profile_name(value: &str, what: &str) -> Result<String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(value.to_string())
    } else {
        Err(reject(format!(
            "{what} is {value:?}; a ladder name is letters, digits, '-' and '_'"
        )))
    }
}

/// Reads content protection from metadata: `vodpipe-drm` is `cbcs`, `cenc` or `none` (off,
/// whatever the ladder says); `vodpipe-drm-systems` a comma list; `vodpipe-drm-speke-url`
/// the key server.
fn parse_drm_metadata(
    scheme: &str,
    systems: Option<String>,
    speke_url: Option<String>,
) -> Result<Option<DrmConfig>> {
    if scheme.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let scheme = Scheme::parse(&scheme.to_ascii_lowercase()).ok_or_else(|| {
        reject(format!(
            "x-amz-meta-vodpipe-drm is {scheme:?}; use cbcs, cenc or none"
        ))
    })?;
    let systems = match systems {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                System::parse(&s.to_ascii_lowercase()).ok_or_else(|| {
                    reject(format!(
                        "x-amz-meta-vodpipe-drm-systems names {s:?}; use clearkey, widevine, playready or fairplay"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?,
    };
    Ok(Some(DrmConfig {
        scheme,
        systems,
        speke_url,
    }))
}

/// Resolves an upload's settings under `policy`. `base` is the deployment's default ladder
/// (or the command line's); `profile` reads a stored profile by name (`Ok(None)`: there
/// is none). Returns the settings to record, the ladder to plan with among them.
pub fn resolve(
    upload: &UploadSettings,
    policy: &SettingsPolicy,
    base: &LadderConfig,
    base_segment_seconds: f64,
    profile: &dyn Fn(&str) -> Result<Option<Vec<u8>>>,
) -> Result<JobSettings> {
    let meta = |name: &str| {
        upload
            .metadata
            .get(&format!("{METADATA_PREFIX}{name}"))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let file: SettingsFile = match &upload.settings_file {
        None => SettingsFile::default(),
        Some(bytes) if bytes.len() > MAX_SETTINGS_FILE_BYTES => {
            return Err(reject(format!(
                "settings file {} is larger than {} KiB",
                settings_key(&upload.key),
                MAX_SETTINGS_FILE_BYTES / 1024
            )))
        }
        Some(bytes) => serde_json::from_slice(bytes).map_err(|e| {
            reject(format!(
                "settings file {} is not valid: {e}",
                settings_key(&upload.key)
            ))
        })?,
    };
    let file_name = settings_key(&upload.key);

    let tier = if let Some(t) = policy.command_tier {
        Setting::new(t, Origin::Command)
    } else if let Some(v) = meta("tier") {
        Setting::new(parse_tier(&v, "x-amz-meta-vodpipe-tier")?, Origin::Metadata)
    } else if let Some(v) = &file.tier {
        Setting::new(
            parse_tier(v, &format!("\"tier\" in {file_name}"))?,
            Origin::SettingsFile,
        )
    } else if let Some(t) = policy.prefix_tier(&upload.key) {
        Setting::new(t, Origin::Prefix)
    } else {
        Setting::new(policy.default_tier, Origin::Default)
    };

    let inline = file.rungs.is_some()
        || file.preset.is_some()
        || file.crf.is_some()
        || file.audio_kbps.is_some()
        || file.surround.is_some()
        || file.loudness_lufs.is_some()
        || file.thumbnails.is_some()
        || file.auto.is_some();
    if inline && file.ladder.is_some() {
        return Err(reject(format!(
            "{file_name} names a ladder and also gives rungs or encoder settings; use one or the other"
        )));
    }
    let load_profile = |name: &str, what: &str| -> Result<LadderConfig> {
        let name = parse_profile_name(name, what)?;
        match profile(&name)? {
            Some(bytes) => {
                let cfg: LadderConfig = serde_json::from_slice(&bytes).map_err(|e| {
                    reject(format!("profile {} is not valid: {e}", profile_key(&name)))
                })?;
                cfg.validate()
                    .map_err(|e| reject(format!("profile {}: {e}", profile_key(&name))))?;
                Ok(cfg)
            }
            None if name == DEFAULT_PROFILE => Ok(base.clone()),
            None => Err(reject(format!(
                "{what} is {name:?}, and there is no such profile ({} does not exist)",
                profile_key(&name)
            ))),
        }
    };
    let (ladder, ladder_cfg) = if policy.command_ladder {
        (
            Setting::new("command-line".to_string(), Origin::Command),
            base.clone(),
        )
    } else if let Some(name) = meta("ladder") {
        let cfg = load_profile(&name, "x-amz-meta-vodpipe-ladder")?;
        (Setting::new(name, Origin::Metadata), cfg)
    } else if let Some(name) = &file.ladder {
        let cfg = load_profile(name, &format!("\"ladder\" in {file_name}"))?;
        (Setting::new(name.clone(), Origin::SettingsFile), cfg)
    } else if inline {
        // What the file leaves out is the deployment's (or the command line's).
        let cfg = LadderConfig {
            rungs: file.rungs.clone().unwrap_or_else(|| base.rungs.clone()),
            preset: file.preset.clone().unwrap_or_else(|| base.preset.clone()),
            crf: file.crf.unwrap_or(base.crf),
            audio_kbps: file.audio_kbps.unwrap_or(base.audio_kbps),
            surround: file.surround.unwrap_or(base.surround),
            loudness_lufs: file.loudness_lufs.or(base.loudness_lufs),
            thumbnails: file.thumbnails.unwrap_or(base.thumbnails),
            auto: file.auto.unwrap_or(base.auto),
            ..base.clone()
        };
        cfg.validate()
            .map_err(|e| reject(format!("{file_name}: {e}")))?;
        (
            Setting::new("inline".to_string(), Origin::SettingsFile),
            cfg,
        )
    } else {
        let cfg = load_profile(DEFAULT_PROFILE, "the default ladder")?;
        (
            Setting::new(DEFAULT_PROFILE.to_string(), Origin::Default),
            cfg,
        )
    };

    let segment_seconds = if let Some(v) = meta("segment-seconds") {
        let n: f64 = v.parse().map_err(|_| {
            reject(format!(
                "x-amz-meta-vodpipe-segment-seconds is {v:?}; use a number of seconds, e.g. 4"
            ))
        })?;
        Setting::new(
            parse_segment(n, "x-amz-meta-vodpipe-segment-seconds")?,
            Origin::Metadata,
        )
    } else if let Some(n) = file.segment_seconds {
        Setting::new(
            parse_segment(n, &format!("\"segment_seconds\" in {file_name}"))?,
            Origin::SettingsFile,
        )
    } else {
        Setting::new(base_segment_seconds, Origin::Default)
    };

    let codecs = if let Some(list) = &policy.command_codecs {
        Setting::new(codec_names(list), Origin::Command)
    } else if let Some(v) = meta("codecs") {
        let list: Vec<String> = v.split(',').map(str::to_string).collect();
        Setting::new(
            parse_codecs(&list, "x-amz-meta-vodpipe-codecs")?,
            Origin::Metadata,
        )
    } else if let Some(list) = &file.codecs {
        Setting::new(
            parse_codecs(list, &format!("\"codecs\" in {file_name}"))?,
            Origin::SettingsFile,
        )
    } else {
        // The ladder's own choice, set where the ladder was.
        Setting::new(codec_names(&ladder_cfg.codecs), ladder.from)
    };
    let mut ladder_cfg = ladder_cfg;
    ladder_cfg.codecs = codecs
        .value
        .iter()
        .filter_map(|c| VideoCodec::parse(c))
        .collect();

    let drm = if let Some(d) = &policy.command_drm {
        Some(Setting::new(d.clone(), Origin::Command))
    } else if let Some(v) = meta("drm") {
        parse_drm_metadata(&v, meta("drm-systems"), meta("drm-speke-url"))?
            .map(|d| Setting::new(d, Origin::Metadata))
    } else if let Some(d) = &file.drm {
        Some(Setting::new(d.clone(), Origin::SettingsFile))
    } else {
        ladder_cfg.drm.clone().map(|d| Setting::new(d, ladder.from))
    };
    let drm = drm.map(|mut d| {
        if d.value.speke_url.is_none() {
            d.value.speke_url = policy.default_speke_url.clone();
        }
        d
    });
    ladder_cfg.drm = drm.as_ref().map(|d| d.value.clone());
    if let Some(d) = &drm {
        let what = match d.from {
            Origin::Command => "--drm".to_string(),
            Origin::Metadata => "x-amz-meta-vodpipe-drm".to_string(),
            Origin::SettingsFile => format!("\"drm\" in {file_name}"),
            Origin::Prefix | Origin::Default => format!("the ladder {:?}", ladder.value),
        };
        d.value
            .validate()
            .map_err(|e| reject(format!("{what}: {e}")))?;
        if ladder_cfg.codecs.contains(&VideoCodec::Av1) {
            return Err(reject(format!(
                "{what}: av1 rungs cannot be protected yet (their tile headers are not walked); protect h264 and hevc rungs"
            )));
        }
    }

    // What the content is belongs to the upload, not to a ladder: it is resolved on its own,
    // like HDR, and beside any profile; a ladder's own `tune` is the last word.
    if let Some(t) = policy.command_tune {
        ladder_cfg.tune = Some(t);
    } else if let Some(v) = meta("tune") {
        ladder_cfg.tune = Some(parse_tune(&v, "x-amz-meta-vodpipe-tune")?);
    } else if let Some(v) = &file.tune {
        ladder_cfg.tune = Some(parse_tune(v, &format!("\"tune\" in {file_name}"))?);
    }

    if let Some(mode) = policy.command_hdr {
        ladder_cfg.hdr = mode;
    } else if let Some(v) = meta("hdr") {
        ladder_cfg.hdr = parse_hdr(&v, "x-amz-meta-vodpipe-hdr")?;
    } else if let Some(v) = &file.hdr {
        ladder_cfg.hdr = parse_hdr(v, &format!("\"hdr\" in {file_name}"))?;
    }

    let upload_budget = if let Some(v) = meta("max-cost-usd") {
        let what = "x-amz-meta-vodpipe-max-cost-usd";
        let n: f64 = v.trim().trim_start_matches('$').parse().map_err(|_| {
            reject(format!(
                "{what} is {v:?}; use a number of US dollars, e.g. 2.50"
            ))
        })?;
        Some(Setting::new(parse_budget(n, what)?, Origin::Metadata))
    } else if let Some(n) = file.max_cost_usd {
        Some(Setting::new(
            parse_budget(n, &format!("\"max_cost_usd\" in {file_name}"))?,
            Origin::SettingsFile,
        ))
    } else {
        None
    };
    let max_cost_usd = match (upload_budget, policy.max_job_cost_usd) {
        (Some(u), Some(d)) if d < u.value => Some(Setting::new(d, Origin::Default)),
        (Some(u), _) => Some(u),
        (None, d) => d.map(|d| Setting::new(d, Origin::Default)),
    };

    let clip = if let Some(c) = policy.command_clip {
        Some(Setting::new(c, Origin::Command))
    } else if let Some(v) = meta("clip") {
        Some(Setting::new(
            parse_clip(&v, "x-amz-meta-vodpipe-clip")?,
            Origin::Metadata,
        ))
    } else if let Some(v) = &file.clip {
        Some(Setting::new(
            parse_clip(v, &format!("\"clip\" in {file_name}"))?,
            Origin::SettingsFile,
        ))
    } else {
        None
    };

    let overlay = if let Some(o) = &policy.command_overlay {
        Some(Setting::new(o.clone(), Origin::Command))
    } else if let Some(name) = meta("overlay") {
        let what = "x-amz-meta-vodpipe-overlay";
        let mut o = vodpipe_media::overlay::Overlay::new(&parse_profile_name(&name, what)?);
        if let Some(p) = meta("overlay-position") {
            o.position = vodpipe_media::overlay::Corner::parse(&p).ok_or_else(|| {
                reject(format!(
                    "x-amz-meta-vodpipe-overlay-position is {p:?}; use top-left, top-right, bottom-left, bottom-right or center"
                ))
            })?;
        }
        Some(Setting::new(o, Origin::Metadata))
    } else if let Some(o) = &file.overlay {
        let what = format!("\"overlay\" in {file_name}");
        parse_profile_name(&o.image, &what)?;
        o.validate().map_err(|e| reject(format!("{what}: {e}")))?;
        // The image is the deployment's, by name: an upload brings none of its own.
        let mut o = o.clone();
        o.png.clear();
        o.sha256 = None;
        Some(Setting::new(o, Origin::SettingsFile))
    } else {
        ladder_cfg
            .overlay
            .clone()
            .map(|o| Setting::new(o, ladder.from))
    };
    ladder_cfg.overlay = overlay.as_ref().map(|o| o.value.clone());
    let overlay = overlay.map(|o| Setting::new(o.value.image, o.from));

    let asset = if let Some(v) = meta("asset") {
        Setting::new(
            parse_asset(&v, "x-amz-meta-vodpipe-asset")?,
            Origin::Metadata,
        )
    } else if let Some(v) = &file.asset {
        Setting::new(
            parse_asset(v, &format!("\"asset\" in {file_name}"))?,
            Origin::SettingsFile,
        )
    } else {
        Setting::new(crate::job::asset_name(&upload.key), Origin::Default)
    };

    Ok(JobSettings {
        tier,
        ladder,
        segment_seconds,
        codecs,
        asset,
        ladder_config: ladder_cfg,
        refusal: None,
        source_version: None,
        source_sequencer: None,
        drm,
        max_cost_usd,
        clip,
        overlay,
        repackage: None,
    })
}

/// The settings a job gets when its upload's own could not be used (they are invalid, or
/// the source is gone): the deployment's choices, so the job is filed where the upload
/// would have gone by default, with `refusal` saying why it fails.
pub fn fallback(
    key: &str,
    policy: &SettingsPolicy,
    segment_seconds: f64,
    ladder: &LadderConfig,
    refusal: Option<String>,
) -> JobSettings {
    let tier = match (policy.command_tier, policy.prefix_tier(key)) {
        (Some(t), _) => Setting::new(t, Origin::Command),
        (None, Some(t)) => Setting::new(t, Origin::Prefix),
        (None, None) => Setting::new(policy.default_tier, Origin::Default),
    };
    JobSettings {
        tier,
        ladder: Setting::new(DEFAULT_PROFILE.to_string(), Origin::Default),
        segment_seconds: Setting::new(segment_seconds, Origin::Default),
        codecs: Setting::new(codec_names(&ladder.codecs), Origin::Default),
        asset: Setting::new(crate::job::asset_name(key), Origin::Default),
        ladder_config: ladder.clone(),
        refusal,
        source_version: None,
        source_sequencer: None,
        drm: None,
        max_cost_usd: policy
            .max_job_cost_usd
            .map(|d| Setting::new(d, Origin::Default)),
        clip: None,
        overlay: None,
        repackage: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(key: &str, meta: &[(&str, &str)], file: Option<&str>) -> UploadSettings {
        UploadSettings {
            key: key.into(),
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            settings_file: file.map(|f| f.as_bytes().to_vec()),
        }
    }

    fn policy() -> SettingsPolicy {
        SettingsPolicy {
            prefix_tiers: SettingsPolicy::parse_prefix_tiers("premium/=premium, archive/=bulk")
                .unwrap(),
            ..SettingsPolicy::default()
        }
    }

    fn mobile(name: &str) -> Result<Option<Vec<u8>>> {
        Ok((name == "mobile").then(|| {
            br#"{"rungs":[{"name":"360p","short_side":360,"max_kbps":700}],"crf":24}"#.to_vec()
        }))
    }

    fn resolved(u: &UploadSettings) -> Result<(JobSettings, LadderConfig)> {
        resolve(u, &policy(), &LadderConfig::default(), 4.0, &mobile).map(|s| {
            let l = s.ladder_config.clone();
            (s, l)
        })
    }

    #[test]
    fn codecs_come_from_the_command_then_the_upload_then_the_ladder() {
        let av1 = |name: &str| -> Result<Option<Vec<u8>>> {
            Ok((name == "modern").then(|| br#"{"codecs":["h264","av1"]}"#.to_vec()))
        };
        let run = |u: &UploadSettings, p: &SettingsPolicy| {
            resolve(u, p, &LadderConfig::default(), 4.0, &av1).unwrap()
        };
        // The ladder's own codecs, set where the ladder was.
        let s = run(
            &upload("a.mov", &[("vodpipe-ladder", "modern")], None),
            &policy(),
        );
        assert_eq!(s.codecs.value, ["h264", "av1"]);
        assert_eq!(s.codecs.from, Origin::Metadata);
        assert_eq!(s.ladder_config.codecs, [VideoCodec::H264, VideoCodec::Av1]);
        // The upload's codecs beat the ladder's.
        let s = run(
            &upload(
                "a.mov",
                &[],
                Some(r#"{"ladder":"modern","codecs":["hevc","HEVC"]}"#),
            ),
            &policy(),
        );
        assert_eq!(s.codecs.value, ["hevc"]);
        assert_eq!(s.codecs.from, Origin::SettingsFile);
        assert_eq!(s.ladder_config.codecs, [VideoCodec::Hevc]);
        // The command line beats the upload.
        let cmd = SettingsPolicy {
            command_codecs: Some(vec![VideoCodec::H264]),
            ..policy()
        };
        let s = run(&upload("a.mov", &[("vodpipe-codecs", "av1")], None), &cmd);
        assert_eq!(s.codecs.value, ["h264"]);
        assert_eq!(s.codecs.from, Origin::Command);
        assert_eq!(s.ladder_config.codecs, [VideoCodec::H264]);
        // Nobody names any: the built-in ladder's H.264.
        let s = run(&upload("a.mov", &[], None), &policy());
        assert_eq!(
            (s.codecs.value.clone(), s.codecs.from),
            (vec!["h264".to_string()], Origin::Default)
        );
    }

    #[test]
    fn metadata_beats_the_settings_file_which_beats_the_prefix_map() {
        let file = r#"{"tier": "bulk", "segment_seconds": 6}"#;
        let (s, _) = resolved(&upload(
            "premium/a.mov",
            &[("vodpipe-tier", "standard")],
            Some(file),
        ))
        .unwrap();
        assert_eq!(s.tier, Setting::new(Tier::Standard, Origin::Metadata));
        assert_eq!(s.segment_seconds, Setting::new(6.0, Origin::SettingsFile));
        let (s, _) = resolved(&upload("premium/a.mov", &[], Some(file))).unwrap();
        assert_eq!(s.tier, Setting::new(Tier::Bulk, Origin::SettingsFile));
        let (s, _) = resolved(&upload("premium/a.mov", &[], None)).unwrap();
        assert_eq!(s.tier, Setting::new(Tier::Premium, Origin::Prefix));
        let (s, _) = resolved(&upload("other/a.mov", &[], None)).unwrap();
        assert_eq!(s.tier, Setting::new(Tier::Standard, Origin::Default));
        assert_eq!(
            s.asset,
            Setting::new("other/a".to_string(), Origin::Default)
        );
    }

    #[test]
    fn what_the_content_is_comes_from_the_command_metadata_file_or_ladder_beside_any_profile() {
        let resolve_with = |p: &SettingsPolicy, u: &UploadSettings| {
            resolve(u, p, &LadderConfig::default(), 4.0, &mobile).map(|s| s.ladder_config)
        };
        // Nothing said: untuned, the ladder otherwise the deployment's.
        let l = resolve_with(&policy(), &upload("a.mov", &[], None)).unwrap();
        assert_eq!(l.tune, None);
        let l = resolve_with(
            &policy(),
            &upload("a.mov", &[], Some(r#"{"tune": "animation"}"#)),
        )
        .unwrap();
        assert_eq!(l.tune, Some(Tune::Animation));
        assert_eq!(l.crf, LadderConfig::default().crf);
        // Beside a named profile, from the file or from metadata: the profile's rungs, tuned.
        let l = resolve_with(
            &policy(),
            &upload(
                "a.mov",
                &[],
                Some(r#"{"ladder": "mobile", "tune": "grain"}"#),
            ),
        )
        .unwrap();
        assert_eq!((l.tune, l.crf), (Some(Tune::Grain), 24));
        let u = upload(
            "a.mov",
            &[("vodpipe-ladder", "mobile"), ("vodpipe-tune", "animation")],
            Some(r#"{"tune": "grain"}"#),
        );
        let l = resolve_with(&policy(), &u).unwrap();
        assert_eq!((l.tune, l.crf), (Some(Tune::Animation), 24));
        // The command line beats both, whatever profile the upload names.
        let p = SettingsPolicy {
            command_tune: Some(Tune::Grain),
            ..policy()
        };
        assert_eq!(resolve_with(&p, &u).unwrap().tune, Some(Tune::Grain));
        // A ladder may carry its own.
        let cartoons = LadderConfig {
            tune: Some(Tune::Animation),
            ..LadderConfig::default()
        };
        let s = resolve(
            &upload("a.mov", &[], None),
            &policy(),
            &cartoons,
            4.0,
            &mobile,
        )
        .unwrap();
        assert_eq!(s.ladder_config.tune, Some(Tune::Animation));
        // A tuning neither encoder has is refused, saying where it was asked for.
        let e = resolve_with(
            &policy(),
            &upload("a.mov", &[("vodpipe-tune", "film")], None),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("x-amz-meta-vodpipe-tune is \"film\"; use animation or grain"),
            "{e}"
        );
        let e = resolve_with(
            &policy(),
            &upload("a.mov", &[], Some(r#"{"tune": "film"}"#)),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("\"tune\" in") && e.contains("use animation or grain"),
            "{e}"
        );
    }

    #[test]
    fn a_per_title_ladder_is_asked_for_in_a_settings_file_or_a_profile() {
        let u = upload("a.mov", &[], Some(r#"{"auto": true, "crf": 22}"#));
        let (_, l) = resolved(&u).unwrap();
        assert!(l.auto && l.crf == 22);
        let (_, l) = resolved(&upload("a.mov", &[], None)).unwrap();
        assert!(!l.auto);
        // A profile asks for it as well (the ladder file's field, named by metadata).
        let auto_profile = |name: &str| -> Result<Option<Vec<u8>>> {
            Ok((name == "per-title").then(|| br#"{"auto": true}"#.to_vec()))
        };
        let s = resolve(
            &upload("a.mov", &[("vodpipe-ladder", "per-title")], None),
            &policy(),
            &LadderConfig::default(),
            4.0,
            &auto_profile,
        )
        .unwrap();
        assert!(s.ladder_config.auto);
    }

    #[test]
    fn the_command_line_beats_everything() {
        let p = SettingsPolicy {
            command_tier: Some(Tier::Bulk),
            ..policy()
        };
        let u = upload("premium/a.mov", &[("vodpipe-tier", "premium")], None);
        let s = resolve(&u, &p, &LadderConfig::default(), 4.0, &mobile).unwrap();
        assert_eq!(s.tier, Setting::new(Tier::Bulk, Origin::Command));
    }

    #[test]
    fn a_named_ladder_comes_from_the_stored_profiles() {
        let (s, cfg) = resolved(&upload("a.mov", &[("vodpipe-ladder", "mobile")], None)).unwrap();
        assert_eq!(
            s.ladder,
            Setting::new("mobile".to_string(), Origin::Metadata)
        );
        assert_eq!(cfg.rungs.len(), 1);
        assert_eq!(cfg.crf, 24);
        // "default" without a stored profile is the deployment's own ladder.
        let (s, cfg) = resolved(&upload("a.mov", &[], None)).unwrap();
        assert_eq!(s.ladder.value, "default");
        assert_eq!(cfg, LadderConfig::default());
    }

    #[test]
    fn inline_rungs_keep_the_deployments_encoder_settings_they_leave_out() {
        let base = LadderConfig {
            preset: "medium".into(),
            crf: 19,
            ..LadderConfig::default()
        };
        let file = r#"{"rungs":[{"name":"480p","short_side":480,"max_kbps":1200}]}"#;
        let s = resolve(
            &upload("a.mov", &[], Some(file)),
            &policy(),
            &base,
            4.0,
            &mobile,
        )
        .unwrap();
        assert_eq!(
            (s.ladder_config.preset.as_str(), s.ladder_config.crf),
            ("medium", 19)
        );
        let big = format!(r#"{{"tier": "bulk", "asset": "{}"}}"#, "a".repeat(70_000));
        let e = resolved(&upload("a.mov", &[], Some(&big))).unwrap_err();
        assert!(e.to_string().contains("larger than 64 KiB"), "{e}");
    }

    #[test]
    fn inline_rungs_in_the_settings_file_make_the_ladder() {
        let file =
            r#"{"rungs":[{"name":"480p","short_side":480,"max_kbps":1200}],"preset":"faster"}"#;
        let (s, cfg) = resolved(&upload("a.mov", &[], Some(file))).unwrap();
        assert_eq!(
            s.ladder,
            Setting::new("inline".to_string(), Origin::SettingsFile)
        );
        assert_eq!(cfg.rungs[0].name, "480p");
        assert_eq!(cfg.preset, "faster");
    }

    #[test]
    fn bad_settings_are_rejected_with_the_reason() {
        // (metadata, settings file, what the reason must say)
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, &'a str);
        let cases: &[Case] = &[
            (
                &[("vodpipe-tier", "gold")],
                None,
                "use premium, standard or bulk",
            ),
            (&[("vodpipe-ladder", "cinema")], None, "no such profile"),
            (&[("vodpipe-ladder", "../etc")], None, "a ladder name is"),
            (
                &[("vodpipe-segment-seconds", "0.2")],
                None,
                "segments last 1 to 30 seconds",
            ),
            (
                &[("vodpipe-segment-seconds", "four")],
                None,
                "use a number of seconds",
            ),
            (
                &[("vodpipe-codecs", "h264,vp9")],
                None,
                "this deployment encodes h264, hevc, av1",
            ),
            (&[("vodpipe-asset", "../up")], None, "an asset name is"),
            (&[], Some("{not json"), "is not valid"),
            (&[], Some(r#"{"teir": "premium"}"#), "unknown field"),
            (
                &[],
                Some(r#"{"ladder": "mobile", "crf": 20}"#),
                "use one or the other",
            ),
            (&[], Some(r#"{"rungs": []}"#), "at least one rung"),
        ];
        for (meta, file, want) in cases {
            let e = resolved(&upload("a.mov", meta, *file)).unwrap_err();
            assert!(matches!(e, Error::Rejected(_)), "{e}");
            assert!(e.to_string().contains(want), "{meta:?} {file:?}: {e}");
        }
    }

    #[test]
    fn prefix_maps_parse_and_prefer_the_longest_prefix() {
        let p = SettingsPolicy {
            prefix_tiers: SettingsPolicy::parse_prefix_tiers("a/=bulk,a/b/=premium").unwrap(),
            ..SettingsPolicy::default()
        };
        assert_eq!(p.prefix_tier("a/b/c.mp4"), Some(Tier::Premium));
        assert_eq!(p.prefix_tier("a/c.mp4"), Some(Tier::Bulk));
        assert!(SettingsPolicy::parse_prefix_tiers("x/=gold").is_err());
        assert!(SettingsPolicy::parse_prefix_tiers("nonsense").is_err());
        assert!(SettingsPolicy::parse_prefix_tiers("").unwrap().is_empty());
    }

    #[test]
    fn vodpipes_own_files_are_not_uploads() {
        assert!(is_settings_key("uploads/a.mov.vodpipe.json"));
        assert!(is_settings_key("_vodpipe/profiles/mobile.json"));
        assert!(!is_settings_key("uploads/a.mov"));
        assert_eq!(settings_key("a/b.mov"), "a/b.mov.vodpipe.json");
    }

    #[test]
    fn protection_comes_from_the_command_metadata_file_or_ladder_and_bad_ones_are_refused() {
        // A settings file, with the deployment's key server filled in.
        let p = SettingsPolicy {
            default_speke_url: Some("https://keys.example/speke".into()),
            ..policy()
        };
        let u = upload(
            "a.mp4",
            &[],
            Some(r#"{"drm": {"scheme": "cbcs", "systems": ["widevine"]}}"#),
        );
        let s = resolve(&u, &p, &LadderConfig::default(), 4.0, &mobile).unwrap();
        let d = s.drm.unwrap();
        assert_eq!(d.from, Origin::SettingsFile);
        assert_eq!(
            d.value.speke_url.as_deref(),
            Some("https://keys.example/speke")
        );
        assert_eq!(s.ladder_config.drm, Some(d.value));
        // Metadata beats the file; "none" turns a ladder's protection off.
        let u = upload(
            "a.mp4",
            &[("vodpipe-drm", "cenc"), ("vodpipe-drm-systems", "clearkey")],
            Some(r#"{"drm": {"scheme": "cbcs"}}"#),
        );
        let (s, l) = resolved(&u).unwrap();
        assert_eq!(s.drm.as_ref().unwrap().from, Origin::Metadata);
        assert_eq!(l.drm.unwrap().scheme, Scheme::Cenc);
        let protected = LadderConfig {
            drm: Some(DrmConfig {
                scheme: Scheme::Cbcs,
                systems: Vec::new(),
                speke_url: None,
            }),
            ..LadderConfig::default()
        };
        let u = upload("a.mp4", &[("vodpipe-drm", "none")], None);
        let s = resolve(&u, &policy(), &protected, 4.0, &mobile).unwrap();
        assert!(s.drm.is_none() && s.ladder_config.drm.is_none());
        let s = resolve(
            &upload("a.mp4", &[], None),
            &policy(),
            &protected,
            4.0,
            &mobile,
        )
        .unwrap();
        assert_eq!(s.drm.unwrap().from, Origin::Default);
        // Refusals name the rule and where the choice came from.
        for (u, why) in [
            (
                upload("a.mp4", &[("vodpipe-drm", "aes")], None),
                "use cbcs, cenc or none",
            ),
            (
                upload(
                    "a.mp4",
                    &[("vodpipe-drm", "cbcs"), ("vodpipe-drm-systems", "netflix")],
                    None,
                ),
                "drm-systems names",
            ),
            (
                upload(
                    "a.mp4",
                    &[],
                    Some(r#"{"drm": {"scheme": "cenc", "systems": ["fairplay"]}}"#),
                ),
                "FairPlay takes cbcs",
            ),
            (
                upload(
                    "a.mp4",
                    &[],
                    Some(r#"{"codecs": ["av1"], "drm": {"scheme": "cbcs"}}"#),
                ),
                "av1 rungs cannot be protected yet",
            ),
        ] {
            let e = resolved(&u).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
            assert!(e.starts_with("input rejected"), "{e}");
        }
    }

    #[test]
    fn what_hdr_sources_get_comes_from_the_command_metadata_file_or_ladder() {
        let resolve_with = |p: &SettingsPolicy, u: &UploadSettings| {
            resolve(u, p, &LadderConfig::default(), 4.0, &mobile)
        };
        // Nothing said: HDR is kept.
        let s = resolve_with(&policy(), &upload("a.mp4", &[], None)).unwrap();
        assert_eq!(s.ladder_config.hdr, HdrMode::Keep);
        let s = resolve_with(
            &policy(),
            &upload("a.mp4", &[], Some(r#"{"hdr": "sdr-only"}"#)),
        )
        .unwrap();
        assert_eq!(s.ladder_config.hdr, HdrMode::SdrOnly);
        // Metadata beats the file, the command line beats both.
        let u = upload(
            "a.mp4",
            &[("vodpipe-hdr", "keep")],
            Some(r#"{"hdr": "sdr-only"}"#),
        );
        assert_eq!(
            resolve_with(&policy(), &u).unwrap().ladder_config.hdr,
            HdrMode::Keep
        );
        let p = SettingsPolicy {
            command_hdr: Some(HdrMode::SdrOnly),
            ..policy()
        };
        assert_eq!(
            resolve_with(&p, &u).unwrap().ladder_config.hdr,
            HdrMode::SdrOnly
        );
        // A profile may say it too.
        let sdr = LadderConfig {
            hdr: HdrMode::SdrOnly,
            ..LadderConfig::default()
        };
        let s = resolve(&upload("a.mp4", &[], None), &policy(), &sdr, 4.0, &mobile).unwrap();
        assert_eq!(s.ladder_config.hdr, HdrMode::SdrOnly);
        let e = resolve_with(
            &policy(),
            &upload("a.mp4", &[("vodpipe-hdr", "dolby")], None),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("x-amz-meta-vodpipe-hdr is \"dolby\"; use keep or sdr-only"),
            "{e}"
        );
    }

    #[test]
    fn a_budget_is_the_uploads_or_the_deployments_whichever_is_lower() {
        let cap = |d: Option<f64>| SettingsPolicy {
            max_job_cost_usd: d,
            ..policy()
        };
        let none = resolve(
            &upload("a.mp4", &[], None),
            &cap(None),
            &LadderConfig::default(),
            4.0,
            &mobile,
        )
        .unwrap();
        assert!(none.max_cost_usd.is_none());
        let u = upload(
            "a.mp4",
            &[("vodpipe-max-cost-usd", "$2.50")],
            Some(r#"{"max_cost_usd": 9}"#),
        );
        let s = resolve(&u, &cap(Some(10.0)), &LadderConfig::default(), 4.0, &mobile).unwrap();
        let b = s.max_cost_usd.unwrap();
        assert_eq!((b.value, b.from), (2.5, Origin::Metadata));
        let s = resolve(&u, &cap(Some(1.0)), &LadderConfig::default(), 4.0, &mobile).unwrap();
        let b = s.max_cost_usd.unwrap();
        assert_eq!((b.value, b.from), (1.0, Origin::Default));
        let f = upload("a.mp4", &[], Some(r#"{"max_cost_usd": 0.75}"#));
        let b = resolve(&f, &cap(None), &LadderConfig::default(), 4.0, &mobile)
            .unwrap()
            .max_cost_usd
            .unwrap();
        assert_eq!((b.value, b.from), (0.75, Origin::SettingsFile));
        for (u, why) in [
            (
                upload("a.mp4", &[("vodpipe-max-cost-usd", "cheap")], None),
                "use a number of US dollars",
            ),
            (
                upload("a.mp4", &[("vodpipe-max-cost-usd", "-1")], None),
                "a positive number",
            ),
            (
                upload("a.mp4", &[], Some(r#"{"max_cost_usd": 0}"#)),
                "a positive number",
            ),
        ] {
            let e = resolve(&u, &cap(None), &LadderConfig::default(), 4.0, &mobile)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{e}");
        }
        // A job refused for other reasons still keeps the deployment's budget.
        assert_eq!(
            fallback(
                "a.mp4",
                &cap(Some(3.0)),
                4.0,
                &LadderConfig::default(),
                None
            )
            .max_cost_usd
            .map(|b| b.value),
            Some(3.0)
        );
    }

    #[test]
    fn a_clip_comes_from_the_command_metadata_or_file_and_a_bad_one_is_refused() {
        let r = |u: &UploadSettings, p: &SettingsPolicy| {
            resolve(u, p, &LadderConfig::default(), 4.0, &mobile)
        };
        let u = upload(
            "a.mp4",
            &[("vodpipe-clip", "10-20")],
            Some(r#"{"clip": "00:00:01-00:00:02"}"#),
        );
        let c = r(&u, &policy()).unwrap().clip.unwrap();
        assert_eq!(
            (c.value.start_secs, c.value.end_secs, c.from),
            (10.0, Some(20.0), Origin::Metadata)
        );
        let f = upload("a.mp4", &[], Some(r#"{"clip": "00:00:01-00:00:02"}"#));
        let c = r(&f, &policy()).unwrap().clip.unwrap();
        assert_eq!((c.value.start_secs, c.from), (1.0, Origin::SettingsFile));
        let p = SettingsPolicy {
            command_clip: vodpipe_media::clip::Clip::parse("5-").ok(),
            ..policy()
        };
        assert_eq!(r(&u, &p).unwrap().clip.unwrap().from, Origin::Command);
        assert!(r(&upload("a.mp4", &[], None), &policy())
            .unwrap()
            .clip
            .is_none());
        let e = r(
            &upload("a.mp4", &[("vodpipe-clip", "20-10")], None),
            &policy(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("x-amz-meta-vodpipe-clip") && e.contains("not after its start"),
            "{e}"
        );
    }

    #[test]
    fn an_overlay_is_named_by_metadata_or_a_settings_file_and_checked() {
        use vodpipe_media::overlay::Corner;
        let r = |u: &UploadSettings| resolve(u, &policy(), &LadderConfig::default(), 4.0, &mobile);
        let u = upload(
            "a.mp4",
            &[
                ("vodpipe-overlay", "brand"),
                ("vodpipe-overlay-position", "bottom-left"),
            ],
            Some(r#"{"overlay": {"image": "other"}}"#),
        );
        let s = r(&u).unwrap();
        let o = s.ladder_config.overlay.unwrap();
        assert_eq!(
            (o.image.as_str(), o.position),
            ("brand", Corner::BottomLeft)
        );
        assert_eq!(s.overlay.unwrap().from, Origin::Metadata);
        let f = upload(
            "a.mp4",
            &[],
            Some(r#"{"overlay": {"image": "other", "opacity": 0.5}}"#),
        );
        let s = r(&f).unwrap();
        assert_eq!(s.ladder_config.overlay.unwrap().opacity, 0.5);
        assert_eq!(s.overlay.unwrap().value, "other");
        for (u, why) in [
            (
                upload("a.mp4", &[("vodpipe-overlay", "../etc")], None),
                "letters, digits",
            ),
            (
                upload(
                    "a.mp4",
                    &[("vodpipe-overlay", "b"), ("vodpipe-overlay-position", "up")],
                    None,
                ),
                "overlay-position",
            ),
            (
                upload(
                    "a.mp4",
                    &[],
                    Some(r#"{"overlay": {"image": "b", "width": 2}}"#),
                ),
                "width is 2",
            ),
        ] {
            let e = r(&u).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }
}
