//! The HTTP surface, kept exactly as the original worker's: the same
//! paths, checks in the same order, the same statuses and bodies, so that
//! clients and their configs switch over unchanged. Plus `GET /healthz`.
//!
//! The checks up to the upgrade (path, tenant, auth, `Upgrade: websocket`)
//! are [`evsync_core::access::admit`], shared with the Cloudflare Worker;
//! this module reads the request into it, turns its refusal into a
//! response, and adds what is native:
//! - `Upgrade: websocket` but not a valid handshake: the 4xx axum would
//!   give (`crate::upgrade`);
//! - the tenant's store opens, else `503` with the reason;
//! - `101`, selecting the first offered `sync-auth.<token>` subprotocol
//!   (the original selected it only when it carried the token, so a client
//!   offering one to an open tenant failed its handshake).
//!
//! Every refusal is logged once (`crate::refusals`, rate-limited) with its
//! reason, the tenant when valid, the peer's address and user agent.

use crate::admin;
use crate::auth;
use crate::connection;
use crate::dashboard;
use crate::health;
use crate::metrics::deny_label;
use crate::registry::{ConnectError, Registry};
pub(crate) use crate::respond::{Peer, text};
use crate::upgrade::{WsRejection, WsRequest};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use evsync_core::access::{DenyReason, HttpRequest, Refusal, admit, is_admin_path};
pub use evsync_core::access::{PathError, is_valid_tenant, parse_path};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Builds the router: one fallback handler, so that routing follows the
/// original's regex rather than axum's path syntax.
pub(crate) fn router(registry: Arc<Registry>) -> Router {
    Router::new().fallback(handle).with_state(registry)
}

/// The router of a `--metrics-listen` address: `/metrics` only.
pub(crate) fn metrics_router(registry: Arc<Registry>) -> Router {
    Router::new()
        .fallback(
            |State(registry): State<Arc<Registry>>, method: Method, uri: Uri| async move {
                if uri.path() == "/metrics" && (method == Method::GET || method == Method::HEAD) {
                    health::metrics(&registry)
                } else {
                    text(StatusCode::NOT_FOUND, "Not found")
                }
            },
        )
        .with_state(registry)
}

/// Per-socket read buffer of the WebSocket codec, kept for the socket's
/// life, and the most it reads per call. Small, because the stream under
/// it reads 16 KiB per `recv` into a chunk that exists only while bytes
/// wait (`crate::on_demand_read`), so a large message costs a memcpy per
/// 512 bytes, not a syscall.
const READ_BUFFER_BYTES: usize = 512;

/// The original's answer to a refused request.
fn refusal_response(refusal: Refusal) -> Response {
    let (status, body) = refusal.status_and_body();
    let mut response = text(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        body,
    );
    if let Some(challenge) = refusal.www_authenticate() {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    response
}

/// A refusal the client should retry: `status` with `body` and
/// `Retry-After: retry_after_secs` (over a limit, a held tenant, a tenant
/// behind its write rate).
fn retry_later(status: StatusCode, body: &'static str, retry_after_secs: u64) -> Response {
    let mut response = text(status, body);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

async fn handle(
    State(registry): State<Arc<Registry>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ws: Result<WsRequest, WsRejection>,
    body: Body,
) -> Response {
    let path = uri.path();
    let shared = registry.shared();
    if method == Method::GET || method == Method::HEAD {
        match path {
            "/healthz" => return health::response(&registry),
            "/readyz" => return health::readyz(&registry),
            "/metrics" if shared.config.metrics_listen.is_none() => {
                return health::metrics(&registry);
            }
            _ => {}
        }
    }
    let peer = Peer {
        addr,
        headers: &headers,
        path,
        tenant: None,
    };
    if path == "/dashboard" || path.starts_with("/dashboard/") {
        let loopback = shared.config.listen.ip().is_loopback();
        return dashboard::handle(&registry, &peer, loopback);
    }
    if is_admin_path(path) {
        return admin::handle(&registry, &method, &peer, uri.query(), body).await;
    }
    let protocols = auth::protocols(&headers);
    let request = HttpRequest {
        path,
        upgrade: auth::header_text(&headers, header::UPGRADE),
        credentials: auth::credentials(&headers, &protocols, uri.query()),
    };
    let unix_now = shared.unix_now();
    let admission = match admit(&request, Some(&shared.config.auth), unix_now) {
        Ok(admission) => admission,
        Err(refusal) => {
            peer.refused(&registry, refusal.status_and_body().0, refusal.reason());
            if let Refusal::Unauthorized(why) = refusal {
                shared.metrics.auth_failed(deny_label(why));
            }
            return refusal_response(refusal);
        }
    };
    let tenant = admission.tenant;
    // Both protocols are served by the tenant actor's engines
    // (`TenantEngines`), which match on it: a new protocol fails their
    // build until it has a session layer.
    let protocol = admission.protocol;
    // `Upgrade: websocket` but not a valid handshake (no key, wrong
    // version, not GET): a 4xx that says what is missing.
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            peer.refused(&registry, rejection.status(), "invalid websocket handshake");
            return rejection.into_response();
        }
    };
    // Expiries are Unix times; the engine's clock starts with the process.
    let grant = admission.grant.rebased(unix_now, shared.now());
    let attached = match registry.connect(tenant, protocol, grant).await {
        Ok(attached) => attached,
        Err(ConnectError::Limit(hit)) => {
            peer.refused(&registry, 503, hit.reason());
            shared.metrics.refused_over_limit(hit.label());
            return retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                hit.body(),
                shared.config.limits.retry_after_secs.into(),
            );
        }
        Err(ConnectError::Revoked) => {
            let refusal = Refusal::Unauthorized(DenyReason::Revoked);
            peer.refused(&registry, 401, refusal.reason());
            shared.metrics.auth_failed(deny_label(DenyReason::Revoked));
            return refusal_response(refusal);
        }
        Err(ConnectError::Throttled(retry_after_secs)) => {
            peer.refused(&registry, 429, "tenant write rate limit");
            shared.metrics.refused_over_limit("tenant_write_rate");
            return retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many writes to this tenant; retry later.",
                retry_after_secs,
            );
        }
        Err(ConnectError::Held) => {
            peer.refused(&registry, 503, "tenant held by an operator");
            return retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "Tenant is being changed by an operator.",
                shared.config.limits.retry_after_secs.into(),
            );
        }
        Err(ConnectError::ShuttingDown) => {
            peer.refused(&registry, 503, "server shutting down");
            return text(StatusCode::SERVICE_UNAVAILABLE, "Server is shutting down.");
        }
        Err(ConnectError::Storage(reason)) => {
            tracing::error!(tenant, %reason, "tenant storage unavailable");
            peer.refused(&registry, 503, "storage unavailable");
            return Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8")
                .body(Body::from(reason))
                .unwrap_or_else(|_| StatusCode::SERVICE_UNAVAILABLE.into_response());
        }
    };
    let selected = admission
        .subprotocol
        .and_then(|p| HeaderValue::from_str(&p).ok());
    let max = shared.config.engine.max_frame_bytes;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    // A message's bytes wait for the rest as long as a chunked message's
    // parts may (the same kind of hold, one layer down).
    let message_limit = Duration::from_millis(shared.config.engine.chunks.max_incomplete_age_ms);
    ws.accept(selected, config, message_limit, move |socket| {
        connection::run(socket, attached)
    })
}
