//! One JSON error shape for the whole API, and the RFC 6749 shape for OAuth endpoints.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use gatehouse_contracts::commands::{CommandFailure, Failure, FailureKind};
use gatehouse_contracts::failures::FailureCode;
use serde::Serialize;

/// The body of every non-OAuth error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable class: `bad_request`, `unauthenticated`, `forbidden`,
    /// `not_found`, `conflict`, `payload_too_large`, `invalid`, `rate_limited`,
    /// `unavailable`, `internal`.
    pub error: &'static str,
    /// A stable, more specific code (e.g. `name_taken`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// What went wrong, for people.
    pub message: String,
    /// The request id (also in the `x-request-id` response header).
    pub request_id: String,
}

/// An API error: a status, a class, a code and a message. Never carries secrets.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {class}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The error class (see [`ErrorBody::error`]).
    pub class: &'static str,
    /// Specific code.
    pub code: Option<String>,
    /// Message.
    pub message: String,
    /// Seconds after which a retry makes sense (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, class: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            class,
            code: None,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    /// 401: no valid credentials.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }
    /// 403: the caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// 404: no such thing, or the caller may not see it.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 409: the change conflicts with the current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    /// 413: the body is too large.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }
    /// 422: well-formed but invalid.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }
    /// 429: slow down.
    pub fn rate_limited(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many failed attempts; retry later",
            )
        }
    }
    /// 503: a dependency is down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }
    /// 500: a bug. The message is generic; the cause is logged.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an unexpected error occurred",
        )
    }

    /// Adds a specific code.
    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_owned());
        self
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        let code = f.wire_code().to_owned();
        let base = match f.kind {
            FailureKind::Invalid => ApiError::invalid(f.message),
            FailureKind::Unauthenticated => ApiError::unauthenticated(f.message),
            FailureKind::Forbidden => ApiError::forbidden(f.message),
            FailureKind::NotFound => ApiError::not_found(f.message),
            FailureKind::Conflict => ApiError::new(StatusCode::CONFLICT, "conflict", f.message),
            FailureKind::RateLimited => ApiError::rate_limited(1),
            FailureKind::Unavailable => ApiError::unavailable(f.message),
            FailureKind::Upstream => {
                ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", f.message)
            }
            FailureKind::UpstreamTimeout => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", f.message)
            }
            FailureKind::Internal | FailureKind::Unknown => ApiError::internal(&f.message),
        };
        ApiError {
            code: Some(code),
            ..base
        }
    }
}

impl<C: FailureCode> From<CommandFailure<C>> for ApiError {
    fn from(f: CommandFailure<C>) -> Self {
        Failure::from(f).into()
    }
}

impl From<crate::directory::NotLoaded> for ApiError {
    fn from(e: crate::directory::NotLoaded) -> Self {
        ApiError::unavailable(e.to_string()).with_code("starting")
    }
}

impl From<crate::directory::NotLoaded> for OAuthError {
    fn from(e: crate::directory::NotLoaded) -> Self {
        OAuthError::new("temporarily_unavailable", e.to_string())
            .status(503)
            .retry_after(1)
    }
}

impl From<gatehouse_eventlog::StoreError> for ApiError {
    fn from(e: gatehouse_eventlog::StoreError) -> Self {
        tracing::error!(error = %e, cause = ?std::error::Error::source(&e), "read store failure");
        ApiError::unavailable("the read store is unavailable")
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        response.json(ErrorBody {
            error: self.class,
            code: self.code.clone(),
            message: self.message.clone(),
            request_id: crate::context::current_request_id(),
        })
    }
}

/// The RFC 6749 §5.2 error body of the OAuth endpoints.
#[derive(Debug, Clone, Serialize, thiserror::Error, utoipa::ToSchema)]
#[error("{error}: {error_description}")]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope`, `slow_down`, ...
    pub error: &'static str,
    /// What went wrong, for people.
    pub error_description: String,
    /// Gatehouse's reason for an `invalid_grant` with an API key: `invalid`,
    /// `deactivated`, `expired`, `rotated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gatehouse_reason: Option<&'static str>,
    #[serde(skip)]
    status: u16,
    #[serde(skip)]
    retry_after: Option<u64>,
}

impl OAuthError {
    /// The HTTP status it is answered with.
    pub fn http_status(&self) -> u16 {
        self.status
    }

    /// A 400 OAuth error.
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            error_description: description.into(),
            gatehouse_reason: None,
            status: 400,
            retry_after: None,
        }
    }
    /// With another status (401 for invalid_client, 429, 503).
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
    /// With Gatehouse's reason.
    pub fn reason(mut self, reason: &'static str) -> Self {
        self.gatehouse_reason = Some(reason);
        self
    }
    /// With a Retry-After.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(secs) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        response.json(self)
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_contracts::commands::{CommandFailure, Failure, FailureKind};
    use gatehouse_contracts::failures::KeysFailure;

    use super::*;

    /// A reply as a service sends it on the bus.
    fn from_the_bus(json: &str) -> Failure {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_code_this_gateway_does_not_know_is_answered_by_its_kind_and_passed_on_unchanged() {
        let failure =
            from_the_bus(r#"{"kind":"conflict","code":"key_from_the_future","message":"newer"}"#);
        let typed = CommandFailure::<KeysFailure>::from(failure);
        assert_eq!(
            typed.code,
            KeysFailure::Unknown("key_from_the_future".into())
        );
        let api = ApiError::from(typed);
        assert_eq!(api.status, StatusCode::CONFLICT);
        assert_eq!(api.code.as_deref(), Some("key_from_the_future"));
        assert_eq!(api.message, "newer");
    }

    #[test]
    fn a_known_code_is_matched_as_its_variant_and_keeps_its_string_in_the_body() {
        let failure =
            from_the_bus(r#"{"kind":"unauthenticated","code":"key_rotated","message":"rotated"}"#);
        let wire = serde_json::to_string(&failure).unwrap();
        let typed = CommandFailure::<KeysFailure>::from(failure);
        assert_eq!(typed.code, KeysFailure::KeyRotated);
        assert_eq!(typed.kind, FailureKind::Unauthenticated);
        assert_eq!(
            serde_json::to_string(&Failure::from(typed.clone())).unwrap(),
            wire
        );
        let api = ApiError::from(typed);
        assert_eq!(api.status, StatusCode::UNAUTHORIZED);
        assert_eq!(api.code.as_deref(), Some("key_rotated"));
    }
}
