//! The admin API (`/admin/…`): operations on tenants for operators, behind
//! `SYNC_ADMIN_TOKEN`. Which path is which operation and whether the token
//! is right is [`evsync_core::access::admit_admin`], shared with the
//! Worker; this module runs the operation and answers in JSON.
//!
//! - `POST /admin/tenants/<t>/revoke`: stores "signed tokens minted before
//!   now are refused" with the tenant's data, closes every open socket of
//!   the tenant with 1008, answers
//!   `{"tenant":…,"tokensNotBefore":<Unix ms>,"closedConnections":<n>}`.
//! - `GET /admin/tenants/<t>/stats`: the Worker's per-object figures;
//!   `501` here, where `/metrics` and `/dashboard` say more.

use crate::auth;
use crate::registry::Registry;
use crate::respond::{Peer, text};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use evsync_core::access::{AdminRefusal, AdminRoute, admit_admin};
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RevokeAnswer<'a> {
    tenant: &'a str,
    tokens_not_before: u64,
    closed_connections: usize,
}

/// Answers one admin request.
pub(crate) async fn handle(registry: &Registry, method: &Method, peer: &Peer<'_>) -> Response {
    let shared = registry.shared();
    let authorization = auth::header_text(peer.headers, header::AUTHORIZATION);
    let route = admit_admin(
        method.as_str(),
        peer.path,
        authorization,
        shared.config.admin_token.as_ref(),
    );
    match route {
        Err(refusal) => {
            let (status, body) = refusal.status_and_body();
            peer.refused(registry, status, refusal.reason());
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            let mut response = text(status, body);
            let headers = response.headers_mut();
            match refusal {
                AdminRefusal::MissingToken | AdminRefusal::WrongToken => {
                    headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    shared
                        .metrics
                        .auth_failed(crate::metrics::admin_label(refusal));
                }
                AdminRefusal::MethodNotAllowed { allow } => {
                    headers.insert(header::ALLOW, HeaderValue::from_static(allow));
                }
                _ => {}
            }
            response
        }
        Ok(AdminRoute::Revoke { tenant }) => {
            match registry.revoke(tenant, shared.unix_now().0).await {
                Ok(revoked) => {
                    tracing::info!(
                        tenant,
                        tokens_not_before = revoked.not_before,
                        closed = revoked.closed,
                        "admin: tokens revoked"
                    );
                    json(&RevokeAnswer {
                        tenant,
                        tokens_not_before: revoked.not_before,
                        closed_connections: revoked.closed,
                    })
                }
                Err(reason) => {
                    tracing::error!(tenant, %reason, "admin: revoking failed");
                    (StatusCode::SERVICE_UNAVAILABLE, reason).into_response()
                }
            }
        }
        Ok(AdminRoute::Stats { .. }) => text(
            StatusCode::NOT_IMPLEMENTED,
            "Not implemented on the native server (see /dashboard and /metrics)",
        ),
    }
}

fn json(value: &impl Serialize) -> Response {
    let body = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
