#!/usr/bin/env node
// Effect's own v4 EventLog sync server (effect 4.1.0, effect/eventlog), the reference target of
// the v4 interop suite: EventLogServerEncrypted + its memory storage, Effect RPC over a WebSocket
// (RpcServer.layerProtocolWebsocket) with RpcSerialization.layerSchemaBinary, on NodeHttpServer.
// It is the server of ../shared/effect-v4/PROTOCOL-V4.md §5, only with a tenant path.
//
//   node src/reference-server.mjs [--port <n>] [--debug]
//     --port 0 (default) = a free port; the server always binds 127.0.0.1
//
// Route: GET /v4/event-log/:tenant (the WebSocket upgrade of Effect's RPC server; the router
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
import * as EventLogServerEncrypted from "effect/eventlog/EventLogServerEncrypted"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Layer from "effect/Layer"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import * as RpcServer from "effect/rpc/RpcServer"
import { createServer } from "node:http"
import { parseArgs } from "node:util"

const { values: args } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    debug: { type: "boolean", default: false },
    trace: { type: "boolean", default: false }
  }
})

export const PATH = "/v4/event-log/:tenant"

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

HttpRouter.serve(Layer.mergeAll(EventLogRpc, Health), { disableLogger: !args.debug, disableListenLog: true }).pipe(
  Layer.provide(NodeHttpServer.layer(createCountingServer, { host: "127.0.0.1", port: Number(args.port) })),
  Layer.launch,
  NodeRuntime.runMain
)
