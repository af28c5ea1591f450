//! Inventory rules over the warehouse stock the edge supplies (`sku → available`; a SKU
//! with no row is unknown, which is not the same as zero).
//!
//! Only lines the warehouse must send are asked for: lines that require shipping and still
//! have units to fulfil (`fulfillable_quantity`, else `quantity`). Quantities are summed per
//! SKU across lines before comparing with stock.
//!
//! | situation | outcome |
//! |---|---|
//! | a line with no SKU | `hold/inventory` (`inventory.sku_missing`): the warehouse cannot pick it |
//! | SKU needed > available | `hold/inventory` (`inventory.short`) |
//! | SKU with no stock row | per lane `unknown_sku`: `hold/inventory` or a note (`inventory.unknown_sku`) |
//!
//! [`reservations`] lists `(sku, quantity)` for every SKU with a stock row, sorted by SKU;
//! a ready decision carries it so the edge can claim the stock atomically.

use std::collections::BTreeMap;

use super::{Effect, Lane, Policy, RuleHit};
use crate::core::order::Order;
use crate::core::types::Reason;

pub const SHORT: &str = "inventory.short";
pub const UNKNOWN_SKU: &str = "inventory.unknown_sku";
pub const SKU_MISSING: &str = "inventory.sku_missing";

/// Units needed per SKU, over lines to ship, plus how many such lines have no SKU.
pub fn needed(order: &Order) -> (BTreeMap<String, i64>, usize) {
    let mut per_sku = BTreeMap::new();
    let mut no_sku = 0;
    for line in order.lines_to_ship() {
        match &line.sku {
            Some(sku) => {
                let q = per_sku.entry(sku.clone()).or_insert(0i64);
                *q = q.saturating_add(line.open_quantity());
            }
            None => no_sku += 1,
        }
    }
    (per_sku, no_sku)
}

/// What a ready order claims: `(sku, quantity)` for SKUs that have a stock row.
pub fn reservations(order: &Order, stock: &BTreeMap<String, i64>) -> Vec<(String, i64)> {
    needed(order).0.into_iter().filter(|(sku, _)| stock.contains_key(sku)).collect()
}

/// Inventory rules that fire for `order` against `stock`.
pub fn evaluate(order: &Order, lane: &Lane, stock: &BTreeMap<String, i64>) -> Vec<RuleHit> {
    let (per_sku, no_sku) = needed(order);
    let mut hits = Vec::new();
    if no_sku > 0 {
        hits.push(RuleHit::new(
            SKU_MISSING,
            Effect::Hold(Reason::Inventory),
            format!("{no_sku} line(s) to ship have no SKU"),
        ));
    }
    let mut short = Vec::new();
    let mut unknown = Vec::new();
    for (sku, need) in &per_sku {
        match stock.get(sku) {
            Some(avail) if avail < need => {
                short.push(format!("{sku} needs {need}, {} available", avail.max(&0)))
            }
            Some(_) => {}
            None => unknown.push(sku.as_str()),
        }
    }
    if !short.is_empty() {
        hits.push(RuleHit::new(SHORT, Effect::Hold(Reason::Inventory), short.join("; ")));
    }
    if !unknown.is_empty() {
        let effect = match lane.inventory.unknown_sku {
            Policy::Hold => Effect::Hold(Reason::Inventory),
            Policy::Pass => Effect::Note,
        };
        let verb = if effect == Effect::Note { "passed by lane policy" } else { "held by lane policy" };
        hits.push(RuleHit::new(
            UNKNOWN_SKU,
            effect,
            format!("no stock row for {} ({verb})", unknown.join(", ")),
        ));
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::order::{order_from_value, tests::fixture_with};
    use crate::core::rules::tests::shipped;
    use serde_json::Value;

    /// Stock covering every fixture SKU with `n` units.
    pub(crate) fn stock_all(n: i64) -> BTreeMap<String, i64> {
        ["SKU2006-001", "LENS-PROTECT-2YR", "CASE-LEATHER-PREM", "SKU2006-020", "SKU2006-035"]
            .iter()
            .map(|s| (s.to_string(), n))
            .collect()
    }

    type Edit = fn(&mut serde_json::Map<String, Value>);
    const GONE: i64 = i64::MIN;

    #[test]
    #[allow(clippy::type_complexity)] // a table of cases reads best inline
    fn inventory_table() {
        let m = shipped();
        let none: Edit = |_| {};
        let with = |pairs: &[(&str, i64)]| {
            let mut s = stock_all(5);
            for (k, v) in pairs {
                if *v == GONE {
                    s.remove(*k);
                } else {
                    s.insert(k.to_string(), *v);
                }
            }
            s
        };
        // (lane, edit, stock overrides (GONE removes the row), fired ids with effects)
        let cases: Vec<(&str, Edit, Vec<(&str, i64)>, Vec<(&str, Effect)>)> = vec![
            ("default", none, vec![], vec![]),
            ("default", none, vec![("SKU2006-020", 1)], vec![]),
            ("default", none, vec![("SKU2006-020", 0)], vec![(SHORT, Effect::Hold(Reason::Inventory))]),
            ("default", none, vec![("SKU2006-020", -3)], vec![(SHORT, Effect::Hold(Reason::Inventory))]),
            (
                "default",
                none,
                vec![("SKU2006-020", GONE)],
                vec![(UNKNOWN_SKU, Effect::Hold(Reason::Inventory))],
            ),
            ("pos", none, vec![("SKU2006-020", GONE)], vec![(UNKNOWN_SKU, Effect::Note)]),
            (
                "default",
                |o| o["line_items"][3]["fulfillable_quantity"] = 0.into(),
                vec![("SKU2006-020", 0)],
                vec![],
            ),
            (
                "default",
                |o| o["line_items"][3]["requires_shipping"] = false.into(),
                vec![("SKU2006-020", GONE)],
                vec![],
            ),
            (
                // Two lines of the same SKU: 1 + 1 needs 2.
                "default",
                |o| o["line_items"][1]["sku"] = "SKU2006-001".into(),
                vec![("SKU2006-001", 1)],
                vec![(SHORT, Effect::Hold(Reason::Inventory))],
            ),
            (
                "default",
                |o| o["line_items"][1]["sku"] = "SKU2006-001".into(),
                vec![("SKU2006-001", 2)],
                vec![],
            ),
            ("default", |o| o["line_items"][0]["quantity"] = 7.into(), vec![("SKU2006-001", 2)], vec![]),
            (
                "default",
                |o| {
                    o["line_items"][0]["quantity"] = 7.into();
                    o["line_items"][0]["fulfillable_quantity"] = Value::Null;
                },
                vec![("SKU2006-001", 6)],
                vec![(SHORT, Effect::Hold(Reason::Inventory))],
            ),
            (
                "pos",
                |o| o["line_items"][2]["sku"] = "".into(),
                vec![],
                vec![(SKU_MISSING, Effect::Hold(Reason::Inventory))],
            ),
        ];
        for (i, (lane, edit, overrides, want)) in cases.into_iter().enumerate() {
            let order = order_from_value(&fixture_with(edit)).unwrap();
            let got: Vec<_> = evaluate(&order, m.lane(lane).unwrap(), &with(&overrides))
                .iter()
                .map(|h| (h.id, h.effect))
                .collect();
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn reservations_are_aggregated_sorted_and_skip_unknown() {
        let order = order_from_value(&fixture_with(|o| {
            o["line_items"][1]["sku"] = "SKU2006-001".into();
            o["line_items"][1]["quantity"] = 3.into();
            o["line_items"][1]["fulfillable_quantity"] = 2.into();
            o["line_items"][4]["fulfillable_quantity"] = 0.into();
        }))
        .unwrap();
        let mut stock = stock_all(9);
        stock.remove("CASE-LEATHER-PREM");
        assert_eq!(
            reservations(&order, &stock),
            vec![("SKU2006-001".to_string(), 3), ("SKU2006-020".to_string(), 1)]
        );
    }
}
