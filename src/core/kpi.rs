//! KPI arithmetic per lane over a time window, from per-order facts.
//!
//! The edge reads one [`OrderFacts`] per order (from `orders` and `audit_log`) and calls
//! [`compute`]; or it runs the equivalent SQL below. Both must give the same numbers, so the
//! definitions are exact. All times are epoch milliseconds; a window `[from, to)` includes
//! `from` and excludes `to`.
//!
//! # Definitions
//!
//! Only the lane's orders count (`lane = ?lane`).
//!
//! - **Triage outcome time** of an order: for a triage exception (`entered_hold`), the
//!   operator action that resolved it (`resolved_at_ms`), or, when it left `hold` without one
//!   (say payment arrived), the time it became ready (`ready_at_ms`); otherwise `ready_at_ms`.
//!   In SQL: `CASE WHEN entered_hold THEN COALESCE(resolved_at_ms, ready_at_ms) ELSE ready_at_ms END`.
//! - **Triage time**: `outcome − routable_at_ms` (negative clock skew counts as 0), for orders
//!   with both times and the outcome in the window. Mean and p90.
//! - **Exception rate**: among orders whose first routing outcome (`routed_at_ms`) is in the
//!   window, the share with `entered_hold`. `None` when no order was routed.
//! - **Fulfilment delay**: `submitted_at_ms − ready_at_ms` (at least 0) for orders with both
//!   and `submitted_at_ms` in the window. Mean and p90.
//! - **Failed submissions per day**: orders with `failed_submission_at_ms` in the window,
//!   divided by the window's length in days (`(to − from) / 86 400 000`). `None` for an empty
//!   window.
//! - **Backlog**: orders whose `current_state` is `hold` or `fraud-check` now (not windowed),
//!   their count, and the age at `now_ms` of the oldest (`now − min(current_since_ms)`, at
//!   least 0).
//! - **p90** is nearest-rank: sort the samples ascending and take the one at 1-based rank
//!   `ceil(0.9 · n)`, computed in integers as `(9n + 9) / 10`. No interpolation.
//! - **Mean** is the arithmetic mean as `f64` (SQL `AVG`).
//!
//! Every statistic is `None` when it has no samples, never 0.
//!
//! # The same in SQL (SQLite / D1)
//!
//! With a CTE `facts` having the [`OrderFacts`] columns (`entered_hold` as 0/1,
//! `current_state` as the contract spelling) and parameters `?lane ?from ?to ?now`:
//!
//! ```sql
//! -- triage samples (the fulfilment-delay samples are analogous:
//! --   d = MAX(0, submitted_at_ms - ready_at_ms), window on submitted_at_ms, both NOT NULL)
//! WITH o AS (
//!   SELECT routable_at_ms,
//!          CASE WHEN entered_hold THEN COALESCE(resolved_at_ms, ready_at_ms)
//!               ELSE ready_at_ms END AS outcome_ms
//!   FROM facts WHERE lane = ?lane),
//! t AS (SELECT MAX(0, outcome_ms - routable_at_ms) AS d FROM o
//!       WHERE routable_at_ms IS NOT NULL AND outcome_ms >= ?from AND outcome_ms < ?to)
//! SELECT COUNT(*) AS samples, AVG(d) AS mean_ms,
//!        (SELECT d FROM t ORDER BY d
//!         LIMIT 1 OFFSET (9 * (SELECT COUNT(*) FROM t) + 9) / 10 - 1) AS p90_ms
//! FROM t;
//!
//! -- exception rate
//! SELECT COUNT(*) AS routed, COALESCE(SUM(entered_hold), 0) AS held FROM facts
//! WHERE lane = ?lane AND routed_at_ms >= ?from AND routed_at_ms < ?to;
//!
//! -- failed submissions (per day = count * 86400000.0 / (?to - ?from))
//! SELECT COUNT(*) FROM facts WHERE lane = ?lane
//!   AND failed_submission_at_ms >= ?from AND failed_submission_at_ms < ?to;
//!
//! -- backlog
//! SELECT COUNT(*), MIN(current_since_ms), MAX(0, ?now - MIN(current_since_ms)) FROM facts
//! WHERE lane = ?lane AND current_state IN ('hold', 'fraud-check');
//! ```

use serde::{Deserialize, Serialize};

use crate::core::types::State;

pub const DAY_MS: i64 = 86_400_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const MINUTE_MS: i64 = 60_000;

/// What is known about one order at evaluation time. Timestamps are the first time each
/// thing happened; `None` when it has not (yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFacts {
    pub order_id: String,
    /// The segment the order was routed in.
    pub lane: String,
    /// When it became routable: paid, or received when it arrived already paid.
    pub routable_at_ms: Option<i64>,
    /// Its first routing outcome (`ready-for-fulfilment` or `hold`).
    pub routed_at_ms: Option<i64>,
    /// It entered `hold` during triage, i.e. before it was first `ready-for-fulfilment`.
    /// A later hold (downstream refusal, dead letter) is not a triage exception; it shows
    /// in failed submissions and in the backlog.
    pub entered_hold: bool,
    /// When it first entered `hold` during triage (set when `entered_hold`).
    pub held_at_ms: Option<i64>,
    /// The operator action (release, force ready, cancel) that resolved the triage exception.
    pub resolved_at_ms: Option<i64>,
    pub ready_at_ms: Option<i64>,
    /// When the warehouse first accepted it.
    pub submitted_at_ms: Option<i64>,
    /// When it was dead-lettered or permanently refused downstream.
    pub failed_submission_at_ms: Option<i64>,
    pub current_state: State,
    /// Since when it has been in `current_state`.
    pub current_since_ms: i64,
}

impl OrderFacts {
    /// The triage outcome time (see the module documentation).
    pub fn triage_outcome_ms(&self) -> Option<i64> {
        if self.entered_hold {
            self.resolved_at_ms.or(self.ready_at_ms)
        } else {
            self.ready_at_ms
        }
    }

    /// In the exception backlog: `hold` or `fraud-check`.
    pub fn in_backlog(&self) -> bool {
        matches!(self.current_state, State::Hold | State::FraudCheck)
    }
}

/// Count, mean and nearest-rank p90 of durations in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DurationStats {
    pub samples: u64,
    pub mean_ms: Option<f64>,
    pub p90_ms: Option<i64>,
}

impl DurationStats {
    pub fn from_samples(mut samples: Vec<i64>) -> Self {
        samples.sort_unstable();
        let n = samples.len();
        let mean_ms = (n > 0).then(|| samples.iter().map(|&d| d as f64).sum::<f64>() / n as f64);
        DurationStats { samples: n as u64, mean_ms, p90_ms: p90_nearest_rank(&samples) }
    }
}

/// The nearest-rank 90th percentile of ascending `sorted` samples: the one at 1-based rank
/// `(9n + 9) / 10` (= ⌈0.9·n⌉). `None` when empty.
pub fn p90_nearest_rank(sorted: &[i64]) -> Option<i64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (9 * n).div_ceil(10);
    sorted.get(rank - 1).copied()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceptionStats {
    /// Orders whose first routing outcome is in the window.
    pub routed: u64,
    /// Of those, the ones that entered `hold` during triage.
    pub held: u64,
    /// `held / routed`; `None` when nothing was routed.
    pub rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedStats {
    pub count: u64,
    pub window_days: f64,
    /// `count / window_days`; `None` for an empty window.
    pub per_day: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backlog {
    /// Orders in `hold` or `fraud-check` at `now_ms`.
    pub count: u64,
    pub oldest_since_ms: Option<i64>,
    /// `now_ms − oldest_since_ms`, at least 0.
    pub oldest_age_ms: Option<i64>,
}

/// One lane's KPIs over `[from_ms, to_ms)`, backlog at `now_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kpis {
    pub lane: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub now_ms: i64,
    pub triage: DurationStats,
    pub exceptions: ExceptionStats,
    pub fulfilment_delay: DurationStats,
    pub failed_submissions: FailedStats,
    pub backlog: Backlog,
}

fn in_window(t: Option<i64>, from_ms: i64, to_ms: i64) -> bool {
    t.is_some_and(|t| from_ms <= t && t < to_ms)
}

/// Computes `lane`'s KPIs over `[from_ms, to_ms)` from `facts` (which may hold other
/// lanes' orders; they are skipped), with the backlog as of `now_ms`. Pure and O(n log n).
pub fn compute(facts: &[OrderFacts], lane: &str, from_ms: i64, to_ms: i64, now_ms: i64) -> Kpis {
    let mut triage = Vec::new();
    let mut delay = Vec::new();
    let (mut routed, mut held, mut failed) = (0u64, 0u64, 0u64);
    let (mut backlog, mut oldest): (u64, Option<i64>) = (0, None);
    for f in facts.iter().filter(|f| f.lane == lane) {
        if let (Some(start), Some(end)) = (f.routable_at_ms, f.triage_outcome_ms()) {
            if from_ms <= end && end < to_ms {
                triage.push(end.saturating_sub(start).max(0));
            }
        }
        if in_window(f.routed_at_ms, from_ms, to_ms) {
            routed += 1;
            held += u64::from(f.entered_hold);
        }
        if let (Some(ready), Some(sub)) = (f.ready_at_ms, f.submitted_at_ms) {
            if from_ms <= sub && sub < to_ms {
                delay.push(sub.saturating_sub(ready).max(0));
            }
        }
        if in_window(f.failed_submission_at_ms, from_ms, to_ms) {
            failed += 1;
        }
        if f.in_backlog() {
            backlog += 1;
            oldest = Some(oldest.map_or(f.current_since_ms, |o| o.min(f.current_since_ms)));
        }
    }
    let window_days = (to_ms.saturating_sub(from_ms)).max(0) as f64 / DAY_MS as f64;
    Kpis {
        lane: lane.to_string(),
        from_ms,
        to_ms,
        now_ms,
        triage: DurationStats::from_samples(triage),
        exceptions: ExceptionStats { routed, held, rate: (routed > 0).then(|| held as f64 / routed as f64) },
        fulfilment_delay: DurationStats::from_samples(delay),
        failed_submissions: FailedStats {
            count: failed,
            window_days,
            per_day: (window_days > 0.0).then(|| failed as f64 / window_days),
        },
        backlog: Backlog {
            count: backlog,
            oldest_since_ms: oldest,
            oldest_age_ms: oldest.map(|o| now_ms.saturating_sub(o).max(0)),
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const T0: i64 = 1_795_773_600_000;

    /// A plain order in `lane` that became routable at `t0 + at_min` minutes.
    pub(crate) fn order(id: u32, lane: &str, at_min: i64) -> OrderFacts {
        OrderFacts {
            order_id: format!("{}", 1_000_000_000_000_000_000u64 + u64::from(id)),
            lane: lane.to_string(),
            routable_at_ms: Some(T0 + at_min * MINUTE_MS),
            routed_at_ms: None,
            entered_hold: false,
            held_at_ms: None,
            resolved_at_ms: None,
            ready_at_ms: None,
            submitted_at_ms: None,
            failed_submission_at_ms: None,
            current_state: State::Paid,
            current_since_ms: T0 + at_min * MINUTE_MS,
        }
    }

    fn m(min: i64) -> Option<i64> {
        Some(T0 + min * MINUTE_MS)
    }

    fn ready(id: u32, at: i64, ready_after: i64) -> OrderFacts {
        OrderFacts {
            routed_at_ms: m(at + ready_after),
            ready_at_ms: m(at + ready_after),
            current_state: State::ReadyForFulfilment,
            current_since_ms: T0 + (at + ready_after) * MINUTE_MS,
            ..order(id, "eu", at)
        }
    }

    #[test]
    fn p90_is_nearest_rank() {
        assert_eq!(p90_nearest_rank(&[]), None);
        assert_eq!(p90_nearest_rank(&[7]), Some(7));
        assert_eq!(p90_nearest_rank(&[1, 2]), Some(2));
        let ten: Vec<i64> = (1..=10).collect();
        assert_eq!(p90_nearest_rank(&ten), Some(9));
        let eleven: Vec<i64> = (1..=11).collect();
        assert_eq!(p90_nearest_rank(&eleven), Some(10), "ceil(9.9) = 10");
        let twenty: Vec<i64> = (1..=20).collect();
        assert_eq!(p90_nearest_rank(&twenty), Some(18));
        let hundred: Vec<i64> = (1..=100).collect();
        assert_eq!(p90_nearest_rank(&hundred), Some(90));
        let s = DurationStats::from_samples(vec![30, 10, 20]);
        assert_eq!(s, DurationStats { samples: 3, mean_ms: Some(20.0), p90_ms: Some(30) });
        assert_eq!(
            DurationStats::from_samples(vec![]),
            DurationStats { samples: 0, mean_ms: None, p90_ms: None }
        );
    }

    #[test]
    fn triage_uses_ready_or_the_resolving_action() {
        let facts = vec![
            ready(1, 0, 10),
            // Exception resolved by an operator at +50, then ready at +55: triage is 50 min.
            OrderFacts {
                routed_at_ms: m(2),
                entered_hold: true,
                held_at_ms: m(2),
                resolved_at_ms: m(50),
                ready_at_ms: m(55),
                current_state: State::ReadyForFulfilment,
                ..order(2, "eu", 0)
            },
            // Exception that left hold on its own (payment arrived): outcome is ready.
            OrderFacts {
                routed_at_ms: m(1),
                entered_hold: true,
                held_at_ms: m(1),
                ready_at_ms: m(30),
                current_state: State::ReadyForFulfilment,
                ..order(3, "eu", 0)
            },
            // Still held: no outcome, no sample; but it counts as routed and held.
            OrderFacts {
                routed_at_ms: m(3),
                entered_hold: true,
                held_at_ms: m(3),
                current_state: State::Hold,
                current_since_ms: T0 + 3 * MINUTE_MS,
                ..order(4, "eu", 0)
            },
            // Another lane is ignored.
            ready(5, 0, 1000).clone_in("us"),
            // Not routable (never paid): ignored even if it somehow has ready_at.
            OrderFacts { routable_at_ms: None, ..ready(6, 0, 5) },
        ];
        let k = compute(&facts, "eu", T0, T0 + DAY_MS, T0 + 60 * MINUTE_MS);
        assert_eq!(k.triage.samples, 3);
        assert_eq!(k.triage.mean_ms, Some((10.0 + 50.0 + 30.0) / 3.0 * MINUTE_MS as f64));
        assert_eq!(k.triage.p90_ms, Some(50 * MINUTE_MS));
        assert_eq!(k.exceptions, ExceptionStats { routed: 5, held: 3, rate: Some(0.6) });
        assert_eq!(
            k.backlog,
            Backlog { count: 1, oldest_since_ms: m(3), oldest_age_ms: Some(57 * MINUTE_MS) }
        );
        assert_eq!(k.lane, "eu");
    }

    impl OrderFacts {
        fn clone_in(&self, lane: &str) -> OrderFacts {
            OrderFacts { lane: lane.to_string(), ..self.clone() }
        }
    }

    #[test]
    fn windows_are_half_open() {
        // Outcomes at exactly from (in) and exactly to (out).
        let facts = vec![
            ready(1, 0, 60),
            ready(2, 60, 60),
            OrderFacts { submitted_at_ms: m(60), failed_submission_at_ms: None, ..ready(3, 0, 30) },
            OrderFacts { failed_submission_at_ms: m(60), ..ready(4, 0, 30) },
            OrderFacts { failed_submission_at_ms: m(120), ..ready(5, 0, 30) },
        ];
        let k = compute(&facts, "eu", T0 + 60 * MINUTE_MS, T0 + 120 * MINUTE_MS, T0 + 120 * MINUTE_MS);
        assert_eq!(k.triage.samples, 1, "ready at 60 is in, ready at 120 is out");
        assert_eq!(k.triage.mean_ms, Some(60.0 * MINUTE_MS as f64));
        assert_eq!(k.exceptions.routed, 1);
        assert_eq!(k.fulfilment_delay.samples, 1);
        assert_eq!(k.fulfilment_delay.p90_ms, Some(30 * MINUTE_MS));
        assert_eq!(k.failed_submissions.count, 1);
        assert_eq!(k.failed_submissions.window_days, 1.0 / 24.0);
        assert_eq!(k.failed_submissions.per_day, Some(24.0));
    }

    #[test]
    fn empty_samples_are_none_not_zero() {
        let k = compute(&[], "eu", T0, T0 + DAY_MS, T0 + DAY_MS);
        assert_eq!(k.triage.mean_ms, None);
        assert_eq!(k.triage.p90_ms, None);
        assert_eq!(k.exceptions.rate, None);
        assert_eq!(k.fulfilment_delay.mean_ms, None);
        assert_eq!(k.failed_submissions.per_day, Some(0.0), "a real window with no failures is a rate of 0");
        assert_eq!(k.backlog, Backlog { count: 0, oldest_since_ms: None, oldest_age_ms: None });
        let empty_window = compute(&[], "eu", T0, T0, T0);
        assert_eq!(empty_window.failed_submissions.per_day, None);
        let v = serde_json::to_value(&k).unwrap();
        assert_eq!(v["triage"]["mean_ms"], serde_json::Value::Null);
        assert_eq!(v["triage"]["samples"], 0);
        assert_eq!(v["failed_submissions"]["per_day"], 0.0);
    }

    #[test]
    fn fulfilment_delay_and_failures_per_day() {
        let mut facts = Vec::new();
        for i in 0..10u32 {
            let at = i64::from(i) * 60;
            let mut f = ready(i, at, 5);
            f.submitted_at_ms = m(at + 5 + i64::from(i) + 1); // delays 1..=10 minutes
            facts.push(f);
        }
        facts.push(OrderFacts { failed_submission_at_ms: m(100), ..ready(20, 0, 5) });
        facts.push(OrderFacts { failed_submission_at_ms: m(2000), ..ready(21, 0, 5) });
        // Clock skew: submitted before ready counts as 0.
        facts.push(OrderFacts { submitted_at_ms: m(1), ..ready(22, 0, 5) });
        let k = compute(&facts, "eu", T0, T0 + 2 * DAY_MS, T0 + 2 * DAY_MS);
        assert_eq!(k.fulfilment_delay.samples, 11);
        assert_eq!(k.fulfilment_delay.mean_ms, Some(55.0 * MINUTE_MS as f64 / 11.0));
        assert_eq!(k.fulfilment_delay.p90_ms, Some(9 * MINUTE_MS), "rank 10 of 11: 0,1,...,10 → 9");
        assert_eq!(k.failed_submissions.count, 2);
        assert_eq!(k.failed_submissions.per_day, Some(1.0));
    }

    #[test]
    fn backlog_counts_hold_and_fraud_check_now() {
        let mut a = order(1, "eu", 0);
        a.current_state = State::FraudCheck;
        a.current_since_ms = T0 + 10 * MINUTE_MS;
        let mut b = order(2, "eu", 0);
        b.current_state = State::Hold;
        b.current_since_ms = T0 + 20 * MINUTE_MS;
        let mut c = order(3, "eu", 0);
        c.current_state = State::Submitted;
        let mut d = order(4, "us", 0);
        d.current_state = State::Hold;
        d.current_since_ms = T0;
        let k = compute(&[a, b, c, d], "eu", T0, T0 + HOUR_MS, T0 + HOUR_MS);
        assert_eq!(
            k.backlog,
            Backlog { count: 2, oldest_since_ms: m(10), oldest_age_ms: Some(50 * MINUTE_MS) }
        );
        // A "now" before the oldest (clock skew) gives age 0, not a negative age.
        let k = compute(&k_facts_hold(), "eu", T0, T0 + HOUR_MS, T0);
        assert_eq!(k.backlog.oldest_age_ms, Some(0));
    }

    fn k_facts_hold() -> Vec<OrderFacts> {
        let mut a = order(1, "eu", 5);
        a.current_state = State::Hold;
        vec![a]
    }
}
