//! The HTTP surface, kept exactly as the original worker's: the same
//! paths, checks in the same order, the same statuses and bodies, so that
//! clients and their configs switch over unchanged. Plus `GET /healthz`.
//!
//! Order of checks (each one answers and stops):
//! 1. path `^/event-log(/<tenant>)?/?$`, else `404 Not found`;
//! 2. a tenant, else `400 Tenant is required.`;
//! 3. tenant `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`, else
//!    `400 Invalid tenant format.`;
//! 4. auth, else `401 Unauthorized` + `WWW-Authenticate: Bearer`;
//! 5. `Upgrade: websocket` (any case), else `426 Expected WebSocket upgrade`;
//! 6. the tenant's store opens, else `503` with the reason;
//! 7. `101`, selecting the first offered `sync-auth.<token>` subprotocol
//!    (the original selected it only when it carried the token, so a client
//!    offering one to an open tenant failed its handshake).

use crate::auth::{AuthDecision, authorize};
use crate::connection;
use crate::health;
use crate::registry::{ConnectError, Registry};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
pub use evsync_core::access::{PathError, is_valid_tenant, parse_path};
use std::sync::Arc;

/// Builds the router: one fallback handler, so that routing follows the
/// original's regex rather than axum's path syntax.
pub(crate) fn router(registry: Arc<Registry>) -> Router {
    Router::new().fallback(handle).with_state(registry)
}

/// Per-socket read buffer of the WebSocket codec.
const READ_BUFFER_BYTES: usize = 4096;

/// The original's answer for a path that names no tenant.
fn path_error_response(err: PathError) -> Response {
    let (status, body) = err.status_and_body();
    text(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        body,
    )
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain;charset=UTF-8")],
        body,
    )
        .into_response()
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

async fn handle(
    State(registry): State<Arc<Registry>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let path = uri.path();
    if path == "/healthz" && (method == Method::GET || method == Method::HEAD) {
        return health::response(&registry);
    }
    let tenant = match parse_path(path) {
        Ok(tenant) => tenant,
        Err(err) => return path_error_response(err),
    };
    let shared = registry.shared();
    let protocol = match authorize(&shared.config.auth, tenant, &headers, uri.query()) {
        AuthDecision::Allow { protocol } => protocol,
        AuthDecision::Deny => {
            let mut response = text(StatusCode::UNAUTHORIZED, "Unauthorized");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    };
    if !is_websocket_upgrade(&headers) {
        return text(StatusCode::UPGRADE_REQUIRED, "Expected WebSocket upgrade");
    }
    // `Upgrade: websocket` but not a valid handshake (no key, wrong
    // version, not GET): axum's own 4xx says what is missing.
    let mut ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let attached = match registry.connect(tenant).await {
        Ok(attached) => attached,
        Err(ConnectError::ShuttingDown) => {
            return text(StatusCode::SERVICE_UNAVAILABLE, "Server is shutting down.");
        }
        Err(ConnectError::Storage(reason)) => {
            tracing::error!(tenant, %reason, "tenant storage unavailable");
            return Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8")
                .body(Body::from(reason))
                .unwrap_or_else(|_| StatusCode::SERVICE_UNAVAILABLE.into_response());
        }
    };
    if let Some(protocol) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        ws.set_selected_protocol(protocol);
    }
    let max = shared.config.engine.max_frame_bytes;
    // tungstenite's default 128 KiB read buffer is allocated (and zeroed
    // before every read) per socket: 134 KiB of RSS per idle connection.
    // 4 KiB brings that to ~10 KiB (BENCHMARKS.md); large messages just
    // take more reads.
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(max)
        .max_frame_size(max)
        .on_failed_upgrade(|err| tracing::debug!(%err, "websocket upgrade failed"))
        .on_upgrade(move |socket| connection::run(socket, attached))
}
