//! Which committed transactions a node had seen when it loaded a tenant.
//!
//! A deletion or an import tells every node at COMMIT, but the
//! notification reaches a node some time later, on its listening
//! connection. A client may meanwhile connect to that node and load the
//! tenant afresh, reading the state the deletion or import left; the late
//! notification must then not drop it. So the dropping transaction sends
//! its id (`pg_current_xact_id()`, 64 bits, never wrapping) and a node
//! takes a [`Snapshot`] before it reads a tenant: if the snapshot
//! [`sees`](Snapshot::sees) that id, everything read after it is newer
//! than the drop and the notification is stale.

use crate::pg_error;
use evsync_core::storage::StorageError;

/// A PostgreSQL snapshot (`pg_current_snapshot()`): every transaction id
/// below `xmin` had ended when it was taken, every one from `xmax` on had
/// not started, and of those between, `running` were still running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    xmin: u64,
    xmax: u64,
    running: Vec<u64>,
}

impl Snapshot {
    /// Whether transaction `xact`, known to have committed, had committed
    /// when the snapshot was taken (PostgreSQL's own visibility rule,
    /// `pg_visible_in_snapshot`).
    pub fn sees(&self, xact: u64) -> bool {
        xact < self.xmin || (xact < self.xmax && !self.running.contains(&xact))
    }

    /// Parses the text form `xmin:xmax:xip,xip,…` (the list may be empty).
    pub fn parse(text: &str) -> Option<Snapshot> {
        let mut parts = text.split(':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let list = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let running = if list.is_empty() {
            Vec::new()
        } else {
            list.split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<Vec<u64>>>()?
        };
        Some(Snapshot {
            xmin,
            xmax,
            running,
        })
    }
}

impl crate::PgDatabase {
    /// The database's current snapshot: what has committed as of now.
    pub async fn snapshot(&self) -> Result<Snapshot, StorageError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT pg_current_snapshot()::text", &[])
            .await
            .map_err(pg_error("take a snapshot"))?;
        let text: String = row.get(0);
        Snapshot::parse(&text)
            .ok_or_else(|| StorageError::new(format!("postgres: unreadable snapshot {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_form_and_applies_the_visibility_rule() {
        let s = Snapshot::parse("100:105:101,103").unwrap();
        assert!(s.sees(99), "ended before xmin");
        assert!(
            s.sees(100) && s.sees(102) && s.sees(104),
            "between, not running"
        );
        assert!(!s.sees(101) && !s.sees(103), "still running");
        assert!(!s.sees(105) && !s.sees(200), "not started");
        let empty = Snapshot::parse("7:7:").unwrap();
        assert!(empty.sees(6) && !empty.sees(7));
    }

    #[test]
    fn refuses_what_is_not_a_snapshot() {
        for bad in ["", "1", "1:2", "1:2:3:4", "a:2:", "1:2:x", "1:2:3,"] {
            assert_eq!(Snapshot::parse(bad), None, "{bad:?}");
        }
    }
}
