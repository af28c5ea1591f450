// POST /webhooks/shopify through the real Worker under `wrangler dev`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { startStack, admin, SECRET, PREVIOUS_SECRET, SHOP } from '../support/stack.mjs';
import { deliver, fixture, sign } from '../support/shopify.mjs';
import { orderJson } from '../support/orders.mjs';

let stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack?.stop(); });

const order = fixture('orders-create.json');
const send = (raw, opts = {}) => deliver(stack.url, raw, { secret: SECRET, shop: SHOP, ...opts });
const rowsFor = (webhookId) => stack.sql(`SELECT * FROM deliveries WHERE webhook_id = '${webhookId}'`);

test('healthz reports ok and the version', async () => {
  const r = await fetch(`${stack.url}/healthz`);
  assert.equal(r.status, 200);
  const body = await r.json();
  assert.equal(body.ok, true);
  assert.deepEqual(body.incomplete, []);
  assert.match(body.version, /^\d+\.\d+\.\d+$/);
  assert.match(body.rules_version, /^[0-9a-f]{12}$/);
});

test('a valid delivery is recorded once, with its metadata and exact order id', async () => {
  const id = randomUUID();
  const r = await send(order, { webhookId: id, triggeredAt: '2026-11-27T10:00:00.000Z' });
  assert.equal(r.status, 200);
  assert.equal(r.body.status, 'accepted');
  const rows = await rowsFor(id);
  assert.equal(rows.length, 1);
  const row = rows[0];
  assert.equal(row.shop, SHOP);
  assert.equal(row.topic, 'orders/create');
  assert.equal(row.order_id, '820982911946154508');
  assert.equal(row.outcome, 'accepted');
  assert.equal(row.body_size, Buffer.byteLength(order));
  assert.equal(row.triggered_at, '2026-11-27T10:00:00.000Z');
  assert.equal(row.api_version, '2026-04');
  assert.equal(row.body_hmac, Buffer.from(sign(SECRET, order), 'base64').toString('hex'), 'the verified HMAC identifies the body');
  const bodies = await stack.sql(`SELECT b.body, b.customer_id FROM delivery_bodies b JOIN deliveries d ON d.id = b.delivery_id WHERE d.webhook_id = '${id}'`);
  assert.equal(bodies.length, 1);
  assert.equal(bodies[0].body, order, 'raw body kept byte for byte');
  assert.equal(bodies[0].customer_id, '115310627314723950');
  const [o] = await stack.sql("SELECT email_hash FROM orders WHERE order_id = '820982911946154508'");
  const email = JSON.parse(order).email.trim().toLowerCase();
  assert.match(o.email_hash, /^[0-9a-f]{64}$/);
  assert.notEqual(o.email_hash, createHash('sha256').update(email).digest('hex'), 'keyed: not the guessable plain SHA-256');
});

test('the same delivery five times at once makes one row and four duplicates', async () => {
  const id = randomUUID();
  const results = await Promise.all(Array.from({ length: 5 }, () => send(order, { webhookId: id })));
  const answers = JSON.stringify(results.map((r) => [r.status, r.body]));
  assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200, 200], answers);
  const statuses = results.map((r) => r.body.status).sort();
  assert.deepEqual(statuses, ['accepted', 'duplicate', 'duplicate', 'duplicate', 'duplicate'], answers);
  assert.equal((await rowsFor(id)).length, 1);
});

test("the harness's look at D1 while deliveries flow never makes one fail", async () => {
  // Every other test reads D1 beside the running Worker: a read that took SQLite's write lock
  // (as `wrangler d1 execute --local` does) would turn some of their deliveries into 503s.
  let reading = true;
  const statuses = [];
  const pump = (async () => {
    while (reading) {
      const rs = await Promise.all(Array.from({ length: 3 }, () => send(orderJson().raw, { webhookId: randomUUID() })));
      statuses.push(...rs.map((r) => r.status));
    }
  })();
  for (let i = 0; i < 10; i++) await stack.sql('SELECT COUNT(*) AS n FROM deliveries');
  reading = false;
  await pump;
  assert.ok(statuses.length >= 3);
  assert.deepEqual(statuses.filter((s) => s !== 200), [], `${statuses.length} deliveries`);
});

test('the previous secret is accepted during a rotation', async () => {
  const id = randomUUID();
  const r = await send(order, { webhookId: id, secret: PREVIOUS_SECRET });
  assert.equal(r.status, 200);
  assert.equal((await rowsFor(id)).length, 1);
});

test('refused deliveries get the contract status, a JSON error and no row', async () => {
  const cases = [
    ['tampered body', 401, 'invalid_hmac', (id) => deliver(stack.url, order.replace('"voided"', '"paid"'), {
      shop: SHOP, secret: SECRET, webhookId: id, headers: { 'X-Shopify-Hmac-Sha256': sign(SECRET, order) } })],
    ['wrong secret', 401, 'invalid_hmac', (id) => send(order, { webhookId: id, secret: 'not-the-secret' })],
    ['missing HMAC', 401, 'invalid_hmac', (id) => send(order, { webhookId: id, headers: { 'x-shopify-hmac-sha256': null } })],
    ['missing topic', 400, 'missing_header', (id) => send(order, { webhookId: id, headers: { 'x-shopify-topic': null } })],
    ['missing shop', 400, 'missing_header', (id) => send(order, { webhookId: id, headers: { 'x-shopify-shop-domain': null } })],
    ['missing webhook id', 400, 'missing_header', (id) => send(order, { webhookId: id, headers: { 'x-shopify-webhook-id': null, 'x-e2e-id': id } })],
    ['disallowed shop', 403, 'shop_not_allowed', (id) => send(order, { webhookId: id, shop: 'stranger.myshopify.com' })],
    ['wrong method', 405, 'method_not_allowed', (id) => send(order, { webhookId: id, method: 'PUT' })],
    ['oversized body', 413, 'payload_too_large', (id) => send(' '.repeat(1024 * 1024 + 1), { webhookId: id })],
  ];
  const count = async () => (await stack.sql('SELECT COUNT(*) AS n FROM deliveries'))[0].n;
  const before = await count();
  for (const [name, status, code, call] of cases) {
    const id = randomUUID();
    const r = await call(id);
    assert.equal(r.status, status, name);
    assert.equal(r.body.error, code, name);
    assert.equal(typeof r.body.detail, 'string', name);
    assert.ok(!JSON.stringify(r.body).includes(SECRET), `${name}: no secret in the answer`);
  }
  assert.equal(await count(), before, 'no refused delivery left a row');
});

test('header names are matched case-insensitively', async () => {
  const id = randomUUID();
  const r = await send(order, { webhookId: id, headers: {
    'x-shopify-topic': null, 'X-SHOPIFY-TOPIC': 'orders/create' } });
  assert.equal(r.status, 200);
  assert.equal((await rowsFor(id)).length, 1);
});

test('an unknown topic is recorded as ignored and answered 2xx', async () => {
  const id = randomUUID();
  const r = await send('{"id": 1}', { webhookId: id, topic: 'products/create' });
  assert.equal(r.status, 200);
  assert.equal(r.body.status, 'ignored');
  const rows = await rowsFor(id);
  assert.equal(rows.length, 1);
  assert.equal(rows[0].outcome, 'ignored');
});

test('an authentic delivery that cannot be parsed is recorded for review and answered 2xx', async () => {
  for (const raw of ['{"id": 8.2e17, "oops"', '{"name": "#1001"}']) {
    const id = randomUUID();
    const r = await send(raw, { webhookId: id });
    assert.equal(r.status, 200);
    assert.equal(r.body.status, 'accepted');
    assert.equal(r.body.held_for_review, true);
    const rows = await rowsFor(id);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].outcome, 'review');
    assert.ok(rows[0].detail.length > 0);
  }
});

test('customers/redact erases that customer\'s stored bodies and keeps the delivery records', async () => {
  const id = randomUUID();
  await send(order, { webhookId: id });
  const redact = JSON.stringify({ shop_domain: SHOP, customer: { id: 115310627314723950, email: 'x@example.com' }, orders_to_redact: [820982911946154508] });
  const r = await send(redact, { topic: 'customers/redact' });
  assert.equal(r.status, 200);
  const left = await stack.sql(`SELECT COUNT(*) AS n FROM delivery_bodies WHERE shop = '${SHOP}' AND (customer_id = '115310627314723950' OR order_id = '820982911946154508')`);
  assert.equal(left[0].n, 0);
  assert.equal((await rowsFor(id)).length, 1);
  const redactRows = await stack.sql(`SELECT COUNT(*) AS n FROM delivery_bodies b JOIN deliveries d ON d.id = b.delivery_id WHERE d.topic = 'customers/redact'`);
  assert.equal(redactRows[0].n, 0, 'the privacy request itself is not stored');
});

test('storage unavailable: 503 with Retry-After and nothing recorded, so Shopify retries', async () => {
  // A stack whose D1 has no schema: every write fails the way an unavailable database does.
  const bare = await startStack({ migrate: false });
  try {
    const r = await deliver(bare.url, order, { secret: SECRET, shop: SHOP });
    assert.equal(r.status, 503);
    assert.equal(r.body.error, 'storage_unavailable');
    assert.match(r.headers.get('retry-after'), /^\d+$/);
    const ignored = await deliver(bare.url, '{"id": 1}', { secret: SECRET, shop: SHOP, topic: 'products/create' });
    assert.equal(ignored.status, 503, 'even an ignorable delivery is answered 2xx only once recorded');
    // The admin views that hand D1's rows on unchanged say the same, never an empty answer.
    for (const path of [`/orders/${SHOP}/1`, '/audit', '/exceptions', '/dead-letters', '/stock', '/alerts']) {
      const v = await admin(bare, 'GET', path);
      assert.deepEqual([v.status, v.body.error], [503, 'storage_unavailable'], path);
    }
  } finally {
    await bare.stop();
  }
});

test('customers/data_request is recorded, and the merchant can see what orderlane holds for that customer', async () => {
  const orderId = '820982911946150001';
  const customerId = '115310627314720001';
  const raw = order.replace('820982911946154508', orderId).replaceAll('115310627314723950', customerId);
  assert.equal((await send(raw)).body.status, 'accepted');
  const request = `{"shop_id":954889,"shop_domain":"${SHOP}","orders_requested":[${orderId}],` +
    `"customer":{"id":${customerId},"email":"jon@example.com","phone":"555-625-1199"},"data_request":{"id":9999}}`;
  const webhookId = randomUUID();
  const r = await send(request, { topic: 'customers/data_request', webhookId });
  assert.equal(r.status, 200);
  assert.equal(r.body.status, 'accepted');
  const [d] = await rowsFor(webhookId);
  assert.equal(d.outcome, 'accepted');
  assert.deepEqual(await stack.sql(`SELECT delivery_id FROM delivery_bodies WHERE delivery_id = ${d.id}`), [],
    'the request body (email, phone) is not kept');
  // Shopify may deliver the same request again under a new webhook id: one request.
  assert.equal((await send(request, { topic: 'customers/data_request' })).status, 200);

  const list = await admin(stack, 'GET', '/privacy/requests');
  assert.equal(list.status, 200);
  const mine = list.body.requests.filter((q) => q.request_id === '9999');
  assert.equal(mine.length, 1);
  assert.equal(mine[0].customer_id, customerId);
  assert.deepEqual(mine[0].orders_requested, [orderId]);
  assert.equal(mine[0].answer_by_ms - Date.parse(mine[0].received_at), 30 * 86_400_000, 'the 30-day duty');

  const one = await admin(stack, 'GET', `/privacy/requests/${mine[0].id}`);
  assert.equal(one.status, 200, JSON.stringify(one.body));
  assert.deepEqual(one.body.holds.orders.map((o) => o.order.order_id), [orderId]);
  const held = one.body.holds.orders[0];
  assert.ok(held.order.state, 'the order\'s state');
  // The personal data kept in typed columns: the sample is cancelled, so only its customer
  // id (and the email hash) stay; no address.
  assert.equal(held.personal_data.customer_id, customerId);
  assert.equal(held.personal_data.email_hash_held, 1);
  assert.equal(held.personal_data.ship_address1, null);
  assert.ok(held.timeline.length > 0, 'its timeline');
  assert.deepEqual(one.body.holds.bodies_held.map((b) => [b.order_id, b.topic]), [[orderId, 'orders/create']]);
  const audit = await stack.sql("SELECT actor, detail FROM audit_log WHERE event = 'privacy_request_viewed'");
  assert.ok(audit.some((a) => a.actor === 'user:ops' && JSON.parse(a.detail).privacy_request === mine[0].id), `the look is audited by actor: ${JSON.stringify(audit)}`);
  assert.equal((await admin(stack, 'GET', '/privacy/requests/999999')).status, 404);
});

test('retention: the cron purges every raw body past BODY_RETENTION_DAYS, open orders included; their typed inputs stay', async () => {
  const s = await startStack({ vars: { BODY_RETENTION_DAYS: '0' } });
  try {
    const post = (raw, topic) => deliver(s.url, raw, { secret: SECRET, shop: SHOP, topic });
    const t0 = Date.now() - 60_000;
    const held = orderJson({ createdMs: t0 });
    assert.equal((await post(held.raw, 'orders/create')).body.status, 'accepted');
    const newer = orderJson({ id: held.id, createdMs: t0, updatedMs: t0 + 1000, tags: 'vip', lines: [{ sku: 'SKU-NEWER', quantity: 2 }] });
    assert.equal((await post(newer.raw, 'orders/updated')).body.status, 'accepted');
    const gone = orderJson({ createdMs: t0 });
    assert.equal((await post(gone.raw, 'orders/create')).body.status, 'accepted');
    const cancel = orderJson({ id: gone.id, createdMs: t0, updatedMs: t0 + 1000, cancelled: true });
    assert.equal((await post(cancel.raw, 'orders/cancelled')).body.status, 'accepted');
    const bodies = (id) => s.sql(`SELECT b.delivery_id, b.body FROM delivery_bodies b WHERE b.order_id = '${id}' ORDER BY b.delivery_id`);
    assert.equal((await bodies(held.id)).length, 2);
    assert.equal((await bodies(gone.id)).length, 2);

    assert.equal((await fetch(`${s.url}/__scheduled?cron=*/15+*+*+*+*`)).status, 200);
    assert.deepEqual(await bodies(held.id), [], 'an open order keeps no body past retention');
    assert.deepEqual(await bodies(gone.id), [], 'nor does a cancelled one');
    const [row] = await s.sql(`SELECT state, inputs_v, tags, ship_name FROM orders WHERE order_id = '${held.id}'`);
    assert.deepEqual([row.state, row.inputs_v, row.tags], ['hold', 1, 'vip'], 'the latest version, in typed columns');
    assert.ok(row.ship_name, 'what the warehouse document needs is kept while the order is open');
    const lines = await s.sql(`SELECT sku, quantity FROM order_lines WHERE order_id = '${held.id}' ORDER BY position`);
    assert.deepEqual(lines, [{ sku: 'SKU-NEWER', quantity: 2 }], 'lines replaced by the newer version');
    const [done] = await s.sql(`SELECT ship_name, ship_address1, billing_country FROM orders WHERE order_id = '${gone.id}'`);
    assert.deepEqual(done, { ship_name: null, ship_address1: null, billing_country: null }, 'a cancelled order keeps no address');
    assert.equal((await s.sql(`SELECT COUNT(*) AS n FROM deliveries WHERE order_id IN ('${held.id}', '${gone.id}')`))[0].n, 4,
      'the delivery records stay');
  } finally {
    await s.stop();
  }
});

/** POSTs `chunks` as a chunked body (no Content-Length), signed headers for `raw`. */
async function sendChunked(url, chunks, raw) {
  const body = new ReadableStream({
    start(c) {
      for (const ch of chunks) c.enqueue(ch);
      c.close();
    },
  });
  const res = await fetch(`${url}/webhooks/shopify`, {
    method: 'POST',
    duplex: 'half',
    body,
    headers: {
      'content-type': 'application/json',
      'x-shopify-hmac-sha256': sign(SECRET, raw),
      'x-shopify-topic': 'orders/create',
      'x-shopify-shop-domain': SHOP,
      'x-shopify-webhook-id': randomUUID(),
    },
  });
  return { status: res.status, body: await res.json().catch(() => null), headers: res.headers };
}

test('shops fail closed: an empty ALLOWED_SHOPS refuses every delivery and /healthz says why; * allows any shop', async () => {
  const closed = await startStack({ vars: { ALLOWED_SHOPS: '' } });
  try {
    const h = await (await fetch(`${closed.url}/healthz`)).json();
    assert.equal(h.ok, false);
    assert.deepEqual(h.incomplete, ['ALLOWED_SHOPS']);
    const r = await deliver(closed.url, order, { secret: SECRET, shop: SHOP });
    assert.equal(r.status, 403);
    assert.equal(r.body.error, 'shop_not_allowed');
    assert.deepEqual(await closed.sql('SELECT id FROM deliveries'), [], 'nothing recorded');
    assert.ok(closed.logs.join('').includes('ALLOWED_SHOPS is empty'), 'the refusal is logged');
  } finally {
    await closed.stop();
  }
  const open = await startStack({ vars: { ALLOWED_SHOPS: '*' } });
  try {
    assert.equal((await (await fetch(`${open.url}/healthz`)).json()).ok, true);
    const r = await deliver(open.url, order, { secret: SECRET, shop: 'any-store.myshopify.com' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.status, 'accepted');
  } finally {
    await open.stop();
  }
});

test('a chunked body is read as it streams: accepted whole under 1 MiB, refused with 413 past it', async () => {
  const raw = order.replace('820982911946154508', '820982911946154777');
  const bytes = new TextEncoder().encode(raw);
  const parts = [bytes.slice(0, 1000), bytes.slice(1000, 5000), bytes.slice(5000)];
  const ok = await sendChunked(stack.url, parts, raw);
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(ok.body.status, 'accepted');
  const [kept] = await stack.sql("SELECT b.body FROM delivery_bodies b WHERE b.order_id = '820982911946154777'");
  assert.equal(kept.body, raw, 'the body is kept byte for byte from its chunks');

  // Last in this file: the local proxy does not reuse a connection whose body was refused unread.
  const before = (await stack.sql('SELECT COUNT(*) AS n FROM deliveries'))[0].n;
  const mib = new Uint8Array(1024 * 1024).fill(0x20);
  const big = await sendChunked(stack.url, [mib, mib], '');
  assert.equal(big.status, 413);
  assert.equal(big.body.error, 'payload_too_large');
  assert.equal((await stack.sql('SELECT COUNT(*) AS n FROM deliveries'))[0].n, before, 'nothing recorded');
});
