//! The WebSocket handshake of the sync endpoints.
//!
//! Why not axum's `WebSocketUpgrade`: it wraps hyper's upgraded connection
//! behind its own type, so the socket cannot be given a read buffer that
//! exists only while bytes are waiting ([`OnDemandRead`]), and it keeps
//! hyper's upgraded wrapper alive under the socket. Here the same checks
//! as axum's, with its statuses and bodies, then the upgraded connection
//! is taken apart back into the `TcpStream` our accept loop served.

use crate::on_demand_read::OnDemandRead;
use crate::request_head::Replay;
use crate::respond::text;
use crate::socket::Socket;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::time::Duration;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// A valid WebSocket upgrade request, not yet answered.
pub(crate) struct WsRequest {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request that asked for `Upgrade: websocket` cannot be upgraded.
#[derive(Debug)]
pub(crate) struct WsRejection(StatusCode, &'static str);

impl WsRejection {
    pub(crate) fn status(&self) -> u16 {
        self.0.as_u16()
    }
}

impl IntoResponse for WsRejection {
    fn into_response(self) -> Response {
        text(self.0, self.1)
    }
}

fn header_is(headers: &HeaderMap, name: HeaderName, value: &str) -> bool {
    headers
        .get(name)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

/// `Connection` lists tokens; one of them must be `upgrade`.
fn connection_upgrades(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    })
}

impl<S: Send + Sync> FromRequestParts<S> for WsRequest {
    type Rejection = WsRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, WsRejection> {
        let reject = |status, body| Err(WsRejection(status, body));
        if parts.method != Method::GET {
            return reject(
                StatusCode::METHOD_NOT_ALLOWED,
                "Request method must be `GET`",
            );
        }
        if !connection_upgrades(&parts.headers) {
            return reject(
                StatusCode::BAD_REQUEST,
                "Connection header did not include 'upgrade'",
            );
        }
        if !header_is(&parts.headers, header::UPGRADE, "websocket") {
            return reject(
                StatusCode::BAD_REQUEST,
                "`Upgrade` header did not include 'websocket'",
            );
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return reject(
                StatusCode::BAD_REQUEST,
                "`Sec-WebSocket-Key` header missing",
            );
        };
        if !header_is(&parts.headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return reject(
                StatusCode::BAD_REQUEST,
                "`Sec-WebSocket-Version` header did not include '13'",
            );
        }
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return reject(
                StatusCode::UPGRADE_REQUIRED,
                "WebSocket request couldn't be upgraded since no upgrade state was present",
            );
        };
        Ok(Self { key, on_upgrade })
    }
}

impl WsRequest {
    /// Answers `101 Switching Protocols` (with `protocol` selected, if
    /// any) and, once hyper hands the connection over, runs `run` on it
    /// in a task of its own. Bytes of a message wait at most
    /// `message_limit` for the rest of it ([`OnDemandRead`]).
    pub(crate) fn accept<F, Fut>(
        self,
        protocol: Option<HeaderValue>,
        config: WebSocketConfig,
        message_limit: Duration,
        run: F,
    ) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept_key = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(err) => {
                    tracing::debug!(%err, "websocket upgrade failed");
                    return;
                }
            };
            // The accept loop serves every connection as a
            // `TokioIo<Replay>` (accept.rs).
            let Ok(parts) = upgraded.downcast::<TokioIo<Replay>>() else {
                tracing::error!("upgraded connection is not a TCP stream");
                return;
            };
            let (read, tcp) = parts.io.into_inner().into_unread(parts.read_buf);
            let stream = OnDemandRead::new(tcp, read, message_limit);
            let socket = WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await;
            run(socket).await;
        });
        let mut response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket");
        if let Ok(accept_key) = HeaderValue::from_str(&accept_key) {
            response = response.header(header::SEC_WEBSOCKET_ACCEPT, accept_key);
        }
        if let Some(protocol) = protocol {
            response = response.header(header::SEC_WEBSOCKET_PROTOCOL, protocol);
        }
        response
            .body(axum::body::Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }
}
