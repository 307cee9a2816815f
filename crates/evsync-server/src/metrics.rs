//! The server's Prometheus metrics (`GET /metrics`), built with the
//! `prometheus` crate (tikv/rust-prometheus: maintained, used across the
//! Rust ecosystem, and its `process` feature gives the standard
//! `process_*` families for free).
//!
//! The hot path only touches atomics: tenant actors add what their engine
//! counted ([`evsync_core::proto::stats::EngineStats`], taken once per
//! drain) with a handful of `inc_by`s, and observe one commit duration per
//! commit and one delivery lag per commit that had live subscribers.
//! Gauges that the server already tracks (open sockets, loaded tenants)
//! are read when scraped.
//!
//! No tenant names or publicKeys are labels by default: their number is
//! unbounded and they can be sensitive. `--metrics-per-tenant` adds two
//! families labelled by tenant, whose series are removed when the tenant
//! unloads.

use evsync_core::access::DenyReason;
use evsync_core::proto::close::CloseKind;
use evsync_core::proto::stats::EngineStats;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use serde::Serialize;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Commit durations: an fsync is ~0.5–5 ms on a disk, more under load.
const COMMIT_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Delivery lags: microseconds for a few subscribers, milliseconds for
/// thousands.
const LAG_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 1.0,
];

/// Every family the server exports.
pub(crate) struct Metrics {
    registry: Registry,
    connections: IntGaugeVec,
    tenants_loaded: IntGauge,
    entries_appended: IntCounter,
    bytes_received: IntCounter,
    bytes_sent: IntCounter,
    frames_received: IntCounter,
    /// `evsync_connections_closed_total` by [`CloseKind::index`].
    closed: Vec<IntCounter>,
    auth_failures: IntCounterVec,
    refused_over_limit: IntCounterVec,
    storage_errors: IntCounter,
    commit_duration: Histogram,
    append_joins: IntCounterVec,
    wal_checkpoints: IntCounterVec,
    wal_checkpoint_duration: Histogram,
    log_lines_dropped: IntCounter,
    /// What [`DROPPED_LOG_LINES`] said at the last render.
    log_lines_dropped_seen: AtomicU64,
    delivery_lag: Histogram,
    catchup_reads: IntCounter,
    per_tenant: Option<PerTenant>,
}

/// The opt-in families labelled by tenant.
pub(crate) struct PerTenant {
    entries_appended: IntCounterVec,
    connections: IntGaugeVec,
}

/// One histogram's count and percentiles, for the dashboard.
#[derive(Serialize, Clone, Copy, Debug, PartialEq)]
pub(crate) struct Percentiles {
    pub count: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

/// The cumulative counters, for the dashboard.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Totals {
    pub entries_appended: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub frames_received: u64,
    pub storage_errors: u64,
    pub auth_failures: u64,
    pub catchup_reads: u64,
    pub connections_closed: u64,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let counter = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(counter.clone()))
        .expect("registered once");
    counter
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let histogram = Histogram::with_opts(opts).expect("valid metric");
    registry
        .register(Box::new(histogram.clone()))
        .expect("registered once");
    histogram
}

fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    registry
        .register(Box::new(vec.clone()))
        .expect("registered once");
    vec
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    registry
        .register(Box::new(vec.clone()))
        .expect("registered once");
    vec
}

/// Where the process's log writer says how many lines it dropped (set
/// once by the binary that installs it: the log writer is process-wide,
/// and so is this).
static DROPPED_LOG_LINES: OnceLock<Box<dyn Fn() -> u64 + Send + Sync>> = OnceLock::new();

/// Reports, in `evsync_log_lines_dropped_total`, the lines the process's
/// log writer dropped: `dropped` returns how many so far (it only grows).
/// The first call wins.
pub fn count_dropped_log_lines(dropped: impl Fn() -> u64 + Send + Sync + 'static) {
    let _ = DROPPED_LOG_LINES.set(Box::new(dropped));
}

impl Metrics {
    /// Every family registered; per-tenant ones only when `per_tenant`.
    pub fn new(per_tenant: bool) -> Self {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            r.register(Box::new(process)).expect("registered once");
        }
        let connections = gauge_vec(
            &r,
            "evsync_connections",
            "Open sync sockets, by protocol.",
            "protocol",
        );
        let tenants_loaded = IntGauge::new(
            "evsync_tenants_loaded",
            "Tenants loaded (storage open) right now.",
        )
        .expect("valid metric");
        r.register(Box::new(tenants_loaded.clone()))
            .expect("registered once");
        let closed_vec = counter_vec(
            &r,
            "evsync_connections_closed_total",
            "Sync sockets that ended, by reason (peer: the client closed or the socket broke).",
            "reason",
        );
        let closed = CloseKind::ALL
            .iter()
            .map(|kind| closed_vec.with_label_values(&[kind.label()]))
            .collect();
        let per_tenant = per_tenant.then(|| PerTenant {
            entries_appended: counter_vec(
                &r,
                "evsync_tenant_entries_appended_total",
                "Entries stored, by tenant (opt-in: --metrics-per-tenant).",
                "tenant",
            ),
            connections: gauge_vec(
                &r,
                "evsync_tenant_connections",
                "Open sync sockets, by tenant (opt-in: --metrics-per-tenant).",
                "tenant",
            ),
        });
        Metrics {
            connections,
            tenants_loaded,
            entries_appended: counter(
                &r,
                "evsync_entries_appended_total",
                "Entries stored (duplicates of stored entries not counted).",
            ),
            bytes_received: counter(
                &r,
                "evsync_bytes_received_total",
                "Payload bytes of frames received on sync sockets.",
            ),
            bytes_sent: counter(
                &r,
                "evsync_bytes_sent_total",
                "Payload bytes of frames written to sync sockets.",
            ),
            frames_received: counter(
                &r,
                "evsync_frames_received_total",
                "Frames received on sync sockets (chunk parts included).",
            ),
            closed,
            auth_failures: counter_vec(
                &r,
                "evsync_auth_failures_total",
                "Refused credentials (sync upgrades and admin requests), by reason.",
                "reason",
            ),
            refused_over_limit: counter_vec(
                &r,
                "evsync_connections_refused_total",
                "New sockets refused over a limit (503 with Retry-After), by limit.",
                "limit",
            ),
            storage_errors: counter(
                &r,
                "evsync_storage_errors_total",
                "Storage requests (appends, reads) that failed.",
            ),
            commit_duration: histogram(
                &r,
                "evsync_commit_duration_seconds",
                "From the start of an append transaction to its commit returning.",
                COMMIT_BUCKETS,
            ),
            log_lines_dropped: counter(
                &r,
                "evsync_log_lines_dropped_total",
                "Log lines dropped because stderr did not take them (a stuck pipe or log driver) while the buffer was full.",
            ),
            log_lines_dropped_seen: AtomicU64::new(0),
            append_joins: counter_vec(
                &r,
                "evsync_append_joins_total",
                "Appends sent while another ran (SQLite): joined its transaction, or put back because its commit had begun.",
                "outcome",
            ),
            wal_checkpoints: counter_vec(
                &r,
                "evsync_wal_checkpoints_total",
                "SQLite WAL checkpoints run beside a tenant's writer (not in its commits), by outcome.",
                "outcome",
            ),
            wal_checkpoint_duration: histogram(
                &r,
                "evsync_wal_checkpoint_duration_seconds",
                "How long a background WAL checkpoint took (copying WAL pages into the database file and its fsync).",
                COMMIT_BUCKETS,
            ),
            delivery_lag: histogram(
                &r,
                "evsync_delivery_lag_seconds",
                "From a commit returning to its live Changes being handed to the subscribers' sockets.",
                LAG_BUCKETS,
            ),
            catchup_reads: counter(
                &r,
                "evsync_catchup_reads_total",
                "Storage reads that caught a subscriber up (not served from the tail cache).",
            ),
            per_tenant,
            registry: r,
        }
    }

    /// Adds what an engine counted.
    pub fn record(&self, stats: &EngineStats) {
        add(&self.entries_appended, stats.log.entries_appended);
        add(&self.catchup_reads, stats.log.catchup_reads);
        add(&self.storage_errors, stats.log.storage_errors);
        add(&self.bytes_received, stats.bytes_received);
        add(&self.bytes_sent, stats.bytes_sent);
        add(&self.frames_received, stats.frames_received);
        for (counter, n) in self.closed.iter().zip(stats.closes) {
            add(counter, n);
        }
    }

    /// One commit took `took`.
    pub fn observe_commit(&self, took: Duration) {
        self.commit_duration.observe(took.as_secs_f64());
    }

    /// An append sent while another ran joined that one's transaction
    /// (`true`) or was put back for the next one (`false`).
    pub fn count_append_join(&self, joined: bool) {
        let outcome = if joined { "joined" } else { "put_back" };
        self.append_joins.with_label_values(&[outcome]).inc();
    }

    /// A background WAL checkpoint ran for `took`.
    pub fn checkpoint_ended(&self, took: Duration) {
        self.wal_checkpoints.with_label_values(&["done"]).inc();
        self.wal_checkpoint_duration.observe(took.as_secs_f64());
    }

    /// A background WAL checkpoint failed.
    pub fn checkpoint_failed(&self) {
        self.wal_checkpoints.with_label_values(&["failed"]).inc();
    }

    /// A commit's live deliveries were handed to the sockets `lag` after
    /// the commit returned.
    pub fn observe_delivery_lag(&self, lag: Duration) {
        self.delivery_lag.observe(lag.as_secs_f64());
    }

    /// A credential was refused for `reason`.
    pub fn auth_failed(&self, reason: &str) {
        self.auth_failures.with_label_values(&[reason]).inc();
    }

    /// A new socket was refused over the limit labelled `limit`.
    pub fn refused_over_limit(&self, limit: &str) {
        self.refused_over_limit.with_label_values(&[limit]).inc();
    }

    /// The per-tenant families, when enabled.
    pub fn per_tenant(&self) -> Option<&PerTenant> {
        self.per_tenant.as_ref()
    }

    /// The exposition text, gauges set to the values given.
    pub fn render(&self, connections_v3: usize, tenants_loaded: usize) -> String {
        if let Some(dropped) = DROPPED_LOG_LINES.get() {
            let now = dropped();
            let seen = self.log_lines_dropped_seen.swap(now, Ordering::Relaxed);
            self.log_lines_dropped.inc_by(now.saturating_sub(seen));
        }
        self.connections
            .with_label_values(&["v3"])
            .set(connections_v3 as i64);
        self.tenants_loaded.set(tenants_loaded as i64);
        let mut out = Vec::new();
        // Writing to a Vec cannot fail; a metric that cannot be encoded
        // would be a bug in this module's registrations.
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(%err, "metrics could not be encoded");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// The counters, for the dashboard.
    pub fn totals(&self) -> Totals {
        let auth_failures = sum_over_labels(&self.auth_failures);
        Totals {
            entries_appended: self.entries_appended.get(),
            bytes_received: self.bytes_received.get(),
            bytes_sent: self.bytes_sent.get(),
            frames_received: self.frames_received.get(),
            storage_errors: self.storage_errors.get(),
            auth_failures,
            catchup_reads: self.catchup_reads.get(),
            connections_closed: self.closed.iter().map(IntCounter::get).sum(),
        }
    }

    /// Commit duration percentiles, for the dashboard.
    pub fn commit_percentiles(&self) -> Percentiles {
        percentiles(&self.commit_duration)
    }

    /// Delivery lag percentiles, for the dashboard.
    pub fn lag_percentiles(&self) -> Percentiles {
        percentiles(&self.delivery_lag)
    }
}

impl PerTenant {
    /// Entries `tenant` stored.
    pub fn appended(&self, tenant: &str, n: u64) {
        add(&self.entries_appended.with_label_values(&[tenant]), n);
    }

    /// `tenant` has `n` open sockets.
    pub fn set_connections(&self, tenant: &str, n: usize) {
        self.connections.with_label_values(&[tenant]).set(n as i64);
    }

    /// `tenant` unloaded: its series go (bounded cardinality).
    pub fn forget(&self, tenant: &str) {
        let _ = self.entries_appended.remove_label_values(&[tenant]);
        let _ = self.connections.remove_label_values(&[tenant]);
    }

    /// The busiest loaded tenants by entries stored, at most `n`.
    pub fn busiest(&self, n: usize) -> Vec<(String, u64, i64)> {
        use prometheus::core::Collector;
        let mut rows: Vec<(String, u64, i64)> = Vec::new();
        for family in self.entries_appended.collect() {
            for metric in family.get_metric() {
                let Some(tenant) = metric.get_label().first().map(|l| l.value()) else {
                    continue;
                };
                let entries = metric.get_counter().get_value() as u64;
                let conns = self
                    .connections
                    .get_metric_with_label_values(&[tenant])
                    .map(|g| g.get())
                    .unwrap_or(0);
                rows.push((tenant.to_owned(), entries, conns));
            }
        }
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows.truncate(n);
        rows
    }
}

/// The label of a refused admin credential.
pub(crate) fn admin_label(refusal: evsync_core::access::AdminRefusal) -> &'static str {
    match refusal {
        evsync_core::access::AdminRefusal::MissingToken => "admin_missing",
        _ => "admin_wrong",
    }
}

/// The label of an auth refusal (a small fixed set).
pub(crate) fn deny_label(reason: DenyReason) -> &'static str {
    use evsync_core::access::signed_token::TokenError;
    match reason {
        DenyReason::Missing => "missing",
        DenyReason::QueryTokenNotAllowed => "query_token_not_allowed",
        DenyReason::Wrong => "wrong",
        DenyReason::SignedToken(TokenError::Malformed) => "malformed",
        DenyReason::SignedToken(TokenError::BadSignature) => "bad_signature",
        DenyReason::SignedToken(TokenError::BadPayload) => "bad_payload",
        DenyReason::OtherTenant => "other_tenant",
        DenyReason::Expired => "expired",
        DenyReason::Revoked => "revoked",
    }
}

fn add(counter: &IntCounter, n: u64) {
    if n > 0 {
        counter.inc_by(n);
    }
}

/// The sum of `vec` over every label value.
fn sum_over_labels(vec: &IntCounterVec) -> u64 {
    use prometheus::core::Collector;
    vec.collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .map(|metric| metric.get_counter().get_value() as u64)
        .sum()
}

/// p50/p90/p99 of `histogram`, interpolated linearly inside the bucket
/// that holds each rank (as Prometheus' `histogram_quantile` does).
fn percentiles(histogram: &Histogram) -> Percentiles {
    use prometheus::core::Collector;
    let families = histogram.collect();
    let Some(h) = families
        .first()
        .and_then(|f| f.get_metric().first())
        .map(|m| m.get_histogram().clone())
    else {
        return Percentiles {
            count: 0,
            p50: None,
            p90: None,
            p99: None,
        };
    };
    let count = h.get_sample_count();
    let buckets: Vec<(f64, u64)> = h
        .get_bucket()
        .iter()
        .map(|b| (b.upper_bound(), b.cumulative_count()))
        .collect();
    let quantile = |q: f64| quantile(q, count, &buckets);
    Percentiles {
        count,
        p50: quantile(0.5),
        p90: quantile(0.9),
        p99: quantile(0.99),
    }
}

fn quantile(q: f64, count: u64, buckets: &[(f64, u64)]) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let rank = q * count as f64;
    let mut lower = 0.0;
    let mut below = 0u64;
    for &(upper, cumulative) in buckets {
        if cumulative as f64 >= rank {
            let inside = (cumulative - below) as f64;
            let fraction = if inside > 0.0 {
                (rank - below as f64) / inside
            } else {
                1.0
            };
            return Some(lower + (upper - lower) * fraction.clamp(0.0, 1.0));
        }
        lower = upper;
        below = cumulative;
    }
    // Above the last bucket: its bound is the best we can say.
    buckets.last().map(|&(upper, _)| upper)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        let buckets = [(0.001, 50), (0.002, 90), (0.005, 100)];
        assert_eq!(quantile(0.5, 100, &buckets), Some(0.001));
        let p90 = quantile(0.9, 100, &buckets).unwrap();
        assert!((p90 - 0.002).abs() < 1e-12);
        let p99 = quantile(0.99, 100, &buckets).unwrap();
        assert!(p99 > 0.002 && p99 <= 0.005);
        assert_eq!(quantile(0.5, 0, &buckets), None);
    }

    #[test]
    fn every_required_family_is_exported() {
        let metrics = Metrics::new(true);
        let mut stats = EngineStats::default();
        stats.log.entries_appended = 3;
        stats.closed(CloseKind::Peer);
        metrics.record(&stats);
        metrics.observe_commit(Duration::from_millis(2));
        metrics.observe_delivery_lag(Duration::from_micros(80));
        metrics.auth_failed("wrong");
        metrics.per_tenant().unwrap().appended("acme", 3);
        let text = metrics.render(2, 1);
        for family in [
            "evsync_connections{protocol=\"v3\"} 2",
            "evsync_tenants_loaded 1",
            "evsync_entries_appended_total 3",
            "evsync_bytes_received_total",
            "evsync_bytes_sent_total",
            "evsync_frames_received_total",
            "evsync_connections_closed_total{reason=\"peer\"} 1",
            "evsync_auth_failures_total{reason=\"wrong\"} 1",
            "evsync_storage_errors_total",
            "evsync_commit_duration_seconds_bucket",
            "evsync_delivery_lag_seconds_count 1",
            "evsync_catchup_reads_total",
            "evsync_tenant_entries_appended_total{tenant=\"acme\"} 3",
        ] {
            assert!(text.contains(family), "{family} missing from:\n{text}");
        }
        #[cfg(target_os = "linux")]
        for family in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_cpu_seconds_total",
        ] {
            assert!(text.contains(family), "{family} missing");
        }
        assert_eq!(metrics.totals().auth_failures, 1);
        assert_eq!(metrics.commit_percentiles().count, 1);
    }
}
