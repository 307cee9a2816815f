//! The bench's churn scenario and its ceilings, run briefly against the
//! real binary: what `scripts/bench` compares evsync with must itself
//! answer correctly, or its ratios mean nothing. Asserted: the churn
//! cycle completes against evsync and against the socket ceiling; the
//! ceiling delivers every entry to every subscriber in both fan-out modes;
//! the v4 socket ceiling acks every entry of every write, as evsync does;
//! the catch-up ceiling reads every preloaded entry, with and without the
//! socket. Not asserted: any rate (performance is measured by the bench).

mod process;

use process::{Serve, command, output, within};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// The one JSON result line a bench run prints.
fn result_of(out: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "a JSON result line, got {stdout:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Starts `evsync bench ceiling-server --fanout MODE`; its URL.
async fn ceiling(mode: &str) -> (Child, String) {
    ceiling_with(&["--fanout", mode]).await
}

/// Starts `evsync bench ceiling-server ARGS…`; its URL.
async fn ceiling_with(args: &[&str]) -> (Child, String) {
    let mut child = command(&[&["bench", "ceiling-server"], args].concat(), &[])
        .spawn()
        .expect("spawn the ceiling server");
    let stdout = child.stdout.take().expect("piped stdout");
    let line = within("the ceiling server's address", async {
        BufReader::new(stdout)
            .lines()
            .next_line()
            .await
            .expect("read stdout")
            .expect("a line")
    })
    .await;
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("`listening on ADDR`, got {line:?}"));
    (child, format!("ws://{addr}"))
}

async fn churn(url: &str) -> Value {
    let out = output(
        &[
            "bench",
            "churn",
            "--url",
            url,
            "--tenant",
            "churn-test",
            "--concurrency",
            "4",
            "--warmup",
            "0.2",
            "--duration",
            "0.5",
            "--timeout",
            "25",
        ],
        &[],
    )
    .await;
    result_of(&out)
}

#[tokio::test]
async fn the_churn_cycle_completes_against_evsync_and_the_socket_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = Serve::start(&["--storage", "memory", "--data", data], &[]).await;
    let (_ceiling, ceiling_url) = ceiling("inline").await;
    for url in [format!("ws://{}", server.addr), ceiling_url] {
        let result = churn(&url).await;
        assert_eq!(result["status"], "ok", "{url}: {result}");
        let m = &result["metrics"];
        assert!(m["cycles"].as_u64() > Some(0), "{url}: {result}");
        assert!(m.get("failed_cycles").is_none(), "{url}: {result}");
        assert!(m["p50_ms"].as_f64() > Some(0.0), "{url}: {result}");
        assert!(
            m["hello_p50_ms"].as_f64() <= m["p50_ms"].as_f64(),
            "Hello comes before the cycle's last answer: {result}"
        );
    }
}

#[tokio::test]
async fn the_socket_ceiling_delivers_every_entry_to_every_subscriber() {
    for mode in ["inline", "tasks"] {
        let (_ceiling, url) = ceiling(mode).await;
        let out = output(
            &[
                "bench",
                "fanout",
                "--url",
                &url,
                "--subscribers",
                "5",
                "--rate",
                "200",
                "--duration",
                "0.5",
                "--drain",
                "5",
                "--timeout",
                "25",
            ],
            &[],
        )
        .await;
        let result = result_of(&out);
        assert_eq!(result["status"], "ok", "{mode}: {result}");
        let m = &result["metrics"];
        let sent = m["sent"].as_u64().expect("sent");
        assert!(sent > 0, "{mode}: {result}");
        assert_eq!(m["missing"], 0, "{mode}: {result}");
        assert_eq!(m["deliveries"].as_u64(), Some(sent * 5), "{mode}: {result}");
    }
}

#[tokio::test]
async fn the_catchup_ceiling_reads_every_preloaded_entry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // The log both commands name: where, whose, how many, how large.
    let log = [
        "--data",
        data,
        "--tenant",
        "catchup",
        "--entries",
        "2000",
        "--size",
        "100",
    ];
    let preload = output(
        &[&["bench", "preload", "--format", "evsync"][..], &log].concat(),
        &[],
    )
    .await;
    assert!(preload.status.success(), "{preload:?}");
    for send in [false, true] {
        let mut args = [&["bench", "raw-catchup", "--timeout", "25"][..], &log].concat();
        if send {
            args.push("--send");
        }
        let result = result_of(&output(&args, &[]).await);
        assert_eq!(result["status"], "ok", "send={send}: {result}");
        assert_eq!(result["case"], "2k × 100B", "{result}");
        let m = &result["metrics"];
        assert_eq!(m["entries"], 2000, "send={send}: {result}");
        assert!(m["mb_per_s"].as_f64() > Some(0.0), "{result}");
        assert_eq!(m.get("wire_mb_per_s").is_some(), send, "{result}");
    }
    // A tenant that was never preloaded is an error, not an empty scan.
    let missing = result_of(
        &output(
            &[
                "bench",
                "raw-catchup",
                "--data",
                data,
                "--tenant",
                "absent",
                "--timeout",
                "25",
            ],
            &[],
        )
        .await,
    );
    assert_eq!(missing["status"], "failed", "{missing}");
}

#[tokio::test]
async fn the_v4_socket_ceiling_acks_every_entry_as_evsync_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = Serve::start(&["--storage", "memory", "--data", data], &[]).await;
    let (_ceiling, ceiling_url) = ceiling_with(&["--protocol", "v4"]).await;
    for url in [format!("ws://{}", server.addr), ceiling_url] {
        let out = output(
            &[
                "bench",
                "v4-write",
                "--url",
                &url,
                "--writers",
                "2",
                "--batches",
                "2",
                "--entries",
                "3",
                "--size",
                "100",
                "--warmup",
                "0.1",
                "--duration",
                "0.4",
                "--timeout",
                "25",
            ],
            &[],
        )
        .await;
        let result = result_of(&out);
        assert_eq!(result["status"], "ok", "{url}: {result}");
        let m = &result["metrics"];
        assert!(m["requests"].as_u64() > Some(0), "{url}: {result}");
        assert_eq!(m["bad_acks"], 0, "one ack per entry: {url}: {result}");
        assert!(m.get("failed_writes").is_none(), "{url}: {result}");
        assert!(m["entries_per_s"].as_f64() > Some(0.0), "{url}: {result}");
    }
}
