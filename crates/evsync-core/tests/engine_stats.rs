//! The engine's counters for operators: what `take_stats` reports after
//! writes, deliveries, catch-up reads, failures and closes, and that a
//! take resets them.

mod support;

use evsync_core::access::Grant;
use evsync_core::log::LogConfig;
use evsync_core::proto::close::CloseKind;
use evsync_core::proto::v3::EngineConfig;
use support::Harness;

#[test]
fn writes_deliveries_and_frames_are_counted() {
    let mut h = Harness::new();
    let writer = h.open(1);
    let subscribers = [h.open(2), h.open(3)];
    for sub in subscribers {
        h.request_changes(sub, "pk", 0);
    }
    h.settle();
    let _ = h.engine.take_stats();
    h.write(writer, "pk", &[1, 2, 3]);
    h.write(writer, "pk", &[3]); // a duplicate: stored once
    h.settle();
    let stats = h.engine.take_stats();
    assert_eq!(stats.frames_received, 2);
    assert!(stats.bytes_received > 0);
    assert!(stats.bytes_sent > 0, "Acks and Changes were reported sent");
    assert_eq!(stats.log.entries_appended, 3);
    assert!(stats.log.commits >= 1);
    assert_eq!(stats.log.live_deliveries, 2, "one per subscriber");
    assert_eq!(h.engine.take_stats(), Default::default(), "a take resets");
}

#[test]
fn catch_up_reads_storage_errors_and_closes_are_counted() {
    let mut h = Harness::with_config(EngineConfig {
        log: LogConfig {
            tail_cache_entries: 0,
            ..LogConfig::default()
        },
        ..EngineConfig::default()
    });
    let writer = h.open(1);
    h.write(writer, "pk", &[1, 2]);
    h.settle();
    let late = h.open(2);
    h.request_changes(late, "pk", 0);
    h.settle();
    let stats = h.engine.take_stats();
    assert!(stats.log.catchup_reads >= 1, "{stats:?}");
    h.store.fail_next_call("disk full");
    h.write(writer, "pk", &[9]);
    h.settle();
    let stats = h.engine.take_stats();
    assert_eq!(stats.log.storage_errors, 1);
    assert_eq!(stats.closes[CloseKind::InternalError.index()], 1);
    let reader = h.open_with(
        3,
        Grant {
            read_only: true,
            ..Grant::full()
        },
    );
    h.write(reader, "pk", &[5]);
    h.close(late);
    let garbled = h.open(4);
    h.send_raw(garbled, bytes::Bytes::from_static(b"\xc1 not msgpack"));
    let stats = h.engine.take_stats();
    assert_eq!(stats.closes[CloseKind::PolicyViolation.index()], 1);
    assert_eq!(stats.closes[CloseKind::Peer.index()], 1);
    assert_eq!(stats.closes[CloseKind::ProtocolError.index()], 1);
}
