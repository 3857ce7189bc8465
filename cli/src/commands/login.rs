//! `login`, `logout`, `current-user`.

use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;

use super::prompt::{self, blocking};
use super::{Context, DEFAULT_URL, Globals};
use crate::api_key::{self, API_KEY_ENV, CheckedApiKey};
use crate::client::{CurrentUser, GatehouseClient, TokenResponse};
use crate::credentials::{Credentials, Principal};
use crate::output::{self, OutputFormat};

/// Options of `gatehouse login`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "\
The gateway URL comes from --url (or GATEHOUSE_URL), else the URL of the saved session, else
http://127.0.0.1:8080. The session is saved in $GATEHOUSE_CONFIG_DIR/credentials.json (default
~/.config/gatehouse), readable by you only.

With --api-key you log in as a service account: the key is read without echo on a terminal,
else from the first line of stdin. The credentials file then also holds the API key, so that
the CLI can exchange it for a new token when the old one expires; `gatehouse logout` removes
it. For CI, prefer GATEHOUSE_API_KEY with GATEHOUSE_URL: no login step and no saved key.

Examples:
  gatehouse login --url https://gatehouse.example.com --username alice
  printf '%s\\n' \"$PASSWORD\" | gatehouse login --url http://127.0.0.1:8080 --username admin --password-stdin
  gatehouse login --url https://gatehouse.example.com --api-key")]
pub struct LoginArgs {
    /// User name (prompted for when missing).
    #[arg(long, short = 'u', value_name = "NAME")]
    pub username: Option<String>,
    /// Read the password from the first line of stdin instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
    /// Log in with a service account's API key (prompted for; read from stdin when stdin is
    /// not a terminal). The key is saved with the session to renew its token.
    #[arg(long, conflicts_with_all = ["username", "password_stdin"])]
    pub api_key: bool,
}

/// What `login -o json` prints (never the token).
#[derive(Debug, Serialize)]
struct LoggedIn<'a> {
    url: &'a str,
    principal: &'a Principal,
    expires_at: chrono::DateTime<chrono::Utc>,
}

/// `gatehouse login`: exchanges a user name and password for a token and saves it.
pub async fn login(args: LoginArgs, globals: &Globals) -> anyhow::Result<()> {
    let ctx = Context::new(globals)?;
    let saved_url = ctx.store.load().ok().flatten().map(|c| c.url);
    let url = globals
        .url
        .clone()
        .or(saved_url)
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    // Check the URL before asking for anything.
    let client = GatehouseClient::new(&url, None)?;
    if args.api_key {
        return login_with_api_key(&ctx, client).await;
    }

    let username = match args.username.filter(|u| !u.trim().is_empty()) {
        Some(u) => u,
        None if args.password_stdin => anyhow::bail!("--password-stdin needs --username"),
        None => blocking(|| prompt::line("Username: ", "the user name", "use --username")).await?,
    };
    if username.is_empty() {
        anyhow::bail!("no user name given");
    }
    let password = if args.password_stdin {
        blocking(|| prompt::secrets_from_stdin(1, &["password"]))
            .await?
            .remove(0)
    } else {
        let prompt_text = format!("Password for {username}: ");
        blocking(move || prompt::password(&prompt_text)).await?
    };

    let token = client.login_password(&username, &password).await?;
    drop(password);
    let expires_at = i64::try_from(token.expires_in)
        .ok()
        .and_then(chrono::TimeDelta::try_seconds)
        .and_then(|ttl| chrono::Utc::now().checked_add_signed(ttl))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the server answered an unusable expires_in of {} s",
                token.expires_in
            )
        })?;
    let client = client.with_token(token.access_token.clone());
    let me: CurrentUser = client.current_user().await?;
    let credentials = Credentials {
        url: client.url(),
        access_token: token.access_token,
        expires_at,
        principal: Principal {
            name: me.name,
            kind: me.kind,
        },
        obtained_at: Some(chrono::Utc::now()),
        api_key: None,
    };
    ctx.store.save(&credentials)?;
    print_logged_in(&ctx, &credentials)
}

fn print_logged_in(ctx: &Context, credentials: &Credentials) -> anyhow::Result<()> {
    match ctx.output() {
        OutputFormat::Json => output::emit_json(&LoggedIn {
            url: &credentials.url,
            principal: &credentials.principal,
            expires_at: credentials.expires_at,
        }),
        OutputFormat::Table => {
            output::emit(&format!(
                "Logged in to {} as {} (token valid until {} UTC)\n",
                credentials.url,
                credentials.principal.name,
                output::timestamp(&credentials.expires_at)
            ))?;
            if credentials.api_key.is_some() {
                output::emit(&format!(
                    "The API key is saved in {} (readable by you only) to renew the token; \
                     `gatehouse logout` removes it.\n",
                    ctx.store.path().display()
                ))?;
            }
            Ok(())
        }
    }
}

/// Reads an API key: without echo on a terminal, else the first line of stdin.
fn read_api_key() -> anyhow::Result<SecretString> {
    if prompt::stdin_is_terminal() {
        prompt::password("API key: ")
    } else {
        Ok(prompt::secrets_from_stdin(1, &["API key"])?.remove(0))
    }
}

/// `gatehouse login --api-key`: checks the key's shape, exchanges it, and saves the
/// session with the key.
async fn login_with_api_key(ctx: &Context, client: GatehouseClient) -> anyhow::Result<()> {
    let raw = blocking(read_api_key).await?;
    let key = CheckedApiKey::parse(raw.expose_secret(), "the key you entered")?;
    drop(raw);
    if ctx.env_api_key.is_some() {
        tracing::warn!(
            "{API_KEY_ENV} is set: other commands use it, not the session saved by this login"
        );
    }
    let now = chrono::Utc::now();
    let token: TokenResponse = client.login_api_key(key.secret()).await?;
    let expires_at = api_key::expiry(&token, now)?;
    let client = client.with_token(token.access_token.clone());
    let me: CurrentUser = client.current_user().await?;
    let credentials = Credentials {
        url: client.url(),
        access_token: token.access_token,
        expires_at,
        principal: Principal {
            name: me.name,
            kind: me.kind,
        },
        obtained_at: Some(now),
        api_key: Some(key.secret().clone()),
    };
    ctx.store.save(&credentials)?;
    print_logged_in(ctx, &credentials)
}

/// `gatehouse logout`: forgets the saved session.
pub async fn logout(globals: &Globals) -> anyhow::Result<()> {
    let ctx = Context::new(globals)?;
    let saved = ctx.store.load().ok().flatten();
    let removed = ctx.store.clear()?;
    if ctx.output() == OutputFormat::Table {
        let text = match (removed, saved) {
            (true, Some(c)) => {
                format!("Logged out of {} ({} forgotten)\n", c.url, c.principal.name)
            }
            (true, None) => "Logged out\n".to_owned(),
            (false, _) => "Not logged in\n".to_owned(),
        };
        output::emit(&text)?;
    }
    Ok(())
}

/// `gatehouse current-user`: who the saved session belongs to, according to the server.
pub async fn current_user(globals: &Globals) -> anyhow::Result<()> {
    let ctx = Context::new(globals)?;
    let me = ctx.client().await?.current_user().await?;
    match ctx.output() {
        OutputFormat::Json => output::emit_json(&me),
        OutputFormat::Table => {
            let mut rows = vec![
                ("name".to_owned(), me.name.clone()),
                ("id".to_owned(), me.id.to_string()),
                ("kind".to_owned(), me.kind.clone()),
                ("role".to_owned(), me.role.clone()),
                ("authenticated by".to_owned(), me.authenticated_by.clone()),
            ];
            rows.extend(output::extra_fields(&me.extra));
            output::emit(&output::describe(rows))
        }
    }
}
