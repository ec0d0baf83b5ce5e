//! `vodpipe aws bootstrap` and `vodpipe aws doctor`: making a deployment's resources and
//! checking an account and stack before a first upload finds what is missing.

use anyhow::Result;

/// `vodpipe aws bootstrap`: prints the `export` lines the other commands read.
pub fn bootstrap(name: &str, max_receives: u32) -> Result<i32> {
    let bridge = vodpipe_aws::config::Bridge::new()?;
    let sdk = bridge.sdk_config();
    let mut settings = vodpipe_aws::config::AwsSettings::resolve(&bridge, &sdk, name)?;
    settings.max_receives = max_receives;
    vodpipe_aws::bootstrap::bootstrap(&bridge, &sdk, &settings)?;
    print!("{}", settings.exports());
    Ok(0)
}

/// `vodpipe aws doctor`: exits 1 when any check FAILs.
pub fn doctor(stack: String, max_workers: Option<u32>, json: bool) -> Result<i32> {
    let bridge = vodpipe_aws::config::Bridge::new()?;
    let sdk = bridge.sdk_config();
    let report = vodpipe_doctor::run(
        &bridge,
        &sdk,
        &vodpipe_doctor::Options { stack, max_workers },
    );
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(i32::from(report.worst() == vodpipe_doctor::Level::Fail))
}
