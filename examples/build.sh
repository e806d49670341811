#!/usr/bin/env bash
# Builds every example guest, examples/<name>/<dir>/main.go, into examples/<name>/<dir>.wasm
# (next to the manifests that name it), printing each output. Run from anywhere.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

shopt -s nullglob
built=0
for main in examples/*/*/main.go; do
	dir=$(dirname "$main")  # examples/fraud/amount
	out="$dir.wasm"         # examples/fraud/amount.wasm
	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "$out" "./$dir"
	echo "$out ($(wc -c <"$out" | tr -d ' ') bytes)"
	built=$((built + 1))
done
if [ "$built" -eq 0 ]; then
	echo "build.sh: no examples/*/*/main.go found" >&2
	exit 1
fi
