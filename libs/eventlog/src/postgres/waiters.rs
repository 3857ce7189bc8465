//! Requests waiting for their write to reach the read models
//! ([`ViewStore::wait_applied`](crate::ViewStore::wait_applied)).
//!
//! Every view commit notifies [`PROJECTED_CHANNEL`] with the streams it moved and their
//! applied versions, one `<stream id> <version>` per line (empty when the lines would not
//! fit in a notification; `COMMIT_SQL` in `views.rs` builds it). One listening connection per process reads those and wakes the waiters they satisfy,
//! without a query. A notification without a payload (one that would not fit, or from a
//! build before payloads) and every (re)connect cost one query for all waiting streams
//! together.
//!
//! It used to wake every waiter on every commit, each to query its own stream: with 32
//! requests waiting and a few hundred commits a second, thousands of queries a second that
//! found nothing, on the two cores the projector and the database also needed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::store::{corrupt, query};
use super::{PROJECTED_CHANNEL, PgDatabase, error_chain, unavailable, why_ended};
use crate::store::StoreError;

/// The `(stream id, version)` lines of a payload; `None` when it names none.
fn parse_payload(payload: &str) -> Option<Vec<(&str, i64)>> {
    let moved: Vec<(&str, i64)> = payload
        .lines()
        .filter_map(|line| {
            let (stream_id, version) = line.rsplit_once(' ')?;
            Some((stream_id, version.parse().ok()?))
        })
        .collect();
    (!moved.is_empty()).then_some(moved)
}

/// The waiters of one process, with the task that wakes them. Dropping it stops the task.
pub(super) struct WaitList {
    shared: Arc<Shared>,
    /// Closed on drop: the listening task stops.
    _alive: watch::Sender<()>,
}

struct Shared {
    streams: Mutex<HashMap<String, Vec<Waiter>>>,
    /// Whether the listening connection is up (waiters then poll only as a safety net).
    listening: AtomicBool,
    /// Asks the task to look up every waiting stream.
    recheck: Notify,
}

struct Waiter {
    version: i64,
    wake: Arc<Notify>,
}

/// One waiter's place in the list; leaves it when dropped.
pub(super) struct Registration {
    shared: Arc<Shared>,
    stream_id: String,
    wake: Arc<Notify>,
}

impl WaitList {
    /// Starts listening on `database`.
    pub(super) fn start(database: PgDatabase) -> Self {
        let shared = Arc::new(Shared {
            streams: Mutex::new(HashMap::new()),
            listening: AtomicBool::new(false),
            recheck: Notify::new(),
        });
        let (alive, closed) = watch::channel(());
        tokio::spawn(listen(database, shared.clone(), closed));
        Self {
            shared,
            _alive: alive,
        }
    }

    /// Waits for `stream_id` to reach `version` from now on (register before looking, so
    /// that a commit between the look and the wait still wakes).
    pub(super) fn register(&self, stream_id: &str, version: i64) -> Registration {
        let wake = Arc::new(Notify::new());
        lock(&self.shared.streams)
            .entry(stream_id.to_owned())
            .or_default()
            .push(Waiter {
                version,
                wake: wake.clone(),
            });
        Registration {
            shared: self.shared.clone(),
            stream_id: stream_id.to_owned(),
            wake,
        }
    }
}

impl Registration {
    /// Resolves once a commit applied the version waited for.
    pub(super) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Whether notifications are arriving (otherwise the waiter should poll).
    pub(super) fn listening(&self) -> bool {
        self.shared.listening.load(Ordering::Relaxed)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut streams = lock(&self.shared.streams);
        if let Some(waiters) = streams.get_mut(&self.stream_id) {
            waiters.retain(|w| !Arc::ptr_eq(&w.wake, &self.wake));
            if waiters.is_empty() {
                streams.remove(&self.stream_id);
            }
        }
    }
}

impl Shared {
    /// `stream_id` is applied up to `version`: wakes (and removes) its waiters for it.
    fn applied(&self, stream_id: &str, version: i64) {
        let mut streams = lock(&self.streams);
        let Some(waiters) = streams.get_mut(stream_id) else {
            return;
        };
        waiters.retain(|w| {
            let done = w.version <= version;
            if done {
                // Keeps a permit if the waiter is not polling `woken` right now.
                w.wake.notify_one();
            }
            !done
        });
        if waiters.is_empty() {
            streams.remove(stream_id);
        }
    }

    fn on_notification(&self, payload: &str) {
        match parse_payload(payload) {
            Some(moved) => {
                for (stream_id, version) in moved {
                    self.applied(stream_id, version);
                }
            }
            None => self.recheck.notify_one(),
        }
    }

    /// Looks up every waiting stream with one query.
    async fn recheck(&self, database: &PgDatabase) -> Result<(), StoreError> {
        let waited: Vec<String> = lock(&self.streams).keys().cloned().collect();
        if waited.is_empty() {
            return Ok(());
        }
        let client = database.pool().get().await.map_err(unavailable)?;
        let rows = query(
            &client,
            "SELECT stream_id, version FROM read.applied WHERE stream_id = ANY($1)",
            &[&waited],
        )
        .await
        .map_err(unavailable)?;
        for row in &rows {
            let stream_id: &str = row.try_get(0).map_err(corrupt)?;
            self.applied(stream_id, row.try_get(1).map_err(corrupt)?);
        }
        Ok(())
    }
}

/// Keeps a `LISTEN` connection open and wakes waiters from its notifications, reconnecting
/// after failures, until `closed` closes.
async fn listen(database: PgDatabase, shared: Arc<Shared>, mut closed: watch::Receiver<()>) {
    loop {
        let listening = async {
            let on_notify = {
                let shared = shared.clone();
                move |notification: tokio_postgres::Notification| {
                    shared.on_notification(notification.payload());
                }
            };
            let listener = database.connect_dedicated(on_notify).await?;
            listener.listen(PROJECTED_CHANNEL).await?;
            Ok::<_, StoreError>(listener)
        };
        match listening.await {
            Ok(mut listener) => {
                shared.listening.store(true, Ordering::Relaxed);
                // Commits may have happened while we were not listening.
                shared.recheck.notify_one();
                loop {
                    tokio::select! {
                        ended = &mut listener.driver => {
                            tracing::warn!(error = %why_ended(ended), "the view-store listener connection ended; reconnecting, waiters poll meanwhile");
                            break;
                        }
                        () = shared.recheck.notified() => {
                            if let Err(error) = shared.recheck(&database).await {
                                tracing::debug!(error = %error_chain(&error), "cannot look up the waited streams; waiters poll");
                            }
                        }
                        _ = closed.changed() => return,
                    }
                }
                shared.listening.store(false, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "cannot listen for view commits; retrying, waiters poll meanwhile");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = closed.changed() => return,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[test]
    fn a_payload_parses_into_streams_and_versions_and_an_empty_one_into_none() {
        assert_eq!(
            parse_payload("service_account/a 3\ndevice/b 12"),
            Some(vec![("service_account/a", 3), ("device/b", 12)])
        );
        assert_eq!(parse_payload(""), None);
        assert_eq!(parse_payload("garbage"), None);
    }

    #[test]
    fn a_commit_wakes_the_waiters_it_satisfies_and_leaves_the_others() {
        let shared = Shared {
            streams: Mutex::new(HashMap::new()),
            listening: AtomicBool::new(true),
            recheck: Notify::new(),
        };
        let (early, late) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        for (version, wake) in [(2, &early), (3, &late)] {
            lock(&shared.streams)
                .entry("s/1".into())
                .or_default()
                .push(Waiter {
                    version,
                    wake: wake.clone(),
                });
        }
        shared.on_notification("s/1 2\nother/2 9");
        let left: Vec<i64> = lock(&shared.streams)["s/1"]
            .iter()
            .map(|w| w.version)
            .collect();
        assert_eq!(left, vec![3], "the waiter for version 2 is woken and gone");
        assert!(early.notified().now_or_never().is_some());
        assert!(late.notified().now_or_never().is_none());
        assert!(
            shared.recheck.notified().now_or_never().is_none(),
            "a payload needs no look-up"
        );
        shared.on_notification("s/1 3");
        assert!(lock(&shared.streams).is_empty());
        assert!(late.notified().now_or_never().is_some());
        shared.on_notification("");
        assert!(
            shared.recheck.notified().now_or_never().is_some(),
            "a notification without a payload asks for one look-up of every waiting stream"
        );
    }
}
