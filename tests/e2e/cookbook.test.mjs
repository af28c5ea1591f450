// The README's ops cookbook stays true: every `wrangler d1 execute` query in it runs against
// a local stack that has routed, submitted, held and dead-lettered orders.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startStack, admin, eventually, SECRET, SHOP } from '../support/stack.mjs';
import { deliver } from '../support/shopify.mjs';
import { orderJson } from '../support/orders.mjs';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const QUERY = /npx wrangler d1 execute orderlane --local --command "([^"]+)"/g;
const queries = [...README.matchAll(QUERY)].map((m) => m[1].trim());

let stack;
let heldId;
before(async () => {
  stack = await startStack({ vars: { RETRY_DELAY_SCALE: '0.0001' } });
  stack.fake.setBehaviour((req) => (req.json?.order_name === '#refuse' ? { status: 422 } : { status: 200 }));
  await admin(stack, 'PUT', '/segments/default/mode', { mode: 'auto', note: 'cookbook' });
  await admin(stack, 'PUT', '/stock', [{ sku: 'SKU-STD', available: 100 }]);
  const ok = orderJson();
  const held = orderJson({ financial_status: 'voided' });
  const refused = orderJson({ name: '#refuse' });
  heldId = held.id;
  for (const o of [ok, held, refused]) await deliver(stack.url, o.raw, { secret: SECRET, shop: SHOP });
  await eventually(async () => {
    const r = await admin(stack, 'GET', `/orders/${SHOP}/${refused.id}`);
    return r.body?.order?.reason === 'fulfilment';
  }, { what: 'the refused order to be dead-lettered' });
});
after(async () => { await stack?.stop(); });

test('the README has the cookbook queries', () => {
  assert.ok(queries.length >= 8, `found ${queries.length}`);
});

test('every cookbook query runs and the backlog query sees the held order', async () => {
  for (const q of queries) {
    const sql = q.replaceAll("'demo.myshopify.com'", `'${SHOP}'`).replaceAll("'820982911946154508'", `'${heldId}'`);
    const rows = await stack.wranglerSql(sql);
    assert.ok(Array.isArray(rows), sql);
  }
  const backlog = await stack.wranglerSql(queries.find((q) => q.includes('oldest_minutes')));
  assert.ok(backlog.some((r) => r.reason === 'payment' && r.orders >= 1), JSON.stringify(backlog));
  const dead = await stack.wranglerSql(queries.find((q) => q.includes('FROM dead_letters WHERE resolved_ms IS NULL')));
  assert.equal(dead.length, 1);
  assert.equal(dead[0].cause, 'refused');
  const timeline = await stack.wranglerSql(queries.find((q) => q.includes('ORDER BY id')).replaceAll("'demo.myshopify.com'", `'${SHOP}'`).replaceAll("'820982911946154508'", `'${heldId}'`));
  assert.ok(timeline.some((r) => r.to_state === 'hold' && r.reason === 'payment'), JSON.stringify(timeline));
});
