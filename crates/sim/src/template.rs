//! The deployed shape the simulation models, read from the SAM template it promises for
//! (`infra/template.yaml`): the ingest and stitch functions' SQS event-source mappings
//! (batch size, maximum concurrency), their timeouts and their queues' redelivery, and
//! the stack's worker limits per tier.
//!
//! A capacity figure is only worth the deployment it describes: read from the template,
//! with `--parameter Name=Value` overrides resolved as CloudFormation would (`!Ref` to a
//! parameter, its `Default` unless overridden, checked against `MinValue`/`MaxValue`), the
//! simulator cannot promise a rate the stack's own settings would not carry. A setting the
//! template does not have (an older template) falls back to the built-in default with a
//! note saying so; a value the reader cannot resolve, or an override of a parameter the
//! template does not declare, is an error naming the file and the value, never a guess.

use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use thiserror::Error;
use yaml_rust2::parser::{Event, EventReceiver, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

/// The template parameter that caps concurrent ingest invocations (the ingest queue's
/// mapping `ScalingConfig.MaximumConcurrency`).
pub const INGEST_MAX_CONCURRENCY: &str = "IngestMaxConcurrency";
/// The template parameter for the stitch mapping's `BatchSize`.
pub const STITCH_BATCH_SIZE: &str = "StitchBatchSize";
/// The template parameter for the stitch mapping's `ScalingConfig.MaximumConcurrency`.
pub const STITCH_MAX_CONCURRENCY: &str = "StitchMaxConcurrency";
/// The template parameter capping worker tasks per tier.
pub const MAX_WORKERS_PER_TIER: &str = "MaxWorkersPerTier";
/// The template parameter for the worker tasks kept running per tier.
pub const WARM_WORKERS_PER_TIER: &str = "WarmWorkersPerTier";
/// The template parameter for how long an upload waits for its settings file.
pub const SETTINGS_FILE_WAIT_SECONDS: &str = "SettingsFileWaitSeconds";

/// Lambda's own `BatchSize` for an SQS mapping that sets none.
const LAMBDA_DEFAULT_SQS_BATCH: u32 = 10;
/// SQS's visibility timeout for a queue that sets none.
const SQS_DEFAULT_VISIBILITY_SECS: f64 = 30.0;

/// One function fed by an SQS queue through an event-source mapping: how many messages an
/// invocation gets, how many invocations run at once, how long one may run, and what
/// happens to a message whose invocation timed out (it is received again after the
/// queue's visibility timeout, until the queue's `maxReceiveCount` sends it to its
/// dead-letter queue).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FunctionMapping {
    /// Messages per invocation, at most (`BatchSize`; the poller takes what is there, up
    /// to this many: the template sets no batching window).
    pub batch_size: u32,
    /// Invocations at once, at most (`ScalingConfig.MaximumConcurrency`).
    pub max_concurrency: u32,
    /// The function's `Timeout`, seconds.
    pub timeout_secs: f64,
    /// The queue's `VisibilityTimeout`: a message of a timed-out invocation is visible
    /// again this long after it was received.
    pub visibility_secs: f64,
    /// The queue's `RedrivePolicy.maxReceiveCount`: receives before the dead-letter queue.
    pub max_receives: u32,
}

/// The deployment's settings the simulation depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deployment {
    /// Ingest: S3 → SQS → the ingest function.
    pub ingest: FunctionMapping,
    /// Stitch: the stitch queue → the stitch function.
    pub stitch: FunctionMapping,
    /// `MaxWorkersPerTier`: a hard cap on a tier's worker tasks.
    pub max_workers_per_tier: u32,
    /// `WarmWorkersPerTier`: worker tasks per tier kept running, idle or not.
    pub warm_workers_per_tier: u32,
    /// `SettingsFileWaitSeconds`: how long after its upload an upload without a settings
    /// file waits for one (in the ingest queue, deferred: no function time) before it is
    /// ingested.
    pub settings_wait_secs: f64,
}

impl Default for Deployment {
    /// The template's defaults (the deployed shape): ingest one upload an invocation, at most
    /// 100 at once; stitch batches of 10, at most 20 at once, 120 s; 20 workers per tier,
    /// none kept warm.
    fn default() -> Self {
        Deployment {
            ingest: FunctionMapping {
                batch_size: 1,
                max_concurrency: 100,
                timeout_secs: 300.0,
                visibility_secs: 1800.0,
                max_receives: 5,
            },
            stitch: FunctionMapping {
                batch_size: 10,
                max_concurrency: 20,
                timeout_secs: 120.0,
                visibility_secs: 720.0,
                max_receives: 5,
            },
            max_workers_per_tier: 20,
            warm_workers_per_tier: 0,
            settings_wait_secs: 10.0,
        }
    }
}

impl Deployment {
    /// The settings as JSON, for the report.
    pub fn to_json(&self) -> Value {
        let mapping = |m: &FunctionMapping| {
            json!({
                "batch_size": m.batch_size,
                "max_concurrency": m.max_concurrency,
                "timeout_secs": m.timeout_secs,
                "visibility_timeout_secs": m.visibility_secs,
                "max_receives": m.max_receives,
            })
        };
        json!({
            "ingest": mapping(&self.ingest),
            "stitch": mapping(&self.stitch),
            "max_workers_per_tier": self.max_workers_per_tier,
            "warm_workers_per_tier": self.warm_workers_per_tier,
            "settings_file_wait_secs": self.settings_wait_secs,
        })
    }
}

/// What reading a template gave: the settings, where they came from, and a note for each
/// one that did not come from the template as written (a fallback, an override).
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The settings.
    pub deployment: Deployment,
    /// The template's path (as given), or a phrase saying there was none.
    pub source: String,
    /// One line per setting the template did not give as it stands.
    pub notes: Vec<String>,
}

/// Why a template could not be read.
#[derive(Debug, Error)]
pub enum TemplateError {
    /// The file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not YAML, or not a template.
    #[error("{path}: not a CloudFormation template: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A value the simulation needs is there but unusable.
    #[error("{path}: {what}: {reason}")]
    Value {
        /// The file.
        path: String,
        /// Which value (`Resources.StitchFunction.Properties.Timeout`, `--parameter X`).
        what: String,
        /// Why.
        reason: String,
    },
    /// A `--parameter` that is not `Name=Value`.
    #[error("--parameter {0:?}: expected Name=Value")]
    Override(String),
}

/// `Name=Value` pairs from repeated `--parameter` flags (a later one wins).
pub fn parse_overrides(args: &[String]) -> Result<BTreeMap<String, String>, TemplateError> {
    let mut out = BTreeMap::new();
    for a in args {
        match a.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.insert(k.trim().to_string(), v.trim().to_string());
            }
            _ => return Err(TemplateError::Override(a.clone())),
        }
    }
    Ok(out)
}

/// The repository's template, looked for as `infra/template.yaml` in `start` and each
/// directory above it (so `vodpipe simulate` finds it from anywhere in a checkout).
pub fn find_default(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|d| d.join("infra").join("template.yaml"))
        .find(|p| p.is_file())
}

/// Reads the template at `path` with `overrides` applied.
pub fn read(path: &Path, overrides: &BTreeMap<String, String>) -> Result<Reading, TemplateError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
        path: shown.clone(),
        source,
    })?;
    read_str(&text, &shown, overrides)
}

/// Reads a template's text; `source` names it in notes and errors.
pub fn read_str(
    text: &str,
    source: &str,
    overrides: &BTreeMap<String, String>,
) -> Result<Reading, TemplateError> {
    read_any(text, source, overrides, false)
}

fn read_any(
    text: &str,
    source: &str,
    overrides: &BTreeMap<String, String>,
    no_template: bool,
) -> Result<Reading, TemplateError> {
    let doc = parse(text).map_err(|reason| TemplateError::Parse {
        path: source.to_string(),
        reason,
    })?;
    if !doc.is_object() || !doc["Resources"].is_object() {
        return Err(TemplateError::Parse {
            path: source.to_string(),
            reason: "it has no Resources".into(),
        });
    }
    let mut r = Reader {
        doc: &doc,
        source,
        overrides,
        used: BTreeSet::new(),
        notes: Vec::new(),
        no_template,
    };
    let defaults = Deployment::default();
    let ingest = r.mapping(
        "IngestFunction",
        "ingest",
        Some(INGEST_MAX_CONCURRENCY),
        None,
        &defaults.ingest,
    )?;
    let stitch = r.mapping(
        "StitchFunction",
        "stitch",
        Some(STITCH_MAX_CONCURRENCY),
        Some(STITCH_BATCH_SIZE),
        &defaults.stitch,
    )?;
    let max_workers_per_tier = r.parameter_setting(
        MAX_WORKERS_PER_TIER,
        f64::from(defaults.max_workers_per_tier),
        1.0,
    )? as u32;
    let warm_workers_per_tier = r.parameter_setting(
        WARM_WORKERS_PER_TIER,
        f64::from(defaults.warm_workers_per_tier),
        0.0,
    )? as u32;
    let settings_wait_secs =
        r.parameter_setting(SETTINGS_FILE_WAIT_SECONDS, defaults.settings_wait_secs, 0.0)?;
    r.check_overrides()?;
    let mut notes: Vec<String> = Vec::new();
    for n in r.notes {
        if !notes.contains(&n) {
            notes.push(n);
        }
    }
    let mut deployment = Deployment {
        ingest,
        stitch,
        max_workers_per_tier,
        warm_workers_per_tier,
        settings_wait_secs,
    };
    if deployment.warm_workers_per_tier > deployment.max_workers_per_tier {
        notes.push(format!(
            "{WARM_WORKERS_PER_TIER} {} is above {MAX_WORKERS_PER_TIER} {}: at most {} are kept warm",
            deployment.warm_workers_per_tier,
            deployment.max_workers_per_tier,
            deployment.max_workers_per_tier
        ));
        deployment.warm_workers_per_tier = deployment.max_workers_per_tier;
    }
    Ok(Reading {
        deployment,
        source: source.to_string(),
        notes,
    })
}

/// The built-in defaults with `overrides` applied, when there is no template to read
/// (outside a checkout, no `--template`). Only the five parameters the simulation knows
/// can be overridden.
pub fn defaults_only(
    overrides: &BTreeMap<String, String>,
    why: &str,
) -> Result<Reading, TemplateError> {
    // An empty template: every setting falls back, every known override applies.
    let mut reading = read_any("Resources: {}\n", why, overrides, true)?;
    reading.notes.insert(
        0,
        format!("{why}: the built-in defaults of the template's parameters"),
    );
    Ok(reading)
}

struct Reader<'a> {
    doc: &'a Value,
    source: &'a str,
    overrides: &'a BTreeMap<String, String>,
    used: BTreeSet<String>,
    notes: Vec<String>,
    /// There is no template: fallbacks are the point, not worth a note each.
    no_template: bool,
}

impl Reader<'_> {
    fn err(&self, what: &str, reason: impl Into<String>) -> TemplateError {
        TemplateError::Value {
            path: self.source.to_string(),
            what: what.to_string(),
            reason: reason.into(),
        }
    }

    fn parameters(&self) -> Option<&Map<String, Value>> {
        self.doc["Parameters"].as_object()
    }

    /// A declared parameter's value: the override, else its `Default`, checked against
    /// its `MinValue`, `MaxValue` and `AllowedValues` as CloudFormation checks them.
    fn parameter(&mut self, name: &str, what: &str) -> Result<Value, TemplateError> {
        let Some(decl) = self.parameters().and_then(|p| p.get(name)).cloned() else {
            return Err(self.err(
                what,
                format!("refers to parameter {name}, which the template does not declare"),
            ));
        };
        let (value, from) = match self.overrides.get(name) {
            Some(v) => {
                self.used.insert(name.to_string());
                self.notes.push(format!("{name} {v} from --parameter"));
                (Value::String(v.clone()), "--parameter")
            }
            None => match decl.get("Default") {
                Some(d) => (d.clone(), "its Default"),
                None => {
                    return Err(self.err(
                        what,
                        format!("parameter {name} has no Default; give --parameter {name}=VALUE"),
                    ))
                }
            },
        };
        let param = format!("parameter {name}");
        if let Some(allowed) = decl.get("AllowedValues").and_then(Value::as_array) {
            let text = scalar_text(&value);
            if !allowed.iter().any(|a| scalar_text(a) == text) {
                return Err(self.err(
                    &param,
                    format!("{text} ({from}) is not one of its AllowedValues"),
                ));
            }
        }
        if decl.get("Type").and_then(Value::as_str) == Some("Number") {
            let n = number(&value)
                .ok_or_else(|| self.err(&param, format!("{value} ({from}) is not a number")))?;
            if let Some(min) = decl.get("MinValue").and_then(number) {
                if n < min {
                    return Err(
                        self.err(&param, format!("{n} ({from}) is below its MinValue {min}"))
                    );
                }
            }
            if let Some(max) = decl.get("MaxValue").and_then(number) {
                if n > max {
                    return Err(
                        self.err(&param, format!("{n} ({from}) is above its MaxValue {max}"))
                    );
                }
            }
        }
        Ok(value)
    }

    /// A number the template gives at `what`: literal, or `!Ref` to a parameter.
    fn number_at(&mut self, v: &Value, what: &str) -> Result<f64, TemplateError> {
        let resolved = match v.get("Ref").and_then(Value::as_str) {
            Some(name) => self.parameter(name, what)?,
            None if v.is_object() || v.is_array() => {
                return Err(self.err(
                    what,
                    format!("{v} is an expression the simulator does not resolve (a number or !Ref to a parameter)"),
                ))
            }
            None => v.clone(),
        };
        number(&resolved).ok_or_else(|| self.err(what, format!("{resolved} is not a number")))
    }

    /// A positive whole number at `what`.
    fn count_at(&mut self, v: &Value, what: &str, min: f64) -> Result<u32, TemplateError> {
        let n = self.number_at(v, what)?;
        if n.fract() != 0.0 || n < min || n > f64::from(u32::MAX) {
            return Err(self.err(what, format!("{n} is not a whole number of at least {min}")));
        }
        Ok(n as u32)
    }

    /// A setting given only by a parameter (the worker limits): its value, or the
    /// built-in default (or an override of that name) with a note when the template does
    /// not declare it.
    fn parameter_setting(
        &mut self,
        name: &str,
        default: f64,
        min: f64,
    ) -> Result<f64, TemplateError> {
        let declared = self.parameters().is_some_and(|p| p.contains_key(name));
        if declared {
            let v = Value::Object(Map::from_iter([("Ref".to_string(), json!(name))]));
            return Ok(f64::from(self.count_at(
                &v,
                &format!("parameter {name}"),
                min,
            )?));
        }
        self.fallback(name, default, min, &format!("no parameter {name}"))
    }

    /// The built-in default for a setting the template does not have (or an override of
    /// its parameter's name), with a note.
    fn fallback(
        &mut self,
        name: &str,
        default: f64,
        min: f64,
        missing: &str,
    ) -> Result<f64, TemplateError> {
        if let Some(v) = self.overrides.get(name).cloned() {
            self.used.insert(name.to_string());
            let what = format!("--parameter {name}");
            let n = self.count_at(&Value::String(v), &what, min)?;
            self.notes.push(format!("{name} {n} from --parameter"));
            return Ok(f64::from(n));
        }
        if !self.no_template {
            self.notes.push(format!(
                "{} has {missing}; using the built-in default {name} {default}",
                self.source
            ));
        }
        Ok(default)
    }

    /// A function's SQS mapping, timeout and queue redelivery.
    fn mapping(
        &mut self,
        function: &str,
        label: &str,
        concurrency_param: Option<&str>,
        batch_param: Option<&str>,
        defaults: &FunctionMapping,
    ) -> Result<FunctionMapping, TemplateError> {
        let doc = self.doc;
        let f = &doc["Resources"][function];
        let event = f["Properties"]["Events"].as_object().and_then(|events| {
            events
                .iter()
                .find(|(_, e)| e["Type"].as_str() == Some("SQS"))
        });
        let concurrency_name = concurrency_param.unwrap_or("MaximumConcurrency");
        let Some((event_name, event)) = event else {
            let missing = if f.is_null() {
                format!("no {function} resource")
            } else {
                format!("no SQS event source on {function}")
            };
            let max = self.fallback(
                concurrency_name,
                f64::from(defaults.max_concurrency),
                2.0,
                &missing,
            )?;
            let batch = match batch_param {
                Some(name) => self.fallback(name, f64::from(defaults.batch_size), 1.0, &missing)?,
                None => f64::from(defaults.batch_size),
            };
            let timeout = self.timeout(function, defaults.timeout_secs)?;
            return Ok(FunctionMapping {
                batch_size: batch as u32,
                max_concurrency: max as u32,
                timeout_secs: timeout,
                visibility_secs: defaults.visibility_secs.max(6.0 * timeout),
                max_receives: defaults.max_receives,
            });
        };
        let at = format!("Resources.{function}.Properties.Events.{event_name}.Properties");
        let props = &event["Properties"];
        let batch_size = match props.get("BatchSize") {
            Some(v) => self.count_at(v, &format!("{at}.BatchSize"), 1.0)?,
            None => {
                self.notes.push(format!(
                    "{}: the {label} mapping sets no BatchSize: Lambda's default {LAMBDA_DEFAULT_SQS_BATCH}",
                    self.source
                ));
                LAMBDA_DEFAULT_SQS_BATCH
            }
        };
        let max_concurrency = match props
            .get("ScalingConfig")
            .and_then(|s| s.get("MaximumConcurrency"))
        {
            Some(v) => self.count_at(v, &format!("{at}.ScalingConfig.MaximumConcurrency"), 2.0)?,
            None => self.fallback(
                concurrency_name,
                f64::from(defaults.max_concurrency),
                2.0,
                &format!("no ScalingConfig.MaximumConcurrency on the {label} mapping"),
            )? as u32,
        };
        let timeout_secs = self.timeout(function, defaults.timeout_secs)?;
        let (visibility_secs, max_receives) =
            self.queue(&props["Queue"], &at, label, timeout_secs, defaults)?;
        Ok(FunctionMapping {
            batch_size,
            max_concurrency,
            timeout_secs,
            visibility_secs,
            max_receives,
        })
    }

    /// The function's `Timeout`, else the template's `Globals.Function.Timeout` (SAM's
    /// rule), else the built-in default.
    fn timeout(&mut self, function: &str, default: f64) -> Result<f64, TemplateError> {
        let doc = self.doc;
        if let Some(v) = doc["Resources"][function]["Properties"].get("Timeout") {
            return self.number_at(v, &format!("Resources.{function}.Properties.Timeout"));
        }
        if let Some(v) = doc["Globals"]["Function"].get("Timeout") {
            if !doc["Resources"][function].is_null() {
                return self.number_at(v, "Globals.Function.Timeout");
            }
        }
        if !self.no_template {
            self.notes.push(format!(
                "{} gives {function} no Timeout; using the built-in default {default} s",
                self.source
            ));
        }
        Ok(default)
    }

    /// The mapping's queue (`!GetAtt Q.Arn`): its visibility timeout and receives before
    /// its dead-letter queue.
    fn queue(
        &mut self,
        queue: &Value,
        at: &str,
        label: &str,
        timeout: f64,
        defaults: &FunctionMapping,
    ) -> Result<(f64, u32), TemplateError> {
        let doc = self.doc;
        let name = queue
            .get("Fn::GetAtt")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str);
        let Some(q) = name
            .map(|n| (n, &doc["Resources"][n]))
            .filter(|(_, q)| q.is_object())
        else {
            let visibility = defaults.visibility_secs.max(6.0 * timeout);
            self.notes.push(format!(
                "{}: the {label} mapping's queue ({at}.Queue) is not a queue of the template; assuming a visibility timeout of {visibility} s and {} receives",
                self.source, defaults.max_receives
            ));
            return Ok((visibility, defaults.max_receives));
        };
        let (qname, q) = q;
        let props = &q["Properties"];
        let visibility = match props.get("VisibilityTimeout") {
            Some(v) => self.number_at(
                v,
                &format!("Resources.{qname}.Properties.VisibilityTimeout"),
            )?,
            None => SQS_DEFAULT_VISIBILITY_SECS,
        };
        let receives = match props
            .get("RedrivePolicy")
            .and_then(|r| r.get("maxReceiveCount"))
        {
            Some(v) => self.count_at(
                v,
                &format!("Resources.{qname}.Properties.RedrivePolicy.maxReceiveCount"),
                1.0,
            )?,
            // No dead-letter queue: a message comes back until its retention ends.
            None => u32::MAX,
        };
        Ok((visibility, receives))
    }

    /// Every override names a parameter the template declares, or one the simulation
    /// fell back for.
    fn check_overrides(&mut self) -> Result<(), TemplateError> {
        let declared: Vec<String> = self
            .parameters()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        for (name, value) in self.overrides {
            if self.used.contains(name) {
                continue;
            }
            if declared.iter().any(|d| d == name) {
                // Declared but not one the simulation reads: still checked, as a deploy
                // would check it.
                self.parameter(name, &format!("--parameter {name}"))?;
                continue;
            }
            return Err(self.err(
                &format!("--parameter {name}={value}"),
                format!(
                    "the template declares no parameter {name}, and the simulator uses none by that name here (declared: {})",
                    if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
                ),
            ));
        }
        Ok(())
    }
}

/// A scalar's text (numbers and strings alike), for comparing with `AllowedValues`.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A number from a YAML scalar (the parser keeps scalars as text).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    }
}

/// Builds JSON from the YAML parser's events, turning CloudFormation's short tags into
/// their long forms (`!Ref X` is `{"Ref": "X"}`, `!GetAtt A.B` is `{"Fn::GetAtt": [A, B]}`,
/// `!Sub …` is `{"Fn::Sub": …}`), so the reader looks at one shape whichever was written.
#[derive(Default)]
struct Builder {
    stack: Vec<(Value, Option<String>, Option<String>)>,
    done: Option<Value>,
    error: Option<String>,
}

fn intrinsic(tag: &str, v: Value) -> Value {
    match tag {
        "Ref" | "Condition" => Value::Object(Map::from_iter([(tag.to_string(), v)])),
        "GetAtt" => match v {
            Value::String(s) => {
                let (res, attr) = s.split_once('.').unwrap_or((&s, ""));
                json!({ "Fn::GetAtt": [res, attr] })
            }
            other => json!({ "Fn::GetAtt": other }),
        },
        other => Value::Object(Map::from_iter([(format!("Fn::{other}"), v)])),
    }
}

fn tag_name(tag: Option<Tag>) -> Option<String> {
    tag.filter(|t| t.handle == "!").map(|t| t.suffix)
}

impl Builder {
    fn push(&mut self, v: Value) {
        match self.stack.last_mut() {
            None => self.done = Some(v),
            Some((Value::Array(a), _, _)) => a.push(v),
            Some((Value::Object(m), _, key)) => match key.take() {
                None => match v {
                    Value::String(k) => *key = Some(k),
                    other => self.error = Some(format!("a mapping key that is not text: {other}")),
                },
                Some(k) => {
                    m.insert(k, v);
                }
            },
            Some(_) => self.error = Some("a value inside a scalar".into()),
        }
    }
}

impl EventReceiver for Builder {
    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Scalar(s, style, _, tag) => {
                let v = match (style, s.as_str()) {
                    (TScalarStyle::Plain, "true") => Value::Bool(true),
                    (TScalarStyle::Plain, "false") => Value::Bool(false),
                    (TScalarStyle::Plain, "" | "~" | "null") => Value::Null,
                    _ => Value::String(s),
                };
                let v = match tag_name(tag) {
                    Some(t) => intrinsic(&t, v),
                    None => v,
                };
                self.push(v);
            }
            Event::SequenceStart(_, tag) => {
                self.stack
                    .push((Value::Array(Vec::new()), tag_name(tag), None))
            }
            Event::MappingStart(_, tag) => {
                self.stack
                    .push((Value::Object(Map::new()), tag_name(tag), None))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((v, tag, _)) = self.stack.pop() {
                    let v = match tag {
                        Some(t) => intrinsic(&t, v),
                        None => v,
                    };
                    self.push(v);
                }
            }
            Event::Alias(_) => self.error = Some("YAML aliases are not supported".into()),
            _ => {}
        }
    }
}

/// Parses CloudFormation YAML into its JSON form, short tags kept as intrinsics (`!Sub`,
/// `!GetAtt`, `!Ref`, `!If` … become their `Fn::` forms): the one reader of the template
/// the simulator and the emulator share, so both see the same file the same way.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut b = Builder::default();
    Parser::new_from_str(text)
        .load(&mut b, false)
        .map_err(|e| e.to_string())?;
    if let Some(e) = b.error {
        return Err(e);
    }
    b.done.ok_or_else(|| "the file is empty".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The template's shape, cut to what the reader looks at.
    const NEW: &str = r#"
Parameters:
  Name: { Type: String, Default: vodpipe }
  SettingsFileWaitSeconds: { Type: Number, Default: 10, MinValue: 0, MaxValue: 30 }
  MaxWorkersPerTier:
    Type: Number
    Default: 20
    MinValue: 1
    MaxValue: 10000
  WarmWorkersPerTier: { Type: Number, Default: 0, MinValue: 0, MaxValue: 100 }
  IngestMaxConcurrency: { Type: Number, Default: 50, MinValue: 2, MaxValue: 1000 }
  StitchBatchSize: { Type: Number, Default: 10, MinValue: 1, MaxValue: 100 }
  StitchMaxConcurrency: { Type: Number, Default: 20, MinValue: 2, MaxValue: 1000 }
Globals:
  Function:
    Timeout: 60
    Environment:
      Variables:
        VODPIPE_MAX_WORKERS: !Ref MaxWorkersPerTier
        BUCKET: !Sub "${Name}-${AWS::AccountId}-ingest"
Resources:
  IngestQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 1800
      RedrivePolicy: { deadLetterTargetArn: !GetAtt IngestDlq.Arn, maxReceiveCount: 3 }
  StitchQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 720
      RedrivePolicy: { deadLetterTargetArn: !GetAtt StitchDlq.Arn, maxReceiveCount: 5 }
  IngestFunction:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 300
      Events:
        Uploads:
          Type: SQS
          Properties:
            Queue: !GetAtt IngestQueue.Arn
            BatchSize: 1
            ScalingConfig:
              MaximumConcurrency: !Ref IngestMaxConcurrency
  StitchFunction:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 120
      Events:
        StitchRequests:
          Type: SQS
          Properties:
            Queue: !GetAtt StitchQueue.Arn
            BatchSize: !Ref StitchBatchSize
            FunctionResponseTypes: [ReportBatchItemFailures]
            ScalingConfig: { MaximumConcurrency: !Ref StitchMaxConcurrency }
"#;

    fn overrides(pairs: &[&str]) -> BTreeMap<String, String> {
        parse_overrides(&pairs.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("overrides")
    }

    #[test]
    fn the_new_shape_reads_as_its_defaults() {
        let r = read_str(NEW, "t.yaml", &BTreeMap::new()).expect("reads");
        assert_eq!(r.notes, Vec::<String>::new());
        let d = r.deployment;
        assert_eq!((d.ingest.batch_size, d.ingest.max_concurrency), (1, 50));
        assert_eq!(d.ingest.timeout_secs, 300.0);
        assert_eq!(
            (d.ingest.visibility_secs, d.ingest.max_receives),
            (1800.0, 3)
        );
        assert_eq!((d.stitch.batch_size, d.stitch.max_concurrency), (10, 20));
        assert_eq!(d.stitch.timeout_secs, 120.0);
        assert_eq!(
            (d.stitch.visibility_secs, d.stitch.max_receives),
            (720.0, 5)
        );
        assert_eq!((d.max_workers_per_tier, d.warm_workers_per_tier), (20, 0));
        assert_eq!(d.settings_wait_secs, 10.0);
    }

    #[test]
    fn overrides_resolve_through_ref_and_are_checked_against_the_parameter() {
        let o = overrides(&[
            "StitchBatchSize=4",
            "StitchMaxConcurrency=40",
            "IngestMaxConcurrency=100",
            "WarmWorkersPerTier=2",
            "MaxWorkersPerTier=500",
            "Name=other",
        ]);
        let d = read_str(NEW, "t.yaml", &o).expect("reads").deployment;
        assert_eq!((d.stitch.batch_size, d.stitch.max_concurrency), (4, 40));
        assert_eq!(d.ingest.max_concurrency, 100);
        assert_eq!((d.max_workers_per_tier, d.warm_workers_per_tier), (500, 2));

        let e = read_str(NEW, "t.yaml", &overrides(&["MaxWorkersPerTier=1000000"]))
            .expect_err("above MaxValue");
        let msg = e.to_string();
        assert!(
            msg.contains("t.yaml") && msg.contains("MaxWorkersPerTier"),
            "{msg}"
        );
        assert!(msg.contains("MaxValue 10000"), "{msg}");
        let e = read_str(NEW, "t.yaml", &overrides(&["StitchBatchSize=ten"]))
            .expect_err("not a number");
        assert!(e.to_string().contains("StitchBatchSize"), "{e}");
        let e = read_str(NEW, "t.yaml", &overrides(&["Nonesuch=3"])).expect_err("unknown");
        assert!(
            e.to_string().contains("declares no parameter Nonesuch"),
            "{e}"
        );
        assert!(parse_overrides(&["novalue".to_string()]).is_err());
    }

    #[test]
    fn a_template_without_the_new_parameters_falls_back_with_notes() {
        // Today's shape: S3 invokes ingest directly; the stitch mapping is literal.
        let old = r#"
Parameters:
  MaxWorkersPerTier: { Type: Number, Default: 20, MinValue: 1, MaxValue: 10000 }
Globals: { Function: { Timeout: 60 } }
Resources:
  StitchQueue:
    Type: AWS::SQS::Queue
    Properties: { VisibilityTimeout: 720 }
  IngestFunction:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Upload: { Type: S3, Properties: { Bucket: !Ref IngestBucket, Events: "s3:ObjectCreated:*" } }
  StitchFunction:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        StitchRequests:
          Type: SQS
          Properties:
            Queue: !GetAtt StitchQueue.Arn
            BatchSize: 10
            ScalingConfig: { MaximumConcurrency: 5 }
"#;
        let r = read_str(old, "old.yaml", &BTreeMap::new()).expect("reads");
        let d = r.deployment;
        // Literal values are what the template deploys.
        assert_eq!((d.stitch.batch_size, d.stitch.max_concurrency), (10, 5));
        // The stitch function has no Timeout of its own: the Globals one.
        assert_eq!(d.stitch.timeout_secs, 60.0);
        // No redrive policy: messages come back until retention ends.
        assert_eq!(d.stitch.max_receives, u32::MAX);
        // No SQS mapping on ingest, no warm parameter: built-in defaults, each noted.
        assert_eq!(d.ingest.max_concurrency, 100);
        assert_eq!(d.warm_workers_per_tier, 0);
        let notes = r.notes.join("\n");
        assert!(notes.contains("old.yaml has no SQS event source on IngestFunction; using the built-in default IngestMaxConcurrency 100"), "{notes}");
        assert!(notes.contains("no parameter WarmWorkersPerTier"), "{notes}");
        // An override of a parameter the template lacks applies to the fallback...
        let r = read_str(
            old,
            "old.yaml",
            &overrides(&["IngestMaxConcurrency=80", "WarmWorkersPerTier=1"]),
        )
        .expect("reads");
        assert_eq!(r.deployment.ingest.max_concurrency, 80);
        assert_eq!(r.deployment.warm_workers_per_tier, 1);
        // ...but not to a value the template sets literally.
        let e = read_str(old, "old.yaml", &overrides(&["StitchMaxConcurrency=20"]))
            .expect_err("literal in the template");
        assert!(e.to_string().contains("old.yaml"), "{e}");
    }

    #[test]
    fn an_unresolvable_value_is_an_error_naming_it() {
        let t = NEW.replace(
            "BatchSize: !Ref StitchBatchSize",
            "BatchSize: !If [Big, 10, 1]",
        );
        let e = read_str(&t, "t.yaml", &BTreeMap::new()).expect_err("an expression");
        let msg = e.to_string();
        assert!(msg.contains("t.yaml: Resources.StitchFunction.Properties.Events.StitchRequests.Properties.BatchSize"), "{msg}");
        let e = read_str("a: [unclosed", "bad.yaml", &BTreeMap::new()).expect_err("bad yaml");
        assert!(
            e.to_string()
                .starts_with("bad.yaml: not a CloudFormation template"),
            "{e}"
        );
    }

    #[test]
    fn no_template_gives_the_built_in_defaults_and_takes_their_overrides() {
        let r = defaults_only(
            &overrides(&["WarmWorkersPerTier=2"]),
            "no infra/template.yaml",
        )
        .expect("defaults");
        assert_eq!(r.deployment.warm_workers_per_tier, 2);
        assert_eq!(r.deployment.stitch, Deployment::default().stitch);
        assert!(r.notes[0].contains("built-in defaults"), "{:?}", r.notes);
    }

    #[test]
    fn the_repository_template_reads() {
        // The real file: it reads without error and without a fallback to a built-in value.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
        let r = read(&path, &BTreeMap::new()).expect("the repository's template reads");
        let d = r.deployment;
        assert!(
            d.stitch.batch_size >= 1 && d.stitch.max_concurrency >= 2,
            "{d:?}"
        );
        assert!(d.max_workers_per_tier >= 1, "{d:?}");
        assert_eq!(r.notes, Vec::<String>::new(), "{d:?}");
        assert_eq!(d.ingest.batch_size, 1);
        assert_eq!(d.stitch.timeout_secs, 120.0);
    }
}
