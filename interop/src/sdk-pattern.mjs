// The connection pattern of the agent SDK's SyncService (github.com/mepuka/effect-claude-agent-sdk,
// src/Sync/SyncService.ts; the SDK is not on npm), rebuilt from Effect's own EventLogRemote so that
// the interop suite can hold a server to it. Only the pattern is reproduced, not the SDK's code:
//
// - one Socket (Socket.makeWebSocket) is made when the service connects, and reused for good;
// - every connect runs EventLogRemote.fromSocket on that Socket with the service's long-lived
//   scope as its scope, so the connection loop it forks belongs to the service, not to the
//   connect call: when the call returns, the loop keeps running;
// - every syncInterval tick connects again (the first tick at once, right after the initial
//   connect), and nothing ends the loops of earlier ticks: each keeps its own WebSocket open
//   (and reopens it, with fromSocket's backoff, when it fails);
// - ping stays on unless asked otherwise (the SDK's default for non-Cloudflare providers).
//
// Consequences that follow from Effect's Socket (which the SDK relies on): all loops share the
// Socket's writer, which writes to the WebSocket opened most recently, so requests of older
// loops (RequestChanges, WriteEntries, Ping, StopChanges) go out on the newest socket and their
// answers are handled by the newest loop. See docs/effect-client-notes.md, "Agent SDK".
import * as EventLogRemote from "@effect/experimental/EventLogRemote"
import * as Socket from "@effect/platform/Socket"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"

/**
 * An Effect (needs Scope, EventLog, EventLogEncryption, WebSocketConstructor) that connects the
 * replica the way the SDK's SyncService does with `SyncConfig.layer({ syncInterval })`.
 * @param {{ url: string, syncIntervalMs: number, disablePing?: boolean, protocols?: string|string[],
 *   onConnect?: () => void }} options  onConnect runs at every connect (tick), for bookkeeping
 */
export const sdkSyncService = ({ url, syncIntervalMs, disablePing = false, protocols, onConnect }) =>
  Effect.gen(function*() {
    const serviceScope = yield* Effect.scope
    const socket = yield* Socket.makeWebSocket(url, { protocols })
    const connect = Effect.suspend(() => {
      onConnect?.()
      return EventLogRemote.fromSocket({ disablePing }).pipe(
        Effect.provideService(Socket.Socket, socket),
        Scope.extend(serviceScope)
      )
    })
    yield* connect // the service's initial connect
    if (syncIntervalMs > 0) {
      // the periodic "sync now": connect again, at once and then every interval
      yield* connect.pipe(
        Effect.repeat(Schedule.spaced(Duration.millis(syncIntervalMs))),
        Effect.forkScoped
      )
    }
  })

/**
 * A journal with the behaviour the SDK's own journal (src/Storage/EventJournalKeyValueStore.ts,
 * a key-value store) has where it matters here, built on Effect's memory journal:
 * - an entry received from the remote is handled once, however many sockets deliver it
 *   (Effect's memory journal recognises only local entries and would handle it again);
 * - remote batches are applied one at a time, and an empty one costs nothing (after a connection
 *   ends, Effect's EventLog calls writeFromRemote with no entries in a tight loop, client bug #1;
 *   the memory journal would sort itself on each call);
 * - no lock is held while an upload waits for its Ack (Effect's SqlEventJournal holds its SQLite
 *   transaction for that wait, so one Ack that never comes, which this pattern produces, would
 *   block every later write of the replica);
 * - nextRemoteSequence is the highest sequence seen and unsent entries are tracked per remote
 *   (both as in Effect's memory journal).
 * @param {object} journal an EventJournal service from EventJournal.makeMemory
 */
export const sdkLikeJournal = (journal) => {
  const lock = Effect.unsafeMakeSemaphore(1)
  const fromRemote = new Set() // entry ids applied from a remote
  return {
    ...journal,
    writeFromRemote: (options) =>
      options.entries.length === 0 ? Effect.void : lock.withPermits(1)(Effect.suspend(() => {
        // several Changes carrying the same entry (backlogs of successive RequestChanges) can
        // land in one batch: keep the first copy only
        const inBatch = new Set()
        const entries = options.entries.filter((e) => {
          const id = e.entry.idString
          if (fromRemote.has(id) || inBatch.has(id)) return false
          inBatch.add(id)
          return true
        })
        return journal.writeFromRemote({
          ...options,
          entries,
          effect: (o) => Effect.tap(options.effect(o), () => Effect.sync(() => fromRemote.add(o.entry.idString)))
        })
      }))
  }
}
