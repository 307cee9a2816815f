#!/usr/bin/env bash
# Golden-vector check of the msgpack codec against Effect, both directions:
#  1. regenerates the vectors with the pinned Effect/msgpackr and diffs them
#     against crates/evsync-core/tests/fixtures/golden (fails if Effect's
#     output drifted from what the Rust tests were checked against);
#  2. has Effect decode and re-encode the frames the Rust test
#     `codec_golden` wrote (so `cargo test` must have run first).
# Installs the pinned npm packages from package-lock.json when needed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
fixtures="$root/crates/evsync-core/tests/fixtures/golden"
rust_out="${CARGO_TARGET_DIR:-$root/target}/tmp/golden-rust"
case "$rust_out" in /*) ;; *) rust_out="$root/$rust_out" ;; esac

command -v node >/dev/null 2>&1 || { echo "error: node is required for the golden check" >&2; exit 1; }

if [ ! -d "$rust_out" ] || [ ! -f "$rust_out/manifest.json" ]; then
  echo "error: Rust-encoded frames not found in $rust_out" >&2
  echo "       run 'cargo test -p evsync-core --test codec_golden' (or 'cargo test --workspace') first" >&2
  exit 1
fi

cd "$here"
# node_modules is fresh when it was installed from this very lockfile.
stamp="node_modules/.evsync-lockfile"
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "golden: installing pinned packages (npm ci)"
  # No install scripts are needed; optional native msgpackr-extract is
  # left out so every machine runs the same pure-JS msgpackr.
  npm ci --ignore-scripts --omit=optional --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
node generate.mjs "$tmp" >/dev/null
if ! diff -rq "$tmp" "$fixtures" >"$tmp.diff" 2>&1; then
  echo "error: Effect's encoding no longer matches the committed golden fixtures:" >&2
  head -20 "$tmp.diff" >&2
  if [ -f "$tmp/manifest.json" ] && [ -f "$fixtures/manifest.json" ]; then
    diff "$fixtures/manifest.json" "$tmp/manifest.json" | cut -c1-300 | head -20 >&2 || true
  fi
  echo "If the change is intended (new vectors, new pinned versions), run 'node tools/golden/generate.mjs'," >&2
  echo "review the fixture diff and make the Rust codec pass again." >&2
  rm -f "$tmp.diff"
  exit 1
fi
rm -f "$tmp.diff"
echo "golden: fixtures match a fresh Effect run ($(ls "$fixtures" | wc -l) files)"

node verify-rust.mjs "$rust_out"
