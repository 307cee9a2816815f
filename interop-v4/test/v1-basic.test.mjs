// V1: basic sync. Two replicas of one identity: a write on A runs A's handler locally and B's
// handler remotely, and the other way round; nothing comes back to the writer.
import assert from "node:assert/strict"
import { describe } from "node:test"
import { makeIdentity } from "../src/replica.mjs"
import { assertHealthy, barrier, changesChunks, receivedIds, scenario, tenant, withServerPerTarget } from "./lib/harness.mjs"

describe("V1 basic sync", () => {
  withServerPerTarget((target, server) => {
    scenario(target, "V1-basic", "a write on A reaches B and a write on B reaches A, once each", async ({ replica }) => {
      const url = server.url(tenant("v1"))
      const identity = await makeIdentity()
      const a = await replica({ url, identity, name: "A" })
      const b = await replica({ url, identity, name: "B" })
      await Promise.all([a.waitAuthenticated(), b.waitAuthenticated()])

      await a.write({ id: "from-a", text: "written on A", n: 1 })
      await b.waitForReceived(1)
      assert.deepEqual(b.received.map(({ id, text, n, storeId }) => ({ id, text, n, storeId })), [
        { id: "from-a", text: "written on A", n: 1, storeId: "default" }
      ])
      assert.deepEqual(a.runs.map((r) => [r.id, r.local]), [["from-a", true]])

      await b.write({ id: "from-b", text: "written on B", n: 2 })
      await a.waitForReceived(1)
      assert.deepEqual(receivedIds(a), ["from-b"])
      await barrier(a, [b])
      await barrier(b, [a])
      assert.deepEqual(receivedIds(a), ["from-b"], "A: B's note once, none of its own")
      assert.deepEqual(receivedIds(b), ["from-a"], "B: A's note once, none of its own")
      // on the wire: each replica's Changes stream carried only the other's writes (no echo)
      assert.equal(changesChunks(a), 2, `A: Changes chunks (from-b + B's barrier); ${a.describe()}`)
      assert.equal(changesChunks(b), 2, `B: Changes chunks (from-a + A's barrier); ${b.describe()}`)
      assert.equal(a.remoteId, b.remoteId, "one remoteId")
      assert.equal(a.stats.changesRequests[0].startSequence, 0, "a fresh journal asks from sequence 0")
      assertHealthy(a)
      assertHealthy(b)
    })
  })
})
