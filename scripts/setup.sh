#!/usr/bin/env bash
# Installs what building and running orderlane needs, skipping whatever is already present
# at the right version. Safe to run any number of times.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '==> %s\n' "$*"; }

WORKER_BUILD_VERSION=0.8.7
# wasm-bindgen-cli must match the wasm-bindgen that Cargo.lock resolved, byte for byte.
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  step "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

have_version() { command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -q "$2"; }

if ! have_version worker-build "$WORKER_BUILD_VERSION"; then
  step "installing worker-build $WORKER_BUILD_VERSION (several minutes, once)"
  cargo install worker-build --version "=$WORKER_BUILD_VERSION"
fi

if ! have_version wasm-bindgen "$WASM_BINDGEN_VERSION"; then
  # Not --locked: the locked tree pins a yanked crate.
  step "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (several minutes, once)"
  cargo install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION" --force
fi

# The go-live test runs the README's curl and openssl commands as written; the harness reads the
# local D1 file with python3's sqlite3 (tests/support/d1.py).
missing=""
for tool in curl openssl python3; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done
if [ -n "$missing" ]; then
  step "installing$missing"
  apt-get update -qq && apt-get install -y -qq $missing
fi

# The console's browser tests drive Debian's headless Chromium (puppeteer-core downloads none).
if [ -z "${CHROMIUM_BIN:-}" ] && ! command -v chromium-headless-shell >/dev/null 2>&1 && ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    step "installing chromium-headless-shell (console browser tests)"
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium-headless-shell
  else
    echo "warning: no Chromium and no apt-get; install Chromium and set CHROMIUM_BIN for the console tests" >&2
  fi
fi

# npm ci only when package-lock.json changed since the last install.
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.orderlane-lock 2>/dev/null)" != "$lock_sum" ]; then
  step "npm ci"
  npm ci --no-audit --no-fund
  echo "$lock_sum" > node_modules/.orderlane-lock
fi
