// A short seeded soak inside the normal suite: random deliveries, operator actions, lane flips
// and warehouse failures against the real Worker, then the lifecycle invariants
// (tests/soak/soak.mjs). `make soak` (scripts/soak.mjs) runs the long version.
// One seed keeps `make test` near its 20-minute budget (each takes about 2 minutes, mostly
// waiting for retries to drain); SOAK_TEST_SEEDS=101,202 runs more. A failure prints the seed
// and how to replay it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runSoak, formatReport } from '../soak/soak.mjs';

const SEEDS = (process.env.SOAK_TEST_SEEDS ?? '101').split(',').map((s) => Number(s.trim())).filter(Number.isFinite);
const ORDERS = 40;

for (const seed of SEEDS) {
  test(`soak seed ${seed}: ${ORDERS} orders under a flaky warehouse keep every lifecycle invariant`, { timeout: 200_000 }, async () => {
    const report = await runSoak({ seed, orders: ORDERS, durationMs: 25_000, quietMs: 5500, quiesceMs: 100_000, log: (m) => console.log(m) });
    const text = formatReport(report);
    console.log(text);
    assert.equal(report.error, undefined, `seed ${seed}: the run failed\n${text}`);
    const failed = report.invariants.filter((i) => !i.pass);
    assert.deepEqual(failed.map((i) => `${i.id}: ${i.name}`), [], `seed ${seed}: invariants failed\n${text}`);
  });
}
