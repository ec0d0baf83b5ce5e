//! SigV4 for SPEKE: a key server behind API Gateway with IAM authorisation (AWS's
//! reference SPEKE server, and how MediaConvert reaches one) takes requests signed for
//! `execute-api`. The worker signs with its task role's credentials, or with a role it
//! assumes for the purpose (`VODPIPE_SPEKE_ROLE_ARN`, the template's `SpekeRoleArn`).

use crate::config::Bridge;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use std::sync::Arc;
use std::time::SystemTime;
use vodpipe_control::keys::speke::RequestSigner;

/// Signs SPEKE requests with SigV4 for `execute-api`.
pub struct SpekeSigner {
    bridge: Arc<Bridge>,
    credentials: SharedCredentialsProvider,
    region: String,
}

impl SpekeSigner {
    /// A signer with the SDK's credentials, or `role_arn`'s when given (assumed through
    /// STS, refreshed as they expire).
    pub fn new(bridge: Arc<Bridge>, role_arn: Option<&str>) -> Result<SpekeSigner, String> {
        let sdk = bridge.sdk_config();
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into());
        let credentials = match role_arn {
            Some(role) => SharedCredentialsProvider::new(
                bridge.run(
                    aws_config::sts::AssumeRoleProvider::builder(role)
                        .session_name("vodpipe-speke")
                        .configure(&sdk)
                        .build(),
                ),
            ),
            None => sdk
                .credentials_provider()
                .ok_or("no AWS credentials to sign SPEKE requests with")?,
        };
        Ok(SpekeSigner {
            bridge,
            credentials,
            region,
        })
    }
}

/// The region an API Gateway URL names (`https://ID.execute-api.REGION.amazonaws.com/…`).
fn url_region(url: &str) -> Option<String> {
    let host = url.split('/').nth(2)?;
    let mut parts = host.split('.');
    let (_, api, region) = (parts.next()?, parts.next()?, parts.next()?);
    (api == "execute-api").then(|| region.to_string())
}

impl RequestSigner for SpekeSigner {
    fn sign(
        &self,
        url: &str,
        headers: &mut Vec<(String, String)>,
        body: &[u8],
    ) -> Result<(), String> {
        let creds = self
            .bridge
            .run(self.credentials.provide_credentials())
            .map_err(|e| format!("credentials: {e}"))?;
        let identity = creds.into();
        let region = url_region(url).unwrap_or_else(|| self.region.clone());
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&region)
            .name("execute-api")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let request = SignableRequest::new(
            "POST",
            url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(request, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        let (signed, _) = instructions.into_parts();
        for h in signed {
            headers.push((h.name().to_string(), h.value().to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_gateway_url_names_its_region() {
        assert_eq!(
            url_region("https://abc123.execute-api.eu-west-1.amazonaws.com/prod/speke/v2")
                .as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(url_region("https://keys.example.com/speke"), None);
    }
}
