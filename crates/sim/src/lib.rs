//! `vodpipe simulate`: what N uploads an hour would need from AWS and what they would cost,
//! in virtual time, before anyone pays for it.
//!
//! [`engine`] runs the events; the decisions in it are the control crate's own (fleet
//! targets, tier picking, escalation, compute cost), so a policy change there shows here.
//! [`model`] holds the service limits and prices, [`mix`] what arrives, [`report`] the
//! JSON answer and the binding limits, [`plot`] the SVG, [`template`] the deployed
//! settings (function mappings, worker limits) read from the SAM template.

pub mod engine;
pub mod mix;
pub mod model;
pub mod plot;
pub mod report;
pub mod template;

pub use engine::{simulate, Outcome, Params};
