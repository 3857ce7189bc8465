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

fn encode<T: serde::Serialize>(reply: &Reply<T>) -> Bytes {
    match serde_json::to_vec(reply) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a reply");
            Bytes::from_static(br#"{"result":"err","kind":"internal","code":"encode","message":"cannot encode the reply"}"#)
        }
    }
}

impl CommandRouter {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
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
                        Ok(envelope) => handler(envelope).await.into(),
                        Err(e) => Reply::Err(Failure::new(
                            FailureKind::Invalid,
                            "malformed_command",
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
                "unknown_command",
                format!("unknown command {command:?}"),
            ))),
        }
    }
}
