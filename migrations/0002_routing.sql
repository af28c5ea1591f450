-- One row per (shop, order id): where the order is now and why. The full order stays in
-- delivery_bodies (payload_delivery_id); this table holds no names, emails or addresses.
CREATE TABLE orders (
  shop                TEXT    NOT NULL,
  order_id            TEXT    NOT NULL,
  order_name          TEXT,
  state               TEXT    NOT NULL CHECK (state IN ('new', 'paid', 'fraud-check', 'hold',
                        'ready-for-fulfilment', 'submitted', 'fulfilled', 'cancelled')),
  reason              TEXT CHECK (reason IS NULL OR reason IN ('payment', 'address', 'inventory',
                        'fraud', 'manual', 'fulfilment')),
  segment             TEXT    NOT NULL,
  mode                TEXT    NOT NULL,     -- segment mode applied at the last decision
  shadow_state        TEXT,                 -- what the rules decided, for a shadow segment
  shadow_reason       TEXT,
  rule_ids            TEXT,                 -- comma-separated ids that fired at the last decision
  explanation         TEXT,                 -- one line: why the order is where it is
  rules_version       TEXT    NOT NULL,
  financial_status    TEXT,
  risk_level          TEXT,
  risk_at_ms          INTEGER,              -- created_at of the stored risk assessment
  email_hash          TEXT,                 -- SHA-256 of the lower-cased email, for velocity rules
  total_cents         INTEGER,
  currency            TEXT,
  order_updated_ms    INTEGER,              -- ordering key of the newest applied event: Shopify
  event_triggered_ms  INTEGER,              --   updated_at, then X-Shopify-Triggered-At
  payload_delivery_id INTEGER,              -- the body the last decision was made from
  seq                 INTEGER NOT NULL,     -- audit rows written for this order; the row version
  created_ms          INTEGER NOT NULL,     -- first seen by orderlane
  order_created_ms    INTEGER,              -- Shopify created_at
  routable_ms         INTEGER,              -- paid, or received when already paid
  routed_ms           INTEGER,              -- first routing outcome
  held_ms             INTEGER,              -- first time it entered hold
  resolved_ms         INTEGER,              -- operator action that resolved an exception
  ready_ms            INTEGER,
  submitted_ms        INTEGER,
  failed_ms           INTEGER,              -- dead-lettered or permanently refused
  state_since_ms      INTEGER NOT NULL,
  updated_ms          INTEGER NOT NULL,
  submission          INTEGER NOT NULL DEFAULT 0,  -- submissions claimed so far
  enqueued_ms         INTEGER,              -- when the current ready state was put on the queue
  attempts            INTEGER NOT NULL DEFAULT 0,  -- delivery attempts of the current submission
  lease_until         INTEGER,              -- an attempt is in flight until then (epoch ms)
  lease_id            TEXT,                 -- which consumer holds that attempt
  PRIMARY KEY (shop, order_id)
);
CREATE INDEX orders_by_state ON orders (state, reason, state_since_ms);
CREATE INDEX orders_by_segment ON orders (segment, state, state_since_ms);
CREATE INDEX orders_by_email ON orders (shop, email_hash, order_created_ms);
CREATE INDEX orders_ready_unqueued ON orders (state, enqueued_ms) WHERE state = 'ready-for-fulfilment';

-- Append-only. (shop, order_id, seq) is unique so two writers racing on one order cannot both
-- commit: the loser's whole batch fails and is re-decided from fresh state.
CREATE TABLE audit_log (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  at            TEXT    NOT NULL,
  at_ms         INTEGER NOT NULL,
  shop          TEXT,
  order_id      TEXT,
  seq           INTEGER,
  segment       TEXT,
  event         TEXT    NOT NULL,
  from_state    TEXT,
  to_state      TEXT,
  reason        TEXT,
  rule_id       TEXT,
  rules_version TEXT,
  actor         TEXT    NOT NULL,
  detail        TEXT,                       -- JSON; never personal data
  UNIQUE (shop, order_id, seq)
);
CREATE INDEX audit_by_time ON audit_log (at_ms);
CREATE INDEX audit_by_segment ON audit_log (segment, at_ms);
CREATE INDEX audit_by_event ON audit_log (event, at_ms);
CREATE INDEX audit_by_reason ON audit_log (reason, at_ms);
CREATE INDEX audit_by_actor ON audit_log (actor, at_ms);
CREATE INDEX audit_by_shop ON audit_log (shop, at_ms);
CREATE INDEX audit_by_rule ON audit_log (rule_id, rules_version);

-- Units that may still be claimed per SKU. The CHECK makes an over-claim fail its batch.
CREATE TABLE stock (
  sku          TEXT    PRIMARY KEY,
  available    INTEGER NOT NULL CHECK (available >= 0),
  updated_ms   INTEGER NOT NULL,
  updated_by   TEXT    NOT NULL
);

-- What each ready order took from stock, released again on cancel.
CREATE TABLE reservations (
  shop         TEXT    NOT NULL,
  order_id     TEXT    NOT NULL,
  sku          TEXT    NOT NULL,
  quantity     INTEGER NOT NULL CHECK (quantity > 0),
  created_ms   INTEGER NOT NULL,
  PRIMARY KEY (shop, order_id, sku)
);

-- The last mode seen in KV per segment, so each change is audited once, and when the
-- segment was last released to auto (the verification gates count from it).
CREATE TABLE segments (
  segment      TEXT    PRIMARY KEY,
  mode         TEXT    NOT NULL,
  seen_ms      INTEGER NOT NULL,
  released_ms  INTEGER
);
