// Scenario 6 (auth; Effect's reference server has none, so it runs against evsync only):
// `protocols: "sync-auth.<token>"` works, an `Authorization: Bearer` header works, a wrong token
// fails to connect with 401 and nothing syncs through it.
import assert from "node:assert/strict"
import { randomBytes } from "node:crypto"
import { request } from "node:http"
import { after, before, describe } from "node:test"
import { makeIdentity } from "../src/replica.mjs"
import { assertHealthy, barrier, receivedIds, scenario, startServer, supportsAuth, TARGETS, tenant } from "./lib/harness.mjs"

/** A raw WebSocket upgrade request; resolves with the HTTP status and headers of the answer. */
const upgrade = (server, path, headers) =>
  new Promise((resolve, reject) => {
    const req = request({
      host: server.address.host,
      port: server.address.port,
      path,
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": randomBytes(16).toString("base64"),
        ...headers
      }
    })
    req.on("upgrade", (res, socket) => {
      socket.destroy()
      resolve({ status: res.statusCode, headers: res.headers })
    })
    req.on("response", (res) => {
      let body = ""
      res.on("data", (c) => (body += c))
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body }))
    })
    req.on("error", reject)
    req.end()
  })

describe("S6 auth", () => {
  for (const target of TARGETS) {
    describe(target, { concurrency: true }, () => {
      const tenantA = tenant("s6a")
      const tokens = { [tenantA]: "token-a", "*": "token-star" }
      let server
      before(async () => {
        if (supportsAuth(target)) server = await startServer(target, { env: { SYNC_AUTH_TOKENS: JSON.stringify(tokens) } })
      })
      after(() => server?.dispose())

      scenario(target, "S6-subprotocol", 'protocols: "sync-auth.<token>" connects and syncs', async ({ replica }) => {
        const url = server.url(tenantA)
        const identity = makeIdentity()
        const a = await replica({ url, identity, name: "A", protocols: "sync-auth.token-a" })
        const b = await replica({ url, identity, name: "B", protocols: ["sync-auth.token-a"] })
        await Promise.all([a.waitReady(), b.waitReady()])
        await a.write({ id: "p1", text: "via subprotocol", n: 1 })
        await b.waitForReceived(1)
        await barrier(b, [a])
        assert.deepEqual(receivedIds(b), ["p1"])
        // the server selected the protocol that carried the token (browsers require the echo)
        assert.deepEqual(a.sockets.selectedProtocols, ["sync-auth.token-a"])
        assertHealthy(a)
        assertHealthy(b)
      }, { auth: true })

      scenario(target, "S6-bearer", "an Authorization: Bearer header connects and syncs", async ({ replica }) => {
        const url = server.url(tenant("s6b")) // falls back to the "*" token
        const identity = makeIdentity()
        const headers = { Authorization: "Bearer token-star" }
        const a = await replica({ url, identity, name: "A", headers })
        const b = await replica({ url, identity, name: "B", headers })
        await Promise.all([a.waitReady(), b.waitReady()])
        await a.write({ id: "h1", text: "via header", n: 1 })
        await b.waitForReceived(1)
        await barrier(b, [a])
        assert.deepEqual(receivedIds(b), ["h1"])
        assertHealthy(a)
        assertHealthy(b)
      }, { auth: true })

      scenario(target, "S6-wrong-token", "a wrong token gets 401, never connects, and nothing syncs through it", async ({ replica }) => {
        // the HTTP contract: 401 + WWW-Authenticate: Bearer, for every kind of wrong credential
        for (const headers of [
          { "Sec-WebSocket-Protocol": "sync-auth.wrong" },
          { Authorization: "Bearer wrong" },
          { "Sec-WebSocket-Protocol": "sync-auth.token-star" }, // valid elsewhere, not for tenantA
          {}
        ]) {
          const res = await upgrade(server, `/event-log/${tenantA}`, headers)
          assert.equal(res.status, 401, `status for ${JSON.stringify(headers)}`)
          assert.match(String(res.headers["www-authenticate"]), /^Bearer/i)
        }

        const url = server.url(tenantA)
        const identity = makeIdentity()
        const good = await replica({ url, identity, name: "Good", protocols: "sync-auth.token-a" })
        await good.waitReady()
        await good.write({ id: "good-1", text: "authorised", n: 1 })

        const wrongProtocol = await replica({ url, identity, name: "WrongProtocol", protocols: "sync-auth.wrong" })
        const wrongHeader = await replica({ url, identity, name: "WrongHeader", headers: { Authorization: "Bearer wrong" } })
        for (const w of [wrongProtocol, wrongHeader]) {
          await w.write({ id: `from-${w.name}`, text: "must never reach the server", n: 2 })
        }
        // Effect retries a failed handshake (exponential backoff from 100 ms): wait for three
        // refused attempts each, all answered 401
        for (const w of [wrongProtocol, wrongHeader]) {
          await w.waitFor(() => w.sockets.errors.filter((e) => /401/.test(e)).length >= 3, {
            what: "three 401 handshakes"
          })
          assert.equal(w.sockets.opened, 0, `${w.name}: no socket ever opened`)
          assert.deepEqual(w.sockets.remoteIds, [], `${w.name}: no Hello`)
          assert.ok(w.sockets.errors.every((e) => /401/.test(e)), `${w.name}: every attempt refused with 401: ${w.sockets.errors}`)
          assert.deepEqual(w.runs.filter((r) => !r.local), [], `${w.name}: received nothing`)
        }

        // an authorised late joiner sees the authorised event and nothing from the refused ones
        const late = await replica({ url, identity, name: "Late", headers: { Authorization: "Bearer token-a" } })
        await late.waitFor(() => receivedIds(late).includes("good-1"), { what: "good-1 on Late" })
        await barrier(good, [late])
        assert.deepEqual(receivedIds(late), ["good-1"])
        assertHealthy(good)
        assertHealthy(late)
      }, { auth: true })
    })
  }
})
