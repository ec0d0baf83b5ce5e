//! The control plane's own error, kept apart by kind so the failure policy
//! ([`crate::worker`]) can tell a backend that did not answer (retry, uncounted) from
//! media that failed (by the media error's own rules) from a document that does not read
//! back (no retry reads other bytes: the item fails).

use crate::ports::PortError;

/// What went wrong in a use-case run under a lease.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A port call failed: the job store, a queue, the object store.
    #[error(transparent)]
    Port(#[from] PortError),
    /// The media work failed: a tool, the input, the plan's agreement with the output.
    #[error(transparent)]
    Media(#[from] vodpipe_media::Error),
    /// A document the control plane keeps (a plan, a result) does not read or write as
    /// JSON: a defect or a damaged record, which reads the same on every retry.
    #[error("{what} does not read back: {source}")]
    Corrupt {
        /// Which document.
        what: String,
        /// What serde said.
        source: serde_json::Error,
    },
}

impl Error {
    /// A document that does not (de)serialise.
    pub fn corrupt(what: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Corrupt {
            what: what.into(),
            source,
        }
    }

    /// Whether retrying cannot help: a refused input, a bad configuration, a damaged
    /// document.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Media(e) => e.is_permanent(),
            Error::Corrupt { .. } => true,
            Error::Port(_) => false,
        }
    }

    /// Whether the fault lies with the machine or a service, not the work: such an attempt
    /// is given back without counting against the item.
    pub fn is_infrastructure(&self) -> bool {
        match self {
            Error::Media(e) => e.is_infrastructure(),
            Error::Port(e) => matches!(e, PortError::Backend(_)),
            Error::Corrupt { .. } => false,
        }
    }

    /// Whether the work was stopped on purpose (the lease lost, the worker stopping).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Media(vodpipe_media::Error::Cancelled { .. }))
    }
}

/// Result alias for the control plane's use-cases.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_document_is_permanent_and_a_busy_store_is_not() {
        let Err(serde) = serde_json::from_str::<u32>("{") else {
            unreachable!("'{{' is not a number")
        };
        let corrupt = Error::corrupt("the plan of job j", serde);
        assert!(corrupt.is_permanent() && !corrupt.is_infrastructure());
        assert!(corrupt
            .to_string()
            .starts_with("the plan of job j does not read back"));
        let busy = Error::from(PortError::Backend("throttled".into()));
        assert!(!busy.is_permanent() && busy.is_infrastructure());
        let gone = Error::from(PortError::NotFound("job j".into()));
        assert!(!gone.is_permanent() && !gone.is_infrastructure());
        let cancelled = Error::from(vodpipe_media::Error::Cancelled {
            step: "encode chunk 0".into(),
            why: "the lease was lost".into(),
        });
        assert!(cancelled.is_cancelled() && !cancelled.is_permanent());
    }
}
