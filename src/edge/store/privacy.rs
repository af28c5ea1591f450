//! `privacy_requests`: customers' data requests, and what orderlane holds for one.

use worker::D1PreparedStatement;

use super::{n, opt, s, Store, StoreResult};
use crate::core::privacy::{DataRequest, DATA_REQUEST_DUE_MS};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PrivacyRequestRow {
    pub id: i64,
    pub shop: String,
    pub request_id: Option<String>,
    pub customer_id: Option<String>,
    pub orders_requested: String,
    pub received_at: String,
    pub received_ms: i64,
}

impl PrivacyRequestRow {
    /// The row as the API shows it: orders as a list, and the merchant's answer-by date.
    pub fn to_json(&self) -> serde_json::Value {
        let orders: Vec<String> = serde_json::from_str(&self.orders_requested).unwrap_or_default();
        serde_json::json!({
            "id": self.id, "shop": self.shop, "request_id": self.request_id, "customer_id": self.customer_id,
            "orders_requested": orders, "received_at": self.received_at,
            "answer_by_ms": self.received_ms + DATA_REQUEST_DUE_MS,
        })
    }
}

#[derive(serde::Deserialize)]
struct Held {
    order_id: Option<String>,
    delivery_id: i64,
    topic: String,
    received_at: String,
}

/// Orders shown in full per request (the rest are listed in `bodies_held` and by id).
const MAX_ORDERS: usize = 100;

#[derive(serde::Deserialize)]
struct OrderId {
    order_id: String,
}

/// The `orders` columns that can hold a customer's personal data, as a data request shows
/// them (the email hash and the round's document only as whether they are held).
const PERSONAL_COLUMNS: &str = "customer_id, email_hash IS NOT NULL AS email_hash_held, ship_name, ship_first_name, \
    ship_last_name, ship_address1, ship_address2, ship_city, ship_zip, ship_province_code, ship_country_code, \
    billing_country, submission_document IS NOT NULL AS submission_document_held";

const COLUMNS: &str = "id, shop, request_id, customer_id, orders_requested, received_at, received_ms";

impl Store {
    /// Records a data request with the delivery that carried it (same batch). A repeat of
    /// the same request id records nothing new.
    pub fn record_data_request(
        &self,
        shop: &str,
        webhook_id: &str,
        r: &DataRequest,
        now_ms: i64,
    ) -> StoreResult<D1PreparedStatement> {
        let orders: Vec<&str> = r.orders_requested.iter().map(|i| i.0.as_str()).collect();
        self.stmt(
            "INSERT INTO privacy_requests (shop, request_id, customer_id, orders_requested, delivery_id, received_at, \
             received_ms) SELECT ?1, ?3, ?4, ?5, id, strftime('%Y-%m-%dT%H:%M:%fZ', ?6 / 1000.0, 'unixepoch'), ?6 \
             FROM deliveries WHERE shop = ?1 AND webhook_id = ?2 ON CONFLICT (shop, request_id) DO NOTHING",
            &[
                s(shop),
                s(webhook_id),
                opt(r.request_id.as_deref()),
                opt(r.customer_id.as_ref().map(|c| c.0.as_str())),
                s(&serde_json::to_string(&orders).unwrap_or_else(|_| "[]".into())),
                n(now_ms),
            ],
        )
    }

    /// The latest data requests, newest first.
    pub async fn privacy_requests(&self, limit: i64) -> StoreResult<Vec<PrivacyRequestRow>> {
        let st = self.stmt(
            &format!("SELECT {COLUMNS} FROM privacy_requests ORDER BY received_ms DESC, id DESC LIMIT ?1"),
            &[n(limit)],
        )?;
        Ok(st.all().await?.results()?)
    }

    pub async fn privacy_request(&self, id: i64) -> StoreResult<Option<PrivacyRequestRow>> {
        let st = self.stmt(&format!("SELECT {COLUMNS} FROM privacy_requests WHERE id = ?1"), &[n(id)])?;
        Ok(st.first::<PrivacyRequestRow>(None).await?)
    }

    /// What orderlane holds for a request: the orders it names and those whose stored bodies
    /// or typed inputs carry the customer's id, each with its whole record and the personal
    /// data kept with it (`personal_data`), and every raw body still held.
    pub async fn privacy_holdings(&self, r: &PrivacyRequestRow) -> StoreResult<serde_json::Value> {
        let held: Vec<Held> = self
            .stmt(
                "SELECT b.order_id, b.delivery_id, d.topic, d.received_at FROM delivery_bodies b \
                 JOIN deliveries d ON d.id = b.delivery_id \
                 WHERE b.shop = ?1 AND ((?2 IS NOT NULL AND b.customer_id = ?2) \
                   OR b.order_id IN (SELECT value FROM json_each(?3))) ORDER BY b.delivery_id",
                &[s(&r.shop), opt(r.customer_id.as_deref()), s(&r.orders_requested)],
            )?
            .all()
            .await?
            .results()?;
        let mut ids: Vec<String> = serde_json::from_str(&r.orders_requested).unwrap_or_default();
        ids.extend(held.iter().filter_map(|h| h.order_id.clone()));
        if let Some(c) = r.customer_id.as_deref() {
            let theirs: Vec<OrderId> = self
                .stmt(
                    "SELECT order_id FROM orders WHERE shop = ?1 AND customer_id = ?2 LIMIT 1000",
                    &[s(&r.shop), s(c)],
                )?
                .all()
                .await?
                .results()?;
            ids.extend(theirs.into_iter().map(|o| o.order_id));
        }
        ids.sort();
        ids.dedup();
        // Each order is a few reads; D1 allows 1,000 queries per invocation.
        let truncated = ids.len() > MAX_ORDERS;
        ids.truncate(MAX_ORDERS);
        let mut orders = Vec::new();
        for id in &ids {
            if let Some(view) = self.order_view(&r.shop, id).await? {
                let mut v = serde_json::from_str::<serde_json::Value>(&view).unwrap_or_default();
                let personal: Option<serde_json::Value> = self
                    .stmt(
                        &format!("SELECT {PERSONAL_COLUMNS} FROM orders WHERE shop = ?1 AND order_id = ?2"),
                        &[s(&r.shop), s(id)],
                    )?
                    .first::<serde_json::Value>(None)
                    .await?;
                v["personal_data"] = personal.unwrap_or_default();
                orders.push(v);
            }
        }
        let bodies: Vec<serde_json::Value> = held
            .iter()
            .map(|h| {
                serde_json::json!({
                    "delivery_id": h.delivery_id, "order_id": h.order_id, "topic": h.topic, "received_at": h.received_at,
                })
            })
            .collect();
        Ok(serde_json::json!({ "orders": orders, "orders_truncated": truncated, "bodies_held": bodies }))
    }
}
