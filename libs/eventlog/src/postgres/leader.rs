//! Leader election for work that must run in one process at a time (the read-model
//! projector: its durable consumer must have a single active subscriber to keep each
//! stream's events in order). The leader holds a session-level advisory lock on a
//! dedicated connection; if that connection dies, so does the lock, and the work is
//! stopped before another process can take over.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use super::{PgDatabase, unavailable};

const RETRY: Duration = Duration::from_secs(1);
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Runs `work` whenever this process holds advisory lock `lock`, until `shutdown`. `work`
/// gets its own stop signal, raised when leadership is lost or on shutdown, and must
/// return promptly after it.
pub async fn run_while_leader<F, Fut>(
    database: PgDatabase,
    lock: i64,
    name: &str,
    mut shutdown: watch::Receiver<bool>,
    work: F,
) where
    F: Fn(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()>,
{
    while !*shutdown.borrow() {
        let session = match database.connect_dedicated(|_| {}).await {
            Ok(session) => session,
            Err(error) => {
                tracing::warn!(task = name, error = %error, "cannot open the leader connection; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        // Wait for the lock.
        let acquired = loop {
            match session
                .client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&lock])
                .await
                .map_err(unavailable)
            {
                Ok(row) if row.try_get::<_, bool>(0).unwrap_or(false) => break true,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(task = name, error = %error, "the leader connection failed");
                    break false;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(RETRY) => {}
                _ = shutdown.changed() => break false,
            }
        };
        if !acquired {
            continue;
        }
        tracing::info!(task = name, "this process is now the leader");
        let (stop, stopped) = watch::channel(false);
        let running = work(stopped);
        tokio::pin!(running);
        // Run the work while the lock's connection is alive and nobody asked us to stop.
        loop {
            tokio::select! {
                () = &mut running => break,
                _ = shutdown.changed() => {
                    stop.send_replace(true);
                    (&mut running).await;
                    break;
                }
                () = tokio::time::sleep(HEARTBEAT) => {
                    if session.client.simple_query("SELECT 1").await.is_err() {
                        tracing::warn!(task = name, "lost the leader connection: stopping");
                        stop.send_replace(true);
                        (&mut running).await;
                        break;
                    }
                }
            }
        }
        session.driver.abort();
    }
}
