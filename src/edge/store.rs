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
        if text.contains("UNIQUE constraint failed") || text.contains("SQLITE_CONSTRAINT") {
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

fn s(v: &str) -> JsValue {
    JsValue::from_str(v)
}

fn opt(v: Option<&str>) -> JsValue {
    v.map(JsValue::from_str).unwrap_or(JsValue::NULL)
}

fn n(v: i64) -> JsValue {
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

    fn stmt(&self, sql: &str, args: &[JsValue]) -> StoreResult<D1PreparedStatement> {
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
        let results = self.db.batch(statements).await?;
        match results.iter().find_map(|r| r.error()) {
            Some(e) => Err(StoreError::Unavailable(e)),
            None => Ok(()),
        }
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
        let st = self.stmt("SELECT sku, available, updated_ms, updated_by FROM stock ORDER BY sku LIMIT 10000", &[])?;
        Ok(st.all().await?.results()?)
    }

    /// Sets available units per SKU in one transaction, with one audit row for the load.
    pub async fn put_stock(&self, rows: &[(String, i64)], now_ms: i64, actor: &str) -> StoreResult<()> {
        let mut statements = Vec::with_capacity(rows.len() + 1);
        for (sku, available) in rows {
            statements.push(self.stmt(
                "INSERT INTO stock (sku, available, updated_ms, updated_by) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (sku) DO UPDATE SET available = excluded.available, \
                 updated_ms = excluded.updated_ms, updated_by = excluded.updated_by",
                &[s(sku), n(*available), n(now_ms), s(actor)],
            )?);
        }
        let detail = serde_json::json!({ "skus": rows.len() });
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
