# The two commands: `make dev` runs orderlane locally, `make test` runs every test.
# Both install what they need first (scripts/setup.sh skips what is already there).
.PHONY: setup build dev test test-native test-e2e lint bench bench-gates load soak compare replay

export CI := true
export WRANGLER_SEND_METRICS := false

setup:
	scripts/setup.sh

build: setup
	sh scripts/build-worker.sh

dev:
	scripts/dev.sh

lint: setup
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --lib --target wasm32-unknown-unknown -- -D warnings
	cargo clippy --lib --target wasm32-unknown-unknown --no-default-features --features lane -- -D warnings
	cargo clippy --lib --target wasm32-unknown-unknown --no-default-features --features ops -- -D warnings
	cargo run --quiet --bin explain -- lint --deny

test-native: setup
	cargo test

test-e2e: build
	node --test --test-concurrency=1 tests/e2e/

test: lint test-native test-e2e

bench: setup
	cargo bench --bench webhook --bench route

# Gate evaluation time over 100k audit rows on a local stack.
bench-gates: build
	node scripts/gates-bench.mjs

load: build
	node scripts/load.mjs

# The model-based soak at length (SOAK_SEEDS, SOAK_ORDERS); `make test` runs a short seeded one.
soak: build
	node scripts/soak.mjs

# Side by side with a JavaScript peer (bench/compare/README.md): ROUNDS alternating rounds.
compare: build
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	[ -d bench/compare/peer-js/node_modules ] || (cd bench/compare/peer-js && npm ci --no-audit --no-fund)
	python3 bench/compare/compare.py . bench/compare/peer-js $(or $(ROUNDS),2) 10 16

# A rules change replayed over exported orders against another revision's matrix (README:
# Routing): CORPUS=last-week.json [BASE=origin/main] [MAX_CHANGED=2%]; exits 1 over the limit.
replay:
	@test -n "$(CORPUS)" || (echo "make replay CORPUS=<export or folder> [BASE=origin/main] [MAX_CHANGED=2%]" >&2; exit 2)
	mkdir -p target
	git show $(or $(BASE),origin/main):rules/matrix.toml > target/replay-baseline.toml
	cargo run --quiet --bin explain -- replay $(CORPUS) --baseline target/replay-baseline.toml \
		--candidate rules/matrix.toml --max-changed $(or $(MAX_CHANGED),2%)
