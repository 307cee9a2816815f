// V1 in unencrypted mode (EventLogRemote.layerUnencrypted, PROTOCOL-V4.md §3.2, §6.1): what an
// app sees when its replicas send plaintext entries (WriteEntriesUnencrypted) to an encrypted
// server. Both targets are encrypted servers, and neither syncs unencrypted replicas:
// - evsync refuses every unencrypted write with EventLogProtocolError InvalidRequest "evsync
//   serves encrypted clients only (EventLogRemote.layerEncrypted)";
// - Effect's own EventLogServerEncrypted cannot decode the write either: it answers
//   InternalServerError "Decoding failure".
// On both, nothing is stored: an encrypted replica of the same identity and store reads the
// store from sequence 0 afterwards and finds only its own barrier. The app's write itself
// succeeds (its local handler runs); the upload fails, and Effect logs that at Debug level only.
import assert from "node:assert/strict"
import { describe } from "node:test"
import { makeIdentity } from "../src/replica.mjs"
import { assertHealthy, barrier, changesChunks, receivedIds, scenario, tenant, withServerPerTarget } from "./lib/harness.mjs"

/** What each target answers an unencrypted write: [code, message]. */
const REFUSAL = {
  evsync: ["InvalidRequest", "evsync serves encrypted clients only"],
  reference: ["InternalServerError", "Decoding failure"]
}

describe("V1 unencrypted mode", () => {
  withServerPerTarget((target, server) => {
    scenario(target, "V1-unencrypted", "an unencrypted replica's writes are refused and nothing is stored", async ({ replica, t }) => {
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
