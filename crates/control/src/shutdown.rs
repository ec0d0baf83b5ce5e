//! The stop signal every long-running piece holds (the receive loop, the heartbeat, the
//! running ffmpeg): SIGTERM on a Spot reclaim must stop them all within milliseconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A shutdown signal every long-running piece holds: set once (SIGTERM, SIGINT), seen by
/// the receive loop and by the running ffmpeg, which is killed within milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// A signal not yet given.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// The flag, for signal handlers (`signal_hook::flag::register`) and tool runs.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }

    /// Asks everything holding this to stop.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether stopping was asked for.
    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Sleeps for `d`, or less when stopping is asked for meanwhile: an idle worker told
    /// to stop leaves within milliseconds, not at the end of its nap.
    pub fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.is_triggered() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(10)));
        }
    }
}
