// Scenario 10 (scoped tokens, issue 16; Effect's reference server has no auth, so evsync only):
// signed tokens minted by an app's backend (docs/examples/mint-token.ts, run with tsx) and by
// `evsync token mint`, used by the real Effect v3 client:
// - an observer replica with a read-only token receives everything, and the empty WriteEntries
//   Effect sends after Hello is acknowledged;
// - the same observer writing is disconnected (1008) and nothing it wrote is stored;
// - an expired token is refused at connect (401), and an open socket is closed (1008) when its
//   token expires;
// - `evsync admin revoke` (the admin API) closes open sockets and refuses tokens minted before.
import assert from "node:assert/strict"
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { request } from "node:http"
import { join } from "node:path"
import { promisify } from "node:util"
import { after, before, describe } from "node:test"
import { makeIdentity } from "../src/replica.mjs"
import {
  EVSYNC_BIN,
  INTEROP_DIR,
  REPO_DIR,
  assertHealthy,
  barrier,
  receivedIds,
  scenario,
  startServer,
  supportsAuth,
  TARGETS,
  tenant
} from "./lib/harness.mjs"

const run = promisify(execFile)
const SECRET = randomBytes(32).toString("base64url")
const ADMIN = randomBytes(24).toString("base64url")
const TSX = join(INTEROP_DIR, "node_modules/.bin/tsx")
const MINT_EXAMPLE = join(REPO_DIR, "docs/examples/mint-token.ts")

/** A token from the TypeScript example (what an app's backend does). */
const mintTs = async (tenantName, { readOnly = false, expiresInMs } = {}) => {
  const args = [MINT_EXAMPLE, tenantName, readOnly ? "ro" : "rw", ...(expiresInMs === undefined ? [] : [String(expiresInMs)])]
  const { stdout } = await run(TSX, args, { env: { ...process.env, SYNC_TOKEN_SECRET: SECRET } })
  return stdout.trim()
}

/** A token from `evsync token mint`. */
const mintCli = async (tenantName, extra = []) => {
  const { stdout } = await run(EVSYNC_BIN, ["token", "mint", "--tenant", tenantName, ...extra], {
    env: { ...process.env, SYNC_TOKEN_SECRET: SECRET }
  })
  return stdout.trim()
}

/** The status of a WebSocket upgrade to `tenantName` with `token` as a Bearer header. */
const upgradeStatus = (server, tenantName, token) =>
  new Promise((resolve, reject) => {
    const req = request({
      host: server.address.host,
      port: server.address.port,
      path: `/event-log/${tenantName}`,
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": randomBytes(16).toString("base64"),
        Authorization: `Bearer ${token}`
      }
    })
    req.on("upgrade", (res, socket) => {
      socket.destroy()
      resolve(res.statusCode)
    })
    req.on("response", (res) => {
      res.resume()
      resolve(res.statusCode)
    })
    req.on("error", reject)
    req.end()
  })

/** Waits until the server acknowledged a write of `count` entries on `replica`. */
const acked = (replica, count) =>
  replica.waitFor(() => replica.sockets.acks.some((a) => a.length === count), { what: `an Ack of ${count} entries` })

// Generous: the ws library reports a close once the TCP connection ends, which behind
// `wrangler dev` can take until its 30 s closing-handshake timeout.
const closedWith = (replica, code) =>
  replica.waitFor(() => replica.sockets.closeCodes.includes(code), { what: `a close with ${code}`, timeoutMs: 40_000 })

describe("S10 scoped tokens", () => {
  for (const target of TARGETS) {
    describe(target, { concurrency: true }, () => {
      let server
      before(async () => {
        if (supportsAuth(target)) {
          server = await startServer(target, { env: { SYNC_TOKEN_SECRET: SECRET, SYNC_ADMIN_TOKEN: ADMIN } })
        }
      })
      after(() => server?.dispose())

      scenario(target, "S10-observer", "a read-only replica receives everything; its post-Hello empty write is acked", async ({ replica }) => {
        const t = tenant("s10o")
        const url = server.url(t)
        const identity = makeIdentity()
        const writer = await replica({ url, identity, name: "Writer", protocols: `sync-auth.${await mintTs(t)}` })
        const readOnly = await mintTs(t, { readOnly: true })
        const observer = await replica({ url, identity, name: "Observer", protocols: `sync-auth.${readOnly}` })
        await Promise.all([writer.waitReady(), observer.waitReady()])
        // Effect uploads its (empty) journal right after Hello: a read-only token may, and is acked.
        assert.ok(observer.sockets.acks.some((a) => a.length === 0), `empty write acked: ${observer.describe()}`)
        for (let n = 1; n <= 3; n++) await writer.write({ id: `w${n}`, text: "from the writer", n })
        await observer.waitForReceived(3)
        await barrier(writer, [observer])
        assert.deepEqual(receivedIds(observer), ["w1", "w2", "w3"])
        assert.deepEqual(observer.sockets.selectedProtocols, [`sync-auth.${readOnly}`])
        assertHealthy(writer)
        assertHealthy(observer)
      }, { auth: true })

      scenario(target, "S10-observer-writes", "a read-only replica that writes is disconnected with 1008 and nothing it wrote is stored", async ({ replica }) => {
        const t = tenant("s10w")
        const url = server.url(t)
        const identity = makeIdentity()
        const writer = await replica({ url, identity, name: "Writer", headers: { Authorization: `Bearer ${await mintCli(t)}` } })
        const readOnly = await mintCli(t, ["--read-only"])
        const observer = await replica({ url, identity, name: "Observer", protocols: `sync-auth.${readOnly}`, allowDisconnect: true })
        await Promise.all([writer.waitReady(), observer.waitReady()])
        await writer.write({ id: "before", text: "from the writer", n: 1 })
        await observer.waitForReceived(1)
        await observer.write({ id: "forbidden", text: "must not be stored", n: 2 })
        await closedWith(observer, 1008)
        // A late joiner with full rights sees the writer's notes and never the observer's.
        const late = await replica({ url, identity, name: "Late", protocols: `sync-auth.${await mintTs(t)}` })
        await late.waitReady()
        await barrier(writer, [late])
        assert.deepEqual(receivedIds(late), ["before"])
        assertHealthy(writer)
        assertHealthy(late)
      }, { auth: true })

      scenario(target, "S10-expiry", "an expired token is refused at connect; an open socket closes (1008) when its token expires", async ({ replica }) => {
        const t = tenant("s10e")
        assert.equal(await upgradeStatus(server, t, await mintTs(t, { expiresInMs: -1 })), 401)
        assert.equal(await upgradeStatus(server, t, await mintTs(t, { expiresInMs: 60_000 })), 101)
        const url = server.url(t)
        const identity = makeIdentity()
        const lasting = await replica({ url, identity, name: "Lasting", protocols: `sync-auth.${await mintTs(t)}` })
        // Long enough to open and say Hello on a loaded machine (minting runs tsx, ~1 s).
        const short = await mintTs(t, { expiresInMs: 8_000 })
        const expiring = await replica({ url, identity, name: "Expiring", protocols: `sync-auth.${short}`, allowDisconnect: true })
        await Promise.all([lasting.waitReady(), expiring.waitForHello()])
        await closedWith(expiring, 1008)
        assert.equal(expiring.sockets.remoteIds.length, 1, "it was open before it expired")
        assert.equal(await upgradeStatus(server, t, short), 401, "the expired token no longer connects")
        // The socket with a lasting token still works: its write is acknowledged.
        await lasting.write({ id: "still-open", text: "after the other expired", n: 1 })
        await acked(lasting, 1)
        assertHealthy(lasting)
      }, { auth: true })

      scenario(target, "S10-revoke", "evsync admin revoke closes open sockets and refuses older tokens; newer ones connect", async ({ replica }) => {
        const t = tenant("s10r")
        const url = server.url(t)
        const identity = makeIdentity()
        const old = await mintTs(t)
        const a = await replica({ url, identity, name: "A", protocols: `sync-auth.${old}`, allowDisconnect: true })
        await a.waitReady()
        await a.write({ id: "kept", text: "written before the revocation", n: 1 })
        await acked(a, 1)
        const { stdout } = await run(EVSYNC_BIN, ["admin", "--url", server.httpUrl(""), "revoke", t], {
          env: { ...process.env, SYNC_ADMIN_TOKEN: ADMIN }
        })
        assert.match(stdout, /revoked: .* 1 connection\(s\) closed/)
        await closedWith(a, 1008)
        assert.equal(await upgradeStatus(server, t, old), 401, "a token minted before is refused")
        const fresh = await mintTs(t)
        const b = await replica({ url, identity, name: "B", protocols: `sync-auth.${fresh}` })
        await b.waitReady()
        await b.waitForReceived(1)
        assert.deepEqual(receivedIds(b), ["kept"], "the tenant's data is untouched")
        assertHealthy(b)
      }, { auth: true })
    })
  }
})
