//! One identifier type per kind of entity, so that a user id can never be passed where a
//! service account id is expected.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new random identifier.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
            /// Wraps an existing UUID (from storage or a parsed path segment).
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            /// The underlying UUID.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

id_type!(
    /// Identifies a human user.
    UserId
);
id_type!(
    /// Identifies a service account (a non-interactive principal).
    ServiceAccountId
);
id_type!(
    /// Identifies one event in the log (also the JetStream `Nats-Msg-Id`).
    EventId
);
id_type!(
    /// Identifies an API key (the public part of the key string).
    ApiKeyId
);
id_type!(
    /// Identifies an authorized device (one RFC 8628 device authorization and the device
    /// it became).
    DeviceId
);
id_type!(
    /// Identifies a principal: a user or a service account, where either may stand (the
    /// caller of a command, the actor of an event, the owner of what a principal created).
    PrincipalId
);

id_type!(
    /// Identifies a service connector.
    ConnectorId
);
id_type!(
    /// Identifies a lease: one issue of short-lived credentials through a connector.
    LeaseId
);
id_type!(
    /// Identifies a stack component (an artifact store, a container registry, an
    /// orchestrator).
    ComponentId
);

impl From<UserId> for PrincipalId {
    fn from(id: UserId) -> Self {
        Self(id.0)
    }
}

impl From<ServiceAccountId> for PrincipalId {
    fn from(id: ServiceAccountId) -> Self {
        Self(id.0)
    }
}

/// What kind of principal an id names (`"user"` or `"service_account"` on the wire: in
/// commands, in token claims and, as an [`crate::envelope::ActorKind`], in event metadata).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A human user.
    User,
    /// A non-human service account.
    ServiceAccount,
}

impl PrincipalKind {
    /// The kind as it travels (`user`, `service_account`).
    pub const fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::ServiceAccount => "service_account",
        }
    }
}

impl std::fmt::Display for PrincipalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_kinds_travel_as_the_strings_they_always_were() {
        for (kind, wire) in [
            (PrincipalKind::User, "\"user\""),
            (PrincipalKind::ServiceAccount, "\"service_account\""),
        ] {
            assert_eq!(serde_json::to_string(&kind).unwrap(), wire);
            assert_eq!(serde_json::from_str::<PrincipalKind>(wire).unwrap(), kind);
            assert_eq!(format!("\"{kind}\""), wire);
        }
    }

    #[test]
    fn a_user_and_a_service_account_are_principals_with_the_same_uuid() {
        let user = UserId::new();
        let account = ServiceAccountId::new();
        assert_eq!(PrincipalId::from(user).as_uuid(), user.as_uuid());
        assert_eq!(PrincipalId::from(account).as_uuid(), account.as_uuid());
        let device = DeviceId::new();
        assert_eq!(
            serde_json::to_string(&device).unwrap(),
            format!("\"{}\"", device.as_uuid())
        );
    }
}
