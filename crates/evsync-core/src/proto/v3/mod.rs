//! The Effect v3 `EventLogRemote` protocol: msgpackr messages over one
//! WebSocket, large messages split into `ChunkedMessage` parts.

pub mod framer;
