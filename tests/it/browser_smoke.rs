//! The browser infrastructure on its own (no Gatehouse): headless Chromium, driven over
//! WebDriver by `gatehouse_e2e::browser`, fills in and submits a form served by a tiny HTTP
//! server on 127.0.0.1, and reports a cookie's HttpOnly and SameSite flags. Fails (naming
//! `scripts/test-deps`) when Chromium or chromedriver is missing.

use std::time::{Duration, Instant};

use gatehouse_e2e::browser::{Browser, WebDriverError};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SESSION_COOKIE: &str = "smoke_session";
const SESSION_VALUE: &str = "s3cr3t-value";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_submits_a_form_and_sees_cookie_flags() -> anyhow::Result<()> {
    let started = Instant::now();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(serve(listener));

    let browser = Browser::start().await?;
    eprintln!(
        "Chromium {} ready in {:?}",
        browser.browser_version(),
        started.elapsed()
    );

    browser.goto(&format!("{base}/form")).await?;
    assert_eq!(browser.title().await?, "Smoke form");
    assert_eq!(browser.current_url().await?, format!("{base}/form"));

    // Type, clear, type again: only the second text is submitted.
    let name = browser.find("input[name=name]").await?;
    name.send_keys("wrong").await?;
    name.clear().await?;
    name.send_keys("Zoë & <friends>").await?;
    assert_eq!(name.property("value").await?, json!("Zoë & <friends>"));
    assert_eq!(
        name.attribute("placeholder").await?.as_deref(),
        Some("Your name")
    );
    assert_eq!(name.attribute("no-such-attribute").await?, None);

    let trust = browser.find("#trust").await?;
    assert!(!trust.is_selected().await?);
    trust.click().await?;
    assert!(trust.is_selected().await?);

    assert_eq!(browser.find_all("input").await?.len(), 3);
    let err = match browser.find("#not-there").await {
        Ok(_) => anyhow::bail!("found an element that does not exist"),
        Err(err) => err,
    };
    assert!(WebDriverError::is(&err, "no such element"), "{err:#}");
    assert!(format!("{err:#}").contains("#not-there"), "{err:#}");

    browser.find("button[type=submit]").await?.click().await?;
    let echoed = browser
        .wait_for("#echo-name", Duration::from_secs(5))
        .await?;
    assert_eq!(echoed.text().await?, "Zoë & <friends>");
    assert_eq!(browser.find("#echo-trust").await?.text().await?, "on");
    // The browser sent the session cookie back with the same-site POST.
    assert_eq!(
        browser.find("#echo-cookie").await?.text().await?,
        "session cookie received"
    );
    assert_eq!(browser.title().await?, "Submitted");

    // What WebDriver reports about the cookies.
    let cookies = browser.cookies().await?;
    let session = cookies
        .iter()
        .find(|c| c.name == SESSION_COOKIE)
        .ok_or_else(|| anyhow::anyhow!("no {SESSION_COOKIE} cookie in {cookies:?}"))?;
    assert_eq!(session.value, SESSION_VALUE);
    assert!(session.http_only, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Strict"), "{session:?}");
    let visible = browser
        .cookie("visible")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no `visible` cookie in {cookies:?}"))?;
    assert!(!visible.http_only);
    assert_eq!(visible.same_site.as_deref(), Some("Lax"), "{visible:?}");

    // JavaScript reads the ordinary cookie but not the HttpOnly one.
    let from_js = browser.execute("return document.cookie;", &[]).await?;
    assert_eq!(from_js, json!("visible=yes"));
    // Elements go into scripts as arguments and come back as values.
    let heading = browser.find("h1").await?;
    let text = browser
        .execute(
            "return arguments[0].textContent + arguments[1];",
            &[heading.as_arg(), json!("!")],
        )
        .await?;
    assert_eq!(text, json!("Submitted!"));

    browser.delete_all_cookies().await?;
    assert_eq!(browser.cookies().await?, Vec::new());

    browser.quit().await?;
    server.abort();
    eprintln!("browser smoke test took {:?}", started.elapsed());
    Ok(())
}

/// Serves `GET /form` (sets the cookies) and `POST /form` (echoes the form), one request
/// per connection.
async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let _ = handle(stream).await;
        });
    }
}

async fn handle(mut stream: TcpStream) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        anyhow::ensure!(buf.len() < 64 * 1024, "request head too large");
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut content_length = 0;
    let mut cookie_header = String::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => content_length = value.trim().parse()?,
                "cookie" => cookie_header = value.trim().to_owned(),
                _ => {}
            }
        }
    }
    anyhow::ensure!(content_length <= 64 * 1024, "request body too large");
    while buf.len() < header_end + content_length {
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed inside the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[header_end..header_end + content_length]);

    let response = match request_line.split_whitespace().take(2).collect::<Vec<_>>()[..] {
        ["GET", "/form"] => page(
            "200 OK",
            &[
                format!("{SESSION_COOKIE}={SESSION_VALUE}; Path=/; HttpOnly; SameSite=Strict"),
                "visible=yes; Path=/; SameSite=Lax".to_owned(),
            ],
            "Smoke form",
            r#"<h1>Sign in</h1>
<form method="post" action="/form">
  <label>Name <input type="text" name="name" placeholder="Your name"></label>
  <label><input type="checkbox" id="trust" name="trust"> Trust this device</label>
  <input type="hidden" name="csrf" value="token">
  <button type="submit">Approve</button>
</form>"#,
        ),
        ["POST", "/form"] => {
            let fields = parse_form(&body);
            let field = |key: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
            };
            let cookie_sent = cookie_header
                .split(';')
                .any(|c| c.trim() == format!("{SESSION_COOKIE}={SESSION_VALUE}"));
            page(
                "200 OK",
                &[],
                "Submitted",
                &format!(
                    "<h1>Submitted</h1>\n<p id=\"echo-name\">{}</p>\n<p id=\"echo-trust\">{}</p>\n<p id=\"echo-cookie\">{}</p>",
                    escape(field("name").unwrap_or("(none)")),
                    escape(field("trust").unwrap_or("off")),
                    if cookie_sent {
                        "session cookie received"
                    } else {
                        "no session cookie"
                    },
                ),
            )
        }
        _ => page("404 Not Found", &[], "Not found", "<h1>Not found</h1>"),
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

fn page(status: &str, cookies: &[String], title: &str, body: &str) -> String {
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body>\n{body}\n</body></html>\n"
    );
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        html.len()
    );
    for cookie in cookies {
        response.push_str(&format!("Set-Cookie: {cookie}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(&html);
    response
}

/// `application/x-www-form-urlencoded` → (name, value) pairs.
fn parse_form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[test]
fn url_decoding() {
    assert_eq!(url_decode("Zo%C3%AB+%26+%3Cfriends%3E"), "Zoë & <friends>");
    assert_eq!(url_decode("100%"), "100%");
    assert_eq!(
        parse_form("a=1&b=&c"),
        vec![
            ("a".into(), "1".into()),
            ("b".into(), String::new()),
            ("c".into(), String::new())
        ]
    );
}
