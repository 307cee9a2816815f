//! The tenant index of Durable Object SQLite mode: Cloudflare finds
//! objects by name and never enumerates them, so `GET /admin/tenants`
//! reads the names from one object of the same class, addressed by a name
//! no tenant can have ([`INDEX_NAME`]: tenant names start with a letter or
//! a digit), which keeps them in its SQLite with when each was first and
//! last seen.
//!
//! - A tenant's object registers its name once per object lifetime: when
//!   its engine starts (first connection, so its store and remoteId are
//!   created, or a cold start) and after an import; in the background
//!   (`waitUntil`), so a slow or failing index never delays or breaks a
//!   sync connection (a failure is logged). An admin delete deregisters
//!   it.
//! - The list (`crate::routes`) asks each listed tenant's object for its
//!   figures and leaves out those without data.
//! - Tenants whose object has not run since the index was deployed are
//!   not in it until they next connect.

use crate::config;
use crate::http::{TENANT_HEADER, json, text};
use crate::js;
use crate::log;
use serde::{Deserialize, Serialize};
use worker::{Env, Headers, Method, Request, RequestInit, Response, Result, State};

/// The index object's name. Tenant names match
/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`, so no tenant is ever this.
pub const INDEX_NAME: &str = "~index";

/// The paths the index object serves (sent only to [`INDEX_NAME`]).
pub const REGISTER: &str = "/index/register";
pub const DEREGISTER: &str = "/index/deregister";
pub const LIST: &str = "/index/list";

/// One tenant in the index.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Indexed {
    pub tenant: String,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

#[derive(Deserialize)]
struct Listed {
    tenants: Vec<Indexed>,
}

/// Sends `method path` to the index object.
async fn call(env: &Env, path: &str, method: Method, tenant: Option<&str>) -> Result<Response> {
    let stub = env
        .durable_object(config::DO_BINDING)?
        .id_from_name(INDEX_NAME)?
        .get_stub()?;
    let headers = Headers::new();
    if let Some(tenant) = tenant {
        headers.set(TENANT_HEADER, tenant)?;
    }
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers);
    let req = Request::new_with_init(&format!("https://evsync.internal{path}"), &init)?;
    stub.fetch_with_request(req).await
}

/// `path` for `tenant` on the index; an error names what failed.
async fn change(env: &Env, path: &str, tenant: &str) -> std::result::Result<(), String> {
    let response = call(env, path, Method::Post, Some(tenant))
        .await
        .map_err(|e| e.to_string())?;
    match response.status_code() {
        200 => Ok(()),
        status => Err(format!("the tenant index answered {status}")),
    }
}

/// Records `tenant` in the index (first seen now if new, last seen now).
/// Failures are logged, never returned: the index is for operators.
pub async fn register(env: &Env, tenant: &str) {
    if let Err(reason) = change(env, REGISTER, tenant).await {
        log::warning!(
            "tenant index: registering failed",
            tenant = tenant,
            reason = reason
        );
    }
}

/// Removes `tenant` from the index; failures are logged (the list leaves
/// out tenants without data anyway).
pub async fn deregister(env: &Env, tenant: &str) {
    if let Err(reason) = change(env, DEREGISTER, tenant).await {
        log::warning!(
            "tenant index: deregistering failed",
            tenant = tenant,
            reason = reason
        );
    }
}

/// Every tenant in the index, by name.
pub async fn tenants(env: &Env) -> std::result::Result<Vec<Indexed>, String> {
    let mut response = call(env, LIST, Method::Get, None)
        .await
        .map_err(|e| format!("the tenant index cannot be reached: {e}"))?;
    let body = response.text().await.map_err(|e| e.to_string())?;
    if response.status_code() != 200 {
        return Err(format!(
            "the tenant index answered {}: {body}",
            response.status_code()
        ));
    }
    serde_json::from_str::<Listed>(&body)
        .map(|listed| listed.tenants)
        .map_err(|e| format!("the tenant index's answer: {e}"))
}

/// Serves an index request inside the index object.
pub fn serve(state: &State, req: &Request, path: &str) -> Result<Response> {
    let sql = state.storage().sql();
    let fail = |e: worker::Error| {
        let reason = e.to_string();
        log::error!("tenant index: storage failed", reason = reason);
        text(503, &reason)
    };
    if let Err(e) = sql.exec(
        "CREATE TABLE IF NOT EXISTS evsync_tenant_index (tenant TEXT PRIMARY KEY, first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL)",
        None,
    ) {
        return fail(e);
    }
    match (path, req.method()) {
        (LIST, Method::Get) => {
            // SQLite's integers arrive as JavaScript numbers.
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Row {
                tenant: String,
                first_seen_ms: f64,
                last_seen_ms: f64,
            }
            let rows: Vec<Row> = match sql
                .exec(
                    "SELECT tenant, first_seen_ms AS firstSeenMs, last_seen_ms AS lastSeenMs FROM evsync_tenant_index ORDER BY tenant",
                    None,
                )
                .and_then(|cursor| cursor.to_array())
            {
                Ok(rows) => rows,
                Err(e) => return fail(e),
            };
            let tenants: Vec<Indexed> = rows
                .into_iter()
                .map(|row| Indexed {
                    tenant: row.tenant,
                    first_seen_ms: row.first_seen_ms as u64,
                    last_seen_ms: row.last_seen_ms as u64,
                })
                .collect();
            json(200, &serde_json::json!({ "tenants": tenants }).to_string())
        }
        (REGISTER | DEREGISTER, Method::Post) => {
            let Some(tenant) = req.headers().get(TENANT_HEADER)? else {
                return text(400, "Tenant is required.");
            };
            let done = if path == REGISTER {
                let now = js::now_ms() as i64;
                sql.exec(
                    "INSERT INTO evsync_tenant_index (tenant, first_seen_ms, last_seen_ms) VALUES (?1, ?2, ?2) ON CONFLICT(tenant) DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
                    vec![tenant.as_str().into(), now.into()],
                )
            } else {
                sql.exec(
                    "DELETE FROM evsync_tenant_index WHERE tenant = ?1",
                    vec![tenant.as_str().into()],
                )
            };
            match done {
                Ok(_) => json(200, "{}"),
                Err(e) => fail(e),
            }
        }
        _ => text(405, "Method not allowed"),
    }
}
