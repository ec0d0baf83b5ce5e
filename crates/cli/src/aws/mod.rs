//! `vodpipe aws`: administration of the AWS backend (creating a deployment's resources, a
//! preflight of an account and stack, the fleet function's tick run by hand). The other
//! commands reach AWS through `--backend aws`; these are the ones only an operator of a
//! deployment needs.
//!
//! The commands themselves need the AWS SDK and are built with the `aws` feature only.
//! Their command line is always there, so `vodpipe aws …` in the embedded build answers
//! with how to get a build that has them, not with "unrecognized subcommand".

#[cfg(feature = "aws")]
mod admin;
#[cfg(feature = "aws")]
mod sign;
#[cfg(feature = "aws")]
mod tick;

use anyhow::Result;
use clap::{Args, Subcommand};

/// Arguments of `vodpipe aws`.
#[derive(Args)]
pub struct AwsArgs {
    #[command(subcommand)]
    command: AwsCommand,
}

#[derive(Subcommand)]
// Without the `aws` feature the arguments are parsed (and documented) but never used.
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
enum AwsCommand {
    /// Create (idempotently) the buckets, queues and table for NAME and print the
    /// `export VODPIPE_…` lines the other commands need.
    Bootstrap {
        /// Deployment name: the table is NAME-jobs, the queues NAME-premium …, the buckets
        /// NAME-ACCOUNT-REGION-ingest and -output (as the SAM template names them).
        #[arg(long)]
        name: String,
        /// Receives before a message moves to its dead-letter queue.
        #[arg(long, default_value_t = 5)]
        max_receives: u32,
    },
    /// Read-only preflight of the account and the deployed stack: Fargate vCPU quotas
    /// against MaxWorkersPerTier, the ECS service-linked role, Lambda concurrency, the
    /// worker image, the workers' network, the probe layer. One line per check with OK,
    /// WARN or FAIL and the command that fixes it; exits 1 if anything FAILs.
    Doctor {
        /// The CloudFormation stack (`sam deploy`'s stack name).
        #[arg(long, default_value = "vodpipe")]
        stack: String,
        /// Worker tasks per tier to size the quota checks for (default: the stack's
        /// MaxWorkersPerTier, or 20).
        #[arg(long)]
        max_workers: Option<u32>,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The fleet function's tick, once, from here: capacity per tier, stitches requested
    /// again, stalled jobs' items queued again, uploads whose ingest failed on every try
    /// ingested again, abandoned ingests resumed. For an operator who will not wait for the
    /// next minute, or a deployment without the function. Resources from the `VODPIPE_…`
    /// variables, or from the stack's fleet function with `--stack`.
    Tick {
        /// Read the fleet function's settings from this deployed stack (variables already
        /// set win; the function's layer ffprobe is not used here).
        #[arg(long)]
        stack: Option<String>,
        /// Read only: say what the tick would do.
        #[arg(long)]
        dry_run: bool,
        /// Give the tick this long (resumed ingests start only while one fits).
        #[arg(long, default_value_t = 300)]
        seconds: u64,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Signed playback of an asset on a private distribution (`PlaybackPublicKey` set):
    /// a custom policy over the asset's directory, printed as the HLS and DASH URLs, the
    /// query string a player appends to every request, and the signed cookies.
    Sign {
        /// The asset (its name under the playback base, e.g. `uploads/film`).
        asset: String,
        /// How long the signature is good for: `90s`, `30m`, `2h`, `7d`.
        #[arg(long, default_value = "2h", value_parser = parse_duration)]
        expires: std::time::Duration,
        /// The distribution's playback base URL (the stack's `PlaybackBase` output).
        #[arg(long, env = "VODPIPE_PLAYBACK_BASE")]
        base: String,
        /// The public key's ID in the key group (the stack's `PlaybackKeyPairId` output).
        #[arg(long, env = "VODPIPE_PLAYBACK_KEY_PAIR_ID")]
        key_pair_id: String,
        /// The private key's PEM file (`openssl genrsa`); never leaves this machine.
        #[arg(long, env = "VODPIPE_PLAYBACK_PRIVATE_KEY")]
        private_key: std::path::PathBuf,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `90s`, `30m`, `2h`, `7d` (a plain number is seconds).
pub fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    let s = s.trim();
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 90s, 30m, 2h, 7d)"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{s:?}: use s, m, h or d")),
    };
    if secs == 0 {
        return Err("a signature must last more than 0 seconds".into());
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// `vodpipe aws …`.
#[cfg(feature = "aws")]
pub fn aws(a: AwsArgs) -> Result<i32> {
    match a.command {
        AwsCommand::Bootstrap { name, max_receives } => admin::bootstrap(&name, max_receives),
        AwsCommand::Doctor {
            stack,
            max_workers,
            json,
        } => admin::doctor(stack, max_workers, json),
        AwsCommand::Tick {
            stack,
            dry_run,
            seconds,
            json,
        } => tick::tick(stack, dry_run, seconds, json),
        AwsCommand::Sign {
            asset,
            expires,
            base,
            key_pair_id,
            private_key,
            json,
        } => sign::sign(&asset, expires, &base, &key_pair_id, &private_key, json),
    }
}

/// `vodpipe aws …` in a build without the `aws` feature: an error saying how to get one
/// with it.
#[cfg(not(feature = "aws"))]
pub fn aws(_: AwsArgs) -> Result<i32> {
    anyhow::bail!(crate::backend::NO_AWS)
}
