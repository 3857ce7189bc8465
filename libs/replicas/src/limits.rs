//! The request limits (failed logins and API-key attempts, wrong user codes, new device
//! authorizations), counted alike on every gateway replica.
//!
//! Each replica keeps its counts in memory ([`crate::limiter`]) and tells the others what
//! it counted on [`COUNTS_SUBJECT`] (core NATS, fire and forget); each applies what it hears
//! to its own counts. So a client that spreads its attempts over N replicas gets the budget
//! of one, not N, within the milliseconds a message takes — which is what keeps the
//! wrong-user-code odds at 2^-32 behind a load balancer. Only what the limiters key on
//! travels: the source address and the subject (a lower-cased username, an API key's id or
//! a person's id). Never a password, key or code. Device polls are paced per replica
//! (broadcasting every poll would cost more than the answers it saves).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::limiter::{FailureLimiter, GuessLimiter, StartLimiter};

/// Where replicas tell each other what they counted.
pub const COUNTS_SUBJECT: &str = "gatehouse.gateway.counts";

/// What was counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Counted {
    LoginFailed,
    LoginSucceeded,
    UserCodeFailed,
    DeviceStarted,
}

#[derive(Debug, Serialize, Deserialize)]
struct CountMessage {
    replica: Uuid,
    counted: Counted,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<IpAddr>,
    #[serde(default)]
    subject: String,
}

/// The limits of one gateway replica, shared with the others when it has any.
#[derive(Clone)]
pub struct Limits {
    logins: Arc<FailureLimiter>,
    user_codes: Arc<GuessLimiter>,
    device_starts: Arc<StartLimiter>,
    share: Option<(async_nats::Client, Uuid)>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("shared", &self.share.is_some())
            .finish_non_exhaustive()
    }
}

impl Limits {
    /// Limits counted on this replica alone (`device_starts_per_minute` new device
    /// authorizations per address).
    pub fn alone(device_starts_per_minute: usize) -> Self {
        Self {
            logins: Arc::new(FailureLimiter::default()),
            user_codes: Arc::new(GuessLimiter::default()),
            device_starts: Arc::new(StartLimiter::new(device_starts_per_minute)),
            share: None,
        }
    }

    /// Shares the counts with the other replicas over `client`, as `replica`, until
    /// `shutdown`.
    pub async fn shared(
        mut self,
        client: async_nats::Client,
        replica: Uuid,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, async_nats::SubscribeError> {
        let messages = client.subscribe(COUNTS_SUBJECT).await?;
        tokio::spawn(self.clone().follow(messages, replica, shutdown));
        self.share = Some((client, replica));
        Ok(self)
    }

    async fn follow(
        self,
        mut messages: async_nats::Subscriber,
        replica: Uuid,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let message = tokio::select! {
                message = messages.next() => match message {
                    Some(message) => message,
                    None => return,
                },
                _ = shutdown.changed() => return,
            };
            match serde_json::from_slice::<CountMessage>(&message.payload) {
                Ok(count) if count.replica != replica => self.apply(&count, Instant::now()),
                Ok(_) => {}
                Err(error) => tracing::debug!(error = %error, "ignoring a malformed count message"),
            }
        }
    }

    fn apply(&self, count: &CountMessage, now: Instant) {
        match count.counted {
            Counted::LoginFailed => self.logins.failed(count.ip, &count.subject, now),
            Counted::LoginSucceeded => {
                self.logins.succeeded(count.ip, &count.subject);
            }
            Counted::UserCodeFailed => self.user_codes.failed(count.ip, &count.subject, now),
            Counted::DeviceStarted => self.device_starts.record(count.ip, now),
        }
    }

    fn tell_others(&self, counted: Counted, ip: Option<IpAddr>, subject: &str) {
        let Some((client, replica)) = &self.share else {
            return;
        };
        let message = CountMessage {
            replica: *replica,
            counted,
            ip,
            subject: subject.to_owned(),
        };
        let payload = serde_json::to_vec(&message).unwrap_or_default();
        let client = client.clone();
        tokio::spawn(async move {
            if let Err(error) = client.publish(COUNTS_SUBJECT, payload.into()).await {
                tracing::warn!(error = %error, "telling the other replicas a count failed");
            }
        });
    }

    /// `Err(seconds)` when `ip` must wait before another login or key attempt for
    /// `subject` (a lower-cased username or an API key id).
    pub fn check_login(&self, ip: Option<IpAddr>, subject: &str) -> Result<(), u64> {
        self.logins.check(ip, subject, Instant::now())
    }

    /// Counts a failed login or key attempt.
    pub fn login_failed(&self, ip: Option<IpAddr>, subject: &str) {
        self.logins.failed(ip, subject, Instant::now());
        self.tell_others(Counted::LoginFailed, ip, subject);
    }

    /// Clears `ip`'s failures for `subject` after a success. The others are told only when
    /// there was something to clear: their counts are this replica's (every failure is
    /// told), and successes are the hot path (every request with a bearer API key).
    pub fn login_succeeded(&self, ip: Option<IpAddr>, subject: &str) {
        if self.logins.succeeded(ip, subject) {
            self.tell_others(Counted::LoginSucceeded, ip, subject);
        }
    }

    /// `Err(seconds)` when `person` must wait before entering another user code.
    pub fn check_user_code(&self, ip: Option<IpAddr>, person: &str) -> Result<(), u64> {
        self.user_codes.check(ip, person, Instant::now())
    }

    /// Counts a wrong user code.
    pub fn user_code_failed(&self, ip: Option<IpAddr>, person: &str) {
        self.user_codes.failed(ip, person, Instant::now());
        self.tell_others(Counted::UserCodeFailed, ip, person);
    }

    /// Counts a new device authorization from `ip`; `Err(seconds)` when its allowance is
    /// spent (nothing counted then).
    pub fn start_device(&self, ip: Option<IpAddr>) -> Result<(), u64> {
        self.device_starts.start(ip, Instant::now())?;
        self.tell_others(Counted::DeviceStarted, ip, "");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_heard_from_another_replica_limit_here_too() {
        let limits = Limits::alone(2);
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        let heard = |counted, subject: &str| CountMessage {
            replica: Uuid::new_v4(),
            counted,
            ip,
            subject: subject.to_owned(),
        };
        let now = Instant::now();
        for _ in 0..5 {
            limits.apply(&heard(Counted::UserCodeFailed, "user-code:p"), now);
        }
        assert!(limits.check_user_code(ip, "user-code:p").is_err());
        for _ in 0..2 {
            limits.apply(&heard(Counted::DeviceStarted, ""), now);
        }
        assert!(limits.start_device(ip).is_err());
        for _ in 0..6 {
            limits.apply(&heard(Counted::LoginFailed, "alice"), now);
        }
        assert!(limits.check_login(ip, "alice").is_err());
        limits.apply(&heard(Counted::LoginSucceeded, "alice"), now);
        assert!(limits.check_login(ip, "alice").is_ok());
        // The message carries no more than the limiters key on.
        let json = serde_json::to_value(heard(Counted::LoginFailed, "alice")).unwrap_or_default();
        let mut fields: Vec<&str> = json
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        fields.sort_unstable();
        assert_eq!(fields, ["counted", "ip", "replica", "subject"]);
    }
}
