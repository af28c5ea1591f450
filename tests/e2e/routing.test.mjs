// Routing through the real Worker: lanes, exception branches and their release paths,
// out-of-order and duplicated deliveries, stock races, and lane modes from KV.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, admin, eventually, SECRET, SHOP } from '../support/stack.mjs';
import { deliver } from '../support/shopify.mjs';
import { orderJson, riskJson } from '../support/orders.mjs';

let stack;
before(async () => {
  stack = await startStack({ vars: { RETRY_DELAY_SCALE: '0.001', FULFILMENT_TIMEOUT_MS: '2000' } });
  for (const lane of ['default', 'eu']) {
    const r = await admin(stack, 'PUT', `/segments/${lane}/mode`, { mode: 'auto', note: 'e2e: release lane' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
  const stock = await admin(stack, 'PUT', '/stock', [
    { sku: 'SKU-STD', available: 100000 }, { sku: 'SKU-LAST', available: 1 }, { sku: 'SKU-NONE', available: 0 },
  ]);
  assert.equal(stock.status, 200, JSON.stringify(stock.body));
});
after(async () => { await stack?.stop(); });

const send = (raw, topic = 'orders/create', opts = {}) => deliver(stack.url, raw, { secret: SECRET, shop: SHOP, topic, ...opts });
const view = async (id) => {
  const r = await admin(stack, 'GET', `/orders/${SHOP}/${id}`);
  return r.status === 200 ? r.body : null;
};
const stateOf = async (id) => {
  const v = await view(id);
  return v && (v.order.reason ? `${v.order.state}/${v.order.reason}` : v.order.state);
};

test('a paid, valid, stocked order in an auto lane is ready and reaches the warehouse once', async () => {
  const o = orderJson();
  const r = await send(o.raw);
  assert.equal(r.status, 200);
  const v = await view(o.id);
  assert.equal(v.order.segment, 'default');
  assert.equal(v.order.order_id, o.id, 'the 64-bit id is exact');
  assert.ok(['ready-for-fulfilment', 'submitted'].includes(v.order.state), v.order.state);
  assert.match(v.order.rules_version, /^[0-9a-f]{12}$/);
  const seen = await eventually(() => stack.fake.requests.filter((q) => q.json?.order_id === o.id).length > 0 &&
    stack.fake.requests.filter((q) => q.json?.order_id === o.id), { what: 'the warehouse POST' });
  assert.equal(seen.length, 1);
  assert.equal(seen[0].signatureValid, true);
  assert.equal(seen[0].headers['idempotency-key'], `orderlane:${SHOP}:${o.id}:1`);
  assert.equal(seen[0].json.lane, 'default');
  assert.equal(await eventually(async () => (await stateOf(o.id)) === 'submitted' && 'submitted'), 'submitted');
  const audit = (await view(o.id)).timeline;
  assert.ok(audit.length >= 2);
  for (const row of audit) {
    assert.ok(!JSON.stringify(row).includes('example.com'), 'no email in the audit log');
    assert.ok(!JSON.stringify(row).includes('Shipping Street'), 'no address in the audit log');
  }
});

test('payment: pending waits as new, orders/paid releases it', async () => {
  const t0 = Date.now() - 60_000;
  const o = orderJson({ financial_status: 'pending', createdMs: t0 });
  await send(o.raw);
  assert.equal(await stateOf(o.id), 'new');
  const paid = orderJson({ id: o.id, financial_status: 'paid', createdMs: t0, updatedMs: t0 + 30_000 });
  await send(paid.raw, 'orders/paid');
  assert.ok(['ready-for-fulfilment', 'submitted'].includes(await stateOf(o.id)));
});

test('payment: voided goes to hold/payment', async () => {
  const o = orderJson({ financial_status: 'voided' });
  await send(o.raw);
  assert.equal(await stateOf(o.id), 'hold/payment');
  const v = await view(o.id);
  assert.ok(v.order.rule_ids.includes('payment.'), v.order.rule_ids);
  assert.ok(v.order.explanation.length > 0);
});

test('address: a bad postcode holds, an orders/updated that fixes it releases', async () => {
  const t0 = Date.now() - 60_000;
  const o = orderJson({ zip: 'ABC', createdMs: t0 });
  await send(o.raw);
  assert.equal(await stateOf(o.id), 'hold/address');
  const fixed = orderJson({ id: o.id, zip: '40003', createdMs: t0, updatedMs: t0 + 10_000 });
  await send(fixed.raw, 'orders/updated');
  assert.ok(['ready-for-fulfilment', 'submitted'].includes(await stateOf(o.id)));
});

test('inventory: no stock holds; two orders racing for the last unit: exactly one gets it', async () => {
  const none = orderJson({ lines: [{ sku: 'SKU-NONE', quantity: 1 }] });
  await send(none.raw);
  assert.equal(await stateOf(none.id), 'hold/inventory');
  const a = orderJson({ lines: [{ sku: 'SKU-LAST', quantity: 1 }] });
  const b = orderJson({ lines: [{ sku: 'SKU-LAST', quantity: 1 }] });
  const results = await Promise.all([send(a.raw), send(b.raw)]);
  assert.deepEqual(results.map((r) => r.status), [200, 200]);
  const states = [await stateOf(a.id), await stateOf(b.id)].sort();
  assert.equal(states.filter((s) => s === 'hold/inventory').length, 1, JSON.stringify(states));
  assert.equal(states.filter((s) => s === 'ready-for-fulfilment' || s === 'submitted').length, 1, JSON.stringify(states));
  const stock = await admin(stack, 'GET', '/stock');
  assert.equal(stock.body.stock.find((s) => s.sku === 'SKU-LAST').available, 0);
});

test('fraud: a lane that requires a verdict waits in fraud-check; high holds, low releases', async () => {
  const hi = orderJson({ country: 'DE', zip: '10115', currency: 'EUR' });
  await send(hi.raw);
  assert.equal(await stateOf(hi.id), 'fraud-check');
  assert.equal((await view(hi.id)).order.segment, 'eu');
  await send(riskJson(hi.id, 'high'), 'orders/risk_assessment_changed');
  assert.equal(await stateOf(hi.id), 'hold/fraud');
  const lo = orderJson({ country: 'DE', zip: '10115', currency: 'EUR' });
  await send(lo.raw);
  await send(riskJson(lo.id, 'low'), 'orders/risk_assessment_changed');
  assert.ok(['ready-for-fulfilment', 'submitted'].includes(await stateOf(lo.id)));
});

test('fraud: a risk rule fires on an order total over the lane limit', async () => {
  const o = orderJson({ total: '9999.00' });
  await send(o.raw);
  assert.equal(await stateOf(o.id), 'hold/fraud');
  assert.ok((await view(o.id)).order.rule_ids.includes('fraud.'));
});

test('out of order: orders/updated before orders/create routes; the stale create is ignored and audited', async () => {
  const t0 = Date.now() - 120_000;
  const newer = orderJson({ createdMs: t0, updatedMs: t0 + 60_000, zip: '40003' });
  const older = orderJson({ id: newer.id, createdMs: t0, updatedMs: t0, zip: 'BAD' });
  await send(newer.raw, 'orders/updated');
  const first = await stateOf(newer.id);
  assert.ok(['ready-for-fulfilment', 'submitted'].includes(first), first);
  await send(older.raw, 'orders/create');
  const after = await stateOf(newer.id);
  assert.ok(['ready-for-fulfilment', 'submitted'].includes(after), `a stale event moved the order to ${after}`);
  const v = await view(newer.id);
  assert.ok(v.timeline.some((r) => r.event === 'ignored'), JSON.stringify(v.timeline.map((r) => r.event)));
});

test('repeated deliveries change nothing the second time', async () => {
  const o = orderJson();
  const webhookId = `dup-${o.id}`;
  await send(o.raw, 'orders/create', { webhookId });
  // The fulfilment consumer may add its own rows meanwhile; the delivery path may not.
  const routed = async () => (await view(o.id)).timeline.filter((r) => r.actor === 'system:router');
  const before = await routed();
  const again = await send(o.raw, 'orders/create', { webhookId });
  assert.equal(again.body.status, 'duplicate');
  assert.deepEqual(await routed(), before);
  const deliveries = await stack.sql(`SELECT COUNT(*) AS n FROM deliveries WHERE webhook_id = '${webhookId}'`);
  assert.equal(deliveries[0].n, 1);
});

test('cancelled stops an order not yet submitted and returns its reservation', async () => {
  await admin(stack, 'PUT', '/stock', [{ sku: 'SKU-CANCEL', available: 1 }]);
  const t0 = Date.now() - 60_000;
  const o = orderJson({ lines: [{ sku: 'SKU-CANCEL', quantity: 1 }], financial_status: 'pending', createdMs: t0 });
  await send(o.raw);
  assert.equal(await stateOf(o.id), 'new');
  const c = orderJson({ id: o.id, lines: [{ sku: 'SKU-CANCEL', quantity: 1 }], cancelled: true, createdMs: t0, updatedMs: t0 + 1000 });
  await send(c.raw, 'orders/cancelled');
  assert.equal(await stateOf(o.id), 'cancelled');
  const paidLate = orderJson({ id: o.id, lines: [{ sku: 'SKU-CANCEL', quantity: 1 }], createdMs: t0, updatedMs: t0 + 2000 });
  await send(paidLate.raw, 'orders/paid');
  assert.equal(await stateOf(o.id), 'cancelled', 'nothing moves a cancelled order');
});

test('a KV flip of one lane to manual changes that lane only; shadow sends nothing', async () => {
  await stack.kvFlip('segment:eu:mode', 'manual');
  const eu = orderJson({ country: 'FR', zip: '75001', currency: 'EUR' });
  const us = orderJson();
  await send(eu.raw);
  await send(us.raw);
  assert.equal(await stateOf(eu.id), 'hold/manual');
  assert.ok(['ready-for-fulfilment', 'submitted'].includes(await stateOf(us.id)));
  const modeRows = await stack.sql("SELECT detail FROM audit_log WHERE event = 'mode_changed' AND segment = 'eu'");
  assert.ok(modeRows.some((r) => JSON.parse(r.detail).to === 'manual'), 'the KV change was audited when seen');

  await stack.kvFlip('segment:default:mode', 'shadow');
  const sh = orderJson();
  await send(sh.raw);
  const v = await view(sh.id);
  assert.equal(v.order.mode, 'shadow');
  assert.equal(`${v.order.state}/${v.order.reason}`, 'hold/manual');
  assert.equal(v.order.shadow_state, 'ready-for-fulfilment');
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(stack.fake.requests.filter((q) => q.json?.order_id === sh.id).length, 0, 'shadow sent nothing');
  await stack.kvFlip('segment:default:mode', 'auto');
});

test('release paths: an inventory hold released after a stock load, a fraud hold released by an operator', async () => {
  const o = orderJson({ lines: [{ sku: 'SKU-LATE', quantity: 2 }] });
  await admin(stack, 'PUT', '/stock', [{ sku: 'SKU-LATE', available: 1 }]);
  await send(o.raw);
  assert.equal(await stateOf(o.id), 'hold/inventory');
  const early = await admin(stack, 'POST', `/orders/${SHOP}/${o.id}/release`, { note: 'try again' });
  assert.equal(early.status, 200);
  assert.equal(await stateOf(o.id), 'hold/inventory', 'still short: the rules hold it again');
  await admin(stack, 'PUT', '/stock', { stock: [{ sku: 'SKU-LATE', available: 5 }], note: 'delivery arrived' });
  const r = await admin(stack, 'POST', `/orders/${SHOP}/${o.id}/release`, { note: 'stock arrived' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.ok(['ready-for-fulfilment', 'submitted'].includes(await stateOf(o.id)));
  const stock = await admin(stack, 'GET', '/stock');
  assert.equal(stock.body.stock.find((s) => s.sku === 'SKU-LATE').available, 3, 'the released order claimed its 2 units');

  const f = orderJson({ total: '9999.00' });
  await send(f.raw);
  assert.equal(await stateOf(f.id), 'hold/fraud');
  const rerun = await admin(stack, 'POST', `/orders/${SHOP}/${f.id}/release`, { note: 're-check' });
  assert.equal(rerun.status, 200);
  assert.equal(await stateOf(f.id), 'hold/fraud', 'the total rule still fires');
  const forced = await admin(stack, 'POST', `/orders/${SHOP}/${f.id}/force-ready`, { note: 'known customer, verified by phone' });
  assert.equal(forced.status, 200, JSON.stringify(forced.body));
  assert.ok(['ready-for-fulfilment', 'submitted'].includes(await stateOf(f.id)));
  const v = await view(f.id);
  const op = v.timeline.find((row) => row.event === 'operator_force_ready');
  assert.equal(op.actor, 'user:ops');
  assert.equal(JSON.parse(op.detail).note, 'known customer, verified by phone');
});

test('the cron sweeps: pending payment past its window and a missing verdict past its timeout go to hold', async () => {
  const now = Date.now();
  // Windows from rules/matrix.toml: default lane 1 day to pay, eu lane 120 minutes for a verdict.
  const pending = orderJson({ financial_status: 'pending', createdMs: now - 1440 * 60_000 + 4000 });
  const waiting = orderJson({ country: 'NL', zip: '1012 AB', currency: 'EUR', createdMs: now - 120 * 60_000 + 4000 });
  await admin(stack, 'PUT', '/segments/eu/mode', { mode: 'auto', note: 'sweep test' });
  await send(pending.raw);
  await send(waiting.raw);
  assert.equal(await stateOf(pending.id), 'new');
  assert.equal(await stateOf(waiting.id), 'fraud-check');
  await new Promise((r) => setTimeout(r, 5000));
  const cron = await fetch(`${stack.url}/__scheduled?cron=*/15+*+*+*+*`);
  assert.equal(cron.status, 200);
  await eventually(async () => (await stateOf(pending.id)) === 'hold/payment', { what: 'payment sweep' });
  await eventually(async () => (await stateOf(waiting.id)) === 'hold/fraud', { what: 'verdict sweep' });
  const v = await view(pending.id);
  const swept = v.timeline.at(-1);
  assert.equal(swept.rule_id, 'payment.window_expired');
  assert.equal(swept.actor, 'system:router');
});
