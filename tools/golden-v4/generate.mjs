// Generates the golden SchemaBinary vectors of Effect v4's eventlog protocol
// (effect 4.1.0, effect/eventlog over RpcSerialization.layerSchemaBinary) with
// Effect's own encoders.
//
//   node generate.mjs [OUT_DIR]   (default: crates/evsync-core/tests/fixtures/golden-v4)
//
// Output: one <name>.bin per vector (exactly one SchemaBinary frame, as a
// WebSocket message carries it) and manifest.json, an array of
// {name, schema, file, value} sorted by name; `value` is the canonical JSON of
// README.md. Every vector is checked here: Effect decodes its own frame back
// to `value`, and captured frames (captures.json, from a real v4 client and
// server) are re-encoded from their value byte for byte. The output is
// deterministic: check.sh diffs a fresh run against the committed fixtures.
import * as fs from "node:fs"
import * as path from "node:path"
import { Schema } from "effect"
import { EventLogMessage as EM } from "effect/eventlog"
import {
  checkFrame,
  decodeCanonical,
  defaultFixtures,
  diff,
  encodeDefectFrame,
  fromHex,
  here,
  own,
  readUv,
  SCHEMAS,
  serialization,
  toHex
} from "./lib.mjs"

const outDir = path.resolve(process.argv[2] ?? defaultFixtures)

/** @type {Array<{name: string, schema: string, file: string, value: unknown, bytes: Uint8Array}>} */
const vectors = []
const names = new Set()
const framesSeen = new Map() // schema + hex -> name (captured duplicates are kept once)

// ------------------------------------------------------------- helpers ----

const B = (bytes) => ({ $bytes: toHex(bytes) })
const hexB = (hex) => ({ $bytes: hex.replace(/[\s|]/g, "") })
/** Deterministic filler bytes: byte i = (seed + 7 i) mod 256. */
const fill = (len, seed) => {
  const out = new Uint8Array(len)
  for (let i = 0; i < len; i++) out[i] = (seed + 7 * i) & 0xff
  return B(out)
}
/** A UUIDv7-looking 16-byte entry id, distinct per n. */
const entryId = (n) => {
  const b = new Uint8Array(16)
  const ms = 0x01a2352e1d00 + n * 3
  for (let i = 0; i < 6; i++) b[i] = Math.floor(ms / 256 ** (5 - i)) & 0xff
  b[6] = 0x70
  b[7] = n & 0xff
  b[8] = 0x80 | ((n * 13) & 0x3f)
  for (let i = 9; i < 16; i++) b[i] = (n * 31 + i * 17) & 0xff
  return B(b)
}
const iv = (n) => fill(12, 0x24 + n)
const PK = "11111111-2222-4333-8444-555555555555"
const PK2 = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
const long = (prefix, n) => (prefix + "-abcdefghijklmnopqrstuvwxyz0123456789".repeat(8)).slice(0, n)
const utf8Len = (s) => Buffer.byteLength(s, "utf8")

function register(name, schema, bytes, value) {
  if (!/^[a-z0-9][a-z0-9.-]*$/.test(name)) throw new Error(`bad vector name ${name}`)
  if (names.has(name)) throw new Error(`duplicate vector name ${name}`)
  names.add(name)
  framesSeen.set(schema + ":" + toHex(bytes), name)
  vectors.push({ name, schema, file: `${name}.bin`, value, bytes })
}

/**
 * Encodes the canonical `value` with Effect's encoder for `schema`, checks
 * that Effect decodes the frame back to the same canonical JSON (and, with
 * `hex`, that the bytes are exactly that), records it and returns the frame.
 */
function vec(name, schema, value, { hex, typeValue } = {}) {
  const s = SCHEMAS[schema]
  if (!s) throw new Error(`${name}: unknown schema key ${schema}`)
  let bytes
  try {
    bytes = s.encode(typeValue ?? s.fromCanonical(value))
  } catch (e) {
    throw new Error(`${name}: Effect cannot encode the value as ${schema}: ${e.message}`)
  }
  checkFrame(bytes, s.fingerprint)
  const back = decodeCanonical(schema, bytes)
  const d = diff(back, value)
  if (d.length) throw new Error(`${name}: Effect does not read its own frame back: ${d.slice(0, 5).join("; ")}`)
  // Where the eventlog code uses its own static codec, the generic RPC codec
  // must write the same bytes (both are SchemaBinary default mode).
  if (s.schema !== undefined) {
    for (const codec of [s.codec, serialization.codecFor(s.schema)]) {
      const via = own(Schema.encodeUnknownSync(codec)(typeValue ?? s.fromCanonical(value)))
      if (toHex(via) !== toHex(bytes)) throw new Error(`${name}: the codecs of ${schema} disagree`)
    }
  }
  if (hex !== undefined && toHex(bytes) !== hex.replace(/[\s|]/g, "")) {
    throw new Error(`${name}: Effect wrote ${toHex(bytes)}, expected ${hex}`)
  }
  register(name, schema, bytes, back) // = value, with sorted keys
  return bytes
}

/**
 * A captured frame: its value is what Effect decodes it to, and Effect must
 * re-encode that value to the very same bytes. Returns the canonical value.
 */
function captured(name, schema, bytes) {
  const key = schema + ":" + toHex(bytes)
  const value = decodeCanonical(schema, bytes)
  if (framesSeen.has(key)) return value
  const s = SCHEMAS[schema]
  const again = s.encode(s.fromCanonical(value))
  if (toHex(again) !== toHex(bytes)) {
    // Canonical JSON has no "present but undefined" optional field; Effect's
    // servers write one (kind byte 03), e.g. HelloResponse.firstSequence of
    // the memory server. Then Effect must at least re-encode its own decoded
    // value to the same bytes.
    const roundTrip = s.encode(s.decode(own(bytes)))
    if (toHex(roundTrip) !== toHex(bytes)) {
      throw new Error(`${name}: Effect re-encodes the captured frame differently:\n  ${toHex(bytes)}\n  ${toHex(again)}`)
    }
    notCanonical.push(name)
  }
  register(name, schema, bytes, value)
  return value
}
const notCanonical = []

// ---------------------------------------------------- captured frames ----

const captures = JSON.parse(fs.readFileSync(path.join(here, "captures.json"), "utf8"))
{
  const tags = new Map() // source/conn/requestId -> rpc tag
  const counters = new Map()
  const exitKeys = {
    "EventLog.Hello": "Exit.Hello",
    "EventLog.Authenticate": "Exit.Authenticate",
    "EventLog.WriteSingle": "Exit.WriteSingle",
    "EventLog.WriteChunked": "Exit.WriteChunked",
    "EventLog.Changes": "Exit.Changes"
  }
  const payloadKeys = {
    "EventLog.Authenticate": "Authenticate",
    "EventLog.WriteSingle": "WriteSingle.Payload",
    "EventLog.WriteChunked": "WriteChunked.Payload",
    "EventLog.Changes": "Changes.Payload"
  }
  for (const c of captures) {
    const src = c.source.replace(/^tap-|\.jsonl$/g, "")
    const schema = c.dir === "c2s" ? "RpcMessage.FromClient" : "RpcMessage.FromServer"
    const bytes = fromHex(c.hex)
    const k = `${src}-c${c.conn}`
    const n = (counters.get(k) ?? 0) + 1
    counters.set(k, n)
    const env = decodeCanonical(schema, bytes)
    const rpcTag = env._tag === "Request" ? env.tag : tags.get(`${k}:${env.requestId}`)
    const short = (rpcTag ?? "").replace(/^EventLog\./, "").toLowerCase()
    const name = `cap-${src}-c${c.conn}-${String(n).padStart(2, "0")}-${env._tag.toLowerCase()}${short ? "-" + short : ""}`
    captured(name, schema, bytes)
    const inner = (suffix, key, b) => captured(`${name}-${suffix}`, key, fromHex(b.$bytes))
    const dataKey = src === "unenc"
      ? { write: "WriteEntriesUnencrypted", changes: "RemoteEntries" }
      : { write: "WriteEntries", changes: "EncryptedRemoteBatches" }
    if (env._tag === "Request") {
      tags.set(`${k}:${env.id}`, env.tag)
      const key = payloadKeys[env.tag]
      if (key) {
        const payload = inner("payload", key, env.payload)
        if (env.tag === "EventLog.WriteSingle") inner("payload-data", dataKey.write, payload.data)
      }
    } else if (env._tag === "Exit") {
      inner("exit", exitKeys[rpcTag], env.exit)
    } else if (env._tag === "Chunk") {
      const values = inner("values", "Changes.Chunk", env.values)
      values.forEach((v, i) => {
        if (v._tag === "Single") inner(`values-${i}-data`, dataKey.changes, v.data)
      })
    }
  }
}

// ------------------------------------------------ EventLogProtocolError ----

const CODES = ["Unauthorized", "Forbidden", "NotFound", "InvalidRequest", "InternalServerError"]
const err = (code, message, requestTag, extra = {}) => ({ _tag: "EventLogProtocolError", code, message, requestTag, ...extra })

for (const code of CODES) {
  vec(`error-code-${code.toLowerCase()}`, "EventLogProtocolError", err(code, `a ${code} error`, "EventLog.WriteSingle"))
}
vec("error-with-public-key", "EventLogProtocolError", err("Forbidden", "Identity is not authenticated", "Changes", { publicKey: "pk" }))
vec("error-with-store-id", "EventLogProtocolError", err("NotFound", "Unknown store", "EventLog.Changes", { storeId: "default" }))
vec(
  "error-with-store-id-and-public-key",
  "EventLogProtocolError",
  err("InternalServerError", "Persistence failure", "EventLog.WriteSingle", { storeId: "default", publicKey: PK })
)
vec(
  "error-empty-strings",
  "EventLogProtocolError",
  err("InvalidRequest", "", "", { storeId: "", publicKey: "" })
)
vec(
  "error-unicode-long",
  "EventLogProtocolError",
  err("Forbidden", long("Zugriff verweigert – 鍵がありません 🔑", 300), "EventLog.Authenticate", {
    storeId: "магазин-🙂",
    publicKey: PK
  })
)

// ------------------------------------------------------ HelloResponse ----

const REMOTE_ID = "dcae759215e9451c857ec5ec313c2114"
const CHALLENGE = "67a4ad83737cc914157e6146864363d940eb85271b5605c1d996492b27660266"
const hello = (extra = {}) => ({ challenge: hexB(CHALLENGE), remoteId: hexB(REMOTE_ID), ...extra })
vec("hello-response-minimal", "HelloResponse", hello())
vec("hello-response-first-sequence-0", "HelloResponse", hello({ firstSequence: 0 }))
vec("hello-response-first-sequence-1", "HelloResponse", hello({ firstSequence: 1 }))
vec("hello-response-first-sequence-2p31", "HelloResponse", hello({ firstSequence: 2 ** 31 }))
vec("hello-response-first-sequence-max-safe", "HelloResponse", hello({ firstSequence: Number.MAX_SAFE_INTEGER }))
vec("hello-response-compaction", "HelloResponse", hello({ compaction: true }))
// Effect's memory server sends firstSequence present but undefined (kind
// byte 03): it decodes as absent.
vec("hello-response-first-sequence-undefined", "HelloResponse", hello({ compaction: true }), {
  typeValue: new EM.HelloResponse({
    challenge: fromHex(CHALLENGE),
    remoteId: fromHex(REMOTE_ID),
    firstSequence: undefined,
    compaction: true
  }),
  hex: "4b20 f083f23920" + CHALLENGE + "c09ceff744 02 0101 f0a38ebc5710" + REMOTE_ID + "e0bc96f95a 01 03"
})
vec("hello-response-compaction-first-sequence-1", "HelloResponse", hello({ compaction: true, firstSequence: 1 }))

// ------------------------------------------------------- Authenticate ----

// The values of the captured Authenticate (a real Ed25519 signature over the
// canonical payload of the captured Hello of tap-enc conn 0).
const capturedAuth = vectors.find((v) => v.name === "cap-enc-c0-03-request-authenticate-payload").value
const authenticate = vec("authenticate", "Authenticate", capturedAuth)
vec("authenticate-unicode-public-key", "Authenticate", {
  ...capturedAuth,
  publicKey: "ключ-🔑-" + PK
})
vec("authenticate-empty-public-key", "Authenticate", { ...capturedAuth, publicKey: "" })

// ----------------------------------------------------- Changes.Payload ----

const changes = (startSequence, storeId = "default", publicKey = PK) => ({ publicKey, startSequence, storeId })
const changesPayload = vec("changes-payload-start-0", "Changes.Payload", changes(0))
vec("changes-payload-start-1", "Changes.Payload", changes(1))
vec("changes-payload-start-63", "Changes.Payload", changes(63))
vec("changes-payload-start-64", "Changes.Payload", changes(64))
vec("changes-payload-start-2p31", "Changes.Payload", changes(2 ** 31))
vec("changes-payload-start-2p40", "Changes.Payload", changes(2 ** 40))
vec("changes-payload-start-max-safe", "Changes.Payload", changes(Number.MAX_SAFE_INTEGER))
vec("changes-payload-unicode-store", "Changes.Payload", changes(5, "Ärger-店-🙂", PK2))
vec("changes-payload-empty-strings", "Changes.Payload", changes(0, "", ""))

// -------------------------------------------------------- WriteEntries ----

const batch = (n, ids, ciphertext = fill(40 + n, n)) => ({
  encryptedBatch: ciphertext,
  entryIds: ids.map(entryId),
  iv: iv(n)
})
const writeEntries = (batches, storeId = "default", publicKey = PK) => ({ batches, publicKey, storeId })

vec("write-entries-empty", "WriteEntries", writeEntries([]))
const we1 = vec("write-entries-1-batch-1-entry", "WriteEntries", writeEntries([batch(1, [1])]))
const we3 = vec(
  "write-entries-3-batches",
  "WriteEntries",
  writeEntries([batch(1, [1, 2, 3]), batch(2, [4]), batch(3, [5, 6, 7, 8, 9])])
)
vec("write-entries-empty-ciphertext", "WriteEntries", writeEntries([batch(4, [10, 11], B(new Uint8Array(0)))]))
vec("write-entries-ciphertext-200", "WriteEntries", writeEntries([batch(5, [12], fill(200, 5))]))
vec("write-entries-100-entry-ids", "WriteEntries", writeEntries([batch(6, Array.from({ length: 100 }, (_, i) => 100 + i))]))
vec("write-entries-unicode-store", "WriteEntries", writeEntries([batch(7, [13])], "Ärger-店-🙂", PK2))
const we20k = vec("write-entries-ciphertext-20000", "WriteEntries", writeEntries([batch(8, [14, 15], fill(20000, 8))]))
// Over EM.ChunkedMessage.chunkSize: the client sends it as WriteChunked pieces.
const weLarge = vec("write-entries-large", "WriteEntries", writeEntries([batch(9, [16, 17, 18], fill(515000, 9))]))
if (weLarge.length <= EM.ChunkedMessage.chunkSize) throw new Error("write-entries-large is not over the chunk size")

// --------------------------------------------- WriteEntriesUnencrypted ----

const entry = (n, event, primaryKey, payload = fill(3 + (n % 5), 0x40 + n)) => ({
  event,
  id: entryId(n),
  payload,
  primaryKey
})
const writeUnenc = (entries, storeId = "default", publicKey = PK) => ({ entries, publicKey, storeId })
vec("write-unencrypted-empty", "WriteEntriesUnencrypted", writeUnenc([]))
const wu1 = vec("write-unencrypted-1-entry", "WriteEntriesUnencrypted", writeUnenc([entry(20, "TodoCreated", "t-1")]))
// Repeated strings: Effect writes back-references (odd cell codes) for them.
vec(
  "write-unencrypted-repeated-strings",
  "WriteEntriesUnencrypted",
  writeUnenc([
    entry(21, "TodoCreated", "t-1"),
    entry(22, "TodoCreated", "t-1"),
    entry(23, "TodoUpdated", "t-1"),
    entry(24, "TodoCreated", "t-2"),
    entry(25, "TodoUpdated", "t-2"),
    entry(26, "TodoDeleted", "t-1")
  ])
)
vec(
  "write-unencrypted-strings-edge",
  "WriteEntriesUnencrypted",
  writeUnenc([
    entry(27, "", ""),
    entry(28, "", ""),
    entry(29, "Ereignis-ä-鍵-🔑", "🙂"),
    entry(30, "Ereignis-ä-鍵-🔑", "🙂", B(new Uint8Array(0))),
    entry(31, long("e63", 63), long("p64", 64)),
    entry(32, long("e63", 63), long("p64", 64)),
    entry(33, long("e200", 200), long("k-🔑", 130)),
    entry(34, long("e200", 200), "t-1")
  ], "Ärger-店-🙂", PK2)
)

// ----------------------------------------------- EncryptedRemoteBatches ----

const remoteBatch = (sequence, n, ids, ciphertext) => ({ sequence, ...batch(n, ids, ciphertext) })
const erb1 = vec("remote-batches-1", "EncryptedRemoteBatches", [remoteBatch(0, 1, [1, 2, 3])])
const erb3 = vec("remote-batches-3", "EncryptedRemoteBatches", [
  remoteBatch(1, 1, [1]),
  remoteBatch(2, 2, [2, 3]),
  remoteBatch(4, 3, [4, 5, 6]),
  remoteBatch(7, 4, [7])
])
vec("remote-batches-large-sequences", "EncryptedRemoteBatches", [
  remoteBatch(2 ** 31 - 1, 5, [8]),
  remoteBatch(2 ** 31, 6, [9]),
  remoteBatch(2 ** 40, 7, [10, 11]),
  remoteBatch(Number.MAX_SAFE_INTEGER - 2, 8, [12, 13, 14])
])
vec("remote-batches-edge", "EncryptedRemoteBatches", [
  remoteBatch(63, 9, [15], B(new Uint8Array(0))),
  remoteBatch(64, 10, Array.from({ length: 100 }, (_, i) => 200 + i), fill(300, 10)),
  remoteBatch(164, 11, [15], fill(20000, 11))
])

// ------------------------------------------------------- RemoteEntries ----

const remoteEntry = (remoteSequence, e) => ({ entry: e, remoteSequence })
const re1 = vec("remote-entries-1", "RemoteEntries", [remoteEntry(1, entry(40, "TodoCreated", "t-1"))])
// Repeated strings sit in the nested `entry` struct: Effect writes them in
// full every time (only direct string fields of a row struct intern).
const re3 = vec("remote-entries-repeated-strings", "RemoteEntries", [
  remoteEntry(1, entry(41, "TodoCreated", "t-1")),
  remoteEntry(2, entry(42, "TodoCreated", "t-1")),
  remoteEntry(3, entry(43, "TodoUpdated", "t-1")),
  remoteEntry(4, entry(44, "TodoCreated", "t-2"))
])
vec("remote-entries-strings-edge", "RemoteEntries", [
  remoteEntry(5, entry(45, "", "")),
  remoteEntry(6, entry(46, "Ereignis-ä-鍵-🔑", "🙂")),
  remoteEntry(7, entry(47, long("e200", 200), long("k-🔑", 130), fill(300, 47))),
  remoteEntry(8, entry(48, long("e63", 63), long("p64", 64), B(new Uint8Array(0))))
])
vec("remote-entries-large-sequences", "RemoteEntries", [
  remoteEntry(2 ** 31, entry(49, "TodoCreated", "t-1")),
  remoteEntry(2 ** 40, entry(50, "TodoCreated", "t-1")),
  remoteEntry(Number.MAX_SAFE_INTEGER, entry(51, "TodoCreated", "t-1"))
])

// ----------------------------------------------------------- WriteAcks ----

const ack = (n, sequence) => ({ entryId: entryId(n), sequence })
vec("write-acks-empty", "WriteAcks", [])
// The acks of the captured WriteSingle result of tap-enc conn 0.
const CAP_IDS = ["01a2352e1d5a7000ae5330ad4146a3e5", "01a2352e1d637000bc47ef136a05d5e0", "01a2352e1d647000ac9173bf39bd2702"]
const acks3 = [0, 1, 2].map((i) => ({ entryId: hexB(CAP_IDS[i]), sequence: i }))
vec("write-acks-3", "WriteAcks", acks3)
vec("write-acks-duplicate-entry-id", "WriteAcks", [ack(60, 5), ack(61, 6), ack(60, 5)])
vec("write-acks-large-sequences", "WriteAcks", [
  ack(62, 63),
  ack(63, 64),
  ack(64, 2 ** 31),
  ack(65, 2 ** 40),
  ack(66, Number.MAX_SAFE_INTEGER)
])

// --------------------------------------------------------------- Exits ----

const success = (value) => (value === undefined ? { _tag: "Success" } : { _tag: "Success", value })
const failure = (...cause) => ({ _tag: "Failure", cause })
const fail = (error) => ({ _tag: "Fail", error })
const die = (defect) => ({ _tag: "Die", defect })
const interrupt = (fiberId) => (fiberId === undefined ? { _tag: "Interrupt" } : { _tag: "Interrupt", fiberId })
const ERROR_DEFECT = { message: "boom", name: "Error" }
const NESTED_DEFECT = { list: [1, "two", null, true, { deep: "ü🙂" }], n: -1.5 }

const exitHello = vec("exit-hello-success", "Exit.Hello", success(hello({ firstSequence: 1 })))
vec("exit-hello-success-compaction", "Exit.Hello", success(hello({ compaction: true })))
vec("exit-hello-success-minimal", "Exit.Hello", success(hello()))
vec("exit-hello-die", "Exit.Hello", failure(die("Unknown request tag: EventLog.Hello")))
vec("exit-hello-interrupt", "Exit.Hello", failure(interrupt()))

const exitAuthOk = vec("exit-authenticate-success", "Exit.Authenticate", success(), { hex: "022000" })
const exitAuthFail = vec(
  "exit-authenticate-forbidden-expired",
  "Exit.Authenticate",
  failure(fail(err("Forbidden", "Session auth challenge has expired", "EventLog.Authenticate", { publicKey: PK })))
)
vec(
  "exit-authenticate-forbidden-signature",
  "Exit.Authenticate",
  failure(fail(err("Forbidden", "Session auth signature verification failed", "EventLog.Authenticate", { publicKey: PK })))
)
vec("exit-authenticate-die-error", "Exit.Authenticate", failure(die(ERROR_DEFECT)))
vec("exit-authenticate-interrupt-fiber", "Exit.Authenticate", failure(interrupt(7)))

vec("exit-write-single-success-empty", "Exit.WriteSingle", success([]))
// The captured frame of §2.1 of PROTOCOL-V4.md (tap-enc conn 0).
const exitWrite3 = vec("exit-write-single-success-3", "Exit.WriteSingle", success(acks3))
for (const code of CODES) {
  vec(
    `exit-write-single-fail-${code.toLowerCase()}`,
    "Exit.WriteSingle",
    failure(fail(err(code, `WriteSingle failed: ${code}`, "EventLog.WriteSingle", { publicKey: PK, storeId: "default" })))
  )
}
vec(
  "exit-write-single-fail-unauthenticated",
  "Exit.WriteSingle",
  failure(fail(err("Forbidden", "Unauthenticated request", "EventLog.WriteSingle")))
)
vec("exit-write-single-die-string", "Exit.WriteSingle", failure(die("Expected Uint8Array, got undefined")))
vec("exit-write-single-die-error", "Exit.WriteSingle", failure(die(ERROR_DEFECT)))
vec("exit-write-single-die-json", "Exit.WriteSingle", failure(die(NESTED_DEFECT)))
vec("exit-write-single-die-null", "Exit.WriteSingle", failure(die(null)))
vec("exit-write-single-die-number", "Exit.WriteSingle", failure(die(42)))
vec("exit-write-single-interrupt", "Exit.WriteSingle", failure(interrupt()))
vec("exit-write-single-interrupt-fiber", "Exit.WriteSingle", failure(interrupt(12)))

vec("exit-write-chunked-success-empty", "Exit.WriteChunked", success([]))
vec("exit-write-chunked-success-3", "Exit.WriteChunked", success([ack(16, 10), ack(17, 11), ack(18, 12)]))
vec(
  "exit-write-chunked-fail-invalid",
  "Exit.WriteChunked",
  failure(fail(err("InvalidRequest", "Chunk too large", "EventLog.WriteChunked", { publicKey: PK })))
)
vec("exit-write-chunked-interrupt", "Exit.WriteChunked", failure(interrupt()))

const exitChangesEnd = vec("exit-changes-success", "Exit.Changes", success(), { hex: "022000" })
const exitChangesInterrupt = vec("exit-changes-interrupt-fiber-15", "Exit.Changes", failure(interrupt(15)), {
  hex: "0d20010109030000000000002e40"
})
vec("exit-changes-interrupt", "Exit.Changes", failure(interrupt()), { hex: "052001010102" })
vec("exit-changes-interrupt-fiber-large", "Exit.Changes", failure(interrupt(2 ** 40 + 3)))
vec(
  "exit-changes-fail-decoding",
  "Exit.Changes",
  failure(fail(err("InternalServerError", "Decoding failure", "EventLog.Changes", { publicKey: PK, storeId: "default" })))
)
const exitForbidden = vec(
  "exit-changes-fail-forbidden",
  "Exit.Changes",
  failure(fail(err("Forbidden", "Identity is not authenticated", "Changes", { publicKey: "pk" }))),
  {
    hex: "52 20 01 01 4e 00 0a 6973bb46 a08ec1bc12 1d" + toHex(Buffer.from("Identity is not authenticated")) +
      "d092b7d452 07" + toHex(Buffer.from("Changes")) + "f8efc0827a 03 05 706b a0cfadcc7c 09" +
      toHex(Buffer.from("Forbidden"))
  }
)
vec("exit-changes-die-unknown-tag", "Exit.Changes", failure(die("Unknown request tag: EventLog.Nope")))
vec("exit-changes-die-x", "Exit.Changes", failure(die("x")), { hex: "082001010401227822" })
vec(
  "exit-changes-fail-and-die",
  "Exit.Changes",
  failure(fail(err("NotFound", "gone", "EventLog.Changes")), die(ERROR_DEFECT), interrupt(3))
)

// ------------------------------------------------ WriteSingle.Payload ----

const wsEnc1 = vec("write-single-payload-1-batch", "WriteSingle.Payload", { data: B(we1) })
const wsEnc3 = vec("write-single-payload-3-batches", "WriteSingle.Payload", { data: B(we3) })
const wsUnenc = vec("write-single-payload-unencrypted", "WriteSingle.Payload", { data: B(wu1) })
const ws20k = vec("write-single-payload-20000", "WriteSingle.Payload", { data: B(we20k) })
vec("write-single-payload-empty-data", "WriteSingle.Payload", { data: B(new Uint8Array(0)) })

// ----------------------------------------------- WriteChunked.Payload ----

const chunked = (id, part, data) => ({ _tag: "Chunked", data, id, part })
// Effect's own split of write-entries-large: the pieces the client sends.
const pieces = EM.ChunkedMessage.split(5, weLarge)
if (pieces.length !== 2) throw new Error(`write-entries-large split into ${pieces.length} pieces`)
const wcPieces = pieces.map((p, i) =>
  vec(`write-chunked-large-part-${i}-of-2`, "WriteChunked.Payload", SCHEMAS["WriteChunked.Payload"].toCanonical(p))
)
const wcSmall = vec("write-chunked-small-0-of-1", "WriteChunked.Payload", chunked(0, [0, 1], B(we1)))
vec("write-chunked-negative-id", "WriteChunked.Payload", chunked(-1, [2, 3], fill(10, 1)))
vec("write-chunked-id-2p31", "WriteChunked.Payload", chunked(2 ** 31, [1, 2], fill(10, 2)))
vec("write-chunked-id-max-safe", "WriteChunked.Payload", chunked(Number.MAX_SAFE_INTEGER, [0, 2], fill(10, 3)))
vec("write-chunked-part-127-of-128", "WriteChunked.Payload", chunked(64, [127, 128], fill(10, 4)))
vec("write-chunked-empty-data", "WriteChunked.Payload", chunked(3, [0, 1], B(new Uint8Array(0))))

// ------------------------------------------------------- Changes.Chunk ----

const single = (data) => ({ _tag: "Single", data })
const chunkEnc = vec("changes-chunk-single-encrypted", "Changes.Chunk", [single(B(erb3))])
vec("changes-chunk-single-unencrypted", "Changes.Chunk", [single(B(re3))])
vec("changes-chunk-two-singles", "Changes.Chunk", [single(B(erb1)), single(B(erb3))])
// A frame cut into 3 small pieces (Effect's server cuts at 512,000 bytes; the
// decoder does not care): concatenated, they are remote-batches-3.
const third = Math.ceil(erb3.length / 3)
const erb3Pieces = [0, 1, 2].map((i) => B(erb3.subarray(i * third, (i + 1) * third)))
const chunkPieces = vec(
  "changes-chunk-chunked-3",
  "Changes.Chunk",
  erb3Pieces.map((d, i) => chunked(9, [i, 3], d))
)
vec("changes-chunk-mixed", "Changes.Chunk", [single(B(re1)), chunked(10, [0, 2], fill(50, 1)), chunked(10, [1, 2], fill(7, 2))])
vec("changes-chunk-chunked-large-id", "Changes.Chunk", [chunked(2 ** 40, [0, 1], B(erb1))])

// ------------------------------------------------------------ envelopes ----

const req = (id, tag, payload, extra = {}) => ({ _tag: "Request", headers: [], id, payload: B(payload), tag, ...extra })
const VOID = fromHex("0120") // the Void payload frame of EventLog.Hello

vec("env-client-hello-id-0", "RpcMessage.FromClient", req(0, "EventLog.Hello", VOID), {
  hex: "22 21a71fbf488612ff6b 07 00 | 02 0120 | 02 0000 | 0e" + toHex(Buffer.from("EventLog.Hello")) + "| 01 00"
})
vec("env-client-hello-id-4", "RpcMessage.FromClient", req(4, "EventLog.Hello", VOID))
vec("env-client-authenticate", "RpcMessage.FromClient", req(1, "EventLog.Authenticate", authenticate))
vec("env-client-changes", "RpcMessage.FromClient", req(2, "EventLog.Changes", changesPayload))
vec("env-client-write-single", "RpcMessage.FromClient", req(3, "EventLog.WriteSingle", wsEnc3))
vec("env-client-write-single-1-batch", "RpcMessage.FromClient", req(5, "EventLog.WriteSingle", wsEnc1))
vec("env-client-write-single-unencrypted", "RpcMessage.FromClient", req(6, "EventLog.WriteSingle", wsUnenc))
vec("env-client-write-single-20000", "RpcMessage.FromClient", req(7, "EventLog.WriteSingle", ws20k))
vec("env-client-write-chunked", "RpcMessage.FromClient", req(8, "EventLog.WriteChunked", wcSmall))
vec("env-client-write-chunked-part-1", "RpcMessage.FromClient", req(9, "EventLog.WriteChunked", wcPieces[1]))
vec("env-client-request-id-string", "RpcMessage.FromClient", req("req-ü-🙂", "EventLog.Hello", VOID))
vec("env-client-request-id-empty-string", "RpcMessage.FromClient", req("", "EventLog.Hello", VOID))
vec("env-client-request-id-numeric-string", "RpcMessage.FromClient", req("42", "EventLog.Hello", VOID))
vec("env-client-request-id-63", "RpcMessage.FromClient", req(63, "EventLog.Hello", VOID))
vec("env-client-request-id-64", "RpcMessage.FromClient", req(64, "EventLog.Hello", VOID))
vec("env-client-request-id-2p31", "RpcMessage.FromClient", req(2 ** 31, "EventLog.Hello", VOID))
vec("env-client-request-id-2p40", "RpcMessage.FromClient", req(2 ** 40, "EventLog.Hello", VOID))
// Up to 2^48-1 a Number is a varint; from 2^48 on it is an 8-byte f64.
vec("env-client-request-id-2p48-minus-1", "RpcMessage.FromClient", req(2 ** 48 - 1, "EventLog.Hello", VOID))
vec("env-client-request-id-2p48", "RpcMessage.FromClient", req(2 ** 48, "EventLog.Hello", VOID))
vec("env-client-request-id-max-safe", "RpcMessage.FromClient", req(Number.MAX_SAFE_INTEGER, "EventLog.Hello", VOID))
vec("env-client-request-unknown-tag", "RpcMessage.FromClient", req(11, "EventLog.Nope", VOID))
vec(
  "env-client-request-all-fields",
  "RpcMessage.FromClient",
  req(12, "EventLog.Changes", changesPayload, {
    discard: true,
    headers: [["x-trace", "abc"], ["ключ", "🙂"], ["", ""]],
    isNotification: true,
    sampled: true,
    spanId: "span-1",
    traceId: "trace-1"
  })
)
vec(
  "env-client-request-sampled-false",
  "RpcMessage.FromClient",
  req(13, "EventLog.Changes", changesPayload, { sampled: false, spanId: "", traceId: long("t", 140) })
)
vec("env-client-request-discard", "RpcMessage.FromClient", req(14, "EventLog.WriteSingle", wsEnc1, { discard: true }))
vec(
  "env-client-request-long-header",
  "RpcMessage.FromClient",
  req(15, "EventLog.Hello", VOID, { headers: [["authorization", long("Bearer 🔑", 300)]] })
)

const ack2 = (requestId) => ({ _tag: "Ack", requestId })
const intr = (requestId) => ({ _tag: "Interrupt", requestId })
vec("env-client-ack-id-0", "RpcMessage.FromClient", ack2(0), { hex: "0d21a71fbf488612ff6b00020000" })
vec("env-client-ack-id-2", "RpcMessage.FromClient", ack2(2), { hex: "0d21a71fbf488612ff6b00020004" })
vec("env-client-ack-id-128", "RpcMessage.FromClient", ack2(128))
vec("env-client-ack-id-string", "RpcMessage.FromClient", ack2("2"))
vec("env-client-ack-id-2p48", "RpcMessage.FromClient", ack2(2 ** 48))
vec("env-client-ack-id-max-safe", "RpcMessage.FromClient", ack2(Number.MAX_SAFE_INTEGER))
vec("env-client-interrupt-id-2", "RpcMessage.FromClient", intr(2), { hex: "0d21a71fbf488612ff6b08020004" })
vec("env-client-interrupt-id-string", "RpcMessage.FromClient", intr("changes-🙂"))
vec("env-client-interrupt-id-2p40", "RpcMessage.FromClient", intr(2 ** 40))
vec("env-client-interrupt-id-2p48", "RpcMessage.FromClient", intr(2 ** 48))
vec("env-client-ping", "RpcMessage.FromClient", { _tag: "Ping" }, { hex: "0a21a71fbf488612ff6b03" })
vec("env-client-eof", "RpcMessage.FromClient", { _tag: "Eof" }, { hex: "0a21a71fbf488612ff6b04" })

const exitEnv = (requestId, exit) => ({ _tag: "Exit", exit: B(exit), requestId })
const chunkEnv = (requestId, values) => ({ _tag: "Chunk", requestId, values: B(values) })
const defectEnv = (json) => ({ _tag: "Defect", defect: B(encodeDefectFrame(json)) })
vec("env-server-pong", "RpcMessage.FromServer", { _tag: "Pong" }, { hex: "0a21a71fbf488612ff6b06" })
vec("env-server-exit-hello", "RpcMessage.FromServer", exitEnv(0, exitHello))
vec("env-server-exit-authenticate", "RpcMessage.FromServer", exitEnv(1, exitAuthOk), {
  hex: "11 21a71fbf488612ff6b 01 | 02 0002 | 03 022000"
})
vec("env-server-exit-authenticate-forbidden", "RpcMessage.FromServer", exitEnv(1, exitAuthFail))
vec("env-server-exit-write-single", "RpcMessage.FromServer", exitEnv(3, exitWrite3))
vec("env-server-exit-changes-end", "RpcMessage.FromServer", exitEnv(2, exitChangesEnd))
vec("env-server-exit-changes-interrupt", "RpcMessage.FromServer", exitEnv(2, exitChangesInterrupt))
vec("env-server-exit-changes-forbidden", "RpcMessage.FromServer", exitEnv(2, exitForbidden))
vec("env-server-exit-id-string", "RpcMessage.FromServer", exitEnv("req-ü-🙂", exitAuthOk))
vec("env-server-exit-id-2p48", "RpcMessage.FromServer", exitEnv(2 ** 48, exitAuthOk))
vec("env-server-exit-id-max-safe", "RpcMessage.FromServer", exitEnv(Number.MAX_SAFE_INTEGER, exitAuthOk))
vec("env-server-chunk", "RpcMessage.FromServer", chunkEnv(2, chunkEnc))
vec("env-server-chunk-chunked", "RpcMessage.FromServer", chunkEnv(2, chunkPieces))
vec("env-server-chunk-id-string", "RpcMessage.FromServer", chunkEnv("changes-🙂", chunkEnc))
vec("env-server-chunk-id-2p40", "RpcMessage.FromServer", chunkEnv(2 ** 40, chunkEnc))
vec("env-server-defect-string", "RpcMessage.FromServer", defectEnv("Unknown request tag: Bogus"))
vec("env-server-defect-error", "RpcMessage.FromServer", defectEnv(ERROR_DEFECT))

// ------------------------------------------------ self-checks on bytes ----

/** FNV-1a 32 of a field name: the SchemaBinary field id. */
const fid = (name) => {
  let h = 0x811c9dc5
  for (const b of Buffer.from(name, "utf8")) h = Math.imul(h ^ b, 0x01000193) >>> 0
  return h
}

/**
 * Walks the row run that starts at `at` (count, then rows) and counts shape
 * declarations, shape reuses and string back-references (odd cell codes).
 */
function rowRunStats(bytes, at, end) {
  let count
  ;[count, at] = readUv(bytes, at)
  const shapes = []
  const stats = { rows: count, declared: 0, reused: 0, backrefs: 0 }
  for (let r = 0; r < count; r++) {
    let len
    ;[len, at] = readUv(bytes, at)
    const rowEnd = at + len
    let shape
    ;[shape, at] = readUv(bytes, at)
    const cell = () => {
      let code
      ;[code, at] = readUv(bytes, at)
      if (code % 2 === 1) stats.backrefs++
      else at += code / 2
    }
    if (shape === 0) {
      stats.declared++
      const fields = []
      while (at < rowEnd) {
        let f
        ;[f, at] = readUv(bytes, at)
        fields.push(f)
        cell()
      }
      shapes.push(fields)
    } else {
      stats.reused++
      for (const _ of shapes[shape - 1]) cell()
    }
    if (at !== rowEnd) throw new Error(`row ${r} does not end where its length says`)
  }
  if (at !== end) throw new Error("the row run does not fill its region")
  return stats
}

/** Finds the SIZED field `name` in a default-mode struct frame: [start, end]. */
function sizedField(bytes, name) {
  let at = checkFrame(bytes, false)
  while (at < bytes.length) {
    let tag
    ;[tag, at] = readUv(bytes, at)
    const id = Math.floor(tag / 8)
    const wire = tag % 8
    if (wire === 0) {
      let len
      ;[len, at] = readUv(bytes, at)
      if (id === fid(name)) return [at, at + len]
      at += len
    } else if (wire === 1) {
      ;[, at] = readUv(bytes, at)
    } else if (wire !== 3 && wire !== 4) {
      throw new Error(`unexpected wire kind ${wire}`)
    }
  }
  throw new Error(`no field ${name}`)
}

const byName = new Map(vectors.map((v) => [v.name, v]))
const backrefVectors = []
for (const v of vectors) {
  if (v.schema !== "WriteEntriesUnencrypted") continue
  const [start, end] = sizedField(v.bytes, "entries")
  if (start === end) continue
  const s = rowRunStats(v.bytes, start, end)
  if (s.backrefs > 0) backrefVectors.push(`${v.name} (${s.backrefs})`)
}
if (!backrefVectors.includes("write-unencrypted-repeated-strings (7)")) {
  throw new Error(`expected string back-references in write-unencrypted-repeated-strings, found: ${backrefVectors}`)
}
{
  const v = byName.get("remote-batches-3")
  const s = rowRunStats(v.bytes, checkFrame(v.bytes, false), v.bytes.length)
  if (s.declared !== 1 || s.reused !== 3) throw new Error(`remote-batches-3: expected 1 shape reused 3 times: ${JSON.stringify(s)}`)
}
{
  // RemoteEntries rows never intern: the repeated strings are in `entry`.
  const v = byName.get("remote-entries-repeated-strings")
  const s = rowRunStats(v.bytes, checkFrame(v.bytes, false), v.bytes.length)
  if (s.backrefs !== 0) throw new Error(`remote-entries-repeated-strings has back-references now: ${JSON.stringify(s)}`)
}
{
  // §2.1's captured 3-ack exit shape: 4c 20 00 | 03 | 1e 00 e8de8fe203 02 00 feb096b70a 20 <id> | 14 01 02 02 20 <id> | ...
  const ids = CAP_IDS
  const expected = "4c2000031e00e8de8fe2030200feb096b70a20" + ids[0] + "1401020220" + ids[1] + "1401020420" + ids[2]
  if (toHex(byName.get("exit-write-single-success-3").bytes) !== expected) {
    throw new Error("exit-write-single-success-3 does not have the captured shape of §2.1")
  }
}

// -------------------------------------------------------------- output ----

fs.mkdirSync(outDir, { recursive: true })
for (const f of fs.readdirSync(outDir)) {
  if (f.endsWith(".bin") || f === "manifest.json") fs.rmSync(path.join(outDir, f))
}
vectors.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
for (const v of vectors) fs.writeFileSync(path.join(outDir, v.file), v.bytes)
const manifest = vectors.map(({ name, schema, file, value }) => ({ name, schema, file, value }))
fs.writeFileSync(path.join(outDir, "manifest.json"), JSON.stringify(manifest, null, 1) + "\n")

const perKey = {}
for (const v of vectors) perKey[v.schema] = (perKey[v.schema] ?? 0) + 1
console.log(`golden-v4: ${vectors.length} vectors written to ${outDir}`)
for (const [k, n] of Object.entries(perKey).sort()) console.log(`  ${k}: ${n}`)
console.log(`  string back-references in: ${backrefVectors.join(", ")}`)
if (notCanonical.length) {
  console.log(`  captured frames with an explicit undefined optional field (not reproducible from canonical JSON): ${notCanonical.join(", ")}`)
}
