-- An order's life after its first decision: attempts counted across a submission (a re-drive
-- after transient failures continues the count under the same key, with a fresh schedule),
-- when the next attempt is due (the cron re-sends what is overdue), the body a submission's
-- document is built from (retries repeat the same bytes), and the cancel request sent when an
-- order the warehouse accepted is cancelled.
ALTER TABLE orders ADD COLUMN attempt_base INTEGER NOT NULL DEFAULT 0;   -- attempts before this round
ALTER TABLE orders ADD COLUMN next_attempt_ms INTEGER;                   -- the next attempt is due then
ALTER TABLE orders ADD COLUMN submission_delivery_id INTEGER;            -- body of the current submission
ALTER TABLE orders ADD COLUMN cancel_state TEXT
  CHECK (cancel_state IS NULL OR cancel_state IN ('requested', 'confirmed', 'shipped', 'failed'));
ALTER TABLE orders ADD COLUMN cancel_attempts INTEGER NOT NULL DEFAULT 0;

-- Orders already waiting as ready are due now.
UPDATE orders SET next_attempt_ms = COALESCE(enqueued_ms, state_since_ms) WHERE state = 'ready-for-fulfilment';

CREATE INDEX orders_due ON orders (state, next_attempt_ms) WHERE state = 'ready-for-fulfilment';
CREATE INDEX orders_cancel_due ON orders (cancel_state, next_attempt_ms) WHERE cancel_state = 'requested';
-- The cron sweeps only due orders, per lane, oldest first.
CREATE INDEX orders_waiting ON orders (segment, state, order_created_ms)
  WHERE state IN ('new', 'fraud-check');

-- Reservations: NULL submitted_ms is an open claim (the order is ready, or an attempt that
-- started while it was ready is in flight); a set one marks units the warehouse accepted,
-- kept until it ships them or confirms a cancellation.
ALTER TABLE reservations ADD COLUMN submitted_ms INTEGER;

-- Every attempt of a cancel request, claimed before it is sent.
CREATE TABLE cancel_attempts (
  shop         TEXT    NOT NULL,
  order_id     TEXT    NOT NULL,
  submission   INTEGER NOT NULL,
  attempt      INTEGER NOT NULL,
  started_ms   INTEGER NOT NULL,
  finished_ms  INTEGER,
  outcome      TEXT,                 -- confirmed | shipped | transient | refused
  http_status  INTEGER,
  error        TEXT,
  PRIMARY KEY (shop, order_id, submission, attempt)
);
