//! Log output: `tracing` to stderr, filtered by `RUST_LOG` (default `info`),
//! human-readable by default or one JSON object per line
//! (`--log-format json` / `SYNC_LOG_FORMAT=json`) for log pipelines.

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2026-12-02T10:00:00Z  INFO message key=value` (the default).
    #[default]
    Text,
    /// `{"timestamp":…,"level":"INFO","target":…,"fields":{"message":…,…}}`.
    Json,
}

impl LogFormat {
    /// Parses `text` or `json` (any case; empty is text).
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("expected text or json, got {other:?}")),
        }
    }
}

/// Lines the server's log thread holds while stderr does not take them;
/// past this, new lines are dropped (about 3 MB at 200 bytes a line). The
/// default of `--log-buffer-lines`.
pub const SERVER_BUFFERED_LINES: usize = 16_384;

/// Installs the global subscriber in the human-readable format, writing
/// to stderr directly (the CLI's commands: a reader of their output waits
/// for it anyway).
pub fn init() {
    install(LogFormat::Text, std::io::stderr);
}

/// Installs the server's subscriber: lines go to stderr from a thread of
/// their own, so a log reader that stops reading (a stuck pipe, a slow
/// log driver) never blocks the threads that serve sockets; while it does,
/// up to `buffered_lines` wait and later ones are dropped, counted by the
/// returned [`ErrorCounter`]. Keep the guard until exit: dropping it writes
/// out what is still queued.
pub fn init_server(format: LogFormat, buffered_lines: usize) -> (WorkerGuard, ErrorCounter) {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(buffered_lines)
        .thread_name("evsync-log")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    install(format, writer);
    (guard, dropped)
}

/// Installs the global subscriber. Colors only on a terminal, so that log
/// files and the tests that read the startup line see plain text.
fn install<W>(format: LogFormat, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            builder.with_ansi(ansi).with_target(false).try_init()
        }
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(LogFormat::parse("JSON"), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse(""), Ok(LogFormat::Text));
        assert!(LogFormat::parse("xml").is_err());
    }
}
