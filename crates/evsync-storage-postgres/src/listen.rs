//! How a node hears of the other nodes' commits: `LISTEN` on a connection
//! of its own.
//!
//! Each append that raises a log's head queues a `pg_notify` in its
//! transaction; PostgreSQL delivers it to every listener at COMMIT, and
//! only then, so no node ever hears of an entry it could not yet read.
//! Delivery is not guaranteed across a dropped connection, so every time
//! the listener is listening again it says so ([`ListenEvent::Listening`]),
//! and the caller re-reads the heads of the logs it serves
//! ([`crate::PgDatabase::heads`]): a notification missed while nobody
//! listened is made up for by that read.

use crate::PgConfig;
use crate::config::LISTEN_APPLICATION_NAME;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio_postgres::{AsyncMessage, NoTls};

/// The channel every node listens on and every append notifies.
pub const CHANNEL: &str = "evsync_log";

/// The first wait before reconnecting after a failure; it doubles with each
/// failure in a row up to [`MAX_BACKOFF`], and starts again from here once
/// the listener was listening.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between two connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A log of a tenant reached `head` in a commit (of any node, this one's
/// included).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Advanced {
    pub tenant: String,
    pub public_key: String,
    pub head: u64,
}

/// A v4 store of a tenant reached `head` in a commit (of any node).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoreAdvanced {
    pub tenant: String,
    pub store: evsync_core::storage::StoreKey,
    pub head: u64,
}

/// What [`listen`] reports.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ListenEvent {
    /// LISTEN is (re)established: anything may have been missed before
    /// this, so the caller re-checks heads.
    Listening,
    /// A commit raised a log's head.
    Advanced(Advanced),
    /// A commit raised a v4 store's head.
    StoreAdvanced(StoreAdvanced),
    /// A tenant's tokens were revoked (by an operator on some node) up to
    /// `not_before` (Unix ms, already stored).
    Revoked { tenant: String, not_before: u64 },
    /// A tenant was deleted or replaced (by an operator on some node,
    /// committed) by transaction `xact` (`None` from a node before this
    /// field): nodes drop what they loaded before it ([`crate::Snapshot`]).
    Dropped { tenant: String, xact: Option<u64> },
    /// The listening connection failed or could not be opened (the message
    /// has no password); it is retried.
    Lost(String),
}

/// The JSON on the channel: an append's `{"t": tenant, "k": publicKey,
/// "h": head}`, a v4 append's `{"t": tenant, "p": publicKey, "s":
/// storeId, "h": head}`, a revocation's `{"t": tenant, "r": instant}` or a
/// deletion's `{"t": tenant, "d": true, "x": transaction id}`.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Notice {
    StoreAdvanced {
        t: String,
        p: String,
        s: String,
        h: u64,
    },
    Advanced {
        t: String,
        k: String,
        h: u64,
    },
    Revoked {
        t: String,
        r: u64,
    },
    Dropped {
        t: String,
        /// Only tells this variant from the others.
        #[serde(rename = "d")]
        _dropped: bool,
        x: Option<u64>,
    },
}

/// Runs until `events` is closed: opens a dedicated (non-pooled)
/// connection named `evsync-listen`, runs `LISTEN evsync_log`, sends
/// [`ListenEvent::Listening`] and forwards each notification as
/// [`ListenEvent::Advanced`]. On any failure it sends
/// [`ListenEvent::Lost`], waits (100 ms, doubling to 5 s at most, from
/// 100 ms again after a success) and reconnects.
///
/// Not pooled because a pooled connection is handed to other calls between
/// uses, and a LISTEN lives as long as its session.
pub async fn listen(config: PgConfig, events: UnboundedSender<ListenEvent>) {
    let pg = config.with_application_name(LISTEN_APPLICATION_NAME);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let lost = tokio::select! {
            lost = session(&pg, &events, &mut backoff) => lost,
            () = events.closed() => return,
        };
        let Some(lost) = lost else { return };
        if events.send(ListenEvent::Lost(lost)).is_err() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = events.closed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: `Some(why)` when it failed, `None` when the
/// receiver is gone. Resets `backoff` once listening.
async fn session(
    pg: &tokio_postgres::Config,
    events: &UnboundedSender<ListenEvent>,
    backoff: &mut Duration,
) -> Option<String> {
    let (client, mut connection) = match pg.connect(NoTls).await {
        Ok(pair) => pair,
        Err(e) => return Some(format!("cannot connect: {}", crate::PgError(&e))),
    };
    // The connection's messages (notifications among them) arrive by
    // polling it; the client's requests are answered through it too, so it
    // is polled while LISTEN runs.
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let sql = format!("LISTEN {CHANNEL}");
    let command = client.batch_execute(&sql);
    tokio::pin!(command);
    loop {
        tokio::select! {
            done = &mut command => match done {
                Ok(()) => break,
                Err(e) => return Some(format!("LISTEN failed: {}", crate::PgError(&e))),
            },
            message = messages.next() => {
                if let Err(why) = forward(message, events) {
                    return why;
                }
            }
        }
    }
    *backoff = FIRST_BACKOFF;
    if events.send(ListenEvent::Listening).is_err() {
        return None;
    }
    loop {
        let message = messages.next().await;
        if let Err(why) = forward(message, events) {
            return why;
        }
    }
}

/// Forwards one message of the connection. `Err(Some(why))` when the
/// connection ended, `Err(None)` when the receiver is gone.
fn forward(
    message: Option<Result<AsyncMessage, tokio_postgres::Error>>,
    events: &UnboundedSender<ListenEvent>,
) -> Result<(), Option<String>> {
    match message {
        Some(Ok(AsyncMessage::Notification(n))) if n.channel() == CHANNEL => {
            // A payload in another shape (another program on the channel)
            // is not ours to act on.
            let event = match serde_json::from_str::<Notice>(n.payload()) {
                Ok(Notice::Advanced { t, k, h }) => ListenEvent::Advanced(Advanced {
                    tenant: t,
                    public_key: k,
                    head: h,
                }),
                Ok(Notice::StoreAdvanced { t, p, s, h }) => {
                    ListenEvent::StoreAdvanced(StoreAdvanced {
                        tenant: t,
                        store: evsync_core::storage::StoreKey::new(p, s),
                        head: h,
                    })
                }
                Ok(Notice::Revoked { t, r }) => ListenEvent::Revoked {
                    tenant: t,
                    not_before: r,
                },
                Ok(Notice::Dropped { t, x, .. }) => ListenEvent::Dropped { tenant: t, xact: x },
                Err(_) => return Ok(()),
            };
            events.send(event).map_err(|_| None)?;
            Ok(())
        }
        Some(Ok(_)) => Ok(()), // notices, other channels
        Some(Err(e)) => Err(Some(format!("connection lost: {}", crate::PgError(&e)))),
        None => Err(Some("connection closed".into())),
    }
}
