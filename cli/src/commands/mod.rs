//! The user-facing commands: `login`, `logout`, `current-user`, `user ...`,
//! `service-account ...`. Each talks to the gateway through [`GatehouseClient`].
//!
//! Every command works without a terminal: passwords come from `--password-stdin`,
//! confirmations from `--yes`, and `GATEHOUSE_CONFIG_DIR` isolates the saved session.

mod login;
mod prompt;
mod service_accounts;
mod users;

pub use login::{LoginArgs, current_user, login, logout};
pub use service_accounts::ServiceAccountCommand;
pub use users::UserCommand;

use crate::client::{ClientError, GatehouseClient};
use crate::credentials::CredentialsStore;
pub use crate::output::OutputFormat;

/// The URL used when neither `--url` nor a saved session names one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Options every command accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct Globals {
    /// Gatehouse URL, instead of the saved session's [login default: http://127.0.0.1:8080].
    #[arg(
        long,
        global = true,
        env = "GATEHOUSE_URL",
        value_name = "URL",
        display_order = 900
    )]
    pub url: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = OutputFormat::Table, display_order = 901)]
    pub output: OutputFormat,
}

/// What a command needs: the options and the saved session.
#[derive(Debug, Clone)]
pub struct Context {
    /// Global options.
    pub globals: Globals,
    /// Where the session is saved.
    pub store: CredentialsStore,
}

impl Context {
    /// The context of `globals`, with the session store the environment names.
    pub fn new(globals: &Globals) -> anyhow::Result<Self> {
        Ok(Self {
            globals: globals.clone(),
            store: CredentialsStore::from_env()?,
        })
    }

    /// The output format.
    pub fn output(&self) -> OutputFormat {
        self.globals.output
    }

    /// A client authenticated with the saved session, against `--url` when given.
    pub fn client(&self) -> anyhow::Result<GatehouseClient> {
        let Some(credentials) = self.store.load()? else {
            return Err(ClientError::NotLoggedIn {
                url: self.globals.url.clone(),
            }
            .into());
        };
        if credentials.is_expired(chrono::Utc::now()) {
            let message = format!(
                "the token expired at {} UTC",
                crate::output::timestamp(&credentials.expires_at)
            );
            return Err(ClientError::Unauthenticated { message }.into());
        }
        // Never send the saved token to another server than the one that issued it.
        if let Some(url) = self.globals.url.as_deref() {
            if url.trim_end_matches('/') != credentials.url.trim_end_matches('/') {
                return Err(ClientError::NotLoggedIn {
                    url: Some(url.to_owned()),
                }
                .into());
            }
        }
        Ok(GatehouseClient::new(
            &credentials.url,
            Some(credentials.access_token),
        )?)
    }
}

/// Ensures an update changes something, naming the flags that would.
fn require_change(any: bool, flags: &str) -> anyhow::Result<()> {
    if !any {
        anyhow::bail!("nothing to change: pass {flags}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser, Subcommand};

    use super::*;

    /// The shape of the lead's `main.rs`.
    #[derive(Debug, Parser)]
    #[command(name = "gatehouse")]
    struct Cli {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Debug, Subcommand)]
    enum Command {
        /// Log in.
        Login(LoginArgs),
        /// Log out.
        Logout,
        /// Who am I.
        CurrentUser,
        /// Users.
        User {
            #[command(subcommand)]
            command: UserCommand,
        },
        /// Service accounts.
        #[command(name = "service-account")]
        ServiceAccount {
            #[command(subcommand)]
            command: ServiceAccountCommand,
        },
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("gatehouse").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_work_after_the_subcommand() -> Result<(), clap::Error> {
        let cli = parse(&[
            "user",
            "list",
            "--active",
            "false",
            "-o",
            "json",
            "--url",
            "http://h:1",
        ])?;
        assert_eq!(cli.globals.output, OutputFormat::Json);
        assert_eq!(cli.globals.url.as_deref(), Some("http://h:1"));
        assert!(
            matches!(cli.command, Command::User { command: UserCommand::List(ref a) } if a.active == Some(false))
        );
        Ok(())
    }

    #[test]
    fn active_takes_an_explicit_boolean() {
        assert!(parse(&["service-account", "list", "--active"]).is_err());
        assert!(parse(&["service-account", "list", "--active", "maybe"]).is_err());
        assert!(parse(&["service-account", "update", "ci", "--active", "true"]).is_ok());
    }

    #[test]
    fn roles_are_checked_by_the_parser() {
        assert!(
            parse(&[
                "user",
                "create",
                "bob",
                "--role",
                "admin",
                "--password-stdin"
            ])
            .is_ok()
        );
        assert!(parse(&["user", "create", "bob", "--role", "root"]).is_err());
    }

    #[test]
    fn every_command_and_flag_has_help() {
        fn check(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" {
                    assert!(arg.get_help().is_some(), "{path} {id} has no help");
                }
            }
            for sub in cmd.get_subcommands() {
                assert!(
                    sub.get_about().is_some(),
                    "{path} {} has no help",
                    sub.get_name()
                );
                check(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        check(&cmd, "gatehouse");
    }

    #[test]
    fn login_and_service_account_create_show_examples_in_long_help() {
        let mut cmd = Cli::command();
        let login = cmd
            .find_subcommand_mut("login")
            .expect("login")
            .render_long_help()
            .to_string();
        assert!(
            login.contains("Examples:") && login.contains("--password-stdin"),
            "{login}"
        );
        let mut cmd = Cli::command();
        let create = cmd
            .find_subcommand_mut("service-account")
            .and_then(|c| c.find_subcommand_mut("create"))
            .expect("service-account create")
            .render_long_help()
            .to_string();
        assert!(create.contains("Examples:"), "{create}");
    }
}
