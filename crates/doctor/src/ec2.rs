//! The three EC2 reads the network check needs (`DescribeSubnets`, `DescribeRouteTables`,
//! `DescribeVpcEndpoints`), over EC2's query API.
//!
//! Why not `aws-sdk-ec2`: it is the largest crate of the AWS SDK (measured here: a 1.4 GB
//! rlib and four minutes to compile on two cores, for three read calls), which every test
//! and CI run would pay. The query API is a signed GET with form parameters and an XML
//! answer: signing is `aws-sigv4` (the SDK's own signer, with the SDK's credentials and
//! Region), the answer is read with `roxmltree`.

use crate::network::Route;
use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use std::time::{Duration, SystemTime};
use vodpipe_aws::config::Bridge;

/// EC2's query API version.
const VERSION: &str = "2016-11-15";

/// A subnet and its VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    /// `subnet-…`
    pub id: String,
    /// `vpc-…`
    pub vpc: String,
}

/// A route table: the subnets explicitly associated with it, whether it is its VPC's main
/// table (used by subnets with no association), and its routes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteTable {
    /// Associated subnets.
    pub subnets: Vec<String>,
    /// The VPC's main table.
    pub main: bool,
    /// Its routes.
    pub routes: Vec<Route>,
}

/// A signed EC2 query client on the SDK's configuration.
pub struct Ec2<'a> {
    bridge: &'a Bridge,
    sdk: &'a SdkConfig,
    agent: ureq::Agent,
}

fn encode(s: &str) -> String {
    // RFC 3986 unreserved characters stay; everything else is percent-encoded, as SigV4's
    // canonical query string requires.
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl<'a> Ec2<'a> {
    /// A client with the SDK's credentials, Region and endpoint (`AWS_ENDPOINT_URL`).
    pub fn new(bridge: &'a Bridge, sdk: &'a SdkConfig) -> Self {
        Ec2 {
            bridge,
            sdk,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .build(),
        }
    }

    /// One query action; the answer's XML text.
    fn call(&self, action: &str, params: &[(String, String)]) -> Result<String, String> {
        let region = self
            .sdk
            .region()
            .map(|r| r.to_string())
            .ok_or("no AWS Region configured")?;
        let base = self
            .sdk
            .endpoint_url()
            .map(|e| e.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("https://ec2.{region}.amazonaws.com"));
        let mut query: Vec<(String, String)> = vec![
            ("Action".into(), action.into()),
            ("Version".into(), VERSION.into()),
        ];
        query.extend(params.iter().cloned());
        query.sort();
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let url = format!("{base}/?{}", qs.join("&"));
        let creds = self.bridge.run(async {
            match self.sdk.credentials_provider() {
                Some(p) => p.provide_credentials().await.map_err(|e| e.to_string()),
                None => Err("no AWS credentials configured".to_string()),
            }
        })?;
        let identity = creds.into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(aws_sigv4::http_request::SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let host = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split('/').next())
            .unwrap_or_default()
            .to_string();
        let signable = aws_sigv4::http_request::SignableRequest::new(
            "GET",
            &url,
            [("host", host.as_str())].into_iter(),
            aws_sigv4::http_request::SignableBody::Bytes(&[]),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = aws_sigv4::http_request::sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        let mut req = self.agent.get(&url);
        for (name, value) in instructions.headers() {
            req = req.set(name, value);
        }
        match req.call() {
            Ok(resp) => resp.into_string().map_err(|e| e.to_string()),
            Err(ureq::Error::Status(code, resp)) => {
                let body = resp.into_string().unwrap_or_default();
                let doc = roxmltree::Document::parse(&body).ok();
                let text = |tag: &str| {
                    doc.as_ref().and_then(|d| {
                        d.descendants()
                            .find(|n| n.has_tag_name(tag))
                            .and_then(|n| n.text().map(str::to_string))
                    })
                };
                Err(format!(
                    "EC2 {action}: HTTP {code}: {}: {}",
                    text("Code").unwrap_or_default(),
                    text("Message").unwrap_or(body.clone())
                ))
            }
            Err(e) => Err(format!("EC2 {action}: {e}")),
        }
    }

    /// The given subnets (those that exist).
    pub fn subnets(&self, ids: &[String]) -> Result<Vec<Subnet>, String> {
        let params: Vec<(String, String)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (format!("SubnetId.{}", i + 1), id.clone()))
            .collect();
        parse_subnets(&self.call("DescribeSubnets", &params)?)
    }

    /// Every route table of `vpc`.
    pub fn route_tables(&self, vpc: &str) -> Result<Vec<RouteTable>, String> {
        parse_route_tables(&self.call("DescribeRouteTables", &by_vpc(vpc))?)
    }

    /// The service names of `vpc`'s working endpoints (`com.amazonaws.<region>.s3`, …).
    pub fn endpoint_services(&self, vpc: &str) -> Result<Vec<String>, String> {
        parse_endpoint_services(&self.call("DescribeVpcEndpoints", &by_vpc(vpc))?)
    }
}

fn by_vpc(vpc: &str) -> Vec<(String, String)> {
    vec![
        ("Filter.1.Name".into(), "vpc-id".into()),
        ("Filter.1.Value.1".into(), vpc.into()),
    ]
}

fn child_text(node: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    node.children()
        .find(|c| c.has_tag_name(name))
        .and_then(|c| c.text())
        .map(str::to_string)
}

/// The `item`s directly under the child `set` of `node`.
fn items<'a, 'i>(node: roxmltree::Node<'a, 'i>, set: &str) -> Vec<roxmltree::Node<'a, 'i>> {
    node.children()
        .find(|c| c.has_tag_name(set))
        .map(|s| s.children().filter(|c| c.has_tag_name("item")).collect())
        .unwrap_or_default()
}

fn root<'a>(doc: &'a roxmltree::Document<'a>) -> roxmltree::Node<'a, 'a> {
    doc.root_element()
}

/// `DescribeSubnets` → subnets.
pub fn parse_subnets(xml: &str) -> Result<Vec<Subnet>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| e.to_string())?;
    Ok(items(root(&doc), "subnetSet")
        .into_iter()
        .filter_map(|s| {
            Some(Subnet {
                id: child_text(s, "subnetId")?,
                vpc: child_text(s, "vpcId")?,
            })
        })
        .collect())
}

/// `DescribeVpcEndpoints` → the services of the endpoints that work for a task: available,
/// and for interface endpoints with private DNS (so the service's usual host name reaches
/// it).
pub fn parse_endpoint_services(xml: &str) -> Result<Vec<String>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| e.to_string())?;
    Ok(items(root(&doc), "vpcEndpointSet")
        .into_iter()
        .filter(|e| {
            let state = child_text(*e, "state")
                .unwrap_or_default()
                .to_ascii_lowercase();
            let interface = child_text(*e, "vpcEndpointType").as_deref() == Some("Interface");
            let dns = child_text(*e, "privateDnsEnabled").as_deref() == Some("true");
            state == "available" && (!interface || dns)
        })
        .filter_map(|e| child_text(e, "serviceName"))
        .collect())
}

/// `DescribeRouteTables` → route tables.
pub fn parse_route_tables(xml: &str) -> Result<Vec<RouteTable>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| e.to_string())?;
    Ok(items(root(&doc), "routeTableSet")
        .into_iter()
        .map(|t| {
            let assoc = items(t, "associationSet");
            RouteTable {
                subnets: assoc
                    .iter()
                    .filter_map(|a| child_text(*a, "subnetId"))
                    .collect(),
                main: assoc
                    .iter()
                    .any(|a| child_text(*a, "main").as_deref() == Some("true")),
                routes: items(t, "routeSet")
                    .into_iter()
                    // A blackhole route (its NAT gateway deleted, say) carries nothing.
                    .filter(|r| child_text(*r, "state").as_deref() != Some("blackhole"))
                    .map(|r| Route {
                        destination: child_text(r, "destinationCidrBlock")
                            .or_else(|| child_text(r, "destinationPrefixListId"))
                            .unwrap_or_default(),
                        target: [
                            "gatewayId",
                            "natGatewayId",
                            "transitGatewayId",
                            "networkInterfaceId",
                            "vpcPeeringConnectionId",
                        ]
                        .iter()
                        .find_map(|k| child_text(r, k))
                        .unwrap_or_default(),
                    })
                    .collect(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded_as_sigv4_wants() {
        assert_eq!(encode("vpc-0a1b"), "vpc-0a1b");
        assert_eq!(encode("a b/c=d"), "a%20b%2Fc%3Dd");
    }

    #[test]
    fn only_working_endpoints_count() {
        let xml = r#"<DescribeVpcEndpointsResponse><vpcEndpointSet>
          <item><serviceName>com.amazonaws.r.s3</serviceName><vpcEndpointType>Gateway</vpcEndpointType><state>available</state></item>
          <item><serviceName>com.amazonaws.r.sqs</serviceName><vpcEndpointType>Interface</vpcEndpointType><state>available</state><privateDnsEnabled>false</privateDnsEnabled></item>
          <item><serviceName>com.amazonaws.r.logs</serviceName><vpcEndpointType>Interface</vpcEndpointType><state>available</state><privateDnsEnabled>true</privateDnsEnabled></item>
          <item><serviceName>com.amazonaws.r.events</serviceName><vpcEndpointType>Interface</vpcEndpointType><state>pending</state><privateDnsEnabled>true</privateDnsEnabled></item>
        </vpcEndpointSet></DescribeVpcEndpointsResponse>"#;
        assert_eq!(
            parse_endpoint_services(xml).unwrap(),
            ["com.amazonaws.r.s3", "com.amazonaws.r.logs"]
        );
    }

    #[test]
    fn route_tables_parse_from_the_query_answer() {
        let xml = r#"<DescribeRouteTablesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
          <routeTableSet><item><routeTableId>rtb-1</routeTableId>
            <associationSet><item><main>true</main></item>
              <item><subnetId>subnet-a</subnetId><main>false</main></item></associationSet>
            <routeSet><item><destinationCidrBlock>10.0.0.0/16</destinationCidrBlock><gatewayId>local</gatewayId></item>
              <item><destinationCidrBlock>0.0.0.0/0</destinationCidrBlock><natGatewayId>nat-9</natGatewayId></item>
              <item><destinationCidrBlock>0.0.0.0/0</destinationCidrBlock><natGatewayId>nat-8</natGatewayId><state>blackhole</state></item>
              <item><destinationPrefixListId>pl-63a5400a</destinationPrefixListId><gatewayId>vpce-1</gatewayId></item></routeSet>
          </item></routeTableSet></DescribeRouteTablesResponse>"#;
        let t = parse_route_tables(xml).unwrap();
        assert_eq!(t.len(), 1);
        assert!(t[0].main);
        assert_eq!(t[0].subnets, ["subnet-a"]);
        assert_eq!(
            t[0].routes[1],
            Route {
                destination: "0.0.0.0/0".into(),
                target: "nat-9".into()
            }
        );
        assert_eq!(t[0].routes[2].target, "vpce-1");
    }
}
