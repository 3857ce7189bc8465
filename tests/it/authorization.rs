//! Who may manage what: members and admins, against the in-process app.

use gatehouse_e2e::InProcApp;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn members_manage_only_their_own_service_accounts() -> anyhow::Result<()> {
    let app = InProcApp::spawn().await?;
    let admin = app.admin_token().await?;
    let alice = app.user_with_token(&admin, "alice", "member").await?;
    let bob = app.user_with_token(&admin, "bob", "member").await?;

    let (status, created) = app
        .call(
            Method::POST,
            "/api/v1/service_accounts",
            Some(&alice),
            Some(json!({"name": "alice-bot"})),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["role"], "member");

    // Bob sees nothing of Alice's: not in lists, 404 (not 403) on direct access.
    let (_, list) = app
        .call(Method::GET, "/api/v1/service_accounts", Some(&bob), None)
        .await?;
    assert_eq!(list["total"], 0);
    for (method, body) in [
        (Method::GET, None),
        (Method::PATCH, Some(json!({"active": false}))),
        (Method::DELETE, None),
    ] {
        let (status, _) = app
            .call(
                method.clone(),
                "/api/v1/service_accounts/alice-bot",
                Some(&bob),
                body,
            )
            .await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
    }
    // ...and Alice's account is unchanged.
    let (status, mine) = app
        .call(
            Method::GET,
            "/api/v1/service_accounts/alice-bot",
            Some(&alice),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["active"], true);

    // The admin sees and manages everyone's.
    let (_, list) = app
        .call(Method::GET, "/api/v1/service_accounts", Some(&admin), None)
        .await?;
    assert_eq!(list["total"], 1);
    let (status, _) = app
        .call(
            Method::PATCH,
            "/api/v1/service_accounts/alice-bot",
            Some(&admin),
            Some(json!({"active": false})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn members_cannot_manage_users_or_escalate_roles() -> anyhow::Result<()> {
    let app = InProcApp::spawn().await?;
    let admin = app.admin_token().await?;
    let alice = app.user_with_token(&admin, "alice", "member").await?;

    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&alice),
            Some(json!({"name": "mallory", "password": "mallory-password"})),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .call(Method::GET, "/api/v1/users", Some(&alice), None)
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .call(
            Method::PATCH,
            "/api/v1/users/alice",
            Some(&alice),
            Some(json!({"role": "admin"})),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/service_accounts",
            Some(&alice),
            Some(json!({"name": "root-bot", "role": "admin"})),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (_, users) = app
        .call(Method::GET, "/api/v1/users", Some(&admin), None)
        .await?;
    assert_eq!(users["total"], 2, "nothing was created: {users}");
    let (_, me) = app
        .call(Method::GET, "/api/v1/current-user", Some(&alice), None)
        .await?;
    assert_eq!(me["role"], "member");

    // An admin can promote; the change applies to the live session at once.
    let (status, _) = app
        .call(
            Method::PATCH,
            "/api/v1/users/alice",
            Some(&admin),
            Some(json!({"role": "admin"})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (_, me) = app
        .call(Method::GET, "/api/v1/current-user", Some(&alice), None)
        .await?;
    assert_eq!(me["role"], "admin");
    Ok(())
}
