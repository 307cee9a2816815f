//! What the log service hands a protocol layer for one subscriber: a run of
//! one log's entries, borrowed from wherever they are (a read, the tail
//! cache, a commit), so that nothing is copied before it is encoded.

use super::ConnId;
use super::kind::{Cached, EntryLog, LogKind};
use crate::wire::Sequence;

/// Records of one log for one subscriber, in sequence order. `K` is the
/// log's data model (v3 entries by default).
pub struct Delivery<'a, K: LogKind = EntryLog> {
    /// The log (for v3: the publicKey).
    pub log: &'a str,
    /// The first and last sequence of the run the entries are taken from.
    pub first: Sequence,
    pub last: Sequence,
    /// True when the entries are every entry of the log from `first` to
    /// `last`, none left out: equal deliveries then carry equal entries, so
    /// a protocol layer may encode them once for many subscribers.
    pub complete: bool,
    source: Source<'a, K>,
}

impl<K: LogKind> Clone for Delivery<'_, K> {
    fn clone(&self) -> Self {
        Delivery {
            log: self.log,
            first: self.first,
            last: self.last,
            complete: self.complete,
            source: self.source.clone(),
        }
    }
}

enum Source<'a, K: LogKind> {
    Slice(&'a [K::Record]),
    Cached {
        entries: std::collections::vec_deque::Iter<'a, Cached<K::Record>>,
        exclude: Option<ConnId>,
    },
    Committed {
        entries: &'a [Cached<K::Record>],
        from: Sequence,
        exclude: ConnId,
    },
}

impl<K: LogKind> Clone for Source<'_, K> {
    fn clone(&self) -> Self {
        match self {
            Source::Slice(s) => Source::Slice(s),
            Source::Cached { entries, exclude } => Source::Cached {
                entries: entries.clone(),
                exclude: *exclude,
            },
            Source::Committed {
                entries,
                from,
                exclude,
            } => Source::Committed {
                entries,
                from: *from,
                exclude: *exclude,
            },
        }
    }
}

impl<'a, K: LogKind> Delivery<'a, K> {
    /// A complete run read from storage.
    pub(super) fn read(log: &'a str, entries: &'a [K::Record]) -> Self {
        Delivery {
            log,
            first: entries.first().map_or(0, K::first),
            last: entries.last().map_or(0, K::last),
            complete: true,
            source: Source::Slice(entries),
        }
    }

    /// A run of the tail cache from `from` to `last`, leaving out what
    /// `exclude` wrote.
    pub(super) fn cached(
        log: &'a str,
        from: Sequence,
        last: Sequence,
        entries: std::collections::vec_deque::Iter<'a, Cached<K::Record>>,
        exclude: Option<ConnId>,
    ) -> Self {
        let complete = exclude.is_none_or(|x| !entries.clone().any(|c| c.writer == Some(x)));
        Delivery {
            log,
            first: from,
            last,
            complete,
            source: Source::Cached { entries, exclude },
        }
    }

    /// Entries of one commit (a contiguous run) from `from` on, leaving out
    /// what `exclude` wrote.
    pub(super) fn committed(
        log: &'a str,
        entries: &'a [Cached<K::Record>],
        from: Sequence,
        exclude: ConnId,
    ) -> Self {
        let last = entries.last().map_or(0, |c| K::last(&c.entry));
        let complete = !entries
            .iter()
            .any(|c| K::last(&c.entry) >= from && c.writer == Some(exclude));
        Delivery {
            log,
            first: from,
            last,
            complete,
            source: Source::Committed {
                entries,
                from,
                exclude,
            },
        }
    }

    /// The records, in sequence order.
    pub fn entries(&self) -> impl Iterator<Item = &'a K::Record> + Clone + 'a {
        let (slice, cached, committed) = match self.source.clone() {
            Source::Slice(entries) => (Some(entries.iter()), None, None),
            Source::Cached { entries, exclude } => (
                None,
                Some(
                    entries
                        .filter(move |c| exclude.is_none() || c.writer != exclude)
                        .map(|c| &c.entry),
                ),
                None,
            ),
            Source::Committed {
                entries,
                from,
                exclude,
            } => (
                None,
                None,
                Some(
                    entries
                        .iter()
                        .filter(move |c| K::last(&c.entry) >= from && c.writer != Some(exclude))
                        .map(|c| &c.entry),
                ),
            ),
        };
        slice
            .into_iter()
            .flatten()
            .chain(cached.into_iter().flatten())
            .chain(committed.into_iter().flatten())
    }
}
