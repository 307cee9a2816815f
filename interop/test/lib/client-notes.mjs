// Shared by the tests that pin down Effect's client behaviour (docs/effect-client-notes.md) against
// a scripted server.
import { startReplica } from "../../src/replica.mjs"

export const DOC = "docs/effect-client-notes.md"

/** The assertion message for a documented client bug that no longer reproduces. */
export const stillTrue = (what) => `Effect's client no longer shows "${what}": update ${DOC} and this test`

/** starts replicas and guarantees they are stopped (bounded: a hung dispose is part of the bugs) */
export const withReplicas = async (fn) => {
  const started = []
  const make = async (options) => {
    const r = await startReplica({ allowDisconnect: true, ...options })
    started.push(r)
    return r
  }
  try {
    return await fn(make)
  } finally {
    await Promise.allSettled(started.map((r) => r.stop({ timeoutMs: 1000 })))
  }
}
