//! The original worker's HTTP surface, over real sockets: every status,
//! body and header, the order of the checks, token precedence and the
//! credentials (bearer, subprotocol with echo, query only when allowed).

mod common;
#[path = "common/inproc.rs"]
mod inproc;

use common::{Client, UPGRADE, http_get, http_request, upgrade_with};
use inproc::{TestServer, memory_config, start};

async fn open_server() -> TestServer {
    start(memory_config()).await
}

async fn server_with(default: Option<&str>, tokens: Option<&str>, query: bool) -> TestServer {
    let mut config = memory_config();
    config.auth = evsync_server::auth_config(default, tokens, query, "SYNC_AUTH_TOKENS").unwrap();
    start(config).await
}

#[tokio::test]
async fn unknown_paths_are_404_not_found() {
    let server = open_server().await;
    for path in [
        "/",
        "/nope",
        "/event-logs/a",
        "/event-log/a/b",
        "/event-log//",
        "/event-log/a//",
    ] {
        let r = http_get(server.addr, path, UPGRADE).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.body, "Not found", "{path}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn missing_tenant_is_400() {
    let server = open_server().await;
    for path in ["/event-log", "/event-log/", "/event-log?token=x"] {
        let r = http_get(server.addr, path, UPGRADE).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (400, "Tenant is required."),
            "{path}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn bad_tenant_is_400_even_before_auth() {
    // Auth is on, no credentials: the tenant format is still checked first.
    let server = server_with(Some("t"), None, false).await;
    let long = format!("/event-log/{}", "a".repeat(129));
    for path in [
        "/event-log/-a",
        "/event-log/bad%2Ftenant",
        "/event-log/a%20b",
        long.as_str(),
    ] {
        let r = http_get(server.addr, path, UPGRADE).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (400, "Invalid tenant format."),
            "{path}"
        );
    }
    let ok = format!("/event-log/{}", "a".repeat(128));
    assert_eq!(http_get(server.addr, &ok, UPGRADE).await.status, 401);
    server.shutdown().await;
}

#[tokio::test]
async fn unauthorized_is_401_with_www_authenticate_and_before_the_upgrade_check() {
    let server = server_with(Some("s3cret"), None, false).await;
    for headers in [
        vec![],
        upgrade_with(&[]),
        upgrade_with(&[("Authorization", "Bearer wrong")]),
        upgrade_with(&[("Authorization", "Basic s3cret")]),
        upgrade_with(&[("Sec-WebSocket-Protocol", "sync-auth.wrong")]),
    ] {
        let r = http_get(server.addr, "/event-log/acme", &headers).await;
        assert_eq!(r.status, 401, "{headers:?}");
        assert_eq!(r.body, "Unauthorized");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn non_upgrade_requests_are_426() {
    let server = server_with(Some("s3cret"), None, false).await;
    let r = http_get(
        server.addr,
        "/event-log/acme",
        &[("Authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (426, "Expected WebSocket upgrade")
    );
    let r = http_get(server.addr, "/event-log/acme/", &[("Upgrade", "h2c")]).await;
    assert_eq!(r.status, 401, "auth comes before the upgrade check");
    server.shutdown().await;
    let open = open_server().await;
    let r = http_get(open.addr, "/event-log/acme", &[]).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (426, "Expected WebSocket upgrade")
    );
    // The Upgrade value is compared case-insensitively.
    let mixed_case = [
        ("Upgrade", "WebSocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let r = http_get(open.addr, "/event-log/acme", &mixed_case).await;
    assert_eq!(r.status, 101);
    open.shutdown().await;
}

/// The handshake is evsync's own (crates/evsync-server/src/upgrade.rs):
/// RFC 6455's accept key, and a 4xx that names what is missing, as axum's
/// extractor answered before.
#[tokio::test]
async fn websocket_handshake_answers_as_rfc_6455() {
    let open = open_server().await;
    let r = http_get(open.addr, "/event-log/acme", UPGRADE).await;
    assert_eq!(r.status, 101);
    // RFC 6455 §1.3's example key and its accept value.
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(r.header("upgrade"), Some("websocket"));
    // (method, the header changed, its new value or none, status, body)
    let cases: [(&str, &str, Option<&str>, u16, &str); 5] = [
        (
            "GET",
            "Sec-WebSocket-Key",
            None,
            400,
            "`Sec-WebSocket-Key` header missing",
        ),
        (
            "GET",
            "Sec-WebSocket-Version",
            Some("8"),
            400,
            "`Sec-WebSocket-Version` header did not include '13'",
        ),
        (
            "GET",
            "Connection",
            None,
            400,
            "Connection header did not include 'upgrade'",
        ),
        // `Connection` is a token list.
        ("GET", "Connection", Some("keep-alive, Upgrade"), 101, ""),
        (
            "POST",
            "Connection",
            Some("Upgrade"),
            405,
            "Request method must be `GET`",
        ),
    ];
    for (method, name, value, status, body) in cases {
        let mut headers: Vec<(&str, &str)> = UPGRADE
            .iter()
            .copied()
            .filter(|(n, _)| *n != name)
            .collect();
        headers.extend(value.map(|v| (name, v)));
        let r = http_request(open.addr, method, "/event-log/acme", &headers).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (status, body),
            "{method} with {name}: {value:?}"
        );
    }
    open.shutdown().await;
}

#[tokio::test]
async fn token_precedence_tenant_then_star_then_shared() {
    let server = server_with(Some("shared"), Some(r#"{"alpha":"ta","*":"star"}"#), false).await;
    let status = |tenant: &'static str, token: &'static str| {
        let addr = server.addr;
        async move {
            let auth = format!("Bearer {token}");
            http_get(
                addr,
                &format!("/event-log/{tenant}"),
                &upgrade_with(&[("Authorization", auth.as_str())]),
            )
            .await
            .status
        }
    };
    assert_eq!(status("alpha", "ta").await, 101);
    assert_eq!(
        status("alpha", "star").await,
        401,
        "a tenant token replaces *"
    );
    assert_eq!(
        status("alpha", "shared").await,
        401,
        "a tenant token replaces the shared one"
    );
    assert_eq!(status("beta", "star").await, 101);
    assert_eq!(
        status("beta", "shared").await,
        401,
        "* replaces the shared token"
    );
    server.shutdown().await;

    let server = server_with(Some("shared"), Some(r#"{"alpha":"ta"}"#), false).await;
    let get = |tenant: &str, token: &str| {
        let (addr, path, auth) = (
            server.addr,
            format!("/event-log/{tenant}"),
            format!("Bearer {token}"),
        );
        async move {
            http_get(
                addr,
                &path,
                &upgrade_with(&[("Authorization", auth.as_str())]),
            )
            .await
            .status
        }
    };
    assert_eq!(get("beta", "shared").await, 101, "no *: the shared token");
    assert_eq!(get("beta", "ta").await, 401);
    server.shutdown().await;

    let server = server_with(None, Some(r#"{"alpha":"ta"}"#), false).await;
    let r = http_get(server.addr, "/event-log/beta", UPGRADE).await;
    assert_eq!(r.status, 101, "a tenant with no token at all is open");
    let r = http_get(server.addr, "/event-log/alpha", UPGRADE).await;
    assert_eq!(r.status, 401);
    server.shutdown().await;
}

#[tokio::test]
async fn subprotocol_token_is_echoed_in_the_101() {
    let server = server_with(Some("s3cret"), None, false).await;
    let r = http_get(
        server.addr,
        "/event-log/acme",
        &upgrade_with(&[("Sec-WebSocket-Protocol", "other, sync-auth.s3cret")]),
    )
    .await;
    assert_eq!(r.status, 101);
    assert_eq!(r.header("sec-websocket-protocol"), Some("sync-auth.s3cret"));

    let r = http_get(
        server.addr,
        "/event-log/acme",
        &upgrade_with(&[("Authorization", "Bearer s3cret")]),
    )
    .await;
    assert_eq!(r.status, 101);
    assert_eq!(
        r.header("sec-websocket-protocol"),
        None,
        "no protocol is selected when the token came in a header"
    );

    // A real client offering the protocol gets it selected and a Hello.
    let mut client = Client::connect_with(
        server.addr,
        "acme",
        &[("Sec-WebSocket-Protocol", "sync-auth.s3cret")],
    )
    .await;
    client.hello().await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_open_tenant_selects_an_offered_auth_subprotocol() {
    let server = server_with(None, None, false).await;
    let r = http_get(
        server.addr,
        "/event-log/acme",
        &upgrade_with(&[("Sec-WebSocket-Protocol", "sync-auth.unused")]),
    )
    .await;
    assert_eq!(r.status, 101);
    assert_eq!(
        r.header("sec-websocket-protocol"),
        Some("sync-auth.unused"),
        "a client that offers a token to an open tenant still connects"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn query_token_only_when_allowed() {
    let server = server_with(Some("s3cret"), None, false).await;
    let r = http_get(server.addr, "/event-log/acme?token=s3cret", UPGRADE).await;
    assert_eq!(
        r.status, 401,
        "?token= is refused unless SYNC_ALLOW_QUERY_TOKEN"
    );
    server.shutdown().await;

    let server = server_with(Some("s3 cret"), None, true).await;
    let r = http_get(server.addr, "/event-log/acme?a=1&token=s3+cret", UPGRADE).await;
    assert_eq!(r.status, 101, "form-decoded, like URLSearchParams");
    let r = http_get(server.addr, "/event-log/acme?token=nope", UPGRADE).await;
    assert_eq!(r.status, 401);
    server.shutdown().await;
}

#[tokio::test]
async fn healthz_reports_status_version_tenants_and_connections() {
    let server = open_server().await;
    let r = http_get(server.addr, "/healthz", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["tenants"], 0);
    assert_eq!(v["connections"], 0);

    let (mut client, _) = Client::connect_hello(server.addr, "acme").await;
    client.barrier(1).await; // the socket task is surely running now
    let v: serde_json::Value =
        serde_json::from_str(&http_get(server.addr, "/healthz", &[]).await.body).unwrap();
    assert_eq!(v["tenants"], 1);
    assert_eq!(v["connections"], 1);
    server.shutdown().await;
}

/// A client may send its first frames right behind its upgrade request,
/// in the same TCP write, before the 101: the accept thread reads them with
/// the request head, and they still reach the engine after the handshake.
#[tokio::test]
async fn frames_sent_with_the_upgrade_request_reach_the_engine() {
    use evsync_core::codec::encode_request;
    use evsync_core::wire::{Request, Response};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let server = open_server().await;
    let mut bytes = b"GET /event-log/acme HTTP/1.1\r\nHost: x\r\n".to_vec();
    for (name, value) in UPGRADE {
        bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    for id in [7, 8] {
        let ping = encode_request(&Request::Ping { id });
        let mut frame = Frame::message(ping, OpCode::Data(Data::Binary), true);
        frame.header_mut().mask = Some([1, 2, 3, 4]);
        frame.format(&mut bytes).unwrap();
    }
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&bytes).await.unwrap();

    let mut answer = Vec::new();
    let head_end = loop {
        if let Some(at) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut buf = [0u8; 1024];
        let n = common::within("the 101", tcp.read(&mut buf)).await.unwrap();
        assert_ne!(n, 0, "closed before the 101");
        answer.extend_from_slice(&buf[..n]);
    };
    assert!(answer.starts_with(b"HTTP/1.1 101"), "{answer:?}");
    let ws = tokio_tungstenite::WebSocketStream::from_partially_read(
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
        answer[head_end..].to_vec(),
        Role::Client,
        None,
    )
    .await;
    let mut client = Client::over(ws);
    client.hello().await;
    assert_eq!(client.recv().await, Response::Pong { id: 7 });
    assert_eq!(client.recv().await, Response::Pong { id: 8 });
    server.shutdown().await;
}
