// The orderlane console: builds each page from the admin API. Every value that came from
// Shopify or an operator reaches the page as a text node or an attribute set through the DOM,
// never as markup, so a `<script>` in an order name, SKU or note stays text.
'use strict';

const REASONS = ['payment', 'address', 'inventory', 'fraud', 'manual', 'fulfilment'];
const ACTIONS = [
  ['release', 'Release', 're-run the rules (manual and fulfilment holds included)'],
  ['force-ready', 'Force ready', 'send it regardless of the rules (lane must be auto)'],
  ['hold', 'Hold', 'put it on hold/manual'],
  ['stop', 'Stop', 'stop routing it (cancelled in orderlane; Shopify untouched)'],
];
const MODES = ['manual', 'shadow', 'auto'];

class Halt extends Error {}

function meta(name) {
  const m = document.querySelector(`meta[name="${name}"]`);
  return m ? m.getAttribute('content') : '';
}

/** An element: attributes (class, on*, anything else as an attribute) and children as text or nodes. */
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  append(e, kids);
  return e;
}

function append(parent, kids) {
  for (const kid of [kids].flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    parent.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return parent;
}

function svg(tag, attrs, ...kids) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  append(e, kids);
  return e;
}

function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

const main = () => document.getElementById('main');

function signInUrl(why) {
  const next = encodeURIComponent(location.pathname + location.search);
  return `/console/sign-in?next=${next}${why ? `&why=${encodeURIComponent(why)}` : ''}`;
}

/** Calls the admin API with the session cookie; a refused session goes back to sign-in. */
async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET') headers['x-csrf-token'] = meta('csrf-token');
  let r;
  try {
    r = await fetch(`/admin${path}`, {
      method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    return { status: 0, ok: false, data: { error: 'network', detail: 'orderlane could not be reached; check the connection and retry' } };
  }
  let data = null;
  try { data = await r.json(); } catch { data = null; }
  if (r.status === 401) {
    const code = data && data.error;
    location.assign(signInUrl(code === 'session_expired' ? 'expired' : code === 'session_revoked' ? 'revoked' : 'signed-out'));
    throw new Halt();
  }
  return { status: r.status, ok: r.ok, data };
}

/** The API answer's data, or a thrown message for the page. */
async function load(path) {
  const r = await api('GET', path);
  if (!r.ok) throw new Error(problem(r));
  return r.data;
}

function problem(r) {
  const d = r.data || {};
  return `${d.error || `HTTP ${r.status}`}: ${d.detail || 'the request failed'}`;
}

function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
}

const pad = (n) => String(n).padStart(2, '0');
function when(ms) {
  if (ms === null || ms === undefined) return '—';
  const d = new Date(Number(ms));
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}Z`;
}
function age(ms) {
  if (ms === null || ms === undefined) return '—';
  let m = Math.max(0, Math.floor((Date.now() - Number(ms)) / 60000));
  const d = Math.floor(m / 1440); m -= d * 1440;
  const h = Math.floor(m / 60); m -= h * 60;
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m`;
}
function duration(ms) {
  if (ms === null || ms === undefined) return '—';
  const s = Number(ms) / 1000;
  if (s < 120) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
const stateText = (state, reason) => (reason ? `${state}/${reason}` : state || '—');
const orderUrl = (shop, id) => `/console/orders/${encodeURIComponent(shop)}/${encodeURIComponent(id)}`;
const laneUrl = (lane) => `/console/lanes/${encodeURIComponent(lane)}`;

function badge(state, reason) {
  return el('span', { class: `badge s-${String(state || '').replace(/[^a-z-]/g, '')}` }, stateText(state, reason));
}

function table(headers, rows, attrs) {
  return el('div', { class: 'scroll' }, el('table', attrs || {},
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows.length ? rows : el('tr', {}, el('td', { colspan: headers.length, class: 'muted' }, 'Nothing here.')))));
}

function notice(kind, ...text) {
  return el('div', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, ...text);
}

function section(title, ...kids) {
  return el('section', {}, el('h2', {}, title), ...kids);
}

function dl(pairs) {
  return el('dl', { class: 'facts' }, pairs.filter(Boolean).map(([k, v]) => [el('dt', {}, k), el('dd', {}, v ?? '—')]));
}

function detailOf(raw) {
  if (!raw) return {};
  try { const v = JSON.parse(raw); return v && typeof v === 'object' ? v : { value: v }; } catch { return { text: raw }; }
}

/** One line for a detail object: times and durations readable, the routing decision as its why. */
function compact(obj) {
  const parts = [];
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'note' || v === null || v === undefined) continue;
    if (k === 'decision' && typeof v === 'object') {
      if (v.explanation) parts.push(`why: ${v.explanation}`);
      continue;
    }
    let text;
    if (typeof v === 'number' && k.endsWith('_ms')) text = v > 1e12 ? when(v) : duration(v);
    else if (typeof v === 'object') text = JSON.stringify(v);
    else text = String(v);
    parts.push(`${k}: ${text.length > 160 ? `${text.slice(0, 157)}…` : text}`);
  }
  return parts.join('; ');
}

/** Reads a form's named fields into an object of trimmed strings. */
function fields(form) {
  const out = {};
  for (const [k, v] of new FormData(form).entries()) if (typeof v === 'string') out[k] = v.trim();
  return out;
}

function option(value, label, selected) {
  return el('option', { value, selected: selected === value }, label);
}

// ---- chrome ---------------------------------------------------------------------------------

function header(page) {
  const top = document.getElementById('top');
  const links = [['/console', 'Queue', 'queue'], ['/console/dead-letters', 'Dead letters', 'dead-letters'],
    ['/console/lanes', 'Lanes', 'lanes'], ['/console/audit', 'Audit', 'audit'], ['/console/stock', 'Stock', 'stock']];
  const current = { order: 'queue', lane: 'lanes' }[page] || page;
  append(clear(top), [
    el('a', { class: 'brand', href: '/console' }, 'orderlane'),
    el('nav', {}, links.map(([href, label, p]) => el('a', { href, 'aria-current': p === current ? 'page' : null }, label))),
    el('span', { class: 'who' }, 'Signed in as ', el('strong', { id: 'operator' }, meta('operator')),
      el('button', { type: 'button', class: 'link', id: 'sign-out', onclick: signOut }, 'Sign out')),
  ]);
}

async function signOut() {
  await fetch('/console/sign-out', { method: 'POST', credentials: 'same-origin', headers: { 'x-csrf-token': meta('csrf-token') } });
  location.assign('/console/sign-in?why=signed-out');
}

// ---- sign-in --------------------------------------------------------------------------------

function pageSignIn() {
  const params = new URLSearchParams(location.search);
  const why = params.get('why');
  const messages = {
    expired: 'Your session expired. Sign in again to continue.',
    revoked: 'Your admin token was changed, which ended the session. Sign in with the new token.',
    'signed-out': 'You are signed out.',
    unconfigured: 'No admin token is configured (ADMIN_TOKENS); nobody can sign in yet.',
  };
  const err = el('p', { id: 'sign-in-error', class: 'error-text', role: 'alert' });
  const form = el('form', { id: 'sign-in', class: 'card narrow' },
    el('h1', {}, 'Sign in to orderlane'),
    why && messages[why] ? notice(why === 'signed-out' ? 'info' : 'warn', el('span', { id: 'sign-in-why' }, messages[why])) : null,
    el('label', { for: 'token' }, 'Admin token'),
    el('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', required: true }),
    el('p', { class: 'muted' }, 'One of the tokens in ADMIN_TOKENS. Your actions are recorded under its name.'),
    el('button', { type: 'submit' }, 'Sign in'),
    err);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    const token = form.elements.token.value;
    const r = await fetch('/console/session', {
      method: 'POST', credentials: 'same-origin', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }),
    }).catch(() => null);
    if (r && r.ok) {
      // Only a console path: the Worker refuses to name another site here either.
      const next = params.get('next') || '/console';
      location.assign(/^\/console(\/|\?|$)/.test(next) && !next.includes('//') ? next : '/console');
      return;
    }
    let d = {};
    try { d = r ? await r.json() : {}; } catch { d = {}; }
    err.textContent = r && r.status === 401 ? 'That is not a valid admin token.' : (d.detail || 'Sign-in failed; retry.');
  });
  append(clear(main()), form);
  form.elements.token.focus();
}

// ---- exception queue ------------------------------------------------------------------------

async function pageQueue() {
  const params = new URLSearchParams(location.search);
  const filter = { reason: params.get('reason') || '', lane: params.get('lane') || '', age: params.get('age') || '' };
  const [summary, lanes] = await Promise.all([load('/exceptions/summary'), load('/segments')]);
  const laneNames = lanes.segments.map((s) => s.segment);

  const byReason = new Map();
  const byLane = new Map();
  for (const g of summary.groups) {
    const r = g.state === 'fraud-check' ? 'fraud-check' : g.reason || '—';
    byReason.set(r, (byReason.get(r) || 0) + g.count);
    byLane.set(g.segment, (byLane.get(g.segment) || 0) + g.count);
  }
  const countList = (id, map, param) => el('ul', { class: 'counts', id },
    [...map.entries()].sort((a, b) => b[1] - a[1]).map(([k, n]) => el('li', {},
      el('a', { href: `/console${qs({ ...filter, [param]: k === 'fraud-check' ? 'fraud' : k })}`, 'data-key': k }, k), ' ', el('strong', {}, n))));

  const form = el('form', { id: 'queue-filter', class: 'filters' },
    el('label', {}, 'Reason ', el('select', { name: 'reason' }, option('', 'any', filter.reason), REASONS.map((r) => option(r, r, filter.reason)))),
    el('label', {}, 'Lane ', el('select', { name: 'lane' }, option('', 'any', filter.lane), laneNames.map((l) => option(l, l, filter.lane)))),
    el('label', {}, 'Older than (min) ', el('input', { name: 'age', type: 'number', min: 0, step: 1, value: filter.age, inputmode: 'numeric' })),
    el('button', { type: 'submit' }, 'Filter'),
    el('a', { href: '/console' }, 'Clear'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = fields(form);
    location.assign(`/console${qs(f)}`);
  });

  const base = { reason: filter.reason, lane: filter.lane, min_age_minutes: filter.age, limit: 100 };
  const cursors = { hold: undefined, 'fraud-check': undefined };
  let rows = [];
  const body = el('div', { id: 'queue-rows' });
  const more = el('button', { type: 'button', id: 'queue-more', hidden: true }, 'Load older…');

  async function fetchPage(first) {
    const states = first ? ['hold', 'fraud-check'] : Object.keys(cursors).filter((s) => cursors[s]);
    // A reason filter other than fraud has no fraud-check orders (they carry no reason yet).
    const wanted = states.filter((s) => s === 'hold' || !filter.reason || filter.reason === 'fraud');
    const pages = await Promise.all(wanted.map(async (state) => {
      const q = { ...base, state, reason: state === 'fraud-check' ? '' : base.reason, cursor: first ? undefined : cursors[state] };
      const d = await load(`/exceptions${qs(q)}`);
      cursors[state] = d.next_cursor || undefined;
      return d.items;
    }));
    if (first) for (const s of Object.keys(cursors)) if (!wanted.includes(s)) cursors[s] = undefined;
    rows = rows.concat(...pages).sort((a, b) => a.at_ms - b.at_ms || a.id - b.id);
    render();
  }

  function render() {
    const trs = rows.map((o) => el('tr', { 'data-order': o.order_id, 'data-shop': o.shop },
      el('td', { class: 'num', title: when(o.at_ms) }, age(o.at_ms)),
      el('td', {}, el('a', { href: orderUrl(o.shop, o.order_id), class: 'order-link' }, o.order_name || o.order_id),
        el('div', { class: 'muted small' }, o.shop)),
      el('td', {}, badge(o.state, o.reason)),
      el('td', {}, el('a', { href: laneUrl(o.segment) }, o.segment), o.mode !== 'auto' ? el('span', { class: 'muted small' }, ` (${o.mode})`) : null),
      el('td', { class: 'why' }, o.explanation || '—', o.rule_ids ? el('div', { class: 'muted small' }, `rules: ${o.rule_ids}`) : null)));
    append(clear(body), table(['Age', 'Order', 'State', 'Lane', 'Why'], trs, { id: 'queue-table' }));
    more.hidden = !Object.values(cursors).some(Boolean);
  }
  more.addEventListener('click', () => fetchPage(false).catch(show));

  append(clear(main()), [
    el('h1', {}, 'Exception queue ', el('span', { class: 'muted', id: 'queue-total' }, `${summary.total} waiting`)),
    el('div', { class: 'grid2' },
      section('By reason', countList('counts-reason', byReason, 'reason')),
      section('By lane', countList('counts-lane', byLane, 'lane'))),
    form, body, more,
  ]);
  await fetchPage(true);
}

// ---- order ----------------------------------------------------------------------------------

async function pageOrder() {
  const parts = location.pathname.split('/').filter(Boolean);
  const shop = decodeURIComponent(parts[2] || '');
  const id = decodeURIComponent(parts[3] || '');
  const path = `/orders/${encodeURIComponent(shop)}/${encodeURIComponent(id)}`;
  const flash = el('div', { id: 'flash' });
  const holder = el('div', {});
  append(clear(main()), [flash, holder]);

  async function refresh() {
    const r = await api('GET', path);
    if (r.status === 404) {
      append(clear(holder), notice('error', 'No order ', el('code', {}, id), ' from ', el('code', {}, shop), ' is recorded.'));
      return null;
    }
    if (!r.ok) throw new Error(problem(r));
    renderOrder(r.data);
    return r.data;
  }

  function renderOrder(v) {
    const o = v.order;
    document.title = `${o.order_name || o.order_id} · orderlane`;
    const current = stateText(o.state, o.reason);
    const note = el('textarea', { name: 'note', id: 'action-note', rows: 2, placeholder: 'Why (kept in the audit log)' });
    const actionSel = el('select', { name: 'action', id: 'action' }, ACTIONS.map(([a, label, help]) => el('option', { value: a, title: help }, label)));
    const form = el('form', { id: 'order-action', class: 'card' },
      el('h2', {}, 'Act on this order'),
      el('p', { class: 'muted small' }, 'Applies only if the order is still ', el('strong', {}, current), '; if someone changed it first you will see its new state.'),
      el('label', {}, 'Action ', actionSel),
      el('label', { for: 'action-note' }, 'Note (required)'), note,
      el('button', { type: 'submit', id: 'action-submit' }, 'Apply'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = fields(form);
      if (!f.note) { append(clear(flash), notice('error', 'A note is required: say why.')); note.focus(); return; }
      form.querySelector('button').disabled = true;
      const r = await api('POST', `${path}/${f.action}`, { note: f.note, expected_state: current });
      if (r.ok) {
        append(clear(flash), notice('ok', el('span', { id: 'action-result' }, `Done: ${f.action}. The order is now ${stateText(r.data.state, r.data.reason)}.`),
          r.data.explanation ? ` ${r.data.explanation}` : ''));
      } else if (r.status === 409) {
        const c = (r.data && r.data.current) || {};
        const now = stateText(c.state, c.reason);
        const msg = r.data.error === 'state_changed'
          ? `Someone else changed this order: it is now ${now}. Nothing was applied; read it again and decide.`
          : `Not applied: ${r.data.detail} (the order is ${now}).`;
        append(clear(flash), notice('error', el('span', { id: 'conflict' }, msg)));
      } else {
        append(clear(flash), notice('error', problem(r)));
      }
      await refresh();
    });

    const timeline = v.timeline.map((t) => {
      const d = detailOf(t.detail);
      return el('tr', { 'data-event': t.event },
        el('td', { class: 'nowrap' }, when(t.at_ms)),
        el('td', {}, t.event),
        el('td', {}, t.from_state || t.to_state ? `${t.from_state || '—'} → ${t.to_state || '—'}` : ''),
        el('td', {}, t.reason || ''),
        el('td', {}, t.rule_id || ''),
        el('td', { class: 'actor' }, t.actor),
        el('td', { class: 'note' }, d.note || ''),
        el('td', { class: 'small muted' }, compact(d)));
    });
    const deliveries = v.deliveries.map((d) => el('tr', {},
      el('td', { class: 'nowrap' }, d.received_at), el('td', {}, d.topic), el('td', { class: 'small' }, d.webhook_id),
      el('td', {}, d.outcome), el('td', { class: 'small muted' }, compact(detailOf(d.detail)))));
    const attempts = v.submission_attempts.map((a) => el('tr', {},
      el('td', {}, a.submission), el('td', {}, a.attempt), el('td', { class: 'nowrap' }, when(a.started_ms)),
      el('td', { class: 'nowrap' }, when(a.finished_ms)), el('td', {}, a.outcome || 'in flight'),
      el('td', {}, a.http_status ?? ''), el('td', { class: 'small' }, a.error || '')));
    const dead = v.dead_letters.map((d) => el('tr', {},
      el('td', {}, el('a', { href: `/console/dead-letters${qs({ status: 'all', shop: d.shop })}` }, d.id)),
      el('td', {}, d.cause), el('td', {}, d.attempts), el('td', { class: 'small' }, d.last_error || ''),
      el('td', { class: 'nowrap' }, d.created_at), el('td', {}, d.resolved_ms ? `${d.resolution} by ${d.resolved_by}` : 'open')));

    append(clear(holder), [
      el('h1', {}, el('span', { id: 'order-name' }, o.order_name || o.order_id), ' ', badge(o.state, o.reason)),
      el('p', { class: 'why', id: 'order-why' }, o.explanation || 'No explanation recorded.'),
      el('div', { class: 'grid2' },
        dl([['Shop', o.shop], ['Order id', o.order_id], ['State', el('span', { id: 'order-state' }, current)],
          ['Since', `${when(o.state_since_ms)} (${age(o.state_since_ms)})`],
          ['Lane', el('a', { href: laneUrl(o.segment) }, `${o.segment} (${o.mode})`)],
          ['Rules', `${o.rule_ids || '—'} · version ${o.rules_version}`],
          o.shadow_state ? ['Shadow decision', stateText(o.shadow_state, o.shadow_reason)] : null,
          ['Payment', o.financial_status], ['Risk', o.risk_level],
          ['Total', o.total_cents === null || o.total_cents === undefined ? '—' : `${(o.total_cents / 100).toFixed(2)} ${o.currency || ''}`],
          ['Submissions', `${o.submission} (attempts ${o.attempts})`]]),
        form),
      section('Timeline', table(['Time', 'Event', 'State', 'Reason', 'Rule', 'Actor', 'Note', 'Detail'], timeline, { id: 'timeline' })),
      section('Deliveries', table(['Received', 'Topic', 'Webhook id', 'Outcome', 'Detail'], deliveries, { id: 'deliveries' })),
      section('Submission attempts', table(['Submission', 'Attempt', 'Started', 'Finished', 'Outcome', 'HTTP', 'Error'], attempts, { id: 'attempts' })),
      section('Dead letters', table(['Id', 'Cause', 'Attempts', 'Last error', 'Created', 'Status'], dead, { id: 'order-dead-letters' })),
      section('Hold in Shopify', shopifyHold(v.shopify_hold)),
    ]);
  }

  await refresh();
}

/** What orderlane keeps Shopify showing for the order: wanted, in place, on which fulfillment orders. */
function shopifyHold(h) {
  if (!h) return el('p', { class: 'muted', id: 'shopify-hold' }, 'orderlane has not placed a hold on this order in Shopify.');
  const fos = Array.isArray(h.fulfillment_orders) ? h.fulfillment_orders : [];
  return el('div', { id: 'shopify-hold' }, dl([
    ['Wanted', h.desired === 'held' || h.desired === 'hold' ? `held${h.reason ? ` (${h.reason})` : ''}` : h.desired],
    ['In place', h.in_place ? 'yes' : `not yet (attempts ${h.attempts})`],
    h.last_error ? ['Last error', h.last_error] : null,
    ['Updated', when(h.updated_ms)],
    ['Fulfillment orders', fos.length ? fos.map((f) => f.id).join(', ') : '—'],
  ]));
}

// ---- dead letters ---------------------------------------------------------------------------

async function pageDeadLetters() {
  const params = new URLSearchParams(location.search);
  const filter = { status: params.get('status') || 'open', cause: params.get('cause') || '', shop: params.get('shop') || '' };
  const flash = el('div', { id: 'flash' });
  const list = el('div', { id: 'dl-list' });
  const noteInput = el('input', { id: 'dl-note', name: 'note', placeholder: 'Why you re-drive (required, kept in the audit log)', size: 50 });

  const filterForm = el('form', { class: 'filters', id: 'dl-filter' },
    el('label', {}, 'Status ', el('select', { name: 'status' }, ['open', 'resolved', 'all'].map((s) => option(s, s, filter.status)))),
    el('label', {}, 'Cause ', el('input', { name: 'cause', value: filter.cause })),
    el('label', {}, 'Shop ', el('input', { name: 'shop', value: filter.shop })),
    el('button', { type: 'submit' }, 'Filter'));
  filterForm.addEventListener('submit', (ev) => { ev.preventDefault(); location.assign(`/console/dead-letters${qs(fields(filterForm))}`); });

  const needNote = () => {
    if (noteInput.value.trim()) return noteInput.value.trim();
    append(clear(flash), notice('error', 'A note is required: say why you re-drive.'));
    noteInput.focus();
    return null;
  };

  async function refresh() {
    const d = await load(`/dead-letters${qs({ ...filter, limit: 200 })}`);
    const rows = d.items.map((x) => el('tr', { 'data-dead-letter': x.id, 'data-order': x.order_id },
      el('td', {}, x.id),
      el('td', {}, x.shop && x.order_id ? el('a', { href: orderUrl(x.shop, x.order_id) }, x.order_id) : '—', el('div', { class: 'muted small' }, x.shop || '')),
      el('td', {}, x.cause), el('td', {}, x.attempts), el('td', { class: 'small' }, x.last_error || (x.http_status ? `HTTP ${x.http_status}` : '')),
      el('td', { class: 'nowrap', title: x.created_at }, age(x.at_ms)),
      el('td', {}, x.resolved_ms ? `${x.resolution} by ${x.resolved_by}` : el('button', {
        type: 'button', class: 'small-btn', onclick: async () => {
          const note = needNote(); if (!note) return;
          const r = await api('POST', `/dead-letters/${x.id}/redrive`, { note });
          append(clear(flash), r.ok ? notice('ok', `Dead letter ${x.id} re-driven: the order is now ${stateText(r.data.order.state, r.data.order.reason)}.`) : notice('error', problem(r)));
          await refresh();
        },
      }, 'Re-drive'))));
    append(clear(list), table(['Id', 'Order', 'Cause', 'Attempts', 'Last error', 'Age', 'Status'], rows, { id: 'dl-table' }),
      d.next_cursor ? el('p', { class: 'muted' }, 'Showing the oldest 200; resolve these to see more.') : null);
  }

  const bulk = el('form', { id: 'dl-bulk', class: 'card' },
    el('h2', {}, 'Re-drive in bulk'),
    el('p', { class: 'muted small' }, 'Open dead letters matching the filter, oldest first. A dry run lists exactly what would be re-driven; nothing changes until you confirm.'),
    el('label', {}, 'Cause ', el('input', { name: 'cause', value: filter.cause })),
    el('label', {}, 'Shop ', el('input', { name: 'shop', value: filter.shop })),
    el('label', {}, 'At most ', el('input', { name: 'limit', type: 'number', min: 1, max: 500, value: 100 })),
    el('button', { type: 'submit', id: 'dl-dry-run' }, 'Dry run'),
    el('div', { id: 'dl-preview' }));
  bulk.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = fields(bulk);
    const req = { cause: f.cause || undefined, shop: f.shop || undefined, limit: Number(f.limit || 100) };
    const preview = bulk.querySelector('#dl-preview');
    const r = await api('POST', '/dead-letters/redrive', { ...req, dry_run: true });
    if (!r.ok) { append(clear(preview), notice('error', problem(r))); return; }
    const items = r.data.would_redrive;
    const confirm = el('button', { type: 'button', id: 'dl-confirm', disabled: items.length === 0, onclick: async () => {
      const note = needNote(); if (!note) return;
      confirm.disabled = true;
      // Exactly the letters the dry run listed, one by one: one that arrived since is not swept
      // in, and one someone else re-drove meanwhile answers 409 and is reported.
      const results = [];
      for (const x of items) {
        const one = await api('POST', `/dead-letters/${x.id}/redrive`, { note });
        results.push({ id: x.id, ok: one.ok, why: one.ok ? '' : (one.data && one.data.error) || `HTTP ${one.status}` });
      }
      const ok = results.filter((x) => x.ok).length;
      append(clear(preview), notice(ok === results.length ? 'ok' : 'warn',
        el('span', { id: 'dl-done' }, `Re-drove ${ok} of ${results.length}.`),
        results.filter((x) => !x.ok).map((x) => ` #${x.id} not re-driven (${x.why}).`)));
      await refresh();
    } }, `Confirm re-drive of ${items.length}`);
    append(clear(preview), [
      el('p', {}, el('strong', { id: 'dl-would' }, `Would re-drive ${items.length}:`)),
      el('ul', { class: 'small' }, items.map((x) => el('li', {}, `#${x.id} ${x.shop || ''} ${x.order_id || ''} (${x.cause})`))),
      confirm, ' ', el('button', { type: 'button', class: 'link', onclick: () => clear(preview) }, 'Cancel'),
    ]);
  });

  append(clear(main()), [el('h1', {}, 'Dead letters'), flash, el('p', {}, el('label', {}, 'Note ', noteInput)), filterForm, list, bulk]);
  await refresh();
}

// ---- lanes ----------------------------------------------------------------------------------

async function pageLanes() {
  const [d, summary] = await Promise.all([load('/segments'), load('/exceptions/summary')]);
  const backlog = new Map();
  for (const g of summary.groups) backlog.set(g.segment, (backlog.get(g.segment) || 0) + g.count);
  const rows = d.segments.map((s) => el('tr', { 'data-lane': s.segment },
    el('td', {}, el('a', { href: laneUrl(s.segment) }, s.segment)),
    el('td', {}, el('span', { class: `mode m-${s.mode}` }, s.mode), s.mode_source === 'default' ? el('span', { class: 'muted small' }, ' (matrix default)') : s.mode_source === 'invalid' ? el('span', { class: 'error-text small' }, ' (KV value invalid: held as manual)') : null),
    el('td', {}, when(s.released_at_ms)),
    el('td', { class: 'num' }, backlog.get(s.segment) || 0, el('span', { class: 'muted small' }, ` / ${s.backlog_threshold}`))));
  append(clear(main()), [el('h1', {}, 'Lanes'), table(['Lane', 'Mode', 'Released', 'Backlog / threshold'], rows, { id: 'lanes-table' })]);
}

/** Two bars, baseline and observed, for one KPI (lower is better for every KPI here). */
function kpiChart(label, row, fmt) {
  const base = Number(row.baseline);
  const obs = row.observed === null || row.observed === undefined ? null : Number(row.observed);
  const max = Math.max(base, obs || 0, 1e-9);
  const w = 180;
  const bar = (y, v, cls) => svg('rect', { x: 0, y, height: 14, width: v === null ? 0 : Math.max(1, (v / max) * w), class: cls });
  const cls = obs === null ? 'bar-none' : obs < base ? 'bar-good' : 'bar-bad';
  return el('figure', { class: 'kpi' },
    el('figcaption', {}, label),
    svg('svg', { viewBox: '0 0 320 40', width: 320, height: 40, role: 'img', 'aria-label': `${label}: baseline ${fmt(base)}, observed ${obs === null ? 'no data' : fmt(obs)}` },
      bar(4, base, 'bar-base'), svg('text', { x: w + 6, y: 15 }, `baseline ${fmt(base)}`),
      bar(22, obs, cls), svg('text', { x: w + 6, y: 33 }, obs === null ? 'no data yet' : `now ${fmt(obs)}`)));
}

async function pageLane() {
  const lane = decodeURIComponent(location.pathname.split('/').filter(Boolean)[2] || '');
  const flash = el('div', { id: 'flash' });
  const holder = el('div', {});
  append(clear(main()), [flash, holder]);

  async function refresh() {
    const r = await api('GET', `/segments/${encodeURIComponent(lane)}/report`);
    if (r.status === 404) { append(clear(holder), notice('error', 'No lane ', el('code', {}, lane), ' in the route matrix.')); return; }
    if (!r.ok) throw new Error(problem(r));
    render(r.data);
  }

  function render(rep) {
    const pct = (v) => `${(v * 100).toFixed(1)} %`;
    const perDay = (v) => `${Number(v).toFixed(2)}/day`;
    const cmp = rep.baseline_vs_observed;
    const charts = cmp ? [
      kpiChart('Triage time, mean', cmp.triage_mean_ms, duration),
      kpiChart('Triage time, p90', cmp.triage_p90_ms, duration),
      kpiChart('Exception rate', cmp.exception_rate, pct),
      kpiChart('Fulfilment delay, mean', cmp.fulfilment_delay_mean_ms, duration),
      kpiChart('Failed submissions', cmp.failed_per_day, perDay),
    ] : [el('p', { class: 'muted' }, rep.baseline ? 'Not released yet: nothing observed since a release.' : 'No baseline recorded: enter or capture one (README, Baselines).')];

    const modeForm = el('form', { id: 'mode-form', class: 'card' },
      el('h2', {}, 'Switch mode'),
      el('label', {}, 'New mode ', el('select', { name: 'mode', id: 'mode-select' }, MODES.filter((m) => m !== rep.mode).map((m) => option(m, m)))),
      el('label', { for: 'mode-note' }, 'Note (required)'),
      el('textarea', { id: 'mode-note', name: 'note', rows: 2 }),
      el('button', { type: 'submit', id: 'mode-switch' }, 'Switch…'),
      el('div', { id: 'mode-confirm' }));
    modeForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const f = fields(modeForm);
      const box = modeForm.querySelector('#mode-confirm');
      if (!f.note) { append(clear(box), notice('error', 'A note is required: say why.')); return; }
      const effects = {
        auto: 'New orders of this lane will be routed by the rules and sent to the warehouse without review. The 72-hour gates start again.',
        shadow: 'New orders will be held for people; the rules only record what they would have done.',
        manual: 'Every new order of this lane will be held for a person (hold/manual). Orders already sent are untouched.',
      };
      append(clear(box), notice('warn',
        el('p', {}, el('strong', { id: 'mode-question' }, `Switch lane ${lane} from ${rep.mode} to ${f.mode}?`)),
        el('p', {}, effects[f.mode] || ''),
        el('button', { type: 'button', id: 'mode-confirm-yes', onclick: async (e) => {
          e.target.disabled = true;
          const r = await api('PUT', `/segments/${encodeURIComponent(lane)}/mode`, { mode: f.mode, note: f.note });
          append(clear(flash), r.ok ? notice('ok', el('span', { id: 'mode-result' }, `Lane ${lane} is now ${r.data.mode}.`)) : notice('error', problem(r)));
          await refresh();
        } }, `Yes, switch to ${f.mode}`), ' ',
        el('button', { type: 'button', class: 'link', id: 'mode-cancel', onclick: () => clear(box) }, 'Cancel')));
    });

    // Gate B compares triage times (ms); A and C count orders.
    const gateFigure = (g, v) => (v === null || v === undefined ? '—' : g.gate === 'B' ? duration(v) : v);
    const b = rep.baseline;
    const gates = rep.gates.map((g) => el('tr', { 'data-gate': g.gate },
      el('td', {}, g.gate), el('td', {}, g.title), el('td', {}, el('span', { class: `gate g-${g.status}` }, g.status)),
      el('td', { class: 'num' }, gateFigure(g, g.observed)), el('td', { class: 'num' }, gateFigure(g, g.limit)),
      el('td', { class: 'small' }, typeof g.evidence === 'object' && g.evidence !== null ? compact(g.evidence) : g.evidence ?? '')));
    const agr = rep.shadow_agreement;
    const runs = (rep.recent_gate_runs || []).map((r) => el('tr', {}, Object.values(r).slice(0, 7).map((v) => el('td', { class: 'small' }, v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : v))));
    const runHeads = rep.recent_gate_runs && rep.recent_gate_runs[0] ? Object.keys(rep.recent_gate_runs[0]).slice(0, 7) : ['Runs'];

    append(clear(holder), [
      el('h1', {}, 'Lane ', lane, ' ', el('span', { class: `mode m-${rep.mode}`, id: 'lane-mode' }, rep.mode)),
      el('div', { class: 'grid2' },
        dl([['Mode', rep.mode], ['Released', rep.released_at_ms ? `${when(rep.released_at_ms)} (${age(rep.released_at_ms)} ago)` : 'not released'],
          ['72-hour decision', el('strong', { id: 'lane-decision' }, String(rep.decision).replace(/_/g, ' '))],
          ['Last evaluated', when(rep.last_evaluated_ms)], ['Backlog threshold', rep.backlog_threshold]]),
        modeForm),
      section('Since release against the baseline', el('div', { class: 'charts', id: 'kpi-charts' }, charts)),
      section('Gates', table(['Gate', 'What', 'Status', 'Observed', 'Limit', 'Evidence'], gates, { id: 'gates' })),
      section('Baseline', b ? dl([['Triage mean', duration(b.triage_mean_ms)], ['Triage p90', duration(b.triage_p90_ms)],
        ['Exception rate', pct(b.exception_rate)], ['Fulfilment delay mean', duration(b.fulfilment_delay_mean_ms)],
        ['Failed per day', perDay(b.failed_per_day)]]) : el('p', { class: 'muted' }, 'No baseline recorded.'),
      (rep.baseline_history || []).length ? table(['Recorded', 'By', 'Source', 'Note'], rep.baseline_history.map((h) => el('tr', {},
        el('td', {}, when(h.recorded_at_ms)), el('td', {}, h.actor ?? ''), el('td', {}, h.source ?? ''), el('td', {}, h.note ?? '')))) : null),
      section('Shadow agreement', agr && agr.result ? dl([['Compared', agr.result.compared], ['Agreed', agr.result.agreed],
        ['Rate', agr.result.rate === null ? 'no data' : pct(agr.result.rate)],
        ['Shadow ready, operator held', agr.result.shadow_ready_operator_held],
        ['Shadow held, operator released', agr.result.shadow_held_operator_released],
        ['Since', when(agr.from_ms)]]) : el('p', { class: 'muted' }, 'Only for a lane in shadow mode.')),
      section('Recent gate runs', table(runHeads, runs)),
    ]);
  }
  await refresh();
}

// ---- audit ----------------------------------------------------------------------------------

const AUDIT_FILTERS = ['order', 'shop', 'lane', 'event', 'reason', 'actor', 'from', 'to'];

async function pageAudit() {
  const params = new URLSearchParams(location.search);
  const filter = {};
  for (const k of AUDIT_FILTERS) if (params.get(k)) filter[k] = params.get(k);
  const form = el('form', { id: 'audit-filter', class: 'filters' },
    AUDIT_FILTERS.map((k) => el('label', {}, `${k} `, el('input', { name: k, value: filter[k] || '', size: k === 'order' || k === 'shop' ? 22 : 12,
      placeholder: k === 'from' || k === 'to' ? 'RFC 3339 or ms' : '' }))),
    el('button', { type: 'submit' }, 'Search'), el('a', { href: '/console/audit' }, 'Clear'));
  form.addEventListener('submit', (ev) => { ev.preventDefault(); location.assign(`/console/audit${qs(fields(form))}`); });
  const out = el('div', { id: 'audit-rows' });
  const older = el('button', { type: 'button', id: 'audit-older', hidden: true }, 'Older…');
  let rows = [];
  let cursor;
  async function fetchPage() {
    const r = await api('GET', `/audit${qs({ ...filter, limit: 100, cursor })}`);
    if (!r.ok) { append(clear(out), notice('error', problem(r))); return; }
    rows = rows.concat(r.data.items);
    cursor = r.data.next_cursor || undefined;
    const trs = rows.map((a) => {
      const d = detailOf(a.detail);
      return el('tr', { 'data-event': a.event },
        el('td', { class: 'nowrap' }, a.at), el('td', {}, a.event),
        el('td', {}, a.order_id && a.shop ? el('a', { href: orderUrl(a.shop, a.order_id) }, a.order_id) : ''),
        el('td', {}, a.segment || ''), el('td', {}, a.from_state || a.to_state ? `${a.from_state || '—'} → ${a.to_state || '—'}` : ''),
        el('td', {}, a.reason || ''), el('td', {}, a.rule_id || ''), el('td', { class: 'actor' }, a.actor),
        el('td', { class: 'note' }, d.note || ''), el('td', { class: 'small muted' }, compact(d)));
    });
    append(clear(out), table(['Time', 'Event', 'Order', 'Lane', 'State', 'Reason', 'Rule', 'Actor', 'Note', 'Detail'], trs, { id: 'audit-table' }));
    older.hidden = !cursor;
  }
  older.addEventListener('click', () => fetchPage().catch(show));
  append(clear(main()), [el('h1', {}, 'Audit log'), form, out, older]);
  await fetchPage();
}

// ---- stock ----------------------------------------------------------------------------------

/** Parses `sku,available` lines (header optional, quoted SKUs allowed); errors name the line. */
function parseStockCsv(text) {
  const rows = [];
  const errors = [];
  const seen = new Set();
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  lines.forEach((line, i) => {
    const n = i + 1;
    if (!line.trim()) return;
    const m = line.match(/^\s*(?:"((?:[^"]|"")*)"|([^,]*?))\s*,\s*([^,]*?)\s*$/);
    if (!m) { errors.push(`line ${n}: expected two columns, sku,available`); return; }
    const sku = (m[1] !== undefined ? m[1].replace(/""/g, '"') : m[2]).trim();
    const available = m[3];
    if (n === 1 && sku.toLowerCase() === 'sku' && available.toLowerCase() === 'available') return;
    if (!sku) { errors.push(`line ${n}: the sku is empty`); return; }
    if (!/^\d+$/.test(available)) { errors.push(`line ${n}: available must be a whole number ≥ 0, not "${available}"`); return; }
    if (seen.has(sku)) { errors.push(`line ${n}: ${sku} appears twice`); return; }
    seen.add(sku);
    rows.push({ sku, available: Number(available) });
  });
  if (!rows.length && !errors.length) errors.push('the file holds no stock lines');
  if (rows.length > 1000) errors.push(`at most 1000 lines per upload (this file has ${rows.length})`);
  return { rows, errors };
}

async function pageStock() {
  const flash = el('div', { id: 'flash' });
  const list = el('div', { id: 'stock-list' });
  const preview = el('div', { id: 'stock-preview' });
  let parsed = null;
  const file = el('input', { type: 'file', id: 'stock-file', accept: '.csv,text/csv' });
  const note = el('input', { id: 'stock-note', name: 'note', size: 40, placeholder: 'e.g. weekly count from the warehouse' });
  const apply = el('button', { type: 'button', id: 'stock-apply', disabled: true }, 'Apply');

  file.addEventListener('change', async () => {
    parsed = null; apply.disabled = true;
    const f = file.files && file.files[0];
    if (!f) return;
    if (f.size > 512 * 1024) { append(clear(preview), notice('error', 'That file is over 512 KB; split it.')); return; }
    const p = parseStockCsv(await f.text());
    if (p.errors.length) {
      append(clear(preview), notice('error', el('strong', {}, 'Nothing was uploaded. Fix these lines:'), el('ul', { id: 'stock-errors' }, p.errors.slice(0, 20).map((e) => el('li', {}, e)))));
      return;
    }
    parsed = p.rows;
    apply.disabled = false;
    append(clear(preview), [el('p', { id: 'stock-ready' }, `${parsed.length} SKU(s) ready to set:`),
      table(['SKU', 'Available'], parsed.slice(0, 50).map((r) => el('tr', {}, el('td', {}, r.sku), el('td', { class: 'num' }, r.available)))),
      parsed.length > 50 ? el('p', { class: 'muted' }, `…and ${parsed.length - 50} more.`) : null]);
  });
  apply.addEventListener('click', async () => {
    if (!parsed) return;
    apply.disabled = true;
    const r = await api('PUT', '/stock', { stock: parsed, note: note.value.trim() || undefined });
    append(clear(flash), r.ok ? notice('ok', el('span', { id: 'stock-result' }, `Stock set for ${r.data.updated} SKU(s).`)) : notice('error', problem(r)));
    clear(preview); file.value = ''; parsed = null;
    await refresh();
  });

  async function refresh() {
    const d = await load('/stock');
    const cols = d.stock[0] ? Object.keys(d.stock[0]) : ['sku', 'available'];
    append(clear(list), table(cols, d.stock.map((s) => el('tr', { 'data-sku': s.sku }, cols.map((c) => el('td', {}, s[c] ?? ''))))), { id: 'stock-table' });
  }

  append(clear(main()), [el('h1', {}, 'Stock'), flash,
    el('div', { class: 'card' }, el('h2', {}, 'Upload a CSV'),
      el('p', { class: 'muted small' }, 'Two columns, sku,available (a header line is optional). Every line is checked before anything is sent; the upload is one transaction.'),
      file, el('label', {}, ' Note ', note), ' ', apply, preview),
    section('Claimable stock', list)]);
  await refresh();
}

// ---- start ----------------------------------------------------------------------------------

function show(e) {
  if (e instanceof Halt) return;
  append(clear(main()), notice('error', el('span', { id: 'page-error' }, e && e.message ? e.message : String(e)),
    ' ', el('a', { href: location.href }, 'Retry')));
}

const PAGES = {
  'sign-in': pageSignIn, queue: pageQueue, order: pageOrder, 'dead-letters': pageDeadLetters,
  lanes: pageLanes, lane: pageLane, audit: pageAudit, stock: pageStock,
};

document.addEventListener('DOMContentLoaded', () => {
  const page = document.body.dataset.page;
  if (page !== 'sign-in') {
    header(page);
    // Back to sign-in when the session runs out while the page is open.
    // Remaining time as the Worker computed it, so a skewed device clock does not matter.
    const left = Number(meta('session-left'));
    if (left > 0) {
      setTimeout(() => location.assign(signInUrl('expired')), Math.max(0, Math.min(left, 2 ** 31 - 1)));
    }
  }
  const run = PAGES[page];
  if (!run) { show(new Error('unknown page')); return; }
  Promise.resolve().then(run).then(() => { document.body.dataset.ready = '1'; }, (e) => { show(e); document.body.dataset.ready = 'error'; });
});
