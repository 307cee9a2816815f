// V4: a burst of 2,000 events written at once on A arrives on B in A's order, exactly once, and
// nothing comes back to A (on the wire: A's Changes stream carries none of its own writes).
import assert from "node:assert/strict"
import { describe } from "node:test"
import { makeIdentity, notes } from "../src/replica.mjs"
import { assertHealthy, barrier, changesChunks, receivedIds, scenario, tenant, withServerPerTarget } from "./lib/harness.mjs"

const COUNT = 2000

describe("V4 burst", () => {
  withServerPerTarget((target, server) => {
    scenario(target, "V4-burst", `${COUNT} events written at once arrive in order, exactly once, without echo`, async ({ replica, t }) => {
      const url = server.url(tenant("v4"))
      const identity = await makeIdentity()
      const a = await replica({ url, identity, name: "A" })
      const b = await replica({ url, identity, name: "B" })
      await Promise.all([a.waitAuthenticated(), b.waitAuthenticated()])

      const burst = notes("burst", COUNT, "some text of an ordinary event")
      const started = performance.now()
      // as fast as the app can: all writes issued at once (EventLog serialises them)
      await Promise.all(burst.map((note) => a.write(note)))
      const written = performance.now()
      await b.waitForReceived(COUNT, { timeoutMs: 60_000 })
      const arrived = performance.now()
      // every entry of A acknowledged (the acks move A's cursor), none of them echoed to A
      await a.waitFor(() => a.stats.acks >= COUNT, { what: `${COUNT} WriteAcks`, timeoutMs: 30_000 })
      assert.equal(a.stats.acks, COUNT, "one WriteAck per entry")
      assert.equal(changesChunks(a), 0, `no Changes chunk to the writer; ${a.describe()}`)
      await barrier(a, [b])
      await barrier(b, [a])

      const ids = receivedIds(b)
      assert.equal(ids.length, COUNT, "exactly once")
      assert.equal(new Set(ids).size, COUNT, "no duplicates")
      const localOrder = a.runs.filter((r) => r.local && r.id.startsWith("burst-")).map((r) => r.id)
      assert.deepEqual(ids, localOrder, "B handled the burst in A's order")
      assert.deepEqual(receivedIds(a), [], "A got none of its own events back")
      assert.equal(changesChunks(a), 1, "A's Changes: only B's barrier")

      // and a late joiner catches up on the whole burst from the stored log
      const late = await replica({ url, identity, name: "Late" })
      await late.waitForReceived(COUNT + 2, { timeoutMs: 60_000 }) // the burst + 2 barriers
      await barrier(b, [late])
      assert.deepEqual(receivedIds(late), localOrder, "the late joiner got the burst in order, once")
      assertHealthy(a)
      assertHealthy(b)
      assertHealthy(late)
      t.diagnostic(`burst written in ${Math.round(written - started)} ms, delivered ${Math.round(arrived - written)} ms later; ` +
        `A sent ${a.stats.sent["Request:EventLog.WriteSingle"] ?? 0} WriteSingle, B got ${changesChunks(b)} Changes chunks`)
    })
  })
})
