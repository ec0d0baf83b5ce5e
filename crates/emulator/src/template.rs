//! The SAM template as the emulated deployment reads it: YAML with CloudFormation's short
//! tags kept (`!Sub`, `!GetAtt`, `!Ref`, `!If` … become their `Fn::` JSON forms), and
//! intrinsics resolved to the emulator's names and ARNs.
//!
//! This is what lets the emulator run each function and task with exactly its template
//! role's statements ([`crate::iam`]): the policies are read from `infra/template.yaml`
//! itself, so a permission the code needs and the template lacks fails the emulated run,
//! not the first real deployment. A reference the resolver does not know (a new resource,
//! a new intrinsic) is an error, never a guess.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Parses a CloudFormation YAML template into its JSON form (the simulator's reader:
/// [`vodpipe_sim::template::parse`]).
pub fn parse(text: &str) -> Result<Value> {
    vodpipe_sim::template::parse(text).map_err(|e| anyhow!("template YAML: {e}"))
}

/// What the template's references resolve to in one deployment.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    /// Parameters and pseudo parameters (`Name`, `AWS::Region`, …) by name.
    pub refs: BTreeMap<String, String>,
    /// `Fn::GetAtt` values by `Resource.Attribute`.
    pub attrs: BTreeMap<String, String>,
    /// Conditions by name.
    pub conditions: BTreeMap<String, bool>,
}

impl Resolution {
    fn lookup(&self, name: &str) -> Result<String> {
        self.refs
            .get(name)
            .or_else(|| self.attrs.get(name))
            .cloned()
            .ok_or_else(|| anyhow!("the emulator does not know what {name} resolves to"))
    }
}

fn sub(template: &str, vars: &Map<String, Value>, ctx: &Resolution) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .with_context(|| format!("unclosed ${{ in {template:?}"))?;
        let name = &after[..end];
        match vars.get(name) {
            Some(Value::String(v)) => out.push_str(v),
            Some(other) => bail!("Fn::Sub variable {name} is not text: {other}"),
            None => out.push_str(&ctx.lookup(name)?),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `v` with every intrinsic function resolved under `ctx`.
pub fn resolve(v: &Value, ctx: &Resolution) -> Result<Value> {
    Ok(match v {
        Value::Array(a) => Value::Array(a.iter().map(|x| resolve(x, ctx)).collect::<Result<_>>()?),
        Value::Object(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next().context("one key")?;
            match k.as_str() {
                // A property or list entry CloudFormation leaves out.
                "Ref" if arg.as_str() == Some("AWS::NoValue") => Value::Null,
                "Ref" => Value::String(ctx.lookup(arg.as_str().context("Ref of a non-name")?)?),
                "Fn::GetAtt" => {
                    let parts: Vec<&str> = arg
                        .as_array()
                        .context("Fn::GetAtt takes [resource, attribute]")?
                        .iter()
                        .filter_map(Value::as_str)
                        .collect();
                    Value::String(ctx.lookup(&parts.join("."))?)
                }
                "Fn::Sub" => match arg {
                    Value::String(s) => Value::String(sub(s, &Map::new(), ctx)?),
                    Value::Array(a) if a.len() == 2 => {
                        let vars = match resolve(&a[1], ctx)? {
                            Value::Object(m) => m,
                            other => bail!("Fn::Sub variables are not a mapping: {other}"),
                        };
                        let s = a[0].as_str().context("Fn::Sub of a non-string")?;
                        Value::String(sub(s, &vars, ctx)?)
                    }
                    other => bail!("Fn::Sub of {other}"),
                },
                "Fn::Join" => {
                    let a = arg.as_array().context("Fn::Join takes [sep, list]")?;
                    let sep = a.first().and_then(Value::as_str).unwrap_or("");
                    let list = resolve(a.get(1).context("Fn::Join list")?, ctx)?;
                    let items: Vec<String> = list
                        .as_array()
                        .context("Fn::Join of a non-list")?
                        .iter()
                        .map(|x| x.as_str().unwrap_or_default().to_string())
                        .collect();
                    Value::String(items.join(sep))
                }
                "Fn::If" => {
                    let a = arg.as_array().context("Fn::If takes [condition, a, b]")?;
                    let name = a
                        .first()
                        .and_then(Value::as_str)
                        .context("Fn::If condition")?;
                    let holds = *ctx.conditions.get(name).with_context(|| {
                        format!("the emulator does not decide condition {name}")
                    })?;
                    resolve(
                        a.get(if holds { 1 } else { 2 }).context("Fn::If branch")?,
                        ctx,
                    )?
                }
                other if other.starts_with("Fn::") => {
                    bail!("the emulator does not resolve {other}")
                }
                _ => {
                    let mut out = Map::new();
                    for (k, x) in m {
                        out.insert(k.clone(), resolve(x, ctx)?);
                    }
                    Value::Object(out)
                }
            }
        }
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                out.insert(k.clone(), resolve(x, ctx)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// The statements of a SAM policy template (`SQSSendMessagePolicy: {QueueName: …}`), as
/// the SAM translator expands them; an unknown template is an error.
fn sam_policy_template(name: &str, params: &Value, ctx: &Resolution) -> Result<Vec<Value>> {
    let p = resolve(params, ctx)?;
    let arn = |service: &str, rest: String| {
        format!(
            "arn:aws:{service}:{}:{}:{rest}",
            ctx.refs.get("AWS::Region").map_or("", String::as_str),
            ctx.refs.get("AWS::AccountId").map_or("", String::as_str)
        )
    };
    match name {
        "SQSSendMessagePolicy" => {
            let queue = p["QueueName"]
                .as_str()
                .context("SQSSendMessagePolicy QueueName")?;
            Ok(vec![json!({
                "Effect": "Allow",
                "Action": ["sqs:SendMessage*"],
                "Resource": arn("sqs", queue.to_string()),
            })])
        }
        other => bail!("the emulator does not expand the SAM policy template {other}"),
    }
}

/// The statements a resource's code runs with: a function's `Policies` (inline documents
/// and SAM policy templates) or a role's `Policies[].PolicyDocument`, resolved.
pub fn statements(template: &Value, logical: &str, ctx: &Resolution) -> Result<Vec<Value>> {
    let props = &template["Resources"][logical]["Properties"];
    let policies = props["Policies"]
        .as_array()
        .with_context(|| format!("{logical} has no Policies"))?;
    let mut out = Vec::new();
    for p in policies {
        // A policy chosen by a condition (`!If [C, policy, !Ref AWS::NoValue]`).
        let chosen;
        let p = if p.get("Fn::If").is_some() {
            chosen = resolve(p, ctx)?;
            if chosen.is_null() {
                continue;
            }
            &chosen
        } else {
            p
        };
        let doc = if p.get("PolicyDocument").is_some() {
            &p["PolicyDocument"]
        } else {
            p
        };
        if let Some(st) = doc.get("Statement") {
            let st = resolve(st, ctx)?;
            match st {
                Value::Array(a) => out.extend(a),
                one => out.push(one),
            }
            continue;
        }
        let obj = p
            .as_object()
            .with_context(|| format!("{logical}: a policy that is not a mapping"))?;
        for (name, params) in obj {
            out.extend(sam_policy_template(name, params, ctx)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ctx() -> Resolution {
        let mut c = Resolution::default();
        c.refs.insert("Name".into(), "n".into());
        c.refs.insert("AWS::Region".into(), "us-east-1".into());
        c.attrs.insert("T.Arn".into(), "arn:t".into());
        c.conditions.insert("C".into(), false);
        c
    }

    #[test]
    fn short_tags_become_intrinsics_and_resolve() {
        let t = parse(
            "a: !Sub \"${Name}-x-${AWS::Region}\"\nb: !GetAtt T.Arn\nc: [!Ref Name, !If [C, yes, no]]\nd: !Sub [\"${V}/i\", {V: !GetAtt T.Arn}]\n",
        )
        .unwrap();
        assert_eq!(t["b"], json!({"Fn::GetAtt": ["T", "Arn"]}));
        let r = resolve(&t, &ctx()).unwrap();
        assert_eq!(r["a"], "n-x-us-east-1");
        assert_eq!(r["b"], "arn:t");
        assert_eq!(r["c"], json!(["n", "no"]));
        assert_eq!(r["d"], "arn:t/i");
    }

    #[test]
    fn an_unknown_reference_is_an_error_not_a_guess() {
        let t = parse("a: !GetAtt Missing.Arn\n").unwrap();
        assert!(resolve(&t, &ctx()).is_err());
        let t = parse("a: !FindInMap [M, k, v]\n").unwrap();
        assert!(resolve(&t, &ctx()).is_err());
    }

    #[test]
    fn every_role_of_the_template_resolves_without_placeholders() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
        let t = parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        let names = crate::iam::EmulatedNames::example();
        let ctx = names.context();
        for (principal, logical) in crate::iam::PRINCIPALS {
            let st = statements(&t, logical, &ctx).unwrap();
            assert!(!st.is_empty(), "{principal}");
            let text = serde_json::to_string(&st).unwrap();
            assert!(
                !text.contains("${") && !text.contains("Fn::"),
                "{principal}: {text}"
            );
        }
    }
}
