//! The failure codes of the command protocol, one enum per service.
//!
//! On the wire a code is a plain string (`"code":"name_taken"` in a bus reply, and the
//! `code` of an HTTP error body that passes it on); in Rust it is an enum, so a service
//! fails with a variant and the gateway matches variants, never strings. Each command
//! names its service's enum ([`crate::commands::Command::Code`]), and
//! [`crate::commands::CommandFailure`] is a reply's failure with its code decoded as that
//! enum.
//!
//! The enums are forward compatible: a code this build does not know (a newer service's)
//! decodes to `Unknown` with the string kept verbatim, and encodes back to the same
//! string, so an older gateway still answers a newer service (by the failure's kind) and
//! passes its code on unchanged. Codes that every service may answer with (from the
//! shared command writer, the router and the bus) are [`CommonFailure`]s, nested in each
//! service's enum as `Common`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A failure code: a stable string on the wire, an enum in Rust.
pub trait FailureCode:
    Clone + std::fmt::Debug + std::fmt::Display + PartialEq + Send + Sync + 'static
{
    /// The code on the wire.
    fn as_str(&self) -> &str;
    /// The code a wire string means; a string this build does not know is kept as the
    /// catch-all, so that [`FailureCode::as_str`] gives it back unchanged.
    fn from_code(code: &str) -> Self;
}

/// Declares a failure-code enum: its known codes (variant = wire string), an optional
/// nested `Common` variant, and the `Unknown(String)` catch-all.
macro_rules! failure_codes {
    (
        $(#[$doc:meta])*
        $name:ident $(with $common:ident)? {
            $( $(#[$vdoc:meta])* $variant:ident = $code:literal, )*
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vdoc])* $variant, )*
            $(
                /// A code every service may answer with.
                Common($common),
            )?
            /// A code this build does not know (from a newer service), kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// Every known code (the nested common ones included), for tests and docs.
            pub fn known() -> Vec<Self> {
                #[allow(unused_mut)]
                let mut all = vec![$( Self::$variant, )*];
                $( all.extend($common::known().into_iter().map(Self::Common)); )?
                all
            }
        }

        impl FailureCode for $name {
            fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $code, )*
                    $( Self::Common(c) => <$common as FailureCode>::as_str(c), )?
                    Self::Unknown(code) => code,
                }
            }

            fn from_code(code: &str) -> Self {
                match code {
                    $( $code => Self::$variant, )*
                    _ => {
                        $(
                            let common = <$common as FailureCode>::from_code(code);
                            if !matches!(common, $common::Unknown(_)) {
                                return Self::Common(common);
                            }
                        )?
                        Self::Unknown(code.to_owned())
                    }
                }
            }
        }

        $(
            impl From<$common> for $name {
                fn from(code: $common) -> Self {
                    Self::Common(code)
                }
            }
        )?

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let code = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
                Ok(Self::from_code(&code))
            }
        }
    };
}

failure_codes!(
    /// Codes of the machinery every service shares (the command writer, the router, the
    /// bus) and of the rejections every aggregate has.
    CommonFailure {
        /// The caller may not see the target, or it does not exist (404).
        NotFound = "not_found",
        /// The caller may not do this (403).
        Forbidden = "forbidden",
        /// The request makes no sense for the target's state (422).
        Invalid = "invalid",
        /// A concurrent change won; try again (409).
        Conflict = "conflict",
        /// The command needs a signed-in caller.
        Unauthenticated = "unauthenticated",
        /// The event store is down (503).
        StoreUnavailable = "store_unavailable",
        /// A stored event cannot be read.
        CorruptStream = "corrupt_stream",
        /// A stored idempotency record cannot be read.
        CorruptIdempotency = "corrupt_idempotency",
        /// The idempotency key was used for a different request.
        IdempotencyKeyReused = "idempotency_key_reused",
        /// A request with the same idempotency key is still running.
        IdempotencyInProgress = "idempotency_in_progress",
        /// The writer was asked for an append it cannot make.
        InvalidAppend = "invalid_append",
        /// The appended events could not be answered with a view.
        NoView = "no_view",
        /// An append failed for good.
        AppendFailed = "append_failed",
        /// The command's envelope cannot be decoded.
        MalformedCommand = "malformed_command",
        /// The service has no handler for the subject.
        UnknownCommand = "unknown_command",
        /// The command's proof is missing, expired, replayed or forged.
        CommandRefused = "command_refused",
        /// No service answered in time (503).
        ServiceUnavailable = "service_unavailable",
        /// The reply cannot be encoded.
        Encode = "encode",
        /// The reply cannot be decoded.
        Decode = "decode",
    }
);

failure_codes!(
    /// Codes of the identity service (users, service accounts, passwords).
    IdentityFailure with CommonFailure {
        /// A user or service account with this id exists already.
        AlreadyExists = "already_exists",
        /// The name belongs to another principal.
        NameTaken = "name_taken",
        /// The new password is too weak.
        WeakPassword = "weak_password",
        /// The current password given to change it is wrong.
        WrongPassword = "wrong_password",
        /// Unknown user or wrong password at login.
        InvalidGrant = "invalid_grant",
        /// A sealed secret in the command cannot be opened.
        UnsealableSecret = "unsealable_secret",
        /// A password could not be hashed.
        HashingFailed = "hashing_failed",
        /// Retiring this signing key would leave none that can sign now (409).
        LastSigner = "last_signer",
        /// A new signing key's private half cannot be sealed.
        SealingFailed = "sealing_failed",
    }
);

failure_codes!(
    /// Codes of the keys service (API keys).
    KeysFailure with CommonFailure {
        /// The service account already has a key of this name.
        NameTaken = "name_taken",
        /// Unknown key or wrong secret: one answer for both.
        InvalidKey = "invalid_key",
        /// The key is deactivated.
        KeyDeactivated = "key_deactivated",
        /// The key is past its expiry.
        KeyExpired = "key_expired",
        /// The presented secret was rotated away.
        KeyRotated = "key_rotated",
        /// The sealed key in the command cannot be opened.
        UnsealableSecret = "unsealable_secret",
        /// A new key cannot be sealed for the reply.
        SealingFailed = "sealing_failed",
    }
);

failure_codes!(
    /// Codes of the devices service (RFC 8628 device authorizations and devices). The
    /// poll refusals are RFC 8628 §3.5's error codes.
    DevicesFailure with CommonFailure {
        /// The user code matches nothing usable (never says whether it exists).
        InvalidUserCode = "invalid_user_code",
        /// Nobody approved or denied the device yet.
        AuthorizationPending = "authorization_pending",
        /// A person denied the device.
        AccessDenied = "access_denied",
        /// The device code lapsed.
        ExpiredToken = "expired_token",
        /// Unknown device code, or already redeemed.
        InvalidGrant = "invalid_grant",
        /// The drawn user code is taken (the service draws another).
        UserCodeTaken = "user_code_taken",
        /// No free user code was found.
        UserCodesExhausted = "user_codes_exhausted",
        /// The user-code generator produced a code a person cannot type back.
        InvalidUserCodeGenerated = "invalid_user_code_generated",
        /// A code cannot be sealed for the reply.
        SealingFailed = "sealing_failed",
    }
);

failure_codes!(
    /// Codes of the connectors service (service connectors, leases, components).
    ConnectorsFailure with CommonFailure {
        /// The name is taken.
        NameTaken = "name_taken",
        /// Implicit auth methods are off on this server.
        ImplicitDisabled = "implicit_auth_disabled",
        /// The server refuses to hand out long-lived credentials.
        LongLivedForbidden = "long_lived_credentials_forbidden",
        /// The cloud answered with an error.
        UpstreamError = "upstream_error",
        /// The cloud did not answer in time.
        UpstreamTimeout = "upstream_timeout",
        /// The lease's credentials cannot be revoked at the cloud.
        NotRevocable = "not_revocable",
        /// The connector is used by components (the message names them).
        InUse = "in_use",
        /// The component is not connected to a connector.
        NotConnected = "not_connected",
        /// The connector's stored secrets cannot be opened (shredded or corrupt).
        SecretsUnavailable = "secrets_unavailable",
        /// A sealed secret in the command cannot be opened.
        UnsealableSecret = "unsealable_secret",
        /// Something cannot be sealed for the reply.
        SealingFailed = "sealing_failed",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every known code encodes to its string and decodes back to itself, through
    /// [`FailureCode`] and through serde alike, and no two share a string; a code this
    /// build does not know decodes to `unknown` and encodes back unchanged.
    fn round_trips<C: FailureCode + Serialize + for<'de> Deserialize<'de>>(
        known: Vec<C>,
        unknown: C,
    ) {
        let mut seen = std::collections::HashSet::new();
        for code in known {
            let wire = code.as_str().to_owned();
            assert!(seen.insert(wire.clone()), "{wire} is listed twice");
            assert_eq!(C::from_code(&wire), code, "{wire}");
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{wire}\""));
            assert_eq!(serde_json::from_str::<C>(&json).unwrap(), code);
        }
        let json = "\"from_the_future\"";
        assert_eq!(serde_json::from_str::<C>(json).unwrap(), unknown);
        assert_eq!(C::from_code("from_the_future"), unknown);
        assert_eq!(serde_json::to_string(&unknown).unwrap(), json);
    }

    #[test]
    fn every_common_code_round_trips_and_an_unknown_one_is_kept() {
        round_trips(
            CommonFailure::known(),
            CommonFailure::Unknown("from_the_future".into()),
        );
        assert_eq!(
            CommonFailure::StoreUnavailable.as_str(),
            "store_unavailable"
        );
    }

    #[test]
    fn every_identity_code_round_trips_and_an_unknown_one_is_kept() {
        round_trips(
            IdentityFailure::known(),
            IdentityFailure::Unknown("from_the_future".into()),
        );
        assert_eq!(IdentityFailure::WrongPassword.as_str(), "wrong_password");
        assert_eq!(
            IdentityFailure::from_code("not_found"),
            IdentityFailure::Common(CommonFailure::NotFound)
        );
    }

    #[test]
    fn every_keys_code_round_trips_and_an_unknown_one_is_kept() {
        round_trips(
            KeysFailure::known(),
            KeysFailure::Unknown("from_the_future".into()),
        );
        assert_eq!(KeysFailure::KeyRotated.as_str(), "key_rotated");
    }

    #[test]
    fn every_devices_code_round_trips_and_an_unknown_one_is_kept() {
        round_trips(
            DevicesFailure::known(),
            DevicesFailure::Unknown("from_the_future".into()),
        );
        assert_eq!(
            DevicesFailure::AuthorizationPending.as_str(),
            "authorization_pending"
        );
    }

    #[test]
    fn every_connectors_code_round_trips_and_an_unknown_one_is_kept() {
        round_trips(
            ConnectorsFailure::known(),
            ConnectorsFailure::Unknown("from_the_future".into()),
        );
        assert_eq!(ConnectorsFailure::NotRevocable.as_str(), "not_revocable");
    }
}
