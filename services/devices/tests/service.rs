//! The devices service's command handlers against the in-memory event store, with a
//! manual clock: the flow from request to redemption, wrong codes, authorization.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use gatehouse_contracts::clock::ManualClock;
use gatehouse_contracts::commands::{Caller, CommandEnvelope, Failure};
use gatehouse_contracts::devices::{
    DecideDevice, DeleteDevice, DeviceAuthorizationIssued, DeviceDecision, DeviceMetadata,
    FindPendingDevice, RedeemDeviceCode, RequestDeviceAuthorization, SetDeviceLock,
    display_user_code,
};
use gatehouse_contracts::identity::Role;
use gatehouse_contracts::{EventMetadata, StreamId};
use gatehouse_devices::service::{generate_user_code, seal_context};
use gatehouse_devices::{DeviceCodes, DeviceSettings, DevicesService};
use gatehouse_eventlog::EventStore;
use gatehouse_eventlog::memory::MemoryEventStore;
use gatehouse_secrets::{BusSealer, MasterKey};
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
    let master = MasterKey::generate();
    let store = Arc::new(MemoryEventStore::new());
    let clock = ManualClock::new(
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
            .single()
            .expect("a valid time"),
    );
    let service = DevicesService::new(
        store.clone(),
        &master,
        Arc::new(clock.clone()),
        DeviceSettings::default(),
    );
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
        id: Uuid::from_u128(n),
        kind: "user".into(),
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
                &seal_context::<RequestDeviceAuthorization>(),
            )
            .expect("the sealed device code opens");
        (issued, code)
    }

    async fn decide(
        &self,
        code: &str,
        decision: DeviceDecision,
        caller: Caller,
    ) -> Result<Uuid, Failure> {
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
            .seal(code, &seal_context::<RedeemDeviceCode>())
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

    async fn events(&self, id: Uuid) -> Vec<String> {
        self.store
            .read_stream(&StreamId::new("device", id), 0)
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
        h.redeem(&code).await.unwrap_err().code,
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
    assert_eq!(redeemed.owner.as_uuid(), alice().id);
    assert!(redeemed.trusted);
    assert_eq!(redeemed.token_expires_at, h.now() + Duration::days(30));
    assert_eq!(h.redeem(&code).await.unwrap_err().code, "invalid_grant");
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
    assert_eq!(h.redeem(&code).await.unwrap_err().code, "access_denied");
    let again = h
        .decide(
            &issued.user_code,
            DeviceDecision::Approve { trusted: false },
            alice(),
        )
        .await
        .unwrap_err();
    assert_eq!(again.code, "invalid_user_code");
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
    assert_eq!(lookup.code, "invalid_user_code");
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
        assert_eq!(failure.code, "invalid_user_code", "{typed:?}");
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
    assert_eq!(lapsed.code, "invalid_user_code");
    assert_eq!(h.redeem(&code).await.unwrap_err().code, "expired_token");
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
    let forged = gatehouse_tokens::DEVICE_CODE_FORMAT.generate(issued.device_id);
    assert_eq!(
        h.redeem(&forged.full).await.unwrap_err().code,
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
        .read_stream(&StreamId::new("device", issued.device_id), 0)
        .await
        .unwrap();
    let hash = events[0].payload["device_code_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(h.codes.check_device_code(code.expose_secret(), &hash));
    let other = gatehouse_tokens::DEVICE_CODE_FORMAT.generate(issued.device_id);
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
    assert_eq!(lock(true, bob()).await.unwrap_err().code, "not_found");
    lock(true, alice()).await.unwrap();
    lock(false, admin()).await.unwrap();
    let delete = |caller| h.service.delete(env(DeleteDevice { id }, Some(caller)));
    assert_eq!(delete(bob()).await.unwrap_err().code, "not_found");
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
        kind: "service_account".into(),
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
    assert_eq!(failure.code, "forbidden");
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
