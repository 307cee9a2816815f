//! Logging refused upgrades without letting a flood fill the disk.
//!
//! A replica that never connects (stale token, wrong URL, a proxy that
//! drops `Upgrade`) is invisible unless its refusals are logged; a client
//! that retries in a tight loop, or a scanner, must not turn that log into
//! gigabytes. So every adapter logs each refusal as one [`RefusalLine`],
//! passed through one [`LogLimiter`]: a token bucket that lets a burst
//! through, then a steady few lines a second, and counts what it held back
//! so that the next line (or the adapter's periodic summary) says how many
//! were not logged. Sans-IO: the caller passes the time.

use crate::time::Timestamp;
use std::fmt;

/// Lines a second a [`LogLimiter::default`] lets through once its burst is
/// spent.
pub const DEFAULT_LINES_PER_SECOND: u32 = 10;
/// Lines a [`LogLimiter::default`] lets through at once.
pub const DEFAULT_BURST: u32 = 20;
/// Most bytes of a client-chosen header (user agent) put in a log line.
pub const MAX_LOGGED_HEADER_BYTES: usize = 200;

/// What [`LogLimiter::check`] decided for one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogVerdict {
    /// Log it, saying that `suppressed` lines were held back before it.
    Log { suppressed: u64 },
    /// Do not log it (it is counted).
    Suppress,
}

/// A token bucket over log lines: `burst` lines at once, refilled at
/// `per_second` lines a second. Integer arithmetic in thousandths of a
/// line, so a refill never drifts.
#[derive(Clone, Debug)]
pub struct LogLimiter {
    per_second: u64,
    burst_milli: u64,
    milli: u64,
    last: Option<Timestamp>,
    suppressed: u64,
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter::new(DEFAULT_LINES_PER_SECOND, DEFAULT_BURST)
    }
}

impl LogLimiter {
    /// A full bucket of `burst` lines refilled at `per_second` (each at
    /// least 1).
    pub fn new(per_second: u32, burst: u32) -> Self {
        let burst_milli = u64::from(burst.max(1)) * 1000;
        LogLimiter {
            per_second: u64::from(per_second.max(1)),
            burst_milli,
            milli: burst_milli,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether a line may be logged at `now`. A clock that goes backwards
    /// refills nothing.
    pub fn check(&mut self, now: Timestamp) -> LogVerdict {
        let elapsed = self.last.map_or(0, |last| now.millis_since(last));
        if self.last.is_none_or(|last| now > last) {
            self.last = Some(now);
        }
        // `per_second` lines per 1000 ms = `per_second` thousandths per ms.
        self.milli = (self.milli + elapsed.saturating_mul(self.per_second)).min(self.burst_milli);
        if self.milli < 1000 {
            self.suppressed += 1;
            return LogVerdict::Suppress;
        }
        self.milli -= 1000;
        LogVerdict::Log {
            suppressed: std::mem::take(&mut self.suppressed),
        }
    }

    /// The lines held back since the last logged one, reset to zero: for a
    /// periodic "suppressed K" summary, so that the end of a flood is
    /// reported even if no further refusal comes.
    pub fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

/// `value` cut to [`MAX_LOGGED_HEADER_BYTES`] on a character boundary (a
/// client chooses it; it must not make one line arbitrarily long).
pub fn clip_header(value: &str) -> &str {
    if value.len() <= MAX_LOGGED_HEADER_BYTES {
        return value;
    }
    let mut end = MAX_LOGGED_HEADER_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// One refused upgrade, as logged. Holds no credential: the reason says
/// "missing token" or "wrong token", never which token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefusalLine<'a> {
    /// The HTTP status answered.
    pub status: u16,
    /// Why, e.g. [`super::Refusal::reason`] or the adapter's own
    /// ("storage unavailable").
    pub reason: &'a str,
    /// The tenant, when the path named a valid one.
    pub tenant: Option<&'a str>,
    /// The peer's address (native: the TCP peer; Worker: `CF-Connecting-IP`).
    pub remote: Option<&'a str>,
    /// The `User-Agent` header (clip it with [`clip_header`]).
    pub user_agent: Option<&'a str>,
    /// Refusals not logged before this one.
    pub suppressed: u64,
}

impl fmt::Display for RefusalLine<'_> {
    /// `upgrade refused: 401 wrong token; tenant=acme remote=203.0.113.7
    /// user_agent="node" (3 earlier refusals not logged)`. Client-chosen
    /// text is quoted and escaped, so it cannot forge a second line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upgrade refused: {} {};", self.status, self.reason)?;
        write!(f, " tenant={}", self.tenant.unwrap_or("-"))?;
        write!(f, " remote={}", self.remote.map(clip_header).unwrap_or("-"))?;
        match self.user_agent {
            Some(agent) => write!(f, " user_agent={:?}", clip_header(agent))?,
            None => f.write_str(" user_agent=-")?,
        }
        if self.suppressed > 0 {
            write!(f, " ({} earlier refusals not logged)", self.suppressed)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(limiter: &mut LogLimiter, at: u64, n: usize) -> usize {
        (0..n)
            .filter(|_| limiter.check(Timestamp(at)) != LogVerdict::Suppress)
            .count()
    }

    #[test]
    fn a_burst_then_the_steady_rate() {
        let mut limiter = LogLimiter::new(10, 20);
        assert_eq!(logged(&mut limiter, 0, 1000), 20, "the burst");
        assert_eq!(logged(&mut limiter, 0, 1000), 0);
        // One second later: ten more, and the first says what was held back.
        assert_eq!(
            limiter.check(Timestamp(1000)),
            LogVerdict::Log { suppressed: 1980 }
        );
        assert_eq!(logged(&mut limiter, 1000, 1000), 9);
        assert_eq!(limiter.take_suppressed(), 991);
        assert_eq!(limiter.take_suppressed(), 0);
        // A long quiet refills the burst, no more.
        assert_eq!(logged(&mut limiter, 3_600_000, 1000), 20);
    }

    #[test]
    fn partial_refills_add_up_and_time_never_runs_backwards() {
        let mut limiter = LogLimiter::new(10, 1);
        assert_eq!(logged(&mut limiter, 1000, 1), 1);
        // 50 ms + 50 ms = one line at 10 a second.
        assert_eq!(logged(&mut limiter, 1050, 1), 0);
        assert_eq!(logged(&mut limiter, 1100, 1), 1);
        assert_eq!(
            logged(&mut limiter, 0, 5),
            0,
            "an earlier time refills nothing"
        );
        assert_eq!(logged(&mut limiter, 1200, 1), 1);
    }

    #[test]
    fn the_line_escapes_client_text_and_clips_it() {
        let line = RefusalLine {
            status: 401,
            reason: "wrong token",
            tenant: Some("acme"),
            remote: Some("203.0.113.7"),
            user_agent: Some("evil\nupgrade refused: forged"),
            suppressed: 3,
        };
        let text = line.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.starts_with("upgrade refused: 401 wrong token; tenant=acme"));
        assert!(text.ends_with("(3 earlier refusals not logged)"), "{text}");
        let long = "é".repeat(200);
        assert!(clip_header(&long).len() <= MAX_LOGGED_HEADER_BYTES);
        let bare = RefusalLine {
            tenant: None,
            remote: None,
            user_agent: None,
            suppressed: 0,
            ..line
        };
        assert_eq!(
            bare.to_string(),
            "upgrade refused: 401 wrong token; tenant=- remote=- user_agent=-"
        );
    }
}
