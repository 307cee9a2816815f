//! LISTEN/NOTIFY between nodes, and what a node sees while the database is
//! down or its connections are cut. Each test has a server of its own: it
//! stops it or terminates its sessions.

use evsync_core::storage::conformance::{batch, batch_write, store};
use evsync_core::storage::{AsyncStorage, ReadLimit};
use evsync_storage_postgres::listen::{self, Advanced, ListenEvent, StoreAdvanced};
use evsync_storage_postgres::testing::TestPostgres;
use evsync_storage_postgres::{PgConfig, PgDatabase};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

const ALL: ReadLimit = ReadLimit {
    max_entries: usize::MAX,
    max_bytes: usize::MAX,
};

/// In the URL to show it never reaches an error (trust authentication
/// ignores it).
const PASSWORD: &str = "pw-never-printed";

/// The longest wait for an event that must come: the listener retries
/// every 5 s at most.
const PATIENCE: Duration = Duration::from_secs(30);

fn config(pg: &TestPostgres) -> PgConfig {
    let url = pg
        .url()
        .replace("postgres@", &format!("postgres:{PASSWORD}@"));
    PgConfig::parse(&url, 2).unwrap()
}

async fn next(events: &mut UnboundedReceiver<ListenEvent>) -> ListenEvent {
    tokio::time::timeout(PATIENCE, events.recv())
        .await
        .expect("an event within the patience")
        .expect("the listener runs")
}

async fn expect_listening(events: &mut UnboundedReceiver<ListenEvent>) {
    match next(events).await {
        ListenEvent::Listening => {}
        other => panic!("expected Listening, got {other:?}"),
    }
}

/// Waits for Listening, past the Lost of each attempt that failed while the
/// server was still down. Returns how many there were.
async fn listening_again(events: &mut UnboundedReceiver<ListenEvent>) -> usize {
    let mut failed = 0;
    loop {
        match next(events).await {
            ListenEvent::Listening => return failed,
            ListenEvent::Lost(why) => {
                assert!(!why.contains(PASSWORD), "{why}");
                failed += 1;
            }
            other => panic!("expected Lost or Listening, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_hears_other_nodes_and_comes_back_after_termination() {
    let pg = TestPostgres::start();
    let config = config(&pg);
    let writer = PgDatabase::new(&config).unwrap();
    writer.migrate().await.unwrap();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::spawn(listen::listen(config.clone(), tx));
    expect_listening(&mut events).await;

    let mut store = writer.tenant("acme");
    store
        .append(&[batch("pk", 1, &[1, 2]), batch("other", 1, &[3])])
        .await
        .unwrap();
    let mut heard = vec![next(&mut events).await, next(&mut events).await];
    heard.sort_by_key(|e| format!("{e:?}"));
    let advanced = |k: &str, head: u64| {
        ListenEvent::Advanced(Advanced {
            tenant: "acme".into(),
            public_key: k.into(),
            head,
        })
    };
    assert_eq!(heard, vec![advanced("other", 1), advanced("pk", 2)]);
    store.append(&[batch("pk", 1, &[1])]).await.unwrap();

    let started = Instant::now();
    assert_eq!(pg.terminate("evsync-listen"), 1, "one listening session");
    match next(&mut events).await {
        ListenEvent::Lost(why) => assert!(!why.contains(PASSWORD), "{why}"),
        other => panic!(
            "a duplicate changes no head, so nothing is announced; then the loss, not {other:?}"
        ),
    }
    expect_listening(&mut events).await;
    eprintln!(
        "listening again {:?} after the termination",
        started.elapsed()
    );
    store.append(&[batch("pk", 1, &[4])]).await.unwrap();
    assert_eq!(next(&mut events).await, advanced("pk", 3));

    drop(events);
    tokio::time::timeout(PATIENCE, listener)
        .await
        .expect("the listener ends once nobody receives")
        .unwrap();
}

/// Effect v4 stores are announced like v3 logs, apart from them, and
/// re-readable after a lost notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_hears_v4_store_commits_and_their_heads_can_be_reread() {
    let pg = TestPostgres::start();
    let config = config(&pg);
    let writer = PgDatabase::new(&config).unwrap();
    writer.migrate().await.unwrap();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let _listener = tokio::spawn(listen::listen(config.clone(), tx));
    expect_listening(&mut events).await;

    let mut tenant = writer.tenant("acme");
    let (notes, other) = (store("pk", "notes"), store("pk", "other"));
    let appended = tenant
        .append_batches(&[
            batch_write(&notes, 1, &[1, 2]),
            batch_write(&other, 2, &[3]),
            batch_write(&notes, 3, &[4]),
        ])
        .await
        .unwrap();
    assert_eq!(appended.len(), 3);
    let mut heard = vec![next(&mut events).await, next(&mut events).await];
    heard.sort_by_key(|e| format!("{e:?}"));
    let advanced = |store, head| {
        ListenEvent::StoreAdvanced(StoreAdvanced {
            tenant: "acme".into(),
            store,
            head,
        })
    };
    assert_eq!(
        heard,
        vec![advanced(notes.clone(), 3), advanced(other.clone(), 1)],
        "one notice per store whose head rose, with the store's head"
    );
    // A batch stored already raises no head: nothing announced; the next
    // real commit is.
    tenant
        .append_batches(&[batch_write(&notes, 1, &[1, 2])])
        .await
        .unwrap();
    tenant.append(&[batch("pk", 1, &[9])]).await.unwrap();
    let v3 = ListenEvent::Advanced(Advanced {
        tenant: "acme".into(),
        public_key: "pk".into(),
        head: 1,
    });
    assert_eq!(
        next(&mut events).await,
        v3,
        "the duplicate announced nothing"
    );

    let heads = writer
        .store_heads(&["acme".into(), "else".into()])
        .await
        .unwrap();
    let heads: Vec<(String, _, u64)> = heads
        .into_iter()
        .map(|h| (h.tenant, h.store, h.head))
        .collect();
    assert_eq!(
        heads,
        vec![("acme".into(), notes, 3), ("acme".into(), other, 1)],
        "what a node re-reads after a lost notification"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_is_an_error_not_a_hang_and_nothing_is_lost() {
    let pg = TestPostgres::start();
    let config = config(&pg);
    let db = PgDatabase::new(&config).unwrap();
    db.migrate().await.unwrap();
    db.ping().await.expect("ping while up");
    let mut store = db.tenant("acme");
    store.append(&[batch("pk", 1, &[1, 2, 3])]).await.unwrap();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let _listener = tokio::spawn(listen::listen(config.clone(), tx));
    expect_listening(&mut events).await;

    pg.stop();
    let started = Instant::now();
    let err = db.ping().await.expect_err("ping while down");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "ping is bounded"
    );
    assert!(err.message.contains("postgres"), "{err}");
    assert!(!err.message.contains(PASSWORD), "{err}");
    eprintln!("ping while down: {err}");
    let started = Instant::now();
    let err = store
        .append(&[batch("pk", 1, &[4])])
        .await
        .expect_err("append while down");
    assert!(!err.message.contains(PASSWORD), "{err}");
    let err = store.read("pk", 0, ALL).await.expect_err("read while down");
    assert!(!err.message.contains(PASSWORD), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "calls fail within the connect timeout, took {:?}",
        started.elapsed()
    );
    eprintln!("append while down: {err}");
    match next(&mut events).await {
        ListenEvent::Lost(why) => assert!(!why.contains(PASSWORD), "{why}"),
        other => panic!("expected Lost, got {other:?}"),
    }

    pg.start_again();
    db.ping().await.expect("ping after the restart");
    let failed = listening_again(&mut events).await;
    eprintln!("listening again after {failed} more failed attempts");
    let stored = store.read("pk", 0, ALL).await.unwrap();
    assert_eq!(
        stored.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2, 3],
        "what was committed before the stop is there, and the failed append is not"
    );
    let out = store.append(&[batch("pk", 1, &[3, 4])]).await.unwrap();
    assert_eq!(
        out[0]
            .iter()
            .map(|a| (a.sequence, a.inserted))
            .collect::<Vec<_>>(),
        [(3, false), (4, true)]
    );
}

#[tokio::test]
async fn an_unreachable_database_fails_each_call_within_seconds() {
    // Nothing listens on the port: every call is refused at once, through
    // the pool, and the listener reports it and keeps trying.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config =
        PgConfig::parse(&format!("postgres://u:{PASSWORD}@127.0.0.1:{port}/x"), 1).unwrap();
    let db = PgDatabase::new(&config).unwrap();
    let started = Instant::now();
    let err = db.migrate().await.unwrap_err();
    assert!(err.message.contains("cannot connect"), "{err}");
    assert!(err.message.contains(&config.redacted()), "{err}");
    assert!(!err.message.contains(PASSWORD), "{err}");
    assert!(db.tenant("t").remote_id().await.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let _listener = tokio::spawn(listen::listen(config, tx));
    for _ in 0..2 {
        match next(&mut events).await {
            ListenEvent::Lost(why) => assert!(!why.contains(PASSWORD), "{why}"),
            other => panic!("expected Lost, got {other:?}"),
        }
    }
}
