//! The accept loop of the sync listener: axum's router on hyper's
//! connection builder, with a handshake timeout.
//!
//! Why not `axum::serve`: it configures no timer, so hyper's header read
//! timeout is off and a client that opens a TCP connection and sends its
//! request headers a byte at a time (slowloris), or nothing at all, holds a
//! socket and a task for ever. Here every connection must deliver its
//! request headers within `handshake_timeout`; one that does not is
//! closed, logged once (rate-limited, with its address) and counted in
//! `evsync_connections_refused_total{limit="handshake_timeout"}`. After an
//! upgrade the WebSocket is evsync's own (the engine's idle and chunk
//! timers apply), so the timeout bounds only the handshake.
//!
//! Shutdown as axum's: stop accepting, ask each HTTP connection to finish
//! gracefully, return once all have closed (upgraded sockets are tracked
//! and drained by the tenant actors, not here).
//!
//! The loop runs on the accept thread ([`crate::accept_thread`]), and so
//! does the wait for each new connection's first request head (the
//! handshake timeout's wait). A connection whose head has arrived goes to
//! the workers' runtime (`workers`), where hyper parses it and the router
//! answers: one hand-over per connection.

use crate::request_head::{self, Replay};
use crate::shared::Shared;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use evsync_core::access::RefusalLine;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tower::ServiceExt;

/// Serves `router` on `listener` until `stop` turns true, then waits for
/// the open HTTP connections to finish. Requests are handled on `workers`.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    workers: Handle,
) {
    let handshake_timeout = shared.config.limits.handshake_timeout;
    let (signal_tx, _) = watch::channel(());
    let (close_tx, close_rx) = watch::channel(());
    // Ends when `stop` turns true (the guard `wait_for` returns is dropped
    // inside, so it never lives across an await of the loop).
    let mut stopped = pin!(async move {
        let _ = stop.wait_for(|stop| *stop).await;
    });
    loop {
        let (mut tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait instead of
                    // spinning, as axum does.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stopped => break,
        };
        // Acks and Pongs are small: send them at once.
        let _ = tcp.set_nodelay(true);
        let mut signal = signal_tx.subscribe();
        let close = close_rx.clone();
        let shared = shared.clone();
        let router = router.clone();
        let workers = workers.clone();
        tokio::spawn(async move {
            let head = tokio::select! {
                head = tokio::time::timeout(handshake_timeout, request_head::read_head(&mut tcp)) => head,
                // shutting down: not yet a request to finish
                _ = signal.changed() => return,
            };
            let head = match head {
                Err(_elapsed) => return refused_slow_handshake(&shared, addr),
                Ok(Err(_closed)) => return,
                Ok(Ok(head)) => head,
            };
            // Registered with this thread's runtime: given to the workers'
            // as a plain socket.
            match tcp.into_std() {
                Ok(tcp) => {
                    let connection = Connection {
                        tcp,
                        head,
                        addr,
                        router,
                        shared,
                    };
                    workers.spawn(connection.serve(signal, close));
                }
                Err(err) => tracing::debug!(%err, "cannot hand a connection to the workers"),
            }
        });
    }
    drop(listener);
    let _ = signal_tx.send(());
    drop(close_rx);
    close_tx.closed().await;
}

/// A connection whose first request head has arrived, on its way to the
/// workers.
struct Connection {
    tcp: std::net::TcpStream,
    head: Bytes,
    addr: SocketAddr,
    router: Router,
    shared: Arc<Shared>,
}

impl Connection {
    /// Serves the connection's requests with hyper (on the workers'
    /// runtime, which must run this) until it closes or is upgraded;
    /// `signal` asks for a graceful end, `close` is dropped at the end.
    async fn serve(self, mut signal: watch::Receiver<()>, close: watch::Receiver<()>) {
        let addr = self.addr;
        let tcp = match TcpStream::from_std(self.tcp) {
            Ok(tcp) => tcp,
            Err(err) => {
                tracing::debug!(%err, "cannot serve a connection on the workers");
                return;
            }
        };
        let service = self
            .router
            .map_request(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(addr));
                request.map(Body::new)
            });
        let service = TowerToHyperService::new(service);
        let mut builder = http1::Builder::new();
        // (the next requests' heads, on a connection kept alive)
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.shared.config.limits.handshake_timeout);
        let mut conn = pin!(
            builder
                .serve_connection(TokioIo::new(Replay::new(self.head, tcp)), service)
                .with_upgrades()
        );
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(err) = result
                        && is_header_timeout(&err)
                    {
                        refused_slow_handshake(&self.shared, addr);
                    }
                    break;
                }
                _ = signal.changed() => conn.as_mut().graceful_shutdown(),
            }
        }
        drop(close);
    }
}

/// Whether a connection ended because its request headers did not arrive
/// in time (hyper's header read timeout).
fn is_header_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            return true;
        }
        source = e.source();
    }
    false
}

fn refused_slow_handshake(shared: &Shared, addr: SocketAddr) {
    let remote = addr.to_string();
    shared.refusals.record(
        shared.now(),
        RefusalLine {
            status: 408,
            reason: "handshake timeout",
            tenant: None,
            remote: Some(&remote),
            user_agent: None,
            suppressed: 0,
        },
    );
    shared.metrics.refused_over_limit("handshake_timeout");
}
