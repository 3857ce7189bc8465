//! Periodic sweeps over the read model: services that record what the clock decided (an
//! API key's expiry, a device request's lapse) find the due aggregates in a view and
//! append the events. Idempotent by construction (deciding again appends nothing), so
//! every replica may run one.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use crate::StoreError;
use crate::views::{ListQuery, ViewDoc, ViewStore};

/// Every document of `kind` matching `filters`, read a page at a time.
pub async fn list_all(
    views: &dyn ViewStore,
    kind: &str,
    filters: Vec<(String, serde_json::Value)>,
) -> Result<Vec<ViewDoc>, StoreError> {
    let mut docs = Vec::new();
    let mut query = ListQuery {
        filters,
        offset: 0,
        limit: 500,
        ..ListQuery::default()
    };
    loop {
        let page = views.list(kind, &query).await?;
        let done = page.items.is_empty();
        query.offset += page.items.len() as u64;
        docs.extend(page.items);
        if done || query.offset >= page.total {
            return Ok(docs);
        }
    }
}

/// Runs `sweep` now and then every `interval` until `shutdown`; a failed sweep is logged
/// (as `what`) and retried at the next tick.
pub async fn run_every<F, Fut, E>(
    what: &'static str,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    sweep: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<usize, E>>,
    E: std::fmt::Display,
{
    loop {
        match sweep().await {
            Ok(0) => {}
            Ok(recorded) => tracing::debug!(sweep = what, recorded, "sweep recorded events"),
            Err(e) => tracing::warn!(sweep = what, error = %e, "sweep failed; retrying later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}
