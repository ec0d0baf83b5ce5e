//! Playback from a private distribution: CloudFront with trusted key groups serves an
//! asset only to requests signed with the deployment's playback key. Given that key, the
//! console signs a custom policy over the open asset's directory and its players append
//! the query string to every request, as `vodpipe aws sign` prints it for other players.

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// The playback key's options of `vodpipe serve`.
#[derive(Args)]
pub struct PrivateArgs {
    /// The key pair ID of the stack's playback public key (its `PlaybackKeyPairId`
    /// output): with --playback-private-key, the console plays a private distribution.
    #[arg(long, env = "VODPIPE_PLAYBACK_KEY_PAIR_ID")]
    playback_key_pair_id: Option<String>,
    /// The playback private key (PEM) whose public half the stack trusts.
    #[arg(long, env = "VODPIPE_PLAYBACK_PRIVATE_KEY")]
    playback_private_key: Option<PathBuf>,
    /// How long a signature the console hands its players lasts (`90s`, `30m`, `2h`).
    #[arg(long, default_value = "2h", value_parser = crate::aws::parse_duration)]
    playback_expires: Duration,
}

/// Signs custom policies over asset directories.
pub struct Signer {
    #[cfg(feature = "aws")]
    signer: vodpipe_aws::signed_urls::UrlSigner,
    ttl: Duration,
}

impl PrivateArgs {
    /// The signer the options describe, if any.
    pub fn signer(&self) -> Result<Option<Signer>> {
        let (id, key) = match (&self.playback_key_pair_id, &self.playback_private_key) {
            (None, None) => return Ok(None),
            (Some(id), Some(key)) => (id, key),
            _ => bail!("--playback-key-pair-id and --playback-private-key go together"),
        };
        #[cfg(feature = "aws")]
        {
            let pem = std::fs::read_to_string(key)
                .map_err(|e| anyhow::anyhow!("--playback-private-key {}: {e}", key.display()))?;
            let signer = vodpipe_aws::signed_urls::UrlSigner::from_pem(id, &pem)
                .map_err(|e| anyhow::anyhow!("--playback-private-key {}: {e}", key.display()))?;
            Ok(Some(Signer {
                signer,
                ttl: self.playback_expires,
            }))
        }
        #[cfg(not(feature = "aws"))]
        {
            let _ = (id, key);
            bail!("signed playback needs a build with the aws feature (`make build-aws`)")
        }
    }
}

impl Signer {
    /// The query string that admits requests under directory URL `dir` (ending in `/`)
    /// until the returned Unix time.
    pub fn sign_dir(&self, dir: &str) -> Result<(String, u64)> {
        let expires = (vodpipe_media::process::now_secs() + self.ttl.as_secs_f64()) as u64;
        #[cfg(feature = "aws")]
        {
            let signed = self
                .signer
                .custom(&format!("{dir}*"), expires)
                .map_err(|e| anyhow::anyhow!("signing {dir}: {e}"))?;
            Ok((signed.query(), expires))
        }
        #[cfg(not(feature = "aws"))]
        {
            let _ = (dir, expires);
            bail!("signed playback needs a build with the aws feature")
        }
    }
}
