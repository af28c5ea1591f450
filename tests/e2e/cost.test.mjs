// What a webhook costs in storage round trips, through the real Worker: a fresh
// orders/create is decided on a guess and written in ONE D1 batch; every other delivery reads
// once and writes once; a wrong guess is caught by the batch's guards and re-decided from a
// read; lane modes come from this isolate's copy of KV. Costs are read from `Server-Timing`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, admin, SHOP } from '../support/stack.mjs';
import { orderJson, riskJson, newOrderId } from '../support/orders.mjs';
import { client } from '../support/api.mjs';

const READYISH = ['ready-for-fulfilment', 'submitted'];

let stack;
let c;
before(async () => {
  stack = await startStack();
  c = client(stack);
});
after(async () => { await stack?.stop(); });

/** `Server-Timing` → { batches, statements, kvReads }; fails on any other format. */
function cost(r) {
  const h = r.headers.get('server-timing');
  const m = /^d1;desc="(\d+) batch(?:es)?, (\d+) statements?", kv;desc="(\d+) reads?"$/.exec(h ?? '');
  assert.ok(m, `Server-Timing: ${h}`);
  const [batches, statements, kvReads] = m.slice(1).map(Number);
  const word = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  assert.equal(h, `d1;desc="${word(batches, 'batch', 'batches')}, ${word(statements, 'statement', 'statements')}", `
    + `kv;desc="${word(kvReads, 'read', 'reads')}"`, 'singular and plural as documented');
  return { batches, statements, kvReads };
}

async function sendOk(raw, opts) {
  const r = await c.send(raw, opts);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r;
}
async function setMode(lane, mode) {
  const r = await c.setMode(lane, mode, `e2e cost: ${mode}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
}
async function loadStock(sku, available) {
  const r = await admin(stack, 'PUT', '/stock', [{ sku, available }]);
  assert.equal(r.status, 200, JSON.stringify(r.body));
}
const count = async (sql) => (await stack.sql(sql))[0].n;
const modeChanges = () => count("SELECT COUNT(*) AS n FROM audit_log WHERE event = 'mode_changed' AND segment = 'default'");
const line = (sku, quantity = 1) => ({ lines: [{ sku, quantity }] });

// 6 statements: guard, delivery, body, order, its lines (one INSERT ... FROM json_each, so the
// typed inputs later paths read survive the body's purge), audit row.
test('common path: a fresh order costs one D1 batch of 6 statements and no KV read, and is recorded', async () => {
  const warm = await sendOk(orderJson().raw);
  assert.equal(cost(warm).batches, 1, 'even the first fresh order of the isolate is one batch');
  const o = orderJson();
  const webhookId = `cost-${o.id}`;
  const r = await sendOk(o.raw, { webhookId });
  assert.equal(r.body.status, 'accepted');
  assert.deepEqual(cost(r), { batches: 1, statements: 6, kvReads: 0 });

  assert.equal(await c.stateOf(o.id), 'hold/manual', 'the default lane starts in manual');
  const row = await c.orderRow(o.id);
  assert.equal(row.segment, 'default');
  assert.equal(await count(`SELECT COUNT(*) AS n FROM deliveries WHERE webhook_id = '${webhookId}' AND order_id = '${o.id}'`), 1);
  assert.equal(await count(`SELECT COUNT(*) AS n FROM delivery_bodies b JOIN deliveries d ON d.id = b.delivery_id
    WHERE d.webhook_id = '${webhookId}'`), 1);
  assert.equal(row.payload_delivery_id, (await stack.sql(`SELECT id FROM deliveries WHERE webhook_id = '${webhookId}'`))[0].id);
  assert.equal(await count(`SELECT COUNT(*) AS n FROM orders WHERE order_id = '${o.id}' AND inputs_v = 1`), 1, 'typed inputs written');
  assert.equal(await count(`SELECT COUNT(*) AS n FROM order_lines WHERE order_id = '${o.id}'`), 1, 'its line, in the same batch');
  assert.equal(await count(`SELECT COUNT(*) AS n FROM audit_log WHERE shop = '${SHOP}' AND order_id = '${o.id}'`), 1);

  // The unchanged mode is noted at most once a minute: two more fresh orders write none.
  const modesBefore = await modeChanges();
  for (let i = 0; i < 2; i++) {
    const next = await sendOk(orderJson().raw);
    const k = cost(next);
    assert.equal(k.batches, 1);
    assert.equal(k.statements, 6, 'no mode statements for an unchanged, recently noted mode');
  }
  assert.equal(await modeChanges(), modesBefore, 'no new mode_changed rows');
});

test('common path in a released lane: a ready order claims stock in the same single batch and is submitted', async () => {
  await setMode('default', 'auto');
  try {
    await loadStock('SKU-COST-A', 100);
    await sendOk(orderJson(line('SKU-COST-A')).raw); // this isolate reads the stock once
    const o = orderJson(line('SKU-COST-A'));
    const r = await sendOk(o.raw);
    const k = cost(r);
    assert.ok(READYISH.includes(await c.stateOf(o.id)));
    const posts = await c.waitPosts(o.id);
    assert.equal(posts.length, 1);
    assert.equal(await c.waitState(o.id, 'submitted'), 'submitted');
    assert.deepEqual(await c.reservations(o.id).then((rs) => rs.map((x) => [x.sku, x.quantity])), [['SKU-COST-A', 1]]);
    assert.ok(k.statements > 6, `the stock claim adds statements: ${JSON.stringify(k)}`);
    assert.equal(k.kvReads, 0);
    assert.equal(k.batches, 1, `a ready order is still one D1 round trip: ${r.headers.get('server-timing')}`);
  } finally {
    await setMode('default', 'manual');
  }
});

test('later events read once and write once; a repeat is a duplicate with no second delivery row', async () => {
  await setMode('default', 'auto');
  try {
    const t0 = Date.now() - 60_000;
    const o = orderJson({ ...line('SKU-COST-UNSTOCKED'), createdMs: t0 });
    const webhookId = `cost-repeat-${o.id}`;
    await sendOk(o.raw, { webhookId });
    assert.equal(await c.stateOf(o.id), 'hold/inventory');

    const upd = orderJson({ ...line('SKU-COST-UNSTOCKED'), id: o.id, createdMs: t0, updatedMs: t0 + 10_000 });
    const u = await sendOk(upd.raw, { topic: 'orders/updated' });
    assert.equal(cost(u).batches, 2, u.headers.get('server-timing'));

    const risk = await sendOk(riskJson(o.id, 'high'), { topic: 'orders/risk_assessment_changed' });
    assert.equal(cost(risk).batches, 2, risk.headers.get('server-timing'));
    assert.equal(await c.stateOf(o.id), 'hold/fraud');

    const again = await sendOk(o.raw, { webhookId });
    assert.equal(again.body.status, 'duplicate');
    assert.equal(cost(again).batches, 2, 'a failed guess, then the read that finds the delivery');
    assert.equal(await count(`SELECT COUNT(*) AS n FROM deliveries WHERE webhook_id = '${webhookId}'`), 1);
    assert.equal(await c.stateOf(o.id), 'hold/fraud', 'the repeat changed nothing');
  } finally {
    await setMode('default', 'manual');
  }
});

test('wrong guesses: stock loaded after the isolate saw none is caught and re-decided from a read', async () => {
  const sku = `SKU-GUESS-${Date.now()}`;
  await setMode('default', 'auto');
  try {
    const first = orderJson(line(sku));
    assert.equal(cost(await sendOk(first.raw)).batches, 1);
    assert.equal(await c.stateOf(first.id), 'hold/inventory');
    assert.match((await c.orderRow(first.id)).explanation, new RegExp(`no stock row for ${sku}`));

    await loadStock(sku, 1);
    const short = orderJson(line(sku, 2));
    const k = cost(await sendOk(short.raw));
    assert.equal(k.batches, 3, `failed guess, read, write: ${JSON.stringify(k)}`);
    assert.equal(await c.stateOf(short.id), 'hold/inventory');
    assert.match((await c.orderRow(short.id)).explanation, /needs 2, 1 available/);

    await loadStock(sku, 5);
    const fits = orderJson(line(sku, 2));
    await sendOk(fits.raw);
    assert.ok(READYISH.includes(await c.stateOf(fits.id)));
    await c.waitPosts(fits.id);
    assert.equal(await c.stock(sku), 3);
  } finally {
    await setMode('default', 'manual');
  }
});

test('wrong guesses: a verdict before the order, an update before the create, and email velocity', async () => {
  await setMode('default', 'auto');
  try {
    await loadStock('SKU-COST-B', 1000);
    // A high-risk verdict that arrived first holds the order its create brings.
    const id = newOrderId();
    await sendOk(riskJson(id, 'high'), { topic: 'orders/risk_assessment_changed' });
    const created = await sendOk(orderJson({ ...line('SKU-COST-B'), id }).raw);
    assert.equal(cost(created).batches, 3, created.headers.get('server-timing'));
    assert.equal(await c.stateOf(id), 'hold/fraud');

    // orders/updated made the row; the (older) create must not start a second one.
    const t0 = Date.now() - 120_000;
    const upd = orderJson({ ...line('SKU-COST-B'), createdMs: t0, updatedMs: t0 + 60_000 });
    await sendOk(upd.raw, { topic: 'orders/updated' });
    const s1 = await c.stateOf(upd.id);
    assert.ok(READYISH.includes(s1), s1);
    const late = await sendOk(orderJson({ ...line('SKU-COST-B'), id: upd.id, createdMs: t0, updatedMs: t0 }).raw);
    assert.equal(cost(late).batches, 3, late.headers.get('server-timing'));
    assert.ok(READYISH.includes(await c.stateOf(upd.id)));
    assert.equal(await count(`SELECT COUNT(*) AS n FROM orders WHERE order_id = '${upd.id}'`), 1);

    // Three orders from one email in the hour pass; the fourth trips the velocity rule.
    const email = `velocity-${Date.now()}@example.com`;
    const orders = [];
    for (let i = 0; i < 4; i++) {
      const o = orderJson({ ...line('SKU-COST-B'), email });
      orders.push({ o, r: await sendOk(o.raw) });
    }
    for (const { o } of orders.slice(0, 3)) assert.ok(READYISH.includes(await c.stateOf(o.id)));
    const fourth = orders[3];
    assert.equal(cost(fourth.r).batches, 3, fourth.r.headers.get('server-timing'));
    assert.equal(await c.stateOf(fourth.o.id), 'hold/fraud');
    assert.ok((await c.orderRow(fourth.o.id)).rule_ids.split(',').includes('fraud.email_velocity'));
  } finally {
    await setMode('default', 'manual');
  }
});

test('wrong guesses under concurrency: 10 orders for 3 units, exactly 3 claim stock', async () => {
  const sku = `SKU-RACE-${Date.now()}`;
  await setMode('default', 'auto');
  try {
    await loadStock(sku, 3);
    const orders = Array.from({ length: 10 }, () => orderJson(line(sku)));
    const answers = await Promise.all(orders.map((o) => c.send(o.raw)));
    assert.deepEqual(answers.map((r) => r.status), Array(10).fill(200), JSON.stringify(answers.map((r) => r.body)));
    const states = await Promise.all(orders.map((o) => c.stateOf(o.id)));
    assert.equal(states.filter((s) => READYISH.includes(s)).length, 3, JSON.stringify(states));
    assert.equal(states.filter((s) => s === 'hold/inventory').length, 7, JSON.stringify(states));
    assert.equal(await c.stock(sku), 0);
    assert.equal(await count(`SELECT COALESCE(SUM(quantity), 0) AS n FROM reservations WHERE sku = '${sku}'`), 3);
  } finally {
    await setMode('default', 'manual');
  }
});

test('lane modes: a switch, by the admin API or a raw KV flip, reaches routing once its copy expires; the copy spares KV', async () => {
  await loadStock('SKU-COST-EU', 1000);
  const eu = () => orderJson({ country: 'FR', zip: '75001', currency: 'EUR', ...line('SKU-COST-EU') });
  try {
    await setMode('eu', 'auto'); // returns after the cache lifetime
    const a = eu();
    const a2 = eu();
    assert.equal(cost(await sendOk(a.raw)).kvReads, 1, 'the copy had expired: KV was read');
    assert.equal(cost(await sendOk(a2.raw)).kvReads, 0, 'the next order reused the copy');
    assert.equal(await c.stateOf(a.id), 'fraud-check', 'auto: the eu lane waits for a verdict');

    await stack.kvFlip('segment:eu:mode', 'manual');
    const b = eu();
    assert.equal(cost(await sendOk(b.raw)).kvReads, 1, 'the cached mode expired and KV was read');
    assert.equal(await c.stateOf(b.id), 'hold/manual');

    await setMode('eu', 'auto');
    const d = eu();
    await sendOk(d.raw);
    assert.equal(await c.stateOf(d.id), 'fraud-check', 'the admin switch reached routing');
  } finally {
    await setMode('eu', 'manual');
  }
});
