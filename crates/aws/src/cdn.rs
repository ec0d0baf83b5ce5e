//! CloudFront invalidations of the pointer manifests, on one or many distributions.
//!
//! Paths are batched (CloudFront takes up to 3 000 per invalidation; we send at most
//! 1 000), and every batch's `CallerReference` derives from the job and the batch number,
//! so a retried stitch asks for the same invalidation and CloudFront does not create a
//! second one. `TooManyInvalidationsInProgress` is waited out with exponential back-off.

use crate::backend;
use crate::config::Bridge;
use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};
use aws_sdk_cloudfront::Client;
use std::sync::Arc;
use std::time::Duration;
use vodpipe_control::ports::{Cdn, PortResult};

/// Paths per invalidation request.
const BATCH: usize = 1000;
/// Tries per batch while CloudFront reports too many invalidations in progress.
const TRIES: u32 = 6;

/// Invalidations on CloudFront.
pub struct CloudFrontCdn {
    client: Client,
    bridge: Arc<Bridge>,
    distributions: Vec<String>,
    first_backoff: Duration,
}

impl CloudFrontCdn {
    /// Invalidates on every distribution in `distributions`.
    pub fn new(
        bridge: Arc<Bridge>,
        sdk: &aws_config::SdkConfig,
        distributions: Vec<String>,
    ) -> Self {
        CloudFrontCdn {
            client: Client::new(sdk),
            bridge,
            distributions,
            first_backoff: Duration::from_secs(2),
        }
    }

    /// Invalidation ids of a distribution (for checks and status).
    pub fn invalidations(&self, distribution: &str) -> PortResult<Vec<String>> {
        let out = self
            .bridge
            .run(
                self.client
                    .list_invalidations()
                    .distribution_id(distribution)
                    .send(),
            )
            .map_err(|e| backend("cloudfront list invalidations", e))?;
        Ok(out
            .invalidation_list()
            .map(|l| l.items().iter().map(|i| i.id().to_string()).collect())
            .unwrap_or_default())
    }
}

impl Cdn for CloudFrontCdn {
    fn invalidate(&self, paths: &[String], caller_reference: &str) -> PortResult<()> {
        for dist in &self.distributions {
            for (n, batch) in paths.chunks(BATCH).enumerate() {
                let reference = format!("{caller_reference}-{n}");
                let mut wait = self.first_backoff;
                for attempt in 1..=TRIES {
                    let items = Paths::builder()
                        .quantity(batch.len() as i32)
                        .set_items(Some(batch.to_vec()))
                        .build()
                        .map_err(|e| backend("paths", e))?;
                    let inv = InvalidationBatch::builder()
                        .paths(items)
                        .caller_reference(&reference)
                        .build()
                        .map_err(|e| backend("batch", e))?;
                    match self.bridge.run(
                        self.client
                            .create_invalidation()
                            .distribution_id(dist)
                            .invalidation_batch(inv)
                            .send(),
                    ) {
                        Ok(_) => break,
                        Err(e)
                            if attempt < TRIES
                                && e.as_service_error().is_some_and(|se| {
                                    se.is_too_many_invalidations_in_progress()
                                }) =>
                        {
                            tracing::warn!(distribution = %dist, ?wait, "too many invalidations in progress; backing off");
                            std::thread::sleep(wait);
                            wait *= 2;
                        }
                        Err(e) => {
                            return Err(backend(&format!("cloudfront invalidation on {dist}"), e))
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
