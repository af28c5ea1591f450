//! `decide`: one order, one lane, one decision. The Worker and the `explain` CLI both call
//! this; nothing else decides where an order goes.
//!
//! Evaluation runs every rule family (so the decision lists everything that fired) and then
//! picks the outcome by precedence:
//!
//! 1. `order.cancelled` — a cancelled order is `cancelled`, whatever the mode.
//! 2. mode — `manual` holds the order for a person (`hold/manual`, `mode.manual`);
//!    `shadow` does the same (`mode.shadow`) and carries what the rules would have done in
//!    `Decision::shadow`.
//! 3. holds, by family: payment > address > fraud > inventory. A hold outranks a wait: an
//!    order pending payment with a broken address goes to `hold/address` now, so a person
//!    can fix it while the payment clears.
//! 4. waits: `new` (payment pending within its window) > `fraud-check` (awaiting a verdict).
//! 5. otherwise `ready-for-fulfilment`, with the stock reservations to claim; or `paid` when
//!    no line needs the warehouse (digital goods, or everything already fulfilled:
//!    `route.nothing_to_ship`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::order::{Order, RiskLevel};
use super::rules::{address, fraud, inventory, payment, Effect, Matrix, RuleHit};
use super::state::Target;
use super::types::{Mode, Reason, State};

pub use super::apply::{
    apply_action, apply_delivery, sweep, Action, Applied, AuditEntry, Delivery, Incoming, OrderRecord,
    OrderingKey, RouteEnv,
};

pub const RULE_CANCELLED: &str = "order.cancelled";
pub const RULE_MODE_MANUAL: &str = "mode.manual";
pub const RULE_MODE_SHADOW: &str = "mode.shadow";
pub const RULE_NOTHING_TO_SHIP: &str = "route.nothing_to_ship";

/// Everything `decide` reads besides the matrix and the clock.
#[derive(Debug, Clone, Copy)]
pub struct RouteInput<'a> {
    pub shop: &'a str,
    pub order: &'a Order,
    /// Latest risk verdict for the order, if one arrived.
    pub risk: Option<RiskLevel>,
    /// `sku → available`; a SKU absent from the map has no stock row.
    pub stock: &'a BTreeMap<String, i64>,
    /// Orders from this order's email within the lane's velocity window, this one included.
    pub email_orders_in_window: u32,
    /// The segment's KV flag; `None` when KV has none (the lane's `default_mode` applies).
    pub mode: Option<Mode>,
}

/// Where the order goes and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub lane: String,
    pub mode: Mode,
    pub state: State,
    pub reason: Option<Reason>,
    /// Every rule that fired, in evaluation order (cancelled, mode, payment, address,
    /// fraud, inventory, route).
    pub fired: Vec<RuleHit>,
    /// The rule that decided the outcome; `None` for a clean `ready-for-fulfilment`.
    pub primary_rule: Option<&'static str>,
    /// One line naming the outcome and the primary rule. No personal data.
    pub explanation: String,
    /// `(sku, quantity)` to claim, sorted by SKU; non-empty only for `ready-for-fulfilment`.
    pub reservations: Vec<(String, i64)>,
    pub rules_version: String,
    /// In shadow mode: what the rules would have decided.
    pub shadow: Option<(State, Option<Reason>)>,
}

impl Decision {
    pub fn target(&self) -> Target {
        Target::new(self.state, self.reason)
    }

    /// The ids of every fired rule.
    pub fn fired_ids(&self) -> Vec<&'static str> {
        self.fired.iter().map(|h| h.id).collect()
    }
}

/// Decides where `input.order` goes at `now_ms`. Total and deterministic: the same inputs
/// and matrix always give the same decision, and every order gets one.
pub fn decide(matrix: &Matrix, input: &RouteInput<'_>, now_ms: i64) -> Decision {
    let order = input.order;
    let lane = matrix.lane_for(input.shop, order);
    let mode = input.mode.unwrap_or(lane.default_mode);

    let mut fired: Vec<RuleHit> = Vec::new();
    if order.is_cancelled() {
        fired.push(RuleHit::new(RULE_CANCELLED, Effect::Note, "the order is cancelled in Shopify"));
    }
    let rules_start = fired.len();
    fired.extend(payment::evaluate(order, lane, now_ms));
    fired.extend(address::evaluate(order, lane));
    fired.extend(fraud::evaluate(order, lane, input.risk, input.email_orders_in_window, now_ms));
    fired.extend(inventory::evaluate(order, lane, input.stock));
    let nothing_to_ship = order.lines_to_ship().next().is_none();
    if nothing_to_ship {
        fired.push(RuleHit::new(RULE_NOTHING_TO_SHIP, Effect::Note, "no line needs the warehouse"));
    }

    // What the rules alone conclude, and which hit decided it.
    let rule_hits = &fired[rules_start..];
    let hold = rule_hits.iter().find_map(|h| match h.effect {
        Effect::Hold(r) => Some((Target::hold(r), h)),
        _ => None,
    });
    let wait = rule_hits.iter().find_map(|h| match h.effect {
        Effect::Wait(s) => Some((Target::new(s, None), h)),
        _ => None,
    });
    let (rules_target, rules_primary) = match hold.or(wait) {
        Some((t, h)) => (t, Some(h)),
        None if nothing_to_ship => {
            (Target::new(State::Paid, None), rule_hits.iter().find(|h| h.id == RULE_NOTHING_TO_SHIP))
        }
        None => (Target::new(State::ReadyForFulfilment, None), None),
    };
    let rules_primary = rules_primary.map(|h| (h.id, h.explanation.clone()));

    let (target, primary, shadow) = if order.is_cancelled() {
        let p = (RULE_CANCELLED, "the order is cancelled in Shopify".to_string());
        (Target::new(State::Cancelled, None), Some(p), None)
    } else {
        match mode {
            Mode::Auto => (rules_target, rules_primary, None),
            Mode::Manual | Mode::Shadow => {
                let (id, what) = if mode == Mode::Manual {
                    (RULE_MODE_MANUAL, "is in manual mode")
                } else {
                    (RULE_MODE_SHADOW, "is in shadow mode")
                };
                let text = format!("segment {} {what}; rules alone would give {rules_target}", lane.name);
                fired.insert(rules_start, RuleHit::new(id, Effect::Hold(Reason::Manual), text.clone()));
                let shadow = (mode == Mode::Shadow).then_some((rules_target.state, rules_target.reason));
                (Target::hold(Reason::Manual), Some((id, text)), shadow)
            }
        }
    };
    let explanation = describe(target, primary.as_ref(), &fired, &lane.name);
    let reservations = if target.state == State::ReadyForFulfilment {
        inventory::reservations(order, input.stock)
    } else {
        Vec::new()
    };
    Decision {
        lane: lane.name.clone(),
        mode,
        state: target.state,
        reason: target.reason,
        fired,
        primary_rule: primary.map(|(id, _)| id),
        explanation,
        reservations,
        rules_version: matrix.rules_version.clone(),
        shadow,
    }
}

/// `"<state>: <rule>: <why> (+N more rules)"`, or the all-clear line.
fn describe(t: Target, primary: Option<&(&'static str, String)>, fired: &[RuleHit], lane: &str) -> String {
    let primary_id = primary.map_or("", |(id, _)| *id);
    let others = fired.iter().filter(|h| h.id != primary_id).count();
    let extra = match others {
        0 => String::new(),
        1 => " (+1 more rule)".to_string(),
        n => format!(" (+{n} more rules)"),
    };
    match primary {
        Some((id, text)) => format!("{t}: {id}: {text}{extra}"),
        None => format!("{t}: all checks passed in lane {lane}{extra}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::order::{order_from_value, tests::fixture_with};
    use crate::core::rules::tests::shipped;
    use crate::core::rules::RULE_IDS;
    use crate::core::webhook::Topic;
    use serde_json::{Map, Value};

    pub(crate) const CREATED: i64 = 1_640_995_200_000;
    pub(crate) const MIN: i64 = 60_000;

    pub(crate) fn full_stock(n: i64) -> BTreeMap<String, i64> {
        ["SKU2006-001", "LENS-PROTECT-2YR", "CASE-LEATHER-PREM", "SKU2006-020", "SKU2006-035"]
            .iter()
            .map(|s| (s.to_string(), n))
            .collect()
    }

    /// The fixture as a live, paid, US order.
    pub(crate) fn live(edit: impl FnOnce(&mut Map<String, Value>)) -> Order {
        order_from_value(&fixture_with(|o| {
            o.insert("cancelled_at".into(), Value::Null);
            o.insert("financial_status".into(), "paid".into());
            edit(o);
        }))
        .unwrap()
    }

    fn run(
        order: &Order,
        mode: Option<Mode>,
        risk: Option<RiskLevel>,
        stock: &BTreeMap<String, i64>,
    ) -> Decision {
        let m = shipped();
        let input =
            RouteInput { shop: "demo.myshopify.com", order, risk, stock, email_orders_in_window: 1, mode };
        decide(&m, &input, CREATED + 5 * MIN)
    }

    #[test]
    fn clean_order_is_ready_with_reservations() {
        let d = run(&live(|_| {}), Some(Mode::Auto), None, &full_stock(3));
        assert_eq!((d.lane.as_str(), d.state, d.reason), ("default", State::ReadyForFulfilment, None));
        assert!(d.fired.is_empty());
        assert_eq!(d.primary_rule, None);
        assert_eq!(d.explanation, "ready-for-fulfilment: all checks passed in lane default");
        assert_eq!(d.reservations.len(), 5);
        assert_eq!(d.reservations[0], ("CASE-LEATHER-PREM".to_string(), 1));
        assert_eq!(d.rules_version, shipped().rules_version);
    }

    #[test]
    #[allow(clippy::type_complexity)] // a table of cases reads best inline
    fn precedence_table() {
        let stock = full_stock(3);
        type Edit = fn(&mut Map<String, Value>);
        // (what, edit, mode, risk, expected target, primary rule)
        let cases: Vec<(&str, Edit, Option<Mode>, Option<RiskLevel>, Target, Option<&str>)> = vec![
            (
                "shopify sample is cancelled",
                |o| drop(o.insert("cancelled_at".into(), "2022-01-01T00:00:00Z".into())),
                Some(Mode::Manual),
                Some(RiskLevel::High),
                Target::new(State::Cancelled, None),
                Some(RULE_CANCELLED),
            ),
            (
                "manual beats everything else",
                |o| drop(o.remove("shipping_address")),
                Some(Mode::Manual),
                Some(RiskLevel::High),
                Target::hold(Reason::Manual),
                Some(RULE_MODE_MANUAL),
            ),
            (
                "lane default mode applies without a flag",
                |_| {},
                None,
                None,
                Target::hold(Reason::Manual),
                Some(RULE_MODE_MANUAL),
            ),
            (
                "payment hold beats address hold",
                |o| {
                    o.insert("financial_status".into(), "voided".into());
                    o.remove("shipping_address");
                },
                Some(Mode::Auto),
                None,
                Target::hold(Reason::Payment),
                Some(payment::FAILED_STATUS),
            ),
            (
                "address hold beats a payment wait",
                |o| {
                    o.insert("financial_status".into(), "pending".into());
                    o.remove("shipping_address");
                },
                Some(Mode::Auto),
                None,
                Target::hold(Reason::Address),
                Some(address::MISSING),
            ),
            (
                "address beats fraud",
                |o| o["shipping_address"]["city"] = Value::Null,
                Some(Mode::Auto),
                Some(RiskLevel::High),
                Target::hold(Reason::Address),
                Some(address::INCOMPLETE),
            ),
            (
                "fraud beats inventory",
                |o| o["line_items"][0]["sku"] = "NOPE".into(),
                Some(Mode::Auto),
                Some(RiskLevel::High),
                Target::hold(Reason::Fraud),
                Some(fraud::HIGH_RISK),
            ),
            (
                "inventory alone",
                |o| o["line_items"][0]["sku"] = "NOPE".into(),
                Some(Mode::Auto),
                Some(RiskLevel::Low),
                Target::hold(Reason::Inventory),
                Some(inventory::UNKNOWN_SKU),
            ),
            (
                "payment wait beats verdict wait",
                |o| {
                    o.insert("financial_status".into(), "pending".into());
                    o.insert("currency".into(), "EUR".into());
                    o["shipping_address"]["country_code"] = "DE".into();
                    o["shipping_address"]["zip"] = "10115".into();
                    o["billing_address"]["country_code"] = "DE".into();
                },
                Some(Mode::Auto),
                None,
                Target::new(State::New, None),
                Some(payment::PENDING_WINDOW),
            ),
            (
                "EU order waits for a verdict",
                |o| {
                    o.insert("currency".into(), "EUR".into());
                    o["shipping_address"]["country_code"] = "DE".into();
                    o["shipping_address"]["zip"] = "10115".into();
                    o["billing_address"]["country_code"] = "DE".into();
                },
                Some(Mode::Auto),
                None,
                Target::new(State::FraudCheck, None),
                Some(fraud::AWAITING_VERDICT),
            ),
            (
                "digital goods: nothing to ship",
                |o| {
                    o.remove("shipping_address");
                    for l in o["line_items"].as_array_mut().unwrap() {
                        l["requires_shipping"] = false.into();
                    }
                },
                Some(Mode::Auto),
                None,
                Target::new(State::Paid, None),
                Some(RULE_NOTHING_TO_SHIP),
            ),
            (
                "POS counter sale with null customer",
                |o| {
                    o.insert("source_name".into(), "pos".into());
                    o.insert("customer".into(), Value::Null);
                    o.remove("shipping_address");
                },
                Some(Mode::Auto),
                None,
                Target::new(State::ReadyForFulfilment, None),
                None,
            ),
        ];
        for (what, edit, mode, risk, want, primary) in cases {
            let d = run(&live(edit), mode, risk, &stock);
            assert_eq!((d.target(), d.primary_rule), (want, primary), "{what}: {}", d.explanation);
            if let Some(p) = primary {
                assert!(d.explanation.starts_with(&format!("{want}: {p}: ")), "{what}: {}", d.explanation);
            }
            assert!(
                d.fired.iter().all(|h| RULE_IDS.contains(&h.id)),
                "{what}: unknown id in {:?}",
                d.fired_ids()
            );
            assert_eq!(d.reservations.is_empty(), want.state != State::ReadyForFulfilment, "{what}");
        }
    }

    #[test]
    fn all_fired_rules_are_listed() {
        let order = live(|o| {
            o.insert("financial_status".into(), "voided".into());
            o.insert("total_price".into(), "9999.00".into());
            o["shipping_address"]["zip"] = "x".into();
            o["line_items"][0]["sku"] = "NOPE".into();
        });
        let d = run(&order, Some(Mode::Auto), Some(RiskLevel::High), &full_stock(3));
        assert_eq!(
            d.fired_ids(),
            [
                payment::FAILED_STATUS,
                address::POSTCODE_FORMAT,
                fraud::HIGH_RISK,
                fraud::TOTAL_OVER_LIMIT,
                inventory::UNKNOWN_SKU
            ]
        );
        assert_eq!(
            d.explanation,
            "hold/payment: payment.failed_status: financial status is voided (+4 more rules)"
        );
    }

    #[test]
    fn shadow_holds_for_people_and_records_the_rules_outcome() {
        let stock = full_stock(3);
        let d = run(&live(|_| {}), Some(Mode::Shadow), None, &stock);
        assert_eq!(d.target(), Target::hold(Reason::Manual));
        assert_eq!(d.shadow, Some((State::ReadyForFulfilment, None)));
        assert_eq!(d.fired_ids(), [RULE_MODE_SHADOW]);
        assert!(d.reservations.is_empty(), "shadow claims no stock");
        let d = run(&live(|o| drop(o.remove("shipping_address"))), Some(Mode::Shadow), None, &stock);
        assert_eq!(d.shadow, Some((State::Hold, Some(Reason::Address))));
        assert_eq!(d.fired_ids(), [RULE_MODE_SHADOW, address::MISSING]);
        let d = run(&live(|_| {}), Some(Mode::Manual), None, &stock);
        assert_eq!(d.shadow, None);
        assert!(d.explanation.contains("rules alone would give ready-for-fulfilment"), "{}", d.explanation);
    }

    #[test]
    fn time_moves_waits_to_holds() {
        let m = shipped();
        let stock = full_stock(3);
        let order = live(|o| drop(o.insert("financial_status".into(), "pending".into())));
        let input = RouteInput {
            shop: "demo.myshopify.com",
            order: &order,
            risk: None,
            stock: &stock,
            email_orders_in_window: 1,
            mode: Some(Mode::Auto),
        };
        assert_eq!(decide(&m, &input, CREATED + 1440 * MIN).target(), Target::new(State::New, None));
        assert_eq!(decide(&m, &input, CREATED + 1440 * MIN + 1).target(), Target::hold(Reason::Payment));
    }

    #[test]
    fn explanations_and_decisions_carry_no_personal_data() {
        let order = live(|o| {
            o["shipping_address"]["zip"] = "BAD-ZIP-777".into();
            o["billing_address"]["country_code"] = "CA".into();
        });
        for mode in Mode::ALL {
            let d = run(&order, Some(*mode), Some(RiskLevel::Medium), &BTreeMap::new());
            let text = serde_json::to_string(&d).unwrap();
            for pii in [
                "jon@example.com",
                "john@example.com",
                "Steve",
                "Shipper",
                "Shipping Street",
                "Shippington",
                "BAD-ZIP",
                "555",
            ] {
                assert!(!text.contains(pii), "{pii} in {text}");
            }
        }
    }

    /// xorshift64*: small, deterministic, good enough to shake the parser and the rules.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len() as u64) as usize]
        }
    }

    // The keys the payload model reads, so the generator hits them often.
    use crate::core::order::ORDER_KEYS as KEYS;
    static SUBKEYS: std::sync::LazyLock<Vec<&str>> =
        std::sync::LazyLock::new(|| crate::core::order::NESTED_KEYS.concat());
    const STRINGS: &[&str] = &[
        "",
        " ",
        "paid",
        "pending",
        "authorized",
        "voided",
        "refunded",
        "partially_paid",
        "fulfilled",
        "partial",
        "pos",
        "web",
        "EUR",
        "usd",
        "US",
        "DE",
        "HK",
        "UK",
        "10115",
        "SW1A 1AA",
        "PO Box 1",
        "Postfach 3",
        "404.95",
        "0.001",
        "-3",
        "1e9",
        "99999999999999999999.99",
        "2021-12-31T19:00:00-05:00",
        "2026-02-30T00:00:00Z",
        "gid://shopify/Order/9",
        "wholesale, vip",
        "SKU2006-001",
        "Zoë 李",
        "\u{0}",
        "18446744073709551616",
    ];

    fn random_value(r: &mut Rng, depth: u32) -> Value {
        match r.below(if depth > 2 { 6 } else { 9 }) {
            0 => Value::Null,
            1 => Value::Bool(r.below(2) == 0),
            2 => serde_json::json!(*r.pick(&[0i64, 1, -1, 7, i64::MAX, i64::MIN, 820982911946154508])),
            3 => serde_json::json!(r.next()),
            4 => serde_json::json!((r.below(100_000) as f64) / 7.0),
            5 => Value::String((*r.pick(STRINGS)).to_string()),
            6 => Value::Array((0..r.below(4)).map(|_| random_value(r, depth + 1)).collect()),
            _ => {
                let mut m = Map::new();
                for _ in 0..r.below(6) {
                    m.insert((*r.pick(&SUBKEYS)).to_string(), random_value(r, depth + 1));
                }
                Value::Object(m)
            }
        }
    }

    fn random_order_json(r: &mut Rng) -> Value {
        if r.below(4) == 0 {
            let mut m = Map::new();
            for _ in 0..r.below(12) {
                m.insert((*r.pick(KEYS)).to_string(), random_value(r, 0));
            }
            return Value::Object(m);
        }
        fixture_with(|o| {
            for _ in 0..r.below(6) {
                let key = (*r.pick(KEYS)).to_string();
                match r.below(4) {
                    0 => drop(o.remove(&key)),
                    1 => drop(o.insert(key, random_value(r, 0))),
                    2 => {
                        let i = r.below(5) as usize;
                        let sub = (*r.pick(&SUBKEYS)).to_string();
                        let lines = o.get_mut("line_items");
                        if let Some(line) = lines.and_then(|l| l.get_mut(i)).and_then(Value::as_object_mut) {
                            line.insert(sub, random_value(r, 1));
                        }
                    }
                    _ => {
                        let sub = (*r.pick(&SUBKEYS)).to_string();
                        if let Some(a) = o.get_mut("shipping_address").and_then(Value::as_object_mut) {
                            a.insert(sub, Value::String((*r.pick(STRINGS)).to_string()));
                        }
                    }
                }
            }
        })
    }

    #[test]
    fn routing_is_total_and_deterministic() {
        let m = shipped();
        let mut r = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut decided, mut rejected) = (0, 0);
        for case in 0..4000 {
            let json = random_order_json(&mut r);
            let mut bytes = serde_json::to_vec(&json).unwrap();
            if r.below(10) == 0 && !bytes.is_empty() {
                // Byte-level damage too: truncation or a flipped byte.
                let i = r.below(bytes.len() as u64) as usize;
                if r.below(2) == 0 {
                    bytes.truncate(i)
                } else {
                    bytes[i] ^= 1 << r.below(8)
                }
            }
            let order = match crate::core::order::parse_order(&bytes) {
                Ok(o) => o,
                Err(e) => {
                    assert!(["invalid_json", "not_an_object", "missing_field", "invalid_field"]
                        .contains(&e.code()));
                    rejected += 1;
                    continue;
                }
            };
            let mut stock = BTreeMap::new();
            for sku in ["SKU2006-001", "LENS-PROTECT-2YR", "SKU2006-020", "PO Box 1"] {
                if r.below(3) > 0 {
                    stock.insert(sku.to_string(), r.below(5) as i64 - 1);
                }
            }
            let shop = *r.pick(&["demo.myshopify.com", "", "ÜBER.myshopify.com"]);
            let input = RouteInput {
                shop,
                order: &order,
                risk: *r.pick(&[
                    None,
                    Some(RiskLevel::High),
                    Some(RiskLevel::Medium),
                    Some(RiskLevel::Low),
                    Some(RiskLevel::None),
                    Some(RiskLevel::Pending),
                ]),
                stock: &stock,
                email_orders_in_window: r.below(8) as u32,
                mode: *r.pick(&[None, Some(Mode::Auto), Some(Mode::Shadow), Some(Mode::Manual)]),
            };
            let now = *r.pick(&[i64::MIN, -1, 0, CREATED, CREATED + 121 * MIN, i64::MAX]);
            let d = decide(&m, &input, now);
            assert_eq!(d, decide(&m, &input, now), "case {case}: deterministic");
            assert_eq!(d.state == State::Hold, d.reason.is_some(), "case {case}: hold iff reason");
            assert!(!d.reservations.is_empty() <= (d.state == State::ReadyForFulfilment), "case {case}");
            assert!(d.fired.iter().all(|h| RULE_IDS.contains(&h.id)), "case {case}");
            assert!(m.lane(&d.lane).is_some() && !d.explanation.is_empty(), "case {case}");
            assert!(d.primary_rule.is_none_or(|p| d.fired_ids().contains(&p)), "case {case}");
            assert!(matches!(
                d.state,
                State::New
                    | State::Paid
                    | State::FraudCheck
                    | State::Hold
                    | State::ReadyForFulfilment
                    | State::Cancelled
            ));
            // The event path is total too, twice over the same inputs.
            let env = crate::core::apply::RouteEnv {
                matrix: &m,
                shop: input.shop,
                stock: &stock,
                email_orders_in_window: input.email_orders_in_window,
                mode: input.mode,
                risk: input.risk,
            };
            let topic = *r.pick(&[
                Topic::OrdersCreate,
                Topic::OrdersUpdated,
                Topic::OrdersPaid,
                Topic::OrdersCancelled,
                Topic::OrdersFulfilled,
                Topic::OrdersPartiallyFulfilled,
            ]);
            let delivery =
                Delivery { incoming: Incoming::Order { topic, order: &order }, triggered_at_ms: Some(now) };
            let first = apply_delivery(None, &delivery, &env, now);
            assert_eq!(first, apply_delivery(None, &delivery, &env, now));
            let rec = first.record.clone().unwrap();
            let second = apply_delivery(Some(&rec), &delivery, &env, now);
            assert_eq!(second, apply_delivery(Some(&rec), &delivery, &env, now));
            assert_eq!(second.audit.len(), 1);
            let _ = sweep(&rec, m.lane(&rec.lane).unwrap(), now);
            decided += 1;
        }
        // The generator must exercise both paths, or the test proves little.
        assert!(decided > 1000 && rejected > 300, "decided {decided}, rejected {rejected}");
    }
}
