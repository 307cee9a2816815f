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
import { createServer, connect } from "node:net"
import { after, before, describe, it } from "node:test"
import { makeIdentity, notes } from "../src/replica.mjs"
import { assertHealthy, barrier, EVSYNC_KIND, receivedIds, scenario, startServer, tenant } from "./lib/harness.mjs"

const POSTGRES_URL = process.env.INTEROP_POSTGRES_URL
const sha = (s) => createHash("sha256").update(s).digest("hex")

const startNode = (options = {}) =>
  startServer("evsync", {
    ...options,
    env: { SYNC_STORAGE: "postgres", SYNC_POSTGRES_URL: POSTGRES_URL, SYNC_POSTGRES_RECHECK_MS: "1000" }
  })

/**
 * A TCP load balancer on loopback: each connection goes to the first node (of `ports()`) that
 * accepts it, as a balancer with health checks would send it. `routed` lists the port each
 * connection reached.
 */
const startBalancer = async (ports) => {
  const routed = []
  const sockets = new Set()
  const server = createServer((client) => {
    sockets.add(client)
    client.on("close", () => sockets.delete(client))
    client.pause()
    const tryPort = (candidates) => {
      if (candidates.length === 0) return client.destroy()
      const upstream = connect(candidates[0], "127.0.0.1")
      upstream.once("error", () => tryPort(candidates.slice(1)))
      upstream.once("connect", () => {
        routed.push(candidates[0])
        sockets.add(upstream)
        upstream.removeAllListeners("error")
        upstream.on("error", () => client.destroy())
        client.on("error", () => upstream.destroy())
        upstream.on("close", () => { sockets.delete(upstream); client.destroy() })
        client.on("close", () => upstream.destroy())
        client.pipe(upstream)
        upstream.pipe(client)
        client.resume()
      })
    }
    tryPort(ports())
  })
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address()
  return {
    routed,
    url: (tenantName) => `ws://127.0.0.1:${port}/event-log/${tenantName}`,
    close: () => {
      server.close()
      for (const s of sockets) s.destroy()
    }
  }
}

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

  // Alone (it kills a node): its own pair of nodes, behind a load balancer.
  describe("evsync", () => {
    scenario("evsync", "S13-kill", "a node killed with SIGKILL: its replica resumes on the other node through the load balancer, nothing lost, nothing twice", async ({ replica, t }) => {
      let one = await startNode()
      const two = await startNode()
      const nodes = [one, two]
      const balancer = await startBalancer(() => [one.address.port, two.address.port])
      try {
        await Promise.all([ready(one), ready(two)])
        const name = tenant("s13k")
        const identity = makeIdentity()
        // A on node 2 directly; B through the balancer, which sends it to node 1 while node 1 is up.
        // B reconnects as apps do (Effect v3's client never does by itself; S8's workaround), and
        // pings are off as in S8 (the dead connection's pinger would ping on the new socket).
        const a = await replica({ url: two.url(name), identity, name: "A@2" })
        const b = await replica({ url: balancer.url(name), identity, name: "B@lb", reconnectWorkaround: true, allowDisconnect: true, disablePing: true })
        await Promise.all([a.waitReady(), b.waitReady()])
        assert.deepEqual(balancer.routed, [one.address.port], "B reached node 1 first")
        const before = notes("before", 30)
        for (const note of before) await a.write(note)
        await b.waitForReceived(30)

        // node 1 dies under B; A keeps writing on node 2, B writes while it is cut off
        const port = one.address.port
        await one.stop({ signal: "SIGKILL" })
        await b.waitFor(() => b.sockets.closed >= 1, { what: "B's socket closing" })
        const during = notes("during", 30)
        for (const note of during) await a.write(note)
        await b.write({ id: "from-b", text: "written by B while its node was down", n: 1 })

        // B reconnects through the balancer, which now reaches node 2
        await b.waitReady(2, { timeoutMs: 30_000 })
        assert.equal(balancer.routed.at(-1), two.address.port, "B resumed on node 2")
        assert.equal(b.sockets.remoteIds.at(-1), b.sockets.remoteIds[0], "the same remoteId on the other node")
        await b.waitFor(() => receivedIds(b).includes("during-29"), { what: "during-29 on B", timeoutMs: 30_000 })
        await a.waitFor(() => receivedIds(a).includes("from-b"), { what: "from-b on A" })

        // node 1 comes back on the same port: a late joiner there sees the one history
        one = await startNode({ port })
        nodes.push(one)
        await ready(one)
        const late = await replica({ url: one.url(name), identity, name: "Late@1" })
        await late.waitForReceived(61)
        await barrier(a, [late, b])
        const history = [...before, ...during].map((n) => n.id)
        const lateIds = receivedIds(late)
        assert.deepEqual(lateIds.filter((id) => id !== "from-b"), history, "every event once, in order")
        assert.equal(lateIds.filter((id) => id === "from-b").length, 1)
        // B: everything once, except the last entry it had seen, which the memory journal
        // handles once more when the server re-sends it (sequence >= startSequence; see S2, S8)
        const bIds = receivedIds(b)
        assert.deepEqual(bIds.filter((id) => id !== "before-29"), history.filter((id) => id !== "before-29"), "B: no gap, nothing else twice")
        assert.deepEqual(receivedIds(a), ["from-b"], "A got B's write once")
        for (const r of [a, late]) assertHealthy(r)
        t.diagnostic(`node 1 killed and restarted on port ${port}; B resumed on node 2; history of ${history.length + 1} events intact`)
      } finally {
        balancer.close()
        await Promise.allSettled(nodes.map((node) => node.dispose()))
      }
    }, { timeout: 180_000 })
  })
})
