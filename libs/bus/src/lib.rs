//! The bus: commands as request/reply (`gatehouse.cmd.<service>.<command>`, one queue group
//! per service so that replicas share the load) and events on JetStream subjects
//! `gatehouse.events.<aggregate>.<event>`.
//!
//! [`CommandBus`] has two implementations: [`nats::NatsCommandBus`] (core NATS) and
//! [`local::LocalCommandBus`] (in-process, for `gatehouse dev`). Both carry the same JSON
//! bytes, so dev mode exercises the same encoding as production. The event side lives in
//! [`jetstream`]: the outbox relay's publisher and the consumers' feed.

pub mod host;
pub mod infra;
pub mod jetstream;
pub mod local;
pub mod nats;
pub mod proof;
pub mod router;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use gatehouse_contracts::commands::{
    Accepted, Command, CommandEnvelope, Failure, FailureKind, Reply,
};
use gatehouse_contracts::failures::CommonFailure;

pub use router::CommandRouter;

/// Message headers (trace context, request id).
pub type Headers = Vec<(String, String)>;

/// The bus failed to carry a command.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// No service answered: none is subscribed, or it is down.
    #[error("no service answered on {subject}")]
    NoResponders {
        /// The subject.
        subject: String,
    },
    /// The service did not answer in time.
    #[error("the request on {subject} timed out")]
    TimedOut {
        /// The subject.
        subject: String,
    },
    /// The connection failed.
    #[error("the bus is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Handles the commands of one service: gets the command name (last subject token) and
/// the payload, returns the reply payload. Never fails at this level: failures are
/// encoded in the reply.
#[async_trait]
pub trait CommandHandler: Send + Sync + 'static {
    /// Handles one request.
    async fn handle(&self, command: &str, payload: Bytes, headers: Headers) -> Bytes;
}

/// A running service subscription; dropping it does not stop it, [`Serving::stop`] does.
#[async_trait]
pub trait Serving: Send + Sync {
    /// Stops taking new requests and waits for in-flight ones to finish.
    async fn stop(self: Box<Self>);
}

/// Request/reply transport for commands.
#[async_trait]
pub trait CommandBus: Send + Sync + 'static {
    /// Sends a request and waits for the reply.
    async fn request(
        &self,
        subject: &str,
        payload: Bytes,
        headers: Headers,
        timeout: Duration,
    ) -> Result<Bytes, BusError>;

    /// Serves `gatehouse.cmd.<service>.*` in queue group `<service>`.
    async fn serve(
        &self,
        service: &str,
        handler: Arc<dyn CommandHandler>,
    ) -> Result<Box<dyn Serving>, BusError>;
}

/// How long the gateway waits for a service by default.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends a typed command and decodes the typed reply. Transport failures become
/// [`FailureKind::Unavailable`] failures (HTTP 503), undecodable replies
/// [`FailureKind::Internal`].
pub async fn send<C: Command>(
    bus: &dyn CommandBus,
    envelope: &CommandEnvelope<C>,
    headers: Headers,
) -> Result<Accepted<C::Output>, Failure> {
    let subject = C::subject();
    let payload = serde_json::to_vec(envelope).map_err(|e| {
        Failure::new(
            FailureKind::Internal,
            CommonFailure::Encode,
            format!("cannot encode the command: {e}"),
        )
    })?;
    let reply = bus
        .request(
            &subject,
            Bytes::from(payload),
            headers,
            DEFAULT_COMMAND_TIMEOUT,
        )
        .await
        .map_err(|e| {
            tracing::warn!(subject = %subject, error = %e, "command not delivered");
            Failure::new(
                FailureKind::Unavailable,
                CommonFailure::ServiceUnavailable,
                format!("the {} service is unavailable", C::SERVICE),
            )
        })?;
    let reply: Reply<C::Output> = serde_json::from_slice(&reply).map_err(|e| {
        Failure::new(
            FailureKind::Internal,
            CommonFailure::Decode,
            format!("undecodable reply from {subject}: {e}"),
        )
    })?;
    reply.into()
}
