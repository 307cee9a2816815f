//! The order rule of an export's body, kept alike by the writer (so it
//! never writes a file the reader refuses) and the reader (so a damaged,
//! reordered or truncated file is refused before anything is imported).
//!
//! v3 entries first (a log's entries together, sequences 1, 2, 3 …: see
//! [`LogOrder`]), then the v4 stores, each a header line and its batches,
//! then the bindings. Stores come in strictly increasing [`StoreKey`]
//! order and bindings in strictly increasing publicKey order, so neither
//! can appear twice; a store's batches run from sequence 1, each starting
//! right after the previous one's last entry, and end exactly at the head
//! its header states. An importer that stores what the reader passed
//! therefore rebuilds every store at its own sequences.

use super::record::LogOrder;
use crate::storage::{StoreHead, StoreKey, StoredBatch};
use crate::wire::Sequence;

/// Which part of the body comes next.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
enum Part {
    #[default]
    Entries,
    Stores,
    Bindings,
}

/// The store whose batches are being read.
struct OpenStore {
    head: StoreHead,
    /// The sequence its next batch must start at.
    next: Sequence,
}

/// Checks one body line after another; see the module docs.
#[derive(Default)]
pub(super) struct BodyOrder {
    logs: LogOrder,
    part: Part,
    store: Option<OpenStore>,
    last_store: Option<StoreKey>,
    last_binding: Option<String>,
}

impl BodyOrder {
    /// A v3 entry; true when it starts a new log.
    pub(super) fn entry(&mut self, public_key: &str, sequence: Sequence) -> Result<bool, String> {
        if self.part != Part::Entries {
            return Err(format!(
                "log {public_key}: a v3 entry after the v4 records (entries come first)"
            ));
        }
        self.logs.accept(public_key, sequence)
    }

    /// A store's header line.
    pub(super) fn store(&mut self, head: &StoreHead) -> Result<(), String> {
        if self.part > Part::Stores {
            return Err(format!(
                "store {}: a store after the bindings (stores come before them)",
                name(&head.store)
            ));
        }
        self.close_store()?;
        if let Some(last) = &self.last_store
            && head.store <= *last
        {
            return Err(format!(
                "store {} after store {} (stores come once each, ordered by publicKey then storeId)",
                name(&head.store),
                name(last)
            ));
        }
        if head.head == 0 {
            return Err(format!(
                "store {} has head 0 (only stores with batches are exported)",
                name(&head.store)
            ));
        }
        self.part = Part::Stores;
        self.last_store = Some(head.store.clone());
        self.store = Some(OpenStore {
            head: head.clone(),
            next: 1,
        });
        Ok(())
    }

    /// A batch of the store whose header came last; returns that store.
    pub(super) fn batch(&mut self, batch: &StoredBatch) -> Result<&StoreKey, String> {
        let Some(open) = self.store.as_mut() else {
            return Err("a batch without its store line before it".into());
        };
        let store = name(&open.head.store);
        if batch.entry_ids.is_empty() {
            return Err(format!("store {store}: a batch without entry ids"));
        }
        if batch.sequence != open.next {
            return Err(format!(
                "store {store}: a batch at sequence {} where {} was due (batches must run without a gap from 1)",
                batch.sequence, open.next
            ));
        }
        if batch.last() > open.head.head {
            return Err(format!(
                "store {store}: a batch ends at sequence {}, past the store's head {}",
                batch.last(),
                open.head.head
            ));
        }
        open.next = batch.last() + 1;
        Ok(&open.head.store)
    }

    /// A binding line.
    pub(super) fn binding(&mut self, public_key: &str) -> Result<(), String> {
        self.close_store()?;
        if let Some(last) = &self.last_binding
            && public_key.as_bytes() <= last.as_bytes()
        {
            return Err(format!(
                "binding of {public_key} after the binding of {last} (bindings come once each, ordered by publicKey)"
            ));
        }
        self.part = Part::Bindings;
        self.last_binding = Some(public_key.to_owned());
        Ok(())
    }

    /// The end of the body: the last store must be whole.
    pub(super) fn end(&mut self) -> Result<(), String> {
        self.close_store()
    }

    fn close_store(&mut self) -> Result<(), String> {
        let Some(open) = self.store.take() else {
            return Ok(());
        };
        if open.next != open.head.head + 1 {
            return Err(format!(
                "store {}: its batches end at sequence {}, its header states head {} (batches missing)",
                name(&open.head.store),
                open.next - 1,
                open.head.head
            ));
        }
        Ok(())
    }
}

/// A store as messages name it.
fn name(store: &StoreKey) -> String {
    format!("({}, {:?})", store.public_key, store.store_id)
}
