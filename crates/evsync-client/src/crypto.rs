//! Sealing entries as Effect's `EventLogEncryption.layerSubtle` does:
//! AES-256-GCM under the identity key, a 12-byte iv, a 128-bit tag appended
//! to the ciphertext (WebCrypto's output layout), no associated data.
//!
//! Unlike Effect v3, which seals every entry of a batch under ONE iv (a
//! GCM nonce reuse that leaks the XOR of plaintexts and enables forgeries),
//! every call to [`seal`] draws a fresh random iv; the client therefore sends
//! one entry per `WriteEntries` (the protocol carries one iv per request).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};

/// Bytes of an iv (GCM nonce), as Effect uses.
pub const IV_LEN: usize = 12;

/// Bytes of the GCM tag appended to each ciphertext.
pub const TAG_LEN: usize = 16;

/// Why an entry could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CryptoError {
    /// Effect always sends 12-byte ivs; other lengths are not GCM-standard.
    #[error("iv has {0} bytes, expected 12")]
    IvLength(usize),
    /// Wrong key (another identity's entry) or tampered bytes.
    #[error("authentication failed: wrong identity key or corrupted entry")]
    Authentication,
}

/// Seals `plaintext` under `key` with a fresh random iv; returns the iv and
/// ciphertext‖tag.
pub fn seal(key: &[u8; 32], plaintext: &[u8]) -> ([u8; IV_LEN], Vec<u8>) {
    let mut iv = [0u8; IV_LEN];
    getrandom::fill(&mut iv).expect("the OS random number generator failed");
    let sealed = seal_with_iv(key, &iv, plaintext);
    (iv, sealed)
}

/// Seals with a given iv. Only for known-answer tests: reusing an iv with
/// the same key breaks GCM.
pub fn seal_with_iv(key: &[u8; 32], iv: &[u8; IV_LEN], plaintext: &[u8]) -> Vec<u8> {
    Aes256Gcm::new(key.into())
        .encrypt(Nonce::from_slice(iv), plaintext)
        .expect("AES-GCM encryption of an in-memory buffer cannot fail")
}

/// Opens ciphertext‖tag sealed under `key` with `iv`.
pub fn open(key: &[u8; 32], iv: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if iv.len() != IV_LEN {
        return Err(CryptoError::IvLength(iv.len()));
    }
    Aes256Gcm::new(key.into())
        .decrypt(Nonce::from_slice(iv), sealed)
        .map_err(|_| CryptoError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_with_fresh_ivs() {
        let key = [7u8; 32];
        let (iv1, c1) = seal(&key, b"hello");
        let (iv2, c2) = seal(&key, b"hello");
        assert_ne!(iv1, iv2, "fresh iv per seal");
        assert_ne!(c1, c2);
        assert_eq!(c1.len(), 5 + TAG_LEN);
        assert_eq!(open(&key, &iv1, &c1).unwrap(), b"hello");
        assert_eq!(
            open(&[8u8; 32], &iv1, &c1),
            Err(CryptoError::Authentication)
        );
        assert_eq!(open(&key, &iv1[..8], &c1), Err(CryptoError::IvLength(8)));
        let mut bad = c2.clone();
        bad[0] ^= 1;
        assert_eq!(open(&key, &iv2, &bad), Err(CryptoError::Authentication));
    }
}
