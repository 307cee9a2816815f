// Scenario 9: the agent SDK's SyncService habits (github.com/mepuka/effect-claude-agent-sdk,
// src/Sync/SyncService.ts; not on npm, so src/sdk-pattern.mjs rebuilds its connection pattern
// from Effect's own EventLogRemote): every syncInterval (1 s here) the replica connects again
// on the same Socket without ending its previous connection loop, ping on. Two such replicas
// (same identity; src/sdk-pattern.mjs's journal handles an entry once however many sockets
// deliver it, as the SDK's own journal does) write for INTEROP_SDK_DURATION_S seconds (default 20; never
// shorter under CI=true); a quarter in, the server is killed with SIGKILL and started again on the
// same data directory and port. Then:
// - every event a replica wrote after the restart has arrived at the other, and so has every
//   event at all (both replicas hold the same events);
// - nothing is duplicated: each replica handled each of the other's events exactly once and none
//   of its own, and a fresh replica reading the whole log gets every event exactly once;
// - the number of open sockets (server side, GET /healthz "connections"; not on the Worker,
//   which has no server-wide count) is logged every 2 s,
//   with its min/max at the end (the SDK leaks one connection loop per tick).
// The periodic reconnect and the pace of the writers are the behaviour under test (timers);
// everything else waits for events.
//
// Why 20 s and not the minute the issue asks for: with this pattern Effect's client itself
// starves. Every connection loop that ends (the SIGKILL's 1006, a failed ping) leaves Effect's
// consumer loop spinning on the lock EventLog.write needs (docs/effect-client-notes.md, client
// bug #1), and the SDK leaks one loop per tick. Past ~20-30 s a replica's own local writes stop
// returning (60 s runs, 2026-12-02: against evsync, replica A wrote 12 events in the 30 s after
// the restart instead of ~120 and its last 3 never reached B; against Effect's own server a
// local write did not return within 10 s). Same failure on both servers, so it is the client's;
// INTEROP_SDK_DURATION_S=60 reproduces it. Moving the kill does not fix it (2026-12-03, kill a
// quarter in, 4 runs against evsync on 2 cores: 1 passed with one 18 s local write, 2 had a local
// write not return within 60 s, 1 had replica B miss 9 of A's post-restart events 45 s after the
// last write): most spinners come from the pattern's own Pings, not the kill. Every loop pings
// through the shared writer on the newest socket, so the newest loop gets Pongs it did not send
// and ends ("Pong id mismatch", or later "Ping timeout"): 11-12 such ends per replica before the
// kill (t=16.7 s), ~50 by t=60 s. Each replica process is at 100% CPU from ~15 s on, and the
// spinners only grow with the run.
// Even at 20 s a busy machine (CI, 2026-12-02) slows that client enough that one local write takes
// over 10 s: such a write is reported (diagnostic + summary) and waited for; only one that does not
// return within 60 s fails the run. interop/run.sh runs this file after the others, by itself.
// The kill comes a quarter into the run, not halfway: every connection loop the SDK leaked
// before it ends at the kill and spins until the client reconnects, so an earlier kill means
// fewer spinners; with ~13 of them (a kill halfway) a busy machine's replica process sometimes
// livelocked for 20 s, its snapshot unanswered (2026-12-02, against evsync and, recorded as
// intermittent, against Effect's server). Three quarters of the run then follow the restart.
import assert from "node:assert/strict"
import { describe } from "node:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { identityToString, makeIdentity } from "../src/replica.mjs"
import { startReplicaProcess } from "../src/replica-process.mjs"
import { assertHealthy, barrier, EVSYNC_KIND, receivedIds, scenario, sleep, startServer, TARGETS, tenant } from "./lib/harness.mjs"

const DEFAULT_DURATION_S = 20
const DURATION_S = (() => {
  const raw = process.env.INTEROP_SDK_DURATION_S
  if (raw === undefined || raw.trim() === "") return DEFAULT_DURATION_S
  const value = Number(raw)
  if (!Number.isFinite(value) || value <= 0) throw new Error(`INTEROP_SDK_DURATION_S=${raw}: expected a positive number of seconds`)
  if (process.env.CI === "true" && value < DEFAULT_DURATION_S) {
    throw new Error(`CI=true: INTEROP_SDK_DURATION_S=${raw} is shorter than ${DEFAULT_DURATION_S} s; the SDK scenario runs its full duration in CI`)
  }
  return value
})()
const SYNC_INTERVAL_MS = 1_000 // the SDK's syncInterval
const WRITE_EVERY_MS = 250 // per replica
const SAMPLE_EVERY_MS = 2_000 // /healthz
const CONVERGE_TIMEOUT_MS = 45_000 // generous: a starving client (below) uploads late
const SLOW_WRITE_MS = 10_000 // a local write slower than this is reported
const STUCK_WRITE_MS = 60_000 // and one slower than this fails the run
const SNAPSHOT_MS = 5_000 // how long the summary waits for a replica process's figures

/** "settled" once `promise` has settled (either way), "pending" if it has not after `ms`. */
const settlesWithin = (promise, ms) => {
  let timer
  return Promise.race([
    promise.then(() => "settled", () => "settled"),
    new Promise((resolve) => {
      timer = setTimeout(() => resolve("pending"), ms)
    })
  ]).finally(() => clearTimeout(timer))
}

describe("S9 agent SDK SyncService pattern", () => {
  for (const target of TARGETS) {
    describe(target, () => {
      scenario(target, "S9-sdk-sync-service", `reconnect every ${SYNC_INTERVAL_MS} ms without closing, ping on, two writers for ${DURATION_S} s, SIGKILL + restart a quarter in`, async ({ replica, replicas, t }) => {
        const dataDir = mkdtempSync(join(tmpdir(), `evsync-interop-s9-${target}-`))
        let server
        let sampler
        const started = performance.now()
        const elapsed = () => Math.round(performance.now() - started)
        /** @type {{ atMs: number, connections: number | null, phase: string }[]} */
        const samples = []
        let phase = "before"
        const sdkReplicas = []
        try {
          server = await startServer(target, { dataDir })
          const port = server.address.port
          const url = server.url(tenant("s9"))
          const identity = makeIdentity()

          // server-side open-socket count, every few seconds, whatever the test is doing
          const sample = async () => {
            const current = server
            let connections = null
            try {
              const res = await fetch(current.httpUrl("/healthz"), { signal: AbortSignal.timeout(1_500) })
              connections = (await res.json()).connections
            } catch {
              // server down (the restart) or too slow: no sample
            }
            samples.push({ atMs: elapsed(), connections, phase })
            t.diagnostic(`${target} t=${(elapsed() / 1000).toFixed(1)}s [${phase}] open sockets: ${connections ?? "n/a"}`)
          }
          sampler = setInterval(sample, SAMPLE_EVERY_MS)

          // each SDK replica in a process of its own, as an app is: after a connection ends,
          // every leaked loop of Effect's client spins (client bug #1), which must slow down only
          // that replica, not the test process and the in-process replicas below
          const sdk = { url, identity: identityToString(identity), sdkSyncIntervalMs: SYNC_INTERVAL_MS, allowDisconnect: true, sdkLikeJournal: true }
          const a = await startReplicaProcess({ ...sdk, name: "A" })
          sdkReplicas.push(a)
          const b = await startReplicaProcess({ ...sdk, name: "B" })
          sdkReplicas.push(b)
          // what the SDK reports as "connected": a Hello
          await Promise.all([a.waitForHello(1), b.waitForHello(1)])

          // two writers, for DURATION_S; SIGKILL + restart a quarter in (see the header)
          /** @type {Record<string, { id: string, phase: string }[]>} */
          const written = { A: [], B: [] }
          let slowWrites = 0
          let slowestWriteMs = 0
          let writing = true
          const writer = async (r) => {
            for (let i = 0; writing; i++) {
              const id = `${r.name}-${i}`
              const at = phase
              const began = performance.now()
              const write = r.write({ id, text: `written by ${r.name} (${at})`, n: i })
              // A slow local write is Effect's client starving itself (client bug #1: leaked loops
              // spinning on EventLog's lock), worse on a busy machine: noted, waited for; only a
              // write that never returns fails the run. What the server must do is asserted below.
              if (await settlesWithin(write, SLOW_WRITE_MS) === "pending") {
                t.diagnostic(`${target} t=${(elapsed() / 1000).toFixed(1)}s: ${r.name}'s local write ${id} is still running after ${SLOW_WRITE_MS / 1000} s (the client starving itself); waiting`)
                slowWrites++
                if (await settlesWithin(write, STUCK_WRITE_MS - SLOW_WRITE_MS) === "pending") {
                  throw new Error(`${r.name}: local write ${id} did not return within ${STUCK_WRITE_MS / 1000} s; ${r.describe()}`)
                }
              }
              await write
              slowestWriteMs = Math.max(slowestWriteMs, performance.now() - began)
              written[r.name].push({ id, phase: at })
              await sleep(WRITE_EVERY_MS) // the writers' pace
            }
          }
          const writers = Promise.all([writer(a), writer(b)])
          await sleep((DURATION_S * 1000) / 4) // run time is the behaviour under test
          phase = "down"
          const exit = await server.stop({ signal: "SIGKILL" })
          t.diagnostic(`${target} killed at t=${(elapsed() / 1000).toFixed(1)}s: ${JSON.stringify(exit)}`)
          server = await startServer(target, { dataDir, port })
          phase = "after"
          t.diagnostic(`${target} restarted at t=${(elapsed() / 1000).toFixed(1)}s`)
          await sleep((DURATION_S * 1000) * 3 / 4)
          writing = false
          await writers
          const writeEnd = elapsed()

          const ids = (name, which) => written[name].filter((w) => which === undefined || w.phase === which).map((w) => w.id)
          const has = (r) => {
            const got = new Set(receivedIds(r))
            return (id) => got.has(id)
          }
          const missing = (r, list) => list.filter((id) => !has(r)(id))
          const converge = async (r, from, which) => {
            const list = ids(from, which)
            await r.waitFor(() => missing(r, list).length === 0, {
              timeoutMs: CONVERGE_TIMEOUT_MS,
              what: `${which ? `the ${list.length} events ${from} wrote ${which === "after" ? "after the restart" : which}` : `all ${list.length} events of ${from}`} ` +
                `(still missing ${missing(r, list).length}: ${missing(r, list).slice(0, 8)})`
            })
          }
          // every event written after the restart arrives at the other replica
          await Promise.all([converge(b, "A", "after"), converge(a, "B", "after")])
          // and so does every event at all
          await Promise.all([converge(b, "A"), converge(a, "B")])
          const convergedAt = elapsed()

          // nothing duplicated on the replicas: the other's events exactly once, none of its own
          for (const [r, other] of [[a, "B"], [b, "A"]]) {
            const got = receivedIds(r)
            const dupes = got.filter((id, i) => got.indexOf(id) !== i)
            assert.deepEqual(dupes, [], `${r.name} handled some of ${other}'s events more than once`)
            assert.deepEqual(got.filter((id) => id.startsWith(`${r.name}-`)), [], `${r.name} handled its own events as remote ones`)
            assert.deepEqual([...got].sort(), [...ids(other)].sort(), `${r.name} received exactly ${other}'s events`)
            const locals = r.runs.filter((x) => x.local).map((x) => x.id)
            assert.deepEqual(locals, ids(r.name), `${r.name}: each local write handled once`)
          }

          // nothing duplicated in the log: a fresh replica reads it whole, every event once
          const all = [...ids("A"), ...ids("B")]
          const late = await replica({ url, identity, name: "Late" })
          await late.waitFor(() => missing(late, all).length === 0, {
            timeoutMs: CONVERGE_TIMEOUT_MS,
            what: `the whole log (${all.length} events; missing ${missing(late, all).length}: ${missing(late, all).slice(0, 8)})`
          })
          const plain = await replica({ url, identity, name: "Plain" })
          await plain.waitFor(() => missing(plain, all).length === 0, { timeoutMs: CONVERGE_TIMEOUT_MS, what: "the whole log" })
          await plain.waitReady()
          await barrier(plain, [late]) // everything the log held before it has reached Late
          const lateIds = receivedIds(late)
          assert.equal(new Set(lateIds).size, lateIds.length, `the log holds some event twice (${lateIds.length} entries, ${new Set(lateIds).size} distinct)`)
          assert.deepEqual([...lateIds].sort(), [...all].sort(), "the log holds exactly the events written")
          assertHealthy(late)
          assertHealthy(plain)

          clearInterval(sampler)
          sampler = undefined
          await sample()
          // A replica process spinning in the SDK's leaked loops (see the top) may never read its
          // IPC message: the summary then uses its last snapshot rather than waiting for ever
          // (seen in CI-mode runs, 2026-12-04: the test timed out here after the scenario passed).
          for (const r of [a, b]) {
            if (await settlesWithin(r.snapshot(), SNAPSHOT_MS) === "pending") {
              t.diagnostic(`${target}: ${r.name}'s process did not answer a snapshot within ${SNAPSHOT_MS / 1000} s; its figures below are from its last one`)
            }
          }
          const counted = samples.filter((s) => s.connections !== null).map((s) => s.connections)
          // a replica process's logs come as "LEVEL message cause" strings (replica-process.mjs)
          const pingFailures = (r) => r.logs.filter((l) => /Ping timeout|Pong id mismatch/.test(typeof l === "string" ? l : l.message + l.cause)).length
          t.diagnostic(
            `${target} summary: writes ${written.A.length} (A) + ${written.B.length} (B) = ${all.length} events ` +
              `(${ids("A", "after").length + ids("B", "after").length} after the restart) in ${(writeEnd / 1000).toFixed(1)} s; ` +
              `converged ${((convergedAt - writeEnd) / 1000).toFixed(1)} s after the last write; ` +
              `slowest local write ${(slowestWriteMs / 1000).toFixed(1)} s (${slowWrites} over ${SLOW_WRITE_MS / 1000} s); ` +
              (counted.length > 0 ? `open sockets (server side, ${counted.length} samples): min ${Math.min(...counted)}, max ${Math.max(...counted)}; ` : "open sockets (server side): not available; ") +
              `client side A: ${a.sockets.connects} connects, ${a.sockets.constructed} sockets made, ${a.sockets.opened} opened, ${a.sockets.closed} closed, ` +
              `${pingFailures(a)} ping failures; B: ${b.sockets.connects} connects, ${b.sockets.constructed} made, ${b.sockets.opened} opened, ` +
              `${b.sockets.closed} closed, ${pingFailures(b)} ping failures; total ${(elapsed() / 1000).toFixed(1)} s`
          )
          // The Worker has no server-wide connection count (each tenant is its own Durable
          // Object); there the client-side counts above are the record.
          if (EVSYNC_KIND !== "worker" || target !== "evsync") assert.ok(counted.length > 0, "no /healthz sample")
        } finally {
          if (sampler) clearInterval(sampler)
          // The SDK replicas' processes are killed (their runtime cannot be disposed: client bug #1);
          // the other replicas are stopped before their server goes away.
          const stops = await Promise.allSettled([...sdkReplicas, ...replicas].map((r) => r.stop({ timeoutMs: 2_000 })))
          for (const s of stops) if (s.status === "rejected") t.diagnostic(`replica stop: ${s.reason?.message ?? s.reason}`)
          await server?.stop({ signal: "SIGKILL" }).catch(() => {})
          rmSync(dataDir, { recursive: true, force: true })
        }
      }, {
        // Also run against the Worker (DO SQLite and D1). It was skipped there after a replica on
        // D1 once missed 16 of the other's 24 post-restart events within the 15 s the test then
        // allowed (2026-12-02). 2026-12-05, 18 runs on the Worker, every one passing: 4 on D1 on
        // an idle machine converged 3.1-4.6 s after the last write; 7 on D1 and 3 on DO SQLite with
        // a busy loop taking one of the 2 cores, 4.4-17.9 s; 4 on DO SQLite idle, 2.8-6.6 s
        // (native: 0.7 s). The time is the clients': during a run the two replica processes
        // each take a whole core (their leaked loops spinning, client bug #1) while workerd takes
        // ~7 %, and the trace (INTEROP_TRACE=1) shows Changes frames read late on the client's
        // old sockets. The Worker's restart takes seconds where the native server's takes
        // milliseconds, so more of the SDK's reconnects fail meanwhile (37-61 sockets made per
        // replica, against 29 natively) and more loops spin. The old 15 s would have failed 2 of
        // the 7 loaded D1 runs; CONVERGE_TIMEOUT_MS (45 s) holds them all, and the log's contents
        // are checked exactly either way, so nothing lost can pass as slow.
        timeout: DURATION_S * 1000 + 90_000
      })
    })
  }
})
