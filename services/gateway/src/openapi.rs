//! The OpenAPI document, generated from the handlers and DTOs. Checked in at
//! `schemas/openapi.json`; a test fails when the code and the file drift apart.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::routes;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The answers that whole kinds of operations can give, declared once (under
/// `components/responses`) and referenced from every operation of the kind, unless the
/// operation declares that status itself:
///
/// - with bearer security: 401 (no, a malformed, an invalid or a revoked credential) and
///   429 (a raw API key used as the bearer credential, under the failed-attempts limiter);
/// - with a JSON body: 400 (wrong content type, malformed JSON, bad `Idempotency-Key`)
///   and 422 (well-formed JSON of the wrong shape or values);
/// - with any body: 413 (larger than the gateway accepts);
/// - with query parameters: 400 (a malformed or out-of-range query string).
struct CommonResponses;

impl CommonResponses {
    const UNAUTHENTICATED: &'static str = "Unauthenticated";
    const RATE_LIMITED: &'static str = "RateLimited";
    const BAD_REQUEST: &'static str = "BadRequest";
    const PAYLOAD_TOO_LARGE: &'static str = "PayloadTooLarge";
    const INVALID: &'static str = "Invalid";

    fn responses() -> [(&'static str, Response); 5] {
        let string = || ObjectBuilder::new().schema_type(Type::String).build();
        let error = |description: &str| {
            ResponseBuilder::new().description(description).content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
        };
        [
            (
                Self::UNAUTHENTICATED,
                error("The bearer credential is missing, malformed, invalid or revoked.")
                    .header(
                        "WWW-Authenticate",
                        HeaderBuilder::new()
                            .schema(Some(string()))
                            .description(Some("`Bearer`"))
                            .build(),
                    )
                    .build(),
            ),
            (
                Self::RATE_LIMITED,
                error("Too many failed attempts (wrong API keys or user codes) from this address or person.")
                    .header(
                        "Retry-After",
                        HeaderBuilder::new()
                            .schema(Some(
                                ObjectBuilder::new()
                                    .schema_type(Type::Integer)
                                    .minimum(Some(1))
                                    .build(),
                            ))
                            .description(Some("seconds to wait before retrying"))
                            .build(),
                    )
                    .build(),
            ),
            (
                Self::BAD_REQUEST,
                error("The request is malformed: wrong content type, malformed JSON, a bad `Idempotency-Key` or query string.").build(),
            ),
            (
                Self::PAYLOAD_TOO_LARGE,
                error("The body is larger than the gateway accepts.").build(),
            ),
            (
                Self::INVALID,
                error("Well-formed, but invalid: a missing or unknown field, a value of the wrong type or out of range.").build(),
            ),
        ]
    }

    fn add(operation: &mut Operation, status: &str, response: &str) {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(response)));
    }

    fn complete(operation: &mut Operation) {
        let bearer = SecurityRequirement::new("bearer", Vec::<String>::new());
        if operation.security.iter().flatten().any(|r| *r == bearer) {
            Self::add(operation, "401", Self::UNAUTHENTICATED);
            Self::add(operation, "429", Self::RATE_LIMITED);
        }
        let json_body = match &operation.request_body {
            Some(RefOr::T(body)) => body.content.contains_key("application/json"),
            _ => false,
        };
        if json_body {
            Self::add(operation, "400", Self::BAD_REQUEST);
            Self::add(operation, "422", Self::INVALID);
        }
        if operation.request_body.is_some() {
            // The body limit holds for forms too (the OAuth endpoints).
            Self::add(operation, "413", Self::PAYLOAD_TOO_LARGE);
        }
        let query = operation
            .parameters
            .iter()
            .flatten()
            .any(|p| matches!(p, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Query)));
        if query {
            Self::add(operation, "400", Self::BAD_REQUEST);
        }
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
        &mut item.query,
    ]
    .into_iter()
    .flatten()
    .chain(item.additional_operations.values_mut())
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            operations_mut(item).for_each(Self::complete);
        }
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, response) in Self::responses() {
            components
                .responses
                .insert(name.to_owned(), RefOr::T(response));
        }
    }
}

/// The API description.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Gatehouse", description = "The authentication plane for ML platforms: service accounts, API keys, device login and service connectors."),
    paths(
        routes::health::healthz,
        routes::health::readyz,
        routes::oauth::token,
        routes::oauth::jwks,
        routes::oauth::metadata,
        routes::current_user::get_current_user,
        routes::current_user::change_password,
        routes::users::create_user,
        routes::users::list_users,
        routes::users::get_user,
        routes::users::update_user,
        routes::service_accounts::create_service_account,
        routes::service_accounts::list_service_accounts,
        routes::service_accounts::get_service_account,
        routes::service_accounts::update_service_account,
        routes::service_accounts::delete_service_account,
        routes::api_keys::create_api_key,
        routes::api_keys::list_api_keys,
        routes::api_keys::get_api_key,
        routes::api_keys::update_api_key,
        routes::api_keys::rotate_api_key,
        routes::api_keys::delete_api_key,
        routes::device_flow::device_authorization,
        routes::devices::list_devices,
        routes::devices::get_device,
        routes::devices::lock_device,
        routes::devices::unlock_device,
        routes::devices::delete_device,
        routes::devices::verify_device,
        routes::devices::lookup_device,
        routes::signing_keys::list_signing_keys,
        routes::signing_keys::add_signing_key,
        routes::signing_keys::retire_signing_key,
        routes::events::follow_events,
        routes::connectors::list_connector_types,
        routes::connectors::get_connector_type,
        routes::connectors::register_connector,
        routes::connectors::verify_new_connector,
        routes::connectors::list_connectors,
        routes::connectors::get_connector,
        routes::connectors::update_connector,
        routes::connectors::delete_connector,
        routes::connectors::verify_connector,
        routes::connectors::list_resources,
        routes::connectors::connector_credentials,
        routes::connectors::grant_connector,
        routes::connectors::list_grants,
        routes::connectors::revoke_grant,
        routes::leases::list_leases,
        routes::leases::get_lease,
        routes::leases::revoke_lease,
        routes::components::register_component,
        routes::components::list_components,
        routes::components::get_component,
        routes::components::update_component,
        routes::components::delete_component,
        routes::components::connect_component,
        routes::components::disconnect_component,
        routes::components::component_credentials,
    ),
    modifiers(&BearerAuth, &CommonResponses),
    tags(
        (name = "oauth", description = "OAuth 2.0 token endpoint and discovery"),
        (name = "users", description = "Users and the current principal"),
        (name = "service_accounts", description = "Service accounts for non-interactive work"),
        (name = "api_keys", description = "API keys of service accounts: shown once, rotated with retention, revoked at once"),
        (name = "devices", description = "Authorized devices (RFC 8628 device login): list, describe, lock, unlock, delete, approve by user code"),
        (name = "signing_keys", description = "Token-signing keys (admins): rotate with an overlap, retire a leaked key everywhere at once"),
        (name = "service_connectors", description = "Service connectors: long-lived cloud credentials stay on the server; clients get short-lived, down-scoped credentials for one resource"),
        (name = "leases", description = "Leases: every issue of credentials through a connector (never the credentials)"),
        (name = "components", description = "Stack components (artifact stores, container registries, orchestrators) linked to a connector and a resource"),
        (name = "events", description = "The audit trail (admins): every event, as on NATS, as Server-Sent Events"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as checked in (pretty JSON with a trailing newline).
pub fn document_json() -> String {
    let mut json = document().to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}
