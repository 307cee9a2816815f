#!/usr/bin/env node
// Effect's own v4 EventLog sync server (effect 4.1.0, effect/eventlog), the reference target of
// the v4 interop suite: EventLogServerEncrypted + its memory storage, Effect RPC over a WebSocket
// (RpcServer.layerProtocolWebsocket) with RpcSerialization.layerSchemaBinary, on NodeHttpServer.
// It is the server of ../shared/effect-v4/PROTOCOL-V4.md §5, only with a tenant path.
//
//   node src/reference-server.mjs [--port <n>] [--debug]
//     --port 0 (default) = a free port; the server always binds 127.0.0.1
//
// Routes: GET /v4/event-log/:tenant (encrypted clients) and GET /v4/unencrypted/event-log/:tenant
// (EventLogServerUnencrypted, for EventLogRemote.layerUnencrypted clients: the suite's Note
// schema, a handler that does nothing, every identity authorized, one store "default"); the
// WebSocket upgrades of Effect's RPC servers; the router
// accepts the parameter, but the RPC handler ignores it: all tenants share ONE memory storage,
// whose stores are keyed by (publicKey, storeId), so tests keep apart by fresh identities).
// GET /healthz answers {"status":"ok","connections":<open upgraded sockets>} like evsync's.
// There is no persistence (the only v4 SQL storage needs a v4 SqlClient; the only sqlite one,
// @effect/sql-sqlite-node 4.0.0-beta.102, does not load with effect 4.1.0: it imports
// effect/unstable/... modules that 4.1.0 no longer has): a restart loses every store and makes a
// new remoteId.
//
// On startup it prints exactly one line on stdout:
//   reference-v4 listening on 127.0.0.1:<port>
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as EventLog from "effect/eventlog/EventLog"
import * as EventLogServerEncrypted from "effect/eventlog/EventLogServerEncrypted"
import * as EventLogServerUnencrypted from "effect/eventlog/EventLogServerUnencrypted"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Layer from "effect/Layer"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import * as RpcServer from "effect/rpc/RpcServer"
import { createServer } from "node:http"
import { parseArgs } from "node:util"
import { NoteGroup, NoteSchema } from "./replica.mjs"

const { values: args } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    debug: { type: "boolean", default: false },
    trace: { type: "boolean", default: false }
  }
})

export const PATH = "/v4/event-log/:tenant"
export const UNENCRYPTED_PATH = "/v4/unencrypted/event-log/:tenant"

// Open upgraded (WebSocket) connections, for GET /healthz; and the listen line once bound.
let openUpgrades = 0
const createCountingServer = () => {
  const server = createServer()
  server.on("upgrade", (request, socket) => {
    openUpgrades++
    if (args.debug) console.error(`upgrade ${request.url} protocols=${request.headers["sec-websocket-protocol"] ?? "-"}`)
    socket.once("close", () => {
      openUpgrades--
      if (args.debug) console.error(`closed ${request.url}`)
    })
  })
  server.once("listening", () => {
    const address = server.address()
    process.stdout.write(`reference-v4 listening on 127.0.0.1:${address.port}\n`)
  })
  return server
}

const Health = HttpRouter.add(
  "GET",
  "/healthz",
  Effect.sync(() => HttpServerResponse.jsonUnsafe({ status: "ok", connections: openUpgrades }))
)

const EventLogRpc = EventLogServerEncrypted.layer.pipe(
  Layer.provide(RpcServer.layerProtocolWebsocket({ path: PATH })),
  Layer.provide(EventLogServerEncrypted.layerStorageMemory),
  Layer.provide(RpcSerialization.layerSchemaBinary())
)

// The unencrypted server runs the app's handlers itself; this one's do nothing (the suite's
// replicas observe delivery), and it authorizes everyone, as evsync's relay does.
const NoteHandlers = EventLog.group(NoteGroup, (handlers) => handlers.handle("Note", () => Effect.void))
const AllowAll = Layer.succeed(EventLogServerUnencrypted.EventLogServerAuthorization, {
  authorizeWrite: () => Effect.void,
  authorizeRead: () => Effect.void,
  authorizeIdentity: () => Effect.void
})
const PlainRpc = EventLogServerUnencrypted.layer(NoteSchema, NoteHandlers).pipe(
  Layer.provide(RpcServer.layerProtocolWebsocket({ path: UNENCRYPTED_PATH })),
  Layer.provide(EventLogServerUnencrypted.layerStorageMemory),
  Layer.provide(EventLogServerUnencrypted.layerStoreMappingStatic({ storeId: "default" })),
  Layer.provide(AllowAll),
  Layer.provide(RpcSerialization.layerSchemaBinary())
)

HttpRouter.serve(Layer.mergeAll(EventLogRpc, PlainRpc, Health), { disableLogger: !args.debug, disableListenLog: true }).pipe(
  Layer.provide(NodeHttpServer.layer(createCountingServer, { host: "127.0.0.1", port: Number(args.port) })),
  Layer.launch,
  NodeRuntime.runMain
)
