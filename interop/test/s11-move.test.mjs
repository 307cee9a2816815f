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
// Homes: two native servers (SQLite, different data directories). When the suite runs against the
// Worker (INTEROP_EVSYNC_KIND=worker, EVSYNC_BIN=scripts/worker-serve, WORKER_SERVE_CONFIG=do|d1),
// three: native → the Worker (Durable Object SQLite or D1) → native, the same checks at each
// new home, the Worker driven by the same `evsync admin` commands.
import assert from "node:assert/strict"
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe } from "node:test"
import { promisify } from "node:util"
import { makeIdentity } from "../src/replica.mjs"
import {
  assertHealthy,
  barrier,
  EVSYNC_KIND,
  EVSYNC_NATIVE_BIN,
  receivedIds,
  scenario,
  startServer,
  tenant
} from "./lib/harness.mjs"

const run = promisify(execFile)
const ADMIN = "admin-token-for-the-move-scenario"
const notes = (prefix, count) =>
  Array.from({ length: count }, (_, i) => ({ id: `${prefix}-${i + 1}`, text: `${prefix} note ${i + 1}`, n: i + 1 }))

/** Where the tenant lives, in order: "native" (`evsync serve`) or "worker" (EVSYNC_BIN, scripts/worker-serve). */
const HOMES = EVSYNC_KIND === "worker" ? ["native", "worker", "native"] : ["native", "native"]

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
    "S11-move",
    `export at one server, import at the next (${HOMES.join(" → ")}): a replica on its persisted journal keeps its cursor (same remoteId, only what it missed)`,
    async ({ replica }) => {
      const dir = mkdtempSync(join(tmpdir(), "evsync-interop-move-"))
      const homes = []
      const env = { SYNC_ADMIN_TOKEN: ADMIN }
      // the Worker through EVSYNC_BIN (scripts/worker-serve), which hands SYNC_ADMIN_TOKEN on
      const startHome = (kind, dataDir) =>
        startServer("evsync", kind === "native" ? { bin: EVSYNC_NATIVE_BIN, dataDir, env } : { dataDir, env })
      try {
        let home = await startHome(HOMES[0], join(dir, "home-0"))
        homes.push(home)
        const t = tenant("s11")
        const identity = makeIdentity()
        const journalFile = join(dir, "journal.sqlite")

        // 1. history at the first home; R syncs it into its persisted journal
        const w = await replica({ url: home.url(t), identity, name: "W" })
        const r1 = await replica({ url: home.url(t), identity, journalFile, name: "R1" })
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
        // 6 notes + R's own + the barrier note
        let entries = 8
        let history = [...before.map((n) => n.id), "own-before"]

        for (let hop = 1; hop < HOMES.length; hop++) {
          const where = `home ${hop + 1} (${HOMES[hop]})`
          // 2. the move: export, stop the old home, import at the new one
          const file = join(dir, `tenant-${hop}.jsonl`)
          assert.match(await admin(home, ["export", t, "--out", file]), /exported/)
          await home.stop()
          home = await startHome(HOMES[hop], join(dir, `home-${hop}`))
          homes.push(home)
          assert.match(await admin(home, ["import", t, "--in", file]), new RegExp(`1 logs, ${entries} entries`))

          // 3. life goes on at the new home while R is away
          const w2 = await replica({ url: home.url(t), identity, name: `W${hop + 1}` })
          await w2.waitReady()
          const missed = notes(`after-${hop}`, 4)
          for (const note of missed) await w2.write(note)

          // 4. R comes back on its journal, at the new home
          const r2 = await replica({ url: home.url(t), identity, journalFile, name: `R${hop + 1}` })
          await r2.waitForReceived(4)
          await barrier(w2, [r2])
          assert.equal(r2.sockets.remoteIds[0], remoteId, `the same remoteId at ${where}`)
          const runs = r2.runs.map((x) => x.id).filter((id) => !id.startsWith("barrier-"))
          assert.deepEqual(runs, missed.map((n) => n.id), `R handled exactly what it missed at ${where}, once each`)
          const ids = (await r2.entries()).map((e) => e.idString)
          assert.equal(new Set(ids).size, ids.length, `no entry twice in R's journal at ${where}`)

          // 5. R writes at the new home; a fresh replica reads the whole history once
          const own = `own-${hop}`
          await r2.write({ id: own, text: `written by R at ${where}`, n: 0 })
          await w2.waitFor(() => receivedIds(w2).includes(own), { what: `R's new entry at W${hop + 1}` })
          const fresh = await replica({ url: home.url(t), identity, name: `Fresh${hop + 1}` })
          const all = [...history, ...missed.map((n) => n.id), own]
          await fresh.waitFor(() => all.every((id) => receivedIds(fresh).includes(id)), {
            what: `the whole history at Fresh${hop + 1}`
          })
          // R too has everything before it stops for the next move
          await barrier(w2, [fresh, r2])
          const freshIds = receivedIds(fresh)
          assert.equal(freshIds.length, new Set(freshIds).size, `Fresh received each entry once at ${where}`)
          assert.deepEqual([...freshIds].sort(), [...all].sort())
          for (const r of [r2, w2, fresh]) assertHealthy(r)
          for (const r of [r2, w2, fresh]) await r.stop()
          history = all
          // 4 notes + a barrier + R's own + a barrier
          entries += 7
        }
      } finally {
        for (const home of homes) await home.stop().catch(() => {})
        rmSync(dir, { recursive: true, force: true })
      }
    },
    { timeout: 60_000 * HOMES.length }
  )
})
