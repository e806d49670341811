#!/usr/bin/env bash
# Builds the example AssemblyScript plugins, examples/plugins/<name>/assembly/index.ts, into
# examples/plugins/<name>/<name>.wasm with the pinned compiler from package-lock.json
# (npm ci first when node_modules is missing). Idempotent; run from anywhere; prints what it
# built. The .wasm files are committed, so nothing else needs Node.js to use them.
#
#   ./build.sh            build all plugins
#   ./build.sh mask geoip build some
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

if [ ! -x node_modules/.bin/asc ]; then
  echo "== npm ci (examples/plugins)"
  npm ci --no-audit --no-fund --loglevel=error </dev/null
fi

plugins=("$@")
if [ ${#plugins[@]} -eq 0 ]; then
  plugins=(mask validate geoip)
fi

for name in "${plugins[@]}"; do
  if [ ! -f "$name/asconfig.json" ]; then
    echo "build.sh: no plugin $name (no $name/asconfig.json)" >&2
    exit 1
  fi
  # asc runs from here: the shared asconfig.json's `--use abort=lib/extism/abort` names
  # lib/extism.ts by its path from this directory. The per-plugin asconfig.json sets the
  # entry (assembly/index.ts) and the output (<name>.wasm), both relative to it.
  node_modules/.bin/asc --config "$name/asconfig.json"
  echo "built examples/plugins/$name/$name.wasm ($(wc -c <"$name/$name.wasm") bytes, sha256 $(sha256sum "$name/$name.wasm" | cut -c1-16))"
done
