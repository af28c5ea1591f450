-- Every attempt to hand an order to the warehouse, claimed before it is sent.
CREATE TABLE submission_attempts (
  shop         TEXT    NOT NULL,
  order_id     TEXT    NOT NULL,
  submission   INTEGER NOT NULL,
  attempt      INTEGER NOT NULL,
  started_ms   INTEGER NOT NULL,
  finished_ms  INTEGER,
  outcome      TEXT,                 -- accepted | transient | refused | out_of_stock
  http_status  INTEGER,
  error        TEXT,
  PRIMARY KEY (shop, order_id, submission, attempt)
);
CREATE INDEX submission_attempts_by_time ON submission_attempts (started_ms);

-- What needs a person: submissions that kept failing or were refused, and anything the
-- runtime dead-letter queue delivered.
CREATE TABLE dead_letters (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  shop         TEXT,
  order_id     TEXT,
  submission   INTEGER,
  cause        TEXT    NOT NULL,     -- refused | retries_exhausted | dead_letter_queue | invalid_message
  attempts     INTEGER NOT NULL,
  last_error   TEXT,
  http_status  INTEGER,
  response     TEXT,                 -- the start of the warehouse's answer, as received
  message      TEXT,                 -- the queue message, for dead-letter-queue rows
  created_at   TEXT    NOT NULL,
  created_ms   INTEGER NOT NULL,
  resolved_ms  INTEGER,
  resolved_by  TEXT,
  resolution   TEXT,                 -- redriven | dismissed
  note         TEXT
);
CREATE INDEX dead_letters_open ON dead_letters (resolved_ms, created_ms);
CREATE INDEX dead_letters_by_order ON dead_letters (shop, order_id);
