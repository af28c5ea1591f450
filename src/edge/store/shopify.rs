//! `shopify_holds`, `shopify_fulfillment_orders`, `shopify_sync`, `shopify_sync_runs`: holds
//! mirrored into Shopify, the fulfillment orders seen, and reconciliation watermarks.

use wasm_bindgen::JsValue;
use worker::D1PreparedStatement;

use super::{n, opt, s, Store, StoreResult};
use crate::core::shopify::Desired;

/// How long the queue has to carry out a mirror before the cron sends it again.
pub const MIRROR_GRACE_MS: i64 = 60_000;

#[derive(Debug, Clone, serde::Deserialize)]
pub struct MirrorRow {
    pub desired: String,
    pub reason: Option<String>,
    pub notes: Option<String>,
    pub version: i64,
    pub done_version: i64,
    pub attempts: i64,
}

#[derive(Debug, serde::Deserialize)]
pub struct Pending {
    pub shop: String,
    pub order_id: String,
}

#[derive(Debug, serde::Deserialize)]
pub struct FulfillmentOrderRef {
    pub order_id: String,
    pub hold_id: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
pub struct SyncRow {
    pub watermark_ms: i64,
    pub cursor: Option<String>,
    pub cursor_since_ms: Option<i64>,
}

#[derive(Debug, serde::Deserialize)]
pub struct Version {
    pub order_id: String,
    pub order_updated_ms: Option<i64>,
}

/// One reconciliation run or health check, as recorded.
#[derive(Debug, Default)]
pub struct Run<'a> {
    pub kind: &'a str,
    pub started_ms: i64,
    pub since_ms: Option<i64>,
    pub pages: i64,
    pub listed: i64,
    pub fed: i64,
    pub unchanged: i64,
    pub failed: i64,
    pub detail: Option<&'a str>,
}

impl Store {
    /// What Shopify should show for the order from now on. A hold (re)starts the mirror; a
    /// release only concerns an order orderlane held in Shopify before (it has a row).
    pub fn want_in_shopify(
        &self,
        shop: &str,
        order_id: &str,
        desired: &Desired,
        now_ms: i64,
    ) -> StoreResult<D1PreparedStatement> {
        let due = n(now_ms + MIRROR_GRACE_MS);
        match desired {
            Desired::Hold { reason, notes } => self.stmt(
                "INSERT INTO shopify_holds (shop, order_id, desired, reason, notes, version, done_version, attempts, \
                 next_attempt_ms, updated_ms) VALUES (?1, ?2, 'hold', ?3, ?4, 1, 0, 0, ?5, ?6) \
                 ON CONFLICT (shop, order_id) DO UPDATE SET desired = 'hold', reason = excluded.reason, \
                 notes = excluded.notes, version = shopify_holds.version + 1, attempts = 0, \
                 next_attempt_ms = excluded.next_attempt_ms, last_error = NULL, updated_ms = excluded.updated_ms",
                &[s(shop), s(order_id), s(reason.as_str()), s(notes), due, n(now_ms)],
            ),
            Desired::Release => self.stmt(
                "UPDATE shopify_holds SET desired = 'release', reason = NULL, notes = NULL, version = version + 1, \
                 attempts = 0, next_attempt_ms = ?3, last_error = NULL, updated_ms = ?4 WHERE shop = ?1 AND order_id = ?2",
                &[s(shop), s(order_id), due, n(now_ms)],
            ),
        }
    }

    pub async fn mirror_row(&self, shop: &str, order_id: &str) -> StoreResult<Option<MirrorRow>> {
        self.count(1);
        Ok(self
            .stmt(
                "SELECT desired, reason, notes, version, done_version, attempts FROM shopify_holds \
                 WHERE shop = ?1 AND order_id = ?2",
                &[s(shop), s(order_id)],
            )?
            .first::<MirrorRow>(None)
            .await?)
    }

    /// Shopify shows `version`: done (unless a newer change came meanwhile).
    pub fn mirror_done(
        &self,
        shop: &str,
        order_id: &str,
        version: i64,
        now_ms: i64,
    ) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            "UPDATE shopify_holds SET done_version = MAX(done_version, ?3), attempts = 0, last_error = NULL, \
             updated_ms = ?4 WHERE shop = ?1 AND order_id = ?2",
            &[s(shop), s(order_id), n(version), n(now_ms)],
        )
    }

    #[allow(clippy::too_many_arguments)]
    /// Another try later: `next_ms` is when the cron re-sends it if the queue does not (None:
    /// given up, a dead letter names it).
    pub fn mirror_retry(
        &self,
        shop: &str,
        order_id: &str,
        version: i64,
        attempts: i64,
        next_ms: Option<i64>,
        error: &str,
        now_ms: i64,
    ) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            "UPDATE shopify_holds SET attempts = ?4, next_attempt_ms = ?5, last_error = ?6, updated_ms = ?7 \
             WHERE shop = ?1 AND order_id = ?2 AND version = ?3",
            &[
                s(shop),
                s(order_id),
                n(version),
                n(attempts),
                next_ms.map(n).unwrap_or(JsValue::NULL),
                s(error),
                n(now_ms),
            ],
        )
    }

    /// Makes a dead-lettered mirror due again (a re-drive).
    pub fn mirror_due_now(
        &self,
        shop: &str,
        order_id: &str,
        now_ms: i64,
    ) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            "UPDATE shopify_holds SET attempts = 0, next_attempt_ms = ?3, updated_ms = ?3 \
             WHERE shop = ?1 AND order_id = ?2 AND done_version < version",
            &[s(shop), s(order_id), n(now_ms)],
        )
    }

    /// Mirrors the queue has not carried out in time.
    pub async fn mirrors_due(&self, now_ms: i64, limit: i64) -> StoreResult<Vec<Pending>> {
        self.count(1);
        Ok(self
            .stmt(
                "SELECT shop, order_id FROM shopify_holds WHERE done_version < version AND next_attempt_ms <= ?1 \
                 ORDER BY next_attempt_ms LIMIT ?2",
                &[n(now_ms), n(limit)],
            )?
            .all()
            .await?
            .results()?)
    }

    /// Remembers an order's fulfillment orders and orderlane's hold on each (if any).
    pub fn saw_fulfillment_order(
        &self,
        shop: &str,
        order_id: &str,
        fulfillment_order: &str,
        hold_id: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            "INSERT INTO shopify_fulfillment_orders (shop, fulfillment_order_id, order_id, hold_id, seen_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (shop, fulfillment_order_id) DO UPDATE SET \
             order_id = excluded.order_id, hold_id = excluded.hold_id, seen_ms = excluded.seen_ms",
            &[s(shop), s(fulfillment_order), s(order_id), opt(hold_id), n(now_ms)],
        )
    }

    pub async fn fulfillment_order(&self, shop: &str, id: &str) -> StoreResult<Option<FulfillmentOrderRef>> {
        self.count(1);
        Ok(self
            .stmt(
                "SELECT order_id, hold_id FROM shopify_fulfillment_orders WHERE shop = ?1 AND fulfillment_order_id = ?2",
                &[s(shop), s(id)],
            )?
            .first::<FulfillmentOrderRef>(None)
            .await?)
    }

    pub async fn sync_state(&self, shop: &str) -> StoreResult<Option<SyncRow>> {
        self.count(1);
        Ok(self
            .stmt(
                "SELECT watermark_ms, cursor, cursor_since_ms FROM shopify_sync WHERE shop = ?1",
                &[s(shop)],
            )?
            .first::<SyncRow>(None)
            .await?)
    }

    pub fn save_sync(
        &self,
        shop: &str,
        watermark_ms: i64,
        cursor: Option<(&str, i64)>,
        now_ms: i64,
    ) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            "INSERT INTO shopify_sync (shop, watermark_ms, cursor, cursor_since_ms, last_run_ms) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (shop) DO UPDATE SET watermark_ms = excluded.watermark_ms, cursor = excluded.cursor, \
             cursor_since_ms = excluded.cursor_since_ms, last_run_ms = excluded.last_run_ms",
            &[
                s(shop),
                n(watermark_ms),
                opt(cursor.map(|c| c.0)),
                cursor.map(|c| n(c.1)).unwrap_or(JsValue::NULL),
                n(now_ms),
            ],
        )
    }

    pub fn sync_run(&self, shop: &str, r: &Run<'_>, now_ms: i64) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            "INSERT INTO shopify_sync_runs (shop, kind, started_ms, finished_ms, since_ms, pages, listed, fed, unchanged, \
             failed, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            &[
                s(shop),
                s(r.kind),
                n(r.started_ms),
                n(now_ms),
                r.since_ms.map(n).unwrap_or(JsValue::NULL),
                n(r.pages),
                n(r.listed),
                n(r.fed),
                n(r.unchanged),
                n(r.failed),
                opt(r.detail),
            ],
        )
    }

    /// The version (Shopify's `updated_at`) orderlane holds of each listed order.
    pub async fn order_versions(&self, shop: &str, ids: &[String]) -> StoreResult<Vec<Version>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.count(1);
        let list = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        Ok(self
            .stmt(
                "SELECT order_id, order_updated_ms FROM orders WHERE shop = ?1 \
                 AND order_id IN (SELECT value FROM json_each(?2))",
                &[s(shop), s(&list)],
            )?
            .all()
            .await?
            .results()?)
    }

    /// When the shop's last delivery arrived (reconciled ones not counted).
    pub async fn last_delivery_ms(&self, shop: &str) -> StoreResult<Option<i64>> {
        #[derive(serde::Deserialize)]
        struct Last {
            at: Option<i64>,
        }
        self.count(1);
        let row = self
            .stmt(
                // Newest first by rowid: an active shop is found in its last few rows.
                "SELECT received_ms AS at FROM deliveries WHERE shop = ?1 AND webhook_id NOT LIKE 'reconcile:%' \
                 ORDER BY id DESC LIMIT 1",
                &[s(shop)],
            )?
            .first::<Last>(None)
            .await?;
        Ok(row.and_then(|r| r.at))
    }
}
