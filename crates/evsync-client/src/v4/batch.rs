//! Effect v4's encrypted batches (`EventLogEncryption.make`): several
//! entries sealed as one AES-256-GCM message.
//!
//! - plaintext: a SchemaBinary frame of `NonEmptyArray(Entry)` (a row run
//!   of `{payload, id, primaryKey, event}`), written with evsync-core's row
//!   codec;
//! - AAD: u32 BE byte length of the storeId ‖ the storeId (UTF-8) ‖ the
//!   16-byte entry ids in order, so a server can neither change the
//!   plaintext ids nor move a batch to another store;
//! - a random 12-byte iv per batch, the 16-byte tag after the ciphertext
//!   (WebCrypto's layout);
//! - decrypting checks that the entries inside are the listed ids, in order.

use crate::crypto::{CryptoError, IV_LEN};
use crate::entry::{Entry, EntryId};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use bytes::Bytes;
use evsync_core::proto::v4::schema_binary::rows::{read_rows, write_rows};
use evsync_core::proto::v4::schema_binary::{Reader, Text, Value, Writer};
use evsync_core::proto::v4::{self as proto, EncryptedBatch, EncryptedRemoteBatch};

/// Most entries in one batch (Effect's `maxBatchEntries`).
pub const MAX_BATCH_ENTRIES: usize = 100;
/// Most payload bytes in one batch unless it holds one entry
/// (`maxBatchPayloadBytes`).
pub const MAX_BATCH_PAYLOAD_BYTES: usize = 256 * 1024;

/// Why a received batch could not be opened.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    #[error("the decrypted batch is not Effect's entry array: {0}")]
    Decode(String),
    #[error("the entries inside the batch are not its listed entry ids")]
    IdsMismatch,
}

/// The plaintext of a batch: `NonEmptyArray(EntryFields)` as a frame.
struct Plaintext(Vec<proto::Entry>);

impl Value for Plaintext {
    const NAME: &'static str = "EntryBatch";

    fn decode(r: &mut Reader<'_>) -> Result<Self, proto::DecodeError> {
        // An empty run decodes here; `decode_plaintext` refuses it (the
        // schema is a NonEmptyArray).
        read_rows(r).map(Plaintext)
    }

    fn encode(&self, w: &mut Writer) {
        write_rows(w, &self.0);
    }
}

/// The plaintext frame of `entries` (what gets sealed).
pub fn plaintext(entries: &[Entry]) -> Vec<u8> {
    let rows = entries
        .iter()
        .map(|e| proto::Entry {
            payload: Bytes::copy_from_slice(&e.payload),
            id: Bytes::copy_from_slice(&e.id.0),
            primary_key: text(&e.primary_key),
            event: text(&e.event),
        })
        .collect();
    proto::encode(&Plaintext(rows))
}

fn text(s: &str) -> Text {
    Text::from_utf8(Bytes::copy_from_slice(s.as_bytes())).expect("a str is UTF-8")
}

/// Reads a plaintext frame back into entries.
pub fn decode_plaintext(frame: &[u8]) -> Result<Vec<Entry>, BatchError> {
    let frame = Bytes::copy_from_slice(frame);
    let Plaintext(rows) =
        proto::decode::<Plaintext>(&frame).map_err(|e| BatchError::Decode(e.to_string()))?;
    if rows.is_empty() {
        return Err(BatchError::Decode("an empty entry array".into()));
    }
    rows.into_iter()
        .map(|row| {
            Ok(Entry {
                id: EntryId::from_slice(&row.id).ok_or_else(|| {
                    BatchError::Decode(format!("an entry id of {} bytes", row.id.len()))
                })?,
                event: row.event.as_str().to_owned(),
                primary_key: row.primary_key.as_str().to_owned(),
                payload: row.payload.to_vec(),
            })
        })
        .collect()
}

/// The associated data of a batch.
pub fn additional_data(store_id: &str, entry_ids: &[EntryId]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(4 + store_id.len() + 16 * entry_ids.len());
    aad.extend_from_slice(&(store_id.len() as u32).to_be_bytes());
    aad.extend_from_slice(store_id.as_bytes());
    for id in entry_ids {
        aad.extend_from_slice(&id.0);
    }
    aad
}

/// Seals `entries` (non-empty) as one batch of `store_id` under a fresh
/// random iv.
pub fn encrypt(key: &[u8; 32], store_id: &str, entries: &[Entry]) -> EncryptedBatch {
    let mut iv = [0u8; IV_LEN];
    getrandom::fill(&mut iv).expect("the OS random number generator failed");
    encrypt_with_iv(key, store_id, entries, &iv)
}

/// [`encrypt`] with a given iv. Only for known-answer tests: an iv must
/// never be used twice with one key.
pub fn encrypt_with_iv(
    key: &[u8; 32],
    store_id: &str,
    entries: &[Entry],
    iv: &[u8; IV_LEN],
) -> EncryptedBatch {
    assert!(!entries.is_empty(), "a batch holds at least one entry");
    let ids: Vec<EntryId> = entries.iter().map(|e| e.id).collect();
    let plain = plaintext(entries);
    let sealed = Aes256Gcm::new(key.into())
        .encrypt(
            Nonce::from_slice(iv),
            Payload {
                msg: &plain,
                aad: &additional_data(store_id, &ids),
            },
        )
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    EncryptedBatch {
        iv: Bytes::copy_from_slice(iv),
        encrypted_batch: Bytes::from(sealed),
        entry_ids: ids.iter().map(|id| Bytes::copy_from_slice(&id.0)).collect(),
    }
}

/// Opens a stored batch of `store_id`: its entries, in order (the first at
/// `batch.sequence`).
pub fn decrypt(
    key: &[u8; 32],
    store_id: &str,
    batch: &EncryptedRemoteBatch,
) -> Result<Vec<Entry>, BatchError> {
    if batch.iv.len() != IV_LEN {
        return Err(CryptoError::IvLength(batch.iv.len()).into());
    }
    let ids: Vec<EntryId> = batch
        .entry_ids
        .iter()
        .map(|id| EntryId::from_slice(id).ok_or(BatchError::IdsMismatch))
        .collect::<Result<_, _>>()?;
    let plain = Aes256Gcm::new(key.into())
        .decrypt(
            Nonce::from_slice(&batch.iv),
            Payload {
                msg: &batch.encrypted_batch,
                aad: &additional_data(store_id, &ids),
            },
        )
        .map_err(|_| CryptoError::Authentication)?;
    let entries = decode_plaintext(&plain)?;
    if entries.len() != ids.len() || entries.iter().zip(&ids).any(|(e, id)| e.id != *id) {
        return Err(BatchError::IdsMismatch);
    }
    Ok(entries)
}

/// Splits entries into batches as Effect's `toBatches` does: at most
/// [`MAX_BATCH_ENTRIES`] entries and [`MAX_BATCH_PAYLOAD_BYTES`] of payload
/// per batch; a larger entry is a batch of its own.
pub fn to_batches(entries: &[Entry]) -> Vec<&[Entry]> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, entry) in entries.iter().enumerate() {
        let size = entry.payload.len();
        let len = i - start;
        if len > 0 && (len == MAX_BATCH_ENTRIES || bytes + size > MAX_BATCH_PAYLOAD_BYTES) {
            batches.push(&entries[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < entries.len() {
        batches.push(&entries[start..]);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v4::keys::{Keys, hex};
    use crate::v4::test_vectors::{unhex, vectors};

    fn case_entries(case: &serde_json::Value) -> Vec<Entry> {
        case["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| Entry {
                id: EntryId::from_slice(&unhex(e["idHex"].as_str().unwrap())).unwrap(),
                event: e["event"].as_str().unwrap().into(),
                primary_key: e["primaryKey"].as_str().unwrap().into(),
                payload: unhex(e["payloadHex"].as_str().unwrap()),
            })
            .collect()
    }

    #[test]
    fn effects_batches_open_and_ours_match_them() {
        let v = vectors();
        let id = &v["identities"][0];
        let keys = Keys::from_root_secret(
            id["publicKey"].as_str().unwrap(),
            &unhex(id["rootSecretHex"].as_str().unwrap()),
        );
        let key = keys.encryption_key();
        let mut exact = 0;
        for case in v["batches"].as_array().unwrap() {
            let store = case["storeId"].as_str().unwrap();
            let entries = case_entries(case);
            let batch = EncryptedRemoteBatch {
                sequence: 5,
                iv: Bytes::from(unhex(case["ivHex"].as_str().unwrap())),
                encrypted_batch: Bytes::from(unhex(case["encryptedBatchHex"].as_str().unwrap())),
                entry_ids: case["entryIdsHex"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| Bytes::from(unhex(h.as_str().unwrap())))
                    .collect(),
            };
            // Effect's batch opens here, to Effect's entries.
            assert_eq!(decrypt(key, store, &batch).unwrap(), entries, "{case}");
            // Effect's plaintext decodes (interned strings included).
            let effect_plain = unhex(case["plaintextHex"].as_str().unwrap());
            assert_eq!(decode_plaintext(&effect_plain).unwrap(), entries);
            // Ours decodes the same; with nothing to intern it is Effect's
            // bytes, and so is the ciphertext under the same iv.
            let ours = plaintext(&entries);
            assert_eq!(decode_plaintext(&ours).unwrap(), entries);
            let iv: [u8; 12] = unhex(case["ivHex"].as_str().unwrap()).try_into().unwrap();
            let sealed = encrypt_with_iv(key, store, &entries, &iv);
            assert_eq!(sealed.entry_ids, batch.entry_ids);
            if ours == effect_plain {
                assert_eq!(sealed.encrypted_batch, batch.encrypted_batch);
                exact += 1;
            }
            // The AAD binds the store: another storeId does not open it.
            assert_eq!(
                decrypt(key, "elsewhere", &batch),
                Err(BatchError::Crypto(CryptoError::Authentication))
            );
            // Nor does another order of the listed ids.
            if batch.entry_ids.len() > 1 {
                let mut swapped = batch.clone();
                swapped.entry_ids.swap(0, 1);
                assert!(decrypt(key, store, &swapped).is_err());
            }
        }
        assert!(
            exact >= 2,
            "single-entry batches are byte-identical to Effect's"
        );
        assert_eq!(
            hex(&additional_data("ab", &[EntryId([1; 16])])),
            format!("000000026162{}", "01".repeat(16))
        );
    }

    #[test]
    fn batches_split_as_effect() {
        let entry = |n: usize| Entry {
            id: EntryId::new_v7(),
            event: "E".into(),
            primary_key: "k".into(),
            payload: vec![0; n],
        };
        let many: Vec<Entry> = (0..250).map(|_| entry(1)).collect();
        let sizes: Vec<usize> = to_batches(&many).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let big = vec![
            entry(10),
            entry(300_000),
            entry(10),
            entry(200_000),
            entry(100_000),
        ];
        let sizes: Vec<usize> = to_batches(&big).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [1, 1, 2, 1]);
        assert!(to_batches(&[]).is_empty());
    }
}
