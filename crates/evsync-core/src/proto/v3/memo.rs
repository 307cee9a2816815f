//! Encoded `Changes` frames shared by subscribers that are sent the same
//! entries: every live subscriber of a commit, and the crowd of replicas
//! that resume from the same place after a burst.
//!
//! A complete run of a log (every entry from one sequence to another, none
//! left out) never changes once committed, so its encoding is keyed by
//! (log, first, last) and never goes stale. The most recent encoding is
//! always kept (a commit fanned out to many subscribers is encoded once,
//! whatever its size); older ones are kept within a byte budget.

use bytes::Bytes;
use std::collections::VecDeque;

/// Encodings kept besides the latest.
const KEPT_ENCODINGS: usize = 64;

#[derive(Clone, PartialEq, Eq, Debug)]
struct Key {
    log: String,
    first: u64,
    last: u64,
}

/// The shared-frames memo of one v3 engine.
#[derive(Debug)]
pub(super) struct SharedFrames {
    budget: usize,
    latest: Option<(Key, Vec<Bytes>)>,
    kept: VecDeque<(Key, Vec<Bytes>, usize)>,
    kept_bytes: usize,
}

impl SharedFrames {
    /// A memo keeping older encodings within `budget` bytes.
    pub fn new(budget: usize) -> Self {
        SharedFrames {
            budget,
            latest: None,
            kept: VecDeque::new(),
            kept_bytes: 0,
        }
    }

    /// The frames of the complete run `first..=last` of `log`, encoded by
    /// `encode` unless remembered.
    pub fn get_or_encode(
        &mut self,
        log: &str,
        first: u64,
        last: u64,
        encode: impl FnOnce() -> Vec<Bytes>,
    ) -> Vec<Bytes> {
        let matches = |k: &Key| k.first == first && k.last == last && k.log == log;
        if let Some((key, frames)) = &self.latest
            && matches(key)
        {
            return frames.clone();
        }
        if let Some((_, frames, _)) = self.kept.iter().find(|(k, _, _)| matches(k)) {
            return frames.clone();
        }
        let frames = encode();
        let key = Key {
            log: log.to_string(),
            first,
            last,
        };
        if let Some((old_key, old_frames)) = self.latest.replace((key, frames.clone())) {
            self.keep(old_key, old_frames);
        }
        frames
    }

    fn keep(&mut self, key: Key, frames: Vec<Bytes>) {
        let size: usize = frames.iter().map(Bytes::len).sum();
        if size > self.budget {
            return;
        }
        while self.kept.len() >= KEPT_ENCODINGS || self.kept_bytes + size > self.budget {
            let Some((_, _, dropped)) = self.kept.pop_front() else {
                break;
            };
            self.kept_bytes -= dropped;
        }
        self.kept_bytes += size;
        self.kept.push_back((key, frames, size));
    }

    #[cfg(test)]
    pub fn kept_bytes(&self) -> usize {
        self.kept_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: usize) -> Vec<Bytes> {
        vec![Bytes::from(vec![0u8; n])]
    }

    #[test]
    fn equal_runs_share_one_encoding_and_old_ones_stay_within_budget() {
        let mut memo = SharedFrames::new(100);
        let mut encoded = 0;
        let mut get = |memo: &mut SharedFrames, log, first, last, size| {
            memo.get_or_encode(log, first, last, || {
                encoded += 1;
                frames(size)
            })
        };
        let a = get(&mut memo, "pk", 1, 3, 40);
        let b = get(&mut memo, "pk", 1, 3, 40);
        assert_eq!(a[0].as_ptr(), b[0].as_ptr(), "one encoding, shared");
        get(&mut memo, "other", 1, 3, 40);
        get(&mut memo, "pk", 1, 3, 40);
        get(&mut memo, "pk", 2, 3, 500);
        get(&mut memo, "pk", 2, 3, 500);
        get(&mut memo, "pk", 4, 4, 10);
        assert!(memo.kept_bytes() <= 100, "the budget holds");
        get(&mut memo, "pk", 2, 3, 500);
        assert_eq!(
            encoded, 5,
            "an encoding over the budget is kept only as the latest"
        );
    }
}
