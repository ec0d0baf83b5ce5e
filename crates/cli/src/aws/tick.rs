//! `vodpipe aws tick`: the fleet function's scheduled tick run once from an operator's
//! machine, for one who will not wait for the next minute or a deployment without the
//! function, with a report a person can read.

use anyhow::{Context, Result};
use std::time::{Duration, Instant};

/// `vodpipe aws tick`.
pub fn tick(stack: Option<String>, dry_run: bool, seconds: u64, json: bool) -> Result<i32> {
    if let Some(stack) = stack {
        let bridge = vodpipe_aws::config::Bridge::new()?;
        let env = vodpipe_doctor::fleet_environment(&bridge, &bridge.sdk_config(), &stack)
            .map_err(|e| anyhow::anyhow!("reading stack {stack}: {e}"))?;
        for (k, v) in env {
            // The function's probe is a layer this machine does not have.
            if k.starts_with("VODPIPE_") && k != "VODPIPE_FFPROBE" && std::env::var_os(&k).is_none()
            {
                std::env::set_var(k, v);
            }
        }
    }
    let shared = vodpipe_functions::env::Shared::from_env().context("connecting to AWS")?;
    let until = Instant::now() + Duration::from_secs(seconds);
    let report = vodpipe_functions::fleet::tick(&shared, until, dry_run)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    let would = if dry_run { "would " } else { "" };
    for t in &report.tiers {
        match &t.error {
            Some(e) => println!(
                "{:<9} {} queued; capacity not reconciled: {e}",
                t.tier, t.depth
            ),
            None => println!(
                "{:<9} {} queued, {} workers{}",
                t.tier,
                t.depth,
                t.workers,
                if dry_run { " wanted" } else { "" }
            ),
        }
    }
    let list = |what: &str, ids: &[String]| {
        println!(
            "{what}: {}",
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        );
    };
    list(
        &format!("stitch {would}requested again"),
        &report.restitched,
    );
    let requeued: Vec<String> = report
        .requeued
        .iter()
        .map(|r| format!("{} ({} items)", r.job, r.items))
        .collect();
    list(&format!("stalled jobs {would}queued again"), &requeued);
    if dry_run {
        println!(
            "failed uploads that would be ingested again: {}",
            report.redrive_waiting
        );
    } else {
        list("failed uploads ingested again", &report.redriven);
        if report.redrive_waiting > 0 {
            println!(
                "failed uploads still waiting (next tick): {}",
                report.redrive_waiting
            );
        }
    }
    list(
        &format!("abandoned ingests {would}resumed"),
        &report.resumed,
    );
    Ok(0)
}
