//! Giving the CPU back to the kernel after every 64 KiB read from a socket.
//!
//! Why: a socket task that receives a large message (a 32 MiB chunked
//! message arrives as 66 WebSocket messages of 512,000 bytes) keeps its
//! worker thread running for as long as bytes wait: receiving, unmasking,
//! the codec's copies and the page faults of fresh buffers. Threads woken
//! meanwhile onto that CPU (the SQLite lane back from its `fsync`, another
//! tenant's worker, a client on the same host) wait behind it until the
//! scheduler's tick ends its slice, even when the other CPU is idle:
//! `perf sched timehist` under `evsync hostile --attackers oversize` showed
//! wakeups waiting 3.4-3.9 ms behind a worker that ran 3.5-4 ms straight,
//! and the normal tenant's Acks stalling 2-12 ms about once per oversized
//! message. A `sched_yield` every [`CpuYield::EVERY_BYTES`] read lets
//! whatever is queued on this CPU run first; with nothing queued it returns
//! at once (one syscall per 64 KiB, against the tens of microseconds those
//! bytes cost to receive). Measured in docs/reliability.md ("Large
//! messages and the scheduler's slice").

/// Counts the bytes one socket has received and yields the OS thread after
/// each [`CpuYield::EVERY_BYTES`].
#[derive(Debug, Default)]
pub(crate) struct CpuYield {
    since: usize,
    yields: u64,
}

impl CpuYield {
    /// Bytes read between two yields.
    pub const EVERY_BYTES: usize = 64 * 1024;

    /// Counts `bytes` just read; yields the thread once they add up to
    /// [`Self::EVERY_BYTES`] since the last yield.
    pub fn after_read(&mut self, bytes: usize) {
        self.since += bytes;
        if self.since >= Self::EVERY_BYTES {
            self.since = 0;
            self.yields += 1;
            std::thread::yield_now();
        }
    }

    /// How many times it yielded.
    #[cfg(test)]
    pub fn yields(&self) -> u64 {
        self.yields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_once_per_64_kib_read_however_it_arrives() {
        let mut y = CpuYield::default();
        let mut yields_after = |bytes| {
            y.after_read(bytes);
            y.yields()
        };
        assert_eq!(yields_after(100), 0);
        assert_eq!(yields_after(CpuYield::EVERY_BYTES - 101), 0);
        assert_eq!(yields_after(1), 1, "64 KiB in three reads");
        assert_eq!(yields_after(CpuYield::EVERY_BYTES - 1), 1, "counted afresh");
        assert_eq!(yields_after(512_000), 2, "a large message at once");
        assert_eq!(yields_after(0), 2);
    }
}
