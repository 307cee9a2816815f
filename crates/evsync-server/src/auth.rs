//! Who may open a tenant's socket: the rules live in
//! [`evsync_core::access`] (shared with the Cloudflare Worker); this module
//! only reads the credentials out of axum's request and maps configuration
//! errors to the setting that caused them (that part is
//! [`crate::config::auth_config`]'s).

use axum::http::{HeaderMap, header};
pub use evsync_core::access::{AuthConfig, AuthDecision, Credentials, DenyReason, PROTOCOL_PREFIX};

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
    use evsync_core::access::Grant;

    fn authorize(
        auth: &AuthConfig,
        tenant: &str,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> AuthDecision {
        let now = evsync_core::time::Timestamp(0);
        auth.authorize(
            tenant,
            &credentials(headers, &protocols(headers), query),
            now,
        )
    }

    #[test]
    fn reads_every_credential_from_the_request() {
        let auth = AuthConfig::new(Some("s3cret"), None, true).unwrap();
        let mut headers = HeaderMap::new();
        headers.append("sec-websocket-protocol", HeaderValue::from_static("x"));
        headers.append(
            "sec-websocket-protocol",
            HeaderValue::from_static("sync-auth.s3cret"),
        );
        assert_eq!(
            authorize(&auth, "t", &headers, None),
            AuthDecision::Allow {
                protocol: Some("sync-auth.s3cret".into()),
                grant: Grant::full(),
            }
        );
        let mut bearer = HeaderMap::new();
        bearer.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
        assert_eq!(
            authorize(&auth, "t", &bearer, None),
            AuthDecision::Allow {
                protocol: None,
                grant: Grant::full()
            }
        );
        assert_eq!(
            authorize(&auth, "t", &HeaderMap::new(), Some("token=s3cret")),
            AuthDecision::Allow {
                protocol: None,
                grant: Grant::full()
            }
        );
        assert_eq!(
            authorize(&auth, "t", &HeaderMap::new(), None),
            AuthDecision::Deny(DenyReason::Missing)
        );
    }
}
