//! The order state machine: for every (state, event) pair, one defined outcome.
//!
//! [`transition`] is the whole table, written as one `match` so it can be audited line by
//! line; the test at the bottom walks every state (every hold reason) × every event kind.
//!
//! Invariants the table keeps:
//! - `fulfilled` is final. `cancelled` is final except for the answer to the cancel request
//!   orderlane sends the warehouse for an order it had accepted: confirmed (unchanged), or
//!   refused because it already shipped (or the request failed), which moves the order to
//!   `hold/fulfilment` for a person.
//! - `submitted` (the warehouse has it) moves only to `fulfilled` or, on a cancellation in
//!   Shopify, to `cancelled` (and the edge asks the warehouse to cancel); a partial
//!   fulfilment is recorded (`Unchanged` with a note) but moves nothing.
//! - The warehouse's answer to an attempt that was in flight while the order moved is still a
//!   fact: an acceptance of a cancelled order is recorded (and a cancel request follows).
//! - Re-running the rules (`Routed`, `Paid`, `RiskVerdict`, `PartiallyFulfilled`) never
//!   releases a `manual` or `fulfilment` hold: those wait for a person (`OperatorRelease`,
//!   `OperatorForceReady`). Holds for payment, address, fraud or inventory are released by
//!   a re-run whose rules now pass (e.g. `orders/paid`, an address fix, a risk verdict).
//! - Nothing is applied silently: an event that does not apply is `Ignored { reason }`.
//!
//! Ordering (stale deliveries) is decided before the table, in `apply`.

use serde::Serialize;

use super::types::{Reason, State};

/// A state with its hold reason (present exactly when the state is `hold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Target {
    pub state: State,
    pub reason: Option<Reason>,
}

impl Target {
    pub fn new(state: State, reason: Option<Reason>) -> Self {
        Target { state, reason }
    }

    pub fn hold(reason: Reason) -> Self {
        Target { state: State::Hold, reason: Some(reason) }
    }

    /// A state the rules may route an order to: not `submitted`, `fulfilled` or `cancelled`,
    /// and a reason exactly when it is `hold`.
    pub fn is_routable(&self) -> bool {
        use State::*;
        matches!(self.state, New | Paid | FraudCheck | Hold | ReadyForFulfilment)
            && (self.state == Hold) == self.reason.is_some()
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.reason {
            Some(r) => write!(f, "{}/{}", self.state, r),
            None => write!(f, "{}", self.state),
        }
    }
}

/// What can happen to an order. Variants carrying a [`Target`] are re-runs of the rules:
/// the target is what `routing::decide` concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `orders/create` or `orders/updated` (or any order topic arriving first).
    Routed(Target),
    /// `orders/paid`.
    Paid(Target),
    /// A risk verdict arrived and the rules were re-run with it.
    RiskVerdict(Target),
    /// `orders/partially_fulfilled` (or an order whose status says so).
    PartiallyFulfilled(Target),
    /// An operator asked for the rules to be re-run, manual holds included.
    OperatorRelease(Target),
    /// `orders/cancelled` (or any order with `cancelled_at`).
    Cancelled,
    /// `orders/fulfilled` (or an order whose fulfillment status is `fulfilled`).
    Fulfilled,
    /// Cron: a `new` order's payment window has passed.
    PaymentWindowExpired,
    /// Cron: a `fraud-check` order's verdict timeout has passed.
    FraudTimeout,
    /// The fulfilment consumer is about to send the order; allowed only from `ready`.
    SubmissionClaimed,
    /// Downstream answered 2xx.
    Submitted,
    /// Downstream refused the order for stock.
    DownstreamOutOfStock,
    /// Delivery to downstream gave up; dead-lettered.
    DeadLettered,
    /// A submission attempt failed transiently; the next one is scheduled.
    AttemptFailed,
    /// The warehouse confirmed the cancel request.
    CancelConfirmed,
    /// The warehouse refused the cancel request: it had already shipped the order.
    CancelShipped,
    /// The cancel request was refused for another reason or kept failing; dead-lettered.
    CancelFailed,
    /// A cancel request attempt failed transiently; the next one is scheduled.
    CancelAttemptFailed,
    /// An operator sends the order to the warehouse regardless of the rules.
    OperatorForceReady,
    /// An operator holds the order for a person.
    OperatorHold,
    /// An operator stops the order for good (marks it `cancelled` in the lane; Shopify is untouched).
    OperatorStop,
    /// The segment was switched to manual: open orders not yet held go to a person.
    ModeManual,
}

/// [`Event`] without its payload, for audit names and exhaustive tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Routed,
    Paid,
    RiskVerdict,
    PartiallyFulfilled,
    OperatorRelease,
    Cancelled,
    Fulfilled,
    PaymentWindowExpired,
    FraudTimeout,
    SubmissionClaimed,
    Submitted,
    DownstreamOutOfStock,
    DeadLettered,
    AttemptFailed,
    CancelConfirmed,
    CancelShipped,
    CancelFailed,
    CancelAttemptFailed,
    OperatorForceReady,
    OperatorHold,
    OperatorStop,
    ModeManual,
}

impl EventKind {
    pub const ALL: &'static [EventKind] = &[
        EventKind::Routed,
        EventKind::Paid,
        EventKind::RiskVerdict,
        EventKind::PartiallyFulfilled,
        EventKind::OperatorRelease,
        EventKind::Cancelled,
        EventKind::Fulfilled,
        EventKind::PaymentWindowExpired,
        EventKind::FraudTimeout,
        EventKind::SubmissionClaimed,
        EventKind::Submitted,
        EventKind::DownstreamOutOfStock,
        EventKind::DeadLettered,
        EventKind::AttemptFailed,
        EventKind::CancelConfirmed,
        EventKind::CancelShipped,
        EventKind::CancelFailed,
        EventKind::CancelAttemptFailed,
        EventKind::OperatorForceReady,
        EventKind::OperatorHold,
        EventKind::OperatorStop,
        EventKind::ModeManual,
    ];

    /// The audit-log `event` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Routed => "routed",
            EventKind::Paid => "paid",
            EventKind::RiskVerdict => "risk_verdict",
            EventKind::PartiallyFulfilled => "partially_fulfilled",
            EventKind::OperatorRelease => "operator_release",
            EventKind::Cancelled => "cancelled",
            EventKind::Fulfilled => "fulfilled",
            EventKind::PaymentWindowExpired => "payment_window_expired",
            EventKind::FraudTimeout => "fraud_timeout",
            EventKind::SubmissionClaimed => "submission_claimed",
            EventKind::Submitted => "submitted",
            EventKind::DownstreamOutOfStock => "downstream_out_of_stock",
            EventKind::DeadLettered => "dead_lettered",
            EventKind::AttemptFailed => "retry_scheduled",
            EventKind::CancelConfirmed => "cancel_confirmed",
            EventKind::CancelShipped => "cancel_refused_shipped",
            EventKind::CancelFailed => "cancel_failed",
            EventKind::CancelAttemptFailed => "cancel_retry_scheduled",
            EventKind::OperatorForceReady => "operator_force_ready",
            EventKind::OperatorHold => "operator_hold",
            EventKind::OperatorStop => "operator_stop",
            EventKind::ModeManual => "mode_manual",
        }
    }
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Routed(_) => EventKind::Routed,
            Event::Paid(_) => EventKind::Paid,
            Event::RiskVerdict(_) => EventKind::RiskVerdict,
            Event::PartiallyFulfilled(_) => EventKind::PartiallyFulfilled,
            Event::OperatorRelease(_) => EventKind::OperatorRelease,
            Event::Cancelled => EventKind::Cancelled,
            Event::Fulfilled => EventKind::Fulfilled,
            Event::PaymentWindowExpired => EventKind::PaymentWindowExpired,
            Event::FraudTimeout => EventKind::FraudTimeout,
            Event::SubmissionClaimed => EventKind::SubmissionClaimed,
            Event::Submitted => EventKind::Submitted,
            Event::DownstreamOutOfStock => EventKind::DownstreamOutOfStock,
            Event::DeadLettered => EventKind::DeadLettered,
            Event::AttemptFailed => EventKind::AttemptFailed,
            Event::CancelConfirmed => EventKind::CancelConfirmed,
            Event::CancelShipped => EventKind::CancelShipped,
            Event::CancelFailed => EventKind::CancelFailed,
            Event::CancelAttemptFailed => EventKind::CancelAttemptFailed,
            Event::OperatorForceReady => EventKind::OperatorForceReady,
            Event::OperatorHold => EventKind::OperatorHold,
            Event::OperatorStop => EventKind::OperatorStop,
            Event::ModeManual => EventKind::ModeManual,
        }
    }
}

/// Why an event was not applied. Spellings are stable (audit detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ignore {
    /// Older than what the record already reflects.
    Stale,
    OrderCancelled,
    OrderFulfilled,
    AlreadySubmitted,
    /// A manual or fulfilment hold: only an operator releases it.
    NeedsOperator,
    /// The event needs `ready-for-fulfilment` and the order is not.
    NotReady,
    /// The event concerns another state (e.g. a payment sweep for an order not in `new`).
    NotApplicable,
    /// Already on hold; a mode switch does not re-hold it.
    AlreadyHeld,
    /// The rules produced a state routing may not set (a bug upstream, never applied).
    IllegalTarget,
    /// A risk verdict for an order not seen yet.
    OrderNotSeen,
}

impl Ignore {
    pub fn as_str(self) -> &'static str {
        match self {
            Ignore::Stale => "stale",
            Ignore::OrderCancelled => "order-cancelled",
            Ignore::OrderFulfilled => "order-fulfilled",
            Ignore::AlreadySubmitted => "already-submitted",
            Ignore::NeedsOperator => "needs-operator",
            Ignore::NotReady => "not-ready",
            Ignore::NotApplicable => "not-applicable",
            Ignore::AlreadyHeld => "already-held",
            Ignore::IllegalTarget => "illegal-target",
            Ignore::OrderNotSeen => "order-not-seen",
        }
    }
}

/// The result of one event on one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Move to `to` (which may be a different hold reason in the same `hold` state).
    Move(Target),
    /// Accepted and recorded, state unchanged.
    Unchanged { note: &'static str },
    /// Not applied.
    Ignored(Ignore),
}

/// The transition table. `reason` is the current hold reason (`None` unless `hold`).
pub fn transition(from: State, reason: Option<Reason>, event: &Event) -> Outcome {
    use Event as E;
    use Outcome::{Ignored, Move, Unchanged};
    use State::*;
    let held_for_person = from == Hold && matches!(reason, Some(Reason::Manual | Reason::Fulfilment));
    match (from, event) {
        // The answer to a cancel request: only a cancelled order waits for one.
        (Cancelled, E::CancelConfirmed) => Unchanged { note: "the warehouse confirmed the cancellation" },
        (Cancelled, E::CancelAttemptFailed) => {
            Unchanged { note: "cancel request failed for now; the next attempt is scheduled" }
        }
        (Cancelled, E::CancelShipped | E::CancelFailed) => Move(Target::hold(Reason::Fulfilment)),
        (_, E::CancelConfirmed | E::CancelShipped | E::CancelFailed | E::CancelAttemptFailed) => {
            Ignored(Ignore::NotApplicable)
        }

        // The warehouse accepted an attempt that was in flight when the order was cancelled:
        // a fact to record; the edge follows it with a cancel request.
        (Cancelled, E::Submitted) => {
            Unchanged { note: "the warehouse accepted the order after it was cancelled; asking it to cancel" }
        }
        // Final states.
        (Cancelled, _) => Ignored(Ignore::OrderCancelled),
        (Fulfilled, _) => Ignored(Ignore::OrderFulfilled),

        // The warehouse has it: only its fulfilment or a cancellation moves it on.
        (Submitted, E::Fulfilled) => Move(Target::new(Fulfilled, None)),
        (Submitted, E::Cancelled) => Move(Target::new(Cancelled, None)),
        (Submitted, E::PartiallyFulfilled(_)) => {
            Unchanged { note: "partial fulfilment of a submitted order" }
        }
        (Submitted, _) => Ignored(Ignore::AlreadySubmitted),

        // From here on the order is open: new, paid, fraud-check, hold or ready.
        (_, E::Cancelled | E::OperatorStop) => Move(Target::new(Cancelled, None)),
        (_, E::Fulfilled) => Move(Target::new(Fulfilled, None)),
        // Downstream acceptance is a fact even if the order moved while in flight.
        (_, E::Submitted) => Move(Target::new(Submitted, None)),

        (ReadyForFulfilment, E::SubmissionClaimed) => Unchanged { note: "claimed for submission" },
        (ReadyForFulfilment, E::AttemptFailed) => {
            Unchanged { note: "attempt failed for now; the next attempt is scheduled" }
        }
        (ReadyForFulfilment, E::DownstreamOutOfStock) => Move(Target::hold(Reason::Inventory)),
        (ReadyForFulfilment, E::DeadLettered) => Move(Target::hold(Reason::Fulfilment)),
        (_, E::SubmissionClaimed | E::AttemptFailed | E::DownstreamOutOfStock | E::DeadLettered) => {
            Ignored(Ignore::NotReady)
        }

        (New, E::PaymentWindowExpired) => Move(Target::hold(Reason::Payment)),
        (_, E::PaymentWindowExpired) => Ignored(Ignore::NotApplicable),
        (FraudCheck, E::FraudTimeout) => Move(Target::hold(Reason::Fraud)),
        (_, E::FraudTimeout) => Ignored(Ignore::NotApplicable),

        (ReadyForFulfilment, E::OperatorForceReady) => Unchanged { note: "already ready for fulfilment" },
        (_, E::OperatorForceReady) => Move(Target::new(ReadyForFulfilment, None)),
        (Hold, E::OperatorHold) if reason == Some(Reason::Manual) => {
            Unchanged { note: "already held for a person" }
        }
        (_, E::OperatorHold) => Move(Target::hold(Reason::Manual)),
        (Hold, E::ModeManual) => Ignored(Ignore::AlreadyHeld),
        (_, E::ModeManual) => Move(Target::hold(Reason::Manual)),

        (_, E::OperatorRelease(t)) => rerun(from, reason, *t),
        (_, E::Routed(_) | E::Paid(_) | E::RiskVerdict(_) | E::PartiallyFulfilled(_)) if held_for_person => {
            Ignored(Ignore::NeedsOperator)
        }
        (_, E::Routed(t) | E::Paid(t) | E::RiskVerdict(t) | E::PartiallyFulfilled(t)) => {
            rerun(from, reason, *t)
        }
    }
}

/// An open order takes what the rules now say.
fn rerun(from: State, reason: Option<Reason>, t: Target) -> Outcome {
    if !t.is_routable() {
        Outcome::Ignored(Ignore::IllegalTarget)
    } else if t == Target::new(from, reason) {
        Outcome::Unchanged { note: "rules reach the same outcome" }
    } else {
        Outcome::Move(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every state, each hold reason separately.
    fn all_current() -> Vec<Target> {
        let mut v = Vec::new();
        for s in State::ALL {
            if *s == State::Hold {
                v.extend(Reason::ALL.iter().map(|r| Target::hold(*r)));
            } else {
                v.push(Target::new(*s, None));
            }
        }
        v
    }

    /// Every routable target plus illegal ones, for events that carry a target.
    fn all_targets() -> Vec<Target> {
        let mut v = all_current();
        v.push(Target::new(State::Hold, None));
        v.push(Target::new(State::New, Some(Reason::Payment)));
        v
    }

    fn events_of(kind: EventKind) -> Vec<Event> {
        let with = |f: fn(Target) -> Event| all_targets().into_iter().map(f).collect();
        match kind {
            EventKind::Routed => with(Event::Routed),
            EventKind::Paid => with(Event::Paid),
            EventKind::RiskVerdict => with(Event::RiskVerdict),
            EventKind::PartiallyFulfilled => with(Event::PartiallyFulfilled),
            EventKind::OperatorRelease => with(Event::OperatorRelease),
            EventKind::Cancelled => vec![Event::Cancelled],
            EventKind::Fulfilled => vec![Event::Fulfilled],
            EventKind::PaymentWindowExpired => vec![Event::PaymentWindowExpired],
            EventKind::FraudTimeout => vec![Event::FraudTimeout],
            EventKind::SubmissionClaimed => vec![Event::SubmissionClaimed],
            EventKind::Submitted => vec![Event::Submitted],
            EventKind::DownstreamOutOfStock => vec![Event::DownstreamOutOfStock],
            EventKind::DeadLettered => vec![Event::DeadLettered],
            EventKind::AttemptFailed => vec![Event::AttemptFailed],
            EventKind::CancelConfirmed => vec![Event::CancelConfirmed],
            EventKind::CancelShipped => vec![Event::CancelShipped],
            EventKind::CancelFailed => vec![Event::CancelFailed],
            EventKind::CancelAttemptFailed => vec![Event::CancelAttemptFailed],
            EventKind::OperatorForceReady => vec![Event::OperatorForceReady],
            EventKind::OperatorHold => vec![Event::OperatorHold],
            EventKind::OperatorStop => vec![Event::OperatorStop],
            EventKind::ModeManual => vec![Event::ModeManual],
        }
    }

    /// The expected table, written independently of `transition`. Columns: new, paid,
    /// fraud-check, hold/{payment,address,inventory,fraud,manual,fulfilment}, ready,
    /// submitted, fulfilled, cancelled.
    ///
    /// `R` re-run (take the target; same target → unchanged; unroutable → illegal-target),
    /// `U` unchanged, `I:x` ignored for x, `M:x` move to x.
    #[rustfmt::skip]
    const TABLE: &[(EventKind, [&str; 13])] = {
        use EventKind::*;
        const OC: &str = "I:order-cancelled";
        const OF: &str = "I:order-fulfilled";
        const AS: &str = "I:already-submitted";
        const NO: &str = "I:needs-operator";
        const NR: &str = "I:not-ready";
        const NA: &str = "I:not-applicable";
        &[
            //                     new   paid  fchk  h/pay h/adr h/inv h/frd h/man h/ful ready subm fulf canc
            (Routed,              ["R", "R", "R", "R", "R", "R", "R", NO, NO, "R", AS, OF, OC]),
            (Paid,                ["R", "R", "R", "R", "R", "R", "R", NO, NO, "R", AS, OF, OC]),
            (RiskVerdict,         ["R", "R", "R", "R", "R", "R", "R", NO, NO, "R", AS, OF, OC]),
            (PartiallyFulfilled,  ["R", "R", "R", "R", "R", "R", "R", NO, NO, "R", "U", OF, OC]),
            (OperatorRelease,     ["R", "R", "R", "R", "R", "R", "R", "R", "R", "R", AS, OF, OC]),
            (Cancelled,           ["M:cancelled", "M:cancelled", "M:cancelled", "M:cancelled", "M:cancelled", "M:cancelled", "M:cancelled", "M:cancelled", "M:cancelled", "M:cancelled", "M:cancelled", OF, OC]),
            (Fulfilled,           ["M:fulfilled", "M:fulfilled", "M:fulfilled", "M:fulfilled", "M:fulfilled", "M:fulfilled", "M:fulfilled", "M:fulfilled", "M:fulfilled", "M:fulfilled", "M:fulfilled", OF, OC]),
            (PaymentWindowExpired,["M:hold/payment", NA, NA, NA, NA, NA, NA, NA, NA, NA, AS, OF, OC]),
            (FraudTimeout,        [NA, NA, "M:hold/fraud", NA, NA, NA, NA, NA, NA, NA, AS, OF, OC]),
            (SubmissionClaimed,   [NR, NR, NR, NR, NR, NR, NR, NR, NR, "U", AS, OF, OC]),
            (Submitted,           ["M:submitted", "M:submitted", "M:submitted", "M:submitted", "M:submitted", "M:submitted", "M:submitted", "M:submitted", "M:submitted", "M:submitted", AS, OF, "U"]),
            (DownstreamOutOfStock,[NR, NR, NR, NR, NR, NR, NR, NR, NR, "M:hold/inventory", AS, OF, OC]),
            (DeadLettered,        [NR, NR, NR, NR, NR, NR, NR, NR, NR, "M:hold/fulfilment", AS, OF, OC]),
            (AttemptFailed,       [NR, NR, NR, NR, NR, NR, NR, NR, NR, "U", AS, OF, OC]),
            (CancelConfirmed,     [NA, NA, NA, NA, NA, NA, NA, NA, NA, NA, NA, NA, "U"]),
            (CancelShipped,       [NA, NA, NA, NA, NA, NA, NA, NA, NA, NA, NA, NA, "M:hold/fulfilment"]),
            (CancelFailed,        [NA, NA, NA, NA, NA, NA, NA, NA, NA, NA, NA, NA, "M:hold/fulfilment"]),
            (CancelAttemptFailed, [NA, NA, NA, NA, NA, NA, NA, NA, NA, NA, NA, NA, "U"]),
            (OperatorForceReady,  ["M:ready-for-fulfilment", "M:ready-for-fulfilment", "M:ready-for-fulfilment", "M:ready-for-fulfilment", "M:ready-for-fulfilment", "M:ready-for-fulfilment", "M:ready-for-fulfilment", "M:ready-for-fulfilment", "M:ready-for-fulfilment", "U", AS, OF, OC]),
            (OperatorHold,        ["M:hold/manual", "M:hold/manual", "M:hold/manual", "M:hold/manual", "M:hold/manual", "M:hold/manual", "M:hold/manual", "U", "M:hold/manual", "M:hold/manual", AS, OF, OC]),
            (OperatorStop,        ["M:cancelled", "M:cancelled", "M:cancelled", "M:cancelled", "M:cancelled", "M:cancelled", "M:cancelled", "M:cancelled", "M:cancelled", "M:cancelled", AS, OF, OC]),
            (ModeManual,          ["M:hold/manual", "M:hold/manual", "M:hold/manual", "I:already-held", "I:already-held", "I:already-held", "I:already-held", "I:already-held", "I:already-held", "M:hold/manual", AS, OF, OC]),
        ]
    };

    fn code(o: Outcome) -> String {
        match o {
            Outcome::Move(t) => format!("M:{t}"),
            Outcome::Unchanged { .. } => "U".into(),
            Outcome::Ignored(i) => format!("I:{}", i.as_str()),
        }
    }

    #[test]
    fn every_state_and_event_has_the_tabled_outcome() {
        let kinds: Vec<_> = TABLE.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, EventKind::ALL, "table covers every event kind, in order");
        let current = all_current();
        assert_eq!(current.len(), 13);
        let mut checked = 0;
        for (kind, row) in TABLE {
            for (col, cur) in current.iter().enumerate() {
                for ev in events_of(*kind) {
                    assert_eq!(ev.kind(), *kind);
                    let got = transition(cur.state, cur.reason, &ev);
                    let want = match row[col] {
                        "R" => {
                            let t = match ev {
                                Event::Routed(t)
                                | Event::Paid(t)
                                | Event::RiskVerdict(t)
                                | Event::PartiallyFulfilled(t)
                                | Event::OperatorRelease(t) => t,
                                _ => unreachable!(),
                            };
                            if !t.is_routable() {
                                "I:illegal-target".to_string()
                            } else if t == *cur {
                                "U".to_string()
                            } else {
                                format!("M:{t}")
                            }
                        }
                        other => other.to_string(),
                    };
                    assert_eq!(code(got), want, "{cur} + {ev:?}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 13 * EventKind::ALL.len(), "{checked}");
    }

    #[test]
    fn invariants_hold_for_every_pair() {
        for cur in all_current() {
            for kind in EventKind::ALL {
                for ev in events_of(*kind) {
                    match transition(cur.state, cur.reason, &ev) {
                        Outcome::Move(t) => {
                            assert_ne!(t, cur, "a move changes something: {cur} {ev:?}");
                            assert_eq!(t.state == State::Hold, t.reason.is_some(), "hold iff reason");
                            // Never backwards out of submitted/fulfilled/cancelled: a cancelled
                            // order moves only when the warehouse says it could not cancel.
                            match cur.state {
                                State::Fulfilled => panic!("final state moved: {cur} {ev:?}"),
                                State::Cancelled => {
                                    assert!(
                                        matches!(ev, Event::CancelShipped | Event::CancelFailed),
                                        "cancelled moved: {ev:?}"
                                    );
                                    assert_eq!(t, Target::hold(Reason::Fulfilment));
                                }
                                State::Submitted => {
                                    assert!(matches!(t.state, State::Fulfilled | State::Cancelled))
                                }
                                _ => {}
                            }
                        }
                        Outcome::Unchanged { note } => assert!(!note.is_empty()),
                        Outcome::Ignored(_) => {}
                    }
                }
            }
        }
    }

    #[test]
    fn targets_and_names() {
        assert!(Target::hold(Reason::Address).is_routable());
        assert!(!Target::new(State::Hold, None).is_routable());
        assert!(!Target::new(State::Submitted, None).is_routable());
        assert!(!Target::new(State::Cancelled, None).is_routable());
        assert_eq!(Target::hold(Reason::Payment).to_string(), "hold/payment");
        assert_eq!(EventKind::RiskVerdict.as_str(), "risk_verdict");
        let names: std::collections::BTreeSet<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), EventKind::ALL.len());
    }
}
