//! How much an export or import moves at a time, shared by the v3 and the
//! v4 part of a transfer.

use crate::storage::ReadLimit;

/// What one export read and one import transaction take at most: big
/// enough that a large tenant moves in few round trips (D1 bills per
/// call), small enough that neither holds much in memory.
pub const TRANSFER_PAGE: ReadLimit = ReadLimit {
    max_entries: 1_000,
    max_bytes: 4 * 1024 * 1024,
};
