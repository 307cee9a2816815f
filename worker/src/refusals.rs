//! The Worker's log of refused upgrades: one line per refusal (status,
//! reason, tenant when valid, `CF-Connecting-IP`, user agent as fields of
//! an `upgrade refused` line, as the native server's; never a credential), rate-limited by core's [`LogLimiter`] exactly as the native
//! server's, so that a replica that never connects leaves a trace and a
//! flood does not bury the log. The limiter lives per isolate (Workers
//! have no process-wide state); with no timer between requests, the count
//! of lines held back is reported by the next line that gets through.

use crate::js;
use evsync_core::access::{LogLimiter, LogVerdict, clip_header, refused_tenant};
use evsync_core::time::Timestamp;
use std::cell::RefCell;
use worker::Headers;

thread_local! {
    static LIMITER: RefCell<LogLimiter> = RefCell::new(LogLimiter::default());
}

/// Logs that the request with `headers` for `path` was answered `status`
/// because `reason`, unless the limiter holds it back.
pub fn log(headers: &Headers, path: &str, status: u16, reason: &str) {
    let verdict = LIMITER.with(|l| l.borrow_mut().check(Timestamp(js::now_ms())));
    let LogVerdict::Log { suppressed } = verdict else {
        return;
    };
    let remote = headers.get("CF-Connecting-IP").ok().flatten();
    let user_agent = headers.get("User-Agent").ok().flatten();
    // The native server's fields (`RefusalLine`'s), client text clipped.
    crate::log::warning!(
        "upgrade refused",
        status = status,
        reason = reason,
        tenant = refused_tenant(path),
        remote = remote.as_deref().map(clip_header),
        user_agent = user_agent.as_deref().map(clip_header),
        suppressed = (suppressed > 0).then_some(suppressed)
    );
}
