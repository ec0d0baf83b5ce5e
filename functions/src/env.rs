//! One execution environment's set-up: JSON logs, the AWS ports, the pipeline config.
//!
//! Lambda reuses an environment for many invocations, so everything here is built once,
//! at cold start, before the runtime polls for the first event. The ports are synchronous
//! and drive the SDK on a runtime of their own, so use-cases run on tokio's blocking pool
//! through [`Shared::run`], never on the Lambda runtime's async threads.

use crate::FunctionError;
use std::path::Path;
use std::sync::Arc;
use vodpipe_control::pipeline::Config;
use vodpipe_control::ports::Tier;
use vodpipe_control::settings::SettingsPolicy;

/// Logs as JSON lines (what CloudWatch Logs Insights queries), level from `VODPIPE_LOG`
/// (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VODPIPE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_current_span(false)
        .with_ansi(false)
        .init();
}

/// What every invocation of a function shares.
pub struct Shared {
    /// The AWS ports and settings.
    pub aws: vodpipe_aws::Aws,
    /// Pipeline knobs (ffprobe path, policy, plan options, per-upload settings policy:
    /// `VODPIPE_DEFAULT_TIER`, `VODPIPE_PREFIX_TIERS`, `VODPIPE_SETTINGS_WAIT_SECONDS`).
    pub cfg: Config,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// The stack's content protection: `VODPIPE_SPEKE_URL` (the key server an upload that
/// asks for protection gets its keys from), and `VODPIPE_DRM` (`cbcs`, `cenc`, or empty:
/// protect every upload that does not say otherwise) with `VODPIPE_DRM_SYSTEMS`.
fn drm_defaults(cfg: &mut Config) -> Result<(), FunctionError> {
    use vodpipe_media::cenc::{DrmConfig, Scheme, System};
    let url = env_or("VODPIPE_SPEKE_URL", "");
    cfg.settings.default_speke_url = (!url.is_empty()).then(|| url.clone());
    let scheme = env_or("VODPIPE_DRM", "");
    if scheme.is_empty() || scheme == "none" {
        return Ok(());
    }
    let scheme = Scheme::parse(&scheme).ok_or_else(|| {
        FunctionError::Config(format!("VODPIPE_DRM is {scheme:?}; use cbcs, cenc or none"))
    })?;
    let systems = env_or("VODPIPE_DRM_SYSTEMS", "")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            System::parse(s)
                .ok_or_else(|| FunctionError::Config(format!("VODPIPE_DRM_SYSTEMS names {s:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let drm = DrmConfig {
        scheme,
        systems,
        speke_url: cfg.settings.default_speke_url.clone(),
    };
    if drm.speke_url.is_none() {
        return Err(FunctionError::Config(
            "VODPIPE_DRM needs VODPIPE_SPEKE_URL: workers on AWS get their keys from a key server"
                .into(),
        ));
    }
    drm.validate()
        .map_err(|e| FunctionError::Config(format!("VODPIPE_DRM: {e}")))?;
    cfg.ladder.drm = Some(drm);
    Ok(())
}

impl Shared {
    /// Reads the `VODPIPE_…` settings and connects. Call it before starting the Lambda
    /// runtime: it blocks on SDK set-up.
    pub fn from_env() -> Result<Arc<Self>, FunctionError> {
        let aws = vodpipe_aws::Aws::from_env()?;
        let mut cfg = Config::new(env_or("VODPIPE_SCRATCH", "/tmp/vodpipe"));
        // A Lambda layer puts ffprobe under /opt/bin; elsewhere it is on PATH.
        let layer_ffprobe = Path::new("/opt/bin/ffprobe");
        let default_ffprobe = if layer_ffprobe.exists() {
            "/opt/bin/ffprobe"
        } else {
            "ffprobe"
        };
        cfg.ffprobe = env_or("VODPIPE_FFPROBE", default_ffprobe);
        let secs = |name: &str, default: f64| -> Result<f64, FunctionError> {
            match std::env::var(name).ok().filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| {
                        FunctionError::Config(format!("{name} is {v:?}; use seconds, e.g. 4"))
                    }),
            }
        };
        cfg.plan.segment_secs = secs("VODPIPE_SEGMENT_SECONDS", cfg.plan.segment_secs)?;
        cfg.plan.chunk_secs = secs("VODPIPE_CHUNK_SECONDS", cfg.plan.chunk_secs)?;
        if cfg.plan.chunk_secs < cfg.plan.segment_secs {
            return Err(FunctionError::Config(
                "VODPIPE_CHUNK_SECONDS must be at least VODPIPE_SEGMENT_SECONDS".into(),
            ));
        }
        let tier_name = env_or("VODPIPE_DEFAULT_TIER", "standard");
        cfg.settings.default_tier = Tier::parse(&tier_name).ok_or_else(|| {
            FunctionError::Config(format!(
                "VODPIPE_DEFAULT_TIER is {tier_name:?}; use premium, standard or bulk"
            ))
        })?;
        cfg.settings.prefix_tiers =
            SettingsPolicy::parse_prefix_tiers(&env_or("VODPIPE_PREFIX_TIERS", ""))
                .map_err(|e| FunctionError::Config(format!("VODPIPE_PREFIX_TIERS: {e}")))?;
        let wait = match std::env::var("VODPIPE_SETTINGS_WAIT_SECONDS") {
            // Within the ingest function's 300 s, beside two probes of up to 120 s each.
            Ok(v) if !v.is_empty() => v
                .parse::<f64>()
                .ok()
                .filter(|s| (0.0..=30.0).contains(s))
                .ok_or_else(|| {
                    FunctionError::Config(format!(
                        "VODPIPE_SETTINGS_WAIT_SECONDS is {v:?}; use 0 to 30 seconds"
                    ))
                })?,
            _ => 0.0,
        };
        cfg.settings.settings_wait = std::time::Duration::from_secs_f64(wait);
        cfg.settings.max_job_cost_usd = match env_or("VODPIPE_MAX_JOB_COST_USD", "").trim() {
            "" => None,
            v => Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && *n > 0.0)
                    .ok_or_else(|| {
                        FunctionError::Config(format!(
                            "VODPIPE_MAX_JOB_COST_USD is {v:?}; use a positive number of US dollars, or nothing"
                        ))
                    })?,
            ),
        };
        drm_defaults(&mut cfg)?;
        Ok(Arc::new(Shared { aws, cfg }))
    }

    /// Runs a synchronous use-case on the blocking pool.
    pub async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, FunctionError>
    where
        T: Send + 'static,
        F: FnOnce(&Shared) -> T + Send + 'static,
    {
        let shared = self.clone();
        tokio::task::spawn_blocking(move || f(&shared))
            .await
            .map_err(|e| FunctionError::Task(e.to_string()))
    }
}

/// Starts the Lambda runtime with `handler` on a runtime of its own, after the ports (which
/// own another) are built. Returns when the runtime API goes away.
pub fn serve<E, R, H, Fut>(handler: H) -> Result<(), lambda_runtime::Error>
where
    E: serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + Send + 'static,
    H: Fn(Arc<Shared>, lambda_runtime::LambdaEvent<E>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<R, FunctionError>> + Send + 'static,
{
    init_logging();
    vodpipe_control::metrics::enable_from_env();
    let shared = Shared::from_env()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let handler = Arc::new(handler);
    // The ports own a runtime of their own, which must not be dropped inside this one:
    // this clone outlives `block_on`, so the last reference goes away out here.
    let keep = shared.clone();
    let result = rt.block_on(lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<E>| {
            let (shared, handler) = (shared.clone(), handler.clone());
            async move { handler(shared, event).await }
        },
    )));
    drop(rt);
    drop(keep);
    result
}
