//! Who may open a tenant's socket: the original worker's token rules.
//!
//! Expected token for a tenant: `SYNC_AUTH_TOKENS[tenant]` ??
//! `SYNC_AUTH_TOKENS["*"]` ?? `SYNC_AUTH_TOKEN`; none means the tenant is
//! open. Accepted credentials, any one of: `Authorization: Bearer <t>`, the
//! first `sync-auth.<t>` entry of `Sec-WebSocket-Protocol`, and `?token=<t>`
//! when `SYNC_ALLOW_QUERY_TOKEN` allows it. Tokens are compared in constant
//! time and never logged or printed (`Debug` redacts them).
//!
//! Pure logic over header strings, shared by the native server and the
//! Cloudflare Worker so that both enforce exactly the same rules.

use super::path::is_valid_tenant;
use std::collections::BTreeMap;
use std::fmt;
use subtle::ConstantTimeEq;

/// The subprotocol prefix that carries a token (browsers cannot set
/// headers on a WebSocket, but they can offer subprotocols).
pub const PROTOCOL_PREFIX: &str = "sync-auth.";

/// The auth settings of a server.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// SYNC_AUTH_TOKEN: the token of every tenant without its own.
    default_token: Option<String>,
    /// SYNC_AUTH_TOKENS: tenant (or `*`) → token.
    tenant_tokens: BTreeMap<String, String>,
    /// SYNC_ALLOW_QUERY_TOKEN: accept `?token=`.
    allow_query_token: bool,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// The credentials a request offers, as raw header and query strings.
#[derive(Clone, Copy, Debug, Default)]
pub struct Credentials<'a> {
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// Every `Sec-WebSocket-Protocol` header value (each a comma-separated
    /// list), in order.
    pub protocols: &'a [&'a str],
    /// The raw query string (without `?`).
    pub query: Option<&'a str>,
}

/// What [`AuthConfig::authorize`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthDecision {
    /// Let the request through. `protocol` is the first `sync-auth.<token>`
    /// subprotocol the client offered, if any; the `101` must select it or
    /// browsers (and Node's `ws`) drop the socket.
    Allow { protocol: Option<String> },
    /// `401 Unauthorized`, with why (for the operator's log; the answer
    /// itself never says which).
    Deny(DenyReason),
}

/// Why credentials were refused: enough for an operator to tell a replica
/// that sends nothing from one that sends a stale token, never the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// No credential at all: no `Authorization: Bearer`, no `sync-auth.`
    /// subprotocol (and no `?token=`, or one that is not accepted).
    Missing,
    /// A `?token=` was offered but `SYNC_ALLOW_QUERY_TOKEN` is off, and
    /// nothing else was (the agent SDK's `authToken` option does this).
    QueryTokenNotAllowed,
    /// At least one credential was offered and none matched.
    Wrong,
}

impl DenyReason {
    /// A short phrase for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::Missing => "missing token",
            DenyReason::QueryTokenNotAllowed => {
                "token in ?token= but SYNC_ALLOW_QUERY_TOKEN is off"
            }
            DenyReason::Wrong => "wrong token",
        }
    }
}

impl AuthConfig {
    /// No token anywhere: every tenant is open.
    pub fn open() -> Self {
        AuthConfig::default()
    }

    /// Builds the settings from the raw values of the three variables.
    ///
    /// An empty `SYNC_AUTH_TOKEN` or `SYNC_AUTH_TOKENS` counts as unset, as
    /// in the original. Unlike the original, which silently ignored a
    /// `SYNC_AUTH_TOKENS` it could not parse (leaving tenants open that the
    /// operator meant to protect), a value that is not a JSON object of
    /// non-empty strings keyed by tenant names or `*` is an error.
    pub fn new(
        default_token: Option<&str>,
        tenant_tokens_json: Option<&str>,
        allow_query_token: bool,
    ) -> Result<Self, String> {
        let default_token = default_token.filter(|t| !t.is_empty()).map(str::to_owned);
        let tenant_tokens = match tenant_tokens_json.filter(|raw| !raw.trim().is_empty()) {
            None => BTreeMap::new(),
            Some(raw) => parse_tenant_tokens(raw)?,
        };
        Ok(AuthConfig {
            default_token,
            tenant_tokens,
            allow_query_token,
        })
    }

    /// True when at least one tenant needs a token.
    pub fn is_enabled(&self) -> bool {
        self.default_token.is_some() || !self.tenant_tokens.is_empty()
    }

    /// Whether `?token=` is accepted.
    pub fn allows_query_token(&self) -> bool {
        self.allow_query_token
    }

    /// A description without any token, for the startup line.
    pub fn summary(&self) -> String {
        if !self.is_enabled() {
            return "off (every tenant is open)".into();
        }
        let mut parts = Vec::new();
        let named = self.tenant_tokens.keys().filter(|k| *k != "*").count();
        if named > 0 {
            parts.push(format!("{named} tenant token(s)"));
        }
        if self.tenant_tokens.contains_key("*") {
            parts.push("a \"*\" token".into());
        }
        if self.default_token.is_some() {
            parts.push("a shared token".into());
        }
        let mut out = format!("on ({})", parts.join(", "));
        if !self.tenant_tokens.contains_key("*") && self.default_token.is_none() {
            out.push_str("; tenants without a token are open");
        }
        if self.allow_query_token {
            out.push_str("; ?token= accepted");
        }
        out
    }

    /// The token `tenant` must present, if any.
    pub fn expected_token(&self, tenant: &str) -> Option<&str> {
        self.tenant_tokens
            .get(tenant)
            .or_else(|| self.tenant_tokens.get("*"))
            .or(self.default_token.as_ref())
            .map(String::as_str)
    }

    /// Checks a request for `tenant` by the credentials it offers.
    pub fn authorize(&self, tenant: &str, credentials: &Credentials<'_>) -> AuthDecision {
        // An allowed request that offered a `sync-auth.` subprotocol always
        // gets it selected, even when the tenant is open or another
        // credential matched: a WebSocket client (browsers, Node's `ws`)
        // drops a socket whose offered protocols were all ignored. The
        // original echoed it only when it carried the accepted token.
        let Some(expected) = self.expected_token(tenant) else {
            return AuthDecision::Allow {
                protocol: auth_protocol(credentials.protocols),
            };
        };
        let bearer = credentials
            .authorization
            .and_then(|v| v.strip_prefix("Bearer "));
        let protocol = auth_protocol(credentials.protocols);
        let offered_query = credentials.query.and_then(query_token);
        let query_token = offered_query.as_ref().filter(|_| self.allow_query_token);
        // Evaluate every credential (no short cut), each in constant time.
        let bearer_ok = bearer.is_some_and(|t| same(t, expected));
        let protocol_ok = protocol
            .as_deref()
            .is_some_and(|p| same(&p[PROTOCOL_PREFIX.len()..], expected));
        let query_ok = query_token.is_some_and(|t| same(t, expected));
        if bearer_ok | protocol_ok | query_ok {
            return AuthDecision::Allow { protocol };
        }
        // Only whether something was offered decides the reason (the
        // comparisons above already ran in constant time); an Authorization
        // header of another scheme counts as offered, and wrong.
        let offered =
            credentials.authorization.is_some() || protocol.is_some() || query_token.is_some();
        let reason = if offered {
            DenyReason::Wrong
        } else if offered_query.is_some() {
            DenyReason::QueryTokenNotAllowed
        } else {
            DenyReason::Missing
        };
        AuthDecision::Deny(reason)
    }
}

/// Constant-time equality (the length still shows, as with any compare).
fn same(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// The first `sync-auth.…` entry of the `Sec-WebSocket-Protocol` list
/// (all header lines, comma-separated, entries trimmed, empty ones
/// skipped), as the original reads it.
fn auth_protocol(protocols: &[&str]) -> Option<String> {
    protocols
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .find(|e| e.starts_with(PROTOCOL_PREFIX))
        .map(str::to_owned)
}

/// The first `token` parameter of a query string, form-decoded like
/// `URLSearchParams.get("token")`.
fn query_token(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

fn parse_tenant_tokens(raw: &str) -> Result<BTreeMap<String, String>, String> {
    let value: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| format!("not valid JSON ({e}); expected an object of tenant → token"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("not a JSON object; expected {\"tenant\": \"token\", \"*\": \"token\"}".into());
    };
    let mut tokens = BTreeMap::new();
    for (tenant, token) in map {
        if tenant != "*" && !is_valid_tenant(&tenant) {
            return Err(format!(
                "key {tenant:?} is neither a valid tenant name nor \"*\""
            ));
        }
        match token {
            serde_json::Value::String(t) if !t.is_empty() => {
                tokens.insert(tenant, t);
            }
            _ => return Err(format!("the token of {tenant:?} is not a non-empty string")),
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(default: Option<&str>, json: Option<&str>, query: bool) -> AuthConfig {
        AuthConfig::new(default, json, query).unwrap()
    }

    #[test]
    fn precedence_tenant_then_star_then_default() {
        let c = config(Some("d"), Some(r#"{"a":"ta","*":"star"}"#), false);
        assert_eq!(c.expected_token("a"), Some("ta"));
        assert_eq!(c.expected_token("b"), Some("star"));
        let c = config(Some("d"), Some(r#"{"a":"ta"}"#), false);
        assert_eq!(c.expected_token("b"), Some("d"));
        let c = config(None, Some(r#"{"a":"ta"}"#), false);
        assert_eq!(c.expected_token("b"), None);
        assert_eq!(config(Some(""), None, false).expected_token("a"), None);
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    #[test]
    fn credentials() {
        let c = config(Some("s3cret"), None, false);
        let allow = |p: Option<&str>| AuthDecision::Allow {
            protocol: p.map(str::to_owned),
        };
        let auth = bearer("s3cret");
        let with_header = |authorization| Credentials {
            authorization,
            ..Credentials::default()
        };
        let with_protocols = |protocols| Credentials {
            protocols,
            ..Credentials::default()
        };
        let with_query = |query| Credentials {
            query,
            ..Credentials::default()
        };
        assert_eq!(c.authorize("t", &with_header(Some(&auth))), allow(None));
        assert_eq!(
            c.authorize("t", &with_header(Some("bearer s3cret"))),
            AuthDecision::Deny(DenyReason::Wrong),
            "the scheme is case-sensitive, as in the original"
        );
        assert_eq!(
            c.authorize("t", &with_protocols(&["x, sync-auth.s3cret ,y"])),
            allow(Some("sync-auth.s3cret"))
        );
        assert_eq!(
            c.authorize("t", &with_protocols(&["x", "sync-auth.s3cret"])),
            allow(Some("sync-auth.s3cret")),
            "several header lines are one list"
        );
        assert_eq!(
            c.authorize("t", &with_protocols(&["sync-auth.nope, sync-auth.s3cret"])),
            AuthDecision::Deny(DenyReason::Wrong),
            "only the first sync-auth entry counts"
        );
        assert_eq!(
            c.authorize("t", &with_query(Some("token=s3cret"))),
            AuthDecision::Deny(DenyReason::QueryTokenNotAllowed),
            "query tokens are off by default"
        );
        let q = config(Some("a b"), None, true);
        assert_eq!(
            q.authorize("t", &with_query(Some("x=1&token=a+b&token=zz"))),
            allow(None)
        );
    }

    #[test]
    fn a_denial_says_whether_anything_was_offered() {
        let c = config(Some("s3cret"), None, false);
        let deny = |credentials: Credentials<'_>| c.authorize("t", &credentials);
        assert_eq!(
            deny(Credentials::default()),
            AuthDecision::Deny(DenyReason::Missing)
        );
        assert_eq!(
            deny(Credentials {
                protocols: &["x, y"],
                query: Some("a=1"),
                ..Credentials::default()
            }),
            AuthDecision::Deny(DenyReason::Missing),
            "other subprotocols and query parameters are not credentials"
        );
        assert_eq!(
            deny(Credentials {
                authorization: Some("Bearer nope"),
                ..Credentials::default()
            }),
            AuthDecision::Deny(DenyReason::Wrong)
        );
        let q = config(Some("s3cret"), None, true);
        assert_eq!(
            q.authorize(
                "t",
                &Credentials {
                    query: Some("token=nope"),
                    ..Credentials::default()
                }
            ),
            AuthDecision::Deny(DenyReason::Wrong)
        );
        for reason in [
            DenyReason::Missing,
            DenyReason::QueryTokenNotAllowed,
            DenyReason::Wrong,
        ] {
            assert!(!reason.as_str().contains("s3cret"));
        }
    }

    #[test]
    fn an_offered_auth_protocol_is_always_selected_when_allowed() {
        let offered = Credentials {
            protocols: &["sync-auth.anything"],
            ..Credentials::default()
        };
        assert_eq!(
            config(None, None, false).authorize("t", &offered),
            AuthDecision::Allow {
                protocol: Some("sync-auth.anything".into())
            },
            "an open tenant selects the offered protocol"
        );
        let auth = bearer("s3cret");
        let both = Credentials {
            authorization: Some(&auth),
            ..offered
        };
        assert_eq!(
            config(Some("s3cret"), None, false).authorize("t", &both),
            AuthDecision::Allow {
                protocol: Some("sync-auth.anything".into())
            },
            "the Bearer token matched; the offered protocol is still selected"
        );
    }

    #[test]
    fn bad_token_maps_are_refused() {
        for bad in [
            "[1]",
            "\"x\"",
            "{\"a\": 1}",
            "{\"a\": \"\"}",
            "{bad json",
            "{\"no spaces\": \"t\"}",
        ] {
            let err = AuthConfig::new(None, Some(bad), false).unwrap_err();
            assert!(!err.contains('\n'), "{bad}: one line");
        }
        assert!(!config(None, Some(""), false).is_enabled());
        assert!(!config(None, Some("{}"), false).is_enabled());
    }

    #[test]
    fn summary_never_shows_tokens() {
        let c = config(Some("s3cret"), Some(r#"{"a":"hidden1"}"#), true);
        let s = format!("{} {:?}", c.summary(), c);
        assert!(!s.contains("s3cret") && !s.contains("hidden1"), "{s}");
        assert!(s.starts_with("on ("));
    }
}
