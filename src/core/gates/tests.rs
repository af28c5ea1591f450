use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::core::kpi::tests::T0;
use crate::core::kpi::MINUTE_MS;

/// Release time of every simulated lane.
const R: i64 = T0;
const THRESHOLD: u64 = 5;

fn at(min: i64) -> i64 {
    R + min * MINUTE_MS
}

fn baseline() -> Baseline {
    Baseline {
        triage_mean_ms: 30.0 * MINUTE_MS as f64,
        triage_p90_ms: 60.0 * MINUTE_MS as f64,
        exception_rate: 0.1,
        fulfilment_delay_mean_ms: 5.0 * MINUTE_MS as f64,
        failed_per_day: 2.0,
        source: BaselineSource::Entered,
        window_from_ms: None,
        window_to_ms: None,
        recorded_at_ms: R - DAY_MS,
    }
}

/// One synthetic order's whole life, in minutes from the release.
#[derive(Debug, Clone)]
struct Plan {
    id: u64,
    lane: &'static str,
    routable: i64,
    /// (held at, resolved by an operator at)
    hold: Option<(i64, Option<i64>)>,
    ready: Option<i64>,
    submitted: Option<i64>,
    failed: Option<i64>,
}

impl Plan {
    fn event_minutes(&self) -> Vec<i64> {
        let mut v = vec![self.routable];
        v.extend(self.hold.map(|h| h.0));
        v.extend(self.hold.and_then(|h| h.1));
        v.extend(self.ready);
        v.extend(self.submitted);
        v.extend(self.failed);
        v
    }

    /// The facts as the edge would read them at minute `now`.
    fn facts_at(&self, now: i64) -> OrderFacts {
        let seen = |t: Option<i64>| t.filter(|&t| t <= now);
        let held = seen(self.hold.map(|h| h.0));
        let ready = seen(self.ready);
        let mut events: Vec<(i64, State)> = vec![(self.routable, State::Paid)];
        events.extend(held.map(|t| (t, State::Hold)));
        events.extend(ready.map(|t| (t, State::ReadyForFulfilment)));
        events.extend(seen(self.submitted).map(|t| (t, State::Submitted)));
        events.extend(seen(self.failed).map(|t| (t, State::Hold)));
        events.sort_by_key(|e| e.0);
        let (since, state) = events.last().copied().unwrap();
        let routed = match (held, ready) {
            (Some(h), Some(r)) => Some(h.min(r)),
            (h, r) => h.or(r),
        };
        OrderFacts {
            order_id: self.id.to_string(),
            lane: self.lane.to_string(),
            routable_at_ms: Some(at(self.routable)),
            routed_at_ms: routed.map(at),
            entered_hold: held.is_some(),
            held_at_ms: held.map(at),
            resolved_at_ms: seen(self.hold.and_then(|h| h.1)).map(at),
            ready_at_ms: ready.map(at),
            submitted_at_ms: seen(self.submitted).map(at),
            failed_submission_at_ms: seen(self.failed).map(at),
            current_state: state,
            current_since_ms: at(since),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pass,
    FailA,
    FailB,
    FailBLate,
    FailC,
}

/// A deterministic order stream: one order every 10 minutes from the release to 72 h.
/// Normally ready 10 minutes after becoming routable and submitted 3 minutes later.
fn stream(lane: &'static str, kind: Kind, lane_no: u64) -> Vec<Plan> {
    (0..=432i64)
        .map(|i| {
            let t = 10 * i;
            let mut p = Plan {
                // Ids beyond 2^53, unique across lanes.
                id: 9_000_000_000_000_000_000 + lane_no * 1000 + i as u64,
                lane,
                routable: t,
                hold: None,
                ready: Some(t + 10),
                submitted: Some(t + 13),
                failed: None,
            };
            let fail_submission = |p: &mut Plan| {
                p.failed = p.submitted.take();
            };
            match kind {
                Kind::Pass | Kind::FailA | Kind::FailC => {
                    if i % 10 == 5 {
                        // A triage exception an operator resolves after 20 minutes.
                        p.hold = Some((t + 2, Some(t + 20)));
                        p.ready = Some(t + 20);
                        p.submitted = Some(t + 23);
                    }
                    let failures: &[i64] = match kind {
                        // One failure on the release day (budget 2), one on day 2.
                        Kind::Pass | Kind::FailC => &[100, 200],
                        // The third failure on the release day lands at 50·10 + 13 = 513.
                        _ => &[30, 40, 50],
                    };
                    if failures.contains(&i) {
                        fail_submission(&mut p);
                    }
                    if kind == Kind::FailC && t >= 2880 && i % 3 == 0 {
                        // From 48 h, every third order is held and nobody resolves it.
                        p.hold = Some((t + 2, None));
                        p.ready = None;
                        p.submitted = None;
                        p.failed = None;
                    }
                }
                Kind::FailB => {
                    // Triage takes 40 minutes against a 30-minute baseline.
                    p.ready = Some(t + 40);
                    p.submitted = Some(t + 43);
                }
                Kind::FailBLate => {
                    // Fast for 36 h, then 120 minutes. The mean since release reaches the
                    // baseline exactly (not better) at the 48th slow outcome:
                    // (216·10 + 48·120) / 264 = 30, at minute 2280 + 47·10 = 2750.
                    if t >= 2160 {
                        p.ready = Some(t + 120);
                        p.submitted = Some(t + 123);
                    }
                }
            }
            p
        })
        .collect()
}

struct LaneSim {
    name: &'static str,
    kind: Kind,
    mode: Mode,
    alerted: Option<Gate>,
    rollbacks: Vec<(i64, Gate)>,
    alerts: Vec<(i64, Gate)>,
}

fn status(ev: &Evaluation, g: Gate) -> GateStatus {
    ev.result(g).unwrap().status
}

#[test]
fn seventy_two_hours_minute_by_minute() {
    let lanes_spec: [(&'static str, Kind); 5] = [
        ("lane-pass", Kind::Pass),
        ("lane-fail-a", Kind::FailA),
        ("lane-fail-b", Kind::FailB),
        ("lane-fail-b-late", Kind::FailBLate),
        ("lane-fail-c", Kind::FailC),
    ];
    let plans: Vec<Plan> =
        lanes_spec.iter().enumerate().flat_map(|(n, (name, kind))| stream(name, *kind, n as u64)).collect();
    let mut due: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (idx, p) in plans.iter().enumerate() {
        for m in p.event_minutes() {
            due.entry(m).or_default().push(idx);
        }
    }
    let mut lanes: Vec<LaneSim> = lanes_spec
        .iter()
        .map(|(name, kind)| LaneSim {
            name,
            kind: *kind,
            mode: Mode::Auto,
            alerted: None,
            rollbacks: vec![],
            alerts: vec![],
        })
        .collect();
    // Every lane sees every lane's orders: the gates must pick out their own.
    let mut facts: Vec<OrderFacts> = Vec::new();
    let mut pos: HashMap<usize, usize> = HashMap::new();

    for minute in 0..=4320i64 {
        let now = at(minute);
        for &idx in due.get(&minute).map(Vec::as_slice).unwrap_or(&[]) {
            let f = plans[idx].facts_at(minute);
            match pos.get(&idx) {
                Some(&p) => facts[p] = f,
                None => {
                    pos.insert(idx, facts.len());
                    facts.push(f);
                }
            }
        }
        let mut modes: HashMap<String, Mode> = lanes.iter().map(|l| (l.name.to_string(), l.mode)).collect();
        for lane in lanes.iter_mut() {
            let input = GateInput {
                lane: lane.name.into(),
                mode: lane.mode,
                released_at_ms: Some(R),
                baseline: Some(baseline()),
                observed: Some(Observed::compute(&facts, lane.name, R, now)),
                backlog_threshold: THRESHOLD,
                already_alerted_for: lane.alerted,
            };
            let ev = evaluate(&input, now);
            assert_eq!(ev.results.iter().map(|r| r.gate).collect::<Vec<_>>(), Gate::ALL);
            if let Some(rb) = &ev.rollback {
                assert_eq!(rb.lane, lane.name, "a rollback names only the evaluated lane");
                lane.rollbacks.push((minute, rb.gate));
                // Apply it the way the edge does: by lane name, to that lane's flag only.
                modes.insert(rb.lane.clone(), Mode::Manual);
            }
            if ev.alert {
                let rb = ev.rollback.as_ref().unwrap();
                assert!(ev.alert_payload().is_some());
                lane.alerts.push((minute, rb.gate));
                lane.alerted = Some(rb.gate);
            } else {
                assert_eq!(ev.alert_payload(), None);
            }
            check_minute(lane.kind, minute, &ev, !lane.rollbacks.is_empty());
        }
        for lane in lanes.iter_mut() {
            lane.mode = modes[lane.name];
        }
        // Only failed lanes ever leave `auto`.
        for lane in &lanes {
            assert_eq!(lane.mode == Mode::Manual, !lane.rollbacks.is_empty(), "{} at {minute}", lane.name);
        }
    }

    let expected: [(Kind, Option<(i64, Gate)>); 5] = [
        (Kind::Pass, None),
        (Kind::FailA, Some((513, Gate::A))),
        (Kind::FailB, Some((1440, Gate::B))),
        (Kind::FailBLate, Some((2750, Gate::B))),
        (Kind::FailC, Some((4320, Gate::C))),
    ];
    for (kind, want) in expected {
        let lane = lanes.iter().find(|l| l.kind == kind).unwrap();
        assert_eq!(lane.rollbacks, want.into_iter().collect::<Vec<_>>(), "{} rollbacks", lane.name);
        assert_eq!(lane.alerts, want.into_iter().collect::<Vec<_>>(), "{} alerts exactly once", lane.name);
        let mode = if want.is_some() { Mode::Manual } else { Mode::Auto };
        assert_eq!(lane.mode, mode, "{}", lane.name);
    }

    // Re-evaluating a rolled-back lane that is somehow still `auto` (the flag write was
    // lost) re-issues the rollback but never alerts again.
    let a = lanes.iter().find(|l| l.kind == Kind::FailA).unwrap();
    let now = at(4320);
    let input = GateInput {
        lane: a.name.into(),
        mode: Mode::Auto,
        released_at_ms: Some(R),
        baseline: Some(baseline()),
        observed: Some(Observed::compute(&facts, a.name, R, now)),
        backlog_threshold: THRESHOLD,
        already_alerted_for: a.alerted,
    };
    let ev = evaluate(&input, now);
    assert_eq!(ev.rollback.as_ref().map(|r| r.gate), Some(Gate::A));
    assert!(!ev.alert);
    assert_eq!(ev.decision, Decision::RolledBack);
}

/// What each lane's evaluation must say at each minute.
fn check_minute(kind: Kind, minute: i64, ev: &Evaluation, rolled_back: bool) {
    let (a, b, c) = (status(ev, Gate::A), status(ev, Gate::B), status(ev, Gate::C));
    use GateStatus::*;
    let ctx = format!("{kind:?} at minute {minute}: A {a:?} B {b:?} C {c:?} {:?}", ev.decision);
    if rolled_back {
        assert_eq!(ev.decision, Decision::RolledBack, "{ctx}");
        let just_now = ev.rollback.is_some();
        if !just_now {
            assert!(!ev.alert, "{ctx}");
            assert_eq!(ev.no_rollback, Some(NoRollback::LaneManual), "{ctx}");
        }
    }
    // Gate timing shared by every lane until something fails.
    let a_expected_before_day = if kind == Kind::FailA && minute >= 513 { Fail } else { Pending };
    if minute < 1440 {
        assert_eq!(a, a_expected_before_day, "{ctx}");
        assert_eq!(b, Pending, "{ctx}");
    }
    if minute < 4320 {
        assert_eq!(c, Pending, "{ctx}");
    }
    match kind {
        Kind::Pass => {
            assert!(!rolled_back && ev.rollback.is_none() && !ev.alert, "{ctx}");
            if minute >= 1440 {
                assert_eq!((a, b), (Pass, Pass), "{ctx}");
            }
            if minute == 1013 {
                assert_eq!(ev.result(Gate::A).unwrap().observed, Some(1.0), "{ctx}");
            }
            if minute == 4320 {
                assert_eq!(c, Pass, "{ctx}");
                assert_eq!(ev.decision, Decision::Expand, "{ctx}");
                let obs = ev.observed.as_ref().unwrap();
                assert!(obs.triage_mean_ms.unwrap() < baseline().triage_mean_ms);
                assert_eq!(obs.backlog_count, 2, "the two dead-lettered orders");
                assert_eq!(ev.result(Gate::A).unwrap().observed, Some(1.0), "day 2's failure is not day 1's");
            } else {
                assert_eq!(ev.decision, Decision::KeepWatching, "{ctx}");
            }
        }
        Kind::FailA => {
            if minute == 512 {
                assert_eq!(ev.result(Gate::A).unwrap().observed, Some(2.0), "{ctx}");
                assert_eq!(ev.decision, Decision::KeepWatching, "{ctx}");
            }
            if minute == 513 {
                assert_eq!(a, Fail, "{ctx}");
                let rb = ev.rollback.as_ref().expect("rollback at 513");
                assert_eq!(rb.numbers["observed"], 3.0);
                assert_eq!(rb.numbers["limit"], 2.0);
                assert_eq!(rb.numbers["evidence"]["failed_submissions"], 3);
                assert!(ev.alert);
            }
            if minute >= 1440 {
                assert_eq!(a, Fail, "A stays failed once the day is over: {ctx}");
            }
        }
        Kind::FailB => {
            if minute >= 1440 {
                assert_eq!(a, Pass, "{ctx}");
                assert_eq!(b, Fail, "{ctx}");
            }
            if minute == 1440 {
                let r = ev.result(Gate::B).unwrap();
                assert_eq!(r.observed, Some(40.0 * MINUTE_MS as f64), "{ctx}");
                assert!(ev.rollback.is_some() && ev.alert, "{ctx}");
            }
        }
        Kind::FailBLate => {
            if (1440..2750).contains(&minute) {
                assert_eq!(b, Pass, "{ctx}");
                assert!(!rolled_back, "{ctx}");
            }
            if minute == 2749 {
                let r = ev.result(Gate::B).unwrap();
                assert!(r.observed.unwrap() < r.limit.unwrap(), "{ctx}");
            }
            if minute == 2750 {
                let r = ev.result(Gate::B).unwrap();
                assert_eq!(r.observed, r.limit, "equal is not better: {ctx}");
                assert_eq!(b, Fail, "{ctx}");
                assert!(ev.rollback.is_some() && ev.alert, "{ctx}");
            }
        }
        Kind::FailC => {
            if minute >= 1440 {
                assert_eq!((a, b), (Pass, Pass), "{ctx}");
            }
            if minute < 4320 {
                assert!(!rolled_back && ev.decision == Decision::KeepWatching, "{ctx}");
                if minute == 4319 {
                    assert!(ev.result(Gate::C).unwrap().observed.unwrap() >= THRESHOLD as f64, "{ctx}");
                }
            } else {
                assert_eq!(c, Fail, "{ctx}");
                let rb = ev.rollback.as_ref().expect("rollback at 72 h");
                assert_eq!(rb.gate, Gate::C);
                assert_eq!(rb.numbers["limit"], THRESHOLD as f64);
                assert!(ev.alert);
            }
        }
    }
}

// ---- single evaluations -------------------------------------------------------------

fn input_for(kind: Kind, minute: i64) -> GateInput {
    let plans = stream("eu", kind, 0);
    let facts: Vec<OrderFacts> =
        plans.iter().filter(|p| p.routable <= minute).map(|p| p.facts_at(minute)).collect();
    GateInput {
        lane: "eu".into(),
        mode: Mode::Auto,
        released_at_ms: Some(R),
        baseline: Some(baseline()),
        observed: Some(Observed::compute(&facts, "eu", R, at(minute))),
        backlog_threshold: THRESHOLD,
        already_alerted_for: None,
    }
}

#[test]
fn no_release_time_or_no_baseline_never_rolls_back() {
    let mut i = input_for(Kind::FailB, 2000);
    i.released_at_ms = None;
    i.observed = None;
    let ev = evaluate(&i, at(2000));
    assert_eq!(ev.no_rollback, Some(NoRollback::NoReleaseTime));
    assert!(ev.results.iter().all(|r| r.status == GateStatus::NoData));
    assert_eq!(ev.results[0].detail["reason"], "no release time");
    assert_eq!((ev.rollback, ev.alert, ev.decision), (None, false, Decision::KeepWatching));

    let mut i = input_for(Kind::FailC, 4320);
    i.baseline = None;
    let ev = evaluate(&i, at(4320));
    assert_eq!(ev.no_rollback, Some(NoRollback::NoBaseline));
    assert_eq!(status(&ev, Gate::A), GateStatus::NoData);
    assert_eq!(status(&ev, Gate::B), GateStatus::NoData);
    assert_eq!(ev.result(Gate::B).unwrap().detail["reason"], "no baseline");
    assert_eq!(status(&ev, Gate::C), GateStatus::Fail, "C needs no baseline and is still reported");
    assert_eq!((ev.rollback, ev.alert, ev.decision), (None, false, Decision::KeepWatching));

    let mut i = input_for(Kind::FailB, 2000);
    i.baseline = Some(Baseline { triage_mean_ms: f64::NAN, ..baseline() });
    let ev = evaluate(&i, at(2000));
    assert_eq!(ev.no_rollback, Some(NoRollback::InvalidBaseline));
    assert_eq!(status(&ev, Gate::B), GateStatus::NoData);
    assert!(ev.rollback.is_none());
}

#[test]
fn manual_and_shadow_lanes_are_never_flipped() {
    let mut i = input_for(Kind::FailB, 2000);
    i.mode = Mode::Manual;
    let ev = evaluate(&i, at(2000));
    assert_eq!(status(&ev, Gate::B), GateStatus::Fail);
    assert_eq!(ev.rollback, None);
    assert!(!ev.alert);
    assert_eq!(ev.no_rollback, Some(NoRollback::LaneManual));
    assert_eq!(ev.decision, Decision::RolledBack, "manual with a failing gate");

    i.mode = Mode::Shadow;
    let ev = evaluate(&i, at(2000));
    assert_eq!((ev.rollback.is_none(), ev.alert), (true, false));
    assert_eq!(ev.no_rollback, Some(NoRollback::LaneShadow));
    assert_eq!(ev.decision, Decision::KeepWatching);

    let mut i = input_for(Kind::Pass, 4320);
    i.mode = Mode::Manual;
    let ev = evaluate(&i, at(4320));
    assert!(ev.results.iter().all(|r| r.status == GateStatus::Pass));
    assert_eq!(ev.decision, Decision::KeepWatching, "a manual lane is not expanded");
}

#[test]
fn already_alerted_failures_do_not_alert_again() {
    let mut i = input_for(Kind::FailB, 2000);
    let first = evaluate(&i, at(2000));
    assert!(first.alert);
    i.already_alerted_for = Some(Gate::B);
    let again = evaluate(&i, at(2000));
    assert_eq!(again.rollback.as_ref().map(|r| r.gate), Some(Gate::B), "still auto: re-issued");
    assert!(!again.alert);
    i.mode = Mode::Manual;
    let later = evaluate(&i, at(2015));
    assert_eq!((later.rollback.is_none(), later.alert, later.decision), (true, false, Decision::RolledBack));
    // A recovered gate keeps a still-`auto` lane rolled back, silently.
    let mut i = input_for(Kind::Pass, 2000);
    i.already_alerted_for = Some(Gate::B);
    let ev = evaluate(&i, at(2000));
    assert_eq!(status(&ev, Gate::B), GateStatus::Pass);
    let rb = ev.rollback.as_ref().unwrap();
    assert_eq!((rb.gate, rb.numbers["reissued"].as_bool()), (Gate::B, Some(true)));
    assert!(!ev.alert);
    assert_eq!(ev.decision, Decision::RolledBack);
}

#[test]
fn no_data_blocks_expand_but_is_not_a_failure() {
    // A lane with orders that were never triaged nor submitted.
    let facts: Vec<OrderFacts> = (0..10)
        .map(|i| {
            Plan {
                id: i,
                lane: "quiet",
                routable: i as i64,
                hold: None,
                ready: None,
                submitted: None,
                failed: None,
            }
            .facts_at(4320)
        })
        .collect();
    let i = GateInput {
        lane: "quiet".into(),
        mode: Mode::Auto,
        released_at_ms: Some(R),
        baseline: Some(baseline()),
        observed: Some(Observed::compute(&facts, "quiet", R, at(4320))),
        backlog_threshold: THRESHOLD,
        already_alerted_for: None,
    };
    let ev = evaluate(&i, at(4320));
    assert_eq!(status(&ev, Gate::A), GateStatus::NoData);
    assert_eq!(ev.result(Gate::A).unwrap().detail["reason"], "no submissions");
    assert_eq!(status(&ev, Gate::B), GateStatus::NoData);
    assert_eq!(ev.result(Gate::B).unwrap().detail["reason"], "no triage samples");
    assert_eq!(status(&ev, Gate::C), GateStatus::Pass);
    assert_eq!((ev.rollback, ev.decision), (None, Decision::KeepWatching));
}

#[test]
fn windows_and_serialised_names() {
    let w = GateWindows::new(R, at(30));
    assert_eq!(w.release_day, (R, at(30) + 1));
    assert_eq!(w.since_release, (R, at(30) + 1));
    let w = GateWindows::new(R, at(2000));
    assert_eq!(w.release_day, (R, R + DAY_MS));
    assert_eq!(w.since_release, (R, at(2000) + 1));
    let w = GateWindows::new(R, at(9000));
    assert_eq!(w.since_release, (R, R + DECISION_AT_MS));
    let w = GateWindows::new(R, R - HOUR_MS);
    assert_eq!(w.release_day, (R, R), "before the release: empty windows");

    let ev = evaluate(&input_for(Kind::FailA, 600), at(600));
    let v = serde_json::to_value(&ev).unwrap();
    assert_eq!(v["decision"], "rolled_back");
    assert_eq!(v["mode"], "auto");
    assert_eq!(v["results"][0]["gate"], "A");
    assert_eq!(v["results"][0]["status"], "fail");
    assert_eq!(v["results"][1]["status"], "pending");
    assert_eq!(v["rollback"]["gate"], "A");
    assert_eq!(v["baseline"]["source"], "entered");
    let alert = ev.alert_payload().unwrap();
    assert_eq!(alert["actor"], ACTOR);
    assert_eq!(alert["event"], "rolled_back");
    assert_eq!(alert["lane"], "eu");
    assert_eq!(alert["numbers"]["observed"], 3.0);
    assert_eq!(Gate::parse("B"), Some(Gate::B));
    assert_eq!(Gate::parse("b"), None);
    assert_eq!(serde_json::to_value(GateStatus::NoData).unwrap(), "no_data");
    assert_eq!(serde_json::to_value(Decision::KeepWatching).unwrap(), "keep_watching");
}

#[test]
fn baseline_capture_and_validation() {
    let plans = stream("eu", Kind::Pass, 0);
    let facts: Vec<OrderFacts> = plans.iter().map(|p| p.facts_at(4400)).collect();
    let k = kpi::compute(&facts, "eu", R, R + 3 * DAY_MS, at(4400));
    let b = Baseline::capture(&k, at(4400)).unwrap();
    assert_eq!(b.source, BaselineSource::Captured);
    assert_eq!((b.window_from_ms, b.window_to_ms), (Some(R), Some(R + 3 * DAY_MS)));
    assert_eq!(b.failed_per_day, 2.0 / 3.0);
    assert!(b.exception_rate > 0.09 && b.exception_rate < 0.11);
    assert_eq!(b.triage_p90_ms, 10.0 * MINUTE_MS as f64);
    let empty = kpi::compute(&[], "eu", R, R + DAY_MS, R + DAY_MS);
    assert_eq!(Baseline::capture(&empty, R), Err(BaselineError::Missing("triage_mean_ms")));
    assert_eq!(
        Baseline { exception_rate: 1.5, ..baseline() }.validate(),
        Err(BaselineError::Invalid("exception_rate"))
    );
    assert_eq!(
        Baseline { failed_per_day: -1.0, ..baseline() }.validate(),
        Err(BaselineError::Invalid("failed_per_day"))
    );
    assert!(baseline().validate().is_ok());
}

#[test]
fn shadow_agreement() {
    use OperatorOutcome::*;
    let ready = (State::ReadyForFulfilment, None);
    let hold = |r| (State::Hold, Some(r));
    let pairs = [
        (ready, Released),
        (ready, Released),
        (ready, KeptHeld),
        (hold(Reason::Address), KeptHeld),
        (hold(Reason::Fraud), Cancelled),
        (hold(Reason::Payment), Released),
        ((State::FraudCheck, None), Cancelled),
        ((State::Paid, None), Released),
    ];
    let a = agreement_rate(&pairs);
    assert_eq!(a.compared, 7);
    assert_eq!(a.agreed, 5);
    assert_eq!(a.shadow_ready_operator_held, 1);
    assert_eq!(a.shadow_held_operator_released, 1);
    assert_eq!(a.not_comparable, 1);
    assert_eq!(a.rate, Some(5.0 / 7.0));
    assert_eq!(agreement_rate(&[]).rate, None);
}

#[test]
fn backlog_threshold_is_strict() {
    // The passing lane ends with a backlog of 2 (its two dead-lettered orders).
    let mut i = input_for(Kind::Pass, 4320);
    i.backlog_threshold = 3;
    assert_eq!(status(&evaluate(&i, at(4320)), Gate::C), GateStatus::Pass);
    i.backlog_threshold = 2;
    let ev = evaluate(&i, at(4320));
    assert_eq!(status(&ev, Gate::C), GateStatus::Fail, "a backlog equal to the threshold is not below it");
    assert_eq!(ev.rollback.map(|r| r.gate), Some(Gate::C));
    // Before 72 h the same backlog is only reported.
    let mut i = input_for(Kind::Pass, 4319);
    i.backlog_threshold = 0;
    let ev = evaluate(&i, at(4319));
    assert_eq!(status(&ev, Gate::C), GateStatus::Pending);
    assert_eq!(ev.result(Gate::C).unwrap().detail["backlog"], 2);
}
