// A model-based soak test: one seeded random run of webhook deliveries, operator actions,
// lane flips and warehouse failures against the real Worker under `wrangler dev`, then a
// quiet period, then the lifecycle invariants checked against the client-side log of
// completed operations, the fake warehouse's log and D1.
//
// A seed fixes the plan: order ids, bodies, webhook ids, the schedule of every operation,
// and the warehouse's answer to the n-th request under each Idempotency-Key. Timing (what the
// Worker sees when) is not reproducible; the sequence of operations is.
import { startStack, admin, SHOP } from '../support/stack.mjs';
import { client, sleep } from '../support/api.mjs';
import { orderJson } from '../support/orders.mjs';

export const FULFILMENT_TIMEOUT_MS = 2000;
export const STACK_VARS = { RETRY_DELAY_SCALE: '0.0001', FULFILMENT_TIMEOUT_MS: String(FULFILMENT_TIMEOUT_MS) };
/** Client-side times are compared with server-side ones with this much slack. */
export const MARGIN_MS = 1000;
export const LANES = ['pos', 'wholesale', 'eu', 'default'];
const READY = 'ready-for-fulfilment';
const MAX_OFFENDERS = 25;

// ---------------------------------------------------------------------------------------------
// Seeded randomness

/** mulberry32: a small, fast 32-bit PRNG; the same seed gives the same stream. */
export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a of a string, for deriving independent streams from (seed, name). */
function hash32(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function rng(seed) {
  const next = mulberry32(seed);
  const r = {
    f: next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    chance: (p) => next() < p,
    pick: (arr) => arr[Math.floor(next() * arr.length)],
    /** weights: { value: weight } */
    weighted: (weights) => {
      const entries = Object.entries(weights);
      const total = entries.reduce((s, [, w]) => s + w, 0);
      let x = next() * total;
      for (const [k, w] of entries) {
        if ((x -= w) < 0) return k;
      }
      return entries.at(-1)[0];
    },
    uuid: () => {
      const hex = Array.from({ length: 32 }, () => Math.floor(next() * 16).toString(16)).join('');
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
    },
  };
  return r;
}

// ---------------------------------------------------------------------------------------------
// The plan: everything the run will do, decided up front from the seed

const LANE_SHAPE = {
  default: () => ({ country: 'US', zip: '40003', currency: 'USD', source_name: 'web', tags: '' }),
  pos: () => ({ country: 'US', zip: '40003', currency: 'USD', source_name: 'pos', tags: '' }),
  wholesale: () => ({ country: 'US', zip: '40003', currency: 'USD', source_name: 'web', tags: 'wholesale' }),
  eu: (r) => (r.chance(0.5)
    ? { country: 'DE', zip: '10115', currency: 'EUR', source_name: 'web', tags: '' }
    : { country: 'FR', zip: '75001', currency: 'EUR', source_name: 'web', tags: '' }),
};
const BROKEN_ZIP = 'NOT-A-ZIP';
const iso = (ms) => new Date(ms).toISOString();

/** A risk assessment body (the shape of tests/support/orders.mjs riskJson, with fixed ids and time). */
function riskBody(riskId, orderId, level, createdMs) {
  return `{"id":${riskId},"order_id":${orderId},"risk_level":"${level}","created_at":"${iso(createdMs)}"}`;
}

/**
 * Builds the run's plan from the seed. `baseMs` anchors Shopify timestamps (created_at and
 * updated_at); everything else is relative. Returns { skus, orders, ops }; op.at is ms after
 * the start of the drive phase.
 */
export function planRun(seed, { orders: nOrders = 40, durationMs = 30_000, baseMs = Date.now() } = {}) {
  const r = rng(hash32(`plan:${seed}`));
  const nSkus = Math.max(5, Math.ceil(nOrders / 8));
  const skus = Array.from({ length: nSkus }, (_, i) => ({ sku: `SOAK-${String.fromCharCode(65 + (i % 26))}${i >= 26 ? Math.floor(i / 26) : ''}`, loaded: r.int(3, 10) }));
  const ops = [];
  const orders = [];
  const seedPart = String(Math.abs(seed) % 10_000_000).padStart(7, '0');

  for (let i = 0; i < nOrders; i++) {
    const id = `8${seedPart}${String(i + 1).padStart(10, '0')}`; // 18 digits, beyond 2^53
    const lane = r.weighted({ default: 40, eu: 25, pos: 15, wholesale: 20 });
    const shape = LANE_SHAPE[lane](r);
    const nLines = r.chance(0.3) ? 2 : 1;
    const chosen = new Set();
    while (chosen.size < Math.min(nLines, skus.length)) chosen.add(r.pick(skus).sku);
    let lines = [...chosen].map((sku) => ({ sku, quantity: r.chance(0.25) ? 2 : 1 }));
    const fin0 = lane === 'wholesale'
      ? r.weighted({ paid: 50, authorized: 30, pending: 20 })
      : r.weighted({ paid: 65, pending: 35 });
    const createdMs = baseMs - 60_000 + i * 10;
    const email = `soak-${seed}-${i}@example.com`;

    // Shopify's versions of the order, oldest first.
    const versions = [];
    let cur = { financial_status: fin0, lines, zip: shape.zip, cancelled: false };
    const version = (topic, label, patch) => {
      cur = { ...cur, ...patch };
      const updatedMs = createdMs + versions.length * 1000;
      const { raw } = orderJson({
        id, email, createdMs, updatedMs, financial_status: cur.financial_status, lines: cur.lines,
        country: shape.country, zip: cur.zip, currency: shape.currency, source_name: shape.source_name,
        tags: shape.tags, cancelled: cur.cancelled,
      });
      versions.push({ topic, label, raw, updatedMs, webhookId: r.uuid() });
    };
    version('orders/create', 'create', {});
    const middle = [];
    if (fin0 === 'pending') middle.push(['orders/paid', 'paid', { financial_status: 'paid' }]);
    if (r.chance(0.25)) middle.push(['orders/updated', 'edit-quantity', null]);
    if (r.chance(0.15)) {
      middle.push(['orders/updated', 'address-break', { zip: BROKEN_ZIP }]);
      if (r.chance(0.7)) middle.push(['orders/updated', 'address-fix', { zip: shape.zip }]);
    }
    for (const [topic, label, patch] of middle) {
      if (label === 'edit-quantity') {
        lines = cur.lines.map((l, k) => (k === 0 ? { ...l, quantity: l.quantity === 1 ? 2 : 1 } : l));
        version(topic, label, { lines });
      } else {
        version(topic, label, patch);
      }
    }
    const cancels = r.chance(0.15);
    if (cancels) version('orders/cancelled', 'cancel', { cancelled: true });

    // Deliveries: the versions (sometimes two adjacent ones swapped), risk verdicts,
    // duplicates (same webhook id) and stale resends of an older version.
    const start = Math.floor(r.f() * 0.7 * durationMs);
    const deliveries = versions.map((v) => ({ ...v, triggeredAt: iso(v.updatedMs) }));
    const risks = [];
    if (lane === 'eu' || r.chance(0.1)) {
      const level = lane === 'eu' ? r.weighted({ low: 80, medium: 10, high: 10 }) : r.weighted({ low: 70, medium: 30 });
      const riskCreated = createdMs + 500;
      risks.push({ topic: 'orders/risk_assessment_changed', label: `risk-${level}`, raw: riskBody(Number(id.slice(-9)) + 7, id, level, riskCreated),
        webhookId: r.uuid(), triggeredAt: iso(riskCreated) });
    }
    for (const k of risks) deliveries.splice(r.int(1, deliveries.length), 0, k);
    let t = start;
    const times = deliveries.map(() => (t += r.int(100, 1500)));
    if (deliveries.length > 1 && r.chance(0.2)) {
      const k = r.int(0, deliveries.length - 2);
      [times[k], times[k + 1]] = [times[k + 1], times[k]];
    }
    deliveries.forEach((d, k) => ops.push({ type: 'delivery', at: times[k], orderId: id, ...d }));
    for (const [k, d] of deliveries.entries()) {
      if (r.chance(0.12)) ops.push({ type: 'delivery', at: times[k] + r.int(50, 3000), orderId: id, ...d, label: `${d.label}-dup`, duplicate: true });
    }
    const last = Math.max(...times);
    if (versions.length >= 2 && r.chance(0.1)) {
      const old = versions[r.int(0, versions.length - 2)];
      ops.push({ type: 'delivery', at: last + r.int(100, 2000), orderId: id, topic: 'orders/updated', label: `stale-${old.label}`,
        raw: old.raw, updatedMs: old.updatedMs, webhookId: r.uuid(), triggeredAt: iso(old.updatedMs), stale: true });
    }

    // Operator actions on this order.
    const nActions = r.chance(0.4) ? (r.chance(0.3) ? 2 : 1) : 0;
    for (let a = 0; a < nActions; a++) {
      const action = r.weighted({ hold: 35, release: 30, 'force-ready': 20, stop: 15 });
      ops.push({ type: 'action', at: r.int(Math.min(...times) + 300, last + 2500), orderId: id, action, note: `soak ${seed}: ${action}` });
    }
    orders.push({ id, lane, lines: versions[0] && JSON.parse(versions[0].raw).line_items.map((l) => ({ sku: l.sku, quantity: l.quantity })), cancels, versions: versions.length });
  }

  // Lane flips, spread over the run: a lane leaves auto, and most of the time comes back.
  const nFlips = Math.max(3, Math.round(nOrders / 15));
  for (let k = 0; k < nFlips; k++) {
    const at = Math.floor(durationMs * (0.05 + (0.75 * (k + r.f())) / nFlips));
    const lane = r.pick(LANES);
    const mode = r.weighted({ manual: 60, shadow: 40 });
    ops.push({ type: 'flip', at, lane, mode, note: `soak ${seed}: ${lane} -> ${mode}` });
    if (r.chance(0.8)) {
      ops.push({ type: 'flip', at: at + r.int(1500, 5000), lane, mode: 'auto', note: `soak ${seed}: ${lane} back to auto` });
    }
  }
  ops.sort((a, b) => a.at - b.at);
  ops.forEach((op, n) => { op.n = n; });
  return { seed, skus, orders, ops };
}

// ---------------------------------------------------------------------------------------------
// The warehouse: an idempotent fake whose answer to the n-th request under a key is seeded

const SUBMIT_ANSWERS = { ok: 50, '503': 12, '429': 8, hang: 6, '400': 3, oos: 6, delayed: 12, late: 3 };
const CANCEL_ANSWERS = { ok: 55, '503': 13, '429': 8, shipped: 12, '400': 4, delayed: 8 };

export function makeWarehouse(seed) {
  const log = []; // one entry per request to /fulfilments
  const accepted = new Map(); // Idempotency-Key -> { at, orderId, kind }
  const seen = new Map(); // Idempotency-Key -> requests so far
  let quiescing = false;
  let lastActivity = 0;

  function answerFor(kind, key, n, json) {
    const r = rng(hash32(`warehouse:${seed}:${key}:${n}`));
    const pick = r.weighted(kind === 'cancel' ? CANCEL_ANSWERS : SUBMIT_ANSWERS);
    switch (pick) {
      case 'ok': return { label: '200', accept: true, answer: { status: 200, body: '{"ok":true}' } };
      case 'delayed': return { label: '200-delayed', accept: true, answer: { status: 200, body: '{"ok":true}', delayMs: r.int(100, 1500) } };
      case 'late': return { label: '200-after-timeout', accept: true, answer: { status: 200, body: '{"ok":true}', delayMs: FULFILMENT_TIMEOUT_MS + r.int(200, 1000) } };
      case '503': return { label: '503', answer: { status: 503, body: '{"error":"unavailable"}' } };
      case '429': return { label: '429', answer: { status: 429, body: '{"error":"slow_down"}', headers: { 'retry-after': '1' } } };
      case 'hang': return { label: 'hang', answer: { hang: true, hangMs: FULFILMENT_TIMEOUT_MS + r.int(500, 1500) } };
      case '400': return { label: '400', answer: { status: 400, body: '{"error":"invalid_document"}' } };
      case 'oos': return { label: '409-out_of_stock', answer: { status: 409, body: JSON.stringify({ error: 'out_of_stock', sku: json?.lines?.[0]?.sku ?? null }) } };
      case 'shipped': return { label: '409-already_shipped', answer: { status: 409, body: '{"error":"already_shipped"}' } };
      default: throw new Error(pick);
    }
  }

  function behaviour(entry) {
    if (!entry.path.startsWith('/fulfilments')) return { status: 200 }; // alerts and anything else
    const json = entry.json;
    const kind = json?.kind ?? 'submit';
    const key = entry.headers['idempotency-key'] ?? '(no key)';
    const orderId = json?.order_id ?? null;
    const n = seen.get(key) ?? 0;
    seen.set(key, n + 1);
    let d;
    if (accepted.has(key)) {
      d = { label: '200-replayed', replayed: true, answer: { status: 200, body: '{"ok":true,"replayed":true}' } };
    } else if (quiescing) {
      d = { label: '200', accept: true, answer: { status: 200, body: '{"ok":true}' } };
    } else {
      d = answerFor(kind, key, n, json);
    }
    // A real warehouse applies an accepted key at once, even if its answer is slow.
    if (d.accept) accepted.set(key, { at: entry.at, orderId, kind });
    const a = d.answer;
    const answeredAt = a.hang ? null : entry.at + (a.delayMs ?? 0);
    // orderlane's attempt is over when the answer arrives or its timeout fires, whichever is first.
    const end = entry.at + Math.min(a.hang ? a.hangMs : (a.delayMs ?? 0), FULFILMENT_TIMEOUT_MS);
    log.push({
      at: entry.at, answeredAt, end, kind, key, orderId, n, label: d.label,
      status: a.hang ? null : a.status, accepted: !!d.accept, replayed: !!d.replayed,
      signatureValid: entry.signatureValid, submission: json?.submission ?? null,
      skus: Array.isArray(json?.lines) ? json.lines.map((l) => `${l.sku}x${l.quantity}`) : [],
    });
    lastActivity = Math.max(lastActivity, answeredAt ?? entry.at);
    return a;
  }

  return {
    behaviour,
    log,
    accepted,
    quiesce() { quiescing = true; },
    lastActivity: () => lastActivity,
  };
}

// ---------------------------------------------------------------------------------------------
// Driving the stack

async function withRetries(fn, tries = 3) {
  let last;
  for (let k = 0; k < tries; k++) {
    try {
      last = await fn();
      if (last.status < 500 && last.status !== 429) return last;
    } catch (e) {
      last = { status: 'error', body: String(e?.message ?? e) };
    }
    await sleep(300 * (k + 1));
  }
  return last;
}

async function execute(stack, c, op) {
  op.startedAt = Date.now();
  let res;
  if (op.type === 'delivery') {
    // Shopify retries a delivery that did not get a 2xx, with the same webhook id.
    res = await withRetries(() => c.send(op.raw, { topic: op.topic, webhookId: op.webhookId, triggeredAt: op.triggeredAt }));
    op.outcome = res.status === 200 ? (res.body?.status ?? 'ok') : `http-${res.status}`;
  } else if (op.type === 'action') {
    res = await withRetries(() => c.act(op.orderId, op.action, { note: op.note }));
    op.outcome = res.status === 200 ? 'ok' : `${res.status}${res.body?.error ? ` ${res.body.error}` : ''}`;
  } else if (op.type === 'flip') {
    // Returns at the answer: orders right after a switch meet routing's copy of the old mode,
    // and the send-time check must still stop them.
    res = await withRetries(() => c.setMode(op.lane, op.mode, op.note, { wait: false }));
    op.outcome = res.status === 200 ? 'ok' : `${res.status}${res.body?.error ? ` ${res.body.error}` : ''}`;
  }
  op.status = res.status;
  op.completedAt = Date.now();
  return op;
}

/** Runs ops at their scheduled times (relative to t0), at most `limit` at once. */
async function drive(stack, c, ops, { limit = 8, log }) {
  const t0 = Date.now();
  const running = new Set();
  let done = 0;
  let lastReport = t0;
  for (const op of ops) {
    const wait = t0 + op.at - Date.now();
    if (wait > 0) await sleep(wait);
    while (running.size >= limit) await Promise.race(running);
    const p = execute(stack, c, op).finally(() => { running.delete(p); done += 1; });
    running.add(p);
    if (Date.now() - lastReport > 10_000) {
      lastReport = Date.now();
      log(`  ${done}/${ops.length} operations done after ${Math.round((Date.now() - t0) / 1000)} s`);
    }
  }
  await Promise.all(running);
  return Date.now() - t0;
}

const q = (s) => `'${String(s).replace(/'/g, "''")}'`;

/** Waits until no attempt is in flight and the warehouse has been quiet for `quietMs`. */
// A ready order whose message was lost is re-sent by the cron once it is a minute overdue
// (README, "Nothing waits for ever"): with ready orders left, wait at least that long.
const RECOVERY_MS = 75_000;

async function quiesce(stack, c, warehouse, finalModes, { quietMs, maxMs, cronEveryMs = 5000, minCrons = 3, log }) {
  warehouse.quiesce();
  const started = Date.now();
  const deadline = started + maxMs;
  let crons = 0;
  let lastCron = 0;
  let last = null;
  while (Date.now() < deadline) {
    if (Date.now() - lastCron >= cronEveryMs) {
      await c.fireCron();
      crons += 1;
      lastCron = Date.now();
    }
    const now = Date.now();
    const rows = await stack.sql(`SELECT segment, COUNT(*) AS ready, SUM(CASE WHEN lease_until > ${now} THEN 1 ELSE 0 END) AS in_flight
      FROM orders WHERE state = '${READY}' GROUP BY segment`);
    const inFlight = rows.reduce((s, x) => s + (x.in_flight ?? 0), 0);
    const readyAuto = rows.filter((x) => finalModes[x.segment] === 'auto').reduce((s, x) => s + x.ready, 0);
    // Quiet: no warehouse call for quietMs, and a cron has run since the last one and found
    // nothing to send. (Measuring from the last cron instead would never reach quietMs while
    // the crons come every cronEveryMs < quietMs.)
    const quietFor = Date.now() - warehouse.lastActivity();
    const cronSince = lastCron > warehouse.lastActivity();
    last = { inFlight, readyAuto, quietFor, cronSince, crons };
    const recovered = crons >= minCrons && Date.now() - started >= RECOVERY_MS;
    if (inFlight === 0 && quietFor >= quietMs && cronSince && (readyAuto === 0 || recovered)) {
      return { quiesced: true, ms: Date.now() - started, ...last };
    }
    await sleep(1000);
  }
  log(`  quiesce gave up after ${maxMs} ms: ${JSON.stringify(last)}`);
  return { quiesced: false, ms: Date.now() - started, ...last };
}

// ---------------------------------------------------------------------------------------------
// Invariants

function result(id, name, offenders, extra = {}) {
  return { id, name, pass: offenders.length === 0, count: offenders.length, offenders: offenders.slice(0, MAX_OFFENDERS), ...extra };
}

const stateText = (state, reason) => (reason ? `${state}/${reason}` : state);

/** The model: what the client log says happened to each order and lane, with completion times. */
function modelOf(plan) {
  const cancelAt = new Map();
  const stopAt = new Map();
  const holds = new Map();
  const releases = new Map();
  const flips = Object.fromEntries(LANES.map((l) => [l, []]));
  const push = (m, k, v) => { if (!m.has(k)) m.set(k, []); m.get(k).push(v); };
  for (const op of plan.ops) {
    if (op.status !== 200) continue;
    if (op.type === 'delivery' && op.topic === 'orders/cancelled') {
      if (!cancelAt.has(op.orderId) || op.completedAt < cancelAt.get(op.orderId)) cancelAt.set(op.orderId, op.completedAt);
    } else if (op.type === 'action') {
      const span = { start: op.startedAt, end: op.completedAt, action: op.action };
      if (op.action === 'stop') {
        if (!stopAt.has(op.orderId) || op.completedAt < stopAt.get(op.orderId)) stopAt.set(op.orderId, op.completedAt);
      } else if (op.action === 'hold') push(holds, op.orderId, span);
      else push(releases, op.orderId, span);
    } else if (op.type === 'flip') {
      flips[op.lane].push({ start: op.startedAt, end: op.completedAt, mode: op.mode });
    }
  }
  const finalModes = {};
  for (const l of LANES) {
    const f = [...flips[l]].sort((a, b) => a.end - b.end).at(-1);
    finalModes[l] = f ? f.mode : 'manual';
  }
  return { cancelAt, stopAt, holds, releases, flips, finalModes };
}

/** Why the model says order `o` (lane `lane`) must not be sent at time t, or []. */
function modelBlockers(model, o, lane, t, t0) {
  const why = [];
  const rel = (ms) => `+${ms - t0} ms`;
  const c = model.cancelAt.get(o);
  if (c !== undefined && c < t - MARGIN_MS) why.push(`cancelled in Shopify (delivery done ${rel(c)})`);
  const s = model.stopAt.get(o);
  if (s !== undefined && s < t - MARGIN_MS) why.push(`stopped by an operator (done ${rel(s)})`);
  for (const h of model.holds.get(o) ?? []) {
    if (h.end >= t - MARGIN_MS) continue;
    const undone = (model.releases.get(o) ?? []).some((r) => r.end > h.start && r.start < t);
    if (!undone) why.push(`held by an operator (done ${rel(h.end)}) and not released`);
  }
  for (const f of model.flips[lane] ?? []) {
    if (f.mode === 'auto' || f.end >= t - MARGIN_MS) continue;
    const undone = model.flips[lane].some((g) => g.mode === 'auto' && g.end > f.start && g.start < t);
    if (!undone) why.push(`lane ${lane} set to ${f.mode} (done ${rel(f.end)}) and not back to auto`);
  }
  return why;
}

/** Reads what the checks need from D1: the schema, then every table in one query (JSON columns). */
async function readD1(stack) {
  const schema = await stack.sql(`SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name IN ('orders', 'reservations')`);
  const tableSql = (n) => schema.find((x) => x.name === n)?.sql ?? '';
  const hasSubmittedMs = /\bsubmitted_ms\b/.test(tableSql('reservations'));
  const hasCancelState = /\bcancel_state\b/.test(tableSql('orders'));
  const obj = (cols) => `json_object(${cols.map((c) => `'${c}', ${c}`).join(', ')})`;
  const orderCols = ['order_id', 'state', 'reason', 'segment', 'mode', 'seq', 'submission', 'lease_until', ...(hasCancelState ? ['cancel_state'] : [])];
  const auditCols = ['id', 'order_id', 'seq', 'at_ms', 'event', 'from_state', 'to_state', 'reason', 'actor', 'detail'];
  const resCols = ['order_id', 'sku', 'quantity', ...(hasSubmittedMs ? ['submitted_ms'] : [])];
  const [row] = await stack.sql(`SELECT
    (SELECT json_group_array(${obj(orderCols)}) FROM orders WHERE shop = ${q(SHOP)}) AS orders,
    (SELECT json_group_array(${obj(auditCols)}) FROM audit_log WHERE shop = ${q(SHOP)} AND order_id IS NOT NULL) AS audit,
    (SELECT json_group_array(${obj(resCols)}) FROM reservations WHERE shop = ${q(SHOP)}) AS reservations,
    (SELECT json_group_array(${obj(['sku', 'available'])}) FROM stock) AS stock`);
  const audit = JSON.parse(row.audit).sort((a, b) => (a.order_id < b.order_id ? -1 : a.order_id > b.order_id ? 1 : 0)
    || (a.seq ?? -1) - (b.seq ?? -1) || a.id - b.id);
  return { orders: JSON.parse(row.orders), audit, reservations: JSON.parse(row.reservations), stock: JSON.parse(row.stock), hasSubmittedMs, hasCancelState };
}

export function checkInvariants({ plan, warehouse, d1, finalModes, t0 }) {
  const model = modelOf(plan);
  const modelLane = new Map(plan.orders.map((o) => [o.id, o.lane]));
  const ordersById = new Map(d1.orders.map((o) => [o.order_id, o]));
  const laneOf = (o) => ordersById.get(o)?.segment ?? modelLane.get(o);
  const auditBy = new Map();
  for (const row of d1.audit) {
    if (!auditBy.has(row.order_id)) auditBy.set(row.order_id, []);
    auditBy.get(row.order_id).push(row);
  }
  const submits = warehouse.log.filter((x) => x.kind === 'submit');
  const results = [];

  // 1. Nothing sent while held, cancelled or in a non-auto lane at send time.
  {
    const offenders = [];
    for (const x of submits) {
      const o = x.orderId;
      const lane = laneOf(o);
      const why = modelBlockers(model, o, lane, x.at, t0);
      const rows = (auditBy.get(o) ?? []).filter((a) => a.seq !== null && a.at_ms < x.at).sort((a, b) => a.seq - b.seq);
      const lastRow = rows.at(-1);
      if (!lastRow) {
        why.push('D1: no audit row for the order before the POST');
      } else if (![READY, 'submitted'].includes(lastRow.to_state) && lastRow.at_ms < x.at - MARGIN_MS) {
        why.push(`D1: in ${stateText(lastRow.to_state, lastRow.reason)} since seq ${lastRow.seq} (${lastRow.event}, ${x.at - lastRow.at_ms} ms before the POST)`);
      }
      if (why.length) offenders.push({ order: o, at: `+${x.at - t0} ms`, key: x.key, answer: x.label, why: why.join('; ') });
    }
    results.push(result(1, 'nothing sent while held, cancelled or in a non-auto lane', offenders, { checked: submits.length }));
  }

  // 2. At most one accepted submission per order; never two overlapping requests under one key;
  //    never sent again under a new key once accepted.
  {
    const offenders = [];
    const acceptedKeys = new Map();
    for (const [key, a] of warehouse.accepted) {
      if (a.kind !== 'submit') continue;
      if (!acceptedKeys.has(a.orderId)) acceptedKeys.set(a.orderId, []);
      acceptedKeys.get(a.orderId).push({ key, at: a.at });
    }
    for (const [o, keys] of acceptedKeys) {
      if (keys.length > 1) offenders.push({ order: o, why: `${keys.length} accepted submissions: ${keys.map((k) => k.key).join(', ')}` });
      const first = Math.min(...keys.map((k) => k.at));
      const firstKey = keys.find((k) => k.at === first).key;
      const resent = submits.filter((x) => x.orderId === o && x.key !== firstKey && x.at > first);
      if (resent.length) offenders.push({ order: o, why: `sent again under ${[...new Set(resent.map((x) => x.key))].join(', ')} after ${firstKey} was accepted (answers: ${resent.map((x) => x.label).join(', ')})` });
    }
    const byKey = new Map();
    for (const x of warehouse.log) {
      if (!byKey.has(x.key)) byKey.set(x.key, []);
      byKey.get(x.key).push(x);
    }
    for (const [key, xs] of byKey) {
      const sorted = [...xs].sort((a, b) => a.at - b.at);
      for (let k = 1; k < sorted.length; k++) {
        const prev = sorted.slice(0, k).filter((p) => p.end > sorted[k].at);
        if (prev.length) {
          offenders.push({ order: sorted[k].orderId, key, why: `request at +${sorted[k].at - t0} ms overlaps one from +${prev[0].at - t0} ms still in flight (${prev[0].label})` });
        }
      }
    }
    results.push(result(2, 'at most one accepted submission per order; no overlapping requests under one key', offenders));
  }

  // 3. Every ready order of an auto lane ends submitted or in an explicit exception.
  {
    const offenders = d1.orders
      .filter((o) => o.state === READY && finalModes[o.segment] === 'auto')
      .map((o) => ({ order: o.order_id, why: `still ${READY} in auto lane ${o.segment} after quiescing (submission ${o.submission}, lease_until ${o.lease_until ?? 'none'})` }));
    results.push(result(3, 'no order left ready-for-fulfilment in an auto lane', offenders, { finalModes }));
  }

  // 4. Stock conserved per SKU; reservations only where the order's state allows them.
  {
    const offenders = [];
    const sums = new Map(plan.skus.map((s) => [s.sku, { loaded: s.loaded, available: 0, reserved: 0, writtenOff: 0, shipped: 0 }]));
    const get = (sku) => sums.get(sku) ?? sums.set(sku, { loaded: 0, available: 0, reserved: 0, writtenOff: 0, shipped: 0 }).get(sku);
    for (const s of d1.stock) get(s.sku).available = s.available;
    for (const res of d1.reservations) get(res.sku).reserved += res.quantity;
    for (const row of d1.audit) {
      if (!row.detail || !/written_off|shipped/.test(row.detail)) continue;
      let d;
      try { d = JSON.parse(row.detail); } catch { continue; }
      for (const w of Array.isArray(d.written_off) ? d.written_off : []) get(w.sku).writtenOff += Number(w.quantity) || 0;
      for (const w of Array.isArray(d.shipped) ? d.shipped : []) get(w.sku).shipped += Number(w.quantity) || 0;
    }
    for (const [sku, s] of sums) {
      const total = s.available + s.reserved + s.writtenOff + s.shipped;
      if (total !== s.loaded) {
        // Hints: orders the warehouse refused for stock on this SKU (their audit row should carry
        // written_off) and orders it answered already_shipped for (shipped).
        const withSku = (x) => x.kind === 'submit' && x.skus.some((k) => k.startsWith(`${sku}x`));
        const hint = (label) => {
          const ids = new Set(warehouse.log.filter((x) => x.label === label).map((x) => x.orderId));
          return [...new Set(warehouse.log.filter((x) => ids.has(x.orderId) && withSku(x)).map((x) => `${x.orderId} (${x.skus.join(' ')})`))];
        };
        offenders.push({ sku, why: `available ${s.available} + reserved ${s.reserved} + written off ${s.writtenOff} + shipped ${s.shipped} = ${total}, loaded ${s.loaded}`,
          out_of_stock_answers: hint('409-out_of_stock'), already_shipped_answers: hint('409-already_shipped') });
      }
    }
    for (const res of d1.reservations) {
      const o = ordersById.get(res.order_id);
      const state = o ? stateText(o.state, o.reason) : '(no order row)';
      const marked = d1.hasSubmittedMs && res.submitted_ms !== null && res.submitted_ms !== undefined;
      if (!marked && o?.state !== READY) {
        offenders.push({ order: res.order_id, sku: res.sku, why: `open reservation (${res.quantity}) for an order in ${state}${d1.hasSubmittedMs ? '' : ' (no reservations.submitted_ms column: every row counts as open)'}` });
      }
      if (marked && !(o?.state === 'submitted' || (o?.state === 'cancelled' && o?.cancel_state === 'requested'))) {
        offenders.push({ order: res.order_id, sku: res.sku, why: `submitted reservation (${res.quantity}) for an order in ${state}, cancel_state ${o?.cancel_state ?? 'null'}` });
      }
    }
    results.push(result(4, 'stock conserved per SKU; reservations match order states', offenders,
      { stock: Object.fromEntries([...sums].map(([k, v]) => [k, v])) }));
  }

  // 5. One audit row per state change, chained.
  {
    const offenders = [];
    const ours = new Set(plan.orders.map((o) => o.id));
    for (const o of d1.orders) {
      if (!ours.has(o.order_id)) continue;
      const all = auditBy.get(o.order_id) ?? [];
      const rows = all.filter((a) => a.seq !== null).sort((a, b) => a.seq - b.seq || a.id - b.id);
      const why = [];
      const seqs = rows.map((a) => a.seq);
      const want = Array.from({ length: o.seq }, (_, k) => k + 1);
      if (seqs.join(',') !== want.join(',')) {
        const dups = seqs.filter((s, k) => seqs.indexOf(s) !== k);
        const missing = want.filter((s) => !seqs.includes(s));
        const extra = seqs.filter((s) => s < 1 || s > o.seq);
        why.push(`seqs [${seqs.join(',')}] vs orders.seq ${o.seq}${dups.length ? `; duplicated ${dups.join(',')}` : ''}${missing.length ? `; missing ${missing.join(',')}` : ''}${extra.length ? `; beyond ${extra.join(',')}` : ''}`);
      }
      for (let k = 1; k < rows.length; k++) {
        if (rows[k].from_state !== rows[k - 1].to_state) {
          why.push(`seq ${rows[k].seq} (${rows[k].event}) from ${rows[k].from_state} but seq ${rows[k - 1].seq} (${rows[k - 1].event}) left it in ${rows[k - 1].to_state}`);
        }
      }
      const lastRow = rows.at(-1);
      if (!lastRow) why.push('no audit rows');
      else if (lastRow.to_state !== o.state || (lastRow.reason ?? null) !== (o.reason ?? null)) {
        why.push(`last row seq ${lastRow.seq} (${lastRow.event}) ends in ${stateText(lastRow.to_state, lastRow.reason)}, order is ${stateText(o.state, o.reason)}`);
      }
      for (const a of all) {
        if (a.seq === null && a.from_state !== a.to_state) why.push(`row ${a.id} (${a.event}) changes ${a.from_state} -> ${a.to_state} without a seq`);
      }
      if (why.length) offenders.push({ order: o.order_id, why: why.join('; ') });
    }
    results.push(result(5, 'one audit row per state change, chained, ending in the order state', offenders));
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// The run

function tally(items, keyOf) {
  const out = {};
  for (const x of items) {
    const k = keyOf(x);
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/**
 * One seeded soak run on a fresh stack. Options: seed, orders, durationMs (the drive phase),
 * quietMs and quiesceMs (the end), concurrency, log (a function for progress lines).
 * Returns the report; `report.ok` is true when every invariant held.
 */
export async function runSoak({ seed = 1, orders = 40, durationMs, quietMs = 5500, quiesceMs = 150_000, concurrency = 8, log = () => {} } = {}) {
  const runStart = Date.now();
  durationMs ??= Math.max(15_000, orders * 500);
  const report = { seed, orders, durationMs, ok: false, phases: {}, notes: [] };
  const stack = await startStack({ vars: STACK_VARS });
  report.phases.startMs = Date.now() - runStart;
  try {
    const c = client(stack);
    const warehouse = makeWarehouse(seed);
    stack.fake.setBehaviour(warehouse.behaviour);
    const plan = planRun(seed, { orders, durationMs, baseMs: Date.now() });
    log(`seed ${seed}: ${orders} orders, ${plan.ops.length} operations over ${durationMs} ms, skus ${plan.skus.map((s) => `${s.sku}=${s.loaded}`).join(' ')}`);

    const stockRes = await admin(stack, 'PUT', '/stock', { stock: plan.skus.map((s) => ({ sku: s.sku, available: s.loaded })), note: `soak ${seed}` });
    if (stockRes.status !== 200) throw new Error(`PUT /admin/stock: ${stockRes.status} ${JSON.stringify(stockRes.body)}`);
    // Every lane starts in auto (recorded like any other flip), then the plan flips them.
    const setup = [];
    for (const lane of LANES) {
      const op = { type: 'flip', at: 0, lane, mode: 'auto', note: `soak ${seed}: start in auto`, setup: true };
      await execute(stack, c, op);
      if (op.status !== 200) throw new Error(`PUT /admin/segments/${lane}/mode: ${op.outcome}`);
      setup.push(op);
    }
    plan.ops.unshift(...setup);

    const t0 = Date.now();
    report.phases.driveMs = await drive(stack, c, plan.ops.filter((op) => !op.setup), { limit: concurrency, log });
    const model = modelOf(plan);
    let finalModes = model.finalModes;
    const kv = await Promise.all(LANES.map((l) => stack.kvGet(`segment:${l}:mode`)));
    LANES.forEach((l, k) => {
      if (kv[k] !== finalModes[l]) report.notes.push(`lane ${l}: client log says ${finalModes[l]}, KV holds ${kv[k]}; using KV`);
    });
    finalModes = Object.fromEntries(LANES.map((l, k) => [l, kv[k] ?? finalModes[l]]));
    log(`  drive done in ${report.phases.driveMs} ms; final modes ${JSON.stringify(finalModes)}; quiescing`);

    const q0 = Date.now();
    report.quiesce = await quiesce(stack, c, warehouse, finalModes, { quietMs, maxMs: quiesceMs, log });
    report.phases.quiesceMs = Date.now() - q0;
    if (!report.quiesce.quiesced) report.notes.push(`did not quiesce within ${quiesceMs} ms: ${JSON.stringify(report.quiesce)}`);

    const k0 = Date.now();
    const d1 = await readD1(stack);
    report.schema = { reservationsSubmittedMs: d1.hasSubmittedMs, ordersCancelState: d1.hasCancelState };
    report.invariants = checkInvariants({ plan, warehouse, d1, finalModes, t0 });
    report.phases.checkMs = Date.now() - k0;

    const deliveries = plan.ops.filter((op) => op.type === 'delivery');
    report.deliveries = { sent: deliveries.length, byOutcome: tally(deliveries, (op) => op.outcome) };
    report.actions = tally(plan.ops.filter((op) => op.type === 'action'), (op) => `${op.action} ${op.outcome}`);
    report.flips = plan.ops.filter((op) => op.type === 'flip').map((op) => `+${op.completedAt - t0}ms ${op.lane}=${op.mode} ${op.outcome}`);
    report.finalModes = finalModes;
    report.warehouse = {
      calls: warehouse.log.length,
      byAnswer: tally(warehouse.log, (x) => `${x.kind} ${x.label}`),
      acceptedOrders: new Set([...warehouse.accepted.values()].filter((a) => a.kind === 'submit').map((a) => a.orderId)).size,
      invalidSignatures: warehouse.log.filter((x) => !x.signatureValid).length,
    };
    if (report.warehouse.invalidSignatures) report.notes.push(`${report.warehouse.invalidSignatures} warehouse requests with an invalid signature`);
    const cancelsForUnaccepted = warehouse.log.filter((x) => x.kind === 'cancel'
      && ![...warehouse.accepted.values()].some((a) => a.kind === 'submit' && a.orderId === x.orderId && a.at <= x.at));
    if (cancelsForUnaccepted.length) report.notes.push(`${cancelsForUnaccepted.length} cancel requests for orders the warehouse had not accepted (e.g. ${cancelsForUnaccepted[0].orderId})`);
    const lanes = new Map(plan.orders.map((o) => [o.id, o.lane]));
    const laneMismatch = d1.orders.filter((o) => lanes.has(o.order_id) && lanes.get(o.order_id) !== o.segment);
    if (laneMismatch.length) report.notes.push(`${laneMismatch.length} orders routed to another lane than planned (e.g. ${laneMismatch[0].order_id}: planned ${lanes.get(laneMismatch[0].order_id)}, D1 ${laneMismatch[0].segment})`);
    const missing = plan.orders.filter((o) => !d1.orders.some((r) => r.order_id === o.id));
    if (missing.length) report.notes.push(`${missing.length} planned orders have no orders row (e.g. ${missing[0].id})`);
    report.finalStates = tally(d1.orders, (o) => stateText(o.state, o.reason));
    report.traces = traces({ plan, warehouse, d1, t0, invariants: report.invariants });
    report.ok = report.invariants.every((i) => i.pass);
    if (!report.ok) {
      const errors = stack.logs.join('').split('\n').filter((l) => /error|panick|retried|failed/i.test(l));
      if (errors.length) report.notes.push(`Worker errors (last 40 of ${errors.length}):\n${errors.slice(-40).join('\n')}`);
    }
  } catch (e) {
    report.error = e?.stack ?? String(e);
    report.notes.push(`wrangler log tail:\n${stack.logs.join('').slice(-4000)}`);
  } finally {
    report.runMs = Date.now() - runStart;
    await stack.stop();
  }
  return report;
}

/**
 * For the first offending orders of each failed invariant: what the client did, what the
 * warehouse saw and what D1 recorded, on one time axis (ms after the drive started).
 */
function traces({ plan, warehouse, d1, t0, invariants, perInvariant = 3 }) {
  const out = {};
  const schemaHasSubmittedMs = d1.hasSubmittedMs;
  for (const inv of invariants) {
    // Reservation offenders on a schema without reservations.submitted_ms say nothing new.
    if (inv.id === 4 && !schemaHasSubmittedMs) continue;
    for (const o of inv.offenders.filter((x) => x.order).slice(0, perInvariant)) {
      if (out[o.order]) continue;
      const ops = plan.ops.filter((op) => op.orderId === o.order)
        .map((op) => `+${op.startedAt - t0}..${op.completedAt - t0} client ${op.type === 'action' ? op.action : op.label} -> ${op.outcome}`);
      const calls = warehouse.log.filter((x) => x.orderId === o.order)
        .map((x) => `+${x.at - t0} warehouse ${x.kind} ${x.key.split(':').slice(3).join(':')} -> ${x.label}`);
      const rows = d1.audit.filter((a) => a.order_id === o.order)
        .map((a) => `+${a.at_ms - t0} audit seq ${a.seq ?? '-'} ${a.event} ${a.from_state} -> ${stateText(a.to_state, a.reason)} (${a.actor})`);
      const parse = (x) => Number(x.slice(1, x.search(/[ .]/)));
      out[o.order] = [...ops, ...calls, ...rows].sort((a, b) => parse(a) - parse(b));
    }
  }
  return out;
}

/** A human-readable report, seed first. */
export function formatReport(r, { offenders = 5, traces: showTraces = 3 } = {}) {
  const lines = [];
  lines.push(`seed ${r.seed}: ${r.ok ? 'PASS' : 'FAIL'}  orders ${r.orders}  run ${(r.runMs / 1000).toFixed(1)} s `
    + `(start ${r.phases.startMs ?? '-'} ms, drive ${r.phases.driveMs ?? '-'} ms, quiesce ${r.phases.quiesceMs ?? '-'} ms, checks ${r.phases.checkMs ?? '-'} ms)`);
  lines.push(`  replay: SOAK_SEEDS=${r.seed} SOAK_ORDERS=${r.orders} SOAK_DURATION_MS=${r.durationMs} node scripts/soak.mjs`);
  if (r.error) lines.push(`  ERROR: ${r.error}`);
  if (r.deliveries) lines.push(`  deliveries ${r.deliveries.sent}: ${JSON.stringify(r.deliveries.byOutcome)}`);
  if (r.actions) lines.push(`  operator actions: ${JSON.stringify(r.actions)}`);
  if (r.flips) lines.push(`  lane flips: ${r.flips.join(', ')}`);
  if (r.finalModes) lines.push(`  final modes: ${JSON.stringify(r.finalModes)}`);
  if (r.warehouse) lines.push(`  warehouse calls ${r.warehouse.calls} (orders accepted ${r.warehouse.acceptedOrders}): ${JSON.stringify(r.warehouse.byAnswer)}`);
  if (r.finalStates) lines.push(`  final states: ${JSON.stringify(r.finalStates)}`);
  if (r.quiesce) lines.push(`  quiesce: ${JSON.stringify(r.quiesce)}`);
  for (const inv of r.invariants ?? []) {
    lines.push(`  invariant ${inv.id} ${inv.pass ? 'pass' : `FAIL (${inv.count})`}: ${inv.name}`);
    for (const o of inv.offenders.slice(0, offenders)) lines.push(`      ${JSON.stringify(o)}`);
  }
  for (const [order, trace] of Object.entries(r.traces ?? {}).slice(0, showTraces)) {
    lines.push(`  trace of ${order}:`);
    for (const t of trace) lines.push(`      ${t}`);
  }
  for (const n of r.notes ?? []) lines.push(`  note: ${n}`);
  return lines.join('\n');
}
