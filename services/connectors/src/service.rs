//! The connectors service's command handlers: load, decide ([`crate::domain`]), call the
//! cloud through the connector's type (bounded in time), append.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use gatehouse_bus::CommandRouter;
use gatehouse_bus::host::{ServiceContext, Task, WriteSide};
use gatehouse_contracts::clock::Clock;
use gatehouse_contracts::commands::{
    Accepted, Caller, Command, CommandEnvelope, Failure, FailureKind,
};
use gatehouse_contracts::connectors::{
    COMPONENT_NAME_SCOPE, CONNECTOR_NAME_SCOPE, ComponentView, ConnectComponent, Connector,
    ConnectorDraft, ConnectorView, DeleteComponent, DeleteConnector, DisconnectComponent,
    ExpireLease, GrantConnector, IssueCredentials, LEASE_VIEW, LeaseView, LeasedCredentials,
    ListConnectorTypes, RegisterComponent, RegisterConnector, ResourceReach, RevokeConnectorGrant,
    RevokeLease, UpdateComponent, UpdateConnector, Verified, VerifyConnector, VerifyDraft,
    component_name_claim, component_stream, connector_stream, lease_stream,
};
use gatehouse_contracts::envelope::{Actor, EventMetadata};
use gatehouse_contracts::failures::{CommonFailure, ConnectorsFailure};
use gatehouse_contracts::ids::{ComponentId, ConnectorId, LeaseId, PrincipalId};
use gatehouse_eventlog::sweep::run_every;
use gatehouse_eventlog::views::TimeBound;
use gatehouse_eventlog::writer::{require_caller, store_failure};
use gatehouse_eventlog::{CommandWriter, EventStore, Extras, ListQuery, UniqueClaim, ViewStore};
use gatehouse_readmodels::connectors::{ComponentProjection, ConnectorProjection, LeaseProjection};
use gatehouse_secrets::{BusSealer, MasterKey, SealedSecret};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::domain::{self, ComponentState, ConnectorState, Gates, LeaseState, Rejection};
use crate::types::{
    Catalogue, Connection, ConnectorType, IssueRequest, Secrets, TypeSettings, UpstreamError,
};
use crate::vault::{Vault, VaultError};

/// How often a reused lease's last use is recorded, at most.
const LAST_USE_EVERY: chrono::Duration = chrono::Duration::seconds(60);
/// The most live leases a replica keeps for reuse.
const MAX_CACHED_LEASES: usize = 100_000;

/// Settings of the connectors service, as flags and environment variables.
#[derive(Clone, Debug, clap::Args)]
pub struct ConnectorSettings {
    /// Allow auth methods that lend the server's own cloud identity (`implicit`); only
    /// admins may register them.
    #[arg(
        long,
        env = "GATEHOUSE_ENABLE_IMPLICIT_AUTH_METHODS",
        default_value_t = false
    )]
    pub enable_implicit_auth_methods: bool,
    /// Refuse to hand out long-lived credentials (auth methods such as `secret-key`
    /// that can only give out the configured keys as they are).
    #[arg(
        long,
        env = "GATEHOUSE_FORBID_LONG_LIVED_CREDENTIALS",
        default_value_t = false
    )]
    pub forbid_long_lived_credentials: bool,
    /// Seconds a call to a cloud may take before the request fails with 504.
    #[arg(long, env = "GATEHOUSE_CONNECTOR_UPSTREAM_TIMEOUT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub upstream_timeout_seconds: u64,
    /// Seconds between sweeps that record reached lease expiries as events.
    #[arg(
        long,
        env = "GATEHOUSE_LEASE_EXPIRY_SWEEP_SECONDS",
        default_value_t = 5
    )]
    pub lease_sweep_seconds: u64,
}

impl Default for ConnectorSettings {
    fn default() -> Self {
        Self {
            enable_implicit_auth_methods: false,
            forbid_long_lived_credentials: false,
            upstream_timeout_seconds: 10,
            lease_sweep_seconds: 5,
        }
    }
}

impl ConnectorSettings {
    fn gates(&self) -> Gates {
        Gates {
            implicit_enabled: self.enable_implicit_auth_methods,
            forbid_long_lived: self.forbid_long_lived_credentials,
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.upstream_timeout_seconds.max(1))
    }
}

/// The connectors service's write side: its commands, and the sweeper that records lease
/// expiries.
pub fn write_side(ctx: &ServiceContext<'_>, settings: &ConnectorSettings) -> WriteSide {
    let catalogue = Catalogue::builtin(TypeSettings {
        timeout: settings.timeout(),
    });
    let service = ConnectorsService::new(
        ctx.log.clone(),
        ctx.master,
        ctx.clock.clone(),
        catalogue,
        settings,
    )
    .with_views(ctx.views.clone());
    let sweeper = service.clone().run_lease_sweeper(
        ctx.views.clone(),
        Duration::from_secs(settings.lease_sweep_seconds.max(1)),
        ctx.shutdown.clone(),
    );
    WriteSide {
        service: "connectors",
        router: service.router(),
        tasks: vec![Task::infallible("lease expiry sweeper", sweeper)],
    }
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Self {
        let message = r.to_string();
        let (kind, code): (FailureKind, ConnectorsFailure) = match r {
            Rejection::NotFound(_) => (
                FailureKind::NotFound,
                ConnectorsFailure::Common(CommonFailure::NotFound),
            ),
            Rejection::Forbidden(_) => (
                FailureKind::Forbidden,
                ConnectorsFailure::Common(CommonFailure::Forbidden),
            ),
            Rejection::Invalid { .. } => (
                FailureKind::Invalid,
                ConnectorsFailure::Common(CommonFailure::Invalid),
            ),
            Rejection::ImplicitDisabled(_) => {
                (FailureKind::Forbidden, ConnectorsFailure::ImplicitDisabled)
            }
            Rejection::LongLivedForbidden(_) => (
                FailureKind::Forbidden,
                ConnectorsFailure::LongLivedForbidden,
            ),
            Rejection::InUse(_) => (FailureKind::Conflict, ConnectorsFailure::InUse),
            Rejection::NotRevocable { .. } => {
                (FailureKind::Conflict, ConnectorsFailure::NotRevocable)
            }
            Rejection::NotConnected => (FailureKind::Conflict, ConnectorsFailure::NotConnected),
            Rejection::NameTaken(_) => (FailureKind::Conflict, ConnectorsFailure::NameTaken),
        };
        Failure::new(kind, code, message)
    }
}

/// The failure a caller sees for a cloud's answer.
fn upstream_failure(e: UpstreamError) -> Failure {
    match e {
        UpstreamError::Refused(m) => Failure::new(
            FailureKind::Upstream,
            ConnectorsFailure::UpstreamError,
            format!("the cloud refused: {m}"),
        ),
        UpstreamError::Timeout(_) => Failure::new(
            FailureKind::UpstreamTimeout,
            ConnectorsFailure::UpstreamTimeout,
            e.to_string(),
        ),
        UpstreamError::Invalid { field, message } => {
            Failure::from(Rejection::invalid(field, message))
        }
    }
}

/// What identifies a lease that may be handed out again.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ReuseKey {
    connector: ConnectorId,
    principal: PrincipalId,
    resource_type: String,
    resource_id: Option<String>,
    component: Option<ComponentId>,
}

/// A live lease kept by this replica for reuse (credentials in memory only, never
/// stored).
struct CachedLease {
    /// The connector's stream version when issued: any change to the connector (its
    /// configuration, secrets, grants) ends reuse.
    connector_version: i64,
    lease: LeaseView,
    credentials: Arc<SecretString>,
    last_recorded_use: DateTime<Utc>,
}

/// The connectors service.
#[derive(Clone)]
pub struct ConnectorsService {
    inner: Arc<Inner>,
    /// Where reused leases' last use is recorded (none in tests over the log alone).
    views: Option<Arc<dyn ViewStore>>,
}

struct Inner {
    writer: CommandWriter,
    sealer: BusSealer,
    vault: Vault,
    catalogue: Catalogue,
    gates: Gates,
    timeout: Duration,
    /// Opened secrets by connector and stream version (a change re-reads them).
    secrets: Mutex<HashMap<ConnectorId, (i64, Secrets)>>,
    leases: Mutex<HashMap<ReuseKey, CachedLease>>,
}

impl std::fmt::Debug for ConnectorsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorsService")
            .field("catalogue", &self.inner.catalogue)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ConnectorsService {
    /// A service over `store` with the types of `catalogue`.
    pub fn new(
        store: Arc<dyn EventStore>,
        master: &MasterKey,
        clock: Arc<dyn Clock>,
        catalogue: Catalogue,
        settings: &ConnectorSettings,
    ) -> Self {
        // The vault wraps data keys at run time, so it keeps its own handle on the key.
        let master_copy = MasterKey::from_base64(master.to_base64().expose_secret())
            .expect("a master key re-reads its own encoding");
        Self {
            views: None,
            inner: Arc::new(Inner {
                writer: CommandWriter::new(store, clock),
                sealer: BusSealer::new(master),
                vault: Vault::new(Arc::new(master_copy)),
                catalogue,
                gates: settings.gates(),
                timeout: settings.timeout(),
                secrets: Mutex::new(HashMap::new()),
                leases: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Records reused leases' last use in `views` (at most once a minute per lease).
    pub fn with_views(self, views: Arc<dyn ViewStore>) -> Self {
        Self {
            views: Some(views),
            ..self
        }
    }

    fn writer(&self) -> &CommandWriter {
        &self.inner.writer
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.writer.clock().now()
    }

    /// The bus router for every connectors command.
    pub fn router(&self) -> CommandRouter {
        CommandRouter::new()
            .route::<ListConnectorTypes, _, _, _>(self, |s, _env| async move {
                Ok(Accepted {
                    written: None,
                    output: s.inner.catalogue.specs(),
                })
            })
            .route::<RegisterConnector, _, _, _>(
                self,
                |s, env| async move { s.register(env).await },
            )
            .route::<VerifyDraft, _, _, _>(self, |s, env| async move { s.verify_draft(env).await })
            .route::<VerifyConnector, _, _, _>(self, |s, env| async move { s.verify(env).await })
            .route::<UpdateConnector, _, _, _>(self, |s, env| async move { s.update(env).await })
            .route::<DeleteConnector, _, _, _>(self, |s, env| async move { s.delete(env).await })
            .route::<GrantConnector, _, _, _>(self, |s, env| async move { s.grant(env).await })
            .route::<RevokeConnectorGrant, _, _, _>(self, |s, env| async move {
                s.revoke_grant(env).await
            })
            .route::<IssueCredentials, _, _, _>(self, |s, env| async move {
                s.issue_credentials(env).await
            })
            .route::<RevokeLease, _, _, _>(self, |s, env| async move { s.revoke_lease(env).await })
            .route::<ExpireLease, _, _, _>(self, |s, env| async move { s.expire_lease(env).await })
            .route::<RegisterComponent, _, _, _>(self, |s, env| async move {
                s.register_component(env).await
            })
            .route::<UpdateComponent, _, _, _>(self, |s, env| async move {
                s.update_component(env).await
            })
            .route::<ConnectComponent, _, _, _>(self, |s, env| async move {
                s.connect_component(env).await
            })
            .route::<DisconnectComponent, _, _, _>(self, |s, env| async move {
                s.disconnect_component(env).await
            })
            .route::<DeleteComponent, _, _, _>(self, |s, env| async move {
                s.delete_component(env).await
            })
    }

    // -----------------------------------------------------------------------------------
    // Helpers
    // -----------------------------------------------------------------------------------

    fn connector_type(&self, name: &str) -> Result<&Arc<dyn ConnectorType>, Failure> {
        self.inner.catalogue.get(name).ok_or_else(|| {
            Rejection::invalid(
                "connector_type",
                format!(
                    "{name:?} is not a connector type; known: {}",
                    self.inner
                        .catalogue
                        .specs()
                        .iter()
                        .map(|s| s.connector_type.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .into()
        })
    }

    /// Opens secrets sealed by the gateway for command `C`.
    fn open_sealed<C: Command>(
        &self,
        sealed: Option<&SealedSecret>,
    ) -> Result<BTreeMap<String, String>, Failure> {
        let Some(sealed) = sealed else {
            return Ok(BTreeMap::new());
        };
        let unsealable = || {
            Failure::new(
                FailureKind::Invalid,
                ConnectorsFailure::UnsealableSecret,
                "the secrets cannot be opened",
            )
        };
        let opened = self
            .inner
            .sealer
            .open(sealed, &C::seal_context("secrets"))
            .map_err(|_| unsealable())?;
        let fields: Map<String, Value> =
            serde_json::from_str(opened.expose_secret()).map_err(|_| unsealable())?;
        fields
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                _ => Err(Rejection::invalid(format!("secrets.{k}"), "must be a string").into()),
            })
            .collect()
    }

    fn seal_credentials(&self, credentials: &SecretString) -> Result<SealedSecret, Failure> {
        self.inner
            .sealer
            .seal(credentials, &IssueCredentials::seal_context("credentials"))
            .map_err(|e| {
                tracing::error!(error = %e, "sealing credentials failed");
                Failure::new(
                    FailureKind::Internal,
                    ConnectorsFailure::SealingFailed,
                    "the credentials cannot be sent",
                )
            })
    }

    /// A connector's secrets as stored (cached per stream version).
    async fn secrets_of(&self, id: ConnectorId, version: i64) -> Result<Secrets, Failure> {
        if let Some((v, s)) = lock(&self.inner.secrets).get(&id)
            && *v == version
        {
            return Ok(s.clone());
        }
        let secrets = self
            .inner
            .vault
            .open(self.writer().store(), &connector_stream(id))
            .await
            .map_err(|e| match e {
                VaultError::Store(e) => store_failure(&e),
                other => {
                    tracing::error!(connector = %id, error = %other, "a connector's secrets cannot be opened");
                    Failure::new(
                        FailureKind::Internal,
                        ConnectorsFailure::SecretsUnavailable,
                        "the connector's secrets cannot be opened",
                    )
                }
            })?;
        lock(&self.inner.secrets).insert(id, (version, secrets.clone()));
        Ok(secrets)
    }

    /// Runs one call to a cloud, bounded by the upstream timeout.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, UpstreamError>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(upstream_failure(e)),
            Err(_) => Err(upstream_failure(UpstreamError::Timeout(self.inner.timeout))),
        }
    }

    async fn load_connector(&self, id: ConnectorId) -> Result<(ConnectorState, i64), Failure> {
        self.writer()
            .load::<ConnectorState>(&connector_stream(id))
            .await
    }

    /// The view of a connector as the command left it.
    async fn connector_answer<O>(
        &self,
        id: ConnectorId,
        accepted: Accepted<O>,
    ) -> Result<Accepted<ConnectorView>, Failure> {
        self.writer()
            .answer(
                &ConnectorProjection,
                &connector_stream(id),
                accepted,
                |_, v| v,
            )
            .await
    }

    async fn component_answer<O>(
        &self,
        id: ComponentId,
        accepted: Accepted<O>,
    ) -> Result<Accepted<ComponentView>, Failure> {
        self.writer()
            .answer(
                &ComponentProjection,
                &component_stream(id),
                accepted,
                |_, v| v,
            )
            .await
    }

    /// Checks a draft and verifies it at the cloud when asked; returns what to store.
    async fn checked_draft<C: Command>(
        &self,
        draft: &ConnectorDraft,
        caller: &Caller,
        verify: bool,
        list_resources: bool,
    ) -> Result<(domain::CheckedDraft, Option<Verified>), Failure> {
        let kind = self.connector_type(&draft.connector_type)?.clone();
        let secrets = self.open_sealed::<C>(draft.secrets.as_ref())?;
        let checked = domain::check_draft(
            kind.as_ref(),
            draft,
            secrets,
            caller,
            self.inner.gates,
            self.now(),
        )?;
        if !verify {
            return Ok((checked, None));
        }
        let secrets = Secrets::new(
            checked
                .secrets
                .iter()
                .map(|(k, v)| (k.clone(), SecretString::from(v.clone()))),
        );
        let connector = Connector::evolve(
            None,
            &gatehouse_contracts::connectors::ConnectorEvent::Registered(
                checked.registered.clone(),
            ),
        )
        .expect("a registration makes a connector");
        let verified = self
            .verify_connector(
                kind.as_ref(),
                &connector,
                &secrets,
                None,
                None,
                list_resources,
                &|_| true,
            )
            .await?;
        Ok((checked, Some(verified)))
    }

    /// Verifies `connector` at the cloud: who it is, and per resource type what it
    /// reaches (listed when asked, filtered to what `covers` allows).
    #[allow(clippy::too_many_arguments)]
    async fn verify_connector(
        &self,
        kind: &dyn ConnectorType,
        connector: &Connector,
        secrets: &Secrets,
        resource_type: Option<&str>,
        resource_id: Option<&str>,
        list_resources: bool,
        covers: &(dyn Fn(Option<&str>) -> bool + Sync),
    ) -> Result<Verified, Failure> {
        let connection = Connection {
            auth_method: &connector.auth_method,
            configuration: &connector.configuration,
            secrets,
            expires_at: connector.expires_at,
        };
        let spec = kind.spec();
        let has_instances = |rt: &str| spec.resource_type(rt).is_some_and(|r| r.supports_instances);
        let resource = match (resource_type, resource_id) {
            // A type with instances but no id names no one resource (the trait's `verify`
            // takes an id for those): its resources are listed below instead.
            (Some(rt), None) if has_instances(rt) => None,
            (Some(rt), id) => Some((rt, id)),
            (None, Some(_)) => {
                return Err(Rejection::invalid(
                    "resource_type",
                    "a resource id needs its resource type",
                )
                .into());
            }
            (None, None) => None,
        };
        let identity = self.bounded(kind.verify(&connection, resource)).await?;
        let types: Vec<String> = match resource_type {
            Some(rt) => vec![rt.to_owned()],
            None => domain::serving_types(spec, connector),
        };
        let mut resources = Vec::new();
        for rt in types {
            let instances = has_instances(&rt);
            let mut reach = ResourceReach {
                resource_type: rt.clone(),
                resource_ids: Vec::new(),
                error: None,
            };
            if let Some(id) = resource_id {
                reach.resource_ids.push(id.to_owned());
            } else if list_resources || !instances || resource_type.is_some() {
                match self.bounded(kind.list_resources(&connection, &rt)).await {
                    Ok(ids) => {
                        reach.resource_ids = ids
                            .into_iter()
                            .filter(|id| {
                                !instances
                                    || (connector
                                        .resource_id
                                        .as_ref()
                                        .is_none_or(|only| only == id)
                                        && covers(Some(id)))
                            })
                            .collect();
                    }
                    Err(f) => reach.error = Some(f.message),
                }
            } else if let Some(only) = &connector.resource_id {
                reach.resource_ids.push(only.clone());
            }
            resources.push(reach);
        }
        Ok(Verified {
            identity,
            resources,
        })
    }

    // -----------------------------------------------------------------------------------
    // Connectors
    // -----------------------------------------------------------------------------------

    /// Registers a connector: checks every field, verifies at the cloud unless told not
    /// to, seals the secrets under a new data key, and appends `connector.registered`.
    #[tracing::instrument(skip_all, fields(name = %env.command.draft.name))]
    pub async fn register(
        &self,
        env: CommandEnvelope<RegisterConnector>,
    ) -> Result<Accepted<ConnectorView>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let c = &env.command;
        let (checked, _) = self
            .checked_draft::<RegisterConnector>(&c.draft, &caller, c.verify, false)
            .await?;
        let id = ConnectorId::new();
        let stream = connector_stream(id);
        let secrets = self
            .inner
            .vault
            .seal(&stream, &checked.secrets)
            .map_err(|e| {
                tracing::error!(error = %e, "sealing connector secrets failed");
                Failure::new(
                    FailureKind::Internal,
                    ConnectorsFailure::SealingFailed,
                    "the secrets cannot be stored",
                )
            })?;
        let extras = Extras {
            claims: vec![UniqueClaim::Claim {
                scope: CONNECTOR_NAME_SCOPE.into(),
                value: checked.registered.name.to_string(),
            }],
            secrets,
        };
        let created = self
            .writer()
            .create(
                stream,
                vec![gatehouse_contracts::connectors::ConnectorEvent::Registered(
                    checked.registered,
                )],
                extras,
                &env.metadata,
                None,
                (),
                || Rejection::NameTaken("connector").into(),
            )
            .await?;
        self.connector_answer(id, created).await
    }

    /// Verifies an unsaved connector.
    pub async fn verify_draft(
        &self,
        env: CommandEnvelope<VerifyDraft>,
    ) -> Result<Accepted<Verified>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let (_, verified) = self
            .checked_draft::<VerifyDraft>(
                &env.command.draft,
                &caller,
                true,
                env.command.list_resources,
            )
            .await?;
        Ok(Accepted {
            written: None,
            output: verified.expect("verified when asked"),
        })
    }

    /// Verifies a registered connector.
    pub async fn verify(
        &self,
        env: CommandEnvelope<VerifyConnector>,
    ) -> Result<Accepted<Verified>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let c = &env.command;
        let (state, version) = self.load_connector(c.connector).await?;
        let (connector, access) = domain::usable(&state, &caller)?;
        let kind = self.connector_type(&connector.connector_type)?.clone();
        domain::auth_method(kind.spec(), &connector.auth_method, self.inner.gates)?;
        if let Some(rt) = &c.resource_type
            && !domain::serving_types(kind.spec(), connector).contains(rt)
        {
            return Err(Rejection::invalid(
                "resource_type",
                format!("connector {:?} does not serve {rt:?}", connector.name),
            )
            .into());
        }
        let resource_id = match (&c.resource_type, &c.resource_id) {
            (Some(rt), Some(raw)) => {
                let id = domain::canonical_resource_id(kind.as_ref(), rt, raw, "resource_id")?;
                if !access.covers(Some(&id)) {
                    return Err(
                        Rejection::Forbidden(format!("your grant does not cover {id}")).into(),
                    );
                }
                Some(id)
            }
            _ => None,
        };
        let secrets = self.secrets_of(c.connector, version).await?;
        let covers = |id: Option<&str>| access.covers(id);
        let verified = self
            .verify_connector(
                kind.as_ref(),
                connector,
                &secrets,
                c.resource_type.as_deref(),
                resource_id.as_deref(),
                c.list_resources,
                &covers,
            )
            .await?;
        Ok(Accepted {
            written: None,
            output: verified,
        })
    }

    /// Changes a connector; with new secrets, under a new data key.
    pub async fn update(
        &self,
        env: CommandEnvelope<UpdateConnector>,
    ) -> Result<Accepted<ConnectorView>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let c = &env.command;
        let secrets = match &c.secrets {
            Some(sealed) => Some(self.open_sealed::<UpdateConnector>(Some(sealed))?),
            None => None,
        };
        let (state, version) = self.load_connector(c.connector).await?;
        let current = domain::usable(&state, &caller)?.0;
        let kind = self.connector_type(&current.connector_type)?.clone();
        let checked = domain::update(
            kind.as_ref(),
            &state,
            c,
            secrets.clone(),
            &caller,
            self.inner.gates,
            self.now(),
        )?;
        if c.verify {
            let opened = match &checked.secrets {
                Some(s) => Secrets::new(
                    s.iter()
                        .map(|(k, v)| (k.clone(), SecretString::from(v.clone()))),
                ),
                None => self.secrets_of(c.connector, version).await?,
            };
            self.verify_connector(
                kind.as_ref(),
                &checked.after,
                &opened,
                None,
                None,
                false,
                &|_| true,
            )
            .await?;
        }
        let stream = connector_stream(c.connector);
        let sealed = match &checked.secrets {
            Some(s) => self.inner.vault.seal(&stream, s).map_err(|e| {
                tracing::error!(error = %e, "sealing connector secrets failed");
                Failure::new(
                    FailureKind::Internal,
                    ConnectorsFailure::SealingFailed,
                    "the secrets cannot be stored",
                )
            })?,
            None => Vec::new(),
        };
        let gates = self.inner.gates;
        let now = self.now();
        let accepted = self
            .writer()
            .update_with_retry::<ConnectorState, _, _, _>(stream, &env.metadata, |state| {
                let again = domain::update(
                    kind.as_ref(),
                    state,
                    c,
                    secrets.clone(),
                    &caller,
                    gates,
                    now,
                )?;
                let extras = Extras {
                    claims: Vec::new(),
                    secrets: if again.events.is_empty() {
                        Vec::new()
                    } else {
                        sealed.clone()
                    },
                };
                Ok::<_, Rejection>((again.events, extras, ()))
            })
            .await?;
        self.connector_answer(c.connector, accepted).await
    }

    /// Deletes a connector and shreds its key, unless components use it.
    pub async fn delete(
        &self,
        env: CommandEnvelope<DeleteConnector>,
    ) -> Result<Accepted<()>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let id = env.command.connector;
        let (state, _) = self.load_connector(id).await?;
        // The links the connector records, confirmed against each component (a link whose
        // second half never landed is not a use).
        let mut users = Vec::new();
        if let Some(connector) = &state.0 {
            for component in &connector.components {
                let (ComponentState(c), _) = self
                    .writer()
                    .load::<ComponentState>(&component_stream(*component))
                    .await?;
                if let Some(c) = c
                    && c.connector.as_ref().is_some_and(|l| l.connector_id == id)
                {
                    users.push((*component, format!("{} {}", c.component_type, c.name)));
                }
            }
        }
        let accepted = self
            .writer()
            .update_with_retry::<ConnectorState, _, _, _>(
                connector_stream(id),
                &env.metadata,
                |state| {
                    let events = domain::delete(state, &users, &caller)?;
                    let claims = state
                        .0
                        .iter()
                        .map(|c| UniqueClaim::Release {
                            scope: CONNECTOR_NAME_SCOPE.into(),
                            value: c.name.clone(),
                        })
                        .collect();
                    Ok::<_, Rejection>((
                        events,
                        Extras {
                            claims,
                            secrets: Vault::shred(),
                        },
                        (),
                    ))
                },
            )
            .await?;
        lock(&self.inner.secrets).remove(&id);
        lock(&self.inner.leases).retain(|k, _| k.connector != id);
        Ok(accepted)
    }

    /// Grants a connector to a principal.
    pub async fn grant(
        &self,
        env: CommandEnvelope<GrantConnector>,
    ) -> Result<Accepted<ConnectorView>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let c = &env.command;
        let (state, _) = self.load_connector(c.connector).await?;
        let kind = self
            .connector_type(&domain::usable(&state, &caller)?.0.connector_type)?
            .clone();
        let accepted = self
            .writer()
            .update_with_retry::<ConnectorState, _, _, _>(
                connector_stream(c.connector),
                &env.metadata,
                |state| {
                    let events = domain::grant(kind.as_ref(), state, c.grant.clone(), &caller)?;
                    Ok::<_, Rejection>((events, Extras::default(), ()))
                },
            )
            .await?;
        self.connector_answer(c.connector, accepted).await
    }

    /// Ends a grant.
    pub async fn revoke_grant(
        &self,
        env: CommandEnvelope<RevokeConnectorGrant>,
    ) -> Result<Accepted<ConnectorView>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let c = &env.command;
        let accepted = self
            .writer()
            .update_with_retry::<ConnectorState, _, _, _>(
                connector_stream(c.connector),
                &env.metadata,
                |state| {
                    let events = domain::revoke_grant(state, c.principal, &caller)?;
                    Ok::<_, Rejection>((events, Extras::default(), ()))
                },
            )
            .await?;
        lock(&self.inner.leases)
            .retain(|k, _| !(k.connector == c.connector && k.principal == c.principal));
        self.connector_answer(c.connector, accepted).await
    }

    // -----------------------------------------------------------------------------------
    // Leases
    // -----------------------------------------------------------------------------------

    /// Hands out credentials for one resource: a live lease of the caller's again when
    /// it has more than a quarter of its life left, else new ones from the cloud as a new
    /// lease (`lease.issued`).
    #[tracing::instrument(skip_all, fields(connector = %env.command.connector))]
    pub async fn issue_credentials(
        &self,
        env: CommandEnvelope<IssueCredentials>,
    ) -> Result<Accepted<LeasedCredentials>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let c = &env.command;
        let (state, version) = self.load_connector(c.connector).await?;
        let connector = domain::usable(&state, &caller)?.0;
        let kind = self.connector_type(&connector.connector_type)?.clone();
        if let Some(component) = c.component {
            // Asked through a component: it must be the caller's and linked to this
            // connector for this resource.
            let (cs, _) = self
                .writer()
                .load::<ComponentState>(&component_stream(component))
                .await?;
            let comp = domain::owned(&cs, &caller)?;
            let link = comp.connector.as_ref().ok_or(Rejection::NotConnected)?;
            if link.connector_id != c.connector || link.resource_type != c.resource_type {
                return Err(Rejection::NotConnected.into());
            }
        }
        let now = self.now();
        let plan = domain::plan_credentials(
            kind.as_ref(),
            &state,
            &c.resource_type,
            c.resource_id.as_deref(),
            c.expiration_seconds,
            &caller,
            self.inner.gates,
            now,
        )?;
        let key = ReuseKey {
            connector: c.connector,
            principal: caller.id,
            resource_type: plan.resource_type.clone(),
            resource_id: plan.resource_id.clone(),
            component: c.component,
        };
        if c.expiration_seconds.is_none()
            && let Some(reused) = self.reuse(&key, version, now).await
        {
            return Ok(Accepted {
                written: None,
                output: LeasedCredentials {
                    lease: reused.0,
                    credentials: self.seal_credentials(&reused.1)?,
                },
            });
        }
        let secrets = self.secrets_of(c.connector, version).await?;
        let connection = Connection {
            auth_method: &connector.auth_method,
            configuration: &connector.configuration,
            secrets: &secrets,
            expires_at: connector.expires_at,
        };
        let request = IssueRequest {
            resource_type: &plan.resource_type,
            resource_id: plan.resource_id.as_deref(),
            lifetime: Duration::from_secs(plan.lifetime_seconds),
            session_name: &caller.name,
        };
        let issued = self.bounded(kind.issue(&connection, &request)).await?;
        let lease_id = LeaseId::new();
        let event = domain::issued(
            c.connector,
            connector,
            &plan,
            &caller,
            c.component,
            issued.expires_at,
            issued.revocable,
            now,
        );
        let credentials = Arc::new(SecretString::from(
            serde_json::to_string(&issued.credentials).unwrap_or_default(),
        ));
        let created = self
            .writer()
            .create(
                lease_stream(lease_id),
                vec![event],
                Extras::default(),
                &env.metadata,
                None,
                (),
                || {
                    Failure::new(
                        FailureKind::Conflict,
                        CommonFailure::Conflict,
                        "lease id collision",
                    )
                },
            )
            .await?;
        let answered = self
            .writer()
            .answer(
                &LeaseProjection,
                &lease_stream(lease_id),
                created,
                |_, v: LeaseView| v,
            )
            .await?;
        self.remember(
            key,
            version,
            answered.output.clone(),
            credentials.clone(),
            now,
        );
        Ok(Accepted {
            written: answered.written,
            output: LeasedCredentials {
                lease: answered.output,
                credentials: self.seal_credentials(&credentials)?,
            },
        })
    }

    /// A live lease to hand out again, if this replica holds one.
    async fn reuse(
        &self,
        key: &ReuseKey,
        version: i64,
        now: DateTime<Utc>,
    ) -> Option<(LeaseView, Arc<SecretString>)> {
        let (lease, credentials, record) = {
            let mut leases = lock(&self.inner.leases);
            let cached = leases.get_mut(key)?;
            if cached.connector_version != version
                || !domain::reusable(
                    cached.lease.issued_at,
                    cached.lease.lease.issued.expires_at,
                    now,
                )
            {
                leases.remove(key);
                return None;
            }
            let record = now - cached.last_recorded_use >= LAST_USE_EVERY;
            if record {
                cached.last_recorded_use = now;
            }
            (cached.lease.clone(), cached.credentials.clone(), record)
        };
        if record && let Some(views) = &self.views {
            // Reuse is traffic, not a decision: no event, the last use at most once a
            // minute, as for API keys.
            if let Err(e) = views.record_use(LEASE_VIEW, lease.id.as_uuid(), now).await {
                tracing::warn!(lease = %lease.id, error = %e, "recording a lease's use failed");
            }
        }
        Some((lease, credentials))
    }

    fn remember(
        &self,
        key: ReuseKey,
        version: i64,
        lease: LeaseView,
        credentials: Arc<SecretString>,
        now: DateTime<Utc>,
    ) {
        let mut leases = lock(&self.inner.leases);
        if leases.len() >= MAX_CACHED_LEASES {
            leases.retain(|_, l| {
                domain::reusable(l.lease.issued_at, l.lease.lease.issued.expires_at, now)
            });
            if leases.len() >= MAX_CACHED_LEASES {
                return;
            }
        }
        leases.insert(
            key,
            CachedLease {
                connector_version: version,
                lease,
                credentials,
                last_recorded_use: now,
            },
        );
    }

    /// Revokes a lease; refused when its credentials cannot be revoked at the cloud.
    pub async fn revoke_lease(
        &self,
        env: CommandEnvelope<RevokeLease>,
    ) -> Result<Accepted<LeaseView>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let id = env.command.lease;
        let (LeaseState(lease), _) = self.writer().load::<LeaseState>(&lease_stream(id)).await?;
        let owner = match &lease {
            Some(l) => self
                .load_connector(l.issued.connector_id)
                .await?
                .0
                .0
                .map(|c| c.owner),
            None => None,
        };
        let now = self.now();
        let accepted = self
            .writer()
            .update_with_retry::<LeaseState, _, _, _>(lease_stream(id), &env.metadata, |state| {
                let events = domain::revoke_lease(state, owner, &caller, now)?;
                Ok::<_, Rejection>((events, Extras::default(), ()))
            })
            .await?;
        lock(&self.inner.leases).retain(|_, l| l.lease.id != id);
        self.writer()
            .answer(&LeaseProjection, &lease_stream(id), accepted, |_, v| v)
            .await
    }

    /// Records a lease's expiry (the sweeper).
    pub async fn expire_lease(
        &self,
        env: CommandEnvelope<ExpireLease>,
    ) -> Result<Accepted<()>, Failure> {
        let now = self.now();
        self.writer()
            .update_with_retry::<LeaseState, _, _, _>(
                lease_stream(env.command.lease),
                &env.metadata,
                |state| {
                    Ok::<_, Rejection>((domain::expire_lease(state, now)?, Extras::default(), ()))
                },
            )
            .await
    }

    /// Runs the lease expiry sweeper until shutdown.
    pub async fn run_lease_sweeper(
        self,
        views: Arc<dyn ViewStore>,
        interval: Duration,
        shutdown: watch::Receiver<bool>,
    ) {
        run_every("lease expiries", interval, shutdown, || async {
            self.sweep(views.as_ref()).await
        })
        .await;
    }

    /// One sweep; returns how many expiries were recorded.
    pub async fn sweep(&self, views: &dyn ViewStore) -> anyhow::Result<usize> {
        let now = self.now();
        let mut due = Vec::new();
        let mut query = ListQuery {
            filters: vec![
                ("expired".into(), Value::Bool(false)),
                ("revoked_at".into(), Value::Null),
            ],
            time_bounds: vec![TimeBound::AtOrBefore("expires_at".into(), now)],
            offset: 0,
            limit: 500,
            ..ListQuery::default()
        };
        loop {
            let page = views.list(LEASE_VIEW, &query).await?;
            let n = page.items.len() as u64;
            for doc in page.items {
                due.push(LeaseId::from_uuid(doc.id));
            }
            if n < query.limit {
                break;
            }
            query.offset += n;
        }
        let mut recorded = 0;
        for lease in due {
            let env = CommandEnvelope {
                command: ExpireLease { lease },
                caller: None,
                metadata: EventMetadata {
                    actor: Some(Actor::system()),
                    ..Default::default()
                },
                idempotency_key: None,
            };
            match self.expire_lease(env).await {
                Ok(a) if a.written.is_some() => recorded += 1,
                Ok(_) => {}
                Err(f) => tracing::warn!(%lease, failure = %f, "recording a lease expiry failed"),
            }
        }
        Ok(recorded)
    }

    // -----------------------------------------------------------------------------------
    // Components
    // -----------------------------------------------------------------------------------

    /// Registers a component, connected at once when a connector is named.
    pub async fn register_component(
        &self,
        env: CommandEnvelope<RegisterComponent>,
    ) -> Result<Accepted<ComponentView>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let c = &env.command;
        let event = domain::register_component(
            c.name.clone(),
            c.component_type,
            &c.flavor,
            &c.configuration,
            &caller,
        )?;
        let id = ComponentId::new();
        if let Some(connector) = c.connector {
            // Check the connection before anything is stored.
            let registered = ComponentState(gatehouse_contracts::connectors::Component::evolve(
                None, &event,
            ));
            self.plan_and_verify(&registered, connector, c.resource_id.as_deref(), &caller)
                .await?;
        }
        let created = self
            .writer()
            .create(
                component_stream(id),
                vec![event],
                Extras {
                    claims: vec![UniqueClaim::Claim {
                        scope: COMPONENT_NAME_SCOPE.into(),
                        value: component_name_claim(c.component_type, c.name.as_ref()),
                    }],
                    secrets: Vec::new(),
                },
                &env.metadata,
                None,
                (),
                || Rejection::NameTaken("component").into(),
            )
            .await?;
        if let Some(connector) = c.connector {
            return self
                .connect(
                    id,
                    connector,
                    c.resource_id.as_deref(),
                    &caller,
                    &env.metadata,
                )
                .await;
        }
        self.component_answer(id, created).await
    }

    /// Changes a component's configuration.
    pub async fn update_component(
        &self,
        env: CommandEnvelope<UpdateComponent>,
    ) -> Result<Accepted<ComponentView>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let c = &env.command;
        let accepted = self
            .writer()
            .update_with_retry::<ComponentState, _, _, _>(
                component_stream(c.component),
                &env.metadata,
                |state| {
                    Ok::<_, Rejection>((
                        domain::update_component(state, &c.configuration, &caller)?,
                        Extras::default(),
                        (),
                    ))
                },
            )
            .await?;
        self.component_answer(c.component, accepted).await
    }

    /// Checks a connection of a component to a connector, at the cloud too.
    async fn plan_and_verify(
        &self,
        component: &ComponentState,
        connector_id: ConnectorId,
        raw_id: Option<&str>,
        caller: &Caller,
    ) -> Result<(domain::ConnectionPlan, Connector), Failure> {
        let (state, version) = self.load_connector(connector_id).await?;
        let connector = domain::usable(&state, caller)?.0.clone();
        let kind = self.connector_type(&connector.connector_type)?.clone();
        domain::auth_method(kind.spec(), &connector.auth_method, self.inner.gates)?;
        let plan = domain::plan_connection(kind.as_ref(), component, &state, raw_id, caller)?;
        let secrets = self.secrets_of(connector_id, version).await?;
        let connection = Connection {
            auth_method: &connector.auth_method,
            configuration: &connector.configuration,
            secrets: &secrets,
            expires_at: connector.expires_at,
        };
        match self
            .bounded(kind.verify(
                &connection,
                Some((&plan.resource_type, plan.resource_id.as_deref())),
            ))
            .await
        {
            Ok(_) => Ok((plan, connector)),
            Err(f) if f.kind == FailureKind::Upstream => Err(Rejection::invalid(
                "connector",
                format!(
                    "connector {:?} cannot reach {}: {}",
                    connector.name,
                    plan.resource_id.as_deref().unwrap_or(&plan.resource_type),
                    f.message
                ),
            )
            .into()),
            Err(f) => Err(f),
        }
    }

    /// Links a component to a connector: the connector records the link first (so that
    /// deleting it is refused from then on), then the component.
    async fn connect(
        &self,
        component: ComponentId,
        connector_id: ConnectorId,
        raw_id: Option<&str>,
        caller: &Caller,
        metadata: &EventMetadata,
    ) -> Result<Accepted<ComponentView>, Failure> {
        let (state, _) = self
            .writer()
            .load::<ComponentState>(&component_stream(component))
            .await?;
        let previous = domain::owned(&state, caller)?.connector.clone();
        let (plan, connector) = self
            .plan_and_verify(&state, connector_id, raw_id, caller)
            .await?;
        self.writer()
            .update_with_retry::<ConnectorState, _, _, _>(
                connector_stream(connector_id),
                metadata,
                |s| {
                    domain::usable(s, caller)?;
                    let already =
                        s.0.as_ref()
                            .is_some_and(|c| c.components.contains(&component));
                    let events = if already {
                        Vec::new()
                    } else {
                        vec![domain::linked(component)]
                    };
                    Ok::<_, Rejection>((events, Extras::default(), ()))
                },
            )
            .await?;
        let connected = self
            .writer()
            .update_with_retry::<ComponentState, _, _, _>(
                component_stream(component),
                metadata,
                |s| {
                    let comp = domain::owned(s, caller)?;
                    let unchanged = comp.connector.as_ref().is_some_and(|l| {
                        l.connector_id == connector_id
                            && l.resource_type == plan.resource_type
                            && l.resource_id == plan.resource_id
                    });
                    let events = if unchanged {
                        Vec::new()
                    } else {
                        vec![domain::connected(connector_id, &connector, &plan)]
                    };
                    Ok::<_, Rejection>((events, Extras::default(), ()))
                },
            )
            .await?;
        if let Some(old) = previous
            && old.connector_id != connector_id
        {
            self.unlink(old.connector_id, component, metadata).await;
        }
        self.component_answer(component, connected).await
    }

    /// Removes a connector's record of a link (best effort: a stale link is ignored by
    /// deletion, which checks the component).
    async fn unlink(
        &self,
        connector: ConnectorId,
        component: ComponentId,
        metadata: &EventMetadata,
    ) {
        let result = self
            .writer()
            .update_with_retry::<ConnectorState, _, _, _>(
                connector_stream(connector),
                metadata,
                |s| {
                    let linked =
                        s.0.as_ref()
                            .is_some_and(|c| c.components.contains(&component));
                    let events = if linked {
                        vec![domain::unlinked(component)]
                    } else {
                        Vec::new()
                    };
                    Ok::<_, Rejection>((events, Extras::default(), ()))
                },
            )
            .await;
        if let Err(f) = result {
            tracing::warn!(%connector, %component, failure = %f, "removing a connector's link failed");
        }
    }

    /// Links a component to a connector.
    pub async fn connect_component(
        &self,
        env: CommandEnvelope<ConnectComponent>,
    ) -> Result<Accepted<ComponentView>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let c = &env.command;
        self.connect(
            c.component,
            c.connector,
            c.resource_id.as_deref(),
            &caller,
            &env.metadata,
        )
        .await
    }

    /// Removes a component's link.
    pub async fn disconnect_component(
        &self,
        env: CommandEnvelope<DisconnectComponent>,
    ) -> Result<Accepted<ComponentView>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let id = env.command.component;
        let (state, _) = self
            .writer()
            .load::<ComponentState>(&component_stream(id))
            .await?;
        let link = domain::owned(&state, &caller)?.connector.clone();
        let accepted = self
            .writer()
            .update_with_retry::<ComponentState, _, _, _>(
                component_stream(id),
                &env.metadata,
                |s| Ok::<_, Rejection>((domain::disconnect(s, &caller)?, Extras::default(), ())),
            )
            .await?;
        if let Some(link) = link {
            self.unlink(link.connector_id, id, &env.metadata).await;
        }
        self.component_answer(id, accepted).await
    }

    /// Deletes a component (disconnecting it first).
    pub async fn delete_component(
        &self,
        env: CommandEnvelope<DeleteComponent>,
    ) -> Result<Accepted<()>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let id = env.command.component;
        let (state, _) = self
            .writer()
            .load::<ComponentState>(&component_stream(id))
            .await?;
        let link = domain::owned(&state, &caller)?.connector.clone();
        let accepted = self
            .writer()
            .update_with_retry::<ComponentState, _, _, _>(
                component_stream(id),
                &env.metadata,
                |s| {
                    let events = domain::delete_component(s, &caller)?;
                    let claims =
                        s.0.iter()
                            .map(|c| UniqueClaim::Release {
                                scope: COMPONENT_NAME_SCOPE.into(),
                                value: component_name_claim(c.component_type, &c.name),
                            })
                            .collect();
                    Ok::<_, Rejection>((
                        events,
                        Extras {
                            claims,
                            secrets: Vec::new(),
                        },
                        (),
                    ))
                },
            )
            .await?;
        if let Some(link) = link {
            self.unlink(link.connector_id, id, &env.metadata).await;
        }
        Ok(accepted)
    }
}
