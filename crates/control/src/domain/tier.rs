//! Where work runs: the tiers and the queues that feed them.

use serde::{Deserialize, Serialize};

/// The tier a job runs on. Premium runs on on-demand capacity; standard and bulk on Spot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// On-demand capacity, served first.
    Premium,
    /// Spot capacity, the default.
    Standard,
    /// Spot capacity, served last but never starved.
    Bulk,
}

impl Tier {
    /// All tiers, in priority order.
    pub const ALL: [Tier; 3] = [Tier::Premium, Tier::Standard, Tier::Bulk];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Premium => "premium",
            Tier::Standard => "standard",
            Tier::Bulk => "bulk",
        }
    }

    /// Parses a stored or typed name.
    pub fn parse(s: &str) -> Option<Tier> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A queue: one per tier for work items, one for stitch requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Queue {
    /// Encoding work for a tier.
    Work(Tier),
    /// "This job's last item is done": stitch and publish it.
    Stitch,
}

impl Queue {
    /// Every queue: the tiers' and the stitch queue.
    pub fn all() -> [Queue; 4] {
        [
            Queue::Work(Tier::Premium),
            Queue::Work(Tier::Standard),
            Queue::Work(Tier::Bulk),
            Queue::Stitch,
        ]
    }

    /// The stored name (`premium`, `standard`, `bulk`, `stitch`).
    pub fn as_str(self) -> &'static str {
        match self {
            Queue::Work(t) => t.as_str(),
            Queue::Stitch => "stitch",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Queue> {
        if s == "stitch" {
            return Some(Queue::Stitch);
        }
        Tier::parse(s).map(Queue::Work)
    }
}
