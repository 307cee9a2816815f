// Scenario 5: a replica of another identity in the same tenant never receives, and never fails
// on, the first identity's events; two tenants using the same identity are isolated.
import assert from "node:assert/strict"
import { describe } from "node:test"
import { makeIdentity, notes } from "../src/replica.mjs"
import { assertHealthy, barrier, receivedIds, scenario, tenant, withServerPerTarget } from "./lib/harness.mjs"

describe("S5 isolation", () => {
  withServerPerTarget((target, server) => {
    scenario(target, "S5-other-identity", "another identity in the same tenant sees none of the first identity's events", async ({ replica }) => {
      const url = server.url(tenant("s5i"))
      const x = makeIdentity()
      const y = makeIdentity()
      const x1 = await replica({ url, identity: x, name: "X1" })
      const x2 = await replica({ url, identity: x, name: "X2" })
      const y1 = await replica({ url, identity: y, name: "Y1" })
      const y2 = await replica({ url, identity: y, name: "Y2" })
      await Promise.all([x1, x2, y1, y2].map((r) => r.waitReady()))

      const xs = notes("x", 20)
      for (const note of xs) await x1.write(note)
      await x2.waitForReceived(20) // X's events are on the server and delivered to X
      await y2.write({ id: "y-1", text: "from Y", n: 1 })
      await y1.waitFor(() => receivedIds(y1).includes("y-1"), { what: "y-1 on Y1" })
      // both logs drained in sequence order past everything written so far
      await barrier(x1, [x2])
      await barrier(y2, [y1])

      assert.deepEqual(receivedIds(y1), ["y-1"], "Y1 received only Y's events")
      assert.deepEqual(receivedIds(x2), xs.map((n) => n.id), "X2 received only X's events")
      assert.deepEqual(receivedIds(x1), [])
      for (const r of [x1, x2, y1, y2]) assertHealthy(r) // nobody failed (e.g. decrypting X with Y's key)
    })

    scenario(target, "S5-tenants", "two tenants used by the same identity are isolated", async ({ replica }) => {
      const identity = makeIdentity()
      const urlA = server.url(tenant("s5a"))
      const urlB = server.url(tenant("s5b"))
      const a1 = await replica({ url: urlA, identity, name: "A1" })
      const a2 = await replica({ url: urlA, identity, name: "A2" })
      const b1 = await replica({ url: urlB, identity, name: "B1" })
      const b2 = await replica({ url: urlB, identity, name: "B2" })
      await Promise.all([a1, a2, b1, b2].map((r) => r.waitReady()))

      for (const note of notes("in-a", 10)) await a1.write(note)
      await a2.waitForReceived(10)
      await b2.write({ id: "in-b", text: "tenant b", n: 1 })
      await b1.waitFor(() => receivedIds(b1).includes("in-b"), { what: "in-b on B1" })
      await barrier(a1, [a2])
      await barrier(b2, [b1])

      assert.deepEqual(receivedIds(b1), ["in-b"], "tenant B saw nothing of tenant A")
      assert.deepEqual(receivedIds(a2), notes("in-a", 10).map((n) => n.id), "tenant A saw nothing of tenant B")
      // a late joiner of tenant B gets tenant B's history only
      const lateB = await replica({ url: urlB, identity, name: "LateB" })
      await lateB.waitForReceived(2) // in-b + the barrier
      await barrier(b2, [lateB])
      assert.deepEqual(receivedIds(lateB), ["in-b"])
      // each tenant is its own store with its own remoteId
      assert.notEqual(a1.sockets.remoteIds[0], b1.sockets.remoteIds[0], "tenants have distinct remoteIds")
      for (const r of [a1, a2, b1, b2, lateB]) assertHealthy(r)
    })
  })
})
