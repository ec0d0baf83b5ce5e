//! Parsers for the flag values several commands share (tiers, job states): one wording of
//! what is accepted, whichever command a typo is made in.

use vodpipe_control::job::JobStatus;
use vodpipe_control::ports::Tier;

/// `--tier` and `--tiers`: premium, standard or bulk.
pub fn parse_tier(s: &str) -> Result<Tier, String> {
    Tier::parse(s).ok_or_else(|| format!("unknown tier {s:?} (premium, standard, bulk)"))
}

/// `--status`: a job state by its name.
pub fn parse_status(s: &str) -> Result<JobStatus, String> {
    JobStatus::parse(s).ok_or_else(|| {
        format!("unknown state {s:?} (QUEUED, PROBING, ENCODING, STITCHING, PUBLISHED, FAILED)")
    })
}
