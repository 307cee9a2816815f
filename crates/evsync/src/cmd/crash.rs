//! `evsync crash-test`: SIGKILLs under load, resends, and a check of every
//! acknowledged entry (evsync-bench's `crash` module; docs/reliability.md).

pub use evsync_bench::crash::CrashArgs;
use std::process::ExitCode;

pub fn run(args: CrashArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(evsync_bench::crash::run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: crash-test: {e}");
            ExitCode::from(2)
        }
    }
}
