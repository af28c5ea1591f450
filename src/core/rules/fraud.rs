//! Fraud rules: Shopify's risk verdict (from `orders/risk_assessment_changed`, supplied by
//! the edge) and three deterministic checks.
//!
//! | input | outcome |
//! |---|---|
//! | verdict `high` | `hold/fraud` (`fraud.high_risk`) |
//! | verdict `medium` | per lane: `hold/fraud` (`fraud.medium_risk`) or pass |
//! | verdict `low`, `none` | pass |
//! | verdict `pending` or none yet, lane `require_verdict` | `fraud-check` until `verdict_timeout_minutes` after creation (`fraud.awaiting_verdict`), then `hold/fraud` (`fraud.verdict_timeout`) |
//! | verdict `pending` or none yet, verdict not required | pass |
//! | total above `max_total_cents` | `hold/fraud` (`fraud.total_over_limit`) |
//! | billing and shipping countries differ, lane checks it | `hold/fraud` (`fraud.country_mismatch`) |
//! | orders from this email in the window (this one included) above `max_orders` | `hold/fraud` (`fraud.email_velocity`) |

use super::{minutes_ms, Effect, Lane, Policy, RuleHit};
use crate::core::order::{Order, RiskLevel};
use crate::core::types::{Reason, State};

pub const HIGH_RISK: &str = "fraud.high_risk";
pub const MEDIUM_RISK: &str = "fraud.medium_risk";
pub const AWAITING_VERDICT: &str = "fraud.awaiting_verdict";
pub const VERDICT_TIMEOUT: &str = "fraud.verdict_timeout";
pub const TOTAL_OVER_LIMIT: &str = "fraud.total_over_limit";
pub const COUNTRY_MISMATCH: &str = "fraud.country_mismatch";
pub const EMAIL_VELOCITY: &str = "fraud.email_velocity";

/// When an order waiting in `fraud-check` is held for lack of a verdict.
pub fn verdict_due_ms(created_at_ms: i64, lane: &Lane) -> i64 {
    created_at_ms.saturating_add(minutes_ms(lane.fraud.verdict_timeout_minutes))
}

/// Fraud rules that fire. `email_orders_in_window` counts this customer email's orders in
/// the lane's velocity window, this order included (the edge counts; 0 when no email).
pub fn evaluate(
    order: &Order,
    lane: &Lane,
    risk: Option<RiskLevel>,
    email_orders_in_window: u32,
    now_ms: i64,
) -> Vec<RuleHit> {
    let f = &lane.fraud;
    let hold = |id, text: String| RuleHit::new(id, Effect::Hold(Reason::Fraud), text);
    let mut hits = Vec::new();
    match risk {
        Some(RiskLevel::High) => hits.push(hold(HIGH_RISK, "Shopify rates the order high risk".into())),
        Some(RiskLevel::Medium) if f.medium == Policy::Hold => hits.push(hold(
            MEDIUM_RISK,
            format!("Shopify rates the order medium risk; lane {} holds those", lane.name),
        )),
        Some(RiskLevel::Medium | RiskLevel::Low | RiskLevel::None) => {}
        Some(RiskLevel::Pending) | None if f.require_verdict => {
            let t = f.verdict_timeout_minutes;
            if now_ms <= verdict_due_ms(order.created_at_ms, lane) {
                hits.push(RuleHit::new(
                    AWAITING_VERDICT,
                    Effect::Wait(State::FraudCheck),
                    format!("no risk verdict yet; waiting up to {t} min from creation"),
                ));
            } else {
                hits.push(hold(VERDICT_TIMEOUT, format!("no risk verdict within {t} min of creation")));
            }
        }
        Some(RiskLevel::Pending) | None => {}
    }
    if let Some(limit) = f.max_total_cents {
        if order.total_price_cents > limit {
            hits.push(hold(
                TOTAL_OVER_LIMIT,
                format!("total {} exceeds lane limit {}", cents(order.total_price_cents), cents(limit)),
            ));
        }
    }
    if f.country_mismatch {
        let bill = order.billing_address.as_ref().and_then(|a| a.country_code.as_deref());
        if let (Some(b), Some(s)) = (bill, order.shipping_country()) {
            if b != s {
                hits.push(hold(
                    COUNTRY_MISMATCH,
                    format!("billing country {b} differs from shipping country {s}"),
                ));
            }
        }
    }
    if let Some(v) = f.email_velocity {
        if order.email.is_some() && email_orders_in_window > v.max_orders {
            hits.push(hold(
                EMAIL_VELOCITY,
                format!(
                    "{email_orders_in_window} orders from this email within {} min (limit {})",
                    v.window_minutes, v.max_orders
                ),
            ));
        }
    }
    hits
}

/// `12345` → `"123.45"`.
fn cents(v: i64) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::order::{order_from_value, tests::fixture_with};
    use crate::core::rules::tests::shipped;
    use serde_json::{json, Value};

    const CREATED: i64 = 1_640_995_200_000;
    const MIN: i64 = 60_000;

    type Edit = fn(&mut serde_json::Map<String, Value>);

    #[test]
    #[allow(clippy::type_complexity)] // a table of cases reads best inline
    fn fraud_rules_table() {
        let m = shipped();
        let eu: Edit = |o| {
            o["shipping_address"]["country_code"] = "DE".into();
            o["billing_address"]["country_code"] = "DE".into();
        };
        let none: Edit = |_| {};
        // (lane, payload edit, verdict, email count, minutes after creation, fired ids)
        let cases: Vec<(&str, Edit, Option<RiskLevel>, u32, i64, Vec<&str>)> = vec![
            ("default", none, None, 1, 0, vec![]),
            ("default", none, Some(RiskLevel::High), 1, 0, vec![HIGH_RISK]),
            ("default", none, Some(RiskLevel::Medium), 1, 0, vec![MEDIUM_RISK]),
            ("wholesale", none, Some(RiskLevel::Medium), 1, 0, vec![]),
            ("default", none, Some(RiskLevel::Low), 1, 0, vec![]),
            ("default", none, Some(RiskLevel::None), 1, 0, vec![]),
            ("default", none, Some(RiskLevel::Pending), 1, 0, vec![]),
            ("eu", eu, None, 1, 0, vec![AWAITING_VERDICT]),
            ("eu", eu, Some(RiskLevel::Pending), 1, 120, vec![AWAITING_VERDICT]),
            ("eu", eu, Some(RiskLevel::Pending), 1, 121, vec![VERDICT_TIMEOUT]),
            ("eu", eu, None, 1, 10_000, vec![VERDICT_TIMEOUT]),
            ("eu", eu, Some(RiskLevel::Low), 1, 10_000, vec![]),
            ("default", |o| drop(o.insert("total_price".into(), "3000.00".into())), None, 1, 0, vec![]),
            (
                "default",
                |o| drop(o.insert("total_price".into(), "3000.01".into())),
                None,
                1,
                0,
                vec![TOTAL_OVER_LIMIT],
            ),
            ("pos", |o| drop(o.insert("total_price".into(), "99999.99".into())), None, 1, 0, vec![]),
            (
                "default",
                |o| o["billing_address"]["country_code"] = "CA".into(),
                None,
                1,
                0,
                vec![COUNTRY_MISMATCH],
            ),
            ("wholesale", |o| o["billing_address"]["country_code"] = "CA".into(), None, 1, 0, vec![]),
            ("default", |o| drop(o.insert("billing_address".into(), Value::Null)), None, 1, 0, vec![]),
            ("default", none, None, 3, 0, vec![]),
            ("default", none, None, 4, 0, vec![EMAIL_VELOCITY]),
            (
                "default",
                |o| {
                    o.insert("email".into(), Value::Null);
                    o.insert("contact_email".into(), Value::Null);
                    o.insert("customer".into(), Value::Null);
                },
                None,
                40,
                0,
                vec![],
            ),
            (
                "default",
                |o| {
                    o.insert("total_price".into(), "5000".into());
                    o["billing_address"]["country_code"] = "GB".into();
                },
                Some(RiskLevel::High),
                9,
                0,
                vec![HIGH_RISK, TOTAL_OVER_LIMIT, COUNTRY_MISMATCH, EMAIL_VELOCITY],
            ),
        ];
        for (i, (lane, edit, risk, count, after, want)) in cases.into_iter().enumerate() {
            let order = order_from_value(&fixture_with(edit)).unwrap();
            let hits = evaluate(&order, m.lane(lane).unwrap(), risk, count, CREATED + after * MIN);
            let got: Vec<_> = hits.iter().map(|h| h.id).collect();
            assert_eq!(got, want, "case {i}: {lane} {risk:?}");
            for h in &hits {
                assert!(!h.explanation.contains("example.com"), "{}", h.explanation);
            }
        }
    }

    #[test]
    fn effects_and_money_text() {
        let m = shipped();
        let order =
            order_from_value(&fixture_with(|o| drop(o.insert("total_price".into(), json!("3000.05")))))
                .unwrap();
        let hits = evaluate(&order, m.lane("default").unwrap(), None, 0, CREATED);
        assert_eq!(hits[0].effect, Effect::Hold(Reason::Fraud));
        assert_eq!(hits[0].explanation, "total 3000.05 exceeds lane limit 3000.00");
        assert_eq!(cents(-5), "-0.05");
    }
}
