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
