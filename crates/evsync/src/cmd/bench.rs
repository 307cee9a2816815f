//! `evsync bench`: the load generator and benchmark harness (evsync-bench).
//! Scenarios: write, fanout, catchup, idle, tenants, raw-sqlite; `preload`
//! fills a tenant file; `report` renders the results table. `scripts/bench`
//! runs them all against evsync and Effect's own server (BENCHMARKS.md).

pub use evsync_bench::BenchArgs;
use std::process::ExitCode;

/// Runs `evsync bench` with the open-files soft limit raised to the hard
/// limit (the idle and tenants scenarios hold thousands of sockets).
pub fn run(args: BenchArgs) -> ExitCode {
    let open_files = crate::limits::raise_open_files_limit().unwrap_or(0);
    evsync_bench::run(args, open_files)
}
