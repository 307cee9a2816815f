//! Splitting large messages into `ChunkedMessage` parts and reassembling
//! them with bounded memory. (Being implemented.)

/// Limits on reassembly of incoming chunked messages, per connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Most parts one message may declare (`total`).
    pub max_parts: u32,
    /// Most bytes of one reassembled message.
    pub max_message_bytes: usize,
    /// Most incomplete messages held at once.
    pub max_incomplete_messages: usize,
    /// Most bytes held across all incomplete messages.
    pub max_incomplete_bytes: usize,
    /// Most milliseconds an incomplete message may wait for its next part.
    pub max_incomplete_age_ms: u64,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_parts: 128,
            max_message_bytes: 32 * 1024 * 1024,
            max_incomplete_messages: 8,
            max_incomplete_bytes: 64 * 1024 * 1024,
            max_incomplete_age_ms: 60_000,
        }
    }
}
