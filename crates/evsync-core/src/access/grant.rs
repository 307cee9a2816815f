//! What an admitted connection may do: everything (a static tenant token,
//! an open tenant), or what its signed token allows (read-only, one
//! publicKey, until an expiry).

use super::signed_token::TokenClaims;
use crate::time::Timestamp;

/// The rights a connection was admitted with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// No entry may be written.
    pub read_only: bool,
    /// The only publicKey it may read or write, if restricted.
    pub public_key: Option<String>,
    /// When the connection must be closed ("token expired"). On the Unix
    /// clock (ms) as [`super::AuthConfig::authorize`] returns it; an
    /// adapter whose engine clock has another epoch converts it with
    /// [`Grant::rebased`] before opening the connection.
    pub expires_at: Option<Timestamp>,
    /// When its signed token was minted (Unix ms); `None` for static
    /// tokens and open tenants, which a revocation cannot refuse.
    pub issued_at_ms: Option<u64>,
}

impl Grant {
    /// Everything, forever: a static tenant token or an open tenant.
    pub fn full() -> Self {
        Grant::default()
    }

    /// The rights a verified signed token carries.
    pub fn from_claims(claims: TokenClaims) -> Self {
        Grant {
            read_only: claims.read_only,
            public_key: claims.public_key,
            expires_at: claims.expires_at_ms.map(Timestamp),
            issued_at_ms: Some(claims.issued_at_ms),
        }
    }

    /// True when nothing is restricted (no per-connection state needed).
    pub fn is_full(&self) -> bool {
        !self.read_only && self.public_key.is_none() && self.expires_at.is_none()
    }

    /// True when a revocation at `not_before_ms` (Unix ms) refuses it: a
    /// signed token minted before that instant.
    pub fn is_revoked_by(&self, not_before_ms: Option<u64>) -> bool {
        matches!((self.issued_at_ms, not_before_ms), (Some(iat), Some(nb)) if iat < nb)
    }

    /// The same grant with its expiry moved from the clock that read
    /// `from_now` to the one that reads `to_now` at the same instant (Unix
    /// time to a process-relative engine clock).
    pub fn rebased(mut self, from_now: Timestamp, to_now: Timestamp) -> Self {
        self.expires_at = self
            .expires_at
            .map(|at| to_now.plus_millis(at.millis_since(from_now)));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_refuses_only_signed_tokens_minted_before() {
        let signed = Grant {
            issued_at_ms: Some(1_000),
            ..Grant::full()
        };
        assert!(signed.is_revoked_by(Some(1_001)));
        assert!(!signed.is_revoked_by(Some(1_000)), "minted at the instant");
        assert!(!signed.is_revoked_by(None));
        assert!(!Grant::full().is_revoked_by(Some(u64::MAX)));
    }

    #[test]
    fn rebasing_keeps_the_time_left() {
        let grant = Grant {
            expires_at: Some(Timestamp(1_700_000_005_000)),
            ..Grant::full()
        };
        let rebased = grant.rebased(Timestamp(1_700_000_000_000), Timestamp(42));
        assert_eq!(rebased.expires_at, Some(Timestamp(5_042)));
        assert!(Grant::full().is_full() && !rebased.is_full());
    }
}
