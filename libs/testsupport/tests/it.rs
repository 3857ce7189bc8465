//! Tests of gatehouse-testsupport against the real Postgres and nats-server that
//! `scripts/test-deps` provides.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use gatehouse_testsupport::{NatsServer, NatsUser, TestDatabase, admin_database_url, free_port};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to Postgres");
    tokio::spawn(connection);
    client
}

async fn database_exists(name: &str) -> bool {
    let admin = connect(&admin_database_url()).await;
    let row = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .expect("query pg_database");
    row.get::<_, i64>(0) == 1
}

#[tokio::test]
async fn a_database_accepts_connections_and_is_gone_after_drop() {
    let db = TestDatabase::create()
        .await
        .expect("create a test database");
    let name = db.name().to_owned();
    assert!(name.starts_with("gh_test_"), "{name}");
    assert!(db.url().ends_with(&format!("/{name}")), "{}", db.url());

    let client = connect(db.url()).await;
    let row = client
        .query_one("SELECT 1::int4, current_database()", &[])
        .await
        .expect("SELECT 1");
    assert_eq!(row.get::<_, i32>(0), 1);
    assert_eq!(row.get::<_, String>(1), name);
    assert!(database_exists(&name).await);

    // An open connection must not stop the drop (WITH (FORCE)).
    drop(db);
    assert!(
        !database_exists(&name).await,
        "{name} still exists after drop"
    );
    assert!(client.query_one("SELECT 1", &[]).await.is_err() || client.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_databases_get_different_names() {
    let (a, b) = tokio::join!(TestDatabase::create(), TestDatabase::create());
    let (a, b) = (a.expect("first database"), b.expect("second database"));
    assert_ne!(a.name(), b.name());
    assert_ne!(a.url(), b.url());
    assert!(database_exists(a.name()).await && database_exists(b.name()).await);
}

#[test]
fn a_database_is_dropped_outside_any_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let db = runtime
        .block_on(TestDatabase::create())
        .expect("create a test database");
    let name = db.name().to_owned();
    drop(runtime);
    drop(db); // no runtime here
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    assert!(
        !runtime.block_on(database_exists(&name)),
        "{name} still exists after drop"
    );
}

/// Connects and reads the server's first protocol line (`INFO {...}`).
async fn read_info(port: u16) -> std::io::Result<String> {
    let stream = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).await?;
    Ok(line)
}

async fn jetstream_healthy(monitor_port: u16) -> bool {
    let Ok(mut stream) =
        TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, monitor_port))).await
    else {
        return false;
    };
    let request =
        "GET /healthz?js-enabled-only=true HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response.starts_with("HTTP/1.1 200")
}

#[tokio::test]
async fn nats_server_starts_stops_and_restarts_on_the_same_port() {
    let mut nats = NatsServer::start().await.expect("start nats-server");
    let port = nats.port();
    assert!(
        nats.url().ends_with(&format!("://127.0.0.1:{port}")),
        "{}",
        nats.url()
    );
    assert!(nats.is_running());
    let info = read_info(port).await.expect("connect to nats-server");
    assert!(info.starts_with("INFO "), "{info}");
    assert!(info.contains("\"jetstream\":true"), "{info}");
    assert!(jetstream_healthy(nats.monitor_port()).await);

    nats.stop().await.expect("stop");
    assert!(!nats.is_running());
    assert_eq!(nats.port(), port);
    let err = read_info(port)
        .await
        .expect_err("connecting to a stopped server");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    nats.stop().await.expect("stopping twice is fine");

    nats.restart().await.expect("restart");
    assert!(nats.is_running());
    assert_eq!(nats.port(), port);
    assert!(
        read_info(port)
            .await
            .expect("connect after restart")
            .starts_with("INFO ")
    );
    assert!(jetstream_healthy(nats.monitor_port()).await);

    // Restarting a running server works too.
    nats.restart().await.expect("restart while running");
    assert!(nats.is_running());
}

#[tokio::test]
async fn jetstream_data_survives_a_restart() {
    let mut nats = NatsServer::start().await.expect("start nats-server");
    {
        // As `gatehouse serve`, which may manage the events stream and publish events.
        let client = nats.connect_as(NatsUser::Gatehouse).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "GATEHOUSE_EVENTS".into(),
            subjects: vec!["gatehouse.events.>".into()],
            ..Default::default()
        })
        .await
        .expect("create stream");
        for i in 0..3 {
            js.publish(format!("gatehouse.events.survivor.{i}"), "x".into())
                .await
                .expect("publish")
                .await
                .expect("ack");
        }
    }
    nats.stop().await.expect("stop");
    nats.restart().await.expect("restart");

    let client = nats.connect_as(NatsUser::Audit).await.expect("reconnect");
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream("GATEHOUSE_EVENTS")
        .await
        .expect("stream survives");
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.state.messages, 3);
}

#[tokio::test]
async fn servers_do_not_share_ports_or_stores() {
    let (a, b) = tokio::join!(NatsServer::start(), NatsServer::start());
    let (a, b) = (a.expect("first server"), b.expect("second server"));
    assert_ne!(a.port(), b.port());
    assert_ne!(a.store_dir(), b.store_dir());
    let pid_port = a.port();
    drop(a);
    // Killed on drop: the port stops answering shortly after.
    let mut refused = false;
    for _ in 0..50 {
        if read_info(pid_port).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "nats-server still answers after drop");
    assert!(read_info(b.port()).await.is_ok());
}

#[test]
fn free_ports_are_bindable() {
    let port = free_port().expect("free port");
    assert_ne!(port, 0);
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind the free port");
}

#[tokio::test]
async fn restart_waits_while_the_port_is_briefly_held() {
    let mut nats = NatsServer::start().await.expect("start nats-server");
    let port = nats.port();
    nats.stop().await.expect("stop");
    // Someone else holds the port for a moment (like a socket lingering in TIME_WAIT).
    let squatter = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("hold the port");
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        drop(squatter);
    });
    nats.restart().await.expect("restart once the port is free");
    release.await.expect("release task");
    assert_eq!(nats.port(), port);
    assert!(read_info(port).await.expect("connect").starts_with("INFO "));
}
