//! Device codes (RFC 8628) and user codes: their keyed hashes.
//!
//! A device code has the API-key format with the `gatehouse_dc_` prefix
//! ([`DEVICE_CODE_FORMAT`]) and is stored only as a keyed hash, like an API key's secret;
//! a user code is kept only as an HMAC (the value of the unique claim that maps it to its
//! device), so neither the log nor the claims table holds a code.

use gatehouse_secrets::MasterKey;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::{ApiKeyHash, ApiKeyHasher, ApiKeySecret, DEVICE_CODE_FORMAT};

/// The master-key purpose of the device-code hashing pepper.
const DEVICE_CODE_PEPPER: &str = "gatehouse/device-code-pepper/v1";
/// The master-key purpose of the user-code claim key.
const USER_CODE_PEPPER: &str = "gatehouse/user-code-pepper/v1";

/// Device and user codes' keyed hashing: the devices service stores the hashes, and every
/// gateway replica holds one too, to check polled device codes in memory.
pub struct DeviceCodes {
    device: ApiKeyHasher,
    user: Hmac<Sha256>,
}

impl std::fmt::Debug for DeviceCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCodes").finish_non_exhaustive()
    }
}

impl DeviceCodes {
    /// Keys derived from `master`: every process with the same master key agrees.
    pub fn new(master: &MasterKey) -> Self {
        let device = ApiKeyHasher::new(*master.derive_key(DEVICE_CODE_PEPPER).expose());
        let user =
            <Hmac<Sha256> as Mac>::new_from_slice(master.derive_key(USER_CODE_PEPPER).expose())
                .expect("HMAC takes keys of any length");
        Self { device, user }
    }

    /// The stored form of a device code's secret.
    pub fn device_code_hash(&self, device_id: Uuid, secret: &ApiKeySecret) -> String {
        self.device.hash(device_id, secret).to_hex()
    }

    /// The device a presented device code belongs to, if it is well formed and matches
    /// `expected_hash` (compared in constant time).
    pub fn check_device_code(&self, code: &str, expected_hash: &str) -> bool {
        let (Ok(parsed), Ok(expected)) = (
            DEVICE_CODE_FORMAT.parse(code),
            ApiKeyHash::from_hex(expected_hash),
        ) else {
            return false;
        };
        self.device.verify(parsed.key_id, &parsed.secret, &expected)
    }

    /// The claim value (scope `USER_CODE_SCOPE` of `gatehouse_contracts::devices`) that maps a normalized user code to its
    /// stream: HMAC-SHA-256 (hex) under a key derived from the master key, so the claims
    /// table does not hold the codes themselves.
    pub fn user_code_claim(&self, normalized: &str) -> String {
        let mut mac = self.user.clone();
        mac.update(normalized.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
