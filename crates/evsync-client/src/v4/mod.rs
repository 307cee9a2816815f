//! The Effect v4 replica (`effect@4.1.0`, `effect/eventlog`): Effect RPC in
//! SchemaBinary over one WebSocket, evsync's `/v4/event-log/<tenant>` or
//! Effect's own `EventLogServerEncrypted`.
//!
//! | module | job |
//! |---|---|
//! | [`keys`] | the encryption key and Ed25519 signing key derived from an identity's root secret |
//! | [`batch`] | encrypted batches: plaintext layout, AAD, AES-256-GCM, Effect's batch packing |
//! | [`payload`] | JSON ↔ SchemaBinary event payloads for the command line |
//! | [`Client`] | the replica: Hello, Authenticate, writes (`WriteSingle`/`WriteChunked`), the `Changes` stream with its acks, pings, reconnects |
//!
//! The wire codec (envelope, messages, auth payload) is evsync-core's
//! `proto::v4`, the one the server uses. The identity string is the same
//! as v3's ([`Identity`](crate::Identity)); in v4 its key is a root secret
//! from which both keys are derived.
//!
//! ```no_run
//! use evsync_client::{Config, Identity, v4};
//!
//! # async fn demo() -> Result<(), evsync_client::Error> {
//! let identity = Identity::from_effect_string("eyJwdWJsaWNLZXkiOi...")?;
//! let url = "ws://127.0.0.1:8787/v4/event-log/my-tenant";
//! let client = v4::Client::connect(Config::new(url, identity), "default").await?;
//! let mut entries = client.subscribe()?;
//! // A `Schema.Struct({ id, text, n })` payload, as Effect encodes it.
//! let payload = v4::payload::encode_json_text(r#"{"id":"n1","text":"hi","n":1}"#).unwrap();
//! let receipt = client.write("Note", "n1", payload).await?;
//! println!("stored at sequence {}", receipt.sequence);
//! while let Some(Ok(entry)) = entries.recv().await {
//!     println!("{} {}", entry.sequence, entry.event);
//! }
//! # Ok(())
//! # }
//! ```

pub mod batch;
mod client;
mod connection;
pub mod keys;
pub mod payload;

pub use batch::BatchError;
pub use client::{Client, PING_INTERVAL};
pub use keys::Keys;

#[cfg(test)]
pub(crate) mod test_vectors {
    /// Made by `tools/golden-v4/client-vectors.mjs` with Effect 4.1.0.
    pub fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("../../tests/fixtures/v4-client-vectors.json")).unwrap()
    }

    pub fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
