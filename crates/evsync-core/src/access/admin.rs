//! Who may use the admin API (`/admin/…`) and which operation a request
//! names: one decision for the native server and the Worker, like
//! [`super::admit`] for sync sockets.
//!
//! The admin API is off unless `SYNC_ADMIN_TOKEN` is set; then every admin
//! request must carry `Authorization: Bearer <admin token>` (never a query
//! parameter: URLs end up in logs). The admin token is separate from tenant
//! tokens, compared in constant time and never logged.

use super::path::is_valid_tenant;
use std::fmt;
use subtle::ConstantTimeEq;

/// The shortest admin token accepted, in bytes: it opens every tenant.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 16;

/// `SYNC_ADMIN_TOKEN`. `Debug` redacts it.
#[derive(Clone)]
pub struct AdminToken(String);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// The token from the variable's raw value: unset or empty is `None`
    /// (admin API off); shorter than [`MIN_ADMIN_TOKEN_BYTES`] is an error.
    pub fn new(raw: Option<&str>) -> Result<Option<Self>, String> {
        match raw.filter(|t| !t.is_empty()) {
            None => Ok(None),
            Some(t) if t.len() < MIN_ADMIN_TOKEN_BYTES => Err(format!(
                "must be at least {MIN_ADMIN_TOKEN_BYTES} bytes (got {}); generate one with `openssl rand -base64 32`",
                t.len()
            )),
            Some(t) => Ok(Some(AdminToken(t.to_owned()))),
        }
    }

    /// The token itself, for a client that sends it (the CLI).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// An admin operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminRoute<'a> {
    /// `GET /admin/tenants`: every tenant with data and its figures.
    List,
    /// `GET /admin/tenants/<t>` (also `…/<t>/stats`): what the tenant
    /// holds and how many sockets it has open.
    Stats { tenant: &'a str },
    /// `DELETE /admin/tenants/<t>`: close the tenant's sockets and delete
    /// its data; the next connection starts a new tenant (new remoteId).
    Delete { tenant: &'a str },
    /// `GET /admin/tenants/<t>/export`: the tenant in the export format
    /// ([`crate::export`]), streamed.
    Export { tenant: &'a str },
    /// `POST /admin/tenants/<t>/import` (body: an export; `?replace=true`
    /// to replace a tenant that has data).
    Import { tenant: &'a str },
    /// `POST /admin/tenants/<t>/revoke`: close every socket of the tenant
    /// and refuse its signed tokens minted before now.
    Revoke { tenant: &'a str },
}

/// Why an admin request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminRefusal {
    /// No such admin path.
    NotFound,
    /// A known path with another method.
    MethodNotAllowed { allow: &'static str },
    /// The tenant in the path is not a valid tenant name.
    InvalidTenant,
    /// `SYNC_ADMIN_TOKEN` is not set: the admin API is off.
    Off,
    /// No `Authorization: Bearer`.
    MissingToken,
    /// A Bearer token that is not the admin token.
    WrongToken,
}

impl AdminRefusal {
    /// The HTTP status and plain-text body to answer with.
    pub fn status_and_body(self) -> (u16, &'static str) {
        match self {
            AdminRefusal::NotFound => (404, "Not found"),
            AdminRefusal::MethodNotAllowed { .. } => (405, "Method not allowed"),
            AdminRefusal::InvalidTenant => (400, "Invalid tenant format."),
            AdminRefusal::Off => (403, "Admin API is off: set SYNC_ADMIN_TOKEN."),
            AdminRefusal::MissingToken | AdminRefusal::WrongToken => (401, "Unauthorized"),
        }
    }

    /// Why, for the operator's log (never the token).
    pub fn reason(self) -> &'static str {
        match self {
            AdminRefusal::NotFound => "not an admin path",
            AdminRefusal::MethodNotAllowed { .. } => "method not allowed",
            AdminRefusal::InvalidTenant => "bad tenant",
            AdminRefusal::Off => "admin API off",
            AdminRefusal::MissingToken => "missing admin token",
            AdminRefusal::WrongToken => "wrong admin token",
        }
    }
}

/// True when `path` belongs to the admin API (the adapter sends it here
/// rather than to the sync endpoint's checks).
pub fn is_admin_path(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/")
}

/// Checks the admin credentials of a request to an operator page (the
/// dashboard): `Authorization: Bearer <admin token>`, or HTTP Basic with
/// any user name and the admin token as password, which a browser asks
/// for once and then sends with every request of the page, `EventSource`
/// streams included. `token` is `None` when no admin token is set: the
/// page is then open only to a loopback listener (`loopback`), else
/// [`AdminRefusal::Off`].
pub fn admit_operator(
    authorization: Option<&str>,
    token: Option<&AdminToken>,
    loopback: bool,
) -> Result<(), AdminRefusal> {
    let Some(token) = token else {
        return if loopback {
            Ok(())
        } else {
            Err(AdminRefusal::Off)
        };
    };
    let authorization = authorization.ok_or(AdminRefusal::MissingToken)?;
    let offered = if let Some(bearer) = authorization.strip_prefix("Bearer ") {
        bearer.as_bytes().to_vec()
    } else if let Some(basic) = authorization.strip_prefix("Basic ") {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .map_err(|_| AdminRefusal::WrongToken)?;
        let colon = decoded.iter().position(|&b| b == b':');
        let password = colon.map_or(&decoded[..0], |i| &decoded[i + 1..]);
        password.to_vec()
    } else {
        return Err(AdminRefusal::WrongToken);
    };
    if bool::from(offered.ct_eq(token.0.as_bytes())) {
        Ok(())
    } else {
        Err(AdminRefusal::WrongToken)
    }
}

/// Decides an admin request: the route first (so that a typo is a 404
/// whatever the token), then the token.
pub fn admit_admin<'a>(
    method: &str,
    path: &'a str,
    authorization: Option<&str>,
    token: Option<&AdminToken>,
) -> Result<AdminRoute<'a>, AdminRefusal> {
    admit_admin_on(method, path, authorization, token, false)
}

/// [`admit_admin`] on a listener that may be loopback-only: without an
/// admin token the admin API is then open to this machine (as the
/// dashboard is, [`admit_operator`]), and off elsewhere. With a token the
/// token is needed everywhere.
pub fn admit_admin_on<'a>(
    method: &str,
    path: &'a str,
    authorization: Option<&str>,
    token: Option<&AdminToken>,
    loopback: bool,
) -> Result<AdminRoute<'a>, AdminRefusal> {
    let route = admin_route(method, path)?;
    let Some(token) = token else {
        return if loopback {
            Ok(route)
        } else {
            Err(AdminRefusal::Off)
        };
    };
    let offered = authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AdminRefusal::MissingToken)?;
    if bool::from(offered.as_bytes().ct_eq(token.0.as_bytes())) {
        Ok(route)
    } else {
        Err(AdminRefusal::WrongToken)
    }
}

fn admin_route<'a>(method: &str, path: &'a str) -> Result<AdminRoute<'a>, AdminRefusal> {
    if path == "/admin/tenants" || path == "/admin/tenants/" {
        return only(method, "GET", AdminRoute::List);
    }
    let rest = path
        .strip_prefix("/admin/tenants/")
        .ok_or(AdminRefusal::NotFound)?;
    let (tenant, action) = rest.split_once('/').unwrap_or((rest, ""));
    if !matches!(action, "" | "stats" | "export" | "import" | "revoke") {
        return Err(AdminRefusal::NotFound);
    }
    if !is_valid_tenant(tenant) {
        return Err(AdminRefusal::InvalidTenant);
    }
    match action {
        "" => match method {
            "GET" => Ok(AdminRoute::Stats { tenant }),
            "DELETE" => Ok(AdminRoute::Delete { tenant }),
            _ => Err(AdminRefusal::MethodNotAllowed {
                allow: "GET, DELETE",
            }),
        },
        "stats" => only(method, "GET", AdminRoute::Stats { tenant }),
        "export" => only(method, "GET", AdminRoute::Export { tenant }),
        "import" => only(method, "POST", AdminRoute::Import { tenant }),
        _ => only(method, "POST", AdminRoute::Revoke { tenant }),
    }
}

fn only<'a>(
    method: &str,
    allow: &'static str,
    route: AdminRoute<'a>,
) -> Result<AdminRoute<'a>, AdminRefusal> {
    if method == allow {
        Ok(route)
    } else {
        Err(AdminRefusal::MethodNotAllowed { allow })
    }
}

/// Whether an admin request's query asks to replace a tenant that has data
/// (`replace=true` or `replace=1`), for [`AdminRoute::Import`].
pub fn wants_replace(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "replace" && matches!(v.as_ref(), "true" | "1"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> AdminToken {
        AdminToken::new(Some("admin-token-0123456789"))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn revoke_needs_post_a_valid_tenant_and_the_admin_token() {
        let t = token();
        let ok = admit_admin(
            "POST",
            "/admin/tenants/acme/revoke",
            Some("Bearer admin-token-0123456789"),
            Some(&t),
        );
        assert_eq!(ok, Ok(AdminRoute::Revoke { tenant: "acme" }));
        let cases = [
            ("POST", "/admin/tenants/acme/nope", AdminRefusal::NotFound),
            (
                "POST",
                "/admin/tenants/acme",
                AdminRefusal::MethodNotAllowed {
                    allow: "GET, DELETE",
                },
            ),
            (
                "POST",
                "/admin/tenants/.x/revoke",
                AdminRefusal::InvalidTenant,
            ),
            (
                "GET",
                "/admin/tenants/acme/revoke",
                AdminRefusal::MethodNotAllowed { allow: "POST" },
            ),
        ];
        for (method, path, refusal) in cases {
            let auth = Some("Bearer admin-token-0123456789");
            assert_eq!(admit_admin(method, path, auth, Some(&t)), Err(refusal));
        }
        let path = "/admin/tenants/acme/revoke";
        assert_eq!(
            admit_admin("POST", path, None, Some(&t)),
            Err(AdminRefusal::MissingToken)
        );
        assert_eq!(
            admit_admin(
                "POST",
                path,
                Some("Bearer admin-token-012345678X"),
                Some(&t)
            ),
            Err(AdminRefusal::WrongToken)
        );
        assert_eq!(
            admit_admin("POST", path, Some("Bearer x"), None),
            Err(AdminRefusal::Off)
        );
        assert!(is_admin_path(path) && !is_admin_path("/administrator"));
    }

    #[test]
    fn tenant_operations_route_by_method_and_path() {
        let t = token();
        let auth = Some("Bearer admin-token-0123456789");
        let routes = [
            ("GET", "/admin/tenants", AdminRoute::List),
            ("GET", "/admin/tenants/", AdminRoute::List),
            (
                "GET",
                "/admin/tenants/acme",
                AdminRoute::Stats { tenant: "acme" },
            ),
            (
                "DELETE",
                "/admin/tenants/acme",
                AdminRoute::Delete { tenant: "acme" },
            ),
            (
                "GET",
                "/admin/tenants/acme/export",
                AdminRoute::Export { tenant: "acme" },
            ),
            (
                "POST",
                "/admin/tenants/acme/import",
                AdminRoute::Import { tenant: "acme" },
            ),
        ];
        for (method, path, route) in routes {
            assert_eq!(
                admit_admin(method, path, auth, Some(&t)),
                Ok(route),
                "{method} {path}"
            );
            assert_eq!(
                admit_admin(method, path, None, Some(&t)),
                Err(AdminRefusal::MissingToken),
                "{method} {path} without the token"
            );
        }
        let refused = [
            (
                "POST",
                "/admin/tenants",
                AdminRefusal::MethodNotAllowed { allow: "GET" },
            ),
            (
                "DELETE",
                "/admin/tenants/acme/export",
                AdminRefusal::MethodNotAllowed { allow: "GET" },
            ),
            (
                "GET",
                "/admin/tenants/acme/import",
                AdminRefusal::MethodNotAllowed { allow: "POST" },
            ),
            ("DELETE", "/admin/tenants/.x", AdminRefusal::InvalidTenant),
            ("GET", "/admin/tenants/acme/exports", AdminRefusal::NotFound),
        ];
        for (method, path, refusal) in refused {
            assert_eq!(
                admit_admin(method, path, auth, Some(&t)),
                Err(refusal),
                "{method} {path}"
            );
        }
        assert!(wants_replace(Some("replace=true")) && wants_replace(Some("a=b&replace=1")));
        assert!(!wants_replace(None) && !wants_replace(Some("replace=no")));
    }

    #[test]
    fn stats_needs_get_a_valid_tenant_and_the_admin_token() {
        let t = token();
        let auth = Some("Bearer admin-token-0123456789");
        let path = "/admin/tenants/acme/stats";
        assert_eq!(
            admit_admin("GET", path, auth, Some(&t)),
            Ok(AdminRoute::Stats { tenant: "acme" })
        );
        let cases = [
            ("GET", "/admin/tenants/acme/stats/x", AdminRefusal::NotFound),
            (
                "GET",
                "/admin/tenants/.x/stats",
                AdminRefusal::InvalidTenant,
            ),
            (
                "POST",
                path,
                AdminRefusal::MethodNotAllowed { allow: "GET" },
            ),
        ];
        for (method, path, refusal) in cases {
            assert_eq!(admit_admin(method, path, auth, Some(&t)), Err(refusal));
        }
        assert_eq!(
            admit_admin("GET", path, None, Some(&t)),
            Err(AdminRefusal::MissingToken)
        );
        assert_eq!(
            admit_admin("GET", path, Some("Bearer admin-token-012345678X"), Some(&t)),
            Err(AdminRefusal::WrongToken)
        );
        assert_eq!(admit_admin("GET", path, auth, None), Err(AdminRefusal::Off));
        assert_eq!(
            admit_admin("POST", "/admin/tenants/.x/stats", None, None),
            Err(AdminRefusal::InvalidTenant),
            "the route is checked before the token"
        );
    }

    #[test]
    fn without_a_token_the_admin_api_is_open_only_on_loopback() {
        let path = "/admin/tenants/acme/revoke";
        assert_eq!(
            admit_admin_on("POST", path, None, None, true),
            Ok(AdminRoute::Revoke { tenant: "acme" })
        );
        assert_eq!(
            admit_admin_on("POST", path, None, None, false),
            Err(AdminRefusal::Off)
        );
        let t = token();
        assert_eq!(
            admit_admin_on("POST", path, None, Some(&t), true),
            Err(AdminRefusal::MissingToken),
            "a token set is needed on loopback too"
        );
    }

    #[test]
    fn operator_pages_take_bearer_or_basic() {
        use base64::Engine as _;
        let t = token();
        let basic = |user_pass: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(user_pass)
            )
        };
        let ok = basic("anyone:admin-token-0123456789");
        assert_eq!(admit_operator(Some(&ok), Some(&t), false), Ok(()));
        let bearer = "Bearer admin-token-0123456789";
        assert_eq!(admit_operator(Some(bearer), Some(&t), false), Ok(()));
        for wrong in [
            basic("admin-token-0123456789:"),
            basic("no-colon"),
            "Basic !!!".to_string(),
            "Digest x".to_string(),
        ] {
            assert_eq!(
                admit_operator(Some(&wrong), Some(&t), true),
                Err(AdminRefusal::WrongToken),
                "{wrong}"
            );
        }
        assert_eq!(
            admit_operator(None, Some(&t), true),
            Err(AdminRefusal::MissingToken)
        );
        assert_eq!(admit_operator(None, None, true), Ok(()), "loopback");
        assert_eq!(admit_operator(None, None, false), Err(AdminRefusal::Off));
    }

    #[test]
    fn admin_tokens_are_long_and_redacted() {
        assert!(AdminToken::new(Some("")).unwrap().is_none());
        assert!(AdminToken::new(None).unwrap().is_none());
        let err = AdminToken::new(Some("short")).unwrap_err();
        assert!(err.contains("at least 16") && !err.contains("short"));
        assert!(!format!("{:?}", token()).contains("0123"));
    }
}
