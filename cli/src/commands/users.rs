//! `gatehouse user ...`.

use super::prompt::{self, blocking};
use super::{Context, Globals, IdempotencyArg, require_change, settle};
use crate::client::{ListFilters, Page, Role, User};
use crate::output::{self, Col, OutputFormat, Table, View};

/// Manage users.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user (admins only). Prompts twice for the password on a terminal.
    Create(CreateArgs),
    /// List users (admins only).
    List(ListArgs),
    /// Show one user.
    Describe(DescribeArgs),
    /// Change a user's role or deactivate it (admins only). Deactivation ends every
    /// session of the user at once.
    Update(UpdateArgs),
    /// Change your own password. Every session of yours ends, this one too: log in again
    /// afterwards.
    ChangePassword(ChangePasswordArgs),
}

impl UserCommand {
    /// Runs the command.
    pub async fn run(self, globals: &Globals) -> anyhow::Result<()> {
        let ctx = Context::new(globals)?;
        match self {
            UserCommand::Create(args) => args.run(&ctx).await,
            UserCommand::List(args) => args.run(&ctx).await,
            UserCommand::Describe(args) => args.run(&ctx).await,
            UserCommand::Update(args) => args.run(&ctx).await,
            UserCommand::ChangePassword(args) => args.run(&ctx).await,
        }
    }
}

/// `user create`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "\
Examples:
  gatehouse user create alice --role admin
  printf '%s\\n' \"$PASSWORD\" | gatehouse user create bob --password-stdin")]
pub struct CreateArgs {
    /// Login name: 1 to 64 of A-Z a-z 0-9 . _ -, unique among users and service accounts.
    pub name: String,
    /// Role [server default: member].
    #[arg(long, value_enum)]
    pub role: Option<Role>,
    /// Read the initial password from the first line of stdin instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub idempotency: IdempotencyArg,
}

impl CreateArgs {
    /// Runs `user create`.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let client = ctx.client().await?;
        let password = if self.password_stdin {
            blocking(|| prompt::secrets_from_stdin(1, &["password"]))
                .await?
                .remove(0)
        } else {
            let text = format!("Password for the new user {}: ", self.name);
            blocking(move || prompt::new_password(&text)).await?
        };
        let idempotency_key = self.idempotency.key();
        let user = client
            .create_user(&self.name, &password, self.role, Some(&idempotency_key))
            .await;
        let user = settle(user, &idempotency_key)?;
        print_user(ctx, &user)
    }
}

/// `user list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Only the user with this exact name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Only active (true) or inactive (false) users.
    #[arg(long, value_name = "true|false")]
    pub active: Option<bool>,
    /// Page number, from 1.
    #[arg(long, value_name = "N")]
    pub page: Option<u64>,
    /// Users per page (1 to 1000) [server default: 20].
    #[arg(long, value_name = "N")]
    pub size: Option<u64>,
    #[command(flatten)]
    pub wide: output::WideArg,
}

impl ListArgs {
    /// Runs `user list`.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let filters = ListFilters {
            name: self.name,
            active: self.active,
            page: self.page,
            size: self.size,
        };
        let page = ctx.client().await?.list_users(&filters).await?;
        match ctx.output() {
            OutputFormat::Json => output::emit_json(&page),
            OutputFormat::Table => {
                output::emit(&user_table(&page, self.wide.view()).render())?;
                page_footer(&page, "users");
                Ok(())
            }
        }
    }
}

/// `user describe`.
#[derive(Debug, Clone, clap::Args)]
pub struct DescribeArgs {
    /// The user's name or id.
    pub name_or_id: String,
}

impl DescribeArgs {
    /// Runs `user describe`.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let user = ctx.client().await?.get_user(&self.name_or_id).await?;
        print_user(ctx, &user)
    }
}

/// `user update`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpdateArgs {
    /// The user's name or id.
    pub name_or_id: String,
    /// New role.
    #[arg(long, value_enum)]
    pub role: Option<Role>,
    /// false deactivates the user (every session ends at once); true reactivates it.
    #[arg(long, value_name = "true|false")]
    pub active: Option<bool>,
}

impl UpdateArgs {
    /// Runs `user update`.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        require_change(
            self.role.is_some() || self.active.is_some(),
            "--role or --active",
        )?;
        let user = ctx
            .client()
            .await?
            .update_user(&self.name_or_id, self.role, self.active)
            .await?;
        print_user(ctx, &user)
    }
}

/// `user change-password`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChangePasswordArgs {
    /// Read two lines from stdin, the current password then the new one, instead of
    /// prompting.
    #[arg(long)]
    pub password_stdin: bool,
}

impl ChangePasswordArgs {
    /// Runs `user change-password`.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let client = ctx.client().await?;
        let (current, new) = if self.password_stdin {
            let mut lines =
                blocking(|| prompt::secrets_from_stdin(2, &["current password", "new password"]))
                    .await?;
            let new = lines.remove(1);
            (lines.remove(0), new)
        } else {
            blocking(|| {
                Ok((
                    prompt::password("Current password: ")?,
                    prompt::new_password("New password: ")?,
                ))
            })
            .await?
        };
        client.change_password(&current, &new).await?;
        // The server ended every session of this user: the saved token is dead.
        ctx.store.clear()?;
        if ctx.output() == OutputFormat::Table {
            output::emit(&format!(
                "Password changed. Every session has ended: run `gatehouse login --url {}` again.\n",
                client.url()
            ))?;
        }
        Ok(())
    }
}

fn print_user(ctx: &Context, user: &User) -> anyhow::Result<()> {
    match ctx.output() {
        OutputFormat::Json => output::emit_json(user),
        OutputFormat::Table => output::emit(&describe_user(user)),
    }
}

fn describe_user(user: &User) -> String {
    let mut rows = vec![
        ("name".to_owned(), user.name.clone()),
        ("id".to_owned(), user.id.to_string()),
        ("role".to_owned(), user.role.clone()),
        ("active".to_owned(), output::boolean(user.active)),
        ("created".to_owned(), output::server_time_utc(&user.created)),
        ("updated".to_owned(), output::server_time_utc(&user.updated)),
    ];
    rows.extend(output::extra_fields(&user.extra));
    output::describe(rows)
}

pub(super) fn user_table(page: &Page<User>, view: View) -> Table {
    let mut table = Table::list(
        &[
            ("name", Col::Always),
            ("id", Col::Wide),
            ("role", Col::Always),
            ("active", Col::Always),
            (&output::utc("created"), Col::Always),
        ],
        view,
    );
    for u in &page.items {
        table.push([
            u.name.clone(),
            u.id.to_string(),
            u.role.clone(),
            output::boolean(u.active),
            output::server_timestamp(&u.created),
        ]);
    }
    table
}

/// Paging hints go to stderr so that stdout stays a plain table.
pub(super) fn page_footer<T>(page: &Page<T>, what: &str) {
    if page.items.is_empty() && page.index <= 1 {
        eprintln!("No {what} found.");
    } else if page.total_pages > 1 {
        eprintln!(
            "Page {} of {} ({} {what} in all){}",
            page.index,
            page.total_pages,
            page.total,
            if page.index < page.total_pages {
                format!(": --page {} for more", page.index + 1)
            } else {
                String::new()
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, active: bool) -> Result<User, serde_json::Error> {
        serde_json::from_value(serde_json::json!({
            "id": "0190f0a8-3b1c-7000-8000-000000000001", "name": name, "role": "member", "active": active,
            "created": "2025-01-01T10:11:12.345Z", "updated": "2025-01-02T00:00:00Z",
        }))
    }

    #[test]
    fn the_user_table_has_aligned_columns_and_short_timestamps() -> Result<(), serde_json::Error> {
        let page = Page {
            index: 1,
            max_size: 20,
            total_pages: 1,
            total: 2,
            items: vec![user("admin", true)?, user("bob", false)?],
            extra: Default::default(),
        };
        assert_eq!(
            user_table(&page, View::Wide).render(),
            "NAME   ID                                    ROLE    ACTIVE  CREATED (UTC)\n\
             admin  0190f0a8-3b1c-7000-8000-000000000001  member  true    2025-01-01 10:11:12\n\
             bob    0190f0a8-3b1c-7000-8000-000000000001  member  false   2025-01-01 10:11:12\n"
        );
        assert_eq!(
            user_table(&page, View::Default).render(),
            "NAME   ROLE    ACTIVE  CREATED (UTC)\n\
             admin  member  true    2025-01-01 10:11:12\n\
             bob    member  false   2025-01-01 10:11:12\n"
        );
        Ok(())
    }

    #[test]
    fn describe_lists_every_field() -> Result<(), serde_json::Error> {
        let text = describe_user(&user("bob", true)?);
        assert!(
            text.starts_with("NAME     bob\nID       0190f0a8"),
            "{text}"
        );
        assert!(
            text.contains("UPDATED  2025-01-02 00:00:00 UTC\n"),
            "{text}"
        );
        Ok(())
    }
}
