//! The Worker's HTTP surface, kept exactly as the original's: the same
//! paths, checks in the same order, the same statuses and bodies, so that
//! clients and their configs switch over unchanged.
//!
//! Path, tenant, settings, credentials and upgrade are decided by
//! [`evsync_core::access::admit`], the same function the native server
//! calls; this module reads the request into it, answers its refusals, and
//! hands an admitted upgrade to the tenant's Durable Object
//! (`idFromName(tenant)` on `SYNC_DO`), else
//! `502 Sync durable object unavailable.`; the object answers `503` with
//! the reason when its storage cannot start, or `101`.
//!
//! The variables are read per request (the Worker has no start-up to
//! refuse): one that cannot be used makes every request that names a
//! tenant `500 Server misconfigured.`, with the reason in the log.
//!
//! Every refusal (including the object's `503` and the `502`) is logged
//! once through `crate::refusals`, rate-limited, never with a token.
//!
//! `/admin/…` is the admin API ([`evsync_core::access::admit_admin`], as
//! on the native server): a revocation, the tenant's figures
//! (`GET /admin/tenants/<t>/stats`), its delete, export and import are run
//! by the tenant's object, where its sockets and its storage are
//! (`crate::tenant_ops`); the export's and the import's bodies pass through
//! as streams. The list of tenants is read from D1 here, or, with Durable
//! Object SQLite, from the tenant index (`crate::tenant_index`) with each
//! tenant's figures from its object.

use crate::auth;
use crate::config;
use crate::http::{
    GRANT_HEADER, GrantHeader, PROTOCOL_HEADER, REFUSAL_HEADER, TENANT_HEADER, VERSION_HEADER,
    json, text,
};
use crate::js;
use crate::log;
use crate::refusals;
use crate::tenant_ops;
use evsync_core::access::{
    AdminRefusal, AdminRoute, AuthConfig, Credentials, DenyReason, Grant, HttpRequest, Protocol,
    Refusal, admit, admit_admin, is_admin_path, wants_replace,
};
use evsync_core::time::Timestamp;
use wasm_bindgen::JsValue;
use worker::{Env, Headers, Method, Request, RequestInit, Response, Result};

/// Serves one request to the Worker.
pub async fn handle(req: Request, env: Env) -> Result<Response> {
    let url = req.url()?;
    #[cfg(feature = "selftest")]
    if let Some(backend) = url.path().strip_prefix(crate::selftest::ROUTE_PREFIX) {
        match config::flag(&env, crate::selftest::ENABLE_VAR) {
            Ok(true) => return crate::selftest::route(backend, &env).await,
            Ok(false) => {}
            Err(reason) => {
                return refuse(&req, url.path(), Refusal::Misconfigured, Some(&reason));
            }
        }
    }
    if is_admin_path(url.path()) {
        return admin(&req, url.path(), &env).await;
    }
    let settings = settings(&env);
    let headers = req.headers();
    let authorization = headers.get("Authorization")?;
    let protocols = headers.get("Sec-WebSocket-Protocol")?;
    let protocols: Vec<&str> = protocols.as_deref().into_iter().collect();
    let upgrade = headers.get("Upgrade")?;
    let request = HttpRequest {
        path: url.path(),
        upgrade: upgrade.as_deref(),
        credentials: Credentials {
            authorization: authorization.as_deref(),
            protocols: &protocols,
            query: url.query(),
        },
    };
    let now = Timestamp(js::now_ms());
    let admission = match admit(&request, settings.as_ref().ok(), now) {
        Ok(admission) => admission,
        Err(refusal) => {
            let broken = settings.as_ref().err().map(String::as_str);
            return refuse(&req, url.path(), refusal, broken);
        }
    };
    // One arm per protocol, no wildcard: a new protocol must be given its
    // Durable Object session here before the Worker builds.
    let version = match admission.protocol {
        Protocol::V3 => None,
        Protocol::V4 => Some("v4"),
        Protocol::V4Unencrypted => Some("v4u"),
    };
    let response = forward(
        &env,
        admission.tenant,
        admission.subprotocol.as_deref(),
        &admission.grant,
        version,
    )
    .await?;
    match response.status_code() {
        401 => {
            let reason = Refusal::Unauthorized(DenyReason::Revoked).reason();
            refusals::log(headers, url.path(), 401, reason);
        }
        502 => refusals::log(headers, url.path(), 502, "durable object unavailable"),
        code @ (429 | 503) => {
            let reason = response.headers().get(REFUSAL_HEADER)?;
            let reason = reason.as_deref().unwrap_or("storage unavailable");
            refusals::log(headers, url.path(), code, reason);
        }
        _ => {}
    }
    Ok(response)
}

/// Answers an admin request: refused here, or run by the tenant's object.
async fn admin(req: &Request, path: &str, env: &Env) -> Result<Response> {
    let authorization = req.headers().get("Authorization")?;
    let token = match crate::auth::admin_token(env) {
        Ok(token) => token,
        Err(reason) => {
            log::error!("server misconfigured", reason = reason);
            refusals::log(req.headers(), path, 500, "server misconfigured");
            return text(500, "Server misconfigured.");
        }
    };
    let method = req.method().to_string();
    let url = req.url()?;
    let query = url.query();
    match admit_admin(&method, path, authorization.as_deref(), token.as_ref()) {
        Err(refusal) => {
            let (status, body) = refusal.status_and_body();
            refusals::log(req.headers(), path, status, refusal.reason());
            let response = text(status, body)?;
            match refusal {
                AdminRefusal::MissingToken | AdminRefusal::WrongToken => {
                    response.headers().set("WWW-Authenticate", "Bearer")?;
                }
                AdminRefusal::MethodNotAllowed { allow } => {
                    response.headers().set("Allow", allow)?;
                }
                _ => {}
            }
            Ok(response)
        }
        Ok(AdminRoute::Revoke { tenant }) => {
            let response =
                call_object(env, tenant, "/revoke", Method::Post, Headers::new()).await?;
            log::info!(
                "admin: revoke",
                tenant = tenant,
                status = response.status_code()
            );
            Ok(response)
        }
        Ok(AdminRoute::Stats { tenant }) => {
            let response = call_object(env, tenant, "/stats", Method::Get, Headers::new()).await?;
            log::debug!(
                "admin: stats",
                tenant = tenant,
                status = response.status_code()
            );
            Ok(response)
        }
        Ok(AdminRoute::Delete { tenant }) => {
            let response =
                call_object(env, tenant, "/delete", Method::Delete, Headers::new()).await?;
            log::info!(
                "admin: delete",
                tenant = tenant,
                status = response.status_code()
            );
            Ok(response)
        }
        Ok(AdminRoute::Export { tenant }) => {
            // The object's body streams through as the client reads it.
            let response = call_object(env, tenant, "/export", Method::Get, Headers::new()).await?;
            log::info!(
                "admin: export",
                tenant = tenant,
                status = response.status_code()
            );
            Ok(response)
        }
        Ok(AdminRoute::Import { tenant }) => {
            let path = if wants_replace(query) {
                "/import?replace=true"
            } else {
                "/import"
            };
            // A file declared too large for DO SQLite is refused unread
            // (the object counts what it reads too, for uploads of unknown
            // length).
            let declared = req
                .headers()
                .get("Content-Length")?
                .and_then(|n| n.parse::<usize>().ok());
            if declared.is_some_and(|n| n > tenant_ops::MAX_BUFFERED_IMPORT_BYTES)
                && matches!(crate::storage::chosen_d1(env), Ok(None))
            {
                let reason = tenant_ops::too_large();
                log::warning!(
                    "admin: import refused, nothing changed",
                    tenant = tenant,
                    reason = reason
                );
                return text(413, &format!("Import refused, nothing changed: {reason}"));
            }
            // The body goes to the object as a stream, not read here.
            let headers = Headers::new();
            let body = req.inner().body().map(JsValue::from);
            let response = call_object_with(env, tenant, path, Method::Post, headers, body).await?;
            log::info!(
                "admin: import",
                tenant = tenant,
                status = response.status_code()
            );
            Ok(response)
        }
        Ok(AdminRoute::List) => list(env).await,
    }
}

/// `GET /admin/tenants`. On D1 the tenants are rows: one query gives each
/// tenant with a remoteId and its figures; connections and the last write
/// live in each tenant's object and are `null` here (`GET
/// /admin/tenants/<t>` asks the object). On Durable Object SQLite (objects
/// are found by name, never enumerated) the names come from the tenant
/// index ([`list_indexed`]).
async fn list(env: &Env) -> Result<Response> {
    let db = match crate::storage::chosen_d1(env) {
        Ok(Some(db)) => db,
        Ok(None) => return list_indexed(env).await,
        Err(reason) => {
            log::error!("admin: listing tenants failed", reason = reason);
            return text(503, &reason);
        }
    };
    let rows = match crate::storage::d1::list_tenants(db).await {
        Ok(rows) => rows,
        Err(e) => {
            log::error!("admin: listing tenants failed", reason = e.message);
            return text(503, &e.message);
        }
    };
    let mut tenants = Vec::with_capacity(rows.len());
    for row in rows {
        let remote_id = crate::storage::d1::remote_id_from_hex(&row.hex)
            .map(|id| id.to_uuid_string())
            .unwrap_or_default();
        tenants.push(serde_json::json!({
            "tenant": row.tenant,
            "remoteId": remote_id,
            "bytesOnDisk": null,
            "logs": row.logs as u64,
            "entries": row.entries as u64,
            "bytes": row.bytes as u64,
            "lastWriteMs": null,
            "connections": null,
            "v4Stores": row.v4_stores as u64,
            "v4Entries": row.v4_entries as u64,
        }));
    }
    log::debug!("admin: list", tenants = tenants.len());
    json(200, &serde_json::json!({ "tenants": tenants }).to_string())
}

/// How many tenants' objects the DO SQLite list asks at once.
const LIST_CONCURRENCY: usize = 16;

/// `GET /admin/tenants` on Durable Object SQLite: the names from the
/// tenant index (`crate::tenant_index`), each tenant's figures from its
/// object (its `/stats` answer), by name; tenants whose object has no data
/// any more (no remoteId) are left out. Tenants whose object has not run
/// since the index was deployed are not in it.
async fn list_indexed(env: &Env) -> Result<Response> {
    let names = match crate::tenant_index::tenants(env).await {
        Ok(indexed) => indexed,
        Err(reason) => {
            log::error!("admin: listing tenants failed", reason = reason);
            return text(503, &reason);
        }
    };
    let mut tenants = Vec::with_capacity(names.len());
    for batch in names.chunks(LIST_CONCURRENCY) {
        let answers = futures_util::future::join_all(
            batch
                .iter()
                .map(|indexed| indexed_figures(env, &indexed.tenant)),
        )
        .await;
        for answer in answers {
            match answer {
                Ok(Some(row)) => tenants.push(row),
                Ok(None) => {}
                Err(reason) => {
                    log::error!("admin: listing tenants failed", reason = reason);
                    return text(503, &reason);
                }
            }
        }
    }
    tenants.sort_by(|a, b| a["tenant"].as_str().cmp(&b["tenant"].as_str()));
    log::debug!("admin: list", tenants = tenants.len());
    json(200, &serde_json::json!({ "tenants": tenants }).to_string())
}

/// One listed tenant in the native list's shape, from its object's `/stats`
/// answer; `None` when it has no data (no remoteId).
async fn indexed_figures(
    env: &Env,
    tenant: &str,
) -> std::result::Result<Option<serde_json::Value>, String> {
    let failed = |e: worker::Error| format!("tenant {tenant}: {e}");
    let mut response = call_object(env, tenant, "/stats", Method::Get, Headers::new())
        .await
        .map_err(failed)?;
    let body = response.text().await.map_err(failed)?;
    if response.status_code() != 200 {
        return Err(format!(
            "tenant {tenant}: {} {body}",
            response.status_code()
        ));
    }
    let stats: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("tenant {tenant}: {e}"))?;
    if stats["remoteId"].is_null() {
        return Ok(None);
    }
    Ok(Some(serde_json::json!({
        "tenant": tenant,
        "remoteId": stats["remoteId"],
        "bytesOnDisk": null,
        "logs": stats["logs"],
        "entries": stats["entries"],
        "bytes": stats["bytes"],
        "lastWriteMs": stats["lastWriteMs"],
        "connections": stats["connections"],
        "v4Stores": stats["v4Stores"],
        "v4Entries": stats["v4Entries"],
    })))
}

/// The variables a request depends on: the auth settings, and `SYNC_DEBUG`
/// and `SYNC_IDLE_SOCKET_TIMEOUT` checked here too so that a value the
/// object could not use is refused before any socket opens.
fn settings(env: &Env) -> std::result::Result<AuthConfig, String> {
    config::flag(env, config::DEBUG_VAR)?;
    config::idle_socket_timeout(env)?;
    config::max_connections_per_tenant(env)?;
    auth::from_env(env)
}

/// The original's answer to a refused request, logged (rate-limited). A
/// broken setting is also logged (the reason names the variable, never a
/// token) and answered `500`.
fn refuse(
    req: &Request,
    path: &str,
    refusal: Refusal,
    broken_setting: Option<&str>,
) -> Result<Response> {
    if let (Refusal::Misconfigured, Some(reason)) = (refusal, broken_setting) {
        log::error!("server misconfigured", reason = reason);
    }
    refusals::log(
        req.headers(),
        path,
        refusal.status_and_body().0,
        refusal.reason(),
    );
    let (status, body) = refusal.status_and_body();
    let response = text(status, body)?;
    if let Some(challenge) = refusal.www_authenticate() {
        response.headers().set("WWW-Authenticate", challenge)?;
    }
    Ok(response)
}

/// Hands the upgrade to the tenant's Durable Object. Only what the object
/// needs crosses over (never the credentials): the tenant, the subprotocol
/// its `101` must select and what the token allows, in headers only this
/// Worker sets.
async fn forward(
    env: &Env,
    tenant: &str,
    protocol: Option<&str>,
    grant: &Grant,
    version: Option<&str>,
) -> Result<Response> {
    let headers = Headers::new();
    headers.set("Upgrade", "websocket")?;
    if let Some(version) = version {
        headers.set(VERSION_HEADER, version)?;
    }
    if let Some(protocol) = protocol {
        headers.set(PROTOCOL_HEADER, protocol)?;
    }
    if !grant.is_full() || grant.issued_at_ms.is_some() {
        headers.set(GRANT_HEADER, &GrantHeader::encode(grant))?;
    }
    call_object(env, tenant, "/connect", Method::Get, headers).await
}

/// Sends `method path` to `tenant`'s object with `headers` (plus the
/// tenant's), or answers `502` when the object cannot be reached.
async fn call_object(
    env: &Env,
    tenant: &str,
    path: &str,
    method: Method,
    headers: Headers,
) -> Result<Response> {
    call_object_with(env, tenant, path, method, headers, None).await
}

/// [`call_object`] with a request body (a stream, handed on unread).
async fn call_object_with(
    env: &Env,
    tenant: &str,
    path: &str,
    method: Method,
    headers: Headers,
    body: Option<JsValue>,
) -> Result<Response> {
    let stub = env
        .durable_object(config::DO_BINDING)
        .and_then(|ns| ns.id_from_name(tenant)?.get_stub());
    let stub = match stub {
        Ok(stub) => stub,
        Err(err) => {
            log::error!(
                "durable object stub failed",
                tenant = tenant,
                error = err.to_string()
            );
            return text(502, "Sync durable object unavailable.");
        }
    };
    headers.set(TENANT_HEADER, tenant)?;
    let mut init = RequestInit::new();
    init.with_method(method)
        .with_headers(headers)
        .with_body(body);
    let req = Request::new_with_init(&format!("https://evsync.internal{path}"), &init)?;
    match stub.fetch_with_request(req).await {
        Ok(response) => Ok(response),
        Err(err) => {
            log::error!(
                "durable object request failed",
                tenant = tenant,
                error = err.to_string()
            );
            text(502, "Sync durable object unavailable.")
        }
    }
}
