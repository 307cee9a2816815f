//! What the Worker and its Durable Object share at the HTTP level: the
//! headers the Worker sets when it forwards an upgrade, and plain-text
//! answers. Kept apart so that `routes` (the Worker) and `durable_object`
//! (the object) both depend on it instead of on each other.

use evsync_core::access::Grant;
use evsync_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use worker::{Headers, Response, Result};

/// Request header (set by the Worker only) naming the tenant.
pub const TENANT_HEADER: &str = "x-evsync-tenant";

/// Request header (set by the Worker only) naming the `sync-auth.<token>`
/// subprotocol the `101` must select.
pub const PROTOCOL_HEADER: &str = "x-evsync-protocol";

/// Request header (set by the Worker only): `v4` when the socket speaks
/// Effect v4's protocol (`/v4/event-log/…`), `v4u` for its unencrypted
/// endpoint (`/v4/unencrypted/event-log/…`); absent for v3.
pub const VERSION_HEADER: &str = "x-evsync-version";

/// Response header (set by the object only, on a refusal) naming why, for
/// the Worker's refusal log line.
pub const REFUSAL_HEADER: &str = "x-evsync-refusal";

/// Request header (set by the Worker only) carrying what the socket's
/// token allows, as [`GrantHeader`] JSON.
pub const GRANT_HEADER: &str = "x-evsync-grant";

/// A [`Grant`] as the Worker hands it to the object (the object checks
/// `iat` against the tenant's revocation, which lives in its storage).
#[derive(Serialize, Deserialize, Default)]
pub struct GrantHeader {
    #[serde(default)]
    ro: bool,
    #[serde(default)]
    pk: Option<String>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    iat: Option<u64>,
}

impl GrantHeader {
    /// The header value for `grant`.
    pub fn encode(grant: &Grant) -> String {
        let header = GrantHeader {
            ro: grant.read_only,
            pk: grant.public_key.clone(),
            exp: grant.expires_at.map(|at| at.0),
            iat: grant.issued_at_ms,
        };
        serde_json::to_string(&header).unwrap_or_else(|_| "{}".into())
    }

    /// The grant in a header value; a missing header is a full grant (a
    /// request only this Worker makes), an unreadable one is refused.
    pub fn decode(value: Option<&str>) -> std::result::Result<Grant, String> {
        let Some(value) = value else {
            return Ok(Grant::full());
        };
        let header: GrantHeader =
            serde_json::from_str(value).map_err(|e| format!("bad {GRANT_HEADER}: {e}"))?;
        Ok(Grant {
            read_only: header.ro,
            public_key: header.pk,
            expires_at: header.exp.map(Timestamp),
            issued_at_ms: header.iat,
        })
    }
}

/// A JSON response.
pub fn json(status: u16, body: &str) -> Result<Response> {
    with_type(status, body, "application/json")
}

/// A plain-text response, with the content type the original's
/// `new Response(string)` carries.
pub fn text(status: u16, body: &str) -> Result<Response> {
    with_type(status, body, "text/plain;charset=UTF-8")
}

fn with_type(status: u16, body: &str, content_type: &str) -> Result<Response> {
    let headers = Headers::new();
    headers.set("Content-Type", content_type)?;
    Ok(Response::ok(body)?
        .with_status(status)
        .with_headers(headers))
}
