//! Session authentication of Effect v4's eventlog protocol: the challenge
//! a connection's `Hello` hands out, and the check of an `Authenticate`
//! (an Ed25519 signature over a canonical payload). No I/O: the adapter
//! brings the random bytes and the clock, storage brings the signing key
//! bound to a publicKey (the first one presented wins, and is kept).
//!
//! The rules follow Effect's own server (`EventLogSessionAuth.ts`,
//! `EventLogServer.ts`): a challenge lives 30 s and repeated Hellos return
//! the same one until it is used or expires; `Authenticate` consumes it
//! whatever the outcome; every failure is `Forbidden`, which is what makes
//! the client start again with `Hello`.

use crate::time::Timestamp;
use crate::wire::RemoteId;
use ed25519_dalek::{Signature, VerifyingKey};

/// How long a challenge can be answered (Effect's `challengeTtl`).
pub const CHALLENGE_TTL_MS: u64 = 30_000;

/// The first field of the signed payload: the scheme's version.
const DOMAIN: &[u8] = b"eventlog-auth-v1";

/// Why an `Authenticate` was refused; each is a `Forbidden` error with
/// Effect's message for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthRefused {
    /// No challenge was handed out, it was used already, or it expired.
    ChallengeExpired,
    /// The stored binding could not be read or written.
    BindingLookupFailed,
    /// Wrong lengths, or the signature does not verify with the bound key.
    SignatureInvalid,
}

impl AuthRefused {
    /// The message of the `Forbidden` error, as Effect's server words it.
    pub fn message(self) -> &'static str {
        match self {
            AuthRefused::ChallengeExpired => "Session auth challenge has expired",
            AuthRefused::BindingLookupFailed => "Session auth binding lookup failed",
            AuthRefused::SignatureInvalid => "Session auth signature verification failed",
        }
    }
}

/// A connection's challenge: handed out by `Hello`, taken by
/// `Authenticate`.
#[derive(Clone, Debug, Default)]
pub struct Challenge {
    current: Option<([u8; 32], Timestamp)>,
}

impl Challenge {
    /// The challenge for a `Hello` at `now`: the one handed out before if
    /// it is still fresh, else a new one from `fresh` (32 random bytes).
    pub fn issue(&mut self, now: Timestamp, fresh: impl FnOnce() -> [u8; 32]) -> [u8; 32] {
        match self.current {
            Some((bytes, at)) if !expired(at, now) => bytes,
            _ => {
                let bytes = fresh();
                self.current = Some((bytes, now));
                bytes
            }
        }
    }

    /// Takes the challenge for an `Authenticate` at `now` (it is gone
    /// afterwards, whatever the outcome); `None` if there is none or it
    /// expired.
    pub fn take(&mut self, now: Timestamp) -> Option<[u8; 32]> {
        match self.current.take() {
            Some((bytes, at)) if !expired(at, now) => Some(bytes),
            _ => None,
        }
    }
}

fn expired(issued: Timestamp, now: Timestamp) -> bool {
    now.0.saturating_sub(issued.0) >= CHALLENGE_TTL_MS
}

/// The bytes a client signs: five fields, each a u32 big-endian length
/// and the bytes: the domain, the remoteId as 32 lowercase hex digits,
/// the challenge, the publicKey (UTF-8) and the signing key.
pub fn signed_payload(
    remote_id: &RemoteId,
    challenge: &[u8],
    public_key: &str,
    signing_public_key: &[u8],
) -> Vec<u8> {
    let hex: String = remote_id.0.iter().map(|b| format!("{b:02x}")).collect();
    let fields: [&[u8]; 5] = [
        DOMAIN,
        hex.as_bytes(),
        challenge,
        public_key.as_bytes(),
        signing_public_key,
    ];
    let mut out = Vec::with_capacity(fields.iter().map(|f| 4 + f.len()).sum());
    for field in fields {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// Checks `signature` over the payload of (`remote_id`, `challenge`,
/// `public_key`, `presented_key`) with `bound_key`, the signing key stored
/// for `public_key` (the presented one when this is its first use). The
/// payload holds the *presented* key, as the client signed it; the check
/// uses the *bound* one, so a stranger presenting its own key for a bound
/// publicKey is refused. Strict verification: no malleable signatures.
pub fn verify(
    remote_id: &RemoteId,
    challenge: &[u8],
    public_key: &str,
    presented_key: &[u8],
    signature: &[u8],
    bound_key: &[u8],
) -> Result<(), AuthRefused> {
    let bound: [u8; 32] = bound_key
        .try_into()
        .map_err(|_| AuthRefused::SignatureInvalid)?;
    let signature: [u8; 64] = signature
        .try_into()
        .map_err(|_| AuthRefused::SignatureInvalid)?;
    if presented_key.len() != 32 {
        return Err(AuthRefused::SignatureInvalid);
    }
    let key = VerifyingKey::from_bytes(&bound).map_err(|_| AuthRefused::SignatureInvalid)?;
    let payload = signed_payload(remote_id, challenge, public_key, presented_key);
    key.verify_strict(&payload, &Signature::from_bytes(&signature))
        .map_err(|_| AuthRefused::SignatureInvalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_is_reused_until_taken_or_expired() {
        let mut c = Challenge::default();
        let first = c.issue(Timestamp(0), || [1; 32]);
        assert_eq!(c.issue(Timestamp(29_999), || [2; 32]), first, "still fresh");
        assert_eq!(c.take(Timestamp(29_999)), Some(first));
        assert_eq!(c.take(Timestamp(29_999)), None, "consumed");
        let second = c.issue(Timestamp(40_000), || [3; 32]);
        assert_eq!(second, [3; 32]);
        assert_eq!(c.take(Timestamp(70_000)), None, "expired after 30 s");
        let third = c.issue(Timestamp(70_000), || [4; 32]);
        assert_eq!(
            c.issue(Timestamp(100_000), || [5; 32]),
            [5; 32],
            "replaced when expired"
        );
        assert_ne!(third, [5; 32]);
    }

    #[test]
    fn the_payload_is_five_length_prefixed_fields() {
        let payload = signed_payload(&RemoteId([0xab; 16]), &[7; 32], "pk", &[9; 32]);
        assert_eq!(&payload[..4], &16u32.to_be_bytes());
        assert_eq!(&payload[4..20], b"eventlog-auth-v1");
        assert_eq!(&payload[20..24], &32u32.to_be_bytes());
        assert_eq!(&payload[24..56], "ab".repeat(16).as_bytes());
        assert_eq!(payload.len(), 4 * 5 + 16 + 32 + 32 + 2 + 32);
    }

    #[test]
    fn wrong_lengths_are_refused_not_panics() {
        let id = RemoteId([0; 16]);
        for (presented, signature, bound) in [
            (&[0u8; 31][..], &[0u8; 64][..], &[0u8; 32][..]),
            (&[0u8; 32][..], &[0u8; 63][..], &[0u8; 32][..]),
            (&[0u8; 32][..], &[0u8; 64][..], &[0u8; 33][..]),
            (&[0u8; 32][..], &[0u8; 64][..], &[0u8; 32][..]),
        ] {
            assert_eq!(
                verify(&id, &[0; 32], "pk", presented, signature, bound),
                Err(AuthRefused::SignatureInvalid)
            );
        }
    }
}
