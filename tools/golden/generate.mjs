// Generates the golden MessagePack vectors of the EventLogRemote protocol
// with Effect's own codec (and msgpackr / raw bytes for frames Effect would
// never send but must be accepted or rejected).
//
//   node generate.mjs [OUT_DIR]     (default: crates/evsync-core/tests/fixtures/golden)
//
// Output: one <name>.bin per frame and manifest.json describing each:
//   vectors:  frames that must decode to `value`. `canonical: true` means
//             Effect's encodeRequest/encodeResponse produced the frame, so
//             our encoder must reproduce it byte for byte; otherwise
//             `canonical_file` is Effect's encoding of the same value.
//   chunked:  messages over 512,000 bytes split with ChunkedMessage.split;
//             their parts are canonical vectors, the joined bytes must
//             decode to `value`.
//   invalid:  frames that must fail with error.kind (and error.path);
//             effect_rejects records whether Effect's decoder rejects too.
// The output is deterministic: check.sh diffs a fresh run against the
// committed fixtures.
import * as fs from "node:fs"
import * as path from "node:path"
import * as R from "@effect/experimental/EventLogRemote"
import * as Schema from "effect/Schema"
import * as M from "msgpackr"
import {
  array,
  bin,
  bytes,
  cat,
  compare,
  describe,
  fill,
  fnv1a64,
  int,
  map,
  plainRequest,
  plainResponse,
  repoRoot,
  str,
  versions
} from "./lib.mjs"

const outDir = path.resolve(process.argv[2] ?? path.join(repoRoot, "crates/evsync-core/tests/fixtures/golden"))
fs.mkdirSync(outDir, { recursive: true })
for (const f of fs.readdirSync(outDir)) {
  if (f.endsWith(".bin") || f === "manifest.json") fs.rmSync(path.join(outDir, f))
}

const vectors = []
const chunked = []
const invalid = []
const names = new Set()

const codec = {
  request: {
    encode: R.encodeRequest,
    decode: R.decodeRequest,
    plain: plainRequest,
    fromPlain: Schema.decodeSync(R.ProtocolRequest)
  },
  response: {
    encode: R.encodeResponse,
    decode: R.decodeResponse,
    plain: plainResponse,
    fromPlain: Schema.decodeSync(R.ProtocolResponse)
  }
}

function write(name, frame) {
  if (names.has(name)) throw new Error(`duplicate vector name ${name}`)
  names.add(name)
  const file = `${name}.bin`
  fs.writeFileSync(path.join(outDir, file), frame)
  return file
}

function same(a, b) {
  return Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0
}

/** A message encoded by Effect itself: our encoder must match it exactly. */
function canonical(name, direction, msg, note) {
  const c = codec[direction]
  const frame = c.encode(msg)
  const plain = c.plain(msg)
  // Effect must read its own output back to the same value.
  const diffs = compare(c.plain(c.decode(frame)), describe(plain))
  if (diffs.length) throw new Error(`${name}: Effect does not round-trip: ${diffs.join("; ")}`)
  const file = write(name, frame)
  vectors.push({ name, direction, file, canonical: true, ...(note ? { note } : {}), value: describe(plain) })
  return frame
}

/**
 * A frame Effect would not produce that evsync accepts. `expected` is the
 * plain value it must decode to. `effect` says what Effect's decoder does
 * with it: undefined = the same value; "rejects" = it fails (evsync is more
 * lenient, documented in `note`); any other value = Effect decodes to that
 * value instead (evsync deliberately differs, documented in `note`).
 */
function lenient(name, direction, frame, expected, note, effect) {
  const c = codec[direction]
  let effect_decodes = "same"
  if (effect === "rejects") {
    let rejected = false
    try {
      c.decode(frame)
    } catch {
      rejected = true
    }
    if (!rejected) throw new Error(`${name}: Effect was expected to reject`)
    effect_decodes = "rejects"
  } else {
    const effectPlain = c.plain(c.decode(frame))
    const diffs = compare(effectPlain, describe(effect ?? expected))
    if (diffs.length) throw new Error(`${name}: Effect decodes differently: ${diffs.join("; ")}`)
    if (effect !== undefined) effect_decodes = "differs"
  }
  const canonicalFrame = c.encode(c.fromPlain(expected))
  if (same(canonicalFrame, frame)) throw new Error(`${name}: frame is canonical, use canonical()`)
  const file = write(name, frame)
  const canonical_file = write(`${name}.canonical`, canonicalFrame)
  vectors.push({
    name,
    direction,
    file,
    canonical: false,
    canonical_file,
    note,
    effect_decodes,
    ...(effect_decodes === "differs" ? { effect_value: describe(effect) } : {}),
    value: describe(expected)
  })
}

/** A frame evsync must reject with `kind` at `errPath`. */
function bad(name, direction, frame, kind, errPath, note) {
  let effect_rejects = false
  try {
    codec[direction].decode(frame)
  } catch {
    effect_rejects = true
  }
  const file = write(name, frame)
  invalid.push({ name, direction, file, error: { kind, path: errPath }, effect_rejects, note })
}

/** A message over the chunk size, split by Effect into parts. */
function chunkedGroup(name, direction, msg, id) {
  const c = codec[direction]
  const whole = c.encode(msg)
  if (whole.length <= 512_000) throw new Error(`${name}: only ${whole.length} bytes`)
  const parts = R.ChunkedMessage.split(id, whole).map((part, i) => {
    canonical(`${name}-part${i}`, direction, part)
    return `${name}-part${i}`
  })
  chunked.push({
    name,
    direction,
    chunk_id: id,
    parts,
    len: whole.length,
    fnv1a64: fnv1a64(whole),
    value: describe(c.plain(msg))
  })
}

// ---- deterministic pseudo-random values ----

function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = seed
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
const rand = mulberry32(20240611)
const randInt = (n) => Math.floor(rand() * n)
const randBytes = (n) => Uint8Array.from({ length: n }, () => randInt(256))
const pick = (xs) => xs[randInt(xs.length)]
const randString = () => {
  const alphabet = ["a", "Z", "0", "-", "é", "ß", "鍵", "公", "🔑", "🙂", " ", "\u0000", "\n"]
  return Array.from({ length: randInt(40) }, () => pick(alphabet)).join("")
}
const randId = () =>
  pick([
    () => randInt(128),
    () => -randInt(33),
    () => randInt(65536) - 32768,
    () => randInt(2 ** 32),
    () => -randInt(2 ** 31) - 1,
    () => Math.floor(rand() * 2 ** 53) * (rand() < 0.5 ? -1 : 1),
    () => 2 ** 53 - 1 - randInt(1000)
  ])()
const randSeq = () => Math.abs(randId())
const randBin = () => (rand() < 0.2 ? randBytes(65 + randInt(400)) : randBytes(randInt(40)))

// ---- canonical vectors ----

const ID_VALUES = [
  0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1,
  -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 53 - 1)
]
const SEQ_VALUES = ID_VALUES.filter((n) => n >= 0)
const idName = (n) => (n < 0 ? `m${-n}` : `${n}`)

const iv = fill(12, 1)
const entryId = (i) => fill(16, 16 + i)

// Requests.
canonical(
  "req-write-entries",
  "request",
  new R.WriteEntries({
    publicKey: "6f1c1a0e-2f4b-4b8e-9d52-1c1b7c1d2e3f",
    id: 0,
    iv,
    encryptedEntries: [
      { entryId: entryId(0), encryptedEntry: fill(40, 3) },
      { entryId: entryId(1), encryptedEntry: fill(57, 9) }
    ]
  })
)
canonical(
  "req-write-entries-empty",
  "request",
  new R.WriteEntries({ publicKey: "", id: 1, iv: new Uint8Array(0), encryptedEntries: [] }),
  "empty publicKey, empty iv, empty array"
)
canonical(
  "req-write-entries-empty-bins",
  "request",
  new R.WriteEntries({
    publicKey: "pk",
    id: 2,
    iv,
    encryptedEntries: [{ entryId: new Uint8Array(0), encryptedEntry: new Uint8Array(0) }]
  })
)
for (const len of [255, 256, 65535, 65536]) {
  canonical(
    `req-write-entries-bin${len}`,
    "request",
    new R.WriteEntries({
      publicKey: "pk",
      id: 3,
      iv,
      encryptedEntries: [{ entryId: entryId(2), encryptedEntry: fill(len, 5) }]
    }),
    "bin8/bin16/bin32 boundary"
  )
}
for (const n of [15, 16]) {
  canonical(
    `req-write-entries-${n}-entries`,
    "request",
    new R.WriteEntries({
      publicKey: "pk",
      id: 4,
      iv,
      encryptedEntries: Array.from({ length: n }, (_, i) => ({ entryId: entryId(i), encryptedEntry: fill(i, i) }))
    }),
    "fixarray/array16 boundary"
  )
}
for (const n of SEQ_VALUES) {
  canonical(`req-request-changes-${idName(n)}`, "request", new R.RequestChanges({ publicKey: "pk", startSequence: n }))
}
canonical("req-stop-changes", "request", new R.StopChanges({ publicKey: "6f1c1a0e-2f4b-4b8e-9d52-1c1b7c1d2e3f" }))
canonical("req-chunked", "request", new R.ChunkedMessage({ id: 9, part: [0, 3], data: fill(100, 2) }))
canonical("req-chunked-empty", "request", new R.ChunkedMessage({ id: 0, part: [0, 1], data: new Uint8Array(0) }))
for (const n of ID_VALUES) {
  canonical(`req-ping-${idName(n)}`, "request", new R.Ping({ id: n }), "integer width")
}

const PUBLIC_KEYS = {
  emoji: "🔑🙂👩‍💻",
  cjk: "公開鍵の識別子",
  "1000-chars": "鍵".repeat(1000),
  "31-bytes": "k".repeat(31),
  "32-bytes": "k".repeat(32),
  "255-bytes": "k".repeat(255),
  "256-bytes": "k".repeat(256),
  "65535-bytes": "k".repeat(65535),
  "65536-bytes": "k".repeat(65536),
  "nul-and-newline": "a\u0000b\nc"
}
for (const [name, publicKey] of Object.entries(PUBLIC_KEYS)) {
  canonical(`req-stop-changes-key-${name}`, "request", new R.StopChanges({ publicKey }), "string header width / UTF-8")
}
canonical("req-request-changes-key-emoji", "request", new R.RequestChanges({ publicKey: PUBLIC_KEYS.emoji, startSequence: 5 }))

// Responses.
canonical("res-hello", "response", new R.Hello({ remoteId: fill(16, 200) }))
canonical("res-ack", "response", new R.Ack({ id: 3, sequenceNumbers: [1, 2, 300] }))
canonical("res-ack-empty", "response", new R.Ack({ id: 0, sequenceNumbers: [] }))
canonical("res-ack-widths", "response", new R.Ack({ id: 7, sequenceNumbers: SEQ_VALUES }), "every integer width")
for (const n of [15, 16, 65535, 65536]) {
  canonical(
    `res-ack-${n}`,
    "response",
    new R.Ack({ id: 8, sequenceNumbers: Array.from({ length: n }, (_, i) => i % 128) }),
    "array header boundary"
  )
}
for (const n of ID_VALUES) {
  canonical(`res-pong-${idName(n)}`, "response", new R.Pong({ id: n }), "integer width")
}
const remoteEntry = (i, len = 30) => ({ sequence: i + 1, iv, entryId: entryId(i), encryptedEntry: fill(len, i) })
canonical("res-changes", "response", new R.Changes({ publicKey: "pk", entries: [remoteEntry(0), remoteEntry(1)] }))
canonical("res-changes-empty", "response", new R.Changes({ publicKey: "pk", entries: [] }))
canonical(
  "res-changes-empty-bins",
  "response",
  new R.Changes({
    publicKey: "",
    entries: [{ sequence: 0, iv: new Uint8Array(0), entryId: new Uint8Array(0), encryptedEntry: new Uint8Array(0) }]
  })
)
for (const len of [255, 256, 65535, 65536]) {
  canonical(
    `res-changes-bin${len}`,
    "response",
    new R.Changes({ publicKey: "pk", entries: [remoteEntry(4, len)] }),
    "bin8/bin16/bin32 boundary"
  )
}
canonical(
  "res-changes-sequence-widths",
  "response",
  new R.Changes({ publicKey: "pk", entries: SEQ_VALUES.map((sequence, i) => ({ ...remoteEntry(i, 1), sequence })) })
)
for (const [name, publicKey] of Object.entries(PUBLIC_KEYS)) {
  canonical(`res-changes-key-${name}`, "response", new R.Changes({ publicKey, entries: [remoteEntry(0)] }))
}
canonical("res-chunked", "response", new R.ChunkedMessage({ id: 2 ** 32, part: [2, 3], data: fill(77, 4) }))

// Random messages (fixed seed).
for (let i = 0; i < 16; i++) {
  const kind = i % 5
  const publicKey = randString()
  const msg = kind === 0
    ? new R.WriteEntries({
      publicKey,
      id: randId(),
      iv: randBytes(12),
      encryptedEntries: Array.from({ length: randInt(6) }, () => ({ entryId: randBytes(16), encryptedEntry: randBin() }))
    })
    : kind === 1
    ? new R.RequestChanges({ publicKey, startSequence: randSeq() })
    : kind === 2
    ? new R.StopChanges({ publicKey })
    : kind === 3
    ? new R.ChunkedMessage({ id: randId(), part: [randInt(200), 1 + randInt(200)], data: randBin() })
    : new R.Ping({ id: randId() })
  canonical(`req-random-${i}`, "request", msg, "pseudo-random")
}
for (let i = 0; i < 16; i++) {
  const kind = i % 5
  const msg = kind === 0
    ? new R.Hello({ remoteId: randBytes(16) })
    : kind === 1
    ? new R.Ack({ id: randId(), sequenceNumbers: Array.from({ length: randInt(20) }, randSeq) })
    : kind === 2
    ? new R.Changes({
      publicKey: randString(),
      entries: Array.from({ length: randInt(6) }, () => ({
        sequence: randSeq(),
        iv: randBytes(12),
        entryId: randBytes(16),
        encryptedEntry: randBin()
      }))
    })
    : kind === 3
    ? new R.ChunkedMessage({ id: randId(), part: [randInt(200), 1 + randInt(200)], data: randBin() })
    : new R.Pong({ id: randId() })
  canonical(`res-random-${i}`, "response", msg, "pseudo-random")
}

// Messages over 512,000 bytes, split by Effect's ChunkedMessage.split.
chunkedGroup(
  "res-changes-large",
  "response",
  new R.Changes({
    publicKey: "6f1c1a0e-2f4b-4b8e-9d52-1c1b7c1d2e3f",
    entries: Array.from({ length: 520 }, (_, i) => ({
      sequence: i + 1,
      iv,
      entryId: entryId(i),
      encryptedEntry: fill(1000, i)
    }))
  }),
  41
)
chunkedGroup(
  "req-write-entries-large",
  "request",
  new R.WriteEntries({
    publicKey: "pk",
    id: 12,
    iv,
    encryptedEntries: Array.from({ length: 1100 }, (_, i) => ({ entryId: entryId(i), encryptedEntry: fill(1000, i) }))
  }),
  12
)

// ---- lenient vectors: valid, but not what Effect's encoder writes ----

const TAG = "_tag"
lenient(
  "req-ping-tag-first-msgpackr",
  "request",
  M.encode({ _tag: "Ping", id: 3 }),
  { _tag: "Ping", id: 3 },
  "msgpackr-encoded object with _tag first"
)
lenient(
  "req-ping-fixmap",
  "request",
  map([["id", int(3, "fix")], [TAG, str("Ping")]], "fix"),
  { _tag: "Ping", id: 3 },
  "fixmap header"
)
lenient(
  "req-request-changes-map32",
  "request",
  map([["publicKey", str("pk")], ["startSequence", int(9, "fix")], [TAG, str("RequestChanges")]], 32),
  { _tag: "RequestChanges", publicKey: "pk", startSequence: 9 },
  "map32 header"
)
lenient(
  "req-ping-id-float64",
  "request",
  map([["id", int(5, "f64")], [TAG, str("Ping")]]),
  { _tag: "Ping", id: 5 },
  "integer as float64"
)
lenient(
  "req-ping-id-float32",
  "request",
  map([["id", int(-6, "f32")], [TAG, str("Ping")]]),
  { _tag: "Ping", id: -6 },
  "integer as float32"
)
lenient(
  "req-ping-id-negative-zero",
  "request",
  map([["id", int(-0, "f64")], [TAG, str("Ping")]]),
  { _tag: "Ping", id: 0 },
  "-0.0 as float64"
)
for (const [value, format] of [[200, "u16"], [5, "i8"], [-100, "i32"], [300, "u32"]]) {
  lenient(
    `req-ping-id-${idName(value)}-as-${format}`,
    "request",
    map([["id", int(value, format)], [TAG, str("Ping")]]),
    { _tag: "Ping", id: value },
    "integer in a wider format than needed"
  )
}
for (const [value, format] of [[1, "u64"], [-1, "i64"], [70000, "u64"]]) {
  lenient(
    `req-ping-id-${idName(value)}-as-${format}`,
    "request",
    map([["id", int(value, format)], [TAG, str("Ping")]]),
    { _tag: "Ping", id: value },
    "64-bit int formats: evsync accepts any int width; Effect rejects them (msgpackr 1.12 decodes int64/uint64 as BigInt, Schema.Number refuses)",
    "rejects"
  )
}
lenient(
  "req-request-changes-start-float64",
  "request",
  map([["publicKey", str("pk")], ["startSequence", int(42, "f64")], [TAG, str("RequestChanges")]]),
  { _tag: "RequestChanges", publicKey: "pk", startSequence: 42 },
  "startSequence as float64"
)
lenient(
  "res-ack-mixed-number-formats",
  "response",
  map([
    [TAG, str("Ack")],
    ["sequenceNumbers", array([int(1, "f64"), int(2, "f32"), int(3, "u32"), int(4, "i16"), int(2 ** 40, "f64")])],
    ["id", int(1, "u32")]
  ]),
  { _tag: "Ack", id: 1, sequenceNumbers: [1, 2, 3, 4, 2 ** 40] },
  "integers as float64/float32/uint32/int16, keys reordered"
)
lenient(
  "req-write-entries-reordered",
  "request",
  map([
    [TAG, str("WriteEntries")],
    [
      "encryptedEntries",
      array([
        map([["encryptedEntry", bin(fill(5, 1))], ["entryId", bin(entryId(0))]], "fix"),
        map([["encryptedEntry", bin(fill(6, 2))], ["entryId", bin(entryId(1))]], 32)
      ])
    ],
    ["iv", bin(iv, 32)],
    ["id", int(77, "fix")],
    ["publicKey", str("pk", 16)]
  ]),
  {
    _tag: "WriteEntries",
    publicKey: "pk",
    id: 77,
    iv,
    encryptedEntries: [
      { entryId: entryId(0), encryptedEntry: fill(5, 1) },
      { entryId: entryId(1), encryptedEntry: fill(6, 2) }
    ]
  },
  "keys in reverse order, fixmap/map32 entries, bin32 iv, str16 publicKey"
)
lenient(
  "res-changes-reordered-fixmaps",
  "response",
  map([
    ["entries", array([map([["encryptedEntry", bin(fill(3, 1))], ["entryId", bin(entryId(0))], ["iv", bin(iv)], ["sequence", int(9, "fix")]], "fix")])],
    [TAG, str("Changes", 8)],
    ["publicKey", str("pk", 32)]
  ], "fix"),
  { _tag: "Changes", publicKey: "pk", entries: [{ sequence: 9, iv, entryId: entryId(0), encryptedEntry: fill(3, 1) }] },
  "fixmap everywhere, reversed keys, str8 _tag, str32 publicKey"
)
lenient(
  "res-hello-key-str16",
  "response",
  cat(bytes(0x82), str("remoteId", 16), bin(fill(16, 9)), str(TAG, 8), str("Hello", 32)),
  { _tag: "Hello", remoteId: fill(16, 9) },
  "keys and _tag in non-minimal str widths"
)
lenient(
  "req-ping-extra-keys",
  "request",
  map([
    ["id", int(4, "fix")],
    ["extra", M.encode({ nested: [1, "two", null, true, 2.5, { deep: new Uint8Array(3) }] })],
    [int(1, "fix"), str("integer key")],
    ["publicKey", int(5, "fix")],
    ["when", bytes(0xd6, 0xff, 0, 0, 0, 1)],
    [TAG, str("Ping")]
  ]),
  { _tag: "Ping", id: 4 },
  "unknown keys (nested values, a non-string key, a timestamp ext, another message's field of a wrong type) are ignored"
)
lenient(
  "req-ping-duplicate-key",
  "request",
  map([["id", str("not a number")], [TAG, str("Ping")], ["id", int(8, "fix")]]),
  { _tag: "Ping", id: 8 },
  "duplicate key: the last one wins, as in msgpackr"
)
lenient(
  "req-chunked-part-formats",
  "request",
  map([["id", int(1, "fix")], ["part", array([int(0, "f64"), int(2, "u32")])], ["data", bin(fill(4, 0), 16)], [TAG, str("ChunkedMessage")]]),
  { _tag: "ChunkedMessage", id: 1, part: [0, 2], data: fill(4, 0) },
  "part elements as float64/uint32, data as bin16"
)
lenient(
  "req-request-changes-negative-start",
  "request",
  map([["publicKey", str("pk")], ["startSequence", int(-5, "fix")], [TAG, str("RequestChanges")]]),
  { _tag: "RequestChanges", publicKey: "pk", startSequence: 0 },
  "negative startSequence: evsync clamps to 0 (Effect passes -5 through)",
  { _tag: "RequestChanges", publicKey: "pk", startSequence: -5 }
)

// ---- invalid frames ----

const ping = (idBytes) => map([["id", idBytes], [TAG, str("Ping")]])
const writeEntries = R.encodeRequest(
  new R.WriteEntries({
    publicKey: "pk",
    id: 1,
    iv,
    encryptedEntries: [{ entryId: entryId(0), encryptedEntry: fill(20, 1) }]
  })
)

bad("bad-unknown-tag", "request", map([[TAG, str("Nope")]]), "unknown_tag", "_tag")
bad("bad-response-tag-as-request", "request", R.encodeResponse(new R.Pong({ id: 1 })), "unknown_tag", "_tag")
bad("bad-request-tag-as-response", "response", writeEntries, "unknown_tag", "_tag")
bad("bad-missing-tag", "request", map([["id", int(1, "fix")]]), "missing_tag", "")
bad("bad-tag-not-str", "request", map([["id", int(1, "fix")], [TAG, int(1, "fix")]]), "wrong_type", "_tag")
bad("bad-tag-bin", "response", map([["id", int(1, "fix")], [TAG, bin(Buffer.from("Pong"))]]), "wrong_type", "_tag")
bad("bad-not-a-map", "request", M.encode(["Ping", 1]), "wrong_type", "")
bad("bad-missing-id", "request", map([[TAG, str("Ping")]]), "missing_field", "Ping.id")
bad(
  "bad-write-entries-missing-iv",
  "request",
  map([["publicKey", str("pk")], ["id", int(1, "fix")], ["encryptedEntries", array([])], [TAG, str("WriteEntries")]]),
  "missing_field",
  "WriteEntries.iv"
)
bad(
  "bad-write-entries-entry-missing-field",
  "request",
  map([
    ["publicKey", str("pk")],
    ["id", int(1, "fix")],
    ["iv", bin(iv)],
    ["encryptedEntries", array([map([["entryId", bin(entryId(0))]])])],
    [TAG, str("WriteEntries")]
  ]),
  "missing_field",
  "WriteEntries.encryptedEntries[0].encryptedEntry"
)
bad(
  "bad-write-entries-entry-id-str",
  "request",
  map([
    ["publicKey", str("pk")],
    ["id", int(1, "fix")],
    ["iv", bin(iv)],
    [
      "encryptedEntries",
      array([
        map([["entryId", bin(entryId(0))], ["encryptedEntry", bin(fill(3, 0))]]),
        map([["entryId", str("0190a0b0-c0d0-7e0f-8000-000000000000")], ["encryptedEntry", bin(fill(3, 0))]])
      ])
    ],
    [TAG, str("WriteEntries")]
  ]),
  "wrong_type",
  "WriteEntries.encryptedEntries[1].entryId"
)
bad(
  "bad-public-key-bin",
  "request",
  map([["publicKey", bin(Buffer.from("pk"))], ["startSequence", int(0, "fix")], [TAG, str("RequestChanges")]]),
  "wrong_type",
  "RequestChanges.publicKey"
)
bad(
  "bad-sequence-numbers-not-array",
  "response",
  map([["id", int(1, "fix")], ["sequenceNumbers", int(1, "fix")], [TAG, str("Ack")]]),
  "wrong_type",
  "Ack.sequenceNumbers"
)
bad("bad-id-str", "request", ping(str("1")), "wrong_type", "Ping.id")
bad("bad-id-nil", "response", map([["id", bytes(0xc0)], [TAG, str("Pong")]]), "wrong_type", "Pong.id")
bad("bad-id-non-integral", "request", ping(int(1.5, "f64")), "not_an_integer", "Ping.id")
bad("bad-id-nan", "request", ping(int(NaN, "f64")), "not_an_integer", "Ping.id")
bad("bad-id-infinity", "request", ping(int(Infinity, "f64")), "not_an_integer", "Ping.id")
bad("bad-id-over-i64", "request", ping(int(2n ** 63n, "u64")), "out_of_range", "Ping.id")
bad("bad-id-float-over-i64", "request", ping(int(2 ** 64, "f64")), "out_of_range", "Ping.id")
bad(
  "bad-ack-negative-sequence",
  "response",
  map([["id", int(1, "fix")], ["sequenceNumbers", array([int(1, "fix"), int(-1, "fix")])], [TAG, str("Ack")]]),
  "out_of_range",
  "Ack.sequenceNumbers[1]"
)
bad(
  "bad-changes-negative-sequence",
  "response",
  map([
    ["publicKey", str("pk")],
    [
      "entries",
      array([
        map([["sequence", int(-3, "i8")], ["iv", bin(iv)], ["entryId", bin(entryId(0))], ["encryptedEntry", bin(fill(2, 0))]])
      ])
    ],
    [TAG, str("Changes")]
  ]),
  "out_of_range",
  "Changes.entries[0].sequence"
)
bad(
  "bad-chunked-negative-index",
  "request",
  map([["id", int(1, "fix")], ["part", array([int(-1, "fix"), int(2, "fix")])], ["data", bin(fill(2, 0))], [TAG, str("ChunkedMessage")]]),
  "out_of_range",
  "ChunkedMessage.part[0]"
)
bad(
  "bad-chunked-total-over-u32",
  "response",
  map([["id", int(1, "fix")], ["part", array([int(0, "fix"), int(2 ** 32, "f64")])], ["data", bin(fill(2, 0))], [TAG, str("ChunkedMessage")]]),
  "out_of_range",
  "ChunkedMessage.part[1]"
)
bad(
  "bad-chunked-part-one-element",
  "request",
  map([["id", int(1, "fix")], ["part", array([int(0, "fix")])], ["data", bin(fill(2, 0))], [TAG, str("ChunkedMessage")]]),
  "wrong_length",
  "ChunkedMessage.part"
)
bad(
  "bad-chunked-part-three-elements",
  "response",
  map([["id", int(1, "fix")], ["part", array([int(0, "fix"), int(1, "fix"), int(2, "fix")])], ["data", bin(fill(2, 0))], [TAG, str("ChunkedMessage")]]),
  "wrong_length",
  "ChunkedMessage.part"
)
bad("bad-hello-remote-id-15", "response", map([["remoteId", bin(fill(15, 0))], [TAG, str("Hello")]]), "wrong_length", "Hello.remoteId")
bad("bad-hello-remote-id-17", "response", map([["remoteId", bin(fill(17, 0))], [TAG, str("Hello")]]), "wrong_length", "Hello.remoteId")
bad(
  "bad-public-key-invalid-utf8",
  "request",
  map([["publicKey", cat(bytes(0xa2, 0xc3, 0x28))], [TAG, str("StopChanges")]]),
  "invalid_utf8",
  "StopChanges.publicKey"
)
bad("bad-trailing-byte", "request", cat(R.encodeRequest(new R.Ping({ id: 1 })), bytes(0x00)), "trailing_bytes", "")
bad(
  "bad-two-messages",
  "response",
  cat(R.encodeResponse(new R.Pong({ id: 1 })), R.encodeResponse(new R.Pong({ id: 2 }))),
  "trailing_bytes",
  ""
)
bad("bad-empty", "request", new Uint8Array(0), "truncated", "")
for (const cut of [1, 2, 3, 10, 30, writeEntries.length - 25, writeEntries.length - 1]) {
  bad(`bad-truncated-at-${cut}`, "request", writeEntries.subarray(0, cut), "truncated", "")
}
bad(
  "bad-bin32-length-forged",
  "request",
  map([["publicKey", str("pk")], ["id", int(1, "fix")], ["iv", cat(bytes(0xc6, 0xff, 0xff, 0xff, 0xff), iv)]]),
  "truncated",
  ""
)
bad("bad-array32-length-forged", "response", map([["id", int(1, "fix")], ["sequenceNumbers", bytes(0xdd, 0xff, 0xff, 0xff, 0xff, 0x01)]]), "truncated", "")
bad("bad-reserved-byte-value", "request", ping(bytes(0xc1)), "reserved_byte", "")
bad("bad-reserved-byte-top", "response", bytes(0xc1), "reserved_byte", "")
bad(
  "bad-reserved-byte-in-extra-key",
  "request",
  map([["id", int(1, "fix")], ["x", array([bytes(0xc1)])], [TAG, str("Ping")]]),
  "reserved_byte",
  ""
)
bad(
  "bad-too-deep",
  "request",
  map([["id", int(1, "fix")], ["x", cat(new Uint8Array(40).fill(0x91), bytes(0xc0))], [TAG, str("Ping")]]),
  "too_deep",
  "",
  "40 nested arrays in an extra key"
)

// ---- manifest ----

const manifest = {
  generated_by: "tools/golden/generate.mjs",
  versions: versions(),
  vectors,
  chunked,
  invalid
}
// One entry per line: readable, diffable, and not 65,536 lines for one array.
const section = (xs) => "[\n" + xs.map((x) => "  " + JSON.stringify(x)).join(",\n") + "\n ]"
fs.writeFileSync(
  path.join(outDir, "manifest.json"),
  `{\n "generated_by": ${JSON.stringify(manifest.generated_by)},\n "versions": ${JSON.stringify(manifest.versions)},\n` +
    ` "vectors": ${section(vectors)},\n "chunked": ${section(chunked)},\n "invalid": ${section(invalid)}\n}\n`
)
console.log(
  `wrote ${vectors.length} vectors, ${chunked.length} chunked messages, ${invalid.length} invalid frames to ${
    path.relative(process.cwd(), outDir) || "."
  }`
)
