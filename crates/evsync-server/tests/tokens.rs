//! Signed, scoped tokens and revocation over real sockets (issue 16):
//! signed tokens beside static ones, read-only and publicKey scopes,
//! expiry that reaches an open socket, and the admin API's revocation,
//! which survives a restart on SQLite.

mod common;
#[path = "common/inproc.rs"]
mod inproc;

use common::{Client, UPGRADE, entries, http_get, http_request, upgrade_with, within};
use evsync_core::access::AdminToken;
use evsync_core::access::signed_token::{TokenClaims, TokenSecret, mint};
use evsync_core::wire::Request;
use inproc::{TestServer, memory_config, sqlite_config, start};
use std::time::{SystemTime, UNIX_EPOCH};

const SECRET: &str = "test-secret-test-secret-test-secret!";
const ADMIN: &str = "admin-token-for-tests";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn claims(tenant: &str) -> TokenClaims {
    TokenClaims {
        tenant: tenant.into(),
        read_only: false,
        issued_at_ms: now_ms(),
        expires_at_ms: None,
        public_key: None,
    }
}

fn token(claims: &TokenClaims) -> String {
    mint(&TokenSecret::new(SECRET).unwrap(), claims)
}

fn configured(mut config: evsync_server::ServerConfig) -> evsync_server::ServerConfig {
    config.auth =
        evsync_server::auth_config(None, Some(r#"{"static":"static-token"}"#), false, "X")
            .unwrap()
            .with_token_secret(Some(TokenSecret::new(SECRET).unwrap()));
    config.admin_token = AdminToken::new(Some(ADMIN)).unwrap();
    config
}

async fn server() -> TestServer {
    start(configured(memory_config())).await
}

async fn connect(server: &TestServer, tenant: &str, token: &str) -> Client {
    let bearer = format!("Bearer {token}");
    let mut client = Client::connect_with(server.addr, tenant, &[("Authorization", &bearer)]).await;
    client.hello().await;
    client
}

async fn status_with(server: &TestServer, tenant: &str, token: &str) -> u16 {
    let bearer = format!("Bearer {token}");
    let path = format!("/event-log/{tenant}");
    http_get(
        server.addr,
        &path,
        &upgrade_with(&[("Authorization", &bearer)]),
    )
    .await
    .status
}

async fn revoke(server: &TestServer, tenant: &str, admin: Option<&str>) -> common::HttpResponse {
    let bearer = admin.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Length", "0")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer));
    }
    let path = format!("/admin/tenants/{tenant}/revoke");
    http_request(server.addr, "POST", &path, &headers).await
}

#[tokio::test]
async fn signed_tokens_open_only_their_tenant_until_they_expire() {
    let server = server().await;
    let ok = token(&claims("acme"));
    assert_eq!(status_with(&server, "acme", &ok).await, 101);
    assert_eq!(
        status_with(&server, "other", &ok).await,
        401,
        "other tenant"
    );
    let expired = token(&TokenClaims {
        expires_at_ms: Some(now_ms() - 1),
        ..claims("acme")
    });
    assert_eq!(status_with(&server, "acme", &expired).await, 401);
    let mut tampered = ok.clone().into_bytes();
    let at = tampered.len() - 2;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(status_with(&server, "acme", &tampered).await, 401);
    let r = http_get(server.addr, "/event-log/acme", UPGRADE).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (401, "Unauthorized"),
        "no longer open"
    );
    // The static token of its tenant keeps working beside them.
    assert_eq!(status_with(&server, "static", "static-token").await, 101);
    // In the subprotocol, echoed like a static one.
    let protocol = format!("sync-auth.{ok}");
    let r = http_get(
        server.addr,
        "/event-log/acme",
        &upgrade_with(&[("Sec-WebSocket-Protocol", &protocol)]),
    )
    .await;
    assert_eq!(r.status, 101);
    assert_eq!(r.header("sec-websocket-protocol"), Some(protocol.as_str()));
    server.shutdown().await;
}

#[tokio::test]
async fn a_read_only_token_reads_and_its_writes_close_the_socket() {
    let server = server().await;
    let mut writer = connect(&server, "acme", &token(&claims("acme"))).await;
    writer.write("pk", 1, &entries(1..=2)).await;
    let read_only = token(&TokenClaims {
        read_only: true,
        ..claims("acme")
    });
    let mut observer = connect(&server, "acme", &read_only).await;
    // Effect's client writes nothing right after Hello: acknowledged.
    assert_eq!(observer.write("pk", 1, &[]).await, Vec::<u64>::new());
    observer.request_changes("pk", 0).await;
    assert_eq!(observer.changes("pk", 2).await.len(), 2);
    observer
        .send(&common::write_request("pk", 2, &entries(3..=3)))
        .await;
    let closed = observer.closed().await;
    assert_eq!(closed.code, Some(1008));
    assert_eq!(
        closed.reason,
        "read-only token: writing entries is not allowed"
    );
    // Nothing of it was stored: the log still ends at 2.
    let mut reader = connect(&server, "acme", &token(&claims("acme"))).await;
    reader.request_changes("pk", 0).await;
    let seen = reader.changes("pk", 2).await;
    assert_eq!(common::sequences(&seen), vec![1, 2]);
    assert!(reader.barrier(9).await.is_empty(), "no third entry");
    server.shutdown().await;
}

#[tokio::test]
async fn a_public_key_token_is_held_to_its_key() {
    let server = server().await;
    let only_a = token(&TokenClaims {
        public_key: Some("a".into()),
        ..claims("acme")
    });
    let mut client = connect(&server, "acme", &only_a).await;
    assert_eq!(client.write("a", 1, &entries(1..=1)).await, vec![1]);
    client
        .send(&Request::RequestChanges {
            public_key: "b".into(),
            start_sequence: 0,
        })
        .await;
    let closed = client.closed().await;
    assert_eq!(closed.code, Some(1008));
    assert_eq!(closed.reason, "token is restricted to another publicKey");
    server.shutdown().await;
}

#[tokio::test]
async fn an_open_socket_is_closed_when_its_token_expires() {
    let server = server().await;
    let short = token(&TokenClaims {
        expires_at_ms: Some(now_ms() + 1_500),
        ..claims("acme")
    });
    let mut lasting = connect(&server, "acme", &token(&claims("acme"))).await;
    let mut expiring = connect(&server, "acme", &short).await;
    let closed = within("the expiry close", expiring.closed()).await;
    assert_eq!(closed.code, Some(1008));
    assert_eq!(closed.reason, "token expired");
    assert!(lasting.barrier(1).await.is_empty(), "others stay open");
    server.shutdown().await;
}

#[tokio::test]
async fn revocation_closes_sockets_and_refuses_older_tokens_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(configured(sqlite_config(dir.path()))).await;
    let old = token(&claims("acme"));
    let mut signed = connect(&server, "acme", &old).await;
    let mut other_tenant = connect(&server, "beta", &token(&claims("beta"))).await;
    let r = revoke(&server, "acme", Some(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let answer: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(answer["tenant"], "acme");
    assert_eq!(answer["closedConnections"], 1);
    let not_before = answer["tokensNotBefore"].as_u64().unwrap();
    let closed = signed.closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (Some(1008), "tokens revoked")
    );
    assert!(
        other_tenant.barrier(1).await.is_empty(),
        "other tenants untouched"
    );
    assert_eq!(status_with(&server, "acme", &old).await, 401);
    let fresh = token(&TokenClaims {
        issued_at_ms: not_before,
        ..claims("acme")
    });
    assert_eq!(status_with(&server, "acme", &fresh).await, 101);
    server.shutdown().await;
    // The revocation is stored with the tenant's data.
    let server = start(configured(sqlite_config(dir.path()))).await;
    assert_eq!(status_with(&server, "acme", &old).await, 401);
    assert_eq!(status_with(&server, "acme", &fresh).await, 101);
    server.shutdown().await;
}

#[tokio::test]
async fn the_admin_api_needs_its_token() {
    let server = server().await;
    let r = revoke(&server, "acme", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        revoke(&server, "acme", Some("not-the-admin-token"))
            .await
            .status,
        401
    );
    assert_eq!(revoke(&server, "acme", Some(SECRET)).await.status, 401);
    assert_eq!(revoke(&server, ".bad", Some(ADMIN)).await.status, 400);
    let bearer = format!("Bearer {ADMIN}");
    let r = http_get(
        server.addr,
        "/admin/tenants/acme/revoke",
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    server.shutdown().await;
    // Without SYNC_ADMIN_TOKEN the admin API is open on a loopback
    // listener only.
    let server = start(memory_config()).await;
    assert_eq!(revoke(&server, "acme", None).await.status, 200);
    server.shutdown().await;
    let mut config = memory_config();
    config.listen = "0.0.0.0:0".parse().unwrap();
    let mut server = start(config).await;
    server.addr = format!("127.0.0.1:{}", server.addr.port()).parse().unwrap();
    let r = revoke(&server, "acme", Some(ADMIN)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body, "Admin API is off: set SYNC_ADMIN_TOKEN.");
    server.shutdown().await;
}

#[tokio::test]
async fn admin_stats_report_a_tenants_figures_without_creating_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(configured(sqlite_config(dir.path()))).await;
    let bearer = format!("Bearer {ADMIN}");
    let stats = |tenant: &'static str| {
        let bearer = bearer.clone();
        let addr = server.addr;
        async move {
            let path = format!("/admin/tenants/{tenant}/stats");
            http_get(addr, &path, &[("Authorization", &bearer)]).await
        }
    };
    assert_eq!(stats("nobody").await.status, 404);
    assert!(
        !dir.path().join("tenants/nobody.sqlite").exists(),
        "not created"
    );
    let mut client = connect(&server, "acme", &token(&claims("acme"))).await;
    client.write("pk-a", 1, &entries(1..=3)).await;
    client.write("pk-b", 2, &entries(1..=2)).await;
    let r = stats("acme").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let figures: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(figures["tenant"], "acme");
    assert_eq!(figures["storage"], "sqlite");
    assert_eq!(figures["connections"], 1);
    assert_eq!(figures["logs"], 2);
    assert_eq!(figures["entries"], 5);
    assert!(figures["bytes"].as_u64().unwrap() > 0);
    assert_eq!(figures["remoteId"].as_str().unwrap().len(), 36);
    let wrong = http_get(
        server.addr,
        "/admin/tenants/acme/stats",
        &[("Authorization", "Bearer nope-nope-nope-nope")],
    )
    .await;
    assert_eq!(wrong.status, 401);
    server.shutdown().await;
}
