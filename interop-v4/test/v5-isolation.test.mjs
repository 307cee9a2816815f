// V5: isolation. Stores are keyed by (publicKey, storeId): another identity on the same tenant,
// and another storeId of the same identity, receive none of A's events.
import assert from "node:assert/strict"
import { describe } from "node:test"
import { makeIdentity, notes } from "../src/replica.mjs"
import { assertHealthy, barrier, changesChunks, receivedIds, scenario, tenant, withServerPerTarget } from "./lib/harness.mjs"

describe("V5 isolation", () => {
  withServerPerTarget((target, server) => {
    scenario(target, "V5-isolation", "another identity and another storeId of the same identity receive nothing", async ({ replica }) => {
      const url = server.url(tenant("v5"))
      const [identity, other] = await Promise.all([makeIdentity(), makeIdentity()])
      const a = await replica({ url, identity, name: "A" })
      const b = await replica({ url, identity, name: "B" })
      // listening before A writes, and later joiners after: neither live nor history may leak
      const stranger = await replica({ url, identity: other, name: "Stranger" })
      const otherStore = await replica({ url, identity, storeId: "other", name: "OtherStore" })
      await Promise.all([a, b, stranger, otherStore].map((r) => r.waitAuthenticated()))

      const written = notes("secret", 20)
      for (const note of written) await a.write(note)
      await b.waitForReceived(20)
      const strangerLate = await replica({ url, identity: other, name: "StrangerLate" })
      const otherStoreLate = await replica({ url, identity, storeId: "other", name: "OtherStoreLate" })

      // barriers in the stranger's store and in the other store: whatever those stores held
      // was delivered by then
      await barrier(stranger, [strangerLate])
      await barrier(otherStore, [otherStoreLate])
      await barrier(strangerLate, [stranger])
      await barrier(otherStoreLate, [otherStore])
      for (const r of [stranger, strangerLate, otherStore, otherStoreLate]) {
        assert.deepEqual(receivedIds(r), [], `${r.name} received nothing of A's`)
        assert.equal(changesChunks(r), 1, `${r.name}: one Changes chunk (the other's barrier); ${r.describe()}`)
      }
      assert.equal(otherStore.stats.changesRequests[0].storeId, "other")
      assert.ok(otherStore.received.every((r) => r.storeId === "other"))
      assert.deepEqual(receivedIds(b), written.map((n) => n.id), "B (same identity and store) got everything")
      for (const r of [a, b, stranger, strangerLate, otherStore, otherStoreLate]) assertHealthy(r)
    })
  })
})
