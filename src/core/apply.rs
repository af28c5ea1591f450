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
    /// True once downstream accepted the order: it is never sent again.
    pub submitted: bool,
    /// Open stock claims, `(sku, quantity)` sorted by SKU: held while `ready-for-fulfilment`,
    /// and while an attempt that started when it was ready is still in flight.
    pub reservations: Vec<(String, i64)>,
    /// Units handed to the warehouse with an accepted submission, until it ships them
    /// (`orders/fulfilled`) or confirms a cancellation (they come back).
    #[serde(default)]
    pub consigned: Vec<(String, i64)>,
    /// A submission attempt holds the order (a POST may be in flight).
    #[serde(default)]
    pub in_flight: bool,
    /// The warehouse has been asked to cancel (once per order).
    #[serde(default)]
    pub cancel_requested: bool,
    /// An attempt of this round has been claimed: the document (built at the first claim and
    /// kept) and the claims it matches stay as they are until the order leaves ready.
    #[serde(default)]
    pub document_fixed: bool,
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
    /// `orders/risk_assessment_changed`, with the stored order (rebuilt from its typed inputs)
    /// if there is one (needed to re-run the rules with the verdict).
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
    /// The lane is not `auto` when the order is about to be sent.
    ModeManual,
    /// A consumer takes the order for one attempt (the lease starts).
    SubmissionClaimed,
    /// The attempt's answers (each ends the attempt and its lease).
    Submitted,
    DownstreamOutOfStock,
    DeadLettered,
    AttemptFailed,
    /// The cancel request's answers.
    CancelConfirmed,
    CancelShipped,
    CancelFailed,
    CancelAttemptFailed,
}

impl Action {
    /// True for the answers that end a submission attempt (the lease is given up).
    pub fn ends_attempt(self) -> bool {
        matches!(
            self,
            Action::Submitted | Action::DownstreamOutOfStock | Action::DeadLettered | Action::AttemptFailed
        )
    }

    /// The event of an action that carries no rules' outcome (`None` for a release, whose
    /// target the rules decide).
    fn event(self) -> Option<Event> {
        Some(match self {
            Action::OperatorRelease => return None,
            Action::OperatorForceReady => Event::OperatorForceReady,
            Action::OperatorHold => Event::OperatorHold,
            Action::OperatorStop => Event::OperatorStop,
            Action::ModeManual => Event::ModeManual,
            Action::SubmissionClaimed => Event::SubmissionClaimed,
            Action::Submitted => Event::Submitted,
            Action::DownstreamOutOfStock => Event::DownstreamOutOfStock,
            Action::DeadLettered => Event::DeadLettered,
            Action::AttemptFailed => Event::AttemptFailed,
            Action::CancelConfirmed => Event::CancelConfirmed,
            Action::CancelShipped => Event::CancelShipped,
            Action::CancelFailed => Event::CancelFailed,
            Action::CancelAttemptFailed => Event::CancelAttemptFailed,
        })
    }
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
    /// Open claims the warehouse took with an accepted submission (rows kept, marked).
    pub consign: Vec<(String, i64)>,
    /// Open claims dropped without giving units back: the warehouse said they are not there.
    pub write_off: Vec<(String, i64)>,
    /// Consigned units coming back: the warehouse confirmed a cancellation.
    pub unconsign: Vec<(String, i64)>,
    /// Consigned units gone for good: shipped.
    pub ship: Vec<(String, i64)>,
    /// The order became `ready-for-fulfilment`: enqueue it for submission.
    pub submit: bool,
    /// The warehouse has (or may have) the order and it was cancelled: send a cancel request.
    pub cancel_downstream: bool,
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
    let decision = route(order, risk, env, now_ms, prior.map(|r| r.reservations.as_slice()).unwrap_or(&[]));
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
            let decision = route(order, Some(risk.risk_level), env, now_ms, &rec.reservations);
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

/// Applies an operator, downstream or segment action. `rerun` (the latest stored order and
/// the routing environment) is needed by `OperatorRelease`, which re-runs the rules, and
/// lets `OperatorForceReady` compute the stock to claim. The answers to an attempt
/// ([`Action::ends_attempt`]) end it: claims it kept while the order moved are settled.
pub fn apply_action(
    rec: &OrderRecord,
    action: Action,
    rerun: Option<(&Order, &RouteEnv<'_>)>,
    now_ms: i64,
) -> Applied {
    let detail = Map::new();
    let mut after = rec.clone();
    if action.ends_attempt() {
        after.in_flight = false;
    }
    if action == Action::SubmissionClaimed && rec.state == State::ReadyForFulfilment {
        after.in_flight = true;
        after.document_fixed = true;
    }
    match action {
        Action::OperatorRelease => match rerun {
            Some((order, env)) => {
                let decision = route(order, rec.risk.or(env.risk), env, now_ms, &rec.reservations);
                let event = if order.is_cancelled() {
                    Event::Cancelled
                } else {
                    Event::OperatorRelease(decision.target())
                };
                let reservations = decision.reservations.clone();
                step(rec, after, event, Some(decision), reservations, detail)
            }
            None => {
                let mut detail = detail;
                detail.insert("note".into(), "release needs the order body to re-run the rules".into());
                ignored(rec, EventKind::OperatorRelease, Ignore::NotApplicable, detail)
            }
        },
        Action::OperatorForceReady => {
            let reservations = rerun
                .map(|(o, env)| inventory::reservations(o, &own_stock(env.stock, &rec.reservations)))
                .unwrap_or_default();
            step(rec, after, Event::OperatorForceReady, None, reservations, detail)
        }
        other => match other.event() {
            Some(event) => step(rec, after, event, None, Vec::new(), detail),
            None => ignored(rec, EventKind::OperatorRelease, Ignore::NotApplicable, detail),
        },
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

/// Stock as the rules must see it for an order that already holds `own`: its own claim is
/// still available to it (the stored `available` has it taken out).
fn own_stock(stock: &BTreeMap<String, i64>, own: &[(String, i64)]) -> BTreeMap<String, i64> {
    let mut s = stock.clone();
    for (sku, q) in own {
        if let Some(a) = s.get_mut(sku) {
            *a = a.saturating_add(*q);
        }
    }
    s
}

fn route(
    order: &Order,
    risk: Option<RiskLevel>,
    env: &RouteEnv<'_>,
    now_ms: i64,
    own: &[(String, i64)],
) -> Decision {
    let stock = own_stock(env.stock, own);
    let input = RouteInput {
        shop: env.shop,
        order,
        risk,
        stock: &stock,
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
        consigned: Vec::new(),
        in_flight: false,
        cancel_requested: false,
        document_fixed: false,
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
        submit: ready,
        ..Applied::default()
    }
}

/// Runs `event` through the transition table from `before`, applying it to `after` (which
/// already carries the event's non-state updates: ordering key, risk, whether an attempt is
/// in flight), then settles stock: open claims exist only while the order is ready or an
/// attempt is in flight; consigned units only until the warehouse ships or gives them back.
fn step(
    before: &OrderRecord,
    mut after: OrderRecord,
    event: Event,
    decision: Option<Decision>,
    reservations: Vec<(String, i64)>,
    mut detail: Map<String, Value>,
) -> Applied {
    let mut outcome = transition(before.state, before.reason, &event);
    // An order the warehouse accepted once is never sent again.
    if before.submitted && matches!(outcome, Outcome::Move(t) if t.state == State::ReadyForFulfilment) {
        outcome = Outcome::Ignored(Ignore::AlreadySubmitted);
    }
    if let Some(d) = &decision {
        detail.insert("decision".into(), decision_detail(d));
    }
    let mut applied = Applied::default();
    let mut label = "moved";
    match outcome {
        Outcome::Move(t) => {
            after.state = t.state;
            after.reason = t.reason;
        }
        Outcome::Unchanged { note } => {
            label = "unchanged";
            detail.insert("note".into(), note.into());
        }
        Outcome::Ignored(why) => {
            label = "ignored";
            detail.insert("ignored".into(), why.as_str().into());
        }
    }
    let applies = label != "ignored";
    if event == Event::Submitted && (applies || after.state == State::Fulfilled) {
        after.submitted = true;
    }
    if applies {
        if let Some(d) = &decision {
            after.lane = d.lane.clone();
            after.rules_version = d.rules_version.clone();
        }
    }
    let was_ready = before.state == State::ReadyForFulfilment;
    let is_ready = after.state == State::ReadyForFulfilment;
    if applies && is_ready && !was_ready && before.in_flight {
        // Back to ready while an attempt is still out: that attempt's document is this
        // round's, and so is the claim it kept. Its answer decides what follows.
        detail
            .insert("note".into(), "back to ready while an attempt is in flight: its document stands".into());
    } else if applies && is_ready && !was_ready {
        // Claims are net of what the order still holds.
        after.reservations = reservations.clone();
        applied.reserve = reservations;
        applied.release = before.reservations.clone();
        applied.submit = true;
    } else if applies && is_ready && decision.is_some() && reservations != before.reservations {
        if before.document_fixed || before.in_flight {
            // The warehouse has (or is being sent) this round's document: the claim stays
            // what that document asks for. The edit goes out if the order comes back to ready.
            detail.insert(
                "note".into(),
                "edit kept for the next round: this round's document is already out".into(),
            );
        } else {
            // Still ready, but the order's needs changed (an edit): swap the claim.
            detail.insert("note".into(), "reservations changed".into());
            applied.release = before.reservations.clone();
            applied.reserve = reservations.clone();
            after.reservations = reservations;
        }
    } else if !is_ready && !after.reservations.is_empty() {
        let held = std::mem::take(&mut after.reservations);
        if event == Event::Submitted {
            // Accepted: a fact, whatever the order did meanwhile; the units left.
            after.submitted = true;
            after.consigned.extend(held.iter().cloned());
            applied.consign = held;
        } else if after.in_flight {
            // The attempt in flight settles them when it ends.
            after.reservations = held;
        } else if event == Event::DownstreamOutOfStock {
            detail.insert("written_off".into(), units(&held));
            applied.write_off = held;
        } else {
            applied.release = held;
        }
    }
    if !is_ready && !after.in_flight {
        after.document_fixed = false;
    }
    let shipped_meanwhile = event == Event::Submitted && after.state == State::Fulfilled;
    if (applies || shipped_meanwhile) && !after.consigned.is_empty() {
        match event {
            Event::CancelConfirmed => applied.unconsign = std::mem::take(&mut after.consigned),
            Event::CancelShipped | Event::CancelFailed | Event::Fulfilled => {
                detail.insert("shipped".into(), units(&after.consigned));
                applied.ship = std::mem::take(&mut after.consigned);
            }
            // Accepted after Shopify already marked it fulfilled: consigned and gone.
            Event::Submitted if shipped_meanwhile => {
                detail.insert("shipped".into(), units(&after.consigned));
                applied.ship = std::mem::take(&mut after.consigned);
            }
            _ => {}
        }
    }
    if applies && after.state == State::Cancelled && after.submitted && !after.cancel_requested {
        after.cancel_requested = true;
        applied.cancel_downstream = true;
        detail.insert("cancel_request".into(), "the warehouse is asked to cancel".into());
    }
    applied.audit.push(entry(
        event.kind(),
        label,
        before,
        &after,
        if applies { rule_for(&event, decision.as_ref()) } else { None },
        detail,
    ));
    applied.record = Some(after);
    applied.decision = decision;
    applied
}

fn units(lines: &[(String, i64)]) -> Value {
    Value::Array(lines.iter().map(|(sku, q)| serde_json::json!({ "sku": sku, "quantity": q })).collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::routing::tests::{full_stock, live, CREATED, MIN};
    use crate::core::rules::tests::shipped;
    use serde_json::{Map, Value};

    const SHOP: &str = "demo.myshopify.com";

    struct World {
        matrix: Matrix,
        stock: BTreeMap<String, i64>,
        mode: Option<Mode>,
        risk: Option<RiskLevel>,
    }

    impl World {
        fn new() -> Self {
            World { matrix: shipped(), stock: full_stock(3), mode: Some(Mode::Auto), risk: None }
        }

        fn env(&self) -> RouteEnv<'_> {
            RouteEnv {
                matrix: &self.matrix,
                shop: SHOP,
                stock: &self.stock,
                email_orders_in_window: 1,
                mode: self.mode,
                risk: self.risk,
            }
        }

        fn deliver(
            &self,
            prior: Option<&OrderRecord>,
            topic: Topic,
            order: &Order,
            triggered: i64,
        ) -> Applied {
            let d = Delivery { incoming: Incoming::Order { topic, order }, triggered_at_ms: Some(triggered) };
            apply_delivery(prior, &d, &self.env(), CREATED + 10 * MIN)
        }
    }

    fn version(updated_min: i64, edit: impl FnOnce(&mut Map<String, Value>)) -> Order {
        live(|o| {
            o.insert("updated_at".into(), format_rfc3339_ms(CREATED + updated_min * MIN).into());
            edit(o);
        })
    }

    fn at(a: &Applied) -> (State, Option<Reason>) {
        let r = a.record.as_ref().unwrap();
        (r.state, r.reason)
    }

    fn pending(o: &mut Map<String, Value>) {
        o.insert("financial_status".into(), "pending".into());
    }

    #[test]
    fn pending_then_paid_becomes_ready_and_claims_stock() {
        let w = World::new();
        let created = w.deliver(None, Topic::OrdersCreate, &version(0, pending), 1);
        assert_eq!(at(&created), (State::New, None));
        assert_eq!(created.audit[0].from_state, None);
        assert_eq!(created.audit[0].rule_id, Some(payment::PENDING_WINDOW));
        assert!(!created.submit && created.reserve.is_empty());

        let paid = w.deliver(created.record.as_ref(), Topic::OrdersPaid, &version(1, |_| {}), 2);
        assert_eq!(at(&paid), (State::ReadyForFulfilment, None));
        assert_eq!(paid.audit[0].event, "paid");
        assert_eq!(paid.audit[0].outcome, "moved");
        assert!(paid.submit);
        assert_eq!(paid.reserve.len(), 5);
        assert_eq!(paid.record.as_ref().unwrap().reservations, paid.reserve);

        // A redelivery of the same version changes nothing and claims nothing twice.
        let again = w.deliver(paid.record.as_ref(), Topic::OrdersPaid, &version(1, |_| {}), 2);
        assert_eq!(again.audit[0].outcome, "unchanged");
        assert!(!again.submit && again.reserve.is_empty() && again.release.is_empty());
    }

    #[test]
    fn out_of_order_deliveries_never_move_backwards() {
        let w = World::new();
        // orders/paid (version 2) arrives before orders/create (version 0): routes as the full order.
        let paid = w.deliver(None, Topic::OrdersPaid, &version(2, |_| {}), 20);
        assert_eq!(at(&paid), (State::ReadyForFulfilment, None));
        let late_create = w.deliver(paid.record.as_ref(), Topic::OrdersCreate, &version(0, pending), 10);
        assert_eq!(at(&late_create), (State::ReadyForFulfilment, None));
        assert_eq!(late_create.audit[0].detail["ignored"], "stale");
        assert_eq!(late_create.audit[0].outcome, "ignored");
        assert!(!late_create.applied());
        assert!(late_create.release.is_empty() && late_create.reserve.is_empty());
        // Same updated_at: the later triggered-at wins, the earlier one is stale.
        let older_trigger = w.deliver(paid.record.as_ref(), Topic::OrdersUpdated, &version(2, pending), 19);
        assert_eq!(older_trigger.audit[0].detail["ignored"], "stale");
        // orders/updated before orders/create, then the create with the same version.
        let upd = w.deliver(None, Topic::OrdersUpdated, &version(0, pending), 5);
        assert_eq!(at(&upd), (State::New, None));
        let create = w.deliver(upd.record.as_ref(), Topic::OrdersCreate, &version(0, pending), 5);
        assert_eq!(create.audit[0].outcome, "unchanged");
    }

    #[test]
    fn cancellation_stops_open_orders_and_releases_stock() {
        let w = World::new();
        let ready = w.deliver(None, Topic::OrdersCreate, &version(0, |_| {}), 1);
        let reservations = ready.reserve.clone();
        let cancelled_order =
            version(5, |o| drop(o.insert("cancelled_at".into(), format_rfc3339_ms(CREATED).into())));
        let c = w.deliver(ready.record.as_ref(), Topic::OrdersCancelled, &cancelled_order, 9);
        assert_eq!(at(&c), (State::Cancelled, None));
        assert_eq!(c.release, reservations);
        assert!(c.record.as_ref().unwrap().reservations.is_empty());
        assert_eq!(c.audit[0].rule_id, Some(RULE_CANCELLED));
        // Anything after cancelled is ignored.
        let after = w.deliver(c.record.as_ref(), Topic::OrdersUpdated, &version(9, |_| {}), 99);
        assert_eq!(after.audit[0].detail["ignored"], "order-cancelled");
        assert_eq!(at(&after), (State::Cancelled, None));
        // A cancellation that is older than the record still applies: Shopify never un-cancels.
        let newer = w.deliver(None, Topic::OrdersUpdated, &version(30, pending), 30);
        let stale_cancel = w.deliver(newer.record.as_ref(), Topic::OrdersUpdated, &cancelled_order, 9);
        assert_eq!(at(&stale_cancel), (State::Cancelled, None));
        // First sight of a cancelled order (the Shopify sample) records it cancelled.
        let sample = crate::core::order::parse_order(crate::core::order::tests::FIXTURE).unwrap();
        let first = w.deliver(None, Topic::OrdersCreate, &sample, 1);
        assert_eq!(at(&first), (State::Cancelled, None));
        assert!(first.reserve.is_empty() && !first.submit);
    }

    #[test]
    fn submitted_orders_only_move_to_fulfilled() {
        let w = World::new();
        let ready = w.deliver(None, Topic::OrdersCreate, &version(0, |_| {}), 1);
        let rec = ready.record.unwrap();
        let claimed = apply_action(&rec, Action::SubmissionClaimed, None, CREATED);
        assert_eq!(claimed.audit[0].outcome, "unchanged");
        let sent = apply_action(&rec, Action::Submitted, None, CREATED);
        assert_eq!(at(&sent), (State::Submitted, None));
        assert!(sent.release.is_empty(), "submitted stock is handed over, not returned");
        assert_eq!(sent.consign, rec.reservations);
        let rec = sent.record.unwrap();
        assert!(rec.submitted && rec.reservations.is_empty());
        // A later edit, a claim or a mode switch do nothing.
        let upd = w.deliver(
            Some(&rec),
            Topic::OrdersUpdated,
            &version(3, |o| drop(o.remove("shipping_address"))),
            3,
        );
        assert_eq!(upd.audit[0].detail["ignored"], "already-submitted");
        assert_eq!(apply_action(&rec, Action::ModeManual, None, CREATED).audit[0].outcome, "ignored");
        assert_eq!(apply_action(&rec, Action::SubmissionClaimed, None, CREATED).audit[0].outcome, "ignored");
        // Cancellation after submission cancels and asks the warehouse to cancel, once; the
        // consigned units wait for its answer.
        let cancel = version(4, |o| drop(o.insert("cancelled_at".into(), format_rfc3339_ms(CREATED).into())));
        let c = w.deliver(Some(&rec), Topic::OrdersCancelled, &cancel, 4);
        assert_eq!((at(&c), c.audit[0].outcome), ((State::Cancelled, None), "moved"));
        assert!(c.cancel_downstream && c.release.is_empty() && c.unconsign.is_empty());
        let cancelled = c.record.clone().unwrap();
        assert!(cancelled.cancel_requested && cancelled.consigned == rec.consigned);
        let again = w.deliver(Some(&cancelled), Topic::OrdersCancelled, &version(5, |_| {}), 5);
        assert!(!again.cancel_downstream);
        let confirmed = apply_action(&cancelled, Action::CancelConfirmed, None, CREATED);
        assert_eq!(
            (at(&confirmed), confirmed.unconsign.clone()),
            ((State::Cancelled, None), rec.consigned.clone())
        );
        let shipped = apply_action(&cancelled, Action::CancelShipped, None, CREATED);
        assert_eq!(at(&shipped), (State::Hold, Some(Reason::Fulfilment)));
        assert_eq!(shipped.ship, rec.consigned);
        // A person cannot send it again.
        let forced =
            apply_action(shipped.record.as_ref().unwrap(), Action::OperatorForceReady, None, CREATED);
        assert_eq!(forced.audit[0].detail["ignored"], "already-submitted");
        let f = w.deliver(
            Some(&rec),
            Topic::OrdersFulfilled,
            &version(5, |o| drop(o.insert("fulfillment_status".into(), "fulfilled".into()))),
            5,
        );
        assert_eq!(at(&f), (State::Fulfilled, None));
        assert!(f.record.unwrap().submitted);
    }

    #[test]
    fn releases_by_payment_address_and_verdict() {
        let w = World::new();
        // orders/paid releases a payment hold.
        let voided = w.deliver(
            None,
            Topic::OrdersCreate,
            &version(0, |o| drop(o.insert("financial_status".into(), "voided".into()))),
            1,
        );
        assert_eq!(at(&voided), (State::Hold, Some(Reason::Payment)));
        let paid = w.deliver(voided.record.as_ref(), Topic::OrdersPaid, &version(1, |_| {}), 2);
        assert_eq!(at(&paid), (State::ReadyForFulfilment, None));
        assert!(paid.submit);
        // orders/updated fixing the address releases an address hold.
        let broken = w.deliver(
            None,
            Topic::OrdersCreate,
            &version(0, |o| o["shipping_address"]["zip"] = "4000".into()),
            1,
        );
        assert_eq!(at(&broken), (State::Hold, Some(Reason::Address)));
        assert_eq!(broken.audit[0].rule_id, Some(crate::core::rules::address::POSTCODE_FORMAT));
        let fixed = w.deliver(broken.record.as_ref(), Topic::OrdersUpdated, &version(1, |_| {}), 2);
        assert_eq!(at(&fixed), (State::ReadyForFulfilment, None));
        // A risk verdict releases a fraud-check (EU lane requires one).
        let eu = |o: &mut Map<String, Value>| {
            o.insert("currency".into(), "EUR".into());
            o["shipping_address"]["country_code"] = "NL".into();
            o["shipping_address"]["zip"] = "1012 AB".into();
            o["billing_address"]["country_code"] = "NL".into();
        };
        let order = version(0, eu);
        let waiting = w.deliver(None, Topic::OrdersCreate, &order, 1);
        assert_eq!(at(&waiting), (State::FraudCheck, None));
        assert_eq!(waiting.record.as_ref().unwrap().lane, "eu");
        let risk = RiskEvent {
            order_id: order.id.clone(),
            risk_level: RiskLevel::Low,
            created_at_ms: Some(CREATED + MIN),
        };
        let d = Delivery {
            incoming: Incoming::Risk { event: &risk, order: Some(&order) },
            triggered_at_ms: None,
        };
        let verdict = apply_delivery(waiting.record.as_ref(), &d, &w.env(), CREATED + 10 * MIN);
        assert_eq!(at(&verdict), (State::ReadyForFulfilment, None));
        assert_eq!(verdict.audit[0].event, "risk_verdict");
        let rec = verdict.record.unwrap();
        assert_eq!((rec.risk, rec.risk_at_ms), (Some(RiskLevel::Low), Some(CREATED + MIN)));
        // An older verdict arriving later is stale.
        let old = RiskEvent { risk_level: RiskLevel::High, created_at_ms: Some(CREATED), ..risk.clone() };
        let d =
            Delivery { incoming: Incoming::Risk { event: &old, order: Some(&order) }, triggered_at_ms: None };
        let stale = apply_delivery(Some(&rec), &d, &w.env(), CREATED + 10 * MIN);
        assert_eq!(
            (at(&stale), stale.audit[0].detail["ignored"].as_str()),
            ((State::ReadyForFulfilment, None), Some("stale"))
        );
        // A newer high verdict on a ready order holds it and gives the stock back.
        let high = RiskEvent { risk_level: RiskLevel::High, created_at_ms: Some(CREATED + 2 * MIN), ..risk };
        let d = Delivery {
            incoming: Incoming::Risk { event: &high, order: Some(&order) },
            triggered_at_ms: None,
        };
        let held = apply_delivery(Some(&rec), &d, &w.env(), CREATED + 10 * MIN);
        assert_eq!(at(&held), (State::Hold, Some(Reason::Fraud)));
        assert_eq!(held.release, rec.reservations);
    }

    #[test]
    fn verdict_before_order_is_not_lost() {
        let mut w = World::new();
        let order = version(0, |_| {});
        let risk = RiskEvent {
            order_id: order.id.clone(),
            risk_level: RiskLevel::High,
            created_at_ms: Some(CREATED),
        };
        let d = Delivery { incoming: Incoming::Risk { event: &risk, order: None }, triggered_at_ms: None };
        let early = apply_delivery(None, &d, &w.env(), CREATED);
        assert_eq!(early.record, None);
        assert_eq!(early.audit[0].detail["ignored"], "order-not-seen");
        // The edge passes the verdict it kept when the order arrives.
        w.risk = Some(RiskLevel::High);
        let created = w.deliver(None, Topic::OrdersCreate, &order, 1);
        assert_eq!(at(&created), (State::Hold, Some(Reason::Fraud)));
        assert_eq!(created.record.unwrap().risk, Some(RiskLevel::High));
    }

    #[test]
    fn manual_holds_wait_for_an_operator() {
        let mut w = World::new();
        w.mode = Some(Mode::Manual);
        let held = w.deliver(None, Topic::OrdersCreate, &version(0, pending), 1);
        assert_eq!(at(&held), (State::Hold, Some(Reason::Manual)));
        assert_eq!(held.audit[0].rule_id, Some(RULE_MODE_MANUAL));
        w.mode = Some(Mode::Auto);
        let paid = w.deliver(held.record.as_ref(), Topic::OrdersPaid, &version(1, |_| {}), 2);
        assert_eq!(paid.audit[0].detail["ignored"], "needs-operator");
        let rec = paid.record.unwrap();
        assert_eq!(
            rec.key.updated_at_ms,
            CREATED + MIN,
            "the ignored delivery still advanced the ordering key"
        );
        let order = version(1, |_| {});
        let released =
            apply_action(&rec, Action::OperatorRelease, Some((&order, &w.env())), CREATED + 10 * MIN);
        assert_eq!(at(&released), (State::ReadyForFulfilment, None));
        assert!(released.submit && !released.reserve.is_empty());
        let no_body = apply_action(&rec, Action::OperatorRelease, None, CREATED);
        assert_eq!(no_body.audit[0].outcome, "ignored");
        // Force-ready without rules, claiming what the order needs.
        let forced = apply_action(&rec, Action::OperatorForceReady, Some((&order, &w.env())), CREATED);
        assert_eq!((at(&forced), forced.reserve.len()), ((State::ReadyForFulfilment, None), 5));
        // Shadow also holds, and records the rules' outcome.
        w.mode = Some(Mode::Shadow);
        let shadow = w.deliver(None, Topic::OrdersCreate, &version(0, |_| {}), 1);
        assert_eq!(at(&shadow), (State::Hold, Some(Reason::Manual)));
        assert_eq!(
            shadow.audit[0].detail["decision"]["shadow"],
            serde_json::json!(["ready-for-fulfilment", null])
        );
        assert!(shadow.reserve.is_empty() && !shadow.submit);
    }

    #[test]
    fn downstream_and_mode_actions() {
        let w = World::new();
        let ready = w.deliver(None, Topic::OrdersCreate, &version(0, |_| {}), 1).record.unwrap();
        let oos = apply_action(&ready, Action::DownstreamOutOfStock, None, CREATED);
        assert_eq!(at(&oos), (State::Hold, Some(Reason::Inventory)));
        assert!(oos.release.is_empty(), "the warehouse says the units are not there");
        assert_eq!(oos.write_off, ready.reservations);
        assert!(oos.audit[0].detail["written_off"].is_array());
        let dead = apply_action(&ready, Action::DeadLettered, None, CREATED);
        assert_eq!(at(&dead), (State::Hold, Some(Reason::Fulfilment)));
        let manual = apply_action(&ready, Action::ModeManual, None, CREATED);
        assert_eq!(
            (at(&manual), manual.audit[0].rule_id),
            ((State::Hold, Some(Reason::Manual)), Some(RULE_MODE_MANUAL))
        );
        let stop = apply_action(&ready, Action::OperatorStop, None, CREATED);
        assert_eq!(at(&stop), (State::Cancelled, None));
        assert_eq!(stop.release, ready.reservations);
        let hold = apply_action(&ready, Action::OperatorHold, None, CREATED);
        assert_eq!(at(&hold), (State::Hold, Some(Reason::Manual)));
        // A dead-lettered order is not released by a routine update.
        let upd = w.deliver(dead.record.as_ref(), Topic::OrdersUpdated, &version(1, |_| {}), 2);
        assert_eq!(upd.audit[0].detail["ignored"], "needs-operator");
    }

    #[test]
    fn edits_to_a_ready_order_swap_its_claim() {
        let w = World::new();
        let ready = w.deliver(None, Topic::OrdersCreate, &version(0, |_| {}), 1);
        let edited = version(1, |o| o["line_items"][0]["fulfillable_quantity"] = 2.into());
        let upd = w.deliver(ready.record.as_ref(), Topic::OrdersUpdated, &edited, 2);
        assert_eq!(at(&upd), (State::ReadyForFulfilment, None));
        assert_eq!(upd.release, ready.reserve);
        assert!(upd.reserve.contains(&("SKU2006-001".to_string(), 2)));
        assert_eq!(upd.record.unwrap().reservations, upd.reserve);
        assert!(!upd.submit, "the queued message reads the latest record");
    }

    #[test]
    fn sweeps() {
        let w = World::new();
        let lane = w.matrix.lane("default").unwrap();
        let new = w.deliver(None, Topic::OrdersCreate, &version(0, pending), 1).record.unwrap();
        assert_eq!(sweep(&new, lane, CREATED + 1440 * MIN), None);
        let swept = sweep(&new, lane, CREATED + 1440 * MIN + 1).unwrap();
        assert_eq!(at(&swept), (State::Hold, Some(Reason::Payment)));
        assert_eq!(swept.audit[0].rule_id, Some(payment::WINDOW_EXPIRED));
        assert_eq!(swept.audit[0].detail["due_at"], "2022-01-02T00:00:00.000Z");
        let mut fc = new.clone();
        fc.state = State::FraudCheck;
        let eu = w.matrix.lane("eu").unwrap();
        assert_eq!(sweep(&fc, eu, CREATED + 120 * MIN), None);
        let swept = sweep(&fc, eu, CREATED + 121 * MIN).unwrap();
        assert_eq!(
            (at(&swept), swept.audit[0].rule_id),
            ((State::Hold, Some(Reason::Fraud)), Some(fraud::VERDICT_TIMEOUT))
        );
        let ready = w.deliver(None, Topic::OrdersCreate, &version(0, |_| {}), 1).record.unwrap();
        assert_eq!(sweep(&ready, lane, i64::MAX), None);
    }

    #[test]
    fn audit_entries_carry_no_personal_data() {
        let mut w = World::new();
        let mut all = Vec::new();
        for mode in Mode::ALL {
            w.mode = Some(*mode);
            let a = w.deliver(
                None,
                Topic::OrdersCreate,
                &version(0, |o| o["shipping_address"]["zip"] = "SECRET9".into()),
                1,
            );
            let b = w.deliver(
                a.record.as_ref(),
                Topic::OrdersUpdated,
                &version(1, |o| drop(o.insert("total_price".into(), "9000".into()))),
                2,
            );
            let rec = b.record.clone().unwrap();
            all.extend(a.audit);
            all.extend(b.audit);
            for act in [Action::OperatorHold, Action::OperatorForceReady, Action::DeadLettered] {
                all.extend(apply_action(&rec, act, None, CREATED).audit);
            }
        }
        let text = serde_json::to_string(&all).unwrap();
        for pii in [
            "jon@example.com",
            "john@example.com",
            "Steve",
            "Shipper",
            "Shipping Street",
            "Shippington",
            "SECRET9",
            "555-555",
            "John",
            "Smith",
        ] {
            assert!(!text.contains(pii), "{pii} leaked into audit: {text}");
        }
    }
}
