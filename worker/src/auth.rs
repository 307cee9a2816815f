//! Reads the auth settings from the Worker's variables. The rules
//! themselves (token precedence, Bearer / `sync-auth.` subprotocol /
//! `?token=`, constant-time comparison) are `evsync_core::access`, shared
//! with the native server so both answer exactly alike.

use crate::config;
use evsync_core::access::signed_token::TokenSecret;
use evsync_core::access::{AdminToken, AuthConfig};
use worker::Env;

/// `SYNC_AUTH_TOKEN`, `SYNC_AUTH_TOKENS`, `SYNC_ALLOW_QUERY_TOKEN` and
/// `SYNC_TOKEN_SECRET`, read per request (they are plain values on `env`;
/// reading them is cheap).
///
/// Unlike the original, which silently ignored a `SYNC_AUTH_TOKENS` it
/// could not parse (leaving open the tenants the operator meant to
/// protect), such a value is an error, and so is a switch that is neither
/// on nor off: the Worker then refuses every request rather than fail
/// open. The native server refuses to start. The error names the variable,
/// never a token.
pub fn from_env(env: &Env) -> Result<AuthConfig, String> {
    let allow_query_token = config::flag(env, config::QUERY_TOKEN_VAR)?;
    let secret = match config::text(env, "SYNC_TOKEN_SECRET").filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => Some(TokenSecret::new(&raw).map_err(|e| format!("SYNC_TOKEN_SECRET: {e}"))?),
    };
    let auth = AuthConfig::new(
        config::text(env, "SYNC_AUTH_TOKEN").as_deref(),
        config::text(env, "SYNC_AUTH_TOKENS").as_deref(),
        allow_query_token,
    )
    .map_err(|e| format!("SYNC_AUTH_TOKENS: {e}"))?;
    Ok(auth.with_token_secret(secret))
}

/// `SYNC_ADMIN_TOKEN`: `None` when unset (the admin API is off); an error
/// naming the variable when too short.
pub fn admin_token(env: &Env) -> Result<Option<AdminToken>, String> {
    AdminToken::new(config::text(env, "SYNC_ADMIN_TOKEN").as_deref())
        .map_err(|e| format!("SYNC_ADMIN_TOKEN: {e}"))
}
