//! Why a connection is closed, in one place for every protocol and adapter:
//! the WebSocket close codes evsync uses and the rule that a close reason
//! fits the 123 bytes RFC 6455 allows.

/// WebSocket close codes evsync uses (RFC 6455 §7.4.1).
pub mod code {
    /// A normal close: the server is done with a socket that is not broken
    /// (the idle-socket timeout).
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down; the replica should reconnect later.
    pub const GOING_AWAY: u16 = 1001;
    /// Malformed frame, unknown tag, ill-formed chunk sequence.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A policy limit (too many subscriptions, slow consumer).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A frame or reassembled message over its size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Storage failed; nothing was acknowledged, the replica retries.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Most bytes of UTF-8 a close frame's reason may carry (125 bytes of
/// payload minus the 2-byte code).
pub const MAX_REASON_BYTES: usize = 123;

/// `reason` cut to [`MAX_REASON_BYTES`] on a character boundary.
pub fn truncate_reason(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_on_a_char_boundary() {
        assert_eq!(truncate_reason("short".into()), "short");
        let long = "é".repeat(100);
        let cut = truncate_reason(long);
        assert!(cut.len() <= MAX_REASON_BYTES);
        assert_eq!(cut.len(), 122, "never splits a two-byte character");
    }
}
