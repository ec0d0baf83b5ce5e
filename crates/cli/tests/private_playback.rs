//! Private playback: `vodpipe aws sign` signs a custom policy over an asset's directory,
//! in CloudFront's documented format, and players given its query string play the asset
//! from a server that checks every request as CloudFront does with a trusted key group.
//! An unsigned request, another asset's signature, a tampered policy and an expired one are
//! all refused.
//!
//! Two checks that do not share code with the signer: OpenSSL verifies the signatures
//! over the policy bytes, and check.mjs's server (Node's crypto) verifies every request.

#![cfg(feature = "aws")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use support::*;

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is required: run `make deps` (or `make test`, which installs it)")
}

/// `vodpipe aws sign ASSET --json` with the test's key, for the check server's origin.
fn sign(asset: &str, key: &Path, expires: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_vodpipe"))
        .args(["aws", "sign", asset, "--json", "--expires", expires])
        .args([
            "--base",
            "http://vodpipe.test/media",
            "--key-pair-id",
            "KTESTPAIR",
        ])
        .arg("--private-key")
        .arg(key)
        .env_remove("VODPIPE_PLAYBACK_BASE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn cf_b64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s.replace('-', "+").replace('_', "=").replace('~', "/"))
        .unwrap()
}

/// The named query parameter of a URL or query string.
fn param(q: &str, name: &str) -> String {
    q.split(['?', '&'])
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {q}"))
        .to_string()
}

/// OpenSSL's verdict on `signature` (CloudFront base64) over `policy` with `public`.
fn openssl_verifies(policy: &[u8], signature: &str, public: &Path, dir: &Path) -> bool {
    let (p, s) = (dir.join("policy.json"), dir.join("sig.bin"));
    std::fs::write(&p, policy).unwrap();
    std::fs::write(&s, cf_b64(signature)).unwrap();
    let out = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        public.to_str().unwrap(),
        "-signature",
        s.to_str().unwrap(),
        p.to_str().unwrap(),
    ]);
    String::from_utf8_lossy(&out.stdout).contains("Verified OK")
}

#[test]
fn signed_playback_plays_and_everything_else_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (key, public) = (d.path().join("private.pem"), d.path().join("public.pem"));
    assert!(openssl(&["genrsa", "-out", key.to_str().unwrap(), "2048"])
        .status
        .success());
    assert!(openssl(&[
        "rsa",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap()
    ])
    .status
    .success());
    let src = d.path().join("film.mp4");
    make_clip(&src, "320x180", "25", 4, Some(440), FAST_H264);
    let out = d.path().join("out");
    let r = vodpipe_run(&[&src], &out, &["--segment-seconds", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // The format: a custom policy over the asset's directory, its expiry two hours out,
    // signed RSA-SHA256 as OpenSSL verifies; the cookies carry the same three values.
    let s = sign("film", &key, "2h");
    let policy = cf_b64(s["cookies"]["CloudFront-Policy"].as_str().unwrap());
    let p: Value = serde_json::from_slice(&policy).unwrap();
    assert_eq!(
        p["Statement"][0]["Resource"],
        "http://vodpipe.test/media/film/*"
    );
    let exp = p["Statement"][0]["Condition"]["DateLessThan"]["AWS:EpochTime"]
        .as_u64()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((exp as i64 - (now + 7200) as i64).abs() < 60, "{p}");
    assert!(
        !String::from_utf8_lossy(&policy).contains(' '),
        "no whitespace in a policy"
    );
    let query = s["query"].as_str().unwrap();
    assert_eq!(param(query, "Key-Pair-Id"), "KTESTPAIR");
    assert_eq!(param(query, "Hash-Algorithm"), "SHA256");
    assert_eq!(
        param(query, "Signature"),
        s["cookies"]["CloudFront-Signature"]
    );
    assert!(openssl_verifies(
        &policy,
        &param(query, "Signature"),
        &public,
        d.path()
    ));
    let mut tampered = policy.clone();
    let at = tampered.len() - 10;
    tampered[at] ^= 1;
    assert!(!openssl_verifies(
        &tampered,
        &param(query, "Signature"),
        &public,
        d.path()
    ));
    // A canned URL signs the policy CloudFront rebuilds from the URL and Expires.
    let canned = s["master_canned"].as_str().unwrap();
    let url = canned.split('?').next().unwrap();
    let rebuilt = format!(
        r#"{{"Statement":[{{"Resource":"{url}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{}}}}}}}]}}"#,
        param(canned, "Expires")
    );
    assert!(openssl_verifies(
        rebuilt.as_bytes(),
        &param(canned, "Signature"),
        &public,
        d.path()
    ));

    // Both players, every request signed, from a server checking each one.
    let pubkey = public.to_str().unwrap();
    let check = |q: Option<&str>, refusal: bool| -> Value {
        let mut extra = vec!["--cloudfront-public-key", pubkey];
        if let Some(q) = q {
            extra.extend(["--signed-query", q]);
        }
        if refusal {
            extra.push("--expect-refusal");
        }
        assert_plays_with(&out, "film/master.m3u8", "film/manifest.mpd", &extra)
    };
    let played = check(Some(query), false);
    let cf = &played["cloudfront"];
    assert!(cf["checked"].as_u64().unwrap() > 10, "{played}");
    assert_eq!(cf["refused"], 0, "{played}");
    // Unsigned, another asset's signature, an expired one: no player plays.
    let unsigned = check(None, true);
    assert_eq!(
        unsigned["cloudfront"]["first_refusal"]["why"], "unsigned",
        "{unsigned}"
    );
    let other = sign("another", &key, "2h");
    let wrong = check(Some(other["query"].as_str().unwrap()), true);
    assert!(
        wrong["cloudfront"]["first_refusal"]["why"]
            .as_str()
            .unwrap()
            .contains("does not cover"),
        "{wrong}"
    );
    let short = sign("film", &key, "1s");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let expired = check(Some(short["query"].as_str().unwrap()), true);
    assert_eq!(
        expired["cloudfront"]["first_refusal"]["why"], "expired",
        "{expired}"
    );
    let bad = query.replace(&param(query, "Policy"), &cf_b64_encode_tampered(&policy));
    let forged = check(Some(&bad), true);
    assert_eq!(
        forged["cloudfront"]["first_refusal"]["why"], "bad signature",
        "{forged}"
    );
}

/// `policy` with its expiry pushed a day later, in CloudFront base64: a forgery the old
/// signature does not cover.
fn cf_b64_encode_tampered(policy: &[u8]) -> String {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(policy).replace("EpochTime\":1", "EpochTime\":2");
    base64::engine::general_purpose::STANDARD
        .encode(text)
        .replace('+', "-")
        .replace('=', "_")
        .replace('/', "~")
}
