-- Shopify as a peer: holds mirrored onto fulfillment orders, the fulfillment orders seen,
-- and reconciliation of orders whose webhooks never arrived.

-- What orderlane wants Shopify to show for an order (its own hold with a reason, or none),
-- and how far that has been carried out. `version` grows with each change of `desired`;
-- Shopify shows `desired` once `done_version` reaches it.
CREATE TABLE shopify_holds (
  shop            TEXT NOT NULL,
  order_id        TEXT NOT NULL,
  desired         TEXT NOT NULL CHECK (desired IN ('hold', 'release')),
  reason          TEXT,
  notes           TEXT,
  version         INTEGER NOT NULL,
  done_version    INTEGER NOT NULL DEFAULT 0,
  attempts        INTEGER NOT NULL DEFAULT 0,
  -- When the cron re-sends it if the queue has not carried it out (NULL: dead-lettered).
  next_attempt_ms INTEGER,
  last_error      TEXT,
  updated_ms      INTEGER NOT NULL,
  PRIMARY KEY (shop, order_id)
);
CREATE INDEX shopify_holds_due ON shopify_holds (next_attempt_ms) WHERE done_version < version;

-- The fulfillment orders orderlane has seen for its orders: the hold webhooks name only these.
CREATE TABLE shopify_fulfillment_orders (
  shop                 TEXT NOT NULL,
  fulfillment_order_id TEXT NOT NULL,
  order_id             TEXT NOT NULL,
  -- orderlane's own hold on it, when one is in place.
  hold_id              TEXT,
  seen_ms              INTEGER NOT NULL,
  PRIMARY KEY (shop, fulfillment_order_id)
);
CREATE INDEX shopify_fulfillment_orders_by_order ON shopify_fulfillment_orders (shop, order_id);

-- Reconciliation per shop: orders updated at or after `watermark_ms` are listed next; a run
-- that stopped at its page bound continues from `cursor` (a listing of `cursor_since_ms`).
CREATE TABLE shopify_sync (
  shop            TEXT PRIMARY KEY,
  watermark_ms    INTEGER NOT NULL,
  cursor          TEXT,
  cursor_since_ms INTEGER,
  last_run_ms     INTEGER
);

-- One row per reconciliation run and shop, and per webhook-health check.
CREATE TABLE shopify_sync_runs (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  shop        TEXT NOT NULL,
  kind        TEXT NOT NULL CHECK (kind IN ('reconcile', 'health')),
  started_ms  INTEGER NOT NULL,
  finished_ms INTEGER,
  since_ms    INTEGER,
  pages       INTEGER NOT NULL DEFAULT 0,
  listed      INTEGER NOT NULL DEFAULT 0,
  fed         INTEGER NOT NULL DEFAULT 0,
  unchanged   INTEGER NOT NULL DEFAULT 0,
  failed      INTEGER NOT NULL DEFAULT 0,
  detail      TEXT
);
CREATE INDEX shopify_sync_runs_by_shop ON shopify_sync_runs (shop, started_ms);
