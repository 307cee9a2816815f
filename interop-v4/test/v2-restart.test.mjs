// V2: a server restart on the same data (PROTOCOL-V4.md §6.2). evsync is stopped (SIGTERM) and
// started again on the same --data directory and port (on the Worker: workerd stopped and started
// again on the same persisted state, scripts/worker-serve). Its remoteId and every sequence survive,
// so replicas' cursors stay valid:
// - a live replica reconnects by itself (Hello, Authenticate with the persisted signing-key
//   binding, Changes from its cursor) and receives nothing twice;
// - a replica rebuilt after the restart on the journal it had before gets only what it missed
//   (handler runs counted), asking from its cursor;
// - a late joiner gets the whole history, from before and after the restart, once, in order.
// Effect's reference server keeps its stores in memory (a restart loses them and makes a new
// remoteId): not applicable to it, and printed as a skip with that reason.
import assert from "node:assert/strict"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe } from "node:test"
import { makeIdentity, makeJournal, notes } from "../src/replica.mjs"
import { assertHealthy, barrier, EVSYNC_KIND, receivedIds, scenario, startServer, TARGETS, tenant } from "./lib/harness.mjs"

describe("V2 server restart", () => {
  for (const target of TARGETS) {
    describe(target, () => {
      scenario(target, "V2-server-restart", "after a restart on the same data: same remoteId, cursors valid, nothing replayed", async ({ replica, t }) => {
        const dataDir = mkdtempSync(join(tmpdir(), `evsync-interop-v4-restart-`))
        let server
        try {
          server = await startServer(target, { dataDir })
          const port = server.address.port
          const name = tenant("v2s")
          const url = server.url(name)
          const identity = await makeIdentity()
          const journalB = makeJournal()
          const a = await replica({ url, identity, name: "A" })
          const b = await replica({ url, identity, journal: journalB, name: "B" })
          await Promise.all([a.waitAuthenticated(), b.waitAuthenticated()])

          const before = notes("before", 10)
          for (const note of before) await a.write(note)
          await b.waitForReceived(10)
          await barrier(a, [b]) // 11 entries: sequences F..F+10
          await a.waitFor(() => a.stats.acks >= 11, { what: "A's 11 Acks" })
          const remoteId = a.remoteId
          const F = a.stats.firstSequences[0] ?? 0
          await b.stop() // B's app goes away; its journal stays

          // restart: graceful stop, then the same binary on the same directory and port
          const stopped = await server.stop()
          if (EVSYNC_KIND === "native") {
            assert.deepEqual(stopped, { code: 0, signal: null }, "evsync exits 0 on SIGTERM")
          }
          await a.waitFor(() => a.stats.closed >= 1, { what: "A's socket closing" })
          t.diagnostic(`A's socket closed with ${a.stats.closeCodes[0]} on SIGTERM`)
          server = await startServer(target, { dataDir, port })

          // 1. the live replica reconnects: same remoteId, authenticates with the persisted
          //    binding, resumes from its cursor F+11
          await a.waitAuthenticated(2, { timeoutMs: 30_000 })
          await a.waitFor(() => a.stats.changesRequests.some((r) => r.socket >= 2), { what: "A's Changes after the restart" })
          assert.deepEqual([...new Set(a.stats.remoteIds)], [remoteId], `A: one remoteId across the restart; ${a.describe()}`)
          const resumed = a.stats.changesRequests.find((r) => r.socket >= 2)
          assert.equal(resumed.startSequence, F + 11, `A resumed from its cursor; ${JSON.stringify(a.stats.changesRequests)}`)

          const afterRestart = notes("after", 5)
          for (const note of afterRestart) await a.write(note)
          await a.waitFor(() => a.stats.acks >= 16, { what: "A's 16 Acks" })

          // 2. B rebuilt on its journal: only what it missed
          const b2 = await replica({ url, identity, journal: journalB, name: "B2" })
          await b2.waitForReceived(5)
          await barrier(a, [b2])
          assert.equal(b2.stats.changesRequests[0].startSequence, F + 11, `B2 asked from its cursor; ${b2.describe()}`)
          assert.equal(b2.remoteId, remoteId, "B2: the same remoteId")
          assert.deepEqual(b2.runs.map((r) => r.id).filter((id) => !id.startsWith("barrier-")), afterRestart.map((n) => n.id),
            "B2 handled exactly the notes written after it stopped")
          assert.equal(b2.runs.length, 6, `B2 handler runs: 5 missed + 1 barrier, got ${b2.runs.map((r) => r.id)}`)
          const ids = (await b2.entries()).map((e) => e.idString)
          assert.equal(new Set(ids).size, ids.length, "no duplicate journal entries")
          assert.equal(ids.length, 10 + 1 + 5 + 1)

          // 3. A received nothing of its own, before or after the restart
          await barrier(b2, [a])
          assert.deepEqual(receivedIds(a), [], `A got none of its own entries back; ${a.describe()}`)

          // 4. a late joiner: the whole history, once, in order
          const late = await replica({ url, identity, name: "Late" })
          await late.waitForReceived(10 + 5 + 3)
          await barrier(a, [late])
          assert.deepEqual(receivedIds(late), [...before, ...afterRestart].map((n) => n.id))
          assert.equal(late.remoteId, remoteId)
          assertHealthy(b2)
          assertHealthy(late)
          assert.deepEqual(a.stats.protocolErrors, {}, `A: protocol errors; ${a.describe()}`)
          assert.deepEqual(a.stats.otherFailures, [], `A: failed requests; ${a.describe()}`)
          assert.deepEqual(a.stats.decodeErrors, [])
          t.diagnostic(`A across the restart: sockets ${a.stats.constructed}, Hellos ${a.stats.hellos}, ` +
            `Changes requests ${JSON.stringify(a.stats.changesRequests)}`)
        } finally {
          await server?.stop().catch(() => {})
          rmSync(dataDir, { recursive: true, force: true })
        }
      }, {
        timeout: 90_000,
        notApplicable: {
          reference: "Effect's reference server keeps its stores in memory (layerStorageMemory): a restart " +
            "loses them and makes a new remoteId; effect 4.1.0 has no v4 SQL client to persist them"
        }
      })
    })
  }
})
