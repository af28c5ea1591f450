//! `stock` and `reservations`: how an order's claims move with its state. Every statement
//! here runs in the batch of the state change that causes it.

use std::collections::BTreeMap;

use worker::D1PreparedStatement;

use super::{n, s, Store, StoreResult};
use crate::core::apply::Applied;

impl Store {
    /// The statements that move stock for one applied event. `open` is what the order holds
    /// before it. Claims are net of what it holds; taking more than is available violates
    /// `available >= 0` and fails the batch.
    pub fn stock_moves(
        &self,
        shop: &str,
        order_id: &str,
        open: &[(String, i64)],
        applied: &Applied,
        now_ms: i64,
    ) -> StoreResult<Vec<D1PreparedStatement>> {
        let mut out = Vec::new();
        let key = |sku: &str| [s(shop), s(order_id), s(sku)];
        // Open claims: release and reserve net out per SKU.
        let before: BTreeMap<&str, i64> = open.iter().map(|(k, q)| (k.as_str(), *q)).collect();
        let mut after = before.clone();
        let mut delta: BTreeMap<&str, i64> = BTreeMap::new();
        for (sku, q) in &applied.release {
            *after.entry(sku.as_str()).or_default() -= q;
            *delta.entry(sku.as_str()).or_default() += q;
        }
        for (sku, q) in &applied.reserve {
            *after.entry(sku.as_str()).or_default() += q;
            *delta.entry(sku.as_str()).or_default() -= q;
        }
        for (sku, q) in &applied.write_off {
            *after.entry(sku.as_str()).or_default() -= q;
        }
        for (sku, d) in &delta {
            if *d != 0 {
                out.push(self.stmt(
                    "UPDATE stock SET available = available + ?2, updated_ms = ?3 WHERE sku = ?1",
                    &[s(sku), n(*d), n(now_ms)],
                )?);
            }
        }
        if applied.consign.is_empty() {
            for (sku, q) in &after {
                if before.get(sku) == Some(q) {
                    continue;
                }
                if *q <= 0 {
                    out.push(self.stmt(
                        "DELETE FROM reservations WHERE shop = ?1 AND order_id = ?2 AND sku = ?3 \
                         AND submitted_ms IS NULL",
                        &key(sku),
                    )?);
                } else {
                    // Only SKUs with a stock row are claimed (a lane may pass unknown SKUs).
                    out.push(self.stmt(
                        "INSERT INTO reservations (shop, order_id, sku, quantity, created_ms) \
                         SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM stock WHERE sku = ?3) \
                         ON CONFLICT (shop, order_id, sku) DO UPDATE SET quantity = excluded.quantity",
                        &[s(shop), s(order_id), s(sku), n(*q), n(now_ms)],
                    )?);
                }
            }
        } else {
            // The warehouse accepted them: kept, marked, no longer open.
            out.push(self.stmt(
                "UPDATE reservations SET submitted_ms = ?3 WHERE shop = ?1 AND order_id = ?2 AND submitted_ms IS NULL",
                &[s(shop), s(order_id), n(now_ms)],
            )?);
        }
        for (sku, q) in &applied.unconsign {
            out.push(self.stmt(
                "UPDATE stock SET available = available + ?2, updated_ms = ?3 WHERE sku = ?1",
                &[s(sku), n(*q), n(now_ms)],
            )?);
        }
        if !applied.unconsign.is_empty() || !applied.ship.is_empty() {
            out.push(self.stmt(
                "DELETE FROM reservations WHERE shop = ?1 AND order_id = ?2 AND submitted_ms IS NOT NULL",
                &[s(shop), s(order_id)],
            )?);
        }
        Ok(out)
    }
}
