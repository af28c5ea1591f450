#!/bin/sh
# Builds the Workers with the offline tool paths (no GitHub downloads): `lane` (the webhook
# path, queues and cron) into build/, `ops` (admin API and console) into build-ops/.
# `sh scripts/build-worker.sh lane|ops` builds one; no argument builds both.
set -eu
cd "$(dirname "$0")/.."
if [ "${ORDERLANE_SKIP_BUILD:-}" = "1" ] && [ -f build/worker/shim.mjs ] && [ -f build-ops/worker/shim.mjs ]; then
  exit 0
fi
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$HOME/.cargo/bin/wasm-bindgen}"
export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/.bin/esbuild}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
# Both builds link the same target/…/orderlane.wasm: `wrangler dev` with both configs starts
# both build commands at once, so one waits for the other.
if command -v flock >/dev/null; then
  mkdir -p target
  exec 9>target/worker-build.lock
  flock 9
fi

build() { # feature, output directory
  worker-build --release --out-dir "$2" . --no-default-features --features "$1"
  # worker-build's own wasm-opt pass keeps the function names section; a size pass on top
  # drops it (about 15% of the module).
  if [ -x "$WASM_OPT_BIN" ] && [ -f "$2/index_bg.wasm" ]; then
    "$WASM_OPT_BIN" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-mutable-globals "$2/index_bg.wasm" -o "$2/index_bg.wasm"
  fi
}
case "${1:-both}" in
  lane) build lane build ;;
  ops) build ops build-ops ;;
  both) build lane build && build ops build-ops ;;
  *) echo "usage: $0 [lane|ops]" >&2; exit 2 ;;
esac
