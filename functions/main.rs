//! `vodpipe-lambda`: the ingest, stitch and fleet functions in one binary, the function's
//! `Handler` (`_HANDLER`) choosing which. See [`vodpipe_functions::runtime`].

fn main() -> Result<(), lambda_runtime::Error> {
    vodpipe_functions::runtime::run_from_env()
}
