//! Signed tenant tokens: a token an app's backend mints with
//! `SYNC_TOKEN_SECRET` for one tenant, optionally read-only, expiring, or
//! restricted to one publicKey, so that a browser or an observer replica
//! never holds the tenant's shared secret.
//!
//! Format (version 1), all ASCII, safe in a `Sec-WebSocket-Protocol`
//! entry (`sync-auth.<token>`), a Bearer header and a query parameter:
//!
//! ```text
//! evs1.<payload>.<signature>
//! payload   = base64url, no padding, of a UTF-8 JSON object:
//!             {"t": tenant, "s": "rw" | "ro", "iat": ms, "exp": ms?, "pk": publicKey?}
//! signature = base64url, no padding, of HMAC-SHA256(secret, "evs1." + payload)
//! ```
//!
//! `iat` (issued at) and `exp` (expires at) are milliseconds since the Unix
//! epoch (JavaScript's `Date.now()`), so a TypeScript backend mints one with
//! `node:crypto` and `Buffer.toString("base64url")` alone. `iat` is what a
//! revocation compares against; `exp` is optional (no expiry). The JSON is
//! parsed, not compared, so key order and spacing do not matter; unknown
//! keys are refused, so that a later version's restriction is never
//! silently ignored by an older server.
//!
//! Why HMAC and not Ed25519: the server that verifies is the party that
//! holds the secret (the same deployment), so a MAC is enough, is ~10x
//! cheaper to check per connection, and is what y-sweet uses for the same
//! job. The MAC is checked (in constant time, `Mac::verify_slice`) before
//! the payload is parsed, so a forger cannot probe the JSON parser.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use std::fmt;

/// The prefix that marks a signed token (and its format version).
pub const SIGNED_TOKEN_PREFIX: &str = "evs1.";

/// The shortest `SYNC_TOKEN_SECRET` accepted, in bytes: an HMAC-SHA256 key
/// shorter than the hash gives away strength for nothing.
pub const MIN_SECRET_BYTES: usize = 32;

/// Longer tokens are refused unread (a tenant name, a publicKey and two
/// times fit in a few hundred bytes).
pub const MAX_TOKEN_BYTES: usize = 2048;

type HmacSha256 = Hmac<Sha256>;

/// `SYNC_TOKEN_SECRET`: the key tokens are signed with. `Debug` redacts it.
#[derive(Clone)]
pub struct TokenSecret(Vec<u8>);

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSecret(<{} bytes>)", self.0.len())
    }
}

impl TokenSecret {
    /// The secret from the variable's raw value (its UTF-8 bytes); shorter
    /// than [`MIN_SECRET_BYTES`] is an error that names the lengths only.
    pub fn new(raw: &str) -> Result<Self, String> {
        if raw.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "must be at least {MIN_SECRET_BYTES} bytes (got {}); generate one with `openssl rand -base64 48`",
                raw.len()
            ));
        }
        Ok(TokenSecret(raw.as_bytes().to_vec()))
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }
}

/// What a signed token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    /// The one tenant it opens.
    pub tenant: String,
    /// Reads only: no entry may be written with it.
    pub read_only: bool,
    /// When it was minted (Unix ms); revocation refuses tokens minted
    /// before the tenant's "not before".
    pub issued_at_ms: u64,
    /// When it stops opening the tenant and its open sockets are closed
    /// (Unix ms); `None`: never.
    pub expires_at_ms: Option<u64>,
    /// The only publicKey (identity) it may read and write, if restricted.
    pub public_key: Option<String>,
}

/// Why a string is not a valid signed token. The variants are distinct in
/// the operator's log; the client always gets the same `401`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenError {
    /// Not `evs1.<payload>.<signature>` in base64url, or too long.
    Malformed,
    /// The signature does not match (tampered, or another secret).
    BadSignature,
    /// Signed by us, yet not a payload this version understands.
    BadPayload,
}

impl TokenError {
    /// A short phrase for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed signed token",
            TokenError::BadSignature => "signed token with a bad signature",
            TokenError::BadPayload => "signed token with an unreadable payload",
        }
    }
}

/// True when `token` claims to be a signed token (is worth verifying).
pub fn is_signed_token(token: &str) -> bool {
    token.starts_with(SIGNED_TOKEN_PREFIX)
}

/// Mints a token for `claims`.
pub fn mint(secret: &TokenSecret, claims: &TokenClaims) -> String {
    let mut payload = Map::new();
    payload.insert("t".into(), Value::from(claims.tenant.as_str()));
    let scope = if claims.read_only { "ro" } else { "rw" };
    payload.insert("s".into(), Value::from(scope));
    payload.insert("iat".into(), Value::from(claims.issued_at_ms));
    if let Some(exp) = claims.expires_at_ms {
        payload.insert("exp".into(), Value::from(exp));
    }
    if let Some(pk) = &claims.public_key {
        payload.insert("pk".into(), Value::from(pk.as_str()));
    }
    let json = Value::Object(payload).to_string();
    let mut token = String::from(SIGNED_TOKEN_PREFIX);
    token.push_str(&URL_SAFE_NO_PAD.encode(json));
    let mut mac = secret.mac();
    mac.update(token.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    token.push('.');
    token.push_str(&signature);
    token
}

/// Checks `token`'s signature, then reads its claims. Whether the claims
/// fit the request (tenant, expiry, revocation) is the caller's part.
pub fn verify(secret: &TokenSecret, token: &str) -> Result<TokenClaims, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    let body = token
        .strip_prefix(SIGNED_TOKEN_PREFIX)
        .ok_or(TokenError::Malformed)?;
    let (payload, signature) = body.split_once('.').ok_or(TokenError::Malformed)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    let signed = &token[..SIGNED_TOKEN_PREFIX.len() + payload.len()];
    let mut mac = secret.mac();
    mac.update(signed.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::BadPayload)?;
    let value: Value = serde_json::from_slice(&json).map_err(|_| TokenError::BadPayload)?;
    claims_of(value).ok_or(TokenError::BadPayload)
}

fn claims_of(value: Value) -> Option<TokenClaims> {
    let Value::Object(map) = value else {
        return None;
    };
    if map
        .keys()
        .any(|k| !matches!(k.as_str(), "t" | "s" | "iat" | "exp" | "pk"))
    {
        return None;
    }
    let tenant = map.get("t")?.as_str()?.to_owned();
    let read_only = match map.get("s")?.as_str()? {
        "ro" => true,
        "rw" => false,
        _ => return None,
    };
    let issued_at_ms = map.get("iat")?.as_u64()?;
    let expires_at_ms = match map.get("exp") {
        None => None,
        Some(exp) => Some(exp.as_u64()?),
    };
    let public_key = match map.get("pk") {
        None => None,
        Some(pk) => Some(pk.as_str()?.to_owned()),
    };
    Some(TokenClaims {
        tenant,
        read_only,
        issued_at_ms,
        expires_at_ms,
        public_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> TokenSecret {
        TokenSecret::new("0123456789abcdef0123456789abcdef").unwrap()
    }

    fn claims() -> TokenClaims {
        TokenClaims {
            tenant: "acme".into(),
            read_only: true,
            issued_at_ms: 1_700_000_000_000,
            expires_at_ms: Some(1_700_000_060_000),
            public_key: Some("pk-1".into()),
        }
    }

    #[test]
    fn mint_then_verify_round_trips() {
        let token = mint(&secret(), &claims());
        assert!(is_signed_token(&token));
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "an HTTP token (subprotocol-safe): {token}"
        );
        assert_eq!(verify(&secret(), &token), Ok(claims()));
        let plain = TokenClaims {
            read_only: false,
            expires_at_ms: None,
            public_key: None,
            ..claims()
        };
        assert_eq!(verify(&secret(), &mint(&secret(), &plain)), Ok(plain));
    }

    #[test]
    fn short_secrets_are_refused_without_echoing_them() {
        let err = TokenSecret::new("short-secret").unwrap_err();
        assert!(err.contains("at least 32") && !err.contains("short-secret"));
        assert!(!format!("{:?}", secret()).contains("0123"));
    }

    #[test]
    fn tampering_and_other_secrets_fail_the_signature() {
        let token = mint(&secret(), &claims());
        let other = TokenSecret::new(&"x".repeat(32)).unwrap();
        assert_eq!(verify(&other, &token), Err(TokenError::BadSignature));
        // A payload that says read-write, spliced onto the old signature.
        let (_, signature) = token.rsplit_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(r#"{"t":"acme","s":"rw","iat":1}"#);
        let forged = format!("{SIGNED_TOKEN_PREFIX}{forged_payload}.{signature}");
        assert_eq!(verify(&secret(), &forged), Err(TokenError::BadSignature));
        let mut flipped = token.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(verify(&secret(), &flipped), Err(TokenError::BadSignature));
    }

    #[test]
    fn malformed_tokens() {
        for bad in [
            "",
            "evs1.",
            "evs1.abc",
            "evs1.abc.!!!",
            "evs2.abc.def",
            "plain-static-token",
        ] {
            assert_eq!(verify(&secret(), bad), Err(TokenError::Malformed), "{bad}");
        }
        let huge = format!("{SIGNED_TOKEN_PREFIX}{}.x", "a".repeat(MAX_TOKEN_BYTES));
        assert_eq!(verify(&secret(), &huge), Err(TokenError::Malformed));
    }

    /// Signs any payload, to reach the payload checks.
    fn signed(payload: &str) -> String {
        let mut token = format!("{SIGNED_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(payload));
        let mut mac = secret().mac();
        mac.update(token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
        token
    }

    #[test]
    fn payloads_are_read_strictly() {
        let ok = signed(r#"{ "iat": 5, "s": "rw", "t": "a" }"#);
        assert_eq!(verify(&secret(), &ok).unwrap().issued_at_ms, 5);
        for bad in [
            "not json",
            "[]",
            r#"{"t":"a","s":"rw"}"#,
            r#"{"t":"a","s":"admin","iat":1}"#,
            r#"{"t":"a","s":"rw","iat":-1}"#,
            r#"{"t":"a","s":"rw","iat":1.5}"#,
            r#"{"t":"a","s":"rw","iat":1,"exp":"soon"}"#,
            r#"{"t":"a","s":"rw","iat":1,"pk":7}"#,
            r#"{"t":1,"s":"rw","iat":1}"#,
            r#"{"t":"a","s":"rw","iat":1,"aud":"x"}"#,
        ] {
            assert_eq!(
                verify(&secret(), &signed(bad)),
                Err(TokenError::BadPayload),
                "{bad}"
            );
        }
    }

    /// The format as documented (docs/tokens.md), computed by hand: a
    /// backend in another language that follows the text gets this token.
    #[test]
    fn the_documented_format() {
        let token = mint(
            &secret(),
            &TokenClaims {
                tenant: "acme".into(),
                read_only: false,
                issued_at_ms: 1,
                expires_at_ms: None,
                public_key: None,
            },
        );
        let (payload, _) = token[SIGNED_TOKEN_PREFIX.len()..].split_once('.').unwrap();
        let json = URL_SAFE_NO_PAD.decode(payload).unwrap();
        let value: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value, serde_json::json!({"t": "acme", "s": "rw", "iat": 1}));
    }
}
