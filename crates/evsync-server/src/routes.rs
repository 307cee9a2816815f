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

use crate::auth::AuthDecision;
use crate::connection;
use crate::health;
use crate::registry::{ConnectError, Registry};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Builds the router: one fallback handler, so that routing follows the
/// original's regex rather than axum's path syntax.
pub(crate) fn router(registry: Arc<Registry>) -> Router {
    Router::new().fallback(handle).with_state(registry)
}

/// Why a path is not a tenant's socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    NotFound,
    TenantRequired,
    InvalidTenant,
}

impl PathError {
    fn response(self) -> Response {
        match self {
            PathError::NotFound => text(StatusCode::NOT_FOUND, "Not found"),
            PathError::TenantRequired => text(StatusCode::BAD_REQUEST, "Tenant is required."),
            PathError::InvalidTenant => text(StatusCode::BAD_REQUEST, "Invalid tenant format."),
        }
    }
}

/// Matches `^/event-log(?:/([^/]+))?/?$` on the raw (still percent-encoded)
/// path, as the original did on `URL.pathname`, and validates the tenant.
pub fn parse_path(path: &str) -> Result<&str, PathError> {
    let rest = path.strip_prefix("/event-log").ok_or(PathError::NotFound)?;
    if rest.is_empty() || rest == "/" {
        return Err(PathError::TenantRequired);
    }
    let tenant = rest.strip_prefix('/').ok_or(PathError::NotFound)?;
    let tenant = tenant.strip_suffix('/').unwrap_or(tenant);
    if tenant.is_empty() || tenant.contains('/') {
        return Err(PathError::NotFound);
    }
    if !is_valid_tenant(tenant) {
        return Err(PathError::InvalidTenant);
    }
    Ok(tenant)
}

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`
pub fn is_valid_tenant(tenant: &str) -> bool {
    let bytes = tenant.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
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
        Err(err) => return err.response(),
    };
    let shared = registry.shared();
    let protocol = match shared.config.auth.authorize(tenant, &headers, uri.query()) {
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
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_failed_upgrade(|err| tracing::debug!(%err, "websocket upgrade failed"))
        .on_upgrade(move |socket| connection::run(socket, attached))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_original_regex() {
        assert_eq!(parse_path("/event-log/acme"), Ok("acme"));
        assert_eq!(parse_path("/event-log/acme/"), Ok("acme"));
        assert_eq!(parse_path("/event-log"), Err(PathError::TenantRequired));
        assert_eq!(parse_path("/event-log/"), Err(PathError::TenantRequired));
        assert_eq!(parse_path("/event-log//"), Err(PathError::NotFound));
        assert_eq!(parse_path("/event-logs/a"), Err(PathError::NotFound));
        assert_eq!(parse_path("/event-log/a/b"), Err(PathError::NotFound));
        assert_eq!(parse_path("/event-log/a//"), Err(PathError::NotFound));
        assert_eq!(parse_path("/"), Err(PathError::NotFound));
        assert_eq!(
            parse_path("/event-log/bad%2Ftenant"),
            Err(PathError::InvalidTenant)
        );
        assert_eq!(parse_path("/event-log/.a"), Err(PathError::InvalidTenant));
        assert_eq!(parse_path("/event-log/a.b_c-D9"), Ok("a.b_c-D9"));
    }

    #[test]
    fn tenant_length_limit() {
        assert!(is_valid_tenant(&"a".repeat(128)));
        assert!(!is_valid_tenant(&"a".repeat(129)));
        assert!(!is_valid_tenant(""));
        assert!(!is_valid_tenant("-a"));
        assert!(!is_valid_tenant("a b"));
        assert!(!is_valid_tenant("é"));
    }
}
