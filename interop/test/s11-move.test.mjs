// Scenario 11: a tenant moves to another server and its replicas do not notice.
//
// An Effect v3 replica with a persisted journal (Effect's SqlEventJournal in a sqlite file, as a
// Node app keeps it) syncs with the tenant's first home, then stops. The operator exports the
// tenant there (`evsync admin export`) and imports it at a new home (`evsync admin import`);
// another replica writes there. The first replica, restarted on its journal and pointed at the
// new home:
// - sees the same remoteId in Hello (its cursors are per remoteId);
// - receives exactly the entries written after its cursor: none of the old ones again, none
//   missing (its handlers run once per new entry);
// and a fresh replica at the new home reads the whole history once, and the moved replica's own
// write reaches it.
//
// Homes: two native servers (SQLite, different data directories).
import assert from "node:assert/strict"
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe } from "node:test"
import { promisify } from "node:util"
import { makeIdentity } from "../src/replica.mjs"
import { assertHealthy, barrier, EVSYNC_NATIVE_BIN, receivedIds, scenario, startServer, tenant } from "./lib/harness.mjs"

const run = promisify(execFile)
const ADMIN = "admin-token-for-the-move-scenario"
const notes = (prefix, count) =>
  Array.from({ length: count }, (_, i) => ({ id: `${prefix}-${i + 1}`, text: `${prefix} note ${i + 1}`, n: i + 1 }))

/** `evsync admin --url <server> <args…>` with the admin token; its stdout. */
const admin = async (server, args) => {
  const { stdout } = await run(EVSYNC_NATIVE_BIN, ["admin", "--url", server.httpUrl(""), ...args], {
    env: { ...process.env, SYNC_ADMIN_TOKEN: ADMIN }
  })
  return stdout
}

describe("S11 moving a tenant", () => {
  scenario(
    "evsync",
    "S11-move-native",
    "export at one server, import at another: a replica on its persisted journal keeps its cursor (same remoteId, only what it missed)",
    async ({ replica }) => {
      const dir = mkdtempSync(join(tmpdir(), "evsync-interop-move-"))
      const homes = []
      try {
        const env = { SYNC_ADMIN_TOKEN: ADMIN }
        const first = await startServer("evsync", { bin: EVSYNC_NATIVE_BIN, dataDir: join(dir, "first"), env })
        homes.push(first)
        const t = tenant("s11")
        const identity = makeIdentity()
        const journalFile = join(dir, "journal.sqlite")

        // 1. history at the first home; R syncs it into its persisted journal
        const w = await replica({ url: first.url(t), identity, name: "W" })
        const r1 = await replica({ url: first.url(t), identity, journalFile, name: "R1" })
        await Promise.all([w.waitReady(), r1.waitReady()])
        const before = notes("before", 6)
        for (const note of before) await w.write(note)
        await r1.waitForReceived(6)
        await r1.write({ id: "own-before", text: "written by R before the move", n: 0 })
        await w.waitFor(() => receivedIds(w).includes("own-before"), { what: "R's entry at W" })
        await barrier(w, [r1])
        const remoteId = r1.sockets.remoteIds[0]
        assert.ok(remoteId, "R1 saw a Hello")
        await r1.stop()
        await w.stop()

        // 2. the move: export, stop the first home, import at the second
        const file = join(dir, "tenant.jsonl")
        assert.match(await admin(first, ["export", t, "--out", file]), /exported/)
        await first.stop()
        const second = await startServer("evsync", { bin: EVSYNC_NATIVE_BIN, dataDir: join(dir, "second"), env })
        homes.push(second)
        // 6 notes + R's own + the barrier note
        assert.match(await admin(second, ["import", t, "--in", file]), /1 logs, 8 entries/)

        // 3. life goes on at the new home while R is away
        const w2 = await replica({ url: second.url(t), identity, name: "W2" })
        await w2.waitReady()
        const after = notes("after", 4)
        for (const note of after) await w2.write(note)

        // 4. R comes back on its journal, at the new home
        const r2 = await replica({ url: second.url(t), identity, journalFile, name: "R2" })
        await r2.waitForReceived(4)
        await barrier(w2, [r2])
        assert.equal(r2.sockets.remoteIds[0], remoteId, "the same remoteId at the new home")
        const runs = r2.runs.map((x) => x.id).filter((id) => !id.startsWith("barrier-"))
        assert.deepEqual(runs, after.map((n) => n.id), "R handled exactly what it missed, once each")
        const ids = (await r2.entries()).map((e) => e.idString)
        assert.equal(new Set(ids).size, ids.length, "no entry twice in R's journal")

        // 5. R writes at the new home; a fresh replica reads the whole history once
        await r2.write({ id: "own-after", text: "written by R after the move", n: 0 })
        await w2.waitFor(() => receivedIds(w2).includes("own-after"), { what: "R's new entry at W2" })
        const fresh = await replica({ url: second.url(t), identity, name: "Fresh" })
        const all = [...before.map((n) => n.id), "own-before", ...after.map((n) => n.id), "own-after"]
        await fresh.waitFor(() => all.every((id) => receivedIds(fresh).includes(id)), { what: "the whole history at Fresh" })
        await barrier(w2, [fresh])
        const freshIds = receivedIds(fresh)
        assert.equal(freshIds.length, new Set(freshIds).size, "Fresh received each entry once")
        assert.deepEqual([...freshIds].sort(), [...all].sort())
        for (const r of [r2, w2, fresh]) assertHealthy(r)
      } finally {
        for (const home of homes) await home.stop().catch(() => {})
        rmSync(dir, { recursive: true, force: true })
      }
    },
    { notOnWorker: "the Worker cannot import or export tenants yet (admin answers 501); this scenario moves between native servers" }
  )
})
