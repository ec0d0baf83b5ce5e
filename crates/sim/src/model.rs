//! Models of the service limits the simulation meets, and the prices it charges.

/// A rate limit with a burst (the generic cell-rate algorithm): what Fargate applies to
/// task launches per pool. A launch over the rate is not refused but delayed to the
/// earliest time the limit allows, as the SDK's retries would get it through.
#[derive(Debug, Clone)]
pub struct Gcra {
    interval: f64,
    tolerance: f64,
    tat: f64,
}

impl Gcra {
    /// `rate` a second, `burst` at once.
    pub fn new(rate: f64, burst: f64) -> Gcra {
        let interval = 1.0 / rate.max(1e-9);
        Gcra {
            interval,
            tolerance: (burst.max(1.0) - 1.0) * interval,
            tat: 0.0,
        }
    }

    /// Reserves one launch requested at `now`; returns when it happens.
    pub fn reserve(&mut self, now: f64) -> f64 {
        let tat = self.tat.max(now);
        let at = (tat - self.tolerance).max(now);
        self.tat = tat.max(at) + self.interval;
        at
    }
}

/// A count of concurrent executions with a limit (Lambda's per-account concurrency).
#[derive(Debug, Clone)]
pub struct Semaphore {
    limit: u32,
    used: u32,
}

impl Semaphore {
    /// At most `limit` at once.
    pub fn new(limit: u32) -> Semaphore {
        Semaphore { limit, used: 0 }
    }

    /// Takes one if one is free.
    pub fn try_acquire(&mut self) -> bool {
        if self.used < self.limit {
            self.used += 1;
            true
        } else {
            false
        }
    }

    /// Gives one back.
    pub fn release(&mut self) {
        self.used = self.used.saturating_sub(1);
    }

    /// In use now.
    pub fn in_use(&self) -> u32 {
        self.used
    }

    /// The limit.
    pub fn limit(&self) -> u32 {
        self.limit
    }
}

/// us-east-1 list prices the run charges (USD), besides Fargate (`control::cost`).
#[derive(Debug, Clone, Copy)]
pub struct Prices {
    /// Lambda ARM, per GB-second.
    pub lambda_gb_second: f64,
    /// Lambda, per request.
    pub lambda_request: f64,
    /// SQS, per request (64 KB).
    pub sqs_request: f64,
    /// DynamoDB on-demand, per write request unit.
    pub dynamodb_write: f64,
    /// DynamoDB on-demand, per read request unit.
    pub dynamodb_read: f64,
    /// S3, per PUT.
    pub s3_put: f64,
    /// S3, per GET.
    pub s3_get: f64,
    /// S3 Standard, per GB-month.
    pub s3_gb_month: f64,
    /// CloudFront, per invalidation path past the free 1,000 a month.
    pub invalidation_path: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            lambda_gb_second: 0.000_013_333_4,
            lambda_request: 0.2e-6,
            sqs_request: 0.4e-6,
            dynamodb_write: 0.625e-6,
            dynamodb_read: 0.125e-6,
            s3_put: 0.005 / 1000.0,
            s3_get: 0.0004 / 1000.0,
            s3_gb_month: 0.023,
            invalidation_path: 0.005,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launches_never_outrun_the_rate_after_the_burst() {
        let mut g = Gcra::new(20.0, 100.0);
        let times: Vec<f64> = (0..1000).map(|_| g.reserve(0.0)).collect();
        // The burst goes at once, then one every 50 ms.
        assert_eq!(times.iter().filter(|t| **t == 0.0).count(), 100);
        assert!((times[999] - 900.0 / 20.0).abs() < 1e-6, "{}", times[999]);
        for w in 0..50 {
            let start = f64::from(w);
            // (a hair inside the window: launch times are sums of 50 ms steps in floats)
            let n = times
                .iter()
                .filter(|t| **t >= start - 1e-6 && **t < start + 1.0 - 1e-6)
                .count();
            // The burst and the second's own share at most; past the burst, the rate.
            assert!(n <= 120, "{n} launches in second {w}");
            if w >= 5 {
                assert!(n <= 20, "{n} launches in second {w}");
            }
        }
    }
}
