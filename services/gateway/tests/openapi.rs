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

// ---------------------------------------------------------------------------------------
// Routes and the document agree: every operation it documents is routed, and every route
// is documented (or listed below as deliberately not part of the API).
// ---------------------------------------------------------------------------------------

/// Routes that are not part of the JSON API, and why.
const UNDOCUMENTED: [(&str, &str, &str); 4] = [
    ("GET", "/openapi.json", "the document itself"),
    (
        "GET",
        "/device",
        "the device verification page (HTML, for people)",
    ),
    (
        "POST",
        "/device/signin",
        "the device page's sign-in form (HTML)",
    ),
    (
        "POST",
        "/device/decide",
        "the device page's approve/deny form (HTML)",
    ),
];

/// The methods actix handlers are registered for here.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Marks a response from the default service: no route matched the method and path.
const UNROUTED: &str = "x-test-unrouted";

/// A path pattern with every `{parameter}` replaced by `value`.
fn with_params(pattern: &str, value: &str) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        out.push_str(value);
        rest = rest[open..].split_once('}').map_or("", |(_, after)| after);
    }
    out.push_str(rest);
    out
}

/// The pattern of the route that the app built by `routes::configure` routes `method path`
/// to, with its parameters as `{}`; `None` when the default service answers. (Handlers may
/// fail here for want of app state; they were reached.) A macro: the app's request type is
/// not nameable here.
macro_rules! routed {
    ($app:expr, $method:expr, $path:expr) => {{
        let request = actix_web::test::TestRequest::default()
            .method($method.parse::<actix_web::http::Method>().expect("method"))
            .uri(&$path)
            .to_request();
        let response = actix_web::test::call_service($app, request).await;
        let pattern = response.request().match_pattern();
        (!response.headers().contains_key(UNROUTED)).then(|| shape(&pattern.unwrap_or_default()))
    }};
}

/// Every route handler in the gateway's source: `(method, path as written, handler)` from
/// its `#[get("…")]`-style attribute (the only way this crate registers routes; the test
/// below refuses any other).
fn route_attributes() -> Vec<(String, String, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut routes = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file).expect("read source");
        for registration in ["web::resource(", ".route(", "web::scope(\""] {
            let allowed = registration == "web::scope(\""
                && source.matches(registration).count()
                    == source.matches("web::scope(\"/api/v1\")").count();
            assert!(
                allowed || !source.contains(registration),
                "{} registers routes with `{registration}`: teach this test to find them",
                file.display()
            );
        }
        let mut lines = source.lines();
        while let Some(line) = lines.next() {
            let line = line.trim();
            for method in METHODS {
                let attribute = format!("#[{}(\"", method.to_lowercase());
                let Some(rest) = line.strip_prefix(&attribute) else {
                    continue;
                };
                let path = rest.split('"').next().unwrap_or_default().to_owned();
                let handler = lines
                    .next()
                    .and_then(|l| l.split("fn ").nth(1))
                    .and_then(|l| l.split('(').next())
                    .unwrap_or_default()
                    .to_owned();
                routes.push((method.to_owned(), path, handler));
            }
        }
    }
    routes
}

/// `{name}` → `{}`: actix and the document may name a parameter differently.
fn shape(pattern: &str) -> String {
    with_params(pattern, "{}")
}

#[actix_web::test]
async fn every_route_is_documented_and_every_documented_operation_is_routed() {
    let app = actix_web::test::init_service(
        actix_web::App::new()
            .configure(gatehouse_gateway::routes::configure)
            .default_service(actix_web::web::to(|| async {
                actix_web::HttpResponse::NotFound()
                    .insert_header((UNROUTED, "1"))
                    .finish()
            })),
    )
    .await;
    let id = "6f1c2b9e-2a55-4d0e-9d8e-0c1a5e9f7b21";

    // Documented → routed.
    let documented: Vec<(String, String)> = operations()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    assert!(documented.len() > 30, "{documented:?}");
    let mut not_routed = Vec::new();
    for (method, path) in &documented {
        if routed!(&app, method, &with_params(path, id)) != Some(shape(path)) {
            not_routed.push(format!("{method} {path}"));
        }
    }
    assert!(
        not_routed.is_empty(),
        "documented but not routed: {not_routed:#?}"
    );
    // The probe tells a missing route apart.
    assert_eq!(routed!(&app, "GET", "/api/v1/no-such-thing"), None);
    assert_eq!(routed!(&app, "PUT", "/api/v1/service_accounts"), None);

    // Routed → documented. Each handler is registered at its own path or under /api/v1;
    // the probe finds which, and proves it is registered at all.
    let documented: Vec<(String, String)> = documented
        .iter()
        .map(|(method, path)| (method.clone(), shape(path)))
        .collect();
    let handlers = route_attributes();
    assert!(handlers.len() >= documented.len(), "{handlers:?}");
    let (mut unregistered, mut undocumented) = (Vec::new(), Vec::new());
    for (method, path, handler) in &handlers {
        let mut full = None;
        for candidate in [path.clone(), format!("/api/v1{path}")] {
            if routed!(&app, method, &with_params(&candidate, id)) == Some(shape(&candidate)) {
                full = Some(candidate);
                break;
            }
        }
        let Some(full) = full else {
            unregistered.push(format!("{handler}: {method} {path}"));
            continue;
        };
        let exempt = UNDOCUMENTED
            .iter()
            .any(|(m, p, _)| m == method && *p == full);
        if !exempt && !documented.contains(&(method.clone(), shape(&full))) {
            undocumented.push(format!("{handler}: {method} {full}"));
        }
    }
    assert!(
        unregistered.is_empty(),
        "handlers not registered: {unregistered:#?}"
    );
    assert!(
        undocumented.is_empty(),
        "routed but not documented: {undocumented:#?}"
    );
}
