// V7: keep-alive. The v4 client pings every 5 s and drops a connection on which no frame arrived
// for 5-10 s; an idle connection must stay up (Pongs arrive), with no reconnect and no re-Hello.
// This one waits ~32 s of wall time on purpose: staying up over time IS the behaviour under test.
import assert from "node:assert/strict"
import { describe } from "node:test"
import { makeIdentity } from "../src/replica.mjs"
import { assertHealthy, receivedIds, scenario, sleep, tenant, withServerPerTarget } from "./lib/harness.mjs"

const HOLD_MS = 32_000

// both targets hold at once: the 32 s hold is the wall time of the whole file, not per target
describe("V7 keep-alive", { concurrency: true }, () => {
  withServerPerTarget((target, server) => {
    scenario(target, "V7-keepalive", `idle connections stay up for ${HOLD_MS / 1000} s without a reconnect`, async ({ replica }) => {
      const url = server.url(tenant("v7"))
      const identity = await makeIdentity()
      const a = await replica({ url, identity, name: "A" })
      const b = await replica({ url, identity, name: "B" })
      await Promise.all([a.waitAuthenticated(), b.waitAuthenticated()])

      await sleep(HOLD_MS) // the behaviour under test is "nothing happens for 32 s"

      for (const r of [a, b]) {
        // 5 s interval: 6 pings in 32 s; at least 5 answered
        assert.ok((r.stats.received.Pong ?? 0) >= 5, `${r.name}: at least 5 Pongs in ${HOLD_MS} ms: ${r.describe()}`)
        // every Ping answered (the last one may be in flight)
        assert.ok(r.stats.sent.Ping - r.stats.received.Pong <= 1, `${r.name}: unanswered Pings: ${r.describe()}`)
      }
      // still the first socket each, and it still carries events both ways
      await a.write({ id: "after-hold", text: "still connected", n: 1 })
      await b.waitFor(() => receivedIds(b).includes("after-hold"), { what: "after-hold" })
      await b.write({ id: "from-b", text: "idle socket still works", n: 2 })
      await a.waitFor(() => receivedIds(a).includes("from-b"), { what: "from-b on A" })
      for (const r of [a, b]) assertHealthy(r) // one socket, never closed, one Hello, one Authenticate
    }, { timeout: 90_000 })
  })
})
