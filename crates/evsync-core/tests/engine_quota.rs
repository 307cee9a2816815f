//! The tenant write rate limit (issue 17): appends over the rate wait for
//! the bucket to refill (Acks come later, nothing is refused or lost),
//! `poll_timeout` says when, and the engine tells adapters how long new
//! connections should wait (`429` + `Retry-After`).

mod support;

use bytes::Bytes;
use evsync_core::log::WriteRate;
use evsync_core::proto::v3::EngineConfig;
use evsync_core::storage::StorageOp;
use evsync_core::time::Timestamp;
use evsync_core::wire::{EncryptedEntry, Request};
use support::Harness;

fn write(h: &mut Harness, conn: evsync_core::proto::v3::ConnId, id: i64, size: usize) {
    let mut entry_id = [0u8; 16];
    entry_id[0] = id as u8;
    h.send(
        conn,
        &Request::WriteEntries {
            public_key: "pk".into(),
            id,
            iv: Bytes::from(vec![0u8; 12]),
            encrypted_entries: vec![EncryptedEntry {
                entry_id: Bytes::copy_from_slice(&entry_id),
                encrypted_entry: Bytes::from(vec![1u8; size]),
            }],
        },
    );
}

fn appends_pending(h: &Harness) -> usize {
    h.pending
        .iter()
        .filter(|r| matches!(r.op, StorageOp::Append(_)))
        .count()
}

/// A tenant limited to 1,000 bytes a second, 1,000 at once.
fn rated() -> EngineConfig {
    let mut config = EngineConfig::default();
    config.log.write_rate = Some(WriteRate {
        bytes_per_sec: 1000,
        burst_bytes: 1000,
    });
    config
}

#[test]
fn writes_over_the_rate_wait_for_the_bucket_and_are_all_acked() {
    let mut h = Harness::with_config(rated());
    let conn = h.open(1);

    // 600 + 28 bytes: within the burst, at once
    write(&mut h, conn, 1, 600);
    assert_eq!(appends_pending(&h), 1);
    h.settle();
    assert!(h.ack(conn, 1).is_some());
    assert_eq!(
        h.engine.write_retry_after_secs(h.now),
        None,
        "not behind yet"
    );

    // 628 more: 372 were left, so it goes, and the bucket is 256 in debt
    write(&mut h, conn, 2, 600);
    assert_eq!(appends_pending(&h), 1);
    h.settle();
    assert!(h.ack(conn, 2).is_some());
    assert_eq!(
        h.engine.write_retry_after_secs(h.now),
        None,
        "256 ms behind: under a second, new connections are still welcome"
    );

    // the third waits until the debt is paid: 256 ms at 1,000 B/s
    write(&mut h, conn, 3, 100);
    assert_eq!(appends_pending(&h), 0, "held back by the rate limit");
    assert_eq!(h.engine.poll_timeout(), Some(Timestamp(256)));
    h.now = Timestamp(255);
    h.engine.handle_timeout(h.now);
    h.pump();
    assert_eq!(appends_pending(&h), 0, "not yet");
    h.now = Timestamp(256);
    h.engine.handle_timeout(h.now);
    h.pump();
    assert_eq!(appends_pending(&h), 1, "the debt is paid");
    h.settle();
    assert!(h.ack(conn, 3).is_some());
    assert!(h.closed.is_empty(), "nobody was disconnected");

    // a big write puts the tenant over 2 s behind: new connections wait
    write(&mut h, conn, 4, 2_100);
    h.now = h
        .engine
        .poll_timeout()
        .expect("it waits for the 128 bytes of debt write 3 left");
    h.engine.handle_timeout(h.now);
    h.pump();
    h.settle();
    assert!(h.ack(conn, 4).is_some());
    assert_eq!(h.engine.write_retry_after_secs(h.now), Some(3));
}

#[test]
fn without_a_rate_nothing_waits() {
    let mut h = Harness::new();
    let conn = h.open(1);
    for id in 1..=5 {
        write(&mut h, conn, id, 100_000);
        h.settle();
        assert!(h.ack(conn, id).is_some());
    }
    assert_eq!(h.engine.write_retry_after_secs(Timestamp(0)), None);
    assert_eq!(h.engine.poll_timeout(), None);
}

/// A tenant's two engines (v3 and v4 in `TenantEngines`) take one bucket:
/// what one writes, the other waits for.
#[test]
fn engines_that_share_a_bucket_share_the_rate() {
    let mut first = Harness::with_config(rated());
    let mut second = Harness::with_config(rated());
    let quota = first.engine.write_quota().expect("a rate, a bucket");
    second.engine.share_write_quota(quota);
    let (a, b) = (first.open(1), second.open(2));

    // 2 × 628 bytes through the first engine: the bucket is 256 in debt
    for id in 1..=2 {
        write(&mut first, a, id, 600);
        first.settle();
        assert!(first.ack(a, id).is_some());
    }
    write(&mut second, b, 1, 100);
    assert_eq!(
        appends_pending(&second),
        0,
        "the second engine waits for the debt the first one made"
    );
    assert_eq!(second.engine.poll_timeout(), Some(Timestamp(256)));
    second.now = Timestamp(256);
    second.engine.handle_timeout(second.now);
    second.pump();
    assert_eq!(appends_pending(&second), 1, "the debt is paid");
    second.settle();
    assert!(second.ack(b, 1).is_some());
}
