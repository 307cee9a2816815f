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

/// Why connections end, as a small fixed set for metrics labels (the close
/// reasons themselves are free text and stay in the logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CloseKind {
    /// The peer closed or the socket broke.
    Peer,
    /// Closed by the idle-socket timeout (1000).
    Idle,
    /// The server is shutting down (1001).
    GoingAway,
    /// Bad input (1002, 1007).
    ProtocolError,
    /// A frame or message over its limit (1009).
    MessageTooBig,
    /// A policy: limits, slow consumer, token scope, expiry, revocation (1008).
    PolicyViolation,
    /// Storage failed (1011).
    InternalError,
}

impl CloseKind {
    /// Every kind, in label order.
    pub const ALL: [CloseKind; 7] = [
        CloseKind::Peer,
        CloseKind::Idle,
        CloseKind::GoingAway,
        CloseKind::ProtocolError,
        CloseKind::MessageTooBig,
        CloseKind::PolicyViolation,
        CloseKind::InternalError,
    ];

    /// The kind of a close the server sends with `code`.
    pub fn of_code(close_code: u16) -> CloseKind {
        match close_code {
            code::NORMAL => CloseKind::Idle,
            code::GOING_AWAY => CloseKind::GoingAway,
            code::MESSAGE_TOO_BIG => CloseKind::MessageTooBig,
            code::POLICY_VIOLATION => CloseKind::PolicyViolation,
            code::INTERNAL_ERROR => CloseKind::InternalError,
            _ => CloseKind::ProtocolError,
        }
    }

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            CloseKind::Peer => "peer",
            CloseKind::Idle => "idle",
            CloseKind::GoingAway => "going_away",
            CloseKind::ProtocolError => "protocol_error",
            CloseKind::MessageTooBig => "message_too_big",
            CloseKind::PolicyViolation => "policy_violation",
            CloseKind::InternalError => "internal_error",
        }
    }

    /// Its index in [`CloseKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
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

/// The close code for each reason the log service closes a connection for,
/// the same in every protocol.
pub fn code_for(reason: &crate::log::CloseReason) -> u16 {
    use crate::log::CloseReason;
    match reason {
        CloseReason::SlowConsumer { .. }
        | CloseReason::TooManyUnackedWrites { .. }
        | CloseReason::TooManySubscriptions { .. } => code::POLICY_VIOLATION,
        CloseReason::WriteFailed { .. } | CloseReason::ReadFailed { .. } => code::INTERNAL_ERROR,
        CloseReason::ShuttingDown => code::GOING_AWAY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_kinds_cover_every_code_we_send() {
        assert_eq!(CloseKind::of_code(code::NORMAL), CloseKind::Idle);
        assert_eq!(CloseKind::of_code(1007), CloseKind::ProtocolError);
        for (i, kind) in CloseKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }

    #[test]
    fn reasons_are_cut_on_a_char_boundary() {
        assert_eq!(truncate_reason("short".into()), "short");
        let long = "é".repeat(100);
        let cut = truncate_reason(long);
        assert!(cut.len() <= MAX_REASON_BYTES);
        assert_eq!(cut.len(), 122, "never splits a two-byte character");
    }
}
