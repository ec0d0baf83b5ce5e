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

/// Lambda's account concurrency (`Err`: unreadable). New accounts start with as little as
/// 10, shared by every function in the Region; vodpipe's three functions want a few
/// dozen at a burst of uploads.
pub fn lambda_concurrency(limit: Result<i32, String>) -> Finding {
    const WANTED: i32 = 100;
    let raise = "aws service-quotas request-service-quota-increase --service-code lambda --quota-code L-B99A9384 --desired-value 1000";
    match limit {
        Err(e) => Finding::warn(
            "lambda-concurrency",
            format!("could not read the account's Lambda concurrency ({e})"),
            "aws lambda get-account-settings",
        ),
        Ok(n) if n < WANTED => Finding::warn(
            "lambda-concurrency",
            format!("the account runs at most {n} Lambda invocations at once (new accounts start low); bursts of uploads will be throttled and retried"),
            raise,
        ),
        Ok(n) => Finding::ok(
            "lambda-concurrency",
            format!("{n} concurrent Lambda invocations"),
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
        assert_eq!(lambda_concurrency(Ok(10)).level, Level::Warn);
        assert_eq!(lambda_concurrency(Ok(1000)).level, Level::Ok);
    }
}
