//! Whether a worker task in a subnet can reach what it needs: ECR (the image), S3
//! (sources, outputs, image layers), SQS, DynamoDB, CloudWatch Logs and EventBridge.
//!
//! A task gets there through the subnet's default route (an internet gateway, which only
//! works with a public IP, or a NAT gateway), or through VPC endpoints: interface
//! endpoints for the API services and gateway endpoints for S3 and DynamoDB. The S3
//! gateway endpoint is worth having either way: it is free and carries most of the bytes.

use crate::Finding;

/// One route of a subnet's route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination CIDR (`0.0.0.0/0` for the default route) or prefix list.
    pub destination: String,
    /// Target id: `igw-…`, `nat-…`, `vpce-…`, `tgw-…`, `eni-…`, `local`.
    pub target: String,
}

/// Interface endpoints a task needs without a default route (service name suffixes).
pub const INTERFACE_ENDPOINTS: &[&str] = &["ecr.api", "ecr.dkr", "logs", "sqs", "events"];
/// Gateway endpoints a task needs without a default route.
pub const GATEWAY_ENDPOINTS: &[&str] = &["s3", "dynamodb"];

/// The endpoint services of `endpoints` (full names such as
/// `com.amazonaws.us-east-1.ecr.dkr`) that `wanted` lacks, by short name.
fn missing<'a>(wanted: &[&'a str], endpoints: &[String], region: &str) -> Vec<&'a str> {
    wanted
        .iter()
        .copied()
        .filter(|s| {
            let full = format!("com.amazonaws.{region}.{s}");
            !endpoints.contains(&full)
        })
        .collect()
}

/// Whether tasks in `subnet` reach AWS, given its routes, the VPC's endpoints and whether
/// tasks get a public IP (`None`: it could not be read).
pub fn subnet_reach(
    subnet: &str,
    routes: &[Route],
    endpoints: &[String],
    public_ip: Option<bool>,
    region: &str,
) -> Finding {
    let check = format!("subnet {subnet}");
    let default = routes.iter().find(|r| r.destination == "0.0.0.0/0");
    match default.map(|r| r.target.as_str()) {
        Some(t) if t.starts_with("igw-") && public_ip == Some(true) => Finding::ok(
            &check,
            format!("public: tasks get public IPs and route through {t}"),
        ),
        Some(t) if t.starts_with("igw-") && public_ip.is_none() => Finding::warn(
            &check,
            format!("routes through the internet gateway {t}; whether tasks get public IPs could not be read (the ingest function's VODPIPE_ASSIGN_PUBLIC_IP)"),
            "aws lambda get-function-configuration --function-name <Name>-ingest",
        ),
        Some(t) if t.starts_with("igw-") => Finding::fail(
            &check,
            format!("routes through the internet gateway {t}, but tasks get no public IP, so they cannot pull the image or reach S3"),
            "sam deploy --parameter-overrides AssignPublicIp=ENABLED (or use private subnets with a NAT gateway)",
        ),
        Some(t) if t.starts_with("nat-") => {
            Finding::ok(&check, format!("private, through the NAT gateway {t}"))
        }
        Some(t) => Finding::warn(
            &check,
            format!("the default route goes to {t}; make sure it reaches ECR, S3, SQS, DynamoDB, CloudWatch Logs and EventBridge"),
            "aws ec2 describe-route-tables --filters Name=association.subnet-id,Values=".to_string() + subnet,
        ),
        None => {
            let mut lacking = missing(INTERFACE_ENDPOINTS, endpoints, region);
            lacking.extend(missing(GATEWAY_ENDPOINTS, endpoints, region));
            if lacking.is_empty() {
                Finding::ok(&check, "private, with VPC endpoints for every service the workers use")
            } else {
                Finding::fail(
                    &check,
                    format!(
                        "no default route and no VPC endpoint for {}: tasks cannot start or work",
                        lacking.join(", ")
                    ),
                    "add a NAT gateway route, or the endpoints (interface: ecr.api, ecr.dkr, logs, sqs, events; gateway: s3, dynamodb), or deploy with the stack's own VPC (VpcId empty)",
                )
            }
        }
    }
}

/// Whether the VPC has an S3 gateway endpoint (free; without it every source read, segment
/// write and image layer goes through the internet or NAT gateway).
pub fn s3_gateway(vpc: &str, endpoints: &[String], region: &str) -> Finding {
    if missing(&["s3"], endpoints, region).is_empty() {
        Finding::ok("s3-gateway-endpoint", format!("{vpc} has one"))
    } else {
        Finding::warn(
            "s3-gateway-endpoint",
            format!("{vpc} has no S3 gateway endpoint: video bytes go through the internet or NAT gateway (NAT charges per GB)"),
            "sam deploy --parameter-overrides RouteTableIds=<the subnets' route tables> (the stack adds S3 and DynamoDB gateway endpoints)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Level;

    fn route(d: &str, t: &str) -> Route {
        Route {
            destination: d.into(),
            target: t.into(),
        }
    }

    #[test]
    fn a_public_subnet_needs_public_ips() {
        let routes = [route("10.0.0.0/16", "local"), route("0.0.0.0/0", "igw-1")];
        assert_eq!(
            subnet_reach("s", &routes, &[], Some(true), "us-east-1").level,
            Level::Ok
        );
        let f = subnet_reach("s", &routes, &[], Some(false), "us-east-1");
        assert_eq!(f.level, Level::Fail);
        assert!(f.fix.unwrap().contains("AssignPublicIp=ENABLED"));
    }

    #[test]
    fn a_nat_gateway_is_enough() {
        let routes = [route("0.0.0.0/0", "nat-1")];
        assert_eq!(
            subnet_reach("s", &routes, &[], Some(false), "eu-west-1").level,
            Level::Ok
        );
    }

    #[test]
    fn an_isolated_subnet_needs_every_endpoint() {
        let region = "us-east-1";
        let all: Vec<String> = INTERFACE_ENDPOINTS
            .iter()
            .chain(GATEWAY_ENDPOINTS)
            .map(|s| format!("com.amazonaws.{region}.{s}"))
            .collect();
        assert_eq!(
            subnet_reach("s", &[], &all, Some(false), region).level,
            Level::Ok
        );
        let some: Vec<String> = all
            .iter()
            .filter(|e| !e.ends_with(".ecr.dkr"))
            .cloned()
            .collect();
        let f = subnet_reach("s", &[], &some, Some(false), region);
        assert_eq!(f.level, Level::Fail);
        assert!(f.detail.contains("ecr.dkr"), "{}", f.detail);
    }

    #[test]
    fn the_s3_gateway_endpoint_is_looked_for_by_service_name() {
        let e = vec!["com.amazonaws.us-east-1.s3".to_string()];
        assert_eq!(s3_gateway("vpc-1", &e, "us-east-1").level, Level::Ok);
        assert_eq!(s3_gateway("vpc-1", &e, "eu-west-1").level, Level::Warn);
    }
}
