//! Worker capacity on ECS: Fargate tasks started with `RunTask` on a capacity-provider
//! strategy per tier — FARGATE (on-demand) for premium, FARGATE_SPOT for standard and
//! bulk — and counted per tier by their `startedBy` tag.
//!
//! `ensure_capacity` only ever adds tasks up to the cap; workers exit by themselves when
//! idle, which is how the fleet returns to zero. `failures[]` in a RunTask answer (no
//! Spot capacity, a vCPU quota) are reported, not fatal: queued work waits for the next
//! reconcile.
//!
//! Launches are paced below Fargate's limits (per account and Region: 20 task launches a
//! second per pool, On-Demand and Spot separately, with a burst of 100; `RunTask` at 20
//! calls a second and 10 tasks a call): at most [`MAX_LAUNCHES_PER_CALL`] tasks per
//! `ensure_capacity`, in calls of 10 spaced so one caller stays under
//! [`LAUNCHES_PER_SECOND`]. Throttled calls are retried by the SDK's standard back-off; a
//! tier whose launches still fail reports the error and leaves the others alone (the fleet
//! function reconciles each tier on its own).

use crate::backend;
use crate::config::Bridge;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, ContainerOverride,
    KeyValuePair, NetworkConfiguration, TaskOverride,
};
use aws_sdk_ecs::Client;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vodpipe_control::ports::{Fleet, JobStore, LaunchClaim, PortError, PortResult, Tier};
use vodpipe_media::process::now_secs;

pub use vodpipe_control::sweep::{LAUNCHES_PER_SECOND, MAX_LAUNCHES_PER_CALL, TASKS_PER_RUN_TASK};

/// Where and how worker tasks run.
#[derive(Debug, Clone)]
pub struct EcsSettings {
    /// Cluster name or ARN.
    pub cluster: String,
    /// Worker task definition (family[:revision] or ARN).
    pub task_definition: String,
    /// Name of the worker container in the task definition.
    pub container: String,
    /// Subnets (at least two AZs in production).
    pub subnets: Vec<String>,
    /// Security groups.
    pub security_groups: Vec<String>,
    /// Give tasks a public IP: in public subnets (the stack's own VPC) it is their route
    /// to ECR, S3 and the other APIs; private subnets with a NAT gateway or endpoints
    /// leave it off.
    pub assign_public_ip: bool,
    /// Most worker tasks per tier.
    pub max_per_tier: u32,
    /// How long a tier's launches wait after its first failed launch in a row (doubling
    /// with each further one): `VODPIPE_LAUNCH_BACKOFF_SECS`, 60 by default.
    pub launch_backoff_secs: f64,
    /// Tasks kept per tier while idle (`WarmWorkersPerTier`): launched with
    /// [`WARM_IDLE_EXIT_SECS`] and `VODPIPE_WARM` (no scale-in), so they outlast quiet
    /// spells, and replaced by the next reconcile when they stop.
    pub warm_per_tier: u32,
}

/// How long a task launched to keep a tier warm waits for work before it exits: long
/// enough that it is rarely replaced, short enough that lowering `WarmWorkersPerTier`
/// takes effect within the hour.
pub const WARM_IDLE_EXIT_SECS: u32 = 3600;

/// How long one caller may decide a tier's launches: [`MAX_LAUNCHES_PER_CALL`] at
/// [`LAUNCHES_PER_SECOND`] with room to spare. A caller that dies holding it blocks the
/// tier's launches this long at most.
pub const LAUNCH_HOLD_SECS: f64 = 60.0;

/// How long the task count the last decider left is trusted over `ListTasks`, which may
/// not yet list tasks `RunTask` just started.
pub const LEFT_COUNT_TRUSTED_SECS: f64 = 30.0;

/// The ECS fleet.
pub struct EcsFleet {
    client: Client,
    bridge: Arc<Bridge>,
    settings: EcsSettings,
    /// Where failed launches are recorded (the job table).
    launches: crate::dynamo::DynamoJobs,
}

/// The `startedBy` tag of a tier's tasks.
pub fn started_by(tier: Tier) -> String {
    format!("vodpipe-{}", tier.as_str())
}

/// The capacity provider a tier runs on.
pub fn capacity_provider(tier: Tier) -> &'static str {
    if vodpipe_control::sweep::runs_on_spot(tier) {
        "FARGATE_SPOT"
    } else {
        "FARGATE"
    }
}

/// The queues a tier's worker serves: premium tasks serve premium work only (it is where
/// escalated items go); Spot tasks serve standard and bulk.
pub fn served_tiers(tier: Tier) -> String {
    vodpipe_control::sweep::served_tiers(tier)
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

impl EcsFleet {
    /// The fleet in `settings`, recording failed launches in `table`.
    pub fn new(
        bridge: Arc<Bridge>,
        sdk: &aws_config::SdkConfig,
        settings: EcsSettings,
        table: &str,
    ) -> Self {
        EcsFleet {
            client: Client::new(sdk),
            launches: crate::dynamo::DynamoJobs::new(bridge.clone(), sdk, table),
            bridge,
            settings,
        }
    }

    /// Running and pending tasks of a tier.
    pub fn count(&self, tier: Tier) -> PortResult<u32> {
        let mut n = 0;
        let mut token: Option<String> = None;
        loop {
            let out = self
                .bridge
                .run(
                    self.client
                        .list_tasks()
                        .cluster(&self.settings.cluster)
                        // `startedBy` must be the only filter; the default desired
                        // status, RUNNING, is what counts (pending tasks included, tasks
                        // ECS is stopping, such as a warned Spot task, excluded).
                        .started_by(started_by(tier))
                        .set_next_token(token.take())
                        .send(),
                )
                .map_err(|e| backend("ecs list tasks", e))?;
            n += out.task_arns().len() as u32;
            match out.next_token() {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(n),
            }
        }
    }
}

impl Fleet for EcsFleet {
    /// Launches are decided by one caller per tier at a time ([`JobStore::claim_launches`]):
    /// a caller that finds another deciding returns the tasks it counts and launches
    /// nothing; the decider (or the next tick) sizes the tier from the queue.
    fn ensure_capacity(&self, tier: Tier, workers: u32) -> PortResult<u32> {
        // Tasks that cannot start are billed and fail again on every launch: after failed
        // launches the tier waits, longer each time, until one of its tasks starts.
        let base = self.settings.launch_backoff_secs;
        if let Some(t) = self.launches.launch_trouble(tier)? {
            if now_secs() < vodpipe_control::sweep::launch_allowed_at(&t, base) {
                return Err(PortError::Backend(
                    vodpipe_control::sweep::launch_trouble_text(tier, &t, base),
                ));
            }
        }
        let workers = workers.max(self.settings.warm_per_tier);
        let holder = crate::dynamo::random_token();
        let Some(claim) = self
            .launches
            .claim_launches(tier, &holder, LAUNCH_HOLD_SECS)?
        else {
            tracing::debug!(%tier, "another caller is deciding this tier's launches");
            return self.count(tier);
        };
        let result = self.launch(tier, workers, claim);
        // Only a launch is worth passing on; otherwise the next decider counts for itself.
        let left = match &result {
            Ok((total, started)) if *started > 0 => Some(*total),
            _ => None,
        };
        if let Err(e) = self.launches.release_launches(tier, &holder, left) {
            // The hold lapses by itself within LAUNCH_HOLD_SECS.
            tracing::warn!(%tier, error = %e, "could not let go of the tier's launches");
        }
        result.map(|(total, _)| total)
    }
}

impl EcsFleet {
    /// Starts tasks until the tier has `workers` (within the cap), as the one decider:
    /// the tasks it then has, and how many of them it started.
    fn launch(&self, tier: Tier, workers: u32, claim: LaunchClaim) -> PortResult<(u32, u32)> {
        let counted = self.count(tier)?;
        // Tasks the last decider started moments ago count even if not yet listed.
        let have = match claim.last {
            Some((left, at)) if now_secs() - at < LEFT_COUNT_TRUSTED_SECS => counted.max(left),
            _ => counted,
        };
        let want = vodpipe_control::sweep::launch_target(have, workers, self.settings.max_per_tier);
        let mut started = 0;
        let pause = Duration::from_secs_f64(f64::from(TASKS_PER_RUN_TASK) / LAUNCHES_PER_SECOND);
        let mut last_call: Option<Instant> = None;
        while have + started < want {
            if let Some(wait) = last_call.and_then(|t| pause.checked_sub(t.elapsed())) {
                std::thread::sleep(wait);
            }
            last_call = Some(Instant::now());
            let count = (want - have - started).min(TASKS_PER_RUN_TASK);
            // The tasks that bring the tier up to its warm minimum stay through idle
            // spells; the rest exit after the task definition's idle time.
            let warm = self
                .settings
                .warm_per_tier
                .saturating_sub(have + started)
                .min(count);
            let count = if warm > 0 { warm } else { count };
            let net = AwsVpcConfiguration::builder()
                .set_subnets(Some(self.settings.subnets.clone()))
                .set_security_groups(Some(self.settings.security_groups.clone()))
                .assign_public_ip(if self.settings.assign_public_ip {
                    AssignPublicIp::Enabled
                } else {
                    AssignPublicIp::Disabled
                })
                .build()
                .map_err(|e| backend("network configuration", e))?;
            let strategy = CapacityProviderStrategyItem::builder()
                .capacity_provider(capacity_provider(tier))
                .weight(1)
                .build()
                .map_err(|e| backend("capacity provider strategy", e))?;
            let mut container = ContainerOverride::builder()
                .name(&self.settings.container)
                .environment(
                    KeyValuePair::builder()
                        .name("VODPIPE_TIERS")
                        .value(served_tiers(tier))
                        .build(),
                );
            if warm > 0 {
                for (name, value) in [
                    ("VODPIPE_IDLE_EXIT_SECS", WARM_IDLE_EXIT_SECS.to_string()),
                    ("VODPIPE_WARM", "true".to_string()),
                ] {
                    container = container
                        .environment(KeyValuePair::builder().name(name).value(value).build());
                }
            }
            let overrides = TaskOverride::builder()
                .container_overrides(container.build())
                .build();
            let sent = self.bridge.run(
                self.client
                    .run_task()
                    .cluster(&self.settings.cluster)
                    .task_definition(&self.settings.task_definition)
                    .count(count as i32)
                    .started_by(started_by(tier))
                    .capacity_provider_strategy(strategy)
                    .network_configuration(
                        NetworkConfiguration::builder()
                            .awsvpc_configuration(net)
                            .build(),
                    )
                    .overrides(overrides)
                    // A retry after a lost response starts no second set of tasks.
                    .client_token(crate::dynamo::random_token())
                    .send(),
            );
            let out = match sent {
                Ok(out) => out,
                // Tasks already started count; the rest waits for the next reconcile.
                Err(e) if started > 0 => {
                    tracing::warn!(%tier, started, error = ?e, "RunTask failed part-way");
                    break;
                }
                Err(e) => return Err(backend("ecs run task", e)),
            };
            let ok = out.tasks().len() as u32;
            for f in out.failures() {
                tracing::warn!(%tier, reason = f.reason().unwrap_or("?"), detail = f.detail().unwrap_or(""), "RunTask failure");
            }
            if ok == 0 {
                if let Some(f) = out.failures().first() {
                    let reason = format!(
                        "RunTask: {} {}",
                        f.reason().unwrap_or("?"),
                        f.detail().unwrap_or("")
                    );
                    self.launches.record_launch_failure(
                        tier,
                        reason.trim(),
                        self.settings.launch_backoff_secs,
                    )?;
                }
            }
            started += ok;
            if ok < count {
                break;
            }
        }
        if started > 0 {
            tracing::info!(%tier, started, running = have, "started worker tasks");
        }
        Ok((have + started, started))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn premium_runs_on_demand_and_spot_tiers_on_spot() {
        assert_eq!(capacity_provider(Tier::Premium), "FARGATE");
        assert_eq!(capacity_provider(Tier::Bulk), "FARGATE_SPOT");
        assert_eq!(served_tiers(Tier::Standard), "standard,bulk");
        assert_eq!(started_by(Tier::Bulk), "vodpipe-bulk");
    }
}
