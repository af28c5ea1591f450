// The operators' console in a real browser (headless Chromium via puppeteer-core) against the
// real Worker under `wrangler dev`: sign-in, the exception queue, acting on an order, a lost
// race shown plainly, a confirmed lane switch, session expiry, CSRF and Origin checks, and
// Shopify strings that stay text. Screenshots of every page go to tmp/console-screens/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { startStack, admin, eventually, ADMIN_TOKEN, SHOP } from '../support/stack.mjs';
import { client, sleep } from '../support/api.mjs';
import { orderJson } from '../support/orders.mjs';
import { launch, newPage, visit, clickAndLoad, screenshot, SCREENS } from '../support/browser.mjs';

const COOKIE = '__Host-orderlane_session';
let stack;
let api;
let browser;
let page;
const problems = [];
/** Orders the fake warehouse refuses (400): they become dead letters. */
const refuse = new Set();

before(async () => {
  stack = await startStack({
    vars: { RETRY_DELAY_SCALE: '0.001', FULFILMENT_TIMEOUT_MS: '2000' },
    downstream: { respond: (req) => (refuse.has(req.json?.order_id) ? { status: 400, body: '{"error":"refused_for_test"}' } : undefined) },
  });
  api = client(stack);
  for (const lane of ['default']) {
    const r = await admin(stack, 'PUT', `/segments/${lane}/mode`, { mode: 'auto', note: 'e2e: release lane' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
  const stock = await admin(stack, 'PUT', '/stock', [{ sku: 'SKU-STD', available: 100000 }]);
  assert.equal(stock.status, 200);
  browser = await launch();
  page = await newPage(browser, problems);
});

after(async () => {
  await browser?.close();
  await stack?.stop();
  assert.deepEqual(problems, [], 'no script errors or CSP violations on any page');
});

/** An order held for inventory: its SKU has no stock row. */
async function heldOrder(opts = {}) {
  const sku = opts.sku ?? `SKU-C-${Math.random().toString(36).slice(2, 8)}`;
  const o = orderJson({ lines: [{ sku, quantity: 1 }], ...opts });
  const r = await api.send(o.raw);
  assert.equal(r.status, 200);
  await api.waitState(o.id, 'hold/inventory');
  return { ...o, sku };
}

/** Signs the shared page in unless it already holds a session (each test runs on its own too). */
async function signedIn() {
  if ((await page.cookies(stack.url)).some((c) => c.name === COOKIE)) return;
  await visit(page, `${stack.url}/console/sign-in`);
  await page.type('#token', ADMIN_TOKEN);
  await clickAndLoad(page, '#sign-in button[type=submit]');
}

test('an unsigned visit goes to sign-in; a wrong token is refused; a right one opens a hardened session', async () => {
  const res = await visit(page, `${stack.url}/console/audit`);
  assert.equal(new URL(page.url()).pathname, '/console/sign-in');
  assert.equal(new URL(page.url()).searchParams.get('next'), '/console/audit');
  const csp = res.headers()['content-security-policy'];
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|https?:/, 'no inline script and no other origin');
  await screenshot(page, 'sign-in');

  await page.type('#token', 'not-a-real-token');
  await page.click('#sign-in button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#sign-in-error').textContent.length > 0);
  assert.equal(await page.$eval('#sign-in-error', (e) => e.textContent), 'That is not a valid admin token.');
  assert.deepEqual((await page.cookies()).filter((c) => c.name === COOKIE), [], 'no cookie for a wrong token');

  await page.$eval('#token', (e) => { e.value = ''; });
  await page.type('#token', ADMIN_TOKEN);
  await clickAndLoad(page, '#sign-in button[type=submit]');
  assert.equal(new URL(page.url()).pathname, '/console/audit', 'back where the visit started');
  const [cookie] = (await page.cookies()).filter((c) => c.name === COOKIE);
  assert.ok(cookie, 'the session cookie is set');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.secure, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.equal(cookie.path, '/');
  assert.match(cookie.value, /^v1\.ops\.\d+\.[0-9a-f]{32}\.[A-Za-z0-9_-]+$/, 'token name and expiry inside, signed');
  assert.ok(!cookie.value.includes(ADMIN_TOKEN), 'the token itself is not in the cookie');
  assert.equal(await page.$eval('#operator', (e) => e.textContent), 'ops');
  assert.equal(await page.evaluate(() => document.cookie), '', 'the script cannot read the session');
  // The sign-in is audited under the token's name.
  const rows = (await admin(stack, 'GET', '/audit?event=console_signed_in')).body.items;
  assert.ok(rows.some((r) => r.actor === 'user:ops'));
});

test('a held order is in the queue with its reason; released with a note it leaves the queue, and the audit names the actor', async () => {
  await signedIn();
  const o = await heldOrder();
  await visit(page, `${stack.url}/console`);
  const row = `#queue-table tr[data-order="${o.id}"]`;
  await page.waitForSelector(row);
  const text = await page.$eval(row, (e) => e.textContent);
  assert.match(text, /hold\/inventory/);
  assert.match(text, new RegExp(`no stock row for ${o.sku}`), 'one line of why');
  assert.match(await page.$eval('#counts-reason', (e) => e.textContent), /inventory\s*\d+/);
  assert.match(await page.$eval('#counts-lane', (e) => e.textContent), /default\s*\d+/);
  await screenshot(page, 'queue');
  await page.setViewport({ width: 390, height: 844, isMobile: true });
  await visit(page, `${stack.url}/console`);
  await screenshot(page, 'queue-phone');
  await page.setViewport({ width: 1280, height: 900 });

  // Filters: another reason hides it, its own reason shows it.
  await visit(page, `${stack.url}/console?reason=payment`);
  assert.equal(await page.$(row), null);
  await visit(page, `${stack.url}/console?reason=inventory&lane=default`);
  await page.waitForSelector(row);

  // Stock arrives; the reviewer opens the order from the queue and releases it.
  assert.equal((await admin(stack, 'PUT', '/stock', [{ sku: o.sku, available: 5 }])).status, 200);
  await clickAndLoad(page, `${row} a.order-link`);
  assert.equal(new URL(page.url()).pathname, `/console/orders/${SHOP}/${o.id}`);
  assert.equal(await page.$eval('#order-state', (e) => e.textContent), 'hold/inventory');
  assert.ok(await page.$('#timeline tr[data-event]'), 'the timeline is shown');

  // No note, no change.
  await page.select('#action', 'release');
  await page.click('#action-submit');
  await page.waitForFunction(() => /note is required/.test(document.querySelector('#flash').textContent));
  assert.equal(await api.stateOf(o.id), 'hold/inventory');

  await page.type('#action-note', 'counted the shelf: 5 in stock');
  await page.click('#action-submit');
  await page.waitForSelector('#action-result');
  assert.match(await page.$eval('#action-result', (e) => e.textContent), /now (ready-for-fulfilment|submitted)/);
  await page.waitForFunction(() => /ready-for-fulfilment|submitted/.test(document.querySelector('#order-state').textContent));
  const release = (await api.timeline(o.id)).find((r) => r.actor === 'user:ops');
  assert.ok(release, 'an audit row by user:ops');
  assert.equal(JSON.parse(release.detail).note, 'counted the shelf: 5 in stock');
  await screenshot(page, 'order');

  await visit(page, `${stack.url}/console`);
  assert.equal(await page.$(row), null, 'no longer in the queue');

  await visit(page, `${stack.url}/console/audit?order=${o.id}&actor=user:ops`);
  const auditRow = await page.$$eval('#audit-table tbody tr', (trs) => trs.map((t) => t.textContent));
  assert.ok(auditRow.length >= 1);
  assert.ok(auditRow.every((t) => t.includes('user:ops')));
  assert.ok(auditRow.some((t) => t.includes('counted the shelf: 5 in stock')));
  await screenshot(page, 'audit');
});

test('a change another operator made first is shown as "someone else changed this order" with its new state', async () => {
  await signedIn();
  const o = await heldOrder();
  await visit(page, `${stack.url}/console/orders/${SHOP}/${o.id}`);
  assert.equal(await page.$eval('#order-state', (e) => e.textContent), 'hold/inventory');
  // Meanwhile the reviewer stops it through the API.
  const stop = await api.act(o.id, 'stop', { note: 'customer called to cancel', expected_state: 'hold/inventory' });
  assert.equal(stop.status, 200, JSON.stringify(stop.body));
  await page.select('#action', 'force-ready');
  await page.type('#action-note', 'ship it anyway');
  await page.click('#action-submit');
  await page.waitForSelector('#conflict');
  assert.equal(await page.$eval('#conflict', (e) => e.textContent),
    'Someone else changed this order: it is now cancelled. Nothing was applied; read it again and decide.');
  assert.equal(await api.stateOf(o.id), 'cancelled', 'the stale action was not applied');
  assert.equal(api.posts(o.id).length, 0, 'nothing went to the warehouse');
  await page.waitForFunction(() => document.querySelector('#order-state').textContent === 'cancelled');
  await screenshot(page, 'order-conflict');
});

test('a lane switch waits for its confirmation and needs a note', async () => {
  await signedIn();
  await visit(page, `${stack.url}/console/lanes`);
  assert.match(await page.$eval('#lanes-table tr[data-lane="eu"]', (e) => e.textContent), /manual/);
  await screenshot(page, 'lanes');
  await clickAndLoad(page, '#lanes-table tr[data-lane="eu"] a');
  assert.equal(await page.$eval('#lane-mode', (e) => e.textContent), 'manual');

  await page.select('#mode-select', 'auto');
  await page.click('#mode-switch');
  await page.waitForFunction(() => /note is required/.test(document.querySelector('#mode-confirm').textContent));

  await page.type('#mode-note', 'watched a week of EU orders in shadow');
  await page.click('#mode-switch');
  await page.waitForSelector('#mode-question');
  assert.equal(await page.$eval('#mode-question', (e) => e.textContent), 'Switch lane eu from manual to auto?');
  assert.equal(await stack.kvGet('segment:eu:mode'), null, 'nothing switched before the confirmation');
  await page.click('#mode-cancel');
  assert.equal(await page.$('#mode-question'), null);
  assert.equal(await stack.kvGet('segment:eu:mode'), null, 'cancel switches nothing');

  await page.click('#mode-switch');
  await page.waitForSelector('#mode-confirm-yes');
  await page.click('#mode-confirm-yes');
  await page.waitForSelector('#mode-result');
  assert.equal(await stack.kvGet('segment:eu:mode'), 'auto');
  await page.waitForFunction(() => document.querySelector('#lane-mode').textContent === 'auto');
  const lanes = (await admin(stack, 'GET', '/segments')).body.segments;
  assert.equal(lanes.find((l) => l.segment === 'eu').mode, 'auto');
  assert.equal(lanes.find((l) => l.segment === 'pos').mode, 'manual', 'no other lane moved');
  assert.ok(await page.$('#gates tr[data-gate]'), 'gates are listed');
  await screenshot(page, 'lane');
});

test('the default lane page charts its KPIs against the baseline', async () => {
  await signedIn();
  const b = await admin(stack, 'PUT', '/segments/default/baseline', {
    triage_mean_ms: 3_600_000, triage_p90_ms: 7_200_000, exception_rate: 0.2, fulfilment_delay_mean_ms: 600_000,
    failed_per_day: 2, note: 'e2e: manual process figures',
  });
  assert.equal(b.status, 201, JSON.stringify(b.body));
  await visit(page, `${stack.url}/console/lanes/default`);
  const charts = await page.$$eval('#kpi-charts svg', (s) => s.map((x) => x.getAttribute('aria-label')));
  assert.equal(charts.length, 5, 'one chart per KPI');
  assert.ok(charts.some((c) => /^Triage time, mean: baseline 60\.0 min/.test(c)), charts.join(' | '));
  assert.match(await page.$eval('#lane-decision', (e) => e.textContent), /keep watching|rolled back|expand/);
  await screenshot(page, 'lane-default');
});

test('<script> in Shopify strings and in notes renders as inert text', async () => {
  await signedIn();
  const name = '<script>window.__pwned = 1</script>#X1';
  const sku = '<img src=x onerror="window.__pwned = 2">';
  const o = await heldOrder({ name, sku });
  const hold = await api.act(o.id, 'hold', { note: '<script>window.__pwned = 3</script> checking', expected_state: 'hold/inventory' });
  assert.equal(hold.status, 200, JSON.stringify(hold.body));
  for (const path of ['/console', `/console/orders/${SHOP}/${o.id}`, `/console/audit?order=${o.id}`]) {
    await visit(page, `${stack.url}${path}`);
    const body = await page.$eval('main', (m) => m.textContent);
    assert.ok(body.includes(path === '/console/audit?order=' + o.id ? '<script>window.__pwned = 3</script>' : name), `${path} shows the text`);
    assert.equal(await page.evaluate(() => document.querySelectorAll('main script, main img, main [onerror]').length), 0, `${path}: no element made from data`);
    assert.equal(await page.evaluate(() => window.__pwned), undefined, `${path}: nothing ran`);
  }
  await visit(page, `${stack.url}/console/orders/${SHOP}/${o.id}`);
  assert.equal(await page.$eval('#order-name', (e) => e.textContent), name);
  assert.match(await page.$eval('#order-why', (e) => e.textContent), /no stock row for <img src=x onerror=/);
  await screenshot(page, 'order-script-text');
});

test('dead letters: re-drive one, and a bulk re-drive shows its dry run before anything changes', async () => {
  await signedIn();
  const ids = [];
  for (let i = 0; i < 3; i++) {
    const o = orderJson();
    refuse.add(o.id);
    await api.send(o.raw);
    ids.push(o.id);
  }
  for (const id of ids) await api.waitState(id, 'hold/fulfilment');
  for (const id of ids) refuse.delete(id);

  await visit(page, `${stack.url}/console/dead-letters?cause=refused`);
  const rows = await page.$$eval('#dl-table tbody tr[data-dead-letter]', (trs) => trs.map((t) => t.dataset.deadLetter));
  assert.equal(rows.length, 3);
  await screenshot(page, 'dead-letters');

  // One, with a note.
  await page.type('#dl-note', 'warehouse fixed its validator');
  await page.click(`#dl-table tr[data-order="${ids[0]}"] button`);
  await page.waitForFunction(() => /re-driven/.test(document.querySelector('#flash').textContent));
  await api.waitState(ids[0], 'submitted');

  // The rest in bulk: the dry run lists them and changes nothing.
  await page.$eval('#dl-bulk input[name=cause]', (e) => { e.value = 'refused'; });
  await page.click('#dl-dry-run');
  await page.waitForSelector('#dl-confirm');
  assert.equal(await page.$eval('#dl-would', (e) => e.textContent), 'Would re-drive 2:');
  assert.equal(await page.$eval('#dl-confirm', (e) => e.textContent), 'Confirm re-drive of 2');
  await screenshot(page, 'dead-letters-dry-run');
  assert.equal(await api.stateOf(ids[1]), 'hold/fulfilment', 'the dry run changed nothing');
  // A letter that arrives after the dry run is not swept in by the confirmation.
  const late = orderJson();
  refuse.add(late.id);
  await api.send(late.raw);
  await api.waitState(late.id, 'hold/fulfilment');
  await page.click('#dl-confirm');
  await page.waitForSelector('#dl-done');
  assert.equal(await page.$eval('#dl-done', (e) => e.textContent), 'Re-drove 2 of 2.');
  await api.waitState(ids[1], 'submitted');
  await api.waitState(ids[2], 'submitted');
  assert.equal(await api.stateOf(late.id), 'hold/fulfilment', 'only what the dry run listed');
  const resolved = await admin(stack, 'GET', '/dead-letters?status=resolved&cause=refused');
  assert.ok(ids.every((id) => resolved.body.items.some((d) => d.order_id === id && d.resolved_by === 'user:ops')));
});

test('stock: a CSV upload is checked line by line, then set', async () => {
  await signedIn();
  await visit(page, `${stack.url}/console/stock`);
  const bad = join(SCREENS, 'bad-stock.csv');
  writeFileSync(bad, 'sku,available\nSKU-CSV-A,3\n,4\nSKU-CSV-B,-1\n');
  await (await page.$('#stock-file')).uploadFile(bad);
  await page.waitForSelector('#stock-errors');
  const errors = await page.$$eval('#stock-errors li', (li) => li.map((l) => l.textContent));
  assert.deepEqual(errors, ['line 3: the sku is empty', 'line 4: available must be a whole number ≥ 0, not "-1"']);
  assert.equal(await api.stock('SKU-CSV-A'), null, 'nothing uploaded from a bad file');

  const good = join(SCREENS, 'good-stock.csv');
  writeFileSync(good, 'sku,available\r\nSKU-CSV-A,3\r\n"SKU,CSV-B",12\r\n');
  await (await page.$('#stock-file')).uploadFile(good);
  await page.waitForSelector('#stock-ready');
  await page.type('#stock-note', 'weekly count');
  await page.click('#stock-apply');
  await page.waitForSelector('#stock-result');
  assert.equal(await api.stock('SKU-CSV-A'), 3);
  assert.equal(await api.stock('SKU,CSV-B'), 12);
  await page.waitForSelector('tr[data-sku="SKU-CSV-A"]');
  await screenshot(page, 'stock');
});

test('a change made with the cookie needs the CSRF token and the console origin', async () => {
  await signedIn();
  const o = await heldOrder();
  await visit(page, `${stack.url}/console`);
  const path = `/admin/orders/${SHOP}/${o.id}/hold`;
  const noToken = await page.evaluate(async (p) => {
    const r = await fetch(p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ note: 'x' }) });
    return { status: r.status, body: await r.json() };
  }, path);
  assert.deepEqual([noToken.status, noToken.body.error], [403, 'csrf_failed']);
  const cookie = (await page.cookies()).find((c) => c.name === COOKIE).value;
  const csrf = await page.$eval('meta[name="csrf-token"]', (m) => m.content);
  const post = (origin) => fetch(`${stack.url}${path}`, {
    method: 'POST', body: JSON.stringify({ note: 'x' }),
    headers: { 'content-type': 'application/json', cookie: `${COOKIE}=${cookie}`, 'x-csrf-token': csrf, ...(origin ? { origin } : {}) },
  });
  const foreign = await post('https://evil.example');
  assert.deepEqual([foreign.status, (await foreign.json()).error], [403, 'origin_refused']);
  const none = await post(null);
  assert.deepEqual([none.status, (await none.json()).error], [403, 'origin_refused'], 'no Origin and no Sec-Fetch-Site');
  assert.equal(await api.stateOf(o.id), 'hold/inventory', 'nothing changed');
  const ok = await post(stack.url);
  assert.equal(ok.status, 200, 'same origin with the token is accepted');
  assert.equal(await api.stateOf(o.id), 'hold/manual');
  // Reads work with the cookie; a forged cookie does not.
  const forged = await fetch(`${stack.url}/admin/exceptions`, { headers: { cookie: `${COOKIE}=${cookie.replace('.ops.', '.reviewer.')}` } });
  assert.deepEqual([forged.status, (await forged.json()).error], [401, 'session_invalid']);
});

test('every console page stays within 100 KB (HTML + CSS + script)', async (t) => {
  await signedIn();
  const cookie = (await page.cookies()).find((c) => c.name === COOKIE).value;
  const get = async (p) => {
    const r = await fetch(`${stack.url}${p}`, { headers: { cookie: `${COOKIE}=${cookie}` }, redirect: 'manual' });
    assert.equal(r.status, 200, p);
    return Buffer.from(await r.arrayBuffer());
  };
  const css = await get('/console/static/console.css');
  const js = await get('/console/static/console.js');
  for (const p of ['/console/sign-in', '/console', `/console/orders/${SHOP}/1`, '/console/dead-letters', '/console/lanes',
    '/console/lanes/eu', '/console/audit', '/console/stock']) {
    const html = await get(p);
    const total = html.length + css.length + js.length;
    const gz = gzipSync(html).length + gzipSync(css).length + gzipSync(js).length;
    t.diagnostic(`${p}: ${total} bytes (${gz} gzipped): html ${html.length}, css ${css.length}, js ${js.length}`);
    assert.ok(total <= 100 * 1024, `${p} weighs ${total} bytes`);
  }
});

test('sign-out ends the session in the browser', async () => {
  await signedIn();
  await visit(page, `${stack.url}/console`);
  await Promise.all([page.waitForNavigation(), page.click('#sign-out')]);
  assert.equal(new URL(page.url()).searchParams.get('why'), 'signed-out');
  assert.equal((await page.cookies()).filter((c) => c.name === COOKIE).length, 0);
  await visit(page, `${stack.url}/console/lanes`);
  assert.equal(new URL(page.url()).pathname, '/console/sign-in');
});

test('an expired session is sent back to sign-in, in the browser and at the API', async () => {
  // A second stack whose sessions last 3 seconds.
  const short = await startStack({ vars: { CONSOLE_SESSION_MINUTES: '0.05' } });
  const p = await newPage(browser, problems);
  try {
    const savedUrl = stack.url;
    await visit(p, `${short.url}/console/lanes`);
    await p.type('#token', ADMIN_TOKEN);
    await clickAndLoad(p, '#sign-in button[type=submit]');
    assert.equal(new URL(p.url()).pathname, '/console/lanes');
    const cookie = (await p.cookies()).find((c) => c.name === COOKIE).value;
    const expires = Number(cookie.split('.')[2]);
    // The open page notices by itself and goes back to sign-in, saying why.
    await p.waitForFunction(() => location.pathname === '/console/sign-in', { timeout: 30_000 });
    await p.waitForSelector('body[data-ready]');
    assert.equal(new URL(p.url()).searchParams.get('why'), 'expired');
    assert.equal(new URL(p.url()).searchParams.get('next'), '/console/lanes');
    assert.match(await p.$eval('#sign-in-why', (e) => e.textContent), /session expired/);
    await screenshot(p, 'sign-in-expired');
    await eventually(() => Date.now() > expires + 100, { what: 'the expiry to pass' });
    // The Worker refuses the old cookie itself (not only the browser dropping it).
    const r = await fetch(`${short.url}/admin/exceptions`, { headers: { cookie: `${COOKIE}=${cookie}` } });
    assert.deepEqual([r.status, (await r.json()).error], [401, 'session_expired']);
    const page303 = await fetch(`${short.url}/console/audit`, { headers: { cookie: `${COOKIE}=${cookie}` }, redirect: 'manual' });
    assert.equal(page303.status, 303);
    assert.equal(page303.headers.get('location'), '/console/sign-in?next=%2Fconsole%2Faudit&why=expired');
    assert.equal(stack.url, savedUrl);
  } finally {
    await p.close();
    await short.stop();
  }
  await sleep(0);
});
