// Signs and sends Shopify-shaped deliveries, as Shopify does: HMAC-SHA256 of the raw bytes.
import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');

export const fixture = (name) => readFileSync(join(FIXTURES, name), 'utf8');

export const sign = (secret, raw) => createHmac('sha256', secret).update(raw).digest('base64');

/**
 * POSTs `raw` (string or Buffer) to /webhooks/shopify. `headers` overrides or removes
 * (value null) the defaults.
 */
export async function deliver(url, raw, { secret, topic = 'orders/create', shop, webhookId = randomUUID(), headers = {}, method = 'POST', triggeredAt } = {}) {
  const h = {
    'content-type': 'application/json',
    'x-shopify-hmac-sha256': sign(secret, raw),
    'x-shopify-topic': topic,
    'x-shopify-shop-domain': shop,
    'x-shopify-webhook-id': webhookId,
    'x-shopify-api-version': '2026-04',
    'x-shopify-triggered-at': triggeredAt ?? new Date().toISOString(),
    'x-shopify-event-id': randomUUID(),
  };
  for (const [k, v] of Object.entries(headers)) {
    delete h[k.toLowerCase()];
    if (v !== null) h[k] = v;
  }
  const res = await fetch(`${url}/webhooks/shopify`, { method, headers: h, body: method === 'GET' ? undefined : raw });
  const text = await res.text();
  let body = null;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: res.status, body, headers: res.headers };
}
