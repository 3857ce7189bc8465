//! `schemas/openapi.json` is generated from the handlers and checked in. This test fails
//! when they drift; regenerate with
//! `GATEHOUSE_UPDATE_SCHEMAS=1 cargo test -p gatehouse-gateway --test openapi`.

use std::path::PathBuf;

#[test]
fn the_checked_in_openapi_document_matches_the_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/openapi.json");
    let generated = gatehouse_gateway::openapi::document_json();
    if std::env::var_os("GATEHOUSE_UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).expect("write schemas/openapi.json");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "schemas/openapi.json drifted from the code; run GATEHOUSE_UPDATE_SCHEMAS=1 cargo test -p gatehouse-gateway --test openapi"
    );
}

#[test]
fn every_api_route_is_documented() {
    let doc = gatehouse_gateway::openapi::document();
    let paths: Vec<&String> = doc.paths.paths.keys().collect();
    for expected in [
        "/oauth/token",
        "/api/v1/service_accounts",
        "/api/v1/service_accounts/{name_or_id}",
        "/api/v1/users",
        "/api/v1/current-user",
    ] {
        assert!(
            paths.iter().any(|p| *p == expected),
            "{expected} missing from {paths:?}"
        );
    }
}
