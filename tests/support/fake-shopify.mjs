// A fake Shopify Admin API: a real HTTP server speaking GraphQL over POST at
// `/admin/api/<version>/graphql.json`, and the client-credentials grant at
// `/admin/oauth/access_token`. It checks `X-Shopify-Access-Token`, records every operation,
// keeps orders, fulfillment orders, holds and webhook subscriptions in memory, and can be told
// to answer the next calls throttled (GraphQL `THROTTLED` or HTTP 429), with `userErrors`, or
// with a server error.
//
// Operations are recognised by their GraphQL operation name (`query OrderlaneX(...)`); the
// Worker's queries are fixed text, so the fake needs no GraphQL parser.
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';

const MAX_AVAILABLE = 2000;
const RESTORE_RATE = 100;

const gidNum = (gid) => String(gid).split('/').pop();

/** The GraphQL shape of a webhook-shaped order body (what `orders(...)` returns). */
export function graphqlOrder(o) {
  const addr = (a) => a && {
    name: a.name ?? null, firstName: a.first_name ?? null, lastName: a.last_name ?? null,
    address1: a.address1 ?? null, address2: a.address2 ?? null, city: a.city ?? null, zip: a.zip ?? null,
    provinceCode: a.province_code ?? null, countryCodeV2: a.country_code ?? null,
  };
  const upper = (s) => (s ? String(s).toUpperCase() : null);
  return {
    id: `gid://shopify/Order/${o.id}`,
    legacyResourceId: String(o.id),
    name: o.name,
    email: o.email ?? null,
    customer: o.customer ? { legacyResourceId: o.customer.id == null ? null : String(o.customer.id) } : null,
    displayFinancialStatus: upper(o.financial_status),
    displayFulfillmentStatus: o.fulfillment_status === 'fulfilled' ? 'FULFILLED'
      : o.fulfillment_status === 'partial' ? 'PARTIALLY_FULFILLED' : 'UNFULFILLED',
    sourceName: o.source_name ?? null,
    currencyCode: o.currency ?? null,
    totalPriceSet: { shopMoney: { amount: String(o.total_price), currencyCode: o.currency ?? null } },
    tags: String(o.tags ?? '').split(',').map((t) => t.trim()).filter(Boolean),
    shippingAddress: addr(o.shipping_address),
    billingAddress: addr(o.billing_address),
    lineItems: { nodes: (o.line_items ?? []).map((l) => ({
      id: `gid://shopify/LineItem/${l.id}`, sku: l.sku ?? null, quantity: l.quantity,
      unfulfilledQuantity: l.fulfillable_quantity ?? l.quantity, requiresShipping: l.requires_shipping ?? true,
      title: l.title ?? '',
    })) },
    shippingLines: { nodes: (o.shipping_lines ?? []).map((s) => ({ title: s.title ?? null, code: s.code ?? null })) },
    createdAt: o.created_at,
    updatedAt: o.updated_at ?? o.created_at,
    cancelledAt: o.cancelled_at ?? null,
  };
}

/**
 * Starts the fake. Options: `tokens` (accepted access tokens), `clientId`/`clientSecret`
 * (the client-credentials grant, which issues tokens that expire after `expiresIn` seconds).
 * Returns { url, calls, ops(name), addOrder(), addFulfillmentOrder(), fulfillmentOrders(),
 * subscriptions, failNext(), close() }.
 */
export async function startFakeShopify({ tokens = ['shpat_e2e'], clientId, clientSecret, expiresIn = 86399 } = {}) {
  const accepted = new Set(tokens);
  const calls = [];
  const grants = [];
  /** orderId → { body (webhook shape), fos: [{ id, status, holds: [{ id, handle, reason, reasonNotes }] }] } */
  const orders = new Map();
  const subscriptions = [];
  const canned = [];
  let foSeq = 1000;
  let holdSeq = 5000;

  const cost = (requested = 10, available = MAX_AVAILABLE) => ({
    cost: { requestedQueryCost: requested, actualQueryCost: requested,
      throttleStatus: { maximumAvailable: MAX_AVAILABLE, currentlyAvailable: available, restoreRate: RESTORE_RATE } },
  });

  function answer(res, status, body, headers = {}) {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  }

  function cannedAnswer(res, c, op) {
    switch (c.kind) {
      case 'throttled':
        // Shopify's answer when the bucket cannot pay for the query: 200 with THROTTLED.
        return answer(res, 200, {
          errors: [{ message: 'Throttled', extensions: { code: 'THROTTLED',
            documentation: 'https://shopify.dev/api/usage/rate-limits' } }],
          extensions: cost(c.requested ?? 200, c.available ?? 0),
        });
      case '429':
        return answer(res, 429, { errors: 'Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service.' },
          { 'retry-after': String(c.retryAfter ?? 1) });
      case 'userErrors': {
        if (op === 'OrderlaneSubscribe') {
          return answer(res, 200, { data: { webhookSubscriptionCreate: { webhookSubscription: null,
            userErrors: [{ field: ['webhookSubscription', 'uri'], message: c.message ?? 'Address is invalid' }] } },
            extensions: cost() });
        }
        const field = op === 'OrderlaneHold' ? 'fulfillmentOrderHold' : 'fulfillmentOrderReleaseHold';
        return answer(res, 200, { data: { [field]: { fulfillmentHold: null, fulfillmentOrder: null,
          userErrors: [{ field: ['id'], message: c.message ?? 'The fulfillment order is not in a holdable state.', code: c.code ?? 'INVALID_FULFILLMENT_ORDER' }] } },
          extensions: cost() });
      }
      default:
        return answer(res, c.status ?? 500, { errors: 'Internal Server Error' });
    }
  }

  function holdOp(v) {
    const fo = [...orders.values()].flatMap((o) => o.fos).find((f) => f.id === v.id);
    if (!fo) return { fulfillmentHold: null, userErrors: [{ field: ['id'], message: 'Fulfillment order does not exist.', code: 'FULFILLMENT_ORDER_NOT_FOUND' }] };
    const h = v.fulfillmentHold ?? {};
    if (fo.holds.some((x) => x.handle === (h.handle ?? ''))) {
      return { fulfillmentHold: null, userErrors: [{ field: ['fulfillmentHold', 'handle'], message: 'The handle provided for the fulfillment hold is already in use by this app for another hold on this fulfillment order.', code: 'DUPLICATE_FULFILLMENT_HOLD_HANDLE' }] };
    }
    const hold = { id: `gid://shopify/FulfillmentHold/${holdSeq++}`, handle: h.handle ?? '', reason: h.reason, reasonNotes: h.reasonNotes ?? null, byApp: true };
    fo.holds.push(hold);
    fo.status = 'ON_HOLD';
    return { fulfillmentHold: { id: hold.id, handle: hold.handle, reason: hold.reason },
      fulfillmentOrder: { id: fo.id, status: fo.status }, userErrors: [] };
  }

  function releaseOp(v) {
    const fo = [...orders.values()].flatMap((o) => o.fos).find((f) => f.id === v.id);
    if (!fo) return { fulfillmentOrder: null, userErrors: [{ field: ['id'], message: 'Fulfillment order does not exist.', code: 'FULFILLMENT_ORDER_NOT_FOUND' }] };
    const ids = v.holdIds ?? fo.holds.map((h) => h.id);
    fo.holds = fo.holds.filter((h) => !ids.includes(h.id));
    if (fo.holds.length === 0 && fo.status === 'ON_HOLD') fo.status = 'OPEN';
    return { fulfillmentOrder: { id: fo.id, status: fo.status }, userErrors: [] };
  }

  function ordersOp(v) {
    const m = /updated_at:>='?([^' ]+)'?/.exec(v.query ?? '');
    const since = m ? Date.parse(m[1]) : 0;
    const all = [...orders.values()].map((o) => o.body)
      .filter((b) => Date.parse(b.updated_at ?? b.created_at) >= since)
      .sort((a, b) => Date.parse(a.updated_at ?? a.created_at) - Date.parse(b.updated_at ?? b.created_at)
        || String(a.id).localeCompare(String(b.id)));
    const start = v.after ? Number(v.after) : 0;
    const first = Math.min(v.first ?? 50, 250);
    const page = all.slice(start, start + first);
    const end = start + page.length;
    return { orders: { nodes: page.map(graphqlOrder),
      pageInfo: { hasNextPage: end < all.length, endCursor: page.length ? String(end) : null } } };
  }

  function fulfillmentOrdersOp(v) {
    const o = orders.get(gidNum(v.id));
    if (!o) return { order: null };
    return { order: { id: v.id, fulfillmentOrders: { nodes: o.fos.map((f) => ({
      id: f.id, status: f.status,
      fulfillmentHolds: f.holds.map((h) => ({ id: h.id, handle: h.handle, reason: h.reason, heldByRequestingApp: !!h.byApp })),
    })) } } };
  }

  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      if (req.method === 'POST' && req.url === '/admin/oauth/access_token') {
        let p = {};
        try { p = JSON.parse(raw); } catch { p = Object.fromEntries(new URLSearchParams(raw)); }
        grants.push({ at: Date.now(), ...p, client_secret: p.client_secret ? '(given)' : undefined });
        if (p.grant_type !== 'client_credentials' || p.client_id !== clientId || p.client_secret !== clientSecret) {
          return answer(res, 400, { error: 'invalid_client', error_description: 'Client authentication failed' });
        }
        const t = `shpat_cc_${randomUUID().slice(0, 8)}`;
        accepted.add(t);
        return answer(res, 200, { access_token: t, scope: 'read_orders,write_merchant_managed_fulfillment_orders', expires_in: expiresIn });
      }
      const gm = /^\/admin\/api\/([0-9]{4}-[0-9]{2})\/graphql\.json$/.exec(req.url);
      if (req.method !== 'POST' || !gm) return answer(res, 404, { errors: 'Not Found' });
      let body;
      try { body = JSON.parse(raw); } catch { return answer(res, 400, { errors: 'bad JSON' }); }
      const op = /(?:query|mutation)\s+(\w+)/.exec(body.query ?? '')?.[1] ?? 'anonymous';
      const token = req.headers['x-shopify-access-token'];
      const call = { at: Date.now(), op, version: gm[1], variables: body.variables ?? {}, token, answered: null };
      calls.push(call);
      if (!token || !accepted.has(token)) {
        call.answered = 401;
        return answer(res, 401, { errors: '[API] Invalid API key or access token (unrecognized login or wrong password)' });
      }
      const c = canned.findIndex((x) => !x.op || x.op === op);
      if (c >= 0) {
        const [hit] = canned.splice(c, 1);
        call.answered = hit.kind;
        return cannedAnswer(res, hit, op);
      }
      call.answered = 200;
      const v = body.variables ?? {};
      let data;
      switch (op) {
        case 'OrderlaneFulfillmentOrders': data = fulfillmentOrdersOp(v); break;
        case 'OrderlaneHold': data = { fulfillmentOrderHold: holdOp(v) }; break;
        case 'OrderlaneRelease': data = { fulfillmentOrderReleaseHold: releaseOp(v) }; break;
        case 'OrderlaneOrders': data = ordersOp(v); break;
        case 'OrderlaneFulfillmentOrder': {
          const hit = [...orders.entries()].find(([, o]) => o.fos.some((f) => f.id === v.id));
          const fo = hit?.[1].fos.find((f) => f.id === v.id);
          data = { fulfillmentOrder: fo ? { id: fo.id, status: fo.status, orderId: `gid://shopify/Order/${hit[0]}` } : null };
          break;
        }
        case 'OrderlaneSubscriptions':
          data = { webhookSubscriptions: { nodes: subscriptions.map((s) => ({ id: s.id, topic: s.topic, uri: s.uri })),
            pageInfo: { hasNextPage: false, endCursor: null } } };
          break;
        case 'OrderlaneSubscribe': {
          const s = { id: `gid://shopify/WebhookSubscription/${holdSeq++}`, topic: v.topic, uri: v.webhookSubscription?.uri };
          if (subscriptions.some((x) => x.topic === s.topic && x.uri === s.uri)) {
            data = { webhookSubscriptionCreate: { webhookSubscription: null,
              userErrors: [{ field: ['webhookSubscription', 'callbackUrl'], message: 'Address for this topic has already been taken' }] } };
          } else {
            subscriptions.push(s);
            data = { webhookSubscriptionCreate: { webhookSubscription: s, userErrors: [] } };
          }
          break;
        }
        default:
          return answer(res, 200, { errors: [{ message: `unknown operation ${op}` }] });
      }
      return answer(res, 200, { data, extensions: cost() });
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    calls,
    grants,
    subscriptions,
    /** Calls of one operation, oldest first. */
    ops: (name) => calls.filter((c) => c.op === name),
    /** Adds (or replaces) an order from its webhook-shaped JSON, with `fos` open fulfillment orders. */
    addOrder(raw, { fos = 1 } = {}) {
      const body = typeof raw === 'string' ? JSON.parse(raw.replace(/"id":(\d{16,})/, '"id":"$1"')) : raw;
      const id = String(body.id);
      const prior = orders.get(id);
      const list = prior?.fos ?? Array.from({ length: fos }, () => ({ id: `gid://shopify/FulfillmentOrder/${foSeq++}`, status: 'OPEN', holds: [] }));
      orders.set(id, { body: { ...body, id }, fos: list });
      return list.map((f) => f.id);
    },
    /** The order's fulfillment orders as the fake holds them. */
    fulfillmentOrders: (orderId) => orders.get(String(orderId))?.fos ?? [],
    /** A hold placed by staff in the Shopify admin (no app, empty handle). */
    staffHold(foId, reason = 'OTHER') {
      const fo = [...orders.values()].flatMap((o) => o.fos).find((f) => f.id === foId);
      const hold = { id: `gid://shopify/FulfillmentHold/${holdSeq++}`, handle: '', reason, byApp: false };
      fo.holds.push(hold);
      fo.status = 'ON_HOLD';
      return hold;
    },
    /** Staff releasing every hold of a fulfillment order in the Shopify admin. */
    staffRelease(foId) {
      const fo = [...orders.values()].flatMap((o) => o.fos).find((f) => f.id === foId);
      const ids = fo.holds.map((h) => h.id);
      fo.holds = [];
      fo.status = 'OPEN';
      return ids;
    },
    /**
     * Answers the next call (of operation `op`, or any) with `kind`: 'throttled'
     * ({ requested, available }), '429' ({ retryAfter }), 'userErrors' ({ message, code }),
     * or 'error' ({ status }).
     */
    failNext(kind, opts = {}) { canned.push({ kind, ...opts }); },
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  };
}
