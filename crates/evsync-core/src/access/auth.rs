//! Who may open a tenant's socket: the original worker's token rules, and
//! signed tokens beside them.
//!
//! Expected static token for a tenant: `SYNC_AUTH_TOKENS[tenant]` ??
//! `SYNC_AUTH_TOKENS["*"]` ?? `SYNC_AUTH_TOKEN`. With `SYNC_TOKEN_SECRET`
//! set, a signed token for the tenant ([`super::signed_token`]) opens it
//! too, with the rights it carries ([`Grant`]). A tenant with neither a
//! static token nor a token secret is open. Accepted credentials, any one
//! of: `Authorization: Bearer <t>`, the first `sync-auth.<t>` entry of
//! `Sec-WebSocket-Protocol`, and `?token=<t>` when `SYNC_ALLOW_QUERY_TOKEN`
//! allows it. Tokens are compared in constant time and never logged or
//! printed (`Debug` redacts them).
//!
//! Pure logic over header strings, shared by the native server and the
//! Cloudflare Worker so that both enforce exactly the same rules.

use super::grant::Grant;
use super::path::is_valid_tenant;
use super::signed_token::{self, TokenError, TokenSecret};
use crate::time::Timestamp;
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
    /// SYNC_TOKEN_SECRET: accept signed tokens (and open no tenant
    /// without a credential).
    token_secret: Option<TokenSecret>,
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
    /// browsers (and Node's `ws`) drop the socket. `grant` is what the
    /// connection may do (its expiry on the Unix clock `authorize` was
    /// given).
    Allow {
        protocol: Option<String>,
        grant: Grant,
    },
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
    /// A signed token that is not valid (malformed, bad signature, bad
    /// payload).
    SignedToken(TokenError),
    /// A valid signed token for another tenant.
    OtherTenant,
    /// A valid signed token past its expiry.
    Expired,
    /// A valid signed token minted before the tenant's revocation (decided
    /// by the adapter once the tenant's storage is open).
    Revoked,
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
            DenyReason::SignedToken(err) => err.as_str(),
            DenyReason::OtherTenant => "signed token for another tenant",
            DenyReason::Expired => "token expired",
            DenyReason::Revoked => "token revoked",
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
            token_secret: None,
        })
    }

    /// Also accepts tokens signed with `secret` (SYNC_TOKEN_SECRET). Every
    /// tenant then needs a credential: a signed token for it, or its
    /// static token.
    pub fn with_token_secret(mut self, secret: Option<TokenSecret>) -> Self {
        self.token_secret = secret;
        self
    }

    /// The key signed tokens are checked with, if any.
    pub fn token_secret(&self) -> Option<&TokenSecret> {
        self.token_secret.as_ref()
    }

    /// True when at least one tenant needs a token.
    pub fn is_enabled(&self) -> bool {
        self.default_token.is_some()
            || !self.tenant_tokens.is_empty()
            || self.token_secret.is_some()
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
        if self.token_secret.is_some() {
            parts.push("signed tokens".into());
        }
        let mut out = format!("on ({})", parts.join(", "));
        if !self.tenant_tokens.contains_key("*")
            && self.default_token.is_none()
            && self.token_secret.is_none()
        {
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

    /// Checks a request for `tenant` by the credentials it offers, at
    /// `now` on the Unix clock (ms; signed tokens' expiries are Unix times).
    pub fn authorize(
        &self,
        tenant: &str,
        credentials: &Credentials<'_>,
        now: Timestamp,
    ) -> AuthDecision {
        // An allowed request that offered a `sync-auth.` subprotocol always
        // gets it selected, even when the tenant is open or another
        // credential matched: a WebSocket client (browsers, Node's `ws`)
        // drops a socket whose offered protocols were all ignored. The
        // original echoed it only when it carried the accepted token.
        let protocol = auth_protocol(credentials.protocols);
        let expected = self.expected_token(tenant);
        if expected.is_none() && self.token_secret.is_none() {
            let grant = Grant::full();
            return AuthDecision::Allow {
                protocol: protocol.map(str::to_owned),
                grant,
            };
        }
        let bearer = credentials
            .authorization
            .and_then(|v| v.strip_prefix("Bearer "));
        let offered_query = credentials.query.and_then(query_token);
        let query_token = offered_query.as_deref().filter(|_| self.allow_query_token);
        let from_protocol = protocol.map(|p| &p[PROTOCOL_PREFIX.len()..]);
        let candidates = [bearer, from_protocol, query_token];
        // Static tokens: evaluate every credential (no short cut), each in
        // constant time.
        let static_ok = expected.is_some_and(|expected| {
            candidates
                .iter()
                .fold(false, |ok, c| ok | c.is_some_and(|t| same(t, expected)))
        });
        if static_ok {
            let grant = Grant::full();
            return AuthDecision::Allow {
                protocol: protocol.map(str::to_owned),
                grant,
            };
        }
        let mut signed_failure = None;
        if let Some(secret) = &self.token_secret {
            for token in candidates.into_iter().flatten() {
                if !signed_token::is_signed_token(token) {
                    continue;
                }
                match self.check_signed(secret, tenant, token, now) {
                    Ok(grant) => {
                        let protocol = protocol.map(str::to_owned);
                        return AuthDecision::Allow { protocol, grant };
                    }
                    Err(why) => {
                        signed_failure.get_or_insert(why);
                    }
                }
            }
        }
        // Only whether something was offered decides the reason (the
        // comparisons above already ran in constant time); an Authorization
        // header of another scheme counts as offered, and wrong.
        let offered =
            credentials.authorization.is_some() || protocol.is_some() || query_token.is_some();
        let reason = if let Some(why) = signed_failure {
            why
        } else if offered {
            DenyReason::Wrong
        } else if offered_query.is_some() {
            DenyReason::QueryTokenNotAllowed
        } else {
            DenyReason::Missing
        };
        AuthDecision::Deny(reason)
    }

    /// A signed token's grant, if it opens `tenant` at `now`.
    fn check_signed(
        &self,
        secret: &TokenSecret,
        tenant: &str,
        token: &str,
        now: Timestamp,
    ) -> Result<Grant, DenyReason> {
        let claims = signed_token::verify(secret, token).map_err(DenyReason::SignedToken)?;
        if claims.tenant != tenant {
            return Err(DenyReason::OtherTenant);
        }
        if claims.expires_at_ms.is_some_and(|exp| exp <= now.0) {
            return Err(DenyReason::Expired);
        }
        Ok(Grant::from_claims(claims))
    }
}

/// Constant-time equality (the length still shows, as with any compare).
fn same(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// The first `sync-auth.…` entry of the `Sec-WebSocket-Protocol` list
/// (all header lines, comma-separated, entries trimmed, empty ones
/// skipped), as the original reads it.
fn auth_protocol<'a>(protocols: &[&'a str]) -> Option<&'a str> {
    protocols
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .find(|e| e.starts_with(PROTOCOL_PREFIX))
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

    const NOW: Timestamp = Timestamp(1_700_000_000_000);

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
            grant: Grant::full(),
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
        assert_eq!(
            c.authorize("t", &with_header(Some(&auth)), NOW),
            allow(None)
        );
        assert_eq!(
            c.authorize("t", &with_header(Some("bearer s3cret")), NOW),
            AuthDecision::Deny(DenyReason::Wrong),
            "the scheme is case-sensitive, as in the original"
        );
        assert_eq!(
            c.authorize("t", &with_protocols(&["x, sync-auth.s3cret ,y"]), NOW),
            allow(Some("sync-auth.s3cret"))
        );
        assert_eq!(
            c.authorize("t", &with_protocols(&["x", "sync-auth.s3cret"]), NOW),
            allow(Some("sync-auth.s3cret")),
            "several header lines are one list"
        );
        assert_eq!(
            c.authorize(
                "t",
                &with_protocols(&["sync-auth.nope, sync-auth.s3cret"]),
                NOW
            ),
            AuthDecision::Deny(DenyReason::Wrong),
            "only the first sync-auth entry counts"
        );
        assert_eq!(
            c.authorize("t", &with_query(Some("token=s3cret")), NOW),
            AuthDecision::Deny(DenyReason::QueryTokenNotAllowed),
            "query tokens are off by default"
        );
        let q = config(Some("a b"), None, true);
        assert_eq!(
            q.authorize("t", &with_query(Some("x=1&token=a+b&token=zz")), NOW),
            allow(None)
        );
    }

    #[test]
    fn a_denial_says_whether_anything_was_offered() {
        let c = config(Some("s3cret"), None, false);
        let deny = |credentials: Credentials<'_>| c.authorize("t", &credentials, NOW);
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
                },
                NOW
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
            config(None, None, false).authorize("t", &offered, NOW),
            AuthDecision::Allow {
                protocol: Some("sync-auth.anything".into()),
                grant: Grant::full(),
            },
            "an open tenant selects the offered protocol"
        );
        let auth = bearer("s3cret");
        let both = Credentials {
            authorization: Some(&auth),
            ..offered
        };
        assert_eq!(
            config(Some("s3cret"), None, false).authorize("t", &both, NOW),
            AuthDecision::Allow {
                protocol: Some("sync-auth.anything".into()),
                grant: Grant::full(),
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

    fn secret() -> TokenSecret {
        TokenSecret::new(&"k".repeat(32)).unwrap()
    }

    fn signed(tenant: &str, exp: Option<u64>) -> String {
        let claims = signed_token::TokenClaims {
            tenant: tenant.into(),
            read_only: true,
            issued_at_ms: NOW.0 - 1,
            expires_at_ms: exp,
            public_key: Some("pk".into()),
        };
        signed_token::mint(&secret(), &claims)
    }

    fn bearer_request(header: &str) -> Credentials<'_> {
        Credentials {
            authorization: Some(header),
            ..Credentials::default()
        }
    }

    #[test]
    fn signed_tokens_open_their_tenant_with_their_rights() {
        let c = config(None, Some(r#"{"a":"static-a"}"#), true).with_token_secret(Some(secret()));
        let token = signed("t", Some(NOW.0 + 60_000));
        let header = bearer(&token);
        let AuthDecision::Allow { grant, .. } = c.authorize("t", &bearer_request(&header), NOW)
        else {
            panic!("a signed token for t opens t");
        };
        assert!(grant.read_only);
        assert_eq!(grant.public_key.as_deref(), Some("pk"));
        assert_eq!(grant.expires_at, Some(Timestamp(NOW.0 + 60_000)));
        assert_eq!(grant.issued_at_ms, Some(NOW.0 - 1));
        // In the subprotocol and the query too.
        let entry = format!("sync-auth.{token}");
        let protocols = [entry.as_str()];
        let in_protocol = Credentials {
            protocols: &protocols,
            ..Credentials::default()
        };
        assert!(matches!(
            c.authorize("t", &in_protocol, NOW),
            AuthDecision::Allow { protocol: Some(p), .. } if p == entry
        ));
        let query = format!("token={token}");
        let in_query = Credentials {
            query: Some(&query),
            ..Credentials::default()
        };
        assert!(matches!(
            c.authorize("t", &in_query, NOW),
            AuthDecision::Allow { .. }
        ));
        // Static tokens keep working beside them, with every right.
        let header = bearer("static-a");
        assert_eq!(
            c.authorize("a", &bearer_request(&header), NOW),
            AuthDecision::Allow {
                protocol: None,
                grant: Grant::full()
            }
        );
    }

    #[test]
    fn a_token_secret_closes_open_tenants() {
        let c = config(None, None, false).with_token_secret(Some(secret()));
        assert!(c.is_enabled());
        assert_eq!(
            c.authorize("t", &Credentials::default(), NOW),
            AuthDecision::Deny(DenyReason::Missing)
        );
        let header = bearer("some-static-guess");
        assert_eq!(
            c.authorize("t", &bearer_request(&header), NOW),
            AuthDecision::Deny(DenyReason::Wrong)
        );
        assert!(c.summary().contains("signed tokens"));
    }

    #[test]
    fn signed_token_refusals_say_why() {
        let c = config(None, None, false).with_token_secret(Some(secret()));
        let deny = |token: &str| {
            let header = bearer(token);
            c.authorize("t", &bearer_request(&header), NOW)
        };
        assert_eq!(
            deny(&signed("other", None)),
            AuthDecision::Deny(DenyReason::OtherTenant)
        );
        assert_eq!(
            deny(&signed("t", Some(NOW.0))),
            AuthDecision::Deny(DenyReason::Expired),
            "expired at the instant"
        );
        let forged = signed_token::mint(
            &TokenSecret::new(&"z".repeat(32)).unwrap(),
            &signed_token::TokenClaims {
                tenant: "t".into(),
                read_only: false,
                issued_at_ms: 0,
                expires_at_ms: None,
                public_key: None,
            },
        );
        assert_eq!(
            deny(&forged),
            AuthDecision::Deny(DenyReason::SignedToken(TokenError::BadSignature))
        );
        assert_eq!(
            deny("evs1.garbage"),
            AuthDecision::Deny(DenyReason::SignedToken(TokenError::Malformed))
        );
        // Without a secret a signed token is just a wrong static token.
        let no_secret = config(Some("s3cret"), None, false);
        let header = bearer(&signed("t", None));
        assert_eq!(
            no_secret.authorize("t", &bearer_request(&header), NOW),
            AuthDecision::Deny(DenyReason::Wrong)
        );
        for reason in [
            DenyReason::OtherTenant,
            DenyReason::Expired,
            DenyReason::Revoked,
        ] {
            assert!(!reason.as_str().contains("evs1"));
        }
    }
}
