//! The Worker's variables, read the way the original reads them, with the
//! same meaning as the native server's settings (`evsync_core::settings`).

use evsync_core::log::WriteRate;
use evsync_core::proto::v3::EngineConfig;
use evsync_core::settings::{
    DEFAULT_MAX_CONNECTIONS_PER_TENANT, TENANT_WRITE_BURST_VAR, TENANT_WRITE_RATE_VAR, parse_bool,
    parse_idle_socket_timeout, parse_limit, parse_write_rate,
};
use js_sys::Reflect;
use wasm_bindgen::JsValue;
use worker::Env;

/// `SYNC_DEBUG`: log every request and every open/close.
pub const DEBUG_VAR: &str = "SYNC_DEBUG";

/// `SYNC_ALLOW_QUERY_TOKEN`: also accept `?token=`.
pub const QUERY_TOKEN_VAR: &str = "SYNC_ALLOW_QUERY_TOKEN";

/// `SYNC_IDLE_SOCKET_TIMEOUT`: close a socket after this many seconds
/// without a frame from it (off by default; only for clients that ping).
pub const IDLE_SOCKET_TIMEOUT_VAR: &str = "SYNC_IDLE_SOCKET_TIMEOUT";

/// A variable or secret as text. `[vars]` may hold a TOML table (for
/// `SYNC_AUTH_TOKENS`), which arrives as a JS object: it is returned as
/// its JSON text so that both spellings parse the same way.
pub fn text(env: &Env, name: &str) -> Option<String> {
    let value = Reflect::get(env.as_ref(), &JsValue::from_str(name)).ok()?;
    if value.is_undefined() || value.is_null() {
        return None;
    }
    if let Some(text) = value.as_string() {
        return Some(text);
    }
    if value.is_object() {
        return js_sys::JSON::stringify(&value).ok().map(String::from);
    }
    if let Some(b) = value.as_bool() {
        return Some(b.to_string());
    }
    value.as_f64().map(|n| n.to_string())
}

/// A boolean switch, parsed exactly as the native server parses its
/// settings: `true`/`1` on, `false`/`0`/empty/unset off. Anything else is
/// an error naming the variable (`SYNC_DEBUG: expected true, 1, false or
/// 0, got "yes"`); callers fail closed on it, never guess.
pub fn flag(env: &Env, name: &str) -> Result<bool, String> {
    parse_bool(text(env, name).as_deref().unwrap_or("")).map_err(|err| format!("{name}: {err}"))
}

/// `SYNC_IDLE_SOCKET_TIMEOUT` in milliseconds, parsed as the native
/// server parses it; an error names the variable (callers fail closed).
pub fn idle_socket_timeout(env: &Env) -> Result<Option<u64>, String> {
    parse_idle_socket_timeout(text(env, IDLE_SOCKET_TIMEOUT_VAR).as_deref().unwrap_or(""))
        .map_err(|err| format!("{IDLE_SOCKET_TIMEOUT_VAR}: {err}"))
}

/// `SYNC_MAX_CONNECTIONS_PER_TENANT`: open sockets of one tenant (its
/// Durable Object); more are refused with 503 and `Retry-After`.
pub const MAX_CONNECTIONS_PER_TENANT_VAR: &str = "SYNC_MAX_CONNECTIONS_PER_TENANT";

/// `SYNC_MAX_CONNECTIONS_PER_TENANT`, parsed as the native server parses
/// it; an error names the variable (callers fail closed).
pub fn max_connections_per_tenant(env: &Env) -> Result<usize, String> {
    let value = text(env, MAX_CONNECTIONS_PER_TENANT_VAR);
    parse_limit(
        value.as_deref().unwrap_or(""),
        DEFAULT_MAX_CONNECTIONS_PER_TENANT,
    )
    .map_err(|err| format!("{MAX_CONNECTIONS_PER_TENANT_VAR}: {err}"))
}

/// `SYNC_TENANT_WRITE_RATE` and `SYNC_TENANT_WRITE_BURST`, parsed as the
/// native server parses them; an error names the variable (callers fail
/// closed).
pub fn write_rate(env: &Env) -> Result<Option<WriteRate>, String> {
    let rate = text(env, TENANT_WRITE_RATE_VAR).unwrap_or_default();
    let burst = text(env, TENANT_WRITE_BURST_VAR).unwrap_or_default();
    parse_write_rate(&rate, &burst).map_err(|err| format!("{}: {}", err.var, err.problem))
}

/// The engine's limits: the production defaults plus
/// `SYNC_IDLE_SOCKET_TIMEOUT`, which the test build (feature `selftest`)
/// lets `SYNC_TEST_CHUNK_MAX_AGE_MS` shorten so that the end-to-end tests
/// can watch an incomplete chunked message expire.
pub fn engine_config(env: &Env) -> Result<EngineConfig, String> {
    let mut config = EngineConfig {
        idle_socket_timeout_ms: idle_socket_timeout(env)?,
        ..EngineConfig::default()
    };
    config.log.write_rate = write_rate(env)?;
    #[cfg(feature = "selftest")]
    if let Some(ms) = text(env, "SYNC_TEST_CHUNK_MAX_AGE_MS").and_then(|v| v.trim().parse().ok()) {
        config.chunks.max_incomplete_age_ms = ms;
    }
    Ok(config)
}

/// `SYNC_STORAGE`: which backend the Durable Object stores logs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageChoice {
    /// Unset: D1 when `SYNC_DB` is bound, else Durable Object SQLite.
    Auto,
    /// `"do"`: Durable Object SQLite even when `SYNC_DB` is bound.
    DurableObject,
    /// `"d1"`: the `SYNC_DB` binding; an error when it is missing.
    D1,
}

impl StorageChoice {
    /// Reads `SYNC_STORAGE`. Any other value than `do`/`d1` (the original
    /// compares exactly) behaves as unset, with a warning in the log.
    pub fn from_env(env: &Env) -> StorageChoice {
        match text(env, "SYNC_STORAGE").as_deref().map(str::trim) {
            None | Some("") => StorageChoice::Auto,
            Some(v) if v.eq_ignore_ascii_case("do") => StorageChoice::DurableObject,
            Some(v) if v.eq_ignore_ascii_case("d1") => StorageChoice::D1,
            Some(other) => {
                crate::log::warning!(
                    "SYNC_STORAGE is neither \"do\" nor \"d1\": choosing automatically",
                    value = other
                );
                StorageChoice::Auto
            }
        }
    }
}

/// Name of the D1 binding, as in the original's wrangler.toml.
pub const D1_BINDING: &str = "SYNC_DB";

/// Name of the Durable Object namespace binding.
pub const DO_BINDING: &str = "SYNC_DO";
