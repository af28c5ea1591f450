-- customers/data_request: what a customer asked for, so the merchant can answer within 30
-- days. Only ids are kept (the request body also carries the customer's email and phone).
CREATE TABLE privacy_requests (
  id               INTEGER PRIMARY KEY AUTOINCREMENT,
  shop             TEXT    NOT NULL,
  request_id       TEXT,                  -- Shopify's data_request.id
  customer_id      TEXT,
  orders_requested TEXT    NOT NULL,      -- JSON array of order ids (exact decimal text)
  delivery_id      INTEGER NOT NULL,      -- the delivery that carried it
  received_at      TEXT    NOT NULL,
  received_ms      INTEGER NOT NULL,
  UNIQUE (shop, request_id)
);
CREATE INDEX privacy_requests_by_time ON privacy_requests (received_ms);

-- Shopify order ids are unique across shops: an id already stored under another shop is a
-- replay under a forged shop header, recorded for review and never routed (looked up by id).
CREATE INDEX orders_by_order_id ON orders (order_id);

-- The retention purge keeps the bodies open orders still need (their latest body and the
-- current submission's document) and looks them up by id.
CREATE INDEX orders_by_payload ON orders (payload_delivery_id);
CREATE INDEX orders_by_document ON orders (submission_delivery_id) WHERE submission_delivery_id IS NOT NULL;
