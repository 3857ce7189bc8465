//! Commands over core NATS request/reply.
//!
//! A request goes to `gatehouse.cmd.<service>.<command>`; every replica of a service
//! subscribes to `gatehouse.cmd.<service>.*` in queue group `<service>`, so the server hands
//! each request to exactly one of them. Core NATS keeps nothing: a request that finds no
//! subscriber fails at once with "no responders", one whose service dies mid-way times out.
//! Commands are idempotent where a retry could matter (idempotency keys), so the caller may
//! retry either.
//!
//! Every command carries a gateway's proof, checked before any handler runs
//! ([`crate::proof`]), and every process connects as its own NATS user ([`NatsArgs`]).

use std::sync::Arc;
use std::time::Duration;

use async_nats::header::HeaderMap;
use async_nats::{Client, ConnectOptions, Event, RequestErrorKind};
use async_trait::async_trait;
use futures::StreamExt;
use gatehouse_contracts::commands::{Failure, FailureKind, Reply};
use gatehouse_contracts::failures::CommonFailure;
use gatehouse_eventlog::feed::BusLink;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::proof::{CommandProofs, PROOF_HEADER, ProofError};
use crate::{BusError, CommandBus, CommandHandler, Headers, Serving};

/// Subject prefix of every command.
pub const COMMAND_PREFIX: &str = "gatehouse.cmd.";

/// How many requests one [`NatsCommandBus::serve`] handles at once. Further requests wait in
/// the subscription's buffer: back-pressure instead of unbounded task growth.
pub const MAX_IN_FLIGHT: usize = 256;

/// The NATS URL when none is given.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// How long [`connect`] waits for the server before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a process reaches NATS: the URL, who it is, and how the server is verified. The
/// same flags and `GATEHOUSE_NATS_*` variables for every Gatehouse process (`gatehouse
/// serve`, each service binary, `gatehouse audit tail`); `#[command(flatten)]` it.
///
/// The bus is not a trusted network: give every process its own NATS user
/// (`deploy/nats/accounts.conf` defines them and their subject permissions) and TLS. A
/// process given no credentials still connects, but says loudly at start that the bus is
/// open.
#[derive(Clone, Debug, clap::Args)]
pub struct NatsArgs {
    /// NATS URL (JetStream enabled, nats-server 2.10 or newer); `tls://` requires TLS
    /// [default: nats://127.0.0.1:4222].
    #[arg(long, env = "GATEHOUSE_NATS_URL")]
    pub nats_url: Option<String>,
    /// NATS user name of this process (see deploy/nats/accounts.conf). Also names its
    /// reply inboxes (`_INBOX.<user>.>`), the only ones it may subscribe to.
    #[arg(long, env = "GATEHOUSE_NATS_USER")]
    pub nats_user: Option<String>,
    /// Password of --nats-user.
    #[arg(long, env = "GATEHOUSE_NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<secrecy::SecretString>,
    /// CA certificate (PEM) that the NATS server's certificate must chain to; implies TLS.
    /// Without it, TLS (when required) is verified against the system's roots.
    #[arg(long, env = "GATEHOUSE_NATS_TLS_CA")]
    pub nats_tls_ca: Option<std::path::PathBuf>,
    /// Require TLS to NATS (the server's certificate and host name are always verified).
    #[arg(long, env = "GATEHOUSE_NATS_TLS", default_value_t = false)]
    pub nats_tls: bool,
}

impl NatsArgs {
    /// Settings for `url` with no credentials and no TLS (tests and `gatehouse dev` tools).
    pub fn open(url: impl Into<String>) -> Self {
        Self {
            nats_url: Some(url.into()),
            nats_user: None,
            nats_password: None,
            nats_tls_ca: None,
            nats_tls: false,
        }
    }

    /// The same, connecting as `user` with `password`.
    pub fn with_user(mut self, user: &str, password: &str) -> Self {
        self.nats_user = Some(user.to_owned());
        self.nats_password = Some(password.to_owned().into());
        self
    }

    /// The same, verifying the server's certificate against `ca` (when given).
    pub fn with_tls_ca(mut self, ca: Option<&std::path::Path>) -> Self {
        self.nats_tls_ca = ca.map(std::path::Path::to_path_buf);
        self
    }

    /// The URL: the one given, or [`DEFAULT_NATS_URL`].
    pub fn url(&self) -> &str {
        self.nats_url.as_deref().unwrap_or(DEFAULT_NATS_URL)
    }

    /// The URL with any user and password in it masked, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url())
    }

    /// Whether this process proves who it is to the server.
    pub fn has_credentials(&self) -> bool {
        self.nats_user.is_some()
    }

    /// Whether the connection must be TLS.
    pub fn requires_tls(&self) -> bool {
        self.nats_tls || self.nats_tls_ca.is_some() || self.url().starts_with("tls://")
    }

    /// The reply-inbox prefix: `_INBOX.<user>` for a named user, so that the server can let
    /// each user subscribe only to its own replies.
    pub fn inbox_prefix(&self) -> Option<String> {
        self.nats_user.as_ref().map(|user| format!("_INBOX.{user}"))
    }

    fn options(&self, name: &str) -> ConnectOptions {
        use secrecy::ExposeSecret as _;
        let mut options = match &self.nats_user {
            Some(user) => {
                let password = self
                    .nats_password
                    .as_ref()
                    .map(|p| p.expose_secret().to_owned())
                    .unwrap_or_default();
                ConnectOptions::with_user_and_password(user.clone(), password)
            }
            None => ConnectOptions::new(),
        };
        if let Some(prefix) = self.inbox_prefix() {
            options = options.custom_inbox_prefix(prefix);
        }
        if let Some(ca) = &self.nats_tls_ca {
            options = options.add_root_certificates(ca.clone());
        }
        if self.requires_tls() {
            options = options.require_tls(true);
        }
        options
            .name(name)
            .connection_timeout(CONNECT_TIMEOUT)
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
    }
}

/// `url` with the user information (`user:password@`) masked.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}[HIDDEN]@{host}{}", &rest[authority.len()..]),
        None => url.to_owned(),
    }
}

/// The longest pause between two attempts to reconnect (see [`reconnect_delay`]).
pub const RECONNECT_DELAY_MAX: Duration = Duration::from_millis(250);

/// Connects to NATS as `name` (shown in the server's connection list) with `settings`.
///
/// Fails if the server cannot be reached now: a service should not start and look healthy
/// without its bus. Once connected, the client reconnects on its own after a lost connection
/// (after [`reconnect_delay`], without limit), re-creating its subscriptions.
pub async fn connect(settings: &NatsArgs, name: &str) -> Result<Client, BusError> {
    connect_watched(settings, name)
        .await
        .map(|(client, _)| client)
}

/// [`connect`], with a watch of the connection fed by the client's connection events: the
/// outbox relay's publisher uses it to retry as soon as the server is back, and the event
/// feed to re-create ephemeral subscriptions that a restarted server has lost.
pub async fn connect_watched(
    settings: &NatsArgs,
    name: &str,
) -> Result<(Client, watch::Receiver<BusLink>), BusError> {
    if !settings.has_credentials() {
        tracing::warn!(
            url = %settings.redacted_url(),
            "NATS: THE BUS IS OPEN. This process was given no NATS credentials \
             (GATEHOUSE_NATS_USER and GATEHOUSE_NATS_PASSWORD): anyone who \
             can reach the server can read and publish on it. Give every process its own user \
             (deploy/nats/accounts.conf) and turn on TLS (GATEHOUSE_NATS_TLS_CA)."
        );
    } else if !settings.requires_tls() {
        tracing::warn!(
            url = %settings.redacted_url(),
            "NATS: credentials are sent without TLS; set GATEHOUSE_NATS_TLS_CA or GATEHOUSE_NATS_TLS=true"
        );
    }
    let (link_tx, link) = watch::channel(BusLink::default());
    let link_tx = Arc::new(link_tx);
    let events = link_tx.clone();
    let client = settings
        .options(name)
        .event_callback(move |event| {
            let events = events.clone();
            async move { follow(&events, &event) }
        })
        .connect(settings.url())
        .await
        .map_err(|e| BusError::Unavailable(Box::new(e)))?;
    // The first `Connected` event may still be on its way to the callback.
    if client.connection_state() == async_nats::connection::State::Connected {
        link_tx.send_if_modified(mark_up);
    }
    Ok((client, link))
}

/// How long the client waits before reconnect attempt `attempts` (1 for the first after a
/// lost connection): nothing before the first, then 10 ms doubling up to
/// [`RECONNECT_DELAY_MAX`]. The client's own default doubles up to 4 s, so that a server
/// back after a few seconds went unused for up to 4 s more, holding every request; trying
/// 4 times a second while it is down costs a refused connection each time.
pub fn reconnect_delay(attempts: usize) -> Duration {
    match attempts {
        0 | 1 => Duration::ZERO,
        n => {
            let doublings = u32::try_from(n - 2).unwrap_or(u32::MAX).min(16);
            (Duration::from_millis(10) * 2u32.pow(doublings)).min(RECONNECT_DELAY_MAX)
        }
    }
}

/// Follows the client's connection events in `link`.
fn follow(link: &watch::Sender<BusLink>, event: &Event) {
    match event {
        Event::Connected => {
            link.send_if_modified(mark_up);
        }
        Event::Disconnected | Event::Closed => {
            link.send_if_modified(|now| std::mem::replace(&mut now.up, false));
        }
        _ => {}
    }
}

/// Marks the link up, counting a new connection, unless it already is.
fn mark_up(link: &mut BusLink) -> bool {
    if link.up {
        return false;
    }
    link.up = true;
    link.connects += 1;
    true
}

/// [`CommandBus`] over core NATS. Every request it sends carries a proof
/// ([`crate::proof`]); every command it serves is handled only when its proof checks out,
/// and answered `command_refused` (and logged) otherwise.
#[derive(Clone, Debug)]
pub struct NatsCommandBus {
    client: Client,
    proofs: Arc<CommandProofs>,
}

impl NatsCommandBus {
    /// A bus over `client`, signing and checking commands with `proofs`.
    pub fn new(client: Client, proofs: Arc<CommandProofs>) -> Self {
        Self { client, proofs }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn to_header_map(headers: Headers) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(name.as_str(), value);
    }
    map
}

fn from_header_map(headers: Option<&HeaderMap>) -> Headers {
    let Some(headers) = headers else {
        return Vec::new();
    };
    headers
        .iter()
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |v| (name.to_string(), v.to_string()))
        })
        .collect()
}

#[async_trait]
impl CommandBus for NatsCommandBus {
    async fn request(
        &self,
        subject: &str,
        payload: bytes::Bytes,
        headers: Headers,
        timeout: Duration,
    ) -> Result<bytes::Bytes, BusError> {
        let mut headers = to_header_map(headers);
        headers.insert(PROOF_HEADER, self.proofs.sign(subject, &payload));
        let request = async_nats::Request::new()
            .payload(payload)
            .headers(headers)
            .timeout(Some(timeout));
        // The client bounds the wait for the reply; this bounds the whole call, including
        // a send that waits on a full client buffer while the connection is down.
        let sent = tokio::time::timeout(
            timeout,
            self.client.send_request(subject.to_owned(), request),
        )
        .await;
        match sent {
            Ok(Ok(message)) => Ok(message.payload),
            Ok(Err(e)) => match e.kind() {
                RequestErrorKind::NoResponders => Err(BusError::NoResponders {
                    subject: subject.to_owned(),
                }),
                RequestErrorKind::TimedOut => Err(BusError::TimedOut {
                    subject: subject.to_owned(),
                }),
                _ => Err(BusError::Unavailable(Box::new(e))),
            },
            Err(_) => Err(BusError::TimedOut {
                subject: subject.to_owned(),
            }),
        }
    }

    async fn serve(
        &self,
        service: &str,
        handler: Arc<dyn CommandHandler>,
    ) -> Result<Box<dyn Serving>, BusError> {
        let subject = format!("{COMMAND_PREFIX}{service}.*");
        let subscriber = self
            .client
            .queue_subscribe(subject.clone(), service.to_owned())
            .await
            .map_err(|e| BusError::Unavailable(Box::new(e)))?;
        // Return only once the server has the subscription, so that a request sent right
        // after `serve` (from any connection) finds it.
        round_trip(&self.client).await?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(serve_loop(
            self.client.clone(),
            self.proofs.clone(),
            subject,
            subscriber,
            handler,
            stop_rx,
        ));
        Ok(Box::new(NatsServing {
            stop: stop_tx,
            task,
        }))
    }
}

/// A message to ourselves through the server: when it is back, the server has processed
/// everything this connection sent before it (a PING/PONG, which the client does not expose).
async fn round_trip(client: &Client) -> Result<(), BusError> {
    let inbox = client.new_inbox();
    let mut echo = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| BusError::Unavailable(Box::new(e)))?;
    client
        .publish(inbox.clone(), bytes::Bytes::new())
        .await
        .map_err(|e| BusError::Unavailable(Box::new(e)))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, echo.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(BusError::Unavailable("the connection closed".into())),
        Err(_) => Err(BusError::TimedOut { subject: inbox }),
    }
}

async fn serve_loop(
    client: Client,
    proofs: Arc<CommandProofs>,
    subject: String,
    mut subscriber: async_nats::Subscriber,
    handler: Arc<dyn CommandHandler>,
    stop: oneshot::Receiver<()>,
) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut in_flight = JoinSet::new();
    // Resolves to `true` when stop is asked for, `false` when the `NatsServing` was dropped.
    let stop = async move { stop.await.is_ok() };
    tokio::pin!(stop);
    let mut stop_seen = false;
    loop {
        tokio::select! {
            stopped = &mut stop, if !stop_seen => {
                stop_seen = true;
                if stopped {
                    // Unsubscribe, but deliver what the server already sent us: the stream
                    // ends once the drain is complete.
                    if let Err(error) = subscriber.drain().await {
                        tracing::warn!(subject = %subject, error = %error, "draining the command subscription failed");
                        break;
                    }
                }
                // A dropped `NatsServing` (sender gone) keeps serving until the client closes.
            }
            message = subscriber.next() => {
                let Some(message) = message else { break };
                let Ok(permit) = permits.clone().acquire_owned().await else { break };
                let Some(reply) = message.reply.clone() else {
                    tracing::warn!(subject = %message.subject, "dropping a command without a reply subject");
                    continue;
                };
                let command = message.subject.rsplit('.').next().unwrap_or_default().to_owned();
                let proof = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(PROOF_HEADER))
                    .map(|v| v.as_str());
                let checked = proofs.verify(&message.subject, &message.payload, proof);
                // The proof is the transport's business, not the handler's.
                let headers: Headers = from_header_map(message.headers.as_ref())
                    .into_iter()
                    .filter(|(name, _)| !name.eq_ignore_ascii_case(PROOF_HEADER))
                    .collect();
                let handler = handler.clone();
                let client = client.clone();
                in_flight.spawn(async move {
                    let answer = match checked {
                        Ok(()) => handler.handle(&command, message.payload, headers).await,
                        Err(refusal) => refuse(&command, &refusal),
                    };
                    if let Err(error) = client.publish(reply, answer).await {
                        tracing::warn!(command = %command, error = %error, "cannot send a command reply");
                    }
                    drop(permit);
                });
            }
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Err(error) = done {
                    tracing::error!(subject = %subject, error = %error, "a command handler panicked");
                }
            }
        }
    }
    while let Some(done) = in_flight.join_next().await {
        if let Err(error) = done {
            tracing::error!(subject = %subject, error = %error, "a command handler panicked");
        }
    }
    // Replies are published into the client's buffer; push them out before reporting done.
    if let Err(error) = client.flush().await {
        tracing::warn!(subject = %subject, error = %error, "flushing command replies failed");
    }
}

/// The answer to a command whose proof did not check out; logged, since only a broken
/// deployment or someone forging commands on the bus sends one.
fn refuse(command: &str, refusal: &ProofError) -> bytes::Bytes {
    tracing::warn!(
        command = %command,
        reason = %refusal,
        "refused a command without a valid gateway proof (forged, replayed, or signed with another master key)"
    );
    crate::router::encode::<()>(&Reply::Err(Failure::new(
        FailureKind::Forbidden,
        CommonFailure::CommandRefused,
        format!("{refusal}; commands are accepted only from a gateway"),
    )))
}

struct NatsServing {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

#[async_trait]
impl Serving for NatsServing {
    async fn stop(self: Box<Self>) {
        let NatsServing { stop, task } = *self;
        // If the loop already ended (client closed), there is nothing to signal.
        let _ = stop.send(());
        if let Err(error) = task.await {
            tracing::error!(error = %error, "the command serving task failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn credentials_in_a_url_are_masked() {
        assert_eq!(
            redact_url("tls://gateway:s3cret@nats.internal:4222"),
            "tls://[HIDDEN]@nats.internal:4222"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }
}
