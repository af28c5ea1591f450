// Replay of real deliveries: orders sent to the real Worker, their bodies exported from its local
// D1 with the README's own `wrangler d1 execute` query, and replayed by `explain replay` under the
// shipped matrix and a candidate that lowers the default lane's fraud limit to 2,000.00.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startStack, eventually, SECRET, SHOP } from '../support/stack.mjs';
import { deliver } from '../support/shopify.mjs';
import { orderJson, riskJson } from '../support/orders.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const WRANGLER = join(ROOT, 'node_modules', '.bin', 'wrangler');
const ENV = { ...process.env, CI: 'true', WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1' };

/** Runs a command; resolves { code, stdout, stderr } whatever its exit status. */
const run = (cmd, args) => new Promise((resolve) => {
  execFile(cmd, args, { cwd: ROOT, env: ENV, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
    resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
  });
});

/** The export command as the README gives it: its SQL, unchanged. */
function readmeExportSql() {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const m = readme.match(/^npx wrangler d1 execute orderlane --remote --json --command "([^"]+)" > last-week\.json$/m);
  assert.ok(m, 'the README shows the export command');
  return m[1];
}

let stack;
let dir;
before(async () => {
  stack = await startStack();
  dir = mkdtempSync(join(tmpdir(), 'orderlane-replay-'));
});
after(async () => {
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const send = (raw, topic = 'orders/create') => deliver(stack.url, raw, { secret: SECRET, shop: SHOP, topic });

test('orders delivered to the Worker, exported with the README query, replay under two matrices', async () => {
  const t0 = Date.now() - 30 * 60_000;
  const orders = {
    clean: orderJson({ createdMs: t0 }),
    voided: orderJson({ createdMs: t0 + 1000, financial_status: 'voided' }),
    noAddress: orderJson({ createdMs: t0 + 2000, shipping: false }),
    t2100: orderJson({ createdMs: t0 + 3000, total: '2100.00' }),
    t2500: orderJson({ createdMs: t0 + 4000, total: '2500.00' }),
    t3500: orderJson({ createdMs: t0 + 5000, total: '3500.00' }),
    eu: orderJson({ createdMs: t0 + 6000, currency: 'EUR', country: 'DE', zip: '10115' }),
    pos: orderJson({ createdMs: t0 + 7000, source_name: 'pos', shipping: false }),
    trade: orderJson({ createdMs: t0 + 8000, tags: 'wholesale', financial_status: 'authorized' }),
  };
  for (const o of Object.values(orders)) {
    const r = await send(o.raw);
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
  // A verdict for the EU order, and a later body of the clean order: the export takes the
  // first body routing saw, with the verdict stored since.
  assert.equal((await send(riskJson(orders.eu.id, 'low'), 'orders/risk_assessment_changed')).status, 200);
  const later = orderJson({ id: orders.clean.id, createdMs: t0, updatedMs: Date.now(), financial_status: 'voided' });
  assert.equal((await send(later.raw, 'orders/updated')).status, 200);
  await eventually(async () => {
    const rows = await stack.sql(`SELECT risk_level FROM orders WHERE order_id = '${orders.eu.id}'`);
    return rows[0]?.risk_level === 'low';
  }, { what: 'the EU order to carry its verdict' });

  const sql = readmeExportSql();
  const exp = await run(WRANGLER, ['d1', 'execute', 'orderlane', '--local', '--persist-to', stack.persist, '--json', '--command', sql]);
  assert.equal(exp.code, 0, exp.stderr);
  const exported = JSON.parse(exp.stdout);
  assert.equal(exported[0].results.length, Object.keys(orders).length, 'one row per order');
  const file = join(dir, 'last-week.json');
  writeFileSync(file, exp.stdout);

  const replay = (...extra) => run('cargo', ['run', '--quiet', '--bin', 'explain', '--', 'replay', file,
    '--baseline', 'rules/matrix.toml', '--candidate', 'tests/replay/candidate.toml', ...extra]);
  const r = await replay('--json', '--max-changed', '1');
  assert.equal(r.code, 1, `two orders change, over a limit of 1:\n${r.stdout}${r.stderr}`);
  const report = JSON.parse(r.stdout);
  assert.equal(report.orders.length, Object.keys(orders).length);
  assert.deepEqual(report.unreadable, []);
  const byId = Object.fromEntries(report.orders.map((o) => [o.order_id, o]));
  const label = (d) => (d.reason ? `${d.state}/${d.reason}` : d.state);
  const got = (k) => byId[orders[k].id];
  for (const o of report.orders) assert.equal(o.shop, SHOP, 'the shop comes from the export');
  assert.equal(label(got('clean').baseline), 'ready-for-fulfilment', 'the first body (paid) is replayed, not the voided update');
  assert.equal(label(got('voided').baseline), 'hold/payment');
  assert.equal(label(got('noAddress').baseline), 'hold/address');
  assert.equal(label(got('t3500').baseline), 'hold/fraud');
  assert.equal(got('eu').baseline.lane, 'eu');
  assert.equal(label(got('eu').baseline), 'ready-for-fulfilment', 'the stored low verdict is used');
  assert.equal(got('pos').baseline.lane, 'pos');
  assert.equal(got('trade').baseline.lane, 'wholesale');
  assert.equal(label(got('trade').baseline), 'ready-for-fulfilment');
  // The exact diff: the two orders between 2,000.00 and 3,000.00 move to a fraud hold.
  const changed = report.orders.filter((o) => o.change === 'changed').map((o) => o.order_id).sort();
  assert.deepEqual(changed, [orders.t2100.id, orders.t2500.id].sort());
  assert.deepEqual(report.transitions, [{ from: 'ready-for-fulfilment', to: 'hold/fraud', orders: 2 }]);
  for (const k of ['t2100', 't2500']) assert.deepEqual(got(k).candidate.rules, ['fraud.total_over_limit']);
  const rate = Object.fromEntries(report.exception_rate.map((x) => [x.lane, x]));
  assert.deepEqual(rate.default.baseline, { orders: 6, held: 3 });
  assert.deepEqual(rate.default.candidate, { orders: 6, held: 5 });
  assert.equal(report.gate.passed, false);

  // Within the limit the same replay passes; the text report names the transition.
  const ok = await replay('--max-changed', '2');
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /changed: 2 of 9 orders \(22\.2%\)\n {2}ready-for-fulfilment → hold\/fraud: 2\n/);
  assert.match(ok.stdout, /gate: passed/);
});
