//! The user-facing commands: `login`, `logout`, `current-user`, `user ...`,
//! `service-account ...`, `authorized-device ...`. Each talks to the gateway through [`GatehouseClient`].
//!
//! Every command works without a terminal: passwords come from `--password-stdin`,
//! confirmations from `--yes`, and `GATEHOUSE_CONFIG_DIR` isolates the saved session.
//!
//! Where a command's credentials come from, first match wins:
//! 1. `GATEHOUSE_API_KEY` (with `GATEHOUSE_URL` or `--url`): the key is exchanged for a
//!    token, which is cached (see [`crate::api_key`]); no login needed.
//! 2. The saved session of `gatehouse login`; a session made with `--api-key` renews its
//!    token with the saved key.

mod api_keys;
mod audit;
mod devices;
mod login;
pub(crate) mod prompt;
mod service_accounts;
mod signing_keys;
mod users;

pub use audit::AuditCommand;
pub use devices::DeviceCommand;
pub use login::{LoginArgs, LogoutArgs, current_user, login, logout};
pub use service_accounts::ServiceAccountCommand;
pub use signing_keys::SigningKeyCommand;
pub use users::UserCommand;

use std::sync::Arc;

use anyhow::Context as _;
use chrono::Utc;
use secrecy::SecretString;

use crate::api_key::{self, API_KEY_ENV, CachedToken, CheckedApiKey, TokenCache};
use crate::client::{ClientError, GatehouseClient, KeyRenewal, TokenResponse};
use crate::credentials::{Credentials, CredentialsStore};
pub use crate::output::OutputFormat;

/// `--idempotency-key` of the commands that create.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct IdempotencyArg {
    /// The Idempotency-Key to send [default: a fresh one]. When a create's outcome is
    /// unknown, the error names the key it sent: run the same command with it to get the
    /// first result; nothing is created twice.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

impl IdempotencyArg {
    /// The key to send: the one given, or a fresh one.
    pub fn key(&self) -> String {
        self.idempotency_key.clone().unwrap_or_else(idempotency_key)
    }
}

/// A fresh `Idempotency-Key` for one create: the client may then retry it, and the server
/// answers a retry with the first result.
pub fn idempotency_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A create sent with an `Idempotency-Key` whose outcome is unknown (see
/// [`ClientError::outcome_unknown`]): says how to settle it.
#[derive(Debug, thiserror::Error)]
#[error("the outcome is unknown: to get its first result (nothing is created twice), run {} with --idempotency-key {idempotency_key}",
    command.as_deref().map(|c| format!("`{c}`")).unwrap_or_else(|| "the same command".into()))]
pub struct OutcomeUnknown {
    /// The command to run again, when not the one that failed.
    pub command: Option<String>,
    /// The key that was sent.
    pub idempotency_key: String,
}

/// The result of a create sent with `idempotency_key`: see [`create_failed`].
pub fn settle<T>(result: Result<T, ClientError>, idempotency_key: &str) -> anyhow::Result<T> {
    result.map_err(|e| create_failed(e, None, idempotency_key))
}

/// The error of a create sent with `idempotency_key`; when its outcome is unknown, it says
/// to run the same command (or `command`) again with that key.
pub fn create_failed(
    error: ClientError,
    command: Option<String>,
    idempotency_key: &str,
) -> anyhow::Error {
    if !error.outcome_unknown() {
        return error.into();
    }
    let unknown = OutcomeUnknown {
        command,
        idempotency_key: idempotency_key.to_owned(),
    };
    anyhow::Error::new(error).context(unknown)
}

/// What `main` prints for a failed command, on stderr: the message with each cause once
/// (reqwest's chain repeats the OS error), or with `-o json` the API's error object
/// (`{"error","code","message","request_id"}`) so that scripts can read it. Returns the
/// exit status: 2 for usage errors, 1 for the rest.
pub fn report_error(error: &anyhow::Error, output: OutputFormat) -> (String, u8) {
    let status = if error.chain().any(|c| c.is::<UsageError>()) {
        2
    } else {
        1
    };
    let text = error_text(error);
    let line = match output {
        OutputFormat::Table => format!("error: {text}"),
        OutputFormat::Json => {
            let client = error.chain().find_map(|c| c.downcast_ref::<ClientError>());
            let mut object = match client {
                Some(e @ ClientError::Api { .. }) => e.json(),
                Some(e) => {
                    let mut object = e.json();
                    object["message"] = text.into();
                    object
                }
                None => serde_json::json!({
                    "error": if status == 2 { "invalid_usage" } else { "failed" },
                    "code": null, "message": text, "request_id": null,
                }),
            };
            if let Some(unknown) = error.downcast_ref::<OutcomeUnknown>() {
                object["idempotency_key"] = unknown.idempotency_key.clone().into();
            }
            object.to_string()
        }
    };
    (line, status)
}

/// The message of `error` and its causes, each once: a cause already contained in an
/// earlier message is left out, and after a [`ClientError`] only the root cause is told
/// (not reqwest's and hyper's layers in between).
pub fn error_text(error: &anyhow::Error) -> String {
    let chain: Vec<&(dyn std::error::Error + 'static)> = error.chain().collect();
    let mut parts: Vec<String> = Vec::new();
    let mut add = |text: String| {
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    };
    for (i, cause) in chain.iter().enumerate() {
        add(cause.to_string());
        if cause.is::<ClientError>() {
            if let Some(root) = chain.get(i + 1..).and_then(|rest| rest.last()) {
                add(root.to_string());
            }
            break;
        }
    }
    parts.join(": ")
}

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

/// What a command needs: the options, the saved session, and an API key from the
/// environment.
#[derive(Debug, Clone)]
pub struct Context {
    /// Global options.
    pub globals: Globals,
    /// Where the session is saved.
    pub store: CredentialsStore,
    /// `GATEHOUSE_API_KEY`, when set and not empty.
    pub env_api_key: Option<SecretString>,
    /// Where tokens of `GATEHOUSE_API_KEY` are cached; `None` with
    /// `GATEHOUSE_TOKEN_CACHE=off`.
    pub token_cache: Option<TokenCache>,
}

impl Context {
    /// The context of `globals`, with the session store, API key and token cache the
    /// environment names.
    pub fn new(globals: &Globals) -> anyhow::Result<Self> {
        let store = CredentialsStore::from_env()?;
        let env_api_key = std::env::var(API_KEY_ENV)
            .ok()
            .filter(|k| !k.trim().is_empty())
            .map(SecretString::from);
        let cache_off =
            api_key::cache_disabled(std::env::var(api_key::TOKEN_CACHE_ENV).ok().as_deref());
        let token_cache = (!cache_off).then(|| TokenCache::in_config_dir(store.dir()));
        Ok(Self {
            globals: globals.clone(),
            store,
            env_api_key,
            token_cache,
        })
    }

    /// The output format.
    pub fn output(&self) -> OutputFormat {
        self.globals.output
    }

    /// An authenticated client: with `GATEHOUSE_API_KEY` when set, else with the saved
    /// session (against `--url` when given).
    pub async fn client(&self) -> anyhow::Result<GatehouseClient> {
        if let Some(key) = &self.env_api_key {
            return self.client_from_env_key(key).await;
        }
        let Some(credentials) = self.store.load()? else {
            return Err(ClientError::NotLoggedIn {
                url: self.globals.url.clone(),
            }
            .into());
        };
        // Never send the saved token to another server than the one that issued it.
        if let Some(url) = self.globals.url.as_deref()
            && url.trim_end_matches('/') != credentials.url.trim_end_matches('/')
        {
            return Err(ClientError::NotLoggedIn {
                url: Some(url.to_owned()),
            }
            .into());
        }
        if credentials.api_key.is_some() {
            return self.client_from_saved_key(credentials).await;
        }
        if credentials.is_expired(chrono::Utc::now()) {
            let expired_at = crate::output::timestamp(&credentials.expires_at);
            let message = if credentials.device_id.is_some() {
                format!(
                    "this device's token expired at {expired_at} UTC; device logins are not \
                     renewed"
                )
            } else {
                format!("the token expired at {expired_at} UTC")
            };
            return Err(ClientError::Unauthenticated {
                message,
                code: None,
            }
            .into());
        }
        Ok(GatehouseClient::new(
            &credentials.url,
            Some(credentials.access_token),
        )?)
    }

    /// `GATEHOUSE_API_KEY`: a cached token while it is fresh, else a new exchange; renews
    /// (and re-caches) when the gateway refuses the token.
    async fn client_from_env_key(&self, key: &SecretString) -> anyhow::Result<GatehouseClient> {
        use secrecy::ExposeSecret as _;
        let key = CheckedApiKey::parse(key.expose_secret(), API_KEY_ENV)?;
        let Some(url) = self.globals.url.as_deref() else {
            anyhow::bail!(
                "{API_KEY_ENV} is set but no Gatehouse URL is: set GATEHOUSE_URL or pass --url"
            );
        };
        let client = GatehouseClient::new(url, None)?;
        let url = client.url();
        let cached = self
            .token_cache
            .as_ref()
            .and_then(|cache| cache.load(&url, &key))
            .filter(|token| token.is_fresh(Utc::now()));
        let token = match cached {
            Some(token) => {
                tracing::debug!("using the cached token of {API_KEY_ENV}");
                token.access_token
            }
            None => {
                let now = Utc::now();
                let answer = client
                    .login_api_key(key.secret())
                    .await
                    .with_context(|| format!("exchanging {API_KEY_ENV} for a token at {url}"))?;
                cache_token(self.token_cache.as_ref(), &url, &key, &answer, now);
                answer.access_token
            }
        };
        let cache = self.token_cache.clone();
        let secret = key.secret().clone();
        let renewal = KeyRenewal::new(secret, move |answer: &TokenResponse| {
            cache_token(cache.as_ref(), &url, &key, answer, Utc::now());
        });
        Ok(client.with_token(token).with_api_key_renewal(renewal))
    }

    /// A session saved by `login --api-key`: renews the token with the saved key when it
    /// is no longer fresh, or when the gateway refuses it, and saves the new one.
    async fn client_from_saved_key(
        &self,
        mut credentials: Credentials,
    ) -> anyhow::Result<GatehouseClient> {
        let Some(key) = credentials.api_key.clone() else {
            anyhow::bail!("the saved session has no API key");
        };
        let client = GatehouseClient::new(&credentials.url, None)?;
        let now = Utc::now();
        let obtained_at = credentials.obtained_at.unwrap_or(credentials.expires_at);
        if !api_key::is_fresh(obtained_at, credentials.expires_at, now) {
            let answer = client.login_api_key(&key).await.with_context(|| {
                format!(
                    "renewing the session with the API key saved in {}",
                    self.store.path().display()
                )
            })?;
            renew_saved(&self.store, &mut credentials, &answer, now)?;
        }
        let store = self.store.clone();
        let saved = Arc::new(std::sync::Mutex::new(credentials.clone()));
        let renewal = KeyRenewal::new(key, move |answer: &TokenResponse| {
            if let Ok(mut credentials) = saved.lock()
                && let Err(e) = renew_saved(&store, &mut credentials, answer, Utc::now())
            {
                tracing::warn!(error = %format!("{e:#}"), "cannot save the renewed session");
            }
        });
        Ok(client
            .with_token(credentials.access_token)
            .with_api_key_renewal(renewal))
    }
}

/// Puts a token answered at `now` in the cache, when there is one. A cache that cannot be
/// written only costs an exchange next time: warned about, not fatal.
fn cache_token(
    cache: Option<&TokenCache>,
    url: &str,
    key: &CheckedApiKey,
    answer: &TokenResponse,
    now: chrono::DateTime<Utc>,
) {
    let Some(cache) = cache else { return };
    let saved = CachedToken::new(url, answer, now).and_then(|token| cache.save(key, &token));
    if let Err(e) = saved {
        tracing::warn!(error = %format!("{e:#}"), "cannot cache the API key's token; set GATEHOUSE_TOKEN_CACHE=off to keep it in memory only");
    }
}

/// Updates a saved `login --api-key` session with a token answered at `now`.
fn renew_saved(
    store: &CredentialsStore,
    credentials: &mut Credentials,
    answer: &TokenResponse,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    credentials.expires_at = api_key::expiry(answer, now)?;
    credentials.obtained_at = Some(now);
    credentials.access_token = answer.access_token.clone();
    store.save(credentials)
}

/// A mistake in how a command was called that the parser cannot see (exit status 2, like
/// the parser's own usage errors).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Ensures an update changes something, naming the flags that would.
fn require_change(any: bool, flags: &str) -> anyhow::Result<()> {
    if !any {
        return Err(UsageError(format!("nothing to change: pass {flags}")).into());
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
        Logout(LogoutArgs),
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
        /// Audit trail.
        Audit {
            #[command(subcommand)]
            command: AuditCommand,
        },
        /// Authorized devices.
        #[command(name = "authorized-device")]
        AuthorizedDevice {
            #[command(subcommand)]
            command: DeviceCommand,
        },
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("gatehouse").chain(args.iter().copied()))
    }

    #[test]
    fn errors_tell_each_cause_once_and_in_json_keep_the_api_shape() {
        #[derive(Debug, thiserror::Error)]
        #[error("Connection refused (os error 111)")]
        struct Os;
        #[derive(Debug, thiserror::Error)]
        #[error("tcp connect error: Connection refused (os error 111)")]
        struct Tcp(#[source] Os);
        let e = anyhow::Error::new(Tcp(Os)).context("reaching the gateway");
        assert_eq!(
            error_text(&e),
            "reaching the gateway: tcp connect error: Connection refused (os error 111)"
        );
        let api = crate::client::decode_api_error(
            409,
            None,
            br#"{"error":"conflict","code":"name_taken","message":"taken","request_id":"r1"}"#,
        );
        let e = anyhow::Error::new(api).context("creating ci-bot");
        let (line, status) = report_error(&e, OutputFormat::Json);
        assert_eq!(status, 1);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&line).ok(),
            Some(
                serde_json::json!({"error": "conflict", "code": "name_taken",
                "message": "taken", "request_id": "r1"})
            )
        );
        let usage = require_change(false, "--active").expect_err("nothing to change");
        let (line, status) = report_error(&usage, OutputFormat::Table);
        assert_eq!(
            (line.as_str(), status),
            ("error: nothing to change: pass --active", 2)
        );
        let (line, _) = report_error(&usage, OutputFormat::Json);
        assert!(line.contains("\"invalid_usage\""), "{line}");
    }

    #[test]
    fn a_create_whose_outcome_is_unknown_names_the_key_to_send_again() {
        let unavailable = || {
            crate::client::decode_api_error(
                503,
                None,
                br#"{"error":"unavailable","code":"service_unavailable","message":"down","request_id":"r1"}"#,
            )
        };
        let e = create_failed(unavailable(), None, "k-1");
        assert_eq!(
            error_text(&e),
            "the outcome is unknown: to get its first result (nothing is created twice), run \
             the same command with --idempotency-key k-1: unavailable (service_unavailable): \
             down [request r1]"
        );
        let (line, _) = report_error(
            &create_failed(unavailable(), Some("gatehouse x".into()), "k-2")
                .context("the key may not have been created"),
            OutputFormat::Json,
        );
        let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(
            (&json["error"], &json["idempotency_key"]),
            (&"unavailable".into(), &"k-2".into())
        );
        let taken = crate::client::decode_api_error(
            409,
            None,
            br#"{"error":"conflict","code":"name_taken","message":"taken","request_id":"r1"}"#,
        );
        let e = create_failed(taken, None, "k-3");
        assert!(
            e.downcast_ref::<OutcomeUnknown>().is_none(),
            "a refusal is known"
        );
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
    fn api_key_flags_are_checked_by_the_parser() {
        assert!(parse(&["login", "--api-key"]).is_ok());
        assert!(parse(&["login", "--api-key", "--username", "bob"]).is_err());
        assert!(parse(&["login", "--api-key", "--password-stdin"]).is_err());
        let sa = |rest: &[&str]| {
            let mut args = vec!["service-account", "api-key", "ci-bot"];
            args.extend_from_slice(rest);
            parse(&args)
        };
        assert!(
            sa(&[
                "create",
                "deploy",
                "-d",
                "deploy job",
                "--expires-in",
                "30d"
            ])
            .is_ok()
        );
        assert!(sa(&["create", "deploy", "--expires-in", "0"]).is_err());
        assert!(sa(&["create", "deploy", "--expires-in", "soon"]).is_err());
        assert!(sa(&["list", "--active", "true", "--page", "2"]).is_ok());
        assert!(sa(&["describe", "deploy"]).is_ok());
        assert!(sa(&["rotate", "deploy", "--retain", "60"]).is_ok());
        assert!(sa(&["rotate", "deploy", "--retain", "-1"]).is_err());
        assert!(sa(&["rotate", "deploy", "--retain", "90s"]).is_ok());
        assert!(sa(&["rotate", "deploy", "--retain", "2d"]).is_ok());
        assert!(sa(&["rotate", "deploy", "--retain", "31d"]).is_err());
        assert!(sa(&["update", "deploy", "--active", "false"]).is_ok());
        assert!(sa(&["update", "deploy", "--expires-in", "1h", "--no-expiry"]).is_err());
        assert!(sa(&["delete", "deploy", "--yes"]).is_ok());
        assert!(parse(&["service-account", "create", "ci-bot", "--no-api-key"]).is_ok());
        assert!(
            parse(&[
                "audit",
                "tail",
                "--subject",
                "gatehouse.events.api_key.>",
                "--count",
                "3",
                "--from-start"
            ])
            .is_ok()
        );
    }

    #[test]
    fn login_picks_the_device_flow_unless_told_otherwise() {
        let login = |args: &[&str]| -> Result<LoginArgs, clap::Error> {
            let mut all = vec!["login"];
            all.extend_from_slice(args);
            match parse(&all)?.command {
                Command::Login(a) => Ok(a),
                other => panic!("{other:?}"),
            }
        };
        let device = login(&["--url", "http://h:1"]).expect("plain login");
        assert!(!device.device && device.username.is_none() && !device.api_key);
        let explicit = login(&["--device", "--no-browser"]).expect("--device");
        assert!(explicit.device && explicit.no_browser);
        assert!(login(&["--username", "alice", "--password-stdin"]).is_ok());
        // --password-stdin belongs to a password login; the methods exclude each other.
        assert!(login(&["--password-stdin"]).is_err());
        assert!(login(&["--device", "--username", "alice"]).is_err());
        assert!(login(&["--device", "--api-key"]).is_err());
        assert!(login(&["--no-browser", "--username", "alice"]).is_err());
        assert!(login(&["--no-browser", "--api-key"]).is_err());
    }

    #[test]
    fn authorized_device_commands_parse() {
        let id = "0190f0a8-3b1c-7000-8000-00000000d001";
        let dev = |rest: &[&str]| {
            let mut args = vec!["authorized-device"];
            args.extend_from_slice(rest);
            parse(&args)
        };
        assert!(dev(&["list"]).is_ok());
        assert!(dev(&["list", "--status", "active", "--page", "2", "--size", "5"]).is_ok());
        assert!(dev(&["list", "--status", "asleep"]).is_err());
        for verb in ["describe", "lock", "unlock", "delete"] {
            assert!(dev(&[verb, id]).is_ok(), "{verb}");
            assert!(dev(&[verb, "laptop"]).is_err(), "{verb} takes an id");
            assert!(dev(&[verb]).is_err(), "{verb} needs an id");
        }
        assert!(dev(&["delete", id, "--yes"]).is_ok());
        assert!(dev(&["approve", "WDJB-MJHT"]).is_ok());
        assert!(dev(&["approve", "WDJB-MJHT", "--trust"]).is_ok());
        assert!(dev(&["approve", "WDJB-MJHT", "--deny"]).is_ok());
        assert!(dev(&["approve", "WDJB-MJHT", "--trust", "--deny"]).is_err());
        assert!(dev(&["approve"]).is_err());
        let cli = dev(&["list", "-o", "json"]).expect("json");
        assert_eq!(cli.globals.output, OutputFormat::Json);
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

    /// Every list command's default table, filled with what real listings hold (names and
    /// descriptions of the lengths people use, host names, every time column set), fits an
    /// 80-column terminal; `--wide` shows more.
    mod eighty_columns {
        use crate::client::{ApiKey, Device, Page, ServiceAccount, SigningKeyList, User};
        use crate::output::{Table, View, WIDTH};

        fn page<T: serde::de::DeserializeOwned>(items: Vec<serde_json::Value>) -> Page<T> {
            serde_json::from_value(serde_json::json!({
                "index": 1, "max_size": 20, "total_pages": 1, "total": items.len(), "items": items,
            }))
            .expect("page")
        }

        fn assert_fits(what: &str, table: &Table, wide: &Table) {
            let text = table.render();
            for line in text.lines() {
                assert!(
                    line.chars().count() <= WIDTH,
                    "{what}: a line of {} columns:\n{text}",
                    line.chars().count()
                );
            }
            assert!(
                wide.render().lines().map(|l| l.chars().count()).max()
                    > text.lines().map(|l| l.chars().count()).max(),
                "{what}: --wide shows more"
            );
        }

        const T: &str = "2026-12-03T11:15:42.123456Z";

        #[test]
        fn every_list_table_fits_80_columns_by_default() {
            let users: Page<User> = page(
                ["admin", "alice.martin", "data-platform-oncall"]
                    .iter()
                    .enumerate()
                    .map(|(i, name)| {
                        serde_json::json!({
                        "id": format!("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f40{i:02}"), "name": name,
                        "role": "member", "active": true, "created": T, "updated": T})
                    })
                    .collect(),
            );
            let table = |view| super::super::users::user_table(&users, view);
            assert_fits("user list", &table(View::Default), &table(View::Wide));

            let accounts: Page<ServiceAccount> = page(vec![
                serde_json::json!({"id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "name": "ci-bot",
                    "description": "Nightly training pipeline for the recommendation models, owned by the ML platform team",
                    "active": true, "role": "member", "owner": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a00",
                    "created": T, "updated": T}),
                serde_json::json!({"id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c", "name": "feature-store-sync",
                    "description": "", "active": false, "role": "admin",
                    "owner": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a00", "created": T, "updated": T}),
            ]);
            let table = |view| super::super::service_accounts::account_table(&accounts, view);
            assert_fits(
                "service-account list",
                &table(View::Default),
                &table(View::Wide),
            );

            let key = |name: &str, expired: bool| {
                serde_json::json!({
                "id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "name": name, "description": "deploy job",
                "service_account_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a00", "active": true,
                "expired": expired, "created": T, "updated": T, "last_rotated": T, "last_used": T,
                "expires_at": T, "generation": 12, "retained_secrets": []})
            };
            let keys: Page<ApiKey> =
                page(vec![key("deploy-production", false), key("default", true)]);
            let table = |view| super::super::api_keys::key_table(&keys, view);
            assert_fits("api-key list", &table(View::Default), &table(View::Wide));

            let device = |id: &str, host: &str| {
                serde_json::json!({
                "id": id, "status": "active", "trusted": true,
                "owner_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a00", "owner": "alice.martin",
                "client_id": "gatehouse-cli", "hostname": host, "os": "macos aarch64",
                "client_version": "0.1.0", "ip_address": "2001:db8:85a3::8a2e:370:7334",
                "created": T, "verified_at": T, "last_login": T, "expires": T})
            };
            let devices: Page<Device> = page(vec![
                device(
                    "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                    "alice-macbook-pro.corp.example.com",
                ),
                device("0193a1c7-0000-7e5f-8a9b-0c1d2e3f4a5c", "gpu-node-17"),
            ]);
            let current = Some(devices.items[1].id);
            let table = |view| super::super::devices::device_table(&devices, current, view);
            assert_fits(
                "authorized-device list",
                &table(View::Default),
                &table(View::Wide),
            );

            let signing: SigningKeyList = serde_json::from_value(serde_json::json!({"items": [
                {"kid": "BV1FHrJJ2vdvbpnn", "status": "verifying", "active_from": T, "retired_at": T},
                {"kid": "1EJeigjICcpyKc3w", "status": "signing", "active_from": T},
            ]}))
            .expect("signing keys");
            let text = super::super::signing_keys::key_table(&signing).render();
            assert!(text.lines().all(|l| l.chars().count() <= WIDTH), "{text}");
        }
    }

    /// The API-key paths against a small stand-in gateway: the token endpoint and
    /// `current-user`, counting exchanges.
    mod api_key_sessions {
        use std::sync::{Arc, Mutex};

        use secrecy::{ExposeSecret as _, SecretString};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        use super::super::*;
        use crate::credentials::Principal;

        #[derive(Debug, Default)]
        struct Gateway {
            /// Token exchanges seen.
            exchanges: u32,
            /// The token `current-user` accepts.
            valid_token: String,
            /// Refuse exchanges with this `gatehouse_reason`.
            refuse: Option<&'static str>,
            /// `api_key` form values received (to check what is sent).
            keys_seen: Vec<String>,
        }

        /// Serves one request per connection until the test ends.
        async fn spawn_gateway(state: Arc<Mutex<Gateway>>) -> anyhow::Result<String> {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let url = format!("http://{}", listener.local_addr()?);
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    let state = state.clone();
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 4096];
                        let (head, body) = loop {
                            let Ok(n) = socket.read(&mut chunk).await else {
                                return;
                            };
                            if n == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                            let text = String::from_utf8_lossy(&buf).to_string();
                            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                                let length = head
                                    .lines()
                                    .find_map(|l| {
                                        l.to_ascii_lowercase()
                                            .strip_prefix("content-length:")
                                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                                    })
                                    .unwrap_or(0);
                                if body.len() >= length {
                                    break (head.to_owned(), body.to_owned());
                                }
                            }
                        };
                        let (status, json) = answer(&state, &head, &body);
                        let response = format!(
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
                            json.len()
                        );
                        let _ = socket.write_all(response.as_bytes()).await;
                    });
                }
            });
            Ok(url)
        }

        fn answer(state: &Mutex<Gateway>, head: &str, body: &str) -> (&'static str, String) {
            let Ok(mut gw) = state.lock() else {
                return ("500 Internal Server Error", String::new());
            };
            let request_line = head.lines().next().unwrap_or_default();
            if request_line.starts_with("POST /oauth/token ") {
                let form: Vec<(String, String)> = serde_urlencoded_pairs(body);
                let grant = form
                    .iter()
                    .find(|(k, _)| k == "grant_type")
                    .map(|(_, v)| v.as_str());
                assert_eq!(grant, Some(crate::client::API_KEY_GRANT_TYPE));
                if let Some((_, key)) = form.iter().find(|(k, _)| k == "api_key") {
                    gw.keys_seen.push(key.clone());
                }
                if let Some(reason) = gw.refuse {
                    return (
                        "400 Bad Request",
                        serde_json::json!({"error": "invalid_grant", "error_description": "refused", "gatehouse_reason": reason}).to_string(),
                    );
                }
                gw.exchanges += 1;
                gw.valid_token = format!("token-{}", gw.exchanges);
                return (
                    "200 OK",
                    serde_json::json!({"access_token": gw.valid_token, "token_type": "Bearer", "expires_in": 3600}).to_string(),
                );
            }
            if request_line.starts_with("GET /api/v1/current-user ") {
                let bearer =
                    format!("authorization: bearer {}", gw.valid_token).to_ascii_lowercase();
                if head.lines().any(|l| l.to_ascii_lowercase() == bearer) {
                    return (
                        "200 OK",
                        serde_json::json!({"id": "0190f0a8-3b1c-7000-8000-000000000001", "name": "ci-bot",
                            "kind": "service_account", "role": "member", "authenticated_by": "api_key"}).to_string(),
                    );
                }
                return (
                    "401 Unauthorized",
                    serde_json::json!({"error": "unauthenticated", "message": "token refused", "request_id": "r"}).to_string(),
                );
            }
            (
                "404 Not Found",
                serde_json::json!({"error": "not_found", "message": "no route", "request_id": "r"})
                    .to_string(),
            )
        }

        /// `a=b&c=d` with percent-decoding, enough for the token form.
        fn serde_urlencoded_pairs(body: &str) -> Vec<(String, String)> {
            reqwest::Url::parse(&format!("http://x/?{body}"))
                .map(|u| {
                    u.query_pairs()
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect()
                })
                .unwrap_or_default()
        }

        fn key() -> (String, uuid::Uuid) {
            let id = uuid::Uuid::new_v4();
            (
                gatehouse_tokens::generate_api_key(id)
                    .full
                    .expose_secret()
                    .to_owned(),
                id,
            )
        }

        fn context(url: &str, dir: &std::path::Path, key: Option<&str>, cache: bool) -> Context {
            let store = CredentialsStore::in_dir(dir);
            Context {
                globals: Globals {
                    url: Some(url.to_owned()),
                    output: OutputFormat::Table,
                },
                token_cache: cache.then(|| TokenCache::in_config_dir(dir)),
                store,
                env_api_key: key.map(|k| SecretString::from(k.to_owned())),
            }
        }

        #[tokio::test]
        async fn an_env_key_is_exchanged_once_cached_and_renewed_after_a_401() -> anyhow::Result<()>
        {
            let state = Arc::new(Mutex::new(Gateway::default()));
            let url = spawn_gateway(state.clone()).await?;
            let dir = tempfile::tempdir()?;
            let (key, _) = key();

            let ctx = context(&url, dir.path(), Some(&key), true);
            assert_eq!(ctx.client().await?.current_user().await?.name, "ci-bot");
            assert_eq!(state.lock().map(|g| g.exchanges).unwrap_or(0), 1);
            // The next command reuses the cached token: no exchange.
            assert_eq!(ctx.client().await?.current_user().await?.name, "ci-bot");
            assert_eq!(state.lock().map(|g| g.exchanges).unwrap_or(0), 1);
            let checked = CheckedApiKey::parse(&key, "the key")?;
            let cache_file = TokenCache::in_config_dir(dir.path()).path(&url, &checked);
            let cached = std::fs::read_to_string(&cache_file)?;
            assert!(
                cached.contains("token-1") && !cached.contains(&key),
                "{cached}"
            );

            // The gateway stops accepting the cached (still fresh) token, as after a
            // revocation: the client exchanges the key once more and repeats the call.
            if let Ok(mut gw) = state.lock() {
                gw.valid_token = "not-token-1".into();
            }
            let me = ctx.client().await?.current_user().await?;
            assert_eq!(me.name, "ci-bot");
            assert_eq!(state.lock().map(|g| g.exchanges).unwrap_or(0), 2);
            assert!(std::fs::read_to_string(&cache_file)?.contains("token-2"));
            // Every exchange sent the key as given.
            assert!(
                state
                    .lock()
                    .map(|g| g.keys_seen.iter().all(|k| *k == key))
                    .unwrap_or(false)
            );
            Ok(())
        }

        #[tokio::test]
        async fn without_the_cache_nothing_is_written_and_every_command_exchanges()
        -> anyhow::Result<()> {
            let state = Arc::new(Mutex::new(Gateway::default()));
            let url = spawn_gateway(state.clone()).await?;
            let dir = tempfile::tempdir()?;
            let (key, _) = key();
            let ctx = context(&url, dir.path(), Some(&key), false);
            ctx.client().await?.current_user().await?;
            ctx.client().await?.current_user().await?;
            assert_eq!(state.lock().map(|g| g.exchanges).unwrap_or(0), 2);
            assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
            Ok(())
        }

        #[tokio::test]
        async fn a_refused_key_says_why_and_what_to_do() -> anyhow::Result<()> {
            let state = Arc::new(Mutex::new(Gateway::default()));
            let url = spawn_gateway(state.clone()).await?;
            let dir = tempfile::tempdir()?;
            let (key, _) = key();
            for (reason, expected) in [
                ("invalid", "the API key is invalid"),
                ("deactivated", "--active true"),
                ("expired", "has expired"),
                ("rotated", "--retain 1h"),
            ] {
                if let Ok(mut gw) = state.lock() {
                    gw.refuse = Some(reason);
                }
                let ctx = context(&url, dir.path(), Some(&key), true);
                let error = format!("{:#}", ctx.client().await.expect_err(reason));
                assert!(error.contains("GATEHOUSE_API_KEY"), "{error}");
                assert!(error.contains(expected), "{reason}: {error}");
                assert!(!error.contains(&key), "{error}");
            }
            Ok(())
        }

        #[tokio::test]
        async fn a_malformed_env_key_is_refused_before_any_request() -> anyhow::Result<()> {
            let state = Arc::new(Mutex::new(Gateway::default()));
            let url = spawn_gateway(state.clone()).await?;
            let dir = tempfile::tempdir()?;
            let (key, _) = key();
            let ctx = context(&url, dir.path(), Some(&key[..91]), true);
            let error = format!("{:#}", ctx.client().await.expect_err("short key"));
            assert!(error.contains("not a well-formed API key"), "{error}");
            assert!(
                state
                    .lock()
                    .map(|g| g.keys_seen.is_empty())
                    .unwrap_or(false)
            );
            Ok(())
        }

        #[tokio::test]
        async fn the_env_key_wins_over_a_saved_login_and_needs_a_url() -> anyhow::Result<()> {
            let state = Arc::new(Mutex::new(Gateway::default()));
            let url = spawn_gateway(state.clone()).await?;
            let dir = tempfile::tempdir()?;
            let (key, _) = key();
            let saved = Credentials {
                url: url.clone(),
                access_token: SecretString::from("saved-password-session"),
                expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
                principal: Principal {
                    name: "alice".into(),
                    kind: "user".into(),
                },
                obtained_at: None,
                api_key: None,
                device_id: None,
            };
            CredentialsStore::in_dir(dir.path()).save(&saved)?;
            let ctx = context(&url, dir.path(), Some(&key), true);
            assert_eq!(ctx.client().await?.current_user().await?.name, "ci-bot");
            let mut no_url = context(&url, dir.path(), Some(&key), true);
            no_url.globals.url = None;
            let error = no_url.client().await.expect_err("no url").to_string();
            assert!(error.contains("set GATEHOUSE_URL or pass --url"), "{error}");
            Ok(())
        }

        #[tokio::test]
        async fn a_saved_key_session_renews_its_stale_token_and_saves_it() -> anyhow::Result<()> {
            let state = Arc::new(Mutex::new(Gateway::default()));
            let url = spawn_gateway(state.clone()).await?;
            let dir = tempfile::tempdir()?;
            let (key, _) = key();
            let now = chrono::Utc::now();
            let saved = Credentials {
                url: url.clone(),
                access_token: SecretString::from("stale"),
                // 50 s left: less than a minute, so not fresh.
                expires_at: now + chrono::Duration::seconds(50),
                principal: Principal {
                    name: "ci-bot".into(),
                    kind: "service_account".into(),
                },
                obtained_at: Some(now - chrono::Duration::minutes(59)),
                api_key: Some(SecretString::from(key.clone())),
                device_id: None,
            };
            let store = CredentialsStore::in_dir(dir.path());
            store.save(&saved)?;
            let ctx = context(&url, dir.path(), None, true);
            assert_eq!(ctx.client().await?.current_user().await?.name, "ci-bot");
            assert_eq!(state.lock().map(|g| g.exchanges).unwrap_or(0), 1);
            let renewed = store.load()?.expect("saved");
            assert_eq!(renewed.access_token.expose_secret(), "token-1");
            assert!(renewed.expires_at > now + chrono::Duration::minutes(59));
            assert_eq!(
                renewed
                    .api_key
                    .as_ref()
                    .map(|k| k.expose_secret().to_owned()),
                Some(key)
            );
            Ok(())
        }
    }
}
