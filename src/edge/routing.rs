//! Routing one delivery: read what the rules need, apply it in the core, and write the
//! delivery record, the order, stock claims and audit rows in ONE D1 batch. A lost race
//! (another delivery for the same order, or the last unit claimed first) fails the batch as
//! a whole; it is then re-decided from fresh state.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use worker::Queue;

use super::flags::{Flag, Flags};
use super::fulfilment::enqueue;
use super::store::{AuditRow, DecisionCols, NewDelivery, OrderCols, OrderWrite, RouteRow, Store, StoreError};
use crate::core::apply::{
    apply_delivery, Applied, Delivery as CoreDelivery, Incoming, OrderRecord, OrderingKey, RouteEnv,
};
use crate::core::fulfilment::QueueMessage;
use crate::core::order::{parse_order, parse_risk_event, Order, RiskEvent, RiskLevel};
use crate::core::rules::Matrix;
use crate::core::types::{Mode, Reason, State};
use crate::core::webhook::{Delivery, ShopifyId, Topic};

/// Attempts before answering 503 (Shopify then retries the delivery later).
const MAX_RACES: usize = 5;
pub const ACTOR: &str = "system:router";

/// The compiled-in route matrix, validated once per isolate.
pub fn matrix() -> Result<&'static Matrix, String> {
    static M: OnceLock<Result<Matrix, String>> = OnceLock::new();
    M.get_or_init(|| Matrix::builtin().map_err(|e| e.to_string())).as_ref().map_err(Clone::clone)
}

/// SHA-256 of the normalised email: lets the velocity rule count orders per buyer without
/// storing the address.
pub fn email_hash(email: &str) -> String {
    hex::encode(Sha256::digest(email.trim().to_lowercase().as_bytes()))
}

/// The segment mode KV asks for (`None`: unset, the lane default applies). An unreadable
/// value counts as `manual`, the safe side.
pub async fn kv_mode(flags: Option<&Flags>, lane: &str) -> Option<Mode> {
    match flags?.mode(lane).await {
        Ok(Flag::Set(m)) => Some(m),
        Ok(Flag::Unset) => None,
        Ok(Flag::Invalid(v)) => {
            worker::console_error!("KV segment:{lane}:mode holds {v:?}, not a mode: treating as manual");
            Some(Mode::Manual)
        }
        Err(e) => {
            worker::console_error!("KV read failed for {lane}: {e}; treating as manual");
            Some(Mode::Manual)
        }
    }
}

pub fn record_from(order_id: &str, row: &RouteRow, reservations: Vec<(String, i64)>) -> Option<OrderRecord> {
    Some(OrderRecord {
        order_id: ShopifyId(order_id.to_string()),
        lane: row.segment.clone(),
        state: State::parse(&row.state)?,
        reason: row.reason.as_deref().and_then(Reason::parse),
        created_at_ms: row.order_created_ms.unwrap_or(row.created_ms),
        key: OrderingKey {
            updated_at_ms: row.order_updated_ms.unwrap_or(0),
            triggered_at_ms: row.event_triggered_ms.unwrap_or(0),
        },
        risk: row.risk_level.as_deref().and_then(RiskLevel::parse),
        risk_at_ms: row.risk_at_ms,
        submitted: row.submitted_ms.is_some(),
        reservations,
        rules_version: row.rules_version.clone(),
    })
}

/// What the delivery was, for the answer.
pub enum Routed {
    Recorded,
    Duplicate,
}

#[allow(clippy::large_enum_variant)] // built once per delivery, never stored
enum Parsed {
    Order(Order),
    Risk(RiskEvent),
}

pub struct Ctx<'a> {
    pub store: &'a Store,
    pub flags: Option<&'a Flags>,
    pub queue: Option<&'a Queue>,
}

/// Records an order-topic delivery and routes it. `Err(Unavailable)` → answer 503.
/// A body the core cannot read is recorded as `review` and not routed.
pub async fn record_and_route(
    ctx: &Ctx<'_>,
    d: &Delivery,
    topic: Topic,
    body: &[u8],
    now_ms: i64,
) -> Result<(Routed, bool), StoreError> {
    let parsed = match topic {
        Topic::OrdersRiskAssessmentChanged => parse_risk_event(body).map(Parsed::Risk),
        _ => parse_order(body).map(Parsed::Order),
    };
    let m = matrix().map_err(StoreError::Unavailable)?;
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => {
            let detail = format!("{}: {e}", e.code());
            let new = NewDelivery {
                delivery: d,
                received_ms: now_ms,
                outcome: "review",
                detail: Some(&detail),
                order_id: None,
                customer_id: None,
                body: Some(body),
            };
            return match ctx.store.batch(ctx.store.record_delivery(&new)?).await {
                Ok(()) => Ok((Routed::Recorded, true)),
                Err(StoreError::Conflict) => Ok((Routed::Duplicate, false)),
                Err(e) => Err(e),
            };
        }
    };
    let order_id = match &parsed {
        Parsed::Order(o) => o.id.0.clone(),
        Parsed::Risk(r) => r.order_id.0.clone(),
    };
    for _ in 0..MAX_RACES {
        match attempt(ctx, m, d, topic, &parsed, &order_id, body, now_ms).await {
            Err(StoreError::Conflict) => {
                if ctx.store.delivery_id(&d.shop, &d.webhook_id).await?.is_some() {
                    return Ok((Routed::Duplicate, false));
                }
                // Lost a race on the order or its stock: decide again from fresh state.
            }
            other => return other.map(|r| (r, false)),
        }
    }
    Err(StoreError::Unavailable("too many concurrent changes to this order".into()))
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    ctx: &Ctx<'_>,
    m: &Matrix,
    d: &Delivery,
    topic: Topic,
    parsed: &Parsed,
    order_id: &str,
    body: &[u8],
    now_ms: i64,
) -> Result<Routed, StoreError> {
    let store = ctx.store;
    // The order the rules run on: the body itself, or for a verdict the latest stored body.
    let body_order = match parsed {
        Parsed::Order(o) => Some(o.clone()),
        Parsed::Risk(_) => None,
    };
    let hash = body_order.as_ref().and_then(|o| o.email.as_deref()).map(email_hash);
    let skus: Vec<String> = body_order
        .as_ref()
        .map(|o| o.line_items.iter().filter_map(|l| l.sku.clone()).collect())
        .unwrap_or_default();
    let lane_guess = body_order.as_ref().map(|o| m.lane_for(&d.shop, o));
    let window_ms = lane_guess
        .and_then(|l| l.fraud.email_velocity.as_ref())
        .map(|v| i64::from(v.window_minutes) * 60_000)
        .unwrap_or(0);
    let reads = store.route_reads(&d.shop, order_id, &skus, hash.as_deref(), now_ms - window_ms).await?;
    let prior = reads.row.as_ref().and_then(|r| record_from(order_id, r, reads.reservations.clone()));
    let mut stock = reads.stock;
    // A verdict needs the stored order to re-run the rules with.
    let stored_order = match (parsed, reads.row.as_ref().and_then(|r| r.payload_delivery_id)) {
        (Parsed::Risk(_), Some(id)) => store.body(id).await?.and_then(|b| parse_order(&b).ok()),
        _ => None,
    };
    if let (Parsed::Risk(_), Some(o)) = (parsed, stored_order.as_ref()) {
        let extra: Vec<String> = o.line_items.iter().filter_map(|l| l.sku.clone()).collect();
        if !extra.is_empty() {
            stock = store.route_reads(&d.shop, order_id, &extra, None, now_ms).await?.stock;
        }
    }
    let early_risk =
        reads.early_risk_body.as_deref().and_then(|b| parse_risk_event(b).ok()).map(|r| r.risk_level);
    let lane_name = match (&body_order, &stored_order, &prior) {
        (Some(o), _, _) | (None, Some(o), _) => m.lane_for(&d.shop, o).name.clone(),
        (None, None, Some(p)) => p.lane.clone(),
        _ => crate::core::rules::DEFAULT_LANE.to_string(),
    };
    let kv = kv_mode(ctx.flags, &lane_name).await;
    let env = RouteEnv {
        matrix: m,
        shop: &d.shop,
        stock: &stock,
        email_orders_in_window: reads.email_orders,
        mode: kv,
        risk: early_risk,
    };
    let triggered = d.triggered_at.as_deref().and_then(crate::core::time::parse_rfc3339_ms);
    let incoming = match parsed {
        Parsed::Order(o) => Incoming::Order { topic, order: o },
        Parsed::Risk(r) => Incoming::Risk { event: r, order: stored_order.as_ref() },
    };
    let applied =
        apply_delivery(prior.as_ref(), &CoreDelivery { incoming, triggered_at_ms: triggered }, &env, now_ms);

    let new = NewDelivery {
        delivery: d,
        received_ms: now_ms,
        outcome: "accepted",
        detail: None,
        order_id: Some(order_id),
        customer_id: body_order.as_ref().and_then(|o| o.customer_id.as_ref()).map(|c| c.0.as_str()),
        body: Some(body),
    };
    let mut statements = store.record_delivery(&new)?;
    let lane = m.lane(&lane_name).map(|l| l.default_mode).unwrap_or(Mode::Manual);
    statements.extend(store.note_mode(&lane_name, kv.unwrap_or(lane), now_ms, ACTOR, None)?);
    statements.extend(write_applied(
        store,
        d,
        order_id,
        reads.row.as_ref(),
        &reads.reservations,
        &applied,
        body_order.as_ref(),
        now_ms,
    )?);
    store.batch(statements).await?;

    if applied.submit && applied.decision.as_ref().is_some_and(|dec| dec.mode == Mode::Auto) {
        submit(ctx, &d.shop, order_id, now_ms).await;
    }
    Ok(Routed::Recorded)
}

/// Puts a freshly ready order on the queue; if that fails the cron sweep finds it.
pub async fn submit(ctx: &Ctx<'_>, shop: &str, order_id: &str, now_ms: i64) {
    let Some(q) = ctx.queue else { return };
    let submission = match ctx.store.order(shop, order_id).await {
        Ok(Some(r)) if r.state == "ready-for-fulfilment" => r.submission.max(1),
        _ => return,
    };
    let msg = QueueMessage::first(shop, order_id, u32::try_from(submission).unwrap_or(1));
    match enqueue(q, &msg, 0).await {
        Ok(()) => {
            if let Ok(st) = ctx.store.mark_enqueued(shop, order_id, now_ms) {
                let _ = ctx.store.batch(vec![st]).await;
            }
        }
        Err(e) => worker::console_error!("enqueue failed for {shop}:{order_id}, the sweep will retry: {e}"),
    }
}

/// The statements for an `Applied`: order row, stock releases then claims, audit rows.
#[allow(clippy::too_many_arguments)]
pub fn write_applied(
    store: &Store,
    d: &Delivery,
    order_id: &str,
    prior_row: Option<&RouteRow>,
    prior_reservations: &[(String, i64)],
    applied: &Applied,
    body_order: Option<&Order>,
    now_ms: i64,
) -> Result<Vec<worker::D1PreparedStatement>, StoreError> {
    write_applied_as(
        store,
        &d.shop,
        Some(&d.webhook_id),
        order_id,
        prior_row,
        prior_reservations,
        applied,
        body_order,
        now_ms,
        ACTOR,
        None,
    )
}

/// As `write_applied`, for any actor (operators add their note to every audit row).
#[allow(clippy::too_many_arguments)]
pub fn write_applied_as(
    store: &Store,
    shop: &str,
    webhook_id: Option<&str>,
    order_id: &str,
    prior_row: Option<&RouteRow>,
    prior_reservations: &[(String, i64)],
    applied: &Applied,
    body_order: Option<&Order>,
    now_ms: i64,
    actor: &str,
    note: Option<&str>,
) -> Result<Vec<worker::D1PreparedStatement>, StoreError> {
    let mut out = Vec::new();
    let expected = prior_row.map(|r| r.seq).unwrap_or(0);
    let moved = applied.applied();
    let dec = applied.decision.as_ref().filter(|_| moved);
    let fired = dec.map(|x| x.fired_ids().join(",")).unwrap_or_default();
    let segment = applied.record.as_ref().map(|r| r.lane.clone()).unwrap_or_default();
    let rules_version = applied
        .record
        .as_ref()
        .map(|r| r.rules_version.clone())
        .unwrap_or_else(|| crate::core::rules::RULES_VERSION.to_string());
    if let Some(rec) = &applied.record {
        let with_seq = applied.audit.len() as i64;
        let order_cols = body_order.filter(|_| moved).map(|o| OrderCols {
            order_name: &o.name,
            financial_status: o.financial_status.as_deref(),
            email_hash: None,
            total_cents: o.total_price_cents,
            currency: o.currency.as_deref(),
            paid: o.financial_status.as_deref() == Some("paid"),
        });
        let hash = body_order.and_then(|o| o.email.as_deref()).map(email_hash);
        let order_cols = order_cols.map(|mut c| {
            c.email_hash = hash.as_deref();
            c
        });
        let shadow = dec.and_then(|x| x.shadow);
        let shadow_state = shadow.map(|(s, _)| s.as_str());
        let shadow_reason = shadow.and_then(|(_, r)| r).map(|r| r.as_str());
        out.push(store.write_order(&OrderWrite {
            shop,
            order_id,
            webhook_id,
            expected_seq: expected,
            new_seq: expected + with_seq,
            now_ms,
            state: rec.state.as_str(),
            reason: rec.reason.map(|r| r.as_str()),
            segment: &rec.lane,
            rules_version: &rec.rules_version,
            risk_level: rec.risk.map(|r| r.as_str()),
            risk_at_ms: rec.risk_at_ms,
            order_created_ms: rec.created_at_ms,
            order_updated_ms: rec.key.updated_at_ms,
            event_triggered_ms: rec.key.triggered_at_ms,
            decision: dec.map(|x| DecisionCols {
                mode: x.mode.as_str(),
                shadow_state,
                shadow_reason,
                rule_ids: &fired,
                explanation: &x.explanation,
            }),
            order: order_cols,
        })?);
    }
    // Claims are net of what the order already holds (a re-drive keeps its earlier claim).
    let mut held: std::collections::BTreeMap<&str, i64> =
        prior_reservations.iter().map(|(k, q)| (k.as_str(), *q)).collect();
    for (sku, qty) in &applied.release {
        out.extend(store.release(shop, order_id, sku, *qty, now_ms)?);
        held.remove(sku.as_str());
    }
    for (sku, qty) in &applied.reserve {
        let delta = qty - held.get(sku.as_str()).copied().unwrap_or(0);
        if delta > 0 {
            out.extend(store.reserve(shop, order_id, sku, delta, now_ms)?);
        }
    }
    for (i, a) in applied.audit.iter().enumerate() {
        let mut detail = a.detail.clone();
        if let Some(obj) = detail.as_object_mut() {
            obj.insert("outcome".into(), a.outcome.into());
            if a.outcome == "ignored" {
                obj.insert("event".into(), a.event.into());
            }
            if let Some(n) = note {
                obj.insert("note".into(), n.into());
            }
        }
        let event = if a.outcome == "ignored" { "ignored" } else { a.event };
        let seq = applied.record.as_ref().map(|_| expected + i as i64 + 1);
        out.push(store.audit(&AuditRow {
            at_ms: now_ms,
            shop: Some(shop),
            order_id: Some(order_id),
            seq,
            segment: (!segment.is_empty()).then_some(segment.as_str()),
            event,
            from_state: a.from_state.map(|s| s.as_str()),
            to_state: a.to_state.map(|s| s.as_str()),
            reason: a.reason.map(|r| r.as_str()),
            rule_id: a.rule_id,
            rules_version: Some(&rules_version),
            actor,
            detail: &detail,
        })?);
    }
    Ok(out)
}
