-- Guards for writes decided on a guess. A fresh order is decided without reading first
-- (one D1 round trip): the batch carries `INSERT INTO batch_guards (ok) SELECT 0 WHERE <the
-- guess was wrong>`. A right guess inserts nothing; a wrong one violates the CHECK and the
-- whole batch rolls back, after which the order is read and decided again. No row is ever
-- stored here.
CREATE TABLE batch_guards (ok INTEGER NOT NULL CHECK (ok = 1));

-- A delivery's body is identified by its verified X-Shopify-Hmac-Sha256 (hex): a keyed
-- SHA-256 of the body that verification computes anyway. Rows recorded before this
-- migration hold the plain SHA-256.
ALTER TABLE deliveries RENAME COLUMN body_sha256 TO body_hmac;

-- orders.enqueued_ms is now stamped by the write that makes an order ready; the queue send
-- follows the commit (a failed send is re-sent by the cron once the attempt is overdue).

-- orders.email_hash is now keyed (HMAC-SHA256 under EMAIL_HASH_KEY or a key derived from the
-- webhook secret). Hashes stored before this migration are plain SHA-256 and match nothing
-- new: the email-velocity rule starts counting afresh (its window is at most a day).
