//! vodpipe's domain: everything that decides how a video becomes an HLS/DASH rendition
//! set, independent of where objects and state live.
//!
//! Read it in pipeline order: [`probe`] (what is this file, is it allowed) → [`ladder`]
//! (which renditions) → [`plan`] (frame-exact chunks) → [`encode`] (one ffmpeg per chunk,
//! audio once per track) → [`mp4`] (segments onto one timeline) → [`package`] (HLS and
//! DASH manifests) → [`job`] (identity and state of a job).

pub mod encode;
pub mod error;
pub mod job;
pub mod ladder;
pub mod mp4;
pub mod package;
pub mod plan;
pub mod policy;
pub mod probe;
pub mod process;

pub use error::{Error, Result};
