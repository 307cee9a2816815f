// Scenario 1: two replicas with the same identity; an event written on either runs its
// EventLog handler on the other. With the default options (ping enabled) and with disablePing.
import assert from "node:assert/strict"
import { describe } from "node:test"
import { identityFromString, identityToString, makeIdentity } from "../src/replica.mjs"
import { assertHealthy, barrier, receivedIds, scenario, tenant, withServerPerTarget } from "./lib/harness.mjs"

describe("S1 same identity, two replicas", () => {
  withServerPerTarget((target, server) => {
    for (const disablePing of [false, true]) {
      const id = disablePing ? "S1-disable-ping" : "S1-ping"
      scenario(target, id, `events flow both ways (disablePing: ${disablePing})`, async ({ replica }) => {
        const url = server.url(tenant("s1"))
        const identity = makeIdentity()
        // the second replica parses Effect's string form of the identity, as an app would
        const same = identityFromString(identityToString(identity))
        assert.equal(same.publicKey, identity.publicKey)

        const a = await replica({ url, identity, name: "A", disablePing })
        const b = await replica({ url, identity: same, name: "B", disablePing })
        // Both connected (Hello + initial upload acknowledged) before the first write: a write
        // made while the initial upload is in flight stays local until the next write (Effect
        // client race, docs/effect-client-notes.md; proven in client-behaviour.test.mjs).
        await Promise.all([a.waitReady(), b.waitReady()])

        await a.write({ id: "a1", text: "from A", n: 1 })
        await b.waitForReceived(1)
        assert.deepEqual(b.received.map(({ id, text, n }) => ({ id, text, n })), [{ id: "a1", text: "from A", n: 1 }])

        await b.write({ id: "b1", text: "from B", n: 2 })
        await a.waitForReceived(1)
        assert.deepEqual(a.received.map(({ id, text, n }) => ({ id, text, n })), [{ id: "b1", text: "from B", n: 2 }])

        // exactly once: after barriers in both directions nothing else arrived
        await barrier(a, [b])
        await barrier(b, [a])
        assert.deepEqual(receivedIds(b), ["a1"])
        assert.deepEqual(receivedIds(a), ["b1"])
        assert.equal(a.runs.filter((r) => r.local).length, 2) // a1 + its barrier
        // the same entry (UUIDv7 entry id) on both sides
        assert.equal(b.received[0].entryId, a.runs.find((r) => r.id === "a1").entryId)
        assertHealthy(a)
        assertHealthy(b)
        assert.equal(a.sockets.remoteIds[0], b.sockets.remoteIds[0])
      })
    }

    scenario(
      target,
      "S1-offline-first",
      "a replica whose first connection to a fresh log uploads offline writes still receives later events",
      async ({ replica }) => {
        // An app writes before it ever connected (offline-first), then connects to a log that
        // does not exist yet: its RequestChanges and its first WriteEntries arrive together.
        // Eight independent fresh logs at once, so a race in a server shows up reliably.
        const trial = async (k) => {
          const url = server.url(tenant(`s1o${k}`))
          const identity = makeIdentity()
          const a = await replica({ url, identity, name: `A${k}` })
          await a.write({ id: `offline-${k}`, text: "written before the first connection", n: k })
          await a.waitReady()
          const b = await replica({ url, identity, name: `B${k}` })
          await b.waitReady()
          await b.waitFor(() => receivedIds(b).includes(`offline-${k}`), { what: `offline-${k} on B${k}` })
          await b.write({ id: `b${k}`, text: "from B", n: k })
          await a.waitFor(() => receivedIds(a).includes(`b${k}`), { what: `b${k} on A${k}`, timeoutMs: 10_000 })
          await barrier(b, [a])
          assert.deepEqual(receivedIds(a), [`b${k}`])
          assert.deepEqual(receivedIds(b), [`offline-${k}`])
          assertHealthy(a)
          assertHealthy(b)
        }
        const results = await Promise.allSettled([0, 1, 2, 3, 4, 5, 6, 7].map(trial))
        const failures = results.filter((r) => r.status === "rejected").map((r) => r.reason)
        if (failures.length > 0) {
          throw new Error(`${failures.length}/8 trials failed; first: ${failures[0]?.stack ?? failures[0]}`)
        }
      }
    )
  })
})
