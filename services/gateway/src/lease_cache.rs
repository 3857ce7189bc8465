//! Live leases this gateway replica hands out again without asking the connectors
//! service: the answer to a credentials request, kept in memory (never stored) while the
//! lease has more than a quarter of its life left.
//!
//! Reuse is traffic, not a decision: it appends nothing, and it is allowed only while
//! nothing changed. Each hit is checked against the connector as this replica's
//! directory knows it now (the write barrier makes every change, a revoked grant
//! included, reach every replica before its command is answered): the caller must still
//! be allowed the lease's resource, and the connector must be unchanged since the lease
//! was issued (any change to it ends reuse, as in the connectors service). Leases whose
//! credentials can be revoked are never kept: a revocation must end them at once, and
//! the directory does not follow leases.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use gatehouse_contracts::commands::Caller;
use gatehouse_contracts::connectors::{ConnectorView, lease_reusable};
use uuid::Uuid;

/// The most answers one replica keeps.
const MAX_ENTRIES: usize = 100_000;
/// How often a reused lease's last use is recorded, at most.
const RECORD_USE_EVERY: chrono::Duration = chrono::Duration::seconds(60);

/// What a credentials request asks for, as asked (resource id not canonicalised: the
/// same words get the same lease).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReuseKey {
    /// Who asks.
    pub principal: Uuid,
    /// Through which connector.
    pub connector: Uuid,
    /// The resource type.
    pub resource_type: String,
    /// The resource id as given.
    pub resource_id: Option<String>,
    /// The component asked through.
    pub component: Option<Uuid>,
}

/// A lease's answer, as first given.
#[derive(Clone, Debug)]
pub struct LeaseAnswer {
    /// The lease.
    pub lease_id: Uuid,
    /// The resource it is for (canonical).
    pub resource_id: Option<String>,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When its credentials expire.
    pub expires_at: DateTime<Utc>,
    /// The JSON answer (with the credentials).
    pub body: Bytes,
}

struct Entry {
    answer: LeaseAnswer,
    connector_updated: DateTime<Utc>,
    last_recorded_use: DateTime<Utc>,
}

/// A hit: the answer, and whether its use should be recorded now.
#[derive(Debug)]
pub struct Reused {
    /// The answer.
    pub answer: LeaseAnswer,
    /// Record the lease's last use (at most once a minute).
    pub record_use: bool,
}

/// The cache.
#[derive(Default)]
pub struct LeaseCache {
    entries: Mutex<HashMap<ReuseKey, Entry>>,
}

impl std::fmt::Debug for LeaseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseCache").finish_non_exhaustive()
    }
}

impl LeaseCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<ReuseKey, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live answer for `key`, if `caller` may still have it from `connector` as it
    /// is now.
    pub fn reuse(
        &self,
        key: &ReuseKey,
        connector: &ConnectorView,
        caller: &Caller,
        now: DateTime<Utc>,
    ) -> Option<Reused> {
        let mut entries = self.entries();
        let entry = entries.get_mut(key)?;
        let allowed = connector
            .connector
            .access(caller)
            .covers(entry.answer.resource_id.as_deref());
        if !allowed
            || connector.updated != entry.connector_updated
            || !lease_reusable(entry.answer.issued_at, entry.answer.expires_at, now)
        {
            entries.remove(key);
            return None;
        }
        let record_use = now - entry.last_recorded_use >= RECORD_USE_EVERY;
        if record_use {
            entry.last_recorded_use = now;
        }
        Some(Reused {
            answer: entry.answer.clone(),
            record_use,
        })
    }

    /// Keeps a new lease's answer for reuse (not one whose credentials are revocable).
    pub fn remember(
        &self,
        key: ReuseKey,
        connector: &ConnectorView,
        answer: LeaseAnswer,
        revocable: bool,
        now: DateTime<Utc>,
    ) {
        if revocable {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| lease_reusable(e.answer.issued_at, e.answer.expires_at, now));
            if entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        entries.insert(
            key,
            Entry {
                answer,
                connector_updated: connector.updated,
                last_recorded_use: now,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::Duration;
    use gatehouse_contracts::connectors::{Connector, ConnectorGrant};
    use gatehouse_contracts::identity::Role;
    use gatehouse_contracts::ids::{ConnectorId, PrincipalId, PrincipalKind};

    use super::*;

    fn t0() -> DateTime<Utc> {
        "2026-12-03T12:00:00Z".parse().unwrap()
    }

    fn caller(id: PrincipalId) -> Caller {
        Caller {
            id,
            kind: PrincipalKind::ServiceAccount,
            name: "ci-bot".into(),
            role: Role::Member,
        }
    }

    fn connector(owner: PrincipalId, grants: Vec<ConnectorGrant>) -> ConnectorView {
        ConnectorView {
            id: ConnectorId::new(),
            connector: Connector {
                name: "aws-s3".into(),
                connector_type: "aws".into(),
                auth_method: "iam-role".into(),
                resource_types: Vec::new(),
                resource_id: None,
                configuration: Default::default(),
                secret_fields: Vec::new(),
                labels: BTreeMap::new(),
                description: String::new(),
                expiration_seconds: None,
                expires_at: None,
                long_lived: false,
                implicit: false,
                owner,
                grants,
                components: Vec::new(),
            },
            created: t0(),
            updated: t0(),
        }
    }

    fn key(principal: PrincipalId, connector: &ConnectorView) -> ReuseKey {
        ReuseKey {
            principal: principal.as_uuid(),
            connector: connector.id.as_uuid(),
            resource_type: "s3-bucket".into(),
            resource_id: Some("b".into()),
            component: None,
        }
    }

    fn answer() -> LeaseAnswer {
        LeaseAnswer {
            lease_id: Uuid::new_v4(),
            resource_id: Some("s3://b".into()),
            issued_at: t0(),
            expires_at: t0() + Duration::seconds(400),
            body: Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn a_live_lease_is_reused_and_its_use_recorded_once_a_minute() {
        let owner = PrincipalId::new();
        let c = connector(owner, Vec::new());
        let cache = LeaseCache::default();
        cache.remember(key(owner, &c), &c, answer(), false, t0());
        let first = cache.reuse(
            &key(owner, &c),
            &c,
            &caller(owner),
            t0() + Duration::seconds(10),
        );
        assert!(!first.expect("reused").record_use);
        let later = cache.reuse(
            &key(owner, &c),
            &c,
            &caller(owner),
            t0() + Duration::seconds(70),
        );
        assert!(later.expect("reused").record_use);
        // Past three quarters of its life: not any more.
        assert!(
            cache
                .reuse(
                    &key(owner, &c),
                    &c,
                    &caller(owner),
                    t0() + Duration::seconds(300)
                )
                .is_none()
        );
    }

    #[test]
    fn a_revoked_grant_or_a_changed_connector_ends_reuse_and_revocable_leases_are_never_kept() {
        let owner = PrincipalId::new();
        let bot = PrincipalId::new();
        let grant = ConnectorGrant {
            principal: bot,
            principal_name: "ci-bot".into(),
            resource_ids: None,
        };
        let granted = connector(owner, vec![grant]);
        let cache = LeaseCache::default();
        cache.remember(key(bot, &granted), &granted, answer(), false, t0());
        assert!(
            cache
                .reuse(&key(bot, &granted), &granted, &caller(bot), t0())
                .is_some()
        );
        let mut revoked = granted.clone();
        revoked.connector.grants.clear();
        assert!(
            cache
                .reuse(&key(bot, &revoked), &revoked, &caller(bot), t0())
                .is_none()
        );

        cache.remember(key(bot, &granted), &granted, answer(), false, t0());
        let mut changed = granted.clone();
        changed.updated = t0() + Duration::seconds(1);
        assert!(
            cache
                .reuse(&key(bot, &changed), &changed, &caller(bot), t0())
                .is_none()
        );

        cache.remember(key(bot, &granted), &granted, answer(), true, t0());
        assert!(
            cache
                .reuse(&key(bot, &granted), &granted, &caller(bot), t0())
                .is_none()
        );
    }
}
