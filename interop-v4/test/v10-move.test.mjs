// V10: a tenant moves to another server (`evsync admin export` at its first home, `evsync admin
// import` at the next) and its Effect 4 replicas do not notice: the export (format version 2)
// carries the v4 store with its batches at their sequences and the session-auth binding, so
// - a writer at the new home authenticates with its identity and its batches continue the
//   store's sequences (they do not restart at 1 under the same remoteId);
// - a replica rebuilt on the journal it had at the old home sees the same remoteId, asks from
//   its cursor and receives exactly what it missed (handler runs counted);
// - a late joiner at the new home receives the whole history, from both homes, once, in order.
// Effect's reference server has no export: not applicable to it. On the Worker the v4 data's
// move is checked by worker/test/e2e.test.mjs (import, then export byte for byte).
import assert from "node:assert/strict"
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe } from "node:test"
import { promisify } from "node:util"
import { makeIdentity, makeJournal, notes } from "../src/replica.mjs"
import { assertHealthy, barrier, EVSYNC_BIN, receivedIds, scenario, startServer, tenant } from "./lib/harness.mjs"

const run = promisify(execFile)

/** `evsync admin --url <server> <args…>` (a loopback server's admin API needs no token); stdout. */
const admin = async (server, args) => {
  const url = `http://127.0.0.1:${server.address.port}`
  const { stdout } = await run(EVSYNC_BIN, ["admin", "--url", url, ...args])
  return stdout
}

describe("V10 moving a tenant", () => {
  scenario("evsync", "V10-move", "export at one server, import at the next: same remoteId, store sequences continue, cursors valid", async ({ replica, t }) => {
    const dir = mkdtempSync(join(tmpdir(), "evsync-interop-v4-move-"))
    const servers = []
    try {
      const first = await startServer("evsync", { dataDir: join(dir, "first") })
      servers.push(first)
      const name = tenant("v10")
      const identity = await makeIdentity()
      const journalB = makeJournal()
      const a = await replica({ url: first.url(name), identity, name: "A" })
      const b = await replica({ url: first.url(name), identity, journal: journalB, name: "B" })
      await Promise.all([a.waitAuthenticated(), b.waitAuthenticated()])
      const before = notes("before", 10)
      for (const note of before) await a.write(note)
      await b.waitForReceived(10)
      await barrier(a, [b]) // 11 entries: sequences F..F+10
      await a.waitFor(() => a.stats.acks >= 11, { what: "A's 11 Acks" })
      const remoteId = a.remoteId
      const F = a.stats.firstSequences[0] ?? 0
      await b.stop() // B's app goes away; its journal stays
      await a.stop()

      // the move
      const file = join(dir, "tenant.jsonl")
      const exported = await admin(first, ["export", name, "--out", file])
      t.diagnostic(exported.trim())
      const second = await startServer("evsync", { dataDir: join(dir, "second") })
      servers.push(second)
      const imported = await admin(second, ["import", name, "--in", file])
      assert.match(imported, /1 v4 stores, \d+ batches, 1 bindings/, imported)
      await first.stop()

      // 1. a writer at the new home: same remoteId, its batches continue the store
      const url = second.url(name)
      const a2 = await replica({ url, identity, name: "A2" })
      await a2.waitAuthenticated()
      assert.equal(a2.remoteId, remoteId, "the same remoteId at the new home")
      const after = notes("after", 5)
      for (const note of after) await a2.write(note)
      await a2.waitFor(() => a2.stats.acks >= 5, { what: "A2's 5 Acks" })

      // 2. B rebuilt on its journal: asks from its cursor, gets exactly what it missed
      const b2 = await replica({ url, identity, journal: journalB, name: "B2" })
      await b2.waitForReceived(5)
      await barrier(a2, [b2])
      assert.equal(b2.remoteId, remoteId, "B2: the same remoteId")
      assert.equal(b2.stats.changesRequests[0].startSequence, F + 11, `B2 asked from its cursor; ${b2.describe()}`)
      assert.deepEqual(b2.runs.map((r) => r.id).filter((id) => !id.startsWith("barrier-")), after.map((n) => n.id),
        "B2 handled exactly the notes written after it stopped")
      const ids = (await b2.entries()).map((e) => e.idString)
      assert.equal(new Set(ids).size, ids.length, "no duplicate journal entries")

      // 3. a late joiner at the new home: the whole history, once, in order
      const late = await replica({ url, identity, name: "Late" })
      await late.waitForReceived(10 + 5)
      await barrier(a2, [late])
      assert.deepEqual(receivedIds(late), [...before, ...after].map((n) => n.id))
      assert.equal(late.remoteId, remoteId)
      assertHealthy(b2)
      assertHealthy(late)
    } finally {
      for (const server of servers) await server.stop().catch(() => {})
      rmSync(dir, { recursive: true, force: true })
    }
  }, { timeout: 90_000, notOnWorker: "moves between two native servers; the Worker's v4 import and export are checked by worker/test/e2e.test.mjs" })
})
