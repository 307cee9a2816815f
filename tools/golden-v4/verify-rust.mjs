// Checks Rust-encoded frames against Effect 4.1.0 (the Rust -> Effect
// direction of the v4 golden check).
//
//   node verify-rust.mjs RUST_DIR [--verbose]
//
// RUST_DIR holds <name>.bin frames and manifest.json (the format of the
// committed fixtures: [{name, schema, file, value}], written by the Rust test
// v4_codec_golden). For every entry the .bin must be exactly one frame of the
// schema key's mode, Effect's real decoder for that key must accept it, and
// the decoded value's canonical JSON (README.md) must equal `value`.
// Frames that Effect itself would encode differently are fine (the format
// lets writers skip interning and always declare row shapes); how many are
// byte-identical is reported, and --verbose lists the others.
import * as fs from "node:fs"
import * as path from "node:path"
import { decodeCanonical, diff, SCHEMAS, toHex } from "./lib.mjs"

const args = process.argv.slice(2)
const verbose = args.includes("--verbose")
const dir = args.find((a) => !a.startsWith("--"))
if (!dir) {
  console.error("usage: node verify-rust.mjs RUST_DIR [--verbose]")
  process.exit(2)
}
const manifestPath = path.join(dir, "manifest.json")
if (!fs.existsSync(manifestPath)) {
  console.error(`error: ${manifestPath} is missing: run \`cargo test -p evsync-core --test v4_codec_golden\` first`)
  process.exit(1)
}

let manifest
try {
  manifest = JSON.parse(fs.readFileSync(manifestPath, "utf8"))
} catch (e) {
  console.error(`error: ${manifestPath} is not JSON: ${e.message}`)
  process.exit(1)
}
if (!Array.isArray(manifest)) {
  console.error(`error: ${manifestPath} must be an array of {name, schema, file, value}`)
  process.exit(1)
}

let failures = 0
let identical = 0
const differentBytes = []
const perKey = {}
const names = new Set()
const fail = (name, msg) => {
  failures++
  if (failures <= 50) console.error(`FAIL ${name}: ${msg}`)
}

for (const [i, v] of manifest.entries()) {
  const name = typeof v?.name === "string" ? v.name : `#${i}`
  if (typeof v?.name !== "string" || typeof v.schema !== "string" || typeof v.file !== "string" || !("value" in v)) {
    fail(name, "manifest entry needs string name, schema, file and a value")
    continue
  }
  if (names.has(name)) fail(name, "duplicate name")
  names.add(name)
  const s = SCHEMAS[v.schema]
  if (!s) {
    fail(name, `unknown schema key ${JSON.stringify(v.schema)} (known: ${Object.keys(SCHEMAS).join(", ")})`)
    continue
  }
  perKey[v.schema] = (perKey[v.schema] ?? 0) + 1
  const file = path.join(dir, v.file)
  if (!fs.existsSync(file)) {
    fail(name, `${v.file} is missing`)
    continue
  }
  const bytes = new Uint8Array(fs.readFileSync(file))
  let actual
  try {
    actual = decodeCanonical(v.schema, bytes)
  } catch (e) {
    fail(name, `${e.message} (frame ${toHex(bytes.subarray(0, 48))}${bytes.length > 48 ? "..." : ""})`)
    continue
  }
  const d = diff(actual, v.value)
  if (d.length) {
    fail(name, `Effect decodes another value (${v.schema}): ${d.slice(0, 6).join("; ")}${d.length > 6 ? "; ..." : ""}`)
    continue
  }
  // Informational: would Effect have written the very same bytes?
  let same = false
  try {
    same = toHex(s.encode(s.decode(bytes))) === toHex(bytes)
  } catch {
    // leave `same` false
  }
  if (same) identical++
  else differentBytes.push(name)
}

const total = manifest.length
if (failures) {
  if (failures > 50) console.error(`... and ${failures - 50} more`)
  console.error(`golden-v4: ${failures} of ${total} Rust-encoded frames FAILED against Effect ${"4.1.0"}`)
  process.exit(1)
}
if (total === 0) {
  console.error(`error: ${manifestPath} lists no frames`)
  process.exit(1)
}
console.log(
  `golden-v4: Effect 4.1.0 decodes all ${total} Rust-encoded frames to their values ` +
    `(${Object.entries(perKey).map(([k, n]) => `${k} ${n}`).join(", ")})`
)
console.log(`golden-v4: ${identical} of ${total} are byte-identical to Effect's own encoding of the same value`)
if (verbose && differentBytes.length) console.log(`  not byte-identical: ${differentBytes.join(", ")}`)
