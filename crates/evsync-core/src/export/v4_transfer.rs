//! The Effect v4 part of moving a tenant: its stores' batches and its
//! session-auth bindings, read out after the v3 logs ([`V4Export`]) and
//! written back with the storage contract's own calls ([`V4Import`]).
//!
//! An import appends the batches, in file order, to a fresh store with
//! [`AsyncStorage::append_batches`], which numbers a store's batches from
//! 1; each must land at the sequence the file gives it (replicas keep
//! their cursors per remoteId and store), or the import is refused.

use super::page::TRANSFER_PAGE;
use super::writer::ExportWriter;
use crate::storage::{
    AsyncStorage, BatchWrite, SigningKeyBinding, StoreHead, StoreKey, StoredBatch, batch_bytes,
};
use crate::wire::Sequence;

/// The v4 part of an export: the stores and bindings listed when it
/// began (the cut: a store is read up to the head listed then), given a
/// page at a time.
pub(super) struct V4Export {
    stores: Vec<StoreHead>,
    /// Index in `stores` of the store being read.
    store: usize,
    /// Its next sequence to read; 0 while its header line is unwritten.
    next: Sequence,
    bindings: Vec<SigningKeyBinding>,
    /// Bindings written so far.
    bound: usize,
}

impl V4Export {
    /// Lists the tenant's stores and bindings.
    pub(super) async fn start<S: AsyncStorage>(storage: &mut S) -> Result<Self, String> {
        let stores = storage
            .stores()
            .await
            .map_err(|e| format!("listing the v4 stores: {e}"))?;
        let bindings = storage
            .bindings()
            .await
            .map_err(|e| format!("listing the v4 bindings: {e}"))?;
        Ok(V4Export {
            stores,
            store: 0,
            next: 0,
            bindings,
            bound: 0,
        })
    }

    /// The next page of lines (a store's header and up to a page of its
    /// batches, or up to a page of bindings); `None` once all are given.
    pub(super) async fn next_lines<S: AsyncStorage>(
        &mut self,
        storage: &mut S,
        writer: &mut ExportWriter,
    ) -> Result<Option<Vec<String>>, String> {
        while let Some(head) = self.stores.get(self.store) {
            if self.next > head.head {
                self.store += 1;
                self.next = 0;
                continue;
            }
            let mut lines = Vec::new();
            if self.next == 0 {
                lines.push(writer.store(head)?);
                self.next = 1;
            }
            let page = storage
                .read_batches(&head.store, self.next, TRANSFER_PAGE)
                .await
                .map_err(|e| format!("reading batches: {e}"))?;
            let Some(last) = page.last().map(StoredBatch::last) else {
                return Err(format!(
                    "store ({}, {:?}): the store listed head {} but has no batch from {} on",
                    head.store.public_key, head.store.store_id, head.head, self.next
                ));
            };
            for batch in page.iter().take_while(|b| b.last() <= head.head) {
                lines.push(writer.batch(batch)?);
            }
            self.next = last + 1;
            return Ok(Some(lines));
        }
        if self.bound < self.bindings.len() {
            let end = (self.bound + TRANSFER_PAGE.max_entries).min(self.bindings.len());
            let lines = self.bindings[self.bound..end]
                .iter()
                .map(|binding| writer.binding(binding))
                .collect::<Result<Vec<_>, _>>()?;
            self.bound = end;
            return Ok(Some(lines));
        }
        Ok(None)
    }
}

/// The v4 part of an import: batches gathered into pages and appended in
/// file order, bindings stored as they come.
#[derive(Default)]
pub(super) struct V4Import {
    pending: Vec<BatchWrite>,
    /// The file's sequence of each pending batch, in order.
    expected: Vec<Sequence>,
    pending_bytes: usize,
}

impl V4Import {
    /// Queues one batch of `store`; appends a page once one is gathered.
    pub(super) async fn batch<S: AsyncStorage>(
        &mut self,
        storage: &mut S,
        store: StoreKey,
        batch: StoredBatch,
    ) -> Result<(), String> {
        self.pending_bytes += batch_bytes(&batch);
        self.expected.push(batch.sequence);
        self.pending.push(BatchWrite {
            store,
            iv: batch.iv,
            entry_ids: batch.entry_ids,
            encrypted_batch: batch.encrypted_batch,
        });
        if self.pending.len() >= TRANSFER_PAGE.max_entries
            || self.pending_bytes >= TRANSFER_PAGE.max_bytes
        {
            self.flush(storage).await?;
        }
        Ok(())
    }

    /// Stores a binding; the target must not bind the publicKey to
    /// another key (a fresh store binds nothing).
    pub(super) async fn binding<S: AsyncStorage>(
        &mut self,
        storage: &mut S,
        binding: &SigningKeyBinding,
    ) -> Result<(), String> {
        let bound = storage
            .bind_signing_key(&binding.public_key, &binding.signing_key)
            .await
            .map_err(|e| format!("storing a binding: {e}"))?;
        if bound != binding.signing_key {
            return Err(format!(
                "publicKey {}: the target already binds another signing key",
                binding.public_key
            ));
        }
        Ok(())
    }

    /// Appends the pending batches in one call and checks that each was
    /// stored at its exported sequence.
    pub(super) async fn flush<S: AsyncStorage>(&mut self, storage: &mut S) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let results = storage
            .append_batches(&self.pending)
            .await
            .map_err(|e| format!("storing batches: {e}"))?;
        for ((write, outcome), &want) in self.pending.iter().zip(&results).zip(&self.expected) {
            let store = &write.store;
            match outcome.stored_at {
                Some(got) if got == want => {}
                Some(got) => {
                    return Err(format!(
                        "store ({}, {:?}): the store put a batch at sequence {got} where the file has {want} (import into a fresh store)",
                        store.public_key, store.store_id
                    ));
                }
                None => {
                    return Err(format!(
                        "store ({}, {:?}): the batch at sequence {want} holds only entry ids stored before it (a batch twice?)",
                        store.public_key, store.store_id
                    ));
                }
            }
        }
        if results.len() != self.pending.len() {
            return Err(format!(
                "storing batches: {} outcomes for {} batches",
                results.len(),
                self.pending.len()
            ));
        }
        self.pending.clear();
        self.expected.clear();
        self.pending_bytes = 0;
        Ok(())
    }
}
