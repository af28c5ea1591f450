// Group commit through the real Worker: deliveries that reach the write while another batch
// is in flight share one D1 call (src/core/group.rs). Each burst below is fired at once, as
// Shopify does during a sale, and the outcome is checked in D1: every delivery recorded once,
// every duplicate answered as one, stock conserved, no order sent twice, and the audit chain
// whole. Faults make a shared batch fail, or its leader drop out, to drive the fallbacks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startStack, admin, SHOP } from '../support/stack.mjs';
import { client, sleep } from '../support/api.mjs';
import { orderJson } from '../support/orders.mjs';

let stack;
let c;
before(async () => {
  stack = await startStack({ vars: { ALLOW_FAULTS: '1' } });
  c = client(stack);
  const r = await c.setMode('default', 'auto', 'e2e group commit');
  assert.equal(r.status, 200, JSON.stringify(r.body));
});
after(async () => { await stack?.stop(); });

/** `group;desc="N deliveries"` from Server-Timing: how many shared the batch (1: none). */
const sharedBy = (r) => Number(/group;desc="(\d+) deliveries"/.exec(r.headers.get('server-timing') ?? '')?.[1] ?? 1);

/** Sends every delivery at once; answers 503 are sent again as Shopify would (same webhook id). */
const burst = (deliveries) => Promise.all(deliveries.map((d) => c.sendUntilAccepted(d.raw, { webhookId: d.webhookId })));

const recorded = async (ids) => {
  const list = ids.map((id) => `'${id}'`).join(',');
  const rows = await stack.sql(`SELECT webhook_id, COUNT(*) AS n FROM deliveries WHERE webhook_id IN (${list}) GROUP BY webhook_id`);
  return Object.fromEntries(rows.map((r) => [r.webhook_id, r.n]));
};

const setFaults = async (faults) => {
  const r = await c.faults({ kv_read_failures: 0, group_leader_drops: 0, group_batch_failures: 0, ...faults });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.left;
};

test('a burst shares D1 calls; each delivery is recorded once, repeats are duplicates, stock is conserved and no order is sent twice', async () => {
  const sku = `GROUP-SCARCE-${randomUUID().slice(0, 8)}`;
  const r = await admin(stack, 'PUT', '/stock', [{ sku, available: 5 }]);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const orders = Array.from({ length: 24 }, () => ({ ...orderJson({ lines: [{ sku, quantity: 1 }] }), webhookId: randomUUID() }));
  // Four deliveries arrive twice at once, as Shopify's retries can.
  const deliveries = [...orders, ...orders.slice(0, 4)];
  const answers = await burst(deliveries);

  assert.deepEqual(answers.filter((a) => a.status !== 200).map((a) => `${a.status} ${JSON.stringify(a.body)}`), []);
  const statuses = answers.map((a) => a.body.status);
  assert.equal(statuses.filter((s) => s === 'accepted').length, 24, statuses.join(' '));
  assert.equal(statuses.filter((s) => s === 'duplicate').length, 4, statuses.join(' '));
  const shared = Math.max(...answers.map(sharedBy));
  assert.ok(shared >= 2, `some deliveries shared a D1 call: ${answers.map((a) => a.headers.get('server-timing')).join(' | ')}`);

  const counts = await recorded(orders.map((o) => o.webhookId));
  assert.deepEqual(orders.filter((o) => counts[o.webhookId] !== 1).map((o) => `${o.webhookId}: ${counts[o.webhookId]}`), []);
  const ids = orders.map((o) => `'${o.id}'`).join(',');
  const rows = await stack.sql(`SELECT order_id, state, reason FROM orders WHERE order_id IN (${ids})`);
  assert.equal(rows.length, 24);
  const [{ available }] = await stack.sql(`SELECT available FROM stock WHERE sku = '${sku}'`);
  const claims = await stack.sql(`SELECT order_id, quantity FROM reservations WHERE sku = '${sku}'`);
  assert.equal(available + claims.reduce((n, r) => n + r.quantity, 0), 5, 'stock conserved');
  assert.equal(available, 0, 'every unit went to an order: 24 asked for 5');
  const claimed = new Set(claims.map((r) => r.order_id));
  assert.equal(claimed.size, 5);
  for (const row of rows) {
    if (claimed.has(row.order_id)) {
      assert.notEqual(row.state, 'hold', `${row.order_id} holds stock and is ${row.state}/${row.reason}`);
    } else {
      assert.deepEqual([row.state, row.reason], ['hold', 'inventory'], `${row.order_id} got no unit`);
    }
  }
  for (const id of claimed) {
    await c.waitPosts(id, 1);
  }
  await sleep(2000);
  for (const o of orders) {
    assert.ok(c.posts(o.id).length <= 1, `${o.id} sent ${c.posts(o.id).length} times`);
    assert.deepEqual(await c.chainProblems(o.id), [], `${o.id}'s audit chain`);
  }
});

test('a shared batch that D1 refuses is written again member by member: nothing lost, nothing twice', async () => {
  for (let tries = 1; ; tries++) {
    await setFaults({ group_batch_failures: 1 });
    const deliveries = Array.from({ length: 16 }, () => ({ ...orderJson(), webhookId: randomUUID() }));
    const answers = await burst(deliveries);
    const left = await setFaults({});
    assert.deepEqual(answers.filter((a) => a.status !== 200 || a.body.status !== 'accepted').map((a) => JSON.stringify(a.body)), []);
    const counts = await recorded(deliveries.map((d) => d.webhookId));
    assert.deepEqual(deliveries.filter((d) => counts[d.webhookId] !== 1).map((d) => `${d.webhookId}: ${counts[d.webhookId]}`), []);
    if (left.group_batch_failures === 0) {
      // The refused batch's members each made a second D1 call.
      const twice = answers.filter((a) => /d1;desc="2 batches/.test(a.headers.get('server-timing') ?? ''));
      assert.ok(twice.length >= 2, answers.map((a) => a.headers.get('server-timing')).join(' | '));
      break;
    }
    assert.ok(tries < 5, 'no burst formed a shared batch in five tries');
  }
  assert.deepEqual(await stack.sql("SELECT sku FROM stock WHERE sku = 'injected-fault'"), [], 'the refused statement left nothing');
});

test('a leader that drops out leaves its members to write alone after the join wait; the leader is retried', async () => {
  for (let tries = 1; ; tries++) {
    await setFaults({ group_leader_drops: 1 });
    const deliveries = Array.from({ length: 16 }, () => ({ ...orderJson(), webhookId: randomUUID() }));
    // First answers as they come, without Shopify's retry: the leader's 503 is the point.
    const first = await Promise.all(deliveries.map((d) => c.send(d.raw, { webhookId: d.webhookId })));
    const left = await setFaults({});
    const refused = deliveries.filter((_, i) => first[i].status !== 200);
    if (left.group_leader_drops === 0) {
      assert.equal(refused.length, 1, first.map((a) => `${a.status} ${JSON.stringify(a.body)}`).join('\n'));
      const i = deliveries.indexOf(refused[0]);
      assert.equal(first[i].status, 503);
      assert.equal(first[i].body.error, 'storage_unavailable');
      assert.equal((await recorded([refused[0].webhookId]))[refused[0].webhookId], undefined, 'the leader wrote nothing');
      const again = await c.sendUntilAccepted(refused[0].raw, { webhookId: refused[0].webhookId });
      assert.equal(again.body.status, 'accepted');
    } else {
      assert.deepEqual(refused, []);
    }
    const counts = await recorded(deliveries.map((d) => d.webhookId));
    assert.deepEqual(deliveries.filter((d) => counts[d.webhookId] !== 1).map((d) => `${d.webhookId}: ${counts[d.webhookId]}`), []);
    if (left.group_leader_drops === 0) break;
    assert.ok(tries < 5, 'no burst formed a shared batch in five tries');
  }
});
