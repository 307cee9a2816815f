//! The admin API (`/admin/…`): operations on tenants for operators, behind
//! `SYNC_ADMIN_TOKEN` (without one: only on a loopback listener). Which
//! path is which operation and whether the token is right is
//! [`evsync_core::access::admit_admin_on`], shared with the Worker; this
//! module runs the operation and answers in JSON.
//!
//! - `POST /admin/tenants/<t>/revoke`: stores "signed tokens minted before
//!   now are refused" with the tenant's data, closes every open socket of
//!   the tenant with 1008, answers
//!   `{"tenant":…,"tokensNotBefore":<Unix ms>,"closedConnections":<n>}`.
//! - `GET /admin/tenants/<t>/stats`: the tenant's figures, as the Worker
//!   gives them per Durable Object: `{"tenant","storage","remoteId",
//!   "connections","logs","entries","bytes","lastWriteMs",
//!   "tokensNotBefore"}`; `404` for a tenant without data (reading never
//!   creates one).

use crate::auth;
use crate::registry::Registry;
use crate::respond::{Peer, json, text};
use crate::store;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use evsync_core::access::{AdminRefusal, AdminRoute, admit_admin_on};
use serde::Serialize;

/// `GET /admin/tenants/<t>/stats`, the Worker's shape (less what only a
/// Durable Object has).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatsAnswer<'a> {
    tenant: &'a str,
    storage: &'static str,
    remote_id: String,
    connections: usize,
    logs: u64,
    entries: u64,
    bytes: u64,
    last_write_ms: Option<u64>,
    tokens_not_before: Option<u64>,
}

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
    let route = admit_admin_on(
        method.as_str(),
        peer.path,
        authorization,
        shared.config.admin_token.as_ref(),
        shared.config.listen.ip().is_loopback(),
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
                    json(
                        StatusCode::OK,
                        &RevokeAnswer {
                            tenant,
                            tokens_not_before: revoked.not_before,
                            closed_connections: revoked.closed,
                        },
                    )
                }
                Err(reason) => {
                    tracing::error!(tenant, %reason, "admin: revoking failed");
                    (StatusCode::SERVICE_UNAVAILABLE, reason).into_response()
                }
            }
        }
        Ok(AdminRoute::Stats { tenant }) => match store::tenant_figures(shared, tenant).await {
            Ok(Some(figures)) => json(
                StatusCode::OK,
                &StatsAnswer {
                    tenant,
                    storage: shared.config.storage.kind(),
                    remote_id: figures.remote_id.to_uuid_string(),
                    connections: registry.connections_of(tenant).await,
                    logs: figures.stats.logs,
                    entries: figures.stats.entries,
                    bytes: figures.stats.bytes,
                    last_write_ms: figures.stats.last_write_ms,
                    tokens_not_before: figures.tokens_not_before,
                },
            ),
            Ok(None) => text(StatusCode::NOT_FOUND, "No such tenant."),
            Err(reason) => {
                tracing::error!(tenant, %reason, "admin: reading stats failed");
                (StatusCode::SERVICE_UNAVAILABLE, reason).into_response()
            }
        },
    }
}
