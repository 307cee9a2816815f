//! `evsync hostile`: the hostile-peer suite, every attack at once against
//! one server while a normal client measures its latency (evsync-bench's
//! `hostile` module; docs/reliability.md).

pub use evsync_bench::hostile::HostileArgs;
use std::process::ExitCode;

/// Runs the suite with the open-files soft limit raised to the hard limit
/// (it holds thousands of idle sockets and a slowloris storm).
pub fn run(args: HostileArgs) -> ExitCode {
    let open_files = crate::limits::raise_open_files_limit().unwrap_or(0);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(evsync_bench::hostile::run(args, open_files));
    // Don't wait for sockets the run left to the runtime.
    runtime.shutdown_background();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: hostile: {e}");
            ExitCode::from(2)
        }
    }
}
