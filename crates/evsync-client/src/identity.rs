//! Effect's `EventLog.Identity`: which log a replica syncs (`publicKey`) and
//! the AES-256 key its entries are sealed with (`privateKey`).
//!
//! Replicas share a log by sharing an identity, so the string form must be
//! exactly Effect's `Identity.encodeString` / `decodeString`:
//! base64url (no padding) of the JSON `{"publicKey": …, "privateKey": …}`
//! where `privateKey` is the key in standard base64 (with padding). Despite
//! the names, `publicKey` is not a key: Effect makes it a random UUID string,
//! and the server groups entries by it.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use std::fmt;

/// Bytes of an identity key (AES-256).
pub const KEY_LEN: usize = 32;

/// An Effect EventLog identity. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    public_key: String,
    private_key: [u8; KEY_LEN],
}

/// Why an identity string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("identity is not base64url: {0}")]
    Base64Url(String),
    #[error("identity is not the JSON {{publicKey, privateKey}}: {0}")]
    Json(String),
    #[error("identity privateKey is not base64: {0}")]
    KeyBase64(String),
    /// Effect's WebCrypto would take a 16- or 24-byte key too (AES-128/192),
    /// but Effect only ever makes 32-byte keys; so do we.
    #[error("identity privateKey has {0} bytes; only 32-byte (AES-256) keys are supported")]
    KeyLength(usize),
}

#[derive(serde::Serialize, serde::Deserialize)]
struct IdentityJson<'a> {
    #[serde(rename = "publicKey", borrow)]
    public_key: std::borrow::Cow<'a, str>,
    #[serde(rename = "privateKey", borrow)]
    private_key: std::borrow::Cow<'a, str>,
}

impl Identity {
    /// A fresh identity as Effect's `Identity.makeRandom` makes one: a random
    /// UUID v4 string and 32 random key bytes from the OS.
    pub fn generate() -> Self {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).expect("the OS random number generator failed");
        Identity {
            public_key: uuid::Uuid::new_v4().to_string(),
            private_key: key,
        }
    }

    /// An identity from its parts, e.g. one kept elsewhere.
    pub fn from_parts(public_key: impl Into<String>, private_key: [u8; KEY_LEN]) -> Self {
        Identity {
            public_key: public_key.into(),
            private_key,
        }
    }

    /// Parses Effect's string form (`Identity.decodeString`). Lenient where
    /// Effect's decoders are: padding on either base64 layer is optional,
    /// surrounding whitespace is ignored, and extra JSON fields are ignored.
    pub fn from_effect_string(s: &str) -> Result<Self, IdentityError> {
        let s = s.trim();
        let json = URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .or_else(|_| URL_SAFE.decode(s))
            .map_err(|e| IdentityError::Base64Url(e.to_string()))?;
        let parsed: IdentityJson<'_> =
            serde_json::from_slice(&json).map_err(|e| IdentityError::Json(e.to_string()))?;
        let key = STANDARD
            .decode(parsed.private_key.as_bytes())
            .or_else(|_| STANDARD_NO_PAD.decode(parsed.private_key.trim_end_matches('=')))
            .map_err(|e| IdentityError::KeyBase64(e.to_string()))?;
        let private_key: [u8; KEY_LEN] = key
            .as_slice()
            .try_into()
            .map_err(|_| IdentityError::KeyLength(key.len()))?;
        Ok(Identity {
            public_key: parsed.public_key.into_owned(),
            private_key,
        })
    }

    /// Effect's string form (`Identity.encodeString`), byte for byte: what
    /// an Effect app can pass to `Identity.decodeString` to join this log.
    pub fn to_effect_string(&self) -> String {
        let json = serde_json::to_string(&IdentityJson {
            public_key: self.public_key.as_str().into(),
            private_key: STANDARD.encode(self.private_key).into(),
        })
        .expect("two strings always serialize");
        URL_SAFE_NO_PAD.encode(json)
    }

    /// The log id shared by every replica of this identity.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The AES-256-GCM key. Secret: whoever holds it can read and forge
    /// entries of this log.
    pub fn private_key(&self) -> &[u8; KEY_LEN] {
        &self.private_key
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public_key", &self.public_key)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl std::str::FromStr for Identity {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Identity::from_effect_string(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by Effect: `EventLog.Identity.encodeString(EventLog.Identity.makeRandom())`.
    const EFFECT_STRING: &str = "eyJwdWJsaWNLZXkiOiJjN2MzNmZjYS1hMTk0LTRjNDctOGFjNS01OTkzOWJiMDc1NTYiLCJwcml2YXRlS2V5IjoiM2g2Z1dMVEZrTWRrMjFtZDNWYm9WaXZwcEJ5bnZMZlE2aDBxRFZvSzE0UT0ifQ";

    #[test]
    fn reads_and_writes_effects_string_form() {
        let id = Identity::from_effect_string(EFFECT_STRING).unwrap();
        assert_eq!(id.public_key(), "c7c36fca-a194-4c47-8ac5-59939bb07556");
        assert_eq!(
            STANDARD.encode(id.private_key()),
            "3h6gWLTFkMdk21md3VboVivppBynvLfQ6h0qDVoK14Q="
        );
        assert_eq!(id.to_effect_string(), EFFECT_STRING);
    }

    #[test]
    fn generated_identities_round_trip() {
        let a = Identity::generate();
        let b = Identity::generate();
        assert_ne!(a, b);
        assert!(uuid::Uuid::parse_str(a.public_key()).is_ok());
        assert_eq!(
            Identity::from_effect_string(&a.to_effect_string()).unwrap(),
            a
        );
        assert!(!format!("{a:?}").contains(&STANDARD.encode(a.private_key())));
    }

    #[test]
    fn refuses_bad_strings() {
        assert!(matches!(
            Identity::from_effect_string("!!"),
            Err(IdentityError::Base64Url(_))
        ));
        let no_json = URL_SAFE_NO_PAD.encode("nope");
        assert!(matches!(
            Identity::from_effect_string(&no_json),
            Err(IdentityError::Json(_))
        ));
        let short = URL_SAFE_NO_PAD.encode(r#"{"publicKey":"p","privateKey":"AAAA"}"#);
        assert_eq!(
            Identity::from_effect_string(&short),
            Err(IdentityError::KeyLength(3))
        );
    }
}
