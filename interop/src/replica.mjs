// A real, unmodified Effect v3 EventLog replica, instrumented for the interop suite.
//
// Everything that syncs is Effect's own code: EventLog + EventJournal (memory journal) +
// EventLogEncryption.layerSubtle + EventLogRemote.fromSocket over Socket.makeWebSocket.
// The instrumentation only observes:
//   - the EventLog handler records every run (local writes and remote arrivals separately),
//   - the WebSocket constructor is wrapped to count socket constructions / opens / closes,
//     record handshake errors (e.g. "Unexpected server response: 401"), the subprotocol the
//     server selected, and decode small server frames (Hello -> remoteId, Pong, ...),
//   - a logger records Effect's own log lines (incl. debug) so tests can assert on them.
// Waiting is event-driven: every observation calls notify(), which settles waiters whose
// predicate became true. Timeouts exist only as failure bounds.
import * as EventGroup from "@effect/experimental/EventGroup"
import * as EventJournal from "@effect/experimental/EventJournal"
import * as EventLog from "@effect/experimental/EventLog"
import * as EventLogEncryption from "@effect/experimental/EventLogEncryption"
import * as EventLogRemote from "@effect/experimental/EventLogRemote"
import * as Socket from "@effect/platform/Socket"
import * as SqlEventJournal from "@effect/sql/SqlEventJournal"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import { identity as fnIdentity } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Schema from "effect/Schema"
import { randomUUID } from "node:crypto"
import WebSocket from "ws"
import { sdkSyncService } from "./sdk-pattern.mjs"

const DEBUG = /^(1|true)$/i.test(process.env.INTEROP_DEBUG ?? "")
const TRACE = /^(1|true)$/i.test(process.env.INTEROP_TRACE ?? "")

const summarize = (msg) => {
  switch (msg._tag) {
    case "WriteEntries":
      return `WriteEntries id=${msg.id} n=${msg.encryptedEntries.length}`
    case "Ack":
      return `Ack id=${msg.id} seq=[${msg.sequenceNumbers.length > 6 ? `${msg.sequenceNumbers.slice(0, 3)}..${msg.sequenceNumbers.at(-1)}` : msg.sequenceNumbers}]`
    case "Changes":
      return `Changes n=${msg.entries.length} seq=[${msg.entries.length > 6 ? `${msg.entries.slice(0, 3).map((e) => e.sequence)}..${msg.entries.at(-1).sequence}` : msg.entries.map((e) => e.sequence)}]`
    case "RequestChanges":
      return `RequestChanges start=${msg.startSequence}`
    case "ChunkedMessage":
      return `ChunkedMessage id=${msg.id} part=${msg.part}`
    default:
      return `${msg._tag}${"id" in msg ? ` id=${msg.id}` : ""}`
  }
}

// ---------------------------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------------------------

export const NoteGroup = EventGroup.empty.add({
  tag: "Note",
  primaryKey: (payload) => payload.id,
  payload: Schema.Struct({ id: Schema.String, text: Schema.String, n: Schema.Number })
})

export const NoteSchema = EventLog.schema(NoteGroup)

// ---------------------------------------------------------------------------------------------
// Identity and journal
// ---------------------------------------------------------------------------------------------

/** A fresh identity (random UUID publicKey, 32 random key bytes), as Effect makes it. */
export const makeIdentity = () => EventLog.Identity.makeRandom()

/** Effect's string form: base64url(JSON {publicKey, privateKey: base64(key)}). */
export const identityToString = (identity) => EventLog.Identity.encodeString(identity)

/** Parses Effect's string form. A "same identity" replica is built from the same string. */
export const identityFromString = (s) => EventLog.Identity.decodeString(s)

/**
 * A memory EventJournal instance. Pass it to several successive replicas to model an app that
 * keeps its journal while its EventLog / remote are rebuilt (restart, reconnect).
 */
export const makeJournal = () => Effect.runSync(EventJournal.makeMemory)

// ---------------------------------------------------------------------------------------------
// Reconnect workaround (docs/effect-client-notes.md)
// ---------------------------------------------------------------------------------------------

/**
 * Wraps a Socket so that Effect's EventLogRemote.fromSocket can reconnect:
 * - writes made after a connection ended are dropped instead of waiting for the socket to reopen
 *   (the StopChanges written by fromSocket's cleanup otherwise waits forever: no retry ever runs);
 * - pair it with `closeCodeIsError: () => true` so that a 1000/1006 close is retried too.
 * Dropping is safe: EventLog re-uploads unacknowledged entries and re-requests changes on the
 * next connection.
 */
export const reconnectWorkaround = (socket) => {
  let running = false
  const wrapRun = (run) => (handler, opts) =>
    Effect.suspend(() => {
      running = true
      return run(handler, opts)
    }).pipe(
      Effect.ensuring(Effect.sync(() => {
        running = false
      }))
    )
  return Socket.Socket.of({
    [Socket.TypeId]: Socket.TypeId,
    run: wrapRun(socket.run),
    runRaw: wrapRun(socket.runRaw),
    // while a connection runs, writes behave as before (they wait until the socket is open);
    // once it has ended, they are dropped instead of waiting for a reopen that cannot come
    writer: Effect.map(socket.writer, (write) => (chunk) => Effect.suspend(() => (running ? write(chunk) : Effect.void)))
  })
}

// ---------------------------------------------------------------------------------------------
// Replica
// ---------------------------------------------------------------------------------------------

const isLocalWrite = FiberRef.unsafeMake(false)
const toHex = (bytes) => Buffer.from(bytes).toString("hex")
const SMALL_FRAME = 65_536

/**
 * @typedef {{ id: string, text: string, n: number }} Note
 * @typedef {{ id: string, text: string, n: number, entryId: string, local: boolean }} HandlerRun
 * @typedef {{
 *   constructed: number, opened: number, closed: number,
 *   closeCodes: number[], errors: string[], statusCodes: number[],
 *   selectedProtocols: (string|undefined)[], remoteIds: string[], firstFrameTags: string[],
 *   frameTags: Record<string, number>, decodeErrors: string[], firstAcks: number, acks: number[][], ready: number,
 *   writeFromRemoteCalls: number, emptyWriteFromRemoteCalls: number
 * }} SocketStats
 */

/**
 * Starts a replica.
 * @param {object} options
 * @param {string} options.url  ws://host:port/event-log/<tenant>
 * @param {string} [options.name]
 * @param {object} [options.identity]  an EventLog.Identity value (default: a fresh one)
 * @param {object} [options.journal]   an EventJournal service (default: a fresh memory journal)
 * @param {string} [options.journalFile] use Effect's SqlEventJournal in this sqlite file instead
 *   (persistent: a replica started again on the same file is the same app restarted)
 * @param {boolean} [options.disablePing]
 * @param {string|string[]} [options.protocols]  WebSocket subprotocols, e.g. "sync-auth.<token>"
 * @param {Record<string,string>} [options.headers]  extra handshake headers (Authorization)
 * @param {(code: number) => boolean} [options.closeCodeIsError]  passed to Socket.makeWebSocket
 * @param {boolean} [options.allowDisconnect]  a closed connection is expected (by default it aborts
 *   every waitFor at once: Effect's client does not reconnect)
 * @param {(error: Error) => void} [options.onAbort]
 * @param {boolean} [options.reconnectWorkaround]  apply the user-side workaround from
 *   docs/effect-client-notes.md (never used by the scenarios, which run the client as shipped)
 * @param {number} [options.sdkSyncIntervalMs]  connect the way the agent SDK's SyncService does
 *   (src/sdk-pattern.mjs): one Socket, a new connection loop every this many ms, none ever closed
 */
export const startReplica = async (options) => {
  const name = options.name ?? `replica-${randomUUID().slice(0, 8)}`
  const identity = options.identity ?? makeIdentity()
  const journal = options.journalFile ? undefined : (options.journal ?? makeJournal())

  /** @type {HandlerRun[]} */
  const runs = []
  /** @type {SocketStats} */
  const sockets = {
    constructed: 0,
    opened: 0,
    closed: 0,
    closeCodes: [],
    errors: [],
    statusCodes: [],
    selectedProtocols: [],
    remoteIds: [],
    firstFrameTags: [],
    frameTags: {},
    decodeErrors: [],
    firstAcks: 0,
    acks: [],
    ready: 0,
    writeFromRemoteCalls: 0,
    emptyWriteFromRemoteCalls: 0,
    connects: 0
  }
  /** @type {{ level: string, message: string, cause: string }[]} */
  const logs = []

  const waiters = new Set()
  let aborted // an Error once the replica can no longer make progress (see abort)
  const abort = (error) => {
    if (aborted) return
    aborted = error
    for (const w of waiters) {
      waiters.delete(w)
      clearTimeout(w.timer)
      w.reject(error)
    }
    options.onAbort?.(error)
  }
  let stopping = false
  const notify = () => {
    for (const w of waiters) {
      let ok = false
      try {
        ok = w.predicate()
      } catch (e) {
        waiters.delete(w)
        clearTimeout(w.timer)
        w.reject(e)
        continue
      }
      if (ok) {
        waiters.delete(w)
        clearTimeout(w.timer)
        w.resolve()
      }
    }
  }

  // --- the WebSocket constructor handed to Effect (ws, like @effect/platform-node on Node 20) --
  const webSocketConstructor = (url, protocols) => {
    sockets.constructed++
    const ws = new WebSocket(url, protocols, options.headers ? { headers: options.headers } : {})
    let first = true
    let acked = false
    let hello = false
    const socketNo = sockets.constructed
    if (TRACE) {
      const send = ws.send.bind(ws)
      ws.send = (data, ...rest) => {
        try {
          console.error(`${(performance.now() | 0)} [${name}#${socketNo}] -> ${summarize(EventLogRemote.decodeRequest(data))}`)
        } catch (e) {
          console.error(`${(performance.now() | 0)} [${name}#${socketNo}] -> <undecodable ${data?.byteLength}>`)
        }
        return send(data, ...rest)
      }
    }
    ws.on("upgrade", (res) => {
      sockets.statusCodes.push(res.statusCode)
      sockets.selectedProtocols.push(res.headers["sec-websocket-protocol"])
    })
    ws.on("open", () => {
      sockets.opened++
      notify()
    })
    ws.on("message", (data) => {
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)
      if (TRACE) {
        try {
          console.error(`${(performance.now() | 0)} [${name}#${socketNo}] <- ${summarize(EventLogRemote.decodeResponse(bytes))}`)
        } catch (e) {
          console.error(`${(performance.now() | 0)} [${name}#${socketNo}] <- <undecodable ${bytes.byteLength}>`)
        }
      }
      if (!first && bytes.byteLength > SMALL_FRAME) {
        sockets.frameTags.large = (sockets.frameTags.large ?? 0) + 1
        return
      }
      try {
        const msg = EventLogRemote.decodeResponse(bytes)
        sockets.frameTags[msg._tag] = (sockets.frameTags[msg._tag] ?? 0) + 1
        if (first) sockets.firstFrameTags.push(msg._tag)
        if (msg._tag === "Hello") {
          hello = true
          sockets.remoteIds.push(toHex(msg.remoteId))
        }
        if (msg._tag === "Ack") sockets.acks.push([...msg.sequenceNumbers])
        if (msg._tag === "Ack" && !acked) {
          acked = true
          sockets.firstAcks++
        }
      } catch (e) {
        sockets.decodeErrors.push(String(e?.message ?? e).slice(0, 300))
        if (first) sockets.firstFrameTags.push("<undecodable>")
      }
      first = false
      notify()
    })
    ws.on("error", (err) => {
      sockets.errors.push(String(err?.message ?? err))
      notify()
    })
    ws.on("close", (code, reason) => {
      if (TRACE) console.error(`${(performance.now() | 0)} [${name}#${socketNo}] closed ${code}`)
      sockets.closed++
      sockets.closeCodes.push(code)
      notify()
      // Effect's client never reconnects once a connection that said Hello has ended
      // (docs/effect-client-notes.md): fail fast instead of waiting for a timeout.
      if (!stopping && !options.allowDisconnect && hello) {
        abort(
          new Error(
            `${name}: the connection was closed (code ${code}${reason?.length ? `, reason "${reason}"` : ""}) ` +
              `while the replica was running; Effect's client does not reconnect after that; ${replica.describe()}`
          )
        )
      }
    })
    return ws
  }

  // --- handlers ---------------------------------------------------------------------------
  const handlersLayer = EventLog.group(NoteGroup, (handlers) =>
    handlers.handle("Note", ({ entry, payload }) =>
      Effect.flatMap(FiberRef.get(isLocalWrite), (local) =>
        Effect.sync(() => {
          runs.push({ id: payload.id, text: payload.text, n: payload.n, entryId: entry.idString, local })
          notify()
        }))))

  // --- logger -------------------------------------------------------------------------------
  const logger = Logger.make(({ cause, logLevel, message }) => {
    const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
    const causeText = Cause.isEmpty(cause) ? "" : Cause.pretty(cause)
    logs.push({ level: logLevel.label, message: text, cause: causeText })
    if (DEBUG) console.error(`[${name}] ${logLevel.label} ${text} ${causeText}`)
    notify()
  })

  // EventLog's runRemote uploads the journal right after Hello and only then subscribes to
  // journal.changes to upload later writes. That subscription is the moment a replica is
  // "ready": a write made before it stays local until the next write (see waitReady).
  const observe = (journal) =>
    EventJournal.EventJournal.of({
      ...journal,
      writeFromRemote: (o) =>
        Effect.suspend(() => {
          sockets.writeFromRemoteCalls++
          if (o.entries.length === 0) sockets.emptyWriteFromRemoteCalls++
          return journal.writeFromRemote(o)
        }),
      changes: Effect.tap(journal.changes, () =>
        Effect.sync(() => {
          sockets.ready++
          notify()
        }))
    })
  const journalLayer = options.journalFile
    ? Layer.effect(EventJournal.EventJournal, Effect.map(SqlEventJournal.make(), observe)).pipe(
      Layer.provide(SqliteClient.layer({ filename: options.journalFile })),
      Layer.orDie
    )
    : Layer.succeed(EventJournal.EventJournal, observe(journal))

  const eventLogLayer = EventLog.layer(NoteSchema).pipe(
    Layer.provide(handlersLayer),
    Layer.provide([
      journalLayer,
      Layer.succeed(EventLog.Identity, identity)
    ])
  )

  // Same as EventLogRemote.layerWebSocket(url, { disablePing }), but with the socket options
  // (protocols, closeCodeIsError) that layerWebSocket does not expose.
  const remoteLayer = Layer.scopedDiscard(
    options.sdkSyncIntervalMs !== undefined
      ? sdkSyncService({
        url: options.url,
        syncIntervalMs: options.sdkSyncIntervalMs,
        disablePing: options.disablePing,
        protocols: options.protocols,
        onConnect: () => {
          sockets.connects++
        }
      })
      : Effect.gen(function*() {
        const socket = yield* Socket.makeWebSocket(options.url, {
          protocols: options.protocols,
          closeCodeIsError: options.reconnectWorkaround ? () => true : options.closeCodeIsError
        })
        yield* EventLogRemote.fromSocket({ disablePing: options.disablePing }).pipe(
          options.reconnectWorkaround ? Effect.provideService(Socket.Socket, reconnectWorkaround(socket)) : fnIdentity,
          Effect.provideService(Socket.Socket, socket)
        )
      })
  ).pipe(
    Layer.provide(EventLogEncryption.layerSubtle),
    Layer.provide(Layer.succeed(Socket.WebSocketConstructor, webSocketConstructor))
  )

  const appLayer = remoteLayer.pipe(
    Layer.provideMerge(eventLogLayer),
    Layer.provide(Logger.replace(Logger.defaultLogger, logger)),
    Layer.provide(Logger.minimumLogLevel(LogLevel.Debug))
  )
  const runtime = ManagedRuntime.make(appLayer)
  await runtime.runPromise(Effect.void)

  let stopped = false
  const replica = {
    name,
    identity,
    journal,
    url: options.url,
    /** every handler run, in order */
    runs,
    sockets,
    logs,

    /** Handler runs caused by entries that arrived from the remote, in handling order. */
    get received() {
      return runs.filter((r) => !r.local)
    },

    /** Writes a Note through EventLog.write (the local handler runs as part of the write). */
    write: (note) =>
      runtime.runPromise(
        Effect.flatMap(EventLog.EventLog, (log) => log.write({ schema: NoteSchema, event: "Note", payload: note })).pipe(
          Effect.locally(isLocalWrite, true)
        )
      ),

    /** All entries of the journal. */
    entries: () => runtime.runPromise(Effect.flatMap(EventLog.EventLog, (log) => log.entries)),

    /**
     * Resolves when predicate() is true (checked now and after every observation).
     * Rejects after timeoutMs with a message naming `what` and the replica's state.
     */
    waitFor: (predicate, { timeoutMs = 15_000, what = "condition" } = {}) =>
      new Promise((resolve, reject) => {
        if (predicate()) return resolve()
        if (aborted) return reject(aborted)
        const w = { predicate, resolve, reject, timer: undefined }
        w.timer = setTimeout(() => {
          waiters.delete(w)
          reject(new Error(`${name}: timed out after ${timeoutMs} ms waiting for ${what}; ${replica.describe()}`))
        }, timeoutMs)
        waiters.add(w)
      }),

    /** Waits until at least `count` remote arrivals were handled. */
    waitForReceived: (count, opts = {}) =>
      replica.waitFor(() => replica.received.length >= count, {
        what: `${count} received event(s)`,
        ...opts
      }),

    /**
     * Waits until the replica completed `count` handshakes: Hello received, the initial upload
     * the client makes after Hello acknowledged, and EventLog subscribed to the journal to upload
     * later writes. A write made before that point stays local until the next write (an Effect
     * client race, see docs/effect-client-notes.md).
     */
    waitReady: (count = 1, opts = {}) =>
      replica.waitFor(() => sockets.ready >= count, { what: `ready socket #${count}`, ...opts }),

    /** Waits until the remote sent Hello on `count` sockets. */
    waitForHello: (count = 1, opts = {}) =>
      replica.waitFor(() => sockets.remoteIds.length >= count, { what: `Hello #${count}`, ...opts }),

    describe: () =>
      `runs=${runs.length} (received=${runs.filter((r) => !r.local).length}) sockets=${
        JSON.stringify({
          ...sockets,
          errors: sockets.errors.slice(-3),
          decodeErrors: sockets.decodeErrors.slice(-3),
          acks: sockets.acks.slice(-3).map((a) => (a.length > 8 ? `${a.length} sequences` : a))
        })
      } lastLogs=${JSON.stringify(logs.slice(-3).map((l) => `${l.level} ${l.message} ${l.cause.slice(0, 300)}`))}`,

    /** Disposes the runtime (closes the socket). Bounded: Effect's shutdown must not hang. */
    /** Rejects every current and future waitFor with `error` (used when another replica of the
     * same test lost its connection: the test cannot succeed any more). */
    abort,

    stop: async ({ timeoutMs = 5_000 } = {}) => {
      if (stopped) return
      stopped = true
      stopping = true
      let timer
      await Promise.race([
        runtime.dispose(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${name}: runtime.dispose() did not finish in ${timeoutMs} ms`)), timeoutMs)
        })
      ]).finally(() => clearTimeout(timer))
    }
  }
  return replica
}

/** Builds `count` distinct notes with ids prefixed by `prefix`. */
export const notes = (prefix, count, text = "x") =>
  Array.from({ length: count }, (_, i) => ({ id: `${prefix}-${i}`, text, n: i }))
