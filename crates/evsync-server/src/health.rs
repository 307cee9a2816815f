//! Probes for load balancers, orchestrators and Prometheus, none with a
//! token and none naming a tenant:
//! - `GET /healthz`: the process is up (a small JSON document, as before);
//! - `GET /readyz`: 200 `{"status":"ready"}` while the server can serve
//!   (storage usable, not draining), else 503 with the reason, so that a
//!   load balancer stops sending replicas before a shutdown closes them;
//! - `GET /metrics`: Prometheus text ([`crate::metrics`]).

use crate::registry::Registry;
use crate::respond::json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::atomic::Ordering;

/// Whether the server can take new replicas now, or why not.
pub(crate) fn readiness(registry: &Registry) -> Result<(), &'static str> {
    let shared = registry.shared();
    if registry.is_shutting_down() {
        return Err("shutting down");
    }
    if shared.draining.load(Ordering::Relaxed) {
        return Err("draining");
    }
    if shared.postgres.is_some() && !shared.database_ok.load(Ordering::Relaxed) {
        return Err("database unreachable");
    }
    if let Some(dir) = shared.tenants_dir() {
        // The directory can vanish or turn read-only (a full or remounted
        // disk) under a running server: new tenants could not be created.
        match std::fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() && !meta.permissions().readonly() => {}
            _ => return Err("data directory not writable"),
        }
    }
    Ok(())
}

/// `GET /readyz`.
pub(crate) fn readyz(registry: &Registry) -> Response {
    match readiness(registry) {
        Ok(()) => json(StatusCode::OK, &serde_json::json!({"status": "ready"})),
        Err(reason) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"status": "not_ready", "reason": reason}),
        ),
    }
}

/// `GET /metrics`, in the Prometheus text format.
pub(crate) fn metrics(registry: &Registry) -> Response {
    let shared = registry.shared();
    let text = shared.metrics.render(
        shared.connections.load(Ordering::Relaxed),
        registry.loaded_tenants(),
    );
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    storage: &'static str,
    /// Tenants loaded right now (idle ones are unloaded).
    tenants: usize,
    /// Open WebSockets.
    connections: usize,
    /// `--storage postgres` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<DatabaseHealth>,
}

#[derive(Serialize)]
struct DatabaseHealth {
    /// PostgreSQL answered the last check (at most `recheck` ago).
    reachable: bool,
    /// This node hears other nodes' commits as they happen (when false,
    /// it still sees them at each re-check).
    listening: bool,
}

pub(crate) fn response(registry: &Registry) -> Response {
    let shared = registry.shared();
    let health = Health {
        status: if registry.is_shutting_down() {
            "shutting_down"
        } else if shared.postgres.is_some() && !shared.database_ok.load(Ordering::Relaxed) {
            "database_unreachable"
        } else {
            "ok"
        },
        version: env!("CARGO_PKG_VERSION"),
        storage: shared.config.storage.kind(),
        tenants: registry.loaded_tenants(),
        connections: shared.connections.load(Ordering::Relaxed),
        database: shared.postgres.as_ref().map(|_| DatabaseHealth {
            reachable: shared.database_ok.load(Ordering::Relaxed),
            listening: shared.database_listening.load(Ordering::Relaxed),
        }),
    };
    json(StatusCode::OK, &health)
}
