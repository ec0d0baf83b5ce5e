//! vodpipe's domain: everything that decides how a video becomes an HLS/DASH rendition
//! set, independent of where objects and state live.
//!
//! Read it in pipeline order: [`probe`] (what is this file, is it allowed; [`moov`] reads
//! an MP4's frame table from its sample tables) → [`ladder`]
//! (which renditions) → [`plan`] (frame-exact chunks) → [`encode`] (one ffmpeg per chunk,
//! audio once per track) → [`mp4`] (segments onto one timeline) → [`package`] (HLS and
//! DASH manifests) → [`job`] (identity and state of a job).
//!
//! The use-cases run on [`ports`] (object store, job store, work queue, fleet, CDN):
//! [`ingest`] (a source, with the [`settings`] its upload chose, becomes a planned, queued
//! job), [`worker`] (lease, encode, commit)
//! and [`stitch`] (manifests, pointers, publish). [`cost`] estimates what a job cost.

pub mod cost;
pub mod encode;
pub mod error;
pub mod ingest;
pub mod job;
pub mod ladder;
pub mod lifecycle;
pub mod metrics;
pub mod moov;
pub mod mp4;
pub mod outputs;
pub mod package;
pub mod pipeline;
pub mod plan;
pub mod policy;
pub mod ports;
pub mod probe;
pub mod process;
pub mod records;
pub mod settings;
pub mod stitch;
pub mod worker;

pub use error::{Error, Result};
