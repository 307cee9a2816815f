//! The signals that stop the server gracefully.

use std::io;

/// SIGINT (Ctrl-C) and SIGTERM (what `docker stop`, systemd and Kubernetes
/// send), with their handlers already installed.
///
/// Install them before announcing that the server listens: a signal that
/// arrives before its handler exists kills the process the default way,
/// without a graceful shutdown.
pub struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers now. Needs a tokio runtime.
    pub fn install() -> io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// Resolves on the first of the signals, and logs which one.
    pub async fn recv(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => tracing::info!("SIGINT received: shutting down"),
            _ = self.term.recv() => tracing::info!("SIGTERM received: shutting down"),
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("Ctrl-C received: shutting down");
            } else {
                std::future::pending::<()>().await;
            }
        }
    }
}
