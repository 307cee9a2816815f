//! Turns result lines (JSON, one per run) into the markdown results table:
//! one table per scenario, a column per server, and the ratios evsync /
//! peer; then the targets, met or missed.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Known servers, in column order; others follow alphabetically.
const ORDER: &[&str] = &[
    "evsync-sqlite",
    "evsync-prev-sqlite",
    "effect-sqlite",
    "evsync-memory",
    "evsync-prev-memory",
    "effect-memory",
    "raw-sqlite",
    "raw-sqlite-group",
    "effect-v4-memory",
    "effect-v4-sqlite",
    "raw-sqlite-v4",
    "raw-sqlite-v4-group",
    "ceiling-v4",
    "ceiling-ws",
    "ceiling-ws-tasks",
    "raw-scan",
    "raw-scan-send",
];

#[derive(Clone, Debug)]
struct Run {
    scenario: String,
    case: String,
    label: String,
    status: String,
    metrics: Value,
    note: Option<String>,
}

fn parse(text: &str) -> Vec<Run> {
    merge_rounds(parse_lines(text))
}

fn parse_lines(text: &str) -> Vec<Run> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter_map(|v| {
            Some(Run {
                scenario: v.get("scenario")?.as_str()?.to_owned(),
                case: v.get("case")?.as_str()?.to_owned(),
                label: v.get("label")?.as_str()?.to_owned(),
                status: v.get("status")?.as_str()?.to_owned(),
                metrics: v.get("metrics").cloned().unwrap_or(Value::Null),
                note: v.get("note").and_then(|n| n.as_str()).map(str::to_owned),
            })
        })
        .collect()
}

/// One run per (scenario, case, server): a case run in several rounds
/// (`ROUNDS` in scripts/bench, alternating the servers) becomes the median
/// of its successful rounds, every numeric metric on its own, with
/// `rounds` and the headline metric's `range_min`/`range_max`; single
/// runs of a machine that is not quiet move by tens of percent. A case
/// with no successful round keeps its last failure.
fn merge_rounds(runs: Vec<Run>) -> Vec<Run> {
    let mut groups: Vec<Vec<Run>> = Vec::new();
    for run in runs {
        match groups.iter_mut().find(|g| {
            g[0].scenario == run.scenario && g[0].case == run.case && g[0].label == run.label
        }) {
            Some(g) => g.push(run),
            None => groups.push(vec![run]),
        }
    }
    groups
        .into_iter()
        .map(|mut group| {
            let ok: Vec<&Run> = group.iter().filter(|r| r.status == "ok").collect();
            if ok.len() < 2 {
                let pick = group.iter().rposition(|r| r.status == "ok");
                let last = group.len() - 1;
                return group.swap_remove(pick.unwrap_or(last));
            }
            let mut merged = ok[0].clone();
            let Value::Object(metrics) = &mut merged.metrics else {
                return merged;
            };
            for (key, value) in metrics.iter_mut() {
                if !value.is_number() {
                    continue;
                }
                let mut xs: Vec<f64> = ok.iter().filter_map(|r| num(r, key)).collect();
                xs.sort_by(f64::total_cmp);
                *value = serde_json::json!(median_of_sorted(&xs));
            }
            let (key, _) = headline(&merged.scenario);
            let xs: Vec<f64> = ok.iter().filter_map(|r| num(r, key)).collect();
            if let (Some(lo), Some(hi)) = (
                xs.iter().copied().reduce(f64::min),
                xs.iter().copied().reduce(f64::max),
            ) {
                metrics.insert("range_min".into(), serde_json::json!(lo));
                metrics.insert("range_max".into(), serde_json::json!(hi));
            }
            metrics.insert("rounds".into(), serde_json::json!(ok.len()));
            merged
        })
        .collect()
}

/// The median of sorted values (the mean of the middle two for an even
/// count).
fn median_of_sorted(xs: &[f64]) -> f64 {
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

fn num(run: &Run, key: &str) -> Option<f64> {
    run.metrics.get(key)?.as_f64()
}

fn fmt_int(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn fmt_num(x: f64) -> String {
    if x >= 100.0 {
        fmt_int(x)
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// The cell of one run.
fn cell(run: &Run) -> String {
    let mut s = cell_body(run);
    if run.status == "ok" {
        if let Some(n) = num(run, "rounds") {
            let range = match (num(run, "range_min"), num(run, "range_max")) {
                (Some(lo), Some(hi)) => format!(": {}–{}", fmt_num(lo), fmt_num(hi)),
                _ => String::new(),
            };
            let _ = write!(s, " · median of {n:.0} rounds{range}");
        }
        if let Some(steal) = num(run, "steal_pct").filter(|st| *st >= STEAL_WARN_PCT) {
            let _ = write!(s, " · **{steal:.0}% stolen**");
        }
    }
    s
}

/// Steal (CPU the hypervisor took, 100 = one core) from which a cell is
/// marked: such a run measured a slower, unsteady machine.
const STEAL_WARN_PCT: f64 = 5.0;

fn cell_body(run: &Run) -> String {
    if run.status != "ok" {
        let why = run.note.as_deref().unwrap_or("");
        let why: String = why.chars().take(60).collect();
        return format!("**{}** {}", run.status, why.replace('|', "/"));
    }
    let g = |k: &str| num(run, k).map(fmt_num).unwrap_or_else(|| "?".into());
    match run.scenario.trim_start_matches("v4") {
        "write" => {
            let mut s = format!(
                "{} /s · {} MB/s · p50 {} / p99 {} ms",
                num(run, "entries_per_s").map(fmt_int).unwrap_or_default(),
                g("mb_per_s"),
                g("ack_p50_ms"),
                g("ack_p99_ms")
            );
            if let Some(f) = num(run, "failed_writes").filter(|f| *f > 0.0) {
                let _ = write!(s, " · {} writes failed", fmt_int(f));
            }
            s
        }
        "fanout" => {
            if num(run, "p50_ms") == Some(0.0) && num(run, "missing").is_some_and(|m| m > 0.0) {
                return format!(
                    "**incomplete**: {} of {} deliveries after {} s (no subscriber got them all) · {} /s",
                    num(run, "deliveries").map(fmt_int).unwrap_or_default(),
                    fmt_int(
                        num(run, "deliveries").unwrap_or(0.0) + num(run, "missing").unwrap_or(0.0)
                    ),
                    "3 + 10",
                    num(run, "deliveries_per_s")
                        .map(fmt_int)
                        .unwrap_or_default()
                );
            }
            let mut s = format!(
                "p50 {} / p99 {} / max {} ms · {} /s",
                g("p50_ms"),
                g("p99_ms"),
                g("max_ms"),
                num(run, "deliveries_per_s")
                    .map(fmt_int)
                    .unwrap_or_default()
            );
            if let Some(per) = num(run, "entries_per_message") {
                let _ = write!(s, " · {per} per msg");
            }
            if let Some(missing) = num(run, "missing").filter(|m| *m > 0.0) {
                let _ = write!(s, " · {} missing", fmt_int(missing));
            }
            if let Some(waits) = num(run, "writer_waits").filter(|w| *w > 0.0) {
                let _ = write!(
                    s,
                    " · writer held back {} times (≤ {} ms)",
                    fmt_int(waits),
                    g("writer_wait_max_ms")
                );
            }
            s
        }
        "catchup" => format!("{} MB/s · {} s", g("mb_per_s"), g("seconds")),
        "churn" => {
            let mut s = format!(
                "{} cycles/s · p50 {} / p99 {} ms (open {} · Hello {})",
                num(run, "cycles_per_s").map(fmt_int).unwrap_or_default(),
                g("p50_ms"),
                g("p99_ms"),
                g("upgraded_p50_ms"),
                g("hello_p50_ms")
            );
            if let Some(f) = num(run, "failed_cycles").filter(|f| *f > 0.0) {
                let _ = write!(s, " · {} failed", fmt_int(f));
            }
            s
        }
        "idle" => {
            let mut s = format!(
                "{} KiB/conn · {}→{} MiB",
                g("rss_per_conn_kib"),
                g("rss_before_mib"),
                g("rss_after_mib")
            );
            if let Some(f) = num(run, "failed").filter(|f| *f > 0.0) {
                let _ = write!(s, " · {} failed", fmt_int(f));
            }
            if let Some(n) = num(run, "not_opened_in_time").filter(|n| *n > 0.0) {
                let _ = write!(
                    s,
                    " · only {} opened in the time limit ({} s)",
                    num(run, "connections").map(fmt_int).unwrap_or_default(),
                    g("open_s")
                );
                let _ = n;
            }
            s
        }
        "tenants" => {
            let mut s = format!(
                "idle RSS {} MiB (+{} KiB/tenant) · {} fds · {} tenants/s",
                g("rss_idle_mib"),
                g("rss_idle_per_tenant_kib"),
                g("fds_idle"),
                g("tenants_per_s")
            );
            if let Some(f) = num(run, "failed").filter(|f| *f > 0.0) {
                let _ = write!(s, " · {} failed", fmt_int(f));
            }
            if num(run, "not_started_in_time").is_some_and(|n| n > 0.0) {
                let _ = write!(
                    s,
                    " · only {} written in the time limit",
                    num(run, "tenants").map(fmt_int).unwrap_or_default()
                );
            }
            s
        }
        _ => run.metrics.to_string(),
    }
}

/// The metric a ratio compares, and whether higher is better.
fn headline(scenario: &str) -> (&'static str, bool) {
    match scenario.trim_start_matches("v4") {
        "write" => ("entries_per_s", true),
        "fanout" => ("p99_ms", false),
        "catchup" => ("mb_per_s", true),
        "churn" => ("cycles_per_s", true),
        "idle" => ("rss_per_conn_kib", false),
        "tenants" => ("rss_idle_mib", false),
        _ => ("", true),
    }
}

fn ratio(a: Option<&Run>, b: Option<&Run>, key: &str) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a.status == "ok" && b.status == "ok" => {
            match (num(a, key), num(b, key)) {
                (Some(x), Some(y)) if y > 0.0 => fmt_ratio(x / y),
                _ => "–".into(),
            }
        }
        (Some(a), Some(b)) if a.status == "ok" && b.status != "ok" => format!("peer {}", b.status),
        _ => "–".into(),
    }
}

fn fmt_ratio(r: f64) -> String {
    if r >= 0.1 || r == 0.0 {
        format!("{r:.2}×")
    } else if r >= 0.001 {
        format!("{r:.3}× (1/{:.0})", 1.0 / r)
    } else {
        format!("<0.001× (1/{:.0})", 1.0 / r)
    }
}

/// Renders the whole report.
pub fn render(text: &str) -> String {
    let runs = parse(text);
    let mut out = String::new();
    let mut scenarios: Vec<&str> = Vec::new();
    for r in &runs {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    let order = [
        "write",
        "fanout",
        "catchup",
        "churn",
        "idle",
        "tenants",
        "v4write",
        "v4fanout",
        "v4catchup",
    ];
    scenarios.sort_by_key(|s| order.iter().position(|o| o == s).unwrap_or(99));
    for scenario in scenarios {
        let of: Vec<&Run> = runs.iter().filter(|r| r.scenario == scenario).collect();
        let mut labels: Vec<&str> = Vec::new();
        for r in &of {
            if !labels.contains(&r.label.as_str()) {
                labels.push(&r.label);
            }
        }
        labels.sort_by_key(|l| {
            (
                ORDER.iter().position(|o| o == l).unwrap_or(99),
                l.to_string(),
            )
        });
        let mut cases: Vec<&str> = Vec::new();
        for r in &of {
            if !cases.contains(&r.case.as_str()) {
                cases.push(&r.case);
            }
        }
        // One run per case and server (rounds are merged by `parse`).
        let mut cell_of: BTreeMap<(&str, &str), &Run> = BTreeMap::new();
        for r in &of {
            cell_of.insert((r.case.as_str(), r.label.as_str()), r);
        }
        let (key, higher) = headline(scenario);
        let pairs: Vec<(&str, &str)> = [
            ("evsync-sqlite", "effect-sqlite"),
            ("evsync-memory", "effect-memory"),
            ("evsync-sqlite", "raw-sqlite"),
            ("evsync-sqlite", "raw-sqlite-group"),
            ("evsync-sqlite", "evsync-prev-sqlite"),
            ("evsync-memory", "evsync-prev-memory"),
            ("evsync-sqlite", "effect-v4-sqlite"),
            ("evsync-sqlite", "effect-v4-memory"),
            ("evsync-memory", "effect-v4-memory"),
            ("evsync-sqlite", "raw-sqlite-v4"),
            ("evsync-sqlite", "raw-sqlite-v4-group"),
            ("evsync-memory", "ceiling-v4"),
            ("ceiling-v4", "effect-v4-memory"),
            ("evsync-sqlite", "ceiling-ws"),
            ("evsync-memory", "ceiling-ws"),
            ("evsync-sqlite", "raw-scan"),
            ("evsync-sqlite", "raw-scan-send"),
        ]
        .into_iter()
        .filter(|(a, b)| labels.contains(a) && labels.contains(b))
        .collect();
        let _ = writeln!(out, "### {}\n", title(scenario));
        let _ = write!(out, "| case |");
        for l in &labels {
            let _ = write!(out, " {l} |");
        }
        for (a, b) in &pairs {
            let _ = write!(out, " {} / {} ({}) |", short(a), short(b), key);
        }
        let _ = writeln!(out);
        let _ = write!(out, "|---|");
        for _ in 0..labels.len() + pairs.len() {
            let _ = write!(out, "---|");
        }
        let _ = writeln!(out);
        for case in &cases {
            let _ = write!(out, "| {case} |");
            for l in &labels {
                let c = cell_of
                    .get(&(*case, *l))
                    .map(|r| cell(r))
                    .unwrap_or_else(|| "–".into());
                let _ = write!(out, " {c} |");
            }
            for (a, b) in &pairs {
                let _ = write!(
                    out,
                    " {} |",
                    ratio(
                        cell_of.get(&(*case, *a)).copied(),
                        cell_of.get(&(*case, *b)).copied(),
                        key
                    )
                );
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(
            out,
            "\n{}\n",
            if higher {
                "Ratios: evsync ÷ peer on the headline metric; above 1× means evsync is ahead."
            } else {
                "Ratios: evsync ÷ peer on the headline metric; lower is better, so below 1× means evsync is ahead."
            }
        );
        let cpu: Vec<String> = of
            .iter()
            .filter(|r| r.status == "ok")
            .filter_map(|r| {
                let l = num(r, "load_cpu_pct")?;
                let s = num(r, "server_cpu_pct")
                    .map(|s| format!(", server {s:.0}%"))
                    .unwrap_or_default();
                Some(format!("{} {}: load {l:.0}%{s}", r.label, r.case))
            })
            .collect();
        if !cpu.is_empty() {
            let _ = writeln!(
                out,
                "<details><summary>CPU use (100% = one core)</summary>\n\n{}\n</details>\n",
                cpu.join("  \n")
            );
        }
    }
    out.push_str(&targets(&runs));
    out
}

fn title(s: &str) -> &str {
    match s {
        "write" => "1. Write throughput (acked entries/s, payload MB/s, ack latency)",
        "fanout" => "2. Fan-out (write → delivery latency, deliveries/s)",
        "catchup" => "3. Catch-up (new subscriber, whole log)",
        "idle" => "4. Idle connections (server RSS per greeted+subscribed socket)",
        "tenants" => "5. Many tenants (written once, then idle)",
        "churn" => {
            "6. Reconnect churn (the SyncService's cycle on a fresh socket: connect, Hello, RequestChanges at the head, empty WriteEntries, Ack, close; c = loops at once)"
        }
        "v4write" => {
            "v4-1. Effect v4 write throughput (acked entries/s, ciphertext MB/s, ack latency; case = writers, batches per WriteSingle × entries per batch, bytes per entry)"
        }
        "v4fanout" => "v4-2. Effect v4 fan-out (write → delivery latency, deliveries/s)",
        "v4catchup" => "v4-3. Effect v4 catch-up (new subscriber, whole store from 0)",
        other => other,
    }
}

fn short(l: &str) -> &str {
    match l {
        "evsync-sqlite" => "evsync·sqlite",
        "effect-sqlite" => "Effect·sqlite",
        "evsync-memory" => "evsync·mem",
        "effect-memory" => "Effect·mem",
        "raw-sqlite" => "raw SQLite",
        "raw-sqlite-group" => "raw SQLite grouped",
        "evsync-prev-sqlite" => "previous·sqlite",
        "evsync-prev-memory" => "previous·mem",
        "effect-v4-memory" => "Effect v4·mem",
        "effect-v4-sqlite" => "Effect v4·sqlite",
        "raw-sqlite-v4" => "raw SQLite v4",
        "raw-sqlite-v4-group" => "raw SQLite v4 grouped",
        "ceiling-v4" => "v4 socket ceiling",
        "ceiling-ws" => "socket ceiling",
        "ceiling-ws-tasks" => "socket ceiling (tasks)",
        "raw-scan" => "raw scan",
        "raw-scan-send" => "raw scan+send",
        other => other,
    }
}

/// The targets of issue 6, checked against the runs.
fn targets(runs: &[Run]) -> String {
    let find = |scenario: &str, label: &str, pred: &dyn Fn(&str) -> bool| -> Vec<&Run> {
        runs.iter()
            .filter(|r| r.scenario == scenario && r.label == label && pred(&r.case))
            .collect()
    };
    let mut out = String::from("### Targets\n\n| target | measured | verdict |\n|---|---|---|\n");
    // Write: ≥10× Effect+SQLite, ≥50% of raw SQLite, on every case.
    let plain = |c: &str| !c.contains("enc");
    let mut worst_effect: Option<(f64, String)> = None;
    let mut worst_raw: Option<(f64, String)> = None;
    let mut worst_group: Option<(f64, String)> = None;
    for ev in find("write", "evsync-sqlite", &plain) {
        let Some(x) = num(ev, "entries_per_s").filter(|_| ev.status == "ok") else {
            continue;
        };
        for (peer, worst) in [
            ("effect-sqlite", &mut worst_effect),
            ("raw-sqlite", &mut worst_raw),
            ("raw-sqlite-group", &mut worst_group),
        ] {
            if let Some(p) = find("write", peer, &|c| c == ev.case).first()
                && p.status == "ok"
                && let Some(y) = num(p, "entries_per_s").filter(|y| *y > 0.0)
            {
                let r = x / y;
                if worst.as_ref().is_none_or(|(w, _)| r < *w) {
                    *worst = Some((r, ev.case.clone()));
                }
            }
        }
    }
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    if let Some((r, case)) = &worst_effect {
        let _ = writeln!(
            out,
            "| write ≥ 10× Effect+SQLite (every case) | worst {r:.2}× ({case}) | {} |",
            verdict(*r >= 10.0)
        );
    }
    if let Some((r, case)) = &worst_raw {
        let _ = writeln!(
            out,
            "| write ≥ 50% of raw SQLite, one transaction per batch (every case) | worst {:.0}% ({case}) | {} |",
            r * 100.0,
            verdict(*r >= 0.5)
        );
    }
    if let Some((r, case)) = &worst_group {
        let _ = writeln!(
            out,
            "| write ≥ 50% of raw SQLite grouped, W batches per transaction (every case) | worst {:.0}% ({case}) | {} |",
            r * 100.0,
            verdict(*r >= 0.5)
        );
    }
    for r in find("fanout", "evsync-sqlite", &|c| c.contains("subs=1000 ")) {
        if r.status != "ok" {
            let _ = writeln!(
                out,
                "| fan-out p99 < 10 ms ({}) | {} | **missed** |",
                r.case, r.status
            );
        } else if let Some(p99) = num(r, "p99_ms") {
            let _ = writeln!(
                out,
                "| fan-out p99 < 10 ms ({}) | {p99:.2} ms | {} |",
                r.case,
                verdict(p99 < 10.0)
            );
        }
    }
    for r in find("idle", "evsync-sqlite", &|_| true) {
        if let Some(k) = num(r, "rss_per_conn_kib") {
            let bytes = k * 1024.0;
            let _ = writeln!(
                out,
                "| ≤ 15 KB RSS per idle connection ({}) | {:.1} KB | {} |",
                r.case,
                bytes / 1000.0,
                verdict(bytes <= 15_000.0)
            );
        }
    }
    out.push_str(&ceiling_targets(runs));
    out.push_str(&v4_targets(runs));
    for r in find("catchup", "evsync-sqlite", &|_| true) {
        if let Some(mb) = num(r, "mb_per_s").filter(|_| r.status == "ok") {
            let _ = writeln!(
                out,
                "| catch-up ≥ 200 MB/s ({}) | {mb:.0} MB/s | {} |",
                r.case,
                verdict(mb >= 200.0)
            );
        }
    }
    out
}

/// The ceiling goals of issue 19: churn ≥ 9,000 cycles/s with p99 < 10 ms
/// and ≥ 70 % of the socket ceiling; fan-out p99 ≤ 1.5× the socket
/// ceiling's at 1,000 subscribers; catch-up ≥ 80 % of the raw scan.
fn ceiling_targets(runs: &[Run]) -> String {
    let mut out = String::new();
    let get = |scenario: &str, label: &str, case: &str| {
        runs.iter().rfind(|r| {
            r.scenario == scenario && r.label == label && r.case == case && r.status == "ok"
        })
    };
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let mut cases: Vec<&str> = Vec::new();
    for r in runs {
        if !cases.contains(&r.case.as_str()) {
            cases.push(&r.case);
        }
    }
    // The churn goal is a throughput: it applies to the case with the most
    // loops at once (one loop measures a cycle's latency, not capacity).
    let busiest_churn = runs
        .iter()
        .filter(|r| r.scenario == "churn")
        .filter_map(|r| Some((num(r, "concurrency")? as u64, r.case.as_str())))
        .max()
        .map(|(_, case)| case);
    for server in ["evsync-sqlite", "evsync-memory"] {
        for case in &cases {
            if Some(*case) == busiest_churn
                && let (Some(ours), Some(ceiling)) =
                    (get("churn", server, case), get("churn", "ceiling-ws", case))
                && let (Some(x), Some(p99), Some(y)) = (
                    num(ours, "cycles_per_s"),
                    num(ours, "p99_ms"),
                    num(ceiling, "cycles_per_s").filter(|y| *y > 0.0),
                )
            {
                let _ = writeln!(
                    out,
                    "| churn ≥ 9,000 cycles/s, p99 < 10 ms, ≥ 70% of the socket ceiling ({server}, {case}) | {} /s, p99 {p99:.1} ms, {:.0}% | {} |",
                    fmt_int(x),
                    x / y * 100.0,
                    verdict(x >= 9000.0 && p99 < 10.0 && x / y >= 0.7)
                );
            }
            if case.starts_with("subs=1000 ")
                && let (Some(ours), Some(ceiling)) = (
                    get("fanout", server, case),
                    get("fanout", "ceiling-ws", case),
                )
                && let (Some(x), Some(y)) = (
                    num(ours, "p99_ms"),
                    num(ceiling, "p99_ms").filter(|y| *y > 0.0),
                )
            {
                let _ = writeln!(
                    out,
                    "| fan-out p99 ≤ 1.5× the socket ceiling ({server}, {case}) | {x:.1} vs {y:.1} ms = {:.2}× | {} |",
                    x / y,
                    verdict(x / y <= 1.5)
                );
            }
        }
    }
    for case in &cases {
        if let (Some(ours), Some(scan)) = (
            get("catchup", "evsync-sqlite", case),
            get("catchup", "raw-scan", case),
        ) && let (Some(x), Some(y)) = (
            num(ours, "mb_per_s"),
            num(scan, "mb_per_s").filter(|y| *y > 0.0),
        ) {
            let _ = writeln!(
                out,
                "| catch-up ≥ 80% of the raw scan ({case}) | {x:.0} vs {y:.0} MB/s = {:.0}% | {} |",
                x / y * 100.0,
                verdict(x / y >= 0.8)
            );
        }
    }
    out
}

/// The v4 goals of issue 13: single-entry writes ≥ 10× Effect's v4
/// server, batched writes ≥ 90 % of the grouped raw-SQLite ceiling. And
/// what this machine allows of the first: the v4 socket ceiling (a server
/// that only acks) against Effect's server, and evsync against it.
fn v4_targets(runs: &[Run]) -> String {
    let mut out = String::new();
    let ok_num = |r: &Run| num(r, "entries_per_s").filter(|_| r.status == "ok");
    let get = |label: &str, case: &str| {
        runs.iter()
            .rfind(|r| r.scenario == "v4write" && r.label == label && r.case == case)
    };
    let mut cases: Vec<&str> = Vec::new();
    for r in runs.iter().filter(|r| r.scenario == "v4write") {
        if !cases.contains(&r.case.as_str()) {
            cases.push(&r.case);
        }
    }
    let single = |c: &str| c.contains(" 1×1 ");
    const GOAL: (&str, &str) = ("met", "**missed**");
    const ROOM: (&str, &str) = ("yes", "**no**: no server could show 10× here");
    for (ours, peer, goal, pick, what, verdicts) in [
        (
            "evsync-sqlite",
            "effect-v4-memory",
            10.0,
            true,
            "v4 single-entry writes ≥ 10× Effect v4 (evsync SQLite vs Effect memory)",
            GOAL,
        ),
        (
            "evsync-memory",
            "effect-v4-memory",
            10.0,
            true,
            "v4 single-entry writes ≥ 10× Effect v4 (memory vs memory)",
            GOAL,
        ),
        (
            "ceiling-v4",
            "effect-v4-memory",
            10.0,
            true,
            "the v4 socket ceiling ≥ 10× Effect v4 (can this machine show 10×?)",
            ROOM,
        ),
        (
            "evsync-memory",
            "ceiling-v4",
            0.9,
            true,
            "v4 single-entry writes ≥ 90% of the v4 socket ceiling (memory)",
            GOAL,
        ),
        (
            "evsync-sqlite",
            "raw-sqlite-v4-group",
            0.9,
            false,
            "v4 batched writes ≥ 90% of raw SQLite grouped",
            GOAL,
        ),
        (
            "evsync-sqlite",
            "raw-sqlite-v4",
            0.9,
            false,
            "v4 batched writes ≥ 90% of raw SQLite, one transaction per request",
            GOAL,
        ),
    ] {
        let mut worst: Option<(f64, &str)> = None;
        for case in cases.iter().filter(|c| single(c) == pick) {
            let (Some(a), Some(b)) = (get(ours, case), get(peer, case)) else {
                continue;
            };
            let (Some(x), Some(y)) = (ok_num(a), ok_num(b).filter(|y| *y > 0.0)) else {
                continue;
            };
            let r = x / y;
            if worst.is_none_or(|(w, _)| r < w) {
                worst = Some((r, case));
            }
        }
        if let Some((r, case)) = worst {
            let shown = if goal < 1.0 {
                format!("{:.0}%", r * 100.0)
            } else {
                format!("{r:.2}×")
            };
            let verdict = if r >= goal { verdicts.0 } else { verdicts.1 };
            let _ = writeln!(
                out,
                "| {what} (every case) | worst {shown} ({case}) | {verdict} |"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_ratios_and_failures() {
        let text = r#"{"scenario":"write","case":"w=1 b=1 s=100","label":"evsync-sqlite","status":"ok","metrics":{"entries_per_s":1000,"mb_per_s":0.1,"ack_p50_ms":1,"ack_p99_ms":2}}
{"scenario":"write","case":"w=1 b=1 s=100","label":"effect-sqlite","status":"ok","metrics":{"entries_per_s":100,"mb_per_s":0.01,"ack_p50_ms":10,"ack_p99_ms":20}}
{"scenario":"write","case":"w=1 b=1 s=100","label":"raw-sqlite","status":"ok","metrics":{"entries_per_s":1500,"mb_per_s":0.15,"ack_p50_ms":1,"ack_p99_ms":2}}
{"scenario":"fanout","case":"subs=1000 rate=1000/s","label":"effect-sqlite","status":"timeout","metrics":{},"note":"did not finish"}"#;
        let out = render(text);
        assert!(out.contains("10.00×"), "{out}");
        assert!(out.contains("0.67×"), "{out}");
        assert!(out.contains("**timeout**"), "{out}");
        assert!(out.contains("worst 10.00×"), "{out}");
        assert_eq!(fmt_int(1234567.0), "1,234,567");
    }

    #[test]
    fn renders_churn_and_the_ceiling_goals() {
        let text = r#"{"scenario":"churn","case":"c=1","label":"evsync-sqlite","status":"ok","metrics":{"concurrency":1,"cycles_per_s":400,"p50_ms":0.5,"p99_ms":2,"upgraded_p50_ms":0.2,"hello_p50_ms":0.2}}
{"scenario":"churn","case":"c=32","label":"evsync-sqlite","status":"ok","metrics":{"concurrency":32,"cycles_per_s":4000,"p50_ms":5,"p99_ms":12,"upgraded_p50_ms":3,"hello_p50_ms":3.1}}
{"scenario":"churn","case":"c=32","label":"ceiling-ws","status":"ok","metrics":{"concurrency":32,"cycles_per_s":5000,"p50_ms":4,"p99_ms":9,"upgraded_p50_ms":2,"hello_p50_ms":2.1}}
{"scenario":"fanout","case":"subs=1000 rate=1000/s s=100B","label":"evsync-memory","status":"ok","metrics":{"p50_ms":30,"p99_ms":90,"max_ms":100}}
{"scenario":"fanout","case":"subs=1000 rate=1000/s s=100B","label":"ceiling-ws","status":"ok","metrics":{"p50_ms":20,"p99_ms":50,"max_ms":60}}
{"scenario":"catchup","case":"1M × 1KB","label":"evsync-sqlite","status":"ok","metrics":{"mb_per_s":300,"seconds":3.4}}
{"scenario":"catchup","case":"1M × 1KB","label":"raw-scan","status":"ok","metrics":{"mb_per_s":1000,"seconds":1}}"#;
        let out = render(text);
        assert!(
            out.contains("4,000 cycles/s · p50 5.00 / p99 12.0 ms"),
            "{out}"
        );
        assert!(out.contains("0.80×"), "{out}");
        assert!(
            out.contains("(evsync-sqlite, c=32) | 4,000 /s, p99 12.0 ms, 80% | **missed**"),
            "{out}"
        );
        assert!(!out.contains("c=1) |"), "one loop is not a capacity: {out}");
        assert!(
            out.contains("90.0 vs 50.0 ms = 1.80× | **missed**"),
            "{out}"
        );
        assert!(out.contains("300 vs 1000 MB/s = 30% | **missed**"), "{out}");
    }

    #[test]
    fn renders_v4_tables_and_goals() {
        let text = r#"{"scenario":"v4write","case":"w=1 1×1 s=100B","label":"evsync-memory","status":"ok","metrics":{"entries_per_s":50000,"mb_per_s":5,"ack_p50_ms":1,"ack_p99_ms":2}}
{"scenario":"v4write","case":"w=1 1×1 s=100B","label":"effect-v4-memory","status":"ok","metrics":{"entries_per_s":4000,"mb_per_s":0.4,"ack_p50_ms":4,"ack_p99_ms":9}}
{"scenario":"v4write","case":"w=1 1×1 s=100B","label":"ceiling-v4","status":"ok","metrics":{"entries_per_s":36000,"mb_per_s":3.6,"ack_p50_ms":1,"ack_p99_ms":2}}
{"scenario":"v4write","case":"w=1 4×100 s=1KB","label":"evsync-sqlite","status":"ok","metrics":{"entries_per_s":90000,"mb_per_s":92,"ack_p50_ms":60,"ack_p99_ms":80}}
{"scenario":"v4write","case":"w=1 4×100 s=1KB","label":"raw-sqlite-v4-group","status":"ok","metrics":{"entries_per_s":100000,"mb_per_s":102,"ack_p50_ms":60,"ack_p99_ms":80}}
{"scenario":"v4fanout","case":"subs=10 rate=1000/s s=100B","label":"evsync-sqlite","status":"ok","metrics":{"p50_ms":1,"p99_ms":2,"max_ms":3,"deliveries_per_s":9990,"writer_waits":3,"writer_wait_max_ms":5}}"#;
        let out = render(text);
        assert!(out.contains("Effect v4 write throughput"), "{out}");
        assert!(out.contains("12.50×"), "{out}");
        assert!(
            out.contains("memory vs memory) (every case) | worst 12.50× (w=1 1×1 s=100B) | met"),
            "{out}"
        );
        assert!(
            out.contains("raw SQLite grouped (every case) | worst 90% (w=1 4×100 s=1KB) | met"),
            "{out}"
        );
        assert!(out.contains("writer held back 3 times"), "{out}");
        assert!(out.contains("evsync·mem / v4 socket ceiling"), "{out}");
        assert!(
            out.contains(
                "(can this machine show 10×?) (every case) | worst 9.00× (w=1 1×1 s=100B) | **no**"
            ),
            "{out}"
        );
        assert!(
            out.contains("90% of the v4 socket ceiling (memory) (every case) | worst 139% (w=1 1×1 s=100B) | met"),
            "{out}"
        );
    }

    #[test]
    fn rounds_become_their_median_and_steal_is_marked() {
        let line = |label: &str, eps: u32, steal: u32| {
            format!(
                r#"{{"scenario":"v4write","case":"w=8 1×1 s=100B","label":"{label}","status":"ok","metrics":{{"entries_per_s":{eps},"mb_per_s":1,"ack_p50_ms":1,"ack_p99_ms":2,"steal_pct":{steal}}}}}"#
            )
        };
        let text = [
            line("evsync-memory", 60000, 0),
            line("effect-v4-memory", 9000, 1),
            line("evsync-memory", 100000, 30),
            line("effect-v4-memory", 8000, 0),
            line("evsync-memory", 90000, 1),
            line("effect-v4-memory", 10000, 0),
            r#"{"scenario":"v4write","case":"w=8 1×1 s=100B","label":"effect-v4-memory","status":"failed","metrics":{},"note":"died"}"#.to_owned(),
        ]
        .join("\n");
        let out = render(&text);
        // Medians 90,000 and 9,000 (the failed round is left out): 10×.
        assert!(out.contains("90,000 /s"), "{out}");
        assert!(out.contains("median of 3 rounds: 60,000–100,000"), "{out}");
        assert!(out.contains("10.00×"), "{out}");
        // The median steal of evsync's rounds is 1 %: not marked; a
        // single run with 30 % is.
        assert!(!out.contains("stolen"), "{out}");
        let out = render(&line("evsync-memory", 100000, 30));
        assert!(out.contains("**30% stolen**"), "{out}");
    }
}
