// The local demo fulfilment sink for `make dev`: accepts every fulfilment and alert,
// verifies X-Orderlane-Signature, and prints one line per request.
import { startFakeDownstream } from '../tests/support/fake-downstream.mjs';

const port = Number(process.env.SINK_PORT || 8788);
const secret = process.env.FULFILMENT_SECRET || 'local-fulfilment-secret';
const sink = await startFakeDownstream({ port, secret, log: true });
console.log(`demo fulfilment sink listening on ${sink.url}`);
