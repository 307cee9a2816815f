//! What every HTTP handler of the server shares: plain-text answers and
//! the refusal log line of a request ([`Peer`]). Below the handlers
//! (`routes`, `admin`, `dashboard`), which all use it.

use crate::auth;
use crate::registry::Registry;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use evsync_core::access::{RefusalLine, refused_tenant};
use std::net::SocketAddr;

/// A plain-text answer.
pub(crate) fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain;charset=UTF-8")],
        body,
    )
        .into_response()
}

/// A JSON answer (never cached: every one is a fresh reading).
pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Who asked, for the refusal log.
pub(crate) struct Peer<'a> {
    pub addr: SocketAddr,
    pub headers: &'a HeaderMap,
    pub path: &'a str,
    /// The tenant to name in the log, when not the sync path's.
    pub tenant: Option<&'a str>,
}

impl Peer<'_> {
    /// Logs that this request was refused with `status` because `reason`.
    pub fn refused(&self, registry: &Registry, status: u16, reason: &str) {
        let shared = registry.shared();
        let remote = self.addr.to_string();
        shared.refusals.record(
            shared.now(),
            RefusalLine {
                status,
                reason,
                tenant: self.tenant.or_else(|| refused_tenant(self.path)),
                remote: Some(&remote),
                user_agent: auth::header_text(self.headers, header::USER_AGENT),
                suppressed: 0,
            },
        );
    }
}
