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

vodpipe_contract::contract_suite!(fresh);
