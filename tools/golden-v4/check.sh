#!/usr/bin/env bash
# Golden-vector check of the Effect v4 (effect 4.1.0, effect/eventlog)
# SchemaBinary codec against Effect, both directions:
#  1. regenerates the vectors with the pinned Effect and diffs them against
#     crates/evsync-core/tests/fixtures/golden-v4 (fails if Effect's output
#     drifted from what the Rust tests were checked against);
#  2. has Effect decode the frames the Rust test `v4_codec_golden` wrote to
#     ${CARGO_TARGET_DIR:-target}/tmp/golden-v4-rust (so that test must have
#     run first; step 1 runs regardless) and compares them with their values.
# Installs the pinned npm packages from package-lock.json when needed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
fixtures="$root/crates/evsync-core/tests/fixtures/golden-v4"
rust_out="${CARGO_TARGET_DIR:-$root/target}/tmp/golden-v4-rust"
case "$rust_out" in /*) ;; *) rust_out="$root/$rust_out" ;; esac

command -v node >/dev/null 2>&1 || { echo "error: node is required for the golden-v4 check" >&2; exit 1; }

cd "$here"
# node_modules is fresh when it was installed from this very lockfile.
stamp="node_modules/.evsync-lockfile"
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "golden-v4: installing pinned packages (npm ci)"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp" "$tmp.diff"' EXIT
node generate.mjs "$tmp" >/dev/null
if ! diff -rq "$tmp" "$fixtures" >"$tmp.diff" 2>&1; then
  echo "error: Effect's encoding no longer matches the committed golden-v4 fixtures:" >&2
  head -20 "$tmp.diff" >&2
  if [ -f "$tmp/manifest.json" ] && [ -f "$fixtures/manifest.json" ]; then
    diff "$fixtures/manifest.json" "$tmp/manifest.json" | cut -c1-300 | head -20 >&2 || true
  fi
  echo "If the change is intended (new vectors, a new pinned effect), run 'node tools/golden-v4/generate.mjs'," >&2
  echo "review the fixture diff and make the Rust codec pass again." >&2
  exit 1
fi
echo "golden-v4: fixtures match a fresh Effect run ($(ls "$fixtures" | wc -l) files)"

if [ ! -d "$rust_out" ] || [ ! -f "$rust_out/manifest.json" ]; then
  echo "error: Rust-encoded v4 frames not found in $rust_out" >&2
  echo "       run 'cargo test -p evsync-core --test v4_codec_golden' first" >&2
  exit 1
fi

node verify-rust.mjs "$rust_out"
