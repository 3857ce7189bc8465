//! `login`, `logout`, `current-user`.

use std::io::{IsTerminal as _, Write};
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;

use super::prompt::{self, blocking};
use super::{Context, DEFAULT_URL, Globals};
use crate::api_key::{self, API_KEY_ENV, CheckedApiKey};
use crate::client::{CurrentUser, Device, DeviceAuthorization, GatehouseClient, TokenResponse};
use crate::credentials::{Credentials, Principal};
use crate::device_flow::{self, Clock, PollEvent, SystemClock};
use crate::output::{self, OutputFormat};

/// Options of `gatehouse login`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "\
How you log in:
  (no option) or --device   in a browser: the CLI shows a short code and a link; open the link
                            (on any device), sign in there, check the code and approve. Nothing
                            secret is typed here. The browser opens by itself when this runs on
                            a desktop (not in CI, not over SSH, not with --no-browser). The device
                            then appears in `gatehouse authorized-device list`; its token lasts
                            24 hours, or 30 days if you ticked \"Trust this device\", and is not
                            renewed: log in again when it expires.
  --username NAME           with a password, prompted for without echo (or --password-stdin).
  --api-key                 as a service account, with one of its API keys.

The gateway URL comes from --url (or GATEHOUSE_URL), else the URL of the saved session, else
http://127.0.0.1:8080. The session is saved in $GATEHOUSE_CONFIG_DIR/credentials.json (default
~/.config/gatehouse), readable by you only, and only once the login has succeeded: Ctrl-C or
an expired code leaves the previous session as it was.

With --api-key the key is read without echo on a terminal, else from the first line of stdin.
The credentials file then also holds the API key, so that the CLI can exchange it for a new
token when the old one expires; `gatehouse logout` removes it. For CI, prefer
GATEHOUSE_API_KEY with GATEHOUSE_URL: no login step and no saved key.

Examples:
  gatehouse login --url https://gatehouse.example.com
  gatehouse login --url https://gatehouse.example.com --no-browser
  gatehouse login --url https://gatehouse.example.com --username alice
  printf '%s\\n' \"$PASSWORD\" | gatehouse login --url http://127.0.0.1:8080 --username admin --password-stdin
  gatehouse login --url https://gatehouse.example.com --api-key")]
pub struct LoginArgs {
    /// Log in with this user name and a password (prompted for) instead of in a browser.
    #[arg(long, short = 'u', value_name = "NAME")]
    pub username: Option<String>,
    /// Read the password from the first line of stdin instead of prompting (with
    /// --username).
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Log in with a service account's API key (prompted for; read from stdin when stdin is
    /// not a terminal). The key is saved with the session to renew its token.
    #[arg(long, conflicts_with_all = ["username", "password_stdin"])]
    pub api_key: bool,
    /// Log in by approving this device in a browser (RFC 8628 device login). This is what
    /// `login` does without --username or --api-key.
    #[arg(long, conflicts_with_all = ["username", "password_stdin", "api_key"])]
    pub device: bool,
    /// Device login: do not open a browser, only print the link and the code.
    #[arg(long, conflicts_with_all = ["username", "password_stdin", "api_key"])]
    pub no_browser: bool,
}

/// How `login` authenticates, from its options.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Method {
    /// `--username NAME`: a password.
    Password { username: String },
    /// `--api-key`.
    ApiKey,
    /// The default (and `--device`): approve this device in a browser.
    Device { no_browser: bool },
}

impl LoginArgs {
    fn method(&self) -> anyhow::Result<Method> {
        if self.api_key {
            return Ok(Method::ApiKey);
        }
        match &self.username {
            Some(name) if name.trim().is_empty() => anyhow::bail!("no user name given"),
            Some(name) => Ok(Method::Password {
                username: name.trim().to_owned(),
            }),
            None => Ok(Method::Device {
                no_browser: self.no_browser,
            }),
        }
    }
}

/// What `login -o json` prints (never the token).
#[derive(Debug, Serialize)]
struct LoggedIn<'a> {
    url: &'a str,
    principal: &'a Principal,
    expires_at: chrono::DateTime<chrono::Utc>,
    /// Device login: the authorized device, as the server describes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<&'a Device>,
}

/// `gatehouse login`: exchanges a user name and password, an API key, or an approval in a
/// browser for a token, and saves it.
pub async fn login(args: LoginArgs, globals: &Globals) -> anyhow::Result<()> {
    let ctx = Context::new(globals)?;
    let method = args.method()?;
    let saved_url = ctx.store.load().ok().flatten().map(|c| c.url);
    let url = globals
        .url
        .clone()
        .or(saved_url)
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    // Check the URL before asking for anything.
    let client = GatehouseClient::new(&url, None)?;
    let username = match method {
        Method::ApiKey => return login_with_api_key(&ctx, client).await,
        Method::Device { no_browser } => return login_with_device(&ctx, client, no_browser).await,
        Method::Password { username } => username,
    };
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
        device_id: None,
    };
    ctx.store.save(&credentials)?;
    print_logged_in(&ctx, &credentials)
}

/// What the person is told to do: open the link and enter the code. Server-supplied text
/// is sanitised (it must not drive the terminal).
fn instructions(authorization: &DeviceAuthorization) -> String {
    let mut text = format!(
        "To sign in, open {} and enter  {}\n",
        output::sanitize(&authorization.verification_uri),
        output::sanitize(&authorization.user_code)
    );
    match authorization
        .verification_uri_complete
        .as_deref()
        .filter(|u| !u.is_empty())
    {
        Some(complete) => text.push_str(&format!(
            "(or open {})   ... waiting\n",
            output::sanitize(complete)
        )),
        None => text.push_str("... waiting\n"),
    }
    text
}

/// A device login that succeeded, not yet saved.
#[derive(Debug)]
struct DeviceSession {
    credentials: Credentials,
    /// The device as the server describes it (`None` when it could not be read).
    device: Option<Device>,
    /// The token's lifetime, as the token endpoint said.
    lifetime: Duration,
}

/// The device flow up to a usable session: asks for codes, tells the person on `out`,
/// opens `browser` when given, polls until approved, and reads who logged in and the
/// device's record. Saves nothing.
async fn device_session<C: Clock>(
    client: &GatehouseClient,
    clock: &C,
    browser: Option<&str>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<DeviceSession> {
    let authorization = client
        .request_device_authorization(&device_flow::this_device(None))
        .await?;
    let _ = out.write_all(instructions(&authorization).as_bytes());
    let _ = out.flush();
    if let Some(program) = browser {
        let link = authorization
            .verification_uri_complete
            .as_deref()
            .unwrap_or(&authorization.verification_uri);
        device_flow::open_browser(program, link);
    }
    let device_code = authorization.device_code.clone();
    let token: TokenResponse = device_flow::wait_for_token(
        clock,
        device_flow::initial_interval(authorization.interval),
        Duration::from_secs(authorization.expires_in),
        || client.poll_device_token(&device_code),
        |event| match event {
            PollEvent::SlowedDown { interval } => {
                tracing::debug!(?interval, "slow_down: polling less often");
            }
            PollEvent::Retrying { error, wait } => {
                let _ = writeln!(
                    out,
                    "({error}; trying again in {})",
                    device_flow::humanize(wait)
                );
            }
        },
    )
    .await?;
    let now = chrono::Utc::now();
    let expires_at = api_key::expiry(&token, now)?;
    let device_id = device_flow::token_facts(&token.access_token).and_then(|f| f.device_id);
    let client = client.clone().with_token(token.access_token.clone());
    let me: CurrentUser = client.current_user().await?;
    let device = match device_id {
        Some(id) => match client.get_device(id).await {
            Ok(device) => Some(device),
            Err(e) => {
                tracing::warn!(error = %e, "logged in, but cannot read this device's record");
                None
            }
        },
        None => {
            tracing::warn!("logged in, but the token names no device");
            None
        }
    };
    Ok(DeviceSession {
        credentials: Credentials {
            url: client.url(),
            access_token: token.access_token,
            expires_at,
            principal: Principal {
                name: me.name,
                kind: me.kind,
            },
            obtained_at: Some(now),
            api_key: None,
            device_id,
        },
        device,
        lifetime: Duration::from_secs(token.expires_in),
    })
}

/// `Logged in as alice on this device (trusted, token valid 30 days).`
fn device_logged_in_line(session: &DeviceSession) -> String {
    let trust = match &session.device {
        Some(device) if device.trusted => "trusted, ",
        Some(_) => "not trusted, ",
        None => "",
    };
    format!(
        "Logged in as {} on this device ({trust}token valid {}).\n",
        output::sanitize(&session.credentials.principal.name),
        device_flow::humanize(session.lifetime)
    )
}

/// `gatehouse login` (device login): see [`device_session`]. Ctrl-C before the end
/// saves nothing.
async fn login_with_device(
    ctx: &Context,
    client: GatehouseClient,
    no_browser: bool,
) -> anyhow::Result<()> {
    if ctx.env_api_key.is_some() {
        tracing::warn!(
            "{API_KEY_ENV} is set: other commands use it, not the session saved by this login"
        );
    }
    let browser = device_flow::browser_program(
        no_browser,
        std::io::stdout().is_terminal(),
        std::env::consts::OS,
        |name| std::env::var(name).ok(),
    );
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handling here: Ctrl-C then simply ends the process, which has
            // saved nothing yet either.
            std::future::pending::<()>().await;
        }
    };
    let session = device_login(
        ctx,
        &client,
        &SystemClock::new(),
        browser,
        &mut std::io::stderr(),
        ctrl_c,
    )
    .await?;
    match ctx.output() {
        OutputFormat::Json => output::emit_json(&LoggedIn {
            url: &session.credentials.url,
            principal: &session.credentials.principal,
            expires_at: session.credentials.expires_at,
            device: session.device.as_ref(),
        }),
        OutputFormat::Table => output::emit(&device_logged_in_line(&session)),
    }
}

/// Runs [`device_session`] until it ends or `cancel` does, and saves the session only
/// when it succeeded. Once `cancel` is a Ctrl-C handler, Ctrl-C during the save is
/// ignored: the session is saved whole or not at all (and the save itself is atomic).
async fn device_login<C: Clock>(
    ctx: &Context,
    client: &GatehouseClient,
    clock: &C,
    browser: Option<&str>,
    out: &mut (dyn Write + Send),
    cancel: impl std::future::Future<Output = ()>,
) -> anyhow::Result<DeviceSession> {
    let session = tokio::select! {
        session = device_session(client, clock, browser, out) => session?,
        () = cancel => anyhow::bail!("cancelled: nothing was saved"),
    };
    ctx.store.save(&session.credentials)?;
    Ok(session)
}

fn print_logged_in(ctx: &Context, credentials: &Credentials) -> anyhow::Result<()> {
    match ctx.output() {
        OutputFormat::Json => output::emit_json(&LoggedIn {
            url: &credentials.url,
            principal: &credentials.principal,
            expires_at: credentials.expires_at,
            device: None,
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
        device_id: None,
    };
    ctx.store.save(&credentials)?;
    print_logged_in(ctx, &credentials)
}

/// `gatehouse logout`: forgets the saved session.
pub async fn logout(args: LogoutArgs, globals: &Globals) -> anyhow::Result<()> {
    let ctx = Context::new(globals)?;
    let saved = ctx.store.load().ok().flatten();
    // A device session ends on the server too (its token is refused at once), unless asked
    // to keep it; a password or key session is only forgotten (its token lapses by itself).
    let device = saved.as_ref().and_then(|c| c.device_id);
    let revoked = match device {
        Some(id) if !args.keep_device && ctx.env_api_key.is_none() => {
            let deleted = match ctx.client().await {
                Ok(client) => client.delete_device(id).await.map_err(anyhow::Error::from),
                Err(error) => Err(error),
            };
            match deleted {
                Ok(()) => Some(Ok(id)),
                Err(error) => Some(Err((id, error))),
            }
        }
        _ => None,
    };
    let removed = ctx.store.clear()?;
    if let Some(Err((id, error))) = &revoked {
        eprintln!(
            "warning: this device ({id}) could not be revoked on the server ({error:#}); it stays \
             authorized until its token expires: `gatehouse authorized-device delete {id}` \
             from any session of yours revokes it"
        );
    }
    if ctx.output() == OutputFormat::Table {
        let text = match (removed, saved) {
            (true, Some(c)) => {
                let mut text =
                    format!("Logged out of {} ({} forgotten)\n", c.url, c.principal.name);
                match (&revoked, c.device_id) {
                    (Some(Ok(id)), _) => {
                        text.push_str(&format!("This device ({id}) was revoked on the server.\n"));
                    }
                    (None, Some(id)) => text.push_str(&format!(
                        "The device stays authorized until its token expires: `gatehouse \
                         authorized-device delete {id}` revokes it now.\n"
                    )),
                    _ => {}
                }
                text
            }
            (true, None) => "Logged out\n".to_owned(),
            (false, _) => "Not logged in\n".to_owned(),
        };
        output::emit(&text)?;
    }
    Ok(())
}

/// `gatehouse logout`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogoutArgs {
    /// After a device login, keep the device authorized on the server (only forget the
    /// session here). By default logging out revokes it.
    #[arg(long)]
    pub keep_device: bool,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use secrecy::ExposeSecret as _;
    use uuid::Uuid;

    use super::*;
    use crate::credentials::CredentialsStore;
    use crate::testing::{FakeClock, MockServer, Reply, Request};

    const DEVICE: &str = "0190f0a8-3b1c-7000-8000-00000000d001";

    fn device_id() -> Uuid {
        Uuid::parse_str(DEVICE).expect("uuid")
    }

    /// A real access token of a device session.
    fn device_token() -> String {
        let claims = gatehouse_tokens::AccessTokenClaims {
            iss: "http://127.0.0.1".into(),
            sub: "0190f0a8-3b1c-7000-8000-000000000001".into(),
            aud: "gatehouse".into(),
            exp: chrono::Utc::now().timestamp() + 30 * 86_400,
            iat: chrono::Utc::now().timestamp(),
            nbf: chrono::Utc::now().timestamp(),
            jti: Uuid::new_v4().to_string(),
            client_id: "gatehouse-cli".into(),
            scope: None,
            principal_kind: gatehouse_tokens::PrincipalKind::User,
            source: gatehouse_tokens::SessionSource::Device {
                id: gatehouse_contracts::DeviceId::from_uuid(device_id()),
            },
            principal_epoch: 0,
        };
        gatehouse_tokens::sign(&claims, &gatehouse_tokens::SigningKey::generate())
    }

    /// The token endpoint answers `polls` in turn (`pending`, `slow_down`,
    /// `access_denied`, ..., or `token`), then `authorization_pending` forever.
    struct Gateway {
        polls: Vec<&'static str>,
        seen: AtomicUsize,
        token: String,
        device_status: u16,
        complete_uri: bool,
    }

    impl Gateway {
        fn new(polls: Vec<&'static str>) -> Self {
            Self {
                polls,
                seen: AtomicUsize::new(0),
                token: device_token(),
                device_status: 200,
                complete_uri: true,
            }
        }

        fn answer(&self, request: &Request, base: &str) -> Reply {
            match request.route().as_str() {
                "POST /oauth/device_authorization" => {
                    let mut body = serde_json::json!({
                        "device_code": "gatehouse_dc_the-device-code", "user_code": "WDJB-MJHT",
                        "verification_uri": format!("{base}/device"),
                        "expires_in": 600, "interval": 5,
                    });
                    if self.complete_uri {
                        body["verification_uri_complete"] =
                            format!("{base}/device?user_code=WDJB-MJHT").into();
                    }
                    Reply::json(200, body)
                }
                "POST /oauth/token" => {
                    let n = self.seen.fetch_add(1, Ordering::SeqCst);
                    match self
                        .polls
                        .get(n)
                        .copied()
                        .unwrap_or("authorization_pending")
                    {
                        "token" => Reply::json(
                            200,
                            serde_json::json!({"access_token": self.token, "token_type": "Bearer", "expires_in": 30 * 86_400}),
                        ),
                        error => Reply::oauth_error(400, error, "as scripted"),
                    }
                }
                "GET /api/v1/current-user" => Reply::json(
                    200,
                    serde_json::json!({"id": "0190f0a8-3b1c-7000-8000-000000000001", "name": "alice",
                        "kind": "user", "role": "member", "authenticated_by": "device"}),
                ),
                route if route == format!("GET /api/v1/devices/{DEVICE}") => {
                    if self.device_status != 200 {
                        return Reply::api_error(
                            self.device_status,
                            "not_found",
                            None,
                            "no device",
                        );
                    }
                    Reply::json(
                        200,
                        serde_json::json!({"id": DEVICE, "status": "active", "trusted": true,
                            "owner_id": "0190f0a8-3b1c-7000-8000-000000000001", "owner": "alice",
                            "client_id": "gatehouse-cli", "hostname": "laptop",
                            "os": "linux x86_64", "created": "2025-01-01T10:00:00Z"}),
                    )
                }
                _ => Reply::api_error(404, "not_found", None, "no route"),
            }
        }
    }

    async fn start(gateway: Gateway) -> (MockServer, Arc<Gateway>) {
        let gateway = Arc::new(gateway);
        let handler = gateway.clone();
        let base = Arc::new(std::sync::Mutex::new(String::new()));
        let base_in = base.clone();
        let server = MockServer::start(move |request| {
            let base = base_in.lock().map(|b| b.clone()).unwrap_or_default();
            handler.answer(request, &base)
        })
        .await
        .expect("server");
        if let Ok(mut b) = base.lock() {
            *b = server.url.clone();
        }
        (server, gateway)
    }

    fn context(url: &str, dir: &std::path::Path) -> Context {
        Context {
            globals: Globals {
                url: Some(url.to_owned()),
                output: OutputFormat::Table,
            },
            store: CredentialsStore::in_dir(dir),
            env_api_key: None,
            token_cache: None,
        }
    }

    /// A password session saved before the device login.
    fn previous_session(url: &str) -> Credentials {
        Credentials {
            url: url.to_owned(),
            access_token: SecretString::from("previous-token"),
            expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            principal: Principal {
                name: "bob".into(),
                kind: "user".into(),
            },
            obtained_at: None,
            api_key: None,
            device_id: None,
        }
    }

    #[tokio::test]
    async fn a_device_login_polls_per_rfc_8628_and_saves_the_session() -> anyhow::Result<()> {
        let (server, gateway) = start(Gateway::new(vec![
            "authorization_pending",
            "slow_down",
            "authorization_pending",
            "token",
        ]))
        .await;
        let dir = tempfile::tempdir()?;
        let ctx = context(&server.url, dir.path());
        let client = GatehouseClient::new(&server.url, None)?;
        let clock = FakeClock::default();
        let mut out = Vec::new();
        let session = device_login(
            &ctx,
            &client,
            &clock,
            None,
            &mut out,
            std::future::pending(),
        )
        .await?;

        let url = &server.url;
        assert_eq!(
            String::from_utf8(out)?,
            format!(
                "To sign in, open {url}/device and enter  WDJB-MJHT\n\
                 (or open {url}/device?user_code=WDJB-MJHT)   ... waiting\n"
            )
        );
        // 5 s before each poll; slow_down makes it 10 s for good.
        assert_eq!(clock.sleeps(), vec![5, 5, 10, 10]);
        assert_eq!(
            server.routes(),
            vec![
                "POST /oauth/device_authorization".to_owned(),
                "POST /oauth/token".to_owned(),
                "POST /oauth/token".to_owned(),
                "POST /oauth/token".to_owned(),
                "POST /oauth/token".to_owned(),
                "GET /api/v1/current-user".to_owned(),
                format!("GET /api/v1/devices/{DEVICE}"),
            ]
        );
        let requests = server.requests();
        let metadata = &requests[0];
        assert_eq!(
            metadata.form_value("client_id").as_deref(),
            Some("gatehouse-cli")
        );
        assert!(metadata.form_value("os").is_some());
        assert_eq!(
            metadata.form_value("client_version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert!(requests[1..5].iter().all(|r| {
            r.form_value("device_code").as_deref() == Some("gatehouse_dc_the-device-code")
        }));
        let bearer = format!("Bearer {}", gateway.token);
        assert!(
            requests[5..]
                .iter()
                .all(|r| r.header("authorization") == Some(&bearer))
        );

        assert_eq!(
            device_logged_in_line(&session),
            "Logged in as alice on this device (trusted, token valid 30 days).\n"
        );
        let saved = ctx.store.load()?.expect("saved");
        assert_eq!(saved.access_token.expose_secret(), gateway.token);
        assert_eq!(saved.device_id, Some(device_id()));
        assert_eq!(saved.principal.name, "alice");
        assert!(saved.api_key.is_none());
        assert!(saved.expires_at > chrono::Utc::now() + chrono::Duration::days(29));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(ctx.store.path())?.permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let json = serde_json::to_value(LoggedIn {
            url: &saved.url,
            principal: &saved.principal,
            expires_at: saved.expires_at,
            device: session.device.as_ref(),
        })?;
        assert_eq!(json["device"]["trusted"], true);
        assert!(!json.to_string().contains(&gateway.token));
        Ok(())
    }

    #[tokio::test]
    async fn a_denied_or_expired_login_keeps_the_previous_session() -> anyhow::Result<()> {
        for (script, expected) in [
            (
                "access_denied",
                "the sign-in request was denied (as scripted): nothing was saved",
            ),
            (
                "expired_token",
                "the code expired before it was approved (as scripted)",
            ),
            (
                "invalid_grant",
                "the server refused the device login (invalid_grant: as scripted)",
            ),
        ] {
            let (server, _) = start(Gateway::new(vec!["authorization_pending", script])).await;
            let dir = tempfile::tempdir()?;
            let ctx = context(&server.url, dir.path());
            ctx.store.save(&previous_session(&server.url))?;
            let client = GatehouseClient::new(&server.url, None)?;
            let error = device_login(
                &ctx,
                &client,
                &FakeClock::default(),
                None,
                &mut Vec::new(),
                std::future::pending(),
            )
            .await
            .expect_err(script);
            assert!(error.to_string().starts_with(expected), "{script}: {error}");
            let kept = ctx.store.load()?.expect("kept");
            assert_eq!(kept.access_token.expose_secret(), "previous-token");
            assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
        }
        Ok(())
    }

    #[tokio::test]
    async fn cancelling_while_waiting_saves_nothing() -> anyhow::Result<()> {
        let (server, gateway) = start(Gateway::new(vec![])).await;
        let dir = tempfile::tempdir()?;
        let ctx = context(&server.url, dir.path());
        ctx.store.save(&previous_session(&server.url))?;
        let client = GatehouseClient::new(&server.url, None)?;
        // "Ctrl-C" once the token endpoint has been polled three times.
        let watched = gateway.clone();
        let cancel = async move {
            while watched.seen.load(Ordering::SeqCst) < 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let error = device_login(
            &ctx,
            &client,
            &FakeClock::default(),
            None,
            &mut Vec::new(),
            cancel,
        )
        .await
        .expect_err("cancelled");
        assert_eq!(error.to_string(), "cancelled: nothing was saved");
        let kept = ctx.store.load()?.expect("kept");
        assert_eq!(kept.access_token.expose_secret(), "previous-token");
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn an_unreadable_device_record_still_logs_in() -> anyhow::Result<()> {
        let mut gateway = Gateway::new(vec!["token"]);
        gateway.device_status = 404;
        gateway.complete_uri = false;
        let (server, _) = start(gateway).await;
        let dir = tempfile::tempdir()?;
        let ctx = context(&server.url, dir.path());
        let client = GatehouseClient::new(&server.url, None)?;
        let mut out = Vec::new();
        let session = device_login(
            &ctx,
            &client,
            &FakeClock::default(),
            None,
            &mut out,
            std::future::pending(),
        )
        .await?;
        assert!(String::from_utf8(out)?.ends_with("WDJB-MJHT\n... waiting\n"));
        assert_eq!(
            device_logged_in_line(&session),
            "Logged in as alice on this device (token valid 30 days).\n"
        );
        assert_eq!(
            ctx.store.load()?.and_then(|c| c.device_id),
            Some(device_id())
        );
        Ok(())
    }

    #[test]
    fn instructions_escape_what_the_server_sends() -> Result<(), serde_json::Error> {
        let authorization: DeviceAuthorization = serde_json::from_value(serde_json::json!({
            "device_code": "x", "user_code": "WDJB-MJHT\u{1b}[2J",
            "verification_uri": "http://h/device\nfake line", "expires_in": 600,
        }))?;
        let text = instructions(&authorization);
        assert_eq!(
            text,
            "To sign in, open http://h/device\\nfake line and enter  WDJB-MJHT\\u{1b}[2J\n\
             ... waiting\n"
        );
        assert_eq!(authorization.interval, None);
        Ok(())
    }

    #[test]
    fn the_login_method_follows_the_options() {
        let args = |username: Option<&str>, api_key: bool, device: bool| LoginArgs {
            username: username.map(str::to_owned),
            password_stdin: false,
            api_key,
            device,
            no_browser: true,
        };
        assert_eq!(
            args(None, false, false).method().ok(),
            Some(Method::Device { no_browser: true })
        );
        assert_eq!(
            args(None, false, true).method().ok(),
            Some(Method::Device { no_browser: true })
        );
        assert_eq!(args(None, true, false).method().ok(), Some(Method::ApiKey));
        assert_eq!(
            args(Some(" alice "), false, false).method().ok(),
            Some(Method::Password {
                username: "alice".into()
            })
        );
        assert!(args(Some(" "), false, false).method().is_err());
    }
}
