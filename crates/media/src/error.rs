//! The one error type of `vodpipe-media` (and of the use-cases in `vodpipe-control`, which run media work).
//!
//! Messages are written for the person whose job failed: they say what was wrong with the
//! input or which step broke, in words they can act on, because they end up verbatim in a
//! FAILED job's `error` field.

use std::path::PathBuf;

/// Everything that can go wrong in the media engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input was refused by the input policy; the job fails and nothing is retried.
    #[error("input rejected: {0}")]
    Rejected(String),
    /// ffprobe/ffmpeg could not be started (not installed, not on PATH).
    #[error("cannot run {program}: {source} (is ffmpeg installed? `make deps` installs it)")]
    Spawn {
        /// The program that failed to start.
        program: String,
        /// Why the OS refused.
        source: std::io::Error,
    },
    /// ffprobe/ffmpeg died of a signal (a crash, or killed for memory): a fault of the
    /// machine or the build as often as of the input, so it is retried, never taken as a
    /// verdict on the source.
    #[error("{program} crashed during {step} (signal {signal}); the work will be retried")]
    Crashed {
        /// The program that died.
        program: String,
        /// Which step.
        step: String,
        /// The signal that ended it.
        signal: i32,
    },
    /// A service the pipeline reads from did not answer (S3 while opening a source):
    /// nothing is known about the input yet, so the work is retried.
    #[error("{0}")]
    Unavailable(String),
    /// A media tool ran and failed; `detail` holds the tail of its stderr.
    #[error("{step} failed: {detail}")]
    Tool {
        /// Which step (probe, encode chunk 3, audio track 1 …).
        step: String,
        /// The last lines ffmpeg printed.
        detail: String,
    },
    /// The work was stopped on purpose (the lease was lost, the worker is shutting down):
    /// it says nothing about the input, and is neither retried as a failure nor taken as
    /// a verdict.
    #[error("{step} was stopped: {why}")]
    Cancelled {
        /// Which step.
        step: String,
        /// Why it was stopped.
        why: String,
    },
    /// A media tool exceeded its run-time cap and was killed.
    #[error("{step} exceeded its time limit of {secs} s and was stopped")]
    TimedOut {
        /// Which step.
        step: String,
        /// The limit that was hit.
        secs: u64,
    },
    /// The encoder's output disagrees with the plan (frame or segment count).
    #[error("{0}")]
    PlanMismatch(String),
    /// An MP4 box structure we produced or read is not what we expect.
    #[error("malformed MP4 in {context}: {reason}")]
    Mp4 {
        /// File or segment being parsed.
        context: String,
        /// What was wrong.
        reason: String,
    },
    /// The asset cannot be protected as asked (a codec the encryption cannot handle, a
    /// bitstream it cannot walk): the job fails with the reason, never publishes clear.
    #[error("content protection: {0}")]
    Protection(String),
    /// A configuration file (ladder profiles) is invalid.
    #[error("invalid configuration {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Local file I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with what we were doing at the time.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether retrying the same work could succeed. Rejections and plan mismatches on
    /// deterministic input are still retried once by the worker; rejections never are.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::Rejected(_) | Error::Config { .. } | Error::Protection(_)
        )
    }

    /// Whether the failure lies with the machine, not the input: a tool that cannot start
    /// or that crashed, a service that did not answer. Ingest leaves such a job to be
    /// retried instead of failing it.
    pub fn is_infrastructure(&self) -> bool {
        matches!(
            self,
            Error::Spawn { .. } | Error::Crashed { .. } | Error::Unavailable(_)
        )
    }
}

/// Result alias for the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
