//! HTTP routes, registered in one place.

pub mod api_keys;
pub mod components;
pub mod connectors;
pub mod current_user;
pub mod device_flow;
pub mod device_page;
pub mod devices;
pub mod events;
pub mod health;
pub mod leases;
pub mod oauth;
pub mod paging;
pub mod service_accounts;
pub mod signing_keys;
pub mod users;

use actix_web::{HttpRequest, web};
use gatehouse_eventlog::{ViewDoc, ViewStore};
use uuid::Uuid;

use crate::errors::ApiError;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health::healthz)
        .service(health::readyz)
        .service(health::openapi)
        .service(oauth::token)
        .service(device_flow::device_authorization)
        .service(device_page::device_page)
        .service(device_page::sign_in)
        .service(device_page::decide)
        .service(oauth::jwks)
        .service(oauth::metadata)
        .service(
            web::scope("/api/v1")
                .service(current_user::get_current_user)
                .service(current_user::change_password)
                .service(users::create_user)
                .service(users::list_users)
                .service(users::get_user)
                .service(users::update_user)
                .service(service_accounts::create_service_account)
                .service(service_accounts::list_service_accounts)
                .service(service_accounts::get_service_account)
                .service(service_accounts::update_service_account)
                .service(service_accounts::delete_service_account)
                .service(api_keys::create_api_key)
                .service(api_keys::list_api_keys)
                .service(api_keys::get_api_key)
                .service(api_keys::update_api_key)
                .service(api_keys::rotate_api_key)
                .service(api_keys::delete_api_key)
                .service(devices::verify_device)
                .service(devices::lookup_device)
                .service(devices::list_devices)
                .service(devices::get_device)
                .service(devices::lock_device)
                .service(devices::unlock_device)
                .service(devices::delete_device)
                .service(signing_keys::list_signing_keys)
                .service(signing_keys::add_signing_key)
                .service(signing_keys::retire_signing_key)
                .service(events::follow_events)
                .service(connectors::list_connector_types)
                .service(connectors::get_connector_type)
                // Before `/service_connectors/{connector}`, which would take "verify".
                .service(connectors::verify_new_connector)
                .service(connectors::register_connector)
                .service(connectors::list_connectors)
                .service(connectors::get_connector)
                .service(connectors::update_connector)
                .service(connectors::delete_connector)
                .service(connectors::verify_connector)
                .service(connectors::list_resources)
                .service(connectors::connector_credentials)
                .service(connectors::grant_connector)
                .service(connectors::list_grants)
                .service(connectors::revoke_grant)
                .service(leases::list_leases)
                .service(leases::get_lease)
                .service(leases::revoke_lease)
                .service(components::register_component)
                .service(components::list_components)
                .service(components::get_component)
                .service(components::update_component)
                .service(components::delete_component)
                .service(components::connect_component)
                .service(components::disconnect_component)
                .service(components::component_credentials),
        );
}

/// Finds a view by id or by name (`{name_or_id}` path segments). A segment that is
/// neither a UUID nor a valid name cannot name anything: `None`.
pub async fn find_by_name_or_id(
    views: &dyn ViewStore,
    kind: &str,
    name_or_id: &str,
) -> Result<Option<ViewDoc>, ApiError> {
    if let Ok(id) = Uuid::parse_str(name_or_id) {
        return Ok(views.get(kind, id).await?);
    }
    match gatehouse_contracts::names::Name::parse(name_or_id) {
        Ok(name) => Ok(views
            .find(kind, "name", &serde_json::Value::String(name.to_string()))
            .await?),
        Err(_) => Ok(None),
    }
}

/// Decodes a stored view document (a failure here is a bug, logged as such).
pub fn decode<T: serde::de::DeserializeOwned>(doc: &ViewDoc) -> Result<T, ApiError> {
    serde_json::from_value(doc.doc.clone())
        .map_err(|e| ApiError::internal(&format!("undecodable {} view {}: {e}", doc.kind, doc.id)))
}

/// The `Idempotency-Key` header as the OpenAPI document describes it (read by
/// [`idempotency_key`], which answers 400 to anything else).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // only described, never built: the header is read by `idempotency_key`
pub(crate) struct IdempotencyKey {
    /// Makes retries safe: a retry with the same key returns the first result. 1 to 255
    /// visible ASCII characters.
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        min_length = 1,
        max_length = 255,
        pattern = r"^[\x21-\x7E]([\x20-\x7E]*[\x21-\x7E])?$"
    )]
    idempotency_key: Option<String>,
}

/// The `Idempotency-Key` header of a creating request, checked.
pub(crate) fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    match req.headers().get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let key = v
                .to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key must be ASCII"))?;
            if key.is_empty() || key.len() > 255 {
                return Err(ApiError::bad_request(
                    "Idempotency-Key must have 1 to 255 characters",
                ));
            }
            Ok(Some(key.to_owned()))
        }
    }
}
