//! The reads behind each check: STS, IAM, Service Quotas, Lambda, CloudFormation, ECR and
//! EC2, all read-only. A read that fails is a finding (WARN, or FAIL where the answer
//! matters), never an abort: an operator gets every line at once.

use crate::ec2::Ec2;
use crate::network::{self, Route};
use crate::quota::{self, Pool};
use crate::{Finding, Options, Report};
use aws_config::SdkConfig;
use std::collections::HashMap;
use vodpipe_aws::config::Bridge;

/// The template's default `MaxWorkersPerTier`.
const DEFAULT_MAX_WORKERS: u32 = 20;

/// What the deployed stack says about itself.
#[derive(Debug, Default)]
struct Stack {
    status: String,
    parameters: HashMap<String, String>,
    outputs: HashMap<String, String>,
}

/// An SDK error in a line: the service's code and message when it answered, the
/// transport's reason otherwise.
fn err<E>(e: &aws_sdk_ecr::error::SdkError<E>) -> String
where
    E: aws_sdk_ecr::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_ecr::error::ProvideErrorMetadata;
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => aws_sdk_ecr::error::DisplayErrorContext(e)
            .to_string()
            .chars()
            .take(160)
            .collect(),
    }
}

fn read_stack(bridge: &Bridge, sdk: &SdkConfig, name: &str) -> Result<Option<Stack>, String> {
    let cf = aws_sdk_cloudformation::Client::new(sdk);
    let out = match bridge.run(cf.describe_stacks().stack_name(name).send()) {
        Ok(out) => out,
        Err(e) if format!("{e:?}").contains("does not exist") => return Ok(None),
        Err(e) => return Err(err(&e)),
    };
    let Some(s) = out.stacks().first() else {
        return Ok(None);
    };
    Ok(Some(Stack {
        status: s
            .stack_status()
            .map(|st| st.as_str().to_string())
            .unwrap_or_default(),
        parameters: s
            .parameters()
            .iter()
            .filter_map(|p| {
                Some((
                    p.parameter_key()?.to_string(),
                    p.parameter_value().unwrap_or_default().to_string(),
                ))
            })
            .collect(),
        outputs: s
            .outputs()
            .iter()
            .filter_map(|o| {
                Some((
                    o.output_key()?.to_string(),
                    o.output_value().unwrap_or_default().to_string(),
                ))
            })
            .collect(),
    }))
}

/// Runs every check that applies: the account's always, the stack's when it is deployed.
pub fn run(bridge: &Bridge, sdk: &SdkConfig, opts: &Options) -> Report {
    let mut r = Report::default();
    let (account, region) = match vodpipe_aws::config::caller_account(bridge, sdk) {
        Ok(a) => a,
        Err(e) => {
            r.findings.push(Finding::fail(
                "credentials",
                format!("no usable AWS credentials or Region: {e}"),
                "aws configure (or set AWS_PROFILE / AWS_REGION)",
            ));
            return r;
        }
    };
    r.findings.push(Finding::ok(
        "credentials",
        format!("account {account} in {region}"),
    ));
    let stack = match read_stack(bridge, sdk, &opts.stack) {
        Ok(Some(s)) => {
            r.findings.push(stack_status(&opts.stack, &s.status));
            Some(s)
        }
        Ok(None) => {
            r.findings.push(Finding::warn(
                "stack",
                format!(
                    "no stack {:?} in {region}: checking the account only",
                    opts.stack
                ),
                "sam build && sam deploy (or --stack NAME)",
            ));
            None
        }
        Err(e) => {
            r.findings.push(Finding::warn(
                "stack",
                format!("could not read stack {:?}: {e}", opts.stack),
                "aws cloudformation describe-stacks --stack-name ".to_string() + &opts.stack,
            ));
            None
        }
    };
    let max_workers = opts
        .max_workers
        .or_else(|| {
            stack
                .as_ref()
                .and_then(|s| s.parameters.get("MaxWorkersPerTier")?.parse().ok())
        })
        .unwrap_or(DEFAULT_MAX_WORKERS);

    r.findings.push(ecs_role(bridge, sdk));
    let vcpu = vodpipe_control::cost::WorkerSize::default().vcpu;
    let sq = aws_sdk_servicequotas::Client::new(sdk);
    for pool in [Pool::OnDemand, Pool::Spot] {
        let value = bridge
            .run(
                sq.get_service_quota()
                    .service_code("fargate")
                    .quota_code(pool.quota_code())
                    .send(),
            )
            .map_err(|e| err(&e))
            .and_then(|o| {
                o.quota()
                    .and_then(|q| q.value())
                    .ok_or_else(|| "no value in the answer".to_string())
            });
        r.findings
            .push(quota::fargate(pool, value, max_workers, vcpu));
    }
    let lambda = aws_sdk_lambda::Client::new(sdk);
    let concurrency = bridge
        .run(lambda.get_account_settings().send())
        .map_err(|e| err(&e))
        .and_then(|o| {
            o.account_limit()
                .map(|l| l.concurrent_executions())
                .ok_or_else(|| "no account limit in the answer".to_string())
        });
    let param = |k: &str| {
        stack
            .as_ref()
            .and_then(|s| s.parameters.get(k))
            .and_then(|v| v.parse::<i32>().ok())
    };
    let defaults = quota::FunctionConcurrency::default();
    let want = quota::FunctionConcurrency {
        ingest: param("IngestMaxConcurrency").unwrap_or(defaults.ingest),
        stitch: param("StitchMaxConcurrency").unwrap_or(defaults.stitch),
        reserved: stack
            .as_ref()
            .and_then(|s| s.parameters.get("ReserveConcurrency"))
            .is_some_and(|v| v == "yes"),
    };
    r.findings
        .push(quota::lambda_concurrency(concurrency, want));

    if let Some(stack) = &stack {
        let name = stack
            .parameters
            .get("Name")
            .cloned()
            .unwrap_or_else(|| opts.stack.clone());
        r.findings.push(worker_image(bridge, sdk, stack));
        let ingest_env = probe_layer(bridge, sdk, &name, &mut r);
        let public_ip = ingest_env.map(|env| {
            env.get("VODPIPE_ASSIGN_PUBLIC_IP")
                .is_some_and(|v| v.eq_ignore_ascii_case("enabled"))
        });
        match stack.outputs.get("WorkerSubnets") {
            Some(subnets) => r.findings.extend(subnets_reach(
                bridge,
                sdk,
                &subnets.split(',').map(str::to_string).collect::<Vec<_>>(),
                public_ip,
                &region,
            )),
            None => r.findings.push(Finding::warn(
                "network",
                "the stack has no WorkerSubnets output (deployed from an older template?)",
                "sam build && sam deploy",
            )),
        }
        if let Some(table) = stack.outputs.get("TableName") {
            r.findings.extend(worker_launches(sdk, table));
        }
    }
    r
}

/// Each tier's recorded failed launches (tasks that stopped with `TaskFailedToStart`,
/// RunTask refusals): while a tier has them, its work waits and the fleet backs off.
fn worker_launches(sdk: &SdkConfig, table: &str) -> Vec<Finding> {
    use vodpipe_control::ports::{JobStore, Tier};
    let jobs = match vodpipe_aws::config::Bridge::new() {
        Ok(b) => vodpipe_aws::dynamo::DynamoJobs::new(std::sync::Arc::new(b), sdk, table),
        Err(e) => return vec![Finding::warn("worker-launches", e.to_string(), "")],
    };
    Tier::ALL
        .into_iter()
        .map(|tier| {
            let check = format!("worker-launches {tier}");
            match jobs.launch_trouble(tier) {
                Ok(None) => Finding::ok(&check, "no failed launches"),
                Ok(Some(t)) => Finding::fail(
                    &check,
                    format!(
                        "{} launches in a row failed; the last: {}",
                        t.failures, t.reason
                    ),
                    "make worker-image (an image that cannot be pulled), or fix what the reason names; the next task that starts clears this",
                ),
                Err(e) => Finding::warn(&check, format!("cannot read {table}: {e}"), ""),
            }
        })
        .collect()
}

fn stack_status(name: &str, status: &str) -> Finding {
    if status.ends_with("_COMPLETE") && !status.contains("ROLLBACK") && !status.contains("DELETE") {
        Finding::ok("stack", format!("{name} is {status}"))
    } else if status.ends_with("_IN_PROGRESS") {
        Finding::warn(
            "stack",
            format!("{name} is {status}"),
            "wait for the deployment to finish, then run doctor again",
        )
    } else {
        Finding::fail(
            "stack",
            format!("{name} is {status}"),
            format!("aws cloudformation describe-stack-events --stack-name {name} (the first FAILED event says why)"),
        )
    }
}

fn ecs_role(bridge: &Bridge, sdk: &SdkConfig) -> Finding {
    let iam = aws_sdk_iam::Client::new(sdk);
    match bridge.run(iam.get_role().role_name("AWSServiceRoleForECS").send()) {
        Ok(_) => Finding::ok("ecs-service-linked-role", "AWSServiceRoleForECS exists"),
        Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_entity_exception()) => {
            Finding::fail(
                "ecs-service-linked-role",
                "AWSServiceRoleForECS is missing: a new account cannot create the cluster with Fargate capacity providers",
                "aws iam create-service-linked-role --aws-service-name ecs.amazonaws.com",
            )
        }
        Err(e) => Finding::warn(
            "ecs-service-linked-role",
            format!("could not read AWSServiceRoleForECS: {}", err(&e)),
            "aws iam get-role --role-name AWSServiceRoleForECS",
        ),
    }
}

fn worker_image(bridge: &Bridge, sdk: &SdkConfig, stack: &Stack) -> Finding {
    if let Some(image) = stack
        .parameters
        .get("WorkerImage")
        .filter(|i| !i.is_empty())
    {
        return Finding::warn(
            "worker-image",
            format!("the stack runs the image {image}, which is not checked"),
            "make sure it is an arm64 image built by scripts/worker-image.sh",
        );
    }
    let Some(uri) = stack.outputs.get("WorkerRepositoryUri") else {
        return Finding::warn(
            "worker-image",
            "the stack has no WorkerRepositoryUri output (deployed from an older template?)",
            "sam build && sam deploy",
        );
    };
    let repo = uri.split_once('/').map_or(uri.as_str(), |(_, r)| r);
    let tag = stack
        .parameters
        .get("WorkerImageTag")
        .cloned()
        .unwrap_or_else(|| "latest".into());
    let ecr = aws_sdk_ecr::Client::new(sdk);
    let id = aws_sdk_ecr::types::ImageIdentifier::builder()
        .image_tag(&tag)
        .build();
    match bridge.run(
        ecr.describe_images()
            .repository_name(repo)
            .image_ids(id)
            .send(),
    ) {
        Ok(out) if !out.image_details().is_empty() => {
            let d = &out.image_details()[0];
            let mb = d.image_size_in_bytes().unwrap_or(0) / 1_000_000;
            Finding::ok(
                "worker-image",
                format!("{uri}:{tag} is there ({mb} MB compressed)"),
            )
        }
        Ok(_) => missing_image(uri, &tag),
        Err(e)
            if e.as_service_error().is_some_and(|se| {
                se.is_image_not_found_exception() || se.is_repository_not_found_exception()
            }) =>
        {
            missing_image(uri, &tag)
        }
        Err(e) => Finding::warn(
            "worker-image",
            format!("could not read {uri}: {}", err(&e)),
            format!("aws ecr describe-images --repository-name {repo}"),
        ),
    }
}

fn missing_image(uri: &str, tag: &str) -> Finding {
    Finding::fail(
        "worker-image",
        format!("{uri}:{tag} does not exist: every worker task would fail to start"),
        "make worker-image",
    )
}

/// The environment of deployed stack `stack`'s fleet function (`<Name>-fleet`, Name being
/// the stack's parameter): the resources and fleet settings its tick runs with, for
/// `vodpipe aws tick --stack`.
pub fn fleet_environment(
    bridge: &Bridge,
    sdk: &SdkConfig,
    stack: &str,
) -> Result<HashMap<String, String>, String> {
    let s = read_stack(bridge, sdk, stack)?.ok_or_else(|| format!("no stack {stack}"))?;
    let name = s
        .parameters
        .get("Name")
        .cloned()
        .unwrap_or_else(|| stack.to_string());
    let function = format!("{name}-fleet");
    let out = bridge
        .run(
            aws_sdk_lambda::Client::new(sdk)
                .get_function_configuration()
                .function_name(&function)
                .send(),
        )
        .map_err(|e| format!("reading {function}: {}", err(&e)))?;
    Ok(out
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default())
}

/// Checks the ingest and fleet functions carry the probe layer; returns the ingest
/// function's environment (the fleet settings it launches tasks with), if it was read.
fn probe_layer(
    bridge: &Bridge,
    sdk: &SdkConfig,
    name: &str,
    r: &mut Report,
) -> Option<HashMap<String, String>> {
    let lambda = aws_sdk_lambda::Client::new(sdk);
    let mut ingest_env = None;
    for function in [format!("{name}-ingest"), format!("{name}-fleet")] {
        let check = format!("probe-layer {function}");
        match bridge.run(lambda.get_function().function_name(&function).send()) {
            Ok(out) => {
                let conf = out.configuration();
                let env: HashMap<String, String> = conf
                    .and_then(|c| c.environment())
                    .and_then(|e| e.variables())
                    .cloned()
                    .unwrap_or_default();
                let layers: Vec<String> = conf
                    .map(|c| c.layers())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|l| l.arn().map(str::to_string))
                    .collect();
                let probe = env
                    .get("VODPIPE_FFPROBE")
                    .cloned()
                    .unwrap_or_else(|| "ffprobe".into());
                r.findings
                    .push(if layers.iter().any(|l| l.contains("ffprobe")) {
                        Finding::ok(
                            &check,
                            format!("probes with {probe} from {}", layers.join(", ")),
                        )
                    } else {
                        Finding::fail(
                        &check,
                        "no ffprobe layer: every upload would wait for a probe that is not there",
                        "sam build && sam deploy (the template builds and attaches the layer)",
                    )
                    });
                if function.ends_with("-ingest") {
                    ingest_env = Some(env);
                }
            }
            Err(e) => r.findings.push(Finding::fail(
                &check,
                format!("cannot read the function: {}", err(&e)),
                "sam build && sam deploy",
            )),
        }
    }
    ingest_env
}

fn subnets_reach(
    bridge: &Bridge,
    sdk: &SdkConfig,
    subnets: &[String],
    public_ip: Option<bool>,
    region: &str,
) -> Vec<Finding> {
    let ec2 = Ec2::new(bridge, sdk);
    let fail_read = |e: String| {
        vec![Finding::warn(
            "network",
            format!("could not read the workers' network: {e}"),
            "aws ec2 describe-subnets --subnet-ids ".to_string() + &subnets.join(" "),
        )]
    };
    let found = match ec2.subnets(subnets) {
        Ok(f) => f,
        // EC2 refuses the whole call when any subnet is gone.
        Err(e) if e.contains("InvalidSubnetID.NotFound") => {
            return vec![Finding::fail(
                "network",
                format!("the stack's subnets do not all exist ({e})"),
                "sam deploy with existing SubnetIds, or VpcId empty for the stack's own VPC",
            )]
        }
        Err(e) => return fail_read(e),
    };
    let mut out = Vec::new();
    let mut vpcs: Vec<String> = Vec::new();
    for s in &found {
        let (tables, endpoints) = match (ec2.route_tables(&s.vpc), ec2.endpoint_services(&s.vpc)) {
            (Ok(t), Ok(e)) => (t, e),
            (Err(e), _) | (_, Err(e)) => return fail_read(e),
        };
        // The table associated with the subnet, else the VPC's main table.
        let table = tables
            .iter()
            .find(|t| t.subnets.contains(&s.id))
            .or_else(|| tables.iter().find(|t| t.main));
        let routes: &[Route] = table.map(|t| t.routes.as_slice()).unwrap_or_default();
        out.push(network::subnet_reach(
            &s.id, routes, &endpoints, public_ip, region,
        ));
        if !vpcs.contains(&s.vpc) {
            vpcs.push(s.vpc.clone());
            out.push(network::s3_gateway(&s.vpc, &endpoints, region));
        }
    }
    if found.len() < subnets.len() {
        out.push(Finding::fail(
            "network",
            format!(
                "{} of the stack's subnets do not exist",
                subnets.len() - found.len()
            ),
            "sam deploy with existing SubnetIds, or VpcId empty for the stack's own VPC",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Level;

    #[test]
    fn stack_states_map_to_levels() {
        assert_eq!(stack_status("v", "CREATE_COMPLETE").level, Level::Ok);
        assert_eq!(stack_status("v", "UPDATE_COMPLETE").level, Level::Ok);
        assert_eq!(stack_status("v", "UPDATE_IN_PROGRESS").level, Level::Warn);
        assert_eq!(stack_status("v", "ROLLBACK_COMPLETE").level, Level::Fail);
        assert_eq!(
            stack_status("v", "UPDATE_ROLLBACK_COMPLETE").level,
            Level::Fail
        );
    }
}
