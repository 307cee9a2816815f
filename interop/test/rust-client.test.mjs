// Rust client <-> Effect replica: the Rust replica client (crates/evsync-client, driven through
// the `evsync tail` and `evsync write` subcommands) and an unmodified Effect v3 replica share one
// identity and exchange events through the server, in both directions, each decoding the other's
// payload (the NoteGroup's Schema.Struct payload, msgpack inside the AES-GCM entry).
//
// - Effect -> Rust: `evsync tail --json` prints each entry with its payload decoded to JSON.
// - Rust -> Effect: `evsync write --payload-json` encodes the JSON as msgpackr would; the Effect
//   replica's EventLog handler runs with the decoded Note.
// Waiting is event-driven (a line printed, a handler run); timeouts only bound failures.
import assert from "node:assert/strict"
import { execFileSync, spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { existsSync } from "node:fs"
import { createInterface } from "node:readline"
import { describe } from "node:test"
import { identityFromString, identityToString, makeIdentity } from "../src/replica.mjs"
import { assertHealthy, barrier, EVSYNC_BIN, receivedIds, scenario, tenant, withServerPerTarget } from "./lib/harness.mjs"
import { makeWaiters } from "../src/waiters.mjs"

const sha = (s) => createHash("sha256").update(s).digest("hex")
const WAIT_MS = 30_000

/** The environment for evsync client commands: no inherited settings that would change them. */
const clientEnv = (extra) => {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("CLOUDFLARE_SYNC_") && k !== "EVSYNC_IDENTITY")
  )
  return { ...env, RUST_LOG: "warn", ...extra }
}

const baseUrl = (server) => `ws://${server.address.host}:${server.address.port}/event-log`

/**
 * Starts `evsync tail --json`; resolves once it is connected (its status line on stderr).
 * `lines` collects the parsed NDJSON entries; `waitForLines(n)` awaits the n-th.
 */
const startTail = async ({ server, tenantName, identity, from }) => {
  const args = ["tail", "--json", "--url", baseUrl(server), "--tenant", tenantName]
  if (from !== undefined) args.push("--from", String(from))
  const child = spawn(EVSYNC_BIN, args, {
    env: clientEnv({ EVSYNC_IDENTITY: identityToString(identity) }),
    stdio: ["ignore", "pipe", "pipe"]
  })
  const lines = []
  let stderr = ""
  let exited = null
  const waiters = makeWaiters()
  const notify = () =>
    waiters.notify(
      exited && ((what) => new Error(`evsync tail exited (${JSON.stringify(exited)}) while waiting for ${what}; stderr: ${stderr}`))
    )
  const waitFor = (predicate, what) => {
    const waiting = waiters.waitFor(predicate, {
      timeoutMs: WAIT_MS,
      what,
      onTimeout: () => new Error(`evsync tail: timed out after ${WAIT_MS} ms waiting for ${what}; lines=${lines.length} stderr: ${stderr}`)
    })
    notify()
    return waiting
  }
  createInterface({ input: child.stdout }).on("line", (line) => {
    lines.push(JSON.parse(line))
    notify()
  })
  child.stderr.on("data", (chunk) => {
    stderr += String(chunk)
    notify()
  })
  // "close", not "exit": lines still in the pipe are read before waiters hear of the exit.
  const exit = new Promise((resolve) =>
    child.once("close", (code, signal) => {
      exited = { code, signal }
      notify()
      resolve(exited)
    })
  )
  await waitFor(() => stderr.includes("tail: following"), "its status line")
  return {
    lines,
    waitForLines: (n) => waitFor(() => lines.length >= n, `${n} entries`),
    /** SIGINT (tail exits 0 on it); SIGKILL if it has not exited 5 s later. */
    stop: async () => {
      if (!exited) child.kill("SIGINT")
      let timer
      const result = await Promise.race([
        exit,
        new Promise((resolve) => {
          timer = setTimeout(() => resolve("timeout"), 5_000)
        })
      ])
      clearTimeout(timer)
      if (result === "timeout") {
        child.kill("SIGKILL")
        await exit
        throw new Error("evsync tail did not exit within 5 s of SIGINT")
      }
      assert.equal(result.code, 0, `evsync tail exit: ${JSON.stringify(result)}; stderr: ${stderr}`)
    }
  }
}

/** Runs `evsync write`; resolves with its receipt {sequence, entryId, remoteId}. */
const rustWrite = ({ server, tenantName, identity, note, viaStdin = false }) =>
  new Promise((resolve, reject) => {
    const json = JSON.stringify(note)
    const args = ["write", "--url", baseUrl(server), "--tenant", tenantName, "--event", "Note", "--primary-key", note.id]
    args.push("--payload-json", viaStdin ? "-" : json)
    const child = spawn(EVSYNC_BIN, args, {
      env: clientEnv({ EVSYNC_IDENTITY: identityToString(identity) }),
      stdio: [viaStdin ? "pipe" : "ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (c) => (stdout += String(c)))
    child.stderr.on("data", (c) => (stderr += String(c)))
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`evsync write did not finish within ${WAIT_MS} ms; stderr: ${stderr}`))
    }, WAIT_MS)
    // "close", not "exit": stdout's last bytes may still be unread when the process exits.
    child.once("close", (code) => {
      clearTimeout(timer)
      if (code !== 0) return reject(new Error(`evsync write exited ${code}: ${stderr}`))
      resolve(JSON.parse(stdout))
    })
    if (viaStdin) child.stdin.end(json)
  })

const noteOf = (line) => ({ id: line.payload.id, text: line.payload.text, n: line.payload.n })

describe("Rust client <-> Effect replica", () => {
  if (!existsSync(EVSYNC_BIN)) {
    throw new Error(`evsync binary not found at ${EVSYNC_BIN}: build it with \`cargo build -p evsync\``)
  }
  withServerPerTarget((target, server) => {
    scenario(target, "R1-rust-effect", "events flow both ways and each side decodes the other's payload", async ({ replica }) => {
      const tenantName = tenant("r1")
      const url = server.url(tenantName)
      // An identity made by Rust (`evsync identity new`), parsed by Effect.
      const rustIdentity = execFileSync(EVSYNC_BIN, ["identity", "new"], { env: clientEnv({}) }).toString().trim()
      const identity = identityFromString(rustIdentity)
      assert.equal(identityToString(identity), rustIdentity)
      const tail = await startTail({ server, tenantName, identity })
      try {
        const a = await replica({ url, identity, name: "Effect" })
        await a.waitReady()

        // Effect -> Rust
        const fromEffect = { id: "e1", text: "from Effect, ünïcödé ✓", n: 1.5 }
        await a.write(fromEffect)
        await tail.waitForLines(1)
        const [first] = tail.lines
        assert.equal(first.event, "Note")
        assert.equal(first.primaryKey, "e1")
        assert.deepEqual(noteOf(first), fromEffect)
        assert.equal(first.entryId, a.runs.find((r) => r.id === "e1").entryId)
        assert.equal(first.sequence, 1)

        // Rust -> Effect
        const fromRust = { id: "r1", text: "from Rust", n: -70000 }
        const receipt = await rustWrite({ server, tenantName, identity, note: fromRust })
        await a.waitForReceived(1)
        assert.deepEqual(a.received.map(({ id, text, n }) => ({ id, text, n })), [fromRust])
        assert.equal(a.received[0].entryId, receipt.entryId)
        // the Rust tail sees the Rust write too (another connection wrote it)
        await tail.waitForLines(2)
        assert.deepEqual(noteOf(tail.lines[1]), fromRust)
        assert.equal(tail.lines[1].sequence, receipt.sequence)

        // A late Effect replica reads the Rust-written entry from the stored history, and a
        // Rust tail started later reads the Effect-written one.
        const late = await replica({ url, identity, name: "Late" })
        await late.waitForReceived(2)
        assert.deepEqual(receivedIds(late), ["e1", "r1"])
        const lateTail = await startTail({ server, tenantName, identity, from: 1 })
        try {
          await lateTail.waitForLines(2)
          assert.deepEqual(lateTail.lines.map(noteOf), [fromEffect, fromRust])
        } finally {
          await lateTail.stop()
        }

        // exactly once on every side
        await barrier(a, [late])
        await tail.waitForLines(3)
        assert.deepEqual(receivedIds(a), ["r1"])
        assert.deepEqual(tail.lines.slice(0, 3).map((l) => l.payload.id).filter((id) => !id.startsWith("barrier-")), ["e1", "r1"])
        assertHealthy(a)
        assertHealthy(late)
      } finally {
        await tail.stop()
      }
    })

    scenario(target, "R2-rust-effect-large", "a 1.2 MB event crosses in both directions (chunked)", async ({ replica }) => {
      const tenantName = tenant("r2")
      const url = server.url(tenantName)
      const identity = makeIdentity()
      const big = randomBytes(900_000).toString("base64")
      const tail = await startTail({ server, tenantName, identity })
      try {
        const a = await replica({ url, identity, name: "Effect" })
        await a.waitReady()

        await a.write({ id: "big-e", text: big, n: 1 })
        await tail.waitForLines(1)
        assert.equal(tail.lines[0].payload.id, "big-e")
        assert.equal(sha(tail.lines[0].payload.text), sha(big))

        const reversed = big.split("").reverse().join("")
        await rustWrite({ server, tenantName, identity, note: { id: "big-r", text: reversed, n: 2 }, viaStdin: true })
        await a.waitForReceived(1, { timeoutMs: WAIT_MS })
        assert.equal(a.received[0].id, "big-r")
        assert.equal(sha(a.received[0].text), sha(reversed))
        assertHealthy(a)
      } finally {
        await tail.stop()
      }
    })
  })
})
