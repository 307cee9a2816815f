//! Scoped tokens in the engine: what a read-only, publicKey-restricted or
//! expiring grant lets a connection do, and an operator's revocation.

mod support;

use bytes::Bytes;
use evsync_core::access::Grant;
use evsync_core::proto::close::code as close_code;
use evsync_core::storage::{ReadLimit, Storage};
use evsync_core::time::Timestamp;
use evsync_core::wire::{Request, Response};
use support::Harness;

fn read_only() -> Grant {
    Grant {
        read_only: true,
        ..Grant::full()
    }
}

fn stored(h: &mut Harness, public_key: &str) -> usize {
    let limit = ReadLimit {
        max_entries: 1000,
        max_bytes: usize::MAX,
    };
    h.store.read(public_key, 0, limit).unwrap().len()
}

#[test]
fn a_read_only_replica_reads_everything_and_its_empty_write_is_acked() {
    let mut h = Harness::new();
    let writer = h.open(1);
    let observer = h.open_with(2, read_only());
    h.send(
        observer,
        &Request::WriteEntries {
            public_key: "pk".into(),
            id: 7,
            iv: Bytes::from_static(&[0; 12]),
            encrypted_entries: Vec::new(),
        },
    );
    assert_eq!(h.ack(observer, 7), Some(Vec::new()), "the post-Hello write");
    h.request_changes(observer, "pk", 0);
    h.write(writer, "pk", &[1, 2]);
    h.settle();
    assert_eq!(h.changes(observer, "pk"), vec![1, 2]);
    assert!(!h.closed.contains_key(&observer));
}

#[test]
fn a_read_only_write_is_not_stored_and_closes_with_1008() {
    let mut h = Harness::new();
    let observer = h.open_with(1, read_only());
    let id = h.write(observer, "pk", &[1]);
    h.settle();
    let (code, reason) = h.closed[&observer].clone();
    assert_eq!(code, close_code::POLICY_VIOLATION);
    assert_eq!(reason, "read-only token: writing entries is not allowed");
    assert_eq!(h.ack(observer, id), None);
    assert_eq!(stored(&mut h, "pk"), 0);
    assert_eq!(h.appends_run, 0, "storage never saw it");
}

#[test]
fn a_public_key_restricted_token_reads_and_writes_only_its_key() {
    let mut h = Harness::new();
    let only_a = || Grant {
        public_key: Some("a".into()),
        ..Grant::full()
    };
    let conn = h.open_with(1, only_a());
    let id = h.write(conn, "a", &[1]);
    h.request_changes(conn, "a", 0);
    h.settle();
    assert_eq!(h.ack(conn, id), Some(vec![1]));
    assert_eq!(h.changes(conn, "a"), vec![1]);
    h.request_changes(conn, "b", 0);
    assert_eq!(
        h.closed[&conn].1,
        "token is restricted to another publicKey"
    );
    let writer = h.open_with(2, only_a());
    h.write(writer, "b", &[9]);
    h.settle();
    assert_eq!(h.closed[&writer].0, close_code::POLICY_VIOLATION);
    assert_eq!(stored(&mut h, "b"), 0);
}

#[test]
fn an_expiring_token_closes_its_socket_at_the_expiry() {
    let mut h = Harness::new();
    let lasting = h.open(1);
    let expiring = h.open_with(
        2,
        Grant {
            expires_at: Some(Timestamp(5_000)),
            ..Grant::full()
        },
    );
    let later = h.open_with(
        3,
        Grant {
            expires_at: Some(Timestamp(9_000)),
            ..read_only()
        },
    );
    assert_eq!(h.engine.poll_timeout(), Some(Timestamp(5_000)));
    h.engine.handle_timeout(Timestamp(4_999));
    h.pump();
    assert!(h.closed.is_empty());
    h.engine.handle_timeout(Timestamp(5_000));
    h.pump();
    assert_eq!(
        h.closed[&expiring],
        (close_code::POLICY_VIOLATION, "token expired".into())
    );
    assert_eq!(h.engine.poll_timeout(), Some(Timestamp(9_000)));
    // A socket closed before its expiry leaves no timer behind.
    h.close(later);
    assert_eq!(h.engine.poll_timeout(), None);
    assert!(!h.closed.contains_key(&lasting));
    assert_eq!(h.engine.connection_count(), 1);
}

#[test]
fn revocation_closes_every_connection_and_later_ones_open() {
    let mut h = Harness::new();
    let a = h.open(1);
    let b = h.open_with(2, read_only());
    h.request_changes(a, "pk", 0);
    h.engine.handle_revoke();
    h.pump();
    for conn in [a, b] {
        assert_eq!(
            h.closed[&conn],
            (close_code::POLICY_VIOLATION, "tokens revoked".into())
        );
    }
    assert_eq!(h.engine.connection_count(), 0);
    let c = h.open(3);
    assert!(matches!(h.responses(c), [Response::Hello { .. }]));
}

#[test]
fn a_restored_connection_keeps_its_grant() {
    let mut h = Harness::new();
    let conn = h.open_with(1, read_only());
    let grant = h.engine.grant(conn);
    assert_eq!(grant, read_only());
    let full = h.open(2);
    assert_eq!(h.engine.grant(full), Grant::full());
    // As a woken Durable Object does: a new engine, the socket restored.
    let mut woken = Harness::new();
    woken
        .engine
        .restore_connection(conn, Vec::new(), grant, woken.now);
    woken.write(conn, "pk", &[1]);
    woken.settle();
    assert_eq!(woken.closed[&conn].0, close_code::POLICY_VIOLATION);
}
