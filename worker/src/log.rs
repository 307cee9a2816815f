//! The Worker's log lines: one JSON object per `console` call, in the shape
//! of the native server's `--log-format json` (tracing-subscriber's JSON
//! formatter), so that one log pipeline reads both:
//!
//! ```json
//! {"timestamp":"2026-05-01T10:00:00.123Z","level":"INFO","target":"evsync_worker::durable_object","fields":{"message":"storage chosen","tenant":"acme","storage":"D1 (SYNC_DB)"}}
//! ```
//!
//! `timestamp` is RFC 3339 (UTC, milliseconds), `level` one of `DEBUG`,
//! `INFO`, `WARN`, `ERROR` (written with `console.debug`/`log`/`warn`/
//! `error`, so Workers Logs files each line at its level too), `target` the
//! module that logged, `fields` the message and its key–values. A field
//! whose value is `None` is left out, as tracing leaves it out. Each line
//! is one JSON string, so `wrangler dev` and `wrangler tail` show it on one
//! line and Workers Logs / Logpush index its fields.
//!
//! Callers use the macros (`log::info!("message", tenant = t, conn = c)`,
//! `debug!`, `warning!` (not `warn`, a built-in attribute), `error!`);
//! values are anything `serde::Serialize`. Never pass a token or secret:
//! nothing here could tell one from any other string.

use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;

/// How severe a line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    /// As tracing-subscriber writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

/// A field value for a line (`null`, and so left out, if it cannot be
/// written as JSON).
pub fn value<T: Serialize + ?Sized>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// One line, as the JSON text written to the console. Keys in the native
/// server's order: `timestamp`, `level`, `target`, then `fields` with
/// `message` first and the others in the caller's order.
pub fn render(
    timestamp: &str,
    level: Level,
    target: &str,
    message: &str,
    fields: &[(&str, Value)],
) -> String {
    let mut line = String::with_capacity(160);
    let _ = write!(
        line,
        "{{\"timestamp\":{},\"level\":\"{}\",\"target\":{},\"fields\":{{\"message\":{}",
        Value::from(timestamp),
        level.as_str(),
        Value::from(target),
        Value::from(message),
    );
    for (key, value) in fields {
        if !value.is_null() && *key != "message" {
            let _ = write!(line, ",{}:{value}", Value::from(*key));
        }
    }
    line.push_str("}}");
    line
}

/// Writes one line to the console at `level`, stamped now.
pub fn emit(level: Level, target: &str, message: &str, fields: &[(&str, Value)]) {
    let now = String::from(js_sys::Date::new_0().to_iso_string());
    let line = render(&now, level, target, message, fields);
    match level {
        Level::Debug => worker::console_debug!("{line}"),
        Level::Info => worker::console_log!("{line}"),
        Level::Warn => worker::console_warn!("{line}"),
        Level::Error => worker::console_error!("{line}"),
    }
}

/// `event!(Level, "message", key = value, …)`: one line from the calling
/// module.
macro_rules! event {
    ($level:ident, $message:expr $(, $key:ident = $value:expr)* $(,)?) => {
        $crate::log::emit(
            $crate::log::Level::$level,
            module_path!(),
            $message,
            &[$((stringify!($key), $crate::log::value(&$value))),*],
        )
    };
}

/// A `DEBUG` line.
macro_rules! debug {
    ($($args:tt)*) => { $crate::log::event!(Debug, $($args)*) };
}

/// An `INFO` line.
macro_rules! info {
    ($($args:tt)*) => { $crate::log::event!(Info, $($args)*) };
}

/// A `WARN` line.
macro_rules! warning {
    ($($args:tt)*) => { $crate::log::event!(Warn, $($args)*) };
}

/// An `ERROR` line.
macro_rules! error {
    ($($args:tt)*) => { $crate::log::event!(Error, $($args)*) };
}

pub(crate) use {debug, error, event, info, warning};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_native_json_shape() {
        let line = render(
            "2026-05-01T10:00:00.123Z",
            Level::Warn,
            "evsync_worker::driver",
            "closing connection",
            &[
                ("tenant", value("acme")),
                ("conn", value(&3u64)),
                ("public_key", value(&None::<String>)),
                ("reason", value("a \"quoted\"\nline")),
            ],
        );
        assert_eq!(
            line,
            r#"{"timestamp":"2026-05-01T10:00:00.123Z","level":"WARN","target":"evsync_worker::driver","fields":{"message":"closing connection","tenant":"acme","conn":3,"reason":"a \"quoted\"\nline"}}"#
        );
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["fields"]["message"], "closing connection");
        assert!(
            parsed["fields"].get("public_key").is_none(),
            "None is left out"
        );
    }
}
