-- Guards for writes decided on a guess. A fresh order is decided without reading first
-- (one D1 round trip): the batch carries `INSERT INTO batch_guards (ok) SELECT 0 WHERE <the
-- guess was wrong>`. A right guess inserts nothing; a wrong one violates the CHECK and the
-- whole batch rolls back, after which the order is read and decided again. No row is ever
-- stored here.
CREATE TABLE batch_guards (ok INTEGER NOT NULL CHECK (ok = 1));
