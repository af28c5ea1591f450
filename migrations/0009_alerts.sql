-- Alerts. One row per incident (what needs a person, named by a key such as
-- `warehouse_failing` or `dead_letter:<shop>:<order id>`): deduplication and the repeat window
-- are decided against it. One row per message to send: kept until the receiver accepts it,
-- retried by the cron on a bounded schedule. Neither holds customer personal data.
CREATE TABLE alert_incidents (
  key          TEXT    PRIMARY KEY,
  kind         TEXT    NOT NULL,
  state        TEXT    NOT NULL CHECK (state IN ('open', 'cleared')),
  title        TEXT    NOT NULL,
  link         TEXT,                  -- console path that resolves it
  opened_ms    INTEGER NOT NULL,
  notified_ms  INTEGER NOT NULL,      -- last time a message was queued for it
  last_seen_ms INTEGER NOT NULL,      -- last time its condition was seen to hold
  cleared_ms   INTEGER,
  message_id   TEXT                   -- the message that last notified it
);
CREATE INDEX alert_incidents_by_kind ON alert_incidents (kind, state);
CREATE INDEX alert_incidents_cleared ON alert_incidents (state, cleared_ms);

CREATE TABLE alert_messages (
  id              TEXT    PRIMARY KEY,
  kind            TEXT    NOT NULL,
  title           TEXT    NOT NULL,
  message         TEXT    NOT NULL,   -- JSON: incidents, text, lines, console links, details
  state           TEXT    NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms INTEGER NOT NULL,   -- due time; while a sender holds it, the end of its hold
  created_ms      INTEGER NOT NULL,
  sent_ms         INTEGER,
  last_error      TEXT                -- the receiver's status and the start of its answer
);
CREATE INDEX alert_messages_due ON alert_messages (state, next_attempt_ms);
CREATE INDEX alert_messages_by_time ON alert_messages (created_ms);
