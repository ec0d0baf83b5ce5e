//! The port contract suite on the embedded backend: one SQLite file, one connection per
//! handle (as separate worker processes would have).

#![allow(clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use vodpipe_contract::{StateBackend, MAX_RECEIVES};
use vodpipe_local::state::SqliteState;

fn fresh() -> Box<dyn Fn() -> Box<dyn StateBackend> + Sync> {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    Box::new(move || {
        let path: PathBuf = dir.path().to_path_buf();
        Box::new(SqliteState::open(&path, MAX_RECEIVES).expect("open state"))
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
