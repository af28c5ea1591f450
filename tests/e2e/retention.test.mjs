// Retention through the real Worker: raw bodies are purged by the cron whatever the state of
// their orders (BODY_RETENTION_DAYS = 0 here), and every later path reads the order's typed
// inputs instead: a release, a re-drive, an update and a risk verdict after the purge route
// the order and send the warehouse exactly the document its body would have given. Rows from
// before typed inputs fall back to their body while it lasts; privacy requests reach the
// typed columns.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, admin, SHOP } from '../support/stack.mjs';
import { orderJson, riskJson } from '../support/orders.mjs';
import { client } from '../support/api.mjs';

let stack;
let c;
// Per-order scripted answers; everything else is accepted.
const scripts = new Map();

before(async () => {
  stack = await startStack({
    vars: { BODY_RETENTION_DAYS: '0', RETRY_DELAY_SCALE: '0.0001', FULFILMENT_TIMEOUT_MS: '3000' },
  });
  c = client(stack);
  stack.fake.setBehaviour((req) => {
    const script = scripts.get(req.json?.order_id);
    if (script) {
      const answer = script.shift() ?? { status: 200 };
      if (script.length === 0) scripts.delete(req.json?.order_id);
      return answer;
    }
    return { status: 200 };
  });
  for (const lane of ['default', 'eu']) {
    assert.equal((await c.setMode(lane, 'auto', 'e2e retention')).status, 200);
  }
});
after(async () => { await stack?.stop(); });

const sendOk = async (raw, opts) => {
  const r = await c.send(raw, opts);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.status, 'accepted');
  return r;
};
const loadStock = async (sku, available) =>
  assert.equal((await admin(stack, 'PUT', '/stock', [{ sku, available }])).status, 200);
const bodiesOf = async (id) =>
  (await stack.sql(`SELECT COUNT(*) AS n FROM delivery_bodies WHERE order_id = '${id}'`))[0].n;
/** Runs the cron and checks it left none of these orders' raw bodies. */
async function purge(...ids) {
  assert.equal(await c.fireCron(), 200);
  for (const id of ids) assert.equal(await bodiesOf(id), 0, `order ${id}: every raw body purged`);
}

/**
 * The warehouse document an order body gives, written from the documented contract
 * (src/core/fulfilment.rs): lines still to ship, the shipping address, the shipping lines,
 * keys in the documented order. Compared byte for byte with what the warehouse received.
 */
function documentOf(id, raw, { lane, rulesVersion, submission }) {
  const o = JSON.parse(raw);
  const text = (v) => (typeof v === 'string' && v.trim() !== '' ? v.trim() : null);
  const a = o.shipping_address;
  const open = (l) => Math.max(l.fulfillable_quantity ?? l.quantity, 0);
  return JSON.stringify({
    kind: 'submit',
    order_id: id,
    order_name: o.name,
    shop: SHOP,
    lane,
    rules_version: rulesVersion,
    submission,
    lines: o.line_items.filter((l) => l.requires_shipping !== false && open(l) > 0).map((l) => ({
      sku: text(l.sku), quantity: open(l), title: text(l.title) ?? '', line_item_id: String(l.id),
    })),
    shipping_address: a ? {
      name: text(a.name) ?? ([text(a.first_name), text(a.last_name)].filter(Boolean).join(' ') || null),
      address1: text(a.address1),
      address2: text(a.address2),
      city: text(a.city),
      province_code: text(a.province_code),
      zip: text(a.zip),
      country_code: text(a.country_code)?.toUpperCase() ?? null,
      phone: null,
    } : null,
    shipping_lines: (o.shipping_lines ?? []).map((s) => ({ title: text(s.title) ?? '', code: text(s.code) })),
  });
}

async function expectDocument(id, raw, n, submission) {
  const posts = await c.waitPosts(id, n);
  const row = await c.orderRow(id);
  const want = documentOf(id, raw, { lane: row.segment, rulesVersion: row.rules_version, submission });
  assert.equal(posts[n - 1].raw, want, 'the document the body would have given, byte for byte');
  assert.ok(posts[n - 1].signatureValid);
}

/** An order with more shapes than the sample: a line that does not ship, one partly sent, odd text. */
function richOrder(sku, opts = {}) {
  return orderJson({
    lines: [
      { sku, quantity: 2, title: 'Tee « noir » 李' },
      { sku: 'GIFT-CARD', quantity: 1, requires_shipping: false, title: 'Gift card' },
      { sku, quantity: 3, fulfillable_quantity: 1, title: '  Spare  ' },
    ],
    address: { name: 'Zoë Ångström-Quist', address2: 'Flat 7', ...(opts.address || {}) },
    ...opts,
  });
}

test('an order held for inventory, its body purged, is released by an operator and sent with the document its body gives', async () => {
  const sku = `SKU-RET-${Date.now()}`;
  const o = richOrder(sku);
  await sendOk(o.raw);
  assert.equal(await c.stateOf(o.id), 'hold/inventory');
  await purge(o.id);
  const row = await c.orderRow(o.id);
  assert.equal(row.inputs_v, 1);
  assert.equal(row.ship_name, 'Zoë Ångström-Quist', 'what the document needs is kept in typed columns');

  await loadStock(sku, 10);
  const r = await c.act(o.id, 'release', { note: 'stock arrived' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.state, 'ready-for-fulfilment');
  assert.equal(await c.waitState(o.id, 'submitted'), 'submitted');
  await expectDocument(o.id, o.raw, 1, 1);
  assert.equal(await c.stock(sku), 7, 'the claim is the lines still to ship: 2 + 1');
  const done = await c.orderRow(o.id);
  assert.deepEqual([done.ship_name, done.ship_address1, done.billing_country, done.submission_document], [null, null, null, null],
    'once submitted, the address and the document are no longer kept');
  assert.equal(done.customer_id, '115310627314723950', 'the customer id stays for privacy requests');
});

test('a dead-lettered submission re-driven after its body is purged is sent again with the same order', async () => {
  const o = richOrder('SKU-RET-DL');
  await loadStock('SKU-RET-DL', 100);
  scripts.set(o.id, [{ status: 400, body: '{"error":"validator"}' }]);
  await sendOk(o.raw);
  assert.equal(await c.waitState(o.id, 'hold/fulfilment'), 'hold/fulfilment');
  await expectDocument(o.id, o.raw, 1, 1);
  await purge(o.id);

  const [dl] = await c.deadLetters(o.id);
  const r = await admin(stack, 'POST', `/dead-letters/${dl.id}/redrive`, { note: 'validator fixed' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(await c.waitState(o.id, 'submitted'), 'submitted');
  await expectDocument(o.id, o.raw, 2, 2);
});

test('a retry after the purge repeats the round\'s fixed document', async () => {
  const o = richOrder('SKU-RET-RETRY');
  await loadStock('SKU-RET-RETRY', 100);
  // The first attempt gets no answer: while it hangs, the cron purges the body.
  scripts.set(o.id, [{ hang: true }, { status: 503 }]);
  await sendOk(o.raw);
  await c.waitPosts(o.id, 1);
  await purge(o.id);
  assert.equal(await c.waitState(o.id, 'submitted'), 'submitted');
  const posts = c.posts(o.id);
  assert.equal(posts.length, 3);
  assert.equal(new Set(posts.map((p) => p.raw)).size, 1, 'the same bytes every attempt');
  assert.equal(new Set(posts.map((p) => p.headers['idempotency-key'])).size, 1);
  await expectDocument(o.id, o.raw, 3, 1);
});

test('after the purge, an update of a known order and a risk verdict still route it and send the right document', async () => {
  const t0 = Date.now() - 60_000;
  // Held for its address (a US zip that is not one), then fixed in Shopify after the purge.
  const bad = richOrder('SKU-STD', { createdMs: t0, address: { zip: 'ABCDE' } });
  await loadStock('SKU-STD', 1000);
  await sendOk(bad.raw);
  assert.equal(await c.stateOf(bad.id), 'hold/address');
  await purge(bad.id);
  const fixed = richOrder('SKU-STD', { id: bad.id, createdMs: t0, updatedMs: t0 + 5_000 });
  await sendOk(fixed.raw, { topic: 'orders/updated' });
  assert.equal(await c.waitState(bad.id, 'submitted'), 'submitted');
  await expectDocument(bad.id, fixed.raw, 1, 1);

  // The eu lane waits for a verdict; it arrives after the purge and re-runs the rules on the
  // typed inputs alone (a verdict carries no order).
  const eu = richOrder('SKU-STD', { country: 'DE', zip: '10115', currency: 'EUR', createdMs: t0 });
  await sendOk(eu.raw);
  assert.equal(await c.stateOf(eu.id), 'fraud-check');
  await purge(eu.id);
  await sendOk(riskJson(eu.id, 'low'), { topic: 'orders/risk_assessment_changed' });
  assert.equal(await c.waitState(eu.id, 'submitted'), 'submitted');
  assert.equal((await c.orderRow(eu.id)).segment, 'eu', 'the lane is decided from the typed inputs');
  await expectDocument(eu.id, eu.raw, 1, 1);
});

test('a row from before typed inputs falls back to its body while it lasts; once purged, a release is refused and the order stays held', async () => {
  const sku = `SKU-RET-LEGACY-${Date.now()}`;
  const withBody = richOrder(sku);
  const without = richOrder(sku);
  await sendOk(without.raw);
  await purge(without.id);
  await sendOk(withBody.raw);
  // What a row written before migration 0010 looks like: no typed inputs, no lines.
  for (const id of [withBody.id, without.id]) {
    await stack.exec(`UPDATE orders SET inputs_v = NULL, ship_present = NULL, ship_name = NULL, ship_address1 = NULL, tags = NULL, ship_methods = NULL WHERE order_id = '${id}'`);
    await stack.exec(`DELETE FROM order_lines WHERE order_id = '${id}'`);
    assert.equal(await c.stateOf(id), 'hold/inventory');
  }
  await loadStock(sku, 10);
  const ok = await c.act(withBody.id, 'release', { note: 'stock arrived' });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(await c.waitState(withBody.id, 'submitted'), 'submitted');
  await expectDocument(withBody.id, withBody.raw, 1, 1);

  const refused = await c.act(without.id, 'release', { note: 'stock arrived' });
  assert.equal(refused.status, 409, JSON.stringify(refused.body));
  assert.equal(refused.body.error, 'illegal_transition');
  assert.match(refused.body.detail, /not-applicable|not applicable/);
  assert.equal(await c.stateOf(without.id), 'hold/inventory', 'still held for a person');
});

test('privacy after the purge: a data request finds the order by its customer id and shows the typed personal data; a redact empties it', async () => {
  const cid = `77${Date.now()}`;
  const o = richOrder(`SKU-RET-PRIV-${Date.now()}`);
  const raw = o.raw.replaceAll('115310627314723950', cid);
  await sendOk(raw);
  assert.equal(await c.stateOf(o.id), 'hold/inventory');
  await purge(o.id);

  const request = `{"shop_domain":"${SHOP}","customer":{"id":${cid},"email":"x@example.com"},"orders_requested":[],"data_request":{"id":${cid}}}`;
  assert.equal((await c.send(request, { topic: 'customers/data_request' })).status, 200);
  const list = await admin(stack, 'GET', '/privacy/requests');
  const mine = list.body.requests.find((q) => q.request_id === cid);
  const one = await admin(stack, 'GET', `/privacy/requests/${mine.id}`);
  assert.equal(one.status, 200, JSON.stringify(one.body));
  assert.deepEqual(one.body.holds.orders.map((x) => x.order.order_id), [o.id], 'found by orders.customer_id, no body left');
  assert.deepEqual(one.body.holds.bodies_held, []);
  const p = one.body.holds.orders[0].personal_data;
  assert.equal(p.customer_id, cid);
  assert.equal(p.ship_name, 'Zoë Ångström-Quist');
  assert.equal(p.ship_address2, 'Flat 7');
  assert.equal(p.email_hash_held, 1);

  const redact = `{"shop_domain":"${SHOP}","customer":{"id":${cid},"email":"x@example.com"},"orders_to_redact":[]}`;
  assert.equal((await c.send(redact, { topic: 'customers/redact' })).status, 200);
  const [row] = await stack.sql(`SELECT customer_id, email_hash, ship_name, ship_first_name, ship_last_name, ship_address1,
    ship_address2, ship_city, ship_zip, ship_province_code, ship_country_code, billing_country, submission_document
    FROM orders WHERE order_id = '${o.id}'`);
  for (const [k, v] of Object.entries(row)) assert.equal(v, null, `orders.${k} after customers/redact`);
  assert.equal(await c.stateOf(o.id), 'hold/inventory', 'the order itself stays');
});

test('shop/redact empties every personal column of the shop\'s orders, open ones included, and touches no other shop', async () => {
  const other = 'second-shop.myshopify.com';
  const mine = richOrder(`SKU-RET-SHOP-${Date.now()}`);
  const theirs = richOrder(`SKU-RET-SHOP-${Date.now()}`);
  await sendOk(mine.raw);
  await sendOk(theirs.raw, { shop: other });
  assert.equal(await c.stateOf(theirs.id, other), 'hold/inventory');
  const request = `{"shop_domain":"${other}","customer":{"id":1},"orders_requested":[${theirs.id}],"data_request":{"id":4242}}`;
  assert.equal((await c.send(request, { shop: other, topic: 'customers/data_request' })).status, 200);
  const personal = `customer_id, email_hash, ship_name, ship_first_name, ship_last_name, ship_address1, ship_address2,
    ship_city, ship_zip, ship_province_code, ship_country_code, billing_country, submission_document`;
  const [before] = await stack.sql(`SELECT ${personal} FROM orders WHERE shop = '${other}' AND order_id = '${theirs.id}'`);
  assert.ok(before.ship_name && before.customer_id && before.email_hash, 'held while the order is open');

  assert.equal((await c.send(`{"shop_id":1,"shop_domain":"${other}"}`, { shop: other, topic: 'shop/redact' })).status, 200);
  const [after] = await stack.sql(`SELECT ${personal} FROM orders WHERE shop = '${other}' AND order_id = '${theirs.id}'`);
  for (const [k, v] of Object.entries(after)) assert.equal(v, null, `orders.${k} after shop/redact`);
  assert.equal((await stack.sql(`SELECT COUNT(*) AS n FROM delivery_bodies WHERE shop = '${other}'`))[0].n, 0);
  assert.equal((await stack.sql(`SELECT COUNT(*) AS n FROM privacy_requests WHERE shop = '${other}'`))[0].n, 0);
  assert.equal(await c.stateOf(theirs.id, other), 'hold/inventory', 'the order itself stays');
  const [kept] = await stack.sql(`SELECT ship_name, customer_id FROM orders WHERE shop = '${SHOP}' AND order_id = '${mine.id}'`);
  assert.ok(kept.ship_name && kept.customer_id, 'the other shop keeps its own');
});
