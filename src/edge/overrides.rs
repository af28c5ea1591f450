//! The manual override path: operators release, force, hold and stop orders, and re-drive
//! dead letters. Every change is one audited transition through the core state machine, by
//! `user:<name>` with a required note. Two conflicting changes resolve deterministically:
//! the order row version admits one; the other gets 409 with the current state.

use serde::Deserialize;
use worker::{Env, Request, Response};

use super::api::{answer, body, ApiError, Operator};
use super::api::{error, json};
use super::context::{now_ms, Edge};
use super::store::{Lifecycle, ReadPlan, StoreError};
use super::writer::{self, Change};
use crate::core::apply::{apply_action, Action, RouteEnv};
use crate::core::lifecycle::KvMode;
use crate::core::query::{self, QueryError};
use crate::core::types::{Mode, State};

#[derive(Deserialize)]
pub struct ActionBody {
    note: Option<String>,
    /// Optional optimistic check: refuse with 409 unless the order is still in this state.
    expected_state: Option<String>,
}

fn action_of(name: &str) -> Option<Action> {
    Some(match name {
        "release" => Action::OperatorRelease,
        "force-ready" => Action::OperatorForceReady,
        "hold" => Action::OperatorHold,
        "stop" => Action::OperatorStop,
        _ => return None,
    })
}

fn required_note(note: Option<String>) -> Result<String, Response> {
    note.map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| error(400, "note_required", "every change needs a note"))
}

pub async fn order_action(
    mut req: Request,
    env: &Env,
    op: &Operator,
    shop: &str,
    order_id: &str,
    name: &str,
) -> Response {
    answer(
        async {
            let action = action_of(name).ok_or_else(|| {
                ApiError::new(404, "unknown_action", "actions: release, force-ready, hold, stop")
            })?;
            let b: ActionBody = body(&mut req).await?;
            let note = required_note(b.note)?;
            let edge = Edge::new(env).ok_or_else(|| ApiError::Answered(super::api::unavailable(5)))?;
            let v =
                apply_operator(&edge, op, shop, order_id, action, &note, b.expected_state.as_deref()).await?;
            Ok(json(200, &v))
        }
        .await,
    )
}

/// Applies one operator action; the answer is the order's new state, or a typed error.
pub async fn apply_operator(
    edge: &Edge,
    op: &Operator,
    shop: &str,
    order_id: &str,
    action: Action,
    note: &str,
    expected_state: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let store = &edge.store;
    let now = now_ms();
    let m = edge.matrix().map_err(|e| ApiError::new(500, "matrix_invalid", e))?;
    // One read: the row, its claims, its typed inputs and the stock its lines name. A release
    // re-runs the rules on the order rebuilt from them; force-ready claims stock for it.
    let reads = store
        .order_reads(shop, order_id, &ReadPlan { inputs: true, line_stock: true, ..ReadPlan::default() })
        .await?;
    let Some(row) = reads.row.clone() else {
        return Err(ApiError::new(404, "order_not_found", "no such order"));
    };
    let current = || serde_json::json!({ "state": row.state, "reason": row.reason, "seq": row.seq });
    if let Some(want) = expected_state {
        if want != row.state_text() && want != row.state.as_str() {
            return Err(ApiError::conflict(
                "state_changed",
                "the order is no longer in the expected state",
                current(),
            ));
        }
    }
    if row.in_flight(now) {
        return Err(ApiError::conflict(
            "submission_in_flight",
            "a submission attempt is in flight; retry in a minute",
            current(),
        ));
    }
    let order = reads.stored.as_ref().and_then(|st| st.order(&row));
    let stock = &reads.stock;
    let lane =
        order.as_ref().map(|o| m.lane_for(shop, o).name.clone()).unwrap_or_else(|| row.segment.clone());
    let kv = edge.kv_mode(&lane).await.map_err(|e| {
        worker::console_error!("KV read failed: {e}");
        ApiError::Answered(super::api::unavailable(5))
    })?;
    let default = m.lane(&lane).map(|l| l.default_mode).unwrap_or(Mode::Manual);
    let effective = crate::core::lifecycle::send_mode(&kv, default, None, now);
    if action == Action::OperatorForceReady && effective != Mode::Auto {
        return Err(ApiError::conflict(
            "segment_not_auto",
            "only lanes in auto mode send orders downstream; switch the lane to auto first",
            current(),
        ));
    }
    let mode = match kv {
        KvMode::Set(mode) => Some(mode),
        KvMode::Unset => None,
        KvMode::Invalid => Some(Mode::Manual),
    };
    let env = RouteEnv { matrix: m, shop, stock, email_orders_in_window: 1, mode, risk: None };
    let rec = writer::record_from(&row, &reads, now);
    let applied = apply_action(&rec, action, order.as_ref().map(|o| (o, &env)), now);
    if !applied.applied() {
        let why = applied
            .audit
            .first()
            .and_then(|a| a.detail.get("ignored"))
            .and_then(|v| v.as_str())
            .unwrap_or("not applicable");
        return Err(ApiError::conflict(
            "illegal_transition",
            format!("this action does not apply to the order now: {why}"),
            current(),
        ));
    }
    let resolves =
        row.state == State::Hold && applied.record.as_ref().is_some_and(|r| r.state != State::Hold);
    let change = Change { note: Some(note), ..Change::to(&row, &reads.open, &op.actor, now) }
        .with(Lifecycle { resolved: resolves, ..Lifecycle::default() });
    let statements = writer::statements(store, &change, &applied)?;
    let mirror = writer::shopify_desire(&change, &applied).is_some();
    match store.batch(statements).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            let fresh = store.order(shop, order_id).await?;
            let state =
                fresh.map(|r| serde_json::json!({ "state": r.state, "reason": r.reason, "seq": r.seq }));
            // Stock short for a claim fails the batch too: tell that apart from a lost race.
            let short = applied.reserve.iter().any(|(sku, q)| stock.get(sku).is_some_and(|a| a < q));
            if short && state.as_ref().and_then(|s| s.get("seq")).and_then(|v| v.as_i64()) == Some(row.seq) {
                return Err(ApiError::conflict(
                    "insufficient_stock",
                    "the order needs more units than are available; load stock first",
                    state.unwrap_or_default(),
                ));
            }
            return Err(ApiError::conflict(
                "conflict",
                "another change to this order won; here is its current state",
                state.unwrap_or_default(),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    let new_state = applied.record.as_ref().map(|r| (r.state, r.reason));
    super::queue::follow_up(edge, shop, order_id, &applied, false).await;
    if mirror {
        super::shopify::nudge(edge, shop, order_id, 0).await;
    }
    Ok(serde_json::json!({
        "shop": shop, "order_id": order_id,
        "state": new_state.map(|s| s.0), "reason": new_state.and_then(|s| s.1),
        "explanation": applied.decision.as_ref().map(|d| d.explanation.clone()),
        "actor": op.actor, "note": note,
    }))
}

#[derive(Deserialize)]
pub struct RedriveBody {
    note: Option<String>,
}

/// `POST /admin/dead-letters/{id}/redrive`: sends a dead-lettered order again (same
/// idempotency key after transient failures, a new submission after a refusal).
pub async fn redrive_one(mut req: Request, env: &Env, op: &Operator, id: &str) -> Response {
    answer(
        async {
            let id = id
                .parse::<i64>()
                .map_err(|_| ApiError::new(404, "dead_letter_not_found", "no such dead letter"))?;
            let b: RedriveBody = body(&mut req).await?;
            let note = required_note(b.note)?;
            let edge = Edge::new(env).ok_or_else(|| ApiError::Answered(super::api::unavailable(5)))?;
            Ok(json(200, &redrive(&edge, op, id, &note).await?))
        }
        .await,
    )
}

async fn redrive(edge: &Edge, op: &Operator, id: i64, note: &str) -> Result<serde_json::Value, ApiError> {
    let store = &edge.store;
    let Some(dl) = store.dead_letter_ref(id).await? else {
        return Err(ApiError::new(404, "dead_letter_not_found", "no such dead letter"));
    };
    if dl.resolved_ms.is_some() {
        return Err(ApiError::conflict(
            "already_resolved",
            "this dead letter was already resolved",
            serde_json::json!({ "id": id }),
        ));
    }
    let (Some(shop), Some(order_id)) = (dl.shop.clone(), dl.order_id.clone()) else {
        return Err(ApiError::conflict(
            "not_redrivable",
            "this dead letter names no order",
            serde_json::json!({ "id": id }),
        ));
    };
    if dl.cause == super::shopify::DEAD_LETTER_CAUSE {
        // A hold Shopify would not take: try the mirror again; the order itself stays as it is.
        let now = now_ms();
        let resolved = store.resolve_dead_letter(id, now, &op.actor, "redriven", note)?;
        store.batch(vec![store.mirror_due_now(&shop, &order_id, now)?, resolved]).await?;
        super::shopify::nudge(edge, &shop, &order_id, 0).await;
        return Ok(serde_json::json!({ "dead_letter": id, "shopify_mirror": "redriven" }));
    }
    // The state change and the resolution are separate guarded writes: the order version admits
    // one re-drive, and the resolution guard admits one resolver.
    let result = apply_operator(edge, op, &shop, &order_id, Action::OperatorForceReady, note, None).await;
    let resolved = store.resolve_dead_letter(
        id,
        now_ms(),
        &op.actor,
        if result.is_ok() { "redriven" } else { "superseded" },
        note,
    )?;
    match result {
        Ok(v) => {
            store.batch(vec![resolved]).await?;
            Ok(serde_json::json!({ "dead_letter": id, "order": v }))
        }
        Err(r) => Err(r),
    }
}

#[derive(Deserialize)]
pub struct BulkBody {
    note: Option<String>,
    #[serde(default)]
    dry_run: bool,
    cause: Option<String>,
    shop: Option<String>,
    limit: Option<i64>,
}

/// `POST /admin/dead-letters/redrive`: re-drives every open dead letter matching the filter
/// (cause, shop), oldest first, up to `limit` (default 100). `dry_run: true` lists exactly what
/// would be re-driven and changes nothing.
pub async fn redrive_bulk(mut req: Request, env: &Env, op: &Operator) -> Response {
    answer(redrive_matching(&mut req, env, op).await)
}

async fn redrive_matching(req: &mut Request, env: &Env, op: &Operator) -> Result<Response, ApiError> {
    let edge = Edge::new(env).ok_or_else(|| ApiError::Answered(super::api::unavailable(5)))?;
    let b: BulkBody = body(req).await?;
    let note = match (b.dry_run, required_note(b.note)) {
        (_, Ok(n)) => n,
        (true, Err(_)) => String::new(),
        (false, Err(r)) => return Err(r.into()),
    };
    let limit = b.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(400, "invalid_filter", "limit must be 1..=500"));
    }
    let mut pairs = Vec::new();
    if let Some(c) = b.cause {
        pairs.push(("cause".to_string(), c));
    }
    if let Some(s) = b.shop {
        pairs.push(("shop".to_string(), s));
    }
    let (conds, params) = query::dead_letter_conditions(&pairs)
        .map_err(|QueryError(m)| ApiError::new(400, "invalid_filter", m))?;
    let rows = edge.store.dead_letters_matching(&conds, &params, limit).await?;
    let candidates: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::json!({ "id": r.id, "shop": r.shop, "order_id": r.order_id, "cause": r.cause }))
        .collect();
    if b.dry_run {
        return Ok(json(200, &serde_json::json!({ "dry_run": true, "would_redrive": candidates })));
    }
    let mut results = Vec::with_capacity(rows.len());
    for r in &rows {
        let outcome = match redrive(&edge, op, r.id, &note).await {
            Ok(_) => serde_json::json!({ "id": r.id, "redriven": true }),
            Err(e) => {
                let status = e.into_response().status_code();
                serde_json::json!({ "id": r.id, "redriven": false, "status": status })
            }
        };
        results.push(outcome);
    }
    Ok(json(200, &serde_json::json!({ "dry_run": false, "results": results })))
}
