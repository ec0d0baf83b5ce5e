//! Job-state events on EventBridge: one event each time a job reaches a state a user
//! would act on (planned, published, failed), so notifications, analytics and downstream
//! workflows subscribe with a rule instead of polling the table.
//!
//! Events are best-effort by design: the table is the source of truth, and a job is never
//! failed or retried because its event could not be sent.

use crate::backend;
use crate::config::Bridge;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;
use std::sync::Arc;
use vodpipe_control::ports::{JobEvents, JobRecord, PortError, PortResult};

/// The `source` of every event vodpipe puts.
pub const SOURCE: &str = "vodpipe";
/// The `detail-type` of job-state events.
pub const DETAIL_TYPE: &str = "Vodpipe Job State Change";

/// Puts job-state events on one bus (the job-state events port on AWS).
pub struct BusEvents {
    client: Client,
    bridge: Arc<Bridge>,
    bus: String,
}

impl BusEvents {
    /// Events on `bus` (a name or ARN; `default` is the account's default bus).
    pub fn new(bridge: Arc<Bridge>, sdk: &aws_config::SdkConfig, bus: &str) -> Self {
        BusEvents {
            client: Client::new(sdk),
            bridge,
            bus: bus.to_string(),
        }
    }
}

impl JobEvents for BusEvents {
    /// Puts one event for `job`'s current state.
    fn job_changed(&self, job: &JobRecord) -> PortResult<()> {
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(DETAIL_TYPE)
            .resources(format!("vodpipe:job/{}", job.id))
            .detail(vodpipe_control::moves::detail(job).to_string())
            .build();
        let out = self
            .bridge
            .run(self.client.put_events().entries(entry).send())
            .map_err(|e| backend("eventbridge put events", e))?;
        if out.failed_entry_count() > 0 {
            let why = out
                .entries()
                .iter()
                .filter_map(|e| e.error_message())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(PortError::Backend(format!(
                "eventbridge refused the event: {why}"
            )));
        }
        Ok(())
    }
}
