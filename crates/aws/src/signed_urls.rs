//! CloudFront signed URLs and signed cookies: what a private distribution (trusted key
//! groups) asks of every request.
//!
//! The format is CloudFront's documented one ("Create a signed URL using a canned
//! policy", "… using a custom policy", "Set signed cookies …"):
//!
//! - **The policy** is a JSON statement with no whitespace:
//!   `{"Statement":[{"Resource":"<url>","Condition":{"DateLessThan":{"AWS:EpochTime":<t>}}}]}`.
//!   A canned policy names one URL and is not sent. A custom policy may name a wildcard
//!   resource (`https://d…/asset/*`) and is sent base64-encoded as `Policy`.
//! - **The signature** is RSA PKCS#1 v1.5 over the policy's bytes, here with SHA-256
//!   (`Hash-Algorithm=SHA256`). CloudFront also takes SHA-1, which `ring` does not sign.
//! - **The encoding** is base64 with `+`, `=` and `/` replaced by `-`, `_` and `~`.
//!
//! A streaming asset is many files (playlists, init segments, segments), so what
//! `vodpipe aws sign` gives a player is a custom policy over the asset's directory. It is
//! sent as a query string on every request (players append it) or as the three cookies.

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};

/// Why a signer could not be made or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The private key file is not a PEM RSA key.
    #[error("the private key is not a PEM RSA private key (PKCS#1 or PKCS#8): {0}")]
    Key(String),
    /// Signing failed (an RSA key ring refuses, e.g. shorter than 2048 bits).
    #[error("signing failed: {0}")]
    Sign(String),
}

/// base64 in CloudFront's URL-safe alphabet (`+` → `-`, `=` → `_`, `/` → `~`).
pub fn cloudfront_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .replace('+', "-")
        .replace('=', "_")
        .replace('/', "~")
}

/// The policy statement for `resource` (a URL, with `*` wildcards in a custom policy)
/// until `expires` (Unix seconds), exactly as CloudFront reads it.
pub fn policy(resource: &str, expires: u64) -> String {
    format!(
        r#"{{"Statement":[{{"Resource":"{}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#,
        resource.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

/// What a custom policy over a resource becomes: the query string every request
/// carries, or the cookies a viewer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The resource the policy allows (`https://d…/asset/*`).
    pub resource: String,
    /// When it stops allowing it, Unix seconds.
    pub expires: u64,
    /// The policy, CloudFront-base64.
    pub policy: String,
    /// Its signature, CloudFront-base64.
    pub signature: String,
    /// The public key's ID in the distribution's key group.
    pub key_pair_id: String,
}

impl Signed {
    /// `Policy=…&Signature=…&Key-Pair-Id=…&Hash-Algorithm=SHA256`, for every request.
    pub fn query(&self) -> String {
        format!(
            "Policy={}&Signature={}&Key-Pair-Id={}&Hash-Algorithm=SHA256",
            self.policy, self.signature, self.key_pair_id
        )
    }

    /// `url` with [`Signed::query`] appended.
    pub fn url(&self, url: &str) -> String {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{}", self.query())
    }

    /// The signed cookies (name, value).
    pub fn cookies(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CloudFront-Policy", self.policy.clone()),
            ("CloudFront-Signature", self.signature.clone()),
            ("CloudFront-Key-Pair-Id", self.key_pair_id.clone()),
            ("CloudFront-Hash-Algorithm", "SHA256".to_string()),
        ]
    }
}

/// Signs policies with a CloudFront key group's private key.
pub struct UrlSigner {
    key_pair_id: String,
    key: RsaKeyPair,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSigner")
            .field("key_pair_id", &self.key_pair_id)
            .field("key", &"<private>")
            .finish()
    }
}

impl UrlSigner {
    /// A signer for the public key `key_pair_id` from its private key in PEM: `BEGIN RSA
    /// PRIVATE KEY` (what `openssl genrsa` writes) or `BEGIN PRIVATE KEY` (PKCS#8).
    pub fn from_pem(key_pair_id: &str, pem: &str) -> Result<UrlSigner, SignError> {
        let (label, der) = pem_block(pem).ok_or_else(|| SignError::Key("no PEM block".into()))?;
        let key = match label.as_str() {
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            other => return Err(SignError::Key(format!("a {other:?} block"))),
        }
        .map_err(|e| SignError::Key(e.to_string()))?;
        Ok(UrlSigner {
            key_pair_id: key_pair_id.to_string(),
            key,
        })
    }

    /// The CloudFront-base64 RSA-SHA256 signature of `policy`.
    pub fn sign(&self, policy: &str) -> Result<String, SignError> {
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                policy.as_bytes(),
                &mut sig,
            )
            .map_err(|e| SignError::Sign(e.to_string()))?;
        Ok(cloudfront_base64(&sig))
    }

    /// `url` signed with a canned policy: `?Expires=…&Signature=…&Key-Pair-Id=…&Hash-Algorithm=SHA256`.
    pub fn canned_url(&self, url: &str, expires: u64) -> Result<String, SignError> {
        let signature = self.sign(&policy(url, expires))?;
        let sep = if url.contains('?') { '&' } else { '?' };
        Ok(format!(
            "{url}{sep}Expires={expires}&Signature={signature}&Key-Pair-Id={}&Hash-Algorithm=SHA256",
            self.key_pair_id
        ))
    }

    /// A custom policy over `resource` (wildcards allowed) until `expires`, signed.
    pub fn custom(&self, resource: &str, expires: u64) -> Result<Signed, SignError> {
        let p = policy(resource, expires);
        Ok(Signed {
            resource: resource.to_string(),
            expires,
            signature: self.sign(&p)?,
            policy: cloudfront_base64(p.as_bytes()),
            key_pair_id: self.key_pair_id.clone(),
        })
    }
}

/// The first PEM block of `pem`: its label and its bytes.
fn pem_block(pem: &str) -> Option<(String, Vec<u8>)> {
    let start = pem.find("-----BEGIN ")?;
    let rest = &pem[start + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_string();
    let body_start = label_end + 5;
    let end = body_start
        + rest
            .get(body_start..)?
            .find(&format!("-----END {label}-----"))?;
    let body: String = rest[body_start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    Some((label, der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_and_the_alphabet_are_cloudfronts() {
        assert_eq!(
            policy("https://d111111abcdef8.cloudfront.net/a/*", 1767290400),
            r#"{"Statement":[{"Resource":"https://d111111abcdef8.cloudfront.net/a/*","Condition":{"DateLessThan":{"AWS:EpochTime":1767290400}}}]}"#
        );
        // 0xfb 0xff → "+/8=" in base64.
        assert_eq!(cloudfront_base64(&[0xfb, 0xff]), "-~8_");
        assert!(UrlSigner::from_pem("K", "not a key").is_err());
        assert!(UrlSigner::from_pem("K", "-----BEGIN -----END -----").is_err());
    }
}
