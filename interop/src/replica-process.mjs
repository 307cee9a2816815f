// A replica in a child process of its own, as an app is. Used for replicas whose Effect client
// can spin a core (docs/effect-client-notes.md #1: after a connection ends, EventLog's consumer
// loops without pause; the agent SDK's pattern leaves many such loops behind), so that they slow
// down only themselves, not the test process, its servers' output handling or other replicas.
//
// Parent: `await startReplicaProcess(options)` returns an object with the in-process replica's
// observation API (name, runs, received, write, waitFor, waitForHello, describe, snapshot, stop).
// Child (this file run with node): reads the options from argv, runs startReplica, streams every
// handler run to the parent and answers its requests over the IPC channel.
import { fork } from "node:child_process"
import { fileURLToPath } from "node:url"
import { makeWaiters } from "./waiters.mjs"

const self = fileURLToPath(import.meta.url)

if (process.argv[1] === self) {
  const { startReplica, identityFromString } = await import("./replica.mjs")
  const { sdkLikeJournal } = await import("./sdk-pattern.mjs")
  const { makeJournal } = await import("./replica.mjs")
  const options = JSON.parse(process.argv[2])
  const replica = await startReplica({
    ...options,
    identity: identityFromString(options.identity),
    journal: options.sdkLikeJournal ? sdkLikeJournal(makeJournal()) : undefined
  })
  let sent = 0
  const flush = () => {
    while (sent < replica.runs.length) process.send({ type: "run", run: replica.runs[sent++] })
  }
  // every handler run, as it happens (waitFor's predicate is checked after each observation)
  replica.waitFor(() => {
    flush()
    return false
  }, { timeoutMs: 2 ** 31 - 1, what: "never" }).catch(() => {})
  replica.waitForHello(1, { timeoutMs: 2 ** 31 - 1 }).then(() => process.send({ type: "hello" }), () => {})
  const snapshot = () => ({ sockets: replica.sockets, logs: replica.logs.map((l) => `${l.level} ${l.message} ${l.cause}`.slice(0, 400)), describe: replica.describe() })
  // The parent may be gone (it kills replicas it is done with): a reply then has nowhere to go.
  const reply = (msg) => {
    if (process.connected) process.send(msg)
  }
  process.on("message", async (msg) => {
    try {
      if (msg.op === "write") await replica.write(msg.note)
      flush()
      reply({ type: "reply", reqId: msg.reqId, ok: true, snapshot: msg.op === "snapshot" ? snapshot() : undefined })
    } catch (e) {
      reply({ type: "reply", reqId: msg.reqId, ok: false, error: String(e?.stack ?? e) })
    }
  })
  process.on("disconnect", () => process.exit(0))
  process.send({ type: "started" })
}

/**
 * Starts a replica in a child process. options as startReplica's, JSON-serialisable, with
 * `identity` as Effect's identity string and `sdkLikeJournal: true` for src/sdk-pattern.mjs's
 * journal.
 */
export const startReplicaProcess = async (options) => {
  const child = fork(self, [JSON.stringify(options)], { stdio: ["ignore", "inherit", "inherit", "ipc"] })
  const name = options.name
  const runs = []
  let last = { sockets: {}, logs: [], describe: "(no snapshot yet)" }
  let hello = false
  let exited
  const waiters = makeWaiters()
  const pending = new Map()
  let nextReq = 0
  const notify = () => waiters.notify()

  const started = new Promise((resolve, reject) => {
    child.on("message", (msg) => {
      if (msg.type === "started") resolve()
      else if (msg.type === "run") runs.push(msg.run)
      else if (msg.type === "hello") hello = true
      else if (msg.type === "reply") {
        const p = pending.get(msg.reqId)
        pending.delete(msg.reqId)
        if (msg.snapshot) last = msg.snapshot
        if (msg.ok) p?.resolve()
        else p?.reject(new Error(`${name}: ${msg.error}`))
      }
      notify()
    })
    child.once("exit", (code, signal) => {
      exited = new Error(`${name}: replica process exited (code ${code}, signal ${signal})`)
      reject(exited)
      for (const p of pending.values()) p.reject(exited)
      waiters.rejectAll(exited)
    })
  })
  await started
  const request = (msg) =>
    new Promise((resolve, reject) => {
      if (exited) return reject(exited)
      const reqId = nextReq++
      pending.set(reqId, { resolve, reject })
      child.send({ ...msg, reqId })
    })
  const replica = {
    name,
    runs,
    get received() {
      return runs.filter((r) => !r.local)
    },
    get sockets() {
      return last.sockets
    },
    get logs() {
      return last.logs
    },
    write: (note) => request({ op: "write", note }),
    /** Fetches the child's socket statistics and logs (then `sockets`, `logs`, `describe()`). */
    snapshot: () => request({ op: "snapshot" }),
    waitFor: (predicate, { timeoutMs = 15_000, what = "condition" } = {}) => {
      if (!predicate() && exited) return Promise.reject(exited)
      return waiters.waitFor(predicate, {
        timeoutMs,
        what,
        onTimeout: async () => {
          await Promise.race([replica.snapshot(), new Promise((r) => setTimeout(r, 2_000))]).catch(() => {})
          return new Error(`${name}: timed out after ${timeoutMs} ms waiting for ${what}; runs=${runs.length}; ${last.describe}`)
        }
      })
    },
    waitForHello: (_count = 1, opts = {}) => replica.waitFor(() => hello, { what: "Hello", ...opts }),
    describe: () => last.describe,
    abort: () => {},
    /** Kills the process: its runtime cannot be disposed (client bug #1), an app would exit. */
    stop: async () => {
      if (exited) return
      const gone = new Promise((resolve) => child.once("exit", resolve))
      child.kill("SIGKILL")
      await gone
    }
  }
  return replica
}
