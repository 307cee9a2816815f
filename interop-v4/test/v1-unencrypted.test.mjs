// V1 in unencrypted mode (EventLogRemote.layerUnencrypted, PROTOCOL-V4.md §3.2, §6.1).
// - V1-unencrypted: at the unencrypted endpoint (/v4/unencrypted/event-log/<tenant>) two
//   unencrypted replicas of one identity sync both ways, and a replica of ANOTHER identity that
//   joins late reads the same store (plaintext stores are keyed by storeId alone, by design);
//   evsync relays the entries (no server-side handlers), Effect's reference runs
//   EventLogServerUnencrypted with a handler that does nothing. An encrypted replica of the same
//   tenant sees none of it (the modes' data is kept apart).
// - V1-unencrypted-wrong-endpoint: unencrypted replicas pointed at the encrypted endpoint are
//   refused, and nothing is stored: evsync answers InvalidRequest naming the unencrypted path;
//   Effect's own EventLogServerEncrypted cannot decode the write (InternalServerError "Decoding
//   failure"). The app's write itself succeeds locally; the upload fails, and Effect logs that at
//   Debug level only.
import assert from "node:assert/strict"
import { describe } from "node:test"
import { makeIdentity } from "../src/replica.mjs"
import { assertHealthy, barrier, changesChunks, receivedIds, scenario, tenant, withServerPerTarget } from "./lib/harness.mjs"

/** What each target's encrypted endpoint answers an unencrypted write: [code, message]. */
const REFUSAL = {
  evsync: ["InvalidRequest", "unencrypted writes go to /v4/unencrypted/event-log/<tenant>"],
  reference: ["InternalServerError", "Decoding failure"]
}

describe("V1 unencrypted mode", () => {
  withServerPerTarget((target, server) => {
    scenario(target, "V1-unencrypted", "unencrypted replicas sync through the unencrypted endpoint, apart from encrypted data", async ({ replica }) => {
      const name = tenant("v1p")
      const url = server.unencryptedUrl(name)
      const identity = await makeIdentity()
      const a = await replica({ url, identity, name: "PlainA", mode: "unencrypted" })
      const b = await replica({ url, identity, name: "PlainB", mode: "unencrypted" })
      await Promise.all([a.waitAuthenticated(), b.waitAuthenticated()])
      const tag = name.slice(-8)

      await a.write({ id: `plain-a-${tag}`, text: "written on A", n: 1 })
      await b.waitFor(() => receivedIds(b).includes(`plain-a-${tag}`), { what: "A's note at B" })
      await b.write({ id: `plain-b-${tag}`, text: "written on B", n: 2 })
      await a.waitFor(() => receivedIds(a).includes(`plain-b-${tag}`), { what: "B's note at A" })
      await barrier(a, [b])
      await barrier(b, [a])
      const mine = (r) => receivedIds(r).filter((id) => id.endsWith(tag))
      assert.deepEqual(mine(a), [`plain-b-${tag}`], "A: B's note once, none of its own")
      assert.deepEqual(mine(b), [`plain-a-${tag}`], "B: A's note once, none of its own")
      const fromA = b.received.find((r) => r.id === `plain-a-${tag}`)
      assert.deepEqual({ text: fromA.text, n: fromA.n }, { text: "written on A", n: 1 }, "the payload arrives as written")
      assert.ok(a.stats.acks >= 1, `A's write was acknowledged; ${a.describe()}`)

      // another identity, late, reads the same (shared) store from the start
      const other = await replica({ url, identity: await makeIdentity(), name: "PlainOther", mode: "unencrypted" })
      await other.waitFor(() => mine(other).length >= 2, { what: "both notes at another identity" })
      assert.deepEqual(mine(other), [`plain-a-${tag}`, `plain-b-${tag}`], "in the order stored, once each")

      // the encrypted endpoint of the same tenant holds none of it
      const enc = await replica({ url: server.url(name), identity, name: "Encrypted" })
      const encLate = await replica({ url: server.url(name), identity, name: "EncryptedLate" })
      await Promise.all([enc.waitAuthenticated(), encLate.waitAuthenticated()])
      await barrier(enc, [encLate])
      assert.deepEqual(receivedIds(encLate), [], `EncryptedLate: nothing but the barrier; ${encLate.describe()}`)
      for (const r of [a, b, other, enc, encLate]) assertHealthy(r)
    })

    scenario(target, "V1-unencrypted-wrong-endpoint", "an unencrypted replica at the encrypted endpoint is refused and nothing is stored", async ({ replica, t }) => {
      const url = server.url(tenant("v1u"))
      const identity = await makeIdentity()
      const a = await replica({ url, identity, name: "PlainA", mode: "unencrypted" })
      const b = await replica({ url, identity, name: "PlainB", mode: "unencrypted" })
      await Promise.all([a.waitAuthenticated(), b.waitAuthenticated()])

      await a.write({ id: "plain-1", text: "plaintext entry", n: 1 })
      // the app's write succeeds locally; its upload is refused
      assert.deepEqual(a.runs.map((r) => [r.id, r.local]), [["plain-1", true]])
      await a.waitFor(() => a.stats.protocolErrorMessages.length >= 1, { what: "the refusal of the write" })
      const [code, message] = REFUSAL[target]
      assert.ok(a.stats.protocolErrorMessages[0].startsWith(`EventLog.WriteSingle ${code}: ${message}`), a.describe())
      assert.ok(a.stats.sent["Request:EventLog.WriteSingle"] >= 1, "the upload went out as a WriteSingle")
      assert.equal(a.stats.acks, 0, "no entry acknowledged")
      t.diagnostic(`${target} answers an unencrypted WriteSingle: ${a.stats.protocolErrorMessages[0]}`)
      // what the app's logs show: Effect logs the failed upload at Debug level only, nothing higher
      await a.waitFor(() => a.logs.some((l) => /EventLogRemoteError/.test(l.cause)), { what: "Effect's log of the failed upload" })
      const levels = [...new Set(a.logs.filter((l) => /EventLogRemoteError/.test(l.cause)).map((l) => l.level))]
      t.diagnostic(`PlainA's app logs the failed upload (EventLogRemoteError) at level(s) ${levels}`)
      assert.deepEqual(a.logs.filter((l) => /^(Error|Fatal|Warn)/i.test(l.level)), [], "nothing logged above Debug")

      // nothing stored: an encrypted replica of the same identity and store reads from sequence 0
      // and finds only the barrier written after the refusal
      const enc = await replica({ url, identity, name: "Encrypted" })
      const encLate = await replica({ url, identity, name: "EncryptedLate" })
      await Promise.all([enc.waitAuthenticated(), encLate.waitAuthenticated()])
      await barrier(enc, [encLate])
      assert.equal(encLate.stats.changesRequests[0].startSequence, 0)
      assert.deepEqual(receivedIds(encLate), [], `EncryptedLate: nothing but the barrier; ${encLate.describe()}`)
      assert.equal(changesChunks(encLate), 1, `EncryptedLate: one Changes chunk (the barrier); ${encLate.describe()}`)
      assert.deepEqual(receivedIds(b), [], `PlainB received nothing; ${b.describe()}`)
      assert.equal(a.stats.acks, 0, "still no entry acknowledged")
      assertHealthy(enc)
      assertHealthy(encLate)
    })
  })
})
