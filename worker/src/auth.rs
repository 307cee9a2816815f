//! Who may open a tenant's socket: the original worker's token rules.
//!
//! Expected token for a tenant: `SYNC_AUTH_TOKENS[tenant]` ??
//! `SYNC_AUTH_TOKENS["*"]` ?? `SYNC_AUTH_TOKEN`; none means the tenant is
//! open. Accepted credentials, any one of: `Authorization: Bearer <t>`, the
//! first `sync-auth.<t>` entry of `Sec-WebSocket-Protocol`, and `?token=<t>`
//! when `SYNC_ALLOW_QUERY_TOKEN` is `true`/`1`. Tokens are compared in
//! constant time and never logged.

use crate::config;
use crate::routes::is_valid_tenant;
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;
use worker::Env;

/// The subprotocol prefix that carries a token (browsers cannot set
/// headers on a WebSocket, but they can offer subprotocols).
pub const PROTOCOL_PREFIX: &str = "sync-auth.";

/// The auth settings, read from the Worker's variables per request (they
/// are plain values on `env`; reading them is cheap).
#[derive(Default)]
pub struct AuthConfig {
    default_token: Option<String>,
    tenant_tokens: BTreeMap<String, String>,
    allow_query_token: bool,
}

/// The credentials a request offers.
pub struct Credentials<'a> {
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The `Sec-WebSocket-Protocol` header (comma-separated list).
    pub protocols: Option<&'a str>,
    /// The raw query string.
    pub query: Option<&'a str>,
}

/// What [`AuthConfig::authorize`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthDecision {
    /// Let the request through; `protocol` is the `sync-auth.<token>`
    /// subprotocol that carried the accepted token, which the `101` must
    /// select (browsers drop a socket whose offered protocol is not echoed).
    Allow { protocol: Option<String> },
    /// `401 Unauthorized`.
    Deny,
}

impl AuthConfig {
    /// Reads `SYNC_AUTH_TOKEN`, `SYNC_AUTH_TOKENS` and
    /// `SYNC_ALLOW_QUERY_TOKEN`.
    ///
    /// Unlike the original, which silently ignored a `SYNC_AUTH_TOKENS` it
    /// could not parse (leaving open the tenants the operator meant to
    /// protect), such a value is an error: the Worker then refuses every
    /// request rather than fail open. The native server does the same.
    pub fn from_env(env: &Env) -> Result<Self, String> {
        AuthConfig::new(
            config::text(env, "SYNC_AUTH_TOKEN").as_deref(),
            config::text(env, "SYNC_AUTH_TOKENS").as_deref(),
            config::flag(env, "SYNC_ALLOW_QUERY_TOKEN"),
        )
    }

    /// Builds the settings from the raw values; an empty value is unset.
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

    /// The token `tenant` must present, if any.
    pub fn expected_token(&self, tenant: &str) -> Option<&str> {
        self.tenant_tokens
            .get(tenant)
            .or_else(|| self.tenant_tokens.get("*"))
            .or(self.default_token.as_ref())
            .map(String::as_str)
    }

    /// Checks the credentials of a request for `tenant`.
    pub fn authorize(&self, tenant: &str, credentials: &Credentials<'_>) -> AuthDecision {
        let Some(expected) = self.expected_token(tenant) else {
            return AuthDecision::Allow { protocol: None };
        };
        let bearer = credentials
            .authorization
            .and_then(|v| v.strip_prefix("Bearer "));
        let protocol = credentials.protocols.and_then(auth_protocol);
        let query_token = if self.allow_query_token {
            credentials.query.and_then(query_token)
        } else {
            None
        };
        // Evaluate every credential (no short cut), each in constant time.
        let bearer_ok = bearer.is_some_and(|t| same(t, expected));
        let protocol_ok = protocol.is_some_and(|p| same(&p[PROTOCOL_PREFIX.len()..], expected));
        let query_ok = query_token.as_deref().is_some_and(|t| same(t, expected));
        if bearer_ok | protocol_ok | query_ok {
            AuthDecision::Allow {
                protocol: if protocol_ok {
                    protocol.map(str::to_owned)
                } else {
                    None
                },
            }
        } else {
            AuthDecision::Deny
        }
    }
}

/// Constant-time equality (the length still shows, as with any compare).
fn same(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// The first `sync-auth.…` entry of a `Sec-WebSocket-Protocol` list
/// (comma-separated, entries trimmed), as the original reads it.
fn auth_protocol(header: &str) -> Option<&str> {
    header
        .split(',')
        .map(str::trim)
        .find(|e| e.starts_with(PROTOCOL_PREFIX))
}

/// The first `token` parameter of a query string, decoded like
/// `URLSearchParams.get("token")`.
fn query_token(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

fn parse_tenant_tokens(raw: &str) -> Result<BTreeMap<String, String>, String> {
    let value: serde_json::Value = serde_json::from_str(raw).map_err(|e| {
        format!("SYNC_AUTH_TOKENS is not valid JSON ({e}); expected an object of tenant → token")
    })?;
    let serde_json::Value::Object(map) = value else {
        return Err("SYNC_AUTH_TOKENS is not a JSON object".into());
    };
    let mut tokens = BTreeMap::new();
    for (tenant, token) in map {
        if tenant != "*" && !is_valid_tenant(&tenant) {
            return Err(format!(
                "SYNC_AUTH_TOKENS key {tenant:?} is neither a valid tenant name nor \"*\""
            ));
        }
        match token {
            serde_json::Value::String(t) if !t.is_empty() => {
                tokens.insert(tenant, t);
            }
            _ => {
                return Err(format!(
                    "SYNC_AUTH_TOKENS: the token of {tenant:?} is not a non-empty string"
                ));
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds<'a>(
        authorization: Option<&'a str>,
        protocols: Option<&'a str>,
        query: Option<&'a str>,
    ) -> Credentials<'a> {
        Credentials {
            authorization,
            protocols,
            query,
        }
    }

    #[test]
    fn precedence_tenant_then_star_then_default() {
        let c = AuthConfig::new(Some("d"), Some(r#"{"a":"ta","*":"s"}"#), false).unwrap();
        assert_eq!(c.expected_token("a"), Some("ta"));
        assert_eq!(c.expected_token("b"), Some("s"));
        let c = AuthConfig::new(Some("d"), Some(r#"{"a":"ta"}"#), false).unwrap();
        assert_eq!(c.expected_token("b"), Some("d"));
        let c = AuthConfig::new(None, None, false).unwrap();
        assert_eq!(
            c.authorize("x", &creds(None, None, None)),
            AuthDecision::Allow { protocol: None }
        );
    }

    #[test]
    fn credentials() {
        let c = AuthConfig::new(Some("tok"), None, false).unwrap();
        assert_eq!(
            c.authorize("t", &creds(Some("Bearer tok"), None, None)),
            AuthDecision::Allow { protocol: None }
        );
        assert_eq!(
            c.authorize("t", &creds(Some("Bearer no"), None, None)),
            AuthDecision::Deny
        );
        assert_eq!(
            c.authorize("t", &creds(None, Some("foo, sync-auth.tok"), None)),
            AuthDecision::Allow {
                protocol: Some("sync-auth.tok".into())
            }
        );
        assert_eq!(
            c.authorize("t", &creds(None, None, Some("token=tok"))),
            AuthDecision::Deny
        );
        let q = AuthConfig::new(Some("tok"), None, true).unwrap();
        assert_eq!(
            q.authorize("t", &creds(None, None, Some("a=1&token=tok"))),
            AuthDecision::Allow { protocol: None }
        );
    }

    #[test]
    fn bad_token_maps_are_refused() {
        for bad in [
            "[]",
            "1",
            "{",
            r#"{"a":""}"#,
            r#"{"a":1}"#,
            r#"{"-bad":"x"}"#,
        ] {
            assert!(AuthConfig::new(None, Some(bad), false).is_err(), "{bad}");
        }
    }
}
