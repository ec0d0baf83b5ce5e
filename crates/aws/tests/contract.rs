//! The port contract suite on the AWS backend, over the real SDKs against moto server (a
//! local AWS emulator on 127.0.0.1). `make test` installs moto into `.venv`; without it
//! these tests fail loudly, they never skip.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod emulator;

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

/// An item's size as DynamoDB bills and limits it: names plus values (numbers count
/// about a byte per two digits, plus one).
fn item_size(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    item.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    V::S(s) => s.len(),
                    V::N(n) => n.len() / 2 + 1,
                    V::B(b) => b.as_ref().len(),
                    _ => 1,
                }
        })
        .sum()
}

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
    let db = aws_sdk_dynamodb::Client::new(&sdk);
    let mut largest = (0, String::new());
    let mut start = None;
    loop {
        let page = bridge
            .run(
                db.scan()
                    .table_name(&settings.table)
                    .set_exclusive_start_key(start.take())
                    .send(),
            )
            .unwrap();
        for item in page.items() {
            let size = item_size(item);
            if size > largest.0 {
                let sk = item.get("sk").and_then(|v| v.as_s().ok()).cloned();
                largest = (size, sk.unwrap_or_default());
            }
        }
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    assert!(
        largest.0 < 64 * 1024,
        "record {} is {} bytes",
        largest.1,
        largest.0
    );
    eprintln!("largest record: {} ({} bytes)", largest.1, largest.0);
}
