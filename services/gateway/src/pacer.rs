//! The device poll pacer (RFC 8628 §3.5): a device that polls the token endpoint faster than
//! its interval gets `slow_down`, and its interval grows by 5 s for good.
//!
//! Polls are the load a device flow puts on a server, so they are paced in this replica's
//! memory (not shared with the other replicas: broadcasting every poll would cost more than
//! the answers it saves). The state owns one pacer; the device-code grant asks it about
//! each poll and tells it when a device has its token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// How much `slow_down` adds to a device's interval (RFC 8628 §3.5).
const SLOW_DOWN_STEP: u32 = 5;
/// Device entries remembered at most by default.
const MAX_PACED: usize = 100_000;
/// A device not polled for this long may be forgotten when the pacer is full.
pub const FORGET_AFTER: Duration = Duration::from_secs(900);

/// Each device's polling pace on this replica (RFC 8628 §3.5: a device that polls faster
/// than its interval gets `slow_down`, and its interval grows by 5 s for good).
#[derive(Debug)]
pub struct PollPacer {
    devices: Mutex<HashMap<Uuid, Pace>>,
    /// Devices remembered at most (a bound against memory abuse).
    capacity: usize,
}

impl Default for PollPacer {
    fn default() -> Self {
        Self::new(MAX_PACED)
    }
}

#[derive(Debug, Clone, Copy)]
struct Pace {
    last: Instant,
    interval: u32,
}

impl PollPacer {
    /// A pacer that remembers at most about `capacity` devices: when full, it forgets
    /// those not polled for [`FORGET_AFTER`].
    pub fn new(capacity: usize) -> Self {
        Self {
            devices: Mutex::default(),
            capacity,
        }
    }

    /// Records a poll of `device` at `now`; `Err(new interval)` when it came too early.
    pub fn poll(&self, device: Uuid, first_interval: u32, now: Instant) -> Result<(), u32> {
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        if devices.len() >= self.capacity && !devices.contains_key(&device) {
            // Authorizations live minutes: forget the ones not polled for a while.
            devices.retain(|_, p| now.duration_since(p.last) < FORGET_AFTER);
        }
        match devices.get_mut(&device) {
            None => {
                devices.insert(
                    device,
                    Pace {
                        last: now,
                        interval: first_interval,
                    },
                );
                Ok(())
            }
            Some(pace) => {
                let early =
                    now.duration_since(pace.last) < Duration::from_secs(pace.interval.into());
                pace.last = now;
                if early {
                    pace.interval += SLOW_DOWN_STEP;
                    Err(pace.interval)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Forgets a device that has its token.
    pub fn forget(&self, device: &Uuid) {
        self.devices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(device);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_too_fast_slows_the_device_down_for_good() {
        let pacer = PollPacer::default();
        let device = Uuid::new_v4();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(pacer.poll(device, 5, at(0)), Ok(()));
        assert_eq!(pacer.poll(device, 5, at(5)), Ok(()));
        assert_eq!(
            pacer.poll(device, 5, at(7)),
            Err(10),
            "2 s after: slow_down"
        );
        // The interval is now 10 s, for every later poll.
        assert_eq!(
            pacer.poll(device, 5, at(15)),
            Err(15),
            "8 s after: still too fast"
        );
        assert_eq!(pacer.poll(device, 5, at(30)), Ok(()));
        assert_eq!(pacer.poll(device, 5, at(44)), Err(20));
        // Another device keeps its own pace.
        assert_eq!(pacer.poll(Uuid::new_v4(), 5, at(44)), Ok(()));
        pacer.forget(&device);
        assert_eq!(pacer.poll(device, 5, at(45)), Ok(()), "forgotten");
    }

    #[test]
    fn when_full_it_forgets_only_devices_not_polled_lately() {
        let pacer = PollPacer::new(2);
        let (idle, busy, new) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(pacer.poll(idle, 5, at(0)), Ok(()));
        assert_eq!(pacer.poll(busy, 5, at(0)), Ok(()));
        assert_eq!(pacer.poll(busy, 5, at(2)), Err(10), "busy is slowed down");
        // Full: a new device makes room by forgetting the one idle for 15 minutes.
        let later = FORGET_AFTER.as_secs() + 1;
        assert_eq!(pacer.poll(busy, 5, at(later - 5)), Ok(()));
        assert_eq!(pacer.poll(new, 5, at(later)), Ok(()));
        assert_eq!(
            pacer.poll(busy, 5, at(later + 1)),
            Err(15),
            "busy keeps its slower pace"
        );
        assert_eq!(
            pacer.poll(idle, 5, at(later + 1)),
            Ok(()),
            "idle was forgotten: a first poll again"
        );
    }
}
