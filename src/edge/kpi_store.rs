//! The SQL behind KPIs, baselines and gates. Per-order facts are read with one indexed range
//! per timestamp (see migrations/0004_gates.sql) and handed to `core::kpi`, so the numbers
//! have exactly the definitions documented there.

use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::D1PreparedStatement;

use super::store::{n, s, AuditRow, PlanRow, Store, StoreResult};
use crate::core::gates::{Baseline, BaselineSource, Decision, Evaluation, Gate, GateStatus, OperatorOutcome};
use crate::core::kpi::OrderFacts;
use crate::core::types::{Mode, Reason, State};

/// Orders of lane `?1` with any KPI timestamp in `[?2, ?3)`, or in the backlog now: a
/// superset of what `kpi::compute` counts over that window (it filters exactly). Two
/// statements because D1 caps a compound SELECT at five terms; each term is one index range.
pub const FACTS_SQL: [&str; 2] = [
    "SELECT rowid AS rid, order_id, routable_ms, routed_ms, held_ms, resolved_ms, ready_ms, submitted_ms, \
     failed_ms, state, state_since_ms FROM orders WHERE rowid IN ( \
     SELECT rowid FROM orders WHERE segment = ?1 AND routed_ms >= ?2 AND routed_ms < ?3 \
     UNION ALL SELECT rowid FROM orders WHERE segment = ?1 AND ready_ms >= ?2 AND ready_ms < ?3 \
     UNION ALL SELECT rowid FROM orders WHERE segment = ?1 AND resolved_ms >= ?2 AND resolved_ms < ?3)",
    "SELECT rowid AS rid, order_id, routable_ms, routed_ms, held_ms, resolved_ms, ready_ms, submitted_ms, \
     failed_ms, state, state_since_ms FROM orders WHERE rowid IN ( \
     SELECT rowid FROM orders WHERE segment = ?1 AND submitted_ms >= ?2 AND submitted_ms < ?3 \
     UNION ALL SELECT rowid FROM orders WHERE segment = ?1 AND failed_ms >= ?2 AND failed_ms < ?3 \
     UNION ALL SELECT rowid FROM orders WHERE segment = ?1 AND state IN ('hold', 'fraud-check'))",
];

/// Shadow decisions of lane `?1` in `[?2, ?3)` paired with what people then did with each
/// order: the last operator action in orderlane, or what Shopify reports they did outside it
/// (`orders/fulfilled`: shipped by hand; `orders/cancelled`).
pub const SHADOW_SQL: &str = "SELECT o.shadow_state, o.shadow_reason, a.to_state FROM audit_log a \
     JOIN orders o ON o.shop = a.shop AND o.order_id = a.order_id \
     WHERE a.segment = ?1 AND a.at_ms >= ?2 AND a.at_ms < ?3 \
       AND a.event IN ('operator_release', 'operator_force_ready', 'operator_hold', 'operator_stop', 'fulfilled', 'cancelled') \
       AND o.mode = 'shadow' AND o.shadow_state IS NOT NULL \
       AND a.id = (SELECT MAX(b.id) FROM audit_log b WHERE b.shop = a.shop AND b.order_id = a.order_id \
         AND b.event IN ('operator_release', 'operator_force_ready', 'operator_hold', 'operator_stop', 'fulfilled', 'cancelled'))";

/// The lane's mode changes up to `?2`, oldest first (for baseline capture windows).
pub const MODE_CHANGES_SQL: &str = "SELECT at_ms, json_extract(detail, '$.to') AS mode FROM audit_log \
     WHERE event = 'mode_changed' AND segment = ?1 AND at_ms < ?2 ORDER BY at_ms, id";

#[derive(Deserialize)]
struct FactRow {
    rid: i64,
    order_id: String,
    routable_ms: Option<i64>,
    routed_ms: Option<i64>,
    held_ms: Option<i64>,
    resolved_ms: Option<i64>,
    ready_ms: Option<i64>,
    submitted_ms: Option<i64>,
    failed_ms: Option<i64>,
    state: String,
    state_since_ms: i64,
}

impl FactRow {
    fn facts(self, lane: &str) -> Option<OrderFacts> {
        // `held_ms` is the first hold; only a hold before the first ready is a triage
        // exception (a later one is a downstream refusal or a dead letter).
        let entered_hold = self.held_ms.is_some_and(|h| self.ready_ms.is_none_or(|r| h < r));
        Some(OrderFacts {
            order_id: self.order_id,
            lane: lane.to_string(),
            routable_at_ms: self.routable_ms,
            routed_at_ms: self.routed_ms,
            entered_hold,
            held_at_ms: self.held_ms.filter(|_| entered_hold),
            resolved_at_ms: self.resolved_ms,
            ready_at_ms: self.ready_ms,
            submitted_at_ms: self.submitted_ms,
            failed_submission_at_ms: self.failed_ms,
            current_state: State::parse(&self.state)?,
            current_since_ms: self.state_since_ms,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct SegmentRow {
    pub mode: String,
    pub seen_ms: i64,
    pub released_ms: Option<i64>,
}

/// A stored baseline with who recorded it and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredBaseline {
    pub id: i64,
    #[serde(flatten)]
    pub baseline: Baseline,
    pub note: String,
    pub actor: String,
}

#[derive(Deserialize)]
struct BaselineRow {
    id: i64,
    triage_mean_ms: f64,
    triage_p90_ms: f64,
    exception_rate: f64,
    fulfilment_delay_mean_ms: f64,
    failed_per_day: f64,
    source: String,
    window_from_ms: Option<i64>,
    window_to_ms: Option<i64>,
    note: String,
    actor: String,
    created_ms: i64,
}

impl From<BaselineRow> for StoredBaseline {
    fn from(r: BaselineRow) -> Self {
        StoredBaseline {
            id: r.id,
            baseline: Baseline {
                triage_mean_ms: r.triage_mean_ms,
                triage_p90_ms: r.triage_p90_ms,
                exception_rate: r.exception_rate,
                fulfilment_delay_mean_ms: r.fulfilment_delay_mean_ms,
                failed_per_day: r.failed_per_day,
                source: if r.source == "captured" {
                    BaselineSource::Captured
                } else {
                    BaselineSource::Entered
                },
                window_from_ms: r.window_from_ms,
                window_to_ms: r.window_to_ms,
                recorded_at_ms: r.created_ms,
            },
            note: r.note,
            actor: r.actor,
        }
    }
}

const BASELINE_COLUMNS: &str =
    "id, triage_mean_ms, triage_p90_ms, exception_rate, fulfilment_delay_mean_ms, \
     failed_per_day, source, window_from_ms, window_to_ms, note, actor, created_ms";

/// What gate runs already recorded about one release.
#[derive(Debug, Default)]
pub struct ReleaseRecord {
    /// The gate whose failure raised this release's alert.
    pub alerted_for: Option<Gate>,
    /// The newest recorded decision.
    pub last_decision: Option<Decision>,
    pub last_evaluated_ms: Option<i64>,
}

#[derive(Debug, serde::Serialize, Deserialize)]
pub struct GateRunOut {
    pub id: i64,
    pub segment: String,
    pub released_ms: i64,
    pub gate: String,
    pub status: String,
    pub observed: Option<f64>,
    pub limit_value: Option<f64>,
    pub detail: String,
    pub decision: String,
    pub mode: String,
    pub evaluated_at: String,
    pub evaluated_ms: i64,
    pub trigger: String,
    pub alerted: i64,
    pub alert_status: Option<String>,
}

#[derive(Deserialize)]
struct ModeChange {
    at_ms: i64,
    mode: Option<String>,
}

#[derive(Deserialize)]
struct ShadowRow {
    shadow_state: String,
    shadow_reason: Option<String>,
    to_state: Option<String>,
}

#[derive(Deserialize)]
struct AlertedRow {
    gate: String,
}

#[derive(Deserialize)]
struct DecisionRow {
    decision: String,
    evaluated_ms: i64,
}

fn decision_of(s: &str) -> Option<Decision> {
    match s {
        "expand" => Some(Decision::Expand),
        "keep_watching" => Some(Decision::KeepWatching),
        "rolled_back" => Some(Decision::RolledBack),
        _ => None,
    }
}

pub fn decision_str(d: Decision) -> &'static str {
    match d {
        Decision::Expand => "expand",
        Decision::KeepWatching => "keep_watching",
        Decision::RolledBack => "rolled_back",
    }
}

fn status_str(s: GateStatus) -> &'static str {
    match s {
        GateStatus::Pending => "pending",
        GateStatus::Pass => "pass",
        GateStatus::Fail => "fail",
        GateStatus::NoData => "no_data",
    }
}

fn f(v: Option<f64>) -> JsValue {
    v.filter(|x| x.is_finite()).map(JsValue::from_f64).unwrap_or(JsValue::NULL)
}

impl Store {
    /// Per-order facts of `lane` relevant to `[from_ms, to_ms)` plus its backlog now.
    pub async fn lane_facts(&self, lane: &str, from_ms: i64, to_ms: i64) -> StoreResult<Vec<OrderFacts>> {
        let mut by_row = std::collections::BTreeMap::new();
        for sql in FACTS_SQL {
            let rows: Vec<FactRow> =
                self.stmt(sql, &[s(lane), n(from_ms), n(to_ms)])?.all().await?.results()?;
            by_row.extend(rows.into_iter().map(|r| (r.rid, r)));
        }
        Ok(by_row.into_values().filter_map(|r| r.facts(lane)).collect())
    }

    /// SQLite's plan for each KPI query, to check they use indexes.
    pub async fn kpi_plans(&self, lane: &str, from_ms: i64, to_ms: i64) -> StoreResult<serde_json::Value> {
        let mut out = serde_json::Map::new();
        let queries = [
            ("facts_1", FACTS_SQL[0]),
            ("facts_2", FACTS_SQL[1]),
            ("shadow_agreement", SHADOW_SQL),
            ("mode_changes", MODE_CHANGES_SQL),
        ];
        for (name, sql) in queries {
            let args: Vec<JsValue> = match name {
                "mode_changes" => vec![s(lane), n(to_ms)],
                _ => vec![s(lane), n(from_ms), n(to_ms)],
            };
            let rows: Vec<PlanRow> =
                self.stmt(&format!("EXPLAIN QUERY PLAN {sql}"), &args)?.all().await?.results()?;
            out.insert(name.into(), rows.into_iter().map(|r| r.detail).collect::<Vec<_>>().into());
        }
        Ok(out.into())
    }

    pub async fn segment_row(&self, lane: &str) -> StoreResult<Option<SegmentRow>> {
        let st =
            self.stmt("SELECT mode, seen_ms, released_ms FROM segments WHERE segment = ?1", &[s(lane)])?;
        Ok(st.first::<SegmentRow>(None).await?)
    }

    /// The lane's mode timeline before `to_ms`: `(since, mode)`, oldest first.
    pub async fn mode_changes(&self, lane: &str, to_ms: i64) -> StoreResult<Vec<(i64, Option<Mode>)>> {
        let rows: Vec<ModeChange> =
            self.stmt(MODE_CHANGES_SQL, &[s(lane), n(to_ms)])?.all().await?.results()?;
        Ok(rows.into_iter().map(|r| (r.at_ms, r.mode.as_deref().and_then(Mode::parse))).collect())
    }

    /// The newest baselines of a lane, newest first.
    pub async fn baselines(&self, lane: &str, limit: i64) -> StoreResult<Vec<StoredBaseline>> {
        let rows: Vec<BaselineRow> = self
            .stmt(
                &format!(
                    "SELECT {BASELINE_COLUMNS} FROM baselines WHERE segment = ?1 \
                     ORDER BY created_ms DESC, id DESC LIMIT ?2"
                ),
                &[s(lane), n(limit)],
            )?
            .all()
            .await?
            .results()?;
        Ok(rows.into_iter().map(StoredBaseline::from).collect())
    }

    /// Appends a baseline (history is kept; the newest one is current) and audits it.
    pub async fn insert_baseline(
        &self,
        lane: &str,
        b: &Baseline,
        note: &str,
        actor: &str,
    ) -> StoreResult<StoredBaseline> {
        let source = match b.source {
            BaselineSource::Entered => "entered",
            BaselineSource::Captured => "captured",
        };
        let insert = self.stmt(
            "INSERT INTO baselines (segment, triage_mean_ms, triage_p90_ms, exception_rate, fulfilment_delay_mean_ms, \
             failed_per_day, source, window_from_ms, window_to_ms, note, actor, created_at, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, \
               strftime('%Y-%m-%dT%H:%M:%fZ', ?12 / 1000.0, 'unixepoch'), ?12)",
            &[
                s(lane),
                JsValue::from_f64(b.triage_mean_ms),
                JsValue::from_f64(b.triage_p90_ms),
                JsValue::from_f64(b.exception_rate),
                JsValue::from_f64(b.fulfilment_delay_mean_ms),
                JsValue::from_f64(b.failed_per_day),
                s(source),
                b.window_from_ms.map(n).unwrap_or(JsValue::NULL),
                b.window_to_ms.map(n).unwrap_or(JsValue::NULL),
                s(note),
                s(actor),
                n(b.recorded_at_ms),
            ],
        )?;
        let detail = serde_json::json!({ "baseline": b, "note": note });
        let audit = self.audit(&AuditRow {
            segment: Some(lane),
            ..AuditRow::event(b.recorded_at_ms, "baseline_recorded", actor, &detail)
        })?;
        self.batch(vec![insert, audit]).await?;
        let newest = self.baselines(lane, 1).await?.into_iter().next();
        newest
            .ok_or_else(|| super::store::StoreError::Unavailable("baseline written but not read back".into()))
    }

    /// What gate runs recorded about the release at `released_ms`.
    pub async fn release_record(&self, lane: &str, released_ms: i64) -> StoreResult<ReleaseRecord> {
        let alerted = self
            .stmt(
                "SELECT gate FROM gate_runs WHERE segment = ?1 AND released_ms = ?2 AND alerted = 1 LIMIT 1",
                &[s(lane), n(released_ms)],
            )?
            .first::<AlertedRow>(None)
            .await?;
        let last = self
            .stmt(
                "SELECT decision, evaluated_ms FROM gate_runs WHERE segment = ?1 AND released_ms = ?2 \
                 ORDER BY evaluated_ms DESC, id DESC LIMIT 1",
                &[s(lane), n(released_ms)],
            )?
            .first::<DecisionRow>(None)
            .await?;
        Ok(ReleaseRecord {
            alerted_for: alerted.and_then(|a| Gate::parse(&a.gate)),
            last_decision: last.as_ref().and_then(|d| decision_of(&d.decision)),
            last_evaluated_ms: last.map(|d| d.evaluated_ms),
        })
    }

    /// One `gate_runs` row per gate of `e`. `alerted` marks the row of the gate that raised
    /// the alert, which the unique index lets only one run per release claim.
    pub fn gate_run_rows(
        &self,
        e: &Evaluation,
        released_ms: i64,
        trigger: &str,
        alerted: Option<Gate>,
    ) -> StoreResult<Vec<D1PreparedStatement>> {
        let mut out = Vec::with_capacity(e.results.len());
        for r in &e.results {
            out.push(self.stmt(
                "INSERT INTO gate_runs (segment, released_ms, gate, status, observed, limit_value, detail, decision, mode, \
                 evaluated_at, evaluated_ms, trigger, alerted) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, strftime('%Y-%m-%dT%H:%M:%fZ', ?10 / 1000.0, 'unixepoch'), \
                   ?10, ?11, ?12)",
                &[
                    s(&e.lane),
                    n(released_ms),
                    s(r.gate.as_str()),
                    s(status_str(r.status)),
                    f(r.observed),
                    f(r.limit),
                    s(&r.detail.to_string()),
                    s(decision_str(e.decision)),
                    s(e.mode.as_str()),
                    n(e.at_ms),
                    s(trigger),
                    n(i64::from(alerted == Some(r.gate))),
                ],
            )?);
        }
        Ok(out)
    }

    pub async fn set_alert_status(&self, lane: &str, released_ms: i64, status: &str) -> StoreResult<()> {
        let st = self.stmt(
            "UPDATE gate_runs SET alert_status = ?3 WHERE segment = ?1 AND released_ms = ?2 AND alerted = 1",
            &[s(lane), n(released_ms), s(status)],
        )?;
        self.batch(vec![st]).await
    }

    /// The newest gate runs of a lane.
    pub async fn gate_runs(&self, lane: &str, limit: i64) -> StoreResult<Vec<GateRunOut>> {
        Ok(self
            .stmt(
                "SELECT id, segment, released_ms, gate, status, observed, limit_value, detail, decision, mode, \
                 evaluated_at, evaluated_ms, trigger, alerted, alert_status FROM gate_runs WHERE segment = ?1 \
                 ORDER BY evaluated_ms DESC, id DESC LIMIT ?2",
                &[s(lane), n(limit)],
            )?
            .all()
            .await?
            .results()?)
    }

    /// Shadow decisions in `[from_ms, to_ms)` paired with what operators did with them.
    pub async fn shadow_pairs(
        &self,
        lane: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<((State, Option<Reason>), OperatorOutcome)>> {
        let rows: Vec<ShadowRow> =
            self.stmt(SHADOW_SQL, &[s(lane), n(from_ms), n(to_ms)])?.all().await?.results()?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let shadow = State::parse(&r.shadow_state)?;
                let outcome = match r.to_state.as_deref() {
                    Some("ready-for-fulfilment" | "submitted" | "fulfilled") => OperatorOutcome::Released,
                    Some("cancelled") => OperatorOutcome::Cancelled,
                    Some(_) => OperatorOutcome::KeptHeld,
                    None => return None,
                };
                Some(((shadow, r.shadow_reason.as_deref().and_then(Reason::parse)), outcome))
            })
            .collect())
    }
}

/// An audit row of the gates (no order, no state).
pub fn gates_audit<'a>(
    at_ms: i64,
    lane: &'a str,
    event: &'a str,
    detail: &'a serde_json::Value,
) -> AuditRow<'a> {
    AuditRow { segment: Some(lane), ..AuditRow::event(at_ms, event, crate::core::gates::ACTOR, detail) }
}
