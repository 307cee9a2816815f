// V8: reconnect. The server side drops a live replica's connection (a TCP proxy between the
// replica and the server cuts it: to the client, a connection lost without a close frame). The v4
// client reconnects by itself, says Hello and authenticates again, re-subscribes to Changes from
// its cursor, uploads what it wrote meanwhile, and sees nothing twice.
import assert from "node:assert/strict"
import { describe } from "node:test"
import { makeIdentity, notes } from "../src/replica.mjs"
import { barrier, receivedIds, scenario, startProxy, tenant, withServerPerTarget } from "./lib/harness.mjs"

describe("V8 reconnect", () => {
  withServerPerTarget((target, server) => {
    scenario(target, "V8-reconnect", "a dropped connection: the client re-Hellos, re-authenticates and resumes without duplicates", async ({ replica, t }) => {
      const proxy = await startProxy(server.address)
      try {
        const name = tenant("v8")
        const identity = await makeIdentity()
        const live = await replica({ url: proxy.url(name), identity, name: "Live" })
        const writer = await replica({ url: server.url(name), identity, name: "Writer" })
        await Promise.all([live.waitAuthenticated(), writer.waitAuthenticated()])

        const before = notes("before", 5)
        for (const note of before) await writer.write(note)
        await live.waitForReceived(5)
        await live.write({ id: "live-before", text: "from Live before the cut", n: 0 })
        await writer.waitFor(() => receivedIds(writer).includes("live-before"), { what: "live-before on Writer" })
        await live.waitFor(() => live.stats.acks >= 1, { what: "the Ack of live-before" })

        // 1. the server side drops the connection
        assert.equal(proxy.cut(), 1, "one connection through the proxy")
        await live.waitFor(() => live.stats.closed >= 1, { what: "Live's socket closing" })
        t.diagnostic(`Live's socket closed with ${live.stats.closeCodes[0]}`)

        // 2. both sides write while (or right after) Live is cut off
        const during = notes("during", 5)
        for (const note of during) await writer.write(note)
        await live.write({ id: "live-during", text: "from Live after the cut", n: 1 })

        // 3. Live reconnects: a new socket, Hello, Authenticate, Changes from its cursor
        await live.waitAuthenticated(2, { timeoutMs: 30_000 })
        await live.waitFor(() => during.every((n) => receivedIds(live).includes(n.id)), { what: "the during notes on Live", timeoutMs: 30_000 })
        await writer.waitFor(() => receivedIds(writer).includes("live-during"), { what: "live-during on Writer", timeoutMs: 30_000 })
        await barrier(writer, [live])
        await barrier(live, [writer])

        assert.deepEqual(receivedIds(live), [...before, ...during].map((n) => n.id), "Live: everything once, in order")
        assert.deepEqual(receivedIds(writer), ["live-before", "live-during"], "Writer: Live's notes once each")
        const ids = (await live.entries()).map((e) => e.idString)
        assert.equal(new Set(ids).size, ids.length, "no duplicate journal entries on Live")

        const s = live.stats
        assert.equal(s.constructed, 2, `Live: one new socket; ${live.describe()}`)
        assert.equal(s.opened, 2)
        assert.ok(s.hellos >= 2, `Live said Hello again; ${live.describe()}`)
        assert.equal(s.authenticated, 2, `Live authenticated once per connection; ${live.describe()}`)
        assert.equal(new Set(s.remoteIds).size, 1, "same remoteId after the reconnect")
        // when cut, the store held before-0..4 and live-before (sequences F..F+5, F = the server's
        // firstSequence), all delivered to or acknowledged to Live: it resumes at F+6
        const F = s.firstSequences[0] ?? 0
        const resumed = s.changesRequests.filter((r) => r.socket === 2)
        assert.ok(resumed.length >= 1, `Live re-subscribed on the new socket; ${live.describe()}`)
        assert.equal(resumed[0].startSequence, F + 6, `Live resumed from its cursor; ${JSON.stringify(s.changesRequests)}`)
        assert.deepEqual(s.decodeErrors, [])
        assert.deepEqual(s.otherFailures, [], `Live: failed requests; ${live.describe()}`)
        t.diagnostic(`Live after the cut: Hellos ${s.hellos}, protocol errors ${JSON.stringify(s.protocolErrors)}, ` +
          `Changes requests ${JSON.stringify(s.changesRequests)}`)
      } finally {
        await proxy.close()
      }
    })
  })
})
