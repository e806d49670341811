#!/usr/bin/env bash
# Rebuilds every hand-written WAT plugin here and in hostile/ (<name>.wat -> <name>.wasm next
# to it) with wabt's wat2wasm (Debian/Ubuntu: apt-get install wabt). The .wasm files are
# committed, so the tests need no wabt; run this after editing a .wat. Idempotent.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v wat2wasm >/dev/null 2>&1; then
  echo "build.sh: wat2wasm not found (install wabt)" >&2
  exit 1
fi

for wat in *.wat hostile/*.wat; do
  wasm="${wat%.wat}.wasm"
  wat2wasm "$wat" -o "$wasm"
  echo "built host/extism/testdata/$wasm ($(wc -c <"$wasm") bytes)"
done
