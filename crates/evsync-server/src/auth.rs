//! Who may open a tenant's socket: the rules live in
//! [`evsync_core::access`] (shared with the Cloudflare Worker); this module
//! only reads the credentials out of axum's request and maps configuration
//! errors to the setting that caused them.

use crate::config::ConfigError;
use axum::http::{HeaderMap, header};
pub use evsync_core::access::{AuthConfig, AuthDecision, Credentials, PROTOCOL_PREFIX};

/// Builds the auth settings from the raw values of SYNC_AUTH_TOKEN,
/// SYNC_AUTH_TOKENS and SYNC_ALLOW_QUERY_TOKEN; a bad token map is an error
/// naming `tokens_setting`.
pub fn auth_config(
    default_token: Option<&str>,
    tenant_tokens_json: Option<&str>,
    allow_query_token: bool,
    tokens_setting: &str,
) -> Result<AuthConfig, ConfigError> {
    AuthConfig::new(default_token, tenant_tokens_json, allow_query_token)
        .map_err(|problem| ConfigError::new(tokens_setting, problem))
}

/// A header's value as text; absent when missing or not valid UTF-8.
pub fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Every `Sec-WebSocket-Protocol` value, in order (kept by the caller for
/// as long as the [`Credentials`] borrowing them).
pub fn protocols(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// The credentials a request offers: its `Authorization` header, the
/// subprotocols read by [`protocols`] and its raw query string.
pub fn credentials<'a>(
    headers: &'a HeaderMap,
    protocols: &'a [&'a str],
    query: Option<&'a str>,
) -> Credentials<'a> {
    Credentials {
        authorization: header_text(headers, header::AUTHORIZATION),
        protocols,
        query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn authorize(
        auth: &AuthConfig,
        tenant: &str,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> AuthDecision {
        auth.authorize(tenant, &credentials(headers, &protocols(headers), query))
    }

    #[test]
    fn reads_every_credential_from_the_request() {
        let auth = auth_config(Some("s3cret"), None, true, "SYNC_AUTH_TOKENS").unwrap();
        let mut headers = HeaderMap::new();
        headers.append("sec-websocket-protocol", HeaderValue::from_static("x"));
        headers.append(
            "sec-websocket-protocol",
            HeaderValue::from_static("sync-auth.s3cret"),
        );
        assert_eq!(
            authorize(&auth, "t", &headers, None),
            AuthDecision::Allow {
                protocol: Some("sync-auth.s3cret".into())
            }
        );
        let mut bearer = HeaderMap::new();
        bearer.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
        assert_eq!(
            authorize(&auth, "t", &bearer, None),
            AuthDecision::Allow { protocol: None }
        );
        assert_eq!(
            authorize(&auth, "t", &HeaderMap::new(), Some("token=s3cret")),
            AuthDecision::Allow { protocol: None }
        );
        assert_eq!(
            authorize(&auth, "t", &HeaderMap::new(), None),
            AuthDecision::Deny
        );
    }

    #[test]
    fn a_bad_token_map_names_its_setting() {
        let err = auth_config(None, Some("[1]"), false, "SYNC_AUTH_TOKENS").unwrap_err();
        assert_eq!(err.setting, "SYNC_AUTH_TOKENS");
    }
}
