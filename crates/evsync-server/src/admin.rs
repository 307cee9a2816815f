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
//!   "tokensNotBefore","v4Stores","v4Entries"}` (`logs`, `entries` and
//!   `bytes` count v3 logs; the last two Effect v4 stores and the entries
//!   in them); `404` for a tenant without data (reading never creates
//!   one).

use crate::auth;
use crate::registry::Registry;
use crate::respond::{Peer, json, text};
use crate::store;
use crate::tenant_ops::{self, ImportError};
use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use evsync_core::access::{AdminRefusal, AdminRoute, admit_admin_on, wants_replace};
use futures_util::StreamExt;
use serde::Serialize;
use std::sync::Arc;

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
    v4_stores: u64,
    v4_entries: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RevokeAnswer<'a> {
    tenant: &'a str,
    tokens_not_before: u64,
    closed_connections: usize,
}

#[derive(Serialize)]
struct ListAnswer {
    tenants: Vec<tenant_ops::Listing>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeleteAnswer<'a> {
    tenant: &'a str,
    deleted: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ImportAnswer<'a> {
    tenant: &'a str,
    remote_id: String,
    logs: u64,
    entries: u64,
    /// Effect v4 stores, their batches and the session-auth bindings.
    stores: u64,
    batches: u64,
    bindings: u64,
    replaced: bool,
}

/// Answers one admin request.
pub(crate) async fn handle(
    registry: &Arc<Registry>,
    method: &Method,
    peer: &Peer<'_>,
    query: Option<&str>,
    body: Body,
) -> Response {
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
                    v4_stores: figures.v4.stores,
                    v4_entries: figures.v4.entries,
                    tokens_not_before: figures.tokens_not_before,
                },
            ),
            Ok(None) => text(StatusCode::NOT_FOUND, "No such tenant."),
            Err(reason) => {
                tracing::error!(tenant, %reason, "admin: reading stats failed");
                (StatusCode::SERVICE_UNAVAILABLE, reason).into_response()
            }
        },
        Ok(AdminRoute::List) => match tenant_ops::list(registry).await {
            Ok(tenants) => json(StatusCode::OK, &ListAnswer { tenants }),
            Err(reason) => {
                tracing::error!(%reason, "admin: listing tenants failed");
                (StatusCode::SERVICE_UNAVAILABLE, reason).into_response()
            }
        },
        Ok(AdminRoute::Delete { tenant }) => match tenant_ops::delete(registry, tenant).await {
            Ok(true) => {
                tracing::info!(tenant, "admin: tenant deleted");
                json(
                    StatusCode::OK,
                    &DeleteAnswer {
                        tenant,
                        deleted: true,
                    },
                )
            }
            Ok(false) => text(StatusCode::NOT_FOUND, "No such tenant."),
            Err(reason) => {
                tracing::error!(tenant, %reason, "admin: deleting failed");
                (StatusCode::SERVICE_UNAVAILABLE, reason).into_response()
            }
        },
        Ok(AdminRoute::Export { tenant }) => match tenant_ops::export(shared, tenant).await {
            Err(reason) => {
                tracing::error!(tenant, %reason, "admin: export failed");
                (StatusCode::SERVICE_UNAVAILABLE, reason).into_response()
            }
            Ok(Some(mut lines)) => {
                let body =
                    Body::from_stream(futures_util::stream::poll_fn(move |cx| lines.poll_recv(cx)));
                Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, "application/x-ndjson")
                    .header(
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{tenant}.evsync-export.jsonl\""),
                    )
                    .body(body)
                    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
            }
            Ok(None) => text(StatusCode::NOT_FOUND, "No such tenant."),
        },
        Ok(AdminRoute::Import { tenant }) => {
            let replace = wants_replace(query);
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            let mut stream = body.into_data_stream();
            let feed = async move {
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(chunk) => {
                            if tx.send(chunk).await.is_err() {
                                return Ok(());
                            }
                        }
                        Err(e) => return Err(format!("reading the request body: {e}")),
                    }
                }
                Ok(())
            };
            let (fed, imported) =
                tokio::join!(feed, tenant_ops::import(registry, tenant, replace, rx));
            match (fed, imported) {
                (_, Ok(done)) => {
                    tracing::info!(
                        tenant,
                        remote_id = %done.header.remote_id.to_uuid_string(),
                        logs = done.summary.logs,
                        entries = done.summary.entries,
                        stores = done.summary.stores,
                        batches = done.summary.batches,
                        bindings = done.summary.bindings,
                        replaced = done.replaced,
                        "admin: tenant imported"
                    );
                    json(
                        StatusCode::OK,
                        &ImportAnswer {
                            tenant,
                            remote_id: done.header.remote_id.to_uuid_string(),
                            logs: done.summary.logs,
                            entries: done.summary.entries,
                            stores: done.summary.stores,
                            batches: done.summary.batches,
                            bindings: done.summary.bindings,
                            replaced: done.replaced,
                        },
                    )
                }
                (Err(reason), Err(_)) => {
                    tracing::warn!(tenant, %reason, "admin: import refused");
                    (StatusCode::BAD_REQUEST, reason).into_response()
                }
                (Ok(()), Err(ImportError::HasData)) => text(
                    StatusCode::CONFLICT,
                    "The tenant has data; import with ?replace=true to replace it.",
                ),
                (Ok(()), Err(ImportError::BadFile(reason))) => {
                    tracing::warn!(tenant, %reason, "admin: import refused, nothing changed");
                    let body = format!("Import refused, nothing changed: {reason}");
                    (StatusCode::BAD_REQUEST, body).into_response()
                }
                (Ok(()), Err(ImportError::Storage(reason))) => {
                    tracing::error!(tenant, %reason, "admin: import failed, nothing changed");
                    (StatusCode::SERVICE_UNAVAILABLE, reason).into_response()
                }
            }
        }
    }
}
