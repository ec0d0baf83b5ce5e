//! Dead letters: a message that reached a dead-letter queue is a question, not a verdict.
//!
//! SQS moves a message there after so many receives, whatever the reason: an item that
//! keeps failing, but also one whose workers were interrupted (Spot reclaims, scale-in),
//! one held by a live worker whose duplicate message kept coming back, or a stitch that met
//! a passing S3 fault a few times in a row. Failing the job on the first of these would
//! fail jobs that were fine. So each dead letter is looked at again here, and a job fails
//! only when its item or stitch is itself failing, never because its workers were stopped:
//!
//! - an item done, or of a job no longer encoding: nothing to do;
//! - an item leased by a live worker: queued again (it may be the item's last message);
//! - an item that failed [`FAILURES_TO_FAIL`] times, the last time with an error of its own
//!   (not a service's or the machine's): the job fails with it;
//! - an item that failed [`DEATHS_TO_FAIL`] times whatever the errors, or whose workers
//!   died without a word that often (a source that kills its encoder out of memory, say):
//!   the job fails, saying so;
//! - any other item (interrupted, or not tried enough): queued again, on on-demand capacity
//!   when it ran on Spot, where nothing reclaims it;
//! - a stitch request of a job still STITCHING: requested again (the dead letter itself
//!   counted as a failed stitch, for a stitch that timed out or crashed reports nothing),
//!   until [`STITCH_FAILURES_TO_FAIL`] stitches of the job have failed.

use crate::domain::JobStatus;
use crate::domain::{ItemRef, JobRecord, Tier};
use crate::ports::ItemState;

/// Failed attempts (each with an error) after which an item's dead letter fails its job.
pub const FAILURES_TO_FAIL: u32 = 3;
/// Attempts whose worker vanished without giving the item back (killed, out of memory), or
/// failures whatever their cause, after which an item's dead letter fails its job.
pub const DEATHS_TO_FAIL: u32 = 10;
/// Failed stitches of a job after which its dead stitch request fails it.
pub const STITCH_FAILURES_TO_FAIL: u32 = 10;

/// What to do with a dead letter.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Nothing is waiting on it: delete it.
    Drop,
    /// Send the item's message again, on this tier's queue.
    Requeue(Tier),
    /// Request the job's stitch again.
    Restitch,
    /// Fail the job with this reason.
    Fail(String),
}

/// The verdict on an item's dead letter, from the item and its job as they are now, after
/// `receives` deliveries of the message.
pub fn item(
    item: &ItemRef,
    state: Option<&ItemState>,
    job: Option<&JobRecord>,
    receives: u32,
) -> Verdict {
    let (Some(state), Some(job)) = (state, job) else {
        return Verdict::Drop;
    };
    if job.status != JobStatus::Encoding || state.done {
        return Verdict::Drop;
    }
    if state.leased {
        return Verdict::Requeue(job.tier);
    }
    let deaths = state
        .attempts
        .saturating_sub(state.failures)
        .saturating_sub(state.interruptions);
    let own = state.failures >= FAILURES_TO_FAIL && !state.last_error_transient;
    if own || state.failures >= DEATHS_TO_FAIL {
        let last = state.last_error.as_deref().unwrap_or("no error recorded");
        return Verdict::Fail(format!(
            "{} was delivered {receives} times without completing and failed {} times; last error: {last}",
            item.describe(),
            state.failures
        ));
    }
    if deaths >= DEATHS_TO_FAIL {
        return Verdict::Fail(format!(
            "{}: its worker stopped without a word {deaths} times (killed, or out of memory: see the worker logs); {} failures, {} interruptions",
            item.describe(),
            state.failures,
            state.interruptions
        ));
    }
    // Interrupted, or not failing enough to call it: on capacity nothing reclaims.
    Verdict::Requeue(if crate::sweep::runs_on_spot(job.tier) {
        Tier::Premium
    } else {
        job.tier
    })
}

/// The verdict on a stitch request's dead letter.
pub fn stitch(job: Option<&JobRecord>) -> Verdict {
    match job {
        Some(j) if j.status == JobStatus::Stitching => {
            if j.stitch_failures >= STITCH_FAILURES_TO_FAIL {
                Verdict::Fail(format!(
                    "stitching failed {} times; last error: {}",
                    j.stitch_failures,
                    j.stitch_error.as_deref().unwrap_or("none recorded")
                ))
            } else {
                Verdict::Restitch
            }
        }
        _ => Verdict::Drop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ItemKind;

    fn job(status: JobStatus, tier: Tier) -> JobRecord {
        let mut j: JobRecord = serde_json::from_value(serde_json::json!({
            "id": "j", "source": "s", "asset": "a", "tier": "standard", "status": "ENCODING",
            "error": null, "done": 0, "total": 2, "frames_done": 0, "frames_total": 0,
            "duration_secs": 0.0, "rungs": 1, "attempts": 0, "failures": 0,
            "interruptions": 0, "encode_secs": 0.0, "wasted_secs": 0.0, "created_at": 0.0,
            "queued_at": null, "started_at": null, "stitch_started_at": null,
            "finished_at": null, "stitch_count": 0, "master_key": null, "dash_key": null,
            "settings": null,
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        j.status = status;
        j.tier = tier;
        j
    }

    fn state(attempts: u32, failures: u32, interruptions: u32) -> ItemState {
        ItemState {
            done: false,
            attempts,
            failures,
            interruptions,
            last_error: (failures > 0).then(|| "ffmpeg said no".into()),
            last_error_transient: false,
            leased: false,
            worker: None,
            leased_at: None,
            done_at: None,
            frames: 0,
            encode_secs: 0.0,
            wasted_secs: 0.0,
        }
    }

    fn chunk() -> ItemRef {
        ItemRef {
            job_id: "j".into(),
            kind: ItemKind::Audio,
            index: 0,
        }
    }

    #[test]
    fn an_interrupted_item_is_never_failed_and_moves_to_on_demand() {
        let j = job(JobStatus::Encoding, Tier::Standard);
        let v = item(&chunk(), Some(&state(20, 0, 20)), Some(&j), 20);
        assert_eq!(v, Verdict::Requeue(Tier::Premium));
        let p = job(JobStatus::Encoding, Tier::Premium);
        assert_eq!(
            item(&chunk(), Some(&state(20, 1, 19)), Some(&p), 20),
            Verdict::Requeue(Tier::Premium)
        );
    }

    #[test]
    fn an_item_failing_with_errors_fails_its_job_with_the_last_one() {
        let j = job(JobStatus::Encoding, Tier::Bulk);
        match item(&chunk(), Some(&state(5, 3, 0)), Some(&j), 5) {
            Verdict::Fail(why) => {
                assert!(why.contains("audio track 0 was delivered 5 times"), "{why}");
                assert!(why.contains("ffmpeg said no"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failures_of_the_services_weigh_less_than_the_items_own() {
        let j = job(JobStatus::Encoding, Tier::Standard);
        let mut s = state(4, 3, 0);
        s.last_error = Some("store chunk 2 failed: s3 put: SlowDown".into());
        s.last_error_transient = true;
        assert_eq!(
            item(&chunk(), Some(&s), Some(&j), 5),
            Verdict::Requeue(Tier::Premium)
        );
        s.failures = DEATHS_TO_FAIL;
        s.attempts = DEATHS_TO_FAIL;
        assert!(matches!(
            item(&chunk(), Some(&s), Some(&j), 5),
            Verdict::Fail(_)
        ));
    }

    #[test]
    fn a_worker_that_keeps_dying_on_an_item_fails_its_job_saying_so() {
        let j = job(JobStatus::Encoding, Tier::Premium);
        match item(&chunk(), Some(&state(12, 1, 1)), Some(&j), 5) {
            Verdict::Fail(why) => assert!(why.contains("10 times"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            item(&chunk(), Some(&state(9, 0, 0)), Some(&j), 5),
            Verdict::Requeue(Tier::Premium)
        );
    }

    #[test]
    fn held_done_or_finished_items_are_not_failed() {
        let j = job(JobStatus::Encoding, Tier::Standard);
        let mut held = state(9, 4, 0);
        held.leased = true;
        assert_eq!(
            item(&chunk(), Some(&held), Some(&j), 9),
            Verdict::Requeue(Tier::Standard)
        );
        let mut done = state(9, 4, 0);
        done.done = true;
        assert_eq!(item(&chunk(), Some(&done), Some(&j), 9), Verdict::Drop);
        let failed = job(JobStatus::Failed, Tier::Standard);
        assert_eq!(
            item(&chunk(), Some(&state(9, 4, 0)), Some(&failed), 9),
            Verdict::Drop
        );
        assert_eq!(item(&chunk(), None, Some(&j), 9), Verdict::Drop);
    }

    #[test]
    fn a_dead_stitch_request_is_requested_again_until_many_stitches_failed() {
        let mut j = job(JobStatus::Stitching, Tier::Standard);
        assert_eq!(stitch(Some(&j)), Verdict::Restitch);
        j.stitch_failures = STITCH_FAILURES_TO_FAIL;
        j.stitch_error = Some("s3 put: SlowDown".into());
        match stitch(Some(&j)) {
            Verdict::Fail(why) => assert!(why.contains("SlowDown"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            stitch(Some(&job(JobStatus::Published, Tier::Standard))),
            Verdict::Drop
        );
        assert_eq!(stitch(None), Verdict::Drop);
    }
}
