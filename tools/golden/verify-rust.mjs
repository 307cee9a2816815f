// Checks Rust-encoded frames against Effect (the Rust → Effect direction).
//
//   node verify-rust.mjs RUST_OUT_DIR
//
// RUST_OUT_DIR is written by crates/evsync-core/tests/codec_golden.rs
// (`write_rust_encoded_frames_for_effect`): <name>.bin frames and a
// manifest.json describing the value of each. For every frame:
//   1. msgpackr (the decoder Effect uses) decodes it to the described value;
//   2. Effect's decodeRequest/decodeResponse accepts it, to the same value;
//   3. Effect's encodeRequest/encodeResponse of that value gives back the
//      very same bytes (so the Rust encoder is byte-compatible with Effect
//      also for values that exist only on the Rust side).
import * as fs from "node:fs"
import * as path from "node:path"
import * as R from "@effect/experimental/EventLogRemote"
import * as M from "msgpackr"
import { compare, fnv1a64, plainRequest, plainResponse, repoRoot } from "./lib.mjs"

const dir = process.argv[2]
if (!dir) {
  console.error("usage: node verify-rust.mjs RUST_OUT_DIR")
  process.exit(2)
}
const manifestPath = path.join(dir, "manifest.json")
if (!fs.existsSync(manifestPath)) {
  console.error(`error: ${manifestPath} is missing: run \`cargo test -p evsync-core --test codec_golden\` first`)
  process.exit(1)
}
const manifest = JSON.parse(fs.readFileSync(manifestPath, "utf8"))
const fixtureManifest = fs.readFileSync(path.join(repoRoot, "crates/evsync-core/tests/fixtures/golden/manifest.json"))
if (manifest.fixture_manifest_fnv1a64 !== fnv1a64(fixtureManifest)) {
  console.error(
    `error: ${dir} was written for other golden fixtures (stale): rerun \`cargo test -p evsync-core --test codec_golden\``
  )
  process.exit(1)
}

const codec = {
  request: { decode: R.decodeRequest, encode: R.encodeRequest, plain: plainRequest },
  response: { decode: R.decodeResponse, encode: R.encodeResponse, plain: plainResponse }
}

let failures = 0
const fail = (name, msg) => {
  failures++
  if (failures <= 30) console.error(`FAIL ${name}: ${msg}`)
}

for (const v of manifest.vectors) {
  const frame = new Uint8Array(fs.readFileSync(path.join(dir, v.file)))
  const c = codec[v.direction]
  let raw
  try {
    raw = M.decode(frame)
  } catch (e) {
    fail(v.name, `msgpackr cannot decode: ${e.message}`)
    continue
  }
  const rawDiffs = compare(raw, v.value)
  if (rawDiffs.length) fail(v.name, `msgpackr decodes another value: ${rawDiffs.slice(0, 5).join("; ")}`)
  let decoded
  try {
    decoded = c.decode(frame)
  } catch (e) {
    fail(v.name, `Effect rejects it: ${String(e.message).split("\n").slice(-2).join(" ")}`)
    continue
  }
  const diffs = compare(c.plain(decoded), v.value)
  if (diffs.length) fail(v.name, `Effect decodes another value: ${diffs.slice(0, 5).join("; ")}`)
  const again = c.encode(decoded)
  if (Buffer.compare(Buffer.from(again), Buffer.from(frame)) !== 0) {
    let i = 0
    while (i < frame.length && i < again.length && frame[i] === again[i]) i++
    fail(v.name, `Effect re-encodes differently (${again.length} vs ${frame.length} bytes, first difference at ${i})`)
  }
}

if (failures) {
  console.error(`${failures} of ${manifest.vectors.length} Rust-encoded frames failed`)
  process.exit(1)
}
console.log(`ok: ${manifest.vectors.length} Rust-encoded frames decode with msgpackr and Effect and re-encode byte-identically`)
