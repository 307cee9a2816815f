//! Refused upgrades are logged (issue 18, item 2): one line per refusal
//! with its reason, the tenant, the peer's address and user agent, never a
//! token; and a flood of refusals produces a bounded number of lines that
//! still account for every refusal.

#[path = "../../evsync-server/tests/common/mod.rs"]
mod common;
mod process;

use common::{UPGRADE, http_get, upgrade_with};
use process::Serve;
use std::time::Instant;

const TOKEN: &str = "s3cret-server-token";
const GUESS: &str = "guessed-client-token";
const AGENT: &str = "refusal-test/1.0";

/// The number after `name=` in `line`, if any.
fn field(line: &str, name: &str) -> Option<u64> {
    let rest = line.split(&format!("{name}=")).nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[tokio::test]
async fn refusals_are_logged_with_reason_and_without_tokens() {
    let server = Serve::start(&["--storage", "memory"], &[("SYNC_AUTH_TOKEN", TOKEN)]).await;
    let addr = server.addr;
    let wrong = format!("Bearer {GUESS}");
    let protocol = format!("sync-auth.{GUESS}");
    let right = format!("Bearer {TOKEN}");
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case> = vec![
        (
            "/event-log/acme".into(),
            upgrade_with(&[("Authorization", &wrong), ("User-Agent", AGENT)]),
            401,
        ),
        (
            "/event-log/acme".into(),
            upgrade_with(&[("Sec-WebSocket-Protocol", &protocol), ("User-Agent", AGENT)]),
            401,
        ),
        (
            "/event-log/acme".into(),
            upgrade_with(&[("User-Agent", AGENT)]),
            401,
        ),
        (
            format!("/event-log/acme?token={GUESS}"),
            upgrade_with(&[("User-Agent", AGENT)]),
            401,
        ),
        (
            "/event-log/.bad".into(),
            upgrade_with(&[("User-Agent", AGENT)]),
            400,
        ),
        ("/nope".into(), UPGRADE.to_vec(), 404),
        (
            "/event-log/acme".into(),
            vec![("Authorization", &right)],
            426,
        ),
    ];
    for (target, headers, status) in &cases {
        assert_eq!(
            http_get(addr, target, headers).await.status,
            *status,
            "{target}"
        );
    }
    let lines = server.stop_and_collect().await;
    let refused: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("upgrade refused"))
        .collect();
    assert_eq!(refused.len(), cases.len(), "one line each:\n{lines:#?}");
    let expect = [
        ("status=401", "wrong token"),
        ("status=401", "wrong token"),
        ("status=401", "missing token"),
        ("status=401", "SYNC_ALLOW_QUERY_TOKEN is off"),
        ("status=400", "bad tenant"),
        ("status=404", "not a sync path"),
        ("status=426", "not a websocket upgrade"),
    ];
    for (line, (status, reason)) in refused.iter().zip(expect) {
        assert!(line.contains(status) && line.contains(reason), "{line}");
        assert!(line.contains("remote=\"127.0.0.1:"), "{line}");
    }
    for line in &refused[..4] {
        assert!(line.contains("tenant=\"acme\""), "{line}");
        assert!(line.contains(AGENT), "{line}");
    }
    assert!(
        !refused[4].contains("tenant="),
        "an invalid tenant is not one"
    );
    for line in &lines {
        assert!(
            !line.contains(GUESS) && !line.contains(TOKEN),
            "a token in the log: {line}"
        );
    }
}

#[tokio::test]
async fn a_flood_of_refusals_writes_bounded_lines_that_count_every_one() {
    let server = Serve::start(&["--storage", "memory"], &[("SYNC_AUTH_TOKEN", TOKEN)]).await;
    let addr = server.addr;
    let wrong = format!("Bearer {GUESS}");
    let headers = upgrade_with(&[("Authorization", &wrong)]);
    const FLOOD: u64 = 1000;
    let started = Instant::now();
    for _ in 0..FLOOD {
        assert_eq!(
            http_get(addr, "/event-log/acme", &headers).await.status,
            401
        );
    }
    let seconds = started.elapsed().as_secs();
    let lines = server.stop_and_collect().await;
    let logged: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("upgrade refused"))
        .collect();
    // A burst of 20, then 10 a second, plus rounding.
    let bound = 20 + 10 * (seconds + 1);
    assert!(
        (logged.len() as u64) <= bound,
        "{} lines for {FLOOD} refusals in {seconds} s",
        logged.len()
    );
    // Nothing is lost from the count: every refusal is a line or is
    // included in a later line's or a summary's `suppressed=`.
    let suppressed: u64 = lines
        .iter()
        .filter(|l| l.contains("upgrade refus"))
        .filter_map(|l| field(l, "suppressed"))
        .sum();
    assert_eq!(logged.len() as u64 + suppressed, FLOOD, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("upgrade refusals not logged")),
        "the end of the flood is summed up"
    );
}

#[tokio::test]
async fn signed_token_and_admin_refusals_say_why_and_never_show_a_secret() {
    use common::http_request;
    use evsync_core::access::signed_token::{TokenClaims, TokenSecret, mint};
    const SECRET: &str = "signing-secret-signing-secret-0123";
    const ADMIN: &str = "admin-token-0123456789";
    let server = Serve::start(
        &["--storage", "memory"],
        &[
            ("SYNC_TOKEN_SECRET", SECRET),
            ("SYNC_ADMIN_TOKEN", ADMIN),
            ("SYNC_DEBUG", "1"),
        ],
    )
    .await;
    let addr = server.addr;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let claims = TokenClaims {
        tenant: "acme".into(),
        read_only: false,
        issued_at_ms: now,
        expires_at_ms: None,
        public_key: None,
    };
    let secret = TokenSecret::new(SECRET).unwrap();
    let valid = mint(&secret, &claims);
    let expired = mint(
        &secret,
        &TokenClaims {
            expires_at_ms: Some(now - 1),
            ..claims.clone()
        },
    );
    let other = mint(
        &secret,
        &TokenClaims {
            tenant: "beta".into(),
            ..claims.clone()
        },
    );
    let forged = mint(&TokenSecret::new(&"f".repeat(32)).unwrap(), &claims);
    let tokens = [&valid, &expired, &other, &forged];
    for (token, status) in [
        (&expired, 401),
        (&other, 401),
        (&forged, 401),
        (&valid, 101),
    ] {
        let bearer = format!("Bearer {token}");
        let r = http_get(
            addr,
            "/event-log/acme",
            &upgrade_with(&[("Authorization", &bearer)]),
        )
        .await;
        assert_eq!(r.status, status);
    }
    let wrong_admin = http_request(
        addr,
        "POST",
        "/admin/tenants/acme/revoke",
        &[
            ("Authorization", "Bearer not-the-admin-token"),
            ("Content-Length", "0"),
        ],
    )
    .await;
    assert_eq!(wrong_admin.status, 401);
    let bearer = format!("Bearer {ADMIN}");
    let revoked = http_request(
        addr,
        "POST",
        "/admin/tenants/acme/revoke",
        &[("Authorization", &bearer), ("Content-Length", "0")],
    )
    .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let bearer = format!("Bearer {valid}");
    let r = http_get(
        addr,
        "/event-log/acme",
        &upgrade_with(&[("Authorization", &bearer)]),
    )
    .await;
    assert_eq!(r.status, 401, "minted before the revocation");
    let lines = server.stop_and_collect().await;
    for reason in [
        "token expired",
        "signed token for another tenant",
        "signed token with a bad signature",
        "wrong admin token",
        "token revoked",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains("refused") && l.contains(reason)),
            "{reason}:\n{lines:#?}"
        );
    }
    assert!(lines.iter().any(|l| l.contains("tokens revoked")));
    for line in &lines {
        assert!(
            !line.contains(SECRET) && !line.contains(ADMIN),
            "a secret: {line}"
        );
        for token in tokens {
            let (payload, signature) = token.rsplit_once('.').unwrap();
            assert!(
                !line.contains(payload) && !line.contains(signature),
                "a token in the log: {line}"
            );
        }
    }
}
