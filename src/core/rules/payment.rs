//! Payment rules, from the order's `financial_status`.
//!
//! | status | outcome |
//! |---|---|
//! | `paid` | passes |
//! | `authorized` on a lane with `pass_authorized` | passes (capture-later lanes) |
//! | `authorized` elsewhere | waits in `new` (`payment.awaiting_capture`) until the lane's window, then `hold/payment` |
//! | `pending` | waits in `new` (`payment.pending_window`) until the window, then `hold/payment` |
//! | `partially_paid`, `voided`, `expired`, `refunded`, `partially_refunded` | `hold/payment` |
//! | absent or anything else | `hold/payment` (`payment.unknown_status`) |
//!
//! The window is `payment.pending_window_minutes` counted from `created_at`; an order exactly
//! at the end of its window is still inside it. Uncaptured authorizations share the window
//! because an authorization nobody captures is, for the warehouse, a payment that never came.

use super::{minutes_ms, Effect, Lane, RuleHit};
use crate::core::order::Order;
use crate::core::types::{Reason, State};

pub const PENDING_WINDOW: &str = "payment.pending_window";
pub const WINDOW_EXPIRED: &str = "payment.window_expired";
pub const AWAITING_CAPTURE: &str = "payment.awaiting_capture";
pub const FAILED_STATUS: &str = "payment.failed_status";
pub const UNKNOWN_STATUS: &str = "payment.unknown_status";

/// When an order waiting in `new` is held for payment.
pub fn window_ends_ms(created_at_ms: i64, lane: &Lane) -> i64 {
    created_at_ms.saturating_add(minutes_ms(lane.payment.pending_window_minutes))
}

/// Payment rules that fire for `order` at `now_ms`.
pub fn evaluate(order: &Order, lane: &Lane, now_ms: i64) -> Vec<RuleHit> {
    let status = order.financial_status.as_deref().unwrap_or("");
    let window = lane.payment.pending_window_minutes;
    let waiting = |id: &'static str, what: &str| {
        if now_ms <= window_ends_ms(order.created_at_ms, lane) {
            RuleHit::new(
                id,
                Effect::Wait(State::New),
                format!("{what}; waiting up to {window} min from creation"),
            )
        } else {
            RuleHit::new(
                WINDOW_EXPIRED,
                Effect::Hold(Reason::Payment),
                format!("{what} past the lane's {window} min window"),
            )
        }
    };
    let hit = match status {
        "paid" => return Vec::new(),
        "authorized" if lane.payment.pass_authorized => return Vec::new(),
        "authorized" => waiting(AWAITING_CAPTURE, "payment authorized but not captured"),
        "pending" => waiting(PENDING_WINDOW, "payment pending"),
        "partially_paid" | "voided" | "expired" | "refunded" | "partially_refunded" => RuleHit::new(
            FAILED_STATUS,
            Effect::Hold(Reason::Payment),
            format!("financial status is {status}"),
        ),
        "" => RuleHit::new(UNKNOWN_STATUS, Effect::Hold(Reason::Payment), "order has no financial status"),
        _ => RuleHit::new(
            UNKNOWN_STATUS,
            Effect::Hold(Reason::Payment),
            "financial status is not one orderlane knows",
        ),
    };
    vec![hit]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::order::{order_from_value, tests::fixture_with};
    use crate::core::rules::tests::shipped;

    #[test]
    #[allow(clippy::type_complexity)] // a table of cases reads best inline
    fn statuses_by_lane_and_time() {
        let m = shipped();
        let created = 1_640_995_200_000; // fixture created_at
        let min = 60_000;
        // (lane, status, minutes after creation, expected hit)
        let cases: &[(&str, Option<&str>, i64, Option<(&str, Effect)>)] = &[
            ("default", Some("paid"), 0, None),
            ("default", Some("PAID"), 0, None),
            ("default", Some("pending"), 0, Some((PENDING_WINDOW, Effect::Wait(State::New)))),
            ("default", Some("pending"), 1440, Some((PENDING_WINDOW, Effect::Wait(State::New)))),
            ("default", Some("pending"), 1441, Some((WINDOW_EXPIRED, Effect::Hold(Reason::Payment)))),
            ("eu", Some("pending"), 1441, Some((PENDING_WINDOW, Effect::Wait(State::New)))),
            ("pos", Some("pending"), 1, Some((WINDOW_EXPIRED, Effect::Hold(Reason::Payment)))),
            ("default", Some("authorized"), 5, Some((AWAITING_CAPTURE, Effect::Wait(State::New)))),
            ("default", Some("authorized"), 2000, Some((WINDOW_EXPIRED, Effect::Hold(Reason::Payment)))),
            ("wholesale", Some("authorized"), 99_999, None),
            ("default", Some("voided"), 0, Some((FAILED_STATUS, Effect::Hold(Reason::Payment)))),
            ("default", Some("partially_paid"), 0, Some((FAILED_STATUS, Effect::Hold(Reason::Payment)))),
            ("wholesale", Some("expired"), 0, Some((FAILED_STATUS, Effect::Hold(Reason::Payment)))),
            ("default", Some("refunded"), 0, Some((FAILED_STATUS, Effect::Hold(Reason::Payment)))),
            ("default", Some("partially_refunded"), 0, Some((FAILED_STATUS, Effect::Hold(Reason::Payment)))),
            ("default", None, 0, Some((UNKNOWN_STATUS, Effect::Hold(Reason::Payment)))),
            ("default", Some("on_hold"), 0, Some((UNKNOWN_STATUS, Effect::Hold(Reason::Payment)))),
        ];
        for (lane, status, after, want) in cases {
            let v = fixture_with(|o| {
                o.insert("financial_status".into(), status.map_or(serde_json::Value::Null, Into::into));
            });
            let order = order_from_value(&v).unwrap();
            let hits = evaluate(&order, m.lane(lane).unwrap(), created + after * min);
            let got = hits.first().map(|h| (h.id, h.effect));
            assert_eq!(got, *want, "{lane} {status:?} +{after}min");
            assert!(hits.len() <= 1);
        }
    }
}
