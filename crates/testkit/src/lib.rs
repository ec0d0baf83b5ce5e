//! The shared test harness of every crate whose tests talk to AWS: one moto server per
//! test binary (started on first use, on a free port, with the SDK's environment pointed
//! at it), resource names no other test in the run uses, and a deployment's settings on
//! the emulator. One crate, so the crates that test against the emulator all start it,
//! name things and reach its control endpoints the same way.

// Test harness code: a harness that cannot start the emulator or reach it must panic the
// test that asked, with the reason, rather than hand back an error no test would handle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod emulator;
