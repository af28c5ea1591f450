// Order payload variants built from Shopify's documented sample, with exact 64-bit ids.
import { fixture } from './shopify.mjs';

const SAMPLE = JSON.parse(fixture('orders-create.json'));
let counter = 0;

/** A fresh 18-digit order id (beyond 2^53), as text. */
export function newOrderId() {
  counter += 1;
  return `9${String(Date.now()).slice(-10)}${String(process.pid % 100).padStart(2, '0')}${String(counter).padStart(5, '0')}`;
}

const iso = (ms) => new Date(ms).toISOString();

/**
 * Returns the raw JSON text of an order. Options: id, financial_status, country, zip,
 * lines [{sku, quantity, requires_shipping}], email, tags, total, currency, source_name,
 * createdMs, updatedMs, cancelled, shipping (false = no shipping address), billingCountry.
 */
export function orderJson(opts = {}) {
  const now = Date.now();
  const id = opts.id ?? newOrderId();
  const o = structuredClone(SAMPLE);
  o.id = '__ORDER_ID__';
  o.admin_graphql_api_id = `gid://shopify/Order/${id}`;
  o.name = opts.name ?? `#${id.slice(-6)}`;
  o.financial_status = opts.financial_status ?? 'paid';
  o.cancelled_at = opts.cancelled ? iso(opts.updatedMs ?? now) : null;
  o.cancel_reason = opts.cancelled ? 'customer' : null;
  o.created_at = iso(opts.createdMs ?? now);
  o.updated_at = iso(opts.updatedMs ?? opts.createdMs ?? now);
  o.email = opts.email ?? `buyer-${id}@example.com`;
  o.contact_email = o.email;
  o.customer = opts.customer === null ? null : { ...(o.customer || {}), email: o.email };
  o.tags = opts.tags ?? '';
  o.total_price = opts.total ?? '40.00';
  o.currency = opts.currency ?? 'USD';
  o.presentment_currency = o.currency;
  o.source_name = opts.source_name ?? 'web';
  const lines = opts.lines ?? [{ sku: 'SKU-STD', quantity: 1 }];
  o.line_items = lines.map((l, i) => ({
    ...SAMPLE.line_items[0],
    id: 1000 + i,
    sku: l.sku,
    quantity: l.quantity ?? 1,
    fulfillable_quantity: l.fulfillable_quantity ?? l.quantity ?? 1,
    requires_shipping: l.requires_shipping ?? true,
    title: l.title ?? `Item ${l.sku}`,
  }));
  if (opts.shipping === false) {
    delete o.shipping_address;
  } else {
    o.shipping_address = { ...SAMPLE.shipping_address, country_code: opts.country ?? 'US', zip: opts.zip ?? '40003',
      ...(opts.address || {}) };
  }
  o.billing_address = { ...SAMPLE.billing_address, country_code: opts.billingCountry ?? opts.country ?? 'US' };
  return { id, raw: JSON.stringify(o).replace('"__ORDER_ID__"', id) };
}

/** The risk topic body for an order. */
export function riskJson(orderId, level) {
  return `{"id":${Date.now()},"order_id":${orderId},"risk_level":"${level}","created_at":"${iso(Date.now())}"}`;
}
