//! Arguments shared by the commands that talk to a server.

use crate::config::{Config, endpoint};
use crate::error::Error;
use crate::identity::Identity;
use std::time::Duration;

/// How `--token` is presented.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TokenVia {
    /// `Authorization: Bearer <token>`.
    #[default]
    Header,
    /// `Sec-WebSocket-Protocol: sync-auth.<token>` (what browsers send).
    Subprotocol,
}

/// Which Effect EventLog protocol a command speaks.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Effect 3's `EventLogRemote` (msgpack; evsync's `/event-log/<tenant>`).
    #[default]
    V3,
    /// Effect 4's `effect/eventlog` (RPC over SchemaBinary, Ed25519 session
    /// auth, stores; evsync's `/v4/event-log/<tenant>`).
    V4,
}

/// The protocol and, for v4, the store.
#[derive(clap::Args, Debug, Clone)]
pub struct ProtocolArgs {
    /// The protocol. For v4 give the v4 endpoint as --url, e.g.
    /// ws://127.0.0.1:8787/v4/event-log on evsync.
    #[arg(long, value_enum, default_value_t = Protocol::V3)]
    pub protocol: Protocol,

    /// v4: the store of the identity to use (Effect's
    /// `EventLog.CurrentStoreId`).
    #[arg(long, value_name = "STORE", default_value = "default")]
    pub store_id: String,
}

/// Where the server is and how to get in. The environment variables are
/// the original worker's smoke-test ones, so a deployment's settings work
/// unchanged.
#[derive(clap::Args, Debug, Clone)]
pub struct RemoteArgs {
    /// Base endpoint URL, e.g. ws://127.0.0.1:8787/event-log or
    /// wss://WORKER/event-log; `/TENANT` is appended.
    #[arg(long, env = "CLOUDFLARE_SYNC_URL", value_name = "URL")]
    pub url: String,

    /// Tenant (one isolated set of logs on the server).
    #[arg(long, env = "CLOUDFLARE_SYNC_TENANT", value_name = "TENANT")]
    pub tenant: String,

    /// Token for the tenant, if the server requires one. Prefer the
    /// environment variable: flags are visible to other local users.
    #[arg(
        long,
        env = "CLOUDFLARE_SYNC_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// How to send the token.
    #[arg(long, value_enum, default_value_t = TokenVia::Header)]
    pub token_via: TokenVia,
}

impl RemoteArgs {
    /// The tenant's endpoint URL.
    pub fn endpoint(&self) -> Result<String, Error> {
        endpoint(&self.url, &self.tenant)
    }

    /// A client configuration for `identity` at this endpoint.
    pub fn config(&self, identity: Identity) -> Result<Config, Error> {
        let config = Config::new(self.endpoint()?, identity);
        Ok(match self.token.as_deref().filter(|t| !t.is_empty()) {
            None => config,
            Some(token) => match self.token_via {
                TokenVia::Header => config.with_bearer_token(token),
                TokenVia::Subprotocol => config.with_subprotocol_token(token),
            },
        })
    }
}

/// Parses `10s`, `500ms`, `2m`, `1h`, `7d` or a bare number of seconds
/// (`1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else if let Some(n) = s.strip_suffix('d') {
        (n, 86400.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 10s, 500ms, 2m, 1h, 7d)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{s:?} is not a positive duration"));
    }
    Duration::try_from_secs_f64(value * scale).map_err(|e| e.to_string())
}

/// Parses an identity argument, for clap.
pub(crate) fn parse_identity(s: &str) -> Result<Identity, String> {
    Identity::from_effect_string(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
