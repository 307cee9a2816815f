// V2: history and cursor. A late joiner receives the whole history, in order, once; a replica
// rebuilt on the same (memory) journal asks from its cursor and receives only what it missed.
import assert from "node:assert/strict"
import { describe } from "node:test"
import { makeIdentity, makeJournal, notes } from "../src/replica.mjs"
import { assertHealthy, barrier, receivedIds, scenario, tenant, withServerPerTarget } from "./lib/harness.mjs"

describe("V2 history and cursor", () => {
  withServerPerTarget((target, server) => {
    scenario(target, "V2-late-joiner", "a late joiner receives the whole history, in order, once", async ({ replica }) => {
      const url = server.url(tenant("v2l"))
      const identity = await makeIdentity()
      const a = await replica({ url, identity, name: "A" })
      const b = await replica({ url, identity, name: "B" })
      await Promise.all([a.waitAuthenticated(), b.waitAuthenticated()])
      const written = notes("h", 25)
      for (const note of written) await a.write(note)
      await b.waitForReceived(25) // the history is on the server
      await a.stop()

      const late = await replica({ url, identity, name: "Late" })
      await late.waitForReceived(25)
      await barrier(b, [late])
      assert.deepEqual(receivedIds(late), written.map((n) => n.id))
      assert.deepEqual(late.received.filter((r) => r.id.startsWith("h-")).map((r) => r.n), written.map((n) => n.n))
      assert.equal(late.remoteId, b.remoteId)
      assertHealthy(late)
      assertHealthy(b)
    })

    scenario(target, "V2-rebuilt-replica", "a replica rebuilt on the same journal receives only what it missed", async ({ replica }) => {
      const url = server.url(tenant("v2r"))
      const identity = await makeIdentity()
      const journal = makeJournal()
      const a = await replica({ url, identity, name: "A" })
      const r1 = await replica({ url, identity, journal, name: "R1" })
      await Promise.all([a.waitAuthenticated(), r1.waitAuthenticated()])

      const seen = notes("before", 10)
      for (const note of seen) await a.write(note)
      await r1.waitForReceived(10)
      await r1.write({ id: "own", text: "written by R before the disconnect", n: 0 })
      await a.waitFor(() => receivedIds(a).includes("own"), { what: "own on A" })
      await barrier(a, [r1])
      await r1.stop() // disconnect; the journal survives

      const missed = notes("missed", 7)
      for (const note of missed) await a.write(note)

      const r2 = await replica({ url, identity, journal, name: "R2" })
      await r2.waitForReceived(7)
      await barrier(a, [r2])
      assert.deepEqual(r2.runs.map((r) => r.id).filter((id) => !id.startsWith("barrier-")), missed.map((n) => n.id),
        "R2 handled exactly the missed notes")
      assert.equal(r2.runs.length, 8, `R2 handler runs: the 7 missed + 1 barrier, got ${r2.runs.map((r) => r.id)}`)
      // R1 had seen the store's first 12 entries (10 notes, own, barrier): sequences F..F+11,
      // where F is the server's firstSequence (Effect's memory storage: 0, omitted in Hello)
      const firstSequence = r1.stats.firstSequences[0] ?? 0
      const [resumed] = r2.stats.changesRequests
      assert.equal(resumed.startSequence, firstSequence + 12, `R2 resumed from its cursor; ${r2.describe()}`)
      assert.equal(r2.remoteId, r1.remoteId, "remoteId stable across connections")
      assert.deepEqual(receivedIds(a), ["own"], "A received R's entry once")
      const ids = (await r2.entries()).map((e) => e.idString)
      assert.equal(new Set(ids).size, ids.length, "no duplicate journal entries")
      assert.equal(ids.length, 10 + 1 + 1 + 7 + 1, "journal: before + own + barrier + missed + barrier")
      assertHealthy(r2)
      assertHealthy(a)
    })
  })
})
