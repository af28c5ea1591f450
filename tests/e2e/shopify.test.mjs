// Shopify as a peer, through the real Worker and a fake Admin API (tests/support/fake-shopify.mjs):
// holds mirrored onto fulfillment orders, their release, idempotence, throttling, staff holds
// and releases made in Shopify, reconciliation of orders whose webhooks never arrived.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, admin, eventually, SHOP } from '../support/stack.mjs';
import { startFakeShopify } from '../support/fake-shopify.mjs';
import { orderJson } from '../support/orders.mjs';
import { client, sleep } from '../support/api.mjs';

let stack;
let shopify;
let api;
before(async () => {
  shopify = await startFakeShopify({ tokens: ['shpat_e2e'] });
  stack = await startStack({ vars: {
    RETRY_DELAY_SCALE: '0.001',
    FULFILMENT_TIMEOUT_MS: '2000',
    SHOPIFY_ADMIN_TOKENS: `${SHOP}:shpat_e2e`,
    SHOPIFY_ADMIN_ORIGIN: shopify.url,
  } });
  api = client(stack);
  for (const lane of ['default', 'eu']) {
    const r = await admin(stack, 'PUT', `/segments/${lane}/mode`, { mode: 'auto', note: 'e2e: release lane' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
  const stock = await admin(stack, 'PUT', '/stock', [{ sku: 'SKU-STD', available: 100000 }]);
  assert.equal(stock.status, 200, JSON.stringify(stock.body));
});
after(async () => { await stack?.stop(); await shopify?.close(); });

const holdsOf = (orderId) => shopify.fulfillmentOrders(orderId).map((f) => f.holds.filter((h) => h.handle === 'orderlane'));
const mutations = (orderId, op) => {
  const fos = new Set(shopify.fulfillmentOrders(orderId).map((f) => f.id));
  return shopify.ops(op).filter((c) => fos.has(c.variables.id) && c.answered === 200);
};
const mirrorDone = (orderId) => eventually(async () => {
  const rows = await stack.sql(`SELECT desired, version, done_version FROM shopify_holds WHERE order_id = '${orderId}'`);
  return rows[0] && rows[0].done_version >= rows[0].version && rows[0];
}, { what: `the Shopify mirror of ${orderId} to be carried out` });

test('a bad address holds every open fulfillment order once, with the mapped reason; the fix releases it', async () => {
  const t0 = Date.now() - 60_000;
  const o = orderJson({ zip: 'ABC', createdMs: t0 });
  shopify.addOrder(o.raw, { fos: 2 });
  assert.equal((await api.send(o.raw)).status, 200);
  assert.equal(await api.stateOf(o.id), 'hold/address');
  await eventually(() => holdsOf(o.id).every((h) => h.length === 1), { what: 'a hold on each fulfillment order' });
  for (const fo of shopify.fulfillmentOrders(o.id)) {
    assert.equal(fo.status, 'ON_HOLD');
    const [h] = fo.holds;
    assert.equal(h.reason, 'INCORRECT_ADDRESS');
    assert.match(h.reasonNotes, /address/i, 'the notes say why');
  }
  assert.equal(mutations(o.id, 'OrderlaneHold').length, 2, 'one mutation per fulfillment order');
  const placed = await api.waitEvent(o.id, 'shopify_hold_placed');
  assert.equal(placed.actor, 'system:shopify');
  assert.equal(JSON.parse(placed.detail).shopify_reason, 'INCORRECT_ADDRESS');
  await mirrorDone(o.id);
  const shown = (await api.view(o.id)).shopify_hold;
  assert.deepEqual([shown.desired, shown.reason, shown.in_place], ['hold', 'address', true]);
  assert.equal(shown.fulfillment_orders.length, 2);
  assert.ok(shown.fulfillment_orders.every((f) => f.orderlane_hold), JSON.stringify(shown));

  const fixed = orderJson({ id: o.id, zip: '40003', createdMs: t0, updatedMs: t0 + 10_000 });
  assert.equal((await api.send(fixed.raw, { topic: 'orders/updated' })).status, 200);
  assert.ok(['ready-for-fulfilment', 'submitted'].includes(await api.stateOf(o.id)));
  await eventually(() => holdsOf(o.id).every((h) => h.length === 0), { what: 'the holds released' });
  assert.equal(mutations(o.id, 'OrderlaneRelease').length, 2, 'one release per fulfillment order');
  assert.ok(shopify.fulfillmentOrders(o.id).every((f) => f.status === 'OPEN'));
  await api.waitEvent(o.id, 'shopify_hold_released');
  // The warehouse still gets the order exactly once.
  await api.waitPosts(o.id, 1);
});

test('a repeated webhook makes no second mutation', async () => {
  const o = orderJson({ zip: 'ABC' });
  shopify.addOrder(o.raw);
  const first = await api.send(o.raw, { webhookId: `dup-${o.id}` });
  assert.equal(first.status, 200);
  await mirrorDone(o.id);
  const again = await api.send(o.raw, { webhookId: `dup-${o.id}` });
  assert.equal(again.body.status, 'duplicate');
  // The same version again under a new webhook id (Shopify sends both create and update).
  await api.send(o.raw, { topic: 'orders/updated' });
  // The cron re-sends only mirrors not carried out.
  await api.fireCron();
  await sleep(1500);
  assert.equal(mutations(o.id, 'OrderlaneHold').length, 1, 'exactly one hold mutation');
  assert.deepEqual(holdsOf(o.id).map((h) => h.length), [1]);
});

test('a throttled answer is retried after the advertised wait', async () => {
  const o = orderJson({ zip: 'ABC' });
  shopify.addOrder(o.raw);
  // requested 300, available 100, restore 100/s: the bucket refills in 2 s.
  shopify.failNext('throttled', { op: 'OrderlaneFulfillmentOrders', requested: 300, available: 100 });
  await api.send(o.raw);
  await mirrorDone(o.id);
  const calls = shopify.ops('OrderlaneFulfillmentOrders').filter((c) => c.variables.id === `gid://shopify/Order/${o.id}`);
  assert.equal(calls[0].answered, 'throttled');
  assert.equal(calls[1].answered, 200);
  assert.ok(calls[1].at - calls[0].at >= 2000, `retried after ${calls[1].at - calls[0].at} ms, Shopify asked for 2 s`);
  assert.equal(mutations(o.id, 'OrderlaneHold').length, 1);
});

test('a 429 with Retry-After is honoured, and userErrors dead-letter the mirror without touching the order', async () => {
  const o = orderJson({ zip: 'ABC' });
  shopify.addOrder(o.raw);
  shopify.failNext('429', { op: 'OrderlaneFulfillmentOrders', retryAfter: 1 });
  shopify.failNext('userErrors', { op: 'OrderlaneHold', message: 'The fulfillment order is not in a holdable state.' });
  await api.send(o.raw);
  const dl = await eventually(async () => (await api.deadLetters(o.id))[0], { what: 'a dead letter for the mirror' });
  assert.equal(dl.cause, 'shopify_hold');
  assert.match(dl.last_error, /not in a holdable state/);
  assert.equal(await api.stateOf(o.id), 'hold/address', 'the order stays held in orderlane');
  const failed = await api.waitEvent(o.id, 'shopify_hold_failed');
  assert.equal(failed.actor, 'system:shopify');
  // A person re-drives it: the hold is placed.
  const r = await admin(stack, 'POST', `/dead-letters/${dl.id}/redrive`, { note: 'e2e: fulfillment order fixed' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  await eventually(() => holdsOf(o.id).every((h) => h.length === 1), { what: 'the hold placed after the re-drive' });
});

test('a server error is retried on the schedule; an order without fulfillment orders yet is tried again', async () => {
  const o = orderJson({ zip: 'ABC' });
  shopify.addOrder(o.raw, { fos: 0 });
  shopify.failNext('error', { op: 'OrderlaneFulfillmentOrders', status: 503 });
  await api.send(o.raw);
  // 503, then no fulfillment orders yet: both transient, the mirror keeps trying.
  await eventually(async () => {
    const [row] = await stack.sql(`SELECT attempts, last_error FROM shopify_holds WHERE order_id = '${o.id}'`);
    return row && row.attempts >= 2 && /no fulfillment orders yet/.test(row.last_error) && row;
  }, { what: 'the mirror retrying' });
  const fos = shopify.fulfillmentOrders(o.id);
  fos.push({ id: 'gid://shopify/FulfillmentOrder/424242', status: 'OPEN', holds: [] });
  await eventually(() => fos[0].holds.length === 1, { what: 'the hold once the fulfillment order exists' });
  await mirrorDone(o.id);
  assert.equal(mutations(o.id, 'OrderlaneHold').length, 1);
  assert.deepEqual(await api.deadLetters(o.id), [], 'transient failures are not dead letters');
});

test('the Admin API is called with the token and the pinned version', () => {
  assert.ok(shopify.calls.length > 0);
  for (const c of shopify.calls) {
    assert.equal(c.token, 'shpat_e2e');
    assert.equal(c.version, '2025-10');
  }
});

const holdWebhook = (foId, status, hold) => JSON.stringify({
  fulfillment_order: { id: foId, status },
  ...(hold ? { created_fulfillment_hold: hold } : {}),
});

test('staff releasing orderlane\'s hold in Shopify is an audited operator action; the rules route the order again', async () => {
  const none = 'SKU-STAFF-' + Date.now();
  await admin(stack, 'PUT', '/stock', [{ sku: none, available: 0 }]);
  const o = orderJson({ lines: [{ sku: none, quantity: 1 }] });
  const [fo] = shopify.addOrder(o.raw);
  await api.send(o.raw);
  assert.equal(await api.stateOf(o.id), 'hold/inventory');
  await eventually(() => holdsOf(o.id)[0].length === 1, { what: 'orderlane\'s hold in Shopify' });
  assert.equal(holdsOf(o.id)[0][0].reason, 'INVENTORY_OUT_OF_STOCK');

  // Our own hold coming back as a webhook changes nothing.
  const echo = await api.send(holdWebhook(fo, 'on_hold', { id: holdsOf(o.id)[0][0].id, handle: 'orderlane', reason: 'inventory_out_of_stock' }),
    { topic: 'fulfillment_orders/placed_on_hold' });
  assert.equal(echo.body.status, 'ignored');

  // Stock arrives; staff release the hold in the Shopify admin.
  await admin(stack, 'PUT', '/stock', [{ sku: none, available: 3 }]);
  shopify.staffRelease(fo);
  const r = await api.send(holdWebhook(fo, 'open'), { topic: 'fulfillment_orders/hold_released' });
  assert.equal(r.status, 200);
  assert.equal(r.body.status, 'accepted');
  await api.waitState(o.id, ['ready-for-fulfilment', 'submitted']);
  const release = (await api.timeline(o.id)).find((row) => row.actor === 'shopify:staff');
  assert.ok(release, 'the release is audited with actor shopify:staff');
  assert.equal(release.from_state, 'hold');
  assert.match(JSON.parse(release.detail).note, /released in Shopify by staff/);
  await api.waitPosts(o.id, 1);
  assert.equal(mutations(o.id, 'OrderlaneHold').length, 1, 'no hold placed again');
});

test('staff releasing orderlane\'s hold while the cause remains: the rules hold it again, and so does Shopify', async () => {
  const o = orderJson({ zip: 'ABC' });
  const [fo] = shopify.addOrder(o.raw);
  await api.send(o.raw);
  await eventually(() => holdsOf(o.id)[0].length === 1, { what: 'orderlane\'s hold in Shopify' });
  await mirrorDone(o.id);
  shopify.staffRelease(fo);
  const r = await api.send(holdWebhook(fo, 'open'), { topic: 'fulfillment_orders/hold_released' });
  assert.equal(r.body.status, 'accepted');
  await api.waitEvent(o.id, 'operator_release');
  assert.equal(await api.stateOf(o.id), 'hold/address');
  await eventually(() => holdsOf(o.id)[0].length === 1, { what: 'orderlane\'s hold placed again' });
  assert.equal(mutations(o.id, 'OrderlaneHold').length, 2);
  assert.equal(api.posts(o.id).length, 0, 'never sent');
  // A staff hold of their own on top is recorded; orderlane already holds the order.
  const staff = shopify.staffHold(fo);
  const placed = await api.send(holdWebhook(fo, 'on_hold', { id: staff.id, handle: '', reason: 'other' }),
    { topic: 'fulfillment_orders/placed_on_hold' });
  assert.equal(placed.body.status, 'ignored');
  const d = (await api.view(o.id)).deliveries.find((x) => x.topic === 'fulfillment_orders/placed_on_hold');
  assert.match(d.detail, /staff; already held/);
});

test('a staff hold in Shopify on an order orderlane has not sent holds it in orderlane too', async () => {
  const o = orderJson({ financial_status: 'pending' });
  const [fo] = shopify.addOrder(o.raw);
  await api.send(o.raw);
  assert.equal(await api.stateOf(o.id), 'new');
  const staff = shopify.staffHold(fo);
  const r = await api.send(holdWebhook(fo, 'on_hold', { id: staff.id, handle: '', reason: 'other' }),
    { topic: 'fulfillment_orders/placed_on_hold' });
  assert.equal(r.body.status, 'accepted');
  await api.waitState(o.id, 'hold/manual');
  const row = (await api.timeline(o.id)).find((x) => x.to_state === 'hold');
  assert.equal(row.actor, 'shopify:staff');
  assert.match(JSON.parse(row.detail).note, /held in Shopify by staff/);
  // Paid now: still held (a person holds it), and orderlane puts no hold of its own on top.
  const paid = orderJson({ id: o.id, financial_status: 'paid', updatedMs: Date.now() + 1000 });
  await api.send(paid.raw, { topic: 'orders/paid' });
  await sleep(1000);
  assert.equal(await api.stateOf(o.id), 'hold/manual');
  assert.equal(mutations(o.id, 'OrderlaneHold').length, 0);
  assert.equal(api.posts(o.id).length, 0, 'never sent');
});

test('hold webhooks orderlane cannot place are recorded and ignored', async () => {
  const r = await api.send(holdWebhook('gid://shopify/FulfillmentOrder/999999999', 'open'),
    { topic: 'fulfillment_orders/hold_released' });
  assert.equal(r.status, 200);
  assert.equal(r.body.status, 'ignored');
  const bad = await api.send('{"nope":1}', { topic: 'fulfillment_orders/hold_released' });
  assert.equal(bad.status, 200);
  assert.equal(bad.body.held_for_review, true);
});

test('an order whose webhooks never arrived is routed by the cron; a second run changes nothing', async () => {
  const o = orderJson();
  shopify.addOrder(o.raw);
  assert.equal((await api.view(o.id)).error, 'order_not_found', 'orderlane has not seen it');
  assert.equal(await api.fireCron(), 200);
  await api.waitState(o.id, ['ready-for-fulfilment', 'submitted']);
  const v = await api.view(o.id);
  assert.equal(v.deliveries.length, 1);
  assert.match(v.deliveries[0].webhook_id, new RegExp(`^reconcile:${o.id}:`));
  assert.ok(v.timeline.some((r) => r.actor === 'system:reconcile' && r.to_state === 'ready-for-fulfilment'),
    JSON.stringify(v.timeline.map((r) => [r.event, r.actor])));
  await api.waitPosts(o.id, 1);
  const [first] = await stack.sql(`SELECT * FROM shopify_sync_runs WHERE kind = 'reconcile' ORDER BY id DESC LIMIT 1`);
  assert.ok(first.fed >= 1, JSON.stringify(first));
  const mark = (await stack.sql(`SELECT watermark_ms FROM shopify_sync WHERE shop = '${SHOP}'`))[0];
  assert.ok(mark.watermark_ms > 0);

  const before = await stack.sql('SELECT COUNT(*) AS n FROM deliveries');
  const auditBefore = await stack.sql('SELECT COUNT(*) AS n FROM audit_log WHERE order_id IS NOT NULL AND actor != \'system:shopify\'');
  await api.fireCron();
  const [second] = await stack.sql(`SELECT * FROM shopify_sync_runs WHERE kind = 'reconcile' ORDER BY id DESC LIMIT 1`);
  assert.notEqual(second.id, first.id);
  assert.equal(second.fed, 0, JSON.stringify(second));
  assert.ok(second.listed >= 1, 'the overlap lists the last orders again');
  assert.equal(second.unchanged, second.listed - second.failed);
  assert.deepEqual(await stack.sql('SELECT COUNT(*) AS n FROM deliveries'), before);
  assert.deepEqual(await stack.sql('SELECT COUNT(*) AS n FROM audit_log WHERE order_id IS NOT NULL AND actor != \'system:shopify\''), auditBefore);
  await sleep(500);
  assert.equal(api.posts(o.id).length, 1, 'sent once');
});

test('an order held at an older version is brought up to date by the cron', async () => {
  const t0 = Date.now() - 120_000;
  const o = orderJson({ zip: 'ABC', createdMs: t0 });
  shopify.addOrder(o.raw);
  await api.send(o.raw);
  assert.equal(await api.stateOf(o.id), 'hold/address');
  // The fix happens in Shopify, and its orders/updated webhook is lost.
  const fixed = orderJson({ id: o.id, zip: '40003', createdMs: t0, updatedMs: Date.now() - 1000 });
  shopify.addOrder(fixed.raw);
  await api.fireCron();
  await api.waitState(o.id, ['ready-for-fulfilment', 'submitted']);
  const row = (await api.timeline(o.id)).find((r) => r.actor === 'system:reconcile');
  assert.equal(row.from_state, 'hold');
  await api.waitPosts(o.id, 1);
});

test('a missing subscription raises one alert; registering it clears the incident', async () => {
  const missingAlerts = () => stack.fake.requests.filter((r) => r.path.startsWith('/alerts')
    && JSON.stringify(r.json ?? r.body ?? '').includes('webhook subscriptions missing'));
  await api.fireCron();
  const [run] = await stack.sql(`SELECT * FROM shopify_sync_runs WHERE kind = 'health' ORDER BY id DESC LIMIT 1`);
  assert.match(run.detail, /missing subscriptions: orders\/create/);
  assert.equal(shopify.ops('OrderlaneSubscriptions').at(-1).token, 'shpat_e2e');
  const [alert] = await eventually(() => missingAlerts().length > 0 && missingAlerts(), { what: 'the subscription alert' });
  assert.match(JSON.stringify(alert.json), /orders\/create/);
  // The same incident on the next runs: no second alert.
  await api.fireCron();
  await api.fireCron();
  await sleep(1000);
  assert.equal(missingAlerts().length, 1, 'one alert per incident');
  const open = await stack.sql("SELECT key FROM alert_incidents WHERE key LIKE 'webhook_missing:%' AND state = 'open'");
  assert.equal(open.length, 1, JSON.stringify(open));
  // Registered: the incident clears.
  for (const topic of ['ORDERS_CREATE', 'ORDERS_UPDATED', 'ORDERS_PAID', 'ORDERS_CANCELLED', 'ORDERS_FULFILLED',
    'ORDERS_PARTIALLY_FULFILLED', 'ORDERS_RISK_ASSESSMENT_CHANGED', 'FULFILLMENT_ORDERS_PLACED_ON_HOLD',
    'FULFILLMENT_ORDERS_HOLD_RELEASED']) {
    shopify.subscriptions.push({ id: `gid://shopify/WebhookSubscription/${topic}`, topic, uri: 'https://w.example/webhooks/shopify' });
  }
  await api.fireCron();
  const [after] = await stack.sql(`SELECT * FROM shopify_sync_runs WHERE kind = 'health' ORDER BY id DESC LIMIT 1`);
  assert.doesNotMatch(after.detail ?? '', /missing/);
  assert.deepEqual(await stack.sql("SELECT key FROM alert_incidents WHERE key LIKE 'webhook_missing:%' AND state = 'open'"), []);
});

test('a Dev Dashboard app: the client-credentials grant, one token reused until it expires', async () => {
  const cc = await startFakeShopify({ tokens: [], clientId: 'e2e-client', clientSecret: 'e2e-current-secret' });
  const s2 = await startStack({ vars: {
    RETRY_DELAY_SCALE: '0.001',
    SHOPIFY_CLIENT_ID: 'e2e-client',
    SHOPIFY_ADMIN_ORIGIN: cc.url,
  } });
  try {
    const api2 = client(s2);
    const health = await (await fetch(`${s2.url}/healthz`)).json();
    assert.equal(health.shopify_admin_api, 'client_credentials');
    const a = orderJson({ zip: 'ABC' });
    const b = orderJson({ zip: 'XYZ' });
    cc.addOrder(a.raw);
    cc.addOrder(b.raw);
    for (const o of [a, b]) {
      await api2.send(o.raw);
      await eventually(() => cc.fulfillmentOrders(o.id)[0].holds.length === 1, { what: `order ${o.id} held in Shopify` });
    }
    assert.equal(cc.grants.length, 1, 'one grant, its token reused');
    assert.equal(cc.grants[0].client_id, 'e2e-client');
    assert.ok(cc.calls.every((c) => c.token && c.token.startsWith('shpat_cc_')));
    // A shop that never delivered is quiet: one alert. Its subscriptions live in the app's
    // configuration, so they are not checked through the API.
    await api2.fireCron();
    const quiet = () => s2.fake.requests.filter((r) => r.path.startsWith('/alerts')
      && JSON.stringify(r.json).includes('second-shop.myshopify.com: no webhook'));
    await eventually(() => quiet().length === 1, { what: 'the quiet-shop alert' });
    await api2.fireCron();
    await sleep(1000);
    assert.equal(quiet().length, 1, 'one alert per incident');
    assert.equal(cc.ops('OrderlaneSubscriptions').length, 0);
    const open = await s2.sql("SELECT key FROM alert_incidents WHERE state = 'open' AND kind IN ('shop_quiet', 'webhook_missing')");
    assert.deepEqual(open.map((r) => r.key), ['shop_quiet:second-shop.myshopify.com']);
  } finally {
    await s2.stop();
    await cc.close();
  }
});
