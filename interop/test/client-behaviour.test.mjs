// Misbehaviours of Effect's own client (effect 3.19.19, @effect/experimental 0.58.0), proven
// against a scripted in-process server (test/lib/scripted-server.mjs), independent of evsync.
// Each test asserts the misbehaviour as documented in docs/effect-client-notes.md: if one stops
// reproducing (e.g. after a version bump), the test fails and asks to update that document.
//
// Some of these observe that something does NOT happen within a window (a reconnect): the window
// is the observation, not synchronisation.
import assert from "node:assert/strict"
import { randomBytes, webcrypto } from "node:crypto"
import { createServer } from "node:net"
import { describe, it } from "node:test"
import * as Redacted from "effect/Redacted"
import { makeIdentity } from "../src/replica.mjs"
import { stillTrue, withReplicas } from "./lib/client-notes.mjs"
import { startScriptedServer } from "./lib/scripted-server.mjs"
import { sleep } from "./lib/harness.mjs"


const freePort = () =>
  new Promise((resolve) => {
    const srv = createServer()
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })

describe("Effect client behaviour (scripted server)", { concurrency: true }, () => {
  it("C1: after a connection that said Hello ends, the client never reconnects, busy-loops, and cannot be disposed", async () => {
    const cases = [
      { label: "server close 1000", end: (c) => c.close(1000) },
      { label: "server close 1001 (going away)", end: (c) => c.close(1001) },
      { label: "server close 1011 (internal error)", end: (c) => c.close(1011) },
      { label: "TCP connection dropped (1006)", end: (c) => c.terminate() }
    ]
    await Promise.all(cases.map(({ label, end }) =>
      withReplicas(async (replica) => {
        const server = await startScriptedServer()
        try {
          const a = await replica({ url: server.url(), name: label })
          await a.waitReady()
          end(server.connections[0])
          await a.waitFor(() => a.sockets.closed === 1, { what: "the close" })
          const spinBefore = a.sockets.emptyWriteFromRemoteCalls
          await sleep(3000) // a working client reconnects within ~0.1-1 s (its backoff starts at 100 ms)
          assert.equal(a.sockets.constructed, 1, stillTrue(`no reconnect after ${label}`))
          assert.equal(server.connections.length, 1)
          // EventLog keeps consuming the shut-down subscription mailbox in a tight loop
          const spins = a.sockets.emptyWriteFromRemoteCalls - spinBefore
          assert.ok(spins > 1000, stillTrue(`busy loop after ${label} (${spins} empty writeFromRemote calls in 3 s)`))
          await assert.rejects(a.stop({ timeoutMs: 1000 }), /did not finish/, stillTrue(`dispose hangs after ${label}`))
        } finally {
          await server.stop()
        }
      })
    ))
  })

  // C2 (keep-alive) is in client-ping.test.mjs

  it("C3: the documented workaround (reconnectWorkaround + closeCodeIsError) reconnects, but leaves the busy loop running", async () => {
    await withReplicas(async (replica) => {
      const server = await startScriptedServer()
      try {
        const identity = makeIdentity()
        const a = await replica({ url: server.url(), identity, name: "A", reconnectWorkaround: true, disablePing: true })
        const b = await replica({ url: server.url(), identity, name: "B", reconnectWorkaround: true, disablePing: true })
        await Promise.all([a.waitReady(), b.waitReady()])
        server.connections[0].close(1001)
        await a.write({ id: "while-down", text: "written while disconnected", n: 1 })
        await a.waitReady(2) // reconnected: new socket, Hello, upload acknowledged
        await b.waitFor(() => b.received.some((r) => r.id === "while-down"), { what: "while-down on B" })
        await b.write({ id: "after", text: "after the reconnect", n: 2 })
        await a.waitFor(() => a.received.some((r) => r.id === "after"), { what: "after on A" })
        assert.ok(a.sockets.constructed >= 2, `A reconnected: ${a.describe()}`)
        const spin = a.sockets.emptyWriteFromRemoteCalls
        await sleep(1000)
        assert.ok(a.sockets.emptyWriteFromRemoteCalls - spin > 1000, stillTrue("the old consumer keeps spinning after a reconnect"))
      } finally {
        await server.stop()
      }
    })
  })

  it("C4: a write made while the post-Hello upload is in flight stays local until the next write", async () => {
    await withReplicas(async (replica) => {
      let releaseAck
      const held = new Promise((resolve) => (releaseAck = resolve))
      const server = await startScriptedServer({
        // hold the Ack of the first WriteEntries (the upload EventLog makes right after Hello)
        onRequest: async (conn, req) => {
          if (req._tag === "WriteEntries" && req.id === 0 && conn.no === 1) await held
          return false
        }
      })
      try {
        const a = await replica({ url: server.url(), name: "A" })
        await server.waitFor(() => server.connections[0]?.requests.some((r) => r._tag === "WriteEntries"), { what: "the initial upload" })
        await a.write({ id: "in-window", text: "written while the initial upload awaits its Ack", n: 1 })
        releaseAck()
        await a.waitReady()
        const uploaded = () => [...server.logs.values()].flat().length
        await sleep(2000) // EventLog uploads within 500 ms of a write it noticed
        assert.equal(uploaded(), 0, stillTrue("a write made during the initial upload is not uploaded"))
        await a.write({ id: "next", text: "the next write", n: 2 })
        await server.waitFor(() => uploaded() === 2, { what: "both entries uploaded with the next write" })
      } finally {
        await server.stop()
      }
    })
  })

  it("C5: every entry of a WriteEntries batch is sealed with the same AES-GCM iv (nonce reuse)", async () => {
    await withReplicas(async (replica) => {
      const server = await startScriptedServer()
      try {
        const identity = makeIdentity()
        const a = await replica({ url: server.url(), identity, name: "A" })
        await a.waitReady()
        await Promise.all([1, 2, 3].map((n) => a.write({ id: `e${n}`, text: "same length text", n })))
        await server.waitFor(() => (server.logs.get(identity.publicKey)?.length ?? 0) === 3, { what: "3 stored entries" })
        const batch = server.connections[0].requests.find((r) => r._tag === "WriteEntries" && r.encryptedEntries.length === 3)
        assert.ok(batch, stillTrue("the three writes are uploaded as one batch"))
        const key = await webcrypto.subtle.importKey("raw", Redacted.value(identity.privateKey), "AES-GCM", false, ["decrypt"])
        for (const e of batch.encryptedEntries) {
          // each decrypts with the single batch iv: one (key, iv) pair for several plaintexts
          await webcrypto.subtle.decrypt({ name: "AES-GCM", iv: batch.iv, tagLength: 128 }, key, e.encryptedEntry)
        }
        const stored = server.logs.get(identity.publicKey)
        assert.equal(new Set(stored.map((e) => Buffer.from(e.iv).toString("hex"))).size, 1, stillTrue("one iv per batch"))
      } finally {
        await server.stop()
      }
    })
  })

  it("C8: frames are handled concurrently: a small Changes sent after a chunked one is usually handled first", async () => {
    // The server sends, in this order, a chunked Changes with a ~1.5 MB entry, then a Changes
    // with the small entry written after it.
    // Timing-dependent by nature: up to five rounds of four pairs, until one pair shows it.
    const server = await startScriptedServer({ splitChanges: true })
    try {
      const outcomes = []
      for (let round = 0; round < 5 && !outcomes.includes("small,large"); round++) {
        outcomes.push(...await Promise.all([0, 1, 2, 3].map((k) =>
          withReplicas(async (replica) => {
            const identity = makeIdentity()
            const url = server.url(`c8-${round}-${k}`)
            const a = await replica({ url, identity, name: `A${k}` })
            const b = await replica({ url, identity, name: `B${k}` })
            await Promise.all([a.waitReady(), b.waitReady()])
            await a.write({ id: "large", text: randomBytes(1_125_000).toString("base64"), n: 1 })
            await a.write({ id: "small", text: "written after the large one", n: 2 })
            await b.waitForReceived(2, { timeoutMs: 30_000 })
            return b.received.map((r) => r.id).join(",")
          })
        )))
      }
      assert.ok(outcomes.includes("small,large"), stillTrue(`Changes handled out of order (outcomes: ${outcomes})`))
    } finally {
      await server.stop()
    }
  })

  it("C6: an invalid URL (the WebSocket constructor throws) silently kills the remote: no retry, debug log only", async () => {
    await withReplicas(async (replica) => {
      const a = await replica({ url: "ws://[not-a-host/event-log/x", name: "A" })
      await a.waitFor(() => a.logs.some((l) => /unhandled error/.test(l.message)), { what: "the debug log" })
      await sleep(1000)
      assert.equal(a.sockets.constructed, 1, stillTrue("no retry after a throwing WebSocket constructor"))
      assert.ok(a.logs.every((l) => l.level === "DEBUG"), stillTrue("only debug logs"))
    })
  })

  it("C7: a server that is down when the app starts is retried until it is up (this part works)", async () => {
    await withReplicas(async (replica) => {
      const port = await freePort()
      const a = await replica({ url: `ws://127.0.0.1:${port}/event-log/t`, name: "A" })
      await a.waitFor(() => a.sockets.errors.length >= 2, { what: "two refused attempts" })
      const server = await startScriptedServer({}, { port })
      try {
        await a.waitReady(1, { timeoutMs: 10_000 })
        assert.equal(a.sockets.opened, 1)
      } finally {
        await server.stop()
      }
    })
  })
})
