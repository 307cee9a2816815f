// A tiny in-process EventLogRemote server whose behaviour tests can script, to observe how
// Effect's CLIENT reacts to server behaviour (closes, Pong ids, ...). It speaks the protocol with
// Effect's own codec (encodeResponse / decodeRequest) and keeps one in-memory log per publicKey,
// so an unmodified replica syncs through it normally until a hook changes something.
import * as EventLogRemote from "@effect/experimental/EventLogRemote"
import { randomUUID } from "node:crypto"
import { WebSocketServer } from "ws"
import { makeWaiters } from "../../src/waiters.mjs"

const { Ack, Changes, ChunkedMessage, decodeRequest, encodeResponse, Hello, Pong } = EventLogRemote

/**
 * @param {{
 *   onRequest?: (conn: Connection, request: any) => boolean | void | Promise<boolean | void>,
 *   splitChanges?: boolean,
 * }} [hooks] onRequest runs before the default handling; return true to skip the default.
 *   splitChanges: broadcast each new entry in a Changes message of its own.
 */
export const startScriptedServer = async (hooks = {}, { port: listenPort = 0 } = {}) => {
  const remoteId = new Uint8Array(16)
  remoteId.set(Buffer.from(randomUUID().replace(/-/g, ""), "hex"))
  /** @type {Map<string, { sequence: number, iv: Uint8Array, entryId: Uint8Array, encryptedEntry: Uint8Array }[]>} */
  const logs = new Map()
  const connections = []
  const waiters = makeWaiters()
  const notify = () => waiters.notify()


  const wss = new WebSocketServer({ host: "127.0.0.1", port: listenPort })
  await new Promise((resolve) => wss.once("listening", resolve))
  const port = wss.address().port

  wss.on("connection", (ws) => {
    const conn = {
      no: connections.length + 1,
      ws,
      requests: [],
      subscriptions: new Set(),
      closed: false,
      send: (msg) => ws.send(encodeResponse(msg)),
      close: (code, reason) => ws.close(code, reason),
      /** drops the TCP connection without a close frame (the client sees 1006) */
      terminate: () => ws.terminate()
    }
    connections.push(conn)
    const chunks = new Map()
    ws.on("close", () => {
      conn.closed = true
      notify()
    })
    ws.on("message", async (data) => {
      let request = decodeRequest(new Uint8Array(data))
      if (request._tag === "ChunkedMessage") {
        const joined = ChunkedMessage.join(chunks, request)
        if (!joined) return
        request = decodeRequest(joined)
      }
      conn.requests.push(request)
      notify()
      if (hooks.onRequest && (await hooks.onRequest(conn, request))) return
      handle(conn, request)
    })
    conn.send(new Hello({ remoteId }))
    notify()
  })

  let chunkId = 0
  /** a Changes message, chunked (512,000-byte parts) when its encoding is larger */
  const sendChanges = (conn, publicKey, entries) => {
    const data = encodeResponse(new Changes({ publicKey, entries }))
    if (data.byteLength <= 512_000) return conn.ws.send(data)
    for (const part of ChunkedMessage.split(chunkId++, data)) conn.ws.send(encodeResponse(part))
  }

  const handle = (conn, request) => {
    switch (request._tag) {
      case "Ping":
        return conn.send(new Pong({ id: request.id }))
      case "WriteEntries": {
        const log = logs.get(request.publicKey) ?? []
        logs.set(request.publicKey, log)
        const stored = []
        const fresh = []
        for (const e of request.encryptedEntries) {
          const existing = log.find((x) => Buffer.compare(x.entryId, e.entryId) === 0)
          if (existing) {
            stored.push(existing)
            continue
          }
          const entry = { sequence: log.length + 1, iv: request.iv, entryId: e.entryId, encryptedEntry: e.encryptedEntry }
          log.push(entry)
          stored.push(entry)
          fresh.push(entry)
        }
        conn.send(new Ack({ id: request.id, sequenceNumbers: stored.map((e) => e.sequence) }))
        for (const other of connections) {
          if (other !== conn && !other.closed && other.subscriptions.has(request.publicKey) && fresh.length > 0) {
            const messages = hooks.splitChanges ? fresh.map((e) => [e]) : [fresh]
            for (const entries of messages) sendChanges(other, request.publicKey, entries)
          }
        }
        return
      }
      case "RequestChanges": {
        conn.subscriptions.add(request.publicKey)
        const log = logs.get(request.publicKey) ?? []
        const backlog = log.filter((e) => e.sequence >= request.startSequence)
        if (backlog.length > 0) sendChanges(conn, request.publicKey, backlog)
        return
      }
      case "StopChanges":
        conn.subscriptions.delete(request.publicKey)
        return
    }
  }

  return {
    port,
    url: (tenant = "scripted") => `ws://127.0.0.1:${port}/event-log/${tenant}`,
    connections,
    logs,
    waitFor: (predicate, { timeoutMs = 15_000, what = "condition" } = {}) =>
      waiters.waitFor(predicate, {
        timeoutMs,
        what,
        onTimeout: () => new Error(`scripted server: timed out after ${timeoutMs} ms waiting for ${what}`)
      }),
    stop: () =>
      new Promise((resolve) => {
        for (const c of connections) c.ws.terminate()
        wss.close(() => resolve())
      })
  }
}
