//! The client subcommands over Effect v4 (`--protocol v4`) as processes,
//! against the built binary's `serve`: `smoke` passes (token too), `write`
//! encodes JSON as SchemaBinary and `tail --json` decrypts and names it,
//! stores are apart, and a v3 URL is refused with a hint.

mod process;

use process::{Serve, output as run_evsync};
use std::process::Output;

async fn output(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut all = vec![("RUST_LOG", "warn")];
    all.extend_from_slice(envs);
    run_evsync(args, &all).await
}

/// `evsync smoke --protocol v4 --url URL --tenant TENANT EXTRA…`.
async fn smoke_v4(url: &str, tenant: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "smoke",
        "--protocol",
        "v4",
        "--url",
        url,
        "--tenant",
        tenant,
    ];
    args.extend_from_slice(extra);
    output(&args, &[]).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn serve(extra: &[&str]) -> Serve {
    let mut args = vec!["--storage", "memory"];
    args.extend_from_slice(extra);
    Serve::start(&args, &[]).await
}

/// The v4 base URL of a server whose v3 base is `base` (`…/event-log`).
fn v4_base(serve: &Serve) -> String {
    serve.base().replace("/event-log", "/v4/event-log")
}

#[tokio::test]
async fn smoke_v4_passes_with_and_without_a_token() {
    let serve = serve(&["--auth-token", "tok"]).await;
    let base = v4_base(&serve);
    for via in ["header", "subprotocol"] {
        let out = smoke_v4(&base, "s4", &["--token", "tok", "--token-via", via]).await;
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
        assert!(stdout.contains("(v4, publicKey"), "{stdout}");
        assert!(stdout.contains("store default"), "{stdout}");
        assert_eq!(stdout.lines().last(), Some("ok"));
    }
    let out = smoke_v4(&base, "s4", &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn write_then_tail_v4_decrypts_and_decodes_the_payload() {
    let serve = serve(&[]).await;
    let out = output(&["identity", "new"], &[]).await;
    let identity = text(&out.stdout).trim().to_owned();
    let env = [("EVSYNC_IDENTITY", identity.as_str())];
    let base = v4_base(&serve);
    let remote = ["--protocol", "v4", "--url", base.as_str(), "--tenant", "c4"];

    let mut args = vec!["write"];
    args.extend_from_slice(&remote);
    args.extend_from_slice(&[
        "--event",
        "Note",
        "--primary-key",
        "n1",
        "--payload-json",
        r#"{"id":"n1","text":"hé","n":1.5}"#,
    ]);
    let out = output(&args, &env).await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let receipt: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(receipt["sequence"], 1);

    // Another store of the same identity.
    let mut args = vec!["write", "--store-id", "other"];
    args.extend_from_slice(&remote);
    args.extend_from_slice(&[
        "--event",
        "Raw",
        "--primary-key",
        "r",
        "--payload-hex",
        "00ff",
    ]);
    let out = output(&args, &env).await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));

    let mut args = vec![
        "tail",
        "--json",
        "--limit",
        "1",
        "--payload-fields",
        "id,text,n",
    ];
    args.extend_from_slice(&remote);
    let out = output(&args, &env).await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let line: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(line["entryId"], receipt["entryId"]);
    assert_eq!(
        (line["event"].as_str(), line["primaryKey"].as_str()),
        (Some("Note"), Some("n1"))
    );
    assert_eq!(
        line["payload"],
        serde_json::json!({"id": "n1", "text": "hé", "n": 1.5})
    );
    // Effect's SchemaBinary of Struct({id, text, n}) for that value.
    assert_eq!(
        line["payloadHex"],
        "192080ae8dce1b026e31f0e3c9f95e0368c3a98dc386c3751e01"
    );

    let mut args = vec!["tail", "--limit", "1", "--store-id", "other"];
    args.extend_from_slice(&remote);
    let out = output(&args, &env).await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let line = text(&out.stdout);
    assert!(
        line.starts_with("1\t") && line.contains("\tRaw\tr\thex:00ff"),
        "{line}"
    );

    // The admin figures count the v4 stores (loopback: no admin token).
    let url = format!("http://{}", serve.addr);
    let out = output(&["admin", "--url", &url, "stats", "c4"], &[]).await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let figures: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (figures["v4Stores"].as_u64(), figures["v4Entries"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(figures["entries"], 0, "v3 figures count v3 logs only");
    // And so does the list of tenants.
    let out = output(&["admin", "--url", &url, "tenants"], &[]).await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = listed["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "c4")
        .expect("c4 listed");
    assert_eq!(
        (row["v4Stores"].as_u64(), row["v4Entries"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(row["entries"], 0);
}

#[tokio::test]
async fn v4_against_a_v3_endpoint_says_so() {
    let serve = serve(&[]).await;
    let out = smoke_v4(&serve.base(), "x", &["--timeout", "5s"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("v4 endpoint"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn with_debug_the_server_logs_each_v4_request_with_what_it_names() {
    let serve = serve(&["--debug"]).await;
    let base = v4_base(&serve);
    let out = smoke_v4(&base, "dbg4", &[]).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    // "smoke: URL (v4, publicKey PK, store default)"
    let public_key = stdout
        .split("publicKey ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("the publicKey in smoke's report")
        .to_owned();
    // The reader's Changes and the writer's write come on two sockets in
    // either order: read every line once the server has stopped.
    let lines = serve.stop_and_collect().await;
    let line = |needles: &[&str]| -> String {
        lines
            .iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .unwrap_or_else(|| panic!("no line with {needles:?} in {lines:#?}"))
            .clone()
    };
    let auth = line(&["request", "protocol=\"v4\"", "EventLog.Authenticate"]);
    assert!(auth.contains(&public_key), "{public_key}: {auth}");
    let write = line(&["request", "EventLog.WriteSingle"]);
    assert!(write.contains("store_id=\"default\""), "{write}");
    assert!(write.contains("batches=1 entries=1"), "{write}");
    assert!(write.contains(&public_key), "{public_key}: {write}");
    let changes = line(&["request", "EventLog.Changes"]);
    assert!(changes.contains("start_sequence=1"), "{changes}");
    assert!(changes.contains("store_id=\"default\""), "{changes}");
    line(&["request", "tag=\"Ack\""]);
}
