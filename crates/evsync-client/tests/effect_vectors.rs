//! Encryption interop with Effect: entries sealed by Effect's own
//! `EventLogEncryption.layerSubtle` (fixtures made by
//! `fixtures/make-effect-vectors.cjs`) open here, decode to the same
//! entries and payloads, and re-encoding and re-sealing them gives Effect's
//! bytes exactly.

use evsync_client::{Entry, EntryId, Identity, crypto, msgpack};
use serde_json::Value;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn vectors() -> Value {
    serde_json::from_str(include_str!("fixtures/effect-vectors.json")).unwrap()
}

#[test]
fn effect_sealed_entries_open_and_decode() {
    let v = vectors();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 2);
    let mut opened = 0;
    for case in cases {
        let identity = Identity::from_effect_string(case["identity"].as_str().unwrap()).unwrap();
        assert_eq!(
            identity.to_effect_string(),
            case["identity"].as_str().unwrap(),
            "identity string round-trips byte for byte"
        );
        let iv = unhex(case["iv"].as_str().unwrap());
        for e in case["entries"].as_array().unwrap() {
            let sealed = unhex(e["encryptedEntry"].as_str().unwrap());
            let plain = crypto::open(identity.private_key(), &iv, &sealed).expect("opens");
            assert_eq!(plain, unhex(e["plaintext"].as_str().unwrap()));

            let entry = Entry::decode(&plain).unwrap();
            assert_eq!(
                entry.id,
                EntryId::from_slice(&unhex(e["id"].as_str().unwrap())).unwrap()
            );
            assert_eq!(entry.id.to_uuid_string(), e["idString"].as_str().unwrap());
            assert_eq!(
                entry.id.created_at_millis(),
                e["createdAtMillis"].as_u64().unwrap()
            );
            assert_eq!(entry.event, e["event"].as_str().unwrap());
            assert_eq!(entry.primary_key, e["primaryKey"].as_str().unwrap());
            assert_eq!(entry.payload, unhex(e["payload"].as_str().unwrap()));
            assert_eq!(
                msgpack::decode_to_json(&entry.payload).unwrap(),
                e["payloadJson"],
                "the schema'd payload decodes to the note Effect wrote"
            );

            // Our encoder writes Effect's bytes, so our ciphertext under the
            // same key and iv is Effect's ciphertext.
            assert_eq!(entry.encode(), plain);
            let iv12: [u8; 12] = iv.as_slice().try_into().unwrap();
            assert_eq!(
                crypto::seal_with_iv(identity.private_key(), &iv12, &plain),
                sealed
            );

            // A payload written from the same JSON text is Effect's payload.
            let text = serde_json::to_string(&e["payloadJson"]).unwrap();
            let reordered = msgpack::encode_json_text(&reorder(&text)).unwrap();
            assert_eq!(
                msgpack::decode_to_json(&reordered).unwrap(),
                e["payloadJson"]
            );
            opened += 1;
        }
    }
    assert!(opened >= 4);
}

/// serde_json sorts keys; rebuild the text in the Note's declaration order
/// (id, text, n), the order Effect's Schema.Struct encodes.
fn reorder(text: &str) -> String {
    let v: Value = serde_json::from_str(text).unwrap();
    format!(
        "{{\"id\":{},\"text\":{},\"n\":{}}}",
        v["id"], v["text"], v["n"]
    )
}

#[test]
fn json_payloads_match_effects_bytes() {
    let v = vectors();
    for case in v["cases"].as_array().unwrap() {
        for e in case["entries"].as_array().unwrap() {
            let text = reorder(&serde_json::to_string(&e["payloadJson"]).unwrap());
            assert_eq!(
                msgpack::encode_json_text(&text).unwrap(),
                unhex(e["payload"].as_str().unwrap()),
                "payload of {text}"
            );
        }
    }
}

#[test]
fn another_key_does_not_open() {
    let v = vectors();
    let case = &v["cases"][0];
    let e = &case["entries"][0];
    let stranger = Identity::generate();
    let iv = unhex(case["iv"].as_str().unwrap());
    let sealed = unhex(e["encryptedEntry"].as_str().unwrap());
    assert_eq!(
        crypto::open(stranger.private_key(), &iv, &sealed),
        Err(crypto::CryptoError::Authentication)
    );
}
