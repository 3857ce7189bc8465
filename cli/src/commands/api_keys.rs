//! `gatehouse service-account api-key <ACCOUNT> ...`.
//!
//! A key is printed only by `create` and `rotate` (and `service-account create`), to
//! stdout, the one time the server returns it. Nothing else ever prints a key.

use secrecy::ExposeSecret as _;

use super::prompt;
use super::users::page_footer;
use super::{Context, IdempotencyArg, require_change, settle};
use crate::client::{ApiKey, ApiKeyUpdate, ExpiryChange, ListFilters, NewApiKey, Page};
use crate::duration;
use crate::output::{self, Col, OutputFormat, Table, View};

/// Manage the API keys of a service account.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "\
Keys are shown once, by `create` and `rotate`: store them in your secret store right away.

Examples:
  gatehouse service-account api-key ci-bot create deploy --description \"deploy job\" --expires-in 30d
  gatehouse service-account api-key ci-bot list
  gatehouse service-account api-key ci-bot rotate deploy --retain 60
  gatehouse service-account api-key ci-bot update deploy --active false
  gatehouse service-account api-key ci-bot delete deploy --yes")]
pub struct ApiKeyArgs {
    /// The service account's name or id.
    #[arg(value_name = "ACCOUNT")]
    pub account: String,
    #[command(subcommand)]
    pub command: ApiKeyCommand,
}

/// What to do with the service account's keys.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key and print it, the only time it is shown.
    Create(CreateArgs),
    /// List the account's keys (never the keys themselves).
    List(ListArgs),
    /// Show one key's details, including previous secrets that still work after a
    /// rotation.
    Describe(DescribeArgs),
    /// Replace a key's secret and print the new key, the only time it is shown. The old
    /// secret keeps working for --retain (default 0: it stops at once).
    Rotate(RotateArgs),
    /// Activate or deactivate a key, or change its description or expiry. Deactivation
    /// refuses its tokens at once.
    Update(UpdateArgs),
    /// Delete a key: it and its tokens stop working at once.
    Delete(DeleteArgs),
}

impl ApiKeyArgs {
    /// Runs the command.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let account = self.account;
        match self.command {
            ApiKeyCommand::Create(args) => args.run(ctx, &account).await,
            ApiKeyCommand::List(args) => args.run(ctx, &account).await,
            ApiKeyCommand::Describe(args) => args.run(ctx, &account).await,
            ApiKeyCommand::Rotate(args) => args.run(ctx, &account).await,
            ApiKeyCommand::Update(args) => args.run(ctx, &account).await,
            ApiKeyCommand::Delete(args) => args.run(ctx, &account).await,
        }
    }
}

/// `api-key create`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "\
The request carries a fresh Idempotency-Key (or --idempotency-key): after a network failure
or a 503 the CLI sends it again, and the server answers with the first result, the same key
(kept sealed for 24 h), so a lost answer does not lose the key. If the outcome stays
unknown, the error names the key: run the same command with --idempotency-key KEY.")]
pub struct CreateArgs {
    /// Name, unique within the account (1 to 64 of A-Z a-z 0-9 . _ -).
    pub name: String,
    /// What the key is for.
    #[arg(long, short = 'd')]
    pub description: Option<String>,
    /// Expire after this long: 90s, 15m, 12h, 30d (at most 3660d); a bare number is
    /// seconds [default: never].
    #[arg(long, value_name = "DURATION", value_parser = duration::expires_in)]
    pub expires_in: Option<u64>,
    #[command(flatten)]
    pub idempotency: IdempotencyArg,
}

impl CreateArgs {
    /// Runs `api-key create`.
    pub async fn run(self, ctx: &Context, account: &str) -> anyhow::Result<()> {
        let client = ctx.client().await?;
        let idempotency_key = self.idempotency.key();
        let key = client
            .create_api_key(
                account,
                &self.name,
                self.description.as_deref(),
                self.expires_in,
                Some(&idempotency_key),
            )
            .await;
        let key = settle(key, &idempotency_key)?;
        match ctx.output() {
            OutputFormat::Json => output::emit_json(&key.json_with_key()?),
            OutputFormat::Table => {
                output::emit(&describe_key(&key.api_key))?;
                output::emit(&shown_once(
                    &key,
                    account,
                    &client.url(),
                    NewSecret::Created,
                ))
            }
        }
    }
}

/// `api-key list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Only the key with this exact name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Only active (true) or inactive (false) keys.
    #[arg(long, value_name = "true|false")]
    pub active: Option<bool>,
    /// Page number, from 1.
    #[arg(long, value_name = "N")]
    pub page: Option<u64>,
    /// Keys per page (1 to 1000) [server default: 20].
    #[arg(long, value_name = "N")]
    pub size: Option<u64>,
    #[command(flatten)]
    pub wide: output::WideArg,
}

impl ListArgs {
    /// Runs `api-key list`.
    pub async fn run(self, ctx: &Context, account: &str) -> anyhow::Result<()> {
        let filters = ListFilters {
            name: self.name,
            active: self.active,
            page: self.page,
            size: self.size,
        };
        let page = ctx.client().await?.list_api_keys(account, &filters).await?;
        match ctx.output() {
            OutputFormat::Json => output::emit_json(&page),
            OutputFormat::Table => {
                output::emit(&key_table(&page, self.wide.view()).render())?;
                page_footer(&page, "API keys");
                Ok(())
            }
        }
    }
}

/// `api-key describe`.
#[derive(Debug, Clone, clap::Args)]
pub struct DescribeArgs {
    /// The key's name or id.
    pub key: String,
}

impl DescribeArgs {
    /// Runs `api-key describe`.
    pub async fn run(self, ctx: &Context, account: &str) -> anyhow::Result<()> {
        let key = ctx.client().await?.get_api_key(account, &self.key).await?;
        print_key(ctx, &key)
    }
}

/// `api-key rotate`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "\
With --retain 0 (the default) the old key stops working at once, and tokens it was
exchanged for are refused. With --retain 1h both keys work for an hour, time to roll the
new key out. Secrets retained by earlier rotations keep their own windows.

Examples:
  gatehouse service-account api-key ci-bot rotate deploy --retain 1h
  gatehouse service-account api-key ci-bot rotate deploy --retain 60    # 60 minutes")]
pub struct RotateArgs {
    /// The key's name or id.
    pub key: String,
    /// How long the old secret keeps working: 90s, 15m, 1h, 2d (at most 30d); a bare
    /// number is minutes.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = duration::retain)]
    pub retain: u64,
}

impl RotateArgs {
    /// Runs `api-key rotate`.
    pub async fn run(self, ctx: &Context, account: &str) -> anyhow::Result<()> {
        let client = ctx.client().await?;
        let key = client
            .rotate_api_key(account, &self.key, self.retain)
            .await?;
        match ctx.output() {
            OutputFormat::Json => output::emit_json(&key.json_with_key()?),
            OutputFormat::Table => {
                output::emit(&describe_key(&key.api_key))?;
                output::emit(&format!("\n{}", old_secret_note(&key.api_key, self.retain)))?;
                output::emit(&shown_once(
                    &key,
                    account,
                    &client.url(),
                    NewSecret::Rotated,
                ))
            }
        }
    }
}

/// `api-key update`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpdateArgs {
    /// The key's name or id.
    pub key: String,
    /// false deactivates the key (its tokens are refused at once); true reactivates it.
    #[arg(long, value_name = "true|false")]
    pub active: Option<bool>,
    /// New description.
    #[arg(long, short = 'd')]
    pub description: Option<String>,
    /// Expire this long from now: 90s, 15m, 12h, 30d (at most 3660d); a bare number is
    /// seconds.
    #[arg(long, value_name = "DURATION", value_parser = duration::expires_in, conflicts_with = "no_expiry")]
    pub expires_in: Option<u64>,
    /// Remove the expiry: the key works until deactivated or deleted.
    #[arg(long)]
    pub no_expiry: bool,
}

impl UpdateArgs {
    /// The changes asked for.
    fn update(&self) -> ApiKeyUpdate {
        let expiry = match (self.expires_in, self.no_expiry) {
            (Some(secs), _) => Some(ExpiryChange::InSeconds(secs)),
            (None, true) => Some(ExpiryChange::Never),
            (None, false) => None,
        };
        ApiKeyUpdate {
            active: self.active,
            description: self.description.clone(),
            expiry,
        }
    }

    /// Runs `api-key update`.
    pub async fn run(self, ctx: &Context, account: &str) -> anyhow::Result<()> {
        let update = self.update();
        require_change(
            update.active.is_some() || update.description.is_some() || update.expiry.is_some(),
            "--active, --description, --expires-in or --no-expiry",
        )?;
        let key = ctx
            .client()
            .await?
            .update_api_key(account, &self.key, &update)
            .await?;
        print_key(ctx, &key)
    }
}

/// `api-key delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// The key's name or id.
    pub key: String,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

impl DeleteArgs {
    /// Runs `api-key delete`.
    pub async fn run(self, ctx: &Context, account: &str) -> anyhow::Result<()> {
        let client = ctx.client().await?;
        if !self.yes {
            prompt::ensure_can_confirm("delete")?;
            let question = format!(
                "Delete API key {:?} of service account {account:?}? It and its tokens stop \
                 working at once.",
                self.key
            );
            prompt::confirm_or_abort(question, "deleted").await?;
        }
        client.delete_api_key(account, &self.key).await?;
        if ctx.output() == OutputFormat::Table {
            output::emit(&format!(
                "Deleted API key {} of service account {account}\n",
                self.key
            ))?;
        }
        Ok(())
    }
}

fn print_key(ctx: &Context, key: &ApiKey) -> anyhow::Result<()> {
    match ctx.output() {
        OutputFormat::Json => output::emit_json(key),
        OutputFormat::Table => output::emit(&describe_key(key)),
    }
}

/// `ACTIVE`, `INACTIVE` or `EXPIRED` (whether deactivated or not, an expired key does not
/// work).
fn key_status(key: &ApiKey) -> &'static str {
    if key.expired {
        "EXPIRED"
    } else if key.active {
        "ACTIVE"
    } else {
        "INACTIVE"
    }
}

/// The describe table of a key; never the key itself.
pub(super) fn describe_key(key: &ApiKey) -> String {
    let mut rows = vec![
        ("name".to_owned(), key.name.clone()),
        ("id".to_owned(), key.id.to_string()),
        (
            "description".to_owned(),
            key.description.clone().unwrap_or_default(),
        ),
        (
            "service account".to_owned(),
            key.service_account_name
                .clone()
                .unwrap_or_else(|| key.service_account_id.to_string()),
        ),
        ("status".to_owned(), key_status(key).to_owned()),
        ("active".to_owned(), output::boolean(key.active)),
        (
            "expires".to_owned(),
            output::optional_time_utc(key.expires_at.as_deref(), "never"),
        ),
        ("generation".to_owned(), key.generation.to_string()),
        ("created".to_owned(), output::server_time_utc(&key.created)),
        ("updated".to_owned(), output::server_time_utc(&key.updated)),
        (
            "last rotated".to_owned(),
            output::optional_time_utc(key.last_rotated.as_deref(), "never"),
        ),
        (
            "last used".to_owned(),
            output::optional_time_utc(key.last_used.as_deref(), "never"),
        ),
    ];
    if key.retained_secrets.is_empty() {
        rows.push(("retained secrets".to_owned(), "none".to_owned()));
    }
    for retained in &key.retained_secrets {
        rows.push((
            "retained secret".to_owned(),
            format!(
                "generation {} valid until {} UTC",
                retained.generation,
                output::server_timestamp(&retained.valid_until)
            ),
        ));
    }
    rows.extend(output::extra_fields(&key.extra));
    output::describe(rows)
}

/// Whether a key is new or replaces a secret, for the next step [`shown_once`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NewSecret {
    /// `create`, `service-account create`.
    Created,
    /// `rotate`.
    Rotated,
}

/// The block that shows a new key, the one time it is shown: last, after everything else,
/// with the next step above it and the key alone on the last line (`| tail -1` gets it).
pub(super) fn shown_once(key: &NewApiKey, account: &str, url: &str, how: NewSecret) -> String {
    let store = match how {
        NewSecret::Created => "store it in your CI system's secret store as GATEHOUSE_API_KEY",
        NewSecret::Rotated => "replace GATEHOUSE_API_KEY in your CI system's secret store with it",
    };
    format!(
        "\nNext: {store},\nbeside GATEHOUSE_URL={url}.\nOr log in with it here (it prompts for \
         the key):\n  gatehouse login --url {url} --api-key\n\nAPI key {:?} of service account \
         {account}, shown only this once:\n\n{}\n",
        key.api_key.name,
        key.key.expose_secret()
    )
}

/// After a rotation: what is true of each earlier secret. The secret just replaced
/// (generation - 1) is retained or stopped now; secrets retained by earlier rotations keep
/// their own windows.
fn old_secret_note(key: &ApiKey, retain_secs: u64) -> String {
    let replaced = key.generation.saturating_sub(1);
    let mut note = match key
        .retained_secrets
        .iter()
        .find(|r| r.generation == replaced)
    {
        Some(r) => format!(
            "The replaced secret (generation {replaced}) keeps working until {} UTC.\n",
            output::server_timestamp(&r.valid_until)
        ),
        None if retain_secs == 0 => format!(
            "The replaced secret (generation {replaced}) stopped working now; so did the tokens \
             it was exchanged for.\n"
        ),
        None => format!(
            "The replaced secret (generation {replaced}) keeps working for {} (the server did \
             not say until when).\n",
            duration::human(retain_secs)
        ),
    };
    let mut earlier: Vec<_> = key
        .retained_secrets
        .iter()
        .filter(|r| r.generation < replaced)
        .collect();
    earlier.sort_by_key(|r| std::cmp::Reverse(r.generation));
    for r in earlier {
        note.push_str(&format!(
            "An earlier secret (generation {}) keeps working until {} UTC, as an earlier \
             rotation retained it.\n",
            r.generation,
            output::server_timestamp(&r.valid_until)
        ));
    }
    note
}

pub(super) fn key_table(page: &Page<ApiKey>, view: View) -> Table {
    let mut table = Table::list(
        &[
            ("name", Col::Always),
            ("id", Col::Wide),
            ("status", Col::Always),
            ("generation", Col::Wide),
            (&output::utc("created"), Col::Wide),
            (&output::utc("last rotated"), Col::Wide),
            (&output::utc("last used"), Col::Always),
            (&output::utc("expires"), Col::Always),
        ],
        view,
    );
    for k in &page.items {
        table.push([
            k.name.clone(),
            k.id.to_string(),
            key_status(k).to_owned(),
            k.generation.to_string(),
            output::server_timestamp(&k.created),
            output::optional_time(k.last_rotated.as_deref(), "-"),
            output::optional_time(k.last_used.as_deref(), "-"),
            output::optional_time(k.expires_at.as_deref(), "never"),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_json() -> serde_json::Value {
        serde_json::json!({
            "id": "0190f0a8-3b1c-7000-8000-00000000abcd", "name": "deploy",
            "description": "deploy job",
            "service_account_id": "0190f0a8-3b1c-7000-8000-000000000001",
            "active": true, "expired": false,
            "created": "2025-01-01T10:00:00Z", "updated": "2025-01-02T10:00:00Z",
            "last_rotated": "2025-01-02T10:00:00Z", "last_used": null, "expires_at": null,
            "generation": 2,
            "retained_secrets": [{"generation": 1, "valid_until": "2025-01-02T11:00:00Z"}],
        })
    }

    #[test]
    fn describe_shows_retained_secrets_and_their_windows() -> Result<(), serde_json::Error> {
        let key: ApiKey = serde_json::from_value(key_json())?;
        let text = describe_key(&key);
        assert!(
            text.contains("RETAINED SECRET  generation 1 valid until 2025-01-02 11:00:00 UTC\n"),
            "{text}"
        );
        assert!(text.contains("LAST USED        never\n"), "{text}");
        assert!(text.contains("EXPIRES          never\n"), "{text}");
        assert!(text.contains("STATUS           ACTIVE\n"), "{text}");
        assert!(
            text.contains("CREATED          2025-01-01 10:00:00 UTC\n"),
            "{text}"
        );
        assert_eq!(
            old_secret_note(&key, 3600),
            "The replaced secret (generation 1) keeps working until 2025-01-02 11:00:00 UTC.\n"
        );
        Ok(())
    }

    #[test]
    fn after_a_second_rotation_each_retained_secret_is_told_apart() -> Result<(), serde_json::Error>
    {
        // Rotated with --retain 60 (generation 1 kept), then with --retain 0: generation 2
        // stopped at once, generation 1 keeps its window.
        let mut json = key_json();
        json["generation"] = 3.into();
        let key: ApiKey = serde_json::from_value(json)?;
        let note = old_secret_note(&key, 0);
        assert_eq!(
            note,
            "The replaced secret (generation 2) stopped working now; so did the tokens it was \
             exchanged for.\n\
             An earlier secret (generation 1) keeps working until 2025-01-02 11:00:00 UTC, as an \
             earlier rotation retained it.\n"
        );
        Ok(())
    }

    #[test]
    fn the_key_table_has_the_documented_columns() -> Result<(), serde_json::Error> {
        let mut expired = key_json();
        expired["name"] = "old".into();
        expired["expired"] = true.into();
        expired["expires_at"] = "2025-01-03T00:00:00Z".into();
        let page = Page {
            index: 1,
            max_size: 20,
            total_pages: 1,
            total: 2,
            items: vec![
                serde_json::from_value(key_json())?,
                serde_json::from_value(expired)?,
            ],
            extra: Default::default(),
        };
        assert_eq!(
            key_table(&page, View::Default).render(),
            "NAME    STATUS   LAST USED (UTC)  EXPIRES (UTC)\n\
             deploy  ACTIVE   -                never\n\
             old     EXPIRED  -                2025-01-03 00:00:00\n"
        );
        assert_eq!(
            key_table(&page, View::Wide).render(),
            "NAME    ID                                    STATUS   GENERATION  CREATED (UTC)        LAST ROTATED (UTC)   LAST USED (UTC)  EXPIRES (UTC)\n\
             deploy  0190f0a8-3b1c-7000-8000-00000000abcd  ACTIVE   2           2025-01-01 10:00:00  2025-01-02 10:00:00  -                never\n\
             old     0190f0a8-3b1c-7000-8000-00000000abcd  EXPIRED  2           2025-01-01 10:00:00  2025-01-02 10:00:00  -                2025-01-03 00:00:00\n"
        );
        Ok(())
    }

    #[test]
    fn a_new_key_is_printed_by_the_shown_once_block_and_nowhere_else()
    -> Result<(), serde_json::Error> {
        let mut json = key_json();
        json["key"] = "gatehouse_the-secret-key".into();
        let key: NewApiKey = serde_json::from_value(json)?;
        assert!(!key.api_key.extra.contains_key("key"));
        assert!(!describe_key(&key.api_key).contains("the-secret-key"));
        assert!(!format!("{key:?}").contains("the-secret-key"));
        let block = shown_once(&key, "ci-bot", "https://gh.example", NewSecret::Created);
        assert!(block.contains("\ngatehouse_the-secret-key\n"), "{block}");
        assert!(block.contains("shown only this once"), "{block}");
        // The key stands alone at the end, under the next step.
        assert_eq!(
            block.lines().last(),
            Some("gatehouse_the-secret-key"),
            "{block}"
        );
        assert!(
            block.contains("GATEHOUSE_API_KEY")
                && block.contains("GATEHOUSE_URL=https://gh.example")
                && block.contains("gatehouse login --url https://gh.example --api-key"),
            "{block}"
        );
        let rotated = shown_once(&key, "ci-bot", "https://gh.example", NewSecret::Rotated);
        assert!(rotated.contains("replace GATEHOUSE_API_KEY"), "{rotated}");
        assert!(block.lines().all(|l| l.chars().count() <= 80), "{block}");
        assert_eq!(key.json_with_key()?["key"], "gatehouse_the-secret-key");
        assert_eq!(key.json_with_key()?["name"], "deploy");
        Ok(())
    }

    #[test]
    fn update_sends_only_what_changes_and_null_removes_the_expiry() {
        let args = |expires_in, no_expiry| UpdateArgs {
            key: "deploy".into(),
            active: Some(false),
            description: None,
            expires_in,
            no_expiry,
        };
        assert_eq!(
            args(None, false).update().body(),
            serde_json::json!({"active": false})
        );
        assert_eq!(
            args(Some(60), false).update().body(),
            serde_json::json!({"active": false, "expires_in_seconds": 60})
        );
        assert_eq!(
            args(None, true).update().body(),
            serde_json::json!({"active": false, "expires_at": null})
        );
    }
}
