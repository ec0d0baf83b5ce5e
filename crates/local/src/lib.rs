//! The embedded backend: vodpipe on one machine with no AWS.
//!
//! Objects live in a directory ([`objects`]), jobs, work items and leases in SQLite
//! ([`store`]). [`pipeline`] runs the use-cases (ingest, work an item, stitch and publish)
//! over them; several worker threads or processes can share one state directory.

pub mod objects;
pub mod pipeline;
pub mod store;
