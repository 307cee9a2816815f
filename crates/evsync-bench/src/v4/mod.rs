//! Effect v4 scenarios (`evsync bench v4-write`, `v4-fanout`,
//! `v4-catchup`): the v3 write, fan-out and catch-up scenarios spoken in
//! Effect v4's eventlog protocol (Effect RPC over SchemaBinary, Ed25519
//! session auth, encrypted batches per (publicKey, storeId)) against any
//! `/v4/event-log/<tenant>` endpoint: evsync's, or Effect's own v4 server
//! (interop-v4/src/reference-server.mjs). The raw-SQLite ceiling of v4
//! writes is [`crate::raw_v4`]; the socket ceiling of its single-entry
//! rows is [`ceiling`].

pub mod catchup;
pub mod ceiling;
pub mod client;
pub mod fanout;
pub mod write;
