// V3: large payloads. A ~1.5 MB event round-trips (the client uploads it in WriteChunked pieces of
// 512,000 bytes; the server sends it back as Chunked Changes values), live and from history. And
// a backlog over 16 MiB (12 x 1.5 MB, more than the client's SchemaBinary frame limit) syncs to a
// late joiner: a server must split the backlog into several Chunk frames (PROTOCOL-V4.md §2.5).
import assert from "node:assert/strict"
import { createHash, randomBytes } from "node:crypto"
import { describe } from "node:test"
import { makeIdentity } from "../src/replica.mjs"
import { assertHealthy, barrier, receivedIds, scenario, tenant, withServerPerTarget } from "./lib/harness.mjs"

const sha = (s) => createHash("sha256").update(s).digest("hex")
// incompressible text: 1.5 MB of base64
const bigText = () => randomBytes(1_125_000).toString("base64")

/** waitFor predicate wrapper: fail at once when the replica's sync broke instead of timing out. */
const failOnSyncError = (r, predicate) => () => {
  const broken = r.logs.find((l) => /^(Error|Fatal)/i.test(l.level)) ?? r.stats.decodeErrors[0]
  if (broken) {
    const text = typeof broken === "string" ? broken : `${broken.message} ${broken.cause}`
    throw new Error(
      `${r.name}: sync failed (largest server message ${r.stats.largestReceived} bytes): ${text.slice(0, 1500)}`
    )
  }
  return predicate()
}

describe("V3 large payloads", () => {
  withServerPerTarget((target, server) => {
    scenario(target, "V3-large-payload", "a 1.5 MB event reaches a live replica and a late joiner intact", async ({ replica }) => {
      const url = server.url(tenant("v3"))
      const identity = await makeIdentity()
      const big = bigText()
      assert.equal(big.length, 1_500_000)
      const a = await replica({ url, identity, name: "A" })
      const b = await replica({ url, identity, name: "B" })
      await Promise.all([a.waitAuthenticated(), b.waitAuthenticated()])

      await a.write({ id: "big-1", text: big, n: 1 })
      await a.write({ id: "small-after", text: "after the big one", n: 2 })
      await b.waitFor(failOnSyncError(b, () => b.received.length >= 2), { what: "big-1 + small-after", timeoutMs: 30_000 })
      assert.deepEqual(receivedIds(b), ["big-1", "small-after"])
      assert.equal(sha(b.received[0].text), sha(big))
      assert.ok((a.stats.sent["Request:EventLog.WriteChunked"] ?? 0) >= 3, `A uploaded in WriteChunked pieces; ${a.describe()}`)
      assert.ok(b.stats.changesValues.Chunked >= 3, `B received Chunked values; ${b.describe()}`)

      // and the other way, B -> A, with the payload B received
      await b.write({ id: "big-2", text: b.received[0].text, n: 3 })
      await a.waitFor(failOnSyncError(a, () => a.received.length >= 1), { what: "big-2", timeoutMs: 30_000 })
      assert.equal(sha(a.received[0].text), sha(big))

      // a late joiner receives all three from the stored history
      const late = await replica({ url, identity, name: "Late" })
      await late.waitFor(failOnSyncError(late, () => late.received.length >= 3), { what: "3 events", timeoutMs: 30_000 })
      await barrier(a, [late, b])
      assert.deepEqual(receivedIds(late), ["big-1", "small-after", "big-2"])
      assert.equal(sha(late.received[0].text), sha(big))
      assert.equal(sha(late.received[2].text), sha(big))
      assertHealthy(a)
      assertHealthy(b)
      assertHealthy(late)
    })

    scenario(target, "V3-backlog-over-16MiB", "a backlog of 12 x 1.5 MB (over 16 MiB) syncs to a late joiner", async ({ replica, t }) => {
      const url = server.url(tenant("v3b"))
      const identity = await makeIdentity()
      const COUNT = 12
      const a = await replica({ url, identity, name: "A" })
      const b = await replica({ url, identity, name: "B" })
      await Promise.all([a.waitAuthenticated(), b.waitAuthenticated()])
      // One at a time, each delivered live before the next: every live frame stays small; only
      // the backlog a late joiner asks for is over 16 MiB.
      const hashes = []
      for (let i = 0; i < COUNT; i++) {
        const text = bigText()
        hashes.push(sha(text))
        await a.write({ id: `big-${i}`, text, n: i })
        await b.waitFor(failOnSyncError(b, () => b.received.length >= i + 1), { what: `big-${i} on B`, timeoutMs: 30_000 })
      }
      await a.stop()
      assert.equal(b.received.length, COUNT)

      const late = await replica({ url, identity, name: "Late" })
      await late.waitFor(failOnSyncError(late, () => late.received.length >= COUNT), {
        what: `${COUNT} received event(s)`,
        timeoutMs: 60_000
      })
      t.diagnostic(`largest server message to Late: ${late.stats.largestReceived} bytes`)
      await barrier(b, [late])
      assert.deepEqual(receivedIds(late), Array.from({ length: COUNT }, (_, i) => `big-${i}`))
      assert.deepEqual(late.received.filter((r) => r.id.startsWith("big-")).map((r) => sha(r.text)), hashes)
      assert.ok(late.stats.largestReceived < 16 * 1024 * 1024, `every frame under 16 MiB; ${late.describe()}`)
      assertHealthy(b)
      assertHealthy(late)
    }, { timeout: 180_000 })
  })
})
