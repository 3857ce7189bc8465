//! `gatehouse service-account ...`.

use super::api_keys::{ApiKeyArgs, NewSecret, describe_key, shown_once};
use super::prompt;
use super::users::page_footer;
use super::{Context, Globals, IdempotencyArg, create_failed, require_change, settle};
use crate::client::{ListFilters, Page, Role, ServiceAccount};
use crate::output::{self, Col, OutputFormat, Table, View};

/// Manage service accounts. Members manage the accounts they created; admins manage all.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ServiceAccountCommand {
    /// Create a service account owned by you, with an API key named `default` (printed
    /// once).
    Create(CreateArgs),
    /// List the service accounts you may see.
    List(ListArgs),
    /// Show one service account.
    Describe(DescribeArgs),
    /// Change a service account's description, role or active flag. Deactivation refuses
    /// its tokens at once.
    Update(UpdateArgs),
    /// Delete a service account: its tokens stop working at once and its name is free again.
    Delete(DeleteArgs),
    /// Manage a service account's API keys: create, list, describe, rotate, update, delete.
    #[command(name = "api-key")]
    ApiKey(ApiKeyArgs),
}

impl ServiceAccountCommand {
    /// Runs the command.
    pub async fn run(self, globals: &Globals) -> anyhow::Result<()> {
        let ctx = Context::new(globals)?;
        match self {
            ServiceAccountCommand::Create(args) => args.run(&ctx).await,
            ServiceAccountCommand::List(args) => args.run(&ctx).await,
            ServiceAccountCommand::Describe(args) => args.run(&ctx).await,
            ServiceAccountCommand::Update(args) => args.run(&ctx).await,
            ServiceAccountCommand::Delete(args) => args.run(&ctx).await,
            ServiceAccountCommand::ApiKey(args) => args.run(&ctx).await,
        }
    }
}

/// `service-account create`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "\
Each request (the account, its key) carries a fresh Idempotency-Key (the account's may be
given with --idempotency-key), so the CLI may safely retry it after a network failure or a
503: the server answers the retry with the first result. If the outcome stays unknown, the
error says which command to run again with which --idempotency-key.

Unless --no-api-key is given, an API key named `default` is created too and printed once
(with -o json: as the `api_key` object, its `key` field). Store it right away: it cannot be
shown again (rotate it to get a new one).

Examples:
  gatehouse service-account create ci-pipeline --description \"Builds and publishes models\"
  gatehouse service-account create trainer --role member -o json
  gatehouse service-account create etl --no-api-key")]
pub struct CreateArgs {
    /// Name: 1 to 64 of A-Z a-z 0-9 . _ -, unique among users and service accounts.
    pub name: String,
    /// What the account is for (at most 1,024 characters).
    #[arg(long, short = 'd')]
    pub description: Option<String>,
    /// Role of its sessions [server default: member; only admins may ask for admin].
    #[arg(long, value_enum)]
    pub role: Option<Role>,
    /// Do not create the `default` API key.
    #[arg(long)]
    pub no_api_key: bool,
    #[command(flatten)]
    pub idempotency: IdempotencyArg,
}

/// The name of the key `service-account create` makes.
pub const DEFAULT_KEY_NAME: &str = "default";

impl CreateArgs {
    /// Runs `service-account create`.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let client = ctx.client().await?;
        let idempotency_key = self.idempotency.key();
        let account = client
            .create_service_account(
                &self.name,
                self.description.as_deref(),
                self.role,
                Some(&idempotency_key),
            )
            .await;
        let account = settle(account, &idempotency_key)?;
        if self.no_api_key {
            return print_account(ctx, &account);
        }
        let key_idempotency_key = super::idempotency_key();
        let key = client
            .create_api_key(
                &account.id.to_string(),
                DEFAULT_KEY_NAME,
                None,
                None,
                Some(&key_idempotency_key),
            )
            .await;
        let create_key = format!(
            "gatehouse service-account api-key {} create {DEFAULT_KEY_NAME}",
            account.name
        );
        let key = match key {
            Ok(key) => key,
            Err(e) => {
                print_account(ctx, &account)?;
                let context = format!(
                    "service account {} was created, but its API key",
                    account.name
                );
                return Err(if e.outcome_unknown() {
                    create_failed(e, Some(create_key), &key_idempotency_key)
                        .context(format!("{context} may not have been"))
                } else {
                    anyhow::Error::new(e).context(format!("{context} was not: run `{create_key}`"))
                });
            }
        };
        match ctx.output() {
            OutputFormat::Json => {
                let mut json = serde_json::to_value(&account)?;
                if let serde_json::Value::Object(map) = &mut json {
                    map.insert("api_key".to_owned(), key.json_with_key()?);
                }
                output::emit_json(&json)
            }
            OutputFormat::Table => {
                output::emit(&describe_account(&account))?;
                output::emit("\n")?;
                output::emit(&describe_key(&key.api_key))?;
                output::emit(&shown_once(
                    &key,
                    &account.name,
                    &client.url(),
                    NewSecret::Created,
                ))
            }
        }
    }
}

/// `service-account list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Only the account with this exact name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Only active (true) or inactive (false) accounts.
    #[arg(long, value_name = "true|false")]
    pub active: Option<bool>,
    /// Page number, from 1.
    #[arg(long, value_name = "N")]
    pub page: Option<u64>,
    /// Accounts per page (1 to 1000) [server default: 20].
    #[arg(long, value_name = "N")]
    pub size: Option<u64>,
    #[command(flatten)]
    pub wide: output::WideArg,
}

impl ListArgs {
    /// Runs `service-account list`.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let filters = ListFilters {
            name: self.name,
            active: self.active,
            page: self.page,
            size: self.size,
        };
        let page = ctx.client().await?.list_service_accounts(&filters).await?;
        match ctx.output() {
            OutputFormat::Json => output::emit_json(&page),
            OutputFormat::Table => {
                output::emit(&account_table(&page, self.wide.view()).render())?;
                page_footer(&page, "service accounts");
                Ok(())
            }
        }
    }
}

/// `service-account describe`.
#[derive(Debug, Clone, clap::Args)]
pub struct DescribeArgs {
    /// The account's name or id.
    pub name_or_id: String,
}

impl DescribeArgs {
    /// Runs `service-account describe`.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let account = ctx
            .client()
            .await?
            .get_service_account(&self.name_or_id)
            .await?;
        print_account(ctx, &account)
    }
}

/// `service-account update`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpdateArgs {
    /// The account's name or id.
    pub name_or_id: String,
    /// New description.
    #[arg(long, short = 'd')]
    pub description: Option<String>,
    /// false deactivates the account (its tokens are refused at once); true reactivates it.
    #[arg(long, value_name = "true|false")]
    pub active: Option<bool>,
    /// New role (admins only).
    #[arg(long, value_enum)]
    pub role: Option<Role>,
}

impl UpdateArgs {
    /// Runs `service-account update`.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        require_change(
            self.description.is_some() || self.active.is_some() || self.role.is_some(),
            "--description, --active or --role",
        )?;
        let account = ctx
            .client()
            .await?
            .update_service_account(
                &self.name_or_id,
                self.description.as_deref(),
                self.active,
                self.role,
            )
            .await?;
        print_account(ctx, &account)
    }
}

/// `service-account delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// The account's name or id.
    pub name_or_id: String,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

impl DeleteArgs {
    /// Runs `service-account delete`.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let client = ctx.client().await?;
        if !self.yes {
            prompt::ensure_can_confirm("delete")?;
            let question = format!(
                "Delete service account {:?}? Its tokens stop working at once.",
                self.name_or_id
            );
            prompt::confirm_or_abort(question, "deleted").await?;
        }
        client.delete_service_account(&self.name_or_id).await?;
        if ctx.output() == OutputFormat::Table {
            output::emit(&format!("Deleted service account {}\n", self.name_or_id))?;
        }
        Ok(())
    }
}

fn print_account(ctx: &Context, account: &ServiceAccount) -> anyhow::Result<()> {
    match ctx.output() {
        OutputFormat::Json => output::emit_json(account),
        OutputFormat::Table => output::emit(&describe_account(account)),
    }
}

/// The owner's name; its id only from a server that does not send names (`-o json` always
/// has both).
fn owner(a: &ServiceAccount) -> String {
    a.owner_name.clone().unwrap_or_else(|| a.owner.to_string())
}

fn describe_account(a: &ServiceAccount) -> String {
    let mut rows = vec![
        ("name".to_owned(), a.name.clone()),
        ("id".to_owned(), a.id.to_string()),
        ("description".to_owned(), a.description.clone()),
        ("role".to_owned(), a.role.clone()),
        ("active".to_owned(), output::boolean(a.active)),
        ("owner".to_owned(), owner(a)),
        ("created".to_owned(), output::server_time_utc(&a.created)),
        ("updated".to_owned(), output::server_time_utc(&a.updated)),
    ];
    rows.extend(output::extra_fields(&a.extra));
    output::describe(rows)
}

pub(super) fn account_table(page: &Page<ServiceAccount>, view: View) -> Table {
    let mut table = Table::list(
        &[
            ("name", Col::Always),
            ("id", Col::Wide),
            ("owner", Col::Wide),
            ("role", Col::Always),
            ("active", Col::Always),
            (&output::utc("created"), Col::Always),
            ("description", Col::Flex),
        ],
        view,
    );
    for a in &page.items {
        table.push([
            a.name.clone(),
            a.id.to_string(),
            owner(a),
            a.role.clone(),
            output::boolean(a.active),
            output::server_timestamp(&a.created),
            a.description.clone(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_table_keeps_long_descriptions_last_and_whole_when_wide()
    -> Result<(), serde_json::Error> {
        let account: ServiceAccount = serde_json::from_value(serde_json::json!({
            "id": "0190f0a8-3b1c-7000-8000-000000000001", "name": "ci", "description": "Builds\nand publishes models",
            "active": true, "role": "member", "owner": "0190f0a8-3b1c-7000-8000-000000000002",
            "created": "2025-01-01T10:11:12Z", "updated": "2025-01-01T10:11:12Z",
        }))?;
        let page = Page {
            index: 1,
            max_size: 20,
            total_pages: 1,
            total: 1,
            items: vec![account.clone()],
            extra: Default::default(),
        };
        assert_eq!(
            account_table(&page, View::Wide).render(),
            "NAME  ID                                    OWNER                                 ROLE    ACTIVE  CREATED (UTC)        DESCRIPTION\n\
             ci    0190f0a8-3b1c-7000-8000-000000000001  0190f0a8-3b1c-7000-8000-000000000002  member  true    2025-01-01 10:11:12  Builds\\nand publishes models\n"
        );
        assert_eq!(
            account_table(&page, View::Default).render(),
            "NAME  ROLE    ACTIVE  CREATED (UTC)        DESCRIPTION\n\
             ci    member  true    2025-01-01 10:11:12  Builds\\nand publishes models\n"
        );
        assert!(
            describe_account(&account)
                .contains("OWNER        0190f0a8-3b1c-7000-8000-000000000002\n")
        );
        Ok(())
    }
}
