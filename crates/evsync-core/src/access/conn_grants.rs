//! The grants of a tenant's open connections, for a protocol layer to
//! enforce: may this connection write to / read from this publicKey, and
//! which connections' tokens have expired.
//!
//! Protocol-neutral: v3 asks before a `WriteEntries` or `RequestChanges`,
//! v4 before its RPCs. Only restricted connections are kept (a full grant
//! costs nothing, so the usual static-token replica adds no work per
//! frame), and the expiries are one ordered set, so the engine's timeout
//! is its first entry: no timer per connection.

use super::grant::Grant;
use crate::log::{ConnId, ConnMap};
use crate::time::Timestamp;
use std::collections::BTreeSet;

/// Why a connection may not do what it asked; the close reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forbidden {
    /// A write with a read-only token.
    ReadOnly,
    /// Another publicKey than the token's.
    OtherPublicKey,
}

impl Forbidden {
    /// The close reason sent to the client and logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Forbidden::ReadOnly => "read-only token: writing entries is not allowed",
            Forbidden::OtherPublicKey => "token is restricted to another publicKey",
        }
    }
}

/// The restricted grants of open connections, and their expiries.
#[derive(Debug, Default)]
pub struct ConnGrants {
    restricted: ConnMap<Grant>,
    expiries: BTreeSet<(Timestamp, ConnId)>,
}

impl ConnGrants {
    /// `conn` opened with `grant` (its expiry on the engine's clock).
    pub fn open(&mut self, conn: ConnId, grant: Grant) {
        self.forget(conn);
        if grant.is_full() {
            return;
        }
        if let Some(at) = grant.expires_at {
            self.expiries.insert((at, conn));
        }
        self.restricted.insert(conn, grant);
    }

    /// `conn` is gone.
    pub fn forget(&mut self, conn: ConnId) {
        if let Some(grant) = self.restricted.remove(&conn)
            && let Some(at) = grant.expires_at
        {
            self.expiries.remove(&(at, conn));
        }
    }

    /// `conn`'s grant (a full one when unrestricted), for saving across a
    /// Durable Object's hibernation.
    pub fn grant(&self, conn: ConnId) -> Grant {
        self.restricted.get(&conn).cloned().unwrap_or_default()
    }

    /// Whether `conn` may append entries to `public_key`'s log.
    pub fn may_write(&self, conn: ConnId, public_key: &str) -> Result<(), Forbidden> {
        let Some(grant) = self.restricted.get(&conn) else {
            return Ok(());
        };
        if grant.read_only {
            return Err(Forbidden::ReadOnly);
        }
        check_public_key(grant, public_key)
    }

    /// Whether `conn` may read `public_key`'s log.
    pub fn may_read(&self, conn: ConnId, public_key: &str) -> Result<(), Forbidden> {
        match self.restricted.get(&conn) {
            None => Ok(()),
            Some(grant) => check_public_key(grant, public_key),
        }
    }

    /// The earliest expiry, for the engine's `poll_timeout`.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.expiries.first().map(|(at, _)| *at)
    }

    /// Connections whose tokens expired at or before `now`, in expiry
    /// order; they are forgotten here.
    pub fn expired(&mut self, now: Timestamp) -> Vec<ConnId> {
        let mut expired = Vec::new();
        while let Some(&(at, conn)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.expiries.pop_first();
            self.restricted.remove(&conn);
            expired.push(conn);
        }
        expired
    }
}

fn check_public_key(grant: &Grant, public_key: &str) -> Result<(), Forbidden> {
    match &grant.public_key {
        Some(only) if only != public_key => Err(Forbidden::OtherPublicKey),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_grants_are_not_kept() {
        let mut grants = ConnGrants::default();
        grants.open(ConnId(1), Grant::full());
        assert!(grants.restricted.is_empty());
        assert_eq!(grants.may_write(ConnId(1), "any"), Ok(()));
        assert_eq!(grants.next_expiry(), None);
    }

    #[test]
    fn read_only_and_public_key_restrictions() {
        let mut grants = ConnGrants::default();
        let reader = Grant {
            read_only: true,
            ..Grant::full()
        };
        let one_key = Grant {
            public_key: Some("pk".into()),
            ..Grant::full()
        };
        grants.open(ConnId(1), reader);
        grants.open(ConnId(2), one_key);
        assert_eq!(grants.may_write(ConnId(1), "pk"), Err(Forbidden::ReadOnly));
        assert_eq!(grants.may_read(ConnId(1), "anything"), Ok(()));
        assert_eq!(grants.may_write(ConnId(2), "pk"), Ok(()));
        assert_eq!(
            grants.may_write(ConnId(2), "other"),
            Err(Forbidden::OtherPublicKey)
        );
        assert_eq!(
            grants.may_read(ConnId(2), "other"),
            Err(Forbidden::OtherPublicKey)
        );
    }

    #[test]
    fn expiries_in_order_and_forgotten_on_close() {
        let mut grants = ConnGrants::default();
        let until = |ms| Grant {
            expires_at: Some(Timestamp(ms)),
            ..Grant::full()
        };
        grants.open(ConnId(1), until(300));
        grants.open(ConnId(2), until(100));
        grants.open(ConnId(3), until(200));
        grants.forget(ConnId(3));
        assert_eq!(grants.next_expiry(), Some(Timestamp(100)));
        assert!(grants.expired(Timestamp(99)).is_empty());
        assert_eq!(grants.expired(Timestamp(300)), vec![ConnId(2), ConnId(1)]);
        assert_eq!(grants.next_expiry(), None);
        assert_eq!(grants.grant(ConnId(1)), Grant::full(), "forgotten");
    }
}
