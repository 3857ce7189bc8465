//! Slows down repeated failed logins from one address: after a few failures within a
//! window, further attempts are refused with 429 and a Retry-After that doubles with each
//! further failure (capped). Kept per gateway replica, in memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    window_start: Instant,
    blocked_until: Option<Instant>,
}

/// Counts failures per source address.
#[derive(Debug)]
pub struct FailureLimiter {
    records: Mutex<HashMap<IpAddr, Record>>,
    free_failures: u32,
    window: Duration,
    max_block: Duration,
}

impl FailureLimiter {
    /// `free_failures` failures per `window` are answered normally; then each further
    /// failure blocks the address for 1 s, 2 s, 4 s, ... up to `max_block`.
    pub fn new(free_failures: u32, window: Duration, max_block: Duration) -> Self {
        Self {
            records: Mutex::new(HashMap::new()),
            free_failures,
            window,
            max_block,
        }
    }

    /// `Err(seconds)` when `ip` must wait before trying again.
    pub fn check(&self, ip: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let Some(ip) = ip else { return Ok(()) };
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        match records.get(&ip).and_then(|r| r.blocked_until) {
            Some(until) if until > now => Err((until - now).as_secs().max(1)),
            _ => Ok(()),
        }
    }

    /// Records a failure from `ip`.
    pub fn failed(&self, ip: Option<IpAddr>, now: Instant) {
        let Some(ip) = ip else { return };
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() > 100_000 {
            // Bound memory under a spray of addresses: forget stale records.
            records.retain(|_, r| now.duration_since(r.window_start) < self.window);
        }
        let record = records.entry(ip).or_insert(Record {
            failures: 0,
            window_start: now,
            blocked_until: None,
        });
        if now.duration_since(record.window_start) > self.window
            && record.blocked_until.is_none_or(|u| u <= now)
        {
            *record = Record {
                failures: 0,
                window_start: now,
                blocked_until: None,
            };
        }
        record.failures += 1;
        if record.failures > self.free_failures {
            let excess = (record.failures - self.free_failures - 1).min(16);
            let block = Duration::from_secs(1u64 << excess).min(self.max_block);
            record.blocked_until = Some(now + block);
        }
    }

    /// Forgets `ip`'s failures after a success.
    pub fn succeeded(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.records
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&ip);
        }
    }
}

impl Default for FailureLimiter {
    fn default() -> Self {
        Self::new(5, Duration::from_secs(60), Duration::from_secs(300))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_free_failures_and_doubles() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60), Duration::from_secs(300));
        let ip = Some("10.0.0.1".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(ip, t0), Ok(()));
            limiter.failed(ip, t0);
        }
        assert_eq!(limiter.check(ip, t0), Ok(()));
        limiter.failed(ip, t0); // 4th failure: blocked 1 s
        assert_eq!(limiter.check(ip, t0), Err(1));
        assert_eq!(limiter.check(ip, t0 + Duration::from_millis(1100)), Ok(()));
        limiter.failed(ip, t0 + Duration::from_millis(1100)); // 5th: 2 s
        assert_eq!(limiter.check(ip, t0 + Duration::from_millis(1200)), Err(1));
        assert!(limiter.check(ip, t0 + Duration::from_millis(3200)).is_ok());
        // Other addresses are unaffected.
        assert_eq!(limiter.check(Some("10.0.0.2".parse().unwrap()), t0), Ok(()));
    }

    #[test]
    fn success_forgets_failures() {
        let limiter = FailureLimiter::new(1, Duration::from_secs(60), Duration::from_secs(300));
        let ip = Some("10.0.0.1".parse().unwrap());
        let t0 = Instant::now();
        limiter.failed(ip, t0);
        limiter.succeeded(ip);
        limiter.failed(ip, t0);
        assert_eq!(limiter.check(ip, t0), Ok(()));
    }
}
