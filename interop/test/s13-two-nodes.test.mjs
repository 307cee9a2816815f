// Scenario 13: two evsync nodes on one PostgreSQL database (`--storage postgres`), unmodified
// Effect v3 replicas connected to different nodes. What one node commits reaches the replicas of
// the other live (LISTEN/NOTIFY, with a re-check of log heads when a notification is lost), the
// stored history is the same from either node, and a node killed with SIGKILL loses nothing: its
// replicas resume on the other node with no duplicate and no gap.
//
// The database is a throwaway PostgreSQL that interop/run.sh starts (scripts/pg-temp) and passes
// as INTEROP_POSTGRES_URL. Native server only: the Worker keeps its data in Durable Objects / D1.
import assert from "node:assert/strict"
import { createHash, randomBytes } from "node:crypto"
import { after, before, describe, it } from "node:test"
import { makeIdentity, makeJournal, notes } from "../src/replica.mjs"
import { assertHealthy, barrier, EVSYNC_KIND, receivedIds, scenario, startServer, tenant } from "./lib/harness.mjs"

const POSTGRES_URL = process.env.INTEROP_POSTGRES_URL
const sha = (s) => createHash("sha256").update(s).digest("hex")

const startNode = (options = {}) =>
  startServer("evsync", {
    ...options,
    env: { SYNC_STORAGE: "postgres", SYNC_POSTGRES_URL: POSTGRES_URL, SYNC_POSTGRES_RECHECK_MS: "1000" }
  })

const ready = async (node) => {
  // /readyz turns 200 once the node has migrated the database
  for (let i = 0; i < 300; i++) {
    const res = await fetch(node.httpUrl("/readyz")).catch(() => undefined)
    if (res?.status === 200) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`node ${node.address.port} never became ready; output:\n${node.output}`)
}

describe("S13 two nodes on one PostgreSQL", () => {
  if (EVSYNC_KIND === "worker") {
    scenario("evsync", "S13", "two nodes", () => {}, { notOnWorker: "multi-node PostgreSQL storage is the native server's" })
    return
  }
  if (!POSTGRES_URL) {
    if (process.env.CI === "true") throw new Error("CI=true: INTEROP_POSTGRES_URL is not set (interop/run.sh starts a PostgreSQL)")
    it("S13: two nodes", { skip: "INTEROP_POSTGRES_URL is not set (interop/run.sh starts a PostgreSQL with scripts/pg-temp)" }, () => {})
    return
  }
  describe("evsync", { concurrency: true }, () => {
    let one
    let two
    before(async () => {
      ;[one, two] = await Promise.all([startNode(), startNode()])
      await Promise.all([ready(one), ready(two)])
    })
    after(async () => {
      await Promise.allSettled([one?.dispose(), two?.dispose()])
    })

    scenario("evsync", "S13-both-ways", "writes on either node reach the replica on the other, live; a late joiner on either node gets all", async ({ replica }) => {
      const name = tenant("s13")
      const identity = makeIdentity()
      const a = await replica({ url: one.url(name), identity, name: "A@1" })
      const b = await replica({ url: two.url(name), identity, name: "B@2" })
      await Promise.all([a.waitReady(), b.waitReady()])
      const fromA = notes("a", 20)
      for (const note of fromA) await a.write(note)
      await b.waitForReceived(20)
      const fromB = notes("b", 20)
      for (const note of fromB) await b.write(note)
      await a.waitForReceived(20)
      await barrier(a, [b])
      assert.deepEqual(receivedIds(b), fromA.map((n) => n.id))
      assert.deepEqual(receivedIds(a), fromB.map((n) => n.id))
      assert.equal(a.sockets.remoteIds[0], b.sockets.remoteIds[0], "one remoteId per tenant on every node")

      const late1 = await replica({ url: one.url(name), identity, name: "Late@1" })
      const late2 = await replica({ url: two.url(name), identity, name: "Late@2" })
      await Promise.all([late1.waitForReceived(41), late2.waitForReceived(41)])
      await barrier(b, [late1, late2])
      assert.deepEqual(receivedIds(late1), receivedIds(late2), "the same history from either node")
      assert.equal(new Set(receivedIds(late1)).size, 40)
      for (const r of [a, b, late1, late2]) assertHealthy(r)
    })

    scenario("evsync", "S13-large", "a 1.5 MB event written on one node reaches the other intact", async ({ replica }) => {
      const name = tenant("s13l")
      const identity = makeIdentity()
      const big = randomBytes(1_125_000).toString("base64")
      const a = await replica({ url: one.url(name), identity, name: "A@1" })
      const b = await replica({ url: two.url(name), identity, name: "B@2" })
      await Promise.all([a.waitReady(), b.waitReady()])
      await a.write({ id: "big-1", text: big, n: 1 })
      await a.write({ id: "small-after", text: "after the big one", n: 2 })
      await b.waitForReceived(2, { timeoutMs: 30_000 })
      assert.deepEqual(receivedIds(b), ["big-1", "small-after"])
      assert.equal(sha(b.received[0].text), sha(big))
      const late = await replica({ url: two.url(name), identity, name: "Late@2" })
      await late.waitForReceived(2, { timeoutMs: 30_000 })
      assert.equal(sha(late.received[0].text), sha(big))
      for (const r of [a, b, late]) assertHealthy(r)
    })

    scenario("evsync", "S13-burst", "2,000 events written quickly on one node arrive on the other in order, exactly once", async ({ replica, t }) => {
      const name = tenant("s13b")
      const identity = makeIdentity()
      const a = await replica({ url: one.url(name), identity, name: "A@1" })
      const b = await replica({ url: two.url(name), identity, name: "B@2" })
      await Promise.all([a.waitReady(), b.waitReady()])
      const burst = notes("burst", 2000, "some text of an ordinary event")
      const started = performance.now()
      await Promise.all(burst.map((note) => a.write(note)))
      await b.waitForReceived(2000, { timeoutMs: 90_000 })
      t.diagnostic(`2,000 events across nodes in ${Math.round(performance.now() - started)} ms`)
      await barrier(a, [b])
      const localOrder = a.runs.filter((r) => r.local && r.id.startsWith("burst-")).map((r) => r.id)
      assert.deepEqual(receivedIds(b), localOrder, "B handled the burst in A's order, once")
      for (const r of [a, b]) assertHealthy(r)
    }, { timeout: 180_000 })
  })

  // Alone (it kills a node): its own pair of nodes.
  describe("evsync", () => {
    scenario("evsync", "S13-kill", "a node killed with SIGKILL: its replicas resume on the other node, nothing lost, nothing twice", async ({ replica, t }) => {
      let one = await startNode()
      const two = await startNode()
      const nodes = [one, two]
      try {
        await Promise.all([ready(one), ready(two)])
        const name = tenant("s13k")
        const identity = makeIdentity()
        const journalB = makeJournal()
        const a = await replica({ url: two.url(name), identity, name: "A@2" })
        const b = await replica({ url: one.url(name), identity, journal: journalB, name: "B@1", allowDisconnect: true })
        await Promise.all([a.waitReady(), b.waitReady()])
        const before = notes("before", 30)
        for (const note of before) await a.write(note)
        await b.waitForReceived(30)

        // node 1 dies under B; A keeps writing on node 2
        const port = one.address.port
        await one.stop({ signal: "SIGKILL" })
        const during = notes("during", 30)
        for (const note of during) await a.write(note)

        // B's app rebuilds its remote (Effect v3's client never reconnects) on node 2
        await b.stop()
        const b2 = await replica({ url: two.url(name), identity, journal: journalB, name: "B2@2" })
        await b2.waitFor(() => receivedIds(b2).includes("during-29"), { what: "during-29 on B2", timeoutMs: 30_000 })
        await b2.waitReady()
        await b2.write({ id: "from-b2", text: "written on node 2 after the kill", n: 1 })
        await a.waitFor(() => receivedIds(a).includes("from-b2"), { what: "from-b2 on A" })

        // node 1 comes back on the same port: a late joiner there sees the one history
        one = await startNode({ port })
        nodes.push(one)
        await ready(one)
        const late = await replica({ url: one.url(name), identity, name: "Late@1" })
        await late.waitForReceived(61)
        await barrier(a, [late, b2])
        const history = [...before, ...during].map((n) => n.id)
        assert.deepEqual(receivedIds(late).slice(0, 60), history, "every event once, in order")
        assert.ok(receivedIds(late).includes("from-b2"))
        // B2 got exactly what B missed (the memory journal's last seen entry comes once more: S2)
        const b2Ids = receivedIds(b2).filter((id) => id !== "before-29")
        assert.deepEqual(b2Ids, during.map((n) => n.id), "B2: only what it missed, no duplicate")
        for (const r of [a, b2, late]) assertHealthy(r)
        t.diagnostic(`node 1 killed and restarted on port ${port}; history of ${history.length + 1} events intact`)
      } finally {
        await Promise.allSettled(nodes.map((node) => node.dispose()))
      }
    }, { timeout: 180_000 })
  })
})
