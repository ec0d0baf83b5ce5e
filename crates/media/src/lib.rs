//! vodpipe's media work: everything that decides how a video becomes an HLS/DASH rendition
//! set, with no ports and no state, so it runs the same in a worker, a Lambda function or
//! a test.
//!
//! Read it in pipeline order: [`probe`] (what is this file, is it allowed; [`moov`] reads
//! an MP4's frame table from its sample tables; [`relay`] keeps the header probe's reads
//! to what it needs; [`colour`] is what it learns of HDR) → [`policy`] (what the pipeline accepts)
//! → [`ladder`] (which renditions; [`pertitle`] shapes them to a title) → [`plan`] (frame-exact chunks) → [`encode`] (one
//! ffmpeg per chunk, audio once per track, and in the chunk encode the poster and thumbnail
//! sprites; [`captions`] turns subtitles into WebVTT) → [`mp4`] (segments onto one timeline) →
//! [`cenc`] (common encryption, when asked) → [`package`] (HLS and DASH manifests). [`process`] runs ffmpeg and ffprobe with
//! deadlines. The control plane (`vodpipe-control`) decides when and where each runs.

pub mod captions;
pub mod cenc;
pub mod clip;
pub mod colour;
pub mod encode;
pub mod error;
pub mod info;
pub mod ladder;
pub mod moov;
pub mod mp4;
pub mod overlay;
pub mod package;
pub mod pertitle;
pub mod plan;
pub mod policy;
pub mod probe;
pub mod process;
pub mod relay;

pub use error::{Error, Result};
