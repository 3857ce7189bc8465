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
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::aggregate_events;
use crate::ids::UserId;

/// The aggregate name (`device-<id>` streams, `gatehouse.events.device.*` subjects).
pub const DEVICE_AGGREGATE: &str = "device";

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
