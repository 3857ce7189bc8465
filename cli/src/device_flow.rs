//! The device side of the OAuth 2.0 device authorization grant (RFC 8628): polling the
//! token endpoint until a person approves or denies the login, what the CLI tells the
//! server about this machine, opening a browser, and reading the token's claims.
//!
//! The polling loop ([`wait_for_token`]) is written against a [`Clock`] and a poll
//! function so that its timing rules are tested without waiting:
//! - it waits `interval` seconds before every poll (RFC 8628 §3.5), 5 s when the server
//!   gives none, at least 1 s;
//! - `slow_down` adds 5 s to the interval for every later poll;
//! - a connection failure, a timeout or a 5xx answer doubles the interval (up to a
//!   minute), as §3.5 asks of clients that meet connection timeouts; a 429 waits its
//!   `Retry-After` once;
//! - `access_denied`, `expired_token` and every other refusal end it with a message;
//! - it gives up when the codes expire (`expires_in`), without polling past that.

use std::future::Future;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use uuid::Uuid;

use crate::client::{ClientError, DeviceDescription, DevicePoll, TokenResponse};

/// The interval when the server gives none (RFC 8628 §3.2).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// The shortest interval used, whatever the server says.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// What `slow_down` adds to the interval (RFC 8628 §3.5).
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// Transient failures double the interval up to this (never below what the server set).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Time, for the polling loop: real in the CLI, simulated in tests.
pub trait Clock {
    /// Time elapsed since some fixed origin (monotonic).
    fn now(&self) -> Duration;
    /// Waits `duration`.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send;
}

/// The real clock (tokio's, monotonic).
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: tokio::time::Instant,
}

impl SystemClock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(duration)
    }
}

/// Something the person watching may want to know while the loop waits.
#[derive(Debug)]
pub enum PollEvent<'a> {
    /// The server asked to slow down; polls are now `interval` apart.
    SlowedDown {
        /// The new interval.
        interval: Duration,
    },
    /// A poll failed in a way that may pass; the next one is in `wait`.
    Retrying {
        /// What failed.
        error: &'a ClientError,
        /// Until the next poll.
        wait: Duration,
    },
}

/// Why a device login ended without a token. Nothing is saved in any of these cases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceLoginError {
    /// The person denied the request.
    #[error("the sign-in request was denied{}: nothing was saved", detail(.description))]
    Denied {
        /// The server's explanation.
        description: Option<String>,
    },
    /// The server says the code expired before anyone approved it.
    #[error("the code expired before it was approved{}: run `gatehouse login` again for a new \
        code", detail(.description))]
    Expired {
        /// The server's explanation.
        description: Option<String>,
    },
    /// The codes' lifetime passed on this side without an answer.
    #[error("nobody approved the code within {}: run `gatehouse login` again for a new code",
        humanize(*.after))]
    TimedOut {
        /// How long the codes were valid.
        after: Duration,
    },
    /// The token endpoint refused the device code for another reason.
    #[error("the server refused the device login ({error}{}): run `gatehouse login` again",
        .description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        /// The RFC 6749 error (`invalid_grant`, `invalid_client`, ...).
        error: String,
        /// The server's explanation.
        description: Option<String>,
    },
    /// Talking to the server failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

fn detail(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

/// The interval to start with: the server's, 5 s when it gives none, at least 1 s.
pub fn initial_interval(server_interval: Option<u64>) -> Duration {
    server_interval
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_INTERVAL)
        .max(MIN_INTERVAL)
}

/// Polls with `poll` until the token comes, the person refuses, or the codes expire
/// `expires_in` after the loop starts. See the module documentation for the rules.
pub async fn wait_for_token<C, P, F>(
    clock: &C,
    interval: Duration,
    expires_in: Duration,
    mut poll: P,
    mut on_event: impl FnMut(PollEvent<'_>),
) -> Result<TokenResponse, DeviceLoginError>
where
    C: Clock,
    P: FnMut() -> F,
    F: Future<Output = Result<DevicePoll, ClientError>>,
{
    let deadline = clock.now().saturating_add(expires_in);
    let mut interval = interval.max(MIN_INTERVAL);
    let mut wait = interval;
    loop {
        // Never poll at or past the expiry: the server would only say expired_token.
        if clock.now().saturating_add(wait) >= deadline {
            return Err(DeviceLoginError::TimedOut { after: expires_in });
        }
        clock.sleep(wait).await;
        wait = interval;
        match poll().await {
            Ok(DevicePoll::Token(token)) => return Ok(token),
            Ok(DevicePoll::Pending) => {}
            Ok(DevicePoll::SlowDown) => {
                interval = interval.saturating_add(SLOW_DOWN_STEP);
                wait = interval;
                on_event(PollEvent::SlowedDown { interval });
            }
            Ok(DevicePoll::RateLimited { retry_after }) => {
                wait = retry_after
                    .map(Duration::from_secs)
                    .map_or(interval.saturating_mul(2), |r| r.max(interval));
                tracing::debug!(?wait, "429: waiting before the next poll");
            }
            Ok(DevicePoll::Denied { description }) => {
                return Err(DeviceLoginError::Denied { description });
            }
            Ok(DevicePoll::Expired { description }) => {
                return Err(DeviceLoginError::Expired { description });
            }
            Ok(DevicePoll::Refused { error, description }) => {
                return Err(DeviceLoginError::Refused { error, description });
            }
            Err(error) if error.is_transient() => {
                interval = interval.max(interval.saturating_mul(2).min(MAX_BACKOFF));
                wait = interval;
                on_event(PollEvent::Retrying {
                    error: &error,
                    wait,
                });
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// What the CLI tells the server about this machine: host name, OS and architecture,
/// and its own version. Shown to the person approving; never trusted for anything.
pub fn this_device(scope: Option<String>) -> DeviceDescription {
    DeviceDescription {
        scope,
        hostname: hostname(),
        os: Some(format!(
            "{} {}",
            std::env::consts::OS,
            std::env::consts::ARCH
        )),
        client_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
    }
}

/// This machine's host name, best effort.
fn hostname() -> Option<String> {
    let from_file = |path: &str| std::fs::read_to_string(path).ok();
    let from_command = || {
        std::process::Command::new("hostname")
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
    };
    from_file("/proc/sys/kernel/hostname")
        .or_else(|| from_file("/etc/hostname"))
        .or_else(from_command)
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty() && name.len() <= 255)
}

/// What the CLI reads from its own access token (without verifying it: the server that
/// issued it verifies it; the CLI only wants to know which device it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFacts {
    /// The subject (principal id).
    pub subject: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub expires: Option<i64>,
    /// The device, when the token came from the device grant (`gh_src`).
    pub device_id: Option<Uuid>,
}

/// Reads the payload of a JWS compact token. `None` when it is not one.
pub fn token_facts(token: &SecretString) -> Option<TokenFacts> {
    #[derive(Deserialize)]
    struct Claims {
        #[serde(default)]
        sub: Option<String>,
        #[serde(default)]
        exp: Option<i64>,
        #[serde(default)]
        gh_src: Option<serde_json::Value>,
    }
    let mut parts = token.expose_secret().split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let claims: Claims = serde_json::from_slice(&base64url_decode(payload)?).ok()?;
    let device_id = claims
        .gh_src
        .and_then(|src| serde_json::from_value::<gatehouse_tokens::SessionSource>(src).ok())
        .and_then(|src| match src {
            gatehouse_tokens::SessionSource::Device { id } => Some(id.as_uuid()),
            _ => None,
        });
    Some(TokenFacts {
        subject: claims.sub,
        expires: claims.exp,
        device_id,
    })
}

/// Decodes base64url (RFC 4648 §5), padded or not.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from(acc >> bits).ok()?);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The program that opens a browser here, or `None` when none should be opened: with
/// `--no-browser`, in CI (`CI` set to anything but `false`/`0`), when stdout is not a
/// terminal, on Linux and the BSDs without a display (`DISPLAY` or `WAYLAND_DISPLAY`),
/// and on other systems than those and macOS.
pub fn browser_program(
    no_browser: bool,
    stdout_is_terminal: bool,
    os: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Option<&'static str> {
    let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty());
    let in_ci = env("CI").is_some_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        !v.is_empty() && v != "false" && v != "0"
    });
    if no_browser || in_ci || !stdout_is_terminal {
        return None;
    }
    match os {
        "macos" => Some("open"),
        "linux" | "freebsd" | "openbsd" | "netbsd" | "dragonfly"
            if set("DISPLAY") || set("WAYLAND_DISPLAY") =>
        {
            Some("xdg-open")
        }
        _ => None,
    }
}

/// Starts `program url` in the background, detached from the terminal. Only http(s)
/// URLs are opened (the URL comes from the server). Failing is not an error: the person
/// has the link.
pub fn open_browser(program: &str, url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        tracing::debug!(url, "not opening a browser on a non-http URL");
        return false;
    }
    match std::process::Command::new(program)
        .arg(parsed.as_str())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            // Reap it whenever it ends (xdg-open may wait for the browser).
            std::thread::spawn(move || child.wait());
            true
        }
        Err(e) => {
            tracing::debug!(program, error = %e, "cannot open a browser");
            false
        }
    }
}

/// A duration for people, rounded to its largest sensible unit: `45 seconds`,
/// `10 minutes`, `24 hours`, `30 days`.
pub fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (value, unit) = if secs < 90 {
        (secs, "second")
    } else if secs < 90 * 60 {
        ((secs + 30) / 60, "minute")
    } else if secs < 48 * 3600 {
        ((secs + 1800) / 3600, "hour")
    } else {
        ((secs + 43_200) / 86_400, "day")
    };
    format!("{value} {unit}{}", if value == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::testing::FakeClock;

    /// A token endpoint that answers from a script and records when it was polled.
    struct Script {
        clock: FakeClock,
        answers: Mutex<VecDeque<Result<DevicePoll, ClientError>>>,
        polled_at: Mutex<Vec<u64>>,
    }

    impl Script {
        fn new(clock: &FakeClock, answers: Vec<Result<DevicePoll, ClientError>>) -> Self {
            Self {
                clock: clock.clone(),
                answers: Mutex::new(answers.into()),
                polled_at: Mutex::new(Vec::new()),
            }
        }
        async fn poll(&self) -> Result<DevicePoll, ClientError> {
            if let Ok(mut at) = self.polled_at.lock() {
                at.push(self.clock.now().as_secs());
            }
            self.answers
                .lock()
                .ok()
                .and_then(|mut a| a.pop_front())
                .unwrap_or(Ok(DevicePoll::Pending))
        }
        fn polled_at(&self) -> Vec<u64> {
            self.polled_at.lock().map(|p| p.clone()).unwrap_or_default()
        }
    }

    fn token() -> DevicePoll {
        DevicePoll::Token(
            serde_json::from_value(serde_json::json!({
                "access_token": "eyJ.device.sig", "token_type": "Bearer", "expires_in": 86400,
            }))
            .expect("token"),
        )
    }

    async fn run(
        script: &Script,
        clock: &FakeClock,
        interval: u64,
        expires_in: u64,
    ) -> (Result<TokenResponse, DeviceLoginError>, Vec<String>) {
        let mut events = Vec::new();
        let result = wait_for_token(
            clock,
            Duration::from_secs(interval),
            Duration::from_secs(expires_in),
            || script.poll(),
            |event| events.push(format!("{event:?}")),
        )
        .await;
        (result, events)
    }

    #[tokio::test]
    async fn polls_at_the_interval_until_the_token_comes() {
        let clock = FakeClock::default();
        let script = Script::new(
            &clock,
            vec![
                Ok(DevicePoll::Pending),
                Ok(DevicePoll::Pending),
                Ok(token()),
            ],
        );
        let (result, events) = run(&script, &clock, 5, 600).await;
        let token = result.expect("token");
        assert_eq!(token.access_token.expose_secret(), "eyJ.device.sig");
        // The first poll waits too: nobody approves within 0 s.
        assert_eq!(script.polled_at(), vec![5, 10, 15]);
        assert_eq!(clock.sleeps(), vec![5, 5, 5]);
        assert!(events.is_empty(), "{events:?}");
    }

    #[tokio::test]
    async fn slow_down_adds_five_seconds_for_every_later_poll() {
        let clock = FakeClock::default();
        let script = Script::new(
            &clock,
            vec![
                Ok(DevicePoll::Pending),
                Ok(DevicePoll::SlowDown),
                Ok(DevicePoll::Pending),
                Ok(DevicePoll::Pending),
                Ok(DevicePoll::SlowDown),
                Ok(DevicePoll::Pending),
                Ok(token()),
            ],
        );
        let (result, events) = run(&script, &clock, 5, 600).await;
        assert!(result.is_ok());
        // 5, then slow_down at 10: 10 s from then on; slow_down again at 40: 15 s.
        assert_eq!(script.polled_at(), vec![5, 10, 20, 30, 40, 55, 70]);
        assert_eq!(clock.sleeps(), vec![5, 5, 10, 10, 10, 15, 15]);
        assert_eq!(
            events,
            vec![
                "SlowedDown { interval: 10s }".to_owned(),
                "SlowedDown { interval: 15s }".to_owned()
            ]
        );
    }

    #[tokio::test]
    async fn a_missing_or_zero_interval_is_five_seconds_or_one() {
        assert_eq!(initial_interval(None), Duration::from_secs(5));
        assert_eq!(initial_interval(Some(0)), Duration::from_secs(1));
        assert_eq!(initial_interval(Some(7)), Duration::from_secs(7));
        let clock = FakeClock::default();
        let script = Script::new(&clock, vec![Ok(DevicePoll::Pending), Ok(token())]);
        let (result, _) = run(&script, &clock, 0, 600).await;
        assert!(result.is_ok());
        assert_eq!(script.polled_at(), vec![1, 2]);
    }

    #[tokio::test]
    async fn access_denied_stops_with_a_message() {
        let clock = FakeClock::default();
        let script = Script::new(
            &clock,
            vec![
                Ok(DevicePoll::Pending),
                Ok(DevicePoll::Denied {
                    description: Some("the user denied the request".into()),
                }),
            ],
        );
        let (result, _) = run(&script, &clock, 5, 600).await;
        let error = result.expect_err("denied");
        assert!(matches!(error, DeviceLoginError::Denied { .. }));
        assert_eq!(
            error.to_string(),
            "the sign-in request was denied (the user denied the request): nothing was saved"
        );
        assert_eq!(script.polled_at(), vec![5, 10]);
    }

    #[tokio::test]
    async fn expired_token_and_invalid_grant_stop_with_a_message() {
        let clock = FakeClock::default();
        let script = Script::new(&clock, vec![Ok(DevicePoll::Expired { description: None })]);
        let (result, _) = run(&script, &clock, 5, 600).await;
        let text = result.expect_err("expired").to_string();
        assert_eq!(
            text,
            "the code expired before it was approved: run `gatehouse login` again for a new code"
        );

        let clock = FakeClock::default();
        let script = Script::new(
            &clock,
            vec![Ok(DevicePoll::Refused {
                error: "invalid_grant".into(),
                description: Some("unknown device code".into()),
            })],
        );
        let (result, _) = run(&script, &clock, 5, 600).await;
        assert_eq!(
            result.expect_err("refused").to_string(),
            "the server refused the device login (invalid_grant: unknown device code): run \
             `gatehouse login` again"
        );
        assert_eq!(script.polled_at(), vec![5]);
    }

    #[tokio::test]
    async fn gives_up_at_expires_in_without_polling_past_it() {
        let clock = FakeClock::default();
        let script = Script::new(&clock, vec![]);
        let (result, _) = run(&script, &clock, 5, 30).await;
        let error = result.expect_err("timed out");
        assert!(matches!(error, DeviceLoginError::TimedOut { .. }));
        assert_eq!(
            error.to_string(),
            "nobody approved the code within 30 seconds: run `gatehouse login` again for a new \
             code"
        );
        assert_eq!(script.polled_at(), vec![5, 10, 15, 20, 25]);
        assert!(clock.now() < Duration::from_secs(30));

        // With slow_down the expiry still bounds the wait.
        let clock = FakeClock::default();
        let script = Script::new(&clock, vec![Ok(DevicePoll::SlowDown)]);
        let (result, _) = run(&script, &clock, 5, 600).await;
        assert!(matches!(result, Err(DeviceLoginError::TimedOut { .. })));
        let polled = script.polled_at();
        assert_eq!(polled[..3], [5, 15, 25]);
        assert!(polled.iter().all(|t| *t < 600), "{polled:?}");
        assert_eq!(humanize(Duration::from_secs(600)), "10 minutes");
    }

    fn unavailable() -> ClientError {
        ClientError::Decode {
            status: 503,
            detail: "unavailable".into(),
        }
    }

    #[tokio::test]
    async fn transient_failures_double_the_interval_and_429_waits_its_retry_after() {
        let clock = FakeClock::default();
        let script = Script::new(
            &clock,
            vec![
                Err(unavailable()),
                Err(unavailable()),
                Ok(DevicePoll::RateLimited {
                    retry_after: Some(30),
                }),
                Ok(DevicePoll::Pending),
                Ok(token()),
            ],
        );
        let (result, events) = run(&script, &clock, 5, 600).await;
        assert!(result.is_ok());
        // 5 → 503 → 10 → 503 → 20 → 429 (30 s once) → 20 → 20.
        assert_eq!(clock.sleeps(), vec![5, 10, 20, 30, 20]);
        assert_eq!(script.polled_at(), vec![5, 15, 35, 65, 85]);
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events[0].contains("Retrying") && events[0].contains("10s"));
    }

    #[tokio::test]
    async fn backoff_stops_at_a_minute_but_never_lowers_the_servers_interval() {
        let clock = FakeClock::default();
        let script = Script::new(&clock, vec![Err(unavailable()), Ok(token())]);
        let (result, _) = run(&script, &clock, 40, 600).await;
        assert!(result.is_ok());
        assert_eq!(clock.sleeps(), vec![40, 60]);

        let clock = FakeClock::default();
        let script = Script::new(&clock, vec![Err(unavailable()), Ok(token())]);
        let (result, _) = run(&script, &clock, 90, 600).await;
        assert!(result.is_ok());
        assert_eq!(clock.sleeps(), vec![90, 90]);
    }

    #[tokio::test]
    async fn a_non_transient_error_stops_at_once() {
        let clock = FakeClock::default();
        let script = Script::new(
            &clock,
            vec![Err(ClientError::Decode {
                status: 400,
                detail: "<html>".into(),
            })],
        );
        let (result, _) = run(&script, &clock, 5, 600).await;
        assert!(matches!(
            result,
            Err(DeviceLoginError::Client(ClientError::Decode {
                status: 400,
                ..
            }))
        ));
    }

    fn claims(source: gatehouse_tokens::SessionSource) -> gatehouse_tokens::AccessTokenClaims {
        gatehouse_tokens::AccessTokenClaims {
            iss: "http://127.0.0.1:8080".into(),
            sub: "0190f0a8-3b1c-7000-8000-000000000001".into(),
            aud: "gatehouse".into(),
            exp: 2_000_000_000,
            iat: 1_999_990_000,
            nbf: 1_999_990_000,
            jti: Uuid::new_v4().to_string(),
            client_id: "gatehouse-cli".into(),
            scope: None,
            principal_kind: gatehouse_tokens::PrincipalKind::User,
            source,
            principal_epoch: 0,
        }
    }

    #[test]
    fn the_device_id_is_read_from_a_real_token() {
        let key = gatehouse_tokens::SigningKey::generate();
        let id = Uuid::parse_str("0190f0a8-3b1c-7000-8000-00000000d001").expect("uuid");
        let token = gatehouse_tokens::sign(
            &claims(gatehouse_tokens::SessionSource::Device {
                id: gatehouse_contracts::DeviceId::from_uuid(id),
            }),
            &key,
        );
        let facts = token_facts(&SecretString::from(token)).expect("facts");
        assert_eq!(facts.device_id, Some(id));
        assert_eq!(facts.expires, Some(2_000_000_000));
        assert_eq!(
            facts.subject.as_deref(),
            Some("0190f0a8-3b1c-7000-8000-000000000001")
        );

        let password =
            gatehouse_tokens::sign(&claims(gatehouse_tokens::SessionSource::Password), &key);
        let facts = token_facts(&SecretString::from(password)).expect("facts");
        assert_eq!(facts.device_id, None);

        for garbage in ["", "abc", "a.b", "a.!!!.c", "a.b.c.d", "a.e30x.c"] {
            assert!(
                token_facts(&SecretString::from(garbage)).is_none(),
                "{garbage}"
            );
        }
    }

    #[test]
    fn base64url_decodes_with_or_without_padding() {
        assert_eq!(base64url_decode("").as_deref(), Some(&b""[..]));
        assert_eq!(base64url_decode("Zg").as_deref(), Some(&b"f"[..]));
        assert_eq!(base64url_decode("Zg==").as_deref(), Some(&b"f"[..]));
        assert_eq!(base64url_decode("Zm9vYg").as_deref(), Some(&b"foob"[..]));
        assert_eq!(
            base64url_decode("Zm9vYmFy").as_deref(),
            Some(&b"foobar"[..])
        );
        assert_eq!(base64url_decode("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        assert!(base64url_decode("Z").is_none());
        assert!(base64url_decode("Zm9v+g").is_none());
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn a_browser_opens_only_where_someone_can_see_it() {
        let display = [("DISPLAY", ":0")];
        assert_eq!(
            browser_program(false, true, "linux", env(&display)),
            Some("xdg-open")
        );
        assert_eq!(
            browser_program(
                false,
                true,
                "linux",
                env(&[("WAYLAND_DISPLAY", "wayland-0")])
            ),
            Some("xdg-open")
        );
        assert_eq!(
            browser_program(false, true, "macos", env(&[])),
            Some("open")
        );
        // No display, an empty one, --no-browser, stdout not a terminal, CI, Windows.
        assert_eq!(browser_program(false, true, "linux", env(&[])), None);
        assert_eq!(
            browser_program(false, true, "linux", env(&[("DISPLAY", "")])),
            None
        );
        assert_eq!(browser_program(true, true, "linux", env(&display)), None);
        assert_eq!(browser_program(false, false, "macos", env(&[])), None);
        for ci in ["true", "1", "yes"] {
            assert_eq!(
                browser_program(false, true, "macos", env(&[("CI", ci)])),
                None,
                "{ci}"
            );
        }
        for not_ci in ["false", "0", ""] {
            assert_eq!(
                browser_program(false, true, "macos", env(&[("CI", not_ci)])),
                Some("open"),
                "{not_ci}"
            );
        }
        assert_eq!(browser_program(false, true, "windows", env(&display)), None);
    }

    #[test]
    fn only_http_urls_are_opened_and_a_missing_program_is_no_error() {
        assert!(!open_browser("true", "file:///etc/passwd"));
        assert!(!open_browser("true", "not a url"));
        assert!(!open_browser(
            "/nonexistent/gatehouse-no-such-browser",
            "http://127.0.0.1:8080/device"
        ));
    }

    #[test]
    fn durations_read_like_people_say_them() {
        assert_eq!(humanize(Duration::from_secs(1)), "1 second");
        assert_eq!(humanize(Duration::from_secs(45)), "45 seconds");
        assert_eq!(humanize(Duration::from_secs(600)), "10 minutes");
        assert_eq!(humanize(Duration::from_secs(3600)), "60 minutes");
        assert_eq!(humanize(Duration::from_secs(2 * 3600)), "2 hours");
        assert_eq!(humanize(Duration::from_secs(86_400)), "24 hours");
        assert_eq!(humanize(Duration::from_secs(86_398)), "24 hours");
        assert_eq!(humanize(Duration::from_secs(30 * 86_400)), "30 days");
        assert_eq!(humanize(Duration::from_secs(30 * 86_400 - 2)), "30 days");
    }

    #[test]
    fn this_device_names_the_os_architecture_and_version() {
        let device = this_device(None);
        let os = device.os.expect("os");
        assert!(os.starts_with(std::env::consts::OS) && os.ends_with(std::env::consts::ARCH));
        assert_eq!(
            device.client_version.as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
    }
}
