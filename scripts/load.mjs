// Load on the local stack: signed deliveries with fresh webhook ids against an echo baseline
// (GET /healthz, the Worker answering without storage) in the same run.
// Then the fulfilment consumer: N ready orders, a warehouse that accepts everything, and the
// rate at which submissions reach it.
// Usage: node scripts/load.mjs [--seconds 10] [--connections 16] [--orders 300]
import { randomUUID } from 'node:crypto';
import { startStack, SECRET, SHOP } from '../tests/support/stack.mjs';
import { sign, deliver } from '../tests/support/shopify.mjs';
import { orderJson } from '../tests/support/orders.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const seconds = arg('seconds', 10);
const connections = arg('connections', 16);
const fulfilmentOrders = arg('orders', 300);

const raw = orderJson().raw;

async function drive(name, makeRequest) {
  const latencies = [];
  let non2xx = 0;
  let errors = 0;
  const end = Date.now() + seconds * 1000;
  const workers = Array.from({ length: connections }, async () => {
    while (Date.now() < end) {
      const t0 = performance.now();
      try {
        const r = await makeRequest();
        await r.arrayBuffer();
        if (r.status < 200 || r.status > 299) non2xx++;
      } catch {
        errors++;
      }
      latencies.push(performance.now() - t0);
    }
  });
  const t0 = performance.now();
  await Promise.all(workers);
  const elapsed = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))];
  return { name, requests: latencies.length, rps: latencies.length / elapsed, p50: pct(50), p99: pct(99), non2xx, errors };
}

const stack = await startStack();
try {
  // Each delivery is a distinct order (as in production): the same order delivered hundreds
  // of times at once would only measure contention on one row.
  const webhook = () => {
    const o = orderJson({ financial_status: 'voided' });
    return fetch(`${stack.url}/webhooks/shopify`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-shopify-hmac-sha256': sign(SECRET, o.raw),
        'x-shopify-topic': 'orders/create',
        'x-shopify-shop-domain': SHOP,
        'x-shopify-webhook-id': randomUUID(),
      },
      body: o.raw,
    });
  };
  const echo = () => fetch(`${stack.url}/healthz`);
  // Warm both paths so the first isolate start is not measured.
  await drive('warm-up', echo);
  const results = [await drive('echo baseline (GET /healthz)', echo), await drive('signed deliveries', webhook)];
  console.log(`\n${seconds}s each, ${connections} connections, body ${raw.length} bytes`);
  console.log('path'.padEnd(32), 'requests', '   req/s', '  p50 ms', '  p99 ms', 'non-2xx', 'errors');
  for (const r of results) {
    console.log(r.name.padEnd(32), String(r.requests).padStart(8), r.rps.toFixed(0).padStart(8),
      r.p50.toFixed(1).padStart(8), r.p99.toFixed(1).padStart(8), String(r.non2xx).padStart(7), String(r.errors).padStart(6));
  }
  const rows = await stack.sql("SELECT COUNT(*) AS n FROM deliveries WHERE outcome = 'accepted'");
  console.log(`deliveries recorded: ${rows[0].n} (expected ${results[1].requests - results[1].non2xx - results[1].errors})`);

  // Fulfilment: every order ready in an auto lane; measure how fast the consumer hands them over.
  const auth = { 'content-type': 'application/json', authorization: 'Bearer e2e-admin-token' };
  await fetch(`${stack.url}/admin/segments/default/mode`, { method: 'PUT', headers: auth, body: JSON.stringify({ mode: 'auto', note: 'load' }) });
  await fetch(`${stack.url}/admin/stock`, { method: 'PUT', headers: auth, body: JSON.stringify([{ sku: 'SKU-STD', available: 1e9 }]) });
  const orders = Array.from({ length: fulfilmentOrders }, () => orderJson());
  const ids = new Set(orders.map((o) => o.id));
  const queue = [...orders];
  const t0 = Date.now();
  await Promise.all(Array.from({ length: connections }, async () => {
    while (queue.length) {
      const o = queue.shift();
      await deliver(stack.url, o.raw, { secret: SECRET, shop: SHOP });
    }
  }));
  const sentAll = Date.now();
  const accepted = () => stack.fake.requests.filter((r) => r.status === 200 && ids.has(r.json?.order_id));
  const deadline = Date.now() + 300_000;
  while (accepted().length < fulfilmentOrders && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  const got = accepted();
  const first = Math.min(...got.map((r) => r.at));
  const last = Math.max(...got.map((r) => r.at));
  console.log(`\nfulfilment: ${got.length}/${fulfilmentOrders} submitted; webhooks sent in ${((sentAll - t0) / 1000).toFixed(1)} s; ` +
    `submissions ${((last - first) / 1000).toFixed(1)} s from first to last = ${(got.length / Math.max(0.001, (last - first) / 1000)).toFixed(1)}/s; ` +
    `last one ${((last - sentAll) / 1000).toFixed(1)} s after the last webhook`);
  const submitted = await stack.sql("SELECT COUNT(*) AS n FROM orders WHERE state = 'submitted'");
  console.log(`orders submitted in D1: ${submitted[0].n}; duplicate submissions at the warehouse: ${got.length - new Set(got.map((r) => r.json.order_id)).size}`);
} finally {
  await stack.stop();
}
