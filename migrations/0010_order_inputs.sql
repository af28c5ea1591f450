-- What routing and the warehouse document need from an order, as typed columns written with
-- each decision (src/core/inputs.rs), so the raw body can be purged after BODY_RETENTION_DAYS
-- whatever the order's state. Rows written before this migration have inputs_v NULL: they fall
-- back to their stored body while it is still there.
ALTER TABLE orders ADD COLUMN inputs_v INTEGER;            -- 1 once the columns below are written
ALTER TABLE orders ADD COLUMN customer_id TEXT;            -- personal: finds the order for privacy requests
ALTER TABLE orders ADD COLUMN has_email INTEGER;           -- 0/1; the address itself is never stored
ALTER TABLE orders ADD COLUMN fulfillment_status TEXT;
ALTER TABLE orders ADD COLUMN source_name TEXT;
ALTER TABLE orders ADD COLUMN tags TEXT;                   -- comma-joined, as parsed
ALTER TABLE orders ADD COLUMN ship_present INTEGER;        -- 0/1: a shipping address was sent
ALTER TABLE orders ADD COLUMN ship_name TEXT;              -- personal (ship_*): the warehouse document
ALTER TABLE orders ADD COLUMN ship_first_name TEXT;
ALTER TABLE orders ADD COLUMN ship_last_name TEXT;
ALTER TABLE orders ADD COLUMN ship_address1 TEXT;
ALTER TABLE orders ADD COLUMN ship_address2 TEXT;
ALTER TABLE orders ADD COLUMN ship_city TEXT;
ALTER TABLE orders ADD COLUMN ship_zip TEXT;
ALTER TABLE orders ADD COLUMN ship_province_code TEXT;
ALTER TABLE orders ADD COLUMN ship_country_code TEXT;
ALTER TABLE orders ADD COLUMN billing_country TEXT;        -- personal: the country-mismatch rule
ALTER TABLE orders ADD COLUMN ship_methods TEXT;           -- shipping lines, JSON [[title, code], ...]
ALTER TABLE orders ADD COLUMN order_cancelled_ms INTEGER;
-- The document of the current submission round, fixed at its first claim: retries send these
-- exact bytes. Personal (name, address); cleared when the round ends.
ALTER TABLE orders ADD COLUMN submission_document TEXT;

CREATE INDEX orders_by_customer ON orders (shop, customer_id) WHERE customer_id IS NOT NULL;

-- The order's line items, replaced as a whole when a newer version of the order is written.
CREATE TABLE order_lines (
  shop                 TEXT    NOT NULL,
  order_id             TEXT    NOT NULL,
  position             INTEGER NOT NULL,
  line_item_id         TEXT,                 -- exact decimal text
  sku                  TEXT,
  quantity             INTEGER NOT NULL,
  fulfillable_quantity INTEGER,
  requires_shipping    INTEGER NOT NULL,     -- 0/1
  title                TEXT    NOT NULL,
  PRIMARY KEY (shop, order_id, position)
);

-- The purge no longer keeps bodies for open orders: these lookups are gone.
DROP INDEX IF EXISTS orders_by_payload;
DROP INDEX IF EXISTS orders_by_document;
