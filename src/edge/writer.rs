//! The one writer: every change of an order's state — a webhook, an operator, the fulfilment
//! consumer, the cron — is an `Applied` from `core::apply`, written here as one batch: the
//! order row (guarded by its version), the attempt bookkeeping, the stock it moves and one
//! audit row per event. A concurrent writer makes the batch fail as a whole (`Conflict`).

use worker::D1PreparedStatement;

use super::store::{
    AuditRow, DecisionCols, DocumentOp, Lifecycle, OrderCols, OrderReads, OrderRow, OrderWrite, Store,
    StoreResult,
};
use crate::core::apply::{Applied, OrderRecord, OrderingKey};
use crate::core::inputs::Inputs;
use crate::core::order::{Order, RiskLevel};
use crate::core::shopify::{self, Desired};
use crate::core::types::{CancelState, Reason, State};
use crate::core::webhook::ShopifyId;

/// The core's record of a stored order, with the claims read with it.
pub fn record_from(row: &OrderRow, reads: &OrderReads, now_ms: i64) -> OrderRecord {
    record_with(row, &reads.open, &reads.consigned, now_ms)
}

/// The core's record of a stored order, given its open and consigned claims.
pub fn record_with(
    row: &OrderRow,
    open: &[(String, i64)],
    consigned: &[(String, i64)],
    now_ms: i64,
) -> OrderRecord {
    OrderRecord {
        order_id: ShopifyId(row.order_id.clone()),
        lane: row.segment.clone(),
        state: row.state,
        reason: row.reason,
        created_at_ms: row.order_created_ms.unwrap_or(row.created_ms),
        key: OrderingKey {
            updated_at_ms: row.order_updated_ms.unwrap_or(0),
            triggered_at_ms: row.event_triggered_ms.unwrap_or(0),
        },
        risk: row.risk_level.as_deref().and_then(RiskLevel::parse),
        risk_at_ms: row.risk_at_ms,
        submitted: row.submitted_ms.is_some(),
        reservations: open.to_vec(),
        consigned: consigned.to_vec(),
        in_flight: row.in_flight(now_ms),
        cancel_requested: row.cancel_requested(),
        document_fixed: row.document_fixed != 0,
        rules_version: row.rules_version.clone(),
    }
}

/// Who writes what, besides the `Applied`.
pub struct Change<'a> {
    pub shop: &'a str,
    pub order_id: &'a str,
    /// The delivery that carried the order body (webhooks only).
    pub webhook_id: Option<&'a str>,
    pub prior: Option<&'a OrderRow>,
    /// Open claims the order held before.
    pub open: &'a [(String, i64)],
    /// The order body, when the event carried one.
    pub body_order: Option<&'a Order>,
    /// Its keyed email hash (`core::order::email_hash`): the velocity rule counts orders per
    /// buyer without the address being stored.
    pub email_hash: Option<&'a str>,
    pub actor: &'a str,
    /// An operator's note, added to the audit detail.
    pub note: Option<&'a str>,
    pub now_ms: i64,
    pub lifecycle: Lifecycle<'a>,
}

impl<'a> Change<'a> {
    /// A change to a stored order by `actor` with no body of its own (operators, the
    /// consumer, the cron): the prior row and the claims it held.
    pub fn to(row: &'a OrderRow, open: &'a [(String, i64)], actor: &'a str, now_ms: i64) -> Change<'a> {
        Change {
            shop: &row.shop,
            order_id: &row.order_id,
            webhook_id: None,
            prior: Some(row),
            open,
            body_order: None,
            email_hash: None,
            actor,
            note: None,
            now_ms,
            lifecycle: Lifecycle::default(),
        }
    }

    pub fn with(self, lifecycle: Lifecycle<'a>) -> Change<'a> {
        Change { lifecycle, ..self }
    }
}

/// What Shopify should show after this change, when it changes (only for shops whose Admin
/// API is configured). A hold staff placed in Shopify is theirs: orderlane adds none of its own.
pub fn shopify_desire(c: &Change<'_>, applied: &Applied) -> Option<Desired> {
    if !super::context::mirrors_holds(c.shop) {
        return None;
    }
    let rec = applied.record.as_ref().filter(|_| applied.applied())?;
    if c.actor == super::shopify::STAFF && rec.state == State::Hold && rec.reason == Some(Reason::Manual) {
        return None;
    }
    let why = applied.decision.as_ref().map(|d| d.explanation.as_str()).or(c.note);
    shopify::mirror_change(c.prior.map(|p| (p.state, p.reason)), (rec.state, rec.reason), why)
}

/// The statements for one `Applied`.
pub fn statements(store: &Store, c: &Change<'_>, applied: &Applied) -> StoreResult<Vec<D1PreparedStatement>> {
    let mut out = Vec::new();
    let expected = c.prior.map(|r| r.seq).unwrap_or(0);
    let moved = applied.applied();
    let dec = applied.decision.as_ref().filter(|_| moved);
    let fired = dec.map(|x| x.fired_ids().join(",")).unwrap_or_default();
    let new_seq = expected + applied.audit.len() as i64;
    if let Some(rec) = &applied.record {
        // The latest order is kept whenever the delivery is newer, even when its event does
        // not apply (an address fix while held for a person): a release re-runs the rules on
        // its typed inputs. Once the order is done, its personal inputs are not kept.
        let newer = c.prior.is_none_or(|p| {
            let key = (p.order_updated_ms.unwrap_or(0), p.event_triggered_ms.unwrap_or(0));
            (rec.key.updated_at_ms, rec.key.triggered_at_ms) > key
        });
        let done = matches!(rec.state, State::Submitted | State::Fulfilled | State::Cancelled);
        let written = c.body_order.filter(|_| moved || newer);
        let inputs = written.map(|o| {
            let i = Inputs::of(o);
            if done {
                i.without_personal()
            } else {
                i
            }
        });
        let order_cols = written.zip(inputs.as_ref()).map(|(o, i)| OrderCols {
            email_hash: c.email_hash,
            paid: o.financial_status.as_deref() == Some("paid"),
            inputs: i,
        });
        let shadow = dec.and_then(|x| x.shadow);
        out.push(store.write_order(&OrderWrite {
            shop: c.shop,
            order_id: c.order_id,
            webhook_id: c.webhook_id,
            expected_seq: expected,
            new_seq,
            created: c.prior.is_none(),
            now_ms: c.now_ms,
            state: rec.state,
            reason: rec.reason,
            segment: &rec.lane,
            rules_version: &rec.rules_version,
            risk_level: rec.risk.map(|r| r.as_str()),
            risk_at_ms: rec.risk_at_ms,
            order_created_ms: rec.created_at_ms,
            order_updated_ms: rec.key.updated_at_ms,
            event_triggered_ms: rec.key.triggered_at_ms,
            decision: dec.map(|x| DecisionCols {
                mode: x.mode.as_str(),
                shadow_state: shadow.map(|(s, _)| s.as_str()),
                shadow_reason: shadow.and_then(|(_, r)| r).map(|r| r.as_str()),
                rule_ids: &fired,
                explanation: &x.explanation,
            }),
            order: order_cols,
        })?);
        if let Some(o) = written {
            out.extend(store.write_lines(c.shop, c.order_id, &o.line_items, c.prior.is_some())?);
        }
        let mut lifecycle = c.lifecycle;
        if applied.cancel_downstream {
            lifecycle.cancel_state = Some(CancelState::Requested);
            lifecycle.next_attempt_ms = Some(Some(c.now_ms));
        }
        lifecycle.accepted |= rec.submitted && c.prior.is_none_or(|p| p.submitted_ms.is_none());
        // The round's document is released when the core says the round is over.
        if !rec.document_fixed && c.prior.is_some_and(|p| p.document_fixed != 0) {
            lifecycle.document.get_or_insert(DocumentOp::Release);
        }
        if let Some(st) = store.write_lifecycle(c.shop, c.order_id, new_seq, c.now_ms, &lifecycle)? {
            out.push(st);
        }
    }
    if let Some(desired) = shopify_desire(c, applied) {
        out.push(store.want_in_shopify(c.shop, c.order_id, &desired, c.now_ms)?);
    }
    out.extend(store.stock_moves(c.shop, c.order_id, c.open, applied, c.now_ms)?);
    let segment = applied.record.as_ref().map(|r| r.lane.as_str()).filter(|l| !l.is_empty());
    let rules_version = applied
        .record
        .as_ref()
        .map(|r| r.rules_version.as_str())
        .unwrap_or(crate::core::rules::RULES_VERSION);
    for (i, a) in applied.audit.iter().enumerate() {
        let mut detail = a.detail.clone();
        if let Some(obj) = detail.as_object_mut() {
            obj.insert("outcome".into(), a.outcome.into());
            if a.outcome == "ignored" {
                obj.insert("event".into(), a.event.into());
            }
            if let Some(n) = c.note {
                obj.insert("note".into(), n.into());
            }
        }
        let event = if a.outcome == "ignored" { "ignored" } else { a.event };
        out.push(store.audit(&AuditRow {
            at_ms: c.now_ms,
            shop: Some(c.shop),
            order_id: Some(c.order_id),
            seq: applied.record.as_ref().map(|_| expected + i as i64 + 1),
            segment,
            event,
            from_state: a.from_state.map(|s| s.as_str()),
            to_state: a.to_state.map(|s| s.as_str()),
            reason: a.reason.map(|r| r.as_str()),
            rule_id: a.rule_id,
            rules_version: Some(rules_version),
            actor: c.actor,
            detail: &detail,
        })?);
    }
    Ok(out)
}
