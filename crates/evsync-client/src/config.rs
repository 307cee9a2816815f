//! What a [`Client`](crate::Client) connects to and how it behaves on a bad
//! network. The defaults are Effect's: ping every 10 s, reconnect with
//! exponential backoff from 100 ms up to 5 s.

use crate::error::Error;
use crate::identity::Identity;
use crate::state::StateStore;
use evsync_core::wire::Sequence;
use std::time::Duration;

/// How the token reaches the server. Both are accepted by evsync and by the
/// original Cloudflare worker.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <token>`: for native clients (browsers cannot
    /// set headers on a WebSocket).
    Bearer(String),
    /// `Sec-WebSocket-Protocol: sync-auth.<token>`: what a browser can send;
    /// the server must echo it, which the handshake checks.
    Subprotocol(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Auth::Subprotocol(_) => f.write_str("Subprotocol(<redacted>)"),
        }
    }
}

/// Reconnect delays: `initial * 2^attempt`, capped at `max`, each drawn at
/// random from its upper half so that many replicas dropped at once by a
/// server restart do not all come back in the same millisecond.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The delay before reconnect attempt `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.max);
        let mut r = [0u8; 8];
        let jitter = match getrandom::fill(&mut r) {
            Ok(()) => u64::from_le_bytes(r) as f64 / u64::MAX as f64,
            Err(_) => 1.0,
        };
        ceiling.mul_f64(0.5 + 0.5 * jitter)
    }
}

/// A client's configuration. Build with [`Config::new`] and the `with_*`
/// methods.
#[derive(Clone, Debug)]
pub struct Config {
    /// The full endpoint, e.g. `ws://127.0.0.1:8787/event-log/my-tenant`
    /// (see [`endpoint`]).
    pub url: String,
    /// Which log to sync and the key its entries are sealed with.
    pub identity: Identity,
    pub auth: Option<Auth>,
    /// How often to send `Ping`; `None` disables pinging (and with it the
    /// detection of a silently dead connection).
    pub ping_interval: Option<Duration>,
    /// How long a `Pong` may take before the connection is dropped and
    /// re-established.
    pub ping_timeout: Duration,
    /// How long the WebSocket handshake plus the server's `Hello` may take.
    pub connect_timeout: Duration,
    pub backoff: Backoff,
    /// Where the positions to resume from are kept.
    pub state: StateStore,
    /// Deliver entries from this sequence on, on the first server seen,
    /// whatever the state says (`evsync tail --from`).
    pub start_sequence: Option<Sequence>,
}

impl Config {
    /// A configuration with Effect's defaults and no token.
    pub fn new(url: impl Into<String>, identity: Identity) -> Self {
        Config {
            url: url.into(),
            identity,
            auth: None,
            ping_interval: Some(Duration::from_secs(10)),
            ping_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            state: StateStore::Memory,
            start_sequence: None,
        }
    }

    /// Sends `token` as `Authorization: Bearer`.
    pub fn with_bearer_token(mut self, token: impl Into<String>) -> Self {
        self.auth = Some(Auth::Bearer(token.into()));
        self
    }

    /// Sends `token` as the `sync-auth.<token>` subprotocol.
    pub fn with_subprotocol_token(mut self, token: impl Into<String>) -> Self {
        self.auth = Some(Auth::Subprotocol(token.into()));
        self
    }

    pub fn with_ping(mut self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.ping_interval = interval;
        self.ping_timeout = timeout;
        self
    }

    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn with_state(mut self, state: StateStore) -> Self {
        self.state = state;
        self
    }

    pub fn with_start_sequence(mut self, sequence: Sequence) -> Self {
        self.start_sequence = Some(sequence);
        self
    }
}

/// Whether `tenant` is one the server accepts (the server's own rule).
pub use evsync_core::access::is_valid_tenant;

/// The endpoint of `tenant` under a base URL such as
/// `wss://sync.example.workers.dev/event-log` (as the original smoke test's
/// `CLOUDFLARE_SYNC_URL`): the base without trailing slashes, `/`, tenant.
pub fn endpoint(base: &str, tenant: &str) -> Result<String, Error> {
    if !is_valid_tenant(tenant) {
        return Err(Error::InvalidTenant(tenant.to_owned()));
    }
    let base = base.trim();
    if !(base.starts_with("ws://") || base.starts_with("wss://")) {
        return Err(Error::InvalidUrl {
            url: base.to_owned(),
            reason: "expected a ws:// or wss:// URL".into(),
        });
    }
    Ok(format!("{}/{tenant}", base.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_appends_the_tenant() {
        assert_eq!(
            endpoint("ws://127.0.0.1:8787/event-log/", "t-1").unwrap(),
            "ws://127.0.0.1:8787/event-log/t-1"
        );
        assert!(matches!(
            endpoint("ws://h/event-log", "-bad"),
            Err(Error::InvalidTenant(_))
        ));
        assert!(matches!(
            endpoint("http://h/event-log", "t"),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(is_valid_tenant(&"a".repeat(128)));
        assert!(!is_valid_tenant(&"a".repeat(129)));
        assert!(!is_valid_tenant("a/b"));
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let b = Backoff::default();
        for attempt in 0..40 {
            let d = b.delay(attempt);
            let ceiling = (Duration::from_millis(100) * 2u32.saturating_pow(attempt.min(20)))
                .min(Duration::from_secs(5));
            assert!(d <= ceiling && d >= ceiling / 2, "{attempt}: {d:?}");
        }
    }
}
