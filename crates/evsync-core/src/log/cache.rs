//! What the log service remembers about each log: the highest sequence it
//! knows to be committed and a small tail cache of the newest entries, so
//! that a replica reconnecting near the head catches up without a read.
//!
//! The service is not assumed to be a log's only writer: another engine,
//! process or node may commit to the same storage. The known head is
//! therefore a lower bound that only rises (from this service's commits,
//! from reads, and from "log advanced" notifications), and the tail is
//! trusted only while it ends exactly at the known head.

use super::ConnId;
use crate::storage::entry_bytes;
use crate::wire::{RemoteEntry, Sequence};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};

/// A cached entry and, when this service committed it, the connection that
/// wrote it (so that a connection's own writes can be left out of what it
/// is sent).
#[derive(Debug)]
pub struct Cached {
    pub entry: RemoteEntry,
    pub writer: Option<ConnId>,
}

/// One log's cached state. Losing it is harmless: it only saves reads.
#[derive(Debug, Default)]
pub(super) struct LogCache {
    /// The highest sequence known to be committed.
    pub known_head: Option<Sequence>,
    /// The newest entries, contiguous and ending at `known_head`.
    tail: VecDeque<Cached>,
    tail_bytes: usize,
}

impl LogCache {
    /// Raises the known head to `head` (learned from a read or from another
    /// writer). A tail that no longer ends at the head is dropped.
    pub fn observe_head(&mut self, head: Sequence) {
        if self.known_head.is_some_and(|h| h >= head) {
            return;
        }
        self.known_head = Some(head);
        if self.tail.back().is_some_and(|c| c.entry.sequence != head) {
            self.clear_tail();
        }
    }

    /// Entries just committed by this service, with the connection that
    /// wrote each: a contiguous ascending run that ends at the new head
    /// (storage assigned the sequences). Raises the head and caches them.
    pub fn record_commit(&mut self, run: &[Cached], max_entries: usize, max_bytes: usize) {
        let Some(last) = run.last() else {
            return;
        };
        if self.known_head.is_some_and(|h| h >= last.entry.sequence) {
            return;
        }
        // `extend_tail` keeps the cached run only if these connect to it.
        self.known_head = Some(last.entry.sequence);
        self.extend_tail(run, |c| (&c.entry, c.writer), max_entries, max_bytes);
    }

    /// Caches a run (ascending, contiguous) that connects to the cached
    /// tail; `parts` gives each item's entry and, when known, its writing
    /// connection. While the head is unknown the run is kept tentatively:
    /// an empty read right after it proves it ends at the head.
    pub fn extend_tail<T>(
        &mut self,
        run: &[T],
        parts: impl Fn(&T) -> (&RemoteEntry, Option<ConnId>),
        max_entries: usize,
        max_bytes: usize,
    ) {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return;
        };
        let (first, last) = (parts(first).0.sequence, parts(last).0.sequence);
        if self.known_head.is_some_and(|h| h != last) || max_entries == 0 {
            return;
        }
        match self.tail.back() {
            Some(back) if back.entry.sequence >= last => return,
            Some(back) if back.entry.sequence + 1 == first => {}
            _ => self.clear_tail(),
        }
        let skip = run.len().saturating_sub(max_entries);
        for item in &run[skip..] {
            let (entry, writer) = parts(item);
            self.tail_bytes += entry_bytes(entry);
            // A copy, not a slice: a slice would pin the whole frame the
            // entry arrived in for as long as it stays cached.
            self.tail.push_back(Cached {
                entry: RemoteEntry {
                    sequence: entry.sequence,
                    iv: Bytes::copy_from_slice(&entry.iv),
                    entry_id: Bytes::copy_from_slice(&entry.entry_id),
                    encrypted_entry: Bytes::copy_from_slice(&entry.encrypted_entry),
                },
                writer,
            });
        }
        while self.tail.len() > max_entries || (self.tail_bytes > max_bytes && self.tail.len() > 1)
        {
            let dropped = self.tail.pop_front().expect("non-empty");
            self.tail_bytes -= entry_bytes(&dropped.entry);
        }
        if self.tail_bytes > max_bytes {
            self.clear_tail();
        }
    }

    /// The cached entries from `from` to the known head, if the cache holds
    /// them all (`from` within the cache, or just past the head).
    pub fn tail_from(
        &self,
        from: Sequence,
    ) -> Option<std::collections::vec_deque::Iter<'_, Cached>> {
        let head = self.known_head?;
        let front = self.tail.front()?.entry.sequence;
        if self.tail.back()?.entry.sequence != head || from < front || from > head + 1 {
            return None;
        }
        Some(self.tail.range((from - front) as usize..))
    }

    fn clear_tail(&mut self) {
        self.tail.clear();
        self.tail_bytes = 0;
    }
}

/// The cached state of every log this service has seen, bounded in count.
#[derive(Debug, Default)]
pub(super) struct Caches {
    logs: HashMap<String, LogCache>,
}

impl Caches {
    pub fn entry(&mut self, log: &str) -> &mut LogCache {
        if !self.logs.contains_key(log) {
            self.logs.insert(log.to_string(), LogCache::default());
        }
        self.logs.get_mut(log).expect("inserted above")
    }

    /// Once more than `max` logs are remembered, forgets those for which
    /// `in_use` is false (they are re-read from storage when needed).
    pub fn evict(&mut self, max: usize, in_use: impl Fn(&str) -> bool) {
        if self.logs.len() > max {
            self.logs.retain(|log, _| in_use(log));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(sequence: Sequence) -> RemoteEntry {
        RemoteEntry {
            sequence,
            iv: Bytes::from_static(&[0; 12]),
            entry_id: Bytes::from_static(&[1; 16]),
            encrypted_entry: Bytes::from_static(&[2; 4]),
        }
    }

    fn c(sequence: Sequence) -> Cached {
        Cached {
            entry: e(sequence),
            writer: Some(ConnId(1)),
        }
    }

    fn seqs(log: &LogCache, from: Sequence) -> Option<Vec<Sequence>> {
        log.tail_from(from)
            .map(|it| it.map(|c| c.entry.sequence).collect())
    }

    #[test]
    fn tail_stays_contiguous_and_bounded() {
        let mut log = LogCache::default();
        log.record_commit(&[c(1), c(2), c(3)], 4, 1000);
        assert_eq!(seqs(&log, 2), Some(vec![2, 3]));
        assert_eq!(seqs(&log, 4), Some(vec![]));
        assert_eq!(seqs(&log, 5), None);
        log.record_commit(&[c(4), c(5)], 4, 1000);
        assert_eq!(seqs(&log, 1), None, "oldest entry evicted");
        assert_eq!(seqs(&log, 2), Some(vec![2, 3, 4, 5]));
        log.observe_head(9);
        assert_eq!(seqs(&log, 5), None, "a head beyond the tail empties it");

        let mut fresh = LogCache::default();
        fresh.extend_tail(&[e(7), e(8)], |e| (e, None), 4, 1000);
        assert_eq!(seqs(&fresh, 7), None, "head unknown: nothing served");
        fresh.observe_head(8);
        assert_eq!(
            seqs(&fresh, 7),
            Some(vec![7, 8]),
            "proved to end at the head"
        );
    }

    #[test]
    fn a_commit_after_another_writers_entries_restarts_the_tail() {
        let mut log = LogCache::default();
        log.record_commit(&[c(1), c(2)], 8, 1000);
        // Sequences 3 and 4 were committed by another writer, unseen here.
        log.record_commit(&[c(5)], 8, 1000);
        assert_eq!(seqs(&log, 5), Some(vec![5]));
        assert_eq!(seqs(&log, 3), None, "the gap is never served from memory");
        assert_eq!(log.known_head, Some(5));
    }
}
