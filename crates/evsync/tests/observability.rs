//! What an operator sees (issue 14), with the real binary: Prometheus
//! `/metrics` moving with real traffic, `--metrics-listen`, `/readyz` and
//! its drain period, JSON log lines without secrets, and the dashboard's
//! access rules and JSON.

#[path = "../../evsync-server/tests/common/mod.rs"]
mod common;
mod outputs;
mod process;

use common::{Client, entries, http_get, upgrade_with};
use outputs::sample;
use process::{Serve, within};

const ADMIN: &str = "admin-token-for-observability";

/// `/metrics` once `name` reads `value`: a tenant adds its engine's
/// counts after the drain that wrote the frames a test waits for, so a
/// scrape right after may precede them by a moment.
async fn metrics_once(addr: std::net::SocketAddr, name: &str, value: f64) -> String {
    within(&format!("{name} to reach {value}"), async {
        loop {
            let text = http_get(addr, "/metrics", &[]).await.body;
            if sample(&text, name) == Some(value) {
                return text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test]
async fn metrics_follow_real_traffic() {
    let server = Serve::start(&["--storage", "memory"], &[]).await;
    let before = http_get(server.addr, "/metrics", &[]).await;
    assert_eq!(before.status, 200);
    assert!(
        before
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let mut writer = Client::connect(server.addr, "acme").await;
    writer.hello().await;
    let mut reader = Client::connect(server.addr, "acme").await;
    reader.hello().await;
    reader.request_changes("pk", 0).await;
    // Live before the write (memory storage answers the catch-up at once):
    // its delivery is then a live one, whose lag is observed.
    assert!(reader.barrier(99).await.is_empty());
    assert_eq!(writer.write("pk", 1, &entries(1..=3)).await, vec![1, 2, 3]);
    assert_eq!(reader.changes("pk", 3).await.len(), 3);
    let _ = http_get(server.addr, "/event-log/acme", &[]).await; // 426, not an auth failure
    let text = metrics_once(server.addr, "evsync_delivery_lag_seconds_count", 1.0).await;
    assert_eq!(sample(&text, "evsync_entries_appended_total"), Some(3.0));
    assert_eq!(
        sample(&text, "evsync_connections{protocol=\"v3\"}"),
        Some(2.0)
    );
    assert_eq!(sample(&text, "evsync_tenants_loaded"), Some(1.0));
    assert_eq!(
        sample(&text, "evsync_frames_received_total"),
        Some(3.0),
        "a subscription, a ping, a write"
    );
    assert!(sample(&text, "evsync_bytes_received_total").unwrap() > 0.0);
    assert!(sample(&text, "evsync_bytes_sent_total").unwrap() > 0.0);
    assert_eq!(
        sample(&text, "evsync_commit_duration_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "evsync_delivery_lag_seconds_count"),
        Some(1.0)
    );
    assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 0.0);
    assert!(sample(&text, "process_open_fds").unwrap() > 0.0);
    assert!(text.contains("process_cpu_seconds_total"));
    assert!(!text.contains("acme"), "no tenant names by default");
    drop(reader);
    let mut bad = Client::connect(server.addr, "acme").await;
    bad.hello().await;
    bad.send_raw(tokio_tungstenite::tungstenite::Message::Binary(
        vec![0xc1, 0x00].into(),
    ))
    .await;
    assert_eq!(bad.closed().await.code, Some(1002));
    let text = http_get(server.addr, "/metrics", &[]).await.body;
    assert_eq!(
        sample(
            &text,
            "evsync_connections_closed_total{reason=\"protocol_error\"}"
        ),
        Some(1.0)
    );
    server.stop_and_collect().await;
}

#[tokio::test]
async fn auth_failures_by_reason_and_per_tenant_opt_in() {
    let server = Serve::start(
        &["--storage", "memory", "--metrics-per-tenant"],
        &[("SYNC_AUTH_TOKENS", r#"{"acme":"right-token"}"#)],
    )
    .await;
    let wrong = upgrade_with(&[("Authorization", "Bearer wrong-token")]);
    assert_eq!(
        http_get(server.addr, "/event-log/acme", &wrong)
            .await
            .status,
        401
    );
    let missing = upgrade_with(&[]);
    assert_eq!(
        http_get(server.addr, "/event-log/acme", &missing)
            .await
            .status,
        401
    );
    let mut client = Client::connect_with(
        server.addr,
        "acme",
        &[("Authorization", "Bearer right-token")],
    )
    .await;
    client.hello().await;
    client.write("pk", 1, &entries(1..=2)).await;
    let appended = "evsync_tenant_entries_appended_total{tenant=\"acme\"}";
    let text = metrics_once(server.addr, appended, 2.0).await;
    assert_eq!(
        sample(&text, "evsync_auth_failures_total{reason=\"wrong\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "evsync_auth_failures_total{reason=\"missing\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "evsync_tenant_entries_appended_total{tenant=\"acme\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "evsync_tenant_connections{tenant=\"acme\"}"),
        Some(1.0)
    );
    assert!(!text.contains("right-token") && !text.contains("wrong-token"));
    server.stop_and_collect().await;
}

#[tokio::test]
async fn a_metrics_listener_takes_metrics_off_the_main_one() {
    let server = Serve::start(
        &["--storage", "memory", "--metrics-listen", "127.0.0.1:0"],
        &[],
    )
    .await;
    assert_eq!(http_get(server.addr, "/metrics", &[]).await.status, 404);
    // Port 0 picks a port; the startup line names it.
    let at = server
        .startup
        .split("metrics: http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the metrics address in the startup line");
    let at: std::net::SocketAddr = at.parse().expect("the bound address");
    assert_ne!(at.port(), 0, "the port actually bound");
    let r = http_get(at, "/metrics", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("evsync_connections"));
    assert_eq!(
        http_get(at, "/event-log/acme", &[]).await.status,
        404,
        "metrics only"
    );
    server.stop_and_collect().await;
}

#[tokio::test]
async fn readyz_turns_503_while_draining_before_the_shutdown() {
    let mut server = Serve::start(&["--storage", "memory", "--drain-secs", "30"], &[]).await;
    let r = http_get(server.addr, "/readyz", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"status":"ready"}"#));
    let mut client = Client::connect(server.addr, "acme").await;
    client.hello().await;
    server.signal("TERM");
    server.line_with(&["draining"]).await;
    let r = http_get(server.addr, "/readyz", &[]).await;
    assert_eq!(r.status, 503);
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"status": "not_ready", "reason": "draining"})
    );
    assert_eq!(http_get(server.addr, "/healthz", &[]).await.status, 200);
    // Still serving while draining: the open socket answers.
    assert!(client.barrier(1).await.is_empty());
    server.child.start_kill().unwrap();
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_without_secrets() {
    let server = Serve::start(
        &["--storage", "memory", "--log-format", "json"],
        &[
            ("SYNC_AUTH_TOKEN", "json-log-static-token"),
            ("SYNC_ADMIN_TOKEN", ADMIN),
            ("SYNC_DEBUG", "1"),
        ],
    )
    .await;
    let startup: serde_json::Value =
        serde_json::from_str(&server.startup).expect("JSON startup line");
    assert_eq!(startup["level"], "INFO");
    assert!(startup["timestamp"].is_string());
    assert!(startup["target"].is_string());
    assert!(
        startup["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("listening on")
    );
    let wrong = upgrade_with(&[("Authorization", "Bearer json-log-guess")]);
    assert_eq!(
        http_get(server.addr, "/event-log/acme", &wrong)
            .await
            .status,
        401
    );
    let bad_admin = [("Authorization", "Bearer admin-guess-admin-guess")];
    assert_eq!(
        http_get(server.addr, "/dashboard", &bad_admin).await.status,
        401
    );
    let mut client = Client::connect_with(
        server.addr,
        "acme",
        &[("Authorization", "Bearer json-log-static-token")],
    )
    .await;
    client.hello().await;
    client.write("pk", 1, &entries(1..=1)).await;
    drop(client);
    let lines = server.stop_and_collect().await;
    let mut refused = 0;
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value["fields"]["message"].is_string(), "{line}");
        if line.contains("upgrade refused") {
            refused += 1;
            assert!(value["fields"]["reason"].is_string(), "fields kept: {line}");
        }
        for secret in [
            "json-log-static-token",
            "json-log-guess",
            ADMIN,
            "admin-guess",
        ] {
            assert!(!line.contains(secret), "a secret in the log: {line}");
        }
    }
    assert_eq!(refused, 2, "{lines:#?}");
}

#[tokio::test]
async fn the_dashboard_needs_the_admin_token_off_loopback() {
    let server = Serve::start(&["--storage", "memory"], &[("SYNC_ADMIN_TOKEN", ADMIN)]).await;
    let r = http_get(server.addr, "/dashboard", &[]).await;
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .starts_with("Basic realm=\"evsync\"")
    );
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("ops:{ADMIN}"))
    );
    let page = http_get(server.addr, "/dashboard", &[("Authorization", &basic)]).await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://"),
        "nothing loaded from elsewhere"
    );
    let bearer = format!("Bearer {ADMIN}");
    let stats = http_get(
        server.addr,
        "/dashboard/stats",
        &[("Authorization", &bearer)],
    )
    .await;
    let stats: serde_json::Value = serde_json::from_str(&stats.body).unwrap();
    for key in [
        "version",
        "uptimeSeconds",
        "storage",
        "ready",
        "connections",
        "tenantsLoaded",
        "totals",
        "commitSeconds",
        "deliveryLagSeconds",
        "recentCloses",
        "perTenant",
        "busiestTenants",
    ] {
        assert!(stats.get(key).is_some(), "{key} missing: {stats}");
    }
    assert_eq!(stats["ready"], true);
    assert_eq!(stats["busiestTenants"], serde_json::Value::Null);
    server.stop_and_collect().await;
    // No admin token and not loopback: off.
    let mut server = Serve::start_on("0.0.0.0:0", &["--storage", "memory"], &[]).await;
    let addr = format!("127.0.0.1:{}", server.addr.port()).parse().unwrap();
    let r = http_get(addr, "/dashboard", &[]).await;
    assert_eq!(r.status, 403);
    server.child.start_kill().unwrap();
    let _ = server.child.wait().await;
    // No admin token on a loopback listener: open.
    let server = Serve::start(&["--storage", "memory"], &[]).await;
    assert_eq!(
        http_get(server.addr, "/dashboard/stats", &[]).await.status,
        200
    );
    server.stop_and_collect().await;
}

#[tokio::test]
async fn evsync_admin_stats_prints_a_tenants_figures() {
    let server = Serve::start(&["--storage", "memory"], &[("SYNC_ADMIN_TOKEN", ADMIN)]).await;
    let mut client = Client::connect(server.addr, "acme").await;
    client.hello().await;
    client.write("pk", 1, &entries(1..=4)).await;
    let url = format!("http://{}", server.addr);
    let out = process::output(
        &["admin", "--url", &url, "stats", "acme"],
        &[("SYNC_ADMIN_TOKEN", ADMIN)],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(figures["entries"], 4);
    assert_eq!(figures["connections"], 1);
    let out = process::output(&["admin", "--url", &url, "stats", "acme"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "no token: refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    drop(client);
    server.stop_and_collect().await;
}

/// A log reader that stops reading (a stuck pipe, a slow log driver) must
/// not stop the server: log lines are written by a thread of their own,
/// and dropped once its buffer is full, never waited for by the sockets'
/// threads. After 1,000 logged closes (three pipes' worth) into a stderr
/// nobody reads, new connections are still greeted, writes acknowledged,
/// /healthz answered.
#[tokio::test]
async fn a_log_reader_that_stops_reading_does_not_stop_the_server() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // A small buffer, so that lines are dropped well within the test.
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data",
        data,
        "--log-buffer-lines",
        "100",
    ];
    let mut child = process::command(&args, &[])
        .spawn()
        .expect("spawn evsync serve");
    // Read up to the startup line, then never again: the pipe fills.
    let stderr = child.stderr.take().expect("piped stderr");
    let mut reader = tokio::io::BufReader::new(stderr).lines();
    let (_, addr) = process::read_startup(&mut reader).await;
    // Each of these is closed with 1002 and logged at info (~200 bytes):
    // 1,000 lines are three times what a 64 KiB pipe holds.
    within("1,000 closes with the log unread", async {
        for n in 0..1000 {
            let (mut client, _) = Client::connect_hello(addr, &format!("unread-{}", n % 20)).await;
            client
                .send_raw(tokio_tungstenite::tungstenite::Message::Binary(
                    bytes::Bytes::from_static(&[0xc1]),
                ))
                .await;
            let closed = client.closed().await;
            assert_eq!(closed.code, Some(1002));
        }
    })
    .await;
    let (mut client, _) = within("a Hello", Client::connect_hello(addr, "unread-last")).await;
    let acked = within("an Ack", client.write("pk", 1, &entries(1..=1))).await;
    assert_eq!(acked, vec![1]);
    assert_eq!(
        within("/healthz", http_get(addr, "/healthz", &[]))
            .await
            .status,
        200
    );
    // ~330 lines fill the pipe and 100 wait: most of the others were
    // dropped, and counted.
    let metrics = within("/metrics", http_get(addr, "/metrics", &[])).await;
    let dropped = sample(&metrics.body, "evsync_log_lines_dropped_total");
    assert!(
        dropped.is_some_and(|n| n >= 100.0),
        "dropped lines are counted: {dropped:?}"
    );
    drop(reader);
}

#[tokio::test]
async fn a_log_buffer_of_zero_lines_stops_startup() {
    let out = process::output(
        &["serve", "--storage", "memory", "--log-buffer-lines", "0"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "a configuration error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SYNC_LOG_BUFFER_LINES"), "{stderr}");
}
