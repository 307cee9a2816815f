// Shared helpers of generate.mjs and verify-rust.mjs: the JSON description
// of expected values (binaries described compactly) and raw MessagePack
// builders for frames msgpackr's encoder would never produce.
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as R from "@effect/experimental/EventLogRemote"
import * as Schema from "effect/Schema"

export const here = path.dirname(fileURLToPath(import.meta.url))
export const repoRoot = path.resolve(here, "../..")

/** Versions actually loaded, recorded in the manifest so drift is visible. */
export function versions() {
  const v = (name) =>
    JSON.parse(fs.readFileSync(path.join(here, "node_modules", name, "package.json"), "utf8")).version
  return {
    effect: v("effect"),
    "@effect/experimental": v("@effect/experimental"),
    "@effect/platform": v("@effect/platform"),
    msgpackr: v("msgpackr")
  }
}

/** Deterministic filler: byte i = (seed + 7 i) mod 256. Compresses well in git. */
export function fill(len, seed) {
  const out = new Uint8Array(len)
  for (let i = 0; i < len; i++) out[i] = (seed + 7 * i) & 0xff
  return out
}

function isFill(bytes) {
  if (bytes.length === 0) return false
  const seed = bytes[0]
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== ((seed + 7 * i) & 0xff)) return false
  return true
}

/** FNV-1a 64-bit, hex: identifies large binaries in the JSON description. */
export function fnv1a64(bytes) {
  let h = 0xcbf29ce484222325n
  const prime = 0x100000001b3n
  const mask = 0xffffffffffffffffn
  for (let i = 0; i < bytes.length; i++) {
    h ^= BigInt(bytes[i])
    h = (h * prime) & mask
  }
  return h.toString(16).padStart(16, "0")
}

export const toHex = (b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex")

/**
 * JSON description of an encoded-side value (plain objects, arrays,
 * numbers, strings, Uint8Array). Binaries: {"$hex"} up to 64 bytes, else
 * {"$fill": {len, seed}} for filler, else {"$len", "$fnv1a64"}.
 */
export function describe(v) {
  if (v instanceof Uint8Array) {
    if (v.length <= 64) return { $hex: toHex(v) }
    if (isFill(v)) return { $fill: { len: v.length, seed: v[0] } }
    return { $len: v.length, $fnv1a64: fnv1a64(v) }
  }
  if (Array.isArray(v)) return v.map(describe)
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new Error(`cannot describe ${v}`)
    return v
  }
  if (typeof v === "string") return v
  if (v !== null && typeof v === "object") {
    const out = {}
    for (const k of Object.keys(v)) out[k] = describe(v[k])
    return out
  }
  throw new Error(`cannot describe ${typeof v}: ${v}`)
}

/** Whether a binary matches its description. */
function binMatches(bytes, d) {
  if (!(bytes instanceof Uint8Array)) return false
  if ("$hex" in d) return toHex(bytes) === d.$hex
  if ("$fill" in d) return bytes.length === d.$fill.len && toHex(bytes) === toHex(fill(d.$fill.len, d.$fill.seed))
  return bytes.length === d.$len && fnv1a64(bytes) === d.$fnv1a64
}

/**
 * Compares a decoded value with a description; returns a list of
 * differences (empty when equal). Object key order is not compared.
 */
export function compare(actual, d, at = "$") {
  if (d !== null && typeof d === "object" && !Array.isArray(d) && ("$hex" in d || "$fill" in d || "$len" in d)) {
    return binMatches(actual, d) ? [] : [`${at}: binary differs (${actual?.length} bytes)`]
  }
  if (Array.isArray(d)) {
    if (!Array.isArray(actual)) return [`${at}: expected array`]
    if (actual.length !== d.length) return [`${at}: expected ${d.length} elements, found ${actual.length}`]
    return d.flatMap((x, i) => compare(actual[i], x, `${at}[${i}]`))
  }
  if (d !== null && typeof d === "object") {
    if (actual === null || typeof actual !== "object") return [`${at}: expected object`]
    const diffs = []
    const keys = new Set([...Object.keys(d), ...Object.keys(actual)])
    for (const k of keys) {
      if (!(k in d)) diffs.push(`${at}.${k}: unexpected key`)
      else if (!(k in actual)) diffs.push(`${at}.${k}: missing`)
      else diffs.push(...compare(actual[k], d[k], `${at}.${k}`))
    }
    return diffs
  }
  return Object.is(actual, d) || actual === d ? [] : [`${at}: expected ${JSON.stringify(d)}, found ${String(actual)}`]
}

/** Effect's encoded-side (plain) form of a decoded protocol message. */
export const plainRequest = Schema.encodeSync(R.ProtocolRequest)
export const plainResponse = Schema.encodeSync(R.ProtocolResponse)

// ---- raw MessagePack pieces ----

export const cat = (...parts) => new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))))
export const bytes = (...xs) => Uint8Array.from(xs)

const be = (n, width) => {
  const b = Buffer.alloc(width)
  if (width === 1) b.writeUInt8(n)
  else if (width === 2) b.writeUInt16BE(n)
  else b.writeUInt32BE(n)
  return b
}

/** str with an explicit header width: "fix" | 8 | 16 | 32. */
export function str(s, width = "auto") {
  const body = Buffer.from(s, "utf8")
  if (width === "auto") width = body.length < 32 ? "fix" : body.length < 256 ? 8 : body.length < 65536 ? 16 : 32
  const head = width === "fix"
    ? bytes(0xa0 | body.length)
    : width === 8
    ? cat(bytes(0xd9), be(body.length, 1))
    : width === 16
    ? cat(bytes(0xda), be(body.length, 2))
    : cat(bytes(0xdb), be(body.length, 4))
  return cat(head, body)
}

/** bin with an explicit header width: 8 | 16 | 32. */
export function bin(data, width = "auto") {
  if (width === "auto") width = data.length < 256 ? 8 : data.length < 65536 ? 16 : 32
  const head = width === 8
    ? cat(bytes(0xc4), be(data.length, 1))
    : width === 16
    ? cat(bytes(0xc5), be(data.length, 2))
    : cat(bytes(0xc6), be(data.length, 4))
  return cat(head, data)
}

/** Integer in an explicit format: "fix", "u8".."u64", "i8".."i64", "f32", "f64". */
export function int(n, format) {
  const b = Buffer.alloc(9)
  switch (format) {
    case "fix":
      return n >= 0 ? bytes(n) : bytes(n & 0xff)
    case "u8":
      return bytes(0xcc, n)
    case "u16":
      b.writeUInt16BE(n, 1), (b[0] = 0xcd)
      return b.subarray(0, 3)
    case "u32":
      b.writeUInt32BE(n, 1), (b[0] = 0xce)
      return b.subarray(0, 5)
    case "u64":
      b.writeBigUInt64BE(BigInt(n), 1), (b[0] = 0xcf)
      return b
    case "i8":
      b.writeInt8(n, 1), (b[0] = 0xd0)
      return b.subarray(0, 2)
    case "i16":
      b.writeInt16BE(n, 1), (b[0] = 0xd1)
      return b.subarray(0, 3)
    case "i32":
      b.writeInt32BE(n, 1), (b[0] = 0xd2)
      return b.subarray(0, 5)
    case "i64":
      b.writeBigInt64BE(BigInt(n), 1), (b[0] = 0xd3)
      return b
    case "f32":
      b.writeFloatBE(n, 1), (b[0] = 0xca)
      return b.subarray(0, 5)
    case "f64":
      b.writeDoubleBE(n, 1), (b[0] = 0xcb)
      return b
  }
  throw new Error(`unknown int format ${format}`)
}

/** Array header + already-encoded elements. */
export function array(elems) {
  const n = elems.length
  const head = n < 16 ? bytes(0x90 | n) : n < 65536 ? cat(bytes(0xdc), be(n, 2)) : cat(bytes(0xdd), be(n, 4))
  return cat(head, ...elems)
}

/**
 * Map with an explicit header: "fix" | 16 | 32. Entries are [key, value]
 * where a string key is encoded as a minimal str and values are bytes.
 */
export function map(entries, header = 16) {
  const n = entries.length
  const head = header === "fix" ? bytes(0x80 | n) : header === 16 ? cat(bytes(0xde), be(n, 2)) : cat(bytes(0xdf), be(n, 4))
  return cat(head, ...entries.flatMap(([k, v]) => [typeof k === "string" ? str(k) : k, v]))
}
