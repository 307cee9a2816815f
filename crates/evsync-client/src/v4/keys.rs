//! The keys of an Effect v4 identity, derived from its root secret as
//! Effect 4.1.0 does (`eventlog/internal/identityRootSecretDerivation.ts`):
//! each is SHA-256(label ‖ 0x00 ‖ root secret).
//!
//! - encryption: label `effect/eventlog/identity/v1/encryption`, the
//!   AES-256-GCM key of the identity's batches;
//! - signing: label `effect/eventlog/identity/v1/signing`, the seed of the
//!   Ed25519 key that signs the session-auth payload.
//!
//! The root secret is the identity string's `privateKey` (the same string
//! form as v3: [`Identity`]). In v3 those bytes were the AES key itself; in
//! v4 nothing uses them directly.

use crate::identity::Identity;
use ed25519_dalek::{Signer as _, SigningKey};
use evsync_core::proto::v4::auth::signed_payload;
use evsync_core::wire::RemoteId;
use sha2::{Digest as _, Sha256};
use std::fmt;

/// Label of the encryption key derivation.
pub const ENCRYPTION_LABEL: &str = "effect/eventlog/identity/v1/encryption";
/// Label of the signing seed derivation.
pub const SIGNING_LABEL: &str = "effect/eventlog/identity/v1/signing";

/// SHA-256(label ‖ 0x00 ‖ root).
pub fn derive_secret(root: &[u8], label: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update([0u8]);
    h.update(root);
    h.finalize().into()
}

/// An identity's v4 keys. `Debug` shows only the public parts.
#[derive(Clone)]
pub struct Keys {
    public_key: String,
    encryption: [u8; 32],
    signing: SigningKey,
}

impl Keys {
    /// Derives the keys of `identity` (its `privateKey` is the root secret).
    pub fn derive(identity: &Identity) -> Keys {
        Keys::from_root_secret(identity.public_key(), identity.private_key())
    }

    /// Derives the keys of a publicKey and root secret of any length (Effect
    /// accepts any; its identities have 32 bytes).
    pub fn from_root_secret(public_key: impl Into<String>, root: &[u8]) -> Keys {
        Keys {
            public_key: public_key.into(),
            encryption: derive_secret(root, ENCRYPTION_LABEL),
            signing: SigningKey::from_bytes(&derive_secret(root, SIGNING_LABEL)),
        }
    }

    /// The identity's publicKey (the log's id, not a key).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The AES-256-GCM key of the identity's batches. Secret.
    pub fn encryption_key(&self) -> &[u8; 32] {
        &self.encryption
    }

    /// The Ed25519 public key the server binds to the publicKey.
    pub fn signing_public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The `Authenticate` signature for a `Hello` of `remote_id` with
    /// `challenge`: Ed25519 over evsync-core's [`signed_payload`] (the
    /// payload the server checks).
    pub fn sign_challenge(&self, remote_id: &RemoteId, challenge: &[u8]) -> [u8; 64] {
        let payload = signed_payload(
            remote_id,
            challenge,
            &self.public_key,
            &self.signing_public_key(),
        );
        self.signing.sign(&payload).to_bytes()
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("public_key", &self.public_key)
            .field("signing_public_key", &hex(&self.signing_public_key()))
            .finish_non_exhaustive()
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v4::test_vectors::{unhex, vectors};

    #[test]
    fn keys_match_effects_derivation() {
        let v = vectors();
        for id in v["identities"].as_array().unwrap() {
            let root = unhex(id["rootSecretHex"].as_str().unwrap());
            let public_key = id["publicKey"].as_str().unwrap();
            let keys = Keys::from_root_secret(public_key, &root);
            assert_eq!(
                hex(keys.encryption_key()),
                id["encryptionKeyHex"].as_str().unwrap()
            );
            assert_eq!(
                hex(&keys.signing_public_key()),
                id["signingPublicKeyHex"].as_str().unwrap()
            );
            // The identity string is v3's form; 32-byte roots parse into an
            // `Identity` and derive the same keys.
            let text = id["identityString"].as_str().unwrap();
            match Identity::from_effect_string(text) {
                Ok(identity) => {
                    assert_eq!(root.len(), 32);
                    assert_eq!(identity.to_effect_string(), text);
                    let derived = Keys::derive(&identity);
                    assert_eq!(derived.encryption_key(), keys.encryption_key());
                    assert_eq!(derived.signing_public_key(), keys.signing_public_key());
                }
                Err(e) => assert_ne!(root.len(), 32, "{e}"),
            }
        }
    }

    #[test]
    fn signatures_match_effects_and_verify_with_the_server_check() {
        let v = vectors();
        let ids = v["identities"].as_array().unwrap();
        for case in v["auth"].as_array().unwrap() {
            let id = &ids[case["identity"].as_u64().unwrap() as usize];
            let keys = Keys::from_root_secret(
                id["publicKey"].as_str().unwrap(),
                &unhex(id["rootSecretHex"].as_str().unwrap()),
            );
            let remote: [u8; 16] = unhex(case["remoteIdHex"].as_str().unwrap())
                .try_into()
                .unwrap();
            let remote = RemoteId(remote);
            let challenge = unhex(case["challengeHex"].as_str().unwrap());
            let payload = signed_payload(
                &remote,
                &challenge,
                keys.public_key(),
                &keys.signing_public_key(),
            );
            assert_eq!(hex(&payload), case["payloadHex"].as_str().unwrap());
            let signature = keys.sign_challenge(&remote, &challenge);
            assert_eq!(hex(&signature), case["signatureHex"].as_str().unwrap());
            let pk = keys.signing_public_key();
            evsync_core::proto::v4::auth::verify(
                &remote,
                &challenge,
                keys.public_key(),
                &pk,
                &signature,
                &pk,
            )
            .expect("the server's check accepts it");
        }
        assert!(!format!("{:?}", Keys::from_root_secret("pk", &[1; 32])).contains("encryption"));
    }
}
