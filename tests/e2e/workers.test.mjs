// The two Workers: the lane Worker passes /admin and /console to the ops Worker, takes
// deliveries without it (or without its binding), and its health checks say when the two disagree.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, admin, ADMIN_TOKEN, FULFILMENT_SECRET, SECRET, SHOP } from '../support/stack.mjs';
import { deliver } from '../support/shopify.mjs';
import { orderJson } from '../support/orders.mjs';

const health = async (stack, query = '') => {
  const r = await fetch(`${stack.url}/healthz${query}`);
  assert.equal(r.status, 200);
  return r.json();
};

/** Without the ops Worker, a delivery is still recorded and routed (held: lanes start manual). */
async function deliveryIsHeld(stack) {
  const o = orderJson();
  const r = await deliver(stack.url, o.raw, { secret: SECRET, shop: SHOP });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const rows = await stack.sql(`SELECT state, reason FROM orders WHERE order_id = '${o.id}'`);
  assert.deepEqual(rows, [{ state: 'hold', reason: 'manual' }]);
}

/** The operator side answers 503 ops_unavailable, its detail matching `detail`. */
async function operatorSideUnavailable(stack, detail) {
  for (const path of ['/admin/stock', '/console']) {
    const a = await fetch(`${stack.url}${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(a.status, 503, path);
    const body = await a.json();
    assert.equal(body.error, 'ops_unavailable', path);
    assert.match(body.detail, detail, path);
  }
}

describe('both Workers with the same configuration', () => {
  let stack;
  before(async () => { stack = await startStack(); });
  after(async () => { await stack?.stop(); });

  test('the deep health check finds the ops Worker on the same version, rules and configuration', async () => {
    const plain = await health(stack);
    const deep = await health(stack, '?deep=1');
    assert.equal(plain.ok, true, JSON.stringify(plain));
    assert.equal('ops' in plain, false, 'the plain check makes no call to the ops Worker');
    assert.equal(deep.ok, true, JSON.stringify(deep));
    assert.deepEqual(deep.ops, { version: plain.version, rules_version: plain.rules_version, incomplete: [], differs: [] });
  });

  test('an admin call is answered by the ops Worker through the lane, body and headers intact', async () => {
    const put = await admin(stack, 'PUT', '/stock', [{ sku: 'WK-1', available: 7 }]);
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const get = await admin(stack, 'GET', '/stock');
    assert.equal(get.body.stock.find((s) => s.sku === 'WK-1')?.available, 7);
    const refused = await admin(stack, 'GET', '/stock', undefined, 'not-a-token');
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error, 'unauthorized');
    const unknown = await admin(stack, 'GET', '/no-such-thing');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.detail, 'no such admin endpoint', 'the ops Worker\'s own answer');
  });
});

describe('the ops Worker with other secrets', () => {
  let stack;
  before(async () => {
    stack = await startStack({ opsVars: { FULFILMENT_SECRET: `${FULFILMENT_SECRET}-other`, SHOPIFY_WEBHOOK_SECRET_PREVIOUS: undefined } });
  });
  after(async () => { await stack?.stop(); });

  test('the deep check names each setting that differs, never its value; the plain check stays cheap', async () => {
    const deep = await health(stack, '?deep=1');
    assert.equal(deep.ok, false);
    assert.deepEqual(deep.incomplete, ['OPS']);
    assert.deepEqual(deep.ops.differs, ['FULFILMENT_SECRET', 'SHOPIFY_WEBHOOK_SECRET_PREVIOUS']);
    const text = JSON.stringify(deep);
    for (const secret of [FULFILMENT_SECRET, SECRET, ADMIN_TOKEN]) assert.ok(!text.includes(secret), 'no secret in the answer');
    assert.equal((await health(stack)).ok, true, 'the plain check does not ask the ops Worker');
  });
});

describe('the lane Worker alone', () => {
  let stack;
  before(async () => { stack = await startStack({ ops: false }); });
  after(async () => { await stack?.stop(); });

  test('deliveries are still recorded and answered 200; the operator side answers 503 ops_unavailable', async () => {
    await deliveryIsHeld(stack);
    await operatorSideUnavailable(stack, /did not answer/);
    const deep = await health(stack, '?deep=1');
    assert.equal(deep.ok, false);
    assert.deepEqual(deep.incomplete, ['OPS']);
    assert.match(deep.ops.error, /ops Worker/);
  });
});

describe('the lane Worker deployed without its OPS binding', () => {
  let stack;
  before(async () => { stack = await startStack({ opsBinding: false }); });
  after(async () => { await stack?.stop(); });

  test('deliveries are still recorded; the operator side and both health checks name the missing binding', async () => {
    await deliveryIsHeld(stack);
    await operatorSideUnavailable(stack, /binding is missing/);
    const plain = await health(stack);
    assert.equal(plain.ok, false);
    assert.deepEqual(plain.incomplete, ['OPS'], 'the plain check sees the missing binding without a call');
    const deep = await health(stack, '?deep=1');
    assert.deepEqual([deep.ok, deep.incomplete], [false, ['OPS']]);
    assert.match(deep.ops.error, /OPS service binding is missing/);
  });
});
