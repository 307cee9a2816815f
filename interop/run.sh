#!/usr/bin/env bash
# Interop suite: unmodified Effect v3 EventLog replicas syncing through evsync, and through
# Effect's own reference server (whose known failures are recorded in
# known-reference-failures.json). Called by scripts/test after `cargo test --workspace`.
#
#   interop/run.sh [extra node --test args]
#
# Environment:
#   INTEROP_TARGETS   comma-separated targets: evsync, reference, reference-memory
#                     (default: evsync,reference; in CI evsync is mandatory)
#   EVSYNC_BIN        evsync binary to test (default: target/debug/evsync, built when missing/stale)
#   INTEROP_CONCURRENCY  test files run in parallel (default 4)
#   INTEROP_DEBUG=1   server output and Effect debug logs on stderr; INTEROP_TRACE=1 every frame
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$here"

fail() {
  echo "interop/run.sh: error: $*" >&2
  exit 1
}

# --- prerequisites -----------------------------------------------------------------------------
command -v node >/dev/null 2>&1 ||
  fail "Node.js >= 20.14 is required to run the Effect interop suite (install Node.js 20.14 or newer; it provides node and npm)"
command -v npm >/dev/null 2>&1 ||
  fail "npm is required to install the pinned Effect client (it ships with Node.js)"
node -e '
  const [maj, min] = process.versions.node.split(".").map(Number)
  process.exit(maj > 20 || (maj === 20 && min >= 14) ? 0 : 1)
' || fail "Node.js >= 20.14 is required (found $(node --version)): node:test --test-force-exit"

targets="${INTEROP_TARGETS:-evsync,reference}"
if [ "${CI:-}" = "true" ] && [[ ",$targets," != *",evsync,"* ]]; then
  fail "CI=true: the interop suite must run against evsync (INTEROP_TARGETS=$targets)"
fi
export INTEROP_TARGETS="$targets"

# --- npm ci when node_modules is missing or the lockfile changed -------------------------------
lock_hash="$(node -e '
  const { createHash } = require("node:crypto"); const { readFileSync } = require("node:fs")
  const h = createHash("sha256"); h.update(readFileSync("package.json")); h.update(readFileSync("package-lock.json"))
  console.log(h.digest("hex"))')"
stamp="node_modules/.evsync-interop-install"
if [ ! -d node_modules ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  # better-sqlite3 (used by Effect's reference server) compiles from source with node-gyp
  # (package.json "allowScripts" approves its install script). Point node-gyp at the headers of
  # the running Node.js when they are installed, so that it does not download them.
  if [ -z "${npm_config_nodedir:-}" ]; then
    node_prefix="$(node -p 'require("node:path").resolve(process.execPath, "../..")')"
    if [ -f "$node_prefix/include/node/common.gypi" ]; then
      export npm_config_nodedir="$node_prefix"
    fi
  fi
  echo "==> npm ci (interop/)"
  npm ci --no-audit --no-fund
  echo "$lock_hash" >"$stamp"
fi

# --- evsync binary (the evsync target, and the Rust client CLI used by rust-client.test.mjs) ------
if [ -n "${EVSYNC_BIN:-}" ]; then
  [ -x "$EVSYNC_BIN" ] || fail "EVSYNC_BIN=$EVSYNC_BIN is not an executable"
else
  EVSYNC_BIN="$("$repo/scripts/debug-evsync")" || fail "cannot build evsync (see above)"
  export EVSYNC_BIN
fi

# --- a throwaway PostgreSQL for S13 (two evsync nodes on one database) ------------------------------
if [[ ",$targets," == *",evsync,"* ]] && [ "${INTEROP_EVSYNC_KIND:-native}" = native ] &&
  [ -z "${INTEROP_POSTGRES_URL:-}" ]; then
  pg_out="$("$repo/scripts/pg-temp" start)" ||
    fail "cannot start a PostgreSQL for S13 (scripts/pg-temp; scripts/test installs Debian's postgresql)"
  pg_dir="$(echo "$pg_out" | head -n 1)"
  INTEROP_POSTGRES_URL="$(echo "$pg_out" | tail -n 1)"
  export INTEROP_POSTGRES_URL
  trap '"$repo/scripts/pg-temp" stop "$pg_dir"' EXIT
fi

# --- the suite ---------------------------------------------------------------------------------
# Files listed in ALONE run after the others, one at a time: S9 reproduces the agent SDK's
# client, whose leaked connection loops spin on the CPU after a disconnect (docs/effect-client-notes.md,
# client bug #1); sharing the cores with other scenarios starves that client's own local writes,
# which would be a failure of the test machine, not of the server under test.
echo "==> node --test (targets: $targets)"
shopt -s nullglob
ALONE=(test/s9-agent-sdk.test.mjs)
files=()
for f in test/*.test.mjs; do
  case " ${ALONE[*]} " in *" $f "*) ;; *) files+=("$f") ;; esac
done
[ "${#files[@]}" -gt 0 ] || fail "no test files in interop/test"
run_node_test() {
  node --test --test-reporter=spec --test-force-exit "$@"
}
status=0
run_node_test --test-concurrency="${INTEROP_CONCURRENCY:-4}" "$@" "${files[@]}" || status=$?
for f in "${ALONE[@]}"; do
  [ -f "$f" ] || fail "$f is listed to run alone but does not exist"
  echo "==> node --test $f (alone)"
  run_node_test --test-concurrency=1 "$@" "$f" || status=$?
done
exit "$status"
