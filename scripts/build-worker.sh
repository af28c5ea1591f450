#!/bin/sh
# Builds the Worker into build/ with the offline tool paths (no GitHub downloads).
set -eu
cd "$(dirname "$0")/.."
if [ "${ORDERLANE_SKIP_BUILD:-}" = "1" ] && [ -f build/worker/shim.mjs ]; then
  exit 0
fi
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$HOME/.cargo/bin/wasm-bindgen}"
export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/.bin/esbuild}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
exec worker-build --release
