#!/usr/bin/env bash
# Runs orderlane locally: wrangler dev with both Workers and embedded D1, KV and Queues under .wrangler/state,
# plus a demo fulfilment sink on 127.0.0.1:8788.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI=true WRANGLER_SEND_METRICS=false
scripts/setup.sh
[ -f .dev.vars ] || cp .dev.vars.example .dev.vars
# An empty ALLOWED_SHOPS refuses every delivery: a .dev.vars from before it was required gets
# the demo shop orderlane-send signs for.
grep -q '^ALLOWED_SHOPS=' .dev.vars || echo 'ALLOWED_SHOPS=demo.myshopify.com' >> .dev.vars
node_modules/.bin/wrangler d1 migrations apply orderlane --local
secret=$(sed -n 's/^FULFILMENT_SECRET=//p' .dev.vars)
FULFILMENT_SECRET="$secret" node scripts/demo-sink.mjs &
sink=$!
trap 'kill $sink 2>/dev/null || true' EXIT
cat <<MSG

orderlane is starting on http://127.0.0.1:8787 (the first build takes a couple of minutes).
Send it a signed sample webhook from another terminal:

  cargo run --bin orderlane-send -- send tests/fixtures/orders-create.json --topic orders/create

Open the console at http://127.0.0.1:8787/console and sign in with a token from .dev.vars
(ADMIN_TOKENS, e.g. local-ops-token).

Look at what was recorded:

  npx wrangler d1 execute orderlane --local --command "SELECT id, topic, order_id, outcome, received_at FROM deliveries ORDER BY id DESC LIMIT 10"

MSG
# Both Workers in one session: the lane (wrangler.toml) answers on 8787 and passes /admin and
# /console to the ops Worker (wrangler.ops.toml); both read .dev.vars.
node_modules/.bin/wrangler dev -c wrangler.toml -c wrangler.ops.toml --port 8787 --ip 127.0.0.1 --test-scheduled
