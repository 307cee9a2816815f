// Scenario 12: switching from Effect's own server to evsync without a resync.
//
// An app ran Effect's reference server (EventLogServer + SqlEventLogServer on SQLite, real Effect
// from npm: src/reference-server.mjs keeps one sqlite file per tenant). Its replicas wrote to two
// publicKeys; one of them (A) keeps its journal in a sqlite file (Effect's SqlEventJournal, as a
// Node app does). Effect's server is stopped and its database imported as an evsync tenant with
// `evsync import --effect-sqlite FILE --public-key …`; evsync serves it. Then:
// - the import names every publicKey with entries, or is refused (naming the table) and nothing
//   is created; the Effect database itself is not changed;
// - A's replica, restarted on its journal and pointed at evsync, sees the remoteId Effect's server
//   gave it and handles exactly the entries written after its cursor (none twice, none missing);
//   its own new entry reaches the others;
// - fresh replicas of both publicKeys read the whole history once.
import assert from "node:assert/strict"
import { execFile } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe } from "node:test"
import { promisify } from "node:util"
import { makeIdentity, notes } from "../src/replica.mjs"
import { assertHealthy, barrier, EVSYNC_NATIVE_BIN, receivedIds, scenario, startServer, tenant } from "./lib/harness.mjs"

const run = promisify(execFile)

/** The table Effect's SqlEventLogServer keeps a publicKey's log in. */
const effectTable = (publicKey) => `effect_events_${createHash("sha256").update(publicKey, "utf8").digest("hex").slice(0, 16)}`

const sha256File = (path) => createHash("sha256").update(readFileSync(path)).digest("hex")

/** `evsync import --data … --tenant … --effect-sqlite … <extra>`: { code, stdout, stderr }. */
const importEffect = async (dataDir, t, source, extra) => {
  try {
    const { stdout, stderr } = await run(EVSYNC_NATIVE_BIN, ["import", "--data", dataDir, "--tenant", t, "--effect-sqlite", source, ...extra])
    return { code: 0, stdout, stderr }
  } catch (e) {
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

describe("S12 switching from Effect's SqlEventLogServer", () => {
  scenario(
    "evsync",
    "S12-from-effect-sql",
    "a database written by Effect's SqlEventLogServer becomes an evsync tenant: same remoteId, a replica on its journal gets only what it missed",
    async ({ replica }) => {
      const dir = mkdtempSync(join(tmpdir(), "evsync-interop-from-effect-"))
      const servers = []
      try {
        const effectDir = join(dir, "effect")
        const effect = await startServer("reference", { dataDir: effectDir })
        servers.push(effect)
        const t = tenant("s12")
        const a = makeIdentity()
        const b = makeIdentity()
        const journalFile = join(dir, "journal-a.sqlite")

        // 1. history on Effect's server, two publicKeys; R (A's replica) syncs it into its journal
        const w = await replica({ url: effect.url(t), identity: a, name: "W" })
        const r1 = await replica({ url: effect.url(t), identity: a, journalFile, name: "R1" })
        const wb = await replica({ url: effect.url(t), identity: b, name: "WB" })
        const rb = await replica({ url: effect.url(t), identity: b, name: "RB" })
        await Promise.all([w, r1, wb, rb].map((x) => x.waitReady()))
        const beforeA = notes("a-before", 6)
        for (const note of beforeA) await w.write(note)
        await r1.waitForReceived(6)
        await r1.write({ id: "own-before", text: "written by R on Effect's server", n: 0 })
        await w.waitFor(() => receivedIds(w).includes("own-before"), { what: "R's entry at W" })
        await barrier(w, [r1]) // log A: 6 + own-before + this barrier = 8 entries
        const notesB = notes("b", 3)
        for (const note of notesB) await wb.write(note)
        await rb.waitForReceived(3) // log B: 3 entries, stored
        const remoteId = r1.sockets.remoteIds[0]
        assert.ok(remoteId, "R1 saw a Hello from Effect's server")
        for (const x of [w, r1, wb, rb]) await x.stop()
        await effect.stop()

        // 2. the import: Effect's database, stopped
        const source = join(effectDir, `${t}.sqlite`)
        assert.ok(existsSync(source), `Effect's database at ${source}`)
        const sourceHash = sha256File(source)
        const dataDir = join(dir, "evsync")

        // B's publicKey not given: refused, naming B's table; no tenant created
        const refused = await importEffect(dataDir, t, source, ["--public-key", a.publicKey])
        assert.equal(refused.code, 1, `refused: ${JSON.stringify(refused)}`)
        assert.match(refused.stderr, /import refused, nothing changed/)
        assert.ok(refused.stderr.includes(`${effectTable(b.publicKey)} (3 entries)`), refused.stderr)
        assert.ok(!existsSync(join(dataDir, "tenants", `${t}.sqlite`)), "no tenant after a refusal")

        const imported = await importEffect(dataDir, t, source, ["--public-key", a.publicKey, "--public-key", b.publicKey])
        assert.equal(imported.code, 0, `imported: ${JSON.stringify(imported)}`)
        assert.match(imported.stdout, /2 logs, 11 entries/)
        assert.equal(sha256File(source), sourceHash, "the Effect database is not changed")

        // 3. evsync serves the tenant; life goes on there while R is away
        const evsync = await startServer("evsync", { bin: EVSYNC_NATIVE_BIN, dataDir })
        servers.push(evsync)
        const w2 = await replica({ url: evsync.url(t), identity: a, name: "W2" })
        await w2.waitReady()
        assert.equal(w2.sockets.remoteIds[0], remoteId, "evsync's Hello carries Effect's remoteId")
        const afterA = notes("a-after", 4)
        for (const note of afterA) await w2.write(note)

        // 4. R comes back on its journal, at evsync
        const r2 = await replica({ url: evsync.url(t), identity: a, journalFile, name: "R2" })
        await r2.waitForReceived(4)
        await barrier(w2, [r2])
        assert.equal(r2.sockets.remoteIds[0], remoteId, "the same remoteId at evsync")
        const runs = r2.runs.map((x) => x.id).filter((id) => !id.startsWith("barrier-"))
        assert.deepEqual(runs, afterA.map((n) => n.id), "R handled exactly what it missed, once each")
        const ids = (await r2.entries()).map((e) => e.idString)
        assert.equal(new Set(ids).size, ids.length, "no entry twice in R's journal")

        // 5. R writes at evsync and W2 receives it; fresh replicas of A and B read everything once
        await r2.write({ id: "own-after", text: "written by R at evsync", n: 0 })
        await w2.waitFor(() => receivedIds(w2).includes("own-after"), { what: "R's new entry at W2" })
        const freshA = await replica({ url: evsync.url(t), identity: a, name: "FreshA" })
        const freshB = await replica({ url: evsync.url(t), identity: b, name: "FreshB" })
        const allA = [...beforeA.map((n) => n.id), "own-before", ...afterA.map((n) => n.id), "own-after"]
        const allB = notesB.map((n) => n.id)
        await freshA.waitFor(() => allA.every((id) => receivedIds(freshA).includes(id)), { what: "log A's history at FreshA" })
        await freshB.waitFor(() => allB.every((id) => receivedIds(freshB).includes(id)), { what: "log B's history at FreshB" })
        // nothing more comes: a barrier note on each log
        const wb2 = await replica({ url: evsync.url(t), identity: b, name: "WB2" })
        await wb2.waitReady()
        await Promise.all([barrier(w2, [freshA]), barrier(wb2, [freshB])])
        const receivedA = receivedIds(freshA)
        assert.deepEqual(receivedA, allA, "FreshA: log A once, in order")
        assert.deepEqual(receivedIds(freshB), allB, "FreshB: log B once, in order")
        for (const x of [r2, w2, freshA, freshB, wb2]) assertHealthy(x)
      } finally {
        for (const server of servers) await server.stop().catch(() => {})
        rmSync(dir, { recursive: true, force: true })
      }
    },
    { notOnWorker: "evsync import --effect-sqlite writes into a native data directory (to reach the Worker, import natively, then move the tenant with evsync admin export/import as S11 does)" }
  )
})
