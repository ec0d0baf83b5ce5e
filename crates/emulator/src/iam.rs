//! Permissions as code: each function and worker task of the emulated deployment signs its
//! calls with credentials of a role that holds exactly its statements from
//! `infra/template.yaml`, resolved to the emulated ARNs ([`crate::template`]).
//!
//! The roles are made as CloudFormation would make them (`iam:CreateRole`,
//! `iam:PutRolePolicy`), their credentials taken with `sts:AssumeRole`, and the emulator's
//! front door (`scripts/aws_front.py`) then checks every call an assumed role makes against
//! that role's policies with AWS's evaluation rules. A call the template does not allow is
//! refused as AWS would refuse it and recorded; the run reports it and fails.

use crate::template::{self, Resolution};
use anyhow::{Context as _, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use vodpipe_aws::config::{AwsSettings, Bridge};
use vodpipe_control::ports::Queue;

/// The principals of a deployment and the template resources their statements come from.
pub const PRINCIPALS: [(&str, &str); 4] = [
    ("ingest", "IngestFunction"),
    ("stitch", "StitchFunction"),
    ("fleet", "FleetFunction"),
    ("worker", "WorkerTaskRole"),
];

/// The names and ARNs the template's references resolve to on the emulator.
#[derive(Debug, Clone)]
pub struct EmulatedNames {
    /// Buckets, table and queues.
    pub settings: AwsSettings,
    /// The `Name` parameter.
    pub name: String,
    /// Account.
    pub account: String,
    /// Region.
    pub region: String,
    /// The ECS cluster's name.
    pub cluster: String,
    /// The CloudFront distribution's id.
    pub distribution: String,
}

/// Credentials of one assumed role.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret: String,
    /// `AWS_SESSION_TOKEN`.
    pub token: String,
}

impl Credentials {
    /// An SDK configuration signing with these (endpoint and Region from the environment).
    pub fn sdk_config(&self, bridge: &Bridge) -> aws_config::SdkConfig {
        bridge.sdk_config_as(aws_sdk_sts::config::Credentials::new(
            &self.access_key,
            &self.secret,
            Some(self.token.clone()),
            None,
            "vodpipe-emulator",
        ))
    }

    /// The environment that makes the SDK sign with these.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret.clone()),
            ("AWS_SESSION_TOKEN".into(), self.token.clone()),
        ]
    }
}

impl EmulatedNames {
    /// A role's name in this deployment.
    pub fn role_name(&self, principal: &str) -> String {
        format!("{}-{principal}", self.name)
    }

    /// A role's ARN in this deployment.
    pub fn role_arn(&self, principal: &str) -> String {
        format!(
            "arn:aws:iam::{}:role/{}",
            self.account,
            self.role_name(principal)
        )
    }

    /// The ingest function's dead-letter queue (the template's `IngestEventsDlq`).
    pub fn ingest_events_dlq(&self) -> String {
        format!("{}-ingest-events-dlq", self.name)
    }

    /// What every reference of the template's roles resolves to.
    pub fn context(&self) -> Resolution {
        let mut c = Resolution::default();
        let (r, a) = (self.region.as_str(), self.account.as_str());
        for (k, v) in [
            ("Name", self.name.clone()),
            ("AWS::Partition", "aws".to_string()),
            ("AWS::Region", r.to_string()),
            ("AWS::AccountId", a.to_string()),
            ("Distribution", self.distribution.clone()),
            ("Cluster", self.cluster.clone()),
            ("IngestBucket", self.settings.ingest_bucket.clone()),
            ("OutputBucket", self.settings.output_bucket.clone()),
            ("JobsTable", self.settings.table.clone()),
        ] {
            c.refs.insert(k.into(), v);
        }
        let queue_arn = |q: &str| format!("arn:aws:sqs:{r}:{a}:{q}");
        let logical = |q: Queue| match q {
            Queue::Work(t) => {
                let s = t.as_str();
                let mut c = s.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
            Queue::Stitch => "Stitch".into(),
        };
        for q in AwsSettings::queues() {
            let l = logical(q);
            for (suffix, name) in [
                ("Queue", self.settings.queue_name(q)),
                ("Dlq", self.settings.dlq_name(q)),
            ] {
                c.attrs.insert(format!("{l}{suffix}.Arn"), queue_arn(&name));
                c.attrs.insert(format!("{l}{suffix}.QueueName"), name);
            }
        }
        let dlq = self.ingest_events_dlq();
        c.attrs
            .insert("IngestEventsDlq.Arn".into(), queue_arn(&dlq));
        c.attrs.insert("IngestEventsDlq.QueueName".into(), dlq);
        let uploads = self.settings.ingest_events_queue_name();
        c.attrs
            .insert("IngestEventsQueue.Arn".into(), queue_arn(&uploads));
        c.attrs
            .insert("IngestEventsQueue.QueueName".into(), uploads);
        c.attrs.insert(
            "JobsTable.Arn".into(),
            format!("arn:aws:dynamodb:{r}:{a}:table/{}", self.settings.table),
        );
        c.attrs.insert(
            "Cluster.Arn".into(),
            format!("arn:aws:ecs:{r}:{a}:cluster/{}", self.cluster),
        );
        c.attrs
            .insert("WorkerTaskRole.Arn".into(), self.role_arn("worker"));
        c.attrs.insert(
            "WorkerExecutionRole.Arn".into(),
            self.role_arn("worker-execution"),
        );
        c.conditions.insert("HasWorkerImage".into(), false);
        c.conditions.insert("OwnNetwork".into(), false);
        // The emulated deployment's workers sign key server requests with their own role.
        c.conditions.insert("HasSpekeRole".into(), false);
        c
    }

    /// Names of a deployment `n` in moto's account, for tests.
    pub fn example() -> Self {
        EmulatedNames {
            settings: AwsSettings::for_name("n", "123456789012", "us-east-1"),
            name: "n".into(),
            account: "123456789012".into(),
            region: "us-east-1".into(),
            cluster: "n".into(),
            distribution: "E123".into(),
        }
    }
}

/// The policy document each principal's role holds, from the template.
pub fn policies(template_text: &str, names: &EmulatedNames) -> Result<BTreeMap<String, Value>> {
    let t = template::parse(template_text)?;
    let ctx = names.context();
    let mut out = BTreeMap::new();
    for (principal, logical) in PRINCIPALS {
        let statements = template::statements(&t, logical, &ctx)
            .with_context(|| format!("the statements of {logical}"))?;
        out.insert(
            principal.to_string(),
            json!({"Version": "2012-10-17", "Statement": statements}),
        );
    }
    Ok(out)
}

/// Makes role `role` in `account`, assumable by the account, holding `policy` (none:
/// a role only named, as RunTask's PassRole names the execution role); returns its
/// credentials, valid twelve hours. Runs with the emulator's own credentials.
pub fn make_role(
    bridge: &Bridge,
    sdk: &aws_config::SdkConfig,
    account: &str,
    role: &str,
    policy: Option<&Value>,
) -> Result<Credentials> {
    let iam = aws_sdk_iam::Client::new(sdk);
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{account}:root")}, "Action": "sts:AssumeRole"}],
    });
    bridge
        .run(
            iam.create_role()
                .role_name(role)
                .assume_role_policy_document(trust.to_string())
                .max_session_duration(43_200)
                .send(),
        )
        .with_context(|| format!("creating role {role}"))?;
    if let Some(doc) = policy {
        bridge
            .run(
                iam.put_role_policy()
                    .role_name(role)
                    .policy_name("policy")
                    .policy_document(doc.to_string())
                    .send(),
            )
            .with_context(|| format!("putting the policy on {role}"))?;
    }
    let assumed = bridge
        .run(
            aws_sdk_sts::Client::new(sdk)
                .assume_role()
                .role_arn(format!("arn:aws:iam::{account}:role/{role}"))
                .role_session_name(format!("emulated-{role}"))
                .duration_seconds(43_200)
                .send(),
        )
        .with_context(|| format!("assuming {role}"))?;
    let c = assumed
        .credentials()
        .with_context(|| format!("no credentials for {role}"))?;
    Ok(Credentials {
        access_key: c.access_key_id().to_string(),
        secret: c.secret_access_key().to_string(),
        token: c.session_token().to_string(),
    })
}

/// Makes each principal's role from the template (and the worker's execution role, which
/// RunTask passes) and returns each principal's credentials.
pub fn create_roles(
    bridge: &Bridge,
    sdk: &aws_config::SdkConfig,
    names: &EmulatedNames,
    template_text: &str,
) -> Result<BTreeMap<String, Credentials>> {
    let docs = policies(template_text, names)?;
    // The execution role is Fargate's (image pulls, logs); only RunTask's PassRole names it.
    make_role(
        bridge,
        sdk,
        &names.account,
        &names.role_name("worker-execution"),
        None,
    )?;
    docs.into_iter()
        .map(|(principal, doc)| {
            let role = names.role_name(&principal);
            Ok((
                principal,
                make_role(bridge, sdk, &names.account, &role, Some(&doc))?,
            ))
        })
        .collect()
}

/// The refusals the front door recorded, one line each (`role: message`).
pub fn denials(report: &Value) -> Vec<String> {
    report["denials"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    format!(
                        "{}: {}",
                        d["role"].as_str().unwrap_or("?"),
                        d["message"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn template_text() -> String {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn each_principal_gets_its_own_statements_resolved_to_the_emulated_arns() {
        let p = policies(&template_text(), &EmulatedNames::example()).unwrap();
        let text = |k: &str| p[k].to_string();
        assert!(text("worker").contains("arn:aws:dynamodb:us-east-1:123456789012:table/n-jobs"));
        assert!(text("stitch").contains("cloudfront:CreateInvalidation"));
        assert!(text("stitch").contains("distribution/E123"));
        // The upload queue, whose failed and deferred uploads ingest delays.
        assert!(text("ingest").contains("arn:aws:sqs:us-east-1:123456789012:n-ingest-events\""));
        assert!(!text("worker").contains("cloudfront"));
    }

    /// Actions that look like IAM actions and are not: a statement naming one grants
    /// nothing (DynamoDB authorises a transaction item by item).
    const NOT_IAM_ACTIONS: &[&str] = &["dynamodb:TransactWriteItems", "dynamodb:TransactGetItems"];

    #[test]
    fn no_role_names_an_action_iam_does_not_have() {
        let p = policies(&template_text(), &EmulatedNames::example()).unwrap();
        for (principal, doc) in &p {
            for bad in NOT_IAM_ACTIONS {
                assert!(!doc.to_string().contains(bad), "{principal} names {bad}");
            }
        }
    }
}
