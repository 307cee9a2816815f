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
use super::kind::{Cached, LogKind};
use crate::hash::HashMap;
use crate::wire::Sequence;
use std::collections::VecDeque;

/// One log's cached state. Losing it is harmless: it only saves reads.
#[derive(Debug)]
pub(super) struct LogCache<K: LogKind> {
    /// The highest sequence known to be committed.
    pub known_head: Option<Sequence>,
    /// The newest records, contiguous and ending at `known_head`.
    tail: VecDeque<Cached<K::Record>>,
    tail_bytes: usize,
}

impl<K: LogKind> Default for LogCache<K> {
    fn default() -> Self {
        LogCache {
            known_head: None,
            tail: VecDeque::new(),
            tail_bytes: 0,
        }
    }
}

impl<K: LogKind> LogCache<K> {
    /// Raises the known head to `head` (learned from a read or from another
    /// writer). A tail that no longer ends at the head is dropped.
    pub fn observe_head(&mut self, head: Sequence) {
        if self.known_head.is_some_and(|h| h >= head) {
            return;
        }
        self.known_head = Some(head);
        if self.tail.back().is_some_and(|c| K::last(&c.entry) != head) {
            self.clear_tail();
        }
    }

    /// Entries just committed by this service, with the connection that
    /// wrote each: a contiguous ascending run that ends at the new head
    /// (storage assigned the sequences). Raises the head and caches them.
    pub fn record_commit(
        &mut self,
        run: &[Cached<K::Record>],
        max_entries: usize,
        max_bytes: usize,
    ) {
        let Some(last) = run.last() else {
            return;
        };
        let last = K::last(&last.entry);
        if self.known_head.is_some_and(|h| h >= last) {
            return;
        }
        // `extend_tail` keeps the cached run only if these connect to it.
        self.known_head = Some(last);
        self.extend_tail(run, |c| (&c.entry, c.writer), max_entries, max_bytes);
    }

    /// Caches a run (ascending, contiguous) that connects to the cached
    /// tail; `parts` gives each item's entry and, when known, its writing
    /// connection. While the head is unknown the run is kept tentatively:
    /// an empty read right after it proves it ends at the head.
    pub fn extend_tail<T>(
        &mut self,
        run: &[T],
        parts: impl Fn(&T) -> (&K::Record, Option<ConnId>),
        max_entries: usize,
        max_bytes: usize,
    ) {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return;
        };
        let (first, last) = (K::first(parts(first).0), K::last(parts(last).0));
        if self.known_head.is_some_and(|h| h != last) || max_entries == 0 {
            return;
        }
        match self.tail.back().map(|back| K::last(&back.entry)) {
            Some(back) if back >= last => return,
            Some(back) if back + 1 == first => {}
            _ => self.clear_tail(),
        }
        let skip = run.len().saturating_sub(max_entries);
        for item in &run[skip..] {
            let (entry, writer) = parts(item);
            self.tail_bytes += K::record_bytes(entry);
            self.tail.push_back(Cached {
                entry: K::detach(entry),
                writer,
            });
        }
        while self.tail.len() > max_entries || (self.tail_bytes > max_bytes && self.tail.len() > 1)
        {
            let dropped = self.tail.pop_front().expect("non-empty");
            self.tail_bytes -= K::record_bytes(&dropped.entry);
        }
        if self.tail_bytes > max_bytes {
            self.clear_tail();
        }
    }

    /// The cached records from the one holding `from` to the known head, if
    /// the cache holds them all (`from` within the cache, or just past the
    /// head).
    pub fn tail_from(
        &self,
        from: Sequence,
    ) -> Option<std::collections::vec_deque::Iter<'_, Cached<K::Record>>> {
        let head = self.known_head?;
        let front = K::first(&self.tail.front()?.entry);
        if K::last(&self.tail.back()?.entry) != head || from < front || from > head + 1 {
            return None;
        }
        let start = self.tail.partition_point(|c| K::last(&c.entry) < from);
        Some(self.tail.range(start..))
    }

    fn clear_tail(&mut self) {
        self.tail.clear();
        self.tail_bytes = 0;
    }
}

/// The cached state of every log this service has seen, bounded in count.
#[derive(Debug)]
pub(super) struct Caches<K: LogKind> {
    logs: HashMap<String, LogCache<K>>,
}

impl<K: LogKind> Default for Caches<K> {
    fn default() -> Self {
        Caches {
            logs: HashMap::default(),
        }
    }
}

impl<K: LogKind> Caches<K> {
    pub fn entry(&mut self, log: &str) -> &mut LogCache<K> {
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
    use crate::log::kind::EntryLog;
    use crate::wire::RemoteEntry;
    use bytes::Bytes;

    type LogCache = super::LogCache<EntryLog>;
    type Cached = super::Cached<RemoteEntry>;

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

    /// Records spanning several sequences (Effect v4's batches): a cursor
    /// inside a record is served that record whole, and only a run that
    /// starts right after the cached tail extends it.
    mod spans {
        use super::super::LogCache;
        use crate::log::kind::{Cached, KindResponse, LogKind};
        use crate::storage::{ReadLimit, StorageOp, StorageResponse};
        use crate::wire::Sequence;

        #[derive(Debug)]
        enum Spans {}

        impl LogKind for Spans {
            type Record = (Sequence, Sequence);
            type Write = ();
            type Outcome = ();
            fn first(r: &(Sequence, Sequence)) -> Sequence {
                r.0
            }
            fn last(r: &(Sequence, Sequence)) -> Sequence {
                r.1
            }
            fn record_bytes(_: &(Sequence, Sequence)) -> usize {
                10
            }
            fn detach(r: &(Sequence, Sequence)) -> (Sequence, Sequence) {
                *r
            }
            fn write_log(_: &()) -> String {
                unreachable!()
            }
            fn write_bytes(_: &()) -> usize {
                unreachable!()
            }
            fn write_entries(_: &()) -> usize {
                unreachable!()
            }
            fn outcome_fits(_: &(), _: &()) -> bool {
                unreachable!()
            }
            fn stored(_: &(), _: &(), _: &mut Vec<(Sequence, Sequence)>) {
                unreachable!()
            }
            fn ack_sequences(_: &()) -> Vec<Sequence> {
                unreachable!()
            }
            fn append_op(_: Vec<()>) -> StorageOp {
                unreachable!()
            }
            fn read_op(_: &str, _: Sequence, _: ReadLimit) -> StorageOp {
                unreachable!()
            }
            fn response(_: StorageResponse) -> Option<KindResponse<Self>> {
                unreachable!()
            }
        }

        fn c(first: Sequence, last: Sequence) -> Cached<(Sequence, Sequence)> {
            Cached {
                entry: (first, last),
                writer: None,
            }
        }

        fn served(log: &LogCache<Spans>, from: Sequence) -> Option<Vec<(Sequence, Sequence)>> {
            log.tail_from(from).map(|it| it.map(|c| c.entry).collect())
        }

        #[test]
        fn a_cursor_inside_a_record_gets_the_record_whole() {
            let mut log = LogCache::<Spans>::default();
            log.record_commit(&[c(1, 3), c(4, 4), c(5, 9)], 8, 1000);
            assert_eq!(log.known_head, Some(9));
            assert_eq!(served(&log, 1), Some(vec![(1, 3), (4, 4), (5, 9)]));
            assert_eq!(served(&log, 2), Some(vec![(1, 3), (4, 4), (5, 9)]));
            assert_eq!(served(&log, 4), Some(vec![(4, 4), (5, 9)]));
            assert_eq!(served(&log, 7), Some(vec![(5, 9)]));
            assert_eq!(served(&log, 10), Some(vec![]));
            assert_eq!(served(&log, 11), None);
            log.record_commit(&[c(10, 12)], 8, 1000);
            assert_eq!(served(&log, 8), Some(vec![(5, 9), (10, 12)]));
            // Sequences 13..=15 committed elsewhere: the tail restarts.
            log.record_commit(&[c(16, 17)], 8, 1000);
            assert_eq!(served(&log, 12), None);
            assert_eq!(served(&log, 16), Some(vec![(16, 17)]));
        }
    }
}
