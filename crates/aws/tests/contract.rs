//! The port contract suite on the AWS backend, over the real SDKs against moto server (a
//! local AWS emulator on 127.0.0.1). `make test` installs moto into `.venv`; without it
//! these tests fail loudly, they never skip.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vodpipe_testkit::emulator;

use std::sync::Arc;
use vodpipe_aws::config::Bridge;
use vodpipe_aws::AwsState;
use vodpipe_contract::{StateBackend, MAX_RECEIVES};

fn fresh() -> Box<dyn Fn() -> Box<dyn StateBackend> + Sync> {
    emulator::start();
    let bridge = Arc::new(Bridge::new().unwrap());
    let sdk = bridge.sdk_config();
    let mut settings = emulator::settings(&emulator::unique_name("contract"));
    settings.max_receives = MAX_RECEIVES;
    vodpipe_aws::bootstrap::bootstrap(&bridge, &sdk, &settings).unwrap();
    Box::new(move || {
        Box::new(AwsState::connect(bridge.clone(), &sdk, &settings).unwrap())
            as Box<dyn StateBackend>
    })
}

vodpipe_contract::contract_suite!(fresh);

/// At the longest source the input policy allows, no record comes near DynamoDB's 400 KB
/// item limit: plans and large results are pages, and every record stays under 64 KB.
#[test]
fn no_record_nears_the_item_limit_at_feature_length() {
    emulator::start();
    let bridge = Arc::new(Bridge::new().unwrap());
    let sdk = bridge.sdk_config();
    let settings = emulator::settings(&emulator::unique_name("feature"));
    vodpipe_aws::bootstrap::bootstrap(&bridge, &sdk, &settings).unwrap();
    let connect = || {
        Box::new(AwsState::connect(bridge.clone(), &sdk, &settings).unwrap())
            as Box<dyn StateBackend>
    };
    vodpipe_contract::feature_length_documents_round_trip(&connect);
    let state = AwsState::connect(bridge.clone(), &sdk, &settings).unwrap();
    let largest = state.jobs.largest_record().unwrap();
    assert!(
        largest.0 < 64 * 1024,
        "record {} is {} bytes",
        largest.1,
        largest.0
    );
    eprintln!("largest record: {} ({} bytes)", largest.1, largest.0);
}
