//! `evsync bench`: the load generator and benchmark harness (evsync-bench).
//! Scenarios: write, fanout, catchup, idle, tenants, raw-sqlite; `preload`
//! fills a tenant file; `report` renders the results table. `scripts/bench`
//! runs them all against evsync and Effect's own server (BENCHMARKS.md).

pub use evsync_bench::{BenchArgs, run};
