// Shared by generate.mjs, verify-rust.mjs and decode.mjs: the schema keys of
// the v4 golden vectors, each bound to the Effect 4.1.0 codec that the real
// eventlog client/server use for it, and the canonical JSON both sides compare
// (see README.md).
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Cause, Effect, Exit, Schema } from "effect"
import { EventJournal, EventLogEncryption, EventLogMessage as EM } from "effect/eventlog"
import { Rpc, RpcSchema, RpcSerialization } from "effect/rpc"

export const here = path.dirname(fileURLToPath(import.meta.url))
export const repoRoot = path.resolve(here, "../..")
export const defaultFixtures = path.join(repoRoot, "crates/evsync-core/tests/fixtures/golden-v4")

/** The loaded effect version (check.sh and generate.mjs insist on 4.1.0). */
export const effectVersion = JSON.parse(
  fs.readFileSync(path.join(here, "node_modules/effect/package.json"), "utf8")
).version
if (effectVersion !== "4.1.0") {
  throw new Error(`tools/golden-v4 needs effect 4.1.0, found ${effectVersion}: run npm ci in tools/golden-v4`)
}

/**
 * The RpcSerialization service of `RpcSerialization.layerSchemaBinary()`, i.e.
 * exactly what an Effect v4 eventlog client/server over a socket uses:
 * `makeUnsafe()` is the envelope parser/encoder (fingerprint mode) and
 * `codecFor(schema)` the codec of every nested frame (default mode).
 */
export const serialization = Effect.runSync(
  Effect.provide(Effect.service(RpcSerialization.RpcSerialization), RpcSerialization.layerSchemaBinary())
)

/** Envelope fingerprint of RpcMessage.EncodedSchema in effect 4.1.0. */
export const FINGERPRINT = "a71fbf488612ff6b"

// ---------------------------------------------------------------- bytes ----

export const toHex = (b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex")
export const fromHex = (h) => {
  if (!/^(?:[0-9a-f]{2})*$/.test(h)) throw new Error(`not lowercase hex: ${h.slice(0, 40)}`)
  return Uint8Array.from(Buffer.from(h, "hex"))
}
/** An owned copy: SchemaBinary returns arena-backed views. */
export const own = (b) => Uint8Array.from(b)

/** Reads an unsigned LEB128 varint at `at`: [value, nextOffset]. */
export function readUv(bytes, at) {
  let n = 0
  let mul = 1
  for (let i = at; i < bytes.length && i < at + 10; i++) {
    n += (bytes[i] & 0x7f) * mul
    if ((bytes[i] & 0x80) === 0) return [n, i + 1]
    mul *= 128
  }
  throw new Error(`truncated varint at ${at}`)
}

/**
 * Checks that `bytes` is exactly one frame of the expected mode and returns
 * where the value starts. Throws with a readable reason otherwise.
 */
export function checkFrame(bytes, fingerprint) {
  if (bytes.length === 0) throw new Error("empty file")
  const [len, at] = readUv(bytes, 0)
  if (len === 0) throw new Error("frame length 0")
  if (at + len !== bytes.length) {
    throw new Error(`frame length says ${len} bytes after the prefix, the file has ${bytes.length - at}`)
  }
  const env = bytes[at]
  if (fingerprint) {
    if (env !== 0x21) throw new Error(`envelope byte 0x${env.toString(16)}, expected 0x21 (fingerprint mode)`)
    const fp = toHex(bytes.subarray(at + 1, at + 9))
    if (fp !== FINGERPRINT) throw new Error(`fingerprint ${fp}, expected ${FINGERPRINT}`)
    return at + 9
  }
  if (env !== 0x20) throw new Error(`envelope byte 0x${env.toString(16)}, expected 0x20 (default mode)`)
  return at + 1
}

// ------------------------------------------------------- canonical JSON ----

/**
 * Canonical JSON of an encoded-side value: Uint8Array -> {"$bytes": hex},
 * undefined object fields dropped, object keys sorted, Exit as
 * {"_tag":"Success"[,"value"]} / {"_tag":"Failure","cause":[reason...]}.
 */
export function canon(v) {
  if (v instanceof Uint8Array) return { $bytes: toHex(v) }
  if (Exit.isExit(v)) return canonExit(v)
  if (Array.isArray(v)) return v.map((x) => (x === undefined ? null : canon(x)))
  if (v === null || typeof v === "string" || typeof v === "boolean") return v
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new Error(`cannot put ${v} in canonical JSON`)
    return Object.is(v, -0) ? 0 : v
  }
  if (typeof v === "object") {
    const proto = Object.getPrototypeOf(v)
    if (proto !== Object.prototype && proto !== null) {
      throw new Error(`not an encoded-side value: ${v?.constructor?.name ?? typeof v}`)
    }
    const out = {}
    for (const k of Object.keys(v).sort()) if (v[k] !== undefined) out[k] = canon(v[k])
    return out
  }
  throw new Error(`cannot put ${typeof v} in canonical JSON`)
}

function canonExit(e) {
  if (Exit.isSuccess(e)) return e.value === undefined ? { _tag: "Success" } : { _tag: "Success", value: canon(e.value) }
  return {
    _tag: "Failure",
    cause: e.cause.reasons.map((r) => {
      switch (r._tag) {
        case "Fail":
          return { _tag: "Fail", error: canon(r.error) }
        case "Die":
          return { _tag: "Die", defect: canon(r.defect) }
        case "Interrupt":
          return r.fiberId === undefined ? { _tag: "Interrupt" } : { _tag: "Interrupt", fiberId: r.fiberId }
      }
      throw new Error(`unknown cause reason ${r._tag}`)
    })
  }
}

/** Inverse of canon for plain values: {"$bytes"} -> Uint8Array. */
export function uncanon(c) {
  if (Array.isArray(c)) return c.map(uncanon)
  if (c !== null && typeof c === "object") {
    const keys = Object.keys(c)
    if (keys.length === 1 && keys[0] === "$bytes") return fromHex(c.$bytes)
    const out = {}
    for (const k of keys) out[k] = uncanon(c[k])
    return out
  }
  return c
}

function uncanonExit(c) {
  if (c._tag === "Success") return Exit.succeed(uncanon(c.value))
  if (c._tag !== "Failure" || !Array.isArray(c.cause)) throw new Error(`not a canonical Exit: ${JSON.stringify(c)}`)
  return Exit.failCause(
    Cause.fromReasons(
      c.cause.map((r) => {
        switch (r._tag) {
          case "Fail":
            return Cause.makeFailReason(uncanon(r.error))
          case "Die":
            return Cause.makeDieReason(uncanon(r.defect))
          case "Interrupt":
            return Cause.makeInterruptReason(r.fiberId)
        }
        throw new Error(`unknown cause reason ${JSON.stringify(r)}`)
      })
    )
  )
}

/** Deep equality of canonical JSON (object key order ignored); returns diffs. */
export function diff(actual, expected, at = "$") {
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return [`${at}: expected an array, found ${brief(actual)}`]
    if (actual.length !== expected.length) return [`${at}: expected ${expected.length} elements, found ${actual.length}`]
    return expected.flatMap((x, i) => diff(actual[i], x, `${at}[${i}]`))
  }
  if (expected !== null && typeof expected === "object") {
    if (actual === null || typeof actual !== "object" || Array.isArray(actual)) {
      return [`${at}: expected an object, found ${brief(actual)}`]
    }
    const out = []
    for (const k of new Set([...Object.keys(expected), ...Object.keys(actual)])) {
      if (!(k in expected)) out.push(`${at}.${k}: unexpected (${brief(actual[k])})`)
      else if (!(k in actual)) out.push(`${at}.${k}: missing`)
      else out.push(...diff(actual[k], expected[k], `${at}.${k}`))
    }
    return out
  }
  return actual === expected ? [] : [`${at}: expected ${brief(expected)}, found ${brief(actual)}`]
}
const brief = (v) => {
  const s = JSON.stringify(v)
  return s === undefined ? String(v) : s.length > 80 ? s.slice(0, 77) + "..." : s
}

/** JSON with sorted object keys (canon already sorts; this is for output). */
export const stableStringify = (v, indent) => JSON.stringify(v, null, indent)

// -------------------------------------------------------------- schemas ----

const runSync = (effect) => Effect.runSync(effect)

/** The RPC envelope (both directions share RpcMessage.EncodedSchema). */
function envelopeKey(tags) {
  return {
    fingerprint: true,
    tags,
    api: "RpcSerialization.layerSchemaBinary() -> makeUnsafe().encode(msg) / makeUnsafe().decode(bytes) " +
      "(= SchemaBinary.encoder / SchemaBinary.parser of RpcMessage.EncodedSchema with {fingerprint: true})",
    encode: (msg) => {
      const out = serialization.makeUnsafe().encode(msg)
      if (out === undefined) throw new Error("the envelope encoder wrote nothing")
      return own(out)
    },
    decode: (bytes) => {
      const msgs = serialization.makeUnsafe().decode(bytes)
      if (msgs.length !== 1) throw new Error(`expected one envelope, the parser returned ${msgs.length}`)
      if (!tags.includes(msgs[0]._tag)) throw new Error(`a ${msgs[0]._tag} envelope is not one of ${tags.join("/")}`)
      return msgs[0]
    },
    fromCanonical: (c) => {
      if (!tags.includes(c._tag)) throw new Error(`a ${c._tag} envelope is not one of ${tags.join("/")}`)
      return uncanon(c)
    },
    toCanonical: (msg) => canon(msg)
  }
}

/**
 * A nested (default-mode) frame of `schema`. `codec` defaults to
 * `serialization.codecFor(schema)`, which is what RpcClient/RpcServer use for
 * payloads, chunks and exits. `encode`/`decode` override it where the
 * eventlog code calls its own static codec (WriteEntries.encode, ...).
 */
function frameKey(schema, api, options = {}) {
  const codec = options.codec ?? serialization.codecFor(schema)
  const isExit = options.exit === true
  return {
    fingerprint: false,
    api,
    schema,
    codec,
    encode: options.encode ?? ((value) => own(Schema.encodeUnknownSync(codec)(value))),
    decode: options.decode ?? ((bytes) => Schema.decodeUnknownSync(codec)(bytes)),
    fromCanonical: (c) => Schema.decodeUnknownSync(schema)(isExit ? uncanonExit(c) : uncanon(c)),
    toCanonical: (value) => canon(Schema.encodeUnknownSync(schema)(value))
  }
}

const exitKey = (rpc, name) =>
  frameKey(Rpc.exitSchema(rpc), `serialization.codecFor(Rpc.exitSchema(EventLogMessage.${name}))`, { exit: true })

const changesStream = RpcSchema.getStreamSchemas(EM.ChangesRpc.successSchema)
if (changesStream._tag !== "Some") throw new Error("ChangesRpc is not a stream")
const changesChunk = Schema.NonEmptyArray(changesStream.value.success)

const encryptedRemoteBatches = Schema.NonEmptyArray(EventLogEncryption.EncryptedRemoteBatch)
const remoteEntries = Schema.NonEmptyArray(EventJournal.RemoteEntry)

/** Schema keys -> codec. The key strings are shared with the Rust test. */
export const SCHEMAS = {
  "RpcMessage.FromClient": envelopeKey(["Request", "Ack", "Interrupt", "Ping", "Eof"]),
  "RpcMessage.FromServer": envelopeKey(["Chunk", "Exit", "Defect", "Pong"]),
  "HelloResponse": frameKey(EM.HelloResponse, "serialization.codecFor(EventLogMessage.HelloResponse)"),
  "Authenticate": frameKey(
    EM.AuthenticateRpc.payloadSchema,
    "serialization.codecFor(EventLogMessage.AuthenticateRpc.payloadSchema) (= Authenticate)"
  ),
  "WriteSingle.Payload": frameKey(
    EM.WriteSingleRpc.payloadSchema,
    "serialization.codecFor(EventLogMessage.WriteSingleRpc.payloadSchema)"
  ),
  "WriteChunked.Payload": frameKey(
    EM.WriteChunkedRpc.payloadSchema,
    "serialization.codecFor(EventLogMessage.WriteChunkedRpc.payloadSchema) (= ChunkedMessage)"
  ),
  "Changes.Payload": frameKey(
    EM.ChangesRpc.payloadSchema,
    "serialization.codecFor(EventLogMessage.ChangesRpc.payloadSchema)"
  ),
  "Changes.Chunk": frameKey(
    changesChunk,
    "serialization.codecFor(Schema.NonEmptyArray(RpcSchema.getStreamSchemas(ChangesRpc.successSchema).value.success))"
  ),
  "WriteEntries": frameKey(EM.WriteEntries, "EventLogMessage.WriteEntries.encode / WriteEntries.decode", {
    codec: EM.WriteEntries.FromSchemaBinary,
    encode: (value) => own(runSync(EM.WriteEntries.encode(value))),
    decode: (bytes) => runSync(EM.WriteEntries.decode(bytes))
  }),
  "WriteEntriesUnencrypted": frameKey(
    EM.WriteEntriesUnencrypted,
    "EventLogMessage.WriteEntriesUnencrypted.encode / WriteEntriesUnencrypted.decode",
    {
      codec: EM.WriteEntriesUnencrypted.FromSchemaBinary,
      encode: (value) => own(runSync(EM.WriteEntriesUnencrypted.encode(value))),
      decode: (bytes) => runSync(EM.WriteEntriesUnencrypted.decode(bytes))
    }
  ),
  "EncryptedRemoteBatches": frameKey(
    encryptedRemoteBatches,
    "EventLogMessage.ChangesRpc.encodeEncrypted / ChangesRpc.decodeEncrypted",
    {
      codec: EM.ChangesRpc.EncryptedFromSchemaBinary,
      encode: (value) => own(runSync(EM.ChangesRpc.encodeEncrypted(value))),
      decode: (bytes) => runSync(EM.ChangesRpc.decodeEncrypted(bytes))
    }
  ),
  "RemoteEntries": frameKey(
    remoteEntries,
    "EventLogMessage.ChangesRpc.encodeUnencrypted / ChangesRpc.decodeUnencrypted",
    {
      codec: EM.ChangesRpc.UnencryptedFromSchemaBinary,
      encode: (value) => own(runSync(EM.ChangesRpc.encodeUnencrypted(value))),
      decode: (bytes) => runSync(EM.ChangesRpc.decodeUnencrypted(bytes))
    }
  ),
  "WriteAcks": frameKey(
    EM.WriteSingleRpc.successSchema,
    "serialization.codecFor(EventLogMessage.WriteSingleRpc.successSchema) (= Schema.Array(WriteAck))"
  ),
  "Exit.Hello": exitKey(EM.HelloRpc, "HelloRpc"),
  "Exit.Authenticate": exitKey(EM.AuthenticateRpc, "AuthenticateRpc"),
  "Exit.WriteSingle": exitKey(EM.WriteSingleRpc, "WriteSingleRpc"),
  "Exit.WriteChunked": exitKey(EM.WriteChunkedRpc, "WriteChunkedRpc"),
  "Exit.Changes": exitKey(EM.ChangesRpc, "ChangesRpc"),
  "EventLogProtocolError": frameKey(
    EM.EventLogProtocolError,
    "serialization.codecFor(EventLogMessage.EventLogProtocolError)"
  )
}

/** The Defect envelope's nested frame (no schema key of its own). */
export const defectCodec = serialization.codecFor(Schema.Defect())
export const encodeDefectFrame = (json) => own(Schema.encodeUnknownSync(defectCodec)(json))

/**
 * Decodes one .bin with Effect's decoder for `key` and returns its canonical
 * JSON. Throws (with a readable message) on any decode failure.
 */
export function decodeCanonical(key, bytes) {
  const s = SCHEMAS[key]
  if (!s) throw new Error(`unknown schema key ${JSON.stringify(key)}`)
  checkFrame(bytes, s.fingerprint)
  let decoded
  try {
    decoded = s.decode(own(bytes))
  } catch (e) {
    throw new Error(`Effect cannot decode it as ${key}: ${String(e?.message ?? e).split("\n").slice(0, 6).join(" | ")}`)
  }
  return s.toCanonical(decoded)
}
