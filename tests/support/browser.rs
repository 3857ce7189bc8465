//! A small W3C WebDriver client for tests that drive headless Chromium like a person would.
//!
//! [`Browser::start`] runs Debian's `chromedriver` on a free port on 127.0.0.1 and opens a
//! session in headless Chromium with a fresh profile. Both binaries come from
//! `GATEHOUSE_CHROMEDRIVER` / `GATEHOUSE_CHROMIUM`, which `scripts/test-deps` exports (it
//! installs Debian's `chromium` and `chromium-driver` when missing); without them it falls
//! back to `/usr/bin/chromedriver` and `/usr/bin/chromium`. When there is no chromedriver,
//! `start` fails, naming `scripts/test-deps`: a browser test never passes without a browser.
//!
//! Only the WebDriver HTTP protocol is spoken (reqwest + serde_json). Every call has a
//! timeout, and a WebDriver error keeps its error code and message ([`WebDriverError`]).
//! The session is closed and every process killed when the [`Browser`] is dropped, also
//! when a test panics.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! let browser = gatehouse_e2e::browser::Browser::start().await?;
//! browser.goto("http://127.0.0.1:8080/device").await?;
//! browser.find("input[name=username]").await?.send_keys("alice").await?;
//! browser.find("button[type=submit]").await?.click().await?;
//! let code = browser.wait_for("#user-code", Duration::from_secs(5)).await?;
//! assert_eq!(code.text().await?, "WDJB-MJHT");
//! # Ok(()) }
//! ```

use std::fmt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use gatehouse_testsupport::free_port;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// Environment variable naming the chromedriver binary (exported by `scripts/test-deps`).
pub const CHROMEDRIVER_ENV: &str = "GATEHOUSE_CHROMEDRIVER";
/// Environment variable naming the Chromium binary (exported by `scripts/test-deps`).
pub const CHROMIUM_ENV: &str = "GATEHOUSE_CHROMIUM";

const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// The key under which W3C WebDriver identifies an element in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Upper bound for one WebDriver command (HTTP round trip to chromedriver).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Page loads (navigation, a click that submits a form) give up after this long, within
/// [`COMMAND_TIMEOUT`], so that a hung page is reported by WebDriver as a `timeout`.
const PAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(20);
/// Scripts run by [`Browser::execute`] give up after this long.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Starting chromedriver (until `/status` says ready).
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(15);
/// Starting Chromium (the new-session command).
const SESSION_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Closing the session when the browser is dropped.
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Chromium's command line. Headless without a sandbox (tests run as root in containers),
/// no GPU, /tmp instead of a small /dev/shm, and nothing that phones home: the machines this
/// runs on have no network but loopback, and Chromium's background connections to Google
/// would otherwise be refused by the dozen.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication",
    "--metrics-recording-only",
    "--password-store=basic",
    "--window-size=1280,900",
];

/// A WebDriver error answer: the W3C error code (`no such element`, `timeout`,
/// `invalid argument`, ...) and chromedriver's message.
#[derive(Debug, Clone)]
pub struct WebDriverError {
    /// What was asked, e.g. `POST /session/{id}/element`.
    pub command: String,
    /// HTTP status of the answer.
    pub status: u16,
    /// The W3C error code, e.g. `no such element`.
    pub error: String,
    /// Chromedriver's message.
    pub message: String,
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WebDriver {} failed ({}): {}: {}",
            self.command, self.status, self.error, self.message
        )
    }
}

impl std::error::Error for WebDriverError {}

impl WebDriverError {
    /// Whether `err` is (or wraps) a WebDriver error with the code `code`.
    pub fn is(err: &anyhow::Error, code: &str) -> bool {
        err.chain()
            .filter_map(|e| e.downcast_ref::<WebDriverError>())
            .any(|e| e.error == code)
    }
}

/// A cookie as the browser reports it (WebDriver's cookie object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
    /// Path, e.g. `/`.
    pub path: Option<String>,
    /// Domain, e.g. `127.0.0.1`.
    pub domain: Option<String>,
    /// The `Secure` attribute.
    pub secure: bool,
    /// The `HttpOnly` attribute.
    pub http_only: bool,
    /// `Strict`, `Lax` or `None` as the browser reports the `SameSite` attribute.
    pub same_site: Option<String>,
    /// Expiry in seconds since the epoch; `None` for a session cookie.
    pub expiry: Option<u64>,
}

impl Cookie {
    fn from_json(value: &Value) -> anyhow::Result<Cookie> {
        let string = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let flag = |key: &str| value.get(key).and_then(Value::as_bool).unwrap_or(false);
        Ok(Cookie {
            name: string("name").with_context(|| format!("cookie without a name: {value}"))?,
            value: string("value").unwrap_or_default(),
            path: string("path"),
            domain: string("domain"),
            secure: flag("secure"),
            http_only: flag("httpOnly"),
            same_site: string("sameSite"),
            expiry: value.get("expiry").and_then(Value::as_u64),
        })
    }
}

/// Headless Chromium driven through its own chromedriver process.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    session_url: String,
    driver_addr: String,
    session_id: String,
    browser_version: String,
    quit: bool,
    /// Process group of chromedriver and the Chromium it started.
    process_group: Option<u32>,
    driver: Child,
    driver_log: PathBuf,
    /// Profile (`--user-data-dir`) and logs; removed after the processes are gone.
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a fresh, empty profile.
    ///
    /// Fails with a message naming `scripts/test-deps` when chromedriver is missing.
    pub async fn start() -> anyhow::Result<Browser> {
        // reqwest is built with rustls without a default provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let driver_bin = chromedriver_path()?;
        let chromium_bin = chromium_path()?;
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-browser-")
            .tempdir()
            .context("creating a temporary directory for the browser profile")?;
        let http = reqwest::Client::builder()
            // Never send loopback WebDriver traffic through an HTTP proxy from the environment.
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(COMMAND_TIMEOUT)
            .build()
            .context("building the WebDriver HTTP client")?;

        // free_port() can race with another process taking the port: retry a few times.
        let mut attempt = 0;
        let (driver, port, driver_log) = loop {
            attempt += 1;
            match spawn_driver(&driver_bin, dir.path(), &http, attempt).await {
                Ok(started) => break started,
                Err(err) if attempt < 3 => {
                    eprintln!("browser: chromedriver attempt {attempt} failed, retrying: {err:#}");
                }
                Err(err) => return Err(err),
            }
        };
        let process_group = driver.id();
        let driver_addr = format!("127.0.0.1:{port}");

        let profile = dir.path().join("profile");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut chrome_options = json!({ "args": args });
        if let Some(bin) = &chromium_bin {
            chrome_options["binary"] = json!(bin);
        }
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "goog:chromeOptions": chrome_options,
                    "pageLoadStrategy": "normal",
                    "acceptInsecureCerts": false,
                    "unhandledPromptBehavior": "dismiss and notify",
                    "timeouts": {
                        "implicit": 0,
                        "pageLoad": PAGE_LOAD_TIMEOUT.as_millis() as u64,
                        "script": SCRIPT_TIMEOUT.as_millis() as u64,
                    },
                }
            }
        });
        let mut browser = Browser {
            http,
            session_url: String::new(),
            driver_addr,
            session_id: String::new(),
            browser_version: String::new(),
            // Nothing to quit until the session exists.
            quit: true,
            process_group,
            driver,
            driver_log,
            dir,
        };
        let url = format!("http://{}/session", browser.driver_addr);
        let session = send(
            &browser.http,
            Method::POST,
            &url,
            "POST /session",
            Some(capabilities),
            SESSION_START_TIMEOUT,
        )
        .await
        .with_context(|| {
            format!(
                "starting headless Chromium ({}) through {}; chromedriver log: {}",
                chromium_bin.as_deref().map_or_else(
                    || "chromedriver's default binary".to_owned(),
                    |p| p.display().to_string()
                ),
                driver_bin.display(),
                browser.driver_log_tail(),
            )
        })?;
        browser.session_id = session
            .get("sessionId")
            .and_then(Value::as_str)
            .with_context(|| format!("new session answer without a sessionId: {session}"))?
            .to_owned();
        browser.browser_version = session
            .pointer("/capabilities/browserVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        browser.session_url = format!("{url}/{}", browser.session_id);
        browser.quit = false;
        Ok(browser)
    }

    /// The Chromium version the session runs, e.g. `156.0.8078.79`.
    pub fn browser_version(&self) -> &str {
        &self.browser_version
    }

    /// Chromedriver's log file (kept until the browser is dropped).
    pub fn driver_log(&self) -> &Path {
        &self.driver_log
    }

    /// The profile/log directory of this browser.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Opens `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.command(Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .with_context(|| format!("opening {url}"))?;
        Ok(())
    }

    /// Goes back one page in the history.
    pub async fn back(&self) -> anyhow::Result<()> {
        self.command(Method::POST, "/back", Some(json!({}))).await?;
        Ok(())
    }

    /// Reloads the page.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        self.command(Method::POST, "/refresh", Some(json!({})))
            .await?;
        Ok(())
    }

    /// The URL of the current page (after redirects).
    pub async fn current_url(&self) -> anyhow::Result<String> {
        as_string(self.command(Method::GET, "/url", None).await?, "URL")
    }

    /// The current page's title.
    pub async fn title(&self) -> anyhow::Result<String> {
        as_string(self.command(Method::GET, "/title", None).await?, "title")
    }

    /// The current DOM serialized as HTML.
    pub async fn page_source(&self) -> anyhow::Result<String> {
        as_string(
            self.command(Method::GET, "/source", None).await?,
            "page source",
        )
    }

    /// The first element matching the CSS selector (an error if there is none).
    pub async fn find(&self, css: &str) -> anyhow::Result<Element<'_>> {
        match self
            .command(Method::POST, "/element", Some(css_locator(css)))
            .await
        {
            Ok(value) => self.element(&value, css),
            Err(err) => Err(self.with_page(err, format!("finding `{css}`")).await),
        }
    }

    /// Every element matching the CSS selector, in document order (maybe none).
    pub async fn find_all(&self, css: &str) -> anyhow::Result<Vec<Element<'_>>> {
        let value = self
            .command(Method::POST, "/elements", Some(css_locator(css)))
            .await
            .with_context(|| format!("finding all `{css}`"))?;
        let items = value
            .as_array()
            .with_context(|| format!("find all `{css}`: not a list: {value}"))?;
        items.iter().map(|v| self.element(v, css)).collect()
    }

    /// Waits until an element matches the CSS selector and returns it. On time-out the error
    /// names the selector and the page that was shown.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> anyhow::Result<Element<'_>> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .command(Method::POST, "/element", Some(css_locator(css)))
                .await;
            match found {
                Ok(value) => return self.element(&value, css),
                Err(err) if WebDriverError::is(&err, "no such element") => {
                    if Instant::now() >= deadline {
                        let err = err.context(format!("no `{css}` within {timeout:?}"));
                        return Err(self.with_page(err, format!("waiting for `{css}`")).await);
                    }
                }
                Err(err) => return Err(err.context(format!("waiting for `{css}`"))),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs JavaScript in the page (`return ...;` gives the result). Pass elements with
    /// [`Element::as_arg`]; returned elements come back as WebDriver element references.
    pub async fn execute(&self, script: &str, args: &[Value]) -> anyhow::Result<Value> {
        self.command(
            Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
        .with_context(|| format!("running script `{}`", abbreviate(script, 200)))
    }

    /// Every cookie visible to the current page (including HttpOnly ones).
    pub async fn cookies(&self) -> anyhow::Result<Vec<Cookie>> {
        let value = self.command(Method::GET, "/cookie", None).await?;
        value
            .as_array()
            .with_context(|| format!("cookies: not a list: {value}"))?
            .iter()
            .map(Cookie::from_json)
            .collect()
    }

    /// The cookie called `name` for the current page, if any.
    pub async fn cookie(&self, name: &str) -> anyhow::Result<Option<Cookie>> {
        Ok(self.cookies().await?.into_iter().find(|c| c.name == name))
    }

    /// Deletes every cookie of the current page's domain.
    pub async fn delete_all_cookies(&self) -> anyhow::Result<()> {
        self.command(Method::DELETE, "/cookie", None).await?;
        Ok(())
    }

    /// A PNG screenshot of the viewport.
    pub async fn screenshot_png(&self) -> anyhow::Result<Vec<u8>> {
        let value = self.command(Method::GET, "/screenshot", None).await?;
        let b64 = as_string(value, "screenshot")?;
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .context("decoding the screenshot")
    }

    /// Writes a PNG screenshot of the viewport to `path` (handy when a test fails).
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let png = self.screenshot_png().await?;
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// Closes the session (Chromium exits) and stops chromedriver. Dropping the browser does
    /// the same, best effort; this reports errors.
    pub async fn quit(mut self) -> anyhow::Result<()> {
        self.quit = true;
        let result = send(
            &self.http,
            Method::DELETE,
            &self.session_url,
            "DELETE /session/{id}",
            None,
            QUIT_TIMEOUT,
        )
        .await;
        let _ = self.driver.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.driver.wait()).await;
        result.map(drop).context("closing the browser session")
    }

    /// One WebDriver command in this session; `path` is relative to `/session/{id}`.
    async fn command(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.session_url);
        let what = format!("{method} /session/{{id}}{path}");
        send(&self.http, method, &url, &what, body, COMMAND_TIMEOUT).await
    }

    fn element(&self, value: &Value, css: &str) -> anyhow::Result<Element<'_>> {
        let id = value
            .get(ELEMENT_KEY)
            .and_then(Value::as_str)
            .with_context(|| format!("`{css}`: not an element reference: {value}"))?;
        Ok(Element {
            browser: self,
            id: id.to_owned(),
            css: css.to_owned(),
        })
    }

    /// Adds the current URL and the start of the page to an error (best effort).
    async fn with_page(&self, err: anyhow::Error, what: String) -> anyhow::Error {
        let url = self
            .current_url()
            .await
            .unwrap_or_else(|e| format!("(unknown: {e})"));
        let source = self
            .page_source()
            .await
            .map(|s| abbreviate(&s, 2000))
            .unwrap_or_else(|e| format!("(unavailable: {e})"));
        err.context(format!("{what} on {url}; the page was:\n{source}"))
    }

    fn driver_log_tail(&self) -> String {
        log_tail(&self.driver_log)
    }

    /// Closes the session over a plain blocking socket: Drop cannot await, and must not
    /// depend on the (maybe shutting down) runtime.
    fn quit_blocking(&self) {
        let Ok(addr) = self.driver_addr.parse() else {
            return;
        };
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(QUIT_TIMEOUT));
        let _ = stream.set_write_timeout(Some(QUIT_TIMEOUT));
        let request = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            self.session_id, self.driver_addr
        );
        if stream.write_all(request.as_bytes()).is_ok() {
            // Chromedriver answers once Chromium has exited. It keeps the connection open
            // despite `Connection: close`, so read only until the answer is complete.
            let mut answer = Vec::new();
            let mut chunk = [0u8; 1024];
            while !http_answer_complete(&answer) {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&chunk[..n]),
                }
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.quit {
            self.quit_blocking();
        }
        // Chromedriver was started as the leader of its own process group, and Chromium's
        // processes stay in it: kill whatever is left of the group, so that nothing outlives
        // the test even when the session could not be closed.
        if let Some(group) = self.process_group {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// An element of the page, valid until the page changes (then WebDriver answers
/// `stale element reference`).
#[derive(Debug, Clone)]
pub struct Element<'b> {
    browser: &'b Browser,
    id: String,
    css: String,
}

impl<'b> Element<'b> {
    /// The selector this element was found with.
    pub fn selector(&self) -> &str {
        &self.css
    }

    /// This element as an argument for [`Browser::execute`].
    pub fn as_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    /// Clicks it (scrolling it into view first), as a person would; fails if something
    /// covers it or it is not interactable. A click that submits a form waits for the load.
    pub async fn click(&self) -> anyhow::Result<()> {
        self.post("/click", json!({})).await.map(drop)
    }

    /// Types `text` into it (appends to what is there; see [`Element::clear`]).
    pub async fn send_keys(&self, text: &str) -> anyhow::Result<()> {
        self.post("/value", json!({ "text": text })).await.map(drop)
    }

    /// Empties an input or textarea.
    pub async fn clear(&self) -> anyhow::Result<()> {
        self.post("/clear", json!({})).await.map(drop)
    }

    /// Its rendered text (as a person sees it: hidden parts left out, whitespace collapsed).
    pub async fn text(&self) -> anyhow::Result<String> {
        as_string(self.get("/text").await?, "text")
    }

    /// The value of the HTML attribute `name` (`None` if absent). For the current value of
    /// a form field use [`Element::property`]`("value")`.
    pub async fn attribute(&self, name: &str) -> anyhow::Result<Option<String>> {
        let value = self.get(&format!("/attribute/{name}")).await?;
        Ok(value.as_str().map(str::to_owned))
    }

    /// The DOM property `name` (e.g. `value`, `checked`), as JSON.
    pub async fn property(&self, name: &str) -> anyhow::Result<Value> {
        self.get(&format!("/property/{name}")).await
    }

    /// Whether a checkbox or radio button is checked, or an option selected.
    pub async fn is_selected(&self) -> anyhow::Result<bool> {
        as_bool(self.get("/selected").await?, "selected")
    }

    /// Whether it is enabled (not `disabled`).
    pub async fn is_enabled(&self) -> anyhow::Result<bool> {
        as_bool(self.get("/enabled").await?, "enabled")
    }

    /// Whether it is displayed.
    pub async fn is_displayed(&self) -> anyhow::Result<bool> {
        // Not a W3C command proper, but chromedriver implements it.
        as_bool(self.get("/displayed").await?, "displayed")
    }

    /// Its tag name, lower case.
    pub async fn tag_name(&self) -> anyhow::Result<String> {
        as_string(self.get("/name").await?, "tag name")
    }

    /// The first descendant matching the CSS selector.
    pub async fn find(&self, css: &str) -> anyhow::Result<Element<'b>> {
        let value = self
            .post("/element", css_locator(css))
            .await
            .with_context(|| format!("finding `{css}` inside `{}`", self.css))?;
        self.browser.element(&value, css)
    }

    /// Every descendant matching the CSS selector.
    pub async fn find_all(&self, css: &str) -> anyhow::Result<Vec<Element<'b>>> {
        let value = self
            .post("/elements", css_locator(css))
            .await
            .with_context(|| format!("finding all `{css}` inside `{}`", self.css))?;
        let items = value
            .as_array()
            .with_context(|| format!("find all `{css}`: not a list: {value}"))?;
        items.iter().map(|v| self.browser.element(v, css)).collect()
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.browser
            .command(Method::GET, &format!("/element/{}{path}", self.id), None)
            .await
            .with_context(|| format!("element `{}`", self.css))
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.browser
            .command(
                Method::POST,
                &format!("/element/{}{path}", self.id),
                Some(body),
            )
            .await
            .with_context(|| format!("element `{}`", self.css))
    }
}

/// The chromedriver binary: `$GATEHOUSE_CHROMEDRIVER`, else `/usr/bin/chromedriver`, else
/// `chromedriver` on the PATH.
fn chromedriver_path() -> anyhow::Result<PathBuf> {
    const HOW: &str = "the browser tests need Debian's chromium and chromium-driver: run \
        `eval \"$(scripts/test-deps)\"` (it installs them when missing and exports \
        GATEHOUSE_CHROMEDRIVER and GATEHOUSE_CHROMIUM), or `apt-get install chromium chromium-driver`";
    if let Some(path) = std::env::var_os(CHROMEDRIVER_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "{CHROMEDRIVER_ENV}={} does not exist; {HOW}",
                path.display()
            );
        }
        return Ok(path);
    }
    let default = PathBuf::from(DEFAULT_CHROMEDRIVER);
    if default.is_file() {
        return Ok(default);
    }
    if let Some(path) = find_on_path("chromedriver") {
        return Ok(path);
    }
    bail!(
        "chromedriver not found ({CHROMEDRIVER_ENV} is not set, no {DEFAULT_CHROMEDRIVER}, none on the PATH); {HOW}"
    )
}

/// The Chromium binary: `$GATEHOUSE_CHROMIUM`, else `/usr/bin/chromium`, else none (then
/// chromedriver looks for one itself).
fn chromium_path() -> anyhow::Result<Option<PathBuf>> {
    if let Some(path) = std::env::var_os(CHROMIUM_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "{CHROMIUM_ENV}={} does not exist; run `eval \"$(scripts/test-deps)\"` \
                 (it installs Debian's chromium and chromium-driver when missing)",
                path.display()
            );
        }
        return Ok(Some(path));
    }
    let default = PathBuf::from(DEFAULT_CHROMIUM);
    Ok(default.is_file().then_some(default))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Starts chromedriver on a free loopback port and waits until `/status` says ready.
async fn spawn_driver(
    bin: &Path,
    dir: &Path,
    http: &reqwest::Client,
    attempt: u32,
) -> anyhow::Result<(Child, u16, PathBuf)> {
    let port = free_port()?;
    let log = dir.join(format!("chromedriver-{attempt}.log"));
    let out_path = dir.join(format!("chromedriver-{attempt}.out"));
    let out = std::fs::File::create(&out_path)
        .with_context(|| format!("creating {}", out_path.display()))?;
    let mut child = Command::new(bin)
        .arg(format!("--port={port}"))
        // No --allowed-ips / --allowed-origins: without them chromedriver listens on the
        // loopback interface only and refuses remote clients.
        .arg(format!("--log-path={}", log.display()))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        // Its own process group, so that Drop can kill it with every Chromium process.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;

    let status_url = format!("http://127.0.0.1:{port}/status");
    let deadline = Instant::now() + DRIVER_START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{} --port={port} exited ({status}) before it was ready; its output: {}; its log: {}",
                bin.display(),
                log_tail(&out_path),
                log_tail(&log)
            );
        }
        if driver_ready(http, &status_url).await {
            return Ok((child, port, log));
        }
        if Instant::now() >= deadline {
            bail!(
                "{} --port={port} was not ready within {DRIVER_START_TIMEOUT:?}; its output: {}",
                bin.display(),
                log_tail(&out_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `buf` holds a whole HTTP/1.1 answer (head and `Content-Length` bytes of body).
fn http_answer_complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    buf.len() >= end + 4 + length
}

/// Whether chromedriver's `/status` answers `ready: true`.
async fn driver_ready(http: &reqwest::Client, status_url: &str) -> bool {
    let Ok(response) = http
        .get(status_url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
    else {
        return false;
    };
    match response.json::<Value>().await {
        Ok(body) => body.pointer("/value/ready") == Some(&Value::Bool(true)),
        Err(_) => false,
    }
}

/// One WebDriver HTTP request; the answer's `value`, or a [`WebDriverError`].
async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    what: &str,
    body: Option<Value>,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let mut request = http.request(method, url).timeout(timeout);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.with_context(|| {
        format!("WebDriver {what}: no answer from chromedriver within {timeout:?}")
    })?;
    let status = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("WebDriver {what}: reading the answer"))?;
    let json: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "WebDriver {what}: answer ({status}) is not JSON: {}",
            abbreviate(&text, 500)
        )
    })?;
    let value = json.get("value").cloned().unwrap_or(Value::Null);
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        return Err(WebDriverError {
            command: what.to_owned(),
            status: status.as_u16(),
            error: error.to_owned(),
            message: value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }
        .into());
    }
    if !status.is_success() {
        bail!(
            "WebDriver {what}: HTTP {status}: {}",
            abbreviate(&text, 500)
        );
    }
    Ok(value)
}

fn css_locator(css: &str) -> Value {
    json!({ "using": "css selector", "value": css })
}

fn as_string(value: Value, what: &str) -> anyhow::Result<String> {
    match value {
        Value::String(s) => Ok(s),
        other => bail!("WebDriver: expected the {what} as a string, got {other}"),
    }
}

fn as_bool(value: Value, what: &str) -> anyhow::Result<bool> {
    value
        .as_bool()
        .with_context(|| format!("WebDriver: expected {what} as a boolean, got {value}"))
}

fn abbreviate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &s[..end], s.len())
}

/// The last lines of a log file, for error messages.
fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(30);
            format!("[{}]\n{}", path.display(), lines[start..].join("\n"))
        }
        Err(err) => format!("[{}: {err}]", path.display()),
    }
}
