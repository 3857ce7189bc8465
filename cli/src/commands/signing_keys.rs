//! `gatehouse signing-key ...`: the keys that sign access tokens (admins only).

use super::{Context, Globals, prompt};
use crate::client::{SigningKey, SigningKeyList};
use crate::output::{self, OutputFormat, Table};

/// Manage the token-signing keys.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SigningKeyCommand {
    /// List the keys, newest first: pending, signing, verifying (superseded) or retired.
    List,
    /// Add a key: it verifies everywhere at once and signs new tokens after a delay.
    Add(AddArgs),
    /// Retire a key: every token it signed is refused at once, on every replica.
    Retire(RetireArgs),
}

/// `signing-key add`.
#[derive(Debug, Clone, clap::Args)]
pub struct AddArgs {
    /// How long until the new key signs: 90s, 15m, 1h (at most 1d); a bare number is
    /// seconds. Time for services that cache the JWKS to fetch it.
    #[arg(long, value_name = "DURATION", default_value = "60",
          value_parser = crate::duration::activate_in)]
    pub activate_in: u32,
}

/// `signing-key retire`.
#[derive(Debug, Clone, clap::Args)]
pub struct RetireArgs {
    /// The key id (from `gatehouse signing-key list`).
    #[arg(value_name = "KID")]
    pub kid: String,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

impl SigningKeyCommand {
    /// Runs the command.
    pub async fn run(self, globals: &Globals) -> anyhow::Result<()> {
        let ctx = Context::new(globals)?;
        let client = ctx.client().await?;
        match self {
            SigningKeyCommand::List => {
                let list = client.list_signing_keys().await?;
                match ctx.output() {
                    OutputFormat::Json => output::emit_json(&list),
                    OutputFormat::Table => output::emit(&key_table(&list).render()),
                }
            }
            SigningKeyCommand::Add(args) => {
                let key = client.add_signing_key(args.activate_in).await?;
                emit_key(&ctx, &key, "Added")
            }
            SigningKeyCommand::Retire(args) => {
                if !args.yes {
                    prompt::ensure_can_confirm("retire a signing key")?;
                    let question = format!(
                        "Retire signing key {:?}? Every token it signed is refused at once: \
                         everyone logged in with one (possibly you) must log in again.",
                        output::sanitize(&args.kid)
                    );
                    prompt::confirm_or_abort(question, "retired").await?;
                }
                let key = client.retire_signing_key(&args.kid).await?;
                emit_key(&ctx, &key, "Retired")
            }
        }
    }
}

fn emit_key(ctx: &Context, key: &SigningKey, done: &str) -> anyhow::Result<()> {
    match ctx.output() {
        OutputFormat::Json => output::emit_json(key),
        OutputFormat::Table => output::emit(&format!(
            "{done} signing key {} ({}, signs from {} UTC)\n",
            output::sanitize(&key.kid),
            output::sanitize(&key.status),
            output::timestamp(&key.active_from)
        )),
    }
}

pub(super) fn key_table(list: &SigningKeyList) -> Table {
    let mut table = Table::new([
        "kid".to_owned(),
        "status".to_owned(),
        output::utc("active from"),
        output::utc("retired"),
    ]);
    for key in &list.items {
        table.push([
            output::sanitize(&key.kid),
            output::sanitize(&key.status),
            output::timestamp(&key.active_from),
            key.retired_at
                .as_ref()
                .map_or_else(|| "-".to_owned(), output::timestamp),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_shows_every_key_with_its_status() -> anyhow::Result<()> {
        let list: SigningKeyList = serde_json::from_value(serde_json::json!({"items": [
            {"kid": "BV1FHrJJ2vdvbpnn", "status": "signing", "active_from": "2026-12-03T08:00:00Z"},
            {"kid": "1EJeigjICcpyKc3w", "status": "retired", "active_from": "2026-11-01T00:00:00Z",
             "retired_at": "2026-12-03T08:01:00Z"},
        ]}))?;
        assert_eq!(
            key_table(&list).render(),
            "KID               STATUS   ACTIVE FROM (UTC)    RETIRED (UTC)\n\
             BV1FHrJJ2vdvbpnn  signing  2026-12-03 08:00:00  -\n\
             1EJeigjICcpyKc3w  retired  2026-11-01 00:00:00  2026-12-03 08:01:00\n"
        );
        Ok(())
    }
}
