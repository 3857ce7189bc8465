//! Liveness, readiness and the OpenAPI document.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;

use crate::state::AppState;

/// Health answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// Per-dependency state.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
}

/// One dependency's state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Check {
    /// Dependency.
    pub name: &'static str,
    /// `ok` or what is wrong.
    pub status: String,
}

/// Alive: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        checks: vec![],
    })
}

/// Ready: the database and the bus answer, the directory has loaded and the other
/// gateway replicas know about this one.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, body = Health), (status = 503, body = Health)))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut checks = vec![Check {
        name: "directory",
        status: if state.directory.is_ready() {
            "ok".into()
        } else {
            "loading".into()
        },
    }];
    checks.push(Check {
        name: "replicas",
        status: if state.peers.is_announced() {
            "ok".into()
        } else {
            "joining".into()
        },
    });
    for probe in &state.probes {
        let status =
            match tokio::time::timeout(std::time::Duration::from_secs(2), probe.check()).await {
                Ok(Ok(())) => "ok".to_owned(),
                Ok(Err(e)) => e,
                Err(_) => "timed out".to_owned(),
            };
        checks.push(Check {
            name: probe.name(),
            status,
        });
    }
    let ready = checks.iter().all(|c| c.status == "ok");
    let body = Health {
        status: if ready { "ok" } else { "unavailable" },
        checks,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(body)
    }
}

/// The OpenAPI document of this API.
#[get("/openapi.json")]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document())
}
