//! `vodpipe aws sign`: signed playback of one asset on a private distribution.

use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;
use vodpipe_aws::signed_urls::UrlSigner;

/// Signs a custom policy over `base/asset/*` for `expires` and prints what a player needs.
pub fn sign(
    asset: &str,
    expires: Duration,
    base: &str,
    key_pair_id: &str,
    private_key: &Path,
    json: bool,
) -> Result<i32> {
    let pem = std::fs::read_to_string(private_key)
        .with_context(|| format!("reading the private key {}", private_key.display()))?;
    let signer = UrlSigner::from_pem(key_pair_id, &pem)
        .with_context(|| format!("{}", private_key.display()))?;
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs()
        + expires.as_secs();
    let dir = format!(
        "{}/{}/",
        base.trim_end_matches('/'),
        asset.trim_matches('/')
    );
    let signed = signer.custom(&format!("{dir}*"), until)?;
    let hls = signed.url(&format!("{dir}master.m3u8"));
    let dash = signed.url(&format!("{dir}manifest.mpd"));
    // One file alone (a poster, a download) takes a canned policy: a shorter URL.
    let master_canned = signer.canned_url(&format!("{dir}master.m3u8"), until)?;
    if json {
        let cookies: serde_json::Map<String, serde_json::Value> = signed
            .cookies()
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "resource": signed.resource,
                "expires": until,
                "hls": hls,
                "dash": dash,
                "query": signed.query(),
                "cookies": cookies,
                "master_canned": master_canned,
            })
        );
    } else {
        println!("signed until {until} (Unix time) for {}", signed.resource);
        println!("HLS    {hls}");
        println!("DASH   {dash}");
        println!("query  {}", signed.query());
        println!("       (a player appends it to every request under {dir})");
        for (k, v) in signed.cookies() {
            println!("cookie {k}={v}");
        }
    }
    Ok(0)
}
