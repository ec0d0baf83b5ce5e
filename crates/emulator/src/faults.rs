//! AWS as it fails, on the emulator: the fault plan the front door (`scripts/aws_front.py`)
//! injects from, written on the command line as one rule per `--fault`:
//!
//! ```text
//! [SERVICE[:OPERATION]@]lost=P,throttle=P,conflict=P,latency-ms=LO-HI[,match=TEXT][,limit=N]
//! ```
//!
//! `lost` applies the request and then answers 500 (the SDK retries and meets its own
//! write); `throttle` answers the service's throttling error without applying; `conflict`
//! cancels a DynamoDB transaction with `TransactionConflict`; `latency-ms` adds a delay;
//! `match` limits the rule to requests naming a resource containing TEXT; `limit` caps how
//! many faults the rule injects. The first rule matching a request's service and operation
//! (S3 operations are HTTP methods) decides its fate, from a hash of the seed, the
//! operation and how many calls of it came before: the same seed injects the same faults
//! into the same sequence of calls.

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

/// A rule from its command-line form.
pub fn parse_rule(spec: &str) -> Result<Value> {
    let (target, params) = match spec.split_once('@') {
        Some((t, p)) => (t, p),
        None => ("*", spec),
    };
    let (service, operation) = target.split_once(':').unwrap_or((target, "*"));
    let mut rule = Map::new();
    rule.insert("service".into(), json!(service));
    rule.insert("operation".into(), json!(operation));
    for kv in params.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("fault {kv:?} is not NAME=VALUE"))?;
        match k {
            "lost" | "throttle" | "conflict" => {
                let p: f64 = v.parse().with_context(|| format!("{k}={v}"))?;
                if !(0.0..=1.0).contains(&p) {
                    bail!("{k}={v}: a rate is between 0 and 1");
                }
                rule.insert(k.into(), json!(p));
            }
            "latency-ms" => {
                let (lo, hi) = v.split_once('-').unwrap_or((v, v));
                let (lo, hi): (u64, u64) = (lo.parse()?, hi.parse()?);
                rule.insert("latency_ms".into(), json!([lo.min(hi), lo.max(hi)]));
            }
            "match" => {
                rule.insert("match".into(), json!(v));
            }
            "limit" => {
                rule.insert("limit".into(), json!(v.parse::<u64>()?));
            }
            other => bail!("unknown fault parameter {other:?} (lost, throttle, conflict, latency-ms, match, limit)"),
        }
    }
    Ok(Value::Object(rule))
}

/// The plan for `rules`: applied to the deployment's assumed roles only (`scope: roles`;
/// the test harness sees a perfect AWS), or to every caller (`all`).
pub fn plan(seed: u64, all_callers: bool, rules: &[String]) -> Result<Value> {
    let rules = rules
        .iter()
        .map(|r| parse_rule(r))
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({
        "seed": seed,
        "scope": if all_callers { "all" } else { "roles" },
        "rules": rules,
    }))
}

/// Faults injected per service and kind, from the front door's report
/// (`{"injected": {"dynamodb:UpdateItem": {"lost": 3}, …}}`).
pub fn by_service(report: &Value) -> std::collections::BTreeMap<String, Value> {
    let mut out: std::collections::BTreeMap<String, Map<String, Value>> = Default::default();
    if let Some(m) = report["injected"].as_object() {
        for (op, kinds) in m {
            let service = op.split(':').next().unwrap_or(op).to_string();
            let entry = out.entry(service).or_default();
            for (kind, n) in kinds.as_object().into_iter().flatten() {
                let sum =
                    entry.get(kind).and_then(Value::as_u64).unwrap_or(0) + n.as_u64().unwrap_or(0);
                entry.insert(kind.clone(), json!(sum));
            }
        }
    }
    out.into_iter()
        .map(|(k, v)| (k, Value::Object(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rules_parse_from_their_command_line_form() {
        let r = parse_rule("lost=0.05,throttle=0.05,conflict=0.05,latency-ms=0-30").unwrap();
        assert_eq!(r["service"], "*");
        assert_eq!(r["lost"], 0.05);
        assert_eq!(r["latency_ms"], json!([0, 30]));
        let r = parse_rule("dynamodb:UpdateItem@lost=1,limit=1,match=jobs").unwrap();
        assert_eq!(
            (r["service"].as_str(), r["operation"].as_str()),
            (Some("dynamodb"), Some("UpdateItem"))
        );
        assert_eq!(r["limit"], 1);
        assert!(parse_rule("lost=2").is_err());
        assert!(parse_rule("lots=0.1").is_err());
    }

    #[test]
    fn injections_sum_per_service() {
        let report = json!({"injected": {
            "dynamodb:UpdateItem": {"lost": 2, "throttle": 1},
            "dynamodb:GetItem": {"throttle": 3},
            "s3:PUT": {"lost": 1},
        }});
        let s = by_service(&report);
        assert_eq!(s["dynamodb"], json!({"lost": 2, "throttle": 4}));
        assert_eq!(s["s3"], json!({"lost": 1}));
    }
}
