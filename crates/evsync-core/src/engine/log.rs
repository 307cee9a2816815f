//! What the engine remembers about one (tenant, publicKey) log: who is
//! subscribed, the committed head when known, and a small tail cache (with
//! the `Changes` frames last encoded from it).

use super::{ConnId, frames};
use crate::storage::entry_bytes;
use crate::wire::{MessageId, RemoteEntry, Sequence};
use bytes::Bytes;
use std::collections::{BTreeSet, VecDeque};

/// Start sequences whose encoded frames are remembered per log: enough for
/// the few positions a crowd of subscribers resumes from after a burst.
/// Their bytes are also bounded, by the tail cache's byte budget.
const FRAMES_MEMO: usize = 8;

/// A cached entry and, when this engine committed it, the connection that
/// wrote it (so that its own writes can be left out of what it is sent).
#[derive(Debug)]
struct Cached {
    entry: RemoteEntry,
    writer: Option<ConnId>,
}

/// One log's in-memory state. Losing it is harmless: it only saves reads.
#[derive(Debug, Default)]
pub(super) struct LogState {
    /// Connections subscribed to this log (ordered, for deterministic sends).
    pub subscribers: BTreeSet<ConnId>,
    /// The highest committed sequence, when known exactly. The engine is the
    /// log's only writer, so every commit passes through it.
    pub known_head: Option<Sequence>,
    /// The newest entries, contiguous and ending at `known_head`.
    tail: VecDeque<Cached>,
    tail_bytes: usize,
    /// `Changes` frames encoded from the tail, by start sequence, all
    /// ending at `known_head`: subscribers that resume from the same place
    /// share one encoding. Emptied whenever the head moves.
    frames_memo: Vec<(Sequence, Vec<Bytes>)>,
    frames_memo_bytes: usize,
}

impl LogState {
    /// Raises the known head to `head`, learned from a read.
    pub fn observe_head(&mut self, head: Sequence) {
        if self.known_head.is_some_and(|h| h >= head) {
            return;
        }
        self.known_head = Some(head);
        self.clear_frames_memo();
        if self.tail.back().is_some_and(|c| c.entry.sequence != head) {
            self.clear_tail();
        }
    }

    /// Entries just committed by this engine, with the connection that
    /// wrote each: a contiguous ascending run that ends at the new head.
    /// Raises the head and caches them.
    pub fn record_commit(
        &mut self,
        entries: &[RemoteEntry],
        writers: &[ConnId],
        max_entries: usize,
        max_bytes: usize,
    ) {
        let Some(last) = entries.last() else {
            return;
        };
        if self.known_head.is_some_and(|h| h >= last.sequence) {
            return;
        }
        // `extend_tail` keeps the cached run only if these connect to it.
        self.known_head = Some(last.sequence);
        self.clear_frames_memo();
        self.extend_tail(entries, Some(writers), max_entries, max_bytes);
    }

    /// Caches entries (ascending, contiguous) that connect to the cached
    /// tail; `writers`, when known, are their writing connections. While
    /// the head is unknown the run is kept tentatively: an empty read right
    /// after it proves it ends at the head.
    pub fn extend_tail(
        &mut self,
        entries: &[RemoteEntry],
        writers: Option<&[ConnId]>,
        max_entries: usize,
        max_bytes: usize,
    ) {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return;
        };
        if self.known_head.is_some_and(|h| h != last.sequence) || max_entries == 0 {
            return;
        }
        match self.tail.back() {
            Some(back) if back.entry.sequence >= last.sequence => return,
            Some(back) if back.entry.sequence + 1 == first.sequence => {}
            _ => self.clear_tail(),
        }
        let skip = entries.len().saturating_sub(max_entries);
        for (i, entry) in entries.iter().enumerate().skip(skip) {
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
                writer: writers.and_then(|w| w.get(i).copied()),
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

    /// The cached entries from `from` to the head, if the cache holds them
    /// all (`from` within the cache, or just past the head).
    fn tail_from(&self, from: Sequence) -> Option<impl Iterator<Item = &Cached> + Clone> {
        let head = self.known_head?;
        let front = self.tail.front()?.entry.sequence;
        if self.tail.back()?.entry.sequence != head || from < front || from > head + 1 {
            return None;
        }
        Some(self.tail.iter().skip((from - front) as usize))
    }

    /// `Changes` frames with the entries from `from` to the head, if the
    /// tail cache holds them all; entries written by `exclude` are left out
    /// (a connection need not get its own writes back). Frames without
    /// such a personal cut are remembered and shared, within `memo_budget`
    /// bytes per log.
    pub fn frames_from_tail(
        &mut self,
        public_key: &str,
        from: Sequence,
        exclude: Option<ConnId>,
        max_message: usize,
        memo_budget: usize,
        next_chunk_id: &mut MessageId,
    ) -> Option<Vec<Bytes>> {
        let cached = self.tail_from(from)?;
        if exclude.is_some() && cached.clone().any(|c| c.writer == exclude) {
            let others = cached.filter(|c| c.writer != exclude).map(|c| &c.entry);
            return Some(frames::changes_frames(
                public_key,
                others,
                max_message,
                next_chunk_id,
            ));
        }
        if let Some((_, frames)) = self.frames_memo.iter().find(|(f, _)| *f == from) {
            return Some(frames.clone());
        }
        let encoded = frames::changes_frames(
            public_key,
            cached.map(|c| &c.entry),
            max_message,
            next_chunk_id,
        );
        let size: usize = encoded.iter().map(Bytes::len).sum();
        if size <= memo_budget {
            while self.frames_memo.len() >= FRAMES_MEMO
                || self.frames_memo_bytes + size > memo_budget
            {
                let (_, dropped) = self.frames_memo.remove(0);
                self.frames_memo_bytes -= dropped.iter().map(Bytes::len).sum::<usize>();
            }
            self.frames_memo_bytes += size;
            self.frames_memo.push((from, encoded.clone()));
        }
        Some(encoded)
    }

    fn clear_frames_memo(&mut self) {
        self.frames_memo.clear();
        self.frames_memo_bytes = 0;
    }

    fn clear_tail(&mut self) {
        self.tail.clear();
        self.tail_bytes = 0;
        self.clear_frames_memo();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn e(sequence: Sequence) -> RemoteEntry {
        RemoteEntry {
            sequence,
            iv: Bytes::from_static(&[0; 12]),
            entry_id: Bytes::from_static(&[1; 16]),
            encrypted_entry: Bytes::from_static(&[2; 4]),
        }
    }

    fn seqs(log: &LogState, from: Sequence) -> Option<Vec<Sequence>> {
        log.tail_from(from)
            .map(|it| it.map(|c| c.entry.sequence).collect())
    }

    #[test]
    fn tail_stays_contiguous_and_bounded() {
        let mut log = LogState::default();
        let w = [ConnId(1); 3];
        log.record_commit(&[e(1), e(2), e(3)], &w, 4, 1000);
        assert_eq!(seqs(&log, 2), Some(vec![2, 3]));
        assert_eq!(seqs(&log, 4), Some(vec![]));
        assert_eq!(seqs(&log, 5), None);
        log.record_commit(&[e(4), e(5)], &w[..2], 4, 1000);
        assert_eq!(seqs(&log, 1), None, "oldest entry evicted");
        assert_eq!(seqs(&log, 2), Some(vec![2, 3, 4, 5]));
        log.observe_head(9);
        assert_eq!(seqs(&log, 5), None, "a head beyond the tail empties it");

        let mut fresh = LogState::default();
        fresh.extend_tail(&[e(7), e(8)], None, 4, 1000);
        assert_eq!(seqs(&fresh, 7), None, "head unknown: nothing served");
        fresh.observe_head(8);
        assert_eq!(
            seqs(&fresh, 7),
            Some(vec![7, 8]),
            "proved to end at the head"
        );
    }

    #[test]
    fn frames_from_the_tail_are_shared_within_the_budget_and_skip_own_writes() {
        let mut log = LogState::default();
        let (a, b) = (ConnId(1), ConnId(2));
        log.record_commit(&[e(1), e(2), e(3)], &[a, b, a], 8, 1000);
        let mut chunk_id = 0;
        let mut frames = |log: &mut LogState, exclude, budget| {
            log.frames_from_tail("pk", 1, exclude, 1 << 20, budget, &mut chunk_id)
                .expect("in the tail")
        };
        let first = frames(&mut log, None, 1000);
        let again = frames(&mut log, None, 1000);
        assert_eq!(first, again);
        assert_eq!(first[0].as_ptr(), again[0].as_ptr(), "one encoding, shared");
        let own_cut = frames(&mut log, Some(a), 1000);
        let sequences = |frame: &Bytes| match crate::codec::decode_response(frame) {
            Ok(crate::wire::Response::Changes { entries, .. }) => {
                entries.iter().map(|e| e.sequence).collect::<Vec<_>>()
            }
            other => panic!("not Changes: {other:?}"),
        };
        assert_eq!(sequences(&first[0]), vec![1, 2, 3]);
        assert_eq!(sequences(&own_cut[0]), vec![2], "a's own 1 and 3 left out");

        let mut tight = LogState::default();
        tight.record_commit(&[e(1), e(2), e(3)], &[a, b, a], 8, 1000);
        let one = frames(&mut tight, None, 10);
        let two = frames(&mut tight, None, 10);
        assert_ne!(
            one[0].as_ptr(),
            two[0].as_ptr(),
            "over the budget: not kept"
        );
        assert_eq!(tight.frames_memo_bytes, 0);
    }
}
