//! The D1 store: all SQL lives here, one file per table family. Callers get typed results
//! and a `StoreError` that tells a lost race (a unique key refused the write) from storage
//! being unavailable.

mod alerts;
mod attempts;
mod orders;
mod privacy;
mod shopify;
mod stock;

pub use alerts::DeadLetterSeen;
pub use attempts::{AttemptEnd, DeadLetter};
pub use orders::{
    DecisionCols, DocumentOp, Guess, LeaseOp, Lifecycle, OrderCols, OrderReads, OrderRow, OrderWrite,
    ReadPlan, StockGuess,
};
pub use shopify::{Run, MIRROR_GRACE_MS};

use std::cell::Cell;

use wasm_bindgen::{JsCast, JsValue};
use worker::{js_sys, wasm_bindgen_futures, D1Database, D1PreparedStatement};

use crate::core::webhook::Delivery;

#[derive(Debug)]
pub enum StoreError {
    /// A unique key refused the batch: another writer got there first. Nothing was written.
    Conflict,
    /// D1 failed or is unreachable. Nothing was written (batches are transactions).
    Unavailable(String),
}

impl From<worker::Error> for StoreError {
    fn from(e: worker::Error) -> Self {
        let text = match &e {
            worker::Error::D1(d) => d.cause(),
            other => other.to_string(),
        };
        if text.contains("constraint failed") || text.contains("SQLITE_CONSTRAINT") {
            StoreError::Conflict
        } else {
            StoreError::Unavailable(text)
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

fn js_error(e: JsValue) -> StoreError {
    StoreError::from(worker::Error::from(e))
}

/// A JS value as JSON text (`null` for what JSON cannot hold).
pub(crate) fn js_json(v: &JsValue) -> String {
    js_sys::JSON::stringify(v).ok().and_then(|t| t.as_string()).unwrap_or_else(|| "null".to_string())
}

pub struct Store {
    pub(super) db: D1Database,
    /// D1 round trips and statements this event made, for `Server-Timing`.
    trips: Cell<u32>,
    statements: Cell<u32>,
    /// Deliveries in the largest shared batch this event's writes rode in (`edge::group`).
    shared: Cell<u32>,
}

pub(crate) fn s(v: &str) -> JsValue {
    JsValue::from_str(v)
}

pub(crate) fn opt(v: Option<&str>) -> JsValue {
    v.map(JsValue::from_str).unwrap_or(JsValue::NULL)
}

pub(crate) fn n(v: i64) -> JsValue {
    // D1 numbers travel as f64; every integer we bind (times, sizes, counts) is far below 2^53.
    JsValue::from_f64(v as f64)
}

/// What to record for one authentic delivery.
pub struct NewDelivery<'a> {
    pub delivery: &'a Delivery,
    pub received_ms: i64,
    pub outcome: &'a str,
    pub detail: Option<&'a str>,
    pub order_id: Option<&'a str>,
    pub customer_id: Option<&'a str>,
    /// Kept for the stages that need it; `None` for topics whose body is not needed.
    pub body: Option<&'a [u8]>,
}

impl Store {
    pub fn new(db: D1Database) -> Self {
        Store { db, trips: Cell::new(0), statements: Cell::new(0), shared: Cell::new(1) }
    }

    /// Counts one round trip of `statements` statements.
    pub(crate) fn count(&self, statements: usize) {
        self.trips.set(self.trips.get() + 1);
        self.statements.set(self.statements.get() + statements as u32);
    }

    /// Notes that a write rode in a batch shared by `deliveries` deliveries.
    pub(crate) fn shared_by(&self, deliveries: u32) {
        self.shared.set(self.shared.get().max(deliveries));
    }

    /// Deliveries in the largest batch this event shared (1: none shared).
    pub fn shared(&self) -> u32 {
        self.shared.get()
    }

    /// `(round trips, statements)` so far.
    pub fn cost(&self) -> (u32, u32) {
        (self.trips.get(), self.statements.get())
    }

    pub(crate) fn stmt(&self, sql: &str, args: &[JsValue]) -> StoreResult<D1PreparedStatement> {
        Ok(self.db.prepare(sql).bind(args)?)
    }

    /// Runs reads in one round trip and answers each one's rows as D1 hands them over (arrays
    /// of plain objects), for views that pass rows on unchanged: they are never converted into
    /// Rust values and back.
    pub(crate) async fn rows_js(
        &self,
        statements: Vec<D1PreparedStatement>,
    ) -> StoreResult<Vec<js_sys::Array>> {
        self.count(statements.len());
        let list: js_sys::Array = statements.iter().map(|st| JsValue::from(st.inner())).collect();
        let results = self.batch_raw(&list).await?;
        js_sys::Array::from(&results)
            .iter()
            .map(|r| {
                js_sys::Reflect::get(&r, &JsValue::from_str("results"))
                    .map(|rows| js_sys::Array::from(&rows))
                    .map_err(js_error)
            })
            .collect()
    }

    /// Runs a JS array of prepared statements as one transaction (uncounted: callers count)
    /// and answers D1's array of results.
    pub(crate) async fn batch_raw(&self, list: &js_sys::Array) -> StoreResult<JsValue> {
        let db: &JsValue = self.db.as_ref();
        let batch = js_sys::Reflect::get(db, &JsValue::from_str("batch"))
            .and_then(|f| f.dyn_into::<js_sys::Function>())
            .map_err(js_error)?;
        let promise = batch.call1(db, list).map_err(js_error)?;
        wasm_bindgen_futures::JsFuture::from(js_sys::Promise::resolve(&promise)).await.map_err(js_error)
    }

    /// The statements that durably record one delivery and its raw body. Run them in one
    /// batch with whatever else the delivery causes: a duplicate (shop, webhook id) makes the
    /// whole batch fail with `Conflict`, so a repeat never has a second effect.
    pub fn record_delivery(&self, d: &NewDelivery<'_>) -> StoreResult<Vec<D1PreparedStatement>> {
        let m = d.delivery;
        let insert = self.stmt(
            "INSERT INTO deliveries (shop, webhook_id, topic, event_id, triggered_at, api_version, received_at, \
             received_ms, body_size, body_hmac, order_id, outcome, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, strftime('%Y-%m-%dT%H:%M:%fZ', ?7 / 1000.0, 'unixepoch'), ?7, ?8, ?9, ?10, ?11, ?12)",
            &[
                s(&m.shop),
                s(&m.webhook_id),
                s(&m.topic),
                opt(m.event_id.as_deref()),
                opt(m.triggered_at.as_deref()),
                opt(m.api_version.as_deref()),
                n(d.received_ms),
                n(m.body_size as i64),
                s(&m.body_hmac),
                opt(d.order_id),
                s(d.outcome),
                opt(d.detail),
            ],
        )?;
        let Some(raw) = d.body else { return Ok(vec![insert]) };
        let (encoding, text) = match std::str::from_utf8(raw) {
            Ok(t) => ("utf8", t.to_string()),
            Err(_) => {
                use base64::Engine as _;
                ("base64", base64::engine::general_purpose::STANDARD.encode(raw))
            }
        };
        let body = self.stmt(
            "INSERT INTO delivery_bodies (delivery_id, shop, order_id, customer_id, encoding, body) \
             SELECT id, shop, order_id, ?3, ?4, ?5 FROM deliveries WHERE shop = ?1 AND webhook_id = ?2",
            &[s(&m.shop), s(&m.webhook_id), opt(d.customer_id), s(encoding), s(&text)],
        )?;
        Ok(vec![insert, body])
    }

    /// Runs statements as one transaction.
    pub async fn batch(&self, statements: Vec<D1PreparedStatement>) -> StoreResult<()> {
        self.count(statements.len());
        // The results are not read: converting each one's metadata is work for nothing.
        self.db.batch(statements).await?;
        Ok(())
    }

    /// Runs statements as one transaction; returns how many rows each one changed.
    pub async fn batch_changes(&self, statements: Vec<D1PreparedStatement>) -> StoreResult<Vec<usize>> {
        self.count(statements.len());
        let results = self.db.batch(statements).await?;
        let mut changes = Vec::with_capacity(results.len());
        for r in &results {
            changes.push(r.meta()?.and_then(|m| m.changes).unwrap_or(0));
        }
        Ok(changes)
    }

    /// Erases one customer's personal data in a shop (`customers/redact`): the raw bodies of
    /// the customer and of the listed orders (bodies held for review included, matched by the
    /// ids inside them), and for those orders the personal typed inputs (customer id, shipping
    /// address, billing country), the round's document, the email hash and any warehouse
    /// answer text kept with attempts and dead letters (the status code stays). Order rows,
    /// states, lines and the audit log hold no personal data and stay. Run in the delivery's
    /// batch, in order: the statements find the customer's orders through the bodies and the
    /// `orders.customer_id` the later ones erase.
    pub fn erase_customer(
        &self,
        shop: &str,
        customer_id: &str,
        order_ids: &[String],
    ) -> StoreResult<Vec<D1PreparedStatement>> {
        let ids = serde_json::to_string(order_ids).unwrap_or_else(|_| "[]".into());
        let args = [s(shop), s(customer_id), s(&ids)];
        // The customer's orders: those listed, those whose stored bodies carry the customer,
        // and those whose typed inputs do.
        const ORDERS: &str = "(order_id IN (SELECT value FROM json_each(?3)) OR order_id IN \
            (SELECT order_id FROM delivery_bodies WHERE shop = ?1 AND customer_id = ?2 AND order_id IS NOT NULL) \
            OR order_id IN (SELECT order_id FROM orders WHERE shop = ?1 AND customer_id = ?2))";
        let mut out = Vec::new();
        for sql in [
            format!("UPDATE orders SET {PERSONAL_INPUTS_NULL} WHERE shop = ?1 AND {ORDERS}"),
            format!(
                "UPDATE dead_letters SET response = NULL, last_error = COALESCE('HTTP ' || http_status, cause) \
                 WHERE shop = ?1 AND {ORDERS}"
            ),
            format!(
                "UPDATE submission_attempts SET error = COALESCE('HTTP ' || http_status, outcome) \
                 WHERE shop = ?1 AND error IS NOT NULL AND {ORDERS}"
            ),
            format!(
                "UPDATE cancel_attempts SET error = COALESCE('HTTP ' || http_status, outcome) \
                 WHERE shop = ?1 AND error IS NOT NULL AND {ORDERS}"
            ),
            format!("DELETE FROM delivery_bodies WHERE shop = ?1 AND (customer_id = ?2 OR {ORDERS})"),
            // Bodies recorded for review carry no ids in their columns: read them from the body.
            "DELETE FROM delivery_bodies WHERE shop = ?1 AND (order_id IS NULL OR customer_id IS NULL) \
             AND encoding = 'utf8' AND json_valid(body) \
             AND (CAST(json_extract(body, '$.customer.id') AS TEXT) = ?2 \
               OR CAST(json_extract(body, '$.id') AS TEXT) IN (SELECT value FROM json_each(?3)) \
               OR CAST(json_extract(body, '$.order_id') AS TEXT) IN (SELECT value FROM json_each(?3)))"
                .to_string(),
            // Last: the statements above find orders by it.
            "UPDATE orders SET customer_id = NULL WHERE shop = ?1 AND (customer_id = ?2 \
             OR order_id IN (SELECT value FROM json_each(?3)))"
                .to_string(),
        ] {
            out.push(self.stmt(&sql, &args)?);
        }
        Ok(out)
    }

    /// Deletes up to `limit` raw bodies of deliveries received before `cutoff_ms`, oldest
    /// first, whatever the state of their orders (later paths read the typed inputs).
    /// Returns how many were deleted.
    pub async fn purge_bodies(&self, cutoff_ms: i64, limit: i64) -> StoreResult<usize> {
        let changes = self
            .batch_changes(vec![self.stmt(
                "DELETE FROM delivery_bodies WHERE delivery_id IN (SELECT b.delivery_id FROM delivery_bodies b \
                 JOIN deliveries d ON d.id = b.delivery_id WHERE d.received_ms < ?1 \
                 ORDER BY b.delivery_id LIMIT ?2)",
                &[n(cutoff_ms), n(limit)],
            )?])
            .await?;
        Ok(changes.first().copied().unwrap_or(0))
    }

    /// Erases every stored body of a shop, and the personal data kept with its orders
    /// (`shop/redact`).
    pub fn erase_shop(&self, shop: &str) -> StoreResult<Vec<D1PreparedStatement>> {
        let mut out = Vec::new();
        let orders = format!("UPDATE orders SET {PERSONAL_INPUTS_NULL}, customer_id = NULL WHERE shop = ?1");
        for sql in [
            "DELETE FROM delivery_bodies WHERE shop = ?1",
            &orders,
            "UPDATE dead_letters SET response = NULL, last_error = COALESCE('HTTP ' || http_status, cause) WHERE shop = ?1",
            "UPDATE submission_attempts SET error = COALESCE('HTTP ' || http_status, outcome) WHERE shop = ?1 AND error IS NOT NULL",
            "UPDATE cancel_attempts SET error = COALESCE('HTTP ' || http_status, outcome) WHERE shop = ?1 AND error IS NOT NULL",
            "DELETE FROM privacy_requests WHERE shop = ?1",
            "DELETE FROM shopify_holds WHERE shop = ?1",
            "DELETE FROM shopify_fulfillment_orders WHERE shop = ?1",
            "DELETE FROM shopify_sync WHERE shop = ?1",
            "DELETE FROM shopify_sync_runs WHERE shop = ?1",
        ] {
            out.push(self.stmt(sql, &[s(shop)])?);
        }
        Ok(out)
    }
}

/// The `orders` columns that can hold a customer's personal data, but `customer_id` (which
/// the erasure finds orders by), set to NULL.
const PERSONAL_INPUTS_NULL: &str = "email_hash = NULL, ship_name = NULL, ship_first_name = NULL, \
    ship_last_name = NULL, ship_address1 = NULL, ship_address2 = NULL, ship_city = NULL, ship_zip = NULL, \
    ship_province_code = NULL, ship_country_code = NULL, billing_country = NULL, submission_document = NULL";

/// Where a recorded mode comes from (see [`Store::note_mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeSource {
    Set,
    Observed,
}

/// A stored body, decoded back to bytes.
pub fn decode_body(encoding: &str, body: String) -> Option<Vec<u8>> {
    match encoding {
        "utf8" => Some(body.into_bytes()),
        "base64" => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(body).ok()
        }
        _ => None,
    }
}

#[derive(serde::Deserialize)]
struct BodyRow {
    encoding: String,
    body: String,
}

/// One audit row. `detail` is JSON and never carries personal data.
pub struct AuditRow<'a> {
    pub at_ms: i64,
    pub shop: Option<&'a str>,
    pub order_id: Option<&'a str>,
    /// The order's row version this row takes; unique per order.
    pub seq: Option<i64>,
    pub segment: Option<&'a str>,
    pub event: &'a str,
    pub from_state: Option<&'a str>,
    pub to_state: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub rule_id: Option<&'a str>,
    pub rules_version: Option<&'a str>,
    pub actor: &'a str,
    pub detail: &'a serde_json::Value,
}

impl<'a> AuditRow<'a> {
    /// A row that moves no order: an event by `actor`, with nothing else set (callers add
    /// the shop, order, lane or reason with struct update syntax).
    pub fn event(at_ms: i64, event: &'a str, actor: &'a str, detail: &'a serde_json::Value) -> AuditRow<'a> {
        AuditRow {
            at_ms,
            shop: None,
            order_id: None,
            seq: None,
            segment: None,
            event,
            from_state: None,
            to_state: None,
            reason: None,
            rule_id: None,
            rules_version: None,
            actor,
            detail,
        }
    }
}

impl Store {
    pub fn audit(&self, r: &AuditRow<'_>) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            "INSERT INTO audit_log (at, at_ms, shop, order_id, seq, segment, event, from_state, to_state, reason, \
             rule_id, rules_version, actor, detail) \
             VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', ?1 / 1000.0, 'unixepoch'), ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            &[
                n(r.at_ms),
                opt(r.shop),
                opt(r.order_id),
                r.seq.map(n).unwrap_or(JsValue::NULL),
                opt(r.segment),
                s(r.event),
                opt(r.from_state),
                opt(r.to_state),
                opt(r.reason),
                opt(r.rule_id),
                opt(r.rules_version),
                s(r.actor),
                s(&r.detail.to_string()),
            ],
        )
    }

    /// Records the mode of a segment. Audits `mode_changed` only when it differs from the last
    /// mode recorded (so concurrent observers write one row), and stamps the release time when
    /// the segment becomes `auto`.
    ///
    /// An `Observed` `auto` (read from KV by routing or the gates) is not recorded within
    /// `KV_PROPAGATION_MS` of the last recorded change: KV may still show the old value at this
    /// location, and a stale `auto` right after a rollback must not record a release. A move
    /// toward `manual` or `shadow` is the safe side and is recorded at once.
    /// A `Set` mode (an operator's switch, a rollback) is always recorded.
    pub fn note_mode(
        &self,
        segment: &str,
        mode: crate::core::types::Mode,
        how: ModeSource,
        now_ms: i64,
        actor: &str,
        note: Option<&str>,
    ) -> StoreResult<Vec<D1PreparedStatement>> {
        let settle_ms = match (how, mode) {
            (ModeSource::Observed, crate::core::types::Mode::Auto) => {
                crate::core::lifecycle::KV_PROPAGATION_MS
            }
            _ => 0,
        };
        let audit = self.stmt(
            "INSERT INTO audit_log (at, at_ms, segment, event, actor, detail) \
             SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ?1 / 1000.0, 'unixepoch'), ?1, ?2, 'mode_changed', ?4, \
                    json_object('from', (SELECT mode FROM segments WHERE segment = ?2), 'to', ?3, \
                                'seen_at', strftime('%Y-%m-%dT%H:%M:%fZ', ?1 / 1000.0, 'unixepoch'), 'note', ?5) \
             WHERE NOT EXISTS (SELECT 1 FROM segments WHERE segment = ?2 AND (mode = ?3 OR seen_ms > ?1 - ?6))",
            &[n(now_ms), s(segment), s(mode.as_str()), s(actor), opt(note), n(settle_ms)],
        )?;
        let upsert = self.stmt(
            "INSERT INTO segments (segment, mode, seen_ms, released_ms) \
             VALUES (?1, ?2, ?3, CASE WHEN ?2 = 'auto' THEN ?3 END) \
             ON CONFLICT (segment) DO UPDATE SET mode = excluded.mode, seen_ms = excluded.seen_ms, \
               released_ms = CASE WHEN excluded.mode = 'auto' THEN excluded.seen_ms ELSE segments.released_ms END \
             WHERE segments.mode != excluded.mode AND segments.seen_ms <= ?3 - ?4",
            &[s(segment), s(mode.as_str()), n(now_ms), n(settle_ms)],
        )?;
        Ok(vec![audit, upsert])
    }

    /// Every SKU's claimable stock, as `GET /admin/stock` answers it.
    pub async fn stock_all(&self) -> StoreResult<String> {
        let st = self
            .stmt("SELECT sku, available, updated_ms, updated_by FROM stock ORDER BY sku LIMIT 10000", &[])?;
        let rows = self.rows_js(vec![st]).await?;
        Ok(format!(r#"{{"stock":{}}}"#, rows.first().map(|r| js_json(r)).unwrap_or_else(|| "[]".into())))
    }

    /// Sets available units per SKU in one transaction, with one audit row for the load.
    pub async fn put_stock(
        &self,
        rows: &[(String, i64)],
        now_ms: i64,
        actor: &str,
        note: Option<&str>,
    ) -> StoreResult<()> {
        let mut statements = Vec::with_capacity(rows.len() + 1);
        for (sku, available) in rows {
            statements.push(self.stmt(
                "INSERT INTO stock (sku, available, updated_ms, updated_by) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (sku) DO UPDATE SET available = excluded.available, \
                 updated_ms = excluded.updated_ms, updated_by = excluded.updated_by",
                &[s(sku), n(*available), n(now_ms), s(actor)],
            )?);
        }
        let detail = serde_json::json!({ "skus": rows.len(), "note": note });
        statements.push(self.audit(&AuditRow::event(now_ms, "stock_loaded", actor, &detail))?);
        self.batch(statements).await
    }
}

fn param(p: &crate::core::query::Param) -> JsValue {
    match p {
        crate::core::query::Param::Text(t) => s(t),
        crate::core::query::Param::Int(i) => n(*i),
    }
}

/// What orderlane keeps Shopify showing for an order (`shopify_holds`), for the order view.
#[derive(Debug, serde::Deserialize)]
pub struct ShopifyOut {
    pub desired: String,
    pub reason: Option<String>,
    pub version: i64,
    pub done_version: i64,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub updated_ms: i64,
    pub fulfillment_orders: Option<String>,
}

impl ShopifyOut {
    fn into_json(self) -> serde_json::Value {
        let fos: serde_json::Value =
            self.fulfillment_orders.as_deref().and_then(|f| serde_json::from_str(f).ok()).unwrap_or_default();
        serde_json::json!({
            "desired": self.desired, "reason": self.reason, "in_place": self.done_version >= self.version,
            "attempts": self.attempts, "last_error": self.last_error, "updated_ms": self.updated_ms,
            "fulfillment_orders": fos,
        })
    }
}

/// Orders waiting for a person, counted per state, reason and lane.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ExceptionGroup {
    pub state: String,
    pub reason: Option<String>,
    pub segment: String,
    pub count: i64,
    pub oldest_ms: i64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PlanRow {
    pub detail: String,
}

impl Store {
    /// Runs a built list query; returns its rows as D1 gives them.
    pub async fn list(&self, b: &crate::core::query::Built) -> StoreResult<js_sys::Array> {
        let args: Vec<JsValue> = b.params.iter().map(param).collect();
        Ok(self.rows_js(vec![self.stmt(&b.sql, &args)?]).await?.pop().unwrap_or_default())
    }

    /// SQLite's plan for a built query, for checking that filters use indexes.
    pub async fn plan(&self, b: &crate::core::query::Built) -> StoreResult<Vec<PlanRow>> {
        let args: Vec<JsValue> = b.params.iter().map(param).collect();
        Ok(self.stmt(&format!("EXPLAIN QUERY PLAN {}", b.sql), &args)?.all().await?.results()?)
    }

    /// Everything about one order: its row, timeline, deliveries, attempts and dead letters.
    /// `hold` and `fraud-check` orders counted per (state, reason, lane), with the oldest.
    pub async fn exception_summary(&self) -> StoreResult<Vec<ExceptionGroup>> {
        Ok(self
            .stmt(
                "SELECT state, reason, segment, COUNT(*) AS count, MIN(state_since_ms) AS oldest_ms FROM orders \
                 WHERE state IN ('hold', 'fraud-check') GROUP BY state, reason, segment ORDER BY state, reason, segment",
                &[],
            )?
            .all()
            .await?
            .results()?)
    }

    /// Everything about one order, as the JSON text `GET /admin/orders/{shop}/{id}` answers:
    /// the row, its timeline, deliveries, submission attempts, dead letters and Shopify hold,
    /// read in one round trip.
    pub async fn order_view(&self, shop: &str, order_id: &str) -> StoreResult<Option<String>> {
        let key = [s(shop), s(order_id)];
        let reads = vec![
            self.stmt(&format!("SELECT {ORDER_VIEW_COLUMNS} FROM orders WHERE shop = ?1 AND order_id = ?2"), &key)?,
            self.stmt(
                "SELECT id, at, at_ms, shop, order_id, seq, segment, event, from_state, to_state, reason, rule_id, \
                 rules_version, actor, detail FROM audit_log WHERE shop = ?1 AND order_id = ?2 ORDER BY id",
                &key,
            )?,
            self.stmt(
                "SELECT id, topic, webhook_id, triggered_at, received_at, outcome, detail FROM deliveries \
                 WHERE shop = ?1 AND order_id = ?2 ORDER BY received_ms, id",
                &key,
            )?,
            self.stmt(
                "SELECT submission, attempt, started_ms, finished_ms, outcome, http_status, error \
                 FROM submission_attempts WHERE shop = ?1 AND order_id = ?2 ORDER BY submission, attempt",
                &key,
            )?,
            self.stmt(
                "SELECT id, shop, order_id, submission, cause, attempts, last_error, http_status, response, created_at, \
                 created_ms AS at_ms, resolved_ms, resolved_by, resolution, note FROM dead_letters \
                 WHERE shop = ?1 AND order_id = ?2 ORDER BY id",
                &key,
            )?,
            self.stmt(
                "SELECT desired, reason, version, done_version, attempts, last_error, updated_ms, \
                 (SELECT json_group_array(json_object('id', fulfillment_order_id, 'orderlane_hold', hold_id)) \
                  FROM shopify_fulfillment_orders f WHERE f.shop = h.shop AND f.order_id = h.order_id) AS fulfillment_orders \
                 FROM shopify_holds h WHERE shop = ?1 AND order_id = ?2",
                &key,
            )?,
        ];
        let [order, timeline, deliveries, attempts, dead, shopify] =
            <[js_sys::Array; 6]>::try_from(self.rows_js(reads).await?)
                .map_err(|_| StoreError::Unavailable("D1 answered a different number of results".into()))?;
        if order.length() == 0 {
            return Ok(None);
        }
        let shopify = match shopify.length() {
            0 => "null".to_string(),
            _ => Some(js_json(&shopify.get(0)))
                .and_then(|t| serde_json::from_str::<ShopifyOut>(&t).ok())
                .map(|h| h.into_json().to_string())
                .unwrap_or_else(|| "null".to_string()),
        };
        Ok(Some(format!(
            r#"{{"order":{},"timeline":{},"deliveries":{},"submission_attempts":{},"dead_letters":{},"shopify_hold":{}}}"#,
            js_json(&order.get(0)),
            js_json(&timeline),
            js_json(&deliveries),
            js_json(&attempts),
            js_json(&dead),
            shopify
        )))
    }
}

/// The `orders` columns the API shows. Listed, never `*`: columns that hold personal data
/// stay out of the view.
const ORDER_VIEW_COLUMNS: &str =
    "shop, order_id, order_name, state, reason, segment, mode, shadow_state, shadow_reason, \
     rule_ids, explanation, rules_version, financial_status, risk_level, total_cents, \
     currency, order_updated_ms, seq, created_ms, routable_ms, routed_ms, held_ms, \
     resolved_ms, ready_ms, submitted_ms, failed_ms, state_since_ms, updated_ms, submission, \
     attempts, attempt_base, lease_until, next_attempt_ms, submission_delivery_id, \
     cancel_state, cancel_attempts";

#[derive(Debug, serde::Deserialize)]
pub struct DeadLetterRef {
    pub id: i64,
    pub shop: Option<String>,
    pub order_id: Option<String>,
    pub cause: String,
    pub resolved_ms: Option<i64>,
}

impl Store {
    pub async fn dead_letter_ref(&self, id: i64) -> StoreResult<Option<DeadLetterRef>> {
        let st = self.stmt(
            "SELECT id, shop, order_id, cause, resolved_ms FROM dead_letters WHERE id = ?1",
            &[n(id)],
        )?;
        Ok(st.first::<DeadLetterRef>(None).await?)
    }

    /// Open dead letters matching a filter, oldest first (for bulk re-drive).
    pub async fn dead_letters_matching(
        &self,
        conds: &[String],
        params: &[crate::core::query::Param],
        limit: i64,
    ) -> StoreResult<Vec<DeadLetterRef>> {
        let mut all = vec!["resolved_ms IS NULL".to_string()];
        all.extend(conds.iter().filter(|c| !c.contains("resolved_ms")).cloned());
        let sql = format!(
            "SELECT id, shop, order_id, cause, resolved_ms FROM dead_letters WHERE {} ORDER BY created_ms, id LIMIT {limit}",
            all.join(" AND ")
        );
        let args: Vec<JsValue> = params.iter().map(param).collect();
        Ok(self.stmt(&sql, &args)?.all().await?.results()?)
    }

    /// Marks a dead letter resolved; guarded so two operators cannot both resolve it.
    pub fn resolve_dead_letter(
        &self,
        id: i64,
        now_ms: i64,
        actor: &str,
        resolution: &str,
        note: &str,
    ) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            "UPDATE dead_letters SET resolved_ms = ?2, resolved_by = ?3, resolution = ?4, note = ?5 \
             WHERE id = ?1 AND resolved_ms IS NULL",
            &[n(id), n(now_ms), s(actor), s(resolution), s(note)],
        )
    }
}
