// Test harness: target servers (evsync, Effect's reference server), known reference failures,
// replica bookkeeping. Used by every interop/test/*.test.mjs file.
import { after, before, describe, it } from "node:test"
import assert from "node:assert/strict"
import { spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { startReplica } from "../../src/replica.mjs"

const here = dirname(fileURLToPath(import.meta.url))
export const INTEROP_DIR = resolve(here, "../..")
export const REPO_DIR = resolve(INTEROP_DIR, "..")
const REFERENCE_SERVER = join(INTEROP_DIR, "src/reference-server.mjs")

export const KNOWN_TARGETS = ["evsync", "reference", "reference-memory"]

/** Targets selected by INTEROP_TARGETS (comma separated), default "evsync,reference". */
export const TARGETS = (process.env.INTEROP_TARGETS ?? "evsync,reference")
  .split(",")
  .map((s) => s.trim())
  .filter(Boolean)
for (const t of TARGETS) {
  if (!KNOWN_TARGETS.includes(t)) throw new Error(`INTEROP_TARGETS: unknown target "${t}" (known: ${KNOWN_TARGETS})`)
}

const DEBUG = /^(1|true)$/i.test(process.env.INTEROP_DEBUG ?? "")

if (process.env.CI === "true" && !TARGETS.includes("evsync")) {
  throw new Error("CI=true: the interop suite must run against evsync (INTEROP_TARGETS)")
}

export const EVSYNC_BIN = process.env.EVSYNC_BIN ?? join(REPO_DIR, "target/debug/evsync")
/** The native evsync binary, also when EVSYNC_BIN is the Worker's scripts/worker-serve. */
export const EVSYNC_NATIVE_BIN = process.env.EVSYNC_REAL_BIN ?? join(REPO_DIR, "target/debug/evsync")
// What runs behind the evsync target: "native" (`evsync serve`) or "worker" (the Rust Worker in
// workerd through scripts/worker-serve, set by scripts/worker-test). Only process-level behaviour
// differs: a Worker has no graceful shutdown of its own, workerd just drops the sockets.
export const EVSYNC_KIND = process.env.INTEROP_EVSYNC_KIND ?? "native"

/** Effect's reference servers have no auth at all. */
export const supportsAuth = (target) => target === "evsync"

// ---------------------------------------------------------------------------------------------
// Known reference failures
// ---------------------------------------------------------------------------------------------

const KNOWN_FAILURES_FILE = join(INTEROP_DIR, "known-reference-failures.json")
const knownFailures = JSON.parse(readFileSync(KNOWN_FAILURES_FILE, "utf8"))

/**
 * Defines one scenario test for `target`.
 * - evsync: the scenario must pass. Nothing is ever skipped or expected to fail against evsync.
 * - a reference target with an entry in known-reference-failures.json: the scenario must FAIL
 *   with an error matching the entry's `expect` regex; if it passes (or fails differently) the
 *   test fails and says to update the record. An entry marked `intermittent` (the failure
 *   depends on timing) may pass; it names the deterministic scenario that proves it (`provenBy`).
 * - `auth: true` scenarios are skipped for reference targets only (Effect's server has no auth).
 * - `notOnWorker: "reason"` skips a scenario, loudly and with that reason, when evsync runs as the
 *   Cloudflare Worker (INTEROP_EVSYNC_KIND=worker): only for a failure that is open and recorded.
 */
export const scenario = (target, id, title, fn, options = {}) => {
  const testOptions = { timeout: options.timeout ?? 120_000 }
  if (options.auth && !supportsAuth(target)) {
    it(`${id}: ${title}`, { ...testOptions, skip: `${target}: Effect's reference server has no auth (auth scenarios run against evsync only)` }, () => {})
    return
  }
  if (options.notOnWorker && target === "evsync" && EVSYNC_KIND === "worker") {
    it(`${id}: ${title}`, { ...testOptions, skip: `on the Worker: ${options.notOnWorker}` }, () => {})
    return
  }
  const known = target === "evsync" ? undefined : knownFailures.targets?.[target]?.[id]
  if (!known) {
    it(`${id}: ${title}`, testOptions, (t) => withReplicas(t, fn))
    return
  }
  it(`${id}: ${title} [known ${target} failure]`, testOptions, async (t) => {
    let error
    try {
      await withReplicas(t, fn)
    } catch (e) {
      error = e
    }
    if (error === undefined && known.intermittent) {
      t.diagnostic(
        `${target} passed "${id}" this time; recorded as an intermittent failure (${known.reason}); ` +
          (known.provenBy ? `the deterministic proof is scenario "${known.provenBy}"` : "no deterministic proof")
      )
      return
    }
    if (error === undefined) {
      assert.fail(
        `${target} now PASSES scenario "${id}", recorded as a known failure in known-reference-failures.json ` +
          `("${known.reason}"). Remove the record.`
      )
    }
    const message = String(error?.stack ?? error)
    if (!new RegExp(known.expect, "s").test(message)) {
      assert.fail(
        `${target} fails scenario "${id}" differently than recorded in known-reference-failures.json.\n` +
          `expected /${known.expect}/, got:\n${message}`
      )
    }
    t.diagnostic(`known ${target} failure confirmed: ${known.reason}`)
  })
}

/** Runs fn(ctx) and always stops the replicas it started (ctx.replica(...)). */
const withReplicas = async (t, fn) => {
  const replicas = []
  // when one replica of the test is cut off, every wait of the test fails at once
  const abortAll = (error) => {
    for (const r of replicas) r.abort(error)
  }
  const ctx = {
    t,
    replica: async (options) => {
      const r = await startReplica({ onAbort: abortAll, ...options })
      replicas.push(r)
      return r
    },
    replicas
  }
  try {
    await fn(ctx)
  } finally {
    const results = await Promise.allSettled(replicas.map((r) => r.stop()))
    for (const r of results) if (r.status === "rejected") t.diagnostic(`replica stop: ${r.reason}`)
  }
}

// ---------------------------------------------------------------------------------------------
// Target servers
// ---------------------------------------------------------------------------------------------

/** A fresh tenant name, unique per call (tests share a server; tenants keep them apart). */
export const tenant = (label = "t") => `${label}-${randomUUID().slice(0, 8)}`

/**
 * Starts a target server. Returns a handle whose `url(tenant)` is the client URL.
 * @param {string} target "evsync" | "reference" | "reference-memory"
 * @param {{ dataDir?: string, env?: Record<string,string>, port?: number, bin?: string }} [options]
 *   `bin`: the evsync command to run for target "evsync" (default EVSYNC_BIN), e.g. the native
 *   binary when EVSYNC_BIN is the Worker's scripts/worker-serve
 */
export const startServer = async (target, options = {}) => {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), `evsync-interop-${target}-`))
  const ownsDataDir = options.dataDir === undefined
  const port = options.port ?? 0
  let command
  let args
  if (target === "evsync") {
    command = options.bin ?? EVSYNC_BIN
    if (!existsSync(command)) {
      throw new Error(`evsync binary not found at ${command}: build it with \`cargo build -p evsync\` (interop/run.sh does)`)
    }
    args = ["serve", "--listen", `127.0.0.1:${port}`, "--data", dataDir]
  } else if (target === "reference") {
    command = process.execPath
    args = [REFERENCE_SERVER, "--data", dataDir, "--port", String(port)]
  } else if (target === "reference-memory") {
    command = process.execPath
    args = [REFERENCE_SERVER, "--memory", "--port", String(port)]
  } else {
    throw new Error(`unknown target ${target}`)
  }
  if (target !== "evsync" && DEBUG) args.push("--debug", "--trace")
  // Auth env is only what the caller passes: never inherit SYNC_* from the developer's shell.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SYNC_")))
  Object.assign(env, options.env ?? {})
  if (target === "evsync" && DEBUG) env.SYNC_DEBUG = "1"

  const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })))
  const address = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`${target} did not print its listen address within 30 s; output:\n${output}`))
    }, 30_000)
    const onData = (chunk) => {
      output += String(chunk)
      if (output.length > 200_000) output = output.slice(-100_000)
      // Tolerant: the first 127.0.0.1:<port> with a non-zero port in stdout or stderr.
      for (const m of output.matchAll(/127\.0\.0\.1:(\d+)/g)) {
        if (Number(m[1]) !== 0) {
          clearTimeout(timer)
          resolve({ host: "127.0.0.1", port: Number(m[1]) })
          return
        }
      }
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", onData)
    exited.then(({ code, signal }) => {
      clearTimeout(timer)
      reject(new Error(`${target} exited (code ${code}, signal ${signal}) before listening; output:\n${output}`))
    })
  })
  // keep draining output (and keep the tail for diagnostics)
  const drain = (chunk) => {
    if (DEBUG) process.stderr.write(`[${target} server] ${chunk}`)
    output += String(chunk)
    if (output.length > 200_000) output = output.slice(-100_000)
  }
  child.stdout.removeAllListeners("data")
  child.stderr.removeAllListeners("data")
  child.stdout.on("data", drain)
  child.stderr.on("data", drain)

  let stopped = false
  const server = {
    target,
    dataDir,
    address,
    child,
    get output() {
      return output
    },
    url: (tenantName) => `ws://${address.host}:${address.port}/event-log/${tenantName}`,
    httpUrl: (path) => `http://${address.host}:${address.port}${path}`,
    /**
     * Stops the server: SIGTERM (graceful) or SIGKILL (crash). A graceful stop that takes
     * longer than 10 s is an error (the process is then killed).
     */
    stop: async ({ signal = "SIGTERM" } = {}) => {
      if (stopped) return exited
      stopped = true
      child.kill(signal)
      let timer
      const result = await Promise.race([
        exited,
        new Promise((resolve) => {
          timer = setTimeout(() => resolve("timeout"), 10_000)
        })
      ])
      clearTimeout(timer)
      if (result === "timeout") {
        child.kill("SIGKILL")
        await exited
        throw new Error(`${target} did not exit within 10 s of ${signal}`)
      }
      return result
    },
    /** stop() and also remove the data directory when this handle created it. */
    dispose: async () => {
      try {
        await server.stop()
      } finally {
        if (ownsDataDir) rmSync(dataDir, { recursive: true, force: true })
      }
    }
  }
  return server
}

// ---------------------------------------------------------------------------------------------
// Assertions and small helpers
// ---------------------------------------------------------------------------------------------

/** ids of the received (remote) handler runs, in order, without barrier notes */
export const receivedIds = (replica) => replica.received.map((r) => r.id).filter((id) => !id.startsWith("barrier-"))

/**
 * A barrier: `writer` writes a fresh note and each of `readers` waits until it arrived. Logs are
 * delivered in sequence order, so anything that `writer`'s log held before the barrier has been
 * delivered (or will never be) when this resolves.
 */
export const barrier = async (writer, readers, opts = {}) => {
  const id = `barrier-${randomUUID().slice(0, 8)}`
  await writer.write({ id, text: "barrier", n: -1 })
  await Promise.all(
    readers.map((r) => r.waitFor(() => r.received.some((x) => x.id === id), { what: `barrier ${id}`, ...opts }))
  )
}

/** Asserts that a replica's socket never failed or reconnected and Effect logged no error. */
export const assertHealthy = (replica, { sockets = 1 } = {}) => {
  assert.equal(replica.sockets.constructed, sockets, `${replica.name}: socket constructions; ${replica.describe()}`)
  assert.equal(replica.sockets.closed, 0, `${replica.name}: socket closes; ${replica.describe()}`)
  assert.deepEqual(replica.sockets.errors, [], `${replica.name}: socket errors`)
  assert.deepEqual(replica.sockets.decodeErrors, [], `${replica.name}: undecodable server frames`)
  const failures = replica.logs.filter((l) => l.cause !== "" || /^(ERROR|FATAL|WARN)/.test(l.level))
  assert.deepEqual(failures, [], `${replica.name}: Effect logged failures`)
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * For each target in TARGETS, a `describe(target)` whose scenarios run concurrently against one
 * server of that target, started before them and disposed after. The targets run one after the
 * other (so that a target that breaks the client cannot slow the other down) unless the
 * enclosing `describe` runs its children concurrently. `body(target, server)` declares
 * the scenarios; `server.url(tenant)` and `server.address` reach the running server.
 */
export const withServerPerTarget = (body) => {
  for (const target of TARGETS) {
    describe(target, { concurrency: true }, () => {
      let running
      before(async () => {
        running = await startServer(target)
      })
      after(() => running?.dispose())
      body(target, {
        url: (tenantName) => running.url(tenantName),
        get address() {
          return running.address
        },
      })
    })
  }
}
