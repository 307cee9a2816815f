// A real, unmodified Effect v4 EventLog replica (effect 4.1.0, effect/eventlog), instrumented for
// the v4 interop suite.
//
// Everything that syncs is Effect's own code: EventLog + EventJournal.makeMemory +
// EventLogRemote.layerEncrypted over RpcClient.layerProtocolSocket + RpcSerialization
// .layerSchemaBinary + Socket.layerWebSocket(url, {protocols, headers}) + the `ws` constructor of
// @effect/platform-node's NodeWS (PROTOCOL-V4.md §6). The instrumentation only observes:
//   - the EventLog handler records every run (local writes and remote arrivals separately),
//   - NodeWS's WebSocket constructor is wrapped to count sockets (constructed / opened / closed,
//     close codes, handshake errors and status codes, the subprotocol the server selected) and
//     to decode every frame both ways with Effect's own SchemaBinary RPC parser (a separate
//     parser instance, no frame limit): RPC envelope tags, request tags, Hello remoteIds,
//     Authenticate / write results, EventLogProtocolError codes, Changes start sequences,
//   - a logger records Effect's own log lines (Debug and up) so tests can assert on them.
// Waiting is event-driven: every observation calls notify(), which settles waiters whose
// predicate became true. Timeouts exist only as failure bounds.
//
// Unlike the v3 client, the v4 client reconnects by itself: RpcClient re-opens the socket
// (500 ms x 1.5, at most 5 s apart) and EventLog re-subscribes; the remote says Hello and
// authenticates again after the server's first Forbidden (PROTOCOL-V4.md §2.3).
import * as NodeWS from "@effect/platform-node/NodeWS"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as EventGroup from "effect/eventlog/EventGroup"
import * as EventJournal from "effect/eventlog/EventJournal"
import * as EventLog from "effect/eventlog/EventLog"
import * as EventLogEncryption from "effect/eventlog/EventLogEncryption"
import * as EventLogMessage from "effect/eventlog/EventLogMessage"
import * as EventLogRemote from "effect/eventlog/EventLogRemote"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as References from "effect/References"
import * as Rpc from "effect/rpc/Rpc"
import * as RpcClient from "effect/rpc/RpcClient"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import * as Schema from "effect/Schema"
import * as Socket from "effect/socket/Socket"
import { randomUUID } from "node:crypto"

const DEBUG = /^(1|true)$/i.test(process.env.INTEROP_DEBUG ?? "")
const TRACE = /^(1|true)$/i.test(process.env.INTEROP_TRACE ?? "")

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

/** A fresh identity in Effect's string form (base64url JSON {publicKey, privateKey}). */
export const makeIdentity = () =>
  Effect.runPromise(EventLog.makeIdentity.pipe(Effect.provide(EventLogEncryption.layerSubtle))).then(
    EventLog.encodeIdentityString
  )

/** The publicKey (a UUID string) of an identity string. */
export const publicKeyOf = (identity) => EventLog.decodeIdentityString(identity).publicKey

/**
 * A memory EventJournal instance. Pass it to several successive replicas to model an app that
 * keeps its journal while its EventLog and remote are rebuilt (restart, reconnect).
 */
export const makeJournal = () => Effect.runSync(EventJournal.makeMemory)

// ---------------------------------------------------------------------------------------------
// Frame decoding (observation only)
// ---------------------------------------------------------------------------------------------

const serialization = Effect.runSync(
  Effect.gen(function*() {
    return yield* RpcSerialization.RpcSerialization
  }).pipe(Effect.provide(RpcSerialization.layerSchemaBinary({ maxFrameSize: "unbounded" })))
)
const rpcs = EventLogMessage.EventLogRemoteRpcs.merge(EventLogMessage.EventLogCompactionRpcs)
const decoders = new Map()
const decoderFor = (kind, tag) => {
  const key = `${kind}:${tag}`
  let decode = decoders.get(key)
  if (!decode) {
    const rpc = rpcs.requests.get(tag)
    if (!rpc) return undefined
    const schema = kind === "exit" ? Rpc.exitSchema(rpc) : rpc.payloadSchema
    decode = Schema.decodeUnknownSync(serialization.codecFor(schema))
    decoders.set(key, decode)
  }
  return decode
}
const decodeChangesValues = Schema.decodeUnknownSync(
  serialization.codecFor(Schema.NonEmptyArray(EventLogMessage.ChangesRpc.successSchema.success))
)
const toHex = (bytes) => Buffer.from(bytes).toString("hex")
const asBytes = (data) =>
  Array.isArray(data)
    ? new Uint8Array(Buffer.concat(data))
    : data instanceof ArrayBuffer
    ? new Uint8Array(data)
    : typeof data === "string"
    ? new TextEncoder().encode(data)
    : new Uint8Array(data.buffer, data.byteOffset, data.byteLength)

/** Request tags whose payload the tap decodes (small ones; writes carry the entries). */
const DECODED_REQUESTS = new Set(["EventLog.Hello", "EventLog.Authenticate", "EventLog.Changes"])

// ---------------------------------------------------------------------------------------------
// Replica
// ---------------------------------------------------------------------------------------------

/** Set (to true) around local writes, so that the handler can tell them from remote arrivals. */
const LocalWrite = Context.Reference("evsync-interop-v4/LocalWrite", { defaultValue: () => false })

/**
 * @typedef {{ id: string, text: string, n: number }} Note
 * @typedef {{ id: string, text: string, n: number, entryId: string, storeId: string, local: boolean }} HandlerRun
 */

/**
 * Starts a replica. It resolves once the EventLog runs; the remote (Hello, Authenticate,
 * Changes) connects in the background: use waitAuthenticated() to wait for it.
 * @param {object} options
 * @param {string} options.url  ws://host:port/v4/event-log/<tenant>
 * @param {string} [options.name]
 * @param {string} [options.identity]  an identity string (makeIdentity()); default: a fresh one
 * @param {string} [options.storeId]   default "default" (EventLog.CurrentStoreId)
 * @param {"encrypted"|"unencrypted"} [options.mode]  EventLogRemote.layerEncrypted (default) or
 *   EventLogRemote.layerUnencrypted (plaintext entries, for Effect's unencrypted servers)
 * @param {object} [options.journal]   an EventJournal service (makeJournal()); default: a fresh one
 * @param {string|string[]} [options.protocols]  WebSocket subprotocols, e.g. "sync-auth.<token>"
 * @param {Record<string,string>} [options.headers]  extra handshake headers (Authorization)
 * @param {string|number} [options.pingInterval]  RpcClient.layerProtocolSocket (default 5 s)
 * @param {string|number} [options.pingTimeout]
 * @param {(error: Error) => void} [options.onAbort]
 * @param {boolean} [options.expectRemoteFailure]  a failed remote (e.g. a refused upgrade) is
 *   recorded in `remoteFailure` instead of aborting the test's waits
 */
export const startReplica = async (options) => {
  const name = options.name ?? `replica-${randomUUID().slice(0, 8)}`
  const identityString = options.identity ?? (await makeIdentity())
  const identity = EventLog.decodeIdentityString(identityString)
  const storeId = options.storeId ?? "default"
  const journal = options.journal ?? makeJournal()

  /** @type {HandlerRun[]} */
  const runs = []
  const stats = {
    constructed: 0,
    opened: 0,
    closed: 0,
    closeCodes: [],
    errors: [], // socket errors (e.g. "Unexpected server response: 401")
    statusCodes: [], // HTTP status of each upgrade response (101, or the refusal's)
    selectedProtocols: [], // Sec-WebSocket-Protocol chosen by the server, per socket
    remoteIds: [], // hex remoteId of every successful Hello
    firstSequences: [], // HelloResponse.firstSequence of every successful Hello (undefined = 0)
    hellos: 0, // successful Hello exits
    authenticated: 0, // successful Authenticate exits
    changesRequests: [], // { socket, storeId, startSequence } of every Changes request sent
    protocolErrors: {}, // EventLogProtocolError code -> count, from Exit failures
    protocolErrorMessages: [], // "<rpc tag> <code>: <message>" of every EventLogProtocolError
    otherFailures: [], // non-EventLogProtocolError Exit failures and Defects (text)
    sent: {}, // envelope tag (Request: "Request:<rpc tag>") -> count
    received: {}, // envelope tag (Exit/Chunk: "Exit:<rpc tag>") -> count
    changesValues: { Single: 0, Chunked: 0 }, // values of received Changes Chunks
    acks: 0, // WriteAcks received in write Exits
    largestReceived: 0, // bytes of the largest WebSocket message from the server
    decodeErrors: [] // frames the observer could not decode
  }
  /** @type {{ level: string, message: string, cause: string }[]} */
  const logs = []

  const waiters = new Set()
  let aborted
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
  const count = (map, key, n = 1) => {
    map[key] = (map[key] ?? 0) + n
  }

  // --- the observed WebSocket: NodeWS's constructor (the `ws` package), wrapped ---------------
  const observe = (ws) => {
    const socketNo = ++stats.constructed
    const out = serialization.makeUnsafe()
    const inp = serialization.makeUnsafe()
    const tags = new Map() // requestId -> rpc tag, for this connection
    const log = (line) => TRACE && console.error(`${performance.now() | 0} [${name}#${socketNo}] ${line}`)

    const onOutgoing = (data) => {
      let messages
      try {
        messages = out.decode(asBytes(data))
      } catch (e) {
        stats.decodeErrors.push(`-> ${String(e?.message ?? e).slice(0, 300)}`)
        return
      }
      for (const m of messages) {
        if (m._tag !== "Request") {
          count(stats.sent, m._tag)
          log(`-> ${m._tag}${m.requestId !== undefined ? ` ${m.requestId}` : ""}`)
          continue
        }
        tags.set(String(m.id), m.tag)
        count(stats.sent, `Request:${m.tag}`)
        let detail = ""
        if (DECODED_REQUESTS.has(m.tag)) {
          try {
            const payload = decoderFor("payload", m.tag)(m.payload)
            if (m.tag === "EventLog.Changes") {
              stats.changesRequests.push({ socket: socketNo, storeId: payload.storeId, startSequence: payload.startSequence })
              detail = ` start=${payload.startSequence} store=${payload.storeId}`
            }
          } catch (e) {
            stats.decodeErrors.push(`-> ${m.tag} payload: ${String(e?.message ?? e).slice(0, 300)}`)
          }
        }
        log(`-> Request ${m.id} ${m.tag}${detail}`)
      }
    }

    const onIncoming = (data) => {
      const bytes = asBytes(data)
      stats.largestReceived = Math.max(stats.largestReceived, bytes.byteLength)
      let messages
      try {
        messages = inp.decode(bytes)
      } catch (e) {
        stats.decodeErrors.push(`<- ${String(e?.message ?? e).slice(0, 300)}`)
        notify()
        return
      }
      for (const m of messages) {
        const tag = m.requestId !== undefined ? tags.get(String(m.requestId)) : undefined
        count(stats.received, tag ? `${m._tag}:${tag}` : m._tag)
        let detail = ""
        if (m._tag === "Exit" && tag) {
          try {
            const exit = decoderFor("exit", tag)(m.exit)
            if (Exit.isSuccess(exit)) {
              if (tag === "EventLog.Hello") {
                stats.hellos++
                stats.remoteIds.push(toHex(exit.value.remoteId))
                stats.firstSequences.push(exit.value.firstSequence)
                detail = ` remoteId=${toHex(exit.value.remoteId)} firstSequence=${exit.value.firstSequence} compaction=${exit.value.compaction}`
              } else if (tag === "EventLog.Authenticate") {
                stats.authenticated++
              } else if (tag === "EventLog.WriteSingle" || tag === "EventLog.WriteChunked") {
                stats.acks += exit.value.length
                detail = ` acks=${exit.value.length}`
              }
            } else {
              for (const reason of exit.cause.reasons) {
                if (reason._tag === "Fail" && EventLogMessage.EventLogProtocolError.is(reason.error)) {
                  count(stats.protocolErrors, reason.error.code)
                  stats.protocolErrorMessages.push(`${tag} ${reason.error.code}: ${reason.error.message}`)
                  detail += ` ${reason.error.code}: ${reason.error.message}`
                } else if (reason._tag !== "Interrupt") {
                  const text = reason._tag === "Fail" ? String(reason.error) : String(reason.defect)
                  stats.otherFailures.push(`${tag} ${reason._tag}: ${text.slice(0, 300)}`)
                  detail += ` ${reason._tag}`
                } else {
                  detail += " Interrupt"
                }
              }
            }
          } catch (e) {
            stats.decodeErrors.push(`<- Exit ${tag}: ${String(e?.message ?? e).slice(0, 300)}`)
          }
          tags.delete(String(m.requestId))
        } else if (m._tag === "Chunk" && tag === "EventLog.Changes") {
          try {
            const values = decodeChangesValues(m.values)
            for (const v of values) count(stats.changesValues, v._tag)
            detail = ` values=${values.length}`
          } catch (e) {
            stats.decodeErrors.push(`<- Chunk ${tag}: ${String(e?.message ?? e).slice(0, 300)}`)
          }
        } else if (m._tag === "Defect") {
          stats.otherFailures.push(`Defect: ${JSON.stringify(m.defect).slice(0, 300)}`)
        }
        log(`<- ${m._tag}${m.requestId !== undefined ? ` ${m.requestId}` : ""}${tag ? ` ${tag}` : ""}${detail} (${bytes.byteLength} B)`)
      }
      notify()
    }

    const send = ws.send.bind(ws)
    ws.send = (data, ...rest) => {
      onOutgoing(data)
      return send(data, ...rest)
    }
    ws.on("upgrade", (res) => {
      stats.statusCodes.push(res.statusCode)
      stats.selectedProtocols.push(res.headers["sec-websocket-protocol"])
    })
    ws.on("open", () => {
      stats.opened++
      log("open")
      notify()
    })
    ws.on("message", onIncoming)
    ws.on("error", (err) => {
      stats.errors.push(String(err?.message ?? err))
      // a refused upgrade: `ws` says "Unexpected server response: <status>" (listening to its
      // "unexpected-response" event instead would take the refusal out of `ws`'s hands)
      const refused = /^Unexpected server response: (\d+)/.exec(String(err?.message ?? ""))
      if (refused) stats.statusCodes.push(Number(refused[1]))
      notify()
    })
    ws.on("close", (code) => {
      stats.closed++
      stats.closeCodes.push(code)
      log(`closed ${code}`)
      notify()
    })
    return ws
  }
  const ObservedWebSocketConstructor = Layer.effect(Socket.WebSocketConstructor)(
    Effect.gen(function*() {
      const make = yield* Socket.WebSocketConstructor
      return (url, opts) => observe(make(url, opts))
    })
  ).pipe(Layer.provide(NodeWS.layerWebSocketConstructor))

  // --- handlers ---------------------------------------------------------------------------
  const handlersLayer = EventLog.group(NoteGroup, (handlers) =>
    handlers.handle("Note", ({ entry, payload, storeId }) =>
      Effect.gen(function*() {
        const local = yield* LocalWrite
        runs.push({ id: payload.id, text: payload.text, n: payload.n, entryId: entry.idString, storeId, local })
        notify()
      })))

  // --- logger -------------------------------------------------------------------------------
  const logger = Logger.make(({ cause, logLevel, message }) => {
    const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
    const causeText = cause.reasons.length === 0 ? "" : Cause.pretty(cause)
    logs.push({ level: logLevel, message: text, cause: causeText })
    if (DEBUG) console.error(`[${name}] ${logLevel} ${text} ${causeText}`)
    notify()
  })
  const loggingLayer = Layer.mergeAll(
    Logger.layer([logger]),
    Layer.succeed(References.MinimumLogLevel)("Debug")
  )

  // --- the app: EventLog (runtime) + the remote (a fiber of its own, so that stop() can bound it)
  const eventLogLayer = EventLog.layer(NoteSchema, handlersLayer).pipe(
    Layer.provide([
      Layer.succeed(EventJournal.EventJournal)(journal),
      Layer.succeed(EventLog.Identity)(identity),
      Layer.succeed(EventLog.CurrentStoreId)(EventLogMessage.StoreId.make(storeId))
    ]),
    Layer.provideMerge(loggingLayer)
  )
  const mode = options.mode ?? "encrypted"
  if (mode !== "encrypted" && mode !== "unencrypted") throw new Error(`unknown mode ${mode}`)
  const remoteLayer = (mode === "encrypted" ? EventLogRemote.layerEncrypted : EventLogRemote.layerUnencrypted).pipe(
    Layer.provide(RpcClient.layerProtocolSocket({ pingInterval: options.pingInterval, pingTimeout: options.pingTimeout })),
    Layer.provide(RpcSerialization.layerSchemaBinary()),
    Layer.provide(Socket.layerWebSocket(options.url, { protocols: options.protocols, headers: options.headers })),
    Layer.provide(ObservedWebSocketConstructor)
  )

  const runtime = ManagedRuntime.make(eventLogLayer)
  await runtime.runPromise(Effect.void)
  let remoteFailure
  const remoteFiber = runtime.runFork(Layer.launch(remoteLayer))
  remoteFiber.addObserver((exit) => {
    if (stopping || Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause)) return
    remoteFailure = Cause.pretty(exit.cause)
    if (options.expectRemoteFailure) return notify()
    abort(new Error(`${name}: the EventLog remote failed: ${remoteFailure}; ${replica.describe()}`))
  })

  let stopping = false
  let stopped = false
  const replica = {
    name,
    /** the identity, in Effect's string form */
    identity: identityString,
    publicKey: identity.publicKey,
    storeId,
    mode,
    journal,
    url: options.url,
    /** every handler run, in order */
    runs,
    stats,
    logs,

    /** Handler runs caused by entries that arrived from the remote, in handling order. */
    get received() {
      return runs.filter((r) => !r.local)
    },

    /** Writes a Note through EventLog.write (the local handler runs as part of the write). */
    write: (note) =>
      runtime.runPromise(
        Effect.gen(function*() {
          const log = yield* EventLog.EventLog
          return yield* log.write({ schema: NoteSchema, event: "Note", payload: note })
        }).pipe(
          Effect.provideService(LocalWrite, true)
        )
      ),

    /** All entries of the journal. */
    entries: () =>
      runtime.runPromise(Effect.gen(function*() {
        const log = yield* EventLog.EventLog
        return yield* log.entries
      })),

    /**
     * Resolves when predicate() is true (checked now and after every observation).
     * Rejects after timeoutMs with a message naming `what` and the replica's state, or at once
     * when predicate() throws.
     */
    waitFor: (predicate, { timeoutMs = 15_000, what = "condition" } = {}) =>
      new Promise((resolve, reject) => {
        try {
          if (predicate()) return resolve()
        } catch (e) {
          return reject(e)
        }
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
      replica.waitFor(() => replica.received.length >= count, { what: `${count} received event(s)`, ...opts }),

    /** Waits until the server accepted `count` Authenticate requests (one per connection). */
    waitAuthenticated: (count = 1, opts = {}) =>
      replica.waitFor(() => stats.authenticated >= count, { what: `authentication #${count}`, ...opts }),

    /** Effect's Cause (pretty) when the remote failed for good, else undefined. */
    get remoteFailure() {
      return remoteFailure
    },

    /** The remoteId (hex) of the first Hello. */
    get remoteId() {
      return stats.remoteIds[0]
    },

    describe: () =>
      `runs=${runs.length} (received=${runs.filter((r) => !r.local).length}) stats=${
        JSON.stringify({
          ...stats,
          errors: stats.errors.slice(-3),
          decodeErrors: stats.decodeErrors.slice(-3),
          otherFailures: stats.otherFailures.slice(-3),
          changesRequests: stats.changesRequests.slice(-4)
        })
      }${remoteFailure ? ` remoteFailure=${remoteFailure.slice(0, 500)}` : ""} lastLogs=${
        JSON.stringify(logs.slice(-3).map((l) => `${l.level} ${l.message} ${l.cause.slice(0, 400)}`))
      }`,

    /** Rejects every current and future waitFor with `error`. */
    abort,

    /** Stops the remote (closes the socket) and the EventLog. Bounded: shutdown must not hang. */
    stop: async ({ timeoutMs = 5_000 } = {}) => {
      if (stopped) return
      stopped = true
      stopping = true
      let timer
      await Promise.race([
        (async () => {
          await runtime.runPromise(Fiber.interrupt(remoteFiber))
          await runtime.dispose()
        })(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${name}: stop did not finish in ${timeoutMs} ms`)), timeoutMs)
        })
      ]).finally(() => clearTimeout(timer))
    }
  }
  return replica
}

/** Builds `count` distinct notes with ids prefixed by `prefix`. */
export const notes = (prefix, count, text = "x") =>
  Array.from({ length: count }, (_, i) => ({ id: `${prefix}-${i}`, text, n: i }))
