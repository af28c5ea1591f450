// Issue 8, the order lifecycle through the real Worker: re-drive and force-ready after
// transient failures and go-live, stock claims of ready orders, cancellation after (and
// during) submission, lease takeover, re-enqueue recovery, D1 and KV faults in the
// consumer, reservation leaks, wide orders, cron starvation and one body per key. Each test
// asserts the behaviour the README's "Fulfilment" section promises, one defect at a time.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, admin, eventually, SHOP } from '../support/stack.mjs';
import { orderJson } from '../support/orders.mjs';
import { client, sleep } from '../support/api.mjs';

// FULFILMENT_TIMEOUT_MS. The production default: slow warehouse answers (3 s for the
// in-flight cancellations, and the lease test's held call) must end before orderlane's timeout.
const TIMEOUT_MS = 10_000;
const READYISH = ['ready-for-fulfilment', 'submitted'];

let stack;
let c;
// Scripted warehouse answers, per order id (submissions) or `<id>:cancel` (cancel requests):
// an array consumed one answer per request, or a function of the request. Anything not
// scripted is accepted with 200.
const scripts = new Map();

function answer(req) {
  if (req.path === '/alerts') return { status: 200 };
  const id = req.json?.order_id;
  const kind = req.json?.kind ?? 'submit';
  const script = scripts.get(kind === 'cancel' ? `${id}:cancel` : id);
  if (typeof script === 'function') return script(req) ?? { status: 200 };
  if (Array.isArray(script) && script.length) return script.shift();
  return { status: 200 };
}

before(async () => {
  stack = await startStack({
    vars: { RETRY_DELAY_SCALE: '0.0001', FULFILMENT_TIMEOUT_MS: String(TIMEOUT_MS), ALLOW_FAULTS: '1' },
  });
  c = client(stack);
  stack.fake.setBehaviour(answer);
  const r = await c.setMode('default', 'auto', 'e2e lifecycle: release default');
  assert.equal(r.status, 200, JSON.stringify(r.body));
});
after(async () => { await stack?.stop(); });

// ---- helpers local to this suite ----

const key = (id, submission = 1) => `orderlane:${SHOP}:${id}:${submission}`;
const accepted = (id, kind = 'submit') => c.posts(id, kind).filter((r) => r.status >= 200 && r.status < 300);

async function loadStock(lines) {
  const r = await admin(stack, 'PUT', '/stock', lines);
  assert.equal(r.status, 200, JSON.stringify(r.body));
}

async function stockMap() {
  const r = await admin(stack, 'GET', '/stock');
  return new Map(r.body.stock.map((s) => [s.sku, s.available]));
}

/** Units of `sku` claimed by the order (open or marked submitted). */
async function reserved(id, sku) {
  const rows = await stack.sql(`SELECT quantity FROM reservations WHERE shop = '${SHOP}' AND order_id = '${id}' AND sku = '${sku}'`);
  return rows.reduce((n, r) => n + r.quantity, 0);
}
const reservationRows = (id) => stack.sql(`SELECT * FROM reservations WHERE shop = '${SHOP}' AND order_id = '${id}'`);

/**
 * An order created a minute ago, plus `later(changes)`: the same order at a newer updated_at
 * each call (Shopify's ordering key), with `changes` applied to the original options.
 */
function order(opts = {}) {
  const t0 = Date.now() - 60_000;
  const first = orderJson({ createdMs: t0, ...opts });
  let step = 0;
  return {
    id: first.id,
    raw: first.raw,
    later(changes = {}) {
      step += 1;
      return orderJson({ ...opts, ...changes, id: first.id, createdMs: t0, updatedMs: t0 + step * 1000 }).raw;
    },
  };
}

async function deliverOk(raw, topic = 'orders/create') {
  const r = await c.sendUntilAccepted(raw, { topic });
  assert.equal(r.status, 200, `${topic}: ${r.status} ${JSON.stringify(r.body)}`);
  return r;
}

/**
 * Waits until the order's attempt `n` ended transiently and its lease is released: the order is
 * ready, waiting for its scheduled retry, with nothing in flight.
 */
const waitRetryPending = (id, n = 1) =>
  eventually(async () => {
    const v = await c.view(id);
    const done = (v?.submission_attempts ?? []).filter((a) => a.finished_ms && a.outcome === 'transient');
    return v?.order?.state === 'ready-for-fulfilment' && done.length >= n && !(v.order.lease_until > Date.now()) && v;
  }, { timeoutMs: 30_000, what: `order ${id}: attempt ${n} failed transiently and its retry is scheduled` });

/** Waits for `want`; fails at once if the order is seen in a state matching `never`. */
const waitStateNever = (id, want, never, timeoutMs = 60_000) =>
  eventually(async () => {
    const s = await c.stateOf(id);
    if (s && never.test(s) && s !== want) throw new Error(`order ${id} went to ${s} while waiting for ${want}`);
    return s === want && s;
  }, { timeoutMs, what: `order ${id} to reach ${want}` });

/** Waits until every submission attempt the warehouse received for the order has been answered and recorded. */
async function waitAttemptsSettled(id, timeoutMs = 30_000) {
  await eventually(() => c.posts(id).length > 0 && c.posts(id).every((p) => p.answeredAt !== null),
    { timeoutMs, what: `the warehouse to answer every submission of ${id}` });
  return eventually(async () => {
    const v = await c.view(id);
    return v && v.submission_attempts.length > 0 && v.submission_attempts.every((a) => a.finished_ms) && v;
  }, { timeoutMs, what: `orderlane to record every attempt of ${id}` });
}

/** Rows after the first move to `cancelled` that move the order to `state`. */
async function rowsAfterCancel(id, state) {
  const rows = await c.timeline(id);
  const at = rows.findIndex((r) => r.to_state === 'cancelled');
  return at < 0 ? [] : rows.slice(at + 1).filter((r) => r.to_state === state && r.from_state !== state);
}

async function deadLettersByCause(cause) {
  const r = await admin(stack, 'GET', `/dead-letters?cause=${cause}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.items;
}

// ---- defect 1: re-drive and re-entry into ready after transient failures ----

test('defect 1, re-drive after retries_exhausted: the order is sent again under the same Idempotency-Key', async () => {
  await loadStock([{ sku: 'LC-1', available: 100 }]);
  const o = order({ lines: [{ sku: 'LC-1', quantity: 1 }] });
  scripts.set(o.id, Array.from({ length: 8 }, () => ({ status: 503 })));
  await deliverOk(o.raw);
  await c.waitState(o.id, 'hold/fulfilment', 90_000);
  assert.equal(c.posts(o.id).length, 8, 'eight attempts before the dead letter');
  const dl = (await deadLettersByCause('retries_exhausted')).find((d) => d.order_id === o.id);
  assert.ok(dl, 'dead-lettered as retries_exhausted');

  const r = await admin(stack, 'POST', `/dead-letters/${dl.id}/redrive`, { note: 'warehouse is back' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  await c.waitState(o.id, 'submitted', 30_000)
    .catch(async (e) => { throw new Error(`${e.message}; state ${await c.stateOf(o.id)}, warehouse saw ${c.posts(o.id).length} POSTs`); });
  const ok = accepted(o.id);
  assert.equal(ok.length, 1, 'one accepted POST');
  assert.equal(ok[0].headers['idempotency-key'], key(o.id, 1), 'a re-drive after transient failures repeats the key');
  assert.equal(ok[0].signatureValid, true);
  assert.equal(c.posts(o.id).length, 9);
});

test('defect 1 (variant), re-entry into ready after a transient failure (address hold and fix while waiting for the retry) is still sent', async () => {
  await loadStock([{ sku: 'LC-1B', available: 100 }]);
  const o = order({ lines: [{ sku: 'LC-1B', quantity: 1 }] });
  scripts.set(o.id, [{ status: 503, headers: { 'retry-after': '10' } }]);
  await deliverOk(o.raw);
  await waitRetryPending(o.id);
  await deliverOk(o.later({ zip: 'ABC' }), 'orders/updated');
  assert.equal(await c.stateOf(o.id), 'hold/address');
  await deliverOk(o.later({ zip: '40003' }), 'orders/updated');
  assert.ok(READYISH.includes(await c.stateOf(o.id)));
  await c.waitState(o.id, 'submitted', 30_000)
    .catch(async (e) => { throw new Error(`${e.message}; state ${await c.stateOf(o.id)}, warehouse saw ${c.posts(o.id).length} POST(s)`); });
  assert.equal(accepted(o.id).length, 1);
  assert.equal(accepted(o.id)[0].signatureValid, true);
});

// ---- defect 2: force-ready after go-live ----

test('defect 2, force-ready after the lane goes manual → auto: the order is sent exactly once', async () => {
  await loadStock([{ sku: 'LC-2', available: 100 }]);
  try {
    const m = await c.setMode('default', 'manual', 'e2e: before go-live');
    assert.equal(m.status, 200, JSON.stringify(m.body));
    const o = order({ lines: [{ sku: 'LC-2', quantity: 1 }] });
    await deliverOk(o.raw);
    assert.equal(await c.stateOf(o.id), 'hold/manual');
    const a = await c.setMode('default', 'auto', 'e2e: go-live');
    assert.equal(a.status, 200, JSON.stringify(a.body));
    const f = await c.act(o.id, 'force-ready', { note: 'checked by ops after go-live' });
    assert.equal(f.status, 200, JSON.stringify(f.body));
    assert.equal(await c.fireCron(), 200);
    await c.waitState(o.id, 'submitted', 30_000).catch(async (e) => {
      const row = await c.orderRow(o.id);
      throw new Error(`${e.message}; state ${row.state}, orders.mode ${row.mode}, warehouse saw ${c.posts(o.id).length} POST(s)`);
    });
    await sleep(1000);
    assert.equal(accepted(o.id).length, 1);
    assert.equal(c.posts(o.id).length, 1);
    assert.equal(accepted(o.id)[0].headers['idempotency-key'], key(o.id, 1));
  } finally {
    await c.setMode('default', 'auto', 'e2e: restore');
  }
});

// ---- defect 3: a ready order's own claim ----

test('defect 3, a later orders/updated and orders/paid of a ready order do not count its own stock claim', async () => {
  await loadStock([{ sku: 'LC-TIGHT', available: 2 }]);
  const lines = [{ sku: 'LC-TIGHT', quantity: 2 }];
  const o = order({ lines });
  scripts.set(o.id, [{ status: 503, headers: { 'retry-after': '10' } }]); // keeps it ready for 10 s
  await deliverOk(o.raw);
  await waitRetryPending(o.id);
  assert.equal(await c.stock('LC-TIGHT'), 0, 'the ready order holds both units');

  for (const topic of ['orders/updated', 'orders/paid']) {
    await deliverOk(o.later(), topic);
    const s = await c.stateOf(o.id);
    assert.ok(READYISH.includes(s), `${topic} re-ran the rules and moved the ready order to ${s}: ${(await c.view(o.id)).order.explanation}`);
    assert.equal(await c.stock('LC-TIGHT'), 0, `available after ${topic}`);
    assert.equal(await reserved(o.id, 'LC-TIGHT'), 2, `the claim is still the order's after ${topic}`);
  }

  await c.waitState(o.id, 'submitted', 30_000);
  assert.equal(await c.stock('LC-TIGHT'), 0, 'after submission the units stay claimed');
  assert.equal(await reserved(o.id, 'LC-TIGHT'), 2, 'ledger: available 0 + reserved 2 = loaded 2');
  assert.equal(accepted(o.id).length, 1);
});

// ---- defect 4: cancellation reaches the warehouse ----

test('defect 4, orders/cancelled after submission sends a signed cancel request; confirmed, units back in stock', async () => {
  await loadStock([{ sku: 'LC-4A', available: 10 }]);
  const o = order({ lines: [{ sku: 'LC-4A', quantity: 3 }] });
  await deliverOk(o.raw);
  await c.waitState(o.id, 'submitted');
  assert.equal(await c.stock('LC-4A'), 7);

  await deliverOk(o.later({ cancelled: true }), 'orders/cancelled');
  const [cancel] = await c.waitPosts(o.id, 1, 'cancel', 20_000)
    .catch(async (e) => { throw new Error(`${e.message}; order is ${await c.stateOf(o.id)}`); });
  assert.equal(cancel.json.kind, 'cancel');
  assert.equal(cancel.headers['idempotency-key'], `${key(o.id, 1)}:cancel`);
  assert.ok(cancel.headers['idempotency-key'].endsWith(':cancel'));
  assert.equal(cancel.signatureValid, true);
  assert.equal(cancel.json.shop, SHOP);
  assert.equal(cancel.json.lane, 'default');
  assert.equal(cancel.json.submission, 1);
  for (const k of ['order_name', 'reason']) assert.ok(k in cancel.json, `cancel body has ${k}`);

  await c.waitState(o.id, 'cancelled');
  await eventually(async () => (await c.orderRow(o.id)).cancel_state === 'confirmed',
    { what: 'orders.cancel_state = confirmed' });
  assert.equal(await c.stock('LC-4A'), 10, 'a confirmed cancellation returns the units');
  assert.deepEqual(await reservationRows(o.id), []);
  assert.equal(accepted(o.id).length, 1, 'the order itself is not sent again');
});

test('defect 4 (variant), cancel answered 409 already_shipped: the order goes to hold/fulfilment, saying it shipped, units not returned', async () => {
  await loadStock([{ sku: 'LC-4B', available: 10 }]);
  const o = order({ lines: [{ sku: 'LC-4B', quantity: 2 }] });
  scripts.set(`${o.id}:cancel`, [{ status: 409, body: '{"error":"already_shipped"}' }]);
  await deliverOk(o.raw);
  await c.waitState(o.id, 'submitted');
  await deliverOk(o.later({ cancelled: true }), 'orders/cancelled');
  await c.waitPosts(o.id, 1, 'cancel', 20_000)
    .catch(async (e) => { throw new Error(`${e.message}; order is ${await c.stateOf(o.id)}`); });
  await c.waitState(o.id, 'hold/fulfilment', 20_000);
  const v = await c.view(o.id);
  const sinceCancel = v.timeline.slice(Math.max(0, v.timeline.findIndex((r) => r.to_state === 'cancelled')));
  const said = `${v.order.explanation ?? ''} ${sinceCancel.map((r) => r.detail ?? '').join(' ')}`;
  assert.match(said, /shipped/i, 'the explanation or the timeline says the warehouse had shipped it');
  assert.equal((await c.orderRow(o.id)).cancel_state, 'shipped');
  assert.equal(await c.stock('LC-4B'), 8, 'shipped units are not returned');
  assert.deepEqual(await reservationRows(o.id), []);
});

test('defect 4 (in flight, 200), orders/cancelled while the submission is in flight (warehouse then accepts): cancelled, a cancel request, never submitted after', async () => {
  await loadStock([{ sku: 'LC-4C', available: 10 }]);
  const o = order({ lines: [{ sku: 'LC-4C', quantity: 1 }] });
  scripts.set(o.id, [{ delayMs: 3000, status: 200 }]);
  await deliverOk(o.raw);
  const [post] = await c.waitPosts(o.id, 1);
  assert.equal(post.answeredAt, null, 'test setup: the submission is in flight');
  await deliverOk(o.later({ cancelled: true }), 'orders/cancelled');

  await waitAttemptsSettled(o.id);
  await sleep(500);
  const resurrected = await rowsAfterCancel(o.id, 'submitted');
  assert.deepEqual(resurrected.map((r) => `${r.event}: ${r.from_state} → ${r.to_state}`), [],
    'nothing moves a cancelled order back to submitted');
  await c.waitPosts(o.id, 1, 'cancel', 20_000)
    .catch(async (e) => { throw new Error(`${e.message}; order is ${await c.stateOf(o.id)}`); });
  await c.waitState(o.id, 'cancelled', 20_000);
  await eventually(async () => (await c.orderRow(o.id)).cancel_state === 'confirmed',
    { what: 'orders.cancel_state = confirmed' });
  assert.equal(await c.stock('LC-4C'), 10, 'stock back to its initial level once, not twice');
  assert.deepEqual(await reservationRows(o.id), []);
  assert.deepEqual(await c.chainProblems(o.id), []);
});

test('defect 4 (in flight, 400), orders/cancelled while the submission is in flight (warehouse then refuses 400): stays cancelled, no dead letter, stock back', async () => {
  await loadStock([{ sku: 'LC-4D', available: 10 }]);
  const o = order({ lines: [{ sku: 'LC-4D', quantity: 1 }] });
  scripts.set(o.id, [{ delayMs: 3000, status: 400, body: '{"error":"bad_address_format"}' }]);
  await deliverOk(o.raw);
  const [post] = await c.waitPosts(o.id, 1);
  assert.equal(post.answeredAt, null, 'test setup: the submission is in flight');
  await deliverOk(o.later({ cancelled: true }), 'orders/cancelled');

  await waitAttemptsSettled(o.id);
  await sleep(1000);
  assert.equal(await c.stateOf(o.id), 'cancelled', 'cancelled is final');
  assert.deepEqual((await c.deadLetters(o.id)).map((d) => d.cause), [], 'no dead letter for a cancelled order');
  assert.equal(await c.stock('LC-4D'), 10);
  assert.deepEqual(await reservationRows(o.id), []);
  assert.equal(c.posts(o.id, 'cancel').length, 0, 'nothing to cancel: the warehouse never accepted it');
  assert.deepEqual(await c.chainProblems(o.id), []);
});

// ---- defect 5: lease takeover ----

// Under wrangler dev a queue dispatches one batch at a time, so the message the cron
// re-enqueues is consumed only after the first attempt has ended; a concurrent takeover needs
// concurrent consumer invocations, as in production (the claim rule that forbids it is
// `core::lifecycle::claim`, tested natively). This test pins the contract locally: no overlap
// under one key, submitted, no dead letter.
test('defect 5, the lease ends while an attempt is in flight: no concurrent POST under the same key, submitted, no dead letter', async () => {
  await loadStock([{ sku: 'LC-5', available: 100 }]);
  const o = order({ lines: [{ sku: 'LC-5', quantity: 1 }] });
  let seen;
  const firstSeen = new Promise((r) => { seen = r; });
  let release;
  const gate = new Promise((r) => { release = r; });
  const inProgress = new Set();
  let calls = 0;
  // The first call stays open until the test lets it answer 200. Like a real warehouse, a key
  // is refused while a request with it is still in progress.
  scripts.set(o.id, async (req) => {
    calls += 1;
    const k = req.headers['idempotency-key'];
    if (inProgress.has(k)) return { status: 409, body: '{"error":"idempotency_key_in_use"}' };
    if (calls > 1) return { status: 200 };
    inProgress.add(k);
    seen(req);
    await gate;
    inProgress.delete(k);
    return { status: 200 };
  });
  let first;
  try {
    await deliverOk(o.raw);
    first = await Promise.race([firstSeen, sleep(30_000).then(() => null)]);
    assert.ok(first, 'the first POST reached the warehouse');
    await stack.exec(`UPDATE orders SET lease_until = 0 WHERE shop = '${SHOP}' AND order_id = '${o.id}'`);
    assert.equal(await c.fireCron(), 200);
    assert.ok(Date.now() < first.at + TIMEOUT_MS - 1500,
      `test setup: the lease ended and the cron ran while the first POST was in flight (${Date.now() - first.at} ms in)`);
    // Hold the first call until a second one arrives (a takeover), or shortly before orderlane's timeout.
    await eventually(() => calls > 1 || Date.now() > first.at + TIMEOUT_MS - 1500, { timeoutMs: TIMEOUT_MS, intervalMs: 100 });
  } finally {
    release();
  }

  await eventually(async () => (await c.stateOf(o.id)) !== 'ready-for-fulfilment', { what: 'the attempt to end' });
  await sleep(1500);
  const posts = c.posts(o.id);
  assert.equal(await c.stateOf(o.id), 'submitted',
    `warehouse saw ${posts.map((p) => `${p.status} at ${p.at - first.at} ms, answered at ${p.answeredAt - first.at} ms`).join('; ')}`);
  assert.deepEqual((await c.deadLetters(o.id)).map((d) => d.cause), []);
  const byKey = new Map();
  for (const p of posts) byKey.set(p.headers['idempotency-key'], [...(byKey.get(p.headers['idempotency-key']) ?? []), p]);
  for (const [k, same] of byKey) {
    const sorted = [...same].sort((a, b) => a.at - b.at);
    for (let i = 1; i < sorted.length; i++) {
      const prevEnd = sorted[i - 1].answeredAt ?? Infinity;
      assert.ok(sorted[i].at >= prevEnd, `two POSTs under ${k} overlapped: one sent ${sorted[i].at - sorted[i - 1].at} ms into the other`);
    }
  }
});

test('defect 5 (takeover), an acceptance that returns after another consumer took the lease is recorded at once, not dropped', async () => {
  await loadStock([{ sku: 'LC-5T', available: 100 }]);
  const o = order({ lines: [{ sku: 'LC-5T', quantity: 1 }] });
  let seen;
  const firstSeen = new Promise((r) => { seen = r; });
  let release;
  const gate = new Promise((r) => { release = r; });
  scripts.set(o.id, async (req) => {
    seen(req);
    await gate;
    return { status: 200 };
  });
  try {
    await deliverOk(o.raw);
    const first = await Promise.race([firstSeen, sleep(30_000).then(() => null)]);
    assert.ok(first, 'the first POST reached the warehouse');
    // As if the lease had run out and a second consumer had claimed the order meanwhile.
    const until = Date.now() + 120_000;
    await stack.exec(`UPDATE orders SET lease_id = 'another-consumer', lease_until = ${until} WHERE shop = '${SHOP}' AND order_id = '${o.id}'`);
  } finally {
    release();
  }
  // The warehouse accepted: that is a fact, recorded now (not when the other lease ends).
  await c.waitState(o.id, 'submitted', 8_000);
  assert.equal(c.posts(o.id).length, 1, 'sent once');
  assert.equal(await reserved(o.id, 'LC-5T'), 1, 'the unit is handed over, not given back');
  assert.equal(await c.stock('LC-5T'), 99);
  assert.deepEqual(await c.chainProblems(o.id), []);
});

// ---- defect 6: a failed re-enqueue ----

test('defect 6, a ready order whose retry message is lost is re-sent by the next cron run, not 12.5 h later', async () => {
  await loadStock([{ sku: 'LC-6', available: 100 }]);
  const o = order({ lines: [{ sku: 'LC-6', quantity: 1 }] });
  scripts.set(o.id, [{ status: 503, headers: { 'retry-after': '3600' } }]); // the queued retry is an hour away
  await deliverOk(o.raw);
  await waitRetryPending(o.id);
  // As if the re-enqueue had failed two minutes ago: the retry was due then, nothing carries it.
  const due = Date.now() - 120_000;
  const where = `WHERE shop = '${SHOP}' AND order_id = '${o.id}'`;
  await stack.exec(`UPDATE orders SET enqueued_ms = ${due} ${where}`);
  let columnError = null;
  try {
    await stack.exec(`UPDATE orders SET next_attempt_ms = ${due} ${where}`);
  } catch (e) {
    columnError = (`${e.stdout ?? ''}${e.stderr ?? ''}`.match(/no such column[^"\n]*/) ?? [e.message.split('\n')[0]])[0];
  }
  assert.equal(await c.fireCron(), 200);
  await c.waitPosts(o.id, 2, 'submit', 15_000).catch((e) => {
    throw new Error(`${e.message}${columnError ? `; and setting orders.next_attempt_ms failed: ${columnError}` : ''}`);
  });
  assert.equal(columnError, null);
  await c.waitState(o.id, 'submitted', 15_000);
  const p = c.posts(o.id);
  assert.equal(p.length, 2);
  assert.equal(p[1].headers['idempotency-key'], key(o.id, 1), 'attempt 2 repeats the key');
});

// ---- defect 7: D1 blip in the consumer ----

test('defect 7, a D1 outage while a retry is queued: the message waits it out, the order is submitted, never held or failed', async () => {
  await loadStock([{ sku: 'LC-7', available: 100 }]);
  const o = order({ lines: [{ sku: 'LC-7', quantity: 1 }] });
  scripts.set(o.id, [{ status: 503, headers: { 'retry-after': '8' } }]);
  await deliverOk(o.raw);
  await waitRetryPending(o.id);
  const retryDue = c.posts(o.id)[0].answeredAt + 8000;
  let renamed = false;
  try {
    // D1 "fails" (every statement touching submission_attempts errors) before the retry is due,
    // and stays down for 15 s after it: the consumer meets the outage for its whole length.
    await stack.exec('ALTER TABLE submission_attempts RENAME TO sa_x');
    renamed = true;
    assert.equal(c.posts(o.id).length, 1, 'test setup: the retry was still queued when D1 broke');
    await sleep(Math.max(0, retryDue + 15_000 - Date.now()));
  } finally {
    if (renamed) await stack.exec('ALTER TABLE sa_x RENAME TO submission_attempts');
  }
  assert.equal(await c.fireCron(), 200);
  // The 15-minute cron keeps running in production; here it runs every 20 s while we wait.
  const cron = setInterval(() => { c.fireCron().catch(() => {}); }, 20_000);
  try {
    await waitStateNever(o.id, 'submitted', /^hold/, 90_000);
  } finally {
    clearInterval(cron);
  }
  assert.deepEqual((await c.deadLetters(o.id)).map((d) => d.cause), [], 'no dead letter');
  const row = await c.orderRow(o.id);
  assert.equal(row.failed_ms, null, 'not counted as a failed submission (gate A)');
  assert.deepEqual((await c.timeline(o.id)).filter((r) => r.to_state === 'hold').map((r) => r.event), [], 'never held');
  assert.equal(accepted(o.id).length, 1);
});

// ---- defect 8: KV in the consumer ----

test('defect 8, KV read failures in the consumer delay the order, never hold it: submitted, not hold/manual', async () => {
  await loadStock([{ sku: 'LC-8', available: 100 }]);
  const o = order({ lines: [{ sku: 'LC-8', quantity: 1 }] });
  scripts.set(o.id, [{ status: 503, headers: { 'retry-after': '3' } }]);
  await deliverOk(o.raw);
  await waitRetryPending(o.id);
  const f = await c.faults({ kv_read_failures: 3 });
  assert.equal(f.status, 200, `POST /admin/faults: ${f.status} ${JSON.stringify(f.body)}`);
  assert.equal(c.posts(o.id).length, 1, 'test setup: the faults were armed before the retry was consumed');
  await waitStateNever(o.id, 'submitted', /^hold/, 60_000);
  assert.deepEqual((await c.timeline(o.id)).filter((r) => r.to_state === 'hold').map((r) => `${r.event}/${r.reason}`), []);
  assert.equal(accepted(o.id).length, 1);
});

test('defect 8 (webhook), a KV failure while routing is answered 503 with nothing recorded; the retry is accepted', async () => {
  await loadStock([{ sku: 'LC-8W', available: 10 }]);
  const o = order({ lines: [{ sku: 'LC-8W', quantity: 1 }] });
  const webhookId = `kv-${o.id}`;
  // Routing reuses a KV read for MODE_CACHE_MS (500 ms here): let it expire, so this delivery reads KV.
  await new Promise((r) => setTimeout(r, 600));
  assert.equal((await c.faults({ kv_read_failures: 1 })).status, 200);
  const first = await c.send(o.raw, { webhookId });
  assert.equal(first.status, 503, JSON.stringify(first.body));
  assert.equal(first.body.error, 'storage_unavailable');
  assert.ok(first.headers.get('retry-after'), 'Shopify is told when to retry');
  assert.deepEqual(await stack.sql(`SELECT id FROM deliveries WHERE webhook_id = '${webhookId}'`), []);
  assert.equal(await c.stateOf(o.id), null, 'no order row, no guess at the lane mode');
  // Shopify's retry carries the same webhook id.
  const again = await c.send(o.raw, { webhookId });
  assert.equal(again.body.status, 'accepted');
  await c.waitState(o.id, 'submitted');
});

test('defect 8 (stale KV), a stale KV auto after a rollback does not record a phantom release', async () => {
  try {
    const rel = await c.setMode('eu', 'auto', 'e2e: release eu');
    assert.equal(rel.status, 200, JSON.stringify(rel.body));
    const [{ released_ms: releasedMs }] = await stack.sql("SELECT released_ms FROM segments WHERE segment = 'eu'");
    assert.ok(releasedMs > 0);
    const back = await c.setMode('eu', 'manual', 'e2e: roll back eu');
    assert.equal(back.status, 200, JSON.stringify(back.body));
    const [{ id: rollbackRow }] = await stack.sql("SELECT MAX(id) AS id FROM audit_log WHERE event = 'mode_changed' AND segment = 'eu'");

    await stack.kvFlip('segment:eu:mode', 'auto'); // an edge still serving the cached auto
    const o = orderJson({ country: 'DE', zip: '10115', currency: 'EUR' });
    assert.equal((await c.send(o.raw)).status, 200);
    await stack.kvPut('segment:eu:mode', 'manual');

    const [seg] = await stack.sql("SELECT mode, released_ms FROM segments WHERE segment = 'eu'");
    const phantom = (await stack.sql(`SELECT id, actor, detail FROM audit_log WHERE event = 'mode_changed' AND segment = 'eu' AND id > ${rollbackRow}`))
      .filter((r) => JSON.parse(r.detail ?? '{}').to === 'auto');
    assert.deepEqual(phantom.map((r) => `${r.actor}: ${r.detail}`), [], 'no mode_changed row claims auto after the rollback');
    assert.equal(seg.released_ms, releasedMs, 'released_ms is still the release\'s');
    assert.equal(seg.mode, 'manual');
  } finally {
    await stack.kvPut('segment:eu:mode', 'manual');
    await c.setMode('eu', 'manual', 'e2e: restore');
  }
});

// ---- defect 9 ----

test('defect 9a, reservation leak: a dead-lettered order returns its units at once, and a later cancel leaves no reservation', async () => {
  await loadStock([{ sku: 'LC-R', available: 5 }]);
  const o = order({ lines: [{ sku: 'LC-R', quantity: 1 }] });
  scripts.set(o.id, [{ status: 400, body: '{"error":"bad_address_format"}' }]);
  await deliverOk(o.raw);
  await c.waitState(o.id, 'hold/fulfilment');
  assert.equal(await c.stock('LC-R'), 5, 'leaving ready through a dead letter returns the unit');
  await deliverOk(o.later({ cancelled: true }), 'orders/cancelled');
  assert.equal(await c.stateOf(o.id), 'cancelled');
  assert.equal(await c.stock('LC-R'), 5);
  assert.deepEqual(await reservationRows(o.id), []);
});

const WIDE = Array.from({ length: 95 }, (_, i) => `SKU-${String(i + 1).padStart(3, '0')}`);

test('defect 9b, more than 90 SKUs: a 95-line wholesale order is stocked and ready, not hold/inventory', async () => {
  try {
    assert.equal((await c.setMode('wholesale', 'auto', 'e2e: wide orders')).status, 200);
    await loadStock(WIDE.map((sku) => ({ sku, available: 1000 })));
    const o = order({ tags: 'wholesale', lines: WIDE.map((sku) => ({ sku, quantity: 1 })) });
    await deliverOk(o.raw);
    const v = await c.view(o.id);
    assert.equal(v.order.segment, 'wholesale');
    assert.ok(READYISH.includes(await c.stateOf(o.id)), `${await c.stateOf(o.id)}: ${v.order.explanation}`);
    await c.waitState(o.id, 'submitted');
    const [post] = accepted(o.id);
    assert.equal(post.json.lines.length, 95);
    const stock = await stockMap();
    assert.deepEqual(WIDE.filter((sku) => stock.get(sku) !== 999), [], 'every SKU claimed once');
  } finally {
    await c.setMode('wholesale', 'manual', 'e2e: restore');
  }
});

test('defect 9b (pos), more than 90 SKUs: a 95-line pos order claims every SKU (no oversell past the 90th)', async () => {
  try {
    assert.equal((await c.setMode('pos', 'auto', 'e2e: wide orders')).status, 200);
    await loadStock(WIDE.map((sku) => ({ sku, available: 1000 })));
    const o = order({ source_name: 'pos', lines: WIDE.map((sku) => ({ sku, quantity: 1 })) });
    await deliverOk(o.raw);
    assert.equal((await c.view(o.id)).order.segment, 'pos');
    assert.ok(READYISH.includes(await c.stateOf(o.id)), await c.stateOf(o.id));
    const stock = await stockMap();
    assert.deepEqual(WIDE.filter((sku) => stock.get(sku) !== 999), [], 'SKUs not decremented');
    const rows = await reservationRows(o.id);
    assert.equal(rows.length, 95, 'one reservation per SKU');
  } finally {
    await c.setMode('pos', 'manual', 'e2e: restore');
  }
});

test('defect 9c, cron sweep with 1000 waiting new orders still times out a fraud-check order', async () => {
  const lo = '770000000000000001';
  const hi = '770000000000001000';
  try {
    assert.equal((await c.setMode('eu', 'auto', 'e2e: sweep test')).status, 200);
    // eu waits 120 minutes for a verdict; this one is due a few seconds from now.
    const created = Date.now() - 120 * 60_000 + 3000;
    await loadStock([{ sku: 'LC-9C', available: 100 }]);
    const waiting = orderJson({ country: 'DE', zip: '10115', currency: 'EUR', createdMs: created, lines: [{ sku: 'LC-9C', quantity: 1 }] });
    await deliverOk(waiting.raw);
    assert.equal(await c.stateOf(waiting.id), 'fraud-check');
    const rv = (await c.view(waiting.id)).order.rules_version;
    // 1000 wholesale orders waiting for payment, an hour into their 7-day window.
    const t = Date.now() - 3_600_000;
    await stack.exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
      INSERT INTO orders (shop, order_id, order_name, state, segment, mode, rule_ids, explanation, rules_version,
        financial_status, total_cents, currency, order_updated_ms, event_triggered_ms, seq, created_ms,
        order_created_ms, state_since_ms, updated_ms)
      SELECT '${SHOP}', '77' || printf('%016d', i), '#W' || i, 'new', 'wholesale', 'manual', 'payment.pending',
        'waiting for payment', '${rv}', 'pending', 4000, 'USD', ${t}, ${t}, 1, ${t}, ${t}, ${t}, ${t} FROM n`);
    const [{ n }] = await stack.sql(`SELECT COUNT(*) AS n FROM orders WHERE state = 'new' AND order_id BETWEEN '${lo}' AND '${hi}'`);
    assert.equal(n, 1000);
    await sleep(Math.max(0, created + 120 * 60_000 + 1000 - Date.now()));

    assert.equal(await c.fireCron(), 200);
    await c.waitState(waiting.id, 'hold/fraud', 20_000)
      .catch(async (e) => { throw new Error(`${e.message}; state ${await c.stateOf(waiting.id)}`); });
    const [{ still }] = await stack.sql(`SELECT COUNT(*) AS still FROM orders WHERE state = 'new' AND order_id BETWEEN '${lo}' AND '${hi}'`);
    assert.equal(still, 1000, 'orders inside their payment window keep waiting');
  } finally {
    await stack.exec(`DELETE FROM orders WHERE shop = '${SHOP}' AND order_id BETWEEN '${lo}' AND '${hi}'`);
    await c.setMode('eu', 'manual', 'e2e: restore');
  }
});

test('defect 9d, one key, one body: an orders/updated during a timed-out attempt does not change what the retry sends', async () => {
  await loadStock([{ sku: 'LC-9D', available: 100 }]);
  const o = order({ lines: [{ sku: 'LC-9D', quantity: 1 }] });
  scripts.set(o.id, [{ hang: true, hangMs: TIMEOUT_MS + 5000 }]);
  await deliverOk(o.raw);
  await c.waitPosts(o.id, 1);
  await deliverOk(o.later({ address: { address1: '99 Moved Avenue' } }), 'orders/updated');
  await c.waitState(o.id, 'submitted', 40_000);
  const k = key(o.id, 1);
  const same = c.posts(o.id).filter((p) => p.headers['idempotency-key'] === k);
  assert.ok(same.length >= 2, `the timed-out attempt was retried under ${k}`);
  for (const p of same.slice(1)) {
    assert.equal(p.raw, same[0].raw, `a retry under ${k} sent a different body`);
  }
});

// ---- operator hold and stop alone on a ready order ----

test('operator hold of a ready order: hold/manual, its units back in stock', async () => {
  await loadStock([{ sku: 'LC-H', available: 10 }]);
  const o = order({ lines: [{ sku: 'LC-H', quantity: 2 }] });
  scripts.set(o.id, [{ status: 503, headers: { 'retry-after': '120' } }]);
  await deliverOk(o.raw);
  await waitRetryPending(o.id);
  assert.equal(await c.stock('LC-H'), 8);
  const r = await c.act(o.id, 'hold', { note: 'customer asked us to wait' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(await c.stateOf(o.id), 'hold/manual');
  assert.equal(await c.stock('LC-H'), 10);
  assert.deepEqual(await reservationRows(o.id), []);
  assert.equal(c.posts(o.id).length, 1);
});

test('operator stop of a ready order: cancelled, its units back in stock', async () => {
  await loadStock([{ sku: 'LC-S', available: 10 }]);
  const o = order({ lines: [{ sku: 'LC-S', quantity: 2 }] });
  scripts.set(o.id, [{ status: 503, headers: { 'retry-after': '120' } }]);
  await deliverOk(o.raw);
  await waitRetryPending(o.id);
  assert.equal(await c.stock('LC-S'), 8);
  const r = await c.act(o.id, 'stop', { note: 'fraud team says stop' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(await c.stateOf(o.id), 'cancelled');
  assert.equal(await c.stock('LC-S'), 10);
  assert.deepEqual(await reservationRows(o.id), []);
  assert.equal(c.posts(o.id, 'cancel').length, 0, 'never accepted, nothing to cancel');
});
