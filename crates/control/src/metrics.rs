//! Metrics in CloudWatch's embedded metric format (EMF): one JSON line on stdout per
//! observation, which CloudWatch Logs turns into metrics without an API call or an agent
//! in the hot path. Off unless [`enable`] is called (the Lambda functions and the worker
//! task do, when `VODPIPE_METRICS=emf`), so the CLI's output stays clean.
//!
//! Every metric carries the `Deployment` dimension (the stack's name), which is what the
//! dashboard in `infra/template.yaml` selects on.

use std::io::Write;
use std::sync::OnceLock;

/// The namespace every metric is published under.
pub const NAMESPACE: &str = "vodpipe";

static DEPLOYMENT: OnceLock<String> = OnceLock::new();

/// Turns metrics on for this process, tagged with `deployment`.
pub fn enable(deployment: &str) {
    let _ = DEPLOYMENT.set(deployment.to_string());
}

/// Turns metrics on when `VODPIPE_METRICS=emf`, with the deployment name from
/// `VODPIPE_QUEUE_PREFIX` (the stack's `Name`).
pub fn enable_from_env() {
    if std::env::var("VODPIPE_METRICS").as_deref() == Ok("emf") {
        enable(&std::env::var("VODPIPE_QUEUE_PREFIX").unwrap_or_else(|_| "vodpipe".into()));
    }
}

/// True when [`enable`] was called.
pub fn enabled() -> bool {
    DEPLOYMENT.get().is_some()
}

/// The units vodpipe's metrics use.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// Seconds.
    Seconds,
    /// A count.
    Count,
    /// A plain number (ratios, minutes, dollars).
    None,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Seconds => "Seconds",
            Unit::Count => "Count",
            Unit::None => "None",
        }
    }
}

/// The EMF document for `values` with `extra` dimensions beyond `Deployment`.
pub fn document(
    deployment: &str,
    values: &[(&str, f64, Unit)],
    extra: &[(&str, &str)],
    timestamp_ms: u128,
) -> serde_json::Value {
    let mut dims = vec!["Deployment".to_string()];
    dims.extend(extra.iter().map(|(k, _)| k.to_string()));
    let mut doc = serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dims],
                "Metrics": values.iter().map(|(n, _, u)| serde_json::json!({"Name": n, "Unit": u.as_str()})).collect::<Vec<_>>(),
            }],
        },
        "Deployment": deployment,
    });
    for (k, v) in extra {
        doc[*k] = serde_json::json!(v);
    }
    for (n, v, _) in values {
        if v.is_finite() {
            doc[*n] = serde_json::json!(v);
        }
    }
    doc
}

/// Emits `values` (with `extra` dimensions) if metrics are on.
pub fn emit(values: &[(&str, f64, Unit)], extra: &[(&str, &str)]) {
    let Some(deployment) = DEPLOYMENT.get() else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let line = document(deployment, values, extra, now).to_string();
    // One write per line so concurrent emitters never interleave within a document.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// A job entered `state`.
pub fn job_state(state: crate::domain::JobStatus) {
    emit(
        &[("JobStateChanges", 1.0, Unit::Count)],
        &[("State", state.as_str())],
    );
}

/// A job planned (or refused) at ingest, by its tier and where the tier came from: what the
/// dashboard's "uploads by tier" widget sums.
pub fn job_ingested(settings: &crate::domain::JobSettings) {
    let from = serde_json::to_value(settings.tier.from)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    emit(
        &[("JobsIngested", 1.0, Unit::Count)],
        &[("Tier", settings.tier.value.as_str()), ("TierFrom", &from)],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_declare_every_value_they_carry() {
        let d = document(
            "prod",
            &[
                ("ChunkEncodeSeconds", 12.5, Unit::Seconds),
                ("RealtimeFactor", 1.6, Unit::None),
            ],
            &[("State", "PUBLISHED")],
            1_795_420_800_000,
        );
        let m = &d["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "vodpipe");
        assert_eq!(
            m["Dimensions"][0],
            serde_json::json!(["Deployment", "State"])
        );
        assert_eq!(m["Metrics"][0]["Name"], "ChunkEncodeSeconds");
        assert_eq!(m["Metrics"][0]["Unit"], "Seconds");
        assert_eq!(d["ChunkEncodeSeconds"], 12.5);
        assert_eq!(d["RealtimeFactor"], 1.6);
        assert_eq!(d["Deployment"], "prod");
        assert_eq!(d["State"], "PUBLISHED");
        assert_eq!(d["_aws"]["Timestamp"], 1_795_420_800_000u64);
    }
}
