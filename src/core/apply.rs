//! Applying what happens to an order to its stored record: webhook deliveries, operator and
//! downstream actions, and the cron sweeps. Pure: the edge loads the record, calls one of
//! [`apply_delivery`], [`apply_action`] or [`sweep`], then writes [`Applied`] in one
//! transaction (record, audit rows, stock claims and releases, queue message).
//!
//! Ordering: order-bearing deliveries are ordered by the order's `updated_at`, then the
//! delivery's `X-Shopify-Triggered-At` ([`OrderingKey`]). One older than the record is
//! `stale` and changes nothing, except a cancellation or fulfilment, which Shopify never
//! undoes and which therefore apply whenever they arrive. Any order-bearing topic carries
//! the full order, so `orders/updated` or `orders/paid` arriving before `orders/create`
//! routes the order as if it were the create. Risk verdicts are ordered among themselves by
//! their `created_at`.
//!
//! Audit entries carry no personal data: details hold topics, lanes, rule ids, rule
//! explanations (which never quote customer data), SKUs and timestamps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::order::{Order, RiskEvent, RiskLevel};
use super::routing::{decide, Decision, RouteInput, RULE_CANCELLED, RULE_MODE_MANUAL};
use super::rules::{fraud, inventory, payment, Lane, Matrix};
use super::state::{transition, Event, EventKind, Ignore, Outcome, Target};
use super::time::format_rfc3339_ms;
use super::types::{Mode, Reason, State};
use super::webhook::{ShopifyId, Topic};

/// Orders order-bearing deliveries: the order's `updated_at` (else `created_at`), then the
/// delivery's triggered-at (0 when absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OrderingKey {
    pub updated_at_ms: i64,
    pub triggered_at_ms: i64,
}

impl OrderingKey {
    pub fn of(order: &Order, triggered_at_ms: Option<i64>) -> Self {
        OrderingKey {
            updated_at_ms: order.updated_at_ms.unwrap_or(order.created_at_ms),
            triggered_at_ms: triggered_at_ms.unwrap_or(0),
        }
    }
}

/// What the edge stores per (shop, order) for routing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order_id: ShopifyId,
    pub lane: String,
    pub state: State,
    pub reason: Option<Reason>,
    pub created_at_ms: i64,
    /// The newest order version applied.
    pub key: OrderingKey,
    pub risk: Option<RiskLevel>,
    /// `created_at` of the risk assessment stored in `risk`.
    pub risk_at_ms: Option<i64>,
    /// True once downstream accepted the order.
    pub submitted: bool,
    /// Stock claimed while `ready-for-fulfilment`, `(sku, quantity)` sorted by SKU.
    pub reservations: Vec<(String, i64)>,
    pub rules_version: String,
}

/// What the edge knows besides the record and the event.
#[derive(Debug, Clone, Copy)]
pub struct RouteEnv<'a> {
    pub matrix: &'a Matrix,
    pub shop: &'a str,
    pub stock: &'a BTreeMap<String, i64>,
    /// Orders from this order's email within its lane's velocity window, this one included.
    pub email_orders_in_window: u32,
    /// The lane's KV flag (`None`: the lane default applies). Read it for
    /// `matrix.lane_for(shop, order)` before calling.
    pub mode: Option<Mode>,
    /// A verdict the edge holds outside the record (one that arrived before the order).
    /// Used only when the record has none.
    pub risk: Option<RiskLevel>,
}

/// One webhook body, parsed.
#[derive(Debug, Clone, Copy)]
pub enum Incoming<'a> {
    /// Any order topic: the body is the full order.
    Order { topic: Topic, order: &'a Order },
    /// `orders/risk_assessment_changed`, with the latest stored order body if there is one
    /// (needed to re-run the rules with the verdict).
    Risk { event: &'a RiskEvent, order: Option<&'a Order> },
}

#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub incoming: Incoming<'a>,
    /// `X-Shopify-Triggered-At`, parsed.
    pub triggered_at_ms: Option<i64>,
}

/// Operator, downstream and segment events (everything that is not a webhook or a sweep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    OperatorRelease,
    OperatorForceReady,
    OperatorHold,
    OperatorStop,
    ModeManual,
    SubmissionClaimed,
    Submitted,
    DownstreamOutOfStock,
    DeadLettered,
}

/// One row for `audit_log` (the edge adds time, shop, order id, actor, rules version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// [`EventKind::as_str`].
    pub event: &'static str,
    /// `moved`, `unchanged` or `ignored`.
    pub outcome: &'static str,
    /// `None` when the order was not known before.
    pub from_state: Option<State>,
    pub to_state: Option<State>,
    /// Hold reason after the event.
    pub reason: Option<Reason>,
    pub rule_id: Option<&'static str>,
    /// No personal data.
    pub detail: Value,
}

/// Everything to write for one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The record to store; `None` when there is nothing to store (a verdict for an order
    /// not seen yet).
    pub record: Option<OrderRecord>,
    pub audit: Vec<AuditEntry>,
    /// The routing decision, when the rules ran.
    pub decision: Option<Decision>,
    /// Stock to claim atomically (the order became ready, or its needs changed).
    pub reserve: Vec<(String, i64)>,
    /// Stock to give back (the order left `ready` other than by submission).
    pub release: Vec<(String, i64)>,
    /// The order became `ready-for-fulfilment`: enqueue it for submission.
    pub submit: bool,
}

impl Applied {
    /// True when the event was applied (moved or recorded), false when ignored.
    pub fn applied(&self) -> bool {
        self.audit.iter().any(|a| a.outcome != "ignored")
    }
}

/// Applies one webhook delivery to the record (if any).
pub fn apply_delivery(
    prior: Option<&OrderRecord>,
    delivery: &Delivery<'_>,
    env: &RouteEnv<'_>,
    now_ms: i64,
) -> Applied {
    let mut detail = Map::new();
    if let Some(t) = delivery.triggered_at_ms {
        detail.insert("triggered_at".into(), format_rfc3339_ms(t).into());
    }
    match delivery.incoming {
        Incoming::Order { topic, order } => {
            detail.insert("topic".into(), topic.as_str().into());
            apply_order(prior, topic, order, delivery.triggered_at_ms, env, now_ms, detail)
        }
        Incoming::Risk { event, order } => {
            detail.insert("topic".into(), Topic::OrdersRiskAssessmentChanged.as_str().into());
            detail.insert("risk_level".into(), event.risk_level.as_str().into());
            apply_risk(prior, event, order, env, now_ms, detail)
        }
    }
}

fn apply_order(
    prior: Option<&OrderRecord>,
    topic: Topic,
    order: &Order,
    triggered_at_ms: Option<i64>,
    env: &RouteEnv<'_>,
    now_ms: i64,
    detail: Map<String, Value>,
) -> Applied {
    let key = OrderingKey::of(order, triggered_at_ms);
    let risk = prior.and_then(|r| r.risk).or(env.risk);
    let decision = route(order, risk, env, now_ms);
    let event = classify(topic, order, decision.target());
    if !topic.is_order_event() {
        let Some(rec) = prior else {
            return ignored_without_record(event.kind(), Ignore::NotApplicable, detail);
        };
        return ignored(rec, event.kind(), Ignore::NotApplicable, detail);
    }
    match prior {
        None => first_sight(order, key, risk, event, decision, detail),
        Some(rec) => {
            let monotonic = matches!(event, Event::Cancelled | Event::Fulfilled);
            if !monotonic && key < rec.key {
                return ignored(rec, event.kind(), Ignore::Stale, detail);
            }
            let mut after = rec.clone();
            after.key = after.key.max(key);
            let reservations = decision.reservations.clone();
            step(rec, after, event, Some(decision), reservations, detail)
        }
    }
}

fn apply_risk(
    prior: Option<&OrderRecord>,
    risk: &RiskEvent,
    order: Option<&Order>,
    env: &RouteEnv<'_>,
    now_ms: i64,
    mut detail: Map<String, Value>,
) -> Applied {
    let Some(rec) = prior else {
        return ignored_without_record(EventKind::RiskVerdict, Ignore::OrderNotSeen, detail);
    };
    if let (Some(have), Some(new)) = (rec.risk_at_ms, risk.created_at_ms) {
        if new < have {
            return ignored(rec, EventKind::RiskVerdict, Ignore::Stale, detail);
        }
    }
    let mut after = rec.clone();
    after.risk = Some(risk.risk_level);
    after.risk_at_ms = risk.created_at_ms.or(rec.risk_at_ms);
    match order {
        Some(order) => {
            let decision = route(order, Some(risk.risk_level), env, now_ms);
            let event = classify(Topic::OrdersRiskAssessmentChanged, order, decision.target());
            let reservations = decision.reservations.clone();
            step(rec, after, event, Some(decision), reservations, detail)
        }
        None => {
            detail.insert("note".into(), "verdict stored; no order body to re-run the rules with".into());
            Applied {
                audit: vec![entry(EventKind::RiskVerdict, "unchanged", rec, &after, None, detail)],
                record: Some(after),
                ..Applied::default()
            }
        }
    }
}

/// Applies an operator, downstream or segment action. `rerun` (the latest order body and
/// the routing environment) is needed by `OperatorRelease`, which re-runs the rules, and
/// lets `OperatorForceReady` compute the stock to claim.
pub fn apply_action(
    rec: &OrderRecord,
    action: Action,
    rerun: Option<(&Order, &RouteEnv<'_>)>,
    now_ms: i64,
) -> Applied {
    let detail = Map::new();
    let simple = |event: Event| step(rec, rec.clone(), event, None, Vec::new(), Map::new());
    match action {
        Action::OperatorRelease => match rerun {
            Some((order, env)) => {
                let decision = route(order, rec.risk.or(env.risk), env, now_ms);
                let event = if order.is_cancelled() {
                    Event::Cancelled
                } else {
                    Event::OperatorRelease(decision.target())
                };
                let reservations = decision.reservations.clone();
                step(rec, rec.clone(), event, Some(decision), reservations, detail)
            }
            None => {
                let mut detail = detail;
                detail.insert("note".into(), "release needs the order body to re-run the rules".into());
                ignored(rec, EventKind::OperatorRelease, Ignore::NotApplicable, detail)
            }
        },
        Action::OperatorForceReady => {
            let reservations =
                rerun.map(|(o, env)| inventory::reservations(o, env.stock)).unwrap_or_default();
            step(rec, rec.clone(), Event::OperatorForceReady, None, reservations, detail)
        }
        Action::OperatorHold => simple(Event::OperatorHold),
        Action::OperatorStop => simple(Event::OperatorStop),
        Action::ModeManual => simple(Event::ModeManual),
        Action::SubmissionClaimed => simple(Event::SubmissionClaimed),
        Action::Submitted => simple(Event::Submitted),
        Action::DownstreamOutOfStock => simple(Event::DownstreamOutOfStock),
        Action::DeadLettered => simple(Event::DeadLettered),
    }
}

/// The cron's check for one record: a `new` order past its lane's payment window goes to
/// `hold/payment`; a `fraud-check` order past its verdict timeout goes to `hold/fraud`.
/// `None` when nothing is due.
pub fn sweep(rec: &OrderRecord, lane: &Lane, now_ms: i64) -> Option<Applied> {
    let (event, due) = match rec.state {
        State::New => (Event::PaymentWindowExpired, payment::window_ends_ms(rec.created_at_ms, lane)),
        State::FraudCheck => (Event::FraudTimeout, fraud::verdict_due_ms(rec.created_at_ms, lane)),
        _ => return None,
    };
    if now_ms <= due {
        return None;
    }
    let mut detail = Map::new();
    detail.insert("lane".into(), lane.name.clone().into());
    detail.insert("due_at".into(), format_rfc3339_ms(due).into());
    Some(step(rec, rec.clone(), event, None, Vec::new(), detail))
}

fn route(order: &Order, risk: Option<RiskLevel>, env: &RouteEnv<'_>, now_ms: i64) -> Decision {
    let input = RouteInput {
        shop: env.shop,
        order,
        risk,
        stock: env.stock,
        email_orders_in_window: env.email_orders_in_window,
        mode: env.mode,
    };
    decide(env.matrix, &input, now_ms)
}

/// Which event an order body is. The order's own fields win over the topic, because
/// deliveries arrive out of order and every body is the full order.
fn classify(topic: Topic, order: &Order, target: Target) -> Event {
    let status = order.fulfillment_status.as_deref();
    if order.is_cancelled() || topic == Topic::OrdersCancelled {
        Event::Cancelled
    } else if status == Some("fulfilled") || topic == Topic::OrdersFulfilled {
        Event::Fulfilled
    } else if status == Some("partial") || topic == Topic::OrdersPartiallyFulfilled {
        Event::PartiallyFulfilled(target)
    } else if topic == Topic::OrdersPaid {
        Event::Paid(target)
    } else if topic == Topic::OrdersRiskAssessmentChanged {
        Event::RiskVerdict(target)
    } else {
        Event::Routed(target)
    }
}

/// The first delivery for an order: its outcome becomes the state.
fn first_sight(
    order: &Order,
    key: OrderingKey,
    risk: Option<RiskLevel>,
    event: Event,
    decision: Decision,
    detail: Map<String, Value>,
) -> Applied {
    let target = match event {
        Event::Cancelled => Target::new(State::Cancelled, None),
        Event::Fulfilled => Target::new(State::Fulfilled, None),
        _ => decision.target(),
    };
    let ready = target.state == State::ReadyForFulfilment;
    let reservations = if ready { decision.reservations.clone() } else { Vec::new() };
    let rec = OrderRecord {
        order_id: order.id.clone(),
        lane: decision.lane.clone(),
        state: target.state,
        reason: target.reason,
        created_at_ms: order.created_at_ms,
        key,
        risk,
        risk_at_ms: None,
        submitted: false,
        reservations: reservations.clone(),
        rules_version: decision.rules_version.clone(),
    };
    let mut detail = detail;
    detail.insert("decision".into(), decision_detail(&decision));
    let audit = AuditEntry {
        event: event.kind().as_str(),
        outcome: "moved",
        from_state: None,
        to_state: Some(rec.state),
        reason: rec.reason,
        rule_id: rule_for(&event, Some(&decision)),
        detail: Value::Object(detail),
    };
    Applied {
        record: Some(rec),
        audit: vec![audit],
        decision: Some(decision),
        reserve: reservations,
        release: Vec::new(),
        submit: ready,
    }
}

/// Runs `event` through the transition table from `before`, applying it to `after` (which
/// already carries the event's non-state updates: ordering key, risk).
fn step(
    before: &OrderRecord,
    mut after: OrderRecord,
    event: Event,
    decision: Option<Decision>,
    reservations: Vec<(String, i64)>,
    mut detail: Map<String, Value>,
) -> Applied {
    let outcome = transition(before.state, before.reason, &event);
    if let Some(d) = &decision {
        detail.insert("decision".into(), decision_detail(d));
    }
    let mut applied = Applied::default();
    let mut label = "moved";
    match outcome {
        Outcome::Move(t) => {
            after.state = t.state;
            after.reason = t.reason;
            after.submitted |= t.state == State::Submitted;
        }
        Outcome::Unchanged { note } => {
            label = "unchanged";
            detail.insert("note".into(), note.into());
        }
        Outcome::Ignored(why) => {
            detail.insert("ignored".into(), why.as_str().into());
            // An ignored event still keeps what it taught (ordering key, stored verdict).
            return Applied {
                audit: vec![entry(event.kind(), "ignored", before, &after, None, detail)],
                record: Some(after),
                decision,
                ..Applied::default()
            };
        }
    }
    if let Some(d) = &decision {
        after.lane = d.lane.clone();
        after.rules_version = d.rules_version.clone();
    }
    let was_ready = before.state == State::ReadyForFulfilment;
    let is_ready = after.state == State::ReadyForFulfilment;
    match (was_ready, is_ready) {
        (false, true) => {
            after.reservations = reservations.clone();
            applied.reserve = reservations;
            applied.submit = true;
        }
        (true, true) if decision.is_some() && reservations != before.reservations => {
            // Still ready, but the order's needs changed (an edit): swap the claim.
            detail.insert("note".into(), "reservations changed".into());
            applied.release = before.reservations.clone();
            applied.reserve = reservations.clone();
            after.reservations = reservations;
        }
        (true, false) => {
            if after.state != State::Submitted {
                applied.release = before.reservations.clone();
            }
            after.reservations = Vec::new();
        }
        _ => {}
    }
    applied.audit.push(entry(
        event.kind(),
        label,
        before,
        &after,
        rule_for(&event, decision.as_ref()),
        detail,
    ));
    applied.record = Some(after);
    applied.decision = decision;
    applied
}

fn rule_for(event: &Event, decision: Option<&Decision>) -> Option<&'static str> {
    match event {
        Event::Routed(_)
        | Event::Paid(_)
        | Event::RiskVerdict(_)
        | Event::PartiallyFulfilled(_)
        | Event::OperatorRelease(_) => decision.and_then(|d| d.primary_rule),
        Event::Cancelled => Some(RULE_CANCELLED),
        Event::PaymentWindowExpired => Some(payment::WINDOW_EXPIRED),
        Event::FraudTimeout => Some(fraud::VERDICT_TIMEOUT),
        Event::ModeManual => Some(RULE_MODE_MANUAL),
        _ => None,
    }
}

fn entry(
    kind: EventKind,
    outcome: &'static str,
    before: &OrderRecord,
    after: &OrderRecord,
    rule_id: Option<&'static str>,
    detail: Map<String, Value>,
) -> AuditEntry {
    let (to_state, reason) =
        if outcome == "ignored" { (before.state, before.reason) } else { (after.state, after.reason) };
    AuditEntry {
        event: kind.as_str(),
        outcome,
        from_state: Some(before.state),
        to_state: Some(to_state),
        reason,
        rule_id,
        detail: Value::Object(detail),
    }
}

fn ignored(rec: &OrderRecord, kind: EventKind, why: Ignore, mut detail: Map<String, Value>) -> Applied {
    detail.insert("ignored".into(), why.as_str().into());
    Applied {
        audit: vec![entry(kind, "ignored", rec, rec, None, detail)],
        record: Some(rec.clone()),
        ..Applied::default()
    }
}

fn ignored_without_record(kind: EventKind, why: Ignore, mut detail: Map<String, Value>) -> Applied {
    detail.insert("ignored".into(), why.as_str().into());
    let audit = AuditEntry {
        event: kind.as_str(),
        outcome: "ignored",
        from_state: None,
        to_state: None,
        reason: None,
        rule_id: None,
        detail: Value::Object(detail),
    };
    Applied { audit: vec![audit], ..Applied::default() }
}

/// The decision as audit detail. Decisions hold no personal data by construction (rule
/// explanations never quote the order's customer fields).
fn decision_detail(d: &Decision) -> Value {
    serde_json::to_value(d).unwrap_or(Value::Null)
}
