//! Proof that a command comes from a gateway, bound to that one command.
//!
//! NATS permissions decide who may publish on `gatehouse.cmd.>` (only gateways), but one
//! leaked bus credential must not be the keys to everything: a command names its caller in
//! its envelope, and a service acts with that caller's authority. So the gateway signs
//! every command it sends, and a service acts only on a command whose proof checks out:
//!
//! ```text
//! Gatehouse-Command-Proof: v1.<issued, unix ms>.<nonce, uuid>.<base64url HMAC-SHA-256>
//!     over "v1" | subject | issued | nonce | payload   (each length-prefixed)
//! ```
//!
//! - The MAC covers the subject and the whole payload (command, caller, metadata,
//!   idempotency key), so a captured proof cannot authorize an edited command, or the same
//!   body sent to another command.
//! - A proof lives [`PROOF_LIFETIME`]: older ones (and ones from further than
//!   [`CLOCK_SKEW`] in the future) are refused.
//! - Each replica of a service remembers the nonces it accepted for longer than a proof
//!   lives and refuses to see one twice, so a proof captured off the bus cannot be replayed
//!   to the replica that served it. (Replicas do not share what they saw: within the
//!   lifetime, the same identical command could reach each *other* replica once. Commands
//!   that create are idempotent by key, and secrets in replies are sealed for the gateway,
//!   so such a replay reveals nothing and changes little; see decision 0010.)
//!
//! The MAC key is derived from the master key (purpose [`PROOF_KEY_PURPOSE`]), which every
//! Gatehouse process holds and a NATS credential does not give.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_secrets::MasterKey;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// The message header carrying the proof.
pub const PROOF_HEADER: &str = "Gatehouse-Command-Proof";
/// How long a proof is accepted after it was issued.
pub const PROOF_LIFETIME: Duration = Duration::from_secs(30);
/// How far in the future an issue time may be (clocks of gateway and service differ).
pub const CLOCK_SKEW: Duration = Duration::from_secs(5);
/// The master-key derivation purpose of the proof key.
pub const PROOF_KEY_PURPOSE: &str = "gatehouse command proof v1";

const VERSION: &str = "v1";

/// Why a command's proof was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// No proof header.
    #[error("the command carries no proof")]
    Missing,
    /// Not of the form `v1.<ms>.<uuid>.<mac>`.
    #[error("the command's proof is malformed")]
    Malformed,
    /// The MAC does not match: another key, or an edited command.
    #[error("the command's proof does not match the command")]
    Mismatch,
    /// Issued more than [`PROOF_LIFETIME`] ago, or too far in the future.
    #[error("the command's proof has expired")]
    Expired,
    /// This nonce was already accepted.
    #[error("the command's proof was already used")]
    Replayed,
}

/// Signs commands (gateway side) and checks them (service side).
pub struct CommandProofs {
    key: [u8; 32],
    seen: Mutex<ReplayWindow>,
}

impl std::fmt::Debug for CommandProofs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandProofs").finish_non_exhaustive()
    }
}

impl CommandProofs {
    /// Proofs under the key derived from `master`.
    pub fn new(master: &MasterKey) -> Self {
        Self {
            key: *master.derive_key(PROOF_KEY_PURPOSE).expose(),
            seen: Mutex::new(ReplayWindow::default()),
        }
    }

    /// The proof header value for sending `payload` on `subject` now.
    pub fn sign(&self, subject: &str, payload: &[u8]) -> String {
        self.sign_at(subject, payload, unix_ms(SystemTime::now()), Uuid::new_v4())
    }

    fn sign_at(&self, subject: &str, payload: &[u8], issued_ms: u64, nonce: Uuid) -> String {
        let mac = self.mac(subject, payload, issued_ms, nonce).finalize();
        format!(
            "{VERSION}.{issued_ms}.{nonce}.{}",
            URL_SAFE_NO_PAD.encode(mac.into_bytes())
        )
    }

    /// Checks `proof` for `payload` on `subject` now, and remembers its nonce.
    pub fn verify(
        &self,
        subject: &str,
        payload: &[u8],
        proof: Option<&str>,
    ) -> Result<(), ProofError> {
        self.verify_at(subject, payload, proof, SystemTime::now())
    }

    fn verify_at(
        &self,
        subject: &str,
        payload: &[u8],
        proof: Option<&str>,
        now: SystemTime,
    ) -> Result<(), ProofError> {
        let proof = proof.ok_or(ProofError::Missing)?;
        let mut parts = proof.split('.');
        let (Some(VERSION), Some(issued), Some(nonce), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(ProofError::Malformed);
        };
        let issued_ms: u64 = issued.parse().map_err(|_| ProofError::Malformed)?;
        let nonce = Uuid::parse_str(nonce).map_err(|_| ProofError::Malformed)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| ProofError::Malformed)?;
        self.mac(subject, payload, issued_ms, nonce)
            .verify_slice(&mac)
            .map_err(|_| ProofError::Mismatch)?;
        let now_ms = unix_ms(now);
        let lifetime = PROOF_LIFETIME.as_millis() as u64;
        let skew = CLOCK_SKEW.as_millis() as u64;
        if issued_ms.saturating_add(lifetime) < now_ms || issued_ms > now_ms.saturating_add(skew) {
            return Err(ProofError::Expired);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.insert(nonce, now_ms) {
            Ok(())
        } else {
            Err(ProofError::Replayed)
        }
    }

    fn mac(&self, subject: &str, payload: &[u8], issued_ms: u64, nonce: Uuid) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for part in [
            VERSION.as_bytes(),
            subject.as_bytes(),
            &issued_ms.to_be_bytes(),
            nonce.as_bytes(),
            payload,
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The nonces accepted recently, in two generations that each span at least a proof's
/// lifetime plus the skew: every nonce of a still-acceptable proof is in one of them, and
/// memory stays bounded by the command rate times twice that span.
#[derive(Debug, Default)]
struct ReplayWindow {
    current: HashSet<Uuid>,
    previous: HashSet<Uuid>,
    current_since_ms: u64,
}

impl ReplayWindow {
    /// Adds `nonce`; `false` when it was already there.
    fn insert(&mut self, nonce: Uuid, now_ms: u64) -> bool {
        let span = (PROOF_LIFETIME + CLOCK_SKEW).as_millis() as u64;
        if now_ms.saturating_sub(self.current_since_ms) >= span {
            self.previous = std::mem::take(&mut self.current);
            self.current_since_ms = now_ms;
        }
        if self.previous.contains(&nonce) {
            return false;
        }
        self.current.insert(nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proofs() -> CommandProofs {
        CommandProofs::new(&MasterKey::generate())
    }

    const SUBJECT: &str = "gatehouse.cmd.keys.delete_api_key";
    const BODY: &[u8] = br#"{"command":{"id":"k"},"caller":{"name":"alice"}}"#;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn a_fresh_proof_of_the_same_command_is_accepted_once() {
        let p = proofs();
        let proof = p.sign_at(SUBJECT, BODY, 1_000_000, Uuid::new_v4());
        assert_eq!(
            p.verify_at(SUBJECT, BODY, Some(&proof), at(1_000_500)),
            Ok(())
        );
        assert_eq!(
            p.verify_at(SUBJECT, BODY, Some(&proof), at(1_001_000)),
            Err(ProofError::Replayed)
        );
    }

    #[test]
    fn an_edited_command_or_another_subject_does_not_match() {
        let p = proofs();
        let proof = p.sign_at(SUBJECT, BODY, 1_000_000, Uuid::new_v4());
        let edited = br#"{"command":{"id":"k"},"caller":{"name":"admin"}}"#;
        assert_eq!(
            p.verify_at(SUBJECT, edited, Some(&proof), at(1_000_001)),
            Err(ProofError::Mismatch)
        );
        assert_eq!(
            p.verify_at(
                "gatehouse.cmd.keys.rotate_api_key",
                BODY,
                Some(&proof),
                at(1_000_001)
            ),
            Err(ProofError::Mismatch)
        );
    }

    #[test]
    fn another_master_key_does_not_match() {
        let proof = proofs().sign_at(SUBJECT, BODY, 1_000_000, Uuid::new_v4());
        assert_eq!(
            proofs().verify_at(SUBJECT, BODY, Some(&proof), at(1_000_001)),
            Err(ProofError::Mismatch)
        );
    }

    #[test]
    fn proofs_expire_and_cannot_come_from_the_future() {
        let p = proofs();
        let issued = 10_000_000;
        let lifetime = PROOF_LIFETIME.as_millis() as u64;
        let skew = CLOCK_SKEW.as_millis() as u64;
        let old = p.sign_at(SUBJECT, BODY, issued, Uuid::new_v4());
        assert_eq!(
            p.verify_at(SUBJECT, BODY, Some(&old), at(issued + lifetime + 1)),
            Err(ProofError::Expired)
        );
        let future = p.sign_at(SUBJECT, BODY, issued + skew + 1, Uuid::new_v4());
        assert_eq!(
            p.verify_at(SUBJECT, BODY, Some(&future), at(issued)),
            Err(ProofError::Expired)
        );
        let last_moment = p.sign_at(SUBJECT, BODY, issued, Uuid::new_v4());
        assert_eq!(
            p.verify_at(SUBJECT, BODY, Some(&last_moment), at(issued + lifetime)),
            Ok(())
        );
    }

    #[test]
    fn missing_and_malformed_proofs_are_refused() {
        let p = proofs();
        assert_eq!(
            p.verify_at(SUBJECT, BODY, None, at(0)),
            Err(ProofError::Missing)
        );
        for bad in [
            "",
            "v1",
            "v2.1.2.3",
            "v1.x.00000000-0000-0000-0000-000000000000.AA",
            "v1.1.nonce.AA",
            "v1.1.00000000-0000-0000-0000-000000000000.!!",
            "v1.1.00000000-0000-0000-0000-000000000000.AA.extra",
        ] {
            assert_eq!(
                p.verify_at(SUBJECT, BODY, Some(bad), at(0)),
                Err(ProofError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_nonce_is_remembered_for_as_long_as_its_proof_is_acceptable() {
        let p = proofs();
        let nonce = Uuid::new_v4();
        let issued = 50_000_000;
        let proof = p.sign_at(SUBJECT, BODY, issued, nonce);
        assert_eq!(p.verify_at(SUBJECT, BODY, Some(&proof), at(issued)), Ok(()));
        // Other commands keep turning the generations over until the proof expires.
        let lifetime = PROOF_LIFETIME.as_millis() as u64;
        let mut t = issued;
        while t < issued + lifetime {
            t += 1_000;
            let other = p.sign_at(SUBJECT, BODY, t, Uuid::new_v4());
            assert_eq!(p.verify_at(SUBJECT, BODY, Some(&other), at(t)), Ok(()));
            if t <= issued + lifetime {
                assert_eq!(
                    p.verify_at(SUBJECT, BODY, Some(&proof), at(t)),
                    Err(ProofError::Replayed),
                    "at +{} ms",
                    t - issued
                );
            }
        }
    }
}
