//! Typed dispatch of a service's commands: decode the envelope, call the typed handler,
//! encode the reply.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use gatehouse_contracts::commands::{
    Accepted, Command, CommandEnvelope, Failure, FailureKind, Reply,
};
use gatehouse_contracts::failures::CommonFailure;

use crate::{CommandHandler, Headers};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Erased = Arc<dyn Fn(Bytes) -> BoxFuture<Bytes> + Send + Sync>;

/// Maps command names to typed handlers.
#[derive(Clone, Default)]
pub struct CommandRouter {
    routes: HashMap<&'static str, Erased>,
}

impl std::fmt::Debug for CommandRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandRouter")
            .field("routes", &self.routes.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A reply as bus bytes (an encoding failure becomes an internal failure).
pub(crate) fn encode<T: serde::Serialize>(reply: &Reply<T>) -> Bytes {
    match serde_json::to_vec(reply) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a reply");
            Bytes::from_static(br#"{"result":"err","kind":"internal","code":"encode","message":"cannot encode the reply"}"#)
        }
    }
}

/// Logs a failed command by whose failure it is: ours at ERROR, a rejection of the
/// client's request (a taken name, a weak password, a wrong key) at INFO, so that nobody
/// can flood the error log by sending bad requests. The one place every service's
/// outcomes are logged; handlers do not log their own `Err`.
fn log_failure(command: &str, request_id: Option<&str>, failure: &Failure) {
    let (kind, code, detail) = (failure.kind, failure.wire_code(), &failure.message);
    if kind.is_ours() {
        tracing::error!(command, request_id, ?kind, %code, %detail, "command failed");
    } else {
        tracing::info!(command, request_id, ?kind, %code, %detail, "command rejected");
    }
}

impl CommandRouter {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes command `C` to `handler`, called with a clone of `service` (a service's
    /// handle, cheap to clone): `router.route::<CreateUser, _, _, _>(&s, |s, env| async move { s.create_user(env).await })`.
    pub fn route<C, S, F, Fut>(self, service: &S, handler: F) -> Self
    where
        C: Command,
        S: Clone + Send + Sync + 'static,
        F: Fn(S, CommandEnvelope<C>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Accepted<C::Output>, Failure>> + Send + 'static,
    {
        let service = service.clone();
        self.on::<C, _, _>(move |envelope| handler(service.clone(), envelope))
    }

    /// Routes command `C` to `handler`.
    pub fn on<C, F, Fut>(mut self, handler: F) -> Self
    where
        C: Command,
        F: Fn(CommandEnvelope<C>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Accepted<C::Output>, Failure>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Erased = Arc::new(move |payload: Bytes| {
            let handler = handler.clone();
            Box::pin(async move {
                let reply: Reply<C::Output> =
                    match serde_json::from_slice::<CommandEnvelope<C>>(&payload) {
                        Ok(envelope) => {
                            let request_id = envelope.metadata.request_id.clone();
                            let outcome = handler(envelope).await;
                            if let Err(failure) = &outcome {
                                log_failure(C::NAME, request_id.as_deref(), failure);
                            }
                            outcome.into()
                        }
                        Err(e) => Reply::Err(Failure::new(
                            FailureKind::Invalid,
                            CommonFailure::MalformedCommand,
                            format!("cannot decode {}: {e}", C::NAME),
                        )),
                    };
                encode(&reply)
            })
        });
        self.routes.insert(C::NAME, erased);
        self
    }
}

#[async_trait]
impl CommandHandler for CommandRouter {
    async fn handle(&self, command: &str, payload: Bytes, _headers: Headers) -> Bytes {
        match self.routes.get(command) {
            Some(route) => route(payload).await,
            None => encode::<()>(&Reply::Err(Failure::new(
                FailureKind::Invalid,
                CommonFailure::UnknownCommand,
                format!("unknown command {command:?}"),
            ))),
        }
    }
}
