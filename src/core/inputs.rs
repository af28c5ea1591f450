//! What routing and the warehouse document need from an order, as typed columns: written to
//! the `orders` row and to `order_lines` in the same batch as each decision, so releases,
//! verdicts, re-sends, re-drives and later updates never need the raw body, which is purged
//! after `BODY_RETENTION_DAYS` whatever the order's state.
//!
//! [`Inputs::of`] and [`lines_param`] take them from a parsed order; [`Inputs::to_order`]
//! rebuilds an [`Order`]
//! that the rules decide the same way and that gives a byte-identical warehouse document (the
//! tests below prove both, over generated orders).
//!
//! Kept out on purpose, because nothing reads them: the email itself (the rules only ask
//! whether there is one; the velocity rule counts the keyed hash in `orders.email_hash`), the
//! billing address except its country, and the order's `updated_at` (deliveries are ordered by
//! the stored ordering key, not by a rebuilt order).

use serde::{Deserialize, Deserializer, Serialize};

use super::order::{Address, LineItem, Order, ShippingLine};
use super::webhook::ShopifyId;

/// The order-level inputs as stored on the `orders` row (column names in the comments where
/// they differ). Money, status, name and times reuse the row's existing columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// `order_name`.
    pub order_name: Option<String>,
    /// `customer_id`: lets privacy requests find the order once its bodies are purged.
    pub customer_id: Option<String>,
    #[serde(deserialize_with = "flag")]
    pub has_email: bool,
    pub financial_status: Option<String>,
    pub fulfillment_status: Option<String>,
    pub source_name: Option<String>,
    pub currency: Option<String>,
    /// `total_cents`.
    pub total_cents: i64,
    /// Comma-joined; parsed tags are trimmed, non-empty and hold no commas, so this is exact.
    pub tags: String,
    /// `ship_present`: the order has a shipping address (all of whose parts may be absent).
    #[serde(deserialize_with = "flag")]
    pub ship_present: bool,
    pub ship_name: Option<String>,
    pub ship_first_name: Option<String>,
    pub ship_last_name: Option<String>,
    pub ship_address1: Option<String>,
    pub ship_address2: Option<String>,
    pub ship_city: Option<String>,
    pub ship_zip: Option<String>,
    pub ship_province_code: Option<String>,
    pub ship_country_code: Option<String>,
    pub billing_country: Option<String>,
    /// `ship_methods`: the shipping lines as JSON `[[title, code], ...]` (no personal data).
    pub ship_methods: String,
    /// `order_created_ms`.
    pub order_created_ms: i64,
    /// `order_cancelled_ms`.
    pub order_cancelled_ms: Option<i64>,
}

/// One `order_lines` row (its position is its place in the list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub line_item_id: Option<String>,
    pub sku: Option<String>,
    pub quantity: i64,
    pub fulfillable_quantity: Option<i64>,
    #[serde(deserialize_with = "flag")]
    pub requires_shipping: bool,
    pub title: String,
}

/// D1 returns booleans as numbers. A plain visitor: serde's untagged enums buffer their input
/// and cost wasm size for nothing here.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct Flag;
    impl serde::de::Visitor<'_> for Flag {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a boolean or 0/1")
        }
        fn visit_bool<E>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_i64<E>(self, v: i64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_u64<E>(self, v: u64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_f64<E>(self, v: f64) -> Result<bool, E> {
            Ok(v != 0.0)
        }
    }
    d.deserialize_any(Flag)
}

impl Inputs {
    /// The `orders` columns for a parsed order (its lines go through [`lines_param`]).
    pub fn of(o: &Order) -> Inputs {
        let ship = o.shipping_address.as_ref();
        let part = |f: fn(&Address) -> &Option<String>| ship.and_then(|a| f(a).clone());
        let methods: Vec<(Option<&str>, Option<&str>)> =
            o.shipping_lines.iter().map(|s| (s.title.as_deref(), s.code.as_deref())).collect();
        Inputs {
            order_name: Some(o.name.clone()),
            customer_id: o.customer_id.as_ref().map(|c| c.0.clone()),
            has_email: o.email.is_some(),
            financial_status: o.financial_status.clone(),
            fulfillment_status: o.fulfillment_status.clone(),
            source_name: o.source_name.clone(),
            currency: o.currency.clone(),
            total_cents: o.total_price_cents,
            tags: o.tags.join(","),
            ship_present: ship.is_some(),
            ship_name: part(|a| &a.name),
            ship_first_name: part(|a| &a.first_name),
            ship_last_name: part(|a| &a.last_name),
            ship_address1: part(|a| &a.address1),
            ship_address2: part(|a| &a.address2),
            ship_city: part(|a| &a.city),
            ship_zip: part(|a| &a.zip),
            ship_province_code: part(|a| &a.province_code),
            ship_country_code: part(|a| &a.country_code),
            billing_country: o.billing_address.as_ref().and_then(|a| a.country_code.clone()),
            ship_methods: serde_json::to_string(&methods).unwrap_or_else(|_| "[]".into()),
            order_created_ms: o.created_at_ms,
            order_cancelled_ms: o.cancelled_at_ms,
        }
    }

    /// The order the rules and the warehouse document read, rebuilt from the columns.
    /// `updated_at_ms` is the stored ordering key's (never read by a decision).
    pub fn to_order(&self, order_id: &str, updated_at_ms: Option<i64>, lines: &[Line]) -> Order {
        let methods: Vec<(Option<String>, Option<String>)> =
            serde_json::from_str(&self.ship_methods).unwrap_or_default();
        Order {
            id: ShopifyId(order_id.to_string()),
            name: self.order_name.clone().unwrap_or_default(),
            // The address is never stored: the rules only ask whether there is one.
            email: self.has_email.then(String::new),
            customer_id: self.customer_id.clone().map(ShopifyId),
            financial_status: self.financial_status.clone(),
            fulfillment_status: self.fulfillment_status.clone(),
            source_name: self.source_name.clone(),
            currency: self.currency.clone(),
            total_price_cents: self.total_cents,
            tags: self.tags.split(',').filter(|t| !t.is_empty()).map(String::from).collect(),
            shipping_address: self.ship_present.then(|| Address {
                name: self.ship_name.clone(),
                first_name: self.ship_first_name.clone(),
                last_name: self.ship_last_name.clone(),
                address1: self.ship_address1.clone(),
                address2: self.ship_address2.clone(),
                city: self.ship_city.clone(),
                zip: self.ship_zip.clone(),
                province_code: self.ship_province_code.clone(),
                country_code: self.ship_country_code.clone(),
            }),
            billing_address: self
                .billing_country
                .clone()
                .map(|c| Address { country_code: Some(c), ..Address::default() }),
            line_items: lines
                .iter()
                .map(|l| LineItem {
                    id: l.line_item_id.clone().map(ShopifyId),
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    fulfillable_quantity: l.fulfillable_quantity,
                    requires_shipping: l.requires_shipping,
                    title: l.title.clone(),
                })
                .collect(),
            shipping_lines: methods.into_iter().map(|(title, code)| ShippingLine { title, code }).collect(),
            created_at_ms: self.order_created_ms,
            updated_at_ms,
            cancelled_at_ms: self.order_cancelled_ms,
        }
    }

    /// The same inputs without the shipping address and billing country: what is kept once
    /// the order is submitted, fulfilled or cancelled, after which no path builds a document
    /// or re-runs the rules for a send. The customer id stays (privacy requests find the
    /// order's email hash by it) until a redact.
    pub fn without_personal(mut self) -> Inputs {
        for p in [
            &mut self.ship_name,
            &mut self.ship_first_name,
            &mut self.ship_last_name,
            &mut self.ship_address1,
            &mut self.ship_address2,
            &mut self.ship_city,
            &mut self.ship_zip,
            &mut self.ship_province_code,
            &mut self.ship_country_code,
            &mut self.billing_country,
        ] {
            *p = None;
        }
        self
    }
}

/// An order's lines as one compact JSON parameter, `[[line_item_id, sku, quantity,
/// fulfillable_quantity, requires_shipping (0/1), title], ...]`, which one SQL statement
/// spreads into `order_lines` rows with `json_each` (ids stay strings: they pass 2^53).
/// Written straight from the parsed lines: nothing is copied on the webhook path.
pub fn lines_param(items: &[LineItem]) -> String {
    type Row<'a> = (Option<&'a str>, Option<&'a str>, i64, Option<i64>, u8, &'a str);
    let rows: Vec<Row<'_>> = items
        .iter()
        .map(|l| {
            (
                l.id.as_ref().map(|i| i.0.as_str()),
                l.sku.as_deref(),
                l.quantity,
                l.fulfillable_quantity,
                u8::from(l.requires_shipping),
                l.title.as_str(),
            )
        })
        .collect();
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::core::fulfilment::{DocumentMeta, FulfilmentRequest};
    use crate::core::order::tests::FIXTURE;
    use crate::core::order::{parse_order, RiskLevel};
    use crate::core::routing::{decide, RouteInput};
    use crate::core::rules::tests::shipped;
    use crate::core::types::Mode;

    const NOW: i64 = 1_640_995_200_000 + 30 * 60_000;

    /// What a stored line round-trips through: the lines parameter, read back the way
    /// `json_each` hands each row to SQLite.
    fn through_param(items: &[LineItem]) -> Vec<Line> {
        type Row = (Option<String>, Option<String>, i64, Option<i64>, u8, String);
        let rows: Vec<Row> = serde_json::from_str(&lines_param(items)).unwrap();
        rows.into_iter()
            .map(|(id, sku, q, fq, rs, title)| Line {
                line_item_id: id,
                sku,
                quantity: q,
                fulfillable_quantity: fq,
                requires_shipping: rs == 1,
                title,
            })
            .collect()
    }

    /// Order → columns (as D1 returns them: JSON with numbers for flags) → order.
    fn round_trip(o: &Order) -> Order {
        let inputs = Inputs::of(o);
        let mut row = serde_json::to_value(&inputs).unwrap();
        for k in ["has_email", "ship_present"] {
            row[k] = serde_json::json!(u8::from(row[k].as_bool().unwrap()));
        }
        let back: Inputs = serde_json::from_value(row).unwrap();
        assert_eq!(back, inputs);
        back.to_order(&o.id.0, o.updated_at_ms, &through_param(&o.line_items))
    }

    /// Every decision input the edge passes, for both orders: the same decision, and the
    /// same warehouse document byte for byte.
    fn same_outcome(a: &Order, b: &Order, shop: &str, stock: &BTreeMap<String, i64>) {
        let m = shipped();
        for mode in [None, Some(Mode::Auto)] {
            for risk in [None, Some(RiskLevel::Low), Some(RiskLevel::High), Some(RiskLevel::Medium)] {
                for emails in [1, 50] {
                    let input =
                        |order| RouteInput { shop, order, risk, stock, email_orders_in_window: emails, mode };
                    assert_eq!(decide(&m, &input(a), NOW), decide(&m, &input(b), NOW));
                }
            }
        }
        let lane = m.lane_for(shop, a).name.clone();
        assert_eq!(lane, m.lane_for(shop, b).name);
        let meta = DocumentMeta {
            shop,
            order_id: &a.id.0,
            order_name: None,
            lane: &lane,
            rules_version: "v",
            submission: 1,
        };
        assert_eq!(
            FulfilmentRequest::from_order(a, &meta).to_body().unwrap(),
            FulfilmentRequest::from_order(b, &meta).to_body().unwrap()
        );
    }

    #[test]
    fn the_sample_round_trips() {
        let o = parse_order(FIXTURE).unwrap();
        let back = round_trip(&o);
        assert_eq!(back.line_items, o.line_items);
        assert_eq!(back.shipping_address, o.shipping_address);
        assert_eq!(back.shipping_lines, o.shipping_lines);
        assert_eq!(back.tags, o.tags);
        assert_eq!(back.email.as_deref(), Some(""), "presence only: the address is not stored");
        let b = back.billing_address.unwrap();
        assert_eq!((b.country_code.as_deref(), b.name), (Some("US"), None), "billing country only");
        let stock = crate::core::routing::tests::full_stock(10);
        same_outcome(&o, &round_trip(&o), "shop.myshopify.com", &stock);
    }

    #[test]
    fn personal_parts_are_dropped_and_the_rest_kept() {
        let inputs = Inputs::of(&parse_order(FIXTURE).unwrap());
        let kept = inputs.clone().without_personal();
        assert_eq!((kept.ship_name, kept.ship_address1, kept.billing_country), (None, None, None));
        assert_eq!(kept.customer_id, inputs.customer_id);
        assert!(kept.ship_present && kept.has_email);
        assert_eq!((kept.total_cents, kept.tags), (inputs.total_cents, inputs.tags));
    }

    fn opt_text(pool: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
        proptest::option::of(proptest::sample::select(pool).prop_map(String::from))
    }

    fn address() -> impl Strategy<Value = Address> {
        (
            opt_text(&["Ada Lovelace", "Zoë Ångström-李", "J \"Q\" Public"]),
            opt_text(&["Ada", "Zoë"]),
            opt_text(&["Lovelace", "李"]),
            opt_text(&["12 Example Street", "PO Box 12", "Postfach 7", "1, rue de la Paix"]),
            opt_text(&["Flat 2", "P.O. Box 9"]),
            opt_text(&["Dublin", "Berlin", "Louisville"]),
            opt_text(&["40003", "10115", "D02 XY45", "ABC", "75002"]),
            opt_text(&["KY", "BE"]),
            opt_text(&["US", "DE", "IE", "FR", "GB", "ZZ", "CA"]),
        )
            .prop_map(
                |(name, first_name, last_name, address1, address2, city, zip, province_code, cc)| Address {
                    name,
                    first_name,
                    last_name,
                    address1,
                    address2,
                    city,
                    zip,
                    province_code,
                    country_code: cc,
                },
            )
    }

    fn line() -> impl Strategy<Value = LineItem> {
        (
            proptest::option::of((1u64..u64::MAX).prop_map(|i| ShopifyId(i.to_string()))),
            opt_text(&["SKU2006-001", "LENS-PROTECT-2YR", "SKU-NONE", "SKU,COMMA"]),
            -1i64..5,
            proptest::option::of(-1i64..5),
            any::<bool>(),
            "[a-zA-Z0-9 ,\"é]{0,12}",
        )
            .prop_map(|(id, sku, quantity, fulfillable_quantity, requires_shipping, title)| {
                LineItem { id, sku, quantity, fulfillable_quantity, requires_shipping, title }
            })
    }

    prop_compose! {
        fn order()(
            id in (1u64..u64::MAX).prop_map(|i| i.to_string()),
            name in "#[0-9]{1,6}",
            email in opt_text(&["a@example.com"]),
            customer in proptest::option::of((1u64..u64::MAX).prop_map(|i| ShopifyId(i.to_string()))),
            financial in opt_text(&["paid", "pending", "authorized", "voided", "partially_paid", "refunded", "odd"]),
            fulfillment in opt_text(&["fulfilled", "partial"]),
            source in opt_text(&["web", "pos", "shopify_draft_order"]),
            currency in opt_text(&["USD", "EUR"]),
            total in -100i64..10_000_000,
            tags in proptest::collection::vec(proptest::sample::select(&["wholesale", "VIP", "Ünïcode-tag", "a b"][..]), 0..3),
            ship in proptest::option::of(address()),
            billing in proptest::option::of(address()),
            lines in proptest::collection::vec(line(), 0..5),
            methods in proptest::collection::vec((opt_text(&["Standard", "Express"]), opt_text(&["STD", "EXP"])), 0..3),
            created_ago in 0i64..20_000_000_000,
            cancelled in any::<bool>(),
        ) -> Order {
            let created_at_ms = NOW - created_ago;
            Order {
                id: ShopifyId(id),
                name,
                email,
                customer_id: customer,
                financial_status: financial,
                fulfillment_status: fulfillment,
                source_name: source,
                currency,
                total_price_cents: total,
                tags: tags.into_iter().map(String::from).collect(),
                shipping_address: ship,
                billing_address: billing,
                line_items: lines,
                shipping_lines: methods.into_iter().map(|(title, code)| ShippingLine { title, code }).collect(),
                created_at_ms,
                updated_at_ms: Some(created_at_ms + 1000),
                cancelled_at_ms: cancelled.then_some(created_at_ms + 500),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn routing_from_the_columns_is_routing_from_the_body(
            o in order(),
            avail in proptest::collection::vec(0i64..4, 3),
        ) {
            let stock: BTreeMap<String, i64> = ["SKU2006-001", "LENS-PROTECT-2YR", "SKU,COMMA"]
                .iter()
                .zip(avail)
                .map(|(s, a)| (s.to_string(), a))
                .collect();
            let back = round_trip(&o);
            prop_assert_eq!(&back.line_items, &o.line_items);
            prop_assert_eq!(&back.shipping_address, &o.shipping_address);
            for shop in ["shop.myshopify.com", "trade.myshopify.com"] {
                same_outcome(&o, &back, shop, &stock);
            }
        }
    }
}
