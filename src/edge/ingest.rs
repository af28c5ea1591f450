//! Recording and routing one delivery: read what the rules need, apply it in the core, and
//! write the delivery record, the order, stock claims and audit rows in ONE D1 batch. A lost
//! race (another delivery for the same order, or the last unit claimed first) fails the batch
//! as a whole; it is then re-decided from fresh state.
//!
//! Round trips: a fresh `orders/create` skips the read (one batch, its guess checked by guards
//! in the batch); any other delivery reads once (order, claims, stock, an earlier verdict, the
//! order's typed inputs for a verdict, and whether it is a repeat) and writes once. The lane mode comes
//! from this isolate's copy of KV (`memo`).

use std::collections::BTreeMap;

use super::context::Edge;
use super::store::{Guess, ModeSource, NewDelivery, OrderReads, ReadPlan, StockGuess, StoreError};
use super::writer::{self, Change};
use super::{group, memo, queue};
use crate::core::apply::{apply_delivery, Delivery as CoreDelivery, Incoming, RouteEnv};
use crate::core::lifecycle::KvMode;
use crate::core::order::{parse_order, parse_risk_event, Order, RiskEvent};
use crate::core::rules::{inventory, Lane, Matrix};
use crate::core::types::Mode;
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
    actor: &str,
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
            return record_for_review(edge, d, None, body, now_ms, &detail).await;
        }
    };
    let order_id = match &parsed {
        Parsed::Order(o) => o.id.0.clone(),
        Parsed::Risk(r) => r.order_id.0.clone(),
    };
    // A fresh order is decided on a guess (no prior row, stock as last seen) and written in
    // one round trip; a wrong guess fails its guard and the order is read and decided again.
    let mut basis = match (&parsed, topic) {
        (Parsed::Order(_), Topic::OrdersCreate) => Basis::Guess,
        _ => Basis::Read,
    };
    for _ in 0..MAX_RACES {
        match attempt(edge, m, d, topic, &parsed, &order_id, body, now_ms, basis, actor).await {
            // Duplicate, guess wrong, or a race lost on the order or its stock: read (the
            // read answers a duplicate) and decide again from fresh state.
            Err(StoreError::Conflict) => basis = Basis::Read,
            other => return other,
        }
    }
    Err(StoreError::Unavailable("too many concurrent changes to this order".into()))
}

/// Why a delivery naming an order stored under another shop is held for review.
const OTHER_SHOP: &str = "order_known_under_another_shop: this order id is stored under another shop";

/// Records a delivery for a person to review, its body kept, nothing routed.
async fn record_for_review(
    edge: &Edge,
    d: &Delivery,
    order_id: Option<&str>,
    body: &[u8],
    now_ms: i64,
    detail: &str,
) -> Result<Recorded, StoreError> {
    let new = NewDelivery {
        delivery: d,
        received_ms: now_ms,
        outcome: "review",
        detail: Some(detail),
        order_id,
        customer_id: None,
        body: Some(body),
    };
    match edge.store.batch(edge.store.record_delivery(&new)?).await {
        Ok(()) => Ok(Recorded::Accepted { review: true }),
        Err(StoreError::Conflict) => Ok(Recorded::Duplicate),
        Err(e) => Err(e),
    }
}

fn skus_of(o: &Order) -> Vec<String> {
    o.line_items.iter().filter_map(|l| l.sku.clone()).collect()
}

/// What a decision starts from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Basis {
    /// Assume a fresh order; guards check the assumption in the write batch.
    Guess,
    /// Read the order, its claims and what the rules need first.
    Read,
}

/// The reads a fresh order is decided on, and the guards that check them.
fn guess<'a>(o: &Order, lane: &Lane, hash: Option<&'a str>, now_ms: i64) -> (OrderReads, Guess<'a>) {
    let mut stock = BTreeMap::new();
    let mut facts = Vec::new();
    for (sku, need) in inventory::needed(o).0 {
        let seen = memo::stock(&sku).flatten();
        let fact = match seen {
            Some(avail) if avail >= need => StockGuess::AtLeast(need),
            Some(avail) => StockGuess::Exactly(avail),
            None => StockGuess::Absent,
        };
        if let Some(avail) = seen {
            stock.insert(sku.clone(), avail);
        }
        facts.push((sku, fact));
    }
    let email = match (hash, lane.fraud.email_velocity.as_ref()) {
        (Some(h), Some(v)) => Some((h, now_ms - i64::from(v.window_minutes) * 60_000, v.max_orders)),
        _ => None,
    };
    let reads = OrderReads {
        row: None,
        open: Vec::new(),
        consigned: Vec::new(),
        stock,
        email_orders: 1,
        early_risk_body: None,
        last_attempt: None,
        recorded_mode: None,
        duplicate: false,
        stored: None,
        other_shop: false,
    };
    (reads, Guess { email, stock: facts })
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
    basis: Basis,
    actor: &str,
) -> Result<Recorded, StoreError> {
    let store = &edge.store;
    // The order the rules run on: the body itself, or for a verdict the stored order.
    let body_order = match parsed {
        Parsed::Order(o) => Some(o),
        Parsed::Risk(_) => None,
    };
    let hash = body_order
        .and_then(|o| o.email.as_deref())
        .map(|e| crate::core::order::email_hash(&edge.settings.email_key, e));
    let body_lane = body_order.map(|o| m.lane_for(&d.shop, o));
    let (reads, guards) = match (basis, body_order, body_lane) {
        (Basis::Guess, Some(o), Some(lane)) => {
            let (reads, g) = guess(o, lane, hash.as_deref(), now_ms);
            (reads, store.guess_guards(&d.shop, order_id, &g)?)
        }
        _ => {
            let skus = body_order.map(skus_of).unwrap_or_default();
            let velocity = body_lane.and_then(|l| l.fraud.email_velocity.as_ref());
            let plan = ReadPlan {
                skus: &skus,
                email: hash
                    .as_deref()
                    .zip(velocity)
                    .map(|(h, v)| (h, now_ms - i64::from(v.window_minutes) * 60_000)),
                early_risk: true,
                webhook_id: Some(&d.webhook_id),
                inputs: body_order.is_none(),
                line_stock: body_order.is_none(),
                other_shop: true,
                ..ReadPlan::default()
            };
            let reads = store.order_reads(&d.shop, order_id, &plan).await?;
            if reads.duplicate {
                return Ok(Recorded::Duplicate);
            }
            if reads.other_shop && reads.row.is_none() {
                // Shopify order ids are unique across shops, and the shop header is not signed:
                // this is a delivery replayed under another shop. Kept for a person, never routed.
                return record_for_review(edge, d, Some(order_id), body, now_ms, OTHER_SHOP).await;
            }
            memo::saw_stock(&skus, &reads.stock);
            (reads, Vec::new())
        }
    };
    // A verdict re-runs the rules on the stored order, rebuilt from its typed inputs (its
    // stock came with the read).
    let stored_order = reads.stored.as_ref().zip(reads.row.as_ref()).and_then(|(st, row)| st.order(row));
    let prior = reads.row.as_ref().map(|r| writer::record_from(r, &reads, now_ms));
    let early_risk =
        reads.early_risk_body.as_deref().and_then(|b| parse_risk_event(b).ok()).map(|r| r.risk_level);
    let lane_name = match (body_lane, &stored_order, &prior) {
        (Some(l), _, _) => l.name.clone(),
        (None, Some(o), _) => m.lane_for(&d.shop, o).name.clone(),
        (None, None, Some(p)) => p.lane.clone(),
        _ => crate::core::rules::DEFAULT_LANE.to_string(),
    };
    // A KV error is not a mode: the delivery is answered 503 and Shopify retries it.
    let kv = edge.kv_mode_cached(&lane_name).await.map_err(StoreError::Unavailable)?;
    let mode = match kv {
        KvMode::Set(mode) => Some(mode),
        KvMode::Unset => None,
        KvMode::Invalid => Some(Mode::Manual),
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
    let mut statements = guards;
    statements.extend(store.record_delivery(&new)?);
    // The lane's mode is recorded when it changes (and at most once a minute per isolate
    // when it does not): the gates date a release from it.
    let lane_default = m.lane(&lane_name).map(|l| l.default_mode).unwrap_or(Mode::Manual);
    let seen = mode.unwrap_or(lane_default);
    let note = !memo::noted_recently(&lane_name, seen, now_ms);
    if note {
        statements.extend(store.note_mode(&lane_name, seen, ModeSource::Observed, now_ms, ACTOR, None)?);
    }
    let change = Change {
        shop: &d.shop,
        order_id,
        webhook_id: Some(&d.webhook_id),
        prior: reads.row.as_ref(),
        open: &reads.open,
        body_order,
        email_hash: hash.as_deref(),
        actor,
        note: None,
        now_ms,
        lifecycle: Default::default(),
    };
    statements.extend(writer::statements(store, &change, &applied)?);
    let mirror = writer::shopify_desire(&change, &applied).is_some();
    group::write(store, statements).await?;
    if note {
        memo::noted(&lane_name, seen, now_ms);
    }
    queue::follow_up(edge, &d.shop, order_id, &applied, reads.row.is_none()).await;
    if mirror {
        super::shopify::nudge(edge, &d.shop, order_id, 0).await;
    }
    Ok(Recorded::Accepted { review: false })
}
