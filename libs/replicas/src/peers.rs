//! The replica barrier: a write that changes who may do what (a deactivation, a deleted
//! key, a rotation) is answered only once every live gateway replica enforces it.
//!
//! Each replica's directory follows the event feed, so a revocation reaches all of them
//! within milliseconds anyway; the barrier turns "within milliseconds" into "before the
//! command returns", which is what an operator who just killed a leaked key needs to be
//! told. It runs over core NATS, beside the feed:
//!
//! - every ready replica announces itself on [`PRESENCE_SUBJECT`] every second (and says
//!   goodbye on shutdown); the others keep the set of replicas heard from lately;
//! - after a write, the replica that served it asks on [`BARRIER_SUBJECT`] "have you
//!   applied stream S at version V?"; each replica answers once its directory has, and
//!   the writer waits for an answer from every live replica, bounded in time.
//!
//! A replica that died without saying goodbye stays in the set for [`LIVE_FOR`]; a write
//! in that window waits out the bound and answers anyway, with a warning in the log. No
//! secret or principal data travels here: only stream ids and versions.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use gatehouse_contracts::envelope::StreamId;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

/// Where replicas announce themselves.
pub const PRESENCE_SUBJECT: &str = "gatehouse.gateway.presence";
/// Where a writer asks every replica to confirm it applied a write.
pub const BARRIER_SUBJECT: &str = "gatehouse.gateway.barrier";
/// How often a replica announces itself.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A replica not heard from for this long is no longer waited for.
pub const LIVE_FOR: Duration = Duration::from_secs(3);
/// The longest a writer waits for the other replicas.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, Deserialize)]
struct Presence {
    replica: Uuid,
    #[serde(default)]
    leaving: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct BarrierRequest {
    /// The writer, which answers for itself.
    from: Uuid,
    stream_id: StreamId,
    version: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct BarrierReply {
    replica: Uuid,
    applied: bool,
}

/// What this replica enforces (the gateway's in-memory directory): a replica announces
/// itself only once it is ready, and answers a barrier once it has applied the write.
#[async_trait]
pub trait Follower: Send + Sync + 'static {
    /// Whether it is loaded and enforcing.
    fn is_ready(&self) -> bool;
    /// Waits until it is ready.
    async fn wait_ready(&self);
    /// Waits (at most `timeout`) until it reflects `stream_id` at `version` (or later);
    /// whether it does. A stream it does not follow counts as applied.
    async fn wait_applied(&self, stream_id: &StreamId, version: i64, timeout: Duration) -> bool;
}

/// What a barrier achieved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BarrierOutcome {
    /// Every live replica confirmed (or there is none besides this one).
    Confirmed {
        /// How many replicas confirmed.
        replicas: usize,
    },
    /// Some replicas did not confirm in time.
    Incomplete {
        /// The replicas that did not confirm.
        missing: Vec<Uuid>,
    },
}

/// This replica's view of its peers; a no-op when the gateway runs alone (dev mode).
#[derive(Clone, Default)]
pub struct Peers {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("replica", &self.inner.as_ref().map(|i| i.replica))
            .finish_non_exhaustive()
    }
}

struct Inner {
    client: async_nats::Client,
    replica: Uuid,
    /// When each other replica was last heard from.
    members: Mutex<HashMap<Uuid, Instant>>,
    directory: Arc<dyn Follower>,
    /// Whether the others have been told about this replica (it is ready only then).
    announced: AtomicBool,
}

impl Peers {
    /// No peers: every barrier is confirmed at once.
    pub fn alone() -> Self {
        Self::default()
    }

    /// Joins the replica set over `client`: answers barriers for `directory` and, once the
    /// directory is ready, announces this replica until `shutdown`.
    pub async fn join(
        client: async_nats::Client,
        directory: Arc<dyn Follower>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, async_nats::SubscribeError> {
        let inner = Arc::new(Inner {
            client: client.clone(),
            replica: Uuid::new_v4(),
            members: Mutex::default(),
            directory,
            announced: AtomicBool::new(false),
        });
        let presence = client.subscribe(PRESENCE_SUBJECT).await?;
        let barriers = client.subscribe(BARRIER_SUBJECT).await?;
        tokio::spawn(inner.clone().listen_presence(presence, shutdown.clone()));
        tokio::spawn(inner.clone().answer_barriers(barriers, shutdown.clone()));
        tokio::spawn(inner.clone().announce(shutdown));
        Ok(Self { inner: Some(inner) })
    }

    /// Whether the other replicas have been told about this one, so that they wait for
    /// it from their next write on. Readiness waits for this: a replica that serves
    /// before it is known could accept a token the others just revoked.
    pub fn is_announced(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|i| i.announced.load(Ordering::Acquire))
    }

    /// This replica's id (random per process).
    pub fn replica(&self) -> Option<Uuid> {
        self.inner.as_ref().map(|i| i.replica)
    }

    /// The other replicas heard from lately.
    pub fn live(&self) -> Vec<Uuid> {
        self.inner.as_ref().map(|i| i.live()).unwrap_or_default()
    }

    /// Waits (at most `timeout`, capped at two seconds) until every other live replica
    /// reports that its directory reflects `stream_id` at `version`.
    pub async fn await_applied(
        &self,
        stream_id: &StreamId,
        version: i64,
        timeout: Duration,
    ) -> BarrierOutcome {
        let Some(inner) = &self.inner else {
            return BarrierOutcome::Confirmed { replicas: 0 };
        };
        inner
            .barrier(stream_id, version, timeout.min(BARRIER_TIMEOUT))
            .await
    }
}

impl Inner {
    fn live(&self) -> Vec<Uuid> {
        let now = Instant::now();
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        members.retain(|_, seen| now.duration_since(*seen) < LIVE_FOR);
        members.keys().copied().collect()
    }

    async fn publish_presence(&self, leaving: bool) {
        let payload = serde_json::to_vec(&Presence {
            replica: self.replica,
            leaving,
        })
        .unwrap_or_default();
        if let Err(error) = self.client.publish(PRESENCE_SUBJECT, payload.into()).await {
            tracing::warn!(error = %error, "announcing this gateway replica failed");
        }
    }

    /// Announces this replica every [`HEARTBEAT`] once its directory is ready (a replica
    /// that cannot enforce revocations yet must not be waited for, nor serve), and says
    /// goodbye on shutdown so that writers stop waiting for it at once.
    async fn announce(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        tokio::select! {
            _ = self.directory.wait_ready() => {}
            _ = shutdown.changed() => return,
        }
        let mut ticker = tokio::time::interval(HEARTBEAT);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
            self.publish_presence(false).await;
            if !self.announced.load(Ordering::Acquire) && self.client.flush().await.is_ok() {
                self.announced.store(true, Ordering::Release);
            }
        }
        self.publish_presence(true).await;
        let _ = self.client.flush().await;
    }

    async fn listen_presence(
        self: Arc<Self>,
        mut messages: async_nats::Subscriber,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                _ = shutdown.changed() => return,
            };
            let Some(message) = message else { return };
            let Ok(presence) = serde_json::from_slice::<Presence>(&message.payload) else {
                continue;
            };
            if presence.replica == self.replica {
                continue;
            }
            let newcomer = {
                let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
                if presence.leaving {
                    members.remove(&presence.replica);
                    false
                } else {
                    members.insert(presence.replica, Instant::now()).is_none()
                }
            };
            // Answer a newcomer at once, so that it waits for us from its first write
            // rather than from our next heartbeat.
            if newcomer && self.directory.is_ready() {
                tracing::info!(replica = %presence.replica, "a gateway replica joined");
                self.publish_presence(false).await;
            }
        }
    }

    async fn answer_barriers(
        self: Arc<Self>,
        mut messages: async_nats::Subscriber,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                _ = shutdown.changed() => return,
            };
            let Some(message) = message else { return };
            let (Some(reply), Ok(request)) = (
                message.reply,
                serde_json::from_slice::<BarrierRequest>(&message.payload),
            ) else {
                continue;
            };
            if request.from == self.replica {
                continue;
            }
            let inner = self.clone();
            tokio::spawn(async move {
                let applied = inner
                    .directory
                    .wait_applied(&request.stream_id, request.version, BARRIER_TIMEOUT)
                    .await;
                let answer = serde_json::to_vec(&BarrierReply {
                    replica: inner.replica,
                    applied,
                })
                .unwrap_or_default();
                if let Err(error) = inner.client.publish(reply, answer.into()).await {
                    tracing::warn!(error = %error, "answering a replica barrier failed");
                }
            });
        }
    }

    async fn barrier(
        &self,
        stream_id: &StreamId,
        version: i64,
        timeout: Duration,
    ) -> BarrierOutcome {
        let mut waiting: HashSet<Uuid> = self.live().into_iter().collect();
        if waiting.is_empty() {
            return BarrierOutcome::Confirmed { replicas: 0 };
        }
        let expected = waiting.len();
        let deadline = tokio::time::Instant::now() + timeout;
        let inbox = self.client.new_inbox();
        let request = BarrierRequest {
            from: self.replica,
            stream_id: stream_id.clone(),
            version,
        };
        let sent = async {
            let replies = self.client.subscribe(inbox.clone()).await.ok()?;
            let payload = serde_json::to_vec(&request).ok()?;
            self.client
                .publish_with_reply(BARRIER_SUBJECT, inbox, payload.into())
                .await
                .ok()?;
            self.client.flush().await.ok()?;
            Some(replies)
        };
        let Some(mut replies) = sent.await else {
            tracing::warn!(%stream_id, version, "could not ask the other gateway replicas to confirm a write");
            return BarrierOutcome::Incomplete {
                missing: waiting.into_iter().collect(),
            };
        };
        while !waiting.is_empty() {
            match tokio::time::timeout_at(deadline, replies.next()).await {
                Ok(Some(message)) => {
                    if let Ok(reply) = serde_json::from_slice::<BarrierReply>(&message.payload)
                        && reply.applied
                    {
                        waiting.remove(&reply.replica);
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        let _ = replies.unsubscribe().await;
        if waiting.is_empty() {
            BarrierOutcome::Confirmed { replicas: expected }
        } else {
            let missing: Vec<Uuid> = waiting.into_iter().collect();
            tracing::warn!(%stream_id, version, ?missing, "gateway replicas did not confirm a write in time; answering anyway");
            BarrierOutcome::Incomplete { missing }
        }
    }
}
