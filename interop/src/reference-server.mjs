#!/usr/bin/env node
// Effect's own EventLog sync server, used as the reference target of the interop suite.
//
//   node src/reference-server.mjs --data <dir>     SqlEventLogServer over @effect/sql-sqlite-node,
//                                                  one sqlite file per tenant: <dir>/<tenant>.sqlite
//   node src/reference-server.mjs --memory         EventLogServer.layerStorageMemory, one per tenant
//   [--port <n>] (default 0 = ephemeral; the server always binds 127.0.0.1)
//
// Routes: /event-log/:tenant (WebSocket upgrade handled by EventLogServer.makeHandlerHttp);
// /healthz answers {"status":"ok","connections":<open WebSocket connections>} like evsync's.
// There is no auth: Effect's server has none.
// On startup it prints exactly one line on stdout:
//   reference listening on 127.0.0.1:<port>
import * as EventLogServer from "@effect/experimental/EventLogServer"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as SqlEventLogServer from "@effect/sql/SqlEventLogServer"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { mkdirSync } from "node:fs"
import { createServer } from "node:http"
import { join } from "node:path"
import { parseArgs } from "node:util"

const { values: args } = parseArgs({
  options: {
    data: { type: "string" },
    memory: { type: "boolean", default: false },
    port: { type: "string", default: "0" },
    debug: { type: "boolean", default: false },
    trace: { type: "boolean", default: false }
  }
})
if (!args.memory && !args.data) {
  console.error("usage: reference-server.mjs (--data <dir> | --memory) [--port <n>]")
  process.exit(2)
}
if (args.data) mkdirSync(args.data, { recursive: true })

const TENANT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/

// Open upgraded (WebSocket) connections, for GET /healthz.
let openUpgrades = 0
const createCountingServer = (...args) => {
  const server = createServer(...args)
  server.on("upgrade", (_request, socket) => {
    openUpgrades++
    socket.once("close", () => openUpgrades--)
  })
  return server
}

// --trace: log every Storage call and every batch a subscription hands to the socket handler
const trace = (tenant, layer) =>
  Layer.effect(
    EventLogServer.Storage,
    Effect.map(EventLogServer.Storage, (storage) => ({
      ...storage,
      write: (publicKey, entries) =>
        storage.write(publicKey, entries).pipe(
          Effect.tap((stored) =>
            console.error(`[${tenant}] write ${publicKey.slice(0, 8)} n=${entries.length} -> seq=[${stored.map((e) => e.sequence)}]`)
          )
        ),
      changes: (publicKey, startSequence) =>
        Effect.map(storage.changes(publicKey, startSequence), (mailbox) => {
          const id = Math.random().toString(36).slice(2, 6)
          console.error(`[${tenant}] changes ${publicKey.slice(0, 8)} start=${startSequence} -> sub ${id}`)
          return new Proxy(mailbox, {
            get(target, prop) {
              if (prop === "takeAll") {
                return Effect.tap(target.takeAll, ([chunk, done]) =>
                  console.error(`[${tenant}] sub ${id} takeAll seq=[${[...chunk].map((e) => e.sequence)}] done=${done}`))
              }
              const value = Reflect.get(target, prop, target)
              return typeof value === "function" ? value.bind(target) : value
            }
          })
        })
    }))
  ).pipe(Layer.provide(layer))

/** The storage layer of one tenant. */
const storageLayer = (tenant) => args.trace ? trace(tenant, baseStorageLayer(tenant)) : baseStorageLayer(tenant)

const baseStorageLayer = (tenant) =>
  args.memory
    ? EventLogServer.layerStorageMemory
    : SqlEventLogServer.layerStorageSubtle().pipe(
      Layer.provide(SqliteClient.layer({ filename: join(args.data, `${tenant}.sqlite`) }))
    )

const main = Effect.gen(function*() {
  const serverScope = yield* Effect.scope
  // tenant -> Promise of its HTTP handler (built once, lives as long as the server)
  const handlers = new Map()
  const handlerFor = (tenant) => {
    let handler = handlers.get(tenant)
    if (!handler) {
      handler = Layer.buildWithScope(storageLayer(tenant), serverScope).pipe(
        Effect.flatMap((context) => Effect.provide(EventLogServer.makeHandlerHttp, context)),
        Effect.orDie,
        Effect.cached,
        Effect.runSync
      )
      handlers.set(tenant, handler)
    }
    return handler
  }

  const router = HttpRouter.empty.pipe(
    // like evsync's /healthz: the number of open WebSocket connections (counted on the node server)
    HttpRouter.get("/healthz", Effect.sync(() => HttpServerResponse.unsafeJson({ status: "ok", connections: openUpgrades }))),
    HttpRouter.get(
      "/event-log/:tenant",
      Effect.gen(function*() {
        const { tenant } = yield* HttpRouter.params
        if (!tenant || !TENANT.test(tenant)) {
          return HttpServerResponse.text("Invalid tenant format.", { status: 400 })
        }
        const handler = yield* handlerFor(tenant)
        return yield* handler
      })
    )
  )

  yield* HttpServer.serveEffect(router)
  const server = yield* HttpServer.HttpServer
  const address = server.address
  if (address._tag !== "TcpAddress") return yield* Effect.die("unexpected server address")
  process.stdout.write(`reference listening on 127.0.0.1:${address.port}\n`)
  return yield* Effect.never
}).pipe(
  Effect.scoped,
  Effect.provide(NodeHttpServer.layer(createCountingServer, { host: "127.0.0.1", port: Number(args.port) })),
  Logger.withMinimumLogLevel(args.debug ? LogLevel.Debug : LogLevel.Warning)
)

NodeRuntime.runMain(main)
