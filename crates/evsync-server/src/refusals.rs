//! The log of refused upgrades: one line per refusal (status, reason,
//! tenant, peer address, user agent; never a credential), through core's
//! [`LogLimiter`] so that a client retrying in a tight loop, or a scanner,
//! cannot fill the disk. Without it a replica that never connects (stale
//! token, `?token=` with query tokens off, a proxy that drops `Upgrade`)
//! leaves no trace at all.

use crate::lock::lock;
use evsync_core::access::{LogLimiter, LogVerdict, RefusalLine, clip_header};
use evsync_core::time::Timestamp;
use std::sync::Mutex;
use std::time::Duration;

/// How often held-back refusals are summed up in one line, so that the end
/// of a flood is reported even when no later refusal carries the count.
pub(crate) const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// The server's one refusal limiter (refusals of every tenant share it: a
/// flood against one must not buy lines for a thousand others).
#[derive(Default)]
pub(crate) struct RefusalLog {
    limiter: Mutex<LogLimiter>,
}

impl RefusalLog {
    /// Logs `line` at `now` unless the limiter holds it back (counted).
    pub fn record(&self, now: Timestamp, line: RefusalLine<'_>) {
        let LogVerdict::Log { suppressed } = lock(&self.limiter).check(now) else {
            return;
        };
        tracing::info!(
            status = line.status,
            reason = line.reason,
            tenant = line.tenant,
            remote = line.remote,
            // Text fields are written quoted and escaped (`Debug`), so a
            // client's user agent cannot forge a line.
            user_agent = line.user_agent.map(clip_header),
            suppressed = (suppressed > 0).then_some(suppressed),
            "upgrade refused"
        );
    }

    /// Logs how many refusals were held back since the last line, if any.
    pub fn summarize(&self) {
        let suppressed = lock(&self.limiter).take_suppressed();
        if suppressed > 0 {
            tracing::info!(suppressed, "upgrade refusals not logged (rate limit)");
        }
    }
}
