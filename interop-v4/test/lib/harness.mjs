// Test harness of the v4 interop suite: target servers (evsync's /v4 endpoint, Effect's own v4
// reference server), known reference failures, replica bookkeeping, a TCP proxy that cuts
// connections. Used by every interop-v4/test/*.test.mjs file. The twin of interop/test/lib/harness.mjs.
import { after, before, describe, it } from "node:test"
import assert from "node:assert/strict"
import { spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { createConnection, createServer } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { startReplica } from "../../src/replica.mjs"

const here = dirname(fileURLToPath(import.meta.url))
export const INTEROP_DIR = resolve(here, "../..")
export const REPO_DIR = resolve(INTEROP_DIR, "..")
const REFERENCE_SERVER = join(INTEROP_DIR, "src/reference-server.mjs")

export const KNOWN_TARGETS = ["evsync", "reference"]

/** Targets selected by INTEROP_V4_TARGETS (comma separated), default "evsync,reference". */
export const TARGETS = (process.env.INTEROP_V4_TARGETS ?? "evsync,reference")
  .split(",")
  .map((s) => s.trim())
  .filter(Boolean)
for (const t of TARGETS) {
  if (!KNOWN_TARGETS.includes(t)) throw new Error(`INTEROP_V4_TARGETS: unknown target "${t}" (known: ${KNOWN_TARGETS})`)
}

const DEBUG = /^(1|true)$/i.test(process.env.INTEROP_DEBUG ?? "")

if (process.env.CI === "true" && !TARGETS.includes("evsync")) {
  throw new Error("CI=true: the v4 interop suite must run against evsync (INTEROP_V4_TARGETS)")
}

export const EVSYNC_BIN = process.env.EVSYNC_BIN ?? join(REPO_DIR, "target/debug/evsync")
// What runs behind the evsync target: "native" (`evsync serve`), or "worker" (EVSYNC_BIN is then a
// wrapper serving the Cloudflare Worker in workerd, as scripts/worker-test does for interop/; the
// Worker does not serve v4 yet). Scenarios that need process-level behaviour of the native server
// say so with `notOnWorker`.
export const EVSYNC_KIND = process.env.INTEROP_EVSYNC_KIND ?? "native"
if (!["native", "worker"].includes(EVSYNC_KIND)) {
  throw new Error(`INTEROP_EVSYNC_KIND: unknown kind "${EVSYNC_KIND}" (known: native, worker)`)
}

/** Effect's reference server has no tenant tokens (nor any HTTP auth). */
export const supportsAuth = (target) => target === "evsync"

/** The path of the v4 endpoint, on evsync and on the reference server alike. */
export const v4Path = (tenantName) => `/v4/event-log/${tenantName}`
/** The unencrypted endpoint (EventLogRemote.layerUnencrypted clients) of both targets. */
export const v4UnencryptedPath = (tenantName) => `/v4/unencrypted/event-log/${tenantName}`

// ---------------------------------------------------------------------------------------------
// Known reference failures
// ---------------------------------------------------------------------------------------------

const KNOWN_FAILURES_FILE = join(INTEROP_DIR, "known-reference-failures.json")
const knownFailures = JSON.parse(readFileSync(KNOWN_FAILURES_FILE, "utf8"))

/**
 * Defines one scenario test for `target`.
 * - evsync: the scenario must pass. Nothing is ever expected to fail against evsync.
 * - a reference target with an entry in known-reference-failures.json: the scenario must FAIL
 *   with an error matching the entry's `expect` regex; if it passes (or fails differently) the
 *   test fails and says to update the record. An entry marked `intermittent` may pass.
 * - `auth: true` scenarios (tenant tokens) are skipped for reference targets only, with the
 *   reason printed: Effect's server has no HTTP auth.
 * - `notApplicable: { <target>: "reason" }` skips the scenario for that target, printing the
 *   reason: only for what the target cannot do by design (e.g. the reference keeps no data across
 *   a restart), never for evsync.
 * - `notOnWorker: "reason"` skips it, printing the reason, when the evsync target is the Worker
 *   (INTEROP_EVSYNC_KIND=worker): for process-level behaviour of the native server.
 */
export const scenario = (target, id, title, fn, options = {}) => {
  const testOptions = { timeout: options.timeout ?? 120_000 }
  if (options.auth && !supportsAuth(target)) {
    it(`${id}: ${title}`, { ...testOptions, skip: `${target}: Effect's reference server has no tenant tokens (token scenarios run against evsync only)` }, () => {})
    return
  }
  const notApplicable = options.notApplicable?.[target]
  if (notApplicable) {
    if (target === "evsync") throw new Error(`${id}: a scenario is never "not applicable" to evsync`)
    it(`${id}: ${title}`, { ...testOptions, skip: `not applicable to ${target}: ${notApplicable}` }, () => {})
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
      t.diagnostic(`${target} passed "${id}" this time; recorded as an intermittent failure (${known.reason})`)
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
  // when one replica of the test cannot go on (its remote failed), every wait of the test fails
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

/** A fresh tenant name, unique per call. */
export const tenant = (label = "t") => `${label}-${randomUUID().slice(0, 8)}`

/**
 * Starts a target server. Returns a handle whose `url(tenant)` is the client URL,
 * ws://127.0.0.1:PORT/v4/event-log/<tenant>.
 * @param {string} target "evsync" | "reference"
 * @param {{ dataDir?: string, env?: Record<string,string>, port?: number, bin?: string }} [options]
 */
export const startServer = async (target, options = {}) => {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), `evsync-interop-v4-${target}-`))
  const ownsDataDir = options.dataDir === undefined
  const port = options.port ?? 0
  let command
  let args
  if (target === "evsync") {
    command = options.bin ?? EVSYNC_BIN
    if (!existsSync(command)) {
      throw new Error(`evsync binary not found at ${command}: build it with \`cargo build -p evsync\``)
    }
    args = ["serve", "--listen", `127.0.0.1:${port}`, "--data", dataDir]
  } else if (target === "reference") {
    command = process.execPath
    args = [REFERENCE_SERVER, "--port", String(port)]
    if (DEBUG) args.push("--debug")
  } else {
    throw new Error(`unknown target ${target}`)
  }
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
    url: (tenantName) => `ws://${address.host}:${address.port}${v4Path(tenantName)}`,
    unencryptedUrl: (tenantName) => `ws://${address.host}:${address.port}${v4UnencryptedPath(tenantName)}`,
    httpUrl: (path) => `http://${address.host}:${address.port}${path}`,
    /** Stops the server: SIGTERM (graceful) or SIGKILL. Longer than 10 s is an error. */
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

/**
 * For each target in TARGETS, a `describe(target)` whose scenarios run concurrently against one
 * server of that target, started before them and disposed after. `body(target, server)`
 * declares the scenarios; `server.url(tenant)` and `server.address` reach the running server.
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
        unencryptedUrl: (tenantName) => running.unencryptedUrl(tenantName),
        get address() {
          return running.address
        }
      })
    })
  }
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy in front of a server: the "server side" of a connection can be cut at will
// ---------------------------------------------------------------------------------------------

/**
 * Starts a TCP proxy on 127.0.0.1:<free port> forwarding to `target` ({host, port}).
 * `cut()` destroys every connection open through it (both sides, no WebSocket close frame: to
 * the client it is a dropped connection, close code 1006) and keeps accepting new ones.
 */
export const startProxy = async (target) => {
  const pairs = new Set()
  let accepted = 0
  const server = createServer((client) => {
    accepted++
    const upstream = createConnection({ host: target.host, port: target.port })
    const pair = { client, upstream }
    pairs.add(pair)
    const end = () => {
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on("error", end)
    upstream.on("error", end)
    client.on("close", end)
    upstream.on("close", end)
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", resolve)
  })
  const address = { host: "127.0.0.1", port: server.address().port }
  return {
    address,
    url: (tenantName) => `ws://${address.host}:${address.port}${v4Path(tenantName)}`,
    get open() {
      return pairs.size
    },
    get accepted() {
      return accepted
    },
    /** Cuts every open connection; returns how many were cut. */
    cut: () => {
      const n = pairs.size
      for (const { client, upstream } of [...pairs]) {
        client.destroy()
        upstream.destroy()
      }
      return n
    },
    close: () =>
      new Promise((resolve) => {
        for (const { client, upstream } of pairs) {
          client.destroy()
          upstream.destroy()
        }
        server.close(() => resolve())
      })
  }
}

// ---------------------------------------------------------------------------------------------
// Assertions and small helpers
// ---------------------------------------------------------------------------------------------

/** ids of the received (remote) handler runs, in order, without barrier notes */
export const receivedIds = (replica) => replica.received.map((r) => r.id).filter((id) => !id.startsWith("barrier-"))

/**
 * A barrier: `writer` writes a fresh note and each of `readers` waits until it arrived. A store
 * is delivered in sequence order, so anything `writer`'s store held before the barrier has been
 * delivered (or never will be) when this resolves.
 */
export const barrier = async (writer, readers, opts = {}) => {
  const id = `barrier-${randomUUID().slice(0, 8)}`
  await writer.write({ id, text: "barrier", n: -1 })
  await Promise.all(
    readers.map((r) => r.waitFor(() => r.received.some((x) => x.id === id), { what: `barrier ${id}`, ...opts }))
  )
}

/**
 * Asserts that a replica kept one connection (`sockets`), said Hello and authenticated once per
 * socket, got no protocol errors, decoded every server frame, and that Effect logged no failure.
 */
export const assertHealthy = (replica, { sockets = 1 } = {}) => {
  const s = replica.stats
  const d = replica.describe()
  assert.equal(s.constructed, sockets, `${replica.name}: socket constructions; ${d}`)
  assert.equal(s.closed, 0, `${replica.name}: socket closes; ${d}`)
  assert.deepEqual(s.errors, [], `${replica.name}: socket errors`)
  assert.deepEqual(s.decodeErrors, [], `${replica.name}: undecodable frames`)
  assert.deepEqual(s.protocolErrors, {}, `${replica.name}: EventLogProtocolErrors; ${d}`)
  assert.deepEqual(s.otherFailures, [], `${replica.name}: failed requests`)
  assert.equal(s.hellos, sockets, `${replica.name}: Hellos; ${d}`)
  assert.equal(s.authenticated, sockets, `${replica.name}: authentications; ${d}`)
  const failures = replica.logs.filter((l) => /^(Error|Fatal|Warn)/i.test(l.level))
  assert.deepEqual(failures, [], `${replica.name}: Effect logged failures`)
}

/** The number of Changes chunks a replica received (each one holds one or more batches). */
export const changesChunks = (replica) => replica.stats.received["Chunk:EventLog.Changes"] ?? 0

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
