//! `vodpipe aws doctor`: a read-only preflight of an account about to deploy vodpipe, or of
//! a deployed stack.
//!
//! A first deployment fails in ways the template cannot see: a new account's Fargate vCPU
//! quotas (6 On-Demand, 6 Spot: one 4-vCPU worker each), the ECS service-linked role a
//! cluster with capacity providers needs, a worker image never pushed, subnets with no way
//! to ECR and S3, a function deployed without its probe. Each check here reads, decides in
//! a pure function ([`quota`], [`network`]) and reports one line with OK, WARN or FAIL and,
//! for anything not OK, the command that fixes it. Nothing is changed.

pub mod checks;
pub mod ec2;
pub mod network;
pub mod quota;

use serde::Serialize;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// Nothing to do.
    Ok,
    /// Works, but not as configured (a quota below the fleet's cap) or not verifiable.
    Warn,
    /// Uploads will not be encoded until this is fixed.
    Fail,
}

impl Level {
    /// The word printed in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Short name of the check (`fargate-spot-vcpu`, `worker-image`, …).
    pub check: String,
    /// Outcome.
    pub level: Level,
    /// What was found, in words an operator can act on.
    pub detail: String,
    /// The command (or step) that fixes it; none when OK.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    /// A passed check.
    pub fn ok(check: &str, detail: impl Into<String>) -> Self {
        Finding {
            check: check.into(),
            level: Level::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    /// A warning with its fix.
    pub fn warn(check: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            check: check.into(),
            level: Level::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// A failure with its fix.
    pub fn fail(check: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            check: check.into(),
            level: Level::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every finding, in the order checked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The findings.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The worst level found (OK for an empty report).
    pub fn worst(&self) -> Level {
        self.findings
            .iter()
            .map(|f| f.level)
            .max()
            .unwrap_or(Level::Ok)
    }

    /// The report as aligned text lines, fixes indented under their finding.
    pub fn render(&self) -> String {
        let width = self
            .findings
            .iter()
            .map(|f| f.check.len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&format!(
                "{:<5} {:<width$}  {}\n",
                f.level.as_str(),
                f.check,
                f.detail
            ));
            if let Some(fix) = &f.fix {
                out.push_str(&format!("      {:<width$}  fix: {fix}\n", ""));
            }
        }
        out
    }
}

/// What to check.
#[derive(Debug, Clone)]
pub struct Options {
    /// The CloudFormation stack (`sam deploy`'s `stack_name`); absent: account checks only.
    pub stack: String,
    /// Worker tasks per tier to size the quota checks for; default: the stack's
    /// `MaxWorkersPerTier`, or the template's default of 20.
    pub max_workers: Option<u32>,
}

pub use checks::{fleet_environment, run};
