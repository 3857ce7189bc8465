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
use crate::commands::Command;
use crate::envelope::StreamId;
use crate::ids::{DeviceId, UserId};

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
