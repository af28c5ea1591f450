-- Every authentic Shopify delivery, once per (shop, webhook id).
CREATE TABLE deliveries (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  shop         TEXT    NOT NULL,
  webhook_id   TEXT    NOT NULL,
  topic        TEXT    NOT NULL,
  event_id     TEXT,
  triggered_at TEXT,
  api_version  TEXT,
  received_at  TEXT    NOT NULL,            -- RFC 3339 UTC
  received_ms  INTEGER NOT NULL,            -- epoch milliseconds, for ranges
  body_size    INTEGER NOT NULL,
  body_sha256  TEXT    NOT NULL,
  order_id     TEXT,                        -- exact decimal text; Shopify ids pass 2^53
  outcome      TEXT    NOT NULL CHECK (outcome IN ('accepted', 'ignored', 'review')),
  detail       TEXT,                        -- why a delivery is held for review; never personal data
  UNIQUE (shop, webhook_id)
);
CREATE INDEX deliveries_by_outcome ON deliveries (outcome, received_ms);
CREATE INDEX deliveries_by_order ON deliveries (shop, order_id, received_ms);

-- Raw bodies, kept apart from the metadata because they hold personal data: erasable per
-- shop and per customer (Shopify's shop/redact and customers/redact) without losing the
-- delivery record.
CREATE TABLE delivery_bodies (
  delivery_id  INTEGER PRIMARY KEY REFERENCES deliveries (id),
  shop         TEXT NOT NULL,
  order_id     TEXT,
  customer_id  TEXT,
  encoding     TEXT NOT NULL CHECK (encoding IN ('utf8', 'base64')),
  body         TEXT NOT NULL
);
CREATE INDEX delivery_bodies_by_customer ON delivery_bodies (shop, customer_id);
CREATE INDEX delivery_bodies_by_order ON delivery_bodies (shop, order_id);
