//! What the Worker and its Durable Object share at the HTTP level: the
//! headers the Worker sets when it forwards an upgrade, and plain-text
//! answers. Kept apart so that `routes` (the Worker) and `durable_object`
//! (the object) both depend on it instead of on each other.

use worker::{Headers, Response, Result};

/// Request header (set by the Worker only) naming the tenant.
pub const TENANT_HEADER: &str = "x-evsync-tenant";

/// Request header (set by the Worker only) naming the `sync-auth.<token>`
/// subprotocol the `101` must select.
pub const PROTOCOL_HEADER: &str = "x-evsync-protocol";

/// A plain-text response, with the content type the original's
/// `new Response(string)` carries.
pub fn text(status: u16, body: &str) -> Result<Response> {
    let headers = Headers::new();
    headers.set("Content-Type", "text/plain;charset=UTF-8")?;
    Ok(Response::ok(body)?
        .with_status(status)
        .with_headers(headers))
}
