//! The broker's command handlers against the in-memory event store, with the `fixture`
//! connector type (no cloud: the broker's own behaviour is under test here; the AWS type
//! is tested against moto in `tests/aws.rs` and end to end in the suite): sealing and
//! crypto-shredding of secrets, no secret in any event, lease reuse without events,
//! upstream errors and timeouts, grants, the delete-while-used refusal.

use std::collections::BTreeMap;
use std::sync::Arc;

use gatehouse_connectors::types::fixture::FixtureType;
use gatehouse_connectors::types::{Catalogue, ConnectorType};
use gatehouse_connectors::vault::{DATA_KEY_SLOT, SECRETS_SLOT, Vault};
use gatehouse_connectors::{ConnectorSettings, ConnectorsService};
use gatehouse_contracts::clock::ManualClock;
use gatehouse_contracts::commands::{
    Accepted, Caller, Command, CommandEnvelope, Failure, FailureKind,
};
use gatehouse_contracts::connectors::{
    ComponentType, ConnectComponent, ConnectorDraft, ConnectorGrant, ConnectorView,
    DeleteComponent, DeleteConnector, GrantConnector, IssueCredentials, RegisterComponent,
    RegisterConnector, RevokeConnectorGrant, UpdateConnector, connector_stream,
};
use gatehouse_contracts::failures::ConnectorsFailure;
use gatehouse_contracts::identity::Role;
use gatehouse_contracts::names::Name;
use gatehouse_contracts::{EventMetadata, PrincipalId, PrincipalKind};
use gatehouse_eventlog::EventStore;
use gatehouse_eventlog::memory::{MemoryEventStore, MemoryViewStore};
use gatehouse_eventlog::projector::ProjectionRunner;
use gatehouse_readmodels::connectors::LeaseProjection;
use gatehouse_secrets::{BusSealer, MasterKey};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

const SECRET: &str = "fixture-secret-token-4711";

struct Harness {
    service: ConnectorsService,
    store: Arc<MemoryEventStore>,
    sealer: BusSealer,
    master: MasterKey,
    fixture: Arc<FixtureType>,
    /// Starts at the real time (the fixture's credentials expire by the real clock).
    clock: ManualClock,
}

fn harness_with(settings: ConnectorSettings) -> Harness {
    let master = MasterKey::generate();
    let store = Arc::new(MemoryEventStore::new());
    let fixture = Arc::new(FixtureType::new());
    let catalogue = Catalogue::of([fixture.clone() as Arc<dyn ConnectorType>]);
    let clock = ManualClock::new(chrono::Utc::now());
    let service = ConnectorsService::new(
        store.clone(),
        &master,
        Arc::new(clock.clone()),
        catalogue,
        &settings,
    );
    Harness {
        service,
        store,
        sealer: BusSealer::new(&master),
        master,
        fixture,
        clock,
    }
}

fn harness() -> Harness {
    harness_with(ConnectorSettings::default())
}

fn principal(name: &str, role: Role) -> Caller {
    Caller {
        id: PrincipalId::new(),
        kind: PrincipalKind::User,
        name: name.into(),
        role,
    }
}

fn env<C>(command: C, caller: &Caller) -> CommandEnvelope<C> {
    CommandEnvelope {
        command,
        caller: Some(caller.clone()),
        metadata: EventMetadata::default(),
        idempotency_key: None,
    }
}

fn config(v: Value) -> Map<String, Value> {
    v.as_object().expect("test fixture").clone()
}

impl Harness {
    fn draft<C: Command>(&self, name: &str, configuration: Value) -> ConnectorDraft {
        let secrets = serde_json::to_string(&json!({"token": SECRET})).expect("test fixture");
        ConnectorDraft {
            name: Name::parse(name).expect("test fixture"),
            connector_type: "fixture".into(),
            auth_method: "token".into(),
            resource_types: Vec::new(),
            resource_id: None,
            configuration: config(configuration),
            secrets: Some(
                self.sealer
                    .seal(&SecretString::from(secrets), &C::seal_context("secrets"))
                    .expect("test fixture"),
            ),
            labels: BTreeMap::new(),
            description: String::new(),
            expiration_seconds: None,
            expires_at: None,
        }
    }

    async fn register(
        &self,
        owner: &Caller,
        configuration: Value,
    ) -> Result<ConnectorView, Failure> {
        let command = RegisterConnector {
            draft: self.draft::<RegisterConnector>("conn", configuration),
            verify: true,
        };
        Ok(self.service.register(env(command, owner)).await?.output)
    }

    async fn credentials(
        &self,
        view: &ConnectorView,
        who: &Caller,
        bucket: &str,
    ) -> Result<(Accepted<()>, Map<String, Value>), Failure> {
        let command = IssueCredentials {
            connector: view.id,
            resource_type: "bucket".into(),
            resource_id: Some(bucket.into()),
            expiration_seconds: None,
            component: None,
        };
        let issued = self.service.issue_credentials(env(command, who)).await?;
        let opened = self
            .sealer
            .open(
                &issued.output.credentials,
                &IssueCredentials::seal_context("credentials"),
            )
            .expect("test fixture");
        Ok((
            Accepted {
                written: issued.written,
                output: (),
            },
            serde_json::from_str(opened.expose_secret()).expect("test fixture"),
        ))
    }

    /// Every event in the log, as stored.
    async fn log_text(&self) -> String {
        let events = self.store.read_all(0, 10_000).await.expect("test fixture");
        serde_json::to_string(
            &events
                .iter()
                .map(|e| (e.event_type.clone(), e.payload.clone()))
                .collect::<Vec<_>>(),
        )
        .expect("test fixture")
    }
}

#[tokio::test]
async fn secrets_are_sealed_in_the_slots_and_never_in_an_event() {
    let h = harness();
    let owner = principal("ann", Role::Member);
    let view = h
        .register(&owner, json!({"region": "r1", "buckets": ["a"]}))
        .await
        .unwrap();
    assert_eq!(view.connector.secret_fields, vec!["token"]);
    let stream = connector_stream(view.id);
    let sealed = h
        .store
        .read_secret(&stream, SECRETS_SLOT)
        .await
        .unwrap()
        .unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains(SECRET));
    let (_, credentials) = h.credentials(&view, &owner, "a").await.unwrap();
    assert!(
        credentials["token"].as_str().unwrap().starts_with(SECRET),
        "the type got the secret"
    );
    let log = h.log_text().await;
    assert!(log.contains("connector.registered") && log.contains("lease.issued"));
    assert!(!log.contains(SECRET), "a secret in the log: {log}");
}

#[tokio::test]
async fn deleting_a_connector_shreds_its_key_so_old_ciphertext_is_unreadable() {
    let h = harness();
    let owner = principal("ann", Role::Member);
    let view = h.register(&owner, json!({"region": "r1"})).await.unwrap();
    let stream = connector_stream(view.id);
    // A copy of the ciphertext, as a backup would keep it.
    let kept = h
        .store
        .read_secret(&stream, SECRETS_SLOT)
        .await
        .unwrap()
        .unwrap();
    let key = h
        .store
        .read_secret(&stream, DATA_KEY_SLOT)
        .await
        .unwrap()
        .unwrap();
    let vault = Vault::new(Arc::new(
        MasterKey::from_base64(h.master.to_base64().expose_secret()).unwrap(),
    ));
    assert!(
        vault.open_bytes(&stream, Some(&key), Some(&kept)).is_ok(),
        "readable before"
    );
    h.service
        .delete(env(DeleteConnector { connector: view.id }, &owner))
        .await
        .unwrap();
    assert_eq!(
        h.store.read_secret(&stream, DATA_KEY_SLOT).await.unwrap(),
        None
    );
    assert_eq!(
        h.store.read_secret(&stream, SECRETS_SLOT).await.unwrap(),
        None
    );
    // With the master key and the kept ciphertext, but without the data key: nothing.
    assert!(vault.open_bytes(&stream, None, Some(&kept)).is_err());
    // And the name is free again.
    h.register(&owner, json!({"region": "r1"})).await.unwrap();
}

#[tokio::test]
async fn a_live_lease_is_handed_out_again_without_a_cloud_call_or_an_event() {
    let h = harness();
    let owner = principal("ann", Role::Member);
    let view = h
        .register(&owner, json!({"region": "r1", "buckets": ["a", "b"]}))
        .await
        .unwrap();
    let (first, c1) = h.credentials(&view, &owner, "a").await.unwrap();
    assert!(first.written.is_some(), "a new lease is an event");
    let (again, c2) = h.credentials(&view, &owner, "fx://a").await.unwrap();
    assert!(again.written.is_none(), "reuse is traffic, not an event");
    assert_eq!(c1, c2);
    assert_eq!(h.fixture.issues(), 1);
    // Another resource is another lease.
    h.credentials(&view, &owner, "b").await.unwrap();
    assert_eq!(h.fixture.issues(), 2);
    // A change to the connector ends reuse.
    let change = UpdateConnector {
        connector: view.id,
        labels: Some(BTreeMap::from([("k".to_owned(), Some("v".to_owned()))])),
        ..UpdateConnector::default()
    };
    h.service.update(env(change, &owner)).await.unwrap();
    let (_, c3) = h.credentials(&view, &owner, "a").await.unwrap();
    assert_ne!(c1, c3);
    assert_eq!(h.fixture.issues(), 3);
}

#[tokio::test]
async fn a_cloud_refusal_is_a_502_with_its_message_and_stores_nothing() {
    let h = harness();
    let owner = principal("ann", Role::Member);
    let refused = h
        .register(
            &owner,
            json!({"region": "r1", "refuse": "InvalidClientTokenId: bad key"}),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.kind, FailureKind::Upstream);
    assert!(refused.is(&ConnectorsFailure::UpstreamError));
    assert!(
        refused.message.contains("InvalidClientTokenId"),
        "{}",
        refused.message
    );
    assert!(
        h.store.read_all(0, 10).await.unwrap().is_empty(),
        "nothing stored"
    );
    // Without verification it is stored (and fails only when used).
    let command = RegisterConnector {
        draft: h
            .draft::<RegisterConnector>("unverified", json!({"region": "r1", "refuse": "nope"})),
        verify: false,
    };
    h.service.register(env(command, &owner)).await.unwrap();
}

#[tokio::test]
async fn a_cloud_that_does_not_answer_is_a_504_within_the_bound() {
    let h = harness_with(ConnectorSettings {
        upstream_timeout_seconds: 1,
        ..ConnectorSettings::default()
    });
    let owner = principal("ann", Role::Member);
    let started = std::time::Instant::now();
    let hung = h
        .register(&owner, json!({"region": "r1", "hang": true}))
        .await
        .unwrap_err();
    assert_eq!(hung.kind, FailureKind::UpstreamTimeout);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn grants_let_a_principal_use_a_connector_for_the_resources_they_cover() {
    let h = harness();
    let owner = principal("ann", Role::Member);
    let bot = principal("ci-bot", Role::Member);
    let eve = principal("eve", Role::Member);
    let view = h
        .register(&owner, json!({"region": "r1", "buckets": ["a", "b"]}))
        .await
        .unwrap();
    let not_found = h.credentials(&view, &bot, "a").await.unwrap_err();
    assert_eq!(not_found.kind, FailureKind::NotFound);
    let grant = GrantConnector {
        connector: view.id,
        grant: ConnectorGrant {
            principal: bot.id,
            principal_name: bot.name.clone(),
            resource_ids: Some(vec!["a".into()]),
        },
    };
    let granted = h
        .service
        .grant(env(grant.clone(), &owner))
        .await
        .unwrap()
        .output;
    assert_eq!(
        granted.connector.grants[0].resource_ids.as_deref(),
        Some(&["fx://a".to_owned()][..])
    );
    // Only the owner (or an admin) grants.
    let by_bot = h.service.grant(env(grant, &bot)).await.unwrap_err();
    assert_eq!(by_bot.kind, FailureKind::Forbidden);
    h.credentials(&view, &bot, "a").await.unwrap();
    let outside = h.credentials(&view, &bot, "b").await.unwrap_err();
    assert_eq!(outside.kind, FailureKind::Forbidden);
    assert!(outside.message.contains("fx://a"), "{}", outside.message);
    assert_eq!(
        h.credentials(&view, &eve, "a").await.unwrap_err().kind,
        FailureKind::NotFound
    );
    // Revoking the grant ends it at once, reuse included.
    h.service
        .revoke_grant(env(
            RevokeConnectorGrant {
                connector: view.id,
                principal: bot.id,
            },
            &owner,
        ))
        .await
        .unwrap();
    assert_eq!(
        h.credentials(&view, &bot, "a").await.unwrap_err().kind,
        FailureKind::NotFound
    );
}

#[tokio::test]
async fn the_server_gates_apply_to_implicit_and_long_lived_methods() {
    let h = harness_with(ConnectorSettings {
        forbid_long_lived_credentials: true,
        ..ConnectorSettings::default()
    });
    let admin = principal("root", Role::Admin);
    let mut draft = h.draft::<RegisterConnector>("ambient", json!({"region": "r1"}));
    draft.auth_method = "ambient".into();
    draft.secrets = None;
    let off = h
        .service
        .register(env(
            RegisterConnector {
                draft,
                verify: true,
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert!(off.is(&ConnectorsFailure::ImplicitDisabled));
    assert!(
        off.message
            .contains("GATEHOUSE_ENABLE_IMPLICIT_AUTH_METHODS")
    );
    let mut draft =
        h.draft::<RegisterConnector>("static", json!({"region": "r1", "buckets": ["a"]}));
    draft.auth_method = "static".into();
    let view = h
        .service
        .register(env(
            RegisterConnector {
                draft,
                verify: true,
            },
            &admin,
        ))
        .await
        .unwrap()
        .output;
    let refused = h.credentials(&view, &admin, "a").await.unwrap_err();
    assert!(refused.is(&ConnectorsFailure::LongLivedForbidden));
}

#[tokio::test]
async fn components_need_a_connector_of_the_right_type_and_block_its_deletion() {
    let h = harness();
    let owner = principal("ann", Role::Member);
    let view = h
        .register(&owner, json!({"region": "r1", "buckets": ["a"]}))
        .await
        .unwrap();
    let register = RegisterComponent {
        name: Name::parse("files").unwrap(),
        component_type: ComponentType::ArtifactStore,
        flavor: "s3".into(),
        configuration: config(json!({"path": "s3://a"})),
        connector: None,
        resource_id: None,
    };
    let component = h
        .service
        .register_component(env(register, &owner))
        .await
        .unwrap()
        .output;
    let wrong = h
        .service
        .connect_component(env(
            ConnectComponent {
                component: component.id,
                connector: view.id,
                resource_id: None,
            },
            &owner,
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong.kind, FailureKind::Invalid);
    assert!(wrong.message.contains("aws"), "{}", wrong.message);
    // Nothing was linked, so the connector may go.
    h.service
        .delete_component(env(
            DeleteComponent {
                component: component.id,
            },
            &owner,
        ))
        .await
        .unwrap();
    h.service
        .delete(env(DeleteConnector { connector: view.id }, &owner))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_sweeper_records_a_lease_expiry_once_and_a_live_lease_is_left_alone() {
    let h = harness();
    let owner = principal("ann", Role::Member);
    let view = h
        .register(&owner, json!({"region": "r1", "buckets": ["a"]}))
        .await
        .unwrap();
    h.credentials(&view, &owner, "a").await.unwrap();
    let views = Arc::new(MemoryViewStore::new());
    let project = || async {
        ProjectionRunner::new("connectors-test", views.clone(), h.store.clone())
            .with(Arc::new(LeaseProjection))
            .rebuild()
            .await
            .expect("the projection rebuilds");
    };
    project().await;
    assert_eq!(
        h.service.sweep(views.as_ref()).await.unwrap(),
        0,
        "still live"
    );
    // The fixture's default lifetime is 600 s.
    h.clock.advance(chrono::Duration::seconds(601));
    assert_eq!(h.service.sweep(views.as_ref()).await.unwrap(), 1);
    project().await;
    assert_eq!(
        h.service.sweep(views.as_ref()).await.unwrap(),
        0,
        "recorded once"
    );
    assert!(h.log_text().await.contains("lease.expired"));
}
