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

/// Every operation of the document as JSON, with its method and path.
fn operations() -> Vec<(String, String, serde_json::Value)> {
    let doc: serde_json::Value =
        serde_json::from_str(&gatehouse_gateway::openapi::document_json()).expect("JSON");
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            out.push((method.to_uppercase(), path.clone(), operation.clone()));
        }
    }
    out
}

fn declares(operation: &serde_json::Value, status: &str) -> bool {
    operation["responses"].get(status).is_some()
}

#[test]
fn refusals_the_server_gives_are_declared() {
    let mut missing = Vec::new();
    for (method, path, operation) in operations() {
        let mut expected = vec![];
        if operation.get("security").is_some() {
            // No, a malformed or a revoked credential; a raw API key under the limiter.
            expected.extend(["401", "429"]);
        }
        if operation["requestBody"]["content"]
            .get("application/json")
            .is_some()
        {
            // Wrong content type, malformed JSON; the wrong shape.
            expected.extend(["400", "422"]);
        }
        if operation.get("requestBody").is_some() {
            expected.push("413");
        }
        let params = operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if params.iter().any(|p| p["in"] == "query") {
            expected.push("400");
        }
        for status in expected {
            if !declares(&operation, status) {
                missing.push(format!("{method} {path}: {status}"));
            }
        }
    }
    assert!(missing.is_empty(), "undeclared statuses: {missing:#?}");
    let by_name = |m: &str, p: &str| {
        operations()
            .into_iter()
            .find(|(method, path, _)| method == m && path == p)
            .map(|(_, _, op)| op)
            .unwrap_or_default()
    };
    for (m, p) in [
        ("POST", "/api/v1/devices/lookup"),
        ("POST", "/api/v1/devices/verify"),
        ("PATCH", "/api/v1/users/{name_or_id}"),
    ] {
        assert!(declares(&by_name(m, p), "422"), "{m} {p}: 422");
    }
    // The common answers say which headers come with them.
    let doc = gatehouse_gateway::openapi::document_json();
    let doc: serde_json::Value = serde_json::from_str(&doc).expect("JSON");
    let responses = &doc["components"]["responses"];
    assert!(responses["Unauthenticated"]["headers"]["WWW-Authenticate"].is_object());
    assert!(responses["RateLimited"]["headers"]["Retry-After"].is_object());
}

#[test]
fn paging_and_filters_are_query_parameters() {
    for (method, path, operation) in operations() {
        for p in operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let name = p["name"].as_str().unwrap_or_default();
            if ["page", "size", "name", "active", "status"].contains(&name) {
                assert_eq!(p["in"], "query", "{method} {path}: {name}");
                assert_eq!(p["required"], false, "{method} {path}: {name}");
            }
        }
    }
}

#[test]
fn request_schemas_refuse_what_the_server_refuses() {
    let doc: serde_json::Value =
        serde_json::from_str(&gatehouse_gateway::openapi::document_json()).expect("JSON");
    let schemas = &doc["components"]["schemas"];
    // Names: never empty, at most 64, the allowed characters.
    assert_eq!(schemas["Name"]["minLength"], 1);
    assert_eq!(schemas["Name"]["maxLength"], 64);
    assert!(schemas["Name"]["pattern"].is_string());
    for dto in ["NewUser", "NewServiceAccount", "NewApiKey"] {
        assert_eq!(
            schemas[dto]["properties"]["name"]["$ref"], "#/components/schemas/Name",
            "{dto}.name"
        );
    }
    assert_eq!(schemas["Description"]["maxLength"], 1024);
    assert_eq!(schemas["NewUser"]["properties"]["password"]["minLength"], 8);
    assert_eq!(
        schemas["PasswordChange"]["properties"]["new_password"]["minLength"],
        8
    );
    // The grant type is one of the supported ones (so never empty).
    let grants = schemas["TokenForm"]["properties"]["grant_type"]["enum"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        grants.contains(&serde_json::json!("password")),
        "{grants:?}"
    );
    assert!(!grants.contains(&serde_json::json!("")));
    for dto in ["Lookup", "Verification"] {
        assert!(
            schemas[dto]["properties"]["user_code"]["pattern"].is_string(),
            "{dto}.user_code"
        );
    }
}
