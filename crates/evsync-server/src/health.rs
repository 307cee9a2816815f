//! `GET /healthz`: a small JSON document for load balancers and operators.
//! It says nothing about tenants beyond a count, and needs no token.

use crate::registry::Registry;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::atomic::Ordering;

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    storage: &'static str,
    /// Tenants loaded right now (idle ones are unloaded).
    tenants: usize,
    /// Open WebSockets.
    connections: usize,
}

pub(crate) fn response(registry: &Registry) -> Response {
    let shared = registry.shared();
    let health = Health {
        status: if registry.is_shutting_down() {
            "shutting_down"
        } else {
            "ok"
        },
        version: env!("CARGO_PKG_VERSION"),
        storage: shared.config.storage.kind(),
        tenants: registry.loaded_tenants(),
        connections: shared.connections.load(Ordering::Relaxed),
    };
    let body = serde_json::to_string(&health).unwrap_or_else(|_| "{}".into());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
