//! The in-process bus of `gatehouse dev`: the same bytes as NATS, no network.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{BusError, CommandBus, CommandHandler, Headers, Serving};

/// Routes `gatehouse.cmd.<service>.<command>` to the handler registered for `<service>`.
#[derive(Clone, Default)]
pub struct LocalCommandBus {
    services: Arc<RwLock<HashMap<String, Arc<dyn CommandHandler>>>>,
}

impl std::fmt::Debug for LocalCommandBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCommandBus").finish_non_exhaustive()
    }
}

impl LocalCommandBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }
}

struct LocalServing {
    services: Arc<RwLock<HashMap<String, Arc<dyn CommandHandler>>>>,
    service: String,
}

#[async_trait]
impl Serving for LocalServing {
    async fn stop(self: Box<Self>) {
        if let Ok(mut services) = self.services.write() {
            services.remove(&self.service);
        }
    }
}

#[async_trait]
impl CommandBus for LocalCommandBus {
    async fn request(
        &self,
        subject: &str,
        payload: Bytes,
        headers: Headers,
        timeout: Duration,
    ) -> Result<Bytes, BusError> {
        let no_responders = || BusError::NoResponders {
            subject: subject.to_owned(),
        };
        let rest = subject
            .strip_prefix("gatehouse.cmd.")
            .ok_or_else(no_responders)?;
        let (service, command) = rest.split_once('.').ok_or_else(no_responders)?;
        let handler = self
            .services
            .read()
            .map_err(|_| no_responders())?
            .get(service)
            .cloned()
            .ok_or_else(no_responders)?;
        let command = command.to_owned();
        // Run the handler on its own task, as a NATS subscriber would.
        let task = tokio::spawn(async move { handler.handle(&command, payload, headers).await });
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(join)) => Err(BusError::Unavailable(Box::new(join))),
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
        self.services
            .write()
            .map_err(|_| BusError::Unavailable("the local bus lock is poisoned".into()))?
            .insert(service.to_owned(), handler);
        Ok(Box::new(LocalServing {
            services: self.services.clone(),
            service: service.to_owned(),
        }))
    }
}
