//! Limits a user can set (issue 17, item 2): sockets over the total, per
//! tenant, or tenants over the loaded-tenant limit are refused with `503`
//! and `Retry-After` (never left hanging), and room frees up again as
//! sockets close and tenants unload.

mod common;
#[path = "common/inproc.rs"]
mod inproc;

use common::{Client, UPGRADE, http_get, within};
use evsync_server::{Limits, ServerConfig};
use inproc::{TestServer, memory_config, start};
use std::time::Duration;

fn limited(limits: Limits) -> ServerConfig {
    let mut config = memory_config();
    config.limits = limits;
    config.idle_grace = Duration::from_millis(20);
    config
}

async fn refused(server: &TestServer, tenant: &str) -> common::HttpResponse {
    let r = http_get(server.addr, &format!("/event-log/{tenant}"), UPGRADE).await;
    assert_eq!(r.status, 503, "{tenant}: {}", r.body);
    assert_eq!(r.header("retry-after"), Some("5"));
    r
}

/// The server's count of open sockets, from `/healthz`.
async fn open_sockets(server: &TestServer) -> u64 {
    let health = http_get(server.addr, "/healthz", &[]).await.body;
    let value: serde_json::Value = serde_json::from_str(&health).unwrap();
    value["connections"].as_u64().unwrap()
}

#[tokio::test]
async fn sockets_over_the_total_are_refused_until_one_closes() {
    let server = start(limited(Limits {
        max_connections: 2,
        ..Limits::default()
    }))
    .await;
    let mut a = Client::connect(server.addr, "t1").await;
    a.hello().await;
    let mut b = Client::connect(server.addr, "t2").await;
    b.hello().await;
    assert_eq!(refused(&server, "t3").await.body, "Too many connections.");
    drop(a);
    within("the closed socket to be counted out", async {
        while open_sockets(&server).await > 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let mut c = Client::connect(server.addr, "t3").await;
    c.hello().await;
    assert!(
        b.barrier(1).await.is_empty(),
        "the others were never disturbed"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_full_tenant_refuses_more_while_others_connect() {
    let server = start(limited(Limits {
        max_connections_per_tenant: 1,
        ..Limits::default()
    }))
    .await;
    let mut a = Client::connect(server.addr, "busy").await;
    a.hello().await;
    let r = refused(&server, "busy").await;
    assert_eq!(r.body, "Too many connections to this tenant.");
    let mut other = Client::connect(server.addr, "calm").await;
    other.hello().await;
    let metrics = http_get(server.addr, "/metrics", &[]).await.body;
    assert!(
        metrics.contains("evsync_connections_refused_total{limit=\"tenant_connections\"} 1"),
        "{metrics}"
    );
    assert!(a.barrier(1).await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn tenants_over_the_loaded_limit_wait_for_an_unload() {
    let server = start(limited(Limits {
        max_tenants: 1,
        ..Limits::default()
    }))
    .await;
    let mut a = Client::connect(server.addr, "first").await;
    a.hello().await;
    assert_eq!(
        refused(&server, "second").await.body,
        "Too many tenants loaded."
    );
    // The loaded tenant still takes sockets.
    let mut again = Client::connect(server.addr, "first").await;
    again.hello().await;
    drop(a);
    drop(again);
    server.handle.wait_loaded_tenants(|n| *n == 0).await;
    let mut b = Client::connect(server.addr, "second").await;
    b.hello().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_tenant_over_its_write_rate_is_slowed_and_refuses_new_sockets_with_429() {
    let mut config = memory_config();
    config.engine.log.write_rate = Some(evsync_core::log::WriteRate {
        bytes_per_sec: 1_000,
        burst_bytes: 1_000,
    });
    let server = start(config).await;
    let mut writer = Client::connect(server.addr, "busy").await;
    writer.hello().await;
    // 3 × ~1 KB at 1 KB/s: the second and third wait for the bucket, and
    // the third leaves the tenant about a second behind
    for id in 1..=3 {
        let acked = writer
            .write("pk", id, &[common::entry(id as u64, 1_000)])
            .await;
        assert_eq!(acked, vec![id as u64]);
    }
    // while it is behind, a new socket to that tenant waits: 429
    let r = http_get(server.addr, "/event-log/busy", UPGRADE).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body, "Too many writes to this tenant; retry later.");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(
        retry, 2,
        "Retry-After: the ~1.04 s the debt takes, rounded up"
    );
    // other tenants are not limited by it
    let mut other = Client::connect(server.addr, "quiet").await;
    other.hello().await;
    // the writer is slowed, not refused: its next write is acked once the
    // debt is paid (about a second at 1 KB/s)
    let started = std::time::Instant::now();
    assert_eq!(
        writer.write("pk", 4, &[common::entry(4, 10)]).await,
        vec![4]
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "held back by the rate: acked after {:?}",
        started.elapsed()
    );
    // and once it has caught up, new sockets are welcome again
    let mut late = Client::connect(server.addr, "busy").await;
    late.hello().await;
}
