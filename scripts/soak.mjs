#!/usr/bin/env node
// The long soak (`make soak`): one fresh stack per seed, a seeded random run of deliveries,
// operator actions, lane flips and warehouse failures, then the lifecycle invariants.
//
//   SOAK_SEEDS=1,2,3        seeds to run, in order (default 1,2,3); `random:N` draws N seeds
//   SOAK_ORDERS=200         orders per seed (default 200)
//   SOAK_DURATION_MS=...    length of the drive phase (default 500 ms per order, at least 15 s)
//   SOAK_QUIESCE_MS=120000  longest wait for the stack to settle at the end
//   SOAK_REPORT=path.json   also write every report as JSON
//
// Prints a report per seed and exits 1 when any invariant failed (or a run errored).
// Needs build/ (`make build`).
import { writeFileSync } from 'node:fs';
import { randomInt } from 'node:crypto';
import { runSoak, formatReport } from '../tests/soak/soak.mjs';

const env = process.env;
const seedsSpec = env.SOAK_SEEDS ?? '1,2,3';
const seeds = seedsSpec.startsWith('random:')
  ? Array.from({ length: Number(seedsSpec.slice(7)) || 1 }, () => randomInt(1, 2 ** 31 - 1))
  : seedsSpec.split(',').map((s) => Number(s.trim())).filter(Number.isFinite);
const orders = Number(env.SOAK_ORDERS ?? 200);
const durationMs = env.SOAK_DURATION_MS ? Number(env.SOAK_DURATION_MS) : undefined;
const quiesceMs = Number(env.SOAK_QUIESCE_MS ?? 150_000);

const reports = [];
for (const seed of seeds) {
  console.log(`\n=== soak seed ${seed} (${orders} orders) ===`);
  const report = await runSoak({ seed, orders, durationMs, quietMs: 6000, quiesceMs, log: (m) => console.log(m) });
  reports.push(report);
  console.log(formatReport(report, { offenders: 10 }));
}

console.log('\n=== summary ===');
for (const r of reports) {
  const inv = (r.invariants ?? []).map((i) => `${i.id}:${i.pass ? 'pass' : `FAIL(${i.count})`}`).join(' ');
  console.log(`seed ${r.seed}  orders ${r.orders}  deliveries ${r.deliveries?.sent ?? '-'}  warehouse calls ${r.warehouse?.calls ?? '-'}  `
    + `run ${(r.runMs / 1000).toFixed(1)} s  ${r.error ? 'ERROR' : inv}`);
}
if (env.SOAK_REPORT) writeFileSync(env.SOAK_REPORT, JSON.stringify(reports, null, 2));
const bad = reports.filter((r) => !r.ok);
if (bad.length) {
  console.log(`\nFAILED seeds: ${bad.map((r) => r.seed).join(', ')} (replay one with SOAK_SEEDS=<seed> SOAK_ORDERS=${orders}${durationMs ? ` SOAK_DURATION_MS=${durationMs}` : ''})`);
  process.exit(1);
}
process.exit(0);
