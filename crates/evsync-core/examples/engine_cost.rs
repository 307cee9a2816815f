//! The engine's own CPU cost, without sockets or storage latency: one
//! writer commits single 100-byte entries to a log with N live subscribers
//! (memory storage, every frame reported sent at once). Run it under
//! `valgrind --tool=callgrind` for a deterministic instruction count, and
//! build an older commit's copy (`git worktree add`) to compare engines:
//!
//! ```text
//! cargo build --release -p evsync-core --example engine_cost
//! valgrind --tool=callgrind target/release/examples/engine_cost 100 2000
//! ```

use bytes::Bytes;
use evsync_core::access::Grant;
use evsync_core::proto::v3::framer::FrameEncoder;
use evsync_core::proto::v3::{Action, ConnId, Engine, EngineConfig};
use evsync_core::storage::MemoryStorage;
use evsync_core::time::Timestamp;
use evsync_core::wire::{EncryptedEntry, RemoteId, Request};

const PUBLIC_KEY: &str = "pk-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Carries out the engine's actions; returns the frames sent.
fn pump(engine: &mut Engine, store: &mut MemoryStorage) -> u64 {
    let mut frames = 0;
    while let Some(action) = engine.poll_action() {
        match action {
            Action::Send { conn, frame } => {
                frames += 1;
                engine.handle_sent(conn, frame.len());
            }
            Action::Storage(request) => {
                let response = request.execute(store);
                engine.handle_storage_response(response);
            }
            Action::Close { reason, .. } => panic!("closed: {reason}"),
        }
    }
    frames
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let (Some(Ok(subscribers)), Some(Ok(commits))) = (args.next(), args.next()) else {
        eprintln!("usage: engine_cost SUBSCRIBERS COMMITS");
        std::process::exit(2);
    };
    let remote_id = RemoteId([1; 16]);
    let mut engine = Engine::new(remote_id, EngineConfig::default());
    let mut store = MemoryStorage::new(remote_id);
    let mut encoder = FrameEncoder::default();
    let now = Timestamp(0);
    let mut send = |engine: &mut Engine, conn: ConnId, request: &Request| {
        for frame in encoder.encode(request) {
            engine.handle_frame(conn, frame, now);
        }
    };
    for c in 0..=subscribers {
        engine.handle_open(ConnId(c), Grant::full(), now);
        if c > 0 {
            let subscribe = Request::RequestChanges {
                public_key: PUBLIC_KEY.into(),
                start_sequence: 0,
            };
            send(&mut engine, ConnId(c), &subscribe);
        }
        pump(&mut engine, &mut store);
    }
    let mut frames = 0;
    for i in 0..commits as i64 {
        let write = Request::WriteEntries {
            public_key: PUBLIC_KEY.into(),
            id: i,
            iv: Bytes::from_static(&[0; 12]),
            encrypted_entries: vec![EncryptedEntry {
                entry_id: Bytes::copy_from_slice(&i.to_be_bytes()),
                encrypted_entry: Bytes::from(vec![7u8; 100]),
            }],
        };
        send(&mut engine, ConnId(0), &write);
        frames += pump(&mut engine, &mut store);
    }
    println!("{subscribers} subscribers, {commits} commits: {frames} frames sent");
}
