#!/usr/bin/env bash
# v4 interop suite: unmodified Effect v4 EventLog replicas (effect 4.1.0, effect/eventlog) syncing
# through a server: evsync's /v4/event-log/<tenant> endpoint, and Effect's own v4 reference server
# (whose known failures are recorded in known-reference-failures.json). Not yet part of scripts/test.
#
#   interop-v4/run.sh [extra node --test args]
#
# Environment:
#   INTEROP_V4_TARGETS   comma-separated targets: reference, evsync (default: reference)
#   EVSYNC_BIN           evsync binary for the evsync target (default: target/debug/evsync; this
#                        script does not build it)
#   INTEROP_CONCURRENCY  test files run in parallel (default 2)
#   INTEROP_DEBUG=1      server output and Effect debug logs on stderr; INTEROP_TRACE=1 every frame
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
  fail "Node.js >= 20.14 is required to run the Effect v4 interop suite (it provides node and npm)"
command -v npm >/dev/null 2>&1 ||
  fail "npm is required to install the pinned Effect v4 client (it ships with Node.js)"
# @effect/platform-node 4.1.0 declares node >= 22.19, but what this suite uses of it (NodeWS, the
# `ws` WebSocket constructor; NodeHttpServer for the reference server) runs on Node 20.
node -e '
  const [maj, min] = process.versions.node.split(".").map(Number)
  process.exit(maj > 20 || (maj === 20 && min >= 14) ? 0 : 1)
' || fail "Node.js >= 20.14 is required (found $(node --version)): node:test --test-force-exit"

targets="${INTEROP_V4_TARGETS:-reference}"
export INTEROP_V4_TARGETS="$targets"

# --- npm ci when node_modules is missing or the lockfile changed -------------------------------
lock_hash="$(node -e '
  const { createHash } = require("node:crypto"); const { readFileSync } = require("node:fs")
  const h = createHash("sha256"); h.update(readFileSync("package.json")); h.update(readFileSync("package-lock.json"))
  console.log(h.digest("hex"))')"
stamp="node_modules/.evsync-interop-v4-install"
if [ ! -d node_modules ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  echo "==> npm ci (interop-v4/)"
  # engine-strict off: platform-node's node >= 22.19 is a declaration, see above
  npm ci --no-audit --no-fund --engine-strict=false
  echo "$lock_hash" >"$stamp"
fi

# --- the evsync binary (only checked, never built here) ----------------------------------------
if [[ ",$targets," == *",evsync,"* ]]; then
  export EVSYNC_BIN="${EVSYNC_BIN:-$repo/target/debug/evsync}"
  [ -x "$EVSYNC_BIN" ] || fail "EVSYNC_BIN=$EVSYNC_BIN is not an executable (cargo build -p evsync)"
fi

# --- the suite ---------------------------------------------------------------------------------
echo "==> node --test (targets: $targets)"
shopt -s nullglob
files=(test/*.test.mjs)
[ "${#files[@]}" -gt 0 ] || fail "no test files in interop-v4/test"
exec node --test --test-reporter=spec --test-force-exit --test-concurrency="${INTEROP_CONCURRENCY:-2}" "$@" "${files[@]}"
