//! The device approval page at `/device` (RFC 8628 `verification_uri`): server-rendered
//! HTML that works without JavaScript.
//!
//! 1. `GET /device[?user_code=..]` — not signed in: the sign-in form; signed in: the
//!    code form, or, with a code, what is asking (host, OS, client, address, when) and the
//!    approve/deny form with "Trust this device".
//! 2. `POST /device/signin` — username and password (the same check and limiter as the
//!    password grant); sets the session cookie and returns to step 1 with the code.
//! 3. `POST /device/decide` — approves (trusted or not) or denies, through the same
//!    function as `POST /api/v1/devices/verify`.
//!
//! The session cookie holds a short-lived access token: `HttpOnly`, `SameSite=Lax` (so that
//! following the link the CLI printed keeps you signed in), `Path=/device`, `Secure` when
//! the issuer is https. Every form carries a CSRF token that must equal the
//! `SameSite=Strict` CSRF cookie (double submit), checked in constant time.

use std::fmt::Write as _;
use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use gatehouse_contracts::devices::{
    DeviceDecision, DeviceView, display_user_code, normalize_user_code,
};
use rand_core::{OsRng, RngCore};
use secrecy::SecretString;
use serde::Deserialize;

use crate::auth::{Authenticated, authenticate_token};
use crate::context::RequestContext;
use crate::errors::ApiError;
use crate::routes::devices::{decide_device, find_pending_device};
use crate::routes::oauth::password_session;
use crate::state::AppState;

const SESSION_COOKIE: &str = "gh_device_session";
const CSRF_COOKIE: &str = "gh_device_csrf";
const COOKIE_PATH: &str = "/device";
/// How long the page's sign-in lasts.
const SESSION_TTL: Duration = Duration::from_secs(3600);

/// Escapes text for HTML element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn secure(state: &AppState) -> bool {
    state.settings.issuer.starts_with("https://")
}

fn cookie<'a>(state: &AppState, name: &'a str, value: String, same_site: SameSite) -> Cookie<'a> {
    Cookie::build(name, value)
        .path(COOKIE_PATH)
        .http_only(true)
        .same_site(same_site)
        .secure(secure(state))
        .max_age(actix_web::cookie::time::Duration::seconds(
            SESSION_TTL.as_secs() as i64,
        ))
        .finish()
}

/// The page's CSRF token: the cookie's, or a new one (then set with the response).
fn csrf_of(req: &HttpRequest) -> (String, bool) {
    match req.cookie(CSRF_COOKIE) {
        Some(c) if c.value().len() == 64 => (c.value().to_owned(), false),
        _ => (random_token(), true),
    }
}

/// `None` when the form's token matches the cookie's; otherwise the refusal page.
fn refuse_bad_csrf(req: &HttpRequest, presented: &str) -> Option<HttpResponse> {
    match req.cookie(CSRF_COOKIE) {
        Some(c) if constant_time_eq(c.value(), presented) => None,
        _ => Some(page(
            StatusCode::FORBIDDEN,
            "Form expired",
            "<p id=\"error\" class=\"error\">This form has expired or did not come from this \
             page. <a href=\"/device\">Start again</a>.</p>",
        )),
    }
}

/// The signed-in person, if the session cookie holds a token that is still good.
fn signed_in(state: &AppState, req: &HttpRequest) -> Option<Authenticated> {
    let token = req.cookie(SESSION_COOKIE)?;
    authenticate_token(state, token.value()).ok()
}

fn page(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Gatehouse</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}}\
         h1{{font-size:1.4rem}} label{{display:block;margin:.8rem 0 .2rem}}\
         input[type=text],input[type=password]{{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}}\
         button{{margin:1rem .5rem 0 0;padding:.5rem 1.2rem;font-size:1rem}}\
         .error{{color:#a00}} table{{border-collapse:collapse}} td{{padding:.2rem .8rem .2rem 0;vertical-align:top}}\
         .code{{font-family:monospace;font-size:1.3rem;letter-spacing:.1rem}}\
         </style></head><body><h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape(title),
    );
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(html)
}

fn with_csrf_cookie(
    state: &AppState,
    mut response: HttpResponse,
    csrf: &str,
    fresh: bool,
) -> HttpResponse {
    if fresh {
        let _ = response.add_cookie(&cookie(
            state,
            CSRF_COOKIE,
            csrf.to_owned(),
            SameSite::Strict,
        ));
    }
    response
}

fn error_line(message: Option<&str>) -> String {
    message
        .map(|m| format!("<p id=\"error\" class=\"error\">{}</p>", escape(m)))
        .unwrap_or_default()
}

fn signin_form(csrf: &str, user_code: &str, error: Option<&str>) -> String {
    format!(
        "{error}<p>Sign in to approve the device that is asking to log in as you.</p>\
         <form id=\"signin\" method=\"post\" action=\"/device/signin\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"user_code\" value=\"{code}\">\
         <label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\" id=\"signin-submit\">Sign in</button></form>",
        error = error_line(error),
        csrf = escape(csrf),
        code = escape(user_code),
    )
}

fn code_form(name: &str, error: Option<&str>) -> String {
    format!(
        "<p>Signed in as <strong id=\"signed-in-as\">{name}</strong>.</p>{error}\
         <form id=\"code\" method=\"get\" action=\"/device\">\
         <label for=\"user_code\">Enter the code your device shows</label>\
         <input type=\"text\" id=\"user_code\" name=\"user_code\" class=\"code\" placeholder=\"XXXX-XXXX\" \
         autocomplete=\"off\" autocapitalize=\"characters\" spellcheck=\"false\" required autofocus>\
         <button type=\"submit\" id=\"code-submit\">Continue</button></form>",
        name = escape(name),
        error = error_line(error),
    )
}

fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn confirm_form(name: &str, csrf: &str, user_code: &str, device: &DeviceView) -> String {
    let row = |label: &str, id: &str, value: Option<&str>| {
        format!(
            "<tr><td>{label}</td><td id=\"{id}\">{}</td></tr>",
            escape(value.unwrap_or("(not given)"))
        )
    };
    let metadata = &device.metadata;
    format!(
        "<p>Signed in as <strong id=\"signed-in-as\">{name}</strong>. A device is asking to \
         log in as you with the code <span class=\"code\" id=\"shown-code\">{code}</span>. \
         Approve it only if you started this login yourself.</p>\
         <table id=\"device-details\">{host}{os}{client}{version}{ip}{at}</table>\
         <form id=\"decide\" method=\"post\" action=\"/device/decide\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"user_code\" value=\"{code}\">\
         <label><input type=\"checkbox\" id=\"trusted\" name=\"trusted\" value=\"on\"> Trust this \
         device (stay logged in for 30 days instead of 24 hours)</label>\
         <button type=\"submit\" id=\"approve\" name=\"action\" value=\"approve\">Approve</button>\
         <button type=\"submit\" id=\"deny\" name=\"action\" value=\"deny\">Deny</button></form>",
        name = escape(name),
        code = escape(&display_user_code(user_code)),
        csrf = escape(csrf),
        host = row("Host", "device-hostname", metadata.hostname.as_deref()),
        os = row("Operating system", "device-os", metadata.os.as_deref()),
        client = row("Client", "device-client", Some(&device.client_id)),
        version = row(
            "Version",
            "device-version",
            metadata.client_version.as_deref()
        ),
        ip = row("IP address", "device-ip", metadata.ip_address.as_deref()),
        at = row("Asked at", "device-when", Some(&when(device.created))),
    )
}

/// The query of `GET /device`.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    /// The code, when the person followed `verification_uri_complete` or typed it.
    pub user_code: Option<String>,
}

/// What the page says about a code that was refused, with when to try again when limited.
fn code_error(error: &ApiError) -> String {
    match error.retry_after {
        Some(wait) if error.status.as_u16() == 429 => {
            format!("{}: try again in {wait} s.", error.message)
        }
        _ => error.message.clone(),
    }
}

/// The page for a refused code: its status, and `Retry-After` when limited.
fn code_error_page(name: &str, error: &ApiError) -> HttpResponse {
    let mut response = page(
        status_of(error),
        "Log in a device",
        &code_form(name, Some(&code_error(error))),
    );
    if let Some(wait) = error.retry_after
        && let Ok(value) = header::HeaderValue::from_str(&wait.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn status_of(error: &ApiError) -> StatusCode {
    StatusCode::from_u16(error.status.as_u16()).unwrap_or(StatusCode::BAD_REQUEST)
}

/// The approval page.
#[get("/device")]
pub async fn device_page(
    state: web::Data<AppState>,
    ctx: RequestContext,
    req: HttpRequest,
    query: web::Query<PageQuery>,
) -> HttpResponse {
    let (csrf, fresh) = csrf_of(&req);
    let typed = query.user_code.clone().unwrap_or_default();
    let Some(auth) = signed_in(&state, &req) else {
        let response = page(StatusCode::OK, "Sign in", &signin_form(&csrf, &typed, None));
        return with_csrf_cookie(&state, response, &csrf, fresh);
    };
    let name = auth.principal.name.clone();
    let response = if typed.trim().is_empty() {
        page(StatusCode::OK, "Log in a device", &code_form(&name, None))
    } else {
        match find_pending_device(&state, &ctx, &auth, &typed).await {
            Ok(device) => {
                let code = normalize_user_code(&typed).unwrap_or_default();
                page(
                    StatusCode::OK,
                    "Approve this device?",
                    &confirm_form(&name, &csrf, &code, &device),
                )
            }
            Err(error) => code_error_page(&name, &error),
        }
    };
    with_csrf_cookie(&state, response, &csrf, fresh)
}

/// The sign-in form's fields (`Debug` shows the password as `[REDACTED]`).
#[derive(Debug, Deserialize)]
pub struct SignInForm {
    csrf: String,
    username: String,
    password: SecretString,
    #[serde(default)]
    user_code: String,
}

/// Signs the person in and returns to the page (with the code they came with).
#[post("/device/signin")]
pub async fn sign_in(
    state: web::Data<AppState>,
    ctx: RequestContext,
    req: HttpRequest,
    form: web::Form<SignInForm>,
) -> HttpResponse {
    let form = form.into_inner();
    if let Some(refused) = refuse_bad_csrf(&req, &form.csrf) {
        return refused;
    }
    let session = password_session(
        &state,
        &ctx,
        form.username,
        &form.password,
        "gatehouse-device-page".into(),
        None,
        SESSION_TTL,
    )
    .await;
    match session {
        Ok(session) => {
            let (token, _) = state.issuer.mint(&session, state.clock.now());
            let target = if form.user_code.trim().is_empty() {
                "/device".to_owned()
            } else {
                let code: String = form
                    .user_code
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .take(16)
                    .collect();
                format!("/device?user_code={code}")
            };
            let mut response = HttpResponse::SeeOther()
                .insert_header((header::LOCATION, target))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish();
            let _ = response.add_cookie(&cookie(&state, SESSION_COOKIE, token, SameSite::Lax));
            response
        }
        Err(error) => {
            let status =
                StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            let message = if error.error == "invalid_grant" {
                "Wrong username or password."
            } else {
                error.error_description.as_str()
            };
            page(
                if status == StatusCode::BAD_REQUEST {
                    StatusCode::UNAUTHORIZED
                } else {
                    status
                },
                "Sign in",
                &signin_form(&form.csrf, &form.user_code, Some(message)),
            )
        }
    }
}

/// The decision form's fields.
#[derive(Debug, Deserialize)]
pub struct DecisionForm {
    csrf: String,
    user_code: String,
    action: String,
    trusted: Option<String>,
}

/// Approves or denies the device.
#[post("/device/decide")]
pub async fn decide(
    state: web::Data<AppState>,
    ctx: RequestContext,
    req: HttpRequest,
    form: web::Form<DecisionForm>,
) -> HttpResponse {
    let form = form.into_inner();
    if let Some(refused) = refuse_bad_csrf(&req, &form.csrf) {
        return refused;
    }
    let Some(auth) = signed_in(&state, &req) else {
        let (csrf, _) = csrf_of(&req);
        return page(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            &signin_form(&csrf, &form.user_code, Some("Your sign-in has expired.")),
        );
    };
    let decision = match form.action.as_str() {
        "approve" => DeviceDecision::Approve {
            trusted: form.trusted.is_some(),
        },
        "deny" => DeviceDecision::Deny,
        _ => {
            return page(
                StatusCode::BAD_REQUEST,
                "Log in a device",
                &code_form(&auth.principal.name, Some("Choose Approve or Deny.")),
            );
        }
    };
    match decide_device(&state, &ctx, &auth, &form.user_code, decision).await {
        Ok(_) => {
            let message = match decision {
                DeviceDecision::Approve { trusted: true } => {
                    "Device approved and trusted for 30 days. You can close this page and return to your device."
                }
                DeviceDecision::Approve { trusted: false } => {
                    "Device approved for 24 hours. You can close this page and return to your device."
                }
                DeviceDecision::Deny => "Device denied: it will not be logged in.",
            };
            page(
                StatusCode::OK,
                "Done",
                &format!("<p id=\"result\">{}</p>", escape(message)),
            )
        }
        Err(error) => code_error_page(&auth.principal.name, &error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_shown_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn csrf_tokens_compare_whole() {
        let token = random_token();
        assert_eq!(token.len(), 64);
        assert!(constant_time_eq(&token, &token.clone()));
        assert!(!constant_time_eq(&token, &token[..63]));
        assert!(!constant_time_eq(&token, &random_token()));
    }
}
