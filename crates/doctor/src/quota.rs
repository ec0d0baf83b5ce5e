//! Fargate vCPU quotas against the fleet's cap, and Lambda's concurrency.
//!
//! Quotas count running vCPU per account and Region, separately for On-Demand and Spot.
//! Premium work runs on On-Demand (one tier), standard and bulk on Spot (two tiers), each
//! tier capped at `MaxWorkersPerTier` tasks of the worker's size.

use crate::Finding;

/// A Fargate capacity pool and its vCPU quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// FARGATE: the premium tier.
    OnDemand,
    /// FARGATE_SPOT: the standard and bulk tiers.
    Spot,
}

impl Pool {
    /// The Service Quotas code of the pool's vCPU quota.
    pub fn quota_code(self) -> &'static str {
        match self {
            Pool::OnDemand => "L-3032A538",
            Pool::Spot => "L-36FBB829",
        }
    }

    /// Tiers whose tasks run in this pool.
    pub fn tiers(self) -> u32 {
        match self {
            Pool::OnDemand => 1,
            Pool::Spot => 2,
        }
    }

    fn check(self) -> &'static str {
        match self {
            Pool::OnDemand => "fargate-on-demand-vcpu",
            Pool::Spot => "fargate-spot-vcpu",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Pool::OnDemand => "Fargate On-Demand (premium tier)",
            Pool::Spot => "Fargate Spot (standard and bulk tiers)",
        }
    }
}

/// The quota of `pool` (`Err`: it could not be read) against `max_workers` tasks of
/// `task_vcpu` per tier.
pub fn fargate(
    pool: Pool,
    quota: Result<f64, String>,
    max_workers: u32,
    task_vcpu: f64,
) -> Finding {
    let needed = f64::from(pool.tiers() * max_workers) * task_vcpu;
    let raise = format!(
        "aws service-quotas request-service-quota-increase --service-code fargate --quota-code {} --desired-value {needed:.0}",
        pool.quota_code()
    );
    let quota = match quota {
        Ok(q) => q,
        Err(e) => {
            return Finding::warn(
                pool.check(),
                format!(
                    "could not read the {} vCPU quota ({e}); {needed:.0} vCPU are needed for {} tasks of {task_vcpu} vCPU",
                    pool.words(),
                    pool.tiers() * max_workers
                ),
                format!(
                    "aws service-quotas get-service-quota --service-code fargate --quota-code {}",
                    pool.quota_code()
                ),
            )
        }
    };
    let tasks = (quota / task_vcpu).floor() as u32;
    if quota < task_vcpu {
        Finding::fail(
            pool.check(),
            format!(
                "{} allows {quota:.0} vCPU: not one {task_vcpu}-vCPU worker can start",
                pool.words()
            ),
            raise,
        )
    } else if quota < needed {
        Finding::warn(
            pool.check(),
            format!(
                "{} allows {quota:.0} vCPU = {tasks} workers; MaxWorkersPerTier {max_workers} asks for up to {} ({needed:.0} vCPU)",
                pool.words(),
                pool.tiers() * max_workers
            ),
            raise,
        )
    } else {
        Finding::ok(
            pool.check(),
            format!(
                "{} allows {quota:.0} vCPU = {tasks} workers (up to {} wanted)",
                pool.words(),
                pool.tiers() * max_workers
            ),
        )
    }
}

/// What the stack's functions may run at once: its event source mappings' maximum
/// concurrency (the template's `IngestMaxConcurrency`, `StitchMaxConcurrency`) and the
/// fleet's two.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FunctionConcurrency {
    /// Ingests at once.
    pub ingest: i32,
    /// Stitches at once.
    pub stitch: i32,
    /// Whether the stack reserves the stitch's and the fleet's (`ReserveConcurrency`).
    pub reserved: bool,
}

impl Default for FunctionConcurrency {
    /// The template's defaults.
    fn default() -> Self {
        FunctionConcurrency {
            ingest: 100,
            stitch: 20,
            reserved: false,
        }
    }
}

/// Executions Lambda keeps unreserved in every account: reserving leaves at least this.
pub const UNRESERVED_MINIMUM: i32 = 100;
/// The fleet function's executions at once (a tick, and Spot events).
pub const FLEET_CONCURRENCY: i32 = 2;

/// Lambda's account concurrency (`Err`: unreadable) against what the stack's functions
/// may take at once. New accounts start with as little as 10, shared by every function in
/// the Region: a burst of uploads then holds every execution, and the stitch and the
/// fleet (which publish and start workers) wait behind it. Reserving their concurrency
/// fixes that, but only an account of at least 100 plus what is reserved may reserve.
pub fn lambda_concurrency(limit: Result<i32, String>, want: FunctionConcurrency) -> Finding {
    let raise = "aws service-quotas request-service-quota-increase --service-code lambda --quota-code L-B99A9384 --desired-value 1000";
    let all = want.ingest + want.stitch + FLEET_CONCURRENCY;
    let reservable = UNRESERVED_MINIMUM + want.stitch + FLEET_CONCURRENCY;
    match limit {
        Err(e) => Finding::warn(
            "lambda-concurrency",
            format!("could not read the account's Lambda concurrency ({e})"),
            "aws lambda get-account-settings",
        ),
        Ok(n) if n < all => Finding::warn(
            "lambda-concurrency",
            format!(
                "the account runs at most {n} Lambda invocations at once, below the {all} the stack's mappings may take (ingest {}, stitch {}, fleet {FLEET_CONCURRENCY}): a burst of uploads can hold every execution while stitches and worker launches wait",
                want.ingest, want.stitch
            ),
            raise,
        ),
        Ok(n) if !want.reserved && n >= reservable => Finding::ok(
            "lambda-concurrency",
            format!(
                "{n} concurrent Lambda invocations, room for the stack's {all}; ReserveConcurrency=yes would keep {} for the stitch and fleet whatever else runs",
                want.stitch + FLEET_CONCURRENCY
            ),
        ),
        Ok(n) if want.reserved && n < reservable => Finding::warn(
            "lambda-concurrency",
            format!(
                "ReserveConcurrency=yes reserves {} but the account's {n} must keep {UNRESERVED_MINIMUM} unreserved: the deployment fails",
                want.stitch + FLEET_CONCURRENCY
            ),
            raise,
        ),
        Ok(n) => Finding::ok(
            "lambda-concurrency",
            format!("{n} concurrent Lambda invocations, room for the stack's {all}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Level;

    #[test]
    fn a_new_accounts_quota_runs_one_task_and_warns() {
        let f = fargate(Pool::Spot, Ok(6.0), 20, 4.0);
        assert_eq!(f.level, Level::Warn);
        assert!(f.detail.contains("= 1 workers"), "{}", f.detail);
        assert!(f.detail.contains("up to 40 (160 vCPU)"), "{}", f.detail);
        assert!(f
            .fix
            .unwrap()
            .contains("--quota-code L-36FBB829 --desired-value 160"));
    }

    #[test]
    fn a_quota_below_one_task_fails_and_a_sufficient_one_passes() {
        assert_eq!(fargate(Pool::OnDemand, Ok(2.0), 5, 4.0).level, Level::Fail);
        let ok = fargate(Pool::OnDemand, Ok(20.0), 5, 4.0);
        assert_eq!(ok.level, Level::Ok);
        assert!(ok.fix.is_none());
    }

    #[test]
    fn an_unreadable_quota_warns_with_the_command_to_read_it() {
        let f = fargate(Pool::OnDemand, Err("no access".into()), 20, 4.0);
        assert_eq!(f.level, Level::Warn);
        assert!(f.fix.unwrap().contains("get-service-quota"));
    }

    #[test]
    fn low_lambda_concurrency_warns() {
        let want = FunctionConcurrency::default();
        let new_account = lambda_concurrency(Ok(10), want);
        assert_eq!(new_account.level, Level::Warn);
        assert!(
            new_account.detail.contains("below the 122"),
            "{}",
            new_account.detail
        );
        let big = lambda_concurrency(Ok(1000), want);
        assert_eq!(big.level, Level::Ok);
        assert!(
            big.detail.contains("ReserveConcurrency=yes"),
            "{}",
            big.detail
        );
        let reserving = FunctionConcurrency {
            reserved: true,
            ..want
        };
        assert_eq!(lambda_concurrency(Ok(110), reserving).level, Level::Warn);
        assert_eq!(lambda_concurrency(Ok(1000), reserving).level, Level::Ok);
    }
}
