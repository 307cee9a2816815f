// Effect client keep-alive misbehaviour (see client-behaviour.test.mjs for the rest), in a file of
// its own: it takes ~25 s and so overlaps with the rest of the suite. Asserted as documented in
// docs/effect-client-notes.md; if it stops reproducing, the test asks to update that document.
import assert from "node:assert/strict"
import { describe, it } from "node:test"
import * as EventLogRemote from "@effect/experimental/EventLogRemote"
import { stillTrue, withReplicas } from "./lib/client-notes.mjs"
import { startScriptedServer } from "./lib/scripted-server.mjs"
import { sleep } from "./lib/harness.mjs"


describe("Effect client behaviour: keep-alive (scripted server)", { concurrency: true }, () => {
  it("C2: a missing Pong (after ~20 s) or a Pong with another id (after ~10 s) drops the connection for good", { timeout: 60_000 }, async () => {
    await Promise.all(["no Pong", "Pong id mismatch"].map((mode) =>
      withReplicas(async (replica) => {
        const server = await startScriptedServer({
          onRequest: (conn, req) => {
            if (req._tag !== "Ping") return false
            if (mode === "Pong id mismatch") conn.send(new EventLogRemote.Pong({ id: req.id + 1000 }))
            return true
          }
        })
        try {
          const a = await replica({ url: server.url(), name: mode })
          await a.waitReady()
          const started = performance.now()
          await a.waitFor(() => a.sockets.closed === 1, { what: `the client closing on ${mode}`, timeoutMs: 30_000 })
          const after = Math.round((performance.now() - started) / 1000)
          assert.equal(a.sockets.closeCodes[0], 1000, "the client closes its socket itself")
          if (mode === "Pong id mismatch") {
            assert.ok(a.logs.some((l) => /Pong id mismatch/.test(l.cause)), "logged (at debug level only)")
          }
          await sleep(3000)
          assert.equal(a.sockets.constructed, 1, stillTrue(`no reconnect after ${mode} (closed after ~${after} s)`))
        } finally {
          await server.stop()
        }
      })
    ))
  })

})
