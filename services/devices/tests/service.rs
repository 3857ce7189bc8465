//! The devices service's command handlers against the in-memory event store, with a
//! manual clock: the flow from request to redemption, wrong codes, authorization.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{Duration, TimeZone, Utc};
use gatehouse_contracts::clock::ManualClock;
use gatehouse_contracts::commands::Command as _;
use gatehouse_contracts::commands::{Caller, CommandEnvelope, Failure, FailureKind};
use gatehouse_contracts::devices::{
    DecideDevice, DeleteDevice, DeviceAuthorizationIssued, DeviceDecision, DeviceMetadata,
    DeviceStatus, DeviceView, FindPendingDevice, RedeemDeviceCode, RequestDeviceAuthorization,
    SetDeviceLock, USER_CODE_SCOPE, device_stream, display_user_code,
};
use gatehouse_contracts::identity::Role;
use gatehouse_contracts::{DeviceId, EventMetadata, PrincipalId, PrincipalKind, StreamId};
use gatehouse_devices::service::{USER_CODE_ATTEMPTS, generate_user_code};
use gatehouse_devices::{DeviceSettings, DevicesService, UserCodeGenerator};
use gatehouse_eventlog::memory::{MemoryEventStore, MemoryViewStore};
use gatehouse_eventlog::projector::ProjectionRunner;
use gatehouse_eventlog::{EventStore, ViewChange, ViewProjection};
use gatehouse_readmodels::devices::DeviceProjection;
use gatehouse_secrets::{BusSealer, MasterKey};
use gatehouse_tokens::DeviceCodes;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

struct Harness {
    service: DevicesService,
    store: Arc<MemoryEventStore>,
    clock: ManualClock,
    sealer: BusSealer,
    codes: DeviceCodes,
}

fn harness() -> Harness {
    harness_with(DeviceSettings::default(), None)
}

fn harness_with(settings: DeviceSettings, user_codes: Option<UserCodeGenerator>) -> Harness {
    let master = MasterKey::generate();
    let store = Arc::new(MemoryEventStore::new());
    let clock = ManualClock::new(
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
            .single()
            .expect("a valid time"),
    );
    let mut service =
        DevicesService::new(store.clone(), &master, Arc::new(clock.clone()), settings);
    if let Some(generator) = user_codes {
        service = service.with_user_code_generator(generator);
    }
    Harness {
        service,
        store,
        clock,
        sealer: BusSealer::new(&master),
        codes: DeviceCodes::new(&master),
    }
}

fn user(n: u128, role: Role) -> Caller {
    Caller {
        id: PrincipalId::from_uuid(Uuid::from_u128(n)),
        kind: PrincipalKind::User,
        name: format!("user-{n}"),
        role,
    }
}

fn alice() -> Caller {
    user(1, Role::Member)
}

fn bob() -> Caller {
    user(2, Role::Member)
}

fn admin() -> Caller {
    user(9, Role::Admin)
}

fn env<C>(command: C, caller: Option<Caller>) -> CommandEnvelope<C> {
    CommandEnvelope {
        command,
        caller,
        metadata: EventMetadata::default(),
        idempotency_key: None,
    }
}

impl Harness {
    fn now(&self) -> chrono::DateTime<Utc> {
        gatehouse_contracts::clock::Clock::now(&self.clock)
    }

    async fn request(&self) -> (DeviceAuthorizationIssued, SecretString) {
        let issued = self
            .service
            .request(env(
                RequestDeviceAuthorization {
                    client_id: "gatehouse-cli".into(),
                    scope: None,
                    metadata: DeviceMetadata {
                        hostname: Some("laptop".into()),
                        ..Default::default()
                    },
                },
                None,
            ))
            .await
            .expect("a request is accepted")
            .output;
        let code = self
            .sealer
            .open(
                &issued.device_code,
                &RequestDeviceAuthorization::seal_context("device_code"),
            )
            .expect("the sealed device code opens");
        (issued, code)
    }

    async fn decide(
        &self,
        code: &str,
        decision: DeviceDecision,
        caller: Caller,
    ) -> Result<DeviceId, Failure> {
        self.service
            .decide(env(
                DecideDevice {
                    user_code: code.into(),
                    decision,
                },
                Some(caller),
            ))
            .await
            .map(|a| a.output)
    }

    async fn redeem(
        &self,
        code: &SecretString,
    ) -> Result<gatehouse_contracts::devices::DeviceRedeemed, Failure> {
        let sealed = self
            .sealer
            .seal(code, &RedeemDeviceCode::seal_context("device_code"))
            .expect("sealing works");
        self.service
            .redeem(env(
                RedeemDeviceCode {
                    device_code: sealed,
                },
                None,
            ))
            .await
            .map(|a| a.output)
    }

    async fn events(&self, id: DeviceId) -> Vec<String> {
        self.store
            .read_stream(&device_stream(id), 0)
            .await
            .expect("the stream reads")
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    async fn all_events_json(&self) -> String {
        let events = self.store.read_all(0, 10_000).await.expect("the log reads");
        serde_json::to_string(&events).expect("events serialize")
    }
}

#[tokio::test]
async fn a_device_is_approved_with_its_user_code_and_redeems_its_code_once() {
    let h = harness();
    let (issued, code) = h.request().await;
    assert!(code.expose_secret().starts_with("gatehouse_dc_"));
    assert_eq!(issued.interval_seconds, 5);
    assert_eq!(issued.expires_at, h.now() + Duration::minutes(10));
    assert_eq!(
        h.redeem(&code).await.unwrap_err().wire_code(),
        "authorization_pending"
    );
    // Typed the way people type: lower case, with the dash.
    let typed = display_user_code(&issued.user_code).to_lowercase();
    let found = h
        .service
        .find_pending(env(
            FindPendingDevice {
                user_code: typed.clone(),
            },
            Some(alice()),
        ))
        .await
        .unwrap()
        .output;
    assert_eq!(found, issued.device_id);
    let id = h
        .decide(&typed, DeviceDecision::Approve { trusted: true }, alice())
        .await
        .unwrap();
    assert_eq!(id, issued.device_id);
    h.clock.advance(Duration::seconds(7));
    let redeemed = h.redeem(&code).await.unwrap();
    assert_eq!(redeemed.owner, alice().user_id().unwrap());
    assert!(redeemed.trusted);
    assert_eq!(redeemed.token_expires_at, h.now() + Duration::days(30));
    assert_eq!(
        h.redeem(&code).await.unwrap_err().wire_code(),
        "invalid_grant"
    );
    assert_eq!(
        h.events(id).await,
        vec![
            "device.authorization_requested",
            "device.verified",
            "device.activated"
        ]
    );
    // Neither code is anywhere in the log.
    let log = h.all_events_json().await;
    assert!(!log.contains(code.expose_secret()));
    assert!(!log.contains(&issued.user_code));
}

#[tokio::test]
async fn a_decided_code_cannot_be_used_again() {
    let h = harness();
    let (issued, code) = h.request().await;
    h.decide(&issued.user_code, DeviceDecision::Deny, bob())
        .await
        .unwrap();
    assert_eq!(
        h.redeem(&code).await.unwrap_err().wire_code(),
        "access_denied"
    );
    let again = h
        .decide(
            &issued.user_code,
            DeviceDecision::Approve { trusted: false },
            alice(),
        )
        .await
        .unwrap_err();
    assert_eq!(again.wire_code(), "invalid_user_code");
    let lookup = h
        .service
        .find_pending(env(
            FindPendingDevice {
                user_code: issued.user_code.clone(),
            },
            Some(alice()),
        ))
        .await
        .unwrap_err();
    assert_eq!(lookup.wire_code(), "invalid_user_code");
}

#[tokio::test]
async fn wrong_malformed_and_lapsed_codes_get_one_answer_and_append_nothing() {
    let h = harness();
    let (issued, code) = h.request().await;
    let before = h.all_events_json().await;
    let mut wrong = generate_user_code();
    while wrong == issued.user_code {
        wrong = generate_user_code();
    }
    for typed in [wrong.as_str(), "AAAA-AAAA", "", "BCDF"] {
        let failure = h
            .decide(typed, DeviceDecision::Approve { trusted: true }, alice())
            .await
            .unwrap_err();
        assert_eq!(failure.wire_code(), "invalid_user_code", "{typed:?}");
    }
    assert_eq!(h.all_events_json().await, before);
    h.clock.advance(Duration::minutes(10));
    let lapsed = h
        .decide(
            &issued.user_code,
            DeviceDecision::Approve { trusted: true },
            alice(),
        )
        .await
        .unwrap_err();
    assert_eq!(lapsed.wire_code(), "invalid_user_code");
    assert_eq!(
        h.redeem(&code).await.unwrap_err().wire_code(),
        "expired_token"
    );
    assert_eq!(h.all_events_json().await, before);
}

#[tokio::test]
async fn a_forged_device_code_for_a_real_device_is_an_invalid_grant() {
    let h = harness();
    let (issued, _) = h.request().await;
    h.decide(
        &issued.user_code,
        DeviceDecision::Approve { trusted: false },
        alice(),
    )
    .await
    .unwrap();
    let forged = gatehouse_tokens::DEVICE_CODE_FORMAT.generate(issued.device_id.as_uuid());
    assert_eq!(
        h.redeem(&forged.full).await.unwrap_err().wire_code(),
        "invalid_grant"
    );
    assert_eq!(h.events(issued.device_id).await.len(), 2, "not activated");
}

#[tokio::test]
async fn the_gateway_checks_polled_codes_against_the_stored_hash() {
    let h = harness();
    let (issued, code) = h.request().await;
    let events = h
        .store
        .read_stream(&device_stream(issued.device_id), 0)
        .await
        .unwrap();
    let hash = events[0].payload["device_code_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(h.codes.check_device_code(code.expose_secret(), &hash));
    let other = gatehouse_tokens::DEVICE_CODE_FORMAT.generate(issued.device_id.as_uuid());
    assert!(!h.codes.check_device_code(other.full.expose_secret(), &hash));
    assert!(!h.codes.check_device_code("gatehouse_dc_garbage", &hash));
}

#[tokio::test]
async fn only_the_owner_or_an_admin_locks_unlocks_and_deletes() {
    let h = harness();
    let (issued, code) = h.request().await;
    h.decide(
        &issued.user_code,
        DeviceDecision::Approve { trusted: false },
        alice(),
    )
    .await
    .unwrap();
    h.redeem(&code).await.unwrap();
    let id = issued.device_id;
    let lock = |locked, caller| {
        h.service
            .set_lock(env(SetDeviceLock { id, locked }, Some(caller)))
    };
    assert_eq!(
        lock(true, bob()).await.unwrap_err().wire_code(),
        "not_found"
    );
    lock(true, alice()).await.unwrap();
    lock(false, admin()).await.unwrap();
    let delete = |caller| h.service.delete(env(DeleteDevice { id }, Some(caller)));
    assert_eq!(delete(bob()).await.unwrap_err().wire_code(), "not_found");
    delete(alice()).await.unwrap();
    assert_eq!(
        h.events(id).await,
        vec![
            "device.authorization_requested",
            "device.verified",
            "device.activated",
            "device.locked",
            "device.unlocked",
            "device.deleted"
        ]
    );
}

#[tokio::test]
async fn service_accounts_cannot_approve_devices() {
    let h = harness();
    let (issued, _) = h.request().await;
    let robot = Caller {
        kind: PrincipalKind::ServiceAccount,
        ..alice()
    };
    let failure = h
        .decide(
            &issued.user_code,
            DeviceDecision::Approve { trusted: true },
            robot,
        )
        .await
        .unwrap_err();
    assert_eq!(failure.wire_code(), "forbidden");
}

#[test]
fn user_codes_use_the_whole_alphabet_evenly() {
    let mut counts = [0u32; 20];
    for _ in 0..2000 {
        let code = generate_user_code();
        assert_eq!(code.len(), 8);
        for c in code.bytes() {
            let at = gatehouse_contracts::devices::USER_CODE_ALPHABET
                .iter()
                .position(|&a| a == c)
                .expect("a letter of the alphabet");
            counts[at] += 1;
        }
    }
    // 16,000 draws, 800 expected per letter: a biased draw would skew the first letters.
    assert!(
        counts.iter().all(|&n| (650..950).contains(&n)),
        "{counts:?}"
    );
}

// ---------------------------------------------------------------------------------------
// User codes: collisions, release on decision
// ---------------------------------------------------------------------------------------

/// A generator that hands out `queue` first, then random codes.
fn scripted_codes(queue: Arc<Mutex<VecDeque<String>>>) -> UserCodeGenerator {
    Arc::new(move || lock(&queue).pop_front().unwrap_or_else(generate_user_code))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn script(queue: &Arc<Mutex<VecDeque<String>>>, codes: &[&str]) {
    lock(queue).extend(codes.iter().map(|c| (*c).to_owned()));
}

impl Harness {
    async fn try_request(&self) -> Result<DeviceAuthorizationIssued, Failure> {
        self.service
            .request(env(
                RequestDeviceAuthorization {
                    client_id: "gatehouse-cli".into(),
                    scope: Some("openid".into()),
                    metadata: DeviceMetadata::default(),
                },
                None,
            ))
            .await
            .map(|a| a.output)
    }

    async fn claim_holder(&self, user_code: &str) -> Option<StreamId> {
        self.store
            .claim_holder(USER_CODE_SCOPE, &self.codes.user_code_claim(user_code))
            .await
            .expect("the claims read")
    }

    async fn event_count(&self) -> usize {
        self.store
            .read_all(0, 10_000)
            .await
            .expect("the log reads")
            .len()
    }

    /// A device approved by `owner` and redeemed.
    async fn active_device(&self, owner: Caller, trusted: bool) -> (DeviceId, SecretString) {
        let (issued, code) = self.request().await;
        self.decide(
            &issued.user_code,
            DeviceDecision::Approve { trusted },
            owner,
        )
        .await
        .expect("approved");
        self.redeem(&code).await.expect("redeemed");
        (issued.device_id, code)
    }

    async fn set_lock(
        &self,
        id: DeviceId,
        locked: bool,
        caller: Option<Caller>,
    ) -> Result<(), Failure> {
        self.service
            .set_lock(env(SetDeviceLock { id, locked }, caller))
            .await
            .map(|a| a.output)
    }

    async fn delete(&self, id: DeviceId, caller: Option<Caller>) -> Result<(), Failure> {
        self.service
            .delete(env(DeleteDevice { id }, caller))
            .await
            .map(|a| a.output)
    }
}

#[tokio::test]
async fn a_user_code_collision_draws_another_code_and_appends_nothing_for_it() {
    let queue = Arc::new(Mutex::new(VecDeque::new()));
    let h = harness_with(
        DeviceSettings::default(),
        Some(scripted_codes(queue.clone())),
    );
    script(&queue, &["BCDFGHJK"]);
    let first = h.try_request().await.unwrap();
    assert_eq!(first.user_code, "BCDFGHJK");
    assert_eq!(
        h.claim_holder("BCDFGHJK").await,
        Some(device_stream(first.device_id))
    );

    script(&queue, &["BCDFGHJK", "BCDFGHJK", "LMNPQRST"]);
    let second = h.try_request().await.unwrap();
    assert_eq!(
        second.user_code, "LMNPQRST",
        "two collisions, then a free code"
    );
    assert_ne!(second.device_id, first.device_id);
    assert_eq!(h.event_count().await, 2, "the collisions appended nothing");
    assert!(lock(&queue).is_empty());

    // Both codes lead to their own device.
    for (code, id) in [
        ("bcdf-ghjk", first.device_id),
        ("LMNPQRST", second.device_id),
    ] {
        let found = h
            .service
            .find_pending(env(
                FindPendingDevice {
                    user_code: code.into(),
                },
                Some(alice()),
            ))
            .await
            .unwrap()
            .output;
        assert_eq!(found, id);
    }
}

#[tokio::test]
async fn requests_give_up_after_a_few_collisions_and_append_nothing() {
    let queue = Arc::new(Mutex::new(VecDeque::new()));
    let h = harness_with(
        DeviceSettings::default(),
        Some(scripted_codes(queue.clone())),
    );
    script(&queue, &["BCDFGHJK"]);
    h.try_request().await.unwrap();
    script(&queue, &["BCDFGHJK"; USER_CODE_ATTEMPTS]);
    let failure = h.try_request().await.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Unavailable);
    assert_eq!(failure.wire_code(), "user_codes_exhausted");
    assert_eq!(h.event_count().await, 1);
}

#[tokio::test]
async fn a_generator_that_makes_untypeable_codes_is_refused() {
    let queue = Arc::new(Mutex::new(VecDeque::new()));
    let h = harness_with(
        DeviceSettings::default(),
        Some(scripted_codes(queue.clone())),
    );
    script(&queue, &["bcdf-ghjk"]);
    let failure = h.try_request().await.unwrap_err();
    assert_eq!(failure.wire_code(), "invalid_user_code_generated");
    assert_eq!(h.event_count().await, 0);
}

#[tokio::test]
async fn a_decision_releases_the_user_code_so_it_can_be_issued_again() {
    let queue = Arc::new(Mutex::new(VecDeque::new()));
    let h = harness_with(
        DeviceSettings::default(),
        Some(scripted_codes(queue.clone())),
    );
    script(&queue, &["BCDFGHJK"]);
    let first = h.try_request().await.unwrap();
    h.decide(
        "BCDF-GHJK",
        DeviceDecision::Approve { trusted: false },
        alice(),
    )
    .await
    .unwrap();
    assert_eq!(h.claim_holder("BCDFGHJK").await, None, "released");

    // The second approval of the same code finds nothing, and says so like a wrong code.
    let events = h.event_count().await;
    for decision in [
        DeviceDecision::Approve { trusted: true },
        DeviceDecision::Deny,
    ] {
        let failure = h.decide("BCDFGHJK", decision, bob()).await.unwrap_err();
        assert_eq!(failure.kind, FailureKind::NotFound);
        assert_eq!(failure.wire_code(), "invalid_user_code");
    }
    assert_eq!(h.event_count().await, events, "nothing appended");

    // The code is free for a new authorization, which it then leads to.
    script(&queue, &["BCDFGHJK"]);
    let second = h.try_request().await.unwrap();
    assert_eq!(second.user_code, "BCDFGHJK");
    let id = h
        .decide("BCDFGHJK", DeviceDecision::Deny, bob())
        .await
        .unwrap();
    assert_eq!(id, second.device_id);
    assert_ne!(id, first.device_id);
    assert_eq!(
        h.claim_holder("BCDFGHJK").await,
        None,
        "released on denial too"
    );
}

#[tokio::test]
async fn a_lapsed_authorization_keeps_its_claim_until_the_sweep_but_its_code_finds_nothing() {
    let h = harness();
    let (issued, _) = h.request().await;
    h.clock.advance(Duration::minutes(10));
    // Until the sweep records the lapse the claim stays with the stream; the code is
    // refused anyway because the authorization is no longer pending.
    assert!(h.claim_holder(&issued.user_code).await.is_some());
    let failure = h
        .decide(&issued.user_code, DeviceDecision::Deny, alice())
        .await
        .unwrap_err();
    assert_eq!(failure.wire_code(), "invalid_user_code");
}

// ---------------------------------------------------------------------------------------
// Redemption
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_polls_of_an_approved_device_activate_it_once() {
    let h = harness();
    let (issued, code) = h.request().await;
    h.decide(
        &issued.user_code,
        DeviceDecision::Approve { trusted: false },
        alice(),
    )
    .await
    .unwrap();
    let polls = futures_join(&h, &code, 8).await;
    let redeemed: Vec<_> = polls.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(redeemed.len(), 1, "{polls:?}");
    for refused in polls.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(refused.wire_code(), "invalid_grant");
    }
    assert_eq!(
        h.events(issued.device_id).await,
        vec![
            "device.authorization_requested",
            "device.verified",
            "device.activated"
        ]
    );
}

async fn futures_join(
    h: &Harness,
    code: &SecretString,
    n: usize,
) -> Vec<Result<gatehouse_contracts::devices::DeviceRedeemed, Failure>> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let service = h.service.clone();
        let sealed = h
            .sealer
            .seal(code, &RedeemDeviceCode::seal_context("device_code"))
            .expect("sealing works");
        set.spawn(async move {
            service
                .redeem(env(
                    RedeemDeviceCode {
                        device_code: sealed,
                    },
                    None,
                ))
                .await
                .map(|a| a.output)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.expect("a poll task"));
    }
    out
}

#[tokio::test]
async fn a_device_code_sealed_for_another_command_or_malformed_is_an_invalid_grant() {
    let h = harness();
    let (issued, code) = h.request().await;
    h.decide(
        &issued.user_code,
        DeviceDecision::Approve { trusted: false },
        alice(),
    )
    .await
    .unwrap();
    let replayed = h
        .sealer
        .seal(
            &code,
            &RequestDeviceAuthorization::seal_context("device_code"),
        )
        .unwrap();
    let failure = h
        .service
        .redeem(env(
            RedeemDeviceCode {
                device_code: replayed,
            },
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(failure.wire_code(), "invalid_grant");
    assert_eq!(failure.kind, FailureKind::Invalid);
    let garbage = SecretString::from("gatehouse_dc_not-a-code");
    assert_eq!(
        h.redeem(&garbage).await.unwrap_err().wire_code(),
        "invalid_grant"
    );
    let unknown = gatehouse_tokens::DEVICE_CODE_FORMAT.generate(Uuid::new_v4());
    assert_eq!(
        h.redeem(&unknown.full).await.unwrap_err().wire_code(),
        "invalid_grant"
    );
    assert_eq!(h.events(issued.device_id).await.len(), 2, "not activated");
}

#[tokio::test]
async fn an_untrusted_device_gets_the_short_lifetime_from_the_settings() {
    let settings = DeviceSettings {
        device_authorization_ttl: 60,
        device_poll_interval: 7,
        device_token_ttl: 3600,
        trusted_device_token_ttl: 7200,
        ..DeviceSettings::default()
    };
    let h = harness_with(settings, None);
    let (issued, code) = h.request().await;
    assert_eq!(issued.interval_seconds, 7);
    assert_eq!(issued.expires_at, h.now() + Duration::seconds(60));
    h.decide(
        &issued.user_code,
        DeviceDecision::Approve { trusted: false },
        alice(),
    )
    .await
    .unwrap();
    let redeemed = h.redeem(&code).await.unwrap();
    assert!(!redeemed.trusted);
    assert_eq!(redeemed.token_expires_at, h.now() + Duration::hours(1));

    let (issued, code) = h.request().await;
    h.clock.advance(Duration::seconds(61));
    assert_eq!(
        h.redeem(&code).await.unwrap_err().wire_code(),
        "expired_token"
    );
    let failure = h
        .decide(&issued.user_code, DeviceDecision::Deny, alice())
        .await
        .unwrap_err();
    assert_eq!(failure.wire_code(), "invalid_user_code");
}

#[test]
fn settings_come_from_flags_with_defaults_and_bounds() {
    use clap::Parser;
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        devices: DeviceSettings,
    }
    let defaults = Cli::try_parse_from(["gatehouse-devices"]).unwrap().devices;
    assert_eq!(defaults.flow(), gatehouse_devices::FlowSettings::default());
    assert_eq!(
        defaults.lifetimes(),
        gatehouse_devices::DeviceLifetimes::default()
    );
    let custom = Cli::try_parse_from([
        "gatehouse-devices",
        "--device-authorization-ttl",
        "120",
        "--device-poll-interval",
        "2",
        "--device-token-ttl",
        "600",
        "--trusted-device-token-ttl",
        "1200",
    ])
    .unwrap()
    .devices;
    assert_eq!(custom.flow().authorization_ttl, Duration::seconds(120));
    assert_eq!(custom.flow().interval_seconds, 2);
    assert_eq!(custom.lifetimes().untrusted, Duration::seconds(600));
    assert_eq!(custom.lifetimes().trusted, Duration::seconds(1200));
    for bad in [
        ["--device-poll-interval", "0"],
        ["--device-authorization-ttl", "0"],
        ["--device-authorization-ttl", "999999"],
        ["--device-token-ttl", "99999999999999999"],
        ["--trusted-device-token-ttl", "-1"],
    ] {
        assert!(
            Cli::try_parse_from(std::iter::once("gatehouse-devices").chain(bad)).is_err(),
            "{bad:?}"
        );
    }
    // Settings built in code are kept in bounds rather than overflowing time arithmetic.
    let huge = DeviceSettings {
        device_token_ttl: u64::MAX,
        device_poll_interval: 0,
        ..DeviceSettings::default()
    };
    assert!(huge.lifetimes().untrusted <= Duration::days(3660));
    assert_eq!(huge.flow().interval_seconds, 1);
}

// ---------------------------------------------------------------------------------------
// Managing devices: who may, and what
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_pending_authorization_is_nobodys_but_an_admin_may_delete_it() {
    let h = harness();
    let (issued, code) = h.request().await;
    let id = issued.device_id;
    assert_eq!(
        h.delete(id, Some(alice())).await.unwrap_err().wire_code(),
        "not_found"
    );
    assert_eq!(
        h.set_lock(id, true, Some(alice()))
            .await
            .unwrap_err()
            .wire_code(),
        "not_found"
    );
    let refused = h.set_lock(id, true, Some(admin())).await.unwrap_err();
    assert_eq!(
        refused.kind,
        FailureKind::Invalid,
        "a pending device has no session"
    );
    h.delete(id, Some(admin())).await.unwrap();
    assert_eq!(
        h.redeem(&code).await.unwrap_err().wire_code(),
        "invalid_grant"
    );
    let failure = h
        .decide(
            &issued.user_code,
            DeviceDecision::Approve { trusted: true },
            alice(),
        )
        .await
        .unwrap_err();
    assert_eq!(failure.wire_code(), "invalid_user_code");
    assert_eq!(
        h.delete(id, Some(admin())).await.unwrap_err().wire_code(),
        "not_found",
        "deleted is gone"
    );
}

#[tokio::test]
async fn other_users_unknown_devices_and_anonymous_callers_get_nowhere() {
    let h = harness();
    let (id, _) = h.active_device(alice(), true).await;
    let before = h.event_count().await;
    for locked in [true, false] {
        assert_eq!(
            h.set_lock(id, locked, Some(bob()))
                .await
                .unwrap_err()
                .wire_code(),
            "not_found"
        );
        assert_eq!(
            h.set_lock(DeviceId::new(), locked, Some(admin()))
                .await
                .unwrap_err()
                .wire_code(),
            "not_found"
        );
        assert_eq!(
            h.set_lock(id, locked, None).await.unwrap_err().wire_code(),
            "unauthenticated"
        );
    }
    assert_eq!(
        h.delete(id, Some(bob())).await.unwrap_err().wire_code(),
        "not_found"
    );
    assert_eq!(
        h.delete(id, None).await.unwrap_err().wire_code(),
        "unauthenticated"
    );
    assert_eq!(
        h.delete(DeviceId::new(), Some(admin()))
            .await
            .unwrap_err()
            .wire_code(),
        "not_found"
    );
    let decide_anonymously = h
        .service
        .decide(env(
            DecideDevice {
                user_code: "BCDFGHJK".into(),
                decision: DeviceDecision::Deny,
            },
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(decide_anonymously.wire_code(), "unauthenticated");
    assert_eq!(h.event_count().await, before, "nothing appended");
}

#[tokio::test]
async fn an_admin_manages_anyones_device_and_repeats_change_nothing() {
    let h = harness();
    let (id, _) = h.active_device(alice(), false).await;
    h.set_lock(id, true, Some(admin())).await.unwrap();
    let locked = h.event_count().await;
    h.set_lock(id, true, Some(alice())).await.unwrap();
    assert_eq!(h.event_count().await, locked, "locking twice records once");
    h.set_lock(id, false, Some(alice())).await.unwrap();
    h.set_lock(id, false, Some(admin())).await.unwrap();
    assert_eq!(
        h.event_count().await,
        locked + 1,
        "unlocking twice records once"
    );
    h.delete(id, Some(admin())).await.unwrap();
    let events = h.store.read_stream(&device_stream(id), 0).await.unwrap();
    let deleted = events.last().unwrap();
    assert_eq!(deleted.event_type, "device.deleted");
    assert_eq!(
        deleted.payload["user_id"],
        serde_json::json!(alice().id),
        "the deletion says whose device it was"
    );
}

// ---------------------------------------------------------------------------------------
// Lapsed and deleted requests give their user codes back
// ---------------------------------------------------------------------------------------

impl Harness {
    /// The read model rebuilt from the whole log, as the projector keeps it.
    async fn view_store(&self) -> Arc<MemoryViewStore> {
        let views = Arc::new(MemoryViewStore::new());
        ProjectionRunner::new("devices-test", views.clone(), self.store.clone())
            .with(Arc::new(DeviceProjection))
            .rebuild()
            .await
            .expect("the projection rebuilds");
        views
    }
}

#[tokio::test]
async fn an_undecided_request_is_recorded_as_lapsed_after_the_grace_and_frees_its_code() {
    let h = harness();
    let (undecided, _) = h.request().await;
    let (approved, _) = h.request().await;
    let (denied, _) = h.request().await;
    h.decide(
        &approved.user_code,
        DeviceDecision::Approve { trusted: false },
        alice(),
    )
    .await
    .unwrap();
    h.decide(&denied.user_code, DeviceDecision::Deny, alice())
        .await
        .unwrap();
    let holder = device_stream(undecided.device_id);
    assert_eq!(h.claim_holder(&undecided.user_code).await, Some(holder));

    // Lapsed, but within the grace: nothing recorded, the code still held.
    h.clock.advance(Duration::seconds(600));
    let views = h.view_store().await;
    assert_eq!(h.service.sweep(views.as_ref()).await.unwrap(), 0);
    assert!(h.claim_holder(&undecided.user_code).await.is_some());

    h.clock.advance(DeviceSettings::default().lapse_grace());
    assert_eq!(h.service.sweep(views.as_ref()).await.unwrap(), 1);
    assert_eq!(
        h.events(undecided.device_id).await,
        vec![
            "device.authorization_requested",
            "device.authorization_lapsed"
        ]
    );
    assert_eq!(h.claim_holder(&undecided.user_code).await, None);
    for decided in [&approved, &denied] {
        assert_eq!(h.events(decided.device_id).await.len(), 2, "no lapse event");
    }
    assert_eq!(
        view(&h, undecided.device_id).await,
        None,
        "no longer listed"
    );
    for decided in [&approved, &denied] {
        let view = view(&h, decided.device_id).await.expect("still listed");
        assert!(!view.awaiting_decision);
    }

    // Recorded once, whether the view has caught up or not.
    assert_eq!(
        h.service.sweep(views.as_ref()).await.unwrap(),
        0,
        "stale view"
    );
    let views = h.view_store().await;
    assert_eq!(h.service.sweep(views.as_ref()).await.unwrap(), 0);
    assert_eq!(h.events(undecided.device_id).await.len(), 2);
}

#[tokio::test]
async fn deleting_a_pending_request_frees_its_code() {
    let h = harness();
    let (issued, _) = h.request().await;
    h.service
        .delete(env(
            DeleteDevice {
                id: issued.device_id,
            },
            Some(admin()),
        ))
        .await
        .unwrap();
    assert_eq!(h.claim_holder(&issued.user_code).await, None);
    assert_eq!(
        h.decide(&issued.user_code, DeviceDecision::Deny, alice())
            .await
            .unwrap_err()
            .wire_code(),
        "invalid_user_code"
    );
}

// ---------------------------------------------------------------------------------------
// The read model, and secrets in it
// ---------------------------------------------------------------------------------------

/// Folds the whole log through the projection, the way the projector does.
async fn views(h: &Harness) -> HashMap<StreamId, serde_json::Value> {
    let mut docs: HashMap<StreamId, serde_json::Value> = HashMap::new();
    for event in h.store.read_all(0, 10_000).await.expect("the log reads") {
        match DeviceProjection
            .apply(docs.get(&event.stream_id), &event)
            .expect("the projection applies every device event")
        {
            ViewChange::Upsert(doc) => {
                docs.insert(event.stream_id.clone(), doc);
            }
            ViewChange::Delete => {
                docs.remove(&event.stream_id);
            }
            ViewChange::Unchanged => {}
        }
    }
    docs
}

async fn view(h: &Harness, id: DeviceId) -> Option<DeviceView> {
    views(h)
        .await
        .remove(&device_stream(id))
        .map(|doc| serde_json::from_value(doc).expect("a device view"))
}

#[tokio::test]
async fn the_view_follows_the_device_through_its_life() {
    let h = harness();
    let start = h.now();
    let (issued, code) = h.request().await;
    let id = issued.device_id;
    let v = view(&h, id).await.unwrap();
    assert_eq!(v.id, id);
    assert_eq!(v.client_id, "gatehouse-cli");
    assert_eq!(v.metadata.hostname.as_deref(), Some("laptop"));
    assert_eq!(v.interval_seconds, 5);
    assert_eq!(v.owner_id, None);
    assert_eq!(v.created, start);
    assert_eq!(v.status(h.now()), DeviceStatus::Pending);
    assert_eq!(v.ends_at(), issued.expires_at);
    assert!(
        h.codes
            .check_device_code(code.expose_secret(), &v.device_code_hash)
    );
    assert_eq!(
        v.status(issued.expires_at),
        DeviceStatus::Expired,
        "status is read from the clock"
    );

    h.clock.advance(Duration::seconds(20));
    h.decide(
        &issued.user_code,
        DeviceDecision::Approve { trusted: true },
        alice(),
    )
    .await
    .unwrap();
    let v = view(&h, id).await.unwrap();
    assert_eq!(v.status(h.now()), DeviceStatus::Verified);
    assert_eq!(v.owner_id, alice().user_id());
    assert!(v.facts.trusted);
    assert_eq!(v.facts.verified_at, Some(h.now()));
    assert_eq!(v.updated, h.now());

    h.clock.advance(Duration::seconds(5));
    let redeemed = h.redeem(&code).await.unwrap();
    let v = view(&h, id).await.unwrap();
    assert_eq!(v.status(h.now()), DeviceStatus::Active);
    assert_eq!(v.facts.activated_at, Some(h.now()));
    assert_eq!(v.facts.token_expires_at, Some(redeemed.token_expires_at));
    assert_eq!(v.ends_at(), redeemed.token_expires_at);
    assert_eq!(v.created, start, "created does not move");

    h.set_lock(id, true, Some(alice())).await.unwrap();
    assert_eq!(
        view(&h, id).await.unwrap().status(h.now()),
        DeviceStatus::Locked
    );
    h.set_lock(id, false, Some(alice())).await.unwrap();
    let v = view(&h, id).await.unwrap();
    assert_eq!(v.status(h.now()), DeviceStatus::Active);
    assert_eq!(v.status(redeemed.token_expires_at), DeviceStatus::Expired);

    h.delete(id, Some(alice())).await.unwrap();
    assert_eq!(view(&h, id).await, None, "a deleted device has no view");
}

#[tokio::test]
async fn a_denied_device_shows_denied_and_has_no_owner() {
    let h = harness();
    let (issued, _) = h.request().await;
    h.decide(&issued.user_code, DeviceDecision::Deny, bob())
        .await
        .unwrap();
    let v = view(&h, issued.device_id).await.unwrap();
    assert_eq!(v.status(h.now()), DeviceStatus::Denied);
    assert_eq!(v.status(issued.expires_at), DeviceStatus::Denied);
    assert_eq!(v.owner_id, None);
}

#[tokio::test]
async fn neither_code_appears_in_any_event_or_view() {
    let h = harness();
    let mut secrets: Vec<String> = Vec::new();
    let mut remember = |issued: &DeviceAuthorizationIssued, code: &SecretString| {
        let code = code.expose_secret().to_owned();
        // The secret part alone (between the id and the checksum), too.
        let secret =
            code[gatehouse_tokens::DEVICE_CODE_FORMAT.prefix().len() + 33..][..43].to_owned();
        secrets.extend([
            code,
            secret,
            issued.user_code.clone(),
            display_user_code(&issued.user_code),
        ]);
    };
    // One device through every step, one denied, one left pending.
    let (issued, code) = h.request().await;
    remember(&issued, &code);
    h.decide(
        &issued.user_code,
        DeviceDecision::Approve { trusted: true },
        alice(),
    )
    .await
    .unwrap();
    h.redeem(&code).await.unwrap();
    h.set_lock(issued.device_id, true, Some(alice()))
        .await
        .unwrap();
    h.set_lock(issued.device_id, false, Some(alice()))
        .await
        .unwrap();
    let (issued, code) = h.request().await;
    remember(&issued, &code);
    h.decide(&issued.user_code, DeviceDecision::Deny, alice())
        .await
        .unwrap();
    let (issued, code) = h.request().await;
    remember(&issued, &code);

    let log = h.all_events_json().await;
    let docs = serde_json::to_string(&views(&h).await.into_values().collect::<Vec<_>>()).unwrap();
    assert_eq!(views(&h).await.len(), 3);
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a code is in the log");
        assert!(!docs.contains(secret.as_str()), "a code is in a view");
    }
}
