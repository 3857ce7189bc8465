//! The devices service's contract: device authorizations (RFC 8628) and the authorized
//! devices they become.
//!
//! A device asks for authorization (`device.authorization_requested`), a signed-in person
//! approves it (`device.verified`, optionally trusting the device) or refuses it
//! (`device.denied`); the device's first successful poll redeems the device code
//! (`device.activated`, which fixes the token's lifetime). The owner or an admin can then
//! lock, unlock and delete it. Polls that find nothing new are not events. Neither the
//! device code nor the user code is ever in an event: the service keeps only their keyed
//! hashes.

use chrono::{DateTime, Utc};
use gatehouse_secrets::SealedSecret;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::aggregate_events;
use crate::commands::{Caller, Command};
use crate::envelope::StreamId;
use crate::ids::{DeviceId, PrincipalId, UserId};

/// The aggregate name (`device-<id>` streams, `gatehouse.events.device.*` subjects).
pub const DEVICE_AGGREGATE: &str = "device";

/// The read model of devices.
pub const DEVICE_VIEW: &str = "device";

/// The unique-claim scope that maps a pending authorization's user code (as a keyed
/// hash) to its stream while it waits for approval.
pub const USER_CODE_SCOPE: &str = "device_user_code";

/// The stream of a device.
pub fn device_stream(id: DeviceId) -> StreamId {
    StreamId::new(DEVICE_AGGREGATE, id.as_uuid())
}

/// The user-code alphabet of RFC 8628 §6.1: base 20, no vowels, no look-alikes.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Characters in a user code (shown `XXXX-XXXX`): 20^8 ≈ 2^34.6 codes.
pub const USER_CODE_LEN: usize = 8;

/// Normalizes what a person typed into a user code: case-insensitive, dashes and spaces
/// ignored. `None` when it cannot be a user code at all.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// Shows a normalized user code as `XXXX-XXXX`.
pub fn display_user_code(code: &str) -> String {
    if code.len() == USER_CODE_LEN && code.is_ascii() {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_owned()
    }
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// What a device says about itself, and where it asked from. Shown to the person who
/// approves it; none of it is trusted for anything else.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceMetadata {
    /// The device's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Its operating system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// The client's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
    /// The address the request came from (the socket peer, or the forwarded address
    /// behind a trusted proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
}

/// `device.authorization_requested`: a device started the flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceAuthorizationRequested {
    /// The OAuth client that asked.
    pub client_id: String,
    /// The scope asked for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// What the device says about itself.
    pub metadata: DeviceMetadata,
    /// When it asked.
    pub requested_at: DateTime<Utc>,
    /// When the authorization lapses unless approved and redeemed.
    pub expires_at: DateTime<Utc>,
    /// The polling interval first given, in seconds.
    pub interval_seconds: u32,
    /// HMAC-SHA-256 (hex) of the device code's secret, keyed with a pepper derived from
    /// the master key: what a gateway checks a polled code against. Never the code.
    pub device_code_hash: String,
}

/// `device.verified`: a person approved the device for their account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceVerified {
    /// Whose device it becomes.
    pub user_id: UserId,
    /// Whether the person trusts the device (longer-lived tokens).
    pub trusted: bool,
    /// When.
    pub verified_at: DateTime<Utc>,
}

/// `device.denied`: a person refused the authorization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceDenied {
    /// Who refused it.
    pub user_id: UserId,
    /// When.
    pub denied_at: DateTime<Utc>,
}

/// `device.activated`: the device redeemed its code and received its token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceActivated {
    /// When.
    pub activated_at: DateTime<Utc>,
    /// When the device's token (and so the device's session) ends.
    pub token_expires_at: DateTime<Utc>,
}

/// `device.locked`: the device's token is refused until it is unlocked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceLocked {}

/// `device.unlocked`: the device's token, if not expired, works again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceUnlocked {}

/// `device.authorization_lapsed`: nobody approved or denied the authorization before it
/// lapsed, and its user code is released. Recorded by the devices service's sweep a while
/// after `expired_at`; the device counted as expired from `expired_at` on regardless. The
/// request then leaves the device list and gateways forget it (its device code gets
/// `invalid_grant` instead of `expired_token`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceAuthorizationLapsed {
    /// When the authorization lapsed (its `expires_at`).
    pub expired_at: DateTime<Utc>,
}

/// `device.deleted`: the device and its token are gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceDeleted {
    /// Whose device it was, if anyone's yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
}

aggregate_events! {
    /// Events of a device (`device-<id>` streams).
    pub enum DeviceEvent: "device" {
        /// A device asked for authorization.
        AuthorizationRequested(DeviceAuthorizationRequested) = "authorization_requested",
        /// A person approved it.
        Verified(DeviceVerified) = "verified",
        /// A person refused it.
        Denied(DeviceDenied) = "denied",
        /// The device redeemed its code.
        Activated(DeviceActivated) = "activated",
        /// The owner or an admin locked it.
        Locked(DeviceLocked) = "locked",
        /// The owner or an admin unlocked it.
        Unlocked(DeviceUnlocked) = "unlocked",
        /// The owner or an admin deleted it.
        Deleted(DeviceDeleted) = "deleted",
        /// Nobody decided before it lapsed; its user code is released.
        AuthorizationLapsed(DeviceAuthorizationLapsed) = "authorization_lapsed",
    }
}

/// Where a device stands, at a given time.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Waiting for a person to approve or deny it.
    Pending,
    /// Approved; the device has not redeemed its code yet.
    Verified,
    /// Holds a token that works.
    Active,
    /// Its token is refused until it is unlocked.
    Locked,
    /// A person refused it.
    Denied,
    /// The authorization lapsed before it was redeemed, or the token's lifetime ended.
    Expired,
}

impl DeviceStatus {
    /// The status's name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Verified => "verified",
            DeviceStatus::Active => "active",
            DeviceStatus::Locked => "locked",
            DeviceStatus::Denied => "denied",
            DeviceStatus::Expired => "expired",
        }
    }
}

/// What decides a device's status and whether its token works, folded from its events by
/// the aggregate, the read model and every gateway replica alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceFacts {
    /// Whose device it is (once approved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<UserId>,
    /// Whether the owner trusts it.
    pub trusted: bool,
    /// Whether a person refused it.
    pub denied: bool,
    /// Whether its token is refused for now.
    pub locked: bool,
    /// When the authorization lapses unless redeemed.
    pub expires_at: DateTime<Utc>,
    /// When it was approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<DateTime<Utc>>,
    /// When it redeemed its code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<DateTime<Utc>>,
    /// When its token ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<DateTime<Utc>>,
}

impl DeviceFacts {
    /// The facts of a new authorization.
    pub fn requested(e: &DeviceAuthorizationRequested) -> Self {
        Self {
            owner: None,
            trusted: false,
            denied: false,
            locked: false,
            expires_at: e.expires_at,
            verified_at: None,
            activated_at: None,
            token_expires_at: None,
        }
    }

    /// Folds one event.
    pub fn evolve(&mut self, event: &DeviceEvent) {
        match event {
            DeviceEvent::Verified(e) => {
                self.owner = Some(e.user_id);
                self.trusted = e.trusted;
                self.verified_at = Some(e.verified_at);
            }
            DeviceEvent::Denied(_) => self.denied = true,
            DeviceEvent::Activated(e) => {
                self.activated_at = Some(e.activated_at);
                self.token_expires_at = Some(e.token_expires_at);
            }
            DeviceEvent::Locked(_) => self.locked = true,
            DeviceEvent::Unlocked(_) => self.locked = false,
            DeviceEvent::AuthorizationRequested(_)
            | DeviceEvent::Deleted(_)
            | DeviceEvent::AuthorizationLapsed(_) => {}
        }
    }

    /// Where the device stands at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> DeviceStatus {
        if self.denied {
            return DeviceStatus::Denied;
        }
        let ends = self.token_expires_at.unwrap_or(self.expires_at);
        if now >= ends {
            DeviceStatus::Expired
        } else if self.locked {
            DeviceStatus::Locked
        } else if self.activated_at.is_some() {
            DeviceStatus::Active
        } else if self.owner.is_some() {
            DeviceStatus::Verified
        } else {
            DeviceStatus::Pending
        }
    }

    /// When the device's current phase ends: the authorization's expiry until it is
    /// redeemed, then the token's.
    pub fn ends_at(&self) -> DateTime<Utc> {
        self.token_expires_at.unwrap_or(self.expires_at)
    }

    /// The part of [`status`](Self::status) the clock does not change: the status until
    /// [`live_until`](Self::live_until), never `Expired`.
    pub fn standing(&self) -> DeviceStatus {
        self.status(DateTime::<Utc>::MIN_UTC)
    }

    /// When the device turns `Expired`, if it ever does (a denied device stays denied).
    /// With [`standing`](Self::standing): `status(now)` is `Expired` from this time on,
    /// `standing()` before it.
    pub fn live_until(&self) -> Option<DateTime<Utc>> {
        (!self.denied).then(|| self.ends_at())
    }

    /// What a poll of the device's code answers at `now` (RFC 8628 §3.5), pace aside
    /// (`slow_down` is the polling gateway's to say): `Ok` when the device is approved and
    /// this poll redeems its code. The one rule for the devices service's `redeem` and the
    /// gateway, which answers polls from its directory.
    pub fn poll(&self, now: DateTime<Utc>) -> Result<(), PollRefusal> {
        match self.status(now) {
            DeviceStatus::Pending => Err(PollRefusal::AuthorizationPending),
            DeviceStatus::Denied => Err(PollRefusal::AccessDenied),
            DeviceStatus::Expired if self.activated_at.is_none() => Err(PollRefusal::ExpiredToken),
            DeviceStatus::Verified => Ok(()),
            // Redeemed before: a device code works once.
            DeviceStatus::Active | DeviceStatus::Locked | DeviceStatus::Expired => {
                Err(PollRefusal::InvalidGrant)
            }
        }
    }

    /// Whether nobody approved or denied the request yet (what the lapse sweep looks for).
    pub fn awaiting_decision(&self) -> bool {
        self.owner.is_none() && !self.denied
    }
}

/// Why a poll of the token endpoint gets no token: the RFC 8628 §3.5 errors other than
/// `slow_down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.as_str())]
pub enum PollRefusal {
    /// Nobody approved or denied it yet.
    AuthorizationPending,
    /// A person denied it.
    AccessDenied,
    /// It lapsed.
    ExpiredToken,
    /// Unknown code, or already redeemed (a device code is used once).
    InvalidGrant,
}

impl PollRefusal {
    /// The OAuth error code (`authorization_pending`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PollRefusal::AuthorizationPending => "authorization_pending",
            PollRefusal::AccessDenied => "access_denied",
            PollRefusal::ExpiredToken => "expired_token",
            PollRefusal::InvalidGrant => "invalid_grant",
        }
    }
}

/// Who looks at devices, and so which devices they may see, list, lock, unlock and delete:
/// its owner sees a device, an admin sees every device, and a pending authorization is
/// nobody's yet (only admins see it). The one rule for the devices service's decisions and
/// the gateway's reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceViewer {
    /// The principal looking.
    pub id: PrincipalId,
    /// Admins see every device.
    pub admin: bool,
}

impl DeviceViewer {
    /// The caller of a command or a request.
    pub fn of(caller: &Caller) -> Self {
        Self {
            id: caller.id,
            admin: caller.is_admin(),
        }
    }

    /// Whether the viewer may see and manage the device with `facts`.
    pub fn may_see(&self, facts: &DeviceFacts) -> bool {
        self.admin || facts.owner.map(PrincipalId::from) == Some(self.id)
    }

    /// The owner whose devices a listing shows: `None` for every device (an admin).
    pub fn listed_owner(&self) -> Option<PrincipalId> {
        (!self.admin).then_some(self.id)
    }
}

/// The `device` read model: one document per device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    /// The device's id.
    pub id: DeviceId,
    /// The OAuth client that asked.
    pub client_id: String,
    /// The scope asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// What the device said about itself.
    pub metadata: DeviceMetadata,
    /// The polling interval first given.
    pub interval_seconds: u32,
    /// See [`DeviceAuthorizationRequested::device_code_hash`].
    pub device_code_hash: String,
    /// Status facts.
    pub facts: DeviceFacts,
    /// The owner's id, copied out of `facts` for filtering by owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<UserId>,
    /// Whether nobody approved or denied the request yet (what the lapse sweep looks for;
    /// a recorded lapse removes the view).
    #[serde(default)]
    pub awaiting_decision: bool,
    /// [`DeviceFacts::standing`], copied out of `facts` for listing by status.
    #[serde(default = "pending")]
    pub standing: DeviceStatus,
    /// [`DeviceFacts::live_until`], copied out of `facts` for listing by status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_until: Option<DateTime<Utc>>,
    /// Requested at.
    pub created: DateTime<Utc>,
    /// Last changed at.
    pub updated: DateTime<Utc>,
}

fn pending() -> DeviceStatus {
    DeviceStatus::Pending
}

impl DeviceView {
    /// Where the device stands at `now` (the same rule as the aggregate's and the
    /// gateway's: [`DeviceFacts::status`]).
    pub fn status(&self, now: DateTime<Utc>) -> DeviceStatus {
        self.facts.status(now)
    }

    /// When the device's current phase ends ([`DeviceFacts::ends_at`]).
    pub fn ends_at(&self) -> DateTime<Utc> {
        self.facts.ends_at()
    }
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// A device starts the flow (RFC 8628 §3.1). No caller: nobody is signed in yet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestDeviceAuthorization {
    /// The OAuth client asking.
    pub client_id: String,
    /// The scope asked for.
    pub scope: Option<String>,
    /// What the device says about itself, and its address.
    pub metadata: DeviceMetadata,
}

impl Command for RequestDeviceAuthorization {
    const SERVICE: &'static str = "devices";
    const NAME: &'static str = "request_device_authorization";
    type Output = DeviceAuthorizationIssued;
    type Code = crate::failures::DevicesFailure;
}

/// The codes of a new authorization (RFC 8628 §3.2).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceAuthorizationIssued {
    /// The device's id.
    pub device_id: DeviceId,
    /// The device code, sealed for the gateway: only the device ever sees it.
    pub device_code: SealedSecret,
    /// The user code, normalized (display it with [`display_user_code`]). Not sealed: the
    /// person types it and it dies with the authorization.
    pub user_code: String,
    /// When the authorization lapses.
    pub expires_at: DateTime<Utc>,
    /// The polling interval in seconds.
    pub interval_seconds: u32,
}

/// A signed-in person approves (optionally trusting the device) or denies the pending
/// authorization with `user_code`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecideDevice {
    /// What the person typed (normalized by the service).
    pub user_code: String,
    /// Approve or deny.
    pub decision: DeviceDecision,
}

/// A person's answer to a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum DeviceDecision {
    /// Approve, trusting the device (30-day tokens) or not (24-hour tokens).
    Approve {
        /// Whether the person trusts the device.
        trusted: bool,
    },
    /// Refuse.
    Deny,
}

impl Command for DecideDevice {
    const SERVICE: &'static str = "devices";
    const NAME: &'static str = "decide_device";
    type Output = DeviceId;
    type Code = crate::failures::DevicesFailure;
}

/// Finds the pending authorization with `user_code`, to show the person what is asking
/// before they decide. Appends nothing; a miss counts as a wrong code like a decision.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FindPendingDevice {
    /// What the person typed.
    pub user_code: String,
}

impl Command for FindPendingDevice {
    const SERVICE: &'static str = "devices";
    const NAME: &'static str = "find_pending_device";
    type Output = DeviceId;
    type Code = crate::failures::DevicesFailure;
}

/// The device polls with its code, found approved: activates it (RFC 8628 §3.4/3.5).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RedeemDeviceCode {
    /// The device code, sealed.
    pub device_code: SealedSecret,
}

impl Command for RedeemDeviceCode {
    const SERVICE: &'static str = "devices";
    const NAME: &'static str = "redeem_device_code";
    type Output = DeviceRedeemed;
    type Code = crate::failures::DevicesFailure;
}

/// A redeemed device code: whose session to open, until when.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceRedeemed {
    /// The device.
    pub device_id: DeviceId,
    /// Its owner, the token's subject.
    pub owner: UserId,
    /// Whether the owner trusts it.
    pub trusted: bool,
    /// When the token ends.
    pub token_expires_at: DateTime<Utc>,
}

/// Locks or unlocks a device (its owner or an admin).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SetDeviceLock {
    /// The device.
    pub id: DeviceId,
    /// Lock (true) or unlock (false).
    pub locked: bool,
}

impl Command for SetDeviceLock {
    const SERVICE: &'static str = "devices";
    const NAME: &'static str = "set_device_lock";
    type Output = ();
    type Code = crate::failures::DevicesFailure;
}

/// Deletes a device (its owner or an admin).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeleteDevice {
    /// The device.
    pub id: DeviceId,
}

impl Command for DeleteDevice {
    const SERVICE: &'static str = "devices";
    const NAME: &'static str = "delete_device";
    type Output = ();
    type Code = crate::failures::DevicesFailure;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Role;
    use crate::ids::PrincipalKind;

    /// `seconds` after the request (2026-01-01T12:00:00Z).
    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_268_800 + seconds, 0).unwrap()
    }

    /// A request made at `at(0)`, lapsing after 600 s.
    fn requested() -> DeviceFacts {
        DeviceFacts::requested(&DeviceAuthorizationRequested {
            client_id: "gatehouse-cli".into(),
            scope: None,
            metadata: DeviceMetadata::default(),
            requested_at: at(0),
            expires_at: at(600),
            interval_seconds: 5,
            device_code_hash: "hash".into(),
        })
    }

    fn after(mut facts: DeviceFacts, events: &[DeviceEvent]) -> DeviceFacts {
        for event in events {
            facts.evolve(event);
        }
        facts
    }

    fn verified(owner: UserId) -> DeviceEvent {
        DeviceEvent::Verified(DeviceVerified {
            user_id: owner,
            trusted: false,
            verified_at: at(30),
        })
    }

    fn activated() -> DeviceEvent {
        DeviceEvent::Activated(DeviceActivated {
            activated_at: at(35),
            token_expires_at: at(3600),
        })
    }

    fn alice() -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(1))
    }

    #[test]
    fn a_poll_redeems_only_an_approved_unredeemed_device() {
        let pending = requested();
        assert_eq!(pending.poll(at(10)), Err(PollRefusal::AuthorizationPending));
        assert_eq!(pending.poll(at(600)), Err(PollRefusal::ExpiredToken));

        let denied = after(
            requested(),
            &[DeviceEvent::Denied(DeviceDenied {
                user_id: alice(),
                denied_at: at(20),
            })],
        );
        assert_eq!(denied.poll(at(21)), Err(PollRefusal::AccessDenied));
        assert_eq!(denied.poll(at(900)), Err(PollRefusal::AccessDenied));

        let approved = after(requested(), &[verified(alice())]);
        assert_eq!(approved.poll(at(31)), Ok(()));
        assert_eq!(
            approved.poll(at(600)),
            Err(PollRefusal::ExpiredToken),
            "approved but not redeemed before the request lapsed"
        );

        // Redeemed: the code works once, whatever became of the session since.
        let active = after(requested(), &[verified(alice()), activated()]);
        assert_eq!(active.poll(at(40)), Err(PollRefusal::InvalidGrant));
        assert_eq!(active.poll(at(3600)), Err(PollRefusal::InvalidGrant));
        let locked = after(
            requested(),
            &[
                verified(alice()),
                activated(),
                DeviceEvent::Locked(DeviceLocked {}),
            ],
        );
        assert_eq!(locked.poll(at(40)), Err(PollRefusal::InvalidGrant));
    }

    #[test]
    fn poll_refusals_are_the_oauth_error_codes() {
        for (refusal, code) in [
            (PollRefusal::AuthorizationPending, "authorization_pending"),
            (PollRefusal::AccessDenied, "access_denied"),
            (PollRefusal::ExpiredToken, "expired_token"),
            (PollRefusal::InvalidGrant, "invalid_grant"),
        ] {
            assert_eq!(refusal.as_str(), code);
            assert_eq!(refusal.to_string(), code);
        }
    }

    #[test]
    fn only_the_owner_or_an_admin_sees_a_device() {
        let viewer = |n: u128, kind, role| {
            DeviceViewer::of(&Caller {
                id: PrincipalId::from_uuid(uuid::Uuid::from_u128(n)),
                kind,
                name: "someone".into(),
                role,
            })
        };
        let owner = viewer(1, PrincipalKind::User, Role::Member);
        let other = viewer(2, PrincipalKind::User, Role::Member);
        let account = viewer(3, PrincipalKind::ServiceAccount, Role::Member);
        let admin = viewer(4, PrincipalKind::User, Role::Admin);

        let device = after(requested(), &[verified(alice()), activated()]);
        assert!(owner.may_see(&device));
        assert!(admin.may_see(&device));
        assert!(!other.may_see(&device));
        assert!(!account.may_see(&device));

        // A pending authorization is nobody's yet.
        let pending = requested();
        assert!(admin.may_see(&pending));
        assert!(!owner.may_see(&pending));
        assert!(!other.may_see(&pending));

        // Listings: an admin's shows every device, anyone else's their own.
        assert_eq!(admin.listed_owner(), None);
        assert_eq!(owner.listed_owner(), Some(PrincipalId::from(alice())));
        assert_eq!(account.listed_owner(), Some(account.id));
    }

    #[test]
    fn a_request_awaits_a_decision_until_approved_or_denied() {
        assert!(requested().awaiting_decision());
        assert!(!after(requested(), &[verified(alice())]).awaiting_decision());
        let denied = after(
            requested(),
            &[DeviceEvent::Denied(DeviceDenied {
                user_id: alice(),
                denied_at: at(20),
            })],
        );
        assert!(!denied.awaiting_decision());
    }
}
