//! The Worker's HTTP surface, kept exactly as the original's: the same
//! paths, checks in the same order, the same statuses and bodies, so that
//! clients and their configs switch over unchanged.
//!
//! Order of checks (each one answers and stops):
//! 1. path `^/event-log(/<tenant>)?/?$`, else `404 Not found`;
//! 2. a tenant, else `400 Tenant is required.`;
//! 3. tenant `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`, else
//!    `400 Invalid tenant format.`;
//! 4. auth, else `401 Unauthorized` + `WWW-Authenticate: Bearer`;
//! 5. `Upgrade: websocket` (any case), else `426 Expected WebSocket upgrade`;
//! 6. the tenant's Durable Object (`idFromName(tenant)` on `SYNC_DO`), else
//!    `502 Sync durable object unavailable.`; it answers `503` with the
//!    reason when its storage cannot start, or `101`.

use crate::auth;
use crate::config;
use crate::durable_object::{PROTOCOL_HEADER, TENANT_HEADER};
use crate::selftest;
use evsync_core::access::{AuthDecision, Credentials, parse_path};
use worker::{Env, Headers, Method, Request, RequestInit, Response, Result};

/// A plain-text response, with the content type the original's
/// `new Response(string)` carries.
pub fn text(status: u16, body: &str) -> Result<Response> {
    let headers = Headers::new();
    headers.set("Content-Type", "text/plain;charset=UTF-8")?;
    Ok(Response::ok(body)?
        .with_status(status)
        .with_headers(headers))
}

/// Serves one request to the Worker.
pub async fn handle(req: Request, env: Env) -> Result<Response> {
    let url = req.url()?;
    if let Some(backend) = url.path().strip_prefix(selftest::ROUTE_PREFIX)
        && config::flag(&env, selftest::ENABLE_VAR)
    {
        return selftest::route(backend, &env).await;
    }
    let tenant = match parse_path(url.path()) {
        Ok(tenant) => tenant.to_string(),
        Err(err) => {
            let (status, body) = err.status_and_body();
            return text(status, body);
        }
    };
    let auth = match auth::from_env(&env) {
        Ok(auth) => auth,
        Err(reason) => {
            // Fail closed on a broken token map; the reason names no token.
            worker::console_error!("evsync: {reason}");
            return text(500, "Server misconfigured.");
        }
    };
    let headers = req.headers();
    let authorization = headers.get("Authorization")?;
    let protocols = headers.get("Sec-WebSocket-Protocol")?;
    let protocols: Vec<&str> = protocols.as_deref().into_iter().collect();
    let credentials = Credentials {
        authorization: authorization.as_deref(),
        protocols: &protocols,
        query: url.query(),
    };
    let protocol = match auth.authorize(&tenant, &credentials) {
        AuthDecision::Allow { protocol } => protocol,
        AuthDecision::Deny => {
            let response = text(401, "Unauthorized")?;
            response.headers().set("WWW-Authenticate", "Bearer")?;
            return Ok(response);
        }
    };
    let upgrade = headers.get("Upgrade")?;
    if !upgrade.is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket")) {
        return text(426, "Expected WebSocket upgrade");
    }
    forward(&env, &tenant, protocol.as_deref()).await
}

/// Hands the upgrade to the tenant's Durable Object. Only what the object
/// needs crosses over (never the credentials): the tenant and the
/// subprotocol its `101` must select, in headers only this Worker sets.
async fn forward(env: &Env, tenant: &str, protocol: Option<&str>) -> Result<Response> {
    let stub = env
        .durable_object(config::DO_BINDING)
        .and_then(|ns| ns.id_from_name(tenant)?.get_stub());
    let stub = match stub {
        Ok(stub) => stub,
        Err(err) => {
            worker::console_error!("evsync: durable object stub for {tenant}: {err}");
            return text(502, "Sync durable object unavailable.");
        }
    };
    let headers = Headers::new();
    headers.set("Upgrade", "websocket")?;
    headers.set(TENANT_HEADER, tenant)?;
    if let Some(protocol) = protocol {
        headers.set(PROTOCOL_HEADER, protocol)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let req = Request::new_with_init("https://evsync.internal/connect", &init)?;
    match stub.fetch_with_request(req).await {
        Ok(response) => Ok(response),
        Err(err) => {
            worker::console_error!("evsync: durable object for {tenant} failed: {err}");
            text(502, "Sync durable object unavailable.")
        }
    }
}
