#!/usr/bin/env bash
# v4 interop suite: unmodified Effect v4 EventLog replicas (effect 4.1.0, effect/eventlog) syncing
# through a server: evsync's /v4/event-log/<tenant> endpoint, and Effect's own v4 reference server
# (whose known failures are recorded in known-reference-failures.json). Called by scripts/test
# after interop/run.sh.
#
#   interop-v4/run.sh [extra node --test args]
#
# Environment:
#   INTEROP_V4_TARGETS   comma-separated targets: evsync, reference (default: evsync,reference; in
#                        CI evsync is mandatory)
#   EVSYNC_BIN           evsync binary for the evsync target (default: target/debug/evsync, built
#                        when missing or stale)
#   INTEROP_EVSYNC_KIND  what runs behind the evsync target: native (default: `evsync serve`) or
#                        worker (EVSYNC_BIN is then a wrapper that serves the Cloudflare Worker,
#                        as scripts/worker-test does for interop/)
#   INTEROP_CONCURRENCY  test files run in parallel (default 2)
#   INTEROP_DEBUG=1      server output and Effect debug logs on stderr; INTEROP_TRACE=1 every frame
#
# Node: the suite runs on Node >= 22.19 (what @effect/platform-node 4.1.0 declares). An older
# machine node only installs tools/node22's pinned Node 22, which then runs everything.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$here"

fail() {
  echo "interop-v4/run.sh: error: $*" >&2
  exit 1
}

# --- prerequisites -----------------------------------------------------------------------------
command -v node >/dev/null 2>&1 ||
  fail "Node.js and npm are required to install the pinned packages (the suite itself runs on Node >= 22.19, installed from tools/node22 when the machine's is older)"
command -v npm >/dev/null 2>&1 ||
  fail "npm is required to install the pinned Effect v4 client (it ships with Node.js)"

# Node >= 22.19: what @effect/platform-node 4.1.0 (and its undici) declare. When the machine's node
# is older, tools/node22/ensure installs its pinned Node 22 once; it is put first on PATH, so that
# npm, node --test, the replicas and the reference server all run on it.
node22="$("$repo/tools/node22/ensure")" || fail "no Node.js >= 22.19 (see above)"
export PATH="$(dirname "$node22"):$PATH"
echo "==> node $(node --version) ($(command -v node))"

targets="${INTEROP_V4_TARGETS:-evsync,reference}"
if [ "${CI:-}" = "true" ] && [[ ",$targets," != *",evsync,"* ]]; then
  fail "CI=true: the v4 interop suite must run against evsync (INTEROP_V4_TARGETS=$targets)"
fi
export INTEROP_V4_TARGETS="$targets"

# --- npm ci when node_modules is missing or the lockfile changed -------------------------------
lock_hash="$(node -e '
  const { createHash } = require("node:crypto"); const { readFileSync } = require("node:fs")
  const h = createHash("sha256"); h.update(readFileSync("package.json")); h.update(readFileSync("package-lock.json"))
  console.log(h.digest("hex"))')"
stamp="node_modules/.evsync-interop-v4-install"
if [ ! -d node_modules ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  echo "==> npm ci (interop-v4/)"
  npm ci --no-audit --no-fund
  echo "$lock_hash" >"$stamp"
fi

# --- the evsync binary (built when missing or older than the sources, as interop/run.sh does) ----
if [[ ",$targets," == *",evsync,"* ]]; then
  if [ -n "${EVSYNC_BIN:-}" ]; then
    [ -x "$EVSYNC_BIN" ] || fail "EVSYNC_BIN=$EVSYNC_BIN is not an executable"
  else
    EVSYNC_BIN="$("$repo/scripts/debug-evsync")" || fail "cannot build evsync (see above)"
    export EVSYNC_BIN
  fi
fi

# --- the suite ---------------------------------------------------------------------------------
echo "==> node --test (targets: $targets)"
shopt -s nullglob
files=(test/*.test.mjs)
[ "${#files[@]}" -gt 0 ] || fail "no test files in interop-v4/test"
exec node --test --test-reporter=spec --test-force-exit --test-concurrency="${INTEROP_CONCURRENCY:-2}" "$@" "${files[@]}"
