// Shared e2e helpers over one running stack: deliveries, order views, waiting for states,
// firing the cron, and the fake warehouse's log. One copy instead of one per suite.
import { admin, adminNow, eventually, SECRET, SHOP } from './stack.mjs';
import { randomUUID } from 'node:crypto';
import { deliver } from './shopify.mjs';

/** Helpers bound to `stack` (from `startStack`). */
export function client(stack) {
  const send = (raw, opts = {}) =>
    deliver(stack.url, raw, { secret: SECRET, shop: SHOP, topic: 'orders/create', ...opts });
  const view = async (id, shop = SHOP) => (await admin(stack, 'GET', `/orders/${shop}/${id}`)).body;
  const stateOf = async (id, shop = SHOP) => {
    const v = await view(id, shop);
    return v?.order ? (v.order.reason ? `${v.order.state}/${v.order.reason}` : v.order.state) : null;
  };
  const waitState = (id, want, timeoutMs = 60_000, shop = SHOP) =>
    eventually(async () => {
      const s = await stateOf(id, shop);
      return (Array.isArray(want) ? want.includes(s) : s === want) && s;
    }, { timeoutMs, what: `order ${id} to reach ${want}` });
  /** Runs the 15-minute cron once, now. */
  const fireCron = async () => {
    const r = await fetch(`${stack.url}/__scheduled?cron=*/15+*+*+*+*`);
    await r.text();
    return r.status;
  };
  /** Warehouse requests for an order: `kind` 'submit' (default) or 'cancel'. */
  const posts = (id, kind = 'submit') =>
    stack.fake.requests.filter((r) => r.path.startsWith('/fulfilments') && r.json?.order_id === id
      && (r.json?.kind ?? 'submit') === kind);
  const stock = async (sku) => {
    const rows = (await admin(stack, 'GET', '/stock')).body.stock;
    return rows.find((r) => r.sku === sku)?.available ?? null;
  };
  const reservations = async (id) =>
    stack.sql(`SELECT sku, quantity, submitted_ms FROM reservations WHERE order_id = '${id}' ORDER BY sku`);
  const act = (id, action, body, shop = SHOP) => admin(stack, 'POST', `/orders/${shop}/${id}/${action}`, body);
  /** A lane switch; returns after routing's copy of the mode expired unless `{ wait: false }`. */
  const setMode = (lane, mode, note = 'e2e', { wait = true } = {}) =>
    (wait ? admin : adminNow)(stack, 'PUT', `/segments/${lane}/mode`, { mode, note });

  /**
   * Delivers like Shopify does after a 429 or 5xx answer: the same webhook id again, after the
   * answer's Retry-After (or 1 s, at most 5 s), until another answer or `timeoutMs`. Returns
   * the last answer.
   */
  const sendUntilAccepted = async (raw, opts = {}, timeoutMs = 30_000) => {
    const webhookId = opts.webhookId ?? randomUUID();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await send(raw, { ...opts, webhookId });
      const retryable = r.status >= 500 || r.status === 429;
      if (!retryable || Date.now() > deadline) return r;
      const wait = Number(r.headers.get('retry-after')) || 1;
      await sleep(Math.min(wait, 5) * 1000);
    }
  };
  /** The order's audit rows, oldest first. */
  const timeline = async (id, shop = SHOP) => (await view(id, shop))?.timeline ?? [];
  /** Waits for an audit row of `event` for the order; returns it. */
  const waitEvent = (id, event, timeoutMs = 30_000, shop = SHOP) =>
    eventually(async () => (await timeline(id, shop)).find((r) => r.event === event),
      { timeoutMs, what: `audit event ${event} for order ${id}` });
  /** Waits until the fake warehouse has received at least `n` requests of `kind` for the order. */
  const waitPosts = (id, n = 1, kind = 'submit', timeoutMs = 30_000) =>
    eventually(() => posts(id, kind).length >= n && posts(id, kind),
      { timeoutMs, what: `${n} ${kind} request(s) for order ${id} at the warehouse` });
  /** The order's `orders` row as stored (every column, new ones included). */
  const orderRow = async (id, shop = SHOP) =>
    (await stack.sql(`SELECT * FROM orders WHERE shop = '${shop}' AND order_id = '${id}'`))[0] ?? null;
  /** The order's dead letters. */
  const deadLetters = async (id, shop = SHOP) =>
    stack.sql(`SELECT * FROM dead_letters WHERE shop = '${shop}' AND order_id = '${id}' ORDER BY id`);
  /** Local fault injection (ALLOW_FAULTS=1 stacks only), e.g. { kv_read_failures: 3 }. */
  const faults = (body) => admin(stack, 'POST', '/faults', body);
  /**
   * Where the order's audit rows break the chain: each row's from_state must be the previous
   * row's to_state, and the last to_state the order's state. Returns a list of problems.
   */
  const chainProblems = async (id, shop = SHOP) => {
    const v = await view(id, shop);
    const rows = (v?.timeline ?? []).filter((r) => r.to_state !== null || r.from_state !== null);
    const problems = [];
    for (let i = 1; i < rows.length; i++) {
      if (rows[i].from_state !== rows[i - 1].to_state) {
        problems.push(`row ${rows[i].id} (${rows[i].event}) from ${rows[i].from_state}, previous row ended in ${rows[i - 1].to_state}`);
      }
    }
    if (rows.length && rows.at(-1).to_state !== v.order.state) {
      problems.push(`last row ends in ${rows.at(-1).to_state}, order is ${v.order.state}`);
    }
    return problems;
  };
  return {
    send, view, stateOf, waitState, fireCron, posts, stock, reservations, act, setMode,
    sendUntilAccepted, timeline, waitEvent, waitPosts, orderRow, deadLetters, faults, chainProblems,
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
