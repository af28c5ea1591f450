//! Recording and routing one delivery: read what the rules need, apply it in the core, and
//! write the delivery record, the order, stock claims and audit rows in ONE D1 batch. A lost
//! race (another delivery for the same order, or the last unit claimed first) fails the batch
//! as a whole; it is then re-decided from fresh state.

use super::context::Edge;
use super::queue;
use super::store::{ModeSource, NewDelivery, ReadPlan, StoreError};
use super::writer::{self, email_hash, Change};
use crate::core::apply::{apply_delivery, Delivery as CoreDelivery, Incoming, RouteEnv};
use crate::core::order::{parse_order, parse_risk_event, Order, RiskEvent};
use crate::core::rules::Matrix;
use crate::core::webhook::{Delivery, Topic};

/// Attempts before answering 503 (Shopify then retries the delivery later).
const MAX_RACES: usize = 5;
pub const ACTOR: &str = "system:router";

/// What the delivery was, for the answer.
pub enum Recorded {
    Accepted { review: bool },
    Duplicate,
}

#[allow(clippy::large_enum_variant)] // built once per delivery, never stored
enum Parsed {
    Order(Order),
    Risk(RiskEvent),
}

/// Records an order-topic delivery and routes it. `Err(Unavailable)` → answer 503.
/// A body the core cannot read is recorded as `review` and not routed.
pub async fn record_and_route(
    edge: &Edge,
    d: &Delivery,
    topic: Topic,
    body: &[u8],
    now_ms: i64,
) -> Result<Recorded, StoreError> {
    let parsed = match topic {
        Topic::OrdersRiskAssessmentChanged => parse_risk_event(body).map(Parsed::Risk),
        _ => parse_order(body).map(Parsed::Order),
    };
    let m = edge.matrix().map_err(StoreError::Unavailable)?;
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
            return match edge.store.batch(edge.store.record_delivery(&new)?).await {
                Ok(()) => Ok(Recorded::Accepted { review: true }),
                Err(StoreError::Conflict) => Ok(Recorded::Duplicate),
                Err(e) => Err(e),
            };
        }
    };
    let order_id = match &parsed {
        Parsed::Order(o) => o.id.0.clone(),
        Parsed::Risk(r) => r.order_id.0.clone(),
    };
    for _ in 0..MAX_RACES {
        match attempt(edge, m, d, topic, &parsed, &order_id, body, now_ms).await {
            Err(StoreError::Conflict) => {
                if edge.store.delivery_id(&d.shop, &d.webhook_id).await?.is_some() {
                    return Ok(Recorded::Duplicate);
                }
                // Lost a race on the order or its stock: decide again from fresh state.
            }
            other => return other.map(|()| Recorded::Accepted { review: false }),
        }
    }
    Err(StoreError::Unavailable("too many concurrent changes to this order".into()))
}

fn skus_of(o: &Order) -> Vec<String> {
    o.line_items.iter().filter_map(|l| l.sku.clone()).collect()
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    edge: &Edge,
    m: &Matrix,
    d: &Delivery,
    topic: Topic,
    parsed: &Parsed,
    order_id: &str,
    body: &[u8],
    now_ms: i64,
) -> Result<(), StoreError> {
    let store = &edge.store;
    // The order the rules run on: the body itself, or for a verdict the latest stored body.
    let body_order = match parsed {
        Parsed::Order(o) => Some(o),
        Parsed::Risk(_) => None,
    };
    let hash = body_order.and_then(|o| o.email.as_deref()).map(email_hash);
    let skus = body_order.map(skus_of).unwrap_or_default();
    let window_ms = body_order
        .map(|o| m.lane_for(&d.shop, o))
        .and_then(|l| l.fraud.email_velocity.as_ref())
        .map(|v| i64::from(v.window_minutes) * 60_000)
        .unwrap_or(0);
    let plan = ReadPlan {
        skus: &skus,
        email: hash.as_deref().map(|h| (h, now_ms - window_ms)),
        early_risk: true,
        ..ReadPlan::default()
    };
    let mut reads = store.order_reads(&d.shop, order_id, &plan).await?;
    // A verdict needs the stored order to re-run the rules with, and its stock.
    let stored_order = match (parsed, reads.row.as_ref().and_then(|r| r.payload_delivery_id)) {
        (Parsed::Risk(_), Some(id)) => store.body(id).await?.and_then(|b| parse_order(&b).ok()),
        _ => None,
    };
    if let Some(o) = stored_order.as_ref() {
        let extra = skus_of(o);
        if !extra.is_empty() {
            reads.stock = store
                .order_reads(&d.shop, order_id, &ReadPlan { skus: &extra, ..ReadPlan::default() })
                .await?
                .stock;
        }
    }
    let prior = reads.row.as_ref().map(|r| writer::record_from(r, &reads, now_ms));
    let early_risk =
        reads.early_risk_body.as_deref().and_then(|b| parse_risk_event(b).ok()).map(|r| r.risk_level);
    let lane_name = match (body_order, &stored_order, &prior) {
        (Some(o), _, _) | (None, Some(o), _) => m.lane_for(&d.shop, o).name.clone(),
        (None, None, Some(p)) => p.lane.clone(),
        _ => crate::core::rules::DEFAULT_LANE.to_string(),
    };
    // A KV error is not a mode: the delivery is answered 503 and Shopify retries it.
    let kv = edge.kv_mode(&lane_name).await.map_err(StoreError::Unavailable)?;
    let mode = match kv {
        crate::core::lifecycle::KvMode::Set(mode) => Some(mode),
        crate::core::lifecycle::KvMode::Unset => None,
        crate::core::lifecycle::KvMode::Invalid => Some(crate::core::types::Mode::Manual),
    };
    let env = RouteEnv {
        matrix: m,
        shop: &d.shop,
        stock: &reads.stock,
        email_orders_in_window: reads.email_orders,
        mode,
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
        customer_id: body_order.and_then(|o| o.customer_id.as_ref()).map(|c| c.0.as_str()),
        body: Some(body),
    };
    let mut statements = store.record_delivery(&new)?;
    let lane_default = m.lane(&lane_name).map(|l| l.default_mode).unwrap_or(crate::core::types::Mode::Manual);
    statements.extend(store.note_mode(
        &lane_name,
        mode.unwrap_or(lane_default),
        ModeSource::Observed,
        now_ms,
        ACTOR,
        None,
    )?);
    let change = Change {
        shop: &d.shop,
        order_id,
        webhook_id: Some(&d.webhook_id),
        prior: reads.row.as_ref(),
        open: &reads.open,
        body_order,
        actor: ACTOR,
        note: None,
        now_ms,
        lifecycle: Default::default(),
    };
    statements.extend(writer::statements(store, &change, &applied)?);
    store.batch(statements).await?;
    queue::follow_up(edge, &d.shop, order_id, &applied, now_ms).await;
    Ok(())
}
