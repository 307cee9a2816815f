//! [`LogService`]: the parts (outbound accounting, subscriptions, caches,
//! write pipeline) and the rules that tie them together.
//!
//! The hand-over rule: a subscription goes live only when its next
//! sequence is past the log's known head. Every commit this service makes
//! raises the head and is delivered live from each subscriber's next
//! sequence; every commit made elsewhere reaches it as a "log advanced"
//! notification, after which live subscribers behind the new head read
//! from storage. A commit that a read missed is thus either reflected in
//! the known head (and read next) or delivered when its commit or its
//! notification arrives — never skipped, never sent twice.

use super::cache::Caches;
use super::kind::{Cached, EntryLog, KindResponse, LogKind};
use super::outbound::Outbound;
use super::quota::SharedWriteQuota;
use super::subscriptions::{SubState, Subscriptions};
use super::writes::{PendingWrite, WritePipeline};
use super::{CloseReason, ConnId, Delivery, LogConfig, LogSink, LogStats, WriteToken};
use crate::storage::{ReadLimit, RequestId, StorageError, StorageRequest, StorageResponse};
use crate::time::Timestamp;
use crate::wire::Sequence;
use std::collections::BTreeMap;

/// The log service of one tenant for the data model `K` (v3 entries by
/// default). See the module docs of [`crate::log`].
pub struct LogService<K: LogKind = EntryLog> {
    config: LogConfig,
    outbound: Outbound,
    subs: Subscriptions,
    caches: Caches<K>,
    writes: WritePipeline<K::Write>,
    /// The tenant's write rate limit, when configured.
    quota: Option<SharedWriteQuota>,
    /// The latest time the caller passed in ([`LogService::set_now`]).
    now: Timestamp,
    shutting_down: bool,
    next_request: u64,
    stats: LogStats,
}

impl<K: LogKind> LogService<K> {
    pub fn new(config: LogConfig) -> Self {
        Self::with_request_ids_from(config, 0)
    }

    /// A service whose storage requests are numbered from `first`: two
    /// services of one tenant (v3 and v4) share an adapter's storage, which
    /// hands each answer back by its id.
    pub fn with_request_ids_from(config: LogConfig, first: u64) -> Self {
        LogService {
            quota: config.write_rate.map(SharedWriteQuota::new),
            now: Timestamp(0),
            config,
            outbound: Outbound::default(),
            subs: Subscriptions::default(),
            caches: Caches::default(),
            writes: WritePipeline::default(),
            shutting_down: false,
            next_request: first,
            stats: LogStats::default(),
        }
    }

    /// What this service did since the last call (see [`LogStats`]).
    pub fn take_stats(&mut self) -> LogStats {
        std::mem::take(&mut self.stats)
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The time, as the caller's clock reads it; the write rate limit
    /// refills by it. Call before each `handle_*` that may write.
    pub fn set_now(&mut self, now: Timestamp) {
        self.now = Timestamp(self.now.0.max(now.0));
    }

    /// Time passed: appends held back by the write rate limit may start.
    pub fn handle_timeout(&mut self, now: Timestamp, sink: &mut impl LogSink<K>) {
        self.set_now(now);
        self.maybe_start_append(sink);
    }

    /// When [`LogService::handle_timeout`] has work: writes are waiting
    /// for the write rate limit.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        if self.writes.is_idle() {
            return None;
        }
        self.quota.as_ref()?.lock().ready_at()
    }

    /// Whole seconds until the tenant's writes are no longer held back by
    /// its write rate limit, or `None` when they are not (adapters refuse
    /// new connections meanwhile: `429` with `Retry-After`).
    pub fn write_retry_after_secs(&mut self, now: Timestamp) -> Option<u64> {
        self.set_now(now);
        self.quota.as_ref()?.lock().retry_after_secs(self.now)
    }

    /// This service's write rate bucket, when it has a rate.
    pub fn write_quota(&self) -> Option<SharedWriteQuota> {
        self.quota.clone()
    }

    /// Takes `quota` as this service's bucket (another service's of the
    /// same tenant: [`LogService::write_quota`]), so that the tenant's
    /// rate holds across both. No effect on a service without a rate.
    pub fn share_write_quota(&mut self, quota: SharedWriteQuota) {
        if self.quota.is_some() {
            self.quota = Some(quota);
        }
    }

    // ------------------------------------------------------------ connections

    /// A connection opened.
    pub fn open(&mut self, conn: ConnId) {
        self.outbound.open(conn);
    }

    pub fn is_open(&self, conn: ConnId) -> bool {
        self.outbound.is_open(conn)
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.outbound.count()
    }

    /// True when no connection is open and no storage work is pending or
    /// in flight: the tenant may be unloaded.
    pub fn is_idle(&self) -> bool {
        self.outbound.count() == 0 && self.writes.is_idle() && self.subs.reads_in_flight() == 0
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// The protocol layer wants to queue `bytes` of its own on `conn`
    /// (replies that are not deliveries or commits). False if that would
    /// pass the hard limit: the connection is then closed instead.
    pub fn reserve(&mut self, conn: ConnId, bytes: usize, sink: &mut impl LogSink<K>) -> bool {
        if !self.outbound.is_open(conn) {
            return false;
        }
        if bytes > self.room(conn) {
            self.close_slow(conn, sink);
            return false;
        }
        self.outbound.add(conn, bytes);
        true
    }

    /// `bytes` queued on `conn` were written to its socket.
    pub fn handle_sent(&mut self, conn: ConnId, bytes: usize, sink: &mut impl LogSink<K>) {
        if self
            .outbound
            .sent(conn, bytes, self.config.outbound_soft_limit / 2)
        {
            for log in self.subs.stalled(conn) {
                self.catch_up(conn, &log, true, sink);
            }
        }
    }

    /// `conn` is gone (closed by its peer, or by the protocol layer).
    /// Pending writes still commit; their results are dropped.
    pub fn handle_close(&mut self, conn: ConnId, sink: &mut impl LogSink<K>) {
        self.forget(conn);
        self.maybe_finish_shutdown(sink);
    }

    /// Graceful shutdown: once the writes already received are committed,
    /// every connection is closed with [`CloseReason::ShuttingDown`].
    pub fn handle_shutdown(&mut self, sink: &mut impl LogSink<K>) {
        self.shutting_down = true;
        self.maybe_finish_shutdown(sink);
    }

    // ---------------------------------------------------------- subscriptions

    /// `conn` subscribes to `log` from sequence `start` (a repeated call
    /// replaces the subscription; a read in flight for the old one is then
    /// ignored).
    pub fn subscribe(
        &mut self,
        conn: ConnId,
        log: &str,
        start: Sequence,
        sink: &mut impl LogSink<K>,
    ) {
        if !self.outbound.is_open(conn) {
            return;
        }
        let max = self.config.max_subscriptions_per_connection;
        if !self.subs.has(conn, log) && self.subs.count(conn) >= max {
            self.close(conn, CloseReason::TooManySubscriptions { max }, sink);
            return;
        }
        self.subs.insert(conn, log, start.max(1));
        self.outbound.hold(conn);
        self.catch_up(conn, log, false, sink);
    }

    pub fn unsubscribe(&mut self, conn: ConnId, log: &str) {
        self.subs.remove(conn, log);
    }

    /// The logs `conn` subscribes to and the next sequence each is owed
    /// (to resume them elsewhere, e.g. after a Durable Object hibernates).
    pub fn subscription_positions(&self, conn: ConnId) -> Vec<(String, Sequence)> {
        self.subs.positions(conn)
    }

    /// Another writer (engine, process, node) committed to `log` up to
    /// `head`. Live subscribers behind it read what they miss.
    pub fn handle_log_advanced(&mut self, log: &str, head: Sequence, sink: &mut impl LogSink<K>) {
        self.caches.entry(log).observe_head(head);
        for conn in self.subs.subscribers(log) {
            let behind = self
                .subs
                .get(conn, log)
                .is_some_and(|sub| sub.state == SubState::Live && sub.next_seq <= head);
            if behind {
                self.catch_up(conn, log, false, sink);
            }
        }
    }

    // ------------------------------------------------------------------ writes

    /// `conn` writes `batch` (non-empty); its commit comes back to
    /// [`LogSink::committed`] with `token`.
    pub fn write(
        &mut self,
        conn: ConnId,
        token: WriteToken,
        batch: K::Write,
        sink: &mut impl LogSink<K>,
    ) {
        self.write_all(conn, [(token, batch)], sink);
    }

    /// `conn` writes several `writes` of one request at once: they join the
    /// same append (one transaction) unless they exceed one append's
    /// bounds, since none of them starts an append before all are queued.
    pub fn write_all(
        &mut self,
        conn: ConnId,
        writes: impl IntoIterator<Item = (WriteToken, K::Write)>,
        sink: &mut impl LogSink<K>,
    ) {
        if !self.outbound.is_open(conn) {
            return;
        }
        let limit = self.config.max_unacked_write_bytes;
        for (token, batch) in writes {
            let write = PendingWrite {
                conn,
                token,
                bytes: K::write_bytes(&batch),
                entries: K::write_entries(&batch),
                batch,
            };
            if !self.writes.push(write, limit) {
                self.close(conn, CloseReason::TooManyUnackedWrites { limit }, sink);
                return;
            }
        }
        self.maybe_start_append(sink);
    }

    /// Storage answered a request from [`LogSink::storage`].
    pub fn handle_storage_response(
        &mut self,
        response: StorageResponse,
        sink: &mut impl LogSink<K>,
    ) {
        match K::response(response) {
            Some(KindResponse::Appended { id, result }) => self.on_appended(id, result, sink),
            Some(KindResponse::Read { id, result }) => self.on_read(id, result, sink),
            None => {} // not a request of this service's kind
        }
    }

    /// Storage took append `id` into the transaction of append `into`,
    /// which had not finished inserting (see
    /// [`LogConfig::join_open_appends`]): `into`'s answer covers `id`'s
    /// writes too, after its own, and the next group may go out.
    pub fn handle_append_joined(
        &mut self,
        id: RequestId,
        into: RequestId,
        sink: &mut impl LogSink<K>,
    ) {
        if self.writes.join(id, into) {
            self.maybe_start_append(sink);
        }
    }

    /// Storage did not start append `id` (sent while another was in
    /// flight): that one's commit had begun, so `id` could not join it.
    /// Its writes wait for the next transaction, with whatever arrives
    /// until the running one is answered.
    ///
    /// False (nothing changes) unless `id` is in flight behind another
    /// append: the caller must then run it.
    pub fn handle_append_put_back(&mut self, id: RequestId) -> bool {
        let Some(bytes) = self.writes.put_back(id) else {
            return false;
        };
        if let Some(quota) = &self.quota {
            quota.lock().refund(bytes);
        }
        true
    }

    fn maybe_start_append(&mut self, sink: &mut impl LogSink<K>) {
        if let Some(quota) = &self.quota
            && !self.writes.is_idle()
            && !quota.lock().ready(self.now)
        {
            return; // `next_deadline` says when
        }
        let mut id = None;
        let next = &mut self.next_request;
        let max_in_flight = if self.config.join_open_appends { 2 } else { 1 };
        let group = self.writes.next_group(
            self.config.append_max_entries,
            self.config.append_max_bytes,
            max_in_flight,
            || {
                let rid = RequestId(*next);
                *next += 1;
                id = Some(rid);
                rid
            },
        );
        if let (Some(batches), Some(id)) = (group, id) {
            if let Some(quota) = &self.quota {
                quota
                    .lock()
                    .charge(batches.iter().map(K::write_bytes).sum());
            }
            sink.storage(StorageRequest {
                id,
                op: K::append_op(batches),
            });
        }
    }

    fn on_appended(
        &mut self,
        id: RequestId,
        result: Result<Vec<K::Outcome>, StorageError>,
        sink: &mut impl LogSink<K>,
    ) {
        let Some(writes) = self.writes.take_in_flight(id) else {
            return;
        };
        let result = result.and_then(|outcomes| {
            let shaped = outcomes.len() == writes.len()
                && outcomes
                    .iter()
                    .zip(&writes)
                    .all(|(o, w)| K::outcome_fits(&w.batch, o));
            if shaped {
                Ok(outcomes)
            } else {
                Err(StorageError::new(
                    "storage returned a result of the wrong shape",
                ))
            }
        });
        match result {
            Ok(outcomes) => self.commit_succeeded(writes, outcomes, sink),
            Err(err) => self.commit_failed(writes, err, sink),
        }
        self.maybe_start_append(sink);
        self.maybe_finish_shutdown(sink);
    }

    fn commit_failed(
        &mut self,
        writes: Vec<PendingWrite<K::Write>>,
        err: StorageError,
        sink: &mut impl LogSink<K>,
    ) {
        self.stats.storage_errors += 1;
        sink.storage_failed(&err);
        for write in writes {
            self.writes.settle(&write);
            let reason = CloseReason::WriteFailed {
                message: err.message.clone(),
            };
            self.close(write.conn, reason, sink);
        }
    }

    fn commit_succeeded(
        &mut self,
        writes: Vec<PendingWrite<K::Write>>,
        outcomes: Vec<K::Outcome>,
        sink: &mut impl LogSink<K>,
    ) {
        self.stats.commits += 1;
        let mut committed: BTreeMap<String, Vec<Cached<K::Record>>> = BTreeMap::new();
        let mut stored = Vec::new();
        // A group holds several connections' requests interleaved. Acking
        // them connection by connection (each one's in request order: the
        // sort is stable) makes each connection's acks one run of frames,
        // which the adapter writes with one socket write instead of one
        // per request. Acks of different connections have no order to keep.
        let mut done: Vec<_> = writes.into_iter().zip(outcomes).collect();
        done.sort_by_key(|(write, _)| write.conn);
        for (write, outcome) in done {
            K::stored(&write.batch, &outcome, &mut stored);
            if !stored.is_empty() {
                let new = committed.entry(K::write_log(&write.batch)).or_default();
                new.extend(stored.drain(..).map(|entry| Cached {
                    entry,
                    writer: Some(write.conn),
                }));
            }
            self.writes.settle(&write);
            if self.outbound.is_open(write.conn) {
                let sequences = K::ack_sequences(&outcome);
                let room = self.room(write.conn);
                match sink.committed(write.conn, write.token, &sequences, room) {
                    Some(bytes) => {
                        self.outbound.add(write.conn, bytes);
                    }
                    None => self.close_slow(write.conn, sink),
                }
            }
        }
        for (log, mut new) in committed {
            if new.is_empty() {
                continue;
            }
            self.stats.entries_appended += new
                .iter()
                .map(|c| K::last(&c.entry) + 1 - K::first(&c.entry))
                .sum::<u64>();
            new.sort_by_key(|c| K::first(&c.entry));
            self.publish(&log, &new, sink);
        }
        let subs = &self.subs;
        self.caches
            .evict(self.config.max_cached_logs, |log| subs.has_subscribers(log));
    }

    /// Hands newly committed entries of one log to its live subscribers.
    ///
    /// A subscriber whose connection still has more than
    /// `live_coalesce_bytes` unsent is held back (stalled) instead: once
    /// its socket reports the queue written, it gets everything committed
    /// meanwhile in one delivery (from the tail cache). Under load this
    /// turns one message per commit per subscriber into one per socket
    /// round trip.
    fn publish(&mut self, log: &str, new: &[Cached<K::Record>], sink: &mut impl LogSink<K>) {
        let (first, last) = (K::first(&new[0].entry), K::last(&new[new.len() - 1].entry));
        self.caches.entry(log).record_commit(
            new,
            self.config.tail_cache_entries,
            self.config.tail_cache_bytes,
        );
        let hold_back_over = self
            .config
            .live_coalesce_bytes
            .min(self.config.outbound_soft_limit);
        let hard_limit = self.config.outbound_hard_limit;
        let Some(subscribers) = self.subs.of_log_mut(log) else {
            return;
        };
        // Subscribers behind the commit's first entry (another writer's
        // entries are missing) and those too slow to take it are handled
        // after the pass, which needs the whole service.
        let mut gaps = Vec::new();
        let mut too_slow = Vec::new();
        for &conn in subscribers.order.values() {
            let Some(sub) = subscribers.subs.get_mut(&conn) else {
                continue;
            };
            if sub.state != SubState::Live || sub.next_seq > last {
                continue;
            }
            if sub.next_seq < first {
                gaps.push(conn);
                continue;
            }
            let queued = self.outbound.queued(conn);
            if queued > hold_back_over {
                sub.state = SubState::Stalled;
                self.outbound.hold(conn);
                continue;
            }
            let from = sub.next_seq;
            sub.next_seq = last + 1;
            let room = hard_limit.saturating_sub(queued);
            match sink.deliver(conn, Delivery::committed(log, new, from, conn), room) {
                Some(bytes) => {
                    self.outbound.add(conn, bytes);
                    self.stats.live_deliveries += 1;
                }
                None => too_slow.push(conn),
            }
        }
        for conn in gaps {
            self.catch_up(conn, log, false, sink);
        }
        for conn in too_slow {
            self.close_slow(conn, sink);
        }
    }

    // ---------------------------------------------------------------- catch-up

    /// Moves a subscription forward: live if it is past the known head,
    /// else from the tail cache, else with a storage read. Waits (stalled)
    /// while its connection's outbound queue is over the soft limit.
    /// `resuming` is set when a live subscription that was held back
    /// catches up: entries its own connection wrote are then left out when
    /// served from the tail cache, as they are from live deliveries.
    fn catch_up(&mut self, conn: ConnId, log: &str, resuming: bool, sink: &mut impl LogSink<K>) {
        let queued = self.outbound.queued(conn);
        let room = self.room(conn);
        let Some(sub) = self.subs.get_mut(conn, log) else {
            return;
        };
        if queued > self.config.outbound_soft_limit {
            sub.state = SubState::Stalled;
            self.outbound.hold(conn);
            return;
        }
        let from = sub.next_seq;
        let cache = self.caches.entry(log);
        if let Some(head) = cache.known_head {
            if from > head {
                sub.state = SubState::Live;
                return;
            }
            if let Some(cached) = cache.tail_from(from) {
                sub.next_seq = head + 1;
                sub.state = SubState::Live;
                let delivery = Delivery::cached(log, from, head, cached, resuming.then_some(conn));
                let queued = sink.deliver(conn, delivery, room);
                self.account(conn, queued, sink);
                return;
            }
        }
        let id = self.next_request_id();
        self.stats.catchup_reads += 1;
        self.subs.start_read(id, conn, log);
        let limit = ReadLimit {
            max_entries: self.config.read_max_entries,
            max_bytes: self.config.read_max_bytes,
        };
        sink.storage(StorageRequest {
            id,
            op: K::read_op(log, from, limit),
        });
    }

    fn on_read(
        &mut self,
        id: RequestId,
        result: Result<Vec<K::Record>, StorageError>,
        sink: &mut impl LogSink<K>,
    ) {
        let Some((conn, log)) = self.subs.finish_read(id) else {
            return;
        };
        let Some(sub) = self.subs.get_mut(conn, &log) else {
            return;
        };
        if sub.state != SubState::Reading(id) {
            return;
        }
        let entries = match result {
            Ok(entries) => entries,
            Err(err) => {
                self.stats.storage_errors += 1;
                let reason = CloseReason::ReadFailed {
                    message: err.message,
                };
                self.close(conn, reason, sink);
                return;
            }
        };
        let from = sub.next_seq;
        let entries: Vec<K::Record> = entries.into_iter().filter(|e| K::last(e) >= from).collect();
        let cache = self.caches.entry(&log);
        match entries.last() {
            Some(last) => {
                sub.next_seq = K::last(last) + 1;
                sub.confirmed_through = Some(K::last(last));
                cache.extend_tail(
                    &entries,
                    |e| (e, None),
                    self.config.tail_cache_entries,
                    self.config.tail_cache_bytes,
                );
            }
            None => {
                // Nothing at or after `from`: if the entry just before it
                // is known to exist, the head is (at least) `from - 1`.
                if from <= 1 || sub.confirmed_through == Some(from - 1) {
                    cache.observe_head(from - 1);
                }
                if cache.known_head.is_none_or(|head| from > head) {
                    sub.state = SubState::Live;
                    return;
                }
            }
        }
        sub.state = SubState::Stalled;
        self.outbound.hold(conn);
        let room = self.room(conn);
        let queued = sink.deliver(conn, Delivery::read(&log, &entries), room);
        if self.account(conn, queued, sink) {
            self.catch_up(conn, &log, false, sink);
        }
    }

    // ----------------------------------------------------------------- helpers

    fn next_request_id(&mut self) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        id
    }

    /// Bytes `conn` may still have queued before the hard limit.
    fn room(&self, conn: ConnId) -> usize {
        self.config
            .outbound_hard_limit
            .saturating_sub(self.outbound.queued(conn))
    }

    /// Counts what the sink queued, or closes a connection it could not
    /// queue for. False if the connection was closed.
    fn account(&mut self, conn: ConnId, queued: Option<usize>, sink: &mut impl LogSink<K>) -> bool {
        match queued {
            Some(bytes) => self.outbound.add(conn, bytes).is_some(),
            None => {
                self.close_slow(conn, sink);
                false
            }
        }
    }

    fn close_slow(&mut self, conn: ConnId, sink: &mut impl LogSink<K>) {
        let limit = self.config.outbound_hard_limit;
        self.close(conn, CloseReason::SlowConsumer { limit }, sink);
    }

    /// Closes `conn` from the service's side: forgets it, tells the sink.
    fn close(&mut self, conn: ConnId, reason: CloseReason, sink: &mut impl LogSink<K>) {
        if !self.forget(conn) {
            return;
        }
        sink.close(conn, reason);
        self.maybe_finish_shutdown(sink);
    }

    /// Forgets `conn` everywhere; false if it was not open.
    fn forget(&mut self, conn: ConnId) -> bool {
        if !self.outbound.forget(conn) {
            return false;
        }
        self.subs.forget(conn);
        self.writes.forget(conn);
        true
    }

    /// During shutdown, once no write is pending, closes every connection.
    fn maybe_finish_shutdown(&mut self, sink: &mut impl LogSink<K>) {
        if !self.shutting_down || !self.writes.is_idle() {
            return;
        }
        for conn in self.outbound.conns_sorted() {
            self.forget(conn);
            sink.close(conn, CloseReason::ShuttingDown);
        }
    }
}
