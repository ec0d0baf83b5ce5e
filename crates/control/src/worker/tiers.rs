//! Which queue a worker reads next, and when a worker of a fleet leaves.

use crate::domain::{Queue, Tier};
use std::time::Duration;

/// Queue order for a worker serving several tiers: higher tiers first, but every
/// `fairness`-th receive starts from the lowest tier, so bulk work is never starved by a
/// steady stream of premium work.
#[derive(Debug, Clone)]
pub struct TierPicker {
    tiers: Vec<Tier>,
    fairness: u32,
    turn: u32,
}

impl TierPicker {
    /// Serves `tiers`; every `fairness`-th turn (≥ 2) is the lowest tier's.
    pub fn new(mut tiers: Vec<Tier>, fairness: u32) -> Self {
        tiers.sort();
        tiers.dedup();
        TierPicker {
            tiers,
            fairness: fairness.max(2),
            turn: 0,
        }
    }

    /// The queue order for the next receive.
    pub fn next_order(&mut self) -> Vec<Queue> {
        self.turn = self.turn.wrapping_add(1);
        let mut order: Vec<Queue> = self.tiers.iter().map(|t| Queue::Work(*t)).collect();
        if self.turn.is_multiple_of(self.fairness) {
            order.reverse();
        }
        order
    }
}

/// How long a worker of a fleet watches its own load before it may scale in.
pub const SCALE_IN_WINDOW: Duration = Duration::from_secs(300);

/// A fleet worker busy less than this share of [`SCALE_IN_WINDOW`] leaves when it next
/// finds nothing to do: the fleet has more workers than work.
pub const SCALE_IN_BUSY_SHARE: f64 = 0.25;

/// Whether a worker that found nothing to do should exit: idle for `idle_exit` in a row,
/// or (`scale_in`: its busy time and how long it has watched) busy less than
/// [`SCALE_IN_BUSY_SHARE`] of a full [`SCALE_IN_WINDOW`]. With many workers polling, work
/// reaches every one now and then and none is idle for long in a row, so idle time alone
/// never shrinks a fleet (`vodpipe simulate` found the fleet staying at its peak).
pub fn should_exit(
    idle_for: Duration,
    idle_exit: Duration,
    scale_in: Option<(Duration, Duration)>,
) -> bool {
    idle_for >= idle_exit
        || scale_in.is_some_and(|(busy, watched)| {
            watched >= SCALE_IN_WINDOW
                && busy.as_secs_f64() < SCALE_IN_BUSY_SHARE * watched.as_secs_f64()
        })
}
