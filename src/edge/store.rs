//! The D1 store: all SQL lives here. Callers get typed results and a `StoreError` that
//! tells a lost race (a unique key refused the write) from storage being unavailable.

use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement};

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

pub struct Store {
    db: D1Database,
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
        Store { db }
    }

    pub(crate) fn stmt(&self, sql: &str, args: &[JsValue]) -> StoreResult<D1PreparedStatement> {
        Ok(self.db.prepare(sql).bind(args)?)
    }

    /// The id of an already recorded (shop, webhook id), if any.
    pub async fn delivery_id(&self, shop: &str, webhook_id: &str) -> StoreResult<Option<i64>> {
        let st = self.stmt(
            "SELECT id FROM deliveries WHERE shop = ?1 AND webhook_id = ?2",
            &[s(shop), s(webhook_id)],
        )?;
        Ok(st.first::<i64>(Some("id")).await?)
    }

    /// The statements that durably record one delivery and its raw body. Run them in one
    /// batch with whatever else the delivery causes: a duplicate (shop, webhook id) makes the
    /// whole batch fail with `Conflict`, so a repeat never has a second effect.
    pub fn record_delivery(&self, d: &NewDelivery<'_>) -> StoreResult<Vec<D1PreparedStatement>> {
        let m = d.delivery;
        let insert = self.stmt(
            "INSERT INTO deliveries (shop, webhook_id, topic, event_id, triggered_at, api_version, received_at, \
             received_ms, body_size, body_sha256, order_id, outcome, detail) \
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
                s(&m.body_sha256),
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
        self.batch_changes(statements).await.map(|_| ())
    }

    /// Runs statements as one transaction; returns how many rows each one changed.
    pub async fn batch_changes(&self, statements: Vec<D1PreparedStatement>) -> StoreResult<Vec<usize>> {
        let results = self.db.batch(statements).await?;
        let mut changes = Vec::with_capacity(results.len());
        for r in &results {
            changes.push(r.meta()?.and_then(|m| m.changes).unwrap_or(0));
        }
        Ok(changes)
    }

    /// Erases stored bodies of one customer (and of the listed orders) in a shop.
    pub fn erase_customer(
        &self,
        shop: &str,
        customer_id: &str,
        order_ids: &[String],
    ) -> StoreResult<Vec<D1PreparedStatement>> {
        let mut out = vec![self.stmt(
            "DELETE FROM delivery_bodies WHERE shop = ?1 AND customer_id = ?2",
            &[s(shop), s(customer_id)],
        )?];
        for id in order_ids {
            out.push(
                self.stmt(
                    "DELETE FROM delivery_bodies WHERE shop = ?1 AND order_id = ?2",
                    &[s(shop), s(id)],
                )?,
            );
        }
        Ok(out)
    }

    /// Erases every stored body of a shop.
    pub fn erase_shop(&self, shop: &str) -> StoreResult<Vec<D1PreparedStatement>> {
        Ok(vec![self.stmt("DELETE FROM delivery_bodies WHERE shop = ?1", &[s(shop)])?])
    }
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

#[derive(serde::Serialize, serde::Deserialize)]
pub struct StockRow {
    pub sku: String,
    pub available: i64,
    pub updated_ms: i64,
    pub updated_by: String,
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

    /// Records the mode seen for a segment. Audits `mode_changed` only when it differs from
    /// the last mode seen (so concurrent observers write one row), and stamps the release time
    /// when the segment becomes `auto`.
    pub fn note_mode(
        &self,
        segment: &str,
        mode: crate::core::types::Mode,
        now_ms: i64,
        actor: &str,
        note: Option<&str>,
    ) -> StoreResult<Vec<D1PreparedStatement>> {
        let audit = self.stmt(
            "INSERT INTO audit_log (at, at_ms, segment, event, actor, detail) \
             SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ?1 / 1000.0, 'unixepoch'), ?1, ?2, 'mode_changed', ?4, \
                    json_object('from', (SELECT mode FROM segments WHERE segment = ?2), 'to', ?3, \
                                'seen_at', strftime('%Y-%m-%dT%H:%M:%fZ', ?1 / 1000.0, 'unixepoch'), 'note', ?5) \
             WHERE NOT EXISTS (SELECT 1 FROM segments WHERE segment = ?2 AND mode = ?3)",
            &[n(now_ms), s(segment), s(mode.as_str()), s(actor), opt(note)],
        )?;
        let upsert = self.stmt(
            "INSERT INTO segments (segment, mode, seen_ms, released_ms) \
             VALUES (?1, ?2, ?3, CASE WHEN ?2 = 'auto' THEN ?3 END) \
             ON CONFLICT (segment) DO UPDATE SET mode = excluded.mode, seen_ms = excluded.seen_ms, \
               released_ms = CASE WHEN excluded.mode = 'auto' THEN excluded.seen_ms ELSE segments.released_ms END \
             WHERE segments.mode != excluded.mode",
            &[s(segment), s(mode.as_str()), n(now_ms)],
        )?;
        Ok(vec![audit, upsert])
    }

    pub async fn stock_all(&self) -> StoreResult<Vec<StockRow>> {
        let st = self
            .stmt("SELECT sku, available, updated_ms, updated_by FROM stock ORDER BY sku LIMIT 10000", &[])?;
        Ok(st.all().await?.results()?)
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
        statements.push(self.audit(&AuditRow {
            at_ms: now_ms,
            shop: None,
            order_id: None,
            seq: None,
            segment: None,
            event: "stock_loaded",
            from_state: None,
            to_state: None,
            reason: None,
            rule_id: None,
            rules_version: None,
            actor,
            detail: &detail,
        })?);
        self.batch(statements).await
    }
}

/// The `orders` columns the edge works with.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct OrderRow {
    pub shop: String,
    pub order_id: String,
    pub order_name: Option<String>,
    pub state: String,
    pub segment: String,
    pub rules_version: String,
    pub payload_delivery_id: Option<i64>,
    pub submission: i64,
    pub lease_until: Option<i64>,
}

const ORDER_COLUMNS: &str =
    "shop, order_id, order_name, state, segment, rules_version, payload_delivery_id, submission, lease_until";

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

/// How one submission attempt ended, for `finish_attempt`.
pub struct AttemptEnd<'a> {
    pub outcome: &'a str,
    pub http_status: Option<u16>,
    pub error: Option<&'a str>,
}

impl Store {
    pub async fn order(&self, shop: &str, order_id: &str) -> StoreResult<Option<OrderRow>> {
        let st = self.stmt(
            &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE shop = ?1 AND order_id = ?2"),
            &[s(shop), s(order_id)],
        )?;
        Ok(st.first::<OrderRow>(None).await?)
    }

    pub async fn body(&self, delivery_id: i64) -> StoreResult<Option<Vec<u8>>> {
        let st = self
            .stmt("SELECT encoding, body FROM delivery_bodies WHERE delivery_id = ?1", &[n(delivery_id)])?;
        Ok(st.first::<BodyRow>(None).await?.and_then(|r| decode_body(&r.encoding, r.body)))
    }

    /// Claims attempt `attempt` of `submission` for this consumer: true when this call owns it.
    /// The order must still be ready, in auto mode, at the previous attempt (or at this one
    /// whose holder's lease ran out), and no other attempt may be in flight.
    #[allow(clippy::too_many_arguments)]
    pub async fn claim_attempt(
        &self,
        shop: &str,
        order_id: &str,
        submission: i64,
        attempt: i64,
        lease_id: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> StoreResult<bool> {
        let claim = self.stmt(
            "UPDATE orders SET attempts = ?4, lease_until = ?5 + ?6, lease_id = ?7 \
             WHERE shop = ?1 AND order_id = ?2 AND state = 'ready-for-fulfilment' AND mode = 'auto' \
               AND submission = ?3 AND attempts IN (?4 - 1, ?4) AND (lease_until IS NULL OR lease_until < ?5) \
               AND NOT EXISTS (SELECT 1 FROM submission_attempts a WHERE a.shop = ?1 AND a.order_id = ?2 \
                 AND a.submission = ?3 AND a.attempt = ?4 AND a.finished_ms IS NOT NULL)",
            &[s(shop), s(order_id), n(submission), n(attempt), n(now_ms), n(lease_ms), s(lease_id)],
        )?;
        let result = claim.run().await?;
        let changed = result.meta()?.and_then(|m| m.changes).unwrap_or(0);
        if changed == 1 {
            let record = self.stmt(
                "INSERT INTO submission_attempts (shop, order_id, submission, attempt, started_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO UPDATE SET started_ms = excluded.started_ms, \
                 finished_ms = NULL, outcome = NULL, http_status = NULL, error = NULL",
                &[s(shop), s(order_id), n(submission), n(attempt), n(now_ms)],
            )?;
            record.run().await?;
        }
        Ok(changed == 1)
    }

    /// Takes an in-flight lease on a ready order without starting an attempt (to move it out
    /// of ready): true when this call owns it.
    pub async fn take_lease(
        &self,
        shop: &str,
        order_id: &str,
        lease_id: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> StoreResult<bool> {
        let st = self.stmt(
            "UPDATE orders SET lease_until = ?3 + ?4, lease_id = ?5 \
             WHERE shop = ?1 AND order_id = ?2 AND state = 'ready-for-fulfilment' AND (lease_until IS NULL OR lease_until < ?3)",
            &[s(shop), s(order_id), n(now_ms), n(lease_ms), s(lease_id)],
        )?;
        Ok(st.run().await?.meta()?.and_then(|m| m.changes).unwrap_or(0) == 1)
    }

    /// Gives up a lease this consumer holds, leaving the order ready.
    pub async fn free_lease(&self, shop: &str, order_id: &str, lease_id: &str) -> StoreResult<()> {
        let st = self.stmt(
            "UPDATE orders SET lease_until = NULL, lease_id = NULL WHERE shop = ?1 AND order_id = ?2 AND lease_id = ?3",
            &[s(shop), s(order_id), s(lease_id)],
        )?;
        st.run().await?;
        Ok(())
    }

    /// Records how an attempt ended.
    pub fn finish_attempt(
        &self,
        shop: &str,
        order_id: &str,
        submission: i64,
        attempt: i64,
        now_ms: i64,
        end: &AttemptEnd<'_>,
    ) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            "UPDATE submission_attempts SET finished_ms = ?5, outcome = ?6, http_status = ?7, error = ?8 \
             WHERE shop = ?1 AND order_id = ?2 AND submission = ?3 AND attempt = ?4",
            &[
                s(shop),
                s(order_id),
                n(submission),
                n(attempt),
                n(now_ms),
                s(end.outcome),
                end.http_status.map(|c| n(i64::from(c))).unwrap_or(JsValue::NULL),
                opt(end.error),
            ],
        )
    }

    /// Moves an order held by `lease_id` to a new state and writes its audit row with the next
    /// seq, in one batch with `extra`. Clears the lease. Times named in `stamps` are set to now.
    #[allow(clippy::too_many_arguments)]
    pub fn leased_transition(
        &self,
        row: &OrderRow,
        lease_id: &str,
        to_state: &str,
        reason: Option<&str>,
        stamps: &[&str],
        event: &str,
        actor: &str,
        detail: &serde_json::Value,
        now_ms: i64,
    ) -> StoreResult<Vec<D1PreparedStatement>> {
        let mut sets = String::new();
        for col in stamps {
            // Column names come from this crate only, never from input.
            sets.push_str(&format!(", {col} = COALESCE({col}, ?5)"));
        }
        let update = self.stmt(
            &format!(
                "UPDATE orders SET state = ?3, reason = ?4, state_since_ms = ?5, updated_ms = ?5, seq = seq + 1, \
                 lease_until = NULL, lease_id = NULL{sets} WHERE shop = ?1 AND order_id = ?2 AND lease_id = ?6"
            ),
            &[s(&row.shop), s(&row.order_id), s(to_state), opt(reason), n(now_ms), s(lease_id)],
        )?;
        let audit = self.stmt(
            "INSERT INTO audit_log (at, at_ms, shop, order_id, seq, segment, event, from_state, to_state, reason, \
             rules_version, actor, detail) \
             SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ?3 / 1000.0, 'unixepoch'), ?3, shop, order_id, seq, segment, ?4, \
                    ?5, state, reason, rules_version, ?6, ?7 \
             FROM orders WHERE shop = ?1 AND order_id = ?2 AND state = ?8 AND lease_id IS NULL AND updated_ms = ?3",
            &[s(&row.shop), s(&row.order_id), n(now_ms), s(event), s(&row.state), s(actor), s(&detail.to_string()), s(to_state)],
        )?;
        Ok(vec![update, audit])
    }

    /// Releases a lease without changing state (the attempt will be retried later).
    pub fn release_lease(
        &self,
        row: &OrderRow,
        lease_id: &str,
        now_ms: i64,
        audit: &AuditRow<'_>,
    ) -> StoreResult<Vec<D1PreparedStatement>> {
        let update = self.stmt(
            "UPDATE orders SET lease_until = NULL, lease_id = NULL, enqueued_ms = ?3, updated_ms = ?3 \
             WHERE shop = ?1 AND order_id = ?2 AND lease_id = ?4",
            &[s(&row.shop), s(&row.order_id), n(now_ms), s(lease_id)],
        )?;
        Ok(vec![update, self.audit(audit)?])
    }

    #[allow(clippy::too_many_arguments)]
    pub fn dead_letter(
        &self,
        shop: Option<&str>,
        order_id: Option<&str>,
        submission: Option<i64>,
        cause: &str,
        attempts: i64,
        last_error: Option<&str>,
        http_status: Option<u16>,
        response: Option<&str>,
        message: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            "INSERT INTO dead_letters (shop, order_id, submission, cause, attempts, last_error, http_status, response, \
             message, created_at, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, strftime('%Y-%m-%dT%H:%M:%fZ', ?10 / 1000.0, 'unixepoch'), ?10)",
            &[
                opt(shop),
                opt(order_id),
                submission.map(n).unwrap_or(JsValue::NULL),
                s(cause),
                n(attempts),
                opt(last_error),
                http_status.map(|c| n(i64::from(c))).unwrap_or(JsValue::NULL),
                opt(response),
                opt(message),
                n(now_ms),
            ],
        )
    }

    /// Drops an order's reservations without returning the units (the warehouse said they
    /// are not there).
    pub fn drop_reservations(&self, shop: &str, order_id: &str) -> StoreResult<D1PreparedStatement> {
        self.stmt("DELETE FROM reservations WHERE shop = ?1 AND order_id = ?2", &[s(shop), s(order_id)])
    }

    /// Marks an order's ready state as handed to the queue.
    pub fn mark_enqueued(&self, shop: &str, order_id: &str, now_ms: i64) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            "UPDATE orders SET enqueued_ms = ?3 WHERE shop = ?1 AND order_id = ?2 AND state = 'ready-for-fulfilment'",
            &[s(shop), s(order_id), n(now_ms)],
        )
    }
}

fn param(p: &crate::core::query::Param) -> JsValue {
    match p {
        crate::core::query::Param::Text(t) => s(t),
        crate::core::query::Param::Int(i) => n(*i),
    }
}

/// One audit row as the API returns it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct AuditOut {
    pub id: i64,
    pub at: String,
    pub at_ms: i64,
    pub shop: Option<String>,
    pub order_id: Option<String>,
    pub seq: Option<i64>,
    pub segment: Option<String>,
    pub event: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub reason: Option<String>,
    pub rule_id: Option<String>,
    pub rules_version: Option<String>,
    pub actor: String,
    pub detail: Option<String>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ExceptionOut {
    pub id: i64,
    pub shop: String,
    pub order_id: String,
    pub order_name: Option<String>,
    pub state: String,
    pub reason: Option<String>,
    pub segment: String,
    pub mode: String,
    pub rule_ids: Option<String>,
    pub explanation: Option<String>,
    pub rules_version: String,
    pub at_ms: i64,
    pub since: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct DeadLetterOut {
    pub id: i64,
    pub shop: Option<String>,
    pub order_id: Option<String>,
    pub submission: Option<i64>,
    pub cause: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub http_status: Option<i64>,
    pub response: Option<String>,
    pub created_at: String,
    pub at_ms: i64,
    pub resolved_ms: Option<i64>,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PlanRow {
    pub detail: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct DeliveryOut {
    pub id: i64,
    pub topic: String,
    pub webhook_id: String,
    pub triggered_at: Option<String>,
    pub received_at: String,
    pub outcome: String,
    pub detail: Option<String>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct AttemptOut {
    pub submission: i64,
    pub attempt: i64,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub outcome: Option<String>,
    pub http_status: Option<i64>,
    pub error: Option<String>,
}

impl Store {
    /// Runs a built list query; returns its rows.
    pub async fn list<T: for<'de> serde::Deserialize<'de>>(
        &self,
        b: &crate::core::query::Built,
    ) -> StoreResult<Vec<T>> {
        let args: Vec<JsValue> = b.params.iter().map(param).collect();
        Ok(self.stmt(&b.sql, &args)?.all().await?.results()?)
    }

    /// SQLite's plan for a built query, for checking that filters use indexes.
    pub async fn plan(&self, b: &crate::core::query::Built) -> StoreResult<Vec<PlanRow>> {
        let args: Vec<JsValue> = b.params.iter().map(param).collect();
        Ok(self.stmt(&format!("EXPLAIN QUERY PLAN {}", b.sql), &args)?.all().await?.results()?)
    }

    /// Everything about one order: its row, timeline, deliveries, attempts and dead letters.
    pub async fn order_view(&self, shop: &str, order_id: &str) -> StoreResult<Option<serde_json::Value>> {
        let Some(row) = self
            .stmt("SELECT * FROM orders WHERE shop = ?1 AND order_id = ?2", &[s(shop), s(order_id)])?
            .first::<OrderFull>(None)
            .await?
        else {
            return Ok(None);
        };
        let key = [s(shop), s(order_id)];
        let timeline: Vec<AuditOut> = self
            .stmt(
                "SELECT id, at, at_ms, shop, order_id, seq, segment, event, from_state, to_state, reason, rule_id, \
                 rules_version, actor, detail FROM audit_log WHERE shop = ?1 AND order_id = ?2 ORDER BY id",
                &key,
            )?
            .all()
            .await?
            .results()?;
        let deliveries: Vec<DeliveryOut> = self
            .stmt(
                "SELECT id, topic, webhook_id, triggered_at, received_at, outcome, detail FROM deliveries \
                 WHERE shop = ?1 AND order_id = ?2 ORDER BY received_ms, id",
                &key,
            )?
            .all()
            .await?
            .results()?;
        let attempts: Vec<AttemptOut> = self
            .stmt(
                "SELECT submission, attempt, started_ms, finished_ms, outcome, http_status, error \
                 FROM submission_attempts WHERE shop = ?1 AND order_id = ?2 ORDER BY submission, attempt",
                &key,
            )?
            .all()
            .await?
            .results()?;
        let dead: Vec<DeadLetterOut> = self
            .stmt(
                "SELECT id, shop, order_id, submission, cause, attempts, last_error, http_status, response, created_at, \
                 created_ms AS at_ms, resolved_ms, resolved_by, resolution, note FROM dead_letters \
                 WHERE shop = ?1 AND order_id = ?2 ORDER BY id",
                &key,
            )?
            .all()
            .await?
            .results()?;
        Ok(Some(serde_json::json!({
            "order": row, "timeline": timeline, "deliveries": deliveries,
            "submission_attempts": attempts, "dead_letters": dead,
        })))
    }
}

/// The full `orders` row (no personal data is stored there).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct OrderFull {
    pub shop: String,
    pub order_id: String,
    pub order_name: Option<String>,
    pub state: String,
    pub reason: Option<String>,
    pub segment: String,
    pub mode: String,
    pub shadow_state: Option<String>,
    pub shadow_reason: Option<String>,
    pub rule_ids: Option<String>,
    pub explanation: Option<String>,
    pub rules_version: String,
    pub financial_status: Option<String>,
    pub risk_level: Option<String>,
    pub total_cents: Option<i64>,
    pub currency: Option<String>,
    pub order_updated_ms: Option<i64>,
    pub seq: i64,
    pub created_ms: i64,
    pub routable_ms: Option<i64>,
    pub routed_ms: Option<i64>,
    pub held_ms: Option<i64>,
    pub resolved_ms: Option<i64>,
    pub ready_ms: Option<i64>,
    pub submitted_ms: Option<i64>,
    pub failed_ms: Option<i64>,
    pub state_since_ms: i64,
    pub updated_ms: i64,
    pub submission: i64,
    pub attempts: i64,
    pub lease_until: Option<i64>,
}

#[derive(Debug, serde::Deserialize)]
pub struct StrandedRow {
    pub shop: String,
    pub order_id: String,
    pub submission: i64,
    pub attempts: i64,
}

impl Store {
    /// Ready orders of auto lanes that no queue message is known to be carrying: never
    /// enqueued (older than `fresh_ms`, so a webhook still enqueueing is left alone), whose
    /// last scheduled retry is overdue by more than `overdue_ms`, or whose attempt's lease ran
    /// out (leases are cleared when an attempt ends, so its consumer died).
    pub async fn stranded_ready(
        &self,
        now_ms: i64,
        fresh_ms: i64,
        overdue_ms: i64,
    ) -> StoreResult<Vec<StrandedRow>> {
        let st = self.stmt(
            "SELECT shop, order_id, submission, attempts FROM orders \
             WHERE state = 'ready-for-fulfilment' AND mode = 'auto' \
               AND ((enqueued_ms IS NULL AND state_since_ms < ?1 - ?2) OR enqueued_ms < ?1 - ?3 \
                    OR lease_until < ?1) \
               AND (lease_until IS NULL OR lease_until < ?1) \
             ORDER BY state_since_ms LIMIT 500",
            &[n(now_ms), n(fresh_ms), n(overdue_ms)],
        )?;
        Ok(st.all().await?.results()?)
    }
}

/// What routing reads about an order before deciding, in one round trip.
pub struct RouteReads {
    pub row: Option<RouteRow>,
    pub reservations: Vec<(String, i64)>,
    pub stock: std::collections::BTreeMap<String, i64>,
    pub email_orders: u32,
    pub early_risk_body: Option<Vec<u8>>,
}

/// The `orders` columns an `OrderRecord` is rebuilt from.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RouteRow {
    pub segment: String,
    pub state: String,
    pub reason: Option<String>,
    pub order_created_ms: Option<i64>,
    pub created_ms: i64,
    pub order_updated_ms: Option<i64>,
    pub event_triggered_ms: Option<i64>,
    pub risk_level: Option<String>,
    pub risk_at_ms: Option<i64>,
    pub submitted_ms: Option<i64>,
    pub rules_version: String,
    pub payload_delivery_id: Option<i64>,
    pub seq: i64,
}

#[derive(serde::Deserialize)]
struct SkuQty {
    sku: String,
    quantity: i64,
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

/// The values one routing outcome writes to `orders`.
pub struct OrderWrite<'a> {
    pub shop: &'a str,
    pub order_id: &'a str,
    pub webhook_id: Option<&'a str>,
    pub expected_seq: i64,
    pub new_seq: i64,
    pub now_ms: i64,
    pub state: &'a str,
    pub reason: Option<&'a str>,
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
    pub order_name: &'a str,
    pub financial_status: Option<&'a str>,
    pub email_hash: Option<&'a str>,
    pub total_cents: i64,
    pub currency: Option<&'a str>,
    pub paid: bool,
}

impl Store {
    pub async fn route_reads(
        &self,
        shop: &str,
        order_id: &str,
        skus: &[String],
        email_hash: Option<&str>,
        email_since_ms: i64,
    ) -> StoreResult<RouteReads> {
        let mut statements = vec![
            self.stmt(
                "SELECT segment, state, reason, order_created_ms, created_ms, order_updated_ms, event_triggered_ms, \
                 risk_level, risk_at_ms, submitted_ms, rules_version, payload_delivery_id, seq \
                 FROM orders WHERE shop = ?1 AND order_id = ?2",
                &[s(shop), s(order_id)],
            )?,
            self.stmt(
                "SELECT sku, quantity FROM reservations WHERE shop = ?1 AND order_id = ?2 ORDER BY sku",
                &[s(shop), s(order_id)],
            )?,
            self.stmt(
                "SELECT COUNT(*) AS n FROM orders WHERE shop = ?1 AND email_hash = ?2 AND order_created_ms >= ?3 \
                 AND order_id != ?4",
                &[s(shop), opt(email_hash), n(email_since_ms), s(order_id)],
            )?,
            self.stmt(
                "SELECT b.encoding, b.body FROM deliveries d JOIN delivery_bodies b ON b.delivery_id = d.id \
                 WHERE d.shop = ?1 AND d.order_id = ?2 AND d.topic = 'orders/risk_assessment_changed' \
                 ORDER BY d.id DESC LIMIT 1",
                &[s(shop), s(order_id)],
            )?,
        ];
        // Stock rows for every SKU the order asks for (bound, never spliced).
        let skus: Vec<&String> = skus.iter().take(90).collect();
        if !skus.is_empty() {
            let marks: Vec<String> = (1..=skus.len()).map(|i| format!("?{i}")).collect();
            let args: Vec<JsValue> = skus.iter().map(|k| s(k)).collect();
            statements.push(self.stmt(
                &format!("SELECT sku, available FROM stock WHERE sku IN ({})", marks.join(", ")),
                &args,
            )?);
        }
        let results = self.db.batch(statements).await?;
        let row =
            results.first().map(|r| r.results::<RouteRow>()).transpose()?.and_then(|v| v.into_iter().next());
        let reservations = match results.get(1) {
            Some(r) => r.results::<SkuQty>()?.into_iter().map(|x| (x.sku, x.quantity)).collect(),
            None => Vec::new(),
        };
        let email_orders = match (email_hash, results.get(2)) {
            (Some(_), Some(r)) => r.results::<Count>()?.first().map(|c| c.n).unwrap_or(0) as u32 + 1,
            _ => 1,
        };
        let early_risk_body = match results.get(3) {
            Some(r) => {
                r.results::<BodyRow>()?.into_iter().next().and_then(|b| decode_body(&b.encoding, b.body))
            }
            None => None,
        };
        let stock = match results.get(4) {
            Some(r) => r.results::<SkuAvail>()?.into_iter().map(|x| (x.sku, x.available)).collect(),
            None => Default::default(),
        };
        Ok(RouteReads { row, reservations, stock, email_orders, early_risk_body })
    }

    /// The order upsert. Guarded by the expected row version: a concurrent writer makes this
    /// a no-op and the audit rows' (shop, order_id, seq) key then fails the whole batch.
    pub fn write_order(&self, w: &OrderWrite<'_>) -> StoreResult<D1PreparedStatement> {
        let d = w.decision.as_ref();
        let o = w.order.as_ref();
        let flag = |b: bool| n(i64::from(b));
        let args = [
            s(w.shop),                                            // 1
            s(w.order_id),                                        // 2
            opt(o.map(|o| o.order_name)),                         // 3
            s(w.state),                                           // 4
            opt(w.reason),                                        // 5
            s(w.segment),                                         // 6
            opt(d.map(|d| d.mode)),                               // 7
            opt(d.and_then(|d| d.shadow_state)),                  // 8
            opt(d.and_then(|d| d.shadow_reason)),                 // 9
            opt(d.map(|d| d.rule_ids)),                           // 10
            opt(d.map(|d| d.explanation)),                        // 11
            s(w.rules_version),                                   // 12
            opt(o.and_then(|o| o.financial_status)),              // 13
            opt(w.risk_level),                                    // 14
            w.risk_at_ms.map(n).unwrap_or(JsValue::NULL),         // 15
            opt(o.and_then(|o| o.email_hash)),                    // 16
            o.map(|o| n(o.total_cents)).unwrap_or(JsValue::NULL), // 17
            opt(o.and_then(|o| o.currency)),                      // 18
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
        ];
        self.stmt(
            "INSERT INTO orders (shop, order_id, order_name, state, reason, segment, mode, shadow_state, shadow_reason, \
               rule_ids, explanation, rules_version, financial_status, risk_level, risk_at_ms, email_hash, total_cents, \
               currency, order_updated_ms, event_triggered_ms, payload_delivery_id, seq, created_ms, order_created_ms, \
               routable_ms, routed_ms, held_ms, ready_ms, state_since_ms, updated_ms, submission) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, COALESCE(?7, 'manual'), ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
               ?19, ?20, (SELECT id FROM deliveries WHERE shop = ?1 AND webhook_id = ?21), ?22, ?23, ?24, \
               CASE WHEN ?25 = 1 THEN ?23 END, \
               CASE WHEN ?4 IN ('ready-for-fulfilment', 'hold') THEN ?23 END, \
               CASE WHEN ?4 = 'hold' THEN ?23 END, \
               CASE WHEN ?4 = 'ready-for-fulfilment' THEN ?23 END, \
               ?23, ?23, CASE WHEN ?4 = 'ready-for-fulfilment' THEN 1 ELSE 0 END) \
             ON CONFLICT (shop, order_id) DO UPDATE SET \
               order_name = CASE WHEN ?28 = 1 THEN ?3 ELSE order_name END, \
               financial_status = CASE WHEN ?28 = 1 THEN ?13 ELSE financial_status END, \
               email_hash = CASE WHEN ?28 = 1 THEN ?16 ELSE email_hash END, \
               total_cents = CASE WHEN ?28 = 1 THEN ?17 ELSE total_cents END, \
               currency = CASE WHEN ?28 = 1 THEN ?18 ELSE currency END, \
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
               submission = CASE WHEN ?4 = 'ready-for-fulfilment' AND state != ?4 THEN \
                 submission + CASE WHEN submission = 0 OR EXISTS (SELECT 1 FROM submission_attempts a \
                   WHERE a.shop = ?1 AND a.order_id = ?2 AND a.submission = orders.submission \
                   AND a.outcome IN ('refused', 'out_of_stock')) THEN 1 ELSE 0 END \
                 ELSE submission END, \
               attempts = CASE WHEN ?4 = 'ready-for-fulfilment' AND state != ?4 THEN 0 ELSE attempts END, \
               enqueued_ms = CASE WHEN ?4 = 'ready-for-fulfilment' AND state != ?4 THEN NULL ELSE enqueued_ms END, \
               state = ?4, reason = ?5 \
             WHERE orders.seq = ?26",
            &args,
        )
    }

    /// Claims units for an order. Over-claiming violates `available >= 0` and fails the batch.
    pub fn reserve(
        &self,
        shop: &str,
        order_id: &str,
        sku: &str,
        qty: i64,
        now_ms: i64,
    ) -> StoreResult<Vec<D1PreparedStatement>> {
        Ok(vec![
            self.stmt(
                "UPDATE stock SET available = available - ?2, updated_ms = ?3 WHERE sku = ?1",
                &[s(sku), n(qty), n(now_ms)],
            )?,
            self.stmt(
                "INSERT INTO reservations (shop, order_id, sku, quantity, created_ms) \
                 SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM stock WHERE sku = ?3) \
                 ON CONFLICT (shop, order_id, sku) DO UPDATE SET quantity = quantity + excluded.quantity",
                &[s(shop), s(order_id), s(sku), n(qty), n(now_ms)],
            )?,
        ])
    }

    /// Gives units back.
    pub fn release(
        &self,
        shop: &str,
        order_id: &str,
        sku: &str,
        qty: i64,
        now_ms: i64,
    ) -> StoreResult<Vec<D1PreparedStatement>> {
        Ok(vec![
            self.stmt(
                "UPDATE stock SET available = available + ?2, updated_ms = ?3 WHERE sku = ?1",
                &[s(sku), n(qty), n(now_ms)],
            )?,
            self.stmt(
                "DELETE FROM reservations WHERE shop = ?1 AND order_id = ?2 AND sku = ?3",
                &[s(shop), s(order_id), s(sku)],
            )?,
        ])
    }
}

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

    /// Stamps the operator resolution of an exception (for the triage-time KPI).
    pub fn stamp_resolved(
        &self,
        shop: &str,
        order_id: &str,
        now_ms: i64,
    ) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            "UPDATE orders SET resolved_ms = COALESCE(resolved_ms, ?3) WHERE shop = ?1 AND order_id = ?2",
            &[s(shop), s(order_id), n(now_ms)],
        )
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct OrderKey {
    pub shop: String,
    pub order_id: String,
}

impl Store {
    /// Orders waiting on a clock: `new` (payment window) and `fraud-check` (verdict timeout).
    pub async fn waiting_orders(&self) -> StoreResult<Vec<OrderKey>> {
        let st = self.stmt(
            "SELECT shop, order_id FROM orders WHERE state = 'new' \
             UNION ALL SELECT shop, order_id FROM orders WHERE state = 'fraud-check' LIMIT 1000",
            &[],
        )?;
        Ok(st.all().await?.results()?)
    }
}
