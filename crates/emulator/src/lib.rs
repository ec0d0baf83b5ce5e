//! The emulated deployment's pieces that tests use on their own: the emulator server
//! ([`moto`]), the SAM template as the emulator reads it ([`template`]), the roles made
//! from it ([`iam`]) and the fault plans its front door injects ([`faults`]). The
//! `vodpipe-emulator` binary builds the rest (Lambda runtime API, event sources, Fargate
//! tasks) on them.

pub mod faults;
pub mod iam;
pub mod moto;
pub mod template;
