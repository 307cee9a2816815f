//! The core's storage conformance suite, run inside workerd against the real
//! Durable Object SQLite and D1 backends (they exist nowhere else).
//!
//! Compiled only into the test build (cargo feature `selftest`, which
//! `scripts/worker-test` turns on; `scripts/worker-build` leaves it off, so
//! the production wasm carries neither the suite nor these routes), and
//! then enabled only when `SYNC_SELF_TEST` is `true`/`1` (the test-only
//! wrangler configs set it; the deploy config does not):
//!
//! - `GET /__evsync/self-test/<do|d1>/<run>` starts the suite in a scratch
//!   Durable Object named `__selftest-<run>` (a name no tenant can have:
//!   tenants start with a letter or digit) and answers `202` at once. DO
//!   mode uses that object's own SQLite (wiped before each check); D1 mode
//!   uses fresh tenants `selftest-<run>-<n>` in `SYNC_DB`, deleted
//!   afterwards, and also checks that two tenants with the same publicKey
//!   stay apart (logs, remoteIds, tokens-not-before instants, stats). Both also
//!   check the migration from schema version 1 (D1 without dropping the
//!   shared tables: it re-records version 1 and migrates again).
//! - `GET /__evsync/self-test/result/<run>` answers `RUNNING`, `PASS …`, or
//!   `FAIL …` with the first failed assertion; callers poll it.
//!
//! Why start-then-poll: the suite reports failures by panicking, and a
//! panic aborts the wasm instance (`panic = "abort"`; there is no unwinding
//! to catch). A request whose handler aborts never settles, so a run
//! answered in the same request would leave the caller hanging. Instead the
//! run goes on in the object's `waitUntil`, and the panic hook
//! ([`panic_hook`]) writes the message into the scratch object's SQLite
//! before the abort; the next request (which re-initialises the wasm
//! instance) reads it from there.
//!
//! Why callers poll without waiting for the previous poll's answer: the
//! Worker and its objects share one wasm instance and one futures
//! executor, and a poll that arrives while the run's background future
//! works can be finished inside that future's turn; local workerd then
//! holds its answer until the isolate's next event (measured: a D1 run's
//! poll hung until any other request came, even a 404 that the Worker
//! answers alone). The next poll is such an event.

mod panic_hook;
mod status;

pub use panic_hook::install as install_panic_hook;

use crate::config;
use crate::http::text;
use crate::js;
use crate::storage::d1::D1Storage;
use crate::storage::do_sql::DoSqlStorage;
use evsync_core::storage::conformance::{self, REVOKED_AT, batch, entry_id};
use evsync_core::storage::schema::{d1::SCHEMA as D1_SCHEMA, do_sql::SCHEMA as DO_SQL_SCHEMA};
use evsync_core::storage::{AsyncStorage, ReadLimit, Storage};
use evsync_core::wire::RemoteId;
use std::cell::RefCell;
use wasm_bindgen::{JsCast, JsValue};
use worker::{Env, Response, Result, State};

/// Path prefix of the self-test routes (on the Worker and on the object).
pub const ROUTE_PREFIX: &str = "/__evsync/self-test/";

/// The variable that enables them.
pub const ENABLE_VAR: &str = "SYNC_SELF_TEST";

/// Worker side: forwards `<do|d1|result>/<run>` to the run's scratch object.
pub async fn route(rest: &str, env: &Env) -> Result<Response> {
    let Some((what, run)) = rest.split_once('/') else {
        return text(404, "Not found");
    };
    if !matches!(what, "do" | "d1" | "result") || !evsync_core::access::is_valid_tenant(run) {
        return text(404, "Not found");
    }
    let stub = env
        .durable_object(config::DO_BINDING)?
        .id_from_name(&format!("__selftest-{run}"))?
        .get_stub()?;
    stub.fetch_with_str(&format!("https://evsync.internal{ROUTE_PREFIX}{what}"))
        .await
}

/// Object side: starts the suite for `what` (`do` or `d1`), or answers the
/// run's status (`result`).
pub async fn in_object(state: &State, env: &Env, what: &str) -> Result<Response> {
    let sql = state.storage().sql();
    if let Err(err) = status::prepare(&sql) {
        return text(500, &format!("FAIL {what}: {err}"));
    }
    if what == "result" {
        return text(
            200,
            &status::read(&sql).unwrap_or_else(|| "NOT STARTED".into()),
        );
    }
    if !matches!(what, "do" | "d1") {
        return text(404, "Not found");
    }
    status::set(&sql, "RUNNING");
    panic_hook::install();
    panic_hook::set_sink(Some(sql.clone()), what);
    // A State of our own for the background run (State is not Clone).
    let raw: JsValue = AsRef::<JsValue>::as_ref(state.as_raw()).clone();
    let own = State::from(raw.unchecked_into::<worker::worker_sys::DurableObjectState>());
    let env = env.clone();
    let what = what.to_string();
    state.wait_until(async move {
        let outcome = match what.as_str() {
            "do" => run_do(&own).await,
            _ => run_d1(&env).await,
        };
        panic_hook::set_sink(None, "");
        let sql = own.storage().sql();
        match outcome {
            Ok(summary) => status::set(&sql, &format!("PASS {what}: {summary}")),
            Err(err) => status::set(&sql, &format!("FAIL {what}: {err}")),
        }
    });
    text(202, "RUNNING")
}

async fn run_do(state: &State) -> std::result::Result<String, String> {
    let storage = state.storage();
    let fresh = || {
        DoSqlStorage::wipe(&storage).expect("wiping the scratch store");
        let store = DoSqlStorage::open(&storage).expect("opening DO SQL storage");
        async move { store }
    };
    conformance::run_all(fresh).await;
    DoSqlStorage::wipe(&storage).map_err(|e| e.message)?;
    let reopen = || {
        let store = DoSqlStorage::open(&storage).expect("reopening DO SQL storage");
        async move { store }
    };
    conformance::run_persistence(reopen).await;
    do_sql_migrates_from_version_1(&storage);
    DoSqlStorage::wipe(&storage).map_err(|e| e.message)?;
    Ok(
        "conformance run_all and run_persistence on Durable Object SQLite, migration from schema version 1"
            .into(),
    )
}

/// An object whose database a build that knew only schema version 1 wrote
/// opens at the current version with its remoteId and entries, and its
/// tokens never revoked.
fn do_sql_migrates_from_version_1(storage: &worker::Storage) {
    let remote_id = RemoteId::from_random_bytes([0x5a; 16]);
    DoSqlStorage::create_version_1(storage, &remote_id).expect("writing a version 1 database");
    let mut store = DoSqlStorage::open(storage).expect("a version 1 database opens");
    assert_eq!(
        store.schema_version().expect("schema version"),
        DO_SQL_SCHEMA.version(),
        "a version 1 database is migrated to the current version"
    );
    assert_eq!(
        Storage::remote_id(&mut store).expect("remote_id"),
        remote_id,
        "migration keeps the remoteId"
    );
    assert_eq!(
        Storage::tokens_not_before(&mut store).expect("tokens_not_before"),
        None,
        "a migrated tenant's tokens were never revoked"
    );
    assert_eq!(
        Storage::set_tokens_not_before(&mut store, REVOKED_AT).expect("set_tokens_not_before"),
        REVOKED_AT
    );
    let out = Storage::append(&mut store, &[batch("pk", 1, &[1])]).expect("append");
    assert_eq!(out[0][0].sequence, 1, "the entries table still works");
    let v4 = conformance::store("pk", "default");
    let out = Storage::append_batches(&mut store, &[conformance::batch_write(&v4, 1, &[1])])
        .expect("append_batches");
    assert_eq!(
        out[0].stored_at,
        Some(1),
        "the v4 tables exist after migrating"
    );
    let mut reopened = DoSqlStorage::open(storage).expect("the migrated database reopens");
    assert_eq!(
        Storage::tokens_not_before(&mut reopened).expect("tokens_not_before"),
        Some(REVOKED_AT)
    );
}

async fn run_d1(env: &Env) -> std::result::Result<String, String> {
    if env.d1(config::D1_BINDING).is_err() {
        return Err(format!("no D1 database bound as {}", config::D1_BINDING));
    }
    let nonce: String = js::random_bytes::<6>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tenants = RefCell::new(Vec::<String>::new());
    let open = |tenant: String| {
        tenants.borrow_mut().push(tenant.clone());
        let db = env.d1(config::D1_BINDING).expect("SYNC_DB binding");
        async move {
            D1Storage::open(db, &tenant)
                .await
                .expect("opening D1 storage")
        }
    };
    let mut n = 0;
    conformance::run_all(|| {
        n += 1;
        open(format!("selftest-{nonce}-{n}"))
    })
    .await;
    conformance::run_persistence(|| open(format!("selftest-{nonce}-p"))).await;
    tenant_isolation(
        open(format!("selftest-{nonce}-x")).await,
        open(format!("selftest-{nonce}-y")).await,
    )
    .await;
    d1_migrates_from_version_1(open(format!("selftest-{nonce}-m")).await).await;
    let mut seen = tenants.borrow().clone();
    seen.sort();
    seen.dedup();
    for tenant in &seen {
        let store = open(tenant.clone()).await;
        store.delete_tenant().await.map_err(|e| e.message)?;
    }
    Ok(format!(
        "conformance run_all and run_persistence on D1, tenant isolation, migration from schema version 1; {} scratch tenants removed",
        seen.len()
    ))
}

/// D1 keeps every tenant in the same tables: the same publicKey in two
/// tenants must be two logs with their own sequences and remoteIds.
async fn tenant_isolation(mut a: D1Storage, mut b: D1Storage) {
    const ALL: ReadLimit = ReadLimit {
        max_entries: usize::MAX,
        max_bytes: usize::MAX,
    };
    let out = a
        .append(&[batch("pk", 1, &[1, 2])])
        .await
        .expect("append a");
    assert_eq!(out[0].len(), 2);
    let out = b
        .append(&[batch("pk", 1, &[2, 3])])
        .await
        .expect("append b");
    assert_eq!(
        out[0]
            .iter()
            .map(|x| (x.sequence, x.inserted))
            .collect::<Vec<_>>(),
        vec![(1, true), (2, true)],
        "tenant b's log is its own: same entryId as tenant a is new, sequences start at 1"
    );
    let read_b = b.read("pk", 0, ALL).await.expect("read b");
    assert_eq!(
        read_b
            .iter()
            .map(|e| e.entry_id.clone())
            .collect::<Vec<_>>(),
        vec![entry_id(2), entry_id(3)],
        "tenant b reads only its own entries"
    );
    assert_eq!(a.read("pk", 0, ALL).await.expect("read a").len(), 2);
    assert_ne!(
        a.remote_id().await.expect("remote id a"),
        b.remote_id().await.expect("remote id b"),
        "each tenant has its own remoteId"
    );
    assert_eq!(
        a.set_tokens_not_before(REVOKED_AT).await.expect("revoke a"),
        REVOKED_AT
    );
    assert_eq!(
        b.tokens_not_before().await.expect("tokens_not_before b"),
        None,
        "revoking tenant a's tokens leaves tenant b's"
    );
    assert_eq!(
        b.set_tokens_not_before(REVOKED_AT - 1)
            .await
            .expect("revoke b"),
        REVOKED_AT - 1,
        "tenant b's instant is its own, not raised to tenant a's"
    );
    assert_eq!(
        a.tokens_not_before().await.expect("tokens_not_before a"),
        Some(REVOKED_AT),
        "tenant a keeps its own instant"
    );
    b.append(&[batch("other", 2, &[7])])
        .await
        .expect("append b other");
    let (stats_a, stats_b) = (
        a.stats().await.expect("stats a"),
        b.stats().await.expect("stats b"),
    );
    assert_eq!(
        (stats_a.logs, stats_a.entries),
        (1, 2),
        "tenant a's figures count its own rows only"
    );
    assert_eq!(
        (stats_b.logs, stats_b.entries),
        (2, 3),
        "tenant b's figures count its own rows only"
    );
    let bytes = |entries: &[evsync_core::wire::RemoteEntry]| -> u64 {
        entries
            .iter()
            .map(|e| evsync_core::storage::entry_bytes(e) as u64)
            .sum()
    };
    assert_eq!(
        stats_a.bytes,
        bytes(&a.read("pk", 0, ALL).await.expect("read a")),
        "tenant a's bytes are its own entries'"
    );
    let v4 = conformance::store("pk", "default");
    for (store, iv) in [(&mut a, 1), (&mut b, 2)] {
        let out = store
            .append_batches(&[conformance::batch_write(&v4, iv, &[1, 2])])
            .await
            .expect("append_batches");
        assert_eq!(
            out[0].stored_at,
            Some(1),
            "each tenant's v4 store is its own: same ids are new, sequences start at 1"
        );
        assert_eq!(
            store
                .bind_signing_key("pk", &[iv; 32])
                .await
                .expect("bind_signing_key"),
            [iv; 32],
            "each tenant binds its own publicKeys"
        );
    }
    let read_b = b.read_batches(&v4, 0, ALL).await.expect("read_batches b");
    assert_eq!(read_b.len(), 1);
    assert_eq!(
        read_b[0].iv,
        bytes::Bytes::from(vec![2u8; 12]),
        "tenant b reads its own batch"
    );
}

/// The shared D1 database recorded at schema version 1 is brought up to
/// date by the next migration, every step running again over existing
/// tables, and a tenant's revocation survives it. (The tables stay: other
/// tenants share them.)
async fn d1_migrates_from_version_1(mut store: D1Storage) {
    assert_eq!(
        store
            .set_tokens_not_before(REVOKED_AT)
            .await
            .expect("set_tokens_not_before"),
        REVOKED_AT
    );
    assert_eq!(
        store
            .remigrate_from(1)
            .await
            .expect("migration from version 1"),
        D1_SCHEMA.version(),
        "version 1 is migrated to the current version"
    );
    assert_eq!(
        store.tokens_not_before().await.expect("tokens_not_before"),
        Some(REVOKED_AT),
        "migration keeps a stored revocation"
    );
    let v4 = conformance::store("pk", "default");
    let out = store
        .append_batches(&[conformance::batch_write(&v4, 1, &[1])])
        .await
        .expect("append_batches");
    assert_eq!(
        out[0].stored_at,
        Some(1),
        "the v4 tables exist after migrating"
    );
}
