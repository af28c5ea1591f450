// How long a gate evaluation takes over a realistic D1: starts a local stack (needs build/),
// releases every lane, seeds N orders spread over the last 60 hours with four audit rows each
// (100,000 audit rows by default), then times POST /admin/gates/evaluate (all lanes) and
// prints the median of several runs, plus the query plans of the KPI queries.
//
//   node scripts/gates-bench.mjs [--orders 25000] [--runs 7]
import { execFile } from 'node:child_process';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startStack, admin } from '../tests/support/stack.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = promisify(execFile);
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const ORDERS = arg('orders', 25_000);
const RUNS = arg('runs', 7);
const LANES = ['default', 'eu', 'pos', 'wholesale'];
const HOUR = 3_600_000;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function timed(fn) {
  const t = process.hrtime.bigint();
  const r = await fn();
  return [Number(process.hrtime.bigint() - t) / 1e6, r];
}

const stack = await startStack({ vars: { ALLOW_CLOCK_OVERRIDE: '1' } });
const dir = mkdtempSync(join(tmpdir(), 'orderlane-bench-'));
try {
  for (const lane of LANES) {
    const b = await admin(stack, 'PUT', `/segments/${lane}/baseline`, {
      triage_mean_ms: 2 * HOUR, triage_p90_ms: 4 * HOUR, exception_rate: 0.3, fulfilment_delay_mean_ms: HOUR,
      failed_per_day: 1_000_000, note: 'bench',
    });
    if (b.status !== 201) throw new Error(JSON.stringify(b.body));
    const m = await admin(stack, 'PUT', `/segments/${lane}/mode`, { mode: 'auto', note: 'bench' });
    if (m.status !== 200) throw new Error(JSON.stringify(m.body));
  }
  const now = Date.now();
  const start = now - 60 * HOUR;
  const step = Math.floor((60 * HOUR) / ORDERS);
  // Orders: 10% triage exceptions resolved after 30 min, 2% dead-lettered, 1% still held.
  const seed = `
UPDATE segments SET released_ms = ${start - HOUR};
WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ${ORDERS - 1})
INSERT INTO orders (shop, order_id, state, reason, segment, mode, rules_version, seq, created_ms, routable_ms,
  routed_ms, held_ms, resolved_ms, ready_ms, submitted_ms, failed_ms, state_since_ms, updated_ms)
SELECT 'bench.myshopify.com', CAST(9000000000000000000 + i AS TEXT),
  CASE WHEN i % 100 = 13 THEN 'hold' WHEN i % 50 = 7 THEN 'hold' ELSE 'submitted' END,
  CASE WHEN i % 100 = 13 THEN 'address' WHEN i % 50 = 7 THEN 'fulfilment' END,
  CASE i % 4 WHEN 0 THEN 'default' WHEN 1 THEN 'eu' WHEN 2 THEN 'pos' ELSE 'wholesale' END,
  'auto', 'bench', 4, t, t, t + 60000,
  CASE WHEN i % 10 = 3 OR i % 100 = 13 THEN t + 60000 END,
  CASE WHEN i % 10 = 3 THEN t + 1800000 END,
  CASE WHEN i % 100 = 13 THEN NULL WHEN i % 10 = 3 THEN t + 1800000 ELSE t + 60000 END,
  CASE WHEN i % 100 = 13 OR i % 50 = 7 THEN NULL WHEN i % 10 = 3 THEN t + 1920000 ELSE t + 180000 END,
  CASE WHEN i % 50 = 7 AND i % 100 != 13 THEN t + 180000 END,
  t + 180000, t + 180000
FROM (SELECT i, ${start} + i * ${step} AS t FROM seq);
WITH RECURSIVE k(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM k WHERE j < 4)
INSERT INTO audit_log (at, at_ms, shop, order_id, seq, segment, event, from_state, to_state, actor, detail)
SELECT strftime('%Y-%m-%dT%H:%M:%fZ', (created_ms + j * 60000) / 1000.0, 'unixepoch'), created_ms + j * 60000,
  shop, order_id, j, segment,
  CASE j WHEN 1 THEN 'routed' WHEN 2 THEN 'submission_claimed' WHEN 3 THEN 'submitted' ELSE 'fulfilled' END,
  'paid', state, 'system:router', '{}'
FROM orders, k WHERE shop = 'bench.myshopify.com';
`;
  const file = join(dir, 'seed.sql');
  writeFileSync(file, seed);
  const [seedMs] = await timed(() => run(join(ROOT, 'node_modules', '.bin', 'wrangler'),
    ['d1', 'execute', 'orderlane', '--local', '--persist-to', stack.persist, '--file', file, '--yes'],
    { cwd: ROOT, env: { ...process.env, CI: 'true', WRANGLER_SEND_METRICS: 'false' }, maxBuffer: 64 << 20 }));
  const [counts] = await stack.sql('SELECT (SELECT COUNT(*) FROM orders) AS orders, (SELECT COUNT(*) FROM audit_log) AS audit_rows');
  console.log(`seeded ${counts.orders} orders and ${counts.audit_rows} audit rows in ${(seedMs / 1000).toFixed(1)} s`);

  const plans = await admin(stack, 'GET', '/segments/default/kpis?explain=true');
  for (const [name, plan] of Object.entries(plans.body.plans)) {
    const scans = plan.filter((l) => /^SCAN /.test(l));
    console.log(`plan ${name}: ${scans.length ? `FULL SCAN ${scans.join('; ')}` : 'indexed'}\n  ${plan.join('\n  ')}`);
  }

  const measure = async (label, fn) => {
    const times = [];
    let last;
    for (let i = 0; i < RUNS; i += 1) {
      const [ms, r] = await timed(fn);
      if (r.status !== 200) throw new Error(`${label}: ${r.status} ${JSON.stringify(r.body)}`);
      times.push(ms);
      last = r;
    }
    console.log(`${label}: median ${median(times).toFixed(1)} ms over ${RUNS} runs (min ${Math.min(...times).toFixed(1)}, max ${Math.max(...times).toFixed(1)})`);
    return last;
  };
  const all = await measure('POST /admin/gates/evaluate (4 lanes)', () => admin(stack, 'POST', '/gates/evaluate', {}));
  for (const l of all.body.lanes) {
    const e = l.evaluation;
    console.log(`  ${l.lane}: ${e ? `${e.decision}; gates ${e.results.map((r) => `${r.gate}=${r.status}`).join(' ')}; triage samples ${e.observed?.triage_mean_ms != null ? 'yes' : 'none'}` : l.skipped}`);
  }
  await measure('POST /admin/gates/evaluate {"lane":"default"}', () => admin(stack, 'POST', '/gates/evaluate', { lane: 'default' }));
  await measure('GET /admin/segments/default/report', () => admin(stack, 'GET', '/segments/default/report'));
  await measure('GET /admin/segments/default/kpis (last 24 h)', () => admin(stack, 'GET', '/segments/default/kpis'));
  await measure('GET /healthz (the stack\'s own floor)', async () => {
    const r = await fetch(`${stack.url}/healthz`);
    return { status: r.status, body: await r.text() };
  });
} finally {
  await stack.stop();
  rmSync(dir, { recursive: true, force: true });
}
