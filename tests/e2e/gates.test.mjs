// Release gates through the real Worker: baselines over the API, real orders through the
// webhook, dead letters from a refusing warehouse, the 15-minute cron, the per-lane rollback
// with its audit row and single alert, the report, and the KPI queries' plans.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startStack, admin, eventually, SECRET, SHOP } from '../support/stack.mjs';
import { deliver } from '../support/shopify.mjs';
import { orderJson } from '../support/orders.mjs';

const HOUR = 3_600_000;
let stack;
const released = {};

before(async () => {
  // ALLOW_CLOCK_OVERRIDE lets POST /admin/gates/evaluate judge a release 25 h or 73 h later.
  // ALERT_FORMAT=json: the gate alert's numbers arrive as data (tests/e2e/alerts covers Slack).
  stack = await startStack({ vars: { RETRY_DELAY_SCALE: '0.001', FULFILMENT_TIMEOUT_MS: '2000', ALLOW_CLOCK_OVERRIDE: '1', ALERT_FORMAT: 'json' } });
  const stock = await admin(stack, 'PUT', '/stock', [{ sku: 'SKU-STD', available: 100000 }]);
  assert.equal(stock.status, 200, JSON.stringify(stock.body));
  // The warehouse refuses every order of the default lane (400: permanent, dead-lettered at once).
  stack.fake.setBehaviour((req) => (req.path === '/fulfilments' && req.json?.lane === 'default' ? { status: 400 } : undefined));
});
after(async () => { await stack?.stop(); });

const send = (raw, topic = 'orders/create') => deliver(stack.url, raw, { secret: SECRET, shop: SHOP, topic });
const stateOf = async (id) => {
  const r = await admin(stack, 'GET', `/orders/${SHOP}/${id}`);
  if (r.status !== 200) return null;
  const o = r.body.order;
  return o.reason ? `${o.state}/${o.reason}` : o.state;
};
// Gate alerts only: the same cron also announces the dead letters these tests create.
const alerts = () => stack.fake.requests.filter((q) => q.path === '/alerts' && q.json?.kind === 'gate_failed');
const fireCron = async () => {
  const r = await fetch(`${stack.url}/__scheduled?cron=*/15+*+*+*+*`);
  assert.equal(r.status, 200, await r.text());
};
const baseline = (over = {}) => ({
  triage_mean_ms: HOUR, triage_p90_ms: 2 * HOUR, exception_rate: 0.2, fulfilment_delay_mean_ms: 600_000,
  failed_per_day: 1, note: 'measured from the manual process, March', ...over,
});
const release = async (lane) => {
  const before = Date.now();
  const r = await admin(stack, 'PUT', `/segments/${lane}/mode`, { mode: 'auto', note: `e2e: release ${lane}` });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const [row] = await stack.sql(`SELECT released_ms FROM segments WHERE segment = '${lane}'`);
  assert.ok(row.released_ms >= before, 'the release time is stamped');
  released[lane] = row.released_ms;
};

test('baselines: entered with a note, kept as history; bad input is refused with typed errors', async () => {
  assert.equal((await admin(stack, 'PUT', '/segments/nowhere/baseline', baseline())).body.error, 'unknown_segment');
  const noNote = await admin(stack, 'PUT', '/segments/default/baseline', baseline({ note: ' ' }));
  assert.deepEqual([noNote.status, noNote.body.error], [400, 'note_required']);
  const badRate = await admin(stack, 'PUT', '/segments/default/baseline', baseline({ exception_rate: 2 }));
  assert.deepEqual([badRate.status, badRate.body.error], [400, 'invalid_baseline']);
  const missing = await admin(stack, 'PUT', '/segments/default/baseline', { note: 'x', failed_per_day: 1 });
  assert.deepEqual([missing.status, missing.body.error], [400, 'invalid_baseline']);

  // default: one failed submission a day is the budget; pos: five; eu: one.
  assert.equal((await admin(stack, 'PUT', '/segments/default/baseline', baseline({ failed_per_day: 3 }))).status, 201);
  const r = await admin(stack, 'PUT', '/segments/default/baseline', baseline({ failed_per_day: 1, note: 'corrected' }));
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.body.baseline.failed_per_day, 1);
  assert.equal(r.body.baseline.source, 'entered');
  assert.equal(r.body.baseline.actor, 'user:ops');
  assert.equal((await admin(stack, 'PUT', '/segments/pos/baseline', baseline({ failed_per_day: 5 }))).status, 201);
  assert.equal((await admin(stack, 'PUT', '/segments/eu/baseline', baseline())).status, 201);
  const rows = await stack.sql("SELECT note, failed_per_day FROM baselines WHERE segment = 'default' ORDER BY id");
  assert.deepEqual(rows.map((x) => x.failed_per_day), [3, 1], 'history is kept; the newest is current');
  const report = await admin(stack, 'GET', '/segments/default/report');
  assert.equal(report.body.baseline.failed_per_day, 1);
  assert.equal(report.body.baseline_history.length, 2);
});

test('capture: refused without data or a valid window', async () => {
  const now = Date.now();
  const empty = await admin(stack, 'POST', '/segments/wholesale/baseline/capture', { from: now - HOUR, to: now, note: 'try' });
  assert.deepEqual([empty.status, empty.body.error], [409, 'insufficient_data'], JSON.stringify(empty.body));
  const noWindow = await admin(stack, 'POST', '/segments/wholesale/baseline/capture', { note: 'try' });
  assert.deepEqual([noWindow.status, noWindow.body.error], [400, 'invalid_window']);
  const future = await admin(stack, 'POST', '/segments/wholesale/baseline/capture', { from: now, to: now + 10 * HOUR, note: 'x' });
  assert.deepEqual([future.status, future.body.error], [400, 'invalid_window']);
  // Ends whose distance does not fit in 64 bits are refused, not wrapped into a short window.
  const absurd = await admin(stack, 'POST', '/segments/wholesale/baseline/capture',
    { from: '-9223372036854775000', to: String(now - HOUR), note: 'x' });
  assert.deepEqual([absurd.status, absurd.body.error], [400, 'invalid_window']);
  const kpis = await admin(stack, 'GET', '/segments/wholesale/kpis?from=-9223372036854775000&to=9223372036854775000');
  assert.deepEqual([kpis.status, kpis.body.error], [400, 'invalid_window']);
  const unknown = await admin(stack, 'POST', '/segments/nowhere/baseline/capture', { from: now - HOUR, to: now, note: 'x' });
  assert.deepEqual([unknown.status, unknown.body.error], [404, 'unknown_segment']);
});

test('a lane failing gate A is rolled back by the cron: KV manual, audited, alerted once; other lanes untouched', async () => {
  for (const lane of ['default', 'pos', 'eu']) await release(lane);
  const failing = [orderJson(), orderJson()];
  const passing = [orderJson({ source_name: 'pos' }), orderJson({ source_name: 'pos' })];
  for (const o of [...failing, ...passing]) assert.equal((await send(o.raw)).status, 200);
  for (const o of failing) {
    await eventually(async () => (await stateOf(o.id)) === 'hold/fulfilment', { what: `dead letter of ${o.id}` });
  }
  for (const o of passing) {
    await eventually(async () => (await stateOf(o.id)) === 'submitted', { what: `submission of ${o.id}` });
  }
  const kpis = await admin(stack, 'GET', `/segments/default/kpis?from=${released.default}`);
  assert.equal(kpis.status, 200, JSON.stringify(kpis.body));
  assert.equal(kpis.body.failed_submissions.count, 2);
  assert.equal(kpis.body.exceptions.routed, 2);
  assert.equal(kpis.body.exceptions.held, 0, 'a dead letter after ready is not a triage exception');
  assert.equal(kpis.body.backlog.count, 2);
  const posKpis = await admin(stack, 'GET', `/segments/pos/kpis?from=${released.pos}`);
  assert.equal(posKpis.body.fulfilment_delay.samples, 2);
  assert.equal(posKpis.body.triage.samples, 2);

  await fireCron();
  assert.equal(await eventually(() => stack.kvGet('segment:default:mode').then((v) => v === 'manual' && v),
    { what: 'default flipped to manual' }), 'manual');
  const rolled = await stack.sql("SELECT segment, actor, detail FROM audit_log WHERE event = 'rolled_back'");
  assert.equal(rolled.length, 1, JSON.stringify(rolled));
  assert.equal(rolled[0].segment, 'default');
  assert.equal(rolled[0].actor, 'system:gates');
  const detail = JSON.parse(rolled[0].detail);
  assert.equal(detail.gate, 'A');
  assert.equal(detail.observed, 2);
  assert.equal(detail.limit, 1);
  assert.equal(detail.evidence.failed_submissions, 2);
  const modeRow = await stack.sql("SELECT mode FROM segments WHERE segment = 'default'");
  assert.equal(modeRow[0].mode, 'manual');

  const got = await eventually(() => alerts().length > 0 && alerts(), { what: 'the alert POST' });
  assert.equal(got.length, 1);
  assert.equal(got[0].signatureValid, true);
  assert.equal(got[0].json.kind, 'gate_failed');
  assert.equal(got[0].json.incidents[0], `gate_failed:default:${released.default}`);
  assert.equal(got[0].json.title, 'Lane default rolled back to manual: gate A failed');
  assert.equal(got[0].json.link, '/console/lanes/default');
  const d = got[0].json.details;
  assert.equal(d.lane, 'default');
  assert.equal(d.gate, 'A');
  assert.equal(d.actor, 'system:gates');
  assert.equal(d.numbers.observed, 2);

  // Other lanes are untouched and not flipped.
  assert.equal(await stack.kvGet('segment:pos:mode'), 'auto');
  assert.equal(await stack.kvGet('segment:eu:mode'), 'auto');
  const runs = await stack.sql("SELECT segment, gate, status, decision, alerted, alert_status FROM gate_runs ORDER BY id");
  const def = runs.filter((r) => r.segment === 'default');
  assert.deepEqual(def.map((r) => [r.gate, r.status, r.decision]),
    [['A', 'fail', 'rolled_back'], ['B', 'pending', 'rolled_back'], ['C', 'pending', 'rolled_back']]);
  assert.deepEqual(def.filter((r) => r.alerted === 1).map((r) => [r.gate, r.alert_status]), [['A', 'sent']]);
  assert.ok(runs.some((r) => r.segment === 'pos' && r.gate === 'A' && r.status === 'pending' && r.decision === 'keep_watching'));
  assert.ok(!runs.some((r) => r.segment === 'wholesale'), 'a lane never released is not judged');

  // Evaluating again, on demand and by the cron, alerts nothing more and flips nothing.
  const again = await admin(stack, 'POST', '/gates/evaluate', {});
  assert.equal(again.status, 200, JSON.stringify(again.body));
  assert.equal(again.body.lanes.find((l) => l.lane === 'default').skipped, 'lane is manual');
  await fireCron();
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(alerts().length, 1, 'one failure, one alert');
  assert.equal((await stack.sql("SELECT COUNT(*) AS n FROM audit_log WHERE event = 'rolled_back'"))[0].n, 1);

  // Orders already handled keep their state; the next order of the lane is held for a person.
  for (const o of failing) assert.equal(await stateOf(o.id), 'hold/fulfilment');
  for (const o of passing) assert.equal(await stateOf(o.id), 'submitted');
  const next = orderJson();
  await send(next.raw);
  assert.equal(await stateOf(next.id), 'hold/manual');
  const nextPos = orderJson({ source_name: 'pos' });
  await send(nextPos.raw);
  assert.ok(['ready-for-fulfilment', 'submitted'].includes(await stateOf(nextPos.id)));

  const report = await admin(stack, 'GET', '/segments/default/report');
  assert.equal(report.body.decision, 'rolled_back');
  assert.equal(report.body.alerted_for, 'A');
  assert.equal(report.body.gates[0].status, 'fail');
  assert.equal(report.body.gates[0].evidence.failed_submissions, 2);
  assert.equal(report.body.baseline_vs_observed.failed_per_day.baseline, 1);

  // A window in which the lane ran auto cannot become a baseline.
  const capture = await admin(stack, 'POST', '/segments/default/baseline/capture',
    { from: released.default - 1000, to: Date.now(), note: 'capture' });
  assert.deepEqual([capture.status, capture.body.error], [409, 'lane_not_manual'], JSON.stringify(capture.body));
});

test('a passing lane: gates A and B pass from 24 h, the 72-hour decision is expand, the lane stays auto', async () => {
  const at25 = await admin(stack, 'POST', '/gates/evaluate', { lane: 'pos', now: released.pos + 25 * HOUR });
  assert.equal(at25.status, 200, JSON.stringify(at25.body));
  const e25 = at25.body.lanes[0].evaluation;
  assert.deepEqual(e25.results.map((r) => r.status), ['pass', 'pass', 'pending']);
  assert.equal(e25.decision, 'keep_watching');
  const at73 = await admin(stack, 'POST', '/gates/evaluate', { lane: 'pos', now: released.pos + 73 * HOUR });
  const e73 = at73.body.lanes[0].evaluation;
  assert.deepEqual(e73.results.map((r) => r.status), ['pass', 'pass', 'pass']);
  assert.equal(e73.decision, 'expand');
  assert.equal(e73.rollback, null);
  assert.equal(at73.body.dry_run, true, 'an evaluation at another time is a dry run');
  assert.equal(await stack.kvGet('segment:pos:mode'), 'auto');
  // It wrote no decision that could outlive it: no gate run says expand, and an evaluation
  // now still judges the release (it is not "already decided").
  const written = await stack.sql("SELECT decision FROM gate_runs WHERE segment = 'pos' AND decision = 'expand'");
  assert.deepEqual(written, []);
  const real = await admin(stack, 'POST', '/gates/evaluate', { lane: 'pos' });
  assert.equal(real.body.dry_run, false);
  assert.equal(real.body.lanes[0].evaluation.decision, 'keep_watching');
  const report = await admin(stack, 'GET', `/segments/pos/report?now=${released.pos + 73 * HOUR}`);
  assert.equal(report.body.decision, 'expand');
  assert.equal(report.body.gates.length, 3);
  assert.ok(report.body.gates.every((g) => g.title && g.evidence));
  assert.equal(alerts().length, 1, 'no alert for a passing lane');
  const bad = await admin(stack, 'POST', '/gates/evaluate', { lane: 'pos', now: 'tomorrow' });
  assert.deepEqual([bad.status, bad.body.error], [400, 'invalid_time']);
  assert.equal((await admin(stack, 'POST', '/gates/evaluate', { lane: 'nowhere' })).body.error, 'unknown_segment');
});

test('a shadow lane: the report gives the agreement between shadow decisions and operators', async () => {
  const r = await admin(stack, 'PUT', '/segments/wholesale/mode', { mode: 'shadow', note: 'e2e: shadow wholesale' });
  assert.equal(r.status, 200);
  const a = orderJson({ tags: 'wholesale' });
  const b = orderJson({ tags: 'wholesale' });
  for (const o of [a, b]) {
    await send(o.raw);
    assert.equal(await stateOf(o.id), 'hold/manual');
  }
  const shadow = await stack.sql(`SELECT shadow_state FROM orders WHERE order_id IN ('${a.id}', '${b.id}')`);
  assert.deepEqual(shadow.map((x) => x.shadow_state), ['ready-for-fulfilment', 'ready-for-fulfilment']);
  // What people did: `a` shipped by hand in Shopify (agrees with the shadow `ready`), `b` kept
  // on hold by an operator (disagrees).
  const fulfilled = a.raw.replace('"fulfillment_status":null', '"fulfillment_status":"fulfilled"')
    .replace(/"updated_at":"[^"]+"/, `"updated_at":"${new Date(Date.now() + 1000).toISOString()}"`);
  assert.equal((await send(fulfilled, 'orders/fulfilled')).status, 200);
  assert.equal(await stateOf(a.id), 'fulfilled');
  const held = await admin(stack, 'POST', `/orders/${SHOP}/${b.id}/hold`, { note: 'wait for the account manager' });
  assert.equal(held.status, 200, JSON.stringify(held.body));
  const report = await admin(stack, 'GET', '/segments/wholesale/report');
  assert.equal(report.status, 200, JSON.stringify(report.body));
  assert.equal(report.body.mode, 'shadow');
  const ag = report.body.shadow_agreement.result;
  assert.deepEqual([ag.compared, ag.agreed, ag.rate, ag.shadow_ready_operator_held], [2, 1, 0.5, 1]);
  assert.equal(await stack.kvGet('segment:wholesale:mode'), 'shadow', 'gates never flip a shadow lane');
});

test('the KPI queries use indexes', async () => {
  const r = await admin(stack, 'GET', '/segments/default/kpis?explain=true');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  for (const [name, plan] of Object.entries(r.body.plans)) {
    const scans = plan.filter((line) => /^SCAN (orders|audit_log|a|o|b)\b/.test(line));
    assert.deepEqual(scans, [], `${name} scans a table: ${JSON.stringify(plan)}`);
    assert.ok(plan.some((line) => /USING (COVERING )?INDEX/.test(line)), `${name}: ${JSON.stringify(plan)}`);
  }
  const facts = [...r.body.plans.facts_1, ...r.body.plans.facts_2].join('\n');
  for (const idx of ['orders_kpi_routed', 'orders_kpi_ready', 'orders_kpi_resolved', 'orders_kpi_submitted', 'orders_kpi_failed', 'orders_by_segment']) {
    assert.ok(facts.includes(idx), `facts query uses ${idx}: ${facts}`);
  }
});

test('the README KPI query gives the same numbers as the API', async () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const block = readme.split('<!-- kpi-query -->')[1];
  const sql = block.slice(block.indexOf('--command "') + 11, block.indexOf('"\n```'));
  const now = Date.now();
  const from = released.default - HOUR;
  const to = now + 1;
  const fixed = sql.replace(/^WITH win AS .*$/m, `WITH win AS (SELECT ${from} AS f, ${to} AS t, ${now} AS now),`);
  assert.notEqual(fixed, sql, 'the window line was found');
  const rows = await stack.wranglerSql(fixed);
  for (const lane of ['default', 'pos', 'wholesale']) {
    const row = rows.find((r) => r.lane === lane);
    const api = (await admin(stack, 'GET', `/segments/${lane}/kpis?from=${from}&to=${to}`)).body;
    assert.ok(row, `README row for ${lane}`);
    assert.deepEqual(
      [row.triage_samples, row.triage_mean_ms, row.triage_p90_ms, row.routed, row.held, row.exception_rate,
        row.delay_samples, row.fulfilment_delay_mean_ms, row.fulfilment_delay_p90_ms, row.failed, row.failed_per_day,
        row.backlog, row.backlog ? now - row.oldest_age_ms : null],
      [api.triage.samples, api.triage.mean_ms, api.triage.p90_ms, api.exceptions.routed, api.exceptions.held,
        api.exceptions.rate, api.fulfilment_delay.samples, api.fulfilment_delay.mean_ms, api.fulfilment_delay.p90_ms,
        api.failed_submissions.count, api.failed_submissions.per_day, api.backlog.count, api.backlog.oldest_since_ms],
      lane,
    );
  }
});

test('the README gate report query shows the rollback as the API does', async () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const block = readme.split('<!-- gate-report-query -->')[1];
  const sql = block.slice(block.indexOf('--command "') + 11, block.indexOf('"\n```'));
  const rows = await stack.wranglerSql(sql);
  const def = rows.filter((r) => r.segment === 'default');
  assert.deepEqual(def.map((r) => [r.gate, r.status, r.decision]),
    [['A', 'fail', 'rolled_back'], ['B', 'pending', 'rolled_back'], ['C', 'pending', 'rolled_back']]);
  assert.equal(def[0].alerted, 1);
  assert.equal(def[0].base_failed_per_day, 1);
  const report = (await admin(stack, 'GET', '/segments/default/report')).body;
  assert.equal(def[0].observed, report.gates[0].observed);
  assert.equal(def[0].limit_value, report.gates[0].limit);
});

test('releasing the lane again starts a new release: the gates and the alert mark reset', async () => {
  const before = released.default;
  await release('default');
  assert.ok(released.default > before);
  const r = await admin(stack, 'POST', '/gates/evaluate', { lane: 'default' });
  const e = r.body.lanes[0].evaluation;
  assert.equal(e.released_at_ms, released.default);
  assert.deepEqual([e.results[0].status, e.decision, e.rollback], ['pending', 'keep_watching', null]);
  assert.equal(await stack.kvGet('segment:default:mode'), 'auto');
  assert.equal(alerts().length, 1);
});
