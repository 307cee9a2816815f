// V9: evsync's Rust v4 client (the `evsync write|tail|smoke --protocol v4` commands, built on
// crates/evsync-client's v4::Client) and a real Effect 4 replica exchange events through the
// target server, both ways, with one identity string:
//   - Rust -> Effect: `evsync write` encrypts a batch Effect's EventLogEncryption opens (same
//     derived key, AAD, plaintext layout); the Effect replica's Note handler runs with the same
//     payload and entry id.
//   - Effect -> Rust: `evsync tail` authenticates (Ed25519 key derived from the root secret),
//     decrypts Effect's batch and prints the entry with Effect's exact payload bytes.
//   - over 512,000 bytes both ways: the Rust write goes out as WriteChunked pieces, Effect's comes
//     back to tail as Chunked values.
//   - `evsync smoke --protocol v4` passes against the target.
// Against Effect's own reference server too, so the Rust client is checked against Effect's
// server as well as evsync's.
//
// The CLI binary is EVSYNC_CLI_BIN (default target/debug/evsync; build it with
// `cargo build -p evsync`). It is not EVSYNC_BIN, which may be a wrapper serving the Worker.
import assert from "node:assert/strict"
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { describe } from "node:test"
import * as Schema from "effect/Schema"
import * as SchemaBinary from "effect/encoding/SchemaBinary"
import { makeIdentity } from "../src/replica.mjs"
import { assertHealthy, REPO_DIR, scenario, tenant, withServerPerTarget } from "./lib/harness.mjs"

const CLI = process.env.EVSYNC_CLI_BIN ?? join(REPO_DIR, "target/debug/evsync")

/** Effect's SchemaBinary frame of a Note payload (what its EventLog puts in Entry.payload). */
const Note = Schema.Struct({ id: Schema.String, text: Schema.String, n: Schema.Number })
const noteFrameHex = (note) => Buffer.from(Schema.encodeSync(SchemaBinary.toCodec(Note))(note)).toString("hex")
const sha256 = (s) => createHash("sha256").update(s).digest("hex")

const cliEnv = () => {
  // Never pass the developer's sync settings or tokens to the CLI.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("CLOUDFLARE_SYNC_") && k !== "EVSYNC_IDENTITY")
  )
  env.RUST_LOG = "warn"
  return env
}

/** Runs the CLI to completion; resolves {code, stdout, stderr}. */
const runCli = (args, { input, timeoutMs = 60_000 } = {}) => {
  if (!existsSync(CLI)) throw new Error(`evsync CLI not found at ${CLI}: build it with \`cargo build -p evsync\``)
  return new Promise((resolve, reject) => {
    const child = spawn(CLI, args, { env: cliEnv(), stdio: ["pipe", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => (stdout += d))
    child.stderr.on("data", (d) => (stderr += d))
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`evsync ${args[0]} did not finish in ${timeoutMs} ms; stderr: ${stderr}`))
    }, timeoutMs)
    child.once("error", reject)
    // "close", not "exit": stdout's last bytes may still be unread when the process exits.
    child.once("close", (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
    child.stdin.end(input ?? "")
  })
}

/**
 * Starts `evsync tail ... --json`; `waitForLines(n)` resolves with the first n parsed lines.
 * `stop()` sends SIGTERM (tail exits 0 on it).
 */
const startTail = (args) => {
  if (!existsSync(CLI)) throw new Error(`evsync CLI not found at ${CLI}: build it with \`cargo build -p evsync\``)
  const child = spawn(CLI, ["tail", "--json", ...args], { env: cliEnv(), stdio: ["ignore", "pipe", "pipe"] })
  const lines = []
  let buffered = ""
  let stderr = ""
  let exited
  const waiters = new Set()
  const settle = () => {
    for (const w of waiters) {
      if (lines.length >= w.n) {
        waiters.delete(w)
        clearTimeout(w.timer)
        w.resolve(lines.slice(0, w.n))
      } else if (exited) {
        waiters.delete(w)
        clearTimeout(w.timer)
        w.reject(new Error(`tail exited (${JSON.stringify(exited)}) after ${lines.length} line(s); stderr: ${stderr}`))
      }
    }
  }
  child.stdout.on("data", (d) => {
    buffered += d
    let i
    while ((i = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, i)
      buffered = buffered.slice(i + 1)
      if (line.trim()) lines.push(JSON.parse(line))
    }
    settle()
  })
  child.stderr.on("data", (d) => (stderr += d))
  // "close", not "exit": lines still in the pipe are parsed before waiters hear of the exit.
  const done = new Promise((resolve) =>
    child.once("close", (code, signal) => {
      exited = { code, signal }
      settle()
      resolve(exited)
    })
  )
  return {
    lines,
    get stderr() {
      return stderr
    },
    waitForLines: (n, timeoutMs = 30_000) =>
      new Promise((resolve, reject) => {
        const w = { n, resolve, reject }
        w.timer = setTimeout(() => {
          waiters.delete(w)
          reject(new Error(`tail: ${lines.length} of ${n} line(s) after ${timeoutMs} ms; stderr: ${stderr}`))
        }, timeoutMs)
        waiters.add(w)
        settle()
      }),
    stop: async () => {
      if (!exited) child.kill("SIGTERM")
      return done
    }
  }
}

/** The CLI's base URL of a target (`ws://HOST:PORT/v4/event-log`) and a fresh tenant. */
const endpoint = (server, label) => {
  const name = tenant(label)
  const url = server.url(name)
  return { name, base: url.slice(0, url.length - name.length - 1) }
}

describe("V9 Rust v4 client", () => {
  withServerPerTarget((target, server) => {
    scenario(target, "V9-rust-effect", "a Rust v4 replica and an Effect 4 replica exchange events both ways", async ({ replica }) => {
      const { name, base } = endpoint(server, "v9")
      const identity = await makeIdentity()
      const remote = ["--protocol", "v4", "--url", base, "--tenant", name, "--identity", identity]
      const effect = await replica({ url: server.url(name), identity, name: "effect" })
      await effect.waitAuthenticated()

      // Rust -> Effect
      const fromRust = { id: "from-rust", text: "written by evsync write ✓", n: 7 }
      const w = await runCli([
        "write", ...remote, "--event", "Note", "--primary-key", fromRust.id, "--payload-json", JSON.stringify(fromRust)
      ])
      assert.equal(w.code, 0, `evsync write: ${w.stderr}`)
      const receipt = JSON.parse(w.stdout)
      await effect.waitForReceived(1)
      assert.deepEqual(effect.received.map(({ id, text, n, storeId, entryId }) => ({ id, text, n, storeId, entryId })), [
        { ...fromRust, storeId: "default", entryId: receipt.entryId }
      ])

      // Effect -> Rust (the Rust write is history for this tail, Effect's arrives live)
      const tail = startTail([...remote, "--payload-fields", "id,text,n"])
      const first = await tail.waitForLines(1)
      assert.equal(first[0].entryId, receipt.entryId)
      assert.equal(first[0].sequence, receipt.sequence)
      assert.deepEqual(first[0].payload, fromRust)
      assert.equal(first[0].payloadHex, noteFrameHex(fromRust), "Effect's own encoding of the Rust-written payload")

      const fromEffect = { id: "from-effect", text: "written by Effect ✓", n: 1.5 }
      await effect.write(fromEffect)
      const [, second] = await tail.waitForLines(2)
      const run = effect.runs.find((r) => r.id === fromEffect.id)
      assert.equal(second.entryId, run.entryId)
      assert.equal(second.event, "Note")
      assert.equal(second.primaryKey, fromEffect.id)
      assert.deepEqual(second.payload, fromEffect)
      assert.equal(second.payloadHex, noteFrameHex(fromEffect), "Effect's payload bytes, decrypted")
      assert.equal(second.remoteId.replaceAll("-", ""), effect.remoteId, "one server, one remoteId")
      assert.equal((await tail.stop()).code, 0)
      assert.ok(!tail.lines.some((l) => l.error), `tail: ${JSON.stringify(tail.lines)}`)

      // The Effect replica got the Rust entry once, and nothing else from the remote.
      assert.deepEqual(effect.received.map((r) => r.id), [fromRust.id])
      assertHealthy(effect)
    })

    scenario(target, "V9-rust-effect-large", "over 512,000 bytes both ways: WriteChunked from Rust, Chunked values to Rust", async ({ replica }) => {
      const { name, base } = endpoint(server, "v9l")
      const identity = await makeIdentity()
      const remote = ["--protocol", "v4", "--url", base, "--tenant", name, "--identity", identity]
      const effect = await replica({ url: server.url(name), identity, name: "effect" })
      await effect.waitAuthenticated()

      const big = (c) => c.repeat(700_000)
      const fromRust = { id: "big-rust", text: big("r"), n: 1 }
      // stdin: a 700 KB argument is over Linux's per-argument limit
      const w = await runCli(
        ["write", ...remote, "--event", "Note", "--primary-key", fromRust.id, "--payload-json", "-"],
        { input: JSON.stringify(fromRust) }
      )
      assert.equal(w.code, 0, `evsync write: ${w.stderr}`)
      await effect.waitForReceived(1, { timeoutMs: 30_000 })
      const got = effect.received[0]
      assert.equal(got.id, fromRust.id)
      assert.equal(sha256(got.text), sha256(fromRust.text), "the 700 KB text arrived intact")

      const fromEffect = { id: "big-effect", text: big("e"), n: 2 }
      await effect.write(fromEffect)
      const tail = startTail([...remote, "--payload-fields", "id,text,n", "--limit", "2"])
      const lines = await tail.waitForLines(2, 60_000)
      assert.equal(lines[0].entryId, JSON.parse(w.stdout).entryId)
      assert.equal(sha256(lines[0].payload.text), sha256(fromRust.text))
      assert.equal(lines[1].payloadHex, noteFrameHex(fromEffect), "Effect's 700 KB payload, decrypted intact")
      await tail.stop()
      assertHealthy(effect)
    })

    scenario(target, "V9-rust-smoke", "evsync smoke --protocol v4 passes", async () => {
      const { name, base } = endpoint(server, "v9s")
      const s = await runCli(["smoke", "--protocol", "v4", "--url", base, "--tenant", name, "--timeout", "20s"])
      assert.equal(s.code, 0, `evsync smoke: ${s.stdout}\n${s.stderr}`)
      assert.match(s.stdout, /\(v4, publicKey .*, store default\)/)
      assert.equal(s.stdout.trim().split("\n").at(-1), "ok")
    })
  })
})
