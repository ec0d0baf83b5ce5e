//! The ground floor: the types every part of the control plane speaks (a job, its state,
//! its settings, its work items and the queues they travel on), with no behaviour that
//! needs a port. The ports, the use-cases and the backends all build on these, so none of
//! them has to import another to name a job.

mod item;
mod job;
mod settings;
mod tier;

pub use item::{ItemKind, ItemRef, Message};
pub use job::{JobRecord, JobStatus, Rendition, RenditionProtection, Transition};
pub use settings::{JobSettings, Origin, Repackage, Setting};
pub use tier::{Queue, Tier};
