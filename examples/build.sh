#!/usr/bin/env bash
# Builds every example guest, examples/<name>/<dir>/main.go, into examples/<name>/<dir>.wasm
# (next to the manifests that name it) and into examples/prebuilt/<name>/<dir>.wasm.gz (what
# the osprey binary embeds for `osprey dev`, committed; examples/prebuilt_test.go fails when
# it is stale), printing each output. Run from anywhere; needs only Go.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec go run ./examples/internal/build
