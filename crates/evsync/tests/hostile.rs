//! The short version of `evsync hostile` (the full run, 20 s and 10,000
//! idle sockets, is in docs/reliability.md): every attacker at once for
//! 3 s with 300 idle sockets against the real binary, while a normal
//! writer and subscriber work. Asserted: the normal client was never
//! closed and got every Ack and every entry once, in order; every attacker
//! the server closed has a logged line with a code and a reason (slowloris:
//! counted and logged, rate-limited); the server's RSS stayed under the
//! bound. Not asserted: the latency ratio (performance is measured by the
//! command, not by tests); it is in the summary.

mod process;

use std::time::Duration;

#[tokio::test]
async fn every_hostile_peer_at_once_affects_only_itself() {
    let samples = tempfile::NamedTempFile::new().expect("a temporary file");
    let samples_path = samples.path().to_str().expect("a UTF-8 path").to_owned();
    let run = process::command(
        &[
            "hostile",
            "--seconds",
            "3",
            "--idle",
            "300",
            "--samples",
            &samples_path,
        ],
        &[],
    )
    .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("evsync hostile finished within 240 s")
        .expect("run evsync hostile");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 0: all passed; 1: a check failed (possibly only the latency ratio,
    // which is not asserted here); 2 would be an error of the run itself
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "hostile did not run: {stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    let checks = &summary["checks"];
    assert_eq!(checks["normal_client_unaffected"], true, "{summary}");
    assert_eq!(
        checks["attackers_closed_with_logged_reasons"], true,
        "{summary}"
    );
    assert_eq!(checks["rss_within_bound"], true, "{summary}");
    assert_eq!(summary["idle_sockets_open"], 300, "{summary}");
    // The attackers ran in the class that keeps their CPU from the server
    // and the normal client (SCHED_IDLE by default).
    assert_eq!(summary["attacker_policy_applied"], true, "{summary}");

    let normal = &summary["normal"];
    let written = normal["written"].as_u64().unwrap();
    assert!(written > 0, "{summary}");
    assert_eq!(normal["acked"].as_u64(), Some(written), "{summary}");
    assert_eq!(normal["delivered"].as_u64(), Some(written), "{summary}");
    // --samples: one line per Ack, each phase's as many as its p99 was taken of
    let lines = std::fs::read_to_string(&samples_path).expect("the samples file");
    let phase_count = |phase: &str| {
        lines
            .lines()
            .filter(|l| l.split(' ').next() == Some(phase) && l.split(' ').count() == 3)
            .count() as u64
    };
    assert_eq!(lines.lines().count() as u64, written, "{summary}");
    for phase in ["baseline", "attack"] {
        assert_eq!(
            Some(phase_count(phase)),
            normal[phase]["ack"]["count"].as_u64(),
            "{phase} samples; {summary}"
        );
    }

    // each attacker attacked, and the server's answers were the right ones
    let attackers = &summary["attackers"];
    for who in [
        "chunk_flood",
        "oversize",
        "garbage",
        "v4_garbage",
        "v4_chunk_flood",
    ] {
        assert!(
            attackers[who]["closed_by_server_with_code"].as_u64() > Some(0),
            "{who} was closed: {summary}"
        );
    }
    assert!(
        attackers["garbage"]["ends"]["1002"].as_u64() > Some(0),
        "{summary}"
    );
    assert!(
        attackers["oversize"]["ends"]["1009"].as_u64() > Some(0),
        "{summary}"
    );
    // v4: a frame over the limit is 1009, a body that is no envelope 1002;
    // too many incomplete chunked writes 1002, an absurd piece count 1009
    for who in ["v4_garbage", "v4_chunk_flood"] {
        for code in ["1002", "1009"] {
            assert!(
                attackers[who]["ends"][code].as_u64() > Some(0),
                "{who} closed with {code}: {summary}"
            );
        }
    }
    // every v4 request before Authenticate answered Forbidden (none closed:
    // checked in the server's log below)
    let unauth = &attackers["v4_unauth"];
    assert!(
        unauth["counters"]["requests"].as_u64() > Some(0),
        "{summary}"
    );
    assert_eq!(
        unauth["counters"]["forbidden"], unauth["counters"]["requests"],
        "{summary}"
    );
    assert!(
        attackers["churn"]["connects"].as_u64() > Some(0),
        "{summary}"
    );
    assert!(
        attackers["ping_flood"]["counters"]["pongs"].as_u64() > Some(0),
        "{summary}"
    );
    assert_eq!(attackers["never_reader"]["connects"], 2, "{summary}");
    assert!(
        attackers["slowloris"]["ends"]["closed by the server"].as_u64() > Some(0),
        "{summary}"
    );
    let log = &summary["server_log"];
    // `tenant code` → a reason, for each attacker the server closes
    let examples = log["close_examples"].as_object().expect("close examples");
    assert!(
        log["closes_by_tenant_and_code"]["hostile-v4-unauth"].is_null(),
        "the server closed no unauthenticated v4 socket: {summary}"
    );
    for tenant in [
        "hostile-chunks",
        "hostile-oversize",
        "hostile-garbage",
        "hostile-v4-garbage",
        "hostile-v4-chunks",
    ] {
        assert!(
            examples
                .iter()
                .any(|(key, reason)| key.starts_with(&format!("{tenant} "))
                    && reason.as_str().is_some_and(|r| !r.is_empty())),
            "{tenant}: a code and a reason: {summary}"
        );
    }
    assert!(
        log["refusals_logged"]["handshake timeout"].as_u64() > Some(0),
        "{summary}"
    );
    assert_eq!(log["warnings"], 0, "{summary}");
}
