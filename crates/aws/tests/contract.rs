//! The port contract suite on the AWS backend, over the real SDKs against moto server (a
//! local AWS emulator on 127.0.0.1). `make test` installs moto into `.venv`; without it
//! these tests fail loudly, they never skip.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod emulator;

use std::sync::Arc;
use vodpipe_aws::config::{AwsSettings, Bridge};
use vodpipe_aws::AwsState;
use vodpipe_contract::{StateBackend, MAX_RECEIVES};

fn fresh() -> Box<dyn Fn() -> Box<dyn StateBackend> + Sync> {
    emulator::start();
    let bridge = Arc::new(Bridge::new().unwrap());
    let sdk = bridge.sdk_config();
    let mut settings = AwsSettings::for_name(&emulator::unique_name("contract"));
    settings.max_receives = MAX_RECEIVES;
    vodpipe_aws::bootstrap::bootstrap(&bridge, &sdk, &settings).unwrap();
    Box::new(move || {
        Box::new(AwsState::connect(bridge.clone(), &sdk, &settings).unwrap())
            as Box<dyn StateBackend>
    })
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let connect = fresh();
                vodpipe_contract::$name(&*connect);
            }
        )*
    };
}

contract!(
    create_if_absent_is_race_free,
    one_lease_wins_under_contention,
    stale_fencing_tokens_are_rejected,
    releases_are_counted,
    last_item_done_fires_exactly_once,
    invisible_messages_come_back_after_visibility,
    receive_follows_the_queue_order,
    messages_dead_letter_after_max_receives,
    failed_jobs_hand_out_no_work,
    a_reset_job_fences_out_its_old_workers,
    items_report_done_and_leased,
);
