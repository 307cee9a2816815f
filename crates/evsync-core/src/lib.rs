//! evsync-core: everything about syncing Effect EventLog replicas that does
//! not touch a socket, a disk or a clock.
//!
//! The native server, the Cloudflare Durable Object and the Rust client all
//! share this crate. It follows the sans-IO style of quinn-proto: callers feed
//! events in through `handle_*` methods (a frame arrived, storage answered,
//! time passed) and drain what to do next through `poll_*` methods (send this
//! frame, run this storage request, close that connection). It spawns nothing,
//! owns no socket and reads no clock, so it builds for `wasm32` and its tests
//! need no network.

pub mod access;
pub mod chunk;
pub mod codec;
pub mod export;
pub mod hash;
pub mod log;
pub mod proto;
pub mod settings;
pub mod storage;
pub mod time;
pub mod wire;
