// A real HTTP server standing in for the warehouse (and the alert receiver). Tests tell it
// how to answer; it records every request it saw, with its verified signature.
import { createServer } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';

/** Verifies `X-Orderlane-Signature: sha256=<hex>` over the raw body. */
export function verifyOrderlaneSignature(secret, raw, header) {
  if (!secret || !header || !header.startsWith('sha256=')) return false;
  const want = createHmac('sha256', secret).update(raw).digest();
  const got = Buffer.from(header.slice(7), 'hex');
  return got.length === want.length && timingSafeEqual(got, want);
}

/**
 * Options: `secret` (to verify signatures), `respond(req)` → { status, body, headers, delayMs }
 * or { hang: true, hangMs } or nothing for 200. `log` prints each request (the demo sink).
 *
 * Each recorded request has `at` (received, epoch ms) and `answeredAt`: when the answer was
 * written, or when the socket of a hung request was dropped; null while neither happened.
 * A request is recorded once `respond` has returned, before its (possibly delayed) answer.
 */
export async function startFakeDownstream({ secret = 'e2e-fulfilment-secret', respond, log = false, port = 0 } = {}) {
  const requests = [];
  let behaviour = respond;
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const raw = Buffer.concat(chunks);
      let json = null;
      try { json = JSON.parse(raw.toString('utf8')); } catch { /* keep raw */ }
      const entry = {
        method: req.method,
        path: req.url,
        headers: req.headers,
        raw: raw.toString('utf8'),
        json,
        signatureValid: verifyOrderlaneSignature(secret, raw, req.headers['x-orderlane-signature']),
        at: Date.now(),
        answeredAt: null,
      };
      const answer = (behaviour && (await behaviour(entry))) || {};
      entry.status = answer.hang ? null : (answer.status ?? 200); // null: never answered
      requests.push(entry);
      if (log) console.log(`${new Date().toISOString()} ${req.method} ${req.url} -> ${entry.status} signature=${entry.signatureValid ? 'valid' : 'INVALID'} ${raw.length} bytes`);
      if (answer.hang) {
        // Never answers; the caller's timeout must fire. The connection is dropped later so
        // that nothing queued behind it on the same socket waits forever.
        setTimeout(() => {
          entry.answeredAt = Date.now();
          req.socket.destroy();
        }, answer.hangMs ?? 4_000);
        return;
      }
      const send = () => {
        // One request per connection: a hung request must not hold up answers to others
        // that the client sent on the same keep-alive socket.
        res.writeHead(entry.status, { 'content-type': 'application/json', connection: 'close', ...(answer.headers || {}) });
        entry.answeredAt = Date.now();
        res.end(answer.body ?? JSON.stringify({ ok: entry.status < 300 }));
      };
      if (answer.delayMs) setTimeout(send, answer.delayMs); else send();
    });
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    requests,
    /** Replaces how the server answers from now on. */
    setBehaviour(fn) { behaviour = fn; },
    async close() {
      server.closeAllConnections?.();
      await new Promise((r) => server.close(() => r()));
    },
  };
}
