//! One attempt at a leased work item, as every use-case a worker runs sees it: the lease
//! and the message it came with, kept alive by a heartbeat for as long as the work runs,
//! and the source opened at the version the job was made for.
//!
//! The worker ([`crate::worker`]) acquires the lease and applies the failure policy to
//! whatever [`Ending`] the use-case reports; the encode, the per-title analysis
//! ([`crate::analysis`]) and the frame index ([`crate::indexing`]) only do their work
//! inside [`Attempt::heartbeat`].

use crate::domain::JobRecord;
use crate::pipeline::{Config, Ports};
use crate::ports::{Delivery, Lease, PortError};
use crate::shutdown::Shutdown;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How a use-case run under a lease ended, for the worker's failure policy to act on.
#[derive(Debug)]
pub enum Ending {
    /// Done: commit the item with this result document.
    Commit(String),
    /// The work failed: interrupted, retried, escalated or failing the job, by the error.
    Failed(crate::Error),
    /// Another worker holds the item now: nothing is committed, and the message is the
    /// new holder's (deleting it with this stale receipt could leave their work without
    /// one).
    LeaseLost,
}

/// A leased item being worked, with what keeps the lease alive.
pub struct Attempt<'w, 'a> {
    /// The ports the work runs on.
    pub ports: Ports<'a>,
    /// The pipeline's configuration.
    pub cfg: &'w Config,
    /// The worker's stop signal (SIGTERM, a Spot reclaim).
    pub shutdown: &'w Shutdown,
    /// The message the item came in.
    pub delivery: &'w Delivery,
    /// The lease the work runs under.
    pub lease: &'w Lease,
    /// When the lease was taken.
    pub started: Instant,
}

/// Messages stay hidden half as long again as a lease lasts, so when a dead worker's
/// message reappears its lease has already expired and the next worker can take it.
pub fn visibility(cfg: &Config) -> Duration {
    cfg.lease_ttl + cfg.lease_ttl / 2
}

impl Attempt<'_, '_> {
    /// Seconds since the lease was taken.
    pub fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The source the job was made from, at its recorded version, as ffmpeg opens it: a
    /// path, or a URL valid for `ttl`.
    pub fn open_source(&self, job: &JobRecord, ttl: Duration) -> crate::Result<PathBuf> {
        let version = job
            .settings
            .as_ref()
            .and_then(|s| s.source_version.as_deref());
        self.open_input(&job.source, version, ttl)
    }

    /// What ffmpeg opens for `source` at `version`: a path, or a URL valid for `ttl`.
    pub fn open_input(
        &self,
        source: &str,
        version: Option<&str>,
        ttl: Duration,
    ) -> crate::Result<PathBuf> {
        Ok(self
            .ports
            .objects
            .open_source(source, version, ttl)
            .map(PathBuf::from)?)
    }

    /// Runs `work` while a thread renews the lease (with `frames` done) and the message
    /// every third of the TTL, setting `cancel` when the lease is lost. A renewal that
    /// fails for the store's sake (throttled, a network fault) is no lost lease: it is
    /// tried again every second, and the work stops only when the lease would run out
    /// unconfirmed (another worker may then take the item).
    pub fn heartbeat<T>(
        &self,
        frames: &AtomicU64,
        cancel: &AtomicBool,
        work: impl FnOnce() -> T,
    ) -> T {
        let (lease, d, ttl) = (self.lease, self.delivery, self.cfg.lease_ttl);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let beat_every = ttl / 3;
                let (mut last_try, mut confirmed) = (Instant::now(), Instant::now());
                let mut wait = beat_every;
                while !done.load(Ordering::SeqCst) {
                    if last_try.elapsed() >= wait {
                        last_try = Instant::now();
                        match self
                            .ports
                            .jobs
                            .heartbeat(lease, ttl, frames.load(Ordering::Relaxed))
                        {
                            Ok(()) => {
                                (confirmed, wait) = (Instant::now(), beat_every);
                                if let Err(e) = self.ports.queue.extend(d, visibility(self.cfg)) {
                                    tracing::warn!(error = %e, "could not extend the message's visibility");
                                }
                            }
                            Err(PortError::Conflict(why)) => {
                                tracing::warn!(%why, "lease lost; stopping this attempt");
                                cancel.store(true, Ordering::SeqCst);
                                break;
                            }
                            Err(e) if confirmed.elapsed() + beat_every / 2 >= ttl => {
                                tracing::warn!(error = %e, "the lease could not be renewed before it ran out; stopping this attempt");
                                cancel.store(true, Ordering::SeqCst);
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "heartbeat failed; trying again within the lease");
                                wait = Duration::from_secs(1).min(beat_every);
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            let out = work();
            done.store(true, Ordering::SeqCst);
            out
        })
    }
}
