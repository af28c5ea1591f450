//! The `orders` table: one typed row, the reads a decision needs in one round trip, and the
//! guarded write every state change goes through.

use std::collections::BTreeMap;

use wasm_bindgen::JsValue;
use worker::D1PreparedStatement;

use super::{decode_body, n, opt, s, BodyRow, Store, StoreResult};
use crate::core::inputs::{lines_param, Inputs, Line};
use crate::core::lifecycle::AttemptView;
use crate::core::order::{parse_order, LineItem, Order};
use crate::core::types::{CancelState, Mode, Reason, State};

/// The `orders` columns the edge works with (the API's view is `ORDER_VIEW_COLUMNS`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct OrderRow {
    pub shop: String,
    pub order_id: String,
    pub order_name: Option<String>,
    pub state: State,
    pub reason: Option<Reason>,
    pub segment: String,
    pub rules_version: String,
    pub risk_level: Option<String>,
    pub risk_at_ms: Option<i64>,
    pub order_created_ms: Option<i64>,
    pub created_ms: i64,
    pub order_updated_ms: Option<i64>,
    pub event_triggered_ms: Option<i64>,
    pub submitted_ms: Option<i64>,
    /// 1 while this round's document is fixed (`submission_document`, or the body of
    /// `submission_delivery_id` for rounds fixed before typed inputs).
    pub document_fixed: i64,
    pub seq: i64,
    pub submission: i64,
    pub attempts: i64,
    pub attempt_base: i64,
    pub lease_until: Option<i64>,
    pub lease_id: Option<String>,
    pub next_attempt_ms: Option<i64>,
    pub cancel_state: Option<CancelState>,
    pub cancel_attempts: i64,
}

const ORDER_COLUMNS: &str = "shop, order_id, order_name, state, reason, segment, rules_version, risk_level, \
    risk_at_ms, order_created_ms, created_ms, order_updated_ms, event_triggered_ms, submitted_ms, \
    (submission_document IS NOT NULL OR submission_delivery_id IS NOT NULL) AS document_fixed, seq, submission, \
    attempts, attempt_base, lease_until, lease_id, next_attempt_ms, cancel_state, cancel_attempts";

impl OrderRow {
    /// True while an attempt holds the order.
    pub fn in_flight(&self, now_ms: i64) -> bool {
        self.lease_until.is_some_and(|u| u > now_ms)
    }

    pub fn cancel_requested(&self) -> bool {
        self.cancel_state.is_some()
    }

    pub fn submission_no(&self) -> u32 {
        u32::try_from(self.submission.max(1)).unwrap_or(1)
    }

    pub fn attempts_no(&self) -> u32 {
        u32::try_from(self.attempts.max(0)).unwrap_or(0)
    }

    /// `state` or `state/reason`, as operators write it.
    pub fn state_text(&self) -> String {
        match self.reason {
            Some(r) => format!("{}/{}", self.state, r),
            None => self.state.to_string(),
        }
    }
}

/// What a decision about one order reads, in one round trip.
pub struct OrderReads {
    pub row: Option<OrderRow>,
    /// Open claims, `(sku, quantity)` sorted by SKU.
    pub open: Vec<(String, i64)>,
    /// Units handed to the warehouse with an accepted submission.
    pub consigned: Vec<(String, i64)>,
    pub stock: BTreeMap<String, i64>,
    /// Orders from the same email in the velocity window, this one included.
    pub email_orders: u32,
    pub early_risk_body: Option<Vec<u8>>,
    /// The latest submission attempt (or cancel attempt): `(started_ms, finished)`.
    pub last_attempt: Option<(i64, bool)>,
    /// The lane's last recorded mode change: `(mode, since)`.
    pub recorded_mode: Option<(Mode, i64)>,
    /// The delivery asked about (`ReadPlan::webhook_id`) is already recorded.
    pub duplicate: bool,
    /// The order's typed inputs and current document (`ReadPlan::inputs`).
    pub stored: Option<StoredOrder>,
    /// The order id is stored under another shop (`ReadPlan::other_shop`).
    pub other_shop: bool,
}

impl OrderReads {
    /// The current attempt as the claim decision needs it.
    pub fn attempt_view(&self, row: &OrderRow, cancel: bool) -> AttemptView {
        let attempts = if cancel { row.cancel_attempts } else { row.attempts };
        AttemptView {
            attempts: u32::try_from(attempts.max(0)).unwrap_or(0),
            lease_until: row.lease_until,
            unfinished_since_ms: self.last_attempt.filter(|(_, done)| !done).map(|(at, _)| at),
        }
    }
}

/// What to read besides the order row and its claims.
#[derive(Default)]
pub struct ReadPlan<'a> {
    /// SKUs whose stock the rules need (any number; read in chunks under D1's bind limit).
    pub skus: &'a [String],
    /// `(email hash, since_ms)` for the velocity rule.
    pub email: Option<(&'a str, i64)>,
    /// A verdict that arrived before the order.
    pub early_risk: bool,
    /// The latest attempt: `Some(false)` submission attempts, `Some(true)` cancel attempts.
    pub attempt_of_cancel: Option<bool>,
    /// The lane's recorded mode.
    pub lane_mode: bool,
    /// Whether this delivery (shop, webhook id) is already recorded.
    pub webhook_id: Option<&'a str>,
    /// The order's typed inputs (its lines, this round's document).
    pub inputs: bool,
    /// Stock for the SKUs the order's stored lines name.
    pub line_stock: bool,
    /// Whether the order id is stored under another shop.
    pub other_shop: bool,
}

/// The `orders` columns that hold an order's typed inputs ([`Inputs`]).
const INPUT_COLUMNS: &str = "order_name, customer_id, has_email, financial_status, fulfillment_status, source_name, \
    currency, total_cents, tags, ship_present, ship_name, ship_first_name, ship_last_name, ship_address1, \
    ship_address2, ship_city, ship_zip, ship_province_code, ship_country_code, billing_country, ship_methods, \
    order_created_ms, order_cancelled_ms";

/// What later paths rebuild an order from: its typed inputs and lines, this round's fixed
/// document, and for rows written before typed inputs their stored bodies while they last.
#[derive(Debug, Default)]
pub struct StoredOrder {
    pub inputs: Option<Inputs>,
    pub lines: Vec<Line>,
    /// This submission round's document, fixed at its first claim.
    pub document: Option<String>,
    legacy_body: Option<Vec<u8>>,
    legacy_fixed_body: Option<Vec<u8>>,
}

impl StoredOrder {
    /// The order the rules re-run on: rebuilt from the typed inputs, else (rows from before
    /// them) parsed from the latest stored body if it has not been purged yet.
    pub fn order(&self, row: &OrderRow) -> Option<Order> {
        match &self.inputs {
            Some(i) => Some(i.to_order(&row.order_id, row.order_updated_ms, &self.lines)),
            None => self.legacy_body.as_deref().and_then(|b| parse_order(b).ok()),
        }
    }

    /// The order this round's document is built from when none is fixed yet: a legacy
    /// round's fixed body, else the latest inputs.
    pub fn document_order(&self, row: &OrderRow) -> Option<Order> {
        match self.legacy_fixed_body.as_deref() {
            Some(b) => parse_order(b).ok(),
            None => self.order(row),
        }
    }
}

#[derive(serde::Deserialize)]
struct DocRow {
    document: Option<String>,
    encoding: Option<String>,
    body: Option<String>,
    fixed_encoding: Option<String>,
    fixed_body: Option<String>,
}

/// D1 caps bound parameters per statement at 100.
const SKU_CHUNK: usize = 90;

#[derive(serde::Deserialize)]
struct ClaimRow {
    sku: String,
    quantity: i64,
    consigned: i64,
}

#[derive(serde::Deserialize)]
struct SkuAvail {
    sku: String,
    available: i64,
}

#[derive(serde::Deserialize)]
struct Count {
    n: i64,
}

#[derive(serde::Deserialize)]
struct AttemptRow {
    started_ms: i64,
    finished_ms: Option<i64>,
}

#[derive(serde::Deserialize)]
struct ModeRow {
    mode: String,
    seen_ms: i64,
}

impl Store {
    pub async fn order(&self, shop: &str, order_id: &str) -> StoreResult<Option<OrderRow>> {
        let st = self.stmt(
            &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE shop = ?1 AND order_id = ?2"),
            &[s(shop), s(order_id)],
        )?;
        self.count(1);
        Ok(st.first::<OrderRow>(None).await?)
    }

    /// The order row, its claims and whatever `plan` asks for, in one batch.
    pub async fn order_reads(
        &self,
        shop: &str,
        order_id: &str,
        plan: &ReadPlan<'_>,
    ) -> StoreResult<OrderReads> {
        let key = [s(shop), s(order_id)];
        let mut statements = vec![
            self.stmt(
                &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE shop = ?1 AND order_id = ?2"),
                &key,
            )?,
            self.stmt(
                "SELECT sku, quantity, submitted_ms IS NOT NULL AS consigned FROM reservations \
                 WHERE shop = ?1 AND order_id = ?2 ORDER BY sku",
                &key,
            )?,
        ];
        let mut slots = Slots::default();
        if let Some((hash, since)) = plan.email {
            slots.email = Some(statements.len());
            statements.push(self.stmt(
                "SELECT COUNT(*) AS n FROM orders WHERE shop = ?1 AND email_hash = ?2 AND order_created_ms >= ?3 \
                 AND order_id != ?4",
                &[s(shop), s(hash), n(since), s(order_id)],
            )?);
        }
        if plan.early_risk {
            slots.risk = Some(statements.len());
            statements.push(self.stmt(
                "SELECT b.encoding, b.body FROM deliveries d JOIN delivery_bodies b ON b.delivery_id = d.id \
                 WHERE d.shop = ?1 AND d.order_id = ?2 AND d.topic = 'orders/risk_assessment_changed' \
                 ORDER BY d.id DESC LIMIT 1",
                &key,
            )?);
        }
        if let Some(cancel) = plan.attempt_of_cancel {
            slots.attempt = Some(statements.len());
            let table = if cancel { "cancel_attempts" } else { "submission_attempts" };
            statements.push(self.stmt(
                &format!(
                    "SELECT started_ms, finished_ms FROM {table} WHERE shop = ?1 AND order_id = ?2 AND submission = \
                     (SELECT submission FROM orders WHERE shop = ?1 AND order_id = ?2) ORDER BY attempt DESC LIMIT 1"
                ),
                &key,
            )?);
        }
        if plan.lane_mode {
            slots.mode = Some(statements.len());
            statements.push(self.stmt(
                "SELECT mode, seen_ms FROM segments WHERE segment = \
                 (SELECT segment FROM orders WHERE shop = ?1 AND order_id = ?2)",
                &key,
            )?);
        }
        if let Some(id) = plan.webhook_id {
            slots.delivery = Some(statements.len());
            statements.push(self.stmt(
                "SELECT COUNT(*) AS n FROM deliveries WHERE shop = ?1 AND webhook_id = ?2",
                &[s(shop), s(id)],
            )?);
        }
        if plan.other_shop {
            slots.other_shop = Some(statements.len());
            statements.push(
                self.stmt("SELECT COUNT(*) AS n FROM orders WHERE order_id = ?2 AND shop != ?1", &key)?,
            );
        }
        if plan.inputs {
            slots.inputs = Some(statements.len());
            statements.push(self.stmt(
                &format!(
                    "SELECT {INPUT_COLUMNS} FROM orders WHERE shop = ?1 AND order_id = ?2 AND inputs_v IS NOT NULL"
                ),
                &key,
            )?);
            statements.push(self.stmt(
                "SELECT line_item_id, sku, quantity, fulfillable_quantity, requires_shipping, title \
                 FROM order_lines WHERE shop = ?1 AND order_id = ?2 ORDER BY position",
                &key,
            )?);
            // This round's document; for rows written before typed inputs, the stored bodies
            // they still point at (the latest, and the one a fixed round was built from).
            statements.push(self.stmt(
                "SELECT o.submission_document AS document, lb.encoding, lb.body, \
                   sb.encoding AS fixed_encoding, sb.body AS fixed_body FROM orders o \
                 LEFT JOIN delivery_bodies lb ON o.inputs_v IS NULL AND lb.delivery_id = o.payload_delivery_id \
                 LEFT JOIN delivery_bodies sb ON o.submission_document IS NULL \
                   AND sb.delivery_id = o.submission_delivery_id \
                 WHERE o.shop = ?1 AND o.order_id = ?2",
                &key,
            )?);
        }
        let stock_from = statements.len();
        if plan.line_stock {
            // The SKUs of the order's lines, read by SQLite itself so a verdict or a release
            // takes one round trip (from the legacy body for rows without typed inputs).
            statements.push(self.stmt(
                "SELECT sku, available FROM stock WHERE sku IN (\
                   SELECT sku FROM order_lines WHERE shop = ?1 AND order_id = ?2 \
                   UNION SELECT json_extract(l.value, '$.sku') \
                   FROM json_each((SELECT CASE WHEN b.encoding = 'utf8' AND json_valid(b.body) THEN b.body END \
                     FROM orders o JOIN delivery_bodies b ON b.delivery_id = o.payload_delivery_id \
                     WHERE o.shop = ?1 AND o.order_id = ?2 AND o.inputs_v IS NULL), '$.line_items') l)",
                &key,
            )?);
        }
        let mut skus: Vec<&String> = plan.skus.iter().collect();
        skus.sort();
        skus.dedup();
        for chunk in skus.chunks(SKU_CHUNK) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("?{i}")).collect();
            let args: Vec<JsValue> = chunk.iter().map(|k| s(k)).collect();
            statements.push(self.stmt(
                &format!("SELECT sku, available FROM stock WHERE sku IN ({})", marks.join(", ")),
                &args,
            )?);
        }
        self.count(statements.len());
        let results = self.db.batch(statements).await?;
        let row = match results.first() {
            Some(r) => r.results::<OrderRow>()?.into_iter().next(),
            None => None,
        };
        let (mut open, mut consigned) = (Vec::new(), Vec::new());
        if let Some(r) = results.get(1) {
            for c in r.results::<ClaimRow>()? {
                if c.consigned != 0 {
                    consigned.push((c.sku, c.quantity));
                } else {
                    open.push((c.sku, c.quantity));
                }
            }
        }
        let email_orders = match slots.email.and_then(|i| results.get(i)) {
            Some(r) => r.results::<Count>()?.first().map(|c| c.n).unwrap_or(0) as u32 + 1,
            None => 1,
        };
        let early_risk_body = match slots.risk.and_then(|i| results.get(i)) {
            Some(r) => {
                r.results::<BodyRow>()?.into_iter().next().and_then(|b| decode_body(&b.encoding, b.body))
            }
            None => None,
        };
        let last_attempt = match slots.attempt.and_then(|i| results.get(i)) {
            Some(r) => {
                r.results::<AttemptRow>()?.into_iter().next().map(|a| (a.started_ms, a.finished_ms.is_some()))
            }
            None => None,
        };
        let recorded_mode = match slots.mode.and_then(|i| results.get(i)) {
            Some(r) => r
                .results::<ModeRow>()?
                .into_iter()
                .next()
                .and_then(|m| Mode::parse(&m.mode).map(|mode| (mode, m.seen_ms))),
            None => None,
        };
        let duplicate = match slots.delivery.and_then(|i| results.get(i)) {
            Some(r) => r.results::<Count>()?.first().is_some_and(|c| c.n > 0),
            None => false,
        };
        let other_shop = match slots.other_shop.and_then(|i| results.get(i)) {
            Some(r) => r.results::<Count>()?.first().is_some_and(|c| c.n > 0),
            None => false,
        };
        let stored = match slots.inputs {
            Some(i) => {
                let inputs = match results.get(i) {
                    Some(r) => r.results::<Inputs>()?.into_iter().next(),
                    None => None,
                };
                let lines = match results.get(i + 1) {
                    Some(r) => r.results::<Line>()?,
                    None => Vec::new(),
                };
                let docs = match results.get(i + 2) {
                    Some(r) => r.results::<DocRow>()?.into_iter().next(),
                    None => None,
                };
                let body =
                    |enc: Option<String>, b: Option<String>| enc.zip(b).and_then(|(e, b)| decode_body(&e, b));
                Some(match docs {
                    Some(d) => StoredOrder {
                        inputs,
                        lines,
                        document: d.document,
                        legacy_body: body(d.encoding, d.body),
                        legacy_fixed_body: body(d.fixed_encoding, d.fixed_body),
                    },
                    None => StoredOrder { inputs, lines, ..StoredOrder::default() },
                })
            }
            None => None,
        };
        let mut stock = BTreeMap::new();
        for r in results.iter().skip(stock_from) {
            stock.extend(r.results::<SkuAvail>()?.into_iter().map(|x| (x.sku, x.available)));
        }
        Ok(OrderReads {
            row,
            open,
            consigned,
            stock,
            email_orders,
            early_risk_body,
            last_attempt,
            recorded_mode,
            duplicate,
            stored,
            other_shop,
        })
    }

    /// Ready orders whose next attempt is overdue by more than `grace_ms` with no attempt in
    /// flight, and cancelled orders whose cancel request is, oldest due first.
    pub async fn overdue(&self, now_ms: i64, grace_ms: i64, limit: i64) -> StoreResult<Vec<OrderRow>> {
        let st = self.stmt(
            &format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE state = 'ready-for-fulfilment' \
                   AND next_attempt_ms < ?1 - ?2 AND (lease_until IS NULL OR lease_until < ?1) \
                 UNION ALL SELECT {ORDER_COLUMNS} FROM orders WHERE cancel_state = 'requested' \
                   AND next_attempt_ms < ?1 - ?2 AND (lease_until IS NULL OR lease_until < ?1) \
                 ORDER BY next_attempt_ms LIMIT ?3"
            ),
            &[n(now_ms), n(grace_ms), n(limit)],
        )?;
        Ok(st.all().await?.results()?)
    }

    /// Orders of `lane` waiting in `state` (`new` or `fraud-check`) created before `cutoff_ms`:
    /// the ones whose window has passed, oldest first.
    pub async fn due_waiting(
        &self,
        lane: &str,
        state: State,
        cutoff_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<OrderRow>> {
        let st = self.stmt(
            &format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE segment = ?1 AND state = ?2 AND order_created_ms < ?3 \
                 ORDER BY order_created_ms LIMIT ?4"
            ),
            &[s(lane), s(state.as_str()), n(cutoff_ms), n(limit)],
        )?;
        Ok(st.all().await?.results()?)
    }

    /// Gives up a lease this consumer holds, leaving everything else as it is.
    pub async fn free_lease(&self, shop: &str, order_id: &str, lease_id: &str) -> StoreResult<()> {
        self.stmt(
            "UPDATE orders SET lease_until = NULL, lease_id = NULL WHERE shop = ?1 AND order_id = ?2 AND lease_id = ?3",
            &[s(shop), s(order_id), s(lease_id)],
        )?
        .run()
        .await?;
        Ok(())
    }
}

#[derive(Default)]
struct Slots {
    delivery: Option<usize>,
    other_shop: Option<usize>,
    inputs: Option<usize>,
    email: Option<usize>,
    risk: Option<usize>,
    attempt: Option<usize>,
    mode: Option<usize>,
}

/// The values one state change writes to `orders`.
pub struct OrderWrite<'a> {
    pub shop: &'a str,
    pub order_id: &'a str,
    pub webhook_id: Option<&'a str>,
    pub expected_seq: i64,
    pub new_seq: i64,
    /// No row was there: insert, never update.
    pub created: bool,
    pub now_ms: i64,
    pub state: State,
    pub reason: Option<Reason>,
    pub segment: &'a str,
    pub rules_version: &'a str,
    pub risk_level: Option<&'a str>,
    pub risk_at_ms: Option<i64>,
    pub order_created_ms: i64,
    pub order_updated_ms: i64,
    pub event_triggered_ms: i64,
    /// Set when the rules ran and the event applied: decision columns are replaced.
    pub decision: Option<DecisionCols<'a>>,
    /// Set when the delivery carried the order and applied: order columns are replaced.
    pub order: Option<OrderCols<'a>>,
}

pub struct DecisionCols<'a> {
    pub mode: &'a str,
    pub shadow_state: Option<&'a str>,
    pub shadow_reason: Option<&'a str>,
    pub rule_ids: &'a str,
    pub explanation: &'a str,
}

pub struct OrderCols<'a> {
    pub email_hash: Option<&'a str>,
    pub paid: bool,
    /// Everything later paths need from the order (`order_name`, `financial_status`,
    /// `total_cents` and `currency` included).
    pub inputs: &'a Inputs,
}

/// What happens to the lease with a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOp<'a> {
    Keep,
    Take { id: &'a str, until_ms: i64 },
    Clear,
}

/// What a write does with the round's document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentOp<'a> {
    /// Fix this document for the round, unless one is fixed already.
    Fix(&'a str),
    Release,
}

/// The attempt bookkeeping a consumer or the cron writes with a state change.
#[derive(Debug, Clone, Copy)]
pub struct Lifecycle<'a> {
    pub lease: LeaseOp<'a>,
    pub attempts: Option<i64>,
    pub cancel_attempts: Option<i64>,
    /// `Some(t)`: the next attempt is due at `t` (`Some(None)` clears it).
    pub next_attempt_ms: Option<Option<i64>>,
    /// This round's document: fixed by a claim (kept if one is already), or released so the
    /// next round builds its own from the latest inputs.
    pub document: Option<DocumentOp<'a>>,
    pub cancel_state: Option<CancelState>,
    pub accepted: bool,
    pub failed: bool,
    pub held: bool,
    pub resolved: bool,
    pub enqueued: bool,
}

impl Default for Lifecycle<'_> {
    fn default() -> Self {
        Lifecycle {
            lease: LeaseOp::Keep,
            attempts: None,
            cancel_attempts: None,
            next_attempt_ms: None,
            document: None,
            cancel_state: None,
            accepted: false,
            failed: false,
            held: false,
            resolved: false,
            enqueued: false,
        }
    }
}

impl Lifecycle<'_> {
    fn is_noop(&self) -> bool {
        self.lease == LeaseOp::Keep
            && self.attempts.is_none()
            && self.cancel_attempts.is_none()
            && self.next_attempt_ms.is_none()
            && self.document.is_none()
            && self.cancel_state.is_none()
            && !(self.accepted || self.failed || self.held || self.resolved || self.enqueued)
    }
}

impl Store {
    /// The order upsert. Guarded by the expected row version: a concurrent writer makes this
    /// a no-op and the audit rows' (shop, order_id, seq) key then fails the whole batch.
    /// Entering `ready-for-fulfilment` starts a new submission when the last one was refused
    /// (or answered out of stock), and otherwise a new round of the same one (same key,
    /// fresh schedule); either way the first attempt is due now.
    pub fn write_order(&self, w: &OrderWrite<'_>) -> StoreResult<D1PreparedStatement> {
        let d = w.decision.as_ref();
        let o = w.order.as_ref();
        let i = o.map(|o| o.inputs);
        let flag = |b: bool| n(i64::from(b));
        let args = [
            s(w.shop),                                            // 1
            s(w.order_id),                                        // 2
            opt(i.and_then(|i| i.order_name.as_deref())),         // 3
            s(w.state.as_str()),                                  // 4
            opt(w.reason.map(|r| r.as_str())),                    // 5
            s(w.segment),                                         // 6
            opt(d.map(|d| d.mode)),                               // 7
            opt(d.and_then(|d| d.shadow_state)),                  // 8
            opt(d.and_then(|d| d.shadow_reason)),                 // 9
            opt(d.map(|d| d.rule_ids)),                           // 10
            opt(d.map(|d| d.explanation)),                        // 11
            s(w.rules_version),                                   // 12
            opt(i.and_then(|i| i.financial_status.as_deref())),   // 13
            opt(w.risk_level),                                    // 14
            w.risk_at_ms.map(n).unwrap_or(JsValue::NULL),         // 15
            opt(o.and_then(|o| o.email_hash)),                    // 16
            i.map(|i| n(i.total_cents)).unwrap_or(JsValue::NULL), // 17
            opt(i.and_then(|i| i.currency.as_deref())),           // 18
            n(w.order_updated_ms),                                // 19
            n(w.event_triggered_ms),                              // 20
            opt(if o.is_some() { w.webhook_id } else { None }),   // 21
            n(w.new_seq),                                         // 22
            n(w.now_ms),                                          // 23
            n(w.order_created_ms),                                // 24
            flag(o.is_some_and(|o| o.paid)),                      // 25
            n(w.expected_seq),                                    // 26
            flag(d.is_some()),                                    // 27
            flag(o.is_some()),                                    // 28
            // 29..=46: the typed inputs (src/core/inputs.rs).
            opt(i.and_then(|i| i.customer_id.as_deref())),
            flag(i.is_some_and(|i| i.has_email)),
            opt(i.and_then(|i| i.fulfillment_status.as_deref())),
            opt(i.and_then(|i| i.source_name.as_deref())),
            opt(i.map(|i| i.tags.as_str())),
            flag(i.is_some_and(|i| i.ship_present)),
            opt(i.and_then(|i| i.ship_name.as_deref())),
            opt(i.and_then(|i| i.ship_first_name.as_deref())),
            opt(i.and_then(|i| i.ship_last_name.as_deref())),
            opt(i.and_then(|i| i.ship_address1.as_deref())),
            opt(i.and_then(|i| i.ship_address2.as_deref())),
            opt(i.and_then(|i| i.ship_city.as_deref())),
            opt(i.and_then(|i| i.ship_zip.as_deref())),
            opt(i.and_then(|i| i.ship_province_code.as_deref())),
            opt(i.and_then(|i| i.ship_country_code.as_deref())),
            opt(i.and_then(|i| i.billing_country.as_deref())),
            opt(i.map(|i| i.ship_methods.as_str())),
            i.and_then(|i| i.order_cancelled_ms).map(n).unwrap_or(JsValue::NULL),
        ];
        const ENTERING: &str = "?4 = 'ready-for-fulfilment' AND state != ?4";
        const NEW_SUBMISSION: &str = "(submission = 0 OR EXISTS (SELECT 1 FROM submission_attempts a \
             WHERE a.shop = ?1 AND a.order_id = ?2 AND a.submission = orders.submission \
             AND a.outcome IN ('refused', 'out_of_stock')))";
        // A new order: the insert alone (a short statement for the common path); a row that
        // exists after all violates the key and fails the batch, which is then re-decided.
        const INSERT: &str = "INSERT INTO orders (shop, order_id, order_name, state, reason, segment, mode, shadow_state, shadow_reason, \
               rule_ids, explanation, rules_version, financial_status, risk_level, risk_at_ms, email_hash, total_cents, \
               currency, order_updated_ms, event_triggered_ms, payload_delivery_id, seq, created_ms, order_created_ms, \
               routable_ms, routed_ms, held_ms, ready_ms, state_since_ms, updated_ms, submission, next_attempt_ms, \
               enqueued_ms, inputs_v, customer_id, has_email, fulfillment_status, source_name, tags, ship_present, \
               ship_name, ship_first_name, ship_last_name, ship_address1, ship_address2, ship_city, ship_zip, \
               ship_province_code, ship_country_code, billing_country, ship_methods, order_cancelled_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, COALESCE(?7, 'manual'), ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
               ?19, ?20, (SELECT id FROM deliveries WHERE shop = ?1 AND webhook_id = ?21), ?22, ?23, ?24, \
               CASE WHEN ?25 = 1 THEN ?23 END, \
               CASE WHEN ?4 IN ('ready-for-fulfilment', 'hold') THEN ?23 END, \
               CASE WHEN ?4 = 'hold' THEN ?23 END, \
               CASE WHEN ?4 = 'ready-for-fulfilment' THEN ?23 END, \
               ?23, ?23, CASE WHEN ?4 = 'ready-for-fulfilment' THEN 1 ELSE 0 END, \
               CASE WHEN ?4 = 'ready-for-fulfilment' THEN ?23 END, CASE WHEN ?4 = 'ready-for-fulfilment' THEN ?23 END, \
               CASE WHEN ?28 = 1 THEN 1 END, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38, ?39, ?40, ?41, ?42, ?43, \
               ?44, ?45, ?46)";
        if w.created {
            return self.stmt(INSERT, &args);
        }
        // Personal inputs go when the order is submitted, fulfilled or cancelled: no later
        // path builds a document for it (the writer leaves them out of such writes too).
        const DONE: &str = "?4 IN ('submitted', 'fulfilled', 'cancelled')";
        self.stmt(
            &format!(
                "{INSERT} \
             ON CONFLICT (shop, order_id) DO UPDATE SET \
               order_name = CASE WHEN ?28 = 1 THEN ?3 ELSE order_name END, \
               financial_status = CASE WHEN ?28 = 1 THEN ?13 ELSE financial_status END, \
               email_hash = CASE WHEN ?28 = 1 THEN ?16 ELSE email_hash END, \
               total_cents = CASE WHEN ?28 = 1 THEN ?17 ELSE total_cents END, \
               currency = CASE WHEN ?28 = 1 THEN ?18 ELSE currency END, \
               inputs_v = CASE WHEN ?28 = 1 THEN 1 ELSE inputs_v END, \
               customer_id = CASE WHEN ?28 = 1 THEN ?29 ELSE customer_id END, \
               has_email = CASE WHEN ?28 = 1 THEN ?30 ELSE has_email END, \
               fulfillment_status = CASE WHEN ?28 = 1 THEN ?31 ELSE fulfillment_status END, \
               source_name = CASE WHEN ?28 = 1 THEN ?32 ELSE source_name END, \
               tags = CASE WHEN ?28 = 1 THEN ?33 ELSE tags END, \
               ship_present = CASE WHEN ?28 = 1 THEN ?34 ELSE ship_present END, \
               ship_name = CASE WHEN {DONE} THEN NULL WHEN ?28 = 1 THEN ?35 ELSE ship_name END, \
               ship_first_name = CASE WHEN {DONE} THEN NULL WHEN ?28 = 1 THEN ?36 ELSE ship_first_name END, \
               ship_last_name = CASE WHEN {DONE} THEN NULL WHEN ?28 = 1 THEN ?37 ELSE ship_last_name END, \
               ship_address1 = CASE WHEN {DONE} THEN NULL WHEN ?28 = 1 THEN ?38 ELSE ship_address1 END, \
               ship_address2 = CASE WHEN {DONE} THEN NULL WHEN ?28 = 1 THEN ?39 ELSE ship_address2 END, \
               ship_city = CASE WHEN {DONE} THEN NULL WHEN ?28 = 1 THEN ?40 ELSE ship_city END, \
               ship_zip = CASE WHEN {DONE} THEN NULL WHEN ?28 = 1 THEN ?41 ELSE ship_zip END, \
               ship_province_code = CASE WHEN {DONE} THEN NULL WHEN ?28 = 1 THEN ?42 ELSE ship_province_code END, \
               ship_country_code = CASE WHEN {DONE} THEN NULL WHEN ?28 = 1 THEN ?43 ELSE ship_country_code END, \
               billing_country = CASE WHEN {DONE} THEN NULL WHEN ?28 = 1 THEN ?44 ELSE billing_country END, \
               ship_methods = CASE WHEN ?28 = 1 THEN ?45 ELSE ship_methods END, \
               order_cancelled_ms = CASE WHEN ?28 = 1 THEN ?46 ELSE order_cancelled_ms END, \
               payload_delivery_id = CASE WHEN ?28 = 1 \
                 THEN (SELECT id FROM deliveries WHERE shop = ?1 AND webhook_id = ?21) ELSE payload_delivery_id END, \
               mode = CASE WHEN ?27 = 1 THEN ?7 ELSE mode END, \
               shadow_state = CASE WHEN ?27 = 1 THEN ?8 ELSE shadow_state END, \
               shadow_reason = CASE WHEN ?27 = 1 THEN ?9 ELSE shadow_reason END, \
               rule_ids = CASE WHEN ?27 = 1 THEN ?10 ELSE rule_ids END, \
               explanation = CASE WHEN ?27 = 1 THEN ?11 ELSE explanation END, \
               segment = ?6, rules_version = ?12, risk_level = ?14, risk_at_ms = ?15, \
               order_updated_ms = ?19, event_triggered_ms = ?20, order_created_ms = ?24, seq = ?22, updated_ms = ?23, \
               routable_ms = COALESCE(routable_ms, CASE WHEN ?25 = 1 THEN ?23 END), \
               routed_ms = COALESCE(routed_ms, CASE WHEN ?4 IN ('ready-for-fulfilment', 'hold') THEN ?23 END), \
               held_ms = COALESCE(held_ms, CASE WHEN ?4 = 'hold' AND ready_ms IS NULL THEN ?23 END), \
               ready_ms = COALESCE(ready_ms, CASE WHEN ?4 = 'ready-for-fulfilment' THEN ?23 END), \
               state_since_ms = CASE WHEN state != ?4 OR reason IS NOT ?5 THEN ?23 ELSE state_since_ms END, \
               submission = CASE WHEN {ENTERING} THEN submission + CASE WHEN {NEW_SUBMISSION} THEN 1 ELSE 0 END \
                 ELSE submission END, \
               attempts = CASE WHEN {ENTERING} AND {NEW_SUBMISSION} THEN 0 ELSE attempts END, \
               attempt_base = CASE WHEN {ENTERING} THEN CASE WHEN {NEW_SUBMISSION} THEN 0 ELSE attempts END \
                 ELSE attempt_base END, \
               submission_delivery_id = CASE WHEN {ENTERING} AND {NEW_SUBMISSION} THEN NULL \
                 ELSE submission_delivery_id END, \
               next_attempt_ms = CASE WHEN {ENTERING} THEN ?23 \
                 WHEN ?4 != 'ready-for-fulfilment' AND cancel_state IS NOT 'requested' THEN NULL \
                 ELSE next_attempt_ms END, \
               enqueued_ms = CASE WHEN {ENTERING} THEN ?23 ELSE enqueued_ms END, \
               state = ?4, reason = ?5 \
             WHERE orders.seq = ?26"
            ),
            &args,
        )
    }

    /// The order's lines, written with the order: one statement for a new order (none when
    /// it has no lines), a delete first when they replace stored ones. Unguarded: the batch's
    /// audit rows fail it as a whole when another writer won the order.
    pub fn write_lines(
        &self,
        shop: &str,
        order_id: &str,
        lines: &[LineItem],
        replace: bool,
    ) -> StoreResult<Vec<D1PreparedStatement>> {
        let mut out = Vec::new();
        if replace {
            out.push(self.stmt(
                "DELETE FROM order_lines WHERE shop = ?1 AND order_id = ?2",
                &[s(shop), s(order_id)],
            )?);
        }
        if !lines.is_empty() {
            out.push(self.stmt(
                "INSERT INTO order_lines (shop, order_id, position, line_item_id, sku, quantity, fulfillable_quantity, \
                 requires_shipping, title) SELECT ?1, ?2, key, value ->> 0, value ->> 1, value ->> 2, value ->> 3, \
                 value ->> 4, value ->> 5 FROM json_each(?3)",
                &[s(shop), s(order_id), s(&lines_param(lines))],
            )?);
        }
        Ok(out)
    }

    /// The attempt bookkeeping written with a state change, in the same batch; it applies
    /// only if the change did (the row carries the new version). `None` when there is none.
    pub fn write_lifecycle(
        &self,
        shop: &str,
        order_id: &str,
        new_seq: i64,
        now_ms: i64,
        l: &Lifecycle<'_>,
    ) -> StoreResult<Option<D1PreparedStatement>> {
        if l.is_noop() {
            return Ok(None);
        }
        let (op, id, until) = match l.lease {
            LeaseOp::Keep => ("keep", None, None),
            LeaseOp::Take { id, until_ms } => ("take", Some(id), Some(until_ms)),
            LeaseOp::Clear => ("clear", None, None),
        };
        let flag = |b: bool| n(i64::from(b));
        let args = [
            s(shop),                                                     // 1
            s(order_id),                                                 // 2
            n(new_seq),                                                  // 3
            n(now_ms),                                                   // 4
            s(op),                                                       // 5
            opt(id),                                                     // 6
            until.map(n).unwrap_or(JsValue::NULL),                       // 7
            l.attempts.map(n).unwrap_or(JsValue::NULL),                  // 8
            l.cancel_attempts.map(n).unwrap_or(JsValue::NULL),           // 9
            flag(l.next_attempt_ms.is_some()),                           // 10
            l.next_attempt_ms.flatten().map(n).unwrap_or(JsValue::NULL), // 11
            match l.document {
                Some(DocumentOp::Fix(_)) => n(1),
                Some(DocumentOp::Release) => n(0),
                None => JsValue::NULL,
            }, // 12
            opt(l.cancel_state.map(|c| c.as_str())),                     // 13
            flag(l.accepted),                                            // 14
            flag(l.failed),                                              // 15
            flag(l.held),                                                // 16
            flag(l.resolved),                                            // 17
            flag(l.enqueued),                                            // 18
            opt(match l.document {
                Some(DocumentOp::Fix(d)) => Some(d),
                _ => None,
            }), // 19
        ];
        Ok(Some(self.stmt(
            "UPDATE orders SET \
               lease_until = CASE ?5 WHEN 'take' THEN ?7 WHEN 'clear' THEN NULL ELSE lease_until END, \
               lease_id = CASE ?5 WHEN 'take' THEN ?6 WHEN 'clear' THEN NULL ELSE lease_id END, \
               attempts = COALESCE(?8, attempts), \
               cancel_attempts = COALESCE(?9, cancel_attempts), \
               next_attempt_ms = CASE WHEN ?10 = 1 THEN ?11 ELSE next_attempt_ms END, \
               submission_document = CASE ?12 WHEN 1 THEN COALESCE(submission_document, ?19) \
                 WHEN 0 THEN NULL ELSE submission_document END, \
               submission_delivery_id = CASE ?12 WHEN 0 THEN NULL ELSE submission_delivery_id END, \
               cancel_state = COALESCE(?13, cancel_state), \
               submitted_ms = CASE WHEN ?14 = 1 THEN COALESCE(submitted_ms, ?4) ELSE submitted_ms END, \
               failed_ms = CASE WHEN ?15 = 1 THEN COALESCE(failed_ms, ?4) ELSE failed_ms END, \
               held_ms = CASE WHEN ?16 = 1 THEN COALESCE(held_ms, ?4) ELSE held_ms END, \
               resolved_ms = CASE WHEN ?17 = 1 THEN COALESCE(resolved_ms, ?4) ELSE resolved_ms END, \
               enqueued_ms = CASE WHEN ?18 = 1 THEN ?4 ELSE enqueued_ms END \
             WHERE shop = ?1 AND order_id = ?2 AND seq = ?3",
            &args,
        )?))
    }
}

/// What a fresh order is decided on without reading first: no order row (under any shop), no risk verdict
/// that came before it, the velocity rule cannot fire, and each SKU's stock as last seen.
/// [`Store::guess_guards`] turns it into statements that fail the batch when it is wrong.
pub struct Guess<'a> {
    /// `(email hash, since_ms, max_orders)`: fewer than `max_orders` other orders from this
    /// email since `since_ms`.
    pub email: Option<(&'a str, i64, u32)>,
    pub stock: Vec<(String, StockGuess)>,
}

/// The stock fact a decision rests on, per SKU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockGuess {
    /// No stock row.
    Absent,
    /// A row with at least this many units (the rules only compare with what is needed).
    AtLeast(i64),
    /// A row with exactly this many (short: the explanation quotes the number).
    Exactly(i64),
}

/// SKUs per guard statement (two bound values each, under D1's 100).
const GUARD_SKUS: usize = 40;

impl Store {
    /// `INSERT INTO batch_guards (ok) SELECT 0 WHERE <the guess is wrong>`: inserts nothing
    /// when it holds, and violates the table's CHECK (failing the batch as `Conflict`) when
    /// it does not. Put first in the batch: it sees the state before the batch's writes.
    pub fn guess_guards(
        &self,
        shop: &str,
        order_id: &str,
        g: &Guess<'_>,
    ) -> StoreResult<Vec<D1PreparedStatement>> {
        let mut out = Vec::new();
        let mut conds: Vec<String> = vec![
            "EXISTS (SELECT 1 FROM orders WHERE order_id = ?2)".into(),
            "EXISTS (SELECT 1 FROM deliveries WHERE shop = ?1 AND order_id = ?2 \
             AND topic = 'orders/risk_assessment_changed')"
                .into(),
        ];
        let mut args = vec![s(shop), s(order_id)];
        if let Some((hash, since, max)) = g.email {
            conds.push(
                "(SELECT COUNT(*) FROM (SELECT 1 FROM orders WHERE shop = ?1 AND email_hash = ?3 \
                 AND order_created_ms >= ?4 AND order_id != ?2 LIMIT ?5)) >= ?5"
                    .into(),
            );
            args.extend([s(hash), n(since), n(i64::from(max))]);
        }
        let mut chunks = g.stock.chunks(GUARD_SKUS).peekable();
        loop {
            for (sku, fact) in chunks.next().unwrap_or_default() {
                let (k, v) = (args.len() + 1, args.len() + 2);
                args.push(s(sku));
                conds.push(match fact {
                    StockGuess::Absent => format!("EXISTS (SELECT 1 FROM stock WHERE sku = ?{k})"),
                    StockGuess::AtLeast(q) => {
                        args.push(n(*q));
                        format!("COALESCE((SELECT available FROM stock WHERE sku = ?{k}), -1) < ?{v}")
                    }
                    StockGuess::Exactly(q) => {
                        args.push(n(*q));
                        format!("(SELECT available FROM stock WHERE sku = ?{k}) IS NOT ?{v}")
                    }
                });
            }
            out.push(self.stmt(
                &format!("INSERT INTO batch_guards (ok) SELECT 0 WHERE {}", conds.join(" OR ")),
                &args,
            )?);
            if chunks.peek().is_none() {
                return Ok(out);
            }
            conds.clear();
            args.clear();
        }
    }
}
