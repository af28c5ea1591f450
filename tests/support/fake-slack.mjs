// A real HTTP server standing in for a Slack incoming webhook. Like Slack, it answers
// `400 invalid_payload` to a body that is not JSON or has no `text`, `400 invalid_blocks` to
// blocks Slack would refuse, and `200 ok` otherwise; it records what it accepted. Tests can
// tell it to fail the next requests (e.g. 500) to see alerts retried.
import { createServer } from 'node:http';

const BLOCK_TYPES = new Set(['header', 'section', 'context', 'actions', 'divider']);

/** Why Slack would refuse these blocks, or null. */
function blocksProblem(blocks) {
  if (blocks === undefined) return null;
  if (!Array.isArray(blocks) || blocks.length > 50) return 'blocks must be an array of at most 50';
  for (const b of blocks) {
    if (!b || !BLOCK_TYPES.has(b.type)) return `unknown block type ${b?.type}`;
    if (b.type === 'header' && (b.text?.type !== 'plain_text' || !b.text.text || b.text.text.length > 150)) return 'header needs plain_text of 1-150 characters';
    if (b.type === 'section' && (!['mrkdwn', 'plain_text'].includes(b.text?.type) || !b.text.text || b.text.text.length > 3000)) return 'section text of 1-3000 characters';
    if (b.type === 'context' && (!Array.isArray(b.elements) || b.elements.length === 0)) return 'context needs elements';
    if (b.type === 'actions') {
      for (const e of b.elements ?? []) {
        if (e.type === 'button' && e.url !== undefined && !/^https?:\/\//.test(e.url)) return 'button url must be absolute';
      }
    }
  }
  return null;
}

export async function startFakeSlack() {
  const requests = []; // everything received, with the answer given
  const accepted = []; // parsed bodies Slack would have posted
  let failures = []; // statuses for the next requests
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body = null;
      try { body = JSON.parse(raw); } catch { /* not JSON */ }
      let status = 200;
      let answer = 'ok';
      if (failures.length > 0) {
        status = failures.shift();
        answer = 'server_error';
      } else if (req.method !== 'POST') {
        status = 405; answer = 'invalid_method';
      } else if (!body || typeof body.text !== 'string' || body.text.trim() === '') {
        status = 400; answer = 'invalid_payload';
      } else if (blocksProblem(body.blocks)) {
        status = 400; answer = 'invalid_blocks';
      }
      requests.push({ path: req.url, headers: req.headers, raw, body, status, answer, at: Date.now() });
      if (status === 200) accepted.push(body);
      res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' });
      res.end(answer);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    /** A Slack-shaped webhook address on this server. */
    hook: `${url}/services/T0000/B0000/e2e`,
    requests,
    accepted,
    /** The next `n` requests are answered `status` (default 500), whatever they carry. */
    failNext(n, status = 500) { failures = Array(n).fill(status); },
    async close() {
      server.closeAllConnections?.();
      await new Promise((r) => server.close(() => r()));
    },
  };
}

/** The incident kind and key a message names (its context block: `orderlane · kind · key · time`). */
export function incidentOf(msg) {
  const ctx = (msg.blocks ?? []).find((b) => b.type === 'context');
  const parts = (ctx?.elements?.[0]?.text ?? '').split(' · ');
  return { kind: parts[1], key: parts[2]?.replace(/ \(\+\d+ more\)$/, '') };
}
