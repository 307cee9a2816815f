// Debug aid: prints the canonical JSON (README.md) that Effect 4.1.0 decodes
// one SchemaBinary frame to.
//
//   node decode.mjs HEX_OR_FILE [SCHEMA_KEY]
//
// HEX_OR_FILE: a file holding the frame (e.g. a .bin vector), or the frame
// as hex (spaces, '|' and a 0x prefix are ignored). SCHEMA_KEY: one of the
// keys in lib.mjs / README.md; without it a fingerprint-mode frame (0x21) is
// read as an RPC envelope, and a default-mode frame is tried against every
// key (all keys that accept it are printed).
import * as fs from "node:fs"
import { decodeCanonical, fromHex, readUv, SCHEMAS } from "./lib.mjs"

const [input, key] = process.argv.slice(2)
if (!input) {
  console.error("usage: node decode.mjs HEX_OR_FILE [SCHEMA_KEY]")
  console.error(`schema keys: ${Object.keys(SCHEMAS).join(", ")}`)
  process.exit(2)
}
let bytes
if (fs.existsSync(input) && fs.statSync(input).isFile()) {
  bytes = new Uint8Array(fs.readFileSync(input))
} else {
  const hex = input.replace(/0x/gi, "").replace(/[\s|:_,]/g, "").toLowerCase()
  try {
    bytes = fromHex(hex)
  } catch {
    console.error(`error: ${input} is neither a file nor hex`)
    process.exit(2)
  }
}

const show = (k, v) => console.log(`${k}:\n${JSON.stringify(v, null, 2)}`)

if (key !== undefined) {
  try {
    show(key, decodeCanonical(key, bytes))
  } catch (e) {
    console.error(`error: ${e.message}`)
    process.exit(1)
  }
} else {
  const [, at] = readUv(bytes, 0)
  const keys = bytes[at] === 0x21
    ? ["RpcMessage.FromClient", "RpcMessage.FromServer"]
    : Object.keys(SCHEMAS).filter((k) => !SCHEMAS[k].fingerprint)
  let any = false
  const errors = []
  for (const k of keys) {
    try {
      show(k, decodeCanonical(k, bytes))
      any = true
    } catch (e) {
      errors.push(`  ${k}: ${e.message}`)
    }
  }
  if (!any) {
    console.error("error: no schema key decodes this frame:")
    console.error(errors.join("\n"))
    process.exit(1)
  }
}
