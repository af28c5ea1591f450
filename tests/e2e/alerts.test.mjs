// Alerts through the real Worker to a fake Slack incoming webhook that refuses what Slack
// refuses: the warehouse failing (raised by the queue consumer), dead letters batched per
// cron run, deliveries recorded for review, exceptions past their lane's SLA, repeats
// suppressed, a failed alert retried until it arrives once; and the signed JSON format.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, admin, eventually, SECRET, SHOP, FULFILMENT_SECRET } from '../support/stack.mjs';
import { deliver } from '../support/shopify.mjs';
import { orderJson } from '../support/orders.mjs';
import { startFakeSlack, incidentOf } from '../support/fake-slack.mjs';
import { verifyOrderlaneSignature } from '../support/fake-downstream.mjs';

const ORIGIN = 'https://orderlane.example.com';
const HOUR = 3_600_000;

const send = (stack, raw, topic = 'orders/create') => deliver(stack.url, raw, { secret: SECRET, shop: SHOP, topic });
const stateOf = async (stack, id) => {
  const r = await admin(stack, 'GET', `/orders/${SHOP}/${id}`);
  if (r.status !== 200) return null;
  const o = r.body.order;
  return o.reason ? `${o.state}/${o.reason}` : o.state;
};
/** Fires the cron; `time` (epoch ms) is the run's scheduled time (honoured with ALLOW_CLOCK_OVERRIDE). */
const fireCron = async (stack, time) => {
  // wrangler dev passes a scheduled time only on its /cdn-cgi/handler/scheduled endpoint.
  const r = await fetch(time ? `${stack.url}/cdn-cgi/handler/scheduled?cron=*/15+*+*+*+*&time=${time}` : `${stack.url}/__scheduled?cron=*/15+*+*+*+*`);
  assert.equal(r.status, 200, await r.text());
};

describe('slack format', () => {
  let stack;
  let slack;
  const ofKind = (kind) => slack.accepted.filter((m) => incidentOf(m).kind === kind);
  const failing = () => ofKind('warehouse_failing').filter((m) => m.blocks[0].text.text === 'Warehouse failing');
  const recovered = () => ofKind('warehouse_failing').filter((m) => m.blocks[0].text.text === 'Warehouse answering again');

  before(async () => {
    slack = await startFakeSlack();
    stack = await startStack({
      vars: {
        RETRY_DELAY_SCALE: '0.001',
        FULFILMENT_TIMEOUT_MS: '2000',
        ALLOW_CLOCK_OVERRIDE: '1',
        ALERT_URL: slack.hook,
        CONSOLE_ORIGIN: ORIGIN,
      },
    });
    const stock = await admin(stack, 'PUT', '/stock', [{ sku: 'SKU-STD', available: 100000 }]);
    assert.equal(stock.status, 200, JSON.stringify(stock.body));
    const r = await admin(stack, 'PUT', '/segments/default/mode', { mode: 'auto', note: 'e2e: release default' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  });
  after(async () => {
    await stack?.stop();
    await slack?.close();
  });

  test('the fake refuses what Slack refuses', async () => {
    const post = (body) => fetch(slack.hook, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const noText = await post(JSON.stringify({ lane: 'default', gate: 'A' }));
    assert.deepEqual([noText.status, await noText.text()], [400, 'invalid_payload']);
    const badBlocks = await post(JSON.stringify({ text: 'x', blocks: [{ type: 'header', text: { type: 'mrkdwn', text: 'x' } }] }));
    assert.deepEqual([badBlocks.status, await badBlocks.text()], [400, 'invalid_blocks']);
    assert.equal(slack.accepted.length, 0);
    slack.requests.length = 0;
  });

  test('a warehouse answering 503 three times gives exactly one "warehouse failing" alert; the cron clears it', async () => {
    let calls = 0;
    stack.fake.setBehaviour((req) => {
      if (req.path !== '/fulfilments') return undefined;
      calls += 1;
      return calls <= 3 ? { status: 503 } : { status: 200 };
    });
    const o = orderJson();
    assert.equal((await send(stack, o.raw)).status, 200);
    await eventually(async () => (await stateOf(stack, o.id)) === 'submitted', { what: 'the order submitted after three 503s' });
    const got = await eventually(() => failing().length > 0 && failing(), {
      what: 'the warehouse alert (sent by the consumer, no cron needed)',
    });
    assert.equal(got.length, 1);
    const m = got[0];
    assert.match(m.text, /^Warehouse failing: .*last 3 warehouse attempts failed in a row \(last: HTTP 503\)/);
    assert.ok(m.text.endsWith(`${ORIGIN}/console/dead-letters`), m.text);
    assert.equal(m.blocks[0].text.text, 'Warehouse failing');
    const button = m.blocks.find((b) => b.type === 'actions').elements[0];
    assert.equal(button.url, `${ORIGIN}/console/dead-letters`);
    const attempts = await stack.sql(`SELECT outcome FROM submission_attempts WHERE order_id = '${o.id}' ORDER BY attempt`);
    assert.deepEqual(attempts.map((a) => a.outcome), ['transient', 'transient', 'transient', 'accepted']);

    // The last attempt was accepted: the cron clears the incident and says so, once.
    await fireCron(stack);
    const [inc] = await stack.sql("SELECT state FROM alert_incidents WHERE key = 'warehouse_failing'");
    assert.equal(inc.state, 'cleared');
    await eventually(() => recovered().length === 1, { what: 'the recovery notice' });
    assert.match(recovered()[0].text, /latest attempt: accepted/);
    await fireCron(stack);
    assert.equal(failing().length, 1);
    assert.equal(recovered().length, 1);
  });

  test('repeats inside the window give none; a Slack outage neither stalls the consumer nor loses the alert', async () => {
    let calls = 0;
    stack.fake.setBehaviour((req) => {
      if (req.path !== '/fulfilments') return undefined;
      calls += 1;
      return calls <= 5 ? { status: 503 } : { status: 200 };
    });
    slack.failNext(1, 500);
    const o = orderJson();
    assert.equal((await send(stack, o.raw)).status, 200);
    await eventually(async () => (await stateOf(stack, o.id)) === 'submitted', { what: 'submitted after five 503s', timeoutMs: 90_000 });
    // The consumer's send met the 500: the order went on regardless, the message waits in D1.
    const refused = await eventually(() => slack.requests.find((q) => q.status === 500 && incidentOf(q.body).kind === 'warehouse_failing'),
      { what: 'the first try of the warehouse alert' });
    assert.ok(refused);
    assert.equal(failing().length, 1);
    const byTitle = "SELECT state, attempts FROM alert_messages WHERE title = 'Warehouse failing' ORDER BY created_ms";
    const rows = await stack.sql(byTitle);
    assert.deepEqual(rows.map((r) => [r.state, r.attempts]), [['sent', 1], ['pending', 1]],
      'failures 4 and 5 fell inside the open incident: no third message');

    await fireCron(stack);
    await eventually(() => failing().length === 2, { what: 'the retried warehouse alert' });
    await fireCron(stack);
    assert.equal(failing().length, 2, 'delivered once');
    // The last attempt was accepted, but 8 of the 10 attempts of the last 15 minutes failed:
    // the failure-rate rule keeps the incident open, so no recovery notice yet.
    const [inc] = await stack.sql("SELECT state FROM alert_incidents WHERE key = 'warehouse_failing'");
    assert.equal(inc.state, 'open');
    assert.equal(recovered().length, 1);
    const after = await stack.sql(byTitle);
    assert.deepEqual(after.map((r) => [r.state, r.attempts]), [['sent', 1], ['sent', 2]]);
  });

  test('dead letters: one alert per cron run listing that run\'s dead letters; the next run repeats none', async () => {
    stack.fake.setBehaviour((req) => (req.path === '/fulfilments' ? { status: 400 } : undefined));
    const orders = [orderJson(), orderJson()];
    for (const o of orders) assert.equal((await send(stack, o.raw)).status, 200);
    for (const o of orders) {
      await eventually(async () => (await stateOf(stack, o.id)) === 'hold/fulfilment', { what: `dead letter of ${o.id}` });
    }
    assert.equal(ofKind('dead_letter').length, 0, 'dead letters are announced by the cron run');
    await fireCron(stack);
    const got = await eventually(() => ofKind('dead_letter').length > 0 && ofKind('dead_letter'), { what: 'the dead-letter alert' });
    assert.equal(got.length, 1, 'one message for the run');
    const m = got[0];
    assert.equal(m.blocks[0].text.text, '2 orders dead-lettered');
    const section = m.blocks[1].text.text;
    for (const o of orders) {
      assert.ok(section.includes(`<${ORIGIN}/console/orders/${SHOP}/${o.id}|`), section);
    }
    assert.match(section, /refused after 1 attempt, last answer HTTP 400/);
    // A refusal is not the warehouse failing.
    assert.equal(failing().length, 2);

    await fireCron(stack);
    await fireCron(stack);
    assert.equal(ofKind('dead_letter').length, 1, 'the same dead letters are not announced again');
    const open = await stack.sql("SELECT COUNT(*) AS n FROM alert_incidents WHERE kind = 'dead_letter' AND state = 'open'");
    assert.equal(open[0].n, 2);

    // Resolving one clears its incident at the next run.
    const dl = await admin(stack, 'GET', '/dead-letters');
    assert.equal(dl.status, 200, JSON.stringify(dl.body));
    stack.fake.setBehaviour(() => undefined);
    const first = dl.body.items.find((d) => d.order_id === orders[0].id);
    const redrive = await admin(stack, 'POST', `/dead-letters/${first.id}/redrive`, { note: 'e2e: warehouse fixed' });
    assert.equal(redrive.status, 200, JSON.stringify(redrive.body));
    await fireCron(stack);
    const rows = await stack.sql("SELECT key, state FROM alert_incidents WHERE kind = 'dead_letter' ORDER BY key");
    const states = Object.fromEntries(rows.map((r) => [r.key, r.state]));
    assert.equal(states[`dead_letter:${SHOP}:${orders[0].id}`], 'cleared');
    assert.equal(states[`dead_letter:${SHOP}:${orders[1].id}`], 'open');
    assert.equal(ofKind('dead_letter').length, 1);
  });

  test('a delivery recorded for review alerts; a failed alert (Slack 500) is retried by the next run and arrives once', async () => {
    const r = await send(stack, '{"id": 12, "not json');
    assert.equal(r.status, 200);
    assert.equal(r.body.held_for_review, true);
    slack.failNext(1, 500);
    const before = slack.requests.length;
    await fireCron(stack);
    await eventually(() => slack.requests.length > before, { what: 'the first try' });
    assert.equal(slack.requests[before].status, 500);
    assert.equal(ofKind('review').length, 0);
    const [pending] = await stack.sql("SELECT state, attempts, last_error FROM alert_messages WHERE kind = 'review'");
    assert.deepEqual([pending.state, pending.attempts], ['pending', 1]);
    assert.match(pending.last_error, /^HTTP 500/);

    await fireCron(stack);
    const got = await eventually(() => ofKind('review').length > 0 && ofKind('review'), { what: 'the retried review alert' });
    assert.equal(got[0].blocks[0].text.text, '1 delivery recorded for review');
    assert.match(got[0].blocks[1].text.text, /orders\/create from e2e-shop\.myshopify\.com \(delivery \d+/);
    await fireCron(stack);
    assert.equal(ofKind('review').length, 1, 'arrives once');
    const [sent] = await stack.sql("SELECT state, attempts, last_error FROM alert_messages WHERE kind = 'review'");
    assert.deepEqual([sent.state, sent.attempts, sent.last_error], ['sent', 2, null]);
    // Both tries carried the same idempotency key.
    const tries = slack.requests.filter((q) => q.body && incidentOf(q.body).kind === 'review');
    assert.equal(tries.length, 2);
    assert.equal(tries[0].headers['idempotency-key'], tries[1].headers['idempotency-key']);
  });

  test("an exception past its lane's sla_minutes alerts once, naming the order; it clears when none is left", async () => {
    // wholesale ships manual (every order held) with sla_minutes = 1440.
    const o = orderJson({ tags: 'wholesale' });
    assert.equal((await send(stack, o.raw)).status, 200);
    await eventually(async () => (await stateOf(stack, o.id)) === 'hold/manual', { what: 'held in wholesale' });
    const sla = () => slack.accepted.filter((m) => incidentOf(m).key === 'exception_sla:wholesale');
    await fireCron(stack, Date.now() + 23 * HOUR);
    assert.equal(sla().length, 0, 'inside the SLA');
    await fireCron(stack, Date.now() + 25 * HOUR);
    const got = await eventually(() => sla().length > 0 && sla(), { what: 'the SLA alert' }).catch((e) => {
      console.log(stack.logs.join('').split('\n').filter((l) => /alerts|sla/.test(l)).slice(-10).join('\n'));
      throw e;
    });
    assert.equal(got.length, 1);
    assert.equal(got[0].blocks[0].text.text, 'Lane wholesale: 1 exception past the 1 d SLA');
    assert.ok(got[0].blocks[1].text.text.includes(`<${ORIGIN}/console/orders/${SHOP}/${o.id}|`), got[0].blocks[1].text.text);
    assert.match(got[0].blocks[1].text.text, /hold\/manual for 1 d \d+ h/);
    await fireCron(stack, Date.now() + 26 * HOUR);
    assert.equal(sla().length, 1, 'no repeat inside the window');

    // The order leaves the exception queue: the next run clears the lane's incident.
    const stop = await admin(stack, 'POST', `/orders/${SHOP}/${o.id}/stop`, { note: 'e2e: duplicate order', expected_state: 'hold/manual' });
    assert.equal(stop.status, 200, JSON.stringify(stop.body));
    await fireCron(stack, Date.now() + 27 * HOUR);
    const [inc] = await stack.sql("SELECT state FROM alert_incidents WHERE key = 'exception_sla:wholesale'");
    assert.equal(inc.state, 'cleared');
    assert.equal(sla().length, 1);
  });

  test('GET /admin/alerts lists open incidents and messages; POST /admin/alerts/test sends one now', async () => {
    const view = await admin(stack, 'GET', '/alerts');
    assert.equal(view.status, 200, JSON.stringify(view.body));
    assert.ok(view.body.open_incidents.some((i) => i.kind === 'dead_letter' && i.link === '/console/dead-letters'));
    assert.ok(view.body.messages.some((m) => m.kind === 'review' && m.state === 'sent'));
    const noNote = await admin(stack, 'POST', '/alerts/test', {});
    assert.deepEqual([noNote.status, noNote.body.error], [400, 'note_required']);
    const r = await admin(stack, 'POST', '/alerts/test', { note: 'checking the <channel> & webhook' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual([r.body.status, r.body.format], ['sent', 'slack']);
    const m = slack.accepted.at(-1);
    assert.equal(incidentOf(m).kind, 'test');
    assert.ok(m.blocks[1].text.text.includes('Sent by user:ops to check the alert channel: checking the &lt;channel&gt; &amp; webhook'));
    slack.failNext(1, 404);
    const down = await admin(stack, 'POST', '/alerts/test', { note: 'again' });
    assert.deepEqual([down.status, down.body.error], [502, 'alert_not_delivered']);
    assert.match(down.body.detail, /HTTP 404/);
    const unauth = await admin(stack, 'GET', '/alerts', undefined, null);
    assert.equal(unauth.status, 401);
  });
});

describe('json format', () => {
  let stack;
  const alerts = () => stack.fake.requests.filter((q) => q.path === '/alerts');

  before(async () => {
    stack = await startStack({ vars: { ALERT_FORMAT: 'json' } });
  });
  after(async () => { await stack?.stop(); });

  test('a json alert is signed like a warehouse request and carries the incident and relative links', async () => {
    const r = await send(stack, 'not json at all');
    assert.equal(r.status, 200);
    await fireCron(stack);
    const got = await eventually(() => alerts().length > 0 && alerts(), { what: 'the json alert' });
    assert.equal(got.length, 1);
    const q = got[0];
    assert.equal(q.signatureValid, true, 'X-Orderlane-Signature verifies under FULFILMENT_SECRET');
    assert.ok(verifyOrderlaneSignature(FULFILMENT_SECRET, Buffer.from(q.raw), q.headers['x-orderlane-signature']));
    assert.ok(!verifyOrderlaneSignature('another-secret', Buffer.from(q.raw), q.headers['x-orderlane-signature']));
    assert.equal(q.headers['idempotency-key'], q.json.id);
    assert.equal(q.json.kind, 'review');
    assert.equal(q.json.title, '1 delivery recorded for review');
    assert.match(q.json.incidents[0], /^review:\d+$/);
    assert.equal(q.json.link, '/console', 'relative without CONSOLE_ORIGIN');
    assert.equal(q.json.items.length, 1);
    assert.equal(q.json.details.count, 1);
    assert.equal(typeof q.json.at_ms, 'number');
  });
});
