//! evsync-client: a Rust replica for Effect's EventLog sync protocol
//! (`EventLogRemote`, Effect v3), talking to evsync or any compatible server
//! (Effect's own `EventLogServer`, the original Cloudflare worker).
//!
//! A Rust process holding an Effect identity string can read and append to
//! the same encrypted log as Effect apps: identities ([`Identity`]) use
//! Effect's string form, entries ([`Entry`]) are the same msgpack sealed
//! the same way (AES-256-GCM, [`crypto`]), and the server never sees a key.
//!
//! The [`Client`] keeps one WebSocket open, reconnects with backoff and
//! jitter after any loss, resumes by sequence without duplicates, re-sends
//! unacknowledged writes (the server dedups them by entry id), pings, and
//! splits and reassembles messages over 512,000 bytes.
//!
//! **Effect v4.** [`v4::Client`] is the same replica for Effect 4's
//! `effect/eventlog` protocol (RPC over SchemaBinary, Ed25519 session auth,
//! stores, encrypted batches), with the keys derived from the identity's
//! root secret as Effect derives them; see the [`v4`] module.
//!
//! **One iv per entry.** Effect v3 seals every entry of a batch under one
//! iv, which reuses a GCM nonce. This client draws a fresh iv per entry and
//! sends each entry in its own `WriteEntries` (the protocol has one iv per
//! request), pipelined without waiting for each `Ack`.
//!
//! # Example
//!
//! ```no_run
//! use evsync_client::{Client, Config, Identity, endpoint, msgpack};
//!
//! # async fn demo() -> Result<(), evsync_client::Error> {
//! // The identity string an Effect app got from `Identity.encodeString`.
//! let identity = Identity::from_effect_string("eyJwdWJsaWNLZXkiOi...")?;
//! let url = endpoint("ws://127.0.0.1:8787/event-log", "my-tenant")?;
//! let client = Client::connect(Config::new(url, identity).with_bearer_token("secret")).await?;
//!
//! // Entries written by the other replicas, in order, each once.
//! let mut entries = client.subscribe()?;
//!
//! // A payload as an Effect `Schema.Struct({ id, text, n })` encodes it.
//! let payload = msgpack::encode_json_text(r#"{"id":"n1","text":"hi","n":1}"#).unwrap();
//! let receipt = client.write("Note", "n1", payload).await?;
//! println!("stored at sequence {}", receipt.sequence);
//!
//! while let Some(item) = entries.recv().await {
//!     match item {
//!         Ok(entry) => println!("{} {} {:?}", entry.sequence, entry.event, entry.payload_json()),
//!         Err(bad) => eprintln!("skipped: {bad}"),
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod config;
mod connection;
pub mod crypto;
mod driver;
pub mod entry;
mod error;
pub mod identity;
pub mod msgpack;
mod outcome;
pub mod state;
pub mod v4;

#[cfg(feature = "cli")]
pub mod cli;

pub use client::{Client, DecryptedEntry, Status, Subscription, WriteReceipt};
pub use config::{Auth, Backoff, Config, endpoint, is_valid_tenant};
pub use connection::ConnectTimings;
pub use entry::{Entry, EntryId};
pub use error::{EntryError, Error};
pub use evsync_core::wire::{RemoteId, Sequence};
pub use identity::Identity;
pub use state::{StateStore, SyncState};
