//! Rule cases: `[[tests]]` in `rules/tests.toml`, each an order, the context it is decided in
//! and the outcome expected, run through the same [`decide`] the Worker calls.
//!
//! `build.rs` runs every case of the shipped file, so a change to the matrix (or to the rule
//! code) that breaks a case fails the build, naming the case, its line and the rules that
//! fired. `explain test` runs them on demand, against any matrix.
//!
//! ```toml
//! [[tests]]
//! name = "EU order waits for a verdict"
//! fixture = "order-paid"              # tests/fixtures/order-paid.json (or body = "path.json")
//! risk = "low"                         # high|medium|low|none|pending; absent: no verdict yet
//! stock = { "SKU2006-001" = 0 }        # absent: every SKU the order needs is in stock
//! mode = "auto"                        # auto (default) | shadow | manual | lane (its default_mode)
//! minutes_after_created = 5            # when it is decided (default 0)
//! email_orders = 1                     # orders from its email in the velocity window, itself included
//! unset = ["cancelled_at"]             # keys removed from the body (dotted paths)
//! set = { currency = "EUR", "shipping_address.country_code" = "DE", "line_items.*.sku" = "X" }
//! expect = { lane = "eu", outcome = "fraud-check", primary = "fraud.awaiting_verdict",
//!            fired = ["fraud.awaiting_verdict"], not_fired = ["fraud.country_mismatch"] }
//! ```
//!
//! This module reads no files: fixtures and bodies come through a loader the caller gives.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::matrix::line_of_offset;
use super::{Matrix, RULE_IDS};
use crate::core::order::{order_from_value, RiskLevel};
use crate::core::routing::{decide, Decision, RouteInput};
use crate::core::state::Target;
use crate::core::types::{Mode, Reason, State};

/// The shop a case is decided for unless it names one.
pub const DEFAULT_SHOP: &str = "demo.myshopify.com";

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tests: Vec<RawCase>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    #[serde(default)]
    fixture: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    set: BTreeMap<String, Value>,
    #[serde(default)]
    unset: Vec<String>,
    #[serde(default)]
    shop: Option<String>,
    #[serde(default)]
    risk: Option<String>,
    #[serde(default)]
    stock: Option<BTreeMap<String, i64>>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    minutes_after_created: i64,
    #[serde(default = "one")]
    email_orders: u32,
    expect: RawExpect,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    #[serde(default)]
    lane: Option<String>,
    outcome: String,
    #[serde(default)]
    primary: Option<String>,
    #[serde(default)]
    fired: Vec<String>,
    #[serde(default)]
    not_fired: Vec<String>,
}

/// Where a case's order body comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `tests/fixtures/<name>.json`.
    Fixture(String),
    /// A path relative to the repository root.
    Body(String),
}

/// How the lane's mode is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseMode {
    /// As if KV held this flag.
    Flag(Mode),
    /// No flag: the lane's `default_mode`.
    LaneDefault,
}

/// One checked case.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    /// 1-based line of its `[[tests]]` header.
    pub line: usize,
    pub source: Source,
    pub set: BTreeMap<String, Value>,
    pub unset: Vec<String>,
    pub shop: String,
    pub risk: Option<RiskLevel>,
    /// `None`: every SKU the order needs is in stock.
    pub stock: Option<BTreeMap<String, i64>>,
    pub mode: CaseMode,
    pub minutes_after_created: i64,
    pub email_orders: u32,
    pub expect: Expect,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub lane: Option<String>,
    pub outcome: Target,
    pub primary: Option<&'static str>,
    pub fired: Vec<&'static str>,
    pub not_fired: Vec<&'static str>,
}

/// A file or case that cannot be run, or a case that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseError {
    pub line: Option<usize>,
    pub case: Option<String>,
    pub message: String,
}

impl std::fmt::Display for CaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}: ")?;
        }
        if let Some(c) = &self.case {
            write!(f, "case \"{c}\": ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for CaseError {}

fn rule_id(id: &str) -> Option<&'static str> {
    RULE_IDS.iter().copied().find(|r| *r == id)
}

/// Parses a target as written in a case: `ready-for-fulfilment`, `hold/address`, ...
pub fn parse_target(s: &str) -> Option<Target> {
    let (state, reason) = match s.trim().split_once('/') {
        Some((st, r)) => (State::parse(st.trim())?, Some(Reason::parse(r.trim())?)),
        None => (State::parse(s.trim())?, None),
    };
    ((state == State::Hold) == reason.is_some()).then_some(Target::new(state, reason))
}

/// 1-based lines of each `[[tests]]` header, in order.
fn header_lines(source: &str) -> Vec<usize> {
    source
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.split('#').next().unwrap_or("").trim();
            t.starts_with("[[") && t.trim_start_matches('[').trim_end_matches(']').trim() == "tests"
        })
        .map(|(n, _)| n + 1)
        .collect()
}

/// Parses and checks a cases file: every case names an order, a known outcome, known rule
/// ids and a lane the matrix has. Errors carry the line.
pub fn parse_cases(source: &str, matrix: &Matrix) -> Result<Vec<Case>, CaseError> {
    let file: File = toml::from_str(source).map_err(|e| CaseError {
        line: e.span().map(|s| line_of_offset(source, s.start)),
        case: None,
        message: e.message().trim().to_string(),
    })?;
    let lines = header_lines(source);
    let mut out: Vec<Case> = Vec::new();
    for (i, raw) in file.tests.into_iter().enumerate() {
        let line = lines.get(i).copied().unwrap_or(0);
        let err = |m: String| CaseError { line: Some(line), case: Some(raw.name.clone()), message: m };
        if raw.name.trim().is_empty() {
            return Err(err("a case needs a name".into()));
        }
        if out.iter().any(|c| c.name == raw.name) {
            return Err(err("two cases have this name".into()));
        }
        let source = match (&raw.fixture, &raw.body) {
            (Some(f), None) => {
                if f.is_empty() || !f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                    return Err(err(format!("fixture \"{f}\" is not a name under tests/fixtures")));
                }
                Source::Fixture(f.clone())
            }
            (None, Some(b)) => Source::Body(b.clone()),
            _ => return Err(err("give exactly one of fixture = \"name\" or body = \"path.json\"".into())),
        };
        let risk = match &raw.risk {
            None => None,
            Some(r) => Some(
                RiskLevel::parse(r)
                    .ok_or_else(|| err(format!("risk \"{r}\": not high|medium|low|none|pending")))?,
            ),
        };
        let mode = match raw.mode.as_deref() {
            None => CaseMode::Flag(Mode::Auto),
            Some("lane") => CaseMode::LaneDefault,
            Some(m) => CaseMode::Flag(
                Mode::parse(m).ok_or_else(|| err(format!("mode \"{m}\": not auto|shadow|manual|lane")))?,
            ),
        };
        let e = &raw.expect;
        let outcome = parse_target(&e.outcome).ok_or_else(|| {
            err(format!(
                "expect.outcome \"{}\": not a state, or hold/<reason> (payment, address, inventory, fraud, manual, fulfilment)",
                e.outcome
            ))
        })?;
        if let Some(l) = &e.lane {
            if matrix.lane(l).is_none() {
                return Err(err(format!("expect.lane \"{l}\": the matrix has no such lane")));
            }
        }
        let ids = |list: &[String], key: &str| -> Result<Vec<&'static str>, CaseError> {
            list.iter()
                .map(|id| rule_id(id).ok_or_else(|| err(format!("{key}: \"{id}\" is not a rule id"))))
                .collect()
        };
        let fired = ids(&e.fired, "expect.fired")?;
        let not_fired = ids(&e.not_fired, "expect.not_fired")?;
        if let Some(both) = fired.iter().find(|id| not_fired.contains(id)) {
            return Err(err(format!("{both} is both in expect.fired and expect.not_fired")));
        }
        let primary = match &e.primary {
            None => None,
            Some(p) => Some(ids(std::slice::from_ref(p), "expect.primary")?[0]),
        };
        if raw.minutes_after_created < 0 {
            return Err(err("minutes_after_created is not negative".into()));
        }
        out.push(Case {
            line,
            source,
            set: raw.set.clone(),
            unset: raw.unset.clone(),
            shop: raw.shop.clone().unwrap_or_else(|| DEFAULT_SHOP.into()).to_ascii_lowercase(),
            risk,
            stock: raw.stock.clone(),
            mode,
            minutes_after_created: raw.minutes_after_created,
            email_orders: raw.email_orders,
            expect: Expect { lane: e.lane.clone(), outcome, primary, fired, not_fired },
            name: raw.name,
        });
    }
    Ok(out)
}

/// Sets `value` at dotted `path` in `v` (`a.b`, `line_items.0.sku`, `line_items.*.sku`),
/// creating objects on the way. Fails on a path through something that is not an object or
/// array.
pub fn set_path(v: &mut Value, path: &str, value: &Value) -> Result<(), String> {
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("\"{path}\" is not a dotted path"));
    }
    set_in(v, &parts, value, path)
}

fn set_in(v: &mut Value, parts: &[&str], value: &Value, path: &str) -> Result<(), String> {
    let (head, rest) = match parts.split_first() {
        Some(x) => x,
        None => {
            *v = value.clone();
            return Ok(());
        }
    };
    match v {
        Value::Array(items) if *head == "*" => {
            for item in items.iter_mut() {
                set_in(item, rest, value, path)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            let i: usize = head.parse().map_err(|_| format!("{path}: \"{head}\" indexes an array"))?;
            let n = items.len();
            let item = items.get_mut(i).ok_or(format!("{path}: index {i} past the {n} items"))?;
            set_in(item, rest, value, path)
        }
        Value::Object(map) => {
            let child = map.entry((*head).to_string()).or_insert(Value::Object(Default::default()));
            set_in(child, rest, value, path)
        }
        Value::Null => {
            *v = Value::Object(Default::default());
            set_in(v, parts, value, path)
        }
        _ => Err(format!("{path}: \"{head}\" is inside a value that is not an object")),
    }
}

/// Removes the key at dotted `path` (`*` for every array item); absent keys are fine.
pub fn unset_path(v: &mut Value, path: &str) {
    let parts: Vec<&str> = path.split('.').collect();
    unset_in(v, &parts);
}

fn unset_in(v: &mut Value, parts: &[&str]) {
    match (parts, v) {
        ([last], Value::Object(map)) => {
            map.remove(*last);
        }
        (["*", rest @ ..], Value::Array(items)) => items.iter_mut().for_each(|i| unset_in(i, rest)),
        ([head, rest @ ..], Value::Array(items)) => {
            if let Some(item) = head.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                unset_in(item, rest)
            }
        }
        ([head, rest @ ..], Value::Object(map)) => {
            if let Some(child) = map.get_mut(*head) {
                unset_in(child, rest)
            }
        }
        _ => {}
    }
}

/// The body a case decides: its fixture or body, with `unset` then `set` applied.
pub fn case_body(case: &Case, load: &dyn Fn(&Source) -> Result<Vec<u8>, String>) -> Result<Value, String> {
    let bytes = load(&case.source)?;
    let mut v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("order body is not JSON: {e}"))?;
    for p in &case.unset {
        unset_path(&mut v, p);
    }
    for (p, value) in &case.set {
        set_path(&mut v, p, value)?;
    }
    Ok(v)
}

/// Decides one case. `Err` when its body cannot be built or read as an order.
pub fn decide_case(
    matrix: &Matrix,
    case: &Case,
    load: &dyn Fn(&Source) -> Result<Vec<u8>, String>,
) -> Result<Decision, String> {
    let body = case_body(case, load)?;
    let order = order_from_value(&body).map_err(|e| format!("order body: {e} ({})", e.code()))?;
    let stock = match &case.stock {
        Some(s) => s.clone(),
        None => super::inventory::needed(&order).0,
    };
    let mode = match case.mode {
        CaseMode::Flag(m) => Some(m),
        CaseMode::LaneDefault => None,
    };
    let input = RouteInput {
        shop: &case.shop,
        order: &order,
        risk: case.risk,
        stock: &stock,
        email_orders_in_window: case.email_orders,
        mode,
    };
    let at = order.created_at_ms.saturating_add(case.minutes_after_created.saturating_mul(60_000));
    Ok(decide(matrix, &input, at))
}

/// `rule*, rule, ...` (the primary starred), or `none`.
pub fn fired_list(d: &Decision) -> String {
    if d.fired.is_empty() {
        return "none".into();
    }
    d.fired
        .iter()
        .map(|h| if Some(h.id) == d.primary_rule { format!("{}*", h.id) } else { h.id.to_string() })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What is wrong with `d` for `e`, one item per mismatch; empty when the case holds.
pub fn mismatches(e: &Expect, d: &Decision) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(l) = &e.lane {
        if *l != d.lane {
            out.push(format!("lane {} expected, got {}", l, d.lane));
        }
    }
    if e.outcome != d.target() {
        out.push(format!("outcome {} expected, got {}", e.outcome, d.target()));
    }
    if e.primary.is_some() && e.primary != d.primary_rule {
        out.push(format!(
            "primary rule {} expected, got {}",
            e.primary.unwrap_or("-"),
            d.primary_rule.unwrap_or("none")
        ));
    }
    let ids = d.fired_ids();
    for id in &e.fired {
        if !ids.contains(id) {
            out.push(format!("{id} should fire and did not"));
        }
    }
    for id in &e.not_fired {
        if ids.contains(id) {
            out.push(format!("{id} must not fire and did"));
        }
    }
    out
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    pub line: usize,
    /// The decision, when the case could be run.
    pub decision: Option<Decision>,
    /// Empty when it holds.
    pub problems: Vec<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// `<file> line N: case "name": problems; rules fired: ...`.
    pub fn failure_text(&self, file: &str) -> String {
        let fired = self.decision.as_ref().map_or("(not run)".to_string(), fired_list);
        let got = self
            .decision
            .as_ref()
            .map_or(String::new(), |d| format!(" (decided {} in lane {})", d.target(), d.lane));
        format!(
            "{file} line {}: case \"{}\" fails: {}{got}; rules fired: {fired}",
            self.line,
            self.name,
            self.problems.join("; ")
        )
    }
}

/// Runs every case against `matrix`.
pub fn run_cases(
    matrix: &Matrix,
    cases: &[Case],
    load: &dyn Fn(&Source) -> Result<Vec<u8>, String>,
) -> Vec<CaseResult> {
    cases
        .iter()
        .map(|c| match decide_case(matrix, c, load) {
            Ok(d) => CaseResult {
                name: c.name.clone(),
                line: c.line,
                problems: mismatches(&c.expect, &d),
                decision: Some(d),
            },
            Err(e) => CaseResult { name: c.name.clone(), line: c.line, decision: None, problems: vec![e] },
        })
        .collect()
}

/// What the build does with a cases file: parse it against `matrix`, run every case, and
/// return how many hold, or one error naming each failing case (`file line N: case ...`).
pub fn check_file(
    matrix: &Matrix,
    file: &str,
    source: &str,
    load: &dyn Fn(&Source) -> Result<Vec<u8>, String>,
) -> Result<usize, String> {
    let list = parse_cases(source, matrix).map_err(|e| format!("{file} {e}"))?;
    let failed: Vec<String> =
        run_cases(matrix, &list, load).iter().filter(|r| !r.passed()).map(|r| r.failure_text(file)).collect();
    if failed.is_empty() {
        return Ok(list.len());
    }
    Err(format!("{} of {} rule cases fail:\n{}", failed.len(), list.len(), failed.join("\n")))
}

/// Reads a case's body from disk under `root` (the repository).
pub fn file_loader(root: &std::path::Path) -> impl Fn(&Source) -> Result<Vec<u8>, String> + '_ {
    move |s: &Source| {
        let path = match s {
            Source::Fixture(name) => root.join("tests").join("fixtures").join(format!("{name}.json")),
            Source::Body(p) => root.join(p),
        };
        std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::tests::shipped;

    const CASES: &str = include_str!("../../../rules/tests.toml");

    fn load() -> impl Fn(&Source) -> Result<Vec<u8>, String> {
        |s: &Source| file_loader(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))(s)
    }

    #[test]
    fn shipped_cases_hold_and_cover_every_lane_and_reason() {
        let m = shipped();
        let cases = parse_cases(CASES, &m).unwrap();
        let results = run_cases(&m, &cases, &load());
        let failed: Vec<String> =
            results.iter().filter(|r| !r.passed()).map(|r| r.failure_text("rules/tests.toml")).collect();
        assert!(failed.is_empty(), "{}", failed.join("\n"));
        // Every lane and every reason the rules give is exercised by at least one case.
        let decided: Vec<&Decision> = results.iter().filter_map(|r| r.decision.as_ref()).collect();
        for lane in &m.lanes {
            assert!(decided.iter().any(|d| d.lane == lane.name), "no case routes to lane {}", lane.name);
        }
        for r in [Reason::Payment, Reason::Address, Reason::Inventory, Reason::Fraud, Reason::Manual] {
            assert!(decided.iter().any(|d| d.reason == Some(r)), "no case ends in hold/{r}");
        }
        for s in [State::New, State::Paid, State::FraudCheck, State::ReadyForFulfilment, State::Cancelled] {
            assert!(decided.iter().any(|d| d.state == s), "no case ends in {s}");
        }
    }

    #[test]
    fn a_failing_case_names_itself_its_line_and_the_rules_that_fired() {
        let m = shipped();
        let src = "\n# a comment\n[[tests]]\nname = \"right\"\nfixture = \"order-paid\"\nexpect = { outcome = \"ready-for-fulfilment\" }\n\n[[tests]]\nname = \"wrong on purpose\"\nfixture = \"order-paid\"\nunset = [\"shipping_address\"]\nexpect = { lane = \"eu\", outcome = \"ready-for-fulfilment\", fired = [\"fraud.high_risk\"], not_fired = [\"address.missing\"] }\n";
        let cases = parse_cases(src, &m).unwrap();
        assert_eq!(cases.iter().map(|c| c.line).collect::<Vec<_>>(), vec![3, 8]);
        let results = run_cases(&m, &cases, &load());
        assert!(results[0].passed(), "{:?}", results[0].problems);
        let r = &results[1];
        assert!(!r.passed());
        assert_eq!(
            r.problems,
            vec![
                "lane eu expected, got default",
                "outcome ready-for-fulfilment expected, got hold/address",
                "fraud.high_risk should fire and did not",
                "address.missing must not fire and did",
            ]
        );
        let text = r.failure_text("rules/tests.toml");
        assert!(text.starts_with("rules/tests.toml line 8: case \"wrong on purpose\" fails: "), "{text}");
        assert!(text.ends_with("rules fired: address.missing*"), "{text}");
    }

    #[test]
    fn the_build_check_names_every_failing_case() {
        let m = shipped();
        assert_eq!(check_file(&m, "rules/tests.toml", CASES, &load()), Ok(62));
        // The shipped cases against a matrix whose default lane allows 2,000.00: the build fails.
        let lower = crate::core::rules::tests::SHIPPED
            .replace("max_total_cents = 300000", "max_total_cents = 200000");
        let err = check_file(&Matrix::from_toml_str(&lower).unwrap(), "rules/tests.toml", CASES, &load())
            .unwrap_err();
        let line = CASES.lines().position(|l| l.contains("a total of exactly 3,000.00 passes")).unwrap();
        assert!(err.starts_with("1 of 62 rule cases fail:\n"), "{err}");
        assert!(
            err.contains(&format!(
                "rules/tests.toml line {line}: case \"a total of exactly 3,000.00 passes\" fails: "
            )),
            "{err}"
        );
        assert!(err.ends_with("rules fired: fraud.total_over_limit*"), "{err}");
        // A file that does not parse fails with its line.
        let err = check_file(&m, "rules/tests.toml", "[[tests]]\nname = 1\n", &load()).unwrap_err();
        assert!(err.starts_with("rules/tests.toml line 2: "), "{err}");
    }

    #[test]
    fn overrides_paths_and_context() {
        let m = shipped();
        let src = r#"
[[tests]]
name = "every line digital"
fixture = "order-paid"
unset = ["shipping_address"]
set = { "line_items.*.requires_shipping" = false }
expect = { outcome = "paid", primary = "route.nothing_to_ship" }

[[tests]]
name = "one line short"
fixture = "order-paid"
stock = { "SKU2006-001" = 0, "LENS-PROTECT-2YR" = 1, "CASE-LEATHER-PREM" = 1, "SKU2006-020" = 1, "SKU2006-035" = 1 }
expect = { outcome = "hold/inventory", primary = "inventory.short" }

[[tests]]
name = "second line without sku"
fixture = "order-paid"
set = { "line_items.1.sku" = "" }
expect = { outcome = "hold/inventory", fired = ["inventory.sku_missing"] }

[[tests]]
name = "lane default mode"
fixture = "order-paid"
mode = "lane"
expect = { outcome = "hold/manual", primary = "mode.manual" }

[[tests]]
name = "pending past the window"
fixture = "order-paid"
set = { financial_status = "pending" }
minutes_after_created = 1441
expect = { outcome = "hold/payment", primary = "payment.window_expired" }
"#;
        let cases = parse_cases(src, &m).unwrap();
        let results = run_cases(&m, &cases, &load());
        for r in &results {
            assert!(r.passed(), "{}", r.failure_text("x"));
        }
        let mut v = serde_json::json!({"a": [{"b": 1}, {"b": 2}]});
        set_path(&mut v, "a.1.b", &Value::from(5)).unwrap();
        set_path(&mut v, "c.d", &Value::from("x")).unwrap();
        assert_eq!(v, serde_json::json!({"a": [{"b": 1}, {"b": 5}], "c": {"d": "x"}}));
        assert!(set_path(&mut v, "a.9.b", &Value::Null).unwrap_err().contains("index 9"));
        assert!(set_path(&mut v, "c.d.e", &Value::Null).is_err());
        assert!(set_path(&mut v, "a..b", &Value::Null).is_err());
        unset_path(&mut v, "a.*.b");
        unset_path(&mut v, "nope.x");
        assert_eq!(v, serde_json::json!({"a": [{}, {}], "c": {"d": "x"}}));
    }

    #[test]
    fn bad_cases_are_refused_with_their_line() {
        let m = shipped();
        let head = "[[tests]]\nname = \"x\"\n";
        let cases: &[(&str, &str)] = &[
            ("fixture = \"order-paid\"\nexpect = { outcome = \"hold\" }\n", "expect.outcome \"hold\""),
            ("fixture = \"order-paid\"\nexpect = { outcome = \"ready/fraud\" }\n", "expect.outcome"),
            ("fixture = \"order-paid\"\nexpect = { outcome = \"new\", lane = \"mars\" }\n", "no such lane"),
            ("fixture = \"order-paid\"\nexpect = { outcome = \"new\", fired = [\"fraud.nope\"] }\n", "\"fraud.nope\" is not a rule id"),
            ("fixture = \"order-paid\"\nrisk = \"severe\"\nexpect = { outcome = \"new\" }\n", "risk \"severe\""),
            ("fixture = \"order-paid\"\nmode = \"fast\"\nexpect = { outcome = \"new\" }\n", "mode \"fast\""),
            ("expect = { outcome = \"new\" }\n", "exactly one of fixture"),
            ("fixture = \"../etc/passwd\"\nexpect = { outcome = \"new\" }\n", "not a name under tests/fixtures"),
            ("fixture = \"order-paid\"\nexpect = { outcome = \"new\", fired = [\"order.cancelled\"], not_fired = [\"order.cancelled\"] }\n", "both"),
        ];
        for (body, words) in cases {
            let src = format!("# cases\n\n{head}{body}");
            let e = parse_cases(&src, &m).unwrap_err();
            assert_eq!(e.line, Some(3), "{body}: {e}");
            assert!(e.to_string().contains(words), "{body}: {e}");
        }
        // A typo in a key is the TOML parser's error, with its own line.
        let e =
            parse_cases(&format!("{head}fixture = \"order-paid\"\nexpet = {{ outcome = \"new\" }}\n"), &m)
                .unwrap_err();
        assert!(e.message.contains("unknown field") && e.line.is_some(), "{e}");
        // Two cases of one name.
        let twice = format!("{head}fixture = \"order-paid\"\nexpect = {{ outcome = \"new\" }}\n\n{head}fixture = \"order-paid\"\nexpect = {{ outcome = \"new\" }}\n");
        let e = parse_cases(&twice, &m).unwrap_err();
        assert_eq!(e.line, Some(6), "{e}");
        // A body that does not exist fails the case, naming the path.
        let missing =
            parse_cases(&format!("{head}body = \"tests/nope.json\"\nexpect = {{ outcome = \"new\" }}\n"), &m)
                .unwrap();
        let r = run_cases(&m, &missing, &load());
        assert!(r[0].problems[0].contains("tests/nope.json"), "{:?}", r[0].problems);
    }
}
