//! Log output: `tracing` to stderr, filtered by `RUST_LOG` (default `info`),
//! human-readable by default or one JSON object per line
//! (`--log-format json` / `SYNC_LOG_FORMAT=json`) for log pipelines.

use tracing_subscriber::EnvFilter;

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

/// Installs the global subscriber in the human-readable format.
pub fn init() {
    init_with(LogFormat::Text);
}

/// Installs the global subscriber. Colors only on a terminal, so that log
/// files and the tests that read the startup line see plain text.
pub fn init_with(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
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
