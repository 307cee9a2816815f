// Scenario 7: a connection with ping enabled stays up for at least 30 s with no reconnect (and so
// does an idle one with disablePing). This one waits ~35 s of wall time on purpose: staying up
// over time IS the behaviour under test. Both targets run at the same time.
import assert from "node:assert/strict"
import { describe } from "node:test"
import { makeIdentity } from "../src/replica.mjs"
import { assertHealthy, receivedIds, scenario, sleep, tenant, withServerPerTarget } from "./lib/harness.mjs"

const HOLD_MS = 35_000

describe("S7 keep-alive", { concurrency: true }, () => {
  withServerPerTarget((target, server) => {
    scenario(target, "S7-keepalive", `connections stay up for ${HOLD_MS / 1000} s without a reconnect`, async ({ replica }) => {
      const url = server.url(tenant("s7"))
      const identity = makeIdentity()
      const a = await replica({ url, identity, name: "A" }) // pings every 10 s
      const b = await replica({ url, identity, name: "B" })
      const quiet = await replica({ url, identity, name: "Quiet", disablePing: true }) // sends nothing while idle
      await Promise.all([a, b, quiet].map((r) => r.waitReady()))

      await sleep(HOLD_MS) // the behaviour under test is "nothing happens for 35 s"

      for (const r of [a, b]) {
        assert.ok((r.sockets.frameTags.Pong ?? 0) >= 3, `${r.name}: at least 3 Pongs in ${HOLD_MS} ms: ${r.describe()}`)
        assert.equal(r.logs.filter((l) => /Ping timeout|Pong id mismatch/.test(l.message + l.cause)).length, 0)
      }
      assert.equal(quiet.sockets.frameTags.Pong ?? 0, 0)
      // still the first socket each, and it still carries events both ways
      await a.write({ id: "after-hold", text: "still connected", n: 1 })
      await Promise.all([b, quiet].map((r) => r.waitFor(() => receivedIds(r).includes("after-hold"), { what: "after-hold" })))
      await quiet.write({ id: "from-quiet", text: "idle socket still works", n: 2 })
      await a.waitFor(() => receivedIds(a).includes("from-quiet"), { what: "from-quiet on A" })
      for (const r of [a, b, quiet]) assertHealthy(r) // exactly one socket constructed, never closed
    }, { timeout: 90_000 })
  })
})
