//! Both protocol engines of one tenant behind one face, for adapters that
//! serve v3 and v4 from one process (the native server, a Durable Object).
//!
//! The tenant's v3 logs and v4 stores are separate data, each under its own
//! log service; the adapter runs one storage, one set of sockets and one
//! action loop for both. [`TenantEngines`] routes each input to the engine
//! of its connection's protocol, storage answers by request id (the v4
//! engine numbers its requests apart, [`v4::is_v4_request`]) and drains the
//! actions of both.

use super::action::Action;
use super::event::Event;
use super::stats::EngineStats;
use super::{v3, v4};
use crate::access::{Grant, Protocol};
use crate::log::{ConnId, ConnMap};
use crate::storage::{RequestId, StorageResponse, StoreKey};
use crate::time::Timestamp;
use crate::wire::{RemoteId, Sequence};
use bytes::Bytes;

/// The v3 and v4 engines of one tenant.
pub struct TenantEngines {
    v3: v3::Engine,
    v4: v4::Engine,
    /// Connections speaking v4, true for the unencrypted endpoint's (every
    /// other connection speaks v3).
    v4_conns: ConnMap<bool>,
}

impl TenantEngines {
    /// The engines of a tenant whose data carries `remote_id`; `random`
    /// makes v4 session-auth challenges.
    pub fn new(
        remote_id: RemoteId,
        v3_config: v3::EngineConfig,
        v4_config: v4::SessionConfig,
        random: v4::Randomness,
    ) -> Self {
        let v3 = v3::Engine::new(remote_id, v3_config);
        let mut v4 = v4::Engine::new(remote_id, v4_config, random);
        // One write rate for the tenant, whichever protocol writes: v4
        // takes v3's bucket (when both have a rate).
        if let Some(quota) = v3.write_quota() {
            v4.share_write_quota(quota);
        }
        TenantEngines {
            v3,
            v4,
            v4_conns: ConnMap::default(),
        }
    }

    /// The v3 engine (hibernation state, v3-only settings).
    pub fn v3(&mut self) -> &mut v3::Engine {
        &mut self.v3
    }

    /// The v4 engine (hibernation state).
    pub fn v4(&mut self) -> &mut v4::Engine {
        &mut self.v4
    }

    /// Re-creates a v4 connection that outlived the engines (see
    /// [`v4::Engine::restore_connection`]).
    pub fn restore_v4_connection(
        &mut self,
        conn: ConnId,
        grant: Grant,
        saved: v4::SavedSession,
        heard_at: Timestamp,
    ) {
        self.v4_conns.insert(conn, saved.plaintext);
        self.v4.restore_connection(conn, grant, saved, heard_at);
    }

    /// What `conn` was opened with, for saving with its socket.
    pub fn grant(&self, conn: ConnId) -> Grant {
        match self.protocol_of(conn) {
            Protocol::V3 => self.v3.grant(conn),
            Protocol::V4 | Protocol::V4Unencrypted => self.v4.grant(conn),
        }
    }

    /// The remoteId both protocols announce.
    pub fn remote_id(&self) -> RemoteId {
        self.v3.remote_id()
    }

    /// The protocol `conn` speaks.
    pub fn protocol_of(&self, conn: ConnId) -> Protocol {
        match self.v4_conns.get(&conn) {
            None => Protocol::V3,
            Some(false) => Protocol::V4,
            Some(true) => Protocol::V4Unencrypted,
        }
    }

    /// A socket of `protocol` was accepted with `grant`.
    pub fn handle_open(&mut self, conn: ConnId, protocol: Protocol, grant: Grant, now: Timestamp) {
        match protocol {
            Protocol::V3 => self.v3.handle_open(conn, grant, now),
            Protocol::V4 | Protocol::V4Unencrypted => {
                let plaintext = protocol == Protocol::V4Unencrypted;
                self.v4_conns.insert(conn, plaintext);
                self.v4.handle_open(conn, grant, plaintext, now);
            }
        }
    }

    /// One WebSocket message arrived on `conn`.
    pub fn handle_message(&mut self, conn: ConnId, data: Bytes, now: Timestamp) {
        match self.protocol_of(conn) {
            Protocol::V3 => self.v3.handle_frame(conn, data, now),
            Protocol::V4 | Protocol::V4Unencrypted => self.v4.handle_message(conn, data, now),
        }
    }

    /// Storage answered a request of either engine.
    pub fn handle_storage_response(&mut self, response: StorageResponse) {
        if v4::is_v4_request(response.id()) {
            self.v4.handle_storage_response(response);
        } else {
            self.v3.handle_storage_response(response);
        }
    }

    /// Storage did not start append `id`: the append in flight before it
    /// was already committing; its writes wait for the next transaction.
    /// False when `id` is not in flight behind another append of its
    /// engine: the caller must run it after all.
    pub fn handle_append_put_back(&mut self, id: RequestId) -> bool {
        if v4::is_v4_request(id) {
            self.v4.handle_append_put_back(id)
        } else {
            self.v3.handle_append_put_back(id)
        }
    }

    /// Storage took append `id` into the still-open transaction of append
    /// `into` (both of one engine: an append joins only its own kind).
    pub fn handle_append_joined(&mut self, id: RequestId, into: RequestId) {
        if v4::is_v4_request(id) {
            self.v4.handle_append_joined(id, into);
        } else {
            self.v3.handle_append_joined(id, into);
        }
    }

    /// `bytes` queued for `conn` were written to its socket.
    pub fn handle_sent(&mut self, conn: ConnId, bytes: usize) {
        match self.protocol_of(conn) {
            Protocol::V3 => self.v3.handle_sent(conn, bytes),
            Protocol::V4 | Protocol::V4Unencrypted => self.v4.handle_sent(conn, bytes),
        }
    }

    /// `conn` closed.
    pub fn handle_close(&mut self, conn: ConnId) {
        if self.v4_conns.remove(&conn).is_some() {
            self.v4.handle_close(conn);
        } else {
            self.v3.handle_close(conn);
        }
    }

    /// The adapter closes `conn` for input bad below the protocol layers
    /// (see [`super::v3::Engine::handle_violation`]).
    pub fn handle_violation(&mut self, conn: ConnId, close_code: u16, reason: String) {
        match self.protocol_of(conn) {
            Protocol::V3 => self.v3.handle_violation(conn, close_code, reason),
            Protocol::V4 | Protocol::V4Unencrypted => {
                self.v4.handle_violation(conn, close_code, reason)
            }
        }
    }

    /// Another writer committed to v3 log `public_key` up to `head`.
    pub fn handle_log_advanced(&mut self, public_key: &str, head: Sequence) {
        self.v3.handle_log_advanced(public_key, head);
    }

    /// Another writer committed to v4 store `store` up to `head`.
    pub fn handle_store_advanced(&mut self, store: &StoreKey, head: Sequence) {
        self.v4.handle_log_advanced(store, head);
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.v3.handle_timeout(now);
        self.v4.handle_timeout(now);
    }

    /// Graceful shutdown of both.
    pub fn handle_shutdown(&mut self) {
        self.v3.handle_shutdown();
        self.v4.handle_shutdown();
    }

    /// Tokens revoked: every connection closes with 1008.
    pub fn handle_revoke(&mut self) {
        self.v3.handle_revoke();
        self.v4
            .close_all(super::close::code::POLICY_VIOLATION, "tokens revoked");
    }

    /// Closes every connection with `code` and `reason`.
    pub fn close_all(&mut self, code: u16, reason: &str) {
        self.v3.close_all(code, reason);
        self.v4.close_all(code, reason);
    }

    /// The earliest time `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.v3
            .poll_timeout()
            .into_iter()
            .chain(self.v4.poll_timeout())
            .min()
    }

    /// The next thing to do: v3's actions, then v4's (each engine's in its
    /// own order; the two never share a connection).
    pub fn poll_action(&mut self) -> Option<Action> {
        let action = self.v3.poll_action().or_else(|| self.v4.poll_action())?;
        // A connection an engine closed gets no `handle_close` (the adapter
        // is told not to report it), so its protocol is forgotten here.
        if let Action::Close { conn, .. } = &action {
            self.v4_conns.remove(conn);
        }
        Some(action)
    }

    /// The next thing worth logging.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.v3.poll_event().or_else(|| self.v4.poll_event())
    }

    /// What both engines did since the last call.
    pub fn take_stats(&mut self) -> EngineStats {
        let mut stats = self.v3.take_stats();
        stats.add(&self.v4.take_stats());
        stats
    }

    /// Open connections, both protocols.
    pub fn connection_count(&self) -> usize {
        self.v3.connection_count() + self.v4.connection_count()
    }

    /// True when neither engine has a connection or storage work.
    pub fn is_idle(&self) -> bool {
        self.v3.is_idle() && self.v4.is_idle()
    }

    /// Seconds until the tenant's writes are no longer held back by its
    /// write rate limit, if they are (both engines share one bucket when
    /// both have a rate; otherwise the longer of the two).
    pub fn write_retry_after_secs(&mut self, now: Timestamp) -> Option<u64> {
        let v3 = self.v3.write_retry_after_secs(now);
        let v4 = self.v4.write_retry_after_secs(now);
        v3.max(v4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::WriteRate;

    #[test]
    fn a_tenants_two_engines_take_one_write_rate_bucket() {
        let rate = Some(WriteRate {
            bytes_per_sec: 1000,
            burst_bytes: 1000,
        });
        let mut v3_config = v3::EngineConfig::default();
        v3_config.log.write_rate = rate;
        let mut v4_config = v4::SessionConfig::default();
        v4_config.log.write_rate = rate;
        let mut engines = TenantEngines::new(
            RemoteId([7; 16]),
            v3_config,
            v4_config,
            Box::new(|| [1; 32]),
        );
        let v3 = engines.v3().write_quota().expect("a rate, a bucket");
        let v4 = engines.v4().write_quota().expect("a rate, a bucket");
        assert!(v3.is_shared_with(&v4), "one bucket for the tenant");
    }

    /// A v4 connection an engine closes is forgotten with its close: the
    /// adapter reports no `handle_close` for it, and a tenant attacked
    /// with bad v4 input would otherwise keep an entry per connection.
    #[test]
    fn a_v4_connection_the_engine_closes_leaves_no_protocol_entry() {
        let mut engines = TenantEngines::new(
            RemoteId([7; 16]),
            v3::EngineConfig::default(),
            v4::SessionConfig::default(),
            Box::new(|| [1; 32]),
        );
        let conn = ConnId(1);
        engines.handle_open(conn, Protocol::V4, Grant::full(), Timestamp(0));
        assert_eq!(engines.protocol_of(conn), Protocol::V4);
        engines.handle_violation(conn, 1002, "bad".into());
        let mut closed = false;
        while let Some(action) = engines.poll_action() {
            closed |= matches!(action, Action::Close { conn: c, .. } if c == conn);
        }
        assert!(closed, "the engine closed it");
        assert!(engines.v4_conns.is_empty(), "{:?}", engines.v4_conns);
    }
}
