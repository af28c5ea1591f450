//! The 72-hour release decision for a lane switched to `auto`.
//!
//! Switching a lane to `auto` records its release time `R`; from then on the cron calls
//! [`evaluate`] with the lane's [`GateInput`] and the current time. Three gates:
//!
//! | gate | when | passes when | fails when |
//! |---|---|---|---|
//! | **A** release day | `[R, R+24h)` | the day ended with failed submissions ≤ baseline `failed_per_day` × 1 day | the day's count exceeds that budget (detected the moment it does) |
//! | **B** from 24 h | `now ≥ R+24h` | triage mean since `R` is strictly below baseline `triage_mean_ms` | the mean is equal or above |
//! | **C** at 72 h | `now ≥ R+72h` | exception backlog count < `backlog_threshold` | count ≥ threshold |
//!
//! Statuses: `pending` (its time has not come, or A's day is not over and still within
//! budget), `pass`, `fail`, and `no_data`: the gate's time has come but there is nothing to
//! judge — no baseline, no triage sample (B), no submission at all on the release day (A).
//! **`no_data` is never a failure** (it rolls nothing back) **and never a pass** (it
//! blocks `expand`; the decision stays `keep_watching` and the report says why).
//!
//! # Observations
//!
//! The edge passes KPIs already computed over the gate windows ([`Observed`]): either by
//! loading the lane's [`OrderFacts`] and calling [`Observed::compute`], or by running the SQL
//! in `kpi` over [`GateWindows`]. Windows are half-open and include events stamped at or
//! before `now`:
//! - release day: `[R, clamp(now + 1, R, R + 24h))` — gate A;
//! - since release: `[R, clamp(now + 1, R, R + 72h))` — gate B and the report;
//! - backlog: as of `now` — gate C.
//!
//! # Actions
//!
//! A failing gate yields a [`Rollback`] for **this lane only**: set
//! `segment:<lane>:mode` to `manual`, audit [`AUDIT_EVENT`] with actor [`ACTOR`] and
//! [`Rollback::numbers`] as detail, and alert when [`Evaluation::alert`] says so. No
//! rollback is produced for a lane that is not `auto` (never flip a `manual` lane; a
//! `shadow` lane sends nothing), nor without a release time or a valid baseline
//! ([`Evaluation::no_rollback`] says which). `already_alerted_for` is the gate this release
//! already alerted for (the edge resets it when the lane is released again); a failure of
//! that gate is never alerted twice, even if the lane is somehow still `auto` and the
//! rollback is re-issued. When several gates fail, the first of A, B, C is reported. A
//! lane still `auto` after this release alerted is rolled back again (without an alert),
//! even if the numbers have recovered: one failure ends the release.
//!
//! Decision: `rolled_back` when this evaluation rolls back, this release already alerted,
//! or the lane is `manual` with a failing gate; `expand` when the lane is `auto`, eligible,
//! `now ≥ R + 72h` and every gate passed; otherwise `keep_watching`. Once it records
//! `expand` or `rolled_back`, the edge need not evaluate the release again.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::core::kpi::{self, Kpis, OrderFacts, DAY_MS, HOUR_MS};
use crate::core::types::{Mode, Reason, State};

/// Audit actor for gate actions.
pub const ACTOR: &str = "system:gates";
/// Audit event written when a gate rolls a lane back.
pub const AUDIT_EVENT: &str = "rolled_back";
/// Gate B starts judging this long after release.
pub const GATE_B_FROM_MS: i64 = 24 * HOUR_MS;
/// Gate C judges, and the release is decided, this long after release.
pub const DECISION_AT_MS: i64 = 72 * HOUR_MS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Gate {
    A,
    B,
    C,
}

impl Gate {
    pub const ALL: [Gate; 3] = [Gate::A, Gate::B, Gate::C];

    pub fn as_str(self) -> &'static str {
        match self {
            Gate::A => "A",
            Gate::B => "B",
            Gate::C => "C",
        }
    }

    pub fn parse(s: &str) -> Option<Gate> {
        Gate::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// What the gate checks, for reports.
    pub fn title(self) -> &'static str {
        match self {
            Gate::A => "release day: failed fulfilment submissions not above baseline",
            Gate::B => "from 24 h: triage time better than baseline",
            Gate::C => "at 72 h: exception backlog below threshold",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateStatus {
    Pending,
    Pass,
    Fail,
    NoData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineSource {
    /// Typed in by an operator.
    Entered,
    /// Computed from the lane's data while it ran `manual` or `shadow`.
    Captured,
}

/// A lane's KPI baseline, what a release must match or beat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub triage_mean_ms: f64,
    pub triage_p90_ms: f64,
    /// Share of routed orders that entered hold, in `[0, 1]`.
    pub exception_rate: f64,
    pub fulfilment_delay_mean_ms: f64,
    pub failed_per_day: f64,
    pub source: BaselineSource,
    /// For a captured baseline, the window it was computed over.
    pub window_from_ms: Option<i64>,
    pub window_to_ms: Option<i64>,
    pub recorded_at_ms: i64,
}

/// Why a baseline cannot be used or captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaselineError {
    /// The capture window had no samples for this figure.
    Missing(&'static str),
    /// This figure is negative, not finite, or (the rate) above 1.
    Invalid(&'static str),
}

impl std::fmt::Display for BaselineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BaselineError::Missing(what) => write!(f, "no samples for {what} in the capture window"),
            BaselineError::Invalid(what) => write!(f, "baseline {what} is not a valid value"),
        }
    }
}

impl std::error::Error for BaselineError {}

impl Baseline {
    /// Checks every figure is finite and non-negative and the rate is at most 1.
    pub fn validate(&self) -> Result<(), BaselineError> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        let figures = [
            ("triage_mean_ms", self.triage_mean_ms),
            ("triage_p90_ms", self.triage_p90_ms),
            ("exception_rate", self.exception_rate),
            ("fulfilment_delay_mean_ms", self.fulfilment_delay_mean_ms),
            ("failed_per_day", self.failed_per_day),
        ];
        if let Some((name, _)) = figures.iter().find(|(_, v)| !ok(*v)) {
            return Err(BaselineError::Invalid(name));
        }
        if self.exception_rate > 1.0 {
            return Err(BaselineError::Invalid("exception_rate"));
        }
        Ok(())
    }

    /// A baseline captured from KPIs computed over a manual or shadow period. Fails when a
    /// figure has no samples in that window.
    pub fn capture(k: &Kpis, recorded_at_ms: i64) -> Result<Baseline, BaselineError> {
        let b = Baseline {
            triage_mean_ms: k.triage.mean_ms.ok_or(BaselineError::Missing("triage_mean_ms"))?,
            triage_p90_ms: k.triage.p90_ms.ok_or(BaselineError::Missing("triage_p90_ms"))? as f64,
            exception_rate: k.exceptions.rate.ok_or(BaselineError::Missing("exception_rate"))?,
            fulfilment_delay_mean_ms: k
                .fulfilment_delay
                .mean_ms
                .ok_or(BaselineError::Missing("fulfilment_delay_mean_ms"))?,
            failed_per_day: k.failed_submissions.per_day.ok_or(BaselineError::Missing("failed_per_day"))?,
            source: BaselineSource::Captured,
            window_from_ms: Some(k.from_ms),
            window_to_ms: Some(k.to_ms),
            recorded_at_ms,
        };
        b.validate()?;
        Ok(b)
    }
}

/// The gate windows for a release at `released_at_ms`, evaluated at `now_ms`; each is
/// `[from, to)` in epoch ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateWindows {
    pub release_day: (i64, i64),
    pub since_release: (i64, i64),
}

impl GateWindows {
    pub fn new(released_at_ms: i64, now_ms: i64) -> Self {
        let upto =
            |len: i64| now_ms.saturating_add(1).clamp(released_at_ms, released_at_ms.saturating_add(len));
        GateWindows {
            release_day: (released_at_ms, upto(DAY_MS)),
            since_release: (released_at_ms, upto(DECISION_AT_MS)),
        }
    }
}

/// A lane's KPIs over the gate windows (see [`GateWindows`]); both carry the backlog at
/// the evaluation time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub release_day: Kpis,
    pub since_release: Kpis,
}

impl Observed {
    /// Computes the observations from per-order facts (other lanes' facts are skipped).
    pub fn compute(facts: &[OrderFacts], lane: &str, released_at_ms: i64, now_ms: i64) -> Observed {
        let w = GateWindows::new(released_at_ms, now_ms);
        Observed {
            release_day: kpi::compute(facts, lane, w.release_day.0, w.release_day.1, now_ms),
            since_release: kpi::compute(facts, lane, w.since_release.0, w.since_release.1, now_ms),
        }
    }
}

/// Everything [`evaluate`] needs about one lane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateInput {
    pub lane: String,
    /// The lane's mode now (KV `segment:<lane>:mode`).
    pub mode: Mode,
    /// When the lane was last switched to `auto`; `None` if never.
    pub released_at_ms: Option<i64>,
    pub baseline: Option<Baseline>,
    /// KPIs over the gate windows for this release; `None` when there is no release.
    pub observed: Option<Observed>,
    /// Gate C passes when the backlog count is strictly below this.
    pub backlog_threshold: u64,
    /// The gate this release has already alerted for, from the last recorded gate run.
    pub already_alerted_for: Option<Gate>,
}

/// One gate's verdict and its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub gate: Gate,
    pub status: GateStatus,
    /// A: failed submissions so far on the release day (= its per-day rate once the day
    /// is over); B: triage mean ms since release; C: backlog count.
    pub observed: Option<f64>,
    /// A: baseline failed per day; B: baseline triage mean ms; C: the backlog threshold.
    pub limit: Option<f64>,
    /// The numbers behind the verdict, for `gate_runs` and the audit detail.
    pub detail: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Expand,
    KeepWatching,
    RolledBack,
}

/// Why gates cannot roll this lane back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoRollback {
    NoReleaseTime,
    NoBaseline,
    InvalidBaseline,
    /// Already `manual`: gates never flip it.
    LaneManual,
    /// `shadow` sends nothing downstream; there is nothing to roll back.
    LaneShadow,
}

/// Set this lane to `manual` and audit `rolled_back`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    pub lane: String,
    pub gate: Gate,
    /// Audit detail: the gate, its observed value and limit, and its evidence.
    pub numbers: Value,
}

/// Baseline figures' observed counterparts since release, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedSummary {
    pub triage_mean_ms: Option<f64>,
    pub triage_p90_ms: Option<i64>,
    pub exception_rate: Option<f64>,
    pub fulfilment_delay_mean_ms: Option<f64>,
    pub failed_per_day: Option<f64>,
    pub backlog_count: u64,
    pub backlog_oldest_age_ms: Option<i64>,
}

impl ObservedSummary {
    fn of(k: &Kpis) -> Self {
        ObservedSummary {
            triage_mean_ms: k.triage.mean_ms,
            triage_p90_ms: k.triage.p90_ms,
            exception_rate: k.exceptions.rate,
            fulfilment_delay_mean_ms: k.fulfilment_delay.mean_ms,
            failed_per_day: k.failed_submissions.per_day,
            backlog_count: k.backlog.count,
            backlog_oldest_age_ms: k.backlog.oldest_age_ms,
        }
    }
}

/// One gate run: the report and what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub lane: String,
    pub at_ms: i64,
    pub mode: Mode,
    pub released_at_ms: Option<i64>,
    /// `at_ms − released_at_ms`.
    pub elapsed_ms: Option<i64>,
    pub baseline: Option<Baseline>,
    pub observed: Option<ObservedSummary>,
    /// Always A, B, C in that order.
    pub results: Vec<GateResult>,
    pub decision: Decision,
    pub rollback: Option<Rollback>,
    /// Send the alert now (at most once per failing gate and release).
    pub alert: bool,
    /// Set when gates cannot act on this lane, whatever the results.
    pub no_rollback: Option<NoRollback>,
}

impl Evaluation {
    pub fn result(&self, gate: Gate) -> Option<&GateResult> {
        self.results.iter().find(|r| r.gate == gate)
    }

    /// The JSON to POST to `ALERT_URL` when [`Evaluation::alert`] is set.
    pub fn alert_payload(&self) -> Option<Value> {
        let rb = self.rollback.as_ref().filter(|_| self.alert)?;
        Some(json!({
            "event": AUDIT_EVENT,
            "actor": ACTOR,
            "lane": rb.lane,
            "gate": rb.gate,
            "title": rb.gate.title(),
            "at_ms": self.at_ms,
            "released_at_ms": self.released_at_ms,
            "numbers": rb.numbers,
        }))
    }
}

fn result(
    gate: Gate,
    status: GateStatus,
    observed: Option<f64>,
    limit: Option<f64>,
    detail: Value,
) -> GateResult {
    GateResult { gate, status, observed, limit, detail }
}

fn gate_a(released: i64, now: i64, baseline: Option<&Baseline>, k: &Kpis) -> GateResult {
    let failed = k.failed_submissions.count;
    let submitted = k.fulfilment_delay.samples;
    let day_complete = now >= released.saturating_add(DAY_MS);
    let limit = baseline.map(|b| b.failed_per_day);
    let detail = json!({
        "window_from_ms": k.from_ms,
        "window_to_ms": k.to_ms,
        "day_complete": day_complete,
        "failed_submissions": failed,
        "submitted": submitted,
        "baseline_failed_per_day": limit,
    });
    let observed = Some(failed as f64);
    let Some(budget) = limit else {
        return result(Gate::A, GateStatus::NoData, observed, None, with_reason(detail, "no baseline"));
    };
    // The release day is one day long, so its failures per day is its count. The count
    // only grows, so exceeding the budget early is already final.
    let status = if failed as f64 > budget {
        GateStatus::Fail
    } else if !day_complete {
        GateStatus::Pending
    } else if failed + submitted == 0 {
        return result(Gate::A, GateStatus::NoData, observed, limit, with_reason(detail, "no submissions"));
    } else {
        GateStatus::Pass
    };
    result(Gate::A, status, observed, limit, detail)
}

fn gate_b(released: i64, now: i64, baseline: Option<&Baseline>, k: &Kpis) -> GateResult {
    let limit = baseline.map(|b| b.triage_mean_ms);
    let detail = json!({
        "window_from_ms": k.from_ms,
        "window_to_ms": k.to_ms,
        "samples": k.triage.samples,
        "triage_mean_ms": k.triage.mean_ms,
        "triage_p90_ms": k.triage.p90_ms,
        "baseline_triage_mean_ms": limit,
        "baseline_triage_p90_ms": baseline.map(|b| b.triage_p90_ms),
    });
    let observed = k.triage.mean_ms;
    if now < released.saturating_add(GATE_B_FROM_MS) {
        return result(Gate::B, GateStatus::Pending, observed, limit, detail);
    }
    let (Some(mean), Some(base)) = (observed, limit) else {
        let why = if limit.is_none() { "no baseline" } else { "no triage samples" };
        return result(Gate::B, GateStatus::NoData, observed, limit, with_reason(detail, why));
    };
    let status = if mean < base { GateStatus::Pass } else { GateStatus::Fail };
    result(Gate::B, status, observed, limit, detail)
}

fn gate_c(released: i64, now: i64, threshold: u64, k: &Kpis) -> GateResult {
    let count = k.backlog.count;
    let detail = json!({
        "at_ms": k.now_ms,
        "backlog": count,
        "oldest_age_ms": k.backlog.oldest_age_ms,
        "threshold": threshold,
    });
    let status = if now < released.saturating_add(DECISION_AT_MS) {
        GateStatus::Pending
    } else if count < threshold {
        GateStatus::Pass
    } else {
        GateStatus::Fail
    };
    result(Gate::C, status, Some(count as f64), Some(threshold as f64), detail)
}

fn with_reason(mut detail: Value, reason: &str) -> Value {
    if let Value::Object(map) = &mut detail {
        map.insert("reason".into(), Value::String(reason.into()));
    }
    detail
}

/// Evaluates the gates for one lane at `now_ms`. Pure: the caller applies the rollback,
/// writes `gate_runs` and the audit row, and sends the alert. See the module docs for the
/// rules.
pub fn evaluate(input: &GateInput, now_ms: i64) -> Evaluation {
    let baseline = input.baseline.as_ref().filter(|b| b.validate().is_ok());
    let no_rollback = match (input.released_at_ms, &input.baseline, baseline, input.mode) {
        (None, ..) => Some(NoRollback::NoReleaseTime),
        (_, None, ..) => Some(NoRollback::NoBaseline),
        (_, Some(_), None, _) => Some(NoRollback::InvalidBaseline),
        (.., Mode::Manual) => Some(NoRollback::LaneManual),
        (.., Mode::Shadow) => Some(NoRollback::LaneShadow),
        (.., Mode::Auto) => None,
    };

    let results: Vec<GateResult> = match (input.released_at_ms, &input.observed) {
        (Some(r), Some(obs)) => vec![
            gate_a(r, now_ms, baseline, &obs.release_day),
            gate_b(r, now_ms, baseline, &obs.since_release),
            gate_c(r, now_ms, input.backlog_threshold, &obs.since_release),
        ],
        (released, _) => {
            let why = if released.is_none() { "no release time" } else { "no observations" };
            Gate::ALL
                .into_iter()
                .map(|g| result(g, GateStatus::NoData, None, None, json!({ "reason": why })))
                .collect()
        }
    };

    let failing = results.iter().find(|r| r.status == GateStatus::Fail);
    // A gate that failed earlier in this release keeps the lane rolled back even if its
    // numbers have since recovered: if the lane is somehow still `auto`, re-issue.
    let rolled_back_for = failing.map(|f| (f, false)).or_else(|| {
        let g = input.already_alerted_for?;
        results.iter().find(|r| r.gate == g).map(|r| (r, true))
    });
    let rollback = rolled_back_for.filter(|_| no_rollback.is_none()).map(|(f, reissued)| Rollback {
        lane: input.lane.clone(),
        gate: f.gate,
        numbers: json!({
            "gate": f.gate,
            "title": f.gate.title(),
            "status": f.status,
            "observed": f.observed,
            "limit": f.limit,
            "evidence": f.detail,
            "reissued": reissued,
        }),
    });
    let alert = rollback.as_ref().is_some_and(|rb| input.already_alerted_for != Some(rb.gate));

    let elapsed_ms = input.released_at_ms.map(|r| now_ms.saturating_sub(r));
    let decided = elapsed_ms.is_some_and(|e| e >= DECISION_AT_MS);
    let all_pass = results.iter().all(|r| r.status == GateStatus::Pass);
    let decision = if rollback.is_some()
        || input.already_alerted_for.is_some()
        || (input.mode == Mode::Manual && failing.is_some())
    {
        Decision::RolledBack
    } else if no_rollback.is_none() && decided && all_pass {
        Decision::Expand
    } else {
        Decision::KeepWatching
    };

    Evaluation {
        lane: input.lane.clone(),
        at_ms: now_ms,
        mode: input.mode,
        released_at_ms: input.released_at_ms,
        elapsed_ms,
        baseline: input.baseline.clone(),
        observed: input.observed.as_ref().map(|o| ObservedSummary::of(&o.since_release)),
        results,
        decision,
        rollback,
        alert,
        no_rollback,
    }
}

/// What operators did with an order a shadow lane decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorOutcome {
    /// Released it, or forced it to `ready-for-fulfilment`.
    Released,
    /// Kept it in `hold`.
    KeptHeld,
    Cancelled,
}

/// How often a shadow lane's decisions matched what operators did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Pairs with a comparable shadow decision.
    pub compared: u64,
    pub agreed: u64,
    /// `agreed / compared`; `None` when nothing was compared.
    pub rate: Option<f64>,
    /// Shadow said ready; operators held or cancelled it.
    pub shadow_ready_operator_held: u64,
    /// Shadow said hold; operators released it.
    pub shadow_held_operator_released: u64,
    /// Shadow decisions that are neither ready nor an exception (e.g. `new`, `paid`).
    pub not_comparable: u64,
}

/// Agreement between shadow decisions `(state, reason)` and operator outcomes.
///
/// Shadow `ready-for-fulfilment` agrees with `Released`. Shadow `hold` (any reason) or
/// `fraud-check` (it would not have been released) agrees with `KeptHeld` or `Cancelled`.
/// Every other pairing of those disagrees; other shadow states are not compared.
pub fn agreement_rate(pairs: &[((State, Option<Reason>), OperatorOutcome)]) -> Agreement {
    let mut a = Agreement {
        compared: 0,
        agreed: 0,
        rate: None,
        shadow_ready_operator_held: 0,
        shadow_held_operator_released: 0,
        not_comparable: 0,
    };
    for ((state, _reason), outcome) in pairs {
        let released = *outcome == OperatorOutcome::Released;
        match state {
            State::ReadyForFulfilment => {
                a.compared += 1;
                if released {
                    a.agreed += 1;
                } else {
                    a.shadow_ready_operator_held += 1;
                }
            }
            State::Hold | State::FraudCheck => {
                a.compared += 1;
                if released {
                    a.shadow_held_operator_released += 1;
                } else {
                    a.agreed += 1;
                }
            }
            _ => a.not_comparable += 1,
        }
    }
    a.rate = (a.compared > 0).then(|| a.agreed as f64 / a.compared as f64);
    a
}

#[cfg(test)]
mod tests;
