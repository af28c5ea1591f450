-- KPI baselines per segment, with history: the newest row is the one gates judge against.
CREATE TABLE baselines (
  id                        INTEGER PRIMARY KEY AUTOINCREMENT,
  segment                   TEXT    NOT NULL,
  triage_mean_ms            REAL    NOT NULL,
  triage_p90_ms             REAL    NOT NULL,
  exception_rate            REAL    NOT NULL,   -- share of routed orders that entered hold, 0..1
  fulfilment_delay_mean_ms  REAL    NOT NULL,
  failed_per_day            REAL    NOT NULL,
  source                    TEXT    NOT NULL CHECK (source IN ('entered', 'captured')),
  window_from_ms            INTEGER,            -- a captured baseline's window [from, to)
  window_to_ms              INTEGER,
  note                      TEXT    NOT NULL,
  actor                     TEXT    NOT NULL,
  created_at                TEXT    NOT NULL,
  created_ms                INTEGER NOT NULL
);
CREATE INDEX baselines_by_segment ON baselines (segment, created_ms);

-- One row per gate per evaluation of a released lane.
CREATE TABLE gate_runs (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  segment       TEXT    NOT NULL,
  released_ms   INTEGER NOT NULL,           -- the release this run judged (segments.released_ms)
  gate          TEXT    NOT NULL CHECK (gate IN ('A', 'B', 'C')),
  status        TEXT    NOT NULL CHECK (status IN ('pending', 'pass', 'fail', 'no_data')),
  observed      REAL,                       -- A: failed submissions on the release day; B: triage mean ms; C: backlog
  limit_value   REAL,                       -- A: baseline failed per day; B: baseline triage mean ms; C: threshold
  detail        TEXT    NOT NULL,           -- JSON evidence
  decision      TEXT    NOT NULL CHECK (decision IN ('expand', 'keep_watching', 'rolled_back')),
  mode          TEXT    NOT NULL,           -- the lane's mode when evaluated
  evaluated_at  TEXT    NOT NULL,
  evaluated_ms  INTEGER NOT NULL,
  trigger       TEXT    NOT NULL,           -- cron | user:<name>
  alerted       INTEGER NOT NULL DEFAULT 0, -- 1 on the run whose failure raised this release's alert
  alert_status  TEXT                        -- sent | failed: ... | no_alert_url
);
CREATE INDEX gate_runs_by_segment ON gate_runs (segment, evaluated_ms);
CREATE INDEX gate_runs_by_release ON gate_runs (segment, released_ms, evaluated_ms);
-- "Already alerted for this release": at most one alerted run per (segment, release). A new
-- release has a new released_ms, which resets it; two evaluations racing on one failure
-- cannot both claim the alert (the loser's batch fails as a whole).
CREATE UNIQUE INDEX gate_runs_one_alert ON gate_runs (segment, released_ms) WHERE alerted = 1;

-- KPI windows read orders by lane and one timestamp each; the sparse ones are partial.
CREATE INDEX orders_kpi_routed ON orders (segment, routed_ms);
CREATE INDEX orders_kpi_ready ON orders (segment, ready_ms);
CREATE INDEX orders_kpi_resolved ON orders (segment, resolved_ms) WHERE resolved_ms IS NOT NULL;
CREATE INDEX orders_kpi_submitted ON orders (segment, submitted_ms) WHERE submitted_ms IS NOT NULL;
CREATE INDEX orders_kpi_failed ON orders (segment, failed_ms) WHERE failed_ms IS NOT NULL;
