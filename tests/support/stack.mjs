// Starts the real Workers under one `wrangler dev` (the lane Worker, wrangler.toml, and the ops
// Worker, wrangler.ops.toml, behind its service binding) with their own throwaway state,
// secrets and a fake downstream, and tears every process down again, even when a test fails.
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startFakeDownstream } from './fake-downstream.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const WRANGLER = join(ROOT, 'node_modules', '.bin', 'wrangler');
const run = promisify(execFile);
const live = new Set();

const QUIET_ENV = { ...process.env, CI: 'true', WRANGLER_SEND_METRICS: 'false', ORDERLANE_SKIP_BUILD: '1', NO_COLOR: '1' };

export const SECRET = 'e2e-current-secret';
export const PREVIOUS_SECRET = 'e2e-previous-secret';
export const ADMIN_TOKEN = 'e2e-admin-token';
export const FULFILMENT_SECRET = 'e2e-fulfilment-secret';
export const SHOP = 'e2e-shop.myshopify.com';

function killAll() {
  for (const child of live) {
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
  }
  live.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { killAll(); process.exit(130); });

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitFor(url, child, logs, timeoutMs = 90_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited (${child.exitCode}):\n${logs.join('')}`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`wrangler dev did not come up in ${timeoutMs} ms:\n${logs.join('')}`);
}

const D1_PY = join(ROOT, 'tests', 'support', 'd1.py');

/**
 * The local D1 database's SQLite file in a stack's state, found while it is the only one (the
 * go-live runbook later adds staging's beside it).
 */
function d1File(persist) {
  const dir = join(persist, 'v3', 'd1', 'miniflare-D1DatabaseObject');
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.sqlite') && f !== 'metadata.sqlite') : [];
  if (files.length !== 1) throw new Error(`expected one D1 database file in ${dir}, found ${files.length}`);
  return join(dir, files[0]);
}

async function d1(file, command, write) {
  const args = [D1_PY, file, ...(write ? ['--write'] : []), command];
  const { stdout } = await run('python3', args, { maxBuffer: 64 << 20 });
  return JSON.parse(stdout);
}

/**
 * The ops Worker's config for one stack. `wrangler dev` gives `--var` to the first Worker only;
 * a second Worker reads the `.dev.vars` beside its config, so the config is copied into the
 * stack's state with absolute paths and the same vars written beside it.
 */
function opsConfig(persist, vars) {
  const dir = join(persist, 'ops');
  mkdirSync(dir, { recursive: true });
  const toml = readFileSync(join(ROOT, 'wrangler.ops.toml'), 'utf8')
    .replace(/^\[build\]\ncommand = .*\n/m, '')
    .replace(/^main = "(.*)"$/m, (_, p) => `main = ${JSON.stringify(join(ROOT, p))}`)
    .replace(/^migrations_dir = "(.*)"$/gm, (_, p) => `migrations_dir = ${JSON.stringify(join(ROOT, p))}`);
  writeFileSync(join(dir, 'wrangler.toml'), toml);
  writeFileSync(join(dir, '.dev.vars'), Object.entries(vars).map(([k, v]) => `${k}=${JSON.stringify(String(v))}\n`).join(''));
  return join(dir, 'wrangler.toml');
}

/** The lane Worker's config without its `OPS` service binding (a deploy that left it out). */
function laneConfigWithoutOps(persist) {
  const dir = join(persist, 'lane');
  mkdirSync(dir, { recursive: true });
  const original = readFileSync(join(ROOT, 'wrangler.toml'), 'utf8');
  const toml = original
    .replace(/^\[build\]\n(#.*\n)*command = .*\n/m, '')
    .replace(/^\[\[services\]\]\nbinding = "OPS"\nservice = "orderlane-ops"\n/m, '')
    .replace(/^main = "(.*)"$/m, (_, p) => `main = ${JSON.stringify(join(ROOT, p))}`)
    .replace(/^migrations_dir = "(.*)"$/gm, (_, p) => `migrations_dir = ${JSON.stringify(join(ROOT, p))}`);
  if (/^\[\[services\]\]/m.test(toml) || /^\[build\]/m.test(toml) || toml === original) {
    throw new Error('wrangler.toml changed shape: the OPS binding or [build] was not left out');
  }
  writeFileSync(join(dir, 'wrangler.toml'), toml);
  return join(dir, 'wrangler.toml');
}

/**
 * Starts one stack. Options: `vars` (extra vars/secrets), `downstream` (fake server options),
 * `migrate: false` (leave D1 without its schema, to see storage failures), `ops: false` (the lane
 * Worker alone, its OPS binding unanswered), `opsBinding: false` (the lane Worker alone, deployed
 * without the OPS binding), `opsVars` (the ops Worker's vars differ: a value, or
 * `undefined` to leave one out).
 * Returns { url, fake, persist, sql(), exec(), wranglerSql(), kvPut(), stop(), logs }.
 */
export async function startStack({ vars = {}, downstream = {}, migrate = true, ops = true, opsBinding = true, opsVars = {} } = {}) {
  if (!opsBinding) ops = false;
  if (!existsSync(join(ROOT, 'build', 'worker', 'shim.mjs')) || !existsSync(join(ROOT, 'build-ops', 'worker', 'shim.mjs'))) {
    throw new Error('build/ or build-ops/ is missing: run `make build` (or `make test`, which builds first)');
  }
  const persist = mkdtempSync(join(tmpdir(), 'orderlane-e2e-'));
  // wrangler appends a debug log of every run (each subrequest's inspector events included) under
  // ~/.config/.wrangler/logs and never prunes it: keep this stack's with its state, removed at stop.
  const env = { ...QUIET_ENV, WRANGLER_LOG_PATH: join(persist, 'wrangler-logs') };
  const fake = await startFakeDownstream(downstream);
  let dbFile;
  if (migrate) {
    await run(WRANGLER, ['d1', 'migrations', 'apply', 'orderlane', '--local', '--persist-to', persist], { cwd: ROOT, env });
    try { dbFile = d1File(persist); } catch (e) { await fake.close(); throw e; }
  }
  const db = () => (dbFile ??= d1File(persist));
  const port = await freePort();
  const inspector = await freePort();
  const allVars = {
    SHOPIFY_WEBHOOK_SECRET: SECRET,
    SHOPIFY_WEBHOOK_SECRET_PREVIOUS: PREVIOUS_SECRET,
    ADMIN_TOKENS: `ops:${ADMIN_TOKEN},reviewer:e2e-reviewer-token`,
    FULFILMENT_SECRET,
    FULFILMENT_URL: `${fake.url}/fulfilments`,
    ALERT_URL: `${fake.url}/alerts`,
    ALLOWED_SHOPS: `${SHOP},second-shop.myshopify.com`,
    // Routing reuses a KV read for this long (10 s in production): short, so tests that flip
    // KV directly wait little (`kvFlip`).
    MODE_CACHE_MS: '500',
    ...vars,
  };
  const opsEnv = Object.fromEntries(Object.entries({ ...allVars, ...opsVars }).filter(([, v]) => v !== undefined));
  const lane = opsBinding ? join(ROOT, 'wrangler.toml') : laneConfigWithoutOps(persist);
  const configs = ['-c', lane, ...(ops ? ['-c', opsConfig(persist, opsEnv)] : [])];
  const args = ['dev', ...configs, '--port', String(port), '--ip', '127.0.0.1', '--inspector-port', String(inspector),
    '--persist-to', persist, '--test-scheduled', '--log-level', 'info'];
  for (const [k, v] of Object.entries(allVars)) args.push('--var', `${k}:${v}`);
  const child = spawn(WRANGLER, args, { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  const logs = [];
  child.stdout.on('data', (d) => logs.push(d.toString()));
  child.stderr.on('data', (d) => logs.push(d.toString()));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(`${url}/healthz`, child, logs);
  } catch (e) {
    killAll();
    await fake.close();
    throw e;
  }

  const wrangler = async (...a) => {
    const { stdout } = await run(WRANGLER, a, { cwd: ROOT, env, maxBuffer: 64 << 20 });
    return stdout;
  };
  return {
    url,
    fake,
    persist,
    logs,
    /** How long the lane Worker's routing reuses a lane mode it read (var MODE_CACHE_MS). */
    modeCacheMs: Number(allVars.MODE_CACHE_MS),
    /** Rows of a read-only query, read from the local D1's SQLite file (tests/support/d1.py). */
    async sql(command) {
      return d1(db(), command, false);
    },
    /** A change to the local D1 made behind the Workers' backs, to set up a state. */
    async exec(command) {
      return d1(db(), command, true);
    },
    /**
     * Rows of a query run as the README's commands run it (`wrangler d1 execute --local`). Its
     * second runtime can make a concurrent Worker write fail, so only the docs' own tests use it.
     */
    async wranglerSql(command) {
      // The Worker holds the same SQLite file; a read from this second process can meet its
      // write lock under load, so busy answers are retried.
      for (let attempt = 1; ; attempt++) {
        try {
          const out = await wrangler('d1', 'execute', 'orderlane', '--local', '--persist-to', persist, '--json', '--command', command);
          return JSON.parse(out)[0].results;
        } catch (e) {
          const busy = /SQLITE_BUSY|database is locked/.test(`${e.message}${e.stdout ?? ''}${e.stderr ?? ''}`);
          if (!busy || attempt >= 20) throw e;
          await new Promise((r) => setTimeout(r, 250 * attempt));
        }
      }
    },
    async kvPut(key, value) {
      await wrangler('kv', 'key', 'put', '--binding', 'FLAGS', '--local', '--persist-to', persist, key, value);
    },
    /** A KV put as operators make it, then a wait until routing's copy of KV has expired. */
    async kvFlip(key, value) {
      await this.kvPut(key, value);
      await new Promise((r) => setTimeout(r, this.modeCacheMs + 100));
    },
    async kvGet(key) {
      try {
        const v = (await wrangler('kv', 'key', 'get', '--binding', 'FLAGS', '--local', '--persist-to', persist, key)).trim();
        return v === 'Value not found' ? null : v;
      } catch { return null; }
    },
    async stop() {
      live.delete(child);
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
      await fake.close();
      rmSync(persist, { recursive: true, force: true });
    },
  };
}

/** Calls the admin API and returns at its answer: { status, body }. */
export async function adminNow(stack, method, path, body, token = ADMIN_TOKEN) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${stack.url}/admin${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let parsed = null;
  try { parsed = JSON.parse(text); } catch { parsed = text; }
  return { status: res.status, body: parsed };
}

/**
 * Calls the admin API; returns { status, body }. A lane mode switch is made by the ops Worker;
 * the lane Worker's routing sees it once its copy of the mode expires, so a successful switch
 * returns after that lifetime, as an operator would see it. (`adminNow` does not wait: the
 * soak uses it, so its orders meet routing's stale copy and the send-time check must hold.)
 */
export async function admin(stack, method, path, body, token = ADMIN_TOKEN) {
  const r = await adminNow(stack, method, path, body, token);
  if (method === 'PUT' && /^\/segments\/[^/]+\/mode$/.test(path) && r.status === 200 && stack.modeCacheMs) {
    await new Promise((res) => setTimeout(res, stack.modeCacheMs + 100));
  }
  return r;
}

/** Polls `fn` until it returns a truthy value or the deadline passes. */
export async function eventually(fn, { timeoutMs = 30_000, intervalMs = 250, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out waiting for ${what}; last value: ${JSON.stringify(last)}`);
}
