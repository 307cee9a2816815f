// V6: auth (PROTOCOL-V4.md §2.3, §6.6).
// - Session auth, on every target: a raw RpcClient.make(EventLogRemoteRpcs) client (src/raw-client.mjs)
//   sends hand-made requests. An Authenticate for a publicKey whose signing key is already bound
//   (by a real replica), signed with another key, is Forbidden, whether it names the other key or
//   the bound one; requests before any Authenticate (WriteSingle, Changes) are Forbidden and store
//   nothing. The same hand-made Authenticate with the identity's own key succeeds: the refusals are
//   the server's decisions, not a malformed request.
// - Tenant tokens, evsync only (Effect's reference server has no HTTP auth): the
//   `sync-auth.<token>` subprotocol connects (and the 101 selects it), `Authorization: Bearer`
//   connects, and a wrong or missing token gets 401 at the upgrade and never connects.
import assert from "node:assert/strict"
import { randomBytes } from "node:crypto"
import { request } from "node:http"
import { after, before, describe } from "node:test"
import { makeAuthenticate, openRawClient, randomSigningKey, signingKeyOf, writeEntriesData } from "../src/raw-client.mjs"
import { makeIdentity, publicKeyOf } from "../src/replica.mjs"
import {
  assertHealthy,
  barrier,
  changesChunks,
  receivedIds,
  scenario,
  startServer,
  supportsAuth,
  TARGETS,
  tenant,
  v4Path,
  withServerPerTarget
} from "./lib/harness.mjs"

const FORBIDDEN = { _tag: "EventLogProtocolError", code: "Forbidden" }

/** Asserts that a raw call was refused with an EventLogProtocolError Forbidden. */
const assertForbidden = (result, what) => {
  assert.equal(result.ok, false, `${what}: expected Forbidden, got success ${JSON.stringify(result.value)}`)
  assert.equal(result.error?._tag, FORBIDDEN._tag, `${what}: ${result.cause}`)
  assert.equal(result.error.code, FORBIDDEN.code, `${what}: ${result.error.code}: ${result.error.message}`)
}

/** Runs fn(raw) with a raw client on url, always closing it. */
const withRaw = async (url, fn, options) => {
  const raw = await openRawClient(url, options)
  try {
    return await fn(raw)
  } finally {
    await raw.close()
  }
}

describe("V6 session auth", () => {
  withServerPerTarget((target, server) => {
    scenario(target, "V6-wrong-signing-key", "an Authenticate signed with another key than the bound one is Forbidden", async ({ replica, t }) => {
      const url = server.url(tenant("v6k"))
      const identity = await makeIdentity()
      const publicKey = publicKeyOf(identity)
      // a real replica binds the identity's signing key (first use wins)
      const owner = await replica({ url, identity, name: "Owner" })
      await owner.waitAuthenticated()
      await owner.write({ id: "owned-1", text: "the owner's", n: 1 })
      await owner.waitFor(() => owner.stats.acks >= 1, { what: "the Ack of owned-1" })

      const own = signingKeyOf(identity)
      const intruder = randomSigningKey()
      await withRaw(url, async (raw) => {
        // 1. another key, named as the signing key: the binding says otherwise
        let hello = await raw.hello()
        assert.ok(hello.ok, `Hello: ${hello.cause}`)
        assert.equal(Buffer.from(hello.value.remoteId).toString("hex"), owner.remoteId, "the tenant's remoteId")
        let result = await raw.authenticate(await makeAuthenticate({
          hello: hello.value,
          publicKey,
          signingPublicKey: intruder.publicKey,
          signer: intruder
        }))
        assertForbidden(result, "Authenticate with an unbound signing key")
        t.diagnostic(`another signing key: ${result.error.code} "${result.error.message}"`)

        // 2. the bound key named, signed with another one
        hello = await raw.hello() // a challenge is consumed by every Authenticate
        result = await raw.authenticate(await makeAuthenticate({
          hello: hello.value,
          publicKey,
          signingPublicKey: own.publicKey,
          signer: intruder
        }))
        assertForbidden(result, "Authenticate naming the bound key, signed with another")
        t.diagnostic(`bound key, wrong signature: ${result.error.code} "${result.error.message}"`)

        // 3. still unauthenticated on this connection: its requests for the identity are Forbidden
        assertForbidden(await raw.writeSingle(await writeEntriesData({ publicKey })), "WriteSingle after failed Authenticates")
        assertForbidden(await raw.changesHead({ publicKey }), "Changes after failed Authenticates")

        // 4. control: the same hand-made request signed with the identity's own key is accepted,
        //    and then the connection may read the identity's store
        hello = await raw.hello()
        result = await raw.authenticate(await makeAuthenticate({
          hello: hello.value,
          publicKey,
          signingPublicKey: own.publicKey,
          signer: own
        }))
        assert.ok(result.ok, `Authenticate with the identity's own key: ${result.cause}`)
        const head = await raw.changesHead({ publicKey })
        assert.ok(head.ok, `Changes after Authenticate: ${head.cause}`)
        assert.equal(head.value._tag, "Some", "a Changes value (owned-1)")
        assert.equal(head.value.value._tag, "Single", "owned-1 fits one Single value")
      })

      // the binding is unchanged: the owner's identity still authenticates and syncs
      const again = await replica({ url, identity, name: "OwnerAgain" })
      await again.waitForReceived(1)
      assert.deepEqual(receivedIds(again), ["owned-1"])
      assertHealthy(owner)
      assertHealthy(again)
    })

    scenario(target, "V6-unauthenticated", "WriteSingle and Changes before Authenticate are Forbidden and store nothing", async ({ replica, t }) => {
      const url = server.url(tenant("v6u"))
      const identity = await makeIdentity()
      const publicKey = publicKeyOf(identity)
      await withRaw(url, async (raw) => {
        // before any Hello
        const first = await raw.writeSingle(await writeEntriesData({ publicKey, count: 3 }))
        assertForbidden(first, "WriteSingle before Hello and Authenticate")
        t.diagnostic(`WriteSingle before Authenticate: ${first.error.code} "${first.error.message}"`)
        // after a Hello, still without Authenticate
        const hello = await raw.hello()
        assert.ok(hello.ok, `Hello: ${hello.cause}`)
        assertForbidden(await raw.writeSingle(await writeEntriesData({ publicKey })), "WriteSingle after Hello, before Authenticate")
        assertForbidden(await raw.changesHead({ publicKey }), "Changes before Authenticate")
      })

      // nothing was stored: the identity's real replicas see only their own barrier
      const a = await replica({ url, identity, name: "A" })
      const b = await replica({ url, identity, name: "B" })
      await Promise.all([a.waitAuthenticated(), b.waitAuthenticated()])
      await barrier(a, [b])
      assert.deepEqual(receivedIds(b), [], "B: nothing from the refused writes")
      assert.equal(changesChunks(b), 1, `B: one Changes chunk (A's barrier); ${b.describe()}`)
      // a late joiner reads the whole store from sequence 0: the barrier only (a stored refused
      // batch would come first and fail to decrypt, which assertHealthy would catch)
      const late = await replica({ url, identity, name: "Late" })
      await late.waitForReceived(1)
      assert.equal(late.stats.changesRequests[0].startSequence, 0)
      await barrier(a, [late])
      assert.equal(late.received.length, 2, `Late: the two barriers only; ${late.describe()}`)
      assertHealthy(a)
      assertHealthy(b)
      assertHealthy(late)
    })
  })
})

/** A raw WebSocket upgrade request; resolves with the HTTP status and headers of the answer. */
const upgrade = (address, path, headers) =>
  new Promise((resolve, reject) => {
    const req = request({
      host: address.host,
      port: address.port,
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

describe("V6 tenant tokens", () => {
  for (const target of TARGETS) {
    describe(target, { concurrency: true }, () => {
      const tenantA = tenant("v6a")
      const tokens = { [tenantA]: "token-a", "*": "token-star" }
      let server
      before(async () => {
        if (supportsAuth(target)) server = await startServer(target, { env: { SYNC_AUTH_TOKENS: JSON.stringify(tokens) } })
      })
      after(() => server?.dispose())

      scenario(target, "V6-token-subprotocol", 'protocols: "sync-auth.<token>" connects, is selected by the 101, and syncs', async ({ replica }) => {
        const url = server.url(tenantA)
        const identity = await makeIdentity()
        const a = await replica({ url, identity, name: "A", protocols: "sync-auth.token-a" })
        const b = await replica({ url, identity, name: "B", protocols: ["sync-auth.token-a"] })
        await Promise.all([a.waitAuthenticated(), b.waitAuthenticated()])
        await a.write({ id: "p1", text: "via subprotocol", n: 1 })
        await b.waitForReceived(1)
        await barrier(b, [a])
        assert.deepEqual(receivedIds(b), ["p1"])
        // the server selected the protocol that carried the token (browsers require the echo)
        assert.deepEqual(a.stats.selectedProtocols, ["sync-auth.token-a"])
        assert.deepEqual(b.stats.selectedProtocols, ["sync-auth.token-a"])
        assertHealthy(a)
        assertHealthy(b)
      }, { auth: true })

      scenario(target, "V6-token-bearer", "an Authorization: Bearer header connects and syncs", async ({ replica }) => {
        const url = server.url(tenant("v6b")) // no token of its own: the "*" token
        const identity = await makeIdentity()
        const headers = { Authorization: "Bearer token-star" }
        const a = await replica({ url, identity, name: "A", headers })
        const b = await replica({ url, identity, name: "B", headers })
        await Promise.all([a.waitAuthenticated(), b.waitAuthenticated()])
        await a.write({ id: "h1", text: "via header", n: 1 })
        await b.waitForReceived(1)
        await barrier(b, [a])
        assert.deepEqual(receivedIds(b), ["h1"])
        assertHealthy(a)
        assertHealthy(b)
      }, { auth: true })

      scenario(target, "V6-token-wrong", "a wrong or missing token gets 401 at the upgrade and never connects", async ({ replica, t }) => {
        // the HTTP contract of /v4: 401 + WWW-Authenticate: Bearer, for every kind of wrong credential
        for (const headers of [
          { "Sec-WebSocket-Protocol": "sync-auth.wrong" },
          { Authorization: "Bearer wrong" },
          { "Sec-WebSocket-Protocol": "sync-auth.token-star" }, // valid elsewhere, not for tenantA
          {}
        ]) {
          const res = await upgrade(server.address, v4Path(tenantA), headers)
          assert.equal(res.status, 401, `status for ${JSON.stringify(headers)}`)
          assert.match(String(res.headers["www-authenticate"]), /^Bearer/i)
        }

        const url = server.url(tenantA)
        const identity = await makeIdentity()
        const good = await replica({ url, identity, name: "Good", protocols: "sync-auth.token-a" })
        await good.waitAuthenticated()
        await good.write({ id: "good-1", text: "authorised", n: 1 })

        const refused = {
          WrongProtocol: { protocols: "sync-auth.wrong" },
          WrongHeader: { headers: { Authorization: "Bearer wrong" } },
          NoToken: {}
        }
        for (const [name, credentials] of Object.entries(refused)) {
          const w = await replica({ url, identity, name, ...credentials, expectRemoteFailure: true })
          await w.write({ id: `from-${name}`, text: "must never reach the server", n: 2 })
          // what the app sees: the upgrade is refused with 401, and Effect's remote fails for good
          // (EventLogRemoteError of its Hello, caused by a SocketOpenError; it does not retry)
          await w.waitFor(() => w.remoteFailure !== undefined, { what: "the remote failing" })
          assert.deepEqual(w.stats.statusCodes, [401], `${name}: one upgrade, refused with 401; ${w.describe()}`)
          assert.match(w.stats.errors.join("\n"), /Unexpected server response: 401/)
          assert.match(w.remoteFailure, /EventLogRemoteError[\s\S]*SocketOpenError/, `${name}: ${w.remoteFailure}`)
          assert.equal(w.stats.opened, 0, `${name}: no socket ever opened`)
          assert.equal(w.stats.hellos, 0, `${name}: no Hello`)
          assert.deepEqual(receivedIds(w), [], `${name}: received nothing`)
        }
        t.diagnostic("a refused upgrade (401) fails Effect's remote for good: EventLogRemoteError (hello) <- SocketOpenError")

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
