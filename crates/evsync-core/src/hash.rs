//! The hash maps of the hot paths: entry ids, log names, store keys and
//! request ids looked up on every write and commit.
//!
//! Why not std's default: SipHash-1-3 was 7–9 % of the server's CPU for
//! single-entry v4 writes on the memory store (`perf record` of `evsync
//! serve --storage memory` under `evsync bench v4-write --writers 8`).
//! foldhash is hashbrown's own default hasher, a few times faster on short
//! keys, and `fast::RandomState` is seeded per process and per map, so keys
//! a peer chooses (entry ids, store names) cannot be aimed at one bucket
//! chain ahead of time. Builds for wasm32.

/// `std::collections::HashMap` with foldhash.
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// `std::collections::HashSet` with foldhash.
pub type HashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
