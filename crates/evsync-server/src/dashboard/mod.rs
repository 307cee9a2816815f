//! The live dashboard: `GET /dashboard` (one page, embedded, nothing loaded
//! from elsewhere so it works offline), `GET /dashboard/stats` (one JSON
//! [`Snapshot`]) and `GET /dashboard/events` (Server-Sent Events, a
//! snapshot about every second).
//!
//! Operator pages: with `SYNC_ADMIN_TOKEN` set they need it, as a Bearer
//! header or as the password of HTTP Basic (a browser asks once, then
//! sends it with the page's `EventSource` too;
//! [`evsync_core::access::admit_operator`]); without an admin token they
//! are served only on a loopback listener.

use crate::auth;
use crate::metrics::Percentiles;
use crate::registry::Registry;
use crate::respond::{Peer, json, text};
use crate::shared::{CloseRecord, lock};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use evsync_core::access::{AdminRefusal, admit_operator};
use serde::Serialize;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The page.
const PAGE: &str = include_str!("page.html");

/// How often the event stream sends a snapshot.
const EVERY: Duration = Duration::from_secs(1);

/// How many tenants the busiest list shows.
const BUSIEST: usize = 10;

/// What the dashboard shows, as JSON (camelCase).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Snapshot {
    version: &'static str,
    uptime_seconds: f64,
    storage: &'static str,
    ready: bool,
    ready_reason: Option<&'static str>,
    connections: BTreeMap<&'static str, usize>,
    tenants_loaded: usize,
    totals: crate::metrics::Totals,
    commit_seconds: Percentiles,
    delivery_lag_seconds: Percentiles,
    recent_closes: Vec<CloseRecord>,
    per_tenant: bool,
    busiest_tenants: Option<Vec<Busy>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Busy {
    tenant: String,
    entries_appended: u64,
    connections: i64,
}

/// The figures right now.
pub(crate) fn snapshot(registry: &Registry) -> Snapshot {
    let shared = registry.shared();
    let metrics = &shared.metrics;
    let readiness = crate::health::readiness(registry);
    let connections = shared.connections.load(Ordering::Relaxed);
    let recent_closes = lock(&shared.recent_closes).iter().rev().cloned().collect();
    let busiest_tenants = metrics.per_tenant().map(|per_tenant| {
        per_tenant
            .busiest(BUSIEST)
            .into_iter()
            .map(|(tenant, entries_appended, connections)| Busy {
                tenant,
                entries_appended,
                connections,
            })
            .collect()
    });
    Snapshot {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: shared.started.elapsed().as_secs_f64(),
        storage: shared.config.storage.kind(),
        ready: readiness.is_ok(),
        ready_reason: readiness.err(),
        connections: BTreeMap::from([("v3", connections)]),
        tenants_loaded: registry.loaded_tenants(),
        totals: metrics.totals(),
        commit_seconds: metrics.commit_percentiles(),
        delivery_lag_seconds: metrics.lag_percentiles(),
        recent_closes,
        per_tenant: metrics.per_tenant().is_some(),
        busiest_tenants,
    }
}

/// Answers a dashboard request (`path` starts with `/dashboard`).
pub(crate) fn handle(registry: &Arc<Registry>, peer: &Peer<'_>, loopback: bool) -> Response {
    let shared = registry.shared();
    let authorization = auth::header_text(peer.headers, header::AUTHORIZATION);
    if let Err(refusal) =
        admit_operator(authorization, shared.config.admin_token.as_ref(), loopback)
    {
        let (status, body) = refusal.status_and_body();
        peer.refused(registry, status, refusal.reason());
        if matches!(
            refusal,
            AdminRefusal::MissingToken | AdminRefusal::WrongToken
        ) {
            shared
                .metrics
                .auth_failed(crate::metrics::admin_label(refusal));
        }
        let mut response = text(
            StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
            body,
        );
        if status == 401 {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"evsync\", charset=\"UTF-8\""),
            );
        }
        return response;
    }
    match peer.path {
        "/dashboard" | "/dashboard/" => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            PAGE,
        )
            .into_response(),
        "/dashboard/stats" => json(StatusCode::OK, &snapshot(registry)),
        "/dashboard/events" => events(registry.clone()),
        _ => text(StatusCode::NOT_FOUND, "Not found"),
    }
}

/// A snapshot every [`EVERY`], until the client goes away or the server
/// shuts down.
fn events(registry: Arc<Registry>) -> Response {
    let stream = futures_util::stream::unfold((registry, true), |(registry, first)| async move {
        if !first {
            tokio::time::sleep(EVERY).await;
        }
        if registry.is_shutting_down() {
            return None;
        }
        let data = serde_json::to_string(&snapshot(&registry)).unwrap_or_else(|_| "{}".into());
        let event: Result<Event, Infallible> = Ok(Event::default().data(data));
        Some((event, (registry, false)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
