//! The Effect v3 `EventLogRemote` protocol: msgpackr messages over one
//! WebSocket, large messages split into `ChunkedMessage` parts.
//!
//! - [`framer`]: messages ↔ frames, both directions (shared with clients);
//! - [`Engine`]: the session layer of one tenant over the log service;
//! - `session`: per-connection state and the encoding of log outputs;
//! - `changes` / `memo`: `Changes` packing and shared encodings;
//! - `idle`: the opt-in idle-socket timeout's deadlines.

mod changes;
mod config;
mod engine;
mod events;
pub mod framer;
mod memo;
mod session;

pub use crate::log::ConnId;
pub use config::EngineConfig;
pub use engine::Engine;
pub use events::{Action, Event};
