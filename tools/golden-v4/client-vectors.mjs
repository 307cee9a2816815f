// Known-answer vectors for evsync-client's Effect v4 replica, made with Effect 4.1.0's own code:
// identity strings, the keys derived from an identity's root secret (encryption key, Ed25519
// signing key), the session-auth payload and its signature, encrypted batches (plaintext layout,
// AAD, AES-GCM) and SchemaBinary event payloads of a Struct({ id, text, n }) schema.
//
//   node tools/golden-v4/client-vectors.mjs [OUT_FILE]
//
// The default OUT_FILE is crates/evsync-client/tests/fixtures/v4-client-vectors.json, which is
// committed; crates/evsync-client's tests (`v4::` unit tests) check the Rust code against it.
// Everything random in Effect (the iv of a batch) comes from a SecureRandom service that returns
// fixed bytes, so a rerun writes the same file (Ed25519 signatures are deterministic).
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { Effect, Layer, Redacted, Schema } from "effect"
import * as Aead from "effect/crypto/Aead"
import * as Digest from "effect/crypto/Digest"
import * as SecureRandom from "effect/crypto/SecureRandom"
import * as SchemaBinary from "effect/encoding/SchemaBinary"
import { EventJournal, EventLog, EventLogEncryption, EventLogSessionAuth } from "effect/eventlog"
import { effectVersion, here, repoRoot, toHex } from "./lib.mjs"

if (effectVersion !== "4.1.0") throw new Error(`needs effect 4.1.0, found ${effectVersion}`)

// Effect's internal derivation (what EventLogRemote's makeAuthenticate and
// EventLogEncryption use); not exported, so imported by file.
const derivation = await import(
  pathToFileURL(path.join(here, "node_modules/effect/dist/eventlog/internal/identityRootSecretDerivation.js")).href
)

const out = process.argv[2] ?? path.join(repoRoot, "crates/evsync-client/tests/fixtures/v4-client-vectors.json")
const bytes = (n, f) => Uint8Array.from({ length: n }, (_, i) => f(i) & 0xff)
const run = (effect) => Effect.runPromise(effect)

// --- identities and derived keys ----------------------------------------------------------
const roots = [
  { publicKey: "c7c36fca-a194-4c47-8ac5-59939bb07556", root: bytes(32, (i) => i) },
  { publicKey: "0b8f3c8e-5d0a-4a1e-9a57-2f6f0c3b9d11", root: bytes(32, (i) => 255 - 7 * i) },
  // Effect accepts a root secret of any length; evsync's Identity takes 32-byte ones.
  { publicKey: "pk-short", root: bytes(16, (i) => 3 * i + 1) }
]
const identities = []
for (const { publicKey, root } of roots) {
  const identity = { publicKey, privateKey: Redacted.make(root) }
  const material = await run(derivation.makeGetIdentityRootSecretMaterial()(identity))
  identities.push({
    publicKey,
    rootSecretHex: toHex(root),
    identityString: EventLog.encodeIdentityString(identity),
    encryptionKeyHex: toHex(material.encryptionKeyMaterial),
    signingPublicKeyHex: toHex(material.signingPublicKey)
  })
}

// --- session auth: the signed payload and Effect's signature ------------------------------
const auth = []
for (const [i, id] of identities.slice(0, 2).entries()) {
  const identity = { publicKey: id.publicKey, privateKey: Redacted.make(roots[i].root) }
  const material = await run(derivation.makeGetIdentityRootSecretMaterial()(identity))
  const remoteId = bytes(16, (j) => 0xa0 + j + i)
  const challenge = bytes(32, (j) => 0x11 * (j + 1) + i)
  const payload = await run(EventLogSessionAuth.encodeSessionAuthPayload({
    remoteId,
    challenge,
    publicKey: id.publicKey,
    signingPublicKey: material.signingPublicKey
  }))
  const signature = await run(EventLogSessionAuth.signSessionAuthPayloadBytes({
    payload,
    signingPrivateKey: Redacted.value(material.signingPrivateKey)
  }))
  auth.push({
    identity: i,
    remoteIdHex: toHex(remoteId),
    challengeHex: toHex(challenge),
    payloadHex: toHex(payload),
    signatureHex: toHex(signature)
  })
}

// --- event payloads: SchemaBinary of the interop suite's Note schema ----------------------
const Note = Schema.Struct({ id: Schema.String, text: Schema.String, n: Schema.Number })
const encodeNote = Schema.encodeSync(SchemaBinary.toCodec(Note))
const notes = [
  { id: "n1", text: "hi", n: 1 },
  { id: "n2", text: "hé ✓", n: -3 },
  { id: "", text: "", n: 0 },
  { id: "n4", text: "x", n: 1.5 },
  { id: "n5", text: "y", n: 2 ** 48 },
  { id: "n6", text: "z", n: 1e-7 },
  { id: "n7", text: "w", n: 123456.789 }
]
const payloads = notes.map((note) => ({ json: JSON.stringify(note), frameHex: toHex(encodeNote(note)) }))

// --- encrypted batches ----------------------------------------------------------------------
// One batch per write here (≤ 100 entries, ≤ 256 KiB of payload), so `encrypt` asks for one iv.
const fixedIv = bytes(12, (i) => 0xc0 + i)
const random = SecureRandom.make((size) => {
  if (size !== 12) throw new Error(`unexpected randomBytes(${size})`)
  return fixedIv.slice()
})
const encryptionLayer = EventLogEncryption.layer.pipe(
  Layer.provide(Layer.mergeAll(Aead.layerWebCrypto, Digest.layerWebCrypto)),
  Layer.provide(Layer.succeed(SecureRandom.SecureRandom)(random)),
  Layer.provide(SecureRandom.layerWebCrypto)
)
const encryption = await run(Effect.provide(Effect.service(EventLogEncryption.EventLogEncryption), encryptionLayer))
const plaintextCodec = SchemaBinary.toCodec(Schema.NonEmptyArray(EventJournal.EntryFields))
const entryId = (millis, tail) => {
  const id = bytes(16, (j) => (j < 6 ? Math.floor(millis / 2 ** (8 * (5 - j))) : tail + j))
  id[6] = 0x70 | (id[6] & 0x0f)
  id[8] = 0x80 | (id[8] & 0x3f)
  return id
}
const batchCases = [
  {
    name: "one-entry",
    storeId: "default",
    entries: [{ event: "Note", primaryKey: "n1", note: notes[0] }]
  },
  {
    name: "three-entries-repeated-strings",
    storeId: "default",
    entries: [
      { event: "Note", primaryKey: "n1", note: notes[0] },
      { event: "Note", primaryKey: "n2", note: notes[1] },
      { event: "Note", primaryKey: "n1", note: { id: "n1", text: "again", n: 7 } }
    ]
  },
  {
    name: "other-store",
    storeId: "store-ü",
    entries: [{ event: "Other", primaryKey: "k", note: notes[2] }]
  }
]
const batches = []
for (const [c, batchCase] of batchCases.entries()) {
  const identity = { publicKey: identities[0].publicKey, privateKey: Redacted.make(roots[0].root) }
  const entries = batchCase.entries.map((e, j) =>
    new EventJournal.Entry({
      id: entryId(1_764_000_000_000 + 1000 * c + j, 16 * c + j),
      event: e.event,
      primaryKey: e.primaryKey,
      payload: encodeNote(e.note)
    }, { disableChecks: true })
  )
  const [batch, ...more] = await run(encryption.encrypt(identity, batchCase.storeId, entries))
  if (more.length > 0) throw new Error("expected one batch")
  // Effect's own decryption of its batch (at sequence 5), as a check of the vector itself.
  const decrypted = await run(encryption.decrypt(identity, batchCase.storeId, [{ sequence: 5, ...batch }]))
  if (decrypted.length !== entries.length) throw new Error("round trip")
  batches.push({
    name: batchCase.name,
    identity: 0,
    storeId: batchCase.storeId,
    entries: entries.map((e) => ({
      idHex: toHex(e.id),
      event: e.event,
      primaryKey: e.primaryKey,
      payloadHex: toHex(e.payload)
    })),
    plaintextHex: toHex(Schema.encodeSync(plaintextCodec)(entries.map((e) => ({ ...e })))),
    ivHex: toHex(batch.iv),
    encryptedBatchHex: toHex(batch.encryptedBatch),
    entryIdsHex: batch.entryIds.map(toHex)
  })
}

const vectors = {
  comment: "Made by tools/golden-v4/client-vectors.mjs with effect " + effectVersion + "; do not edit.",
  identities,
  auth,
  payloads,
  batches
}
fs.mkdirSync(path.dirname(out), { recursive: true })
fs.writeFileSync(out, JSON.stringify(vectors, null, 2) + "\n")
console.log(`wrote ${out}`)
