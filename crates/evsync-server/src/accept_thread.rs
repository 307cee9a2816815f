//! The accept thread: a thread of its own, apart from the workers, that
//! accepts TCP connections and waits for their first request head.
//!
//! Why: connections that are not yet served (a storm of reconnects, a
//! slowloris attacker dripping header bytes, peers that connect and close)
//! cost the server accepts, reads and timers. On the workers' shared
//! runtime that work queues in front of the established tenants' tasks, and
//! tokio has no priorities: a normal client's Ack waited behind it
//! (docs/reliability.md, "All at once"). On a thread of its own the kernel,
//! which can preempt, chooses. A connection goes to the workers once its
//! first request head is all there ([`crate::accept`]); parsing it, what
//! it asks for (routing, tokens, tenants, the upgrade) and the socket run
//! there, so a lock the workers need is taken on this thread only to log a
//! handshake timeout. The thread runs at the workers' priority unless
//! `SYNC_ACCEPT_NICE` says otherwise (see
//! [`crate::config::DEFAULT_ACCEPT_NICE`] for why that is the default).

use crate::accept;
use crate::shared::Shared;
use axum::Router;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};

/// Serves `router` on `listener` until `stop` turns true (see
/// [`accept::serve`]); returns when the accept loop has ended and its
/// HTTP connections have finished.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let nice = shared.config.accept_nice;
    let workers = Handle::current();
    // A listener is registered with the runtime that made it: give it to the
    // accept thread's runtime as a plain socket.
    let listener = listener.into_std()?;
    let (done_tx, done_rx) = oneshot::channel();
    // (Linux shows a thread's name cut to 15 bytes.)
    std::thread::Builder::new()
        .name("evsync-accept".into())
        .spawn(move || {
            lower_priority(nice);
            let ended = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|runtime| {
                    runtime.block_on(async move {
                        let listener = TcpListener::from_std(listener)?;
                        accept::serve(listener, router, shared, stop, workers).await;
                        Ok(())
                    })
                });
            let _ = done_tx.send(ended);
        })?;
    done_rx
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("the accept thread panicked")))
}

/// Sets this thread's nice value (Linux: per thread). A failure is logged
/// and changes nothing else: the thread then runs at the workers' priority.
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take no pointers.
        let done = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
        };
        if done != 0 {
            let err = std::io::Error::last_os_error();
            tracing::warn!(%err, nice, "cannot lower the accept thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    tracing::warn!(nice, "a thread's nice value is set on Linux only");
}
