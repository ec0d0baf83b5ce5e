//! vodpipe's control plane: the job lifecycle and the use-cases that drive it, over ports,
//! independent of where objects and state live. The media work they run is in
//! `vodpipe-media`.
//!
//! The lifecycle is decided once, in [`lifecycle`]: every transition, lease, commit and
//! fencing rule is a conditional write on a [`records::RecordStore`], the only thing a
//! backend's state must provide (with a [`ports::WorkQueue`], an [`ports::ObjectStore`], a
//! [`ports::Fleet`] and a [`ports::Cdn`]).
//!
//! The use-cases: [`ingest`] (a source, with the [`settings`] its upload chose, becomes a
//! planned, queued job), [`worker`] (lease, encode, commit), [`stitch`] (manifests,
//! pointers, publish) and [`sweep`] (what no event will ever finish: abandoned ingests,
//! stranded jobs, and the capacity each tier needs). [`domain`] holds the types they all
//! speak (a job, its state and settings, work items, tiers and queues); [`job`] is a job's
//! identity; [`keys`] gives a protected asset's content keys; [`cost`] estimates what a job cost; [`metrics`] reports to CloudWatch.

pub mod analysis;
pub mod attempt;
pub mod cost;
pub mod dead_letters;
pub mod domain;
pub mod error;
pub mod indexing;
pub mod ingest;
pub mod job;
pub mod keys;
pub mod lifecycle;
pub mod metrics;
pub mod moves;
pub mod outputs;
pub mod pipeline;
pub mod ports;
pub mod records;
pub mod repackage;
pub mod settings;
pub mod shutdown;
pub mod stitch;
pub mod sweep;
pub mod versions;
pub mod worker;

pub use error::{Error, Result};
