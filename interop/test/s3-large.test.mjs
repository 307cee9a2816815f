// Scenario 3: an event with a ~1.5 MB payload round-trips. The client chunks its WriteEntries
// (512,000-byte parts); the server must reassemble them and may chunk its Changes.
import assert from "node:assert/strict"
import { createHash, randomBytes } from "node:crypto"
import { describe } from "node:test"
import { makeIdentity } from "../src/replica.mjs"
import { assertHealthy, barrier, receivedIds, scenario, tenant, withServerPerTarget } from "./lib/harness.mjs"

const sha = (s) => createHash("sha256").update(s).digest("hex")

describe("S3 large payload", () => {
  withServerPerTarget((target, server) => {
    scenario(target, "S3-large-payload", "a 1.5 MB event reaches a live replica and a late joiner intact", async ({ replica }) => {
      const url = server.url(tenant("s3"))
      const identity = makeIdentity()
      // incompressible text: 1.5 MB of base64 (the encrypted entry is ~1.5 MB, 3 chunks)
      const big = randomBytes(1_125_000).toString("base64")
      assert.equal(big.length, 1_500_000)
      const a = await replica({ url, identity, name: "A" })
      const b = await replica({ url, identity, name: "B" })
      await Promise.all([a.waitReady(), b.waitReady()])

      await a.write({ id: "big-1", text: big, n: 1 })
      await a.write({ id: "small-after", text: "after the big one", n: 2 })
      await b.waitForReceived(2, { timeoutMs: 30_000 })
      assert.deepEqual(receivedIds(b), ["big-1", "small-after"])
      assert.equal(b.received[0].text.length, big.length)
      assert.equal(sha(b.received[0].text), sha(big))

      // and the other way, B -> A, with the payload B received
      await b.write({ id: "big-2", text: b.received[0].text, n: 3 })
      await a.waitForReceived(1, { timeoutMs: 30_000 })
      assert.equal(sha(a.received[0].text), sha(big))

      // a late joiner receives both from the stored history
      const late = await replica({ url, identity, name: "Late" })
      await late.waitForReceived(3, { timeoutMs: 30_000 })
      await barrier(a, [late, b])
      assert.deepEqual(receivedIds(late), ["big-1", "small-after", "big-2"])
      assert.equal(sha(late.received[0].text), sha(big))
      assert.equal(sha(late.received[2].text), sha(big))
      assertHealthy(a)
      assertHealthy(b)
      assertHealthy(late)
    })

    scenario(target, "S3-order-after-large", "events written right after a large one are not handled before it", async ({ replica }) => {
      // One upload batch [large, small]: the receiver must run the handlers in log order. Effect's
      // client handles incoming frames concurrently (each frame's handler is forked, decryption
      // is asynchronous), so if a server sends the small entry in a Changes message of its own
      // after the chunked one, it is usually decrypted and handled first. Four trials at once.
      const trial = async (k) => {
        const url = server.url(tenant(`s3o${k}`))
        const identity = makeIdentity()
        const a = await replica({ url, identity, name: `A${k}` })
        const b = await replica({ url, identity, name: `B${k}` })
        await Promise.all([a.waitReady(), b.waitReady()])
        await a.write({ id: `large-${k}`, text: randomBytes(1_125_000).toString("base64"), n: 1 })
        await a.write({ id: `small-${k}`, text: "right after the large one", n: 2 })
        await b.waitForReceived(2, { timeoutMs: 30_000 })
        assert.deepEqual(receivedIds(b), [`large-${k}`, `small-${k}`], `B${k} handled the entries out of log order`)
      }
      const results = await Promise.allSettled([0, 1, 2, 3].map(trial))
      const failures = results.filter((r) => r.status === "rejected").map((r) => r.reason)
      if (failures.length > 0) {
        throw new Error(`${failures.length}/4 trials failed; first: ${failures[0]?.stack ?? failures[0]}`)
      }
    })
  })
})
