//! The OpenAPI document, generated from the handlers and DTOs. Checked in at
//! `schemas/openapi.json`; a test fails when the code and the file drift apart.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
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
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "oauth", description = "OAuth 2.0 token endpoint and discovery"),
        (name = "users", description = "Users and the current principal"),
        (name = "service_accounts", description = "Service accounts for non-interactive work"),
        (name = "api_keys", description = "API keys of service accounts: shown once, rotated with retention, revoked at once"),
        (name = "devices", description = "Authorized devices (RFC 8628 device login): list, describe, lock, unlock, delete, approve by user code"),
        (name = "signing_keys", description = "Token-signing keys (admins): rotate with an overlap, retire a leaked key everywhere at once"),
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
