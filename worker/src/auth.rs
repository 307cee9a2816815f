//! Reads the auth settings from the Worker's variables. The rules
//! themselves (token precedence, Bearer / `sync-auth.` subprotocol /
//! `?token=`, constant-time comparison) are `evsync_core::access`, shared
//! with the native server so both answer exactly alike.

use crate::config;
use evsync_core::access::AuthConfig;
use worker::Env;

/// `SYNC_AUTH_TOKEN`, `SYNC_AUTH_TOKENS` and `SYNC_ALLOW_QUERY_TOKEN`, read
/// per request (they are plain values on `env`; reading them is cheap).
///
/// Unlike the original, which silently ignored a `SYNC_AUTH_TOKENS` it
/// could not parse (leaving open the tenants the operator meant to
/// protect), such a value is an error, and so is a switch that is neither
/// on nor off: the Worker then refuses every request rather than fail
/// open. The native server refuses to start. The error names the variable,
/// never a token.
pub fn from_env(env: &Env) -> Result<AuthConfig, String> {
    let allow_query_token = config::flag(env, config::QUERY_TOKEN_VAR)?;
    AuthConfig::new(
        config::text(env, "SYNC_AUTH_TOKEN").as_deref(),
        config::text(env, "SYNC_AUTH_TOKENS").as_deref(),
        allow_query_token,
    )
    .map_err(|e| format!("SYNC_AUTH_TOKENS: {e}"))
}
