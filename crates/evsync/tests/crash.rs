//! The short version of `evsync crash-test` (the 100-kill run is in
//! docs/reliability.md): the real binary SIGKILLed 10 times under write
//! load from 3 writers, unacknowledged batches resent after each restart,
//! then every acknowledged entry checked at its sequence in the stored
//! file, no gap, no duplicate, none lost.

mod process;

#[tokio::test]
async fn ten_sigkills_under_load_lose_no_acknowledged_entry() {
    let out = process::output(&["crash-test", "--kills", "10", "--writers", "3"], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "crash-test failed: {stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(summary["passed"], true, "{summary}");
    assert_eq!(summary["kills"], 10);
    assert!(summary["problems"].as_array().is_some_and(|p| p.is_empty()));
    let acked = summary["entries_acked"].as_u64().unwrap();
    assert!(
        acked > 0 && summary["entries_stored"].as_u64() == Some(acked),
        "{summary}"
    );
    assert!(
        summary["batches_resent"].as_u64().unwrap() > 0,
        "some batches were in flight at a kill: {summary}"
    );
}
