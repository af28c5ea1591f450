//! Release gates at the edge: baselines, KPIs, gate evaluation (cron and on demand), the
//! per-lane rollback and the report. The arithmetic is `core::kpi` and `core::gates`; this
//! module reads D1 and KV, applies what `core::gates::evaluate` decides, and answers HTTP.

use serde::Deserialize;
use serde_json::{json, Value};
use worker::{Env, Request, Response};

use super::alerts::{self, Alerts};
use super::api::{answer, body, now_ms, query_pairs, ApiError, Operator};
use super::api::{error, json, unavailable};
use super::config;
use super::context::matrix;
use super::flags::Flags;
use super::kpi_store::{decision_str, gates_audit, ReleaseRecord, SegmentRow};
use super::store::ModeSource;
use super::store::{Store, StoreError};
use crate::core::gates::{
    self, agreement_rate, Baseline, BaselineError, BaselineSource, Decision, Evaluation, GateInput,
    GateWindows, Observed, ACTOR, AUDIT_EVENT,
};
use crate::core::kpi::{self, DAY_MS};
use crate::core::rules::Lane;
use crate::core::types::Mode;

/// Widest window the KPI endpoint and a capture accept.
const MAX_WINDOW_MS: i64 = 92 * DAY_MS;

fn lane_of(name: &str) -> Result<&'static Lane, Response> {
    let m = matrix().map_err(|e| {
        worker::console_error!("route matrix invalid: {e}");
        error(500, "matrix_invalid", "the route matrix could not be loaded")
    })?;
    m.lane(name).ok_or_else(|| error(404, "unknown_segment", "no such segment in the route matrix"))
}

/// A window longer than `MAX_WINDOW_MS`, or one whose length does not fit in an i64 (absurd
/// ends would otherwise wrap around to a small length).
fn too_wide(from: i64, to: i64) -> bool {
    to.checked_sub(from).is_none_or(|w| w > MAX_WINDOW_MS)
}

/// Epoch milliseconds, or an RFC 3339 time.
fn parse_time(v: &str) -> Option<i64> {
    let v = v.trim();
    v.parse::<i64>().ok().or_else(|| crate::core::time::parse_rfc3339_ms(v))
}

fn time_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => parse_time(s),
        _ => None,
    }
}

/// "Now" for an evaluation: the clock, or a requested time when `ALLOW_CLOCK_OVERRIDE=1`
/// (local test stacks only: it lets a test look at a release 25 or 73 hours later).
/// `None`: the clock.
fn clock(env: &Env, requested: Option<i64>) -> Result<Option<i64>, Response> {
    match requested {
        None => Ok(None),
        Some(t) if config::text(env, "ALLOW_CLOCK_OVERRIDE").as_deref() == Some("1") => Ok(Some(t)),
        Some(_) => {
            Err(error(400, "clock_override_disabled", "\"now\" is only accepted when ALLOW_CLOCK_OVERRIDE=1"))
        }
    }
}

fn flags(env: &Env) -> Result<Flags, Response> {
    env.kv(config::FLAGS).map(Flags::new).map_err(|_| unavailable(5))
}

/// The lane's mode as routing sees it (KV, else the matrix default). A KV error is not a
/// mode: the evaluation stops and is tried again.
async fn lane_mode(flags: &Flags, lane: &Lane) -> Result<Mode, StoreError> {
    match flags.mode(&lane.name).await.map_err(StoreError::Unavailable)? {
        super::flags::Flag::Set(m) => Ok(m),
        super::flags::Flag::Unset => Ok(lane.default_mode),
        super::flags::Flag::Invalid(_) => Ok(Mode::Manual),
    }
}

/// Records the mode seen (a KV flip to `auto` stamps the release time, as routing does).
async fn notice_mode(store: &Store, lane: &str, mode: Mode, now: i64) -> Result<(), StoreError> {
    store.batch(store.note_mode(lane, mode, ModeSource::Observed, now, ACTOR, None)?).await
}

/// Everything `gates::evaluate` needs for one lane, read from D1 and KV.
struct Loaded {
    input: GateInput,
    segment: Option<SegmentRow>,
    record: ReleaseRecord,
}

async fn load(
    store: &Store,
    flags: &Flags,
    lane: &Lane,
    now_eval: i64,
    now_real: i64,
) -> Result<Loaded, StoreError> {
    let mode = lane_mode(flags, lane).await?;
    notice_mode(store, &lane.name, mode, now_real).await?;
    let segment = store.segment_row(&lane.name).await?;
    let released = segment.as_ref().and_then(|s| s.released_ms);
    let baseline = store.baselines(&lane.name, 1).await?.into_iter().next().map(|b| b.baseline);
    let (record, observed) = match released {
        Some(r) => {
            let w = GateWindows::new(r, now_eval);
            let facts = store.lane_facts(&lane.name, r, w.since_release.1).await?;
            (
                store.release_record(&lane.name, r).await?,
                Some(Observed::compute(&facts, &lane.name, r, now_eval)),
            )
        }
        None => (ReleaseRecord::default(), None),
    };
    let input = GateInput {
        lane: lane.name.clone(),
        mode,
        released_at_ms: released,
        baseline,
        observed,
        backlog_threshold: u64::from(lane.backlog_threshold),
        already_alerted_for: record.alerted_for,
    };
    Ok(Loaded { input, segment, record })
}

/// Who asked for an evaluation, for `gate_runs.trigger`.
pub enum Trigger<'a> {
    Cron,
    User(&'a str),
}

impl Trigger<'_> {
    fn as_str(&self) -> &str {
        match self {
            Trigger::Cron => "cron",
            Trigger::User(actor) => actor,
        }
    }
}

/// What one lane's evaluation did, for the API answer and the cron log line.
pub struct LaneRun {
    pub lane: String,
    pub summary: String,
    pub body: Value,
}

/// Evaluates one lane at `now_eval` and applies the result: records the gate runs, and on
/// a failing gate rolls this lane (only) back to `manual`, audits it and alerts once. An
/// evaluation at another time than now (`ALLOW_CLOCK_OVERRIDE`) is a dry run: it answers what
/// the gates would decide and writes no decision, so nothing it says outlives it.
/// Lanes not released, not in `auto`, or already decided `expand` for this release are
/// skipped (nothing to judge, or never flipped).
pub async fn evaluate_lane(
    store: &Store,
    flags: &Flags,
    alerter: &Alerts<'_>,
    lane: &Lane,
    at: Option<i64>,
    trigger: &Trigger<'_>,
) -> Result<LaneRun, StoreError> {
    let now_real = now_ms();
    let now_eval = at.unwrap_or(now_real);
    let loaded = load(store, flags, lane, now_eval, now_real).await?;
    let input = &loaded.input;
    let skip = |why: &str| LaneRun {
        lane: lane.name.clone(),
        summary: format!("skipped ({why})"),
        body: json!({ "lane": lane.name, "mode": input.mode, "skipped": why }),
    };
    let Some(released) = input.released_at_ms else { return Ok(skip("not released")) };
    if input.mode != Mode::Auto {
        return Ok(skip(&format!("lane is {}", input.mode)));
    }
    if loaded.record.last_decision == Some(Decision::Expand) {
        return Ok(skip("release already decided: expand"));
    }
    let e = gates::evaluate(input, now_eval);
    if at.is_some() {
        return Ok(LaneRun {
            lane: lane.name.clone(),
            summary: format!("dry run at {now_eval}: {}", decision_str(e.decision)),
            body: json!({ "lane": lane.name, "evaluation": e, "dry_run": true }),
        });
    }
    let trig = trigger.as_str();
    let Some(rb) = &e.rollback else {
        store.batch(store.gate_run_rows(&e, released, trig, None)?).await?;
        let summary = decision_str(e.decision).to_string();
        return Ok(LaneRun {
            lane: lane.name.clone(),
            summary,
            body: json!({ "lane": lane.name, "evaluation": e }),
        });
    };

    // Claim first: the gate runs (with the alert mark) and the audit row in one batch. A
    // concurrent evaluation that already claimed this release's alert makes it fail as a
    // whole, so one failure is alerted once. If the KV write below then fails, the next
    // evaluation finds the alert claimed and the lane still auto, and re-issues the rollback.
    let mut detail = rb.numbers.clone();
    if let Some(obj) = detail.as_object_mut() {
        obj.insert("lane".into(), lane.name.clone().into());
        obj.insert("released_ms".into(), released.into());
        obj.insert("evaluated_ms".into(), now_eval.into());
        obj.insert("trigger".into(), trig.into());
    }
    let mut statements = store.gate_run_rows(&e, released, trig, e.alert.then_some(rb.gate))?;
    statements.push(store.audit(&gates_audit(now_real, &lane.name, AUDIT_EVENT, &detail))?);
    match store.batch(statements).await {
        Err(StoreError::Conflict) => {
            return Ok(skip("a concurrent evaluation rolled this release back first"))
        }
        other => other?,
    }
    if let Err(e) = flags.set_mode(&lane.name, Mode::Manual).await {
        return Err(StoreError::Unavailable(format!("KV write of segment:{}:mode failed: {e}", lane.name)));
    }
    let note = format!("gate {} failed: {}", rb.gate.as_str(), rb.gate.title());
    if let Err(err) = store
        .batch(store.note_mode(&lane.name, Mode::Manual, ModeSource::Set, now_real, ACTOR, Some(&note))?)
        .await
    {
        // KV already says manual; routing records the change on the next order.
        worker::console_error!("gates: recording {} as manual failed: {err:?}", lane.name);
    } else {
        super::memo::noted(&lane.name, Mode::Manual, now_real);
    }
    let alert_status = match (e.alert, e.alert_payload()) {
        (true, Some(payload)) => {
            let observed = rb.numbers.get("observed").map(|v| v.to_string()).unwrap_or_else(|| "?".into());
            let limit = rb.numbers.get("limit").map(|v| v.to_string()).unwrap_or_else(|| "?".into());
            let title = format!("Lane {} rolled back to manual: gate {} failed", lane.name, rb.gate.as_str());
            let text = format!(
                "{} (observed {observed}, limit {limit}). New orders of the lane are held for a person until it is \
                 released again; orders already submitted are untouched.",
                rb.gate.title()
            );
            Some(alerts::gate_failed(alerter, &lane.name, released, &title, &text, payload, now_real).await)
        }
        _ => None,
    };
    if let Some(st) = &alert_status {
        if !(st == "sent" || st == "no_alert_url") {
            worker::console_error!("gates: alert for {} {st}", lane.name);
        }
        if let Err(err) = store.set_alert_status(&lane.name, released, st).await {
            worker::console_error!("gates: recording alert status failed: {err:?}");
        }
    }
    let summary = format!(
        "rolled back to manual (gate {}{})",
        rb.gate.as_str(),
        alert_status.as_deref().map(|s| format!(", alert {s}")).unwrap_or_else(|| ", already alerted".into())
    );
    Ok(LaneRun {
        lane: lane.name.clone(),
        summary,
        body: json!({ "lane": lane.name, "evaluation": e, "alert_status": alert_status }),
    })
}

/// Every lane in the matrix, each evaluated on its own: one lane's failure is reported and
/// the others still run.
async fn evaluate_lanes(
    store: &Store,
    flags: &Flags,
    alerter: &Alerts<'_>,
    lanes: &[&Lane],
    at: Option<i64>,
    trigger: &Trigger<'_>,
) -> Vec<Result<LaneRun, (String, StoreError)>> {
    let mut out = Vec::with_capacity(lanes.len());
    for lane in lanes {
        out.push(
            evaluate_lane(store, flags, alerter, lane, at, trigger).await.map_err(|e| (lane.name.clone(), e)),
        );
    }
    out
}

/// The cron step: evaluates every lane; one summary line.
pub async fn cron_step(env: &Env, store: &Store) -> Result<String, String> {
    let m = matrix()?;
    let kv = env.kv(config::FLAGS).map_err(|e| format!("FLAGS binding: {e}"))?;
    let flags = Flags::new(kv);
    let alerter = Alerts { store, settings: super::context::settings(env) };
    let lanes: Vec<&Lane> = m.lanes.iter().collect();
    let runs = evaluate_lanes(store, &flags, &alerter, &lanes, None, &Trigger::Cron).await;
    let mut failed = false;
    let parts: Vec<String> = runs
        .into_iter()
        .map(|r| match r {
            Ok(run) => format!("{}: {}", run.lane, run.summary),
            Err((lane, e)) => {
                failed = true;
                format!("{lane}: error {e:?}")
            }
        })
        .collect();
    let line = parts.join("; ");
    if failed {
        Err(line)
    } else {
        Ok(line)
    }
}

#[derive(Deserialize, Default)]
struct EvaluateBody {
    lane: Option<String>,
    now: Option<Value>,
}

/// `POST /admin/gates/evaluate` `{"lane": "..."}` (optional; all lanes without it).
pub async fn post_evaluate(req: &mut Request, env: &Env, store: &Store, op: &Operator) -> Response {
    answer(post_evaluate_inner(req, env, store, op).await)
}

async fn post_evaluate_inner(
    req: &mut Request,
    env: &Env,
    store: &Store,
    op: &Operator,
) -> Result<Response, ApiError> {
    let raw = match req.bytes().await {
        Ok(b) => b,
        Err(_) => return Err(error(400, "unreadable_body", "the request body could not be read").into()),
    };
    let b: EvaluateBody = if raw.iter().all(|c| c.is_ascii_whitespace()) {
        EvaluateBody::default()
    } else {
        match serde_json::from_slice(&raw) {
            Ok(b) => b,
            Err(e) => return Err(error(400, "invalid_json", &format!("request body: {e}")).into()),
        }
    };
    let requested = match &b.now {
        None | Some(Value::Null) => None,
        Some(v) => match time_value(v) {
            Some(t) => Some(t),
            None => {
                return Err(error(
                    400,
                    "invalid_time",
                    "\"now\" must be epoch milliseconds or an RFC 3339 time",
                )
                .into())
            }
        },
    };
    let at = clock(env, requested)?;
    let lanes: Vec<&Lane> = match &b.lane {
        Some(name) => vec![lane_of(name)?],
        None => match matrix() {
            Ok(m) => m.lanes.iter().collect(),
            Err(_) => return Err(error(500, "matrix_invalid", "the route matrix could not be loaded").into()),
        },
    };
    let flags = flags(env)?;
    let alerter = Alerts { store, settings: super::context::settings(env) };
    let runs = evaluate_lanes(store, &flags, &alerter, &lanes, at, &Trigger::User(&op.actor)).await;
    let mut results = Vec::with_capacity(runs.len());
    let mut errors = 0;
    for r in runs {
        match r {
            Ok(run) => results.push(run.body),
            Err((lane, e)) => {
                errors += 1;
                worker::console_error!("gates: evaluating {lane} failed: {e:?}");
                results.push(json!({ "lane": lane, "error": "storage_unavailable" }));
            }
        }
    }
    if errors == results.len() && errors > 0 {
        return Err(unavailable(5).into());
    }
    let now = at.unwrap_or_else(now_ms);
    Ok(json(200, &json!({ "evaluated_at_ms": now, "dry_run": at.is_some(), "lanes": results })))
}

#[derive(Deserialize)]
struct BaselineBody {
    triage_mean_ms: Option<f64>,
    triage_p90_ms: Option<f64>,
    exception_rate: Option<f64>,
    fulfilment_delay_mean_ms: Option<f64>,
    failed_per_day: Option<f64>,
    note: Option<String>,
}

fn required_note(note: Option<String>) -> Result<String, Response> {
    note.map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| error(400, "note_required", "every change needs a note"))
}

/// `PUT /admin/segments/{lane}/baseline`: numbers measured from the manual process.
pub async fn put_baseline(req: &mut Request, store: &Store, op: &Operator, lane: &str) -> Response {
    answer(put_baseline_inner(req, store, op, lane).await)
}

async fn put_baseline_inner(
    req: &mut Request,
    store: &Store,
    op: &Operator,
    lane: &str,
) -> Result<Response, ApiError> {
    let lane = lane_of(lane)?;
    let b: BaselineBody = body(req).await?;
    let note = required_note(b.note)?;
    let figures = [
        ("triage_mean_ms", b.triage_mean_ms),
        ("triage_p90_ms", b.triage_p90_ms),
        ("exception_rate", b.exception_rate),
        ("fulfilment_delay_mean_ms", b.fulfilment_delay_mean_ms),
        ("failed_per_day", b.failed_per_day),
    ];
    if let Some((name, _)) = figures.iter().find(|(_, v)| v.is_none()) {
        return Err(error(400, "invalid_baseline", &format!("{name} is required")).into());
    }
    let get = |i: usize| figures[i].1.unwrap_or(0.0);
    let baseline = Baseline {
        triage_mean_ms: get(0),
        triage_p90_ms: get(1),
        exception_rate: get(2),
        fulfilment_delay_mean_ms: get(3),
        failed_per_day: get(4),
        source: BaselineSource::Entered,
        window_from_ms: None,
        window_to_ms: None,
        recorded_at_ms: now_ms(),
    };
    if let Err(e) = baseline.validate() {
        return Err(error(400, "invalid_baseline", &e.to_string()).into());
    }
    match store.insert_baseline(&lane.name, &baseline, &note, &op.actor).await {
        Ok(stored) => Ok(json(201, &json!({ "segment": lane.name, "baseline": stored }))),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct CaptureBody {
    from: Option<Value>,
    to: Option<Value>,
    note: Option<String>,
}

/// `POST /admin/segments/{lane}/baseline/capture` `{"from", "to", "note"}`: a baseline
/// computed from the lane's own data over a window when it ran `manual` or `shadow`.
pub async fn capture_baseline(req: &mut Request, store: &Store, op: &Operator, lane: &str) -> Response {
    answer(capture_baseline_inner(req, store, op, lane).await)
}

async fn capture_baseline_inner(
    req: &mut Request,
    store: &Store,
    op: &Operator,
    lane: &str,
) -> Result<Response, ApiError> {
    let lane = lane_of(lane)?;
    let b: CaptureBody = body(req).await?;
    let note = required_note(b.note)?;
    let now = now_ms();
    let (Some(from), Some(to)) = (b.from.as_ref().and_then(time_value), b.to.as_ref().and_then(time_value))
    else {
        return Err(error(
            400,
            "invalid_window",
            "from and to are required: epoch milliseconds or RFC 3339 times",
        )
        .into());
    };
    if from >= to || to > now.saturating_add(1) || too_wide(from, to) {
        return Err(error(400, "invalid_window", "need from < to <= now, at most 92 days apart").into());
    }
    // The lane's mode over [from, to): the last change at or before `from`, then each change
    // inside. Before any recorded change the lane ran its matrix default.
    let changes = match store.mode_changes(&lane.name, to).await {
        Ok(c) => c,
        Err(e) => return Err(e.into()),
    };
    let at_start =
        changes.iter().rev().find(|(at, _)| *at <= from).map(|(_, m)| *m).unwrap_or(Some(lane.default_mode));
    let mut modes: Vec<(i64, Option<Mode>)> = vec![(from, at_start)];
    modes.extend(changes.iter().filter(|(at, _)| *at > from).copied());
    if let Some((at, m)) = modes.iter().find(|(_, m)| !matches!(m, Some(Mode::Manual | Mode::Shadow))) {
        let what = m.map(|m| m.as_str()).unwrap_or("unknown");
        return Err(error(
            409,
            "lane_not_manual",
            &format!(
                "the lane ran {what} from {} inside the window; capture only a period when it ran manual or shadow",
                crate::core::time::format_rfc3339_ms(*at)
            ),
        ).into());
    }
    let facts = match store.lane_facts(&lane.name, from, to).await {
        Ok(f) => f,
        Err(e) => return Err(e.into()),
    };
    let k = kpi::compute(&facts, &lane.name, from, to, now);
    let baseline = match Baseline::capture(&k, now) {
        Ok(b) => b,
        Err(e @ (BaselineError::Missing(_) | BaselineError::Invalid(_))) => {
            return Err(error(409, "insufficient_data", &e.to_string()).into());
        }
    };
    match store.insert_baseline(&lane.name, &baseline, &note, &op.actor).await {
        Ok(stored) => Ok(json(201, &json!({ "segment": lane.name, "baseline": stored, "kpis": k }))),
        Err(e) => Err(e.into()),
    }
}

fn window(pairs: &[(String, String)], now: i64) -> Result<(i64, i64), Response> {
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let parse = |k: &str| match get(k) {
        None | Some("") => Ok(None),
        Some(v) => parse_time(v).map(Some).ok_or_else(|| {
            error(400, "invalid_time", &format!("{k} must be epoch milliseconds or an RFC 3339 time"))
        }),
    };
    // Events stamped at `now` count, as in the gate windows.
    let to = parse("to")?.unwrap_or(now.saturating_add(1));
    let from = parse("from")?.unwrap_or(to.saturating_sub(DAY_MS));
    if from >= to || too_wide(from, to) {
        return Err(error(400, "invalid_window", "need from < to, at most 92 days apart"));
    }
    Ok((from, to))
}

/// `GET /admin/segments/{lane}/kpis?from=&to=` (`explain=true`: the queries' plans).
pub async fn get_kpis(req: &Request, store: &Store, lane: &str) -> Response {
    answer(get_kpis_inner(req, store, lane).await)
}

async fn get_kpis_inner(req: &Request, store: &Store, lane: &str) -> Result<Response, ApiError> {
    let lane = lane_of(lane)?;
    let pairs = query_pairs(req);
    let now = now_ms();
    let (from, to) = window(&pairs, now)?;
    if pairs.iter().any(|(k, v)| k == "explain" && v == "true") {
        return match store.kpi_plans(&lane.name, from, to).await {
            Ok(plans) => Ok(json(200, &json!({ "plans": plans }))),
            Err(e) => Err(e.into()),
        };
    }
    match store.lane_facts(&lane.name, from, to).await {
        Ok(facts) => Ok(json(200, &kpi::compute(&facts, &lane.name, from, to, now))),
        Err(e) => Err(e.into()),
    }
}

/// Baseline figures against the same figures observed since release.
fn comparison(e: &Evaluation) -> Value {
    let (Some(b), Some(o)) = (&e.baseline, &e.observed) else { return Value::Null };
    let row = |base: f64, observed: Option<f64>| json!({ "baseline": base, "observed": observed, "better": observed.map(|v| v < base) });
    json!({
        "triage_mean_ms": row(b.triage_mean_ms, o.triage_mean_ms),
        "triage_p90_ms": row(b.triage_p90_ms, o.triage_p90_ms.map(|v| v as f64)),
        "exception_rate": row(b.exception_rate, o.exception_rate),
        "fulfilment_delay_mean_ms": row(b.fulfilment_delay_mean_ms, o.fulfilment_delay_mean_ms),
        "failed_per_day": row(b.failed_per_day, o.failed_per_day),
    })
}

/// `GET /admin/segments/{lane}/report`: baseline vs observed, each gate with its evidence,
/// the 72-hour decision, and for a shadow lane the agreement with operators.
pub async fn get_report(req: &Request, env: &Env, store: &Store, lane: &str) -> Response {
    answer(get_report_inner(req, env, store, lane).await)
}

async fn get_report_inner(req: &Request, env: &Env, store: &Store, lane: &str) -> Result<Response, ApiError> {
    let lane = lane_of(lane)?;
    let pairs = query_pairs(req);
    let requested = match pairs.iter().find(|(k, _)| k == "now") {
        Some((_, v)) => match parse_time(v) {
            Some(t) => Some(t),
            None => {
                return Err(
                    error(400, "invalid_time", "now must be epoch milliseconds or an RFC 3339 time").into()
                )
            }
        },
        None => None,
    };
    let now = clock(env, requested)?.unwrap_or_else(now_ms);
    let flags = flags(env)?;
    let loaded = match load(store, &flags, lane, now, now_ms()).await {
        Ok(l) => l,
        Err(e) => return Err(e.into()),
    };
    let e = gates::evaluate(&loaded.input, now);
    // A release decided `expand` stays decided; a rollback shows through `already_alerted_for`.
    let decision = match loaded.record.last_decision {
        Some(Decision::Expand) if e.decision != Decision::RolledBack => Decision::Expand,
        _ => e.decision,
    };
    let gates: Vec<Value> = e
        .results
        .iter()
        .map(|r| {
            json!({
                "gate": r.gate, "title": r.gate.title(), "status": r.status,
                "observed": r.observed, "limit": r.limit, "evidence": r.detail,
            })
        })
        .collect();
    let agreement = if loaded.input.mode == Mode::Shadow {
        let since = loaded
            .segment
            .as_ref()
            .filter(|s| s.mode == "shadow")
            .map(|s| s.seen_ms)
            .unwrap_or(now - 30 * DAY_MS);
        match store.shadow_pairs(&lane.name, since, now.saturating_add(1)).await {
            Ok(p) => {
                json!({ "from_ms": since, "to_ms": now.saturating_add(1), "result": agreement_rate(&p) })
            }
            Err(err) => return Err(err.into()),
        }
    } else {
        Value::Null
    };
    let baselines = store.baselines(&lane.name, 10).await;
    let runs = store.gate_runs(&lane.name, 12).await;
    let (baselines, runs) = match (baselines, runs) {
        (Ok(b), Ok(r)) => (b, r),
        (Err(err), _) | (_, Err(err)) => return Err(err.into()),
    };
    Ok(json(
        200,
        &json!({
            "segment": lane.name,
            "at_ms": now,
            "mode": e.mode,
            "released_at_ms": e.released_at_ms,
            "elapsed_ms": e.elapsed_ms,
            "decision": decision,
            "decision_recorded": loaded.record.last_decision,
            "last_evaluated_ms": loaded.record.last_evaluated_ms,
            "alerted_for": loaded.record.alerted_for,
            "no_rollback": e.no_rollback,
            "backlog_threshold": lane.backlog_threshold,
            "baseline": e.baseline,
            "observed": e.observed,
            "baseline_vs_observed": comparison(&e),
            "gates": gates,
            "shadow_agreement": agreement,
            "baseline_history": baselines,
            "recent_gate_runs": runs,
        }),
    ))
}
