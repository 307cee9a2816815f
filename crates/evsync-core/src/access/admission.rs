//! Whether an HTTP request may become a sync socket, decided once for every
//! adapter: the native server and the Cloudflare Worker both call [`admit`]
//! and only translate its answer into their response types, so that the two
//! cannot drift apart again (they once disagreed on a padded `Upgrade`
//! header).
//!
//! Checks, in this order, each one answering and stopping (README, "HTTP
//! surface"):
//! 1. the path is a sync endpoint, else `404 Not found`;
//! 2. it names a tenant, else `400 Tenant is required.`;
//! 3. the tenant is well formed, else `400 Invalid tenant format.`;
//! 4. the adapter could read its auth settings, else
//!    `500 Server misconfigured.` (fail closed: the Worker reads its
//!    variables per request; the native server refuses to start instead);
//! 5. the credentials open the tenant, else `401 Unauthorized` with
//!    `WWW-Authenticate: Bearer`;
//! 6. `Upgrade: websocket`, else `426 Expected WebSocket upgrade`.
//!
//! What follows (the tenant's storage: `503`; the Worker's Durable Object:
//! `502`) depends on the adapter and stays there.

use super::auth::{AuthConfig, AuthDecision, Credentials, DenyReason};
use super::grant::Grant;
use super::path::{PathError, parse_path};
use crate::time::Timestamp;

/// The sync protocol a path speaks: Effect v3's EventLogRemote at
/// `/event-log/<tenant>`, Effect v4's eventlog at `/v4/event-log/<tenant>`
/// (the two cannot share a path: a v3 server speaks first, a v4 client
/// chokes on it). Deliberately not `#[non_exhaustive]`: each adapter
/// matches on it, and a new protocol should fail their build until they
/// serve it, not fall into a wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Effect v3 `EventLogRemote` (msgpack over WebSocket).
    V3,
    /// Effect v4 `effect/eventlog` (Effect RPC in SchemaBinary), encrypted
    /// clients (`EventLogRemote.layerEncrypted`).
    V4,
    /// Effect v4 with plaintext entries (`EventLogRemote.layerUnencrypted`)
    /// at `/v4/unencrypted/event-log/<tenant>`: evsync relays them (stores
    /// shared by storeId, no server-side handlers). A separate path because
    /// nothing in the protocol tells the two modes apart.
    V4Unencrypted,
}

/// What [`admit`] looks at, as raw strings the adapter read from its
/// request (header values that are not valid UTF-8 count as absent).
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpRequest<'a> {
    /// The raw, still percent-encoded path.
    pub path: &'a str,
    /// The `Upgrade` header.
    pub upgrade: Option<&'a str>,
    /// Authorization header, `Sec-WebSocket-Protocol` values and query.
    pub credentials: Credentials<'a>,
}

/// A request that may be upgraded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission<'a> {
    /// Which protocol the socket will speak.
    pub protocol: Protocol,
    /// The tenant named by the path (validated).
    pub tenant: &'a str,
    /// The `sync-auth.<token>` subprotocol the `101` must select, if the
    /// client offered one (browsers drop a socket whose offered protocols
    /// were all ignored).
    pub subprotocol: Option<String>,
    /// What the connection may do (expiry on the Unix clock). The adapter
    /// still refuses it (`401`, [`DenyReason::Revoked`]) when
    /// [`Grant::is_revoked_by`] the tenant's stored revocation.
    pub grant: Grant,
}

/// Why a request is refused, each with the original worker's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Checks 1–3: the path names no (valid) tenant.
    Route(PathError),
    /// The adapter's auth settings are broken: refuse rather than open.
    Misconfigured,
    /// Wrong or missing credentials, and which.
    Unauthorized(DenyReason),
    /// Allowed, but not a WebSocket upgrade.
    UpgradeRequired,
}

impl Refusal {
    /// The HTTP status and plain-text body to answer with.
    pub fn status_and_body(self) -> (u16, &'static str) {
        match self {
            Refusal::Route(err) => err.status_and_body(),
            Refusal::Misconfigured => (500, "Server misconfigured."),
            Refusal::Unauthorized(_) => (401, "Unauthorized"),
            Refusal::UpgradeRequired => (426, "Expected WebSocket upgrade"),
        }
    }

    /// The `WWW-Authenticate` value the answer carries, if any.
    pub fn www_authenticate(self) -> Option<&'static str> {
        matches!(self, Refusal::Unauthorized(_)).then_some("Bearer")
    }

    /// Why, in a few words, for the operator's log (the answer's body stays
    /// the original's): distinguishes a missing token from a wrong one, and
    /// never contains either.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Route(PathError::NotFound) => "not a sync path",
            Refusal::Route(PathError::TenantRequired) => "no tenant",
            Refusal::Route(PathError::InvalidTenant) => "bad tenant",
            Refusal::Misconfigured => "server misconfigured",
            Refusal::Unauthorized(why) => why.as_str(),
            Refusal::UpgradeRequired => "not a websocket upgrade",
        }
    }
}

/// The tenant a refused request named, when it names a valid one (checks
/// 1–3 passed), for the refusal's log line.
pub fn refused_tenant(path: &str) -> Option<&str> {
    route(path).ok().map(|(_, tenant)| tenant)
}

/// Which protocol `path` speaks and the tenant it names (checks 1–3): the
/// v4 endpoint is the v3 one under `/v4`, with the same tenant rules.
pub fn route(path: &str) -> Result<(Protocol, &str), PathError> {
    let Some(rest) = path.strip_prefix("/v4") else {
        return parse_path(path).map(|tenant| (Protocol::V3, tenant));
    };
    if let Some(rest) = rest.strip_prefix("/unencrypted")
        && rest.starts_with("/event-log")
    {
        return parse_path(rest).map(|tenant| (Protocol::V4Unencrypted, tenant));
    }
    if rest.starts_with("/event-log") {
        return parse_path(rest).map(|tenant| (Protocol::V4, tenant));
    }
    Err(PathError::NotFound)
}

/// Decides `request` (see the module docs for the order of checks) at `now`
/// on the Unix clock (ms). `auth` is `None` when the adapter could not read
/// its auth settings.
pub fn admit<'a>(
    request: &HttpRequest<'a>,
    auth: Option<&AuthConfig>,
    now: Timestamp,
) -> Result<Admission<'a>, Refusal> {
    let (protocol, tenant) = route(request.path).map_err(Refusal::Route)?;
    let auth = auth.ok_or(Refusal::Misconfigured)?;
    let (subprotocol, grant) = match auth.authorize(tenant, &request.credentials, now) {
        AuthDecision::Allow { protocol, grant } => (protocol, grant),
        AuthDecision::Deny(why) => return Err(Refusal::Unauthorized(why)),
    };
    if !request.upgrade.is_some_and(is_websocket) {
        return Err(Refusal::UpgradeRequired);
    }
    Ok(Admission {
        protocol,
        tenant,
        subprotocol,
        grant,
    })
}

/// `websocket` in any ASCII case, ignoring surrounding spaces and tabs
/// (optional whitespace around a field value is not part of it, RFC 9110
/// §5.5; the Fetch API strips it before the Worker sees the value, hyper
/// may not).
fn is_websocket(upgrade: &str) -> bool {
    upgrade
        .trim_matches([' ', '\t'])
        .eq_ignore_ascii_case("websocket")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str) -> HttpRequest<'_> {
        HttpRequest {
            path,
            upgrade: Some("websocket"),
            credentials: Credentials::default(),
        }
    }

    fn with_token(token: &str) -> AuthConfig {
        AuthConfig::new(Some(token), None, false).unwrap()
    }

    #[test]
    fn admits_with_protocol_tenant_and_subprotocol() {
        let protocols = ["x, sync-auth.s3cret"];
        let req = HttpRequest {
            credentials: Credentials {
                protocols: &protocols,
                ..Credentials::default()
            },
            ..request("/event-log/acme/")
        };
        assert_eq!(
            admit(&req, Some(&with_token("s3cret")), Timestamp(0)),
            Ok(Admission {
                protocol: Protocol::V3,
                tenant: "acme",
                subprotocol: Some("sync-auth.s3cret".into()),
                grant: Grant::full(),
            })
        );
        assert_eq!(
            admit(
                &request("/event-log/acme"),
                Some(&AuthConfig::open()),
                Timestamp(0)
            ),
            Ok(Admission {
                protocol: Protocol::V3,
                tenant: "acme",
                subprotocol: None,
                grant: Grant::full(),
            })
        );
    }

    #[test]
    fn upgrade_header_variants() {
        let open = AuthConfig::open();
        for ok in [
            "websocket",
            "WebSocket",
            "WEBSOCKET",
            " websocket",
            "websocket\t ",
        ] {
            let req = HttpRequest {
                upgrade: Some(ok),
                ..request("/event-log/t")
            };
            assert!(admit(&req, Some(&open), Timestamp(0)).is_ok(), "{ok:?}");
        }
        for refused in [
            None,
            Some(""),
            Some("h2c"),
            Some("websocket, h2c"),
            Some("web socket"),
        ] {
            let req = HttpRequest {
                upgrade: refused,
                ..request("/event-log/t")
            };
            assert_eq!(
                admit(&req, Some(&open), Timestamp(0)),
                Err(Refusal::UpgradeRequired),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn checks_run_in_the_documented_order() {
        let locked = with_token("s3cret");
        // Everything wrong at once: each check must win over the later ones.
        let everything_wrong = |path| HttpRequest {
            upgrade: None,
            ..request(path)
        };
        let cases = [
            ("/nope", Refusal::Route(PathError::NotFound)),
            ("/event-log", Refusal::Route(PathError::TenantRequired)),
            ("/event-log/.bad", Refusal::Route(PathError::InvalidTenant)),
        ];
        for (path, refusal) in cases {
            assert_eq!(
                admit(&everything_wrong(path), None, Timestamp(0)),
                Err(refusal),
                "{path}"
            );
            assert_eq!(
                admit(&everything_wrong(path), Some(&locked), Timestamp(0)),
                Err(refusal)
            );
        }
        // A valid tenant: broken settings before credentials before upgrade.
        let req = everything_wrong("/event-log/t");
        assert_eq!(admit(&req, None, Timestamp(0)), Err(Refusal::Misconfigured));
        assert_eq!(
            admit(&req, Some(&locked), Timestamp(0)),
            Err(Refusal::Unauthorized(DenyReason::Missing))
        );
        assert_eq!(
            admit(&req, Some(&AuthConfig::open()), Timestamp(0)),
            Err(Refusal::UpgradeRequired)
        );
    }

    #[test]
    fn refusals_answer_like_the_original() {
        let answers = [
            (Refusal::Route(PathError::NotFound), 404, "Not found", None),
            (
                Refusal::Route(PathError::TenantRequired),
                400,
                "Tenant is required.",
                None,
            ),
            (
                Refusal::Route(PathError::InvalidTenant),
                400,
                "Invalid tenant format.",
                None,
            ),
            (Refusal::Misconfigured, 500, "Server misconfigured.", None),
            (
                Refusal::Unauthorized(DenyReason::Wrong),
                401,
                "Unauthorized",
                Some("Bearer"),
            ),
            (
                Refusal::UpgradeRequired,
                426,
                "Expected WebSocket upgrade",
                None,
            ),
        ];
        for (refusal, status, body, www) in answers {
            assert_eq!(refusal.status_and_body(), (status, body));
            assert_eq!(refusal.www_authenticate(), www);
        }
    }

    #[test]
    fn refusals_say_why_without_credentials() {
        let locked = with_token("s3cret");
        let wrong = HttpRequest {
            credentials: Credentials {
                authorization: Some("Bearer guess"),
                ..Credentials::default()
            },
            ..request("/event-log/t")
        };
        let refusal = admit(&wrong, Some(&locked), Timestamp(0)).unwrap_err();
        assert_eq!(refusal.reason(), "wrong token");
        let missing = admit(&request("/event-log/t"), Some(&locked), Timestamp(0)).unwrap_err();
        assert_eq!(missing.reason(), "missing token");
        assert_eq!(
            Refusal::Route(PathError::InvalidTenant).reason(),
            "bad tenant"
        );
        assert_eq!(refused_tenant("/event-log/t/"), Some("t"));
        assert_eq!(refused_tenant("/event-log/.bad"), None);
    }

    #[test]
    fn only_the_v3_path_is_routed_today() {
        assert_eq!(route("/event-log/t"), Ok((Protocol::V3, "t")));
        assert_eq!(route("/v4/event-log/t"), Ok((Protocol::V4, "t")));
        assert_eq!(route("/v4/event-log/t/"), Ok((Protocol::V4, "t")));
        assert_eq!(route("/v4/event-log"), Err(PathError::TenantRequired));
        assert_eq!(route("/v4/event-log/.x"), Err(PathError::InvalidTenant));
        assert_eq!(route("/v4"), Err(PathError::NotFound));
        assert_eq!(route("/v4/x/event-log/t"), Err(PathError::NotFound));
        assert_eq!(route("/v5/event-log/t"), Err(PathError::NotFound));
        assert_eq!(
            route("/v4/unencrypted/event-log/t"),
            Ok((Protocol::V4Unencrypted, "t"))
        );
        assert_eq!(
            route("/v4/unencrypted/event-log"),
            Err(PathError::TenantRequired)
        );
        assert_eq!(route("/v4/unencrypted"), Err(PathError::NotFound));
    }
}
