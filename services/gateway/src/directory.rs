//! The gateway's in-memory directory: every principal's name, role, active flag and
//! epoch, and every API key's validity (active flag, epoch, live generations, expiry),
//! kept current from the event feed. It answers the per-request auth questions
//! ("who is this?", "is this token revoked?") without a database or NATS round trip.
//!
//! It starts from a consistent snapshot of the shared read models (documents plus the
//! projector checkpoint they reflect) and then follows the feed from that checkpoint with
//! an ephemeral subscription, folding events with the same pure projections as the read
//! models. Every gateway replica has its own, so a deactivation reaches all of them as
//! fast as the feed delivers it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;

use crate::issuer::TokenIssuer;
use futures::FutureExt;
use gatehouse_contracts::commands::Caller;
use gatehouse_contracts::connectors::{CONNECTOR_VIEW, ConnectorView};
use gatehouse_contracts::devices::{DEVICE_VIEW, DeviceFacts, DeviceView};
use gatehouse_contracts::envelope::StreamId;
use gatehouse_contracts::identity::{
    Role, SERVICE_ACCOUNT_VIEW, ServiceAccountView, USER_VIEW, UserView,
};
use gatehouse_contracts::ids::PrincipalId;
use gatehouse_contracts::keyring::{KEYRING_VIEW, KeyringView};
use gatehouse_contracts::keys::{API_KEY_VIEW, ApiKeyView, KeyValidity};
use gatehouse_eventlog::memory::MemoryViewStore;
use gatehouse_eventlog::views::{BatchWrite, StreamState, StreamWrite};
use gatehouse_eventlog::{
    EventFeed, EventStore, ListQuery, Page, ProjectionRunner, SkippedEvent, StoreError, ViewDoc,
    ViewSnapshot, ViewStore,
};
use gatehouse_tokens::PrincipalKind;
use tokio::sync::watch;
use uuid::Uuid;

/// The name of the shared read-model projector (its checkpoint is the snapshot's).
pub const READ_MODEL_PROJECTOR: &str = "read-models";
const DIRECTORY_PROJECTOR: &str = "gateway-directory";

/// What the gateway knows about a principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Id (the token's `sub`).
    pub id: Uuid,
    /// User or service account.
    pub kind: PrincipalKind,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Whether it may act at all.
    pub active: bool,
    /// Tokens carrying an older epoch are revoked.
    pub epoch: u64,
}

impl Principal {
    /// The caller sent with commands.
    pub fn caller(&self) -> Caller {
        Caller {
            id: PrincipalId::from_uuid(self.id),
            kind: self.kind,
            name: self.name.clone(),
            role: self.role,
        }
    }
}

/// What the gateway knows about an API key: whose it is and what decides its validity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    /// The key's service account.
    pub service_account_id: Uuid,
    /// Active flag, epoch, generations and their windows, expiry.
    pub validity: KeyValidity,
}

/// What the gateway knows about a device: what decides whether its token works, and
/// what a polled device code is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceEntry {
    /// The OAuth client that asked.
    pub client_id: String,
    /// The keyed hash of its device code.
    pub device_code_hash: String,
    /// The polling interval first given.
    pub interval_seconds: u32,
    /// Owner, trust, lock, times.
    pub facts: DeviceFacts,
}

fn principal_of(kind: &str, doc: &serde_json::Value) -> Option<Principal> {
    match kind {
        USER_VIEW => serde_json::from_value::<UserView>(doc.clone())
            .ok()
            .map(|v| Principal {
                id: v.id.as_uuid(),
                kind: PrincipalKind::User,
                name: v.name,
                role: v.role,
                active: v.active,
                epoch: v.epoch,
            }),
        SERVICE_ACCOUNT_VIEW => serde_json::from_value::<ServiceAccountView>(doc.clone())
            .ok()
            .map(|v| Principal {
                id: v.id.as_uuid(),
                kind: PrincipalKind::ServiceAccount,
                name: v.name,
                role: v.role,
                active: v.active,
                epoch: v.epoch,
            }),
        _ => None,
    }
}

/// A [`ViewStore`] that keeps a typed principal map beside the documents.
#[derive(Clone)]
struct DirectoryStore {
    docs: MemoryViewStore,
    principals: Arc<RwLock<HashMap<Uuid, Arc<Principal>>>>,
    keys: Arc<RwLock<HashMap<Uuid, Arc<KeyEntry>>>>,
    devices: Arc<RwLock<HashMap<Uuid, Arc<DeviceEntry>>>>,
    /// Service connectors: who may use them (grants), for reusing a live lease without
    /// asking the connectors service.
    connectors: Arc<RwLock<HashMap<Uuid, Arc<ConnectorView>>>>,
    /// Told of every keyring change (rotations, retirements).
    issuer: Arc<TokenIssuer>,
}

#[async_trait]
impl ViewStore for DirectoryStore {
    async fn get(&self, kind: &str, id: Uuid) -> Result<Option<ViewDoc>, StoreError> {
        self.docs.get(kind, id).await
    }
    async fn find(
        &self,
        kind: &str,
        field: &str,
        value: &serde_json::Value,
    ) -> Result<Option<ViewDoc>, StoreError> {
        self.docs.find(kind, field, value).await
    }
    async fn list(&self, kind: &str, query: &ListQuery) -> Result<Page, StoreError> {
        self.docs.list(kind, query).await
    }
    async fn record_use(
        &self,
        kind: &str,
        id: Uuid,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        self.docs.record_use(kind, id, at).await
    }
    async fn last_used(
        &self,
        kind: &str,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, chrono::DateTime<chrono::Utc>>, StoreError> {
        self.docs.last_used(kind, ids).await
    }
    async fn applied_version(&self, stream_id: &StreamId) -> Result<Option<i64>, StoreError> {
        self.docs.applied_version(stream_id).await
    }
    async fn wait_applied(
        &self,
        stream_id: &StreamId,
        version: i64,
        timeout: Duration,
    ) -> Result<bool, StoreError> {
        self.docs.wait_applied(stream_id, version, timeout).await
    }
    async fn load_streams(
        &self,
        streams: &[(StreamId, Option<&'static str>)],
    ) -> Result<HashMap<StreamId, StreamState>, StoreError> {
        self.docs.load_streams(streams).await
    }
    async fn commit(&self, batch: BatchWrite) -> Result<(), StoreError> {
        let changed: Vec<(Option<&'static str>, StreamId, Option<serde_json::Value>)> = batch
            .streams
            .iter()
            .map(|w| (w.kind, w.stream_id.clone(), w.doc.clone()))
            .collect();
        // Update the typed map first: a revocation must never be visible in the documents
        // (and so to a waiting command) before it is enforced.
        {
            let mut principals = self.principals.write().unwrap_or_else(|p| p.into_inner());
            let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
            let mut devices = self.devices.write().unwrap_or_else(|p| p.into_inner());
            for (kind, stream_id, doc) in changed {
                let (Some(kind), Some(id)) = (kind, stream_id.id()) else {
                    continue;
                };
                if kind == KEYRING_VIEW {
                    if let Some(view) =
                        doc.and_then(|d| serde_json::from_value::<KeyringView>(d).ok())
                    {
                        self.issuer.apply_view(view);
                    }
                    continue;
                }
                if kind == DEVICE_VIEW {
                    let entry = doc
                        .and_then(|d| serde_json::from_value::<DeviceView>(d).ok())
                        .map(|v| DeviceEntry {
                            client_id: v.client_id,
                            device_code_hash: v.device_code_hash,
                            interval_seconds: v.interval_seconds,
                            facts: v.facts,
                        });
                    match entry {
                        Some(entry) => devices.insert(id, Arc::new(entry)),
                        None => devices.remove(&id),
                    };
                    continue;
                }
                if kind == CONNECTOR_VIEW {
                    let mut connectors = self.connectors.write().unwrap_or_else(|p| p.into_inner());
                    match doc.and_then(|d| serde_json::from_value::<ConnectorView>(d).ok()) {
                        Some(view) => connectors.insert(id, Arc::new(view)),
                        None => connectors.remove(&id),
                    };
                    continue;
                }
                if kind == API_KEY_VIEW {
                    let entry = doc
                        .and_then(|d| serde_json::from_value::<ApiKeyView>(d).ok())
                        .map(|v| KeyEntry {
                            service_account_id: v.service_account_id.as_uuid(),
                            validity: v.validity,
                        });
                    match entry {
                        Some(entry) => keys.insert(id, Arc::new(entry)),
                        None => keys.remove(&id),
                    };
                    continue;
                }
                match doc.as_ref().and_then(|d| principal_of(kind, d)) {
                    Some(p) => {
                        principals.insert(id, Arc::new(p));
                    }
                    None => {
                        principals.remove(&id);
                    }
                }
            }
        }
        self.docs.commit(batch).await
    }
    async fn checkpoint(&self, projector: &str) -> Result<Option<u64>, StoreError> {
        self.docs.checkpoint(projector).await
    }
    async fn skipped(&self, projector: &str) -> Result<Vec<SkippedEvent>, StoreError> {
        self.docs.skipped(projector).await
    }
    async fn snapshot(&self, kinds: &[&str], projector: &str) -> Result<ViewSnapshot, StoreError> {
        self.docs.snapshot(kinds, projector).await
    }
    async fn reset(&self) -> Result<(), StoreError> {
        self.principals
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.keys.write().unwrap_or_else(|p| p.into_inner()).clear();
        self.devices
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.connectors
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.docs.reset().await
    }
}

/// The directory has not loaded its snapshot yet: it cannot tell a revoked credential
/// from one it has not heard of, so it must not answer either way (a 401 would make
/// clients throw valid tokens away). Answered with 503 and Retry-After.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this gateway is starting and cannot check credentials yet; retry shortly")]
pub struct NotLoaded;

/// The directory.
#[derive(Clone)]
pub struct Directory {
    store: DirectoryStore,
    runner: ProjectionRunner,
    /// The aggregates followed, with the view kind of each (from the registry).
    followed: Arc<[(&'static str, &'static str)]>,
    ready: watch::Sender<bool>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("ready", &*self.ready.borrow())
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// An empty directory that will fold events with the identity projections, filling
    /// gaps from `log`.
    pub fn new(log: Arc<dyn EventStore>, issuer: Arc<TokenIssuer>) -> Self {
        let store = DirectoryStore {
            docs: MemoryViewStore::new(),
            principals: Arc::default(),
            keys: Arc::default(),
            devices: Arc::default(),
            connectors: Arc::default(),
            issuer,
        };
        let projections = gatehouse_readmodels::directory_projections();
        let followed = projections
            .iter()
            .map(|p| (p.aggregate(), p.kind()))
            .collect();
        let runner = projections.into_iter().fold(
            ProjectionRunner::new(DIRECTORY_PROJECTOR, Arc::new(store.clone()), log),
            |runner, p| runner.with(p),
        );
        Self {
            store,
            runner,
            followed,
            ready: watch::Sender::new(false),
        }
    }

    /// A principal by id.
    pub fn principal(&self, id: &Uuid) -> Option<Arc<Principal>> {
        self.store
            .principals
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// An API key by id.
    pub fn api_key(&self, id: &Uuid) -> Option<Arc<KeyEntry>> {
        self.store
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// A device by id.
    pub fn device(&self, id: &Uuid) -> Option<Arc<DeviceEntry>> {
        self.store
            .devices
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// The service connector with this id or name, as this replica knows it now.
    pub fn connector(&self, name_or_id: &str) -> Option<Arc<ConnectorView>> {
        let connectors = self
            .store
            .connectors
            .read()
            .unwrap_or_else(|p| p.into_inner());
        match Uuid::parse_str(name_or_id) {
            Ok(id) => connectors.get(&id).cloned(),
            Err(_) => connectors
                .values()
                .find(|c| c.connector.name == name_or_id)
                .cloned(),
        }
    }

    /// Whether the snapshot is loaded and the backlog applied.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// `Err(NotLoaded)` until the directory is ready: call it before any lookup whose
    /// "not found" would refuse a credential.
    pub fn loaded(&self) -> Result<(), NotLoaded> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(NotLoaded)
        }
    }

    /// Waits until the directory is ready.
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|ready| *ready).await;
    }

    /// The view kind of `aggregate`, if the directory follows it.
    fn view_kind_of(&self, aggregate: &str) -> Option<&'static str> {
        self.followed
            .iter()
            .find(|(a, _)| *a == aggregate)
            .map(|(_, kind)| *kind)
    }

    /// Whether the directory follows `stream_id`'s aggregate (principals, API keys,
    /// devices, signing keys).
    pub fn follows(&self, stream_id: &StreamId) -> bool {
        self.view_kind_of(stream_id.aggregate()).is_some()
    }

    /// Waits until the directory reflects `stream_id` at `version`; streams of aggregates
    /// the directory does not follow are ready at once.
    pub async fn wait_applied(
        &self,
        stream_id: &StreamId,
        version: i64,
        timeout: Duration,
    ) -> bool {
        if self.view_kind_of(stream_id.aggregate()).is_none() {
            return true;
        }
        self.store
            .docs
            .wait_applied(stream_id, version, timeout)
            .await
            .unwrap_or(false)
    }

    /// Loads the snapshot from the shared read models, then follows the feed until
    /// `shutdown`. Retries the snapshot until it succeeds.
    pub async fn run(
        self,
        read_models: Arc<dyn ViewStore>,
        feed: Arc<dyn EventFeed>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut pause = Duration::from_millis(100);
        loop {
            match self.load_snapshot(read_models.as_ref()).await {
                Ok(count) => {
                    tracing::info!(principals = count, "directory snapshot loaded");
                    break;
                }
                Err(error) => {
                    tracing::warn!(error = %error, "loading the directory snapshot failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.changed() => return,
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
        let ready = self.ready.clone();
        let runner = self.runner.clone();
        let follower = runner.run(feed, false, shutdown.clone());
        let mut follower = std::pin::pin!(follower);
        // Give the follower a moment to apply what is already waiting, then report ready.
        if (&mut follower).now_or_never().is_some() {
            return;
        }
        let settle = tokio::time::sleep(Duration::from_millis(50));
        tokio::select! {
            _ = &mut follower => return,
            _ = settle => {}
        }
        ready.send_replace(true);
        follower.await;
    }

    async fn load_snapshot(&self, read_models: &dyn ViewStore) -> Result<usize, StoreError> {
        let kinds: Vec<&str> = self.followed.iter().map(|(_, kind)| *kind).collect();
        let snapshot = read_models.snapshot(&kinds, READ_MODEL_PROJECTOR).await?;
        let mut streams: Vec<StreamWrite> = Vec::new();
        let mut with_docs = std::collections::HashSet::new();
        for doc in &snapshot.docs {
            let Some(&(aggregate, kind)) = self.followed.iter().find(|(_, k)| *k == doc.kind)
            else {
                continue;
            };
            let stream_id = StreamId::new(aggregate, doc.id);
            with_docs.insert(stream_id.clone());
            streams.push(StreamWrite {
                stream_id,
                kind: Some(kind),
                applied: doc.version,
                position: 0,
                doc: Some(doc.doc.clone()),
                created_position: Some(0),
            });
        }
        // Deleted principals have no document but their applied version still guards
        // against replaying their history.
        for (stream_id, version) in &snapshot.applied {
            let Some(kind) = self.view_kind_of(stream_id.aggregate()) else {
                continue;
            };
            if with_docs.contains(stream_id) {
                continue;
            }
            streams.push(StreamWrite {
                stream_id: stream_id.clone(),
                kind: Some(kind),
                applied: *version,
                position: 0,
                doc: None,
                created_position: None,
            });
        }
        // Events the shared projector skipped as unknown to its build: recorded as this
        // directory's own, so that its runner folds their streams again if it knows them.
        let skipped = snapshot
            .skipped
            .into_iter()
            .filter(|s| self.view_kind_of(s.stream_id.aggregate()).is_some())
            .collect();
        let count = snapshot.docs.len();
        self.store.reset().await?;
        self.store
            .commit(BatchWrite {
                projector: DIRECTORY_PROJECTOR.into(),
                streams,
                checkpoint: snapshot.checkpoint,
                skipped,
                refolded: Vec::new(),
            })
            .await?;
        Ok(count)
    }
}

/// The replica barrier asks the directory: a replica is waited for once it is ready, and
/// confirms a write once its directory has applied it.
#[async_trait]
impl gatehouse_replicas::Follower for Directory {
    fn is_ready(&self) -> bool {
        Directory::is_ready(self)
    }

    async fn wait_ready(&self) {
        Directory::wait_ready(self).await;
    }

    async fn wait_applied(&self, stream_id: &StreamId, version: i64, timeout: Duration) -> bool {
        Directory::wait_applied(self, stream_id, version, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_contracts::clock::SystemClock;
    use gatehouse_contracts::envelope::EventMetadata;
    use gatehouse_contracts::events::DomainEvent;
    use gatehouse_contracts::identity::{Deactivated, ServiceAccountCreated, ServiceAccountEvent};
    use gatehouse_contracts::names::{Description, Name};
    use gatehouse_eventlog::memory::MemoryEventStore;
    use gatehouse_eventlog::{AppendRequest, ExpectedVersion, NewEvent};
    use gatehouse_secrets::MasterKey;

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    async fn append(
        log: &MemoryEventStore,
        stream: &StreamId,
        after: i64,
        event: NewEvent,
    ) -> anyhow::Result<()> {
        let expected = if after == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exactly(after)
        };
        log.append(AppendRequest::new(stream.clone(), expected, vec![event]))
            .await?;
        Ok(())
    }

    fn domain(event: &ServiceAccountEvent) -> NewEvent {
        NewEvent::from_domain(event, EventMetadata::default(), chrono::Utc::now())
    }

    async fn create(log: &MemoryEventStore, name: &str) -> anyhow::Result<(Uuid, StreamId)> {
        let id = Uuid::new_v4();
        let stream = StreamId::new(ServiceAccountEvent::AGGREGATE, id);
        let created = ServiceAccountEvent::Created(ServiceAccountCreated {
            name: Name::parse(name)?,
            description: Description::parse("")?,
            role: Role::Member,
            owner: gatehouse_contracts::ids::PrincipalId::from_uuid(Uuid::new_v4()),
        });
        append(log, &stream, 0, domain(&created)).await?;
        Ok((id, stream))
    }

    async fn deactivate(
        log: &MemoryEventStore,
        stream: &StreamId,
        after: i64,
    ) -> anyhow::Result<()> {
        let event = ServiceAccountEvent::Deactivated(Deactivated {});
        append(log, stream, after, domain(&event)).await
    }

    /// `service_account.some_future_thing`: what a newer identity service might write.
    fn from_a_newer_version() -> NewEvent {
        NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "service_account.some_future_thing".into(),
            schema_version: 1,
            payload: serde_json::json!({ "colour": "teal" }),
            metadata: EventMetadata::default(),
            recorded_at: chrono::Utc::now(),
        }
    }

    async fn until(what: &str, check: impl Fn() -> bool) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !check() {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    async fn active_in_read_models(views: &MemoryViewStore, id: Uuid) -> anyhow::Result<bool> {
        let doc = views
            .get(SERVICE_ACCOUNT_VIEW, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no read model of {id}"))?;
        Ok(serde_json::from_value::<ServiceAccountView>(doc.doc)?.active)
    }

    /// An event type from a newer version between two revocations: the read models and
    /// the directory (following the feed, and a second one starting from the snapshot)
    /// apply both revocations, and record the event they skipped.
    #[tokio::test]
    async fn an_unknown_event_between_two_revocations_stalls_neither_the_read_models_nor_a_directory()
    -> anyhow::Result<()> {
        let log = MemoryEventStore::new();
        let read_models = MemoryViewStore::new();
        let (stop, shutdown) = watch::channel(false);
        let projector = ProjectionRunner::new(
            READ_MODEL_PROJECTOR,
            Arc::new(read_models.clone()),
            Arc::new(log.clone()),
        )
        .with(Arc::new(
            gatehouse_readmodels::identity::ServiceAccountProjection,
        ));
        tokio::spawn({
            let feed: Arc<dyn EventFeed> = Arc::new(log.clone());
            let shutdown = shutdown.clone();
            async move { projector.run(feed, true, shutdown).await }
        });
        let master = MasterKey::generate();
        crate::issuer::tests::first_key(&log, &master).await?;
        let start_directory = || async {
            let issuer = TokenIssuer::load(
                Arc::new(log.clone()),
                &master,
                "http://127.0.0.1",
                "gatehouse",
                &SystemClock,
            )
            .await?;
            let directory = Directory::new(Arc::new(log.clone()), Arc::new(issuer));
            tokio::spawn(directory.clone().run(
                Arc::new(read_models.clone()),
                Arc::new(log.clone()),
                shutdown.clone(),
            ));
            tokio::time::timeout(WAIT, directory.wait_ready()).await?;
            anyhow::Ok(directory)
        };

        let (a, stream_a) = create(&log, "account-a").await?;
        let (b, stream_b) = create(&log, "account-b").await?;
        let following = start_directory().await?;
        until("the directory knows both accounts", || {
            following.principal(&a).is_some() && following.principal(&b).is_some()
        })
        .await?;

        deactivate(&log, &stream_a, 1).await?;
        append(&log, &stream_a, 2, from_a_newer_version()).await?;
        deactivate(&log, &stream_b, 1).await?;

        let inactive =
            |directory: &Directory, id: Uuid| directory.principal(&id).is_some_and(|p| !p.active);
        until("the following directory refuses B", || {
            inactive(&following, b)
        })
        .await?;
        assert!(
            inactive(&following, a),
            "A is active again in the directory"
        );
        assert!(
            read_models.wait_applied(&stream_b, 2, WAIT).await?,
            "the read models never applied B's deactivation"
        );
        assert!(!active_in_read_models(&read_models, a).await?);
        assert!(!active_in_read_models(&read_models, b).await?);
        // The unknown event is behind A's version guard, and recorded.
        assert_eq!(read_models.applied_version(&stream_a).await?, Some(3));
        let skipped = read_models.skipped(READ_MODEL_PROJECTOR).await?;
        assert_eq!(
            skipped
                .iter()
                .map(|s| (s.stream_id.clone(), s.version, s.event_type.as_str()))
                .collect::<Vec<_>>(),
            [(stream_a.clone(), 3, "service_account.some_future_thing")]
        );

        // A directory that starts now loads the snapshot, takes over the skip record (its
        // build does not know the type either, so it keeps it) and refuses both.
        let starting = start_directory().await?;
        assert!(inactive(&starting, a) && inactive(&starting, b));
        assert_eq!(
            starting.store.docs.skipped(DIRECTORY_PROJECTOR).await?,
            skipped
        );
        stop.send_replace(true);
        Ok(())
    }
}
