// The go-live path stays true: shopify.app.toml lists what orderlane needs, the subscribe
// command registers it idempotently against a fake Admin API, and the README's go-live runbook
// runs, block by block and in order, against a local stack (`--local` for `--remote`, deploys
// as `--dry-run`); the blocks that need a Cloudflare or Shopify account are checked against
// wrangler.toml and shopify.app.toml instead.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFile } from 'node:child_process';
import { parse } from 'smol-toml';
import { startStack, admin, eventually, SECRET, SHOP, ADMIN_TOKEN } from '../support/stack.mjs';
import { startFakeShopify } from '../support/fake-shopify.mjs';
import { deliver } from '../support/shopify.mjs';
import { orderJson } from '../support/orders.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const APP = parse(readFileSync(join(ROOT, 'shopify.app.toml'), 'utf8'));
const WRANGLER = parse(readFileSync(join(ROOT, 'wrangler.toml'), 'utf8'));
const OPS = parse(readFileSync(join(ROOT, 'wrangler.ops.toml'), 'utf8'));

const RUNBOOK = (() => {
  const start = README.indexOf('\n## Go-live runbook\n');
  assert.ok(start >= 0, 'README has a "Go-live runbook" section');
  const end = README.indexOf('\n## ', start + 5);
  return README.slice(start, end < 0 ? undefined : end);
})();
const SH_BLOCKS = [...RUNBOOK.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1].replace(/^ {3}/gm, ''));

const ORDER_TOPICS = ['orders/create', 'orders/updated', 'orders/paid', 'orders/cancelled', 'orders/fulfilled',
  'orders/partially_fulfilled', 'orders/risk_assessment_changed', 'fulfillment_orders/placed_on_hold',
  'fulfillment_orders/hold_released'];
const COMPLIANCE = ['customers/data_request', 'customers/redact', 'shop/redact'];
const enumOf = (t) => t.replaceAll('/', '_').toUpperCase();

const QUIET = { CI: 'true', WRANGLER_SEND_METRICS: 'false', ORDERLANE_SKIP_BUILD: '1', NO_COLOR: '1' };

/** Runs a program; resolves { code, stdout, stderr } whatever the exit status. */
function run(file, args, { env = {}, cwd = ROOT } = {}) {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, env: { ...process.env, ...QUIET, ...env }, maxBuffer: 64 << 20 }, (e, stdout, stderr) => {
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stdout, stderr });
    });
  });
}

const SUBSCRIBE = join(ROOT, 'scripts', 'shopify-subscribe.mjs');
const HOOK_URL = 'https://orderlane-golive.example/webhooks/shopify';
const subscribe = (fake, args = [], env = {}) => run(process.execPath,
  [SUBSCRIBE, '--shop', SHOP, '--url', HOOK_URL, '--origin', fake.url, ...args],
  { env: { SHOPIFY_ADMIN_TOKEN: 'shpat_golive', ...env } });

describe('shopify.app.toml', () => {
  test('lists exactly the topics orderlane needs, the pinned API version and the scopes', () => {
    assert.equal(APP.webhooks.api_version, '2025-10');
    const topics = APP.webhooks.subscriptions.flatMap((s) => s.topics ?? []);
    const compliance = APP.webhooks.subscriptions.flatMap((s) => s.compliance_topics ?? []);
    assert.deepEqual([...topics].sort(), [...ORDER_TOPICS].sort());
    assert.deepEqual([...compliance].sort(), [...COMPLIANCE].sort());
    for (const s of APP.webhooks.subscriptions) assert.equal(s.uri, 'https://<WORKER>/webhooks/shopify');
    assert.deepEqual(APP.access_scopes.scopes.split(',').sort(),
      ['read_merchant_managed_fulfillment_orders', 'read_orders', 'write_merchant_managed_fulfillment_orders']);
    // Placeholders, never a real app's id.
    assert.equal(APP.client_id, '<CLIENT_ID>');
  });

  test('the runbook names every topic of shopify.app.toml, and no other', () => {
    const named = new Set([...RUNBOOK.matchAll(/(?<![\w/])((?:orders|fulfillment_orders|customers|shop)\/[a-z_]+)/g)].map((m) => m[1]));
    assert.deepEqual([...named].sort(), [...ORDER_TOPICS, ...COMPLIANCE].sort());
  });
});

describe('scripts/shopify-subscribe.mjs against the fake Admin API', () => {
  let fake;
  before(async () => { fake = await startFakeShopify({ tokens: ['shpat_golive'] }); });
  after(async () => { await fake?.close(); });
  const reset = () => { fake.subscriptions.length = 0; fake.calls.length = 0; };

  test('a dry run lists what is missing and creates nothing', async () => {
    reset();
    const r = await subscribe(fake, ['--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(fake.ops('OrderlaneSubscribe').length, 0);
    assert.equal(fake.subscriptions.length, 0);
    assert.match(r.stdout, /0 present, 9 missing/);
  });

  test('the first run creates every topic of shopify.app.toml but the privacy ones; a second creates nothing', async () => {
    reset();
    const first = await subscribe(fake);
    assert.equal(first.code, 0, first.stderr);
    assert.deepEqual(fake.subscriptions.map((s) => s.topic).sort(), ORDER_TOPICS.map(enumOf).sort());
    assert.ok(fake.subscriptions.every((s) => s.uri === HOOK_URL));
    for (const c of fake.calls) {
      assert.equal(c.token, 'shpat_golive');
      assert.equal(c.version, APP.webhooks.api_version);
    }
    for (const c of fake.ops('OrderlaneSubscribe')) assert.deepEqual(c.variables.webhookSubscription, { uri: HOOK_URL, format: 'JSON' });
    assert.match(first.stdout, /0 present, 9 created, 0 refused/);
    assert.match(first.stdout, /customers\/data_request, customers\/redact, shop\/redact/);

    const creates = fake.ops('OrderlaneSubscribe').length;
    const second = await subscribe(fake);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(fake.ops('OrderlaneSubscribe').length, creates, 'no mutation on the second run');
    assert.equal(fake.subscriptions.length, 9);
    assert.match(second.stdout, /9 present, 0 created, 0 refused/);
  });

  test('a subscription to another address is reported and left alone', async () => {
    reset();
    fake.subscriptions.push({ id: 'gid://shopify/WebhookSubscription/1', topic: 'ORDERS_CREATE', uri: 'https://old-worker.example/webhooks/shopify' });
    const r = await subscribe(fake);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /orders\/create also delivers to https:\/\/old-worker\.example\/webhooks\/shopify/);
    assert.equal(fake.subscriptions.length, 10);
    assert.ok(fake.subscriptions.some((s) => s.topic === 'ORDERS_CREATE' && s.uri === HOOK_URL));
  });

  test('a bad token: non-zero exit, a message that says what to fix, nothing created', async () => {
    reset();
    const r = await subscribe(fake, [], { SHOPIFY_ADMIN_TOKEN: 'shpat_wrong' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /refused the access token .*HTTP 401.*SHOPIFY_ADMIN_TOKEN/s);
    assert.equal(fake.ops('OrderlaneSubscribe').length, 0);
    assert.equal(fake.subscriptions.length, 0);
  });

  test('userErrors: non-zero exit naming the topic and Shopify\'s message; a rerun completes', async () => {
    reset();
    fake.failNext('userErrors', { op: 'OrderlaneSubscribe', message: 'Address is not allowed' });
    const r = await subscribe(fake);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /refused 1 subscription.*orders\/create: Address is not allowed/s);
    assert.equal(fake.subscriptions.length, 8, 'the other topics are still created');
    const again = await subscribe(fake);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /8 present, 1 created, 0 refused/);
    assert.equal(fake.subscriptions.length, 9);
  });

  test('a 429 and a THROTTLED answer are waited out and retried', async () => {
    reset();
    fake.failNext('429', { op: 'OrderlaneSubscriptions', retryAfter: 1 });
    fake.failNext('throttled', { op: 'OrderlaneSubscribe', requested: 10, available: 0 });
    const r = await subscribe(fake);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(fake.ops('OrderlaneSubscriptions').map((c) => c.answered), ['429', 200]);
    assert.equal(fake.ops('OrderlaneSubscribe')[0].answered, 'throttled');
    assert.equal(fake.subscriptions.length, 9);
  });

  test('a server error from Shopify: non-zero exit naming the step and the status', async () => {
    reset();
    fake.failNext('error', { op: 'OrderlaneSubscriptions', status: 503 });
    const r = await subscribe(fake);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /listing subscriptions: HTTP 503/);
    assert.equal(fake.ops('OrderlaneSubscribe').length, 0);
  });

  test('bad usage exits 2 before any call: token on the command line, no token, plain http, not a myshopify domain', async () => {
    reset();
    const cases = [
      [['--token', 'shpat_golive'], {}, /never from the command line/],
      [[], { SHOPIFY_ADMIN_TOKEN: '' }, /set SHOPIFY_ADMIN_TOKEN/],
    ];
    for (const [extra, env, message] of cases) {
      const r = await subscribe(fake, extra, env);
      assert.equal(r.code, 2, `${extra} ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    const http = await run(process.execPath, [SUBSCRIBE, '--shop', SHOP, '--url', 'http://plain.example/webhooks/shopify', '--origin', fake.url],
      { env: { SHOPIFY_ADMIN_TOKEN: 'shpat_golive' } });
    assert.equal(http.code, 2);
    assert.match(http.stderr, /must be https/);
    const shop = await run(process.execPath, [SUBSCRIBE, '--shop', 'shop.example.com', '--url', HOOK_URL, '--origin', fake.url],
      { env: { SHOPIFY_ADMIN_TOKEN: 'shpat_golive' } });
    assert.equal(shop.code, 2);
    assert.match(shop.stderr, /myshopify\.com/);
    assert.equal(fake.calls.length, 0);
  });

  test('an Admin API that never answers: exit 1 after SHOPIFY_TIMEOUT_MS', async () => {
    const held = [];
    const silent = createServer((socket) => { held.push(socket); });
    await new Promise((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const r = await run(process.execPath, [SUBSCRIBE, '--shop', SHOP, '--url', HOOK_URL, '--origin', `http://127.0.0.1:${silent.address().port}`],
        { env: { SHOPIFY_ADMIN_TOKEN: 'shpat_golive', SHOPIFY_TIMEOUT_MS: '300' } });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /no answer within 300 ms/);
    } finally {
      for (const s of held) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });
});

// Commands that need a Cloudflare or Shopify account: checked, not run.
const ACCOUNT_ONLY = [
  /^npx wrangler login$/,
  /^npx wrangler d1 create [\w-]+$/,
  /^npx wrangler kv namespace create FLAGS( --env staging)?$/,
  /^npx wrangler queues create [\w-]+$/,
  /^npx wrangler secret put [A-Z_]+( -c wrangler\.ops\.toml)?( --env staging)?$/,
  /^shopify app deploy$/,
];
const lines = (block) => block.split('\n').map((l) => l.replace(/\s+#.*$/, '').trim()).filter((l) => l && !l.startsWith('#'));
const accountOnly = (block) => lines(block).every((l) => ACCOUNT_ONLY.some((re) => re.test(l)));

describe('the go-live runbook', () => {
  test('each block either runs locally or needs an account throughout; the account-only names match the config', () => {
    assert.ok(SH_BLOCKS.length >= 12, `found ${SH_BLOCKS.length} blocks`);
    const commands = SH_BLOCKS.filter(accountOnly).flatMap(lines);
    for (const block of SH_BLOCKS.filter((b) => !accountOnly(b))) {
      for (const l of lines(block)) {
        assert.ok(!ACCOUNT_ONLY.some((re) => re.test(l)), `"${l}" needs an account but sits in a block that runs locally`);
      }
    }
    const created = (re) => commands.map((c) => re.exec(c)?.[1]).filter(Boolean).sort();
    const envs = [WRANGLER, WRANGLER.env.staging];
    assert.deepEqual(created(/^npx wrangler d1 create ([\w-]+)$/), envs.map((e) => e.d1_databases[0].database_name).sort());
    const queues = new Set(envs.flatMap((e) => [...e.queues.producers.map((p) => p.queue),
      ...e.queues.consumers.flatMap((c) => [c.queue, c.dead_letter_queue].filter(Boolean))]));
    assert.deepEqual(created(/^npx wrangler queues create ([\w-]+)$/), [...queues].sort());
    assert.equal(commands.filter((c) => c.startsWith('npx wrangler kv namespace create FLAGS')).length, 2);
    // Every secret put is in the runbook's table; the required ones are put for staging too.
    const table = new Set([...RUNBOOK.matchAll(/^\| `([A-Z_]+)`/gm)].map((m) => m[1]));
    for (const name of ['SHOPIFY_WEBHOOK_SECRET', 'SHOPIFY_ADMIN_TOKENS', 'SHOPIFY_CLIENT_ID', 'ADMIN_TOKENS', 'FULFILMENT_SECRET',
      'ALERT_URL', 'ALLOWED_SHOPS', 'FULFILMENT_URL', 'ALERT_FORMAT', 'SHOPIFY_TIMEOUT_MS', 'RECONCILE_LOOKBACK_HOURS',
      'RECONCILE_MAX_PAGES', 'SHOPIFY_QUIET_MINUTES', 'BODY_RETENTION_DAYS']) {
      assert.ok(table.has(name), `${name} is in the runbook's secrets and vars table`);
    }
    for (const name of created(/^npx wrangler secret put ([A-Z_]+)$/)) assert.ok(table.has(name), name);
    assert.deepEqual(created(/^npx wrangler secret put ([A-Z_]+) --env staging$/), ['ADMIN_TOKENS', 'FULFILMENT_SECRET', 'SHOPIFY_WEBHOOK_SECRET']);
    // The ops Worker gets every secret the lane Worker gets, in production and in staging.
    assert.deepEqual(created(/^npx wrangler secret put ([A-Z_]+) -c wrangler\.ops\.toml$/), created(/^npx wrangler secret put ([A-Z_]+)$/));
    assert.deepEqual(created(/^npx wrangler secret put ([A-Z_]+) -c wrangler\.ops\.toml --env staging$/),
      created(/^npx wrangler secret put ([A-Z_]+) --env staging$/));
    // ALERT_URL is a secret: a var of the same name would make `secret put ALERT_URL` fail.
    assert.ok(!('ALERT_URL' in (WRANGLER.vars ?? {})));
    assert.ok(!('ALERT_URL' in (WRANGLER.env.staging.vars ?? {})));
  });

  test('the ops Worker binds the lane Worker\'s database, KV and queue and has its vars, in each environment; only the lane reaches it', () => {
    const pick = (e) => ({
      d1: e.d1_databases.map(({ binding, database_name, database_id }) => ({ binding, database_name, database_id })),
      kv: e.kv_namespaces,
      producers: e.queues.producers,
      vars: e.vars,
    });
    assert.deepEqual(pick(OPS), pick(WRANGLER));
    assert.deepEqual(pick(OPS.env.staging), pick(WRANGLER.env.staging));
    assert.equal(OPS.queues.consumers, undefined, 'the lane Worker alone consumes the queues');
    assert.equal(OPS.triggers, undefined, 'and runs the cron');
    for (const e of [OPS, OPS.env.staging]) {
      assert.equal(e.workers_dev, false);
      assert.equal(e.preview_urls, false);
      assert.equal(e.routes, undefined);
    }
    assert.deepEqual(WRANGLER.services, [{ binding: 'OPS', service: OPS.name }]);
    assert.deepEqual(WRANGLER.env.staging.services, [{ binding: 'OPS', service: `${OPS.name}-staging` }]);
    assert.equal(OPS.main, 'build-ops/worker/shim.mjs');
  });

  describe('runs against a local stack', () => {
    let stack;
    let fake;
    let work;
    const outputs = [];
    before(async () => {
      stack = await startStack();
      fake = await startFakeShopify({ tokens: ['shpat_golive'] });
      work = mkdtempSync(join(tmpdir(), 'golive-runbook-'));
      const request = /save it as `request\.json`[\s\S]*?```json\n([\s\S]*?)```/.exec(RUNBOOK)?.[1];
      assert.ok(request, 'the runbook shows request.json');
      writeFileSync(join(work, 'request.json'), request.replace(/^ {3}/gm, '').replaceAll('<store>.myshopify.com', SHOP));
      // Something to see in the queries: one held order before the release.
      await deliver(stack.url, orderJson({ country: 'DE', currency: 'EUR' }).raw, { secret: SECRET, shop: SHOP });

      const env = {
        ORDERLANE_TOKEN: ADMIN_TOKEN,
        SHOPIFY_WEBHOOK_SECRET: SECRET,
        SHOPIFY_ADMIN_TOKEN: 'shpat_golive',
        SHOPIFY_ADMIN_ORIGIN: fake.url,
      };
      for (const block of SH_BLOCKS.filter((b) => !accountOnly(b))) {
        const script = block
          .replaceAll('--url https://<worker>/webhooks/shopify', `--url ${HOOK_URL}`)
          .replaceAll('https://<worker>', stack.url)
          .replaceAll('<store>.myshopify.com', SHOP)
          .replaceAll('request.json', join(work, 'request.json'))
          .replaceAll(' --remote', ` --local --persist-to ${stack.persist}`)
          .replace(/^(npx wrangler deploy\b.*)$/gm, '$1 --dry-run');
        let r;
        for (let attempt = 1; attempt <= 5; attempt++) {
          r = await run('bash', ['-c', `set -euo pipefail\n${script}`], { env });
          // The Worker holds the same SQLite file; a second process can meet its write lock.
          if (r.code === 0 || !/SQLITE_BUSY|database is locked/.test(r.stderr + r.stdout)) break;
          await new Promise((res) => setTimeout(res, 500 * attempt));
        }
        outputs.push({ block, ...r });
        assert.equal(r.code, 0, `runbook block failed:\n${block}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
      }
    });
    after(async () => {
      await stack?.stop();
      await fake?.close();
      if (work) rmSync(work, { recursive: true, force: true });
    });
    const output = (needle) => {
      const o = outputs.find((x) => x.block.includes(needle));
      assert.ok(o, `a block with ${needle}`);
      return o.stdout;
    };

    test('every local block ran (see before), health included', () => {
      assert.ok(outputs.length >= 10, `${outputs.length} blocks ran`);
      assert.match(output('/healthz'), /"ok":\s*true/);
      assert.match(output('/healthz'), /"differs":\s*\[\]/, 'the deep check reached the ops Worker');
    });

    test('the subscribe commands registered every topic once, at the given address', () => {
      assert.match(output('shopify-subscribe.mjs'), /0 present, 9 missing[\s\S]*0 present, 9 created/);
      assert.deepEqual(fake.subscriptions.map((s) => s.topic).sort(), ORDER_TOPICS.map(enumOf).sort());
      assert.ok(fake.subscriptions.every((s) => s.uri === HOOK_URL));
    });

    test('the hand-signed privacy request is accepted and listed for the merchant', async () => {
      const r = await admin(stack, 'GET', '/privacy/requests');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const mine = r.body.requests.filter((q) => q.request_id === '9999');
      assert.equal(mine.length, 1, JSON.stringify(r.body));
      assert.equal(mine[0].customer_id, '115310627314723950');
      assert.deepEqual(mine[0].orders_requested, ['820982911946154508']);
    });

    test('stock, baseline and both mode switches are recorded and audited', async () => {
      const stock = await stack.sql("SELECT sku, available FROM stock WHERE sku IN ('SKU-STD', 'SKU-XL') ORDER BY sku");
      assert.deepEqual(stock, [{ sku: 'SKU-STD', available: 120 }, { sku: 'SKU-XL', available: 8 }]);
      const base = await stack.sql("SELECT triage_mean_ms, failed_per_day FROM baselines WHERE segment = 'eu'");
      assert.deepEqual(base, [{ triage_mean_ms: 5400000, failed_per_day: 2 }]);
      const audit = output("event IN ('mode_changed', 'rolled_back')");
      assert.match(audit, /go-live: eu in shadow/);
      assert.match(audit, /go-live: eu released/);
      assert.match(output('FROM gate_runs'), /evaluated_at/);
    });

    test('the KV rollback puts the lane in manual: a new eu order is held, not sent', async () => {
      assert.equal(await stack.kvGet('segment:eu:mode'), 'manual');
      assert.match(output('kv key get'), /manual/);
      // Routing's copy of KV lives MODE_CACHE_MS (500 ms on the test stack).
      await new Promise((r) => setTimeout(r, 700));
      const o = orderJson({ country: 'DE', currency: 'EUR' });
      await deliver(stack.url, o.raw, { secret: SECRET, shop: SHOP });
      const order = await eventually(async () => {
        const r = await admin(stack, 'GET', `/orders/${SHOP}/${o.id}`);
        return r.status === 200 && r.body.order;
      }, { what: 'the order after the rollback' });
      assert.equal(order.segment, 'eu');
      assert.equal(order.state, 'hold');
      assert.equal(order.reason, 'manual');
      assert.ok(!stack.fake.requests.some((q) => JSON.stringify(q.json ?? '').includes(o.id)), 'nothing sent downstream');
    });

    test('production and staging deploys bind their own resources, and staging KV is its own', async () => {
      const prod = outputs.find((x) => /^npx wrangler deploy$/m.test(x.block));
      const staging = outputs.find((x) => /^npx wrangler deploy --env staging$/m.test(x.block));
      assert.ok(prod && staging);
      assert.match(prod.stdout, /env\.DB \(orderlane\)/);
      assert.match(prod.stdout, /env\.OPS \(orderlane-ops\)/);
      assert.match(staging.stdout, /env\.OPS \(orderlane-ops-staging\)/);
      // Each block deploys the ops Worker first, with the same database.
      assert.ok(prod.block.indexOf('npx wrangler deploy -c wrangler.ops.toml') < prod.block.indexOf('npx wrangler deploy\n'));
      assert.ok(staging.block.indexOf('npx wrangler deploy -c wrangler.ops.toml --env staging') < staging.block.indexOf('npx wrangler deploy --env staging'));
      assert.equal([...prod.stdout.matchAll(/env\.DB \(orderlane\)/g)].length, 2, prod.stdout);
      assert.equal([...staging.stdout.matchAll(/env\.DB \(orderlane-staging\)/g)].length, 2, staging.stdout);
      assert.match(prod.stdout, /env\.FULFILMENT_QUEUE \(orderlane-fulfilment\)/);
      assert.match(staging.stdout, /env\.DB \(orderlane-staging\)/);
      assert.match(staging.stdout, /env\.FULFILMENT_QUEUE \(orderlane-staging-fulfilment\)/);
      assert.match(staging.stdout, new RegExp(`env\\.FLAGS \\(${WRANGLER.env.staging.kv_namespaces[0].id}\\)`));
      for (const o of [prod, staging]) assert.doesNotMatch(o.stdout + o.stderr, /exists at the top level, but not on/);
      const get = await run('npx', ['wrangler', 'kv', 'key', 'get', '--binding', 'FLAGS', '--local', '--env', 'staging',
        '--persist-to', stack.persist, 'segment:eu:mode']);
      assert.equal(get.stdout.trim(), 'auto', get.stderr);
      assert.equal(await stack.kvGet('segment:eu:mode'), 'manual', 'production KV untouched by the staging put');
    });
  });
});
