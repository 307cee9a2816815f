//! The client subcommands as processes: `evsync smoke` exits 0 against a
//! live server and 1 against a dead URL; `identity new`, `write` and
//! `tail --json` interoperate. The server is the built binary's `serve` on
//! an ephemeral port, found through its startup line.

mod process;

use process::{Serve, output as run_evsync};
use std::process::Output;

/// Runs a client command (warnings only in its logs).
async fn output(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut all = vec![("RUST_LOG", "warn")];
    all.extend_from_slice(envs);
    run_evsync(args, &all).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `evsync serve` with memory storage and `extra` options.
async fn serve(extra: &[&str]) -> Serve {
    let mut args = vec!["--storage", "memory"];
    args.extend_from_slice(extra);
    Serve::start(&args, &[]).await
}

#[tokio::test]
async fn smoke_passes_against_a_live_server() {
    let serve = serve(&[]).await;
    let out = output(
        &["smoke", "--url", &serve.base(), "--tenant", "smoke-t"],
        &[],
    )
    .await;
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    for needle in [
        "writer:",
        "reader:",
        "hello",
        "ack:",
        "delivery:",
        "sequence 1",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing from {stdout}");
    }
    assert_eq!(stdout.lines().last(), Some("ok"));
}

#[tokio::test]
async fn smoke_reads_the_original_environment_variables_and_token() {
    let serve = serve(&["--auth-token", "tok"]).await;
    let base = serve.base();
    let env = [
        ("CLOUDFLARE_SYNC_URL", base.as_str()),
        ("CLOUDFLARE_SYNC_TENANT", "env-t"),
        ("CLOUDFLARE_SYNC_TOKEN", "tok"),
    ];
    let out = output(&["smoke"], &env).await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let out = output(&["smoke", "--token-via", "subprotocol"], &env).await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));

    // Without the token: exit 1, and the reason says 401.
    let out = output(&["smoke", "--url", &base, "--tenant", "env-t"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn smoke_fails_with_exit_1_against_a_dead_url() {
    // Bind and drop a listener: nothing listens on that port now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("ws://{addr}/event-log");
    let out = output(
        &["smoke", "--url", &url, "--tenant", "t", "--timeout", "3s"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "stdout: {}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("smoke test failed"), "{stderr}");
}

#[tokio::test]
async fn write_then_tail_json_decodes_the_payloads() {
    let serve = serve(&[]).await;
    let out = output(&["identity", "new"], &[]).await;
    assert!(out.status.success());
    let identity = text(&out.stdout).trim().to_owned();
    let parsed = evsync_client::Identity::from_effect_string(&identity).expect("Effect's form");
    let env = [("EVSYNC_IDENTITY", identity.as_str())];
    let base = serve.base();
    let remote = ["--url", base.as_str(), "--tenant", "cli-t"];

    let write = |event: &'static str, key: &'static str, payload: [&'static str; 2]| {
        let mut args = vec!["write"];
        args.extend_from_slice(&remote);
        args.extend_from_slice(&["--event", event, "--primary-key", key]);
        args.extend_from_slice(&payload);
        args
    };
    let out = output(
        &write(
            "Note",
            "n1",
            ["--payload-json", r#"{"id":"n1","text":"hé","n":1.5}"#],
        ),
        &env,
    )
    .await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let receipt: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(receipt["sequence"], 1);
    let out = output(&write("Raw", "r", ["--payload-hex", "c1ff"]), &env).await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));

    let mut args = vec!["tail", "--json", "--limit", "2"];
    args.extend_from_slice(&remote);
    let out = output(&args, &env).await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["sequence"], 1);
    assert_eq!(lines[0]["event"], "Note");
    assert_eq!(lines[0]["primaryKey"], "n1");
    assert_eq!(lines[0]["entryId"], receipt["entryId"]);
    assert_eq!(
        lines[0]["payload"],
        serde_json::json!({"id": "n1", "text": "hé", "n": 1.5})
    );
    assert!(lines[0]["createdAt"].as_str().unwrap().ends_with('Z'));
    // Not MessagePack (0xc1 is reserved): shown as hex.
    assert_eq!(lines[1]["payload"], serde_json::Value::Null);
    assert_eq!(lines[1]["payloadHex"], "c1ff");

    // --from skips earlier entries; text mode shows the payload JSON.
    let mut args = vec![
        "tail",
        "--from",
        "2",
        "--limit",
        "1",
        "--identity",
        &identity,
    ];
    args.extend_from_slice(&remote);
    let out = output(&args, &[]).await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let line = text(&out.stdout);
    assert!(
        line.starts_with("2\t") && line.contains("\tRaw\tr\thex:c1ff"),
        "{line}"
    );
    assert!(text(&out.stderr).contains(parsed.public_key()));
}

#[tokio::test]
async fn bad_arguments_exit_2() {
    let out = output(
        &[
            "tail",
            "--url",
            "ws://127.0.0.1:1/event-log",
            "--tenant",
            "t",
            "--identity",
            "nope",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let out = output(
        &[
            "smoke",
            "--url",
            "ws://127.0.0.1:1/event-log",
            "--tenant",
            "bad/tenant",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
