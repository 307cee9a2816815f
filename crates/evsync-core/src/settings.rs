//! How settings are spelled, in one place for every adapter: the native
//! server reads them from flags and environment variables, the Cloudflare
//! Worker from its `[vars]` and secrets, and both must give a value the same
//! meaning (before this module, `yes` was refused by one and meant "off" in
//! the other).

use crate::log::WriteRate;
use std::fmt;

/// A value [`parse_bool`] refuses, kept so the adapter can name it next to
/// the setting (`SYNC_DEBUG: expected true, 1, false or 0, got "yes"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotABool(pub String);

impl fmt::Display for NotABool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected true, 1, false or 0, got {:?}", self.0)
    }
}

impl std::error::Error for NotABool {}

/// Parses a boolean setting: `true`/`1` turn it on; `false`/`0`/empty (or
/// only whitespace) leave it off; the words in any ASCII case, since the
/// original worker's users wrote `True` as well. Anything else is refused
/// rather than guessed, so that `SYNC_ALLOW_QUERY_TOKEN=yes` means neither
/// "off" nor "on" but a configuration error the operator sees.
pub fn parse_bool(value: &str) -> Result<bool, NotABool> {
    match value.trim() {
        "1" => Ok(true),
        "0" | "" => Ok(false),
        v if v.eq_ignore_ascii_case("true") => Ok(true),
        v if v.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(NotABool(other.to_owned())),
    }
}

/// The default of `SYNC_MAX_CONNECTIONS_PER_TENANT`, the same on the
/// native server and the Worker.
pub const DEFAULT_MAX_CONNECTIONS_PER_TENANT: usize = 10_000;

/// What a socket refused over a limit is told to wait, in seconds
/// (`Retry-After`).
pub const LIMIT_RETRY_AFTER_SECS: u32 = 5;

/// Parses a limit (`SYNC_MAX_CONNECTIONS`, …): a whole number of at least
/// 1; empty (or only whitespace) keeps `default`. Zero is refused rather
/// than read as "no limit" or "refuse everything".
pub fn parse_limit(value: &str, default: usize) -> Result<usize, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(default);
    }
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "expected a whole number of at least 1, got {value:?}"
        )),
    }
}

/// How long a connection may take to send its HTTP request headers (the
/// WebSocket handshake) before the native server closes it: long enough
/// for a replica on a slow mobile link, short enough that a slowloris
/// attacker holds each socket only briefly.
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECS: u64 = 10;

/// Longest idle-socket timeout accepted: a day. Longer would hardly differ
/// from off, and a typo of a few extra digits should be caught.
pub const MAX_IDLE_SOCKET_TIMEOUT_SECS: u64 = 86_400;

/// Parses `SYNC_IDLE_SOCKET_TIMEOUT`: whole seconds, `1` to a day, into
/// milliseconds; empty (or only whitespace) or `0` leave it off (`None`).
/// Anything else is an error saying what was expected.
pub fn parse_idle_socket_timeout(value: &str) -> Result<Option<u64>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    match value.parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(secs) if secs <= MAX_IDLE_SOCKET_TIMEOUT_SECS => Ok(Some(secs * 1000)),
        _ => Err(format!(
            "expected whole seconds from 1 to {MAX_IDLE_SOCKET_TIMEOUT_SECS} (0 or empty: off), got {value:?}"
        )),
    }
}

/// `SYNC_TENANT_WRITE_RATE`: a tenant's sustained write rate, bytes/s.
pub const TENANT_WRITE_RATE_VAR: &str = "SYNC_TENANT_WRITE_RATE";
/// `SYNC_TENANT_WRITE_BURST`: what a tenant may write at once above it.
pub const TENANT_WRITE_BURST_VAR: &str = "SYNC_TENANT_WRITE_BURST";

/// A write-rate setting that cannot be used: which variable, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRateError {
    /// [`TENANT_WRITE_RATE_VAR`] or [`TENANT_WRITE_BURST_VAR`].
    pub var: &'static str,
    pub problem: String,
}

/// Parses `SYNC_TENANT_WRITE_RATE` and `SYNC_TENANT_WRITE_BURST` (raw
/// values, empty when unset): no limit when the rate is empty; a burst of
/// ten seconds' worth unless given; both whole numbers of at least 1. A
/// burst without a rate is refused (it would silently mean nothing).
pub fn parse_write_rate(rate: &str, burst: &str) -> Result<Option<WriteRate>, WriteRateError> {
    let error = |var, problem| WriteRateError { var, problem };
    if rate.trim().is_empty() {
        if !burst.trim().is_empty() {
            return Err(error(
                TENANT_WRITE_BURST_VAR,
                format!("needs {TENANT_WRITE_RATE_VAR} too"),
            ));
        }
        return Ok(None);
    }
    let bytes_per_sec = parse_limit(rate, 1).map_err(|e| error(TENANT_WRITE_RATE_VAR, e))? as u64;
    let ten_seconds = usize::try_from(bytes_per_sec.saturating_mul(10)).unwrap_or(usize::MAX);
    let burst_bytes =
        parse_limit(burst, ten_seconds).map_err(|e| error(TENANT_WRITE_BURST_VAR, e))? as u64;
    Ok(Some(WriteRate {
        bytes_per_sec,
        burst_bytes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_rates() {
        assert_eq!(parse_write_rate("", ""), Ok(None));
        assert_eq!(
            parse_write_rate(" 1000 ", ""),
            Ok(Some(WriteRate {
                bytes_per_sec: 1000,
                burst_bytes: 10_000
            }))
        );
        assert_eq!(
            parse_write_rate("1000", "50"),
            Ok(Some(WriteRate {
                bytes_per_sec: 1000,
                burst_bytes: 50
            }))
        );
        assert_eq!(
            parse_write_rate("", "50").unwrap_err().var,
            TENANT_WRITE_BURST_VAR
        );
        assert_eq!(
            parse_write_rate("0", "").unwrap_err().var,
            TENANT_WRITE_RATE_VAR
        );
        assert_eq!(
            parse_write_rate("fast", "").unwrap_err().var,
            TENANT_WRITE_RATE_VAR
        );
        assert_eq!(
            parse_write_rate("10", "-1").unwrap_err().var,
            TENANT_WRITE_BURST_VAR
        );
    }

    #[test]
    fn limits_are_whole_numbers_of_at_least_one() {
        assert_eq!(parse_limit("", 7), Ok(7));
        assert_eq!(parse_limit(" 12 ", 7), Ok(12));
        for bad in ["0", "-1", "1.5", "many"] {
            assert!(parse_limit(bad, 7).is_err(), "{bad}");
        }
    }

    #[test]
    fn idle_socket_timeouts() {
        assert_eq!(parse_idle_socket_timeout(""), Ok(None));
        assert_eq!(parse_idle_socket_timeout("0"), Ok(None));
        assert_eq!(parse_idle_socket_timeout(" 90 "), Ok(Some(90_000)));
        assert_eq!(parse_idle_socket_timeout("86400"), Ok(Some(86_400_000)));
        for refused in ["-1", "1.5", "90s", "86401", "1e3", "abc"] {
            assert!(parse_idle_socket_timeout(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn on_off_and_refused() {
        for on in ["true", "1", " TRUE ", "True"] {
            assert_eq!(parse_bool(on), Ok(true), "{on:?}");
        }
        for off in ["false", "0", "", "  ", "FALSE"] {
            assert_eq!(parse_bool(off), Ok(false), "{off:?}");
        }
        for refused in ["yes", "no", "on", "off", "2", "-1", "t", "truee", "1.0"] {
            assert!(parse_bool(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn the_refusal_names_the_value() {
        let err = parse_bool(" yes ").unwrap_err();
        assert_eq!(err.to_string(), "expected true, 1, false or 0, got \"yes\"");
    }
}
