// Promises that settle when a predicate over some observed state holds. The state's owner calls
// notify() after every change, so nothing polls: the scripted server, the replica processes and
// the `evsync tail` client of the tests all wait this way.

/** A set of pending waits over one piece of state. */
export function makeWaiters() {
  const waiters = new Set()
  const settle = (w) => {
    waiters.delete(w)
    clearTimeout(w.timer)
  }
  return {
    /** Rechecks every wait after a change; with `failWith(what)`, the ones still unmet are rejected. */
    notify(failWith) {
      for (const w of waiters) {
        if (w.predicate()) {
          settle(w)
          w.resolve()
        } else if (failWith) {
          settle(w)
          w.reject(failWith(w.what))
        }
      }
    },
    /** Resolves once `predicate()` holds; after `timeoutMs` rejects with `await onTimeout(what)`. */
    waitFor(predicate, { timeoutMs, what, onTimeout }) {
      return new Promise((resolve, reject) => {
        if (predicate()) return resolve()
        const w = { predicate, resolve, reject, what }
        w.timer = setTimeout(async () => {
          waiters.delete(w)
          reject(await onTimeout(what))
        }, timeoutMs)
        waiters.add(w)
      })
    },
    /** Rejects every pending wait with `error` (the observed thing is gone). */
    rejectAll(error) {
      for (const w of waiters) {
        settle(w)
        w.reject(error)
      }
    }
  }
}
