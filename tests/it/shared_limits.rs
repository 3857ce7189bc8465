//! Limits hold across gateway replicas: spreading attempts over two gateways buys nothing.

use std::time::Duration;

use gatehouse_e2e::{TestApp, call};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn wrong_codes_and_failed_logins_count_on_every_replica() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let replica = app.replica().await?;
    let admin = app.admin_token().await?;
    let mallory = app.user_with_token(&admin, "mallory", "member").await?;
    let bases = [app.url.clone(), replica.url.clone()];

    // Wrong user codes, alternating gateways: the person's five are spent after five in
    // all, not five on each.
    let mut statuses = Vec::new();
    for (n, guess) in [
        "BCDF-GHJK",
        "BCDF-GHKJ",
        "BCDF-GHLM",
        "BCDF-GHML",
        "BCDF-GHNP",
        "BCDF-GHPN",
        "BCDF-GHQR",
    ]
    .iter()
    .enumerate()
    {
        // Counts travel in milliseconds; give each one a moment, as a person typing would.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (status, _) = call(
            &app.http,
            &bases[n % 2],
            Method::POST,
            "/api/v1/devices/verify",
            Some(&mallory),
            Some(json!({"user_code": guess})),
        )
        .await?;
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses, [404, 404, 404, 404, 404, 429, 429]);

    // Failed password logins for one account from one address, alternating gateways: five
    // free in all, then refused with 429 on both.
    let mut statuses = Vec::new();
    for n in 0..7 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let response = app
            .http
            .post(format!("{}/oauth/token", bases[n % 2]))
            .form(&[
                ("grant_type", "password"),
                ("username", "mallory"),
                ("password", "not-her-password"),
            ])
            .send()
            .await?;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(&statuses[..5], &[400; 5], "{statuses:?}");
    assert_eq!(statuses[6], 429, "{statuses:?}");
    Ok(())
}
