//! The keyring's command handlers, its rotation schedule and their settings.
//!
//! A new key is generated here, its private half sealed under the master key
//! (`gatehouse_tokens::SigningKeySeal`) into the keyring stream's secret slot in the same
//! transaction as the `keyring.signing_key_added` event; retiring a key deletes that slot
//! (crypto-shredding: a retired key can never sign again). Gateways only read the keyring.
//! Every identity replica may run the schedule: each decision is taken again on the
//! keyring as the log has it when appending, so replicas add one key and retire each key
//! once between them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_contracts::commands::{Accepted, CommandEnvelope, Failure, FailureKind};
use gatehouse_contracts::envelope::{Actor, EventMetadata};
use gatehouse_contracts::failures::{CommonFailure, IdentityFailure};
use gatehouse_contracts::keyring::{
    AddSigningKey, EnsureSigningKey, KeyringView, RetireSigningKey, SigningKeyAdded,
    SigningKeyCreated, SigningKeyEnsured, keyring_stream, signing_key_slot,
};
use gatehouse_eventlog::writer::require_caller;
use gatehouse_eventlog::{CommandWriter, Extras, SecretOp};
use gatehouse_secrets::MasterKey;
use gatehouse_tokens::SigningKeySeal;
use tokio::sync::watch;

use crate::domain::keyring::{self, Keyring, KeyringRejection, RotationSchedule};

impl From<KeyringRejection> for Failure {
    fn from(r: KeyringRejection) -> Self {
        let message = r.to_string();
        match r {
            KeyringRejection::NotFound(_) => {
                Failure::new(FailureKind::NotFound, CommonFailure::NotFound, message)
            }
            KeyringRejection::LastSigner(_) => {
                Failure::new(FailureKind::Conflict, IdentityFailure::LastSigner, message)
            }
            KeyringRejection::TooFarAhead => {
                Failure::new(FailureKind::Invalid, CommonFailure::Invalid, message)
            }
        }
    }
}

/// A new key after 90 days, signing an hour later; superseded keys retired 31 days after
/// (longer than any token lives).
const ROTATE_SECONDS: u64 = 90 * 86_400;
const ACTIVATE_SECONDS: u64 = 3600;
const RETIRE_SECONDS: u64 = 31 * 86_400;

/// The signing-key schedule, as flags and environment variables.
#[derive(Clone, Debug, clap::Args)]
pub struct KeyringSettings {
    /// Seconds a signing key signs before a new one is added by itself (0: never).
    #[arg(long, env = "GATEHOUSE_SIGNING_KEY_ROTATE_SECONDS", default_value_t = ROTATE_SECONDS)]
    pub signing_key_rotate_seconds: u64,
    /// Seconds between adding a key by schedule and its first signature.
    #[arg(
        long,
        env = "GATEHOUSE_SIGNING_KEY_ACTIVATE_SECONDS",
        default_value_t = ACTIVATE_SECONDS
    )]
    pub signing_key_activate_seconds: u64,
    /// Seconds a superseded key keeps verifying before it is retired by itself (0: never).
    /// Must exceed the longest token lifetime (a trusted device's: 30 days by default).
    #[arg(long, env = "GATEHOUSE_SIGNING_KEY_RETIRE_SECONDS", default_value_t = RETIRE_SECONDS)]
    pub signing_key_retire_seconds: u64,
}

impl Default for KeyringSettings {
    fn default() -> Self {
        Self {
            signing_key_rotate_seconds: ROTATE_SECONDS,
            signing_key_activate_seconds: ACTIVATE_SECONDS,
            signing_key_retire_seconds: RETIRE_SECONDS,
        }
    }
}

impl KeyringSettings {
    /// The schedule these settings describe.
    pub fn schedule(&self) -> RotationSchedule {
        let seconds =
            |s: u64| chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000));
        let period = |s: u64| (s > 0).then(|| seconds(s));
        RotationSchedule {
            rotate_after: period(self.signing_key_rotate_seconds),
            activate_after: seconds(self.signing_key_activate_seconds),
            retire_after: period(self.signing_key_retire_seconds),
        }
    }

    /// Refuses a schedule that would end sessions early: retiring superseded keys sooner
    /// than the longest token lifetime (`longest_token_ttl`, seconds).
    pub fn check(&self, longest_token_ttl: u64) -> anyhow::Result<()> {
        if self.signing_key_retire_seconds != 0
            && self.signing_key_retire_seconds <= longest_token_ttl
        {
            anyhow::bail!(
                "GATEHOUSE_SIGNING_KEY_RETIRE_SECONDS ({}) must exceed the longest token lifetime \
                 ({longest_token_ttl} s), or superseded keys are retired while their tokens are \
                 still in use",
                self.signing_key_retire_seconds
            );
        }
        Ok(())
    }
}

/// The keyring's write side: generates, seals, adds and retires signing keys.
#[derive(Clone)]
pub struct KeyringKeeper {
    writer: CommandWriter,
    seal: Arc<SigningKeySeal>,
}

impl std::fmt::Debug for KeyringKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringKeeper").finish_non_exhaustive()
    }
}

fn system() -> EventMetadata {
    EventMetadata {
        actor: Some(Actor::system()),
        ..EventMetadata::default()
    }
}

impl KeyringKeeper {
    /// A keeper appending through `writer`, sealing with a key derived from `master`.
    pub fn new(writer: CommandWriter, master: &MasterKey) -> Self {
        Self {
            writer,
            seal: Arc::new(SigningKeySeal::new(master)),
        }
    }

    /// A fresh key signing from `active_from`: its public half as an event payload, and
    /// the secret-slot write of its sealed private half.
    fn new_key(&self, active_from: DateTime<Utc>) -> Result<(SigningKeyAdded, SecretOp), Failure> {
        let (_, added, sealed) = self.seal.generate(active_from).map_err(|e| {
            tracing::error!(error = %e, "sealing a signing key failed");
            Failure::new(
                FailureKind::Internal,
                IdentityFailure::SealingFailed,
                "the key cannot be sealed",
            )
        })?;
        let secret = SecretOp::Put {
            name: signing_key_slot(&added.kid),
            value: sealed,
        };
        Ok((added, secret))
    }

    /// Adds a key signing from `active_from` when `due` holds for the keyring as the log
    /// has it; the new key's id, or `None` when it was not due.
    async fn add_when(
        &self,
        active_from: DateTime<Utc>,
        due: impl Fn(&KeyringView) -> bool,
        metadata: &EventMetadata,
    ) -> Result<Accepted<Option<String>>, Failure> {
        let (added, secret) = self.new_key(active_from)?;
        let now = self.writer.clock().now();
        self.writer
            .update_with_retry::<Keyring, _, _, _>(keyring_stream(), metadata, |keyring| {
                let events = keyring::add(keyring, added.clone(), &due, now)?;
                let kid = (!events.is_empty()).then(|| added.kid.clone());
                let extras = Extras {
                    // The sealed private half goes in only with the event that adds it.
                    secrets: if events.is_empty() {
                        vec![]
                    } else {
                        vec![secret.clone()]
                    },
                    ..Extras::default()
                };
                Ok::<_, KeyringRejection>((events, extras, kid))
            })
            .await
    }

    /// Creates the first key unless there is one.
    #[tracing::instrument(skip_all)]
    pub async fn ensure(
        &self,
        env: CommandEnvelope<EnsureSigningKey>,
    ) -> Result<Accepted<SigningKeyEnsured>, Failure> {
        let now = self.writer.clock().now();
        let accepted = self
            .add_when(now, |view| view.keys.is_empty(), &env.metadata)
            .await?;
        if let Some(kid) = &accepted.output {
            tracing::info!(kid, "first token signing key created");
        }
        Ok(Accepted {
            output: SigningKeyEnsured {
                created: accepted.output.is_some(),
            },
            written: accepted.written,
        })
    }

    /// Adds a key (admins only).
    #[tracing::instrument(skip_all)]
    pub async fn add(
        &self,
        env: CommandEnvelope<AddSigningKey>,
    ) -> Result<Accepted<SigningKeyCreated>, Failure> {
        require_admin(env.caller.clone())?;
        let accepted = self
            .add_when(env.command.active_from, |_| true, &env.metadata)
            .await?;
        let kid = accepted.output.ok_or_else(|| {
            Failure::new(
                FailureKind::Internal,
                CommonFailure::AppendFailed,
                "the key was not added",
            )
        })?;
        Ok(Accepted {
            output: SigningKeyCreated { kid },
            written: accepted.written,
        })
    }

    /// Retires a key (admins only), deleting its sealed private half.
    #[tracing::instrument(skip_all, fields(kid = %env.command.kid))]
    pub async fn retire(
        &self,
        env: CommandEnvelope<RetireSigningKey>,
    ) -> Result<Accepted<()>, Failure> {
        require_admin(env.caller.clone())?;
        self.retire_at(&env.command.kid, &env.metadata).await
    }

    async fn retire_at(
        &self,
        kid: &str,
        metadata: &EventMetadata,
    ) -> Result<Accepted<()>, Failure> {
        let now = self.writer.clock().now();
        // The sealed private half goes with it: a retired key can never sign again, even
        // for someone holding the master key and a copy of the database from now on.
        let shred = SecretOp::Delete {
            name: signing_key_slot(kid),
        };
        self.writer
            .update_with_retry::<Keyring, _, _, _>(keyring_stream(), metadata, |keyring| {
                let events = keyring::retire(keyring, kid, now)?;
                let extras = Extras {
                    secrets: if events.is_empty() {
                        vec![]
                    } else {
                        vec![shred.clone()]
                    },
                    ..Extras::default()
                };
                Ok::<_, KeyringRejection>((events, extras, ()))
            })
            .await
    }

    /// Rotates and retires keys on `schedule` until `shutdown`.
    pub async fn run_schedule(
        self,
        schedule: RotationSchedule,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if !schedule.is_enabled() {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(schedule.tick()) => {}
                _ = shutdown.changed() => return,
            }
            if let Err(failure) = self.scheduled_changes(&schedule).await {
                tracing::warn!(error = %failure.message, "scheduled signing-key change failed; retrying later");
            }
        }
    }

    async fn scheduled_changes(&self, schedule: &RotationSchedule) -> Result<(), Failure> {
        let now = self.writer.clock().now();
        let (keyring, _) = self.writer.load::<Keyring>(&keyring_stream()).await?;
        if schedule.key_due(&keyring.0, now) {
            let due = |view: &KeyringView| schedule.key_due(view, now);
            let added = self
                .add_when(now + schedule.activate_after, due, &system())
                .await?;
            if let Some(kid) = added.output {
                tracing::info!(kid, "scheduled signing-key rotation: key added");
            }
        }
        for kid in schedule.retirements_due(&keyring.0, now) {
            if self.retire_at(&kid, &system()).await?.written.is_some() {
                tracing::info!(kid, "scheduled signing-key retirement: key retired");
            }
        }
        Ok(())
    }
}

fn require_admin(caller: Option<gatehouse_contracts::commands::Caller>) -> Result<(), Failure> {
    if require_caller(caller)?.is_admin() {
        Ok(())
    } else {
        Err(Failure::new(
            FailureKind::Forbidden,
            CommonFailure::Forbidden,
            "only admins manage signing keys",
        ))
    }
}
