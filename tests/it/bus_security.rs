//! The bus is not a trusted network (issue 9, item 0; decision 0010). Against `gatehouse
//! serve` on a nats-server with Gatehouse's users, permissions and TLS (as every test here
//! runs):
//! - a client without credentials is refused; the audit user reads the feed and may not
//!   publish;
//! - an event published with valid service credentials but not in the log is refused by
//!   the projector and the directories, and logged;
//! - a command sent with valid gateway credentials but without a valid proof is refused,
//!   not acted on, and logged.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt as _;
use gatehouse_bus::jetstream::STREAM_NAME;
use gatehouse_bus::proof::{CommandProofs, PROOF_HEADER};
use gatehouse_e2e::{NatsUser, TestApp};
use gatehouse_secrets::MasterKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

async fn account_names(app: &TestApp, token: &str) -> anyhow::Result<Vec<String>> {
    let (status, body) = app
        .call(
            Method::GET,
            "/api/v1/service_accounts?size=100",
            Some(token),
            None,
        )
        .await?;
    anyhow::ensure!(status == StatusCode::OK, "{status} {body}");
    Ok(body["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|a| a["name"].as_str().map(str::to_owned))
        .collect())
}

#[tokio::test]
async fn a_client_without_credentials_is_refused_and_the_audit_user_only_reads()
-> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let token = app.admin_token().await?;
    app.create_service_account(&token, "audited").await?;

    // No user: the server refuses the connection.
    let anonymous = async_nats::ConnectOptions::new()
        .add_root_certificates(app.nats.tls_ca().context("tests run NATS with TLS")?.into())
        .require_tls(true)
        .connection_timeout(Duration::from_secs(2))
        .connect(app.nats.url());
    let refused = tokio::time::timeout(WAIT, anonymous).await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "a client without credentials was let in"
    );
    // A wrong password neither.
    let wrong =
        async_nats::ConnectOptions::with_user_and_password("gateway".into(), "guess".into())
            .add_root_certificates(app.nats.tls_ca().context("TLS")?.into())
            .connect(app.nats.url())
            .await;
    assert!(wrong.is_err(), "a wrong password was accepted");

    // The audit user reads the feed...
    let audit = app.nats.connect_as(NatsUser::Audit).await?;
    let js = async_nats::jetstream::new(audit.clone());
    let mut stream = js.get_stream(STREAM_NAME).await?;
    let before = stream.info().await?.state.messages;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: "gatehouse.events.service_account.created".into(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let first = tokio::time::timeout(WAIT, messages.next())
        .await?
        .context("the feed ended")??;
    let event: Value = serde_json::from_slice(&first.payload)?;
    assert_eq!(event["payload"]["name"], "audited");

    // ... and cannot publish on it: the server drops the message (no stream ack comes)...
    let published = tokio::time::timeout(Duration::from_secs(3), async {
        js.publish(
            "gatehouse.events.service_account.created",
            first.payload.clone(),
        )
        .await?
        .await
        .map_err(anyhow::Error::from)
    })
    .await;
    assert!(
        !matches!(published, Ok(Ok(_))),
        "the audit user published an event"
    );
    // ... nor send commands.
    let command = audit
        .request("gatehouse.cmd.identity.create_service_account", "{}".into())
        .await;
    assert!(command.is_err(), "the audit user sent a command");
    assert_eq!(stream.info().await?.state.messages, before);
    Ok(())
}

#[tokio::test]
async fn an_event_the_log_does_not_hold_is_refused_and_logged() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let token = app.admin_token().await?;
    app.create_service_account(&token, "genuine").await?;

    // Take a real `service_account.created` off the bus and re-publish it with new ids and
    // another name, with a service's valid bus credentials: what the attack did.
    let relay = app.nats.connect_as(NatsUser::Identity).await?;
    let audit = app.nats.connect_as(NatsUser::Audit).await?;
    let stream = async_nats::jetstream::new(audit)
        .get_stream(STREAM_NAME)
        .await?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: "gatehouse.events.service_account.created".into(),
            ..Default::default()
        })
        .await?;
    let genuine = tokio::time::timeout(WAIT, consumer.messages().await?.next())
        .await?
        .context("no event")??;
    let mut forged: Value = serde_json::from_slice(&genuine.payload)?;
    let forged_id = Uuid::new_v4();
    let event_id = Uuid::new_v4();
    forged["event_id"] = json!(event_id);
    forged["stream_id"] = json!(format!("service_account-{forged_id}"));
    forged["position"] = json!(1_000_000);
    forged["payload"]["name"] = json!("forged-admin");
    forged["payload"]["role"] = json!("admin");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", event_id.to_string());
    async_nats::jetstream::new(relay)
        .publish_with_headers(
            "gatehouse.events.service_account.created",
            headers,
            serde_json::to_vec(&forged)?.into(),
        )
        .await?
        .await
        .context("the stream took the forged event (valid credentials)")?;

    // A later genuine create is visible only once the projector passed the forged event.
    app.create_service_account(&token, "after-the-forgery")
        .await?;
    let names = account_names(&app, &token).await?;
    assert!(names.contains(&"after-the-forgery".to_owned()), "{names:?}");
    assert!(!names.contains(&"forged-admin".to_owned()), "{names:?}");
    let (status, _) = app
        .call(
            Method::GET,
            "/api/v1/service_accounts/forged-admin",
            Some(&token),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/api/v1/service_accounts/{forged_id}"),
            Some(&token),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let log = app.log();
    assert!(
        log.contains("refused an event that the log does not hold")
            && log.contains(&event_id.to_string()),
        "the refusal was not logged:\n{log}"
    );
    Ok(())
}

#[tokio::test]
async fn a_command_without_a_valid_gateway_proof_is_refused_and_logged() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let token = app.admin_token().await?;
    let (status, me) = app
        .call(Method::GET, "/api/v1/current-user", Some(&token), None)
        .await?;
    anyhow::ensure!(status == StatusCode::OK, "{status} {me}");

    // Valid gateway credentials, an envelope naming the admin as its caller.
    let gateway = app.nats.connect_as(NatsUser::Gateway).await?;
    let subject = "gatehouse.cmd.identity.create_service_account";
    let envelope = |name: &str| {
        json!({
            "command": { "name": name, "description": "", "role": "admin" },
            "caller": { "id": me["id"], "kind": "user", "name": "admin", "role": "admin" },
            "metadata": {}
        })
        .to_string()
    };
    let send = |body: String, proof: Option<String>| {
        let gateway = gateway.clone();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            if let Some(proof) = proof {
                headers.insert(PROOF_HEADER, proof);
            }
            let reply = tokio::time::timeout(
                WAIT,
                gateway.request_with_headers(subject, headers, body.into()),
            )
            .await??;
            anyhow::Ok(serde_json::from_slice::<Value>(&reply.payload)?)
        }
    };

    // No proof.
    let reply = send(envelope("forged-no-proof"), None).await?;
    assert_eq!(reply["code"], "command_refused", "{reply}");
    // A proof under another master key.
    let stranger = CommandProofs::new(&MasterKey::generate());
    let body = envelope("forged-other-key");
    let proof = stranger.sign(subject, body.as_bytes());
    let reply = send(body, Some(proof)).await?;
    assert_eq!(reply["code"], "command_refused", "{reply}");
    // A genuine proof of another command does not authorize this one.
    let app_proofs = CommandProofs::new(&MasterKey::from_base64(&app.master_key)?);
    let proof = app_proofs.sign(subject, envelope("innocent").as_bytes());
    let reply = send(envelope("forged-edited"), Some(proof.clone())).await?;
    assert_eq!(reply["code"], "command_refused", "{reply}");
    // The genuine command, once; its replay is refused.
    let reply = send(envelope("innocent"), Some(proof.clone())).await?;
    assert_eq!(reply["result"], "ok", "{reply}");
    let reply = send(envelope("innocent"), Some(proof)).await?;
    assert_eq!(reply["code"], "command_refused", "{reply}");

    let names = account_names(&app, &token).await?;
    for forged in ["forged-no-proof", "forged-other-key", "forged-edited"] {
        assert!(
            !names.contains(&forged.to_owned()),
            "{forged} exists: {names:?}"
        );
    }
    let log = app.log();
    assert!(
        log.contains("refused a command without a valid gateway proof"),
        "the refusal was not logged:\n{log}"
    );
    Ok(())
}

/// The keys service decides who may manage an account's keys itself: a command that
/// carries a genuine proof (as if a gateway had skipped its check) still gets nowhere for
/// a caller who does not manage the account.
#[tokio::test]
async fn the_keys_service_refuses_a_caller_who_does_not_manage_the_account() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    let account = app.create_service_account(&admin, "admins-bot").await?;
    let member = app.user_with_token(&admin, "mallory", "member").await?;
    let (status, mallory) = app
        .call(Method::GET, "/api/v1/current-user", Some(&member), None)
        .await?;
    anyhow::ensure!(status == StatusCode::OK, "{status} {mallory}");
    let (_, me) = app
        .call(Method::GET, "/api/v1/current-user", Some(&admin), None)
        .await?;

    let gateway = app.nats.connect_as(NatsUser::Gateway).await?;
    let proofs = CommandProofs::new(&MasterKey::from_base64(&app.master_key)?);
    let subject = "gatehouse.cmd.keys.create_api_key";
    let create_key = |caller: &Value, role: &str, name: &str| {
        let body = json!({
            "command": {
                "service_account_id": account["id"],
                "name": name,
                "description": "",
                "expires_in_seconds": null
            },
            "caller": { "id": caller["id"], "kind": "user", "name": caller["name"], "role": role },
            "metadata": {}
        })
        .to_string();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(PROOF_HEADER, proofs.sign(subject, body.as_bytes()));
        let gateway = gateway.clone();
        async move {
            let reply = tokio::time::timeout(
                WAIT,
                gateway.request_with_headers(subject, headers, body.into()),
            )
            .await??;
            anyhow::Ok(serde_json::from_slice::<Value>(&reply.payload)?)
        }
    };

    let refused = create_key(&mallory, "member", "stolen").await?;
    assert_eq!(refused["result"], "err", "{refused}");
    assert_eq!(refused["code"], "not_found", "{refused}");
    let accepted = create_key(&me, "admin", "legit").await?;
    assert_eq!(accepted["result"], "ok", "{accepted}");

    let (status, keys) = app
        .call(
            Method::GET,
            &format!(
                "/api/v1/service_accounts/{}/api_keys",
                account["id"].as_str().context("id")?
            ),
            Some(&admin),
            None,
        )
        .await?;
    anyhow::ensure!(status == StatusCode::OK, "{status} {keys}");
    let names: Vec<&str> = keys["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert!(!names.contains(&"stolen"), "{names:?}");
    Ok(())
}
