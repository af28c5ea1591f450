#!/usr/bin/env node
// Registers orderlane's webhook subscriptions on one store through the GraphQL Admin API, for
// apps created in the Shopify admin (Dev Dashboard apps get theirs from `shopify app deploy`).
// The topics and the API version come from shopify.app.toml, so the two ways cannot drift.
// Idempotent: lists what exists first and creates only what is missing at this address.
//
//   SHOPIFY_ADMIN_TOKEN=shpat_... node scripts/shopify-subscribe.mjs \
//     --shop <store>.myshopify.com --url https://<worker>/webhooks/shopify [--dry-run]
//
// Exit status: 0 done (or nothing to do), 1 Shopify refused or failed, 2 bad usage.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'smol-toml';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const MAX_RETRIES = 5;

class Usage extends Error {}
class Failure extends Error {}

const USAGE = `usage: SHOPIFY_ADMIN_TOKEN=... node scripts/shopify-subscribe.mjs \\
    --shop <store>.myshopify.com --url https://<worker>/webhooks/shopify
    [--dry-run] [--config shopify.app.toml] [--origin http://127.0.0.1:PORT]

  --shop     the store's myshopify.com domain
  --url      where Shopify delivers: the Worker's /webhooks/shopify (https)
  --dry-run  list what exists and what would be created; create nothing
  --config   the app configuration to read topics from (default: shopify.app.toml)
  --origin   replaces https://<shop> (local fakes and tests only; env SHOPIFY_ADMIN_ORIGIN)

  env SHOPIFY_ADMIN_TOKEN   the app's Admin API access token (never on the command line)
  env SHOPIFY_TIMEOUT_MS    per-request timeout (default 10000)`;

function parseArgs(argv) {
  const opts = { dryRun: false, config: join(ROOT, 'shopify.app.toml') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined || v.startsWith('--')) throw new Usage(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--shop': opts.shop = value(); break;
      case '--url': opts.url = value(); break;
      case '--origin': opts.origin = value(); break;
      case '--config': opts.config = value(); break;
      case '--dry-run': opts.dryRun = true; break;
      case '--help': case '-h': opts.help = true; break;
      case '--token': case '--access-token':
        throw new Usage('the token is read from the environment variable SHOPIFY_ADMIN_TOKEN, never from the command line (it would be kept in shell history and shown to every user by ps)');
      default: throw new Usage(`unknown argument ${a}`);
    }
  }
  return opts;
}

/** Topics and API version from the app configuration; compliance topics are left out. */
export function readAppConfig(path) {
  let doc;
  try {
    doc = parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Usage(`cannot read ${path}: ${e.message}`);
  }
  const version = doc.webhooks?.api_version;
  if (!/^\d{4}-\d{2}$/.test(String(version ?? ''))) throw new Usage(`${path}: [webhooks] api_version must look like 2025-10`);
  const topics = [];
  const compliance = [];
  for (const s of doc.webhooks?.subscriptions ?? []) {
    for (const t of s.topics ?? []) if (!topics.includes(t)) topics.push(t);
    for (const t of s.compliance_topics ?? []) if (!compliance.includes(t)) compliance.push(t);
  }
  if (topics.length === 0) throw new Usage(`${path}: no [[webhooks.subscriptions]] topics`);
  return { version, topics, compliance, scopes: doc.access_scopes?.scopes ?? '' };
}

/** `orders/create` → `ORDERS_CREATE` (the WebhookSubscriptionTopic enum). */
export const enumTopic = (topic) => topic.replaceAll('/', '_').toUpperCase();

const LIST = `query OrderlaneSubscriptions($after: String) {
  webhookSubscriptions(first: 100, after: $after) {
    nodes { id topic uri }
    pageInfo { hasNextPage endCursor }
  }
}`;

const CREATE = `mutation OrderlaneSubscribe($topic: WebhookSubscriptionTopic!, $webhookSubscription: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) {
    webhookSubscription { id topic uri }
    userErrors { field message }
  }
}`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function admin({ endpoint, shop, token, timeoutMs }) {
  return async function call(query, variables, what) {
    for (let attempt = 0; ; attempt++) {
      let res;
      try {
        res = await fetch(endpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json', 'x-shopify-access-token': token },
          body: JSON.stringify({ query, variables }),
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (e) {
        const why = e.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (e.cause?.code ?? e.message);
        throw new Failure(`${what}: cannot reach ${endpoint}: ${why}`);
      }
      const text = await res.text();
      let body = null;
      try { body = JSON.parse(text); } catch { /* reported below */ }
      if (res.status === 429 && attempt < MAX_RETRIES) {
        const wait = Math.max(1, Number(res.headers.get('retry-after')) || 1);
        console.error(`  throttled (HTTP 429); retrying in ${wait} s`);
        await sleep(wait * 1000);
        continue;
      }
      if (res.status === 401) {
        throw new Failure(`${what}: Shopify refused the access token for ${shop} (HTTP 401). SHOPIFY_ADMIN_TOKEN must be the Admin API access token (shpat_...) of the app installed on this store.`);
      }
      if (res.status === 402) throw new Failure(`${what}: ${shop} is frozen or unpaid (HTTP 402)`);
      if (res.status === 403) throw new Failure(`${what}: forbidden (HTTP 403): the app lacks an access scope or was uninstalled from ${shop}`);
      if (res.status === 404) throw new Failure(`${what}: no Admin API at ${endpoint} (HTTP 404): check --shop and the API version`);
      if (!res.ok || body === null) throw new Failure(`${what}: HTTP ${res.status} from ${endpoint}: ${text.slice(0, 200)}`);
      const errors = Array.isArray(body.errors) ? body.errors : body.errors ? [{ message: String(body.errors) }] : [];
      const throttled = errors.find((e) => e.extensions?.code === 'THROTTLED');
      if (throttled && attempt < MAX_RETRIES) {
        // Wait until the bucket holds what the query costs, at the advertised restore rate.
        const t = body.extensions?.cost?.throttleStatus ?? {};
        const need = (body.extensions?.cost?.requestedQueryCost ?? 50) - (t.currentlyAvailable ?? 0);
        const wait = Math.min(60, Math.max(1, Math.ceil(need / (t.restoreRate || 50))));
        console.error(`  throttled (query cost); retrying in ${wait} s`);
        await sleep(wait * 1000);
        continue;
      }
      if (errors.length) {
        const denied = errors.some((e) => e.extensions?.code === 'ACCESS_DENIED');
        throw new Failure(`${what}: ${errors.map((e) => e.message).join('; ')}${denied ? ' (the app lacks the access scope this topic needs: see [access_scopes] in shopify.app.toml)' : ''}`);
      }
      if (!body.data) throw new Failure(`${what}: answer without data: ${text.slice(0, 200)}`);
      return body.data;
    }
  };
}

export async function main(argv = process.argv.slice(2), env = process.env) {
  const opts = parseArgs(argv);
  if (opts.help) { console.log(USAGE); return 0; }
  if (!opts.shop) throw new Usage('--shop is required');
  if (!/^[a-z0-9][a-z0-9-]*\.myshopify\.com$/.test(opts.shop)) throw new Usage(`--shop must be the store's *.myshopify.com domain, not ${JSON.stringify(opts.shop)}`);
  if (!opts.url) throw new Usage('--url is required');
  let url;
  try { url = new URL(opts.url); } catch { throw new Usage(`--url is not a URL: ${opts.url}`); }
  if (url.protocol !== 'https:') throw new Usage('--url must be https: Shopify delivers webhooks over HTTPS only');
  if (/[<>]/.test(opts.url)) throw new Usage('--url still holds a placeholder');
  if (!url.pathname.endsWith('/webhooks/shopify')) console.error(`warning: ${opts.url} is not orderlane's /webhooks/shopify`);
  const token = (env.SHOPIFY_ADMIN_TOKEN ?? '').trim();
  if (!token) throw new Usage('set SHOPIFY_ADMIN_TOKEN to the app\'s Admin API access token');
  const origin = (opts.origin ?? env.SHOPIFY_ADMIN_ORIGIN ?? `https://${opts.shop}`).replace(/\/+$/, '');
  const timeoutMs = Number(env.SHOPIFY_TIMEOUT_MS || 10000);
  if (!(timeoutMs > 0)) throw new Usage('SHOPIFY_TIMEOUT_MS must be a positive number of milliseconds');

  const cfg = readAppConfig(opts.config);
  const endpoint = `${origin}/admin/api/${cfg.version}/graphql.json`;
  const call = admin({ endpoint, shop: opts.shop, token, timeoutMs });
  console.log(`${opts.shop}: Admin API ${cfg.version}, ${cfg.topics.length} topics to ${opts.url}${opts.dryRun ? ' (dry run)' : ''}`);

  const existing = [];
  for (let after = null; ;) {
    const data = await call(LIST, { after }, 'listing subscriptions');
    const page = data.webhookSubscriptions;
    existing.push(...(page?.nodes ?? []));
    if (!page?.pageInfo?.hasNextPage) break;
    after = page.pageInfo.endCursor;
  }

  const counts = { present: 0, created: 0, wouldCreate: 0, refused: 0 };
  const refusals = [];
  for (const topic of cfg.topics) {
    const name = enumTopic(topic);
    const here = existing.find((s) => s.topic === name && s.uri === opts.url);
    const elsewhere = existing.filter((s) => s.topic === name && s.uri !== opts.url);
    for (const s of elsewhere) console.log(`  note     ${topic} also delivers to ${s.uri} (${s.id}); left as it is`);
    if (here) {
      counts.present++;
      console.log(`  exists   ${topic} (${here.id})`);
      continue;
    }
    if (opts.dryRun) {
      counts.wouldCreate++;
      console.log(`  missing  ${topic} (would create)`);
      continue;
    }
    const data = await call(CREATE, { topic: name, webhookSubscription: { uri: opts.url, format: 'JSON' } }, `creating ${topic}`);
    const r = data.webhookSubscriptionCreate;
    if (r?.userErrors?.length || !r?.webhookSubscription) {
      counts.refused++;
      const why = (r?.userErrors ?? []).map((e) => `${e.message}${e.field ? ` (${[].concat(e.field).join('.')})` : ''}`).join('; ') || 'no subscription in the answer';
      refusals.push(`${topic}: ${why}`);
      console.log(`  REFUSED  ${topic}: ${why}`);
      continue;
    }
    counts.created++;
    console.log(`  created  ${topic} (${r.webhookSubscription.id})`);
  }

  const summary = opts.dryRun
    ? `${counts.present} present, ${counts.wouldCreate} missing`
    : `${counts.present} present, ${counts.created} created, ${counts.refused} refused`;
  console.log(`done: ${summary}`);
  if (cfg.compliance.length) {
    console.log(`not registered here (app configuration only): ${cfg.compliance.join(', ')}`);
  }
  if (refusals.length) {
    console.error(`error: Shopify refused ${refusals.length} subscription(s):\n  ${refusals.join('\n  ')}`);
    return 1;
  }
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().then((code) => { process.exitCode = code; }, (e) => {
    if (e instanceof Usage) {
      console.error(`error: ${e.message}\n\n${USAGE}`);
      process.exitCode = 2;
    } else {
      console.error(`error: ${e instanceof Failure ? e.message : e.stack ?? e}`);
      process.exitCode = 1;
    }
  });
}
