//! How evsync hashes, in one place. Two kinds of keys:
//!
//! - Keys a peer chooses (entry ids, log and store names, request ids):
//!   [`HashMap`] / [`HashSet`] with foldhash. Why not std's default:
//!   SipHash-1-3 was 7–9 % of the server's CPU for single-entry v4 writes on
//!   the memory store (`perf record` of `evsync serve --storage memory`
//!   under `evsync bench v4-write --writers 8`). foldhash is hashbrown's own
//!   default hasher, a few times faster on short keys, and its
//!   `fast::RandomState` is seeded per process and per map, so such keys
//!   cannot be aimed at one bucket chain ahead of time. Builds for wasm32.
//! - Ids evsync hands out itself (connection ids, its own RPC and write
//!   counters): [`IdMap`] / [`IdSet`], one multiplication per key, since no
//!   peer can choose them; every commit looks subscribers up several times.

use core::hash::{BuildHasherDefault, Hasher};

/// `std::collections::HashMap` with foldhash, for keys a peer chooses.
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// `std::collections::HashSet` with foldhash, for keys a peer chooses.
pub type HashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

/// A map keyed by an id evsync chose (a counter), hashed by [`IdHasher`].
pub type IdMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A set of ids evsync chose (see [`IdMap`]).
pub type IdSet<T> = std::collections::HashSet<T, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of an integer id: one multiplication, high bits well
/// mixed for the table's control bytes.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
