//! Per-request context: request id, client address and trace context, set by one
//! middleware and read by extractors, errors and command metadata.

use std::net::IpAddr;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use gatehouse_contracts::commands::Caller;
use gatehouse_contracts::envelope::EventMetadata;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The request id of the request being served, or an empty string outside one.
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// What the gateway knows about the request itself.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// Our id for the request (or the client's, when it sent a sane `x-request-id`).
    pub request_id: String,
    /// The client's address: the socket peer, or the forwarded address when the peer is
    /// a trusted proxy.
    pub client_ip: Option<IpAddr>,
    /// W3C trace context: the client's when valid, otherwise a new one.
    pub traceparent: String,
}

impl RequestContext {
    /// Event metadata for a command sent on behalf of `caller`.
    pub fn metadata(&self, caller: Option<&Caller>) -> EventMetadata {
        EventMetadata {
            actor: caller.map(Caller::actor),
            request_id: Some(self.request_id.clone()),
            client_ip: self.client_ip.map(|ip| ip.to_string()),
            traceparent: Some(self.traceparent.clone()),
            causation_id: None,
            correlation_id: None,
        }
    }
}

impl FromRequest for RequestContext {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let ctx = req.extensions().get::<RequestContext>().cloned();
        std::future::ready(Ok(ctx.unwrap_or_else(|| RequestContext {
            request_id: uuid::Uuid::new_v4().to_string(),
            client_ip: req.peer_addr().map(|a| a.ip()),
            traceparent: gatehouse_telemetry::new_traceparent(),
        })))
    }
}

fn sane_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Proxies whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(pub Vec<IpAddr>);

fn client_ip(req: &ServiceRequest, trusted: &TrustedProxies) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip())?;
    if !trusted.0.contains(&peer) {
        return Some(peer);
    }
    // The right-most address that is not itself a trusted proxy is the client.
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let from_header = forwarded.and_then(|list| {
        list.rsplit(',')
            .filter_map(|part| part.trim().parse::<IpAddr>().ok())
            .find(|ip| !trusted.0.contains(ip))
    });
    Some(from_header.unwrap_or(peer))
}

/// Assigns the request id and context, logs the outcome, echoes `x-request-id`.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane_request_id(v))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let trusted = req
        .app_data::<actix_web::web::Data<TrustedProxies>>()
        .map(|d| d.get_ref().clone())
        .unwrap_or_default();
    let traceparent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(gatehouse_telemetry::child_traceparent)
        .unwrap_or_else(gatehouse_telemetry::new_traceparent);
    let ctx = RequestContext {
        request_id: request_id.clone(),
        client_ip: client_ip(&req, &trusted),
        traceparent,
    };
    let method = req.method().clone();
    let path = req.path().to_owned();
    req.extensions_mut().insert(ctx);
    let result = REQUEST_ID.scope(request_id.clone(), next.call(req)).await;
    let mut response = result?;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    let status = response.status().as_u16();
    let micros = started.elapsed().as_micros() as u64;
    if status >= 500 {
        tracing::warn!(%method, %path, status, micros, request_id = %request_id, "request failed");
    } else if status >= 400 {
        tracing::info!(%method, %path, status, micros, request_id = %request_id, "request refused");
    } else {
        tracing::debug!(%method, %path, status, micros, request_id = %request_id, "request served");
    }
    Ok(response)
}
