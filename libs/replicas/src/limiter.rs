//! Slows down repeated failed logins. Failures are counted twice: per source address and
//! *subject* (the username, or the API key id), and per source address alone with a
//! higher allowance. Past the allowance, further attempts are refused with 429 and a
//! Retry-After that doubles with each further failure (capped).
//!
//! A success clears only its own (address, subject) count: holding one valid account or
//! key must not let an address reset the count it built guessing someone else's, and one
//! misconfigured job behind a shared NAT address blocks its own key, not the fleet's
//! (until it alone exhausts the address allowance). Kept per gateway replica, in memory.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A wait in whole seconds for `Retry-After`, rounded up (and at least 1): a client that
/// honours it must not be refused again for arriving a fraction of a second early.
fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    window_start: Instant,
    blocked_until: Option<Instant>,
}

/// Failure counts by `K`, with their blocks.
#[derive(Debug)]
struct Counter<K> {
    records: Mutex<HashMap<K, Record>>,
    free_failures: u32,
    window: Duration,
    max_block: Duration,
}

impl<K: Eq + Hash> Counter<K> {
    fn new(free_failures: u32, window: Duration, max_block: Duration) -> Self {
        Self {
            records: Mutex::new(HashMap::new()),
            free_failures,
            window,
            max_block,
        }
    }

    fn check(&self, key: &K, now: Instant) -> Result<(), u64> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        match records.get(key).and_then(|r| r.blocked_until) {
            Some(until) if until > now => Err(whole_seconds(until - now)),
            _ => Ok(()),
        }
    }

    fn failed(&self, key: K, now: Instant) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() > 100_000 {
            // Bound memory under a spray of addresses: forget stale records.
            records.retain(|_, r| {
                now.duration_since(r.window_start) < self.window
                    || r.blocked_until.is_some_and(|u| u > now)
            });
        }
        let record = records.entry(key).or_insert(Record {
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

    /// Forgets `key`'s failures; whether there were any.
    fn forget(&self, key: &K) -> bool {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)
            .is_some()
    }
}

/// Counts failed logins per (address, subject) and per address.
#[derive(Debug)]
pub struct FailureLimiter {
    per_subject: Counter<(IpAddr, String)>,
    per_address: Counter<IpAddr>,
}

impl FailureLimiter {
    /// `per_subject` failures per `window` for one subject from one address, and
    /// `per_address` for all subjects from one address, are answered normally; then each
    /// further failure blocks for 1 s, 2 s, 4 s, ... up to `max_block`.
    pub fn new(per_subject: u32, per_address: u32, window: Duration, max_block: Duration) -> Self {
        Self {
            per_subject: Counter::new(per_subject, window, max_block),
            per_address: Counter::new(per_address, window, max_block),
        }
    }

    /// `Err(seconds)` when `ip` must wait before trying `subject` again.
    pub fn check(&self, ip: Option<IpAddr>, subject: &str, now: Instant) -> Result<(), u64> {
        let Some(ip) = ip else { return Ok(()) };
        let by_subject = self.per_subject.check(&(ip, subject.to_owned()), now);
        let by_address = self.per_address.check(&ip, now);
        match (by_subject, by_address) {
            (Ok(()), Ok(())) => Ok(()),
            (a, b) => Err(a.err().unwrap_or(0).max(b.err().unwrap_or(0))),
        }
    }

    /// Records a failure from `ip` for `subject`.
    pub fn failed(&self, ip: Option<IpAddr>, subject: &str, now: Instant) {
        let Some(ip) = ip else { return };
        self.per_subject.failed((ip, subject.to_owned()), now);
        self.per_address.failed(ip, now);
    }

    /// Forgets `ip`'s failures for `subject` after a success (not the address's count);
    /// whether there were any.
    pub fn succeeded(&self, ip: Option<IpAddr>, subject: &str) -> bool {
        ip.is_some_and(|ip| self.per_subject.forget(&(ip, subject.to_owned())))
    }
}

impl Default for FailureLimiter {
    fn default() -> Self {
        Self::new(5, 50, Duration::from_secs(60), Duration::from_secs(300))
    }
}

/// Failures by `K` within a sliding window: at most `limit` in any `window`, then refused
/// until the oldest of them leaves the window. Unlike [`Counter`] there are no free rounds
/// after a block: the bound holds over every interval of `window`.
#[derive(Debug)]
struct SlidingCounter<K> {
    failures: Mutex<HashMap<K, VecDeque<Instant>>>,
    limit: usize,
    window: Duration,
}

impl<K: Eq + Hash> SlidingCounter<K> {
    fn new(limit: usize, window: Duration) -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
            limit,
            window,
        }
    }

    fn prune(times: &mut VecDeque<Instant>, window: Duration, now: Instant) {
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            times.pop_front();
        }
    }

    fn check(&self, key: &K, now: Instant) -> Result<(), u64> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(times) = failures.get_mut(key) else {
            return Ok(());
        };
        Self::prune(times, self.window, now);
        match times.front() {
            Some(oldest) if times.len() >= self.limit => {
                let free_at = *oldest + self.window;
                Err(whole_seconds(free_at.saturating_duration_since(now)))
            }
            _ => Ok(()),
        }
    }

    /// Records an attempt unless the window is full (`Err(seconds)` to wait then).
    fn admit(&self, key: K, now: Instant) -> Result<(), u64>
    where
        K: Clone,
    {
        self.check(&key, now)?;
        self.record(key, now);
        Ok(())
    }

    /// Records one attempt (a failure, or a start) at `now`.
    fn record(&self, key: K, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() > 100_000 {
            // Bound memory under a spray of addresses: forget what left the window.
            failures.retain(|_, times| {
                Self::prune(times, self.window, now);
                !times.is_empty()
            });
        }
        let times = failures.entry(key).or_default();
        Self::prune(times, self.window, now);
        times.push_back(now);
        // Only the newest `limit` matter for the bound.
        while times.len() > self.limit {
            times.pop_front();
        }
    }
}

/// Wrong user codes (RFC 8628 §5.1): at most `per_person` in any `window` for one person
/// (wherever they come from: the page's session and the API are the same person), and
/// `per_address` for everyone behind one address. With 5 per 10 minutes (the default, the
/// default lifetime of an authorization), one person's odds of hitting a given pending
/// 8-character code before it lapses are 5 / 20^8 ≈ 2^-32.3. A successful code does not
/// clear anything: a valid code of one's own must not buy more guesses.
#[derive(Debug)]
pub struct GuessLimiter {
    per_person: SlidingCounter<String>,
    per_address: SlidingCounter<IpAddr>,
}

impl GuessLimiter {
    /// `per_person` and `per_address` wrong codes in any `window`.
    pub fn new(per_person: usize, per_address: usize, window: Duration) -> Self {
        Self {
            per_person: SlidingCounter::new(per_person, window),
            per_address: SlidingCounter::new(per_address, window),
        }
    }

    /// `Err(seconds)` when `person` (from `ip`) must wait before entering another code.
    pub fn check(&self, ip: Option<IpAddr>, person: &str, now: Instant) -> Result<(), u64> {
        let by_person = self.per_person.check(&person.to_owned(), now);
        let by_address = ip.map_or(Ok(()), |ip| self.per_address.check(&ip, now));
        match (by_person, by_address) {
            (Ok(()), Ok(())) => Ok(()),
            (a, b) => Err(a.err().unwrap_or(0).max(b.err().unwrap_or(0))),
        }
    }

    /// Records a wrong code entered by `person` from `ip`.
    pub fn failed(&self, ip: Option<IpAddr>, person: &str, now: Instant) {
        self.per_person.record(person.to_owned(), now);
        if let Some(ip) = ip {
            self.per_address.record(ip, now);
        }
    }
}

impl Default for GuessLimiter {
    fn default() -> Self {
        Self::new(5, 20, Duration::from_secs(600))
    }
}

/// New device authorizations per source address (the endpoint needs no credentials, and
/// each authorization is an event and a held user code): at most `per_minute` in any minute.
#[derive(Debug)]
pub struct StartLimiter {
    per_address: SlidingCounter<IpAddr>,
}

impl StartLimiter {
    /// At most `per_minute` starts from one address in any 60 s.
    pub fn new(per_minute: usize) -> Self {
        Self {
            per_address: SlidingCounter::new(per_minute.max(1), Duration::from_secs(60)),
        }
    }

    /// Counts a start from `ip`; `Err(seconds)` when its allowance is spent (nothing counted).
    pub fn start(&self, ip: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        ip.map_or(Ok(()), |ip| self.per_address.admit(ip, now))
    }

    /// Counts a start another replica admitted.
    pub fn record(&self, ip: Option<IpAddr>, now: Instant) {
        if let Some(ip) = ip {
            self.per_address.record(ip, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> FailureLimiter {
        FailureLimiter::new(3, 10, Duration::from_secs(60), Duration::from_secs(300))
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn blocks_a_subject_after_the_free_failures_and_doubles() {
        let limiter = limiter();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(ip(1), "alice", t0), Ok(()));
            limiter.failed(ip(1), "alice", t0);
        }
        assert_eq!(limiter.check(ip(1), "alice", t0), Ok(()));
        limiter.failed(ip(1), "alice", t0); // 4th failure: blocked 1 s
        assert_eq!(limiter.check(ip(1), "alice", t0), Err(1));
        let t1 = t0 + Duration::from_millis(1100);
        assert_eq!(limiter.check(ip(1), "alice", t1), Ok(()));
        limiter.failed(ip(1), "alice", t1); // 5th: 2 s
        assert_eq!(limiter.check(ip(1), "alice", t1), Err(2));
        assert!(
            limiter
                .check(ip(1), "alice", t1 + Duration::from_secs(2))
                .is_ok()
        );
        // Other subjects and other addresses are unaffected.
        assert_eq!(limiter.check(ip(1), "bob", t1), Ok(()));
        assert_eq!(limiter.check(ip(2), "alice", t1), Ok(()));
    }

    #[test]
    fn retry_after_rounds_up_so_that_honouring_it_is_never_refused() {
        let limiter = limiter();
        let t0 = Instant::now();
        for _ in 0..4 {
            limiter.failed(ip(1), "alice", t0);
        }
        let mut at = t0;
        // Blocks of 1, 2, 4 and 8 s, each asked about a moment after the failure.
        for block in [1, 2, 4, 8] {
            let asked = at + Duration::from_millis(10);
            let wait = limiter.check(ip(1), "alice", asked);
            assert_eq!(wait, Err(block), "a {block} s block");
            let wait = Duration::from_secs(wait.err().unwrap_or_default());
            assert_eq!(limiter.check(ip(1), "alice", asked + wait), Ok(()));
            at = asked + wait;
            limiter.failed(ip(1), "alice", at);
        }
        // The sliding window's wait rounds up too.
        let guesses = GuessLimiter::new(1, 20, Duration::from_secs(600));
        guesses.failed(ip(1), "mallory", t0);
        let asked = t0 + Duration::from_millis(240_500);
        assert_eq!(guesses.check(ip(1), "mallory", asked), Err(360));
        assert_eq!(
            guesses.check(ip(1), "mallory", asked + Duration::from_secs(360)),
            Ok(())
        );
    }

    #[test]
    fn spraying_many_subjects_from_one_address_blocks_the_address() {
        let limiter = limiter();
        let t0 = Instant::now();
        for n in 0..11 {
            limiter.failed(ip(1), &format!("user-{n}"), t0);
        }
        assert_eq!(limiter.check(ip(1), "someone-else", t0), Err(1));
        assert_eq!(limiter.check(ip(2), "someone-else", t0), Ok(()));
    }

    #[test]
    fn a_success_clears_only_its_own_subject() {
        let limiter = limiter();
        let t0 = Instant::now();
        for _ in 0..4 {
            limiter.failed(ip(1), "alice", t0);
        }
        assert!(limiter.check(ip(1), "alice", t0).is_err());
        // Mallory logs in successfully from the same address: alice stays blocked.
        assert!(!limiter.succeeded(ip(1), "mallory"), "nothing to clear");
        assert!(limiter.check(ip(1), "alice", t0).is_err());
        // Alice's own success clears her count.
        assert!(
            limiter.succeeded(ip(1), "alice"),
            "her failures were cleared"
        );
        limiter.failed(ip(1), "alice", t0);
        assert_eq!(limiter.check(ip(1), "alice", t0), Ok(()));
    }

    #[test]
    fn an_unknown_address_is_never_limited() {
        let limiter = limiter();
        let t0 = Instant::now();
        for _ in 0..20 {
            limiter.failed(None, "alice", t0);
        }
        assert_eq!(limiter.check(None, "alice", t0), Ok(()));
    }

    #[test]
    fn wrong_codes_are_bounded_over_every_window_without_free_rounds() {
        let guesses = GuessLimiter::new(5, 20, Duration::from_secs(600));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        for n in 0..5 {
            assert_eq!(guesses.check(ip(1), "mallory", at(n * 60)), Ok(()));
            guesses.failed(ip(1), "mallory", at(n * 60));
        }
        // The 6th waits until the first leaves the window (600 s after it).
        assert_eq!(guesses.check(ip(1), "mallory", at(240)), Err(360));
        assert_eq!(
            guesses.check(ip(2), "mallory", at(599)),
            Err(1),
            "any address"
        );
        assert_eq!(guesses.check(ip(1), "mallory", at(600)), Ok(()));
        guesses.failed(ip(1), "mallory", at(600));
        // Again five in the last 600 s: the next is free when the second leaves (660 s).
        assert_eq!(guesses.check(ip(1), "mallory", at(600)), Err(60));
        // Counted over any 600 s: never more than 5 guesses in one code's lifetime.
        let mut allowed = Vec::new();
        let other = GuessLimiter::new(5, 100, Duration::from_secs(600));
        for s in 0..3_000 {
            if other.check(ip(3), "eve", at(s)).is_ok() {
                other.failed(ip(3), "eve", at(s));
                allowed.push(s);
            }
        }
        assert!(
            allowed.windows(6).all(|w| w[5] - w[0] >= 600),
            "{allowed:?}"
        );
        assert_eq!(allowed.len(), 25, "{allowed:?}");
        // Others are unaffected, until the address's allowance is spent.
        assert_eq!(guesses.check(ip(1), "alice", at(600)), Ok(()));
    }

    #[test]
    fn many_people_behind_one_address_share_its_allowance() {
        let guesses = GuessLimiter::new(5, 20, Duration::from_secs(600));
        let t0 = Instant::now();
        for n in 0..20 {
            guesses.failed(ip(1), &format!("user-{}", n % 4), t0);
        }
        assert_eq!(guesses.check(ip(1), "someone-else", t0), Err(600));
        assert_eq!(guesses.check(ip(2), "someone-else", t0), Ok(()));
    }

    #[test]
    fn device_authorizations_are_limited_per_address_per_minute() {
        let starts = StartLimiter::new(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(starts.start(ip(1), t0), Ok(()));
        }
        assert_eq!(starts.start(ip(1), t0), Err(60));
        assert_eq!(starts.start(ip(1), t0 + Duration::from_secs(59)), Err(1));
        assert_eq!(starts.start(ip(2), t0), Ok(()), "another address");
        assert_eq!(starts.start(ip(1), t0 + Duration::from_secs(60)), Ok(()));
        assert_eq!(
            starts.start(None, t0),
            Ok(()),
            "no address known: not limited"
        );
    }
}
