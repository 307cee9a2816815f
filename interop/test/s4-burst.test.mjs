// Scenario 4: a burst of 2,000 events written quickly on one replica arrives on the other in
// order, exactly once.
import assert from "node:assert/strict"
import { describe } from "node:test"
import { makeIdentity, makeJournal, notes } from "../src/replica.mjs"
import { assertHealthy, barrier, receivedIds, scenario, tenant, withServerPerTarget } from "./lib/harness.mjs"

const COUNT = 2000

describe("S4 burst", () => {
  withServerPerTarget((target, server) => {
    scenario(target, "S4-burst", `${COUNT} events written quickly arrive in order, exactly once`, async ({ replica, t }) => {
      const url = server.url(tenant("s4"))
      const identity = makeIdentity()
      const a = await replica({ url, identity, name: "A" })
      const b = await replica({ url, identity, name: "B" })
      await Promise.all([a.waitReady(), b.waitReady()])

      const burst = notes("burst", COUNT, "some text of an ordinary event")
      const started = performance.now()
      // as fast as the app can: all writes issued at once (EventLog serialises them)
      await Promise.all(burst.map((note) => a.write(note)))
      const written = performance.now()
      await b.waitForReceived(COUNT, { timeoutMs: 60_000 })
      const arrived = performance.now()
      await barrier(a, [b])
      await barrier(b, [a])

      const ids = receivedIds(b)
      assert.equal(ids.length, COUNT, "exactly once")
      assert.equal(new Set(ids).size, COUNT, "no duplicates")
      // In the order A's journal holds them (the order its handler ran them), which is the
      // order A uploaded them in.
      const localOrder = a.runs.filter((r) => r.local && r.id.startsWith("burst-")).map((r) => r.id)
      assert.deepEqual(ids, localOrder, "B handled the burst in A's order")
      assert.deepEqual(receivedIds(a), [], "A got none of its own events back")

      // and a late joiner catches up on the whole burst from the stored log
      const late = await replica({ url, identity, name: "Late" })
      await late.waitForReceived(COUNT + 2, { timeoutMs: 60_000 }) // the burst + 2 barriers
      await barrier(b, [late])
      assert.deepEqual(receivedIds(late), localOrder, "the late joiner got the burst in order, once")
      assertHealthy(a)
      assertHealthy(b)
      assertHealthy(late)
      t.diagnostic(`burst written in ${Math.round(written - started)} ms, delivered ${Math.round(arrived - written)} ms later`)
    })

    scenario(target, "S4-concurrent-writers", "two replicas writing at once: every replica sees one and the same order", async ({ replica }) => {
      const url = server.url(tenant("s4c"))
      const identity = makeIdentity()
      const [a, b, c] = await Promise.all(["A", "B", "C"].map((name) => replica({ url, identity, name })))
      await Promise.all([a, b, c].map((r) => r.waitReady()))
      const fromA = notes("a", 301)
      const fromB = notes("b", 299)
      await Promise.all([
        (async () => { for (const n of fromA) await a.write(n) })(),
        (async () => { for (const n of fromB) await b.write(n) })()
      ])
      await c.waitForReceived(600, { timeoutMs: 60_000 })
      await barrier(a, [b, c])
      const late = await replica({ url, identity, name: "Late" })
      await late.waitForReceived(601, { timeoutMs: 60_000 })
      await barrier(b, [a, c, late])
      const order = receivedIds(c)
      assert.equal(new Set(order).size, 600, "C: each event once")
      assert.deepEqual(receivedIds(late), order, "the late joiner sees C's order")
      // each writer's events keep that writer's order, and A and B agree on each other's
      assert.deepEqual(order.filter((id) => id.startsWith("a-")), fromA.map((n) => n.id))
      assert.deepEqual(order.filter((id) => id.startsWith("b-")), fromB.map((n) => n.id))
      assert.deepEqual(receivedIds(a), order.filter((id) => id.startsWith("b-")))
      assert.deepEqual(receivedIds(b), order.filter((id) => id.startsWith("a-")))
      for (const r of [a, b, c, late]) assertHealthy(r)
    })

    scenario(target, "S4-batch-of-200", "an upload of exactly 200 entries (offline writes) is stored and acknowledged", async ({ replica }) => {
      // Offline: a replica whose server does not exist writes 200 events into its journal.
      // Then the app connects: EventLog uploads all 200 in one WriteEntries.
      const identity = makeIdentity()
      const journal = makeJournal()
      const offline = await replica({ url: "ws://127.0.0.1:9/event-log/nowhere", identity, journal, name: "Offline" })
      const pending = notes("offline", 200)
      for (const note of pending) await offline.write(note)
      await offline.stop()

      const url = server.url(tenant("s4b"))
      const a = await replica({ url, identity, journal, name: "A" })
      const b = await replica({ url, identity, name: "B" })
      await b.waitForReceived(200)
      await a.waitReady() // A's upload was acknowledged
      await barrier(a, [b])
      await barrier(b, [a])
      assert.deepEqual(receivedIds(b), pending.map((n) => n.id))
      assertHealthy(a)
      assertHealthy(b)
    })
  })
})
