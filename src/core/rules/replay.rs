//! Replay: a corpus of real order bodies decided under a baseline and a candidate matrix by
//! the Worker's own [`decide`], the orders whose decision changed grouped by transition, the
//! exception rate per lane under each, and a gate over the changes.
//!
//! Replay decides the rules alone: every lane as if in `auto` (a mode is a release switch,
//! not a rule). Each order is decided at its own `created_at` plus an offset (or at one fixed
//! instant), with its exported risk verdict (or a default), the email-velocity count taken
//! from the corpus itself (orders of the same shop and email created within the lane's window
//! up to that instant), and either a stock file or "every SKU in stock".
//!
//! Pure: bodies come in as bytes; reading folders and D1 exports is the CLI's job.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::Matrix;
use crate::core::order::{parse_order, Order, RiskLevel};
use crate::core::routing::{decide, Decision, RouteInput};
use crate::core::state::Target;
use crate::core::types::{Mode, State};

/// One order body of the corpus, with what its export said about it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Where it came from: `file.json` or `export.json#12`.
    pub origin: String,
    /// `None`: the replay's default shop.
    pub shop: Option<String>,
    pub risk: Option<RiskLevel>,
    pub body: Vec<u8>,
}

/// Reads one corpus file: an order body (a JSON object), a `wrangler d1 execute --json`
/// export (an array of statement results whose rows carry `body`, and optionally
/// `encoding`, `shop`, `risk_level`), or a plain array of such rows or of order bodies.
pub fn entries_from_file(name: &str, bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("{name}: not JSON ({e})"))?;
    let rows: Vec<&Value> = match &v {
        Value::Object(_) => {
            return Ok(vec![Entry { origin: name.to_string(), shop: None, risk: None, body: bytes.to_vec() }])
        }
        Value::Array(items) if items.iter().any(|i| i.get("results").is_some()) => {
            let mut rows = Vec::new();
            for stmt in items {
                if stmt.get("success") == Some(&Value::Bool(false)) {
                    return Err(format!("{name}: the export holds a failed statement"));
                }
                match stmt.get("results") {
                    Some(Value::Array(r)) => rows.extend(r.iter()),
                    _ => return Err(format!("{name}: a statement without results")),
                }
            }
            rows
        }
        Value::Array(items) => items.iter().collect(),
        _ => return Err(format!("{name}: neither an order body, a list of them, nor a D1 export")),
    };
    let mut out = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        let origin = format!("{name}#{}", i + 1);
        let Some(obj) = row.as_object() else {
            return Err(format!("{origin}: not an object"));
        };
        let Some(body) = obj.get("body") else {
            // A plain array of order bodies.
            let body = serde_json::to_vec(row).map_err(|e| format!("{origin}: {e}"))?;
            out.push(Entry { origin, shop: None, risk: None, body });
            continue;
        };
        let text = body.as_str().ok_or(format!("{origin}: body is not text"))?;
        let body = match obj.get("encoding").and_then(Value::as_str).unwrap_or("utf8") {
            "utf8" => text.as_bytes().to_vec(),
            "base64" => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|_| format!("{origin}: body is not base64"))?
            }
            other => return Err(format!("{origin}: unknown encoding {other}")),
        };
        let shop = obj.get("shop").and_then(Value::as_str).map(|s| s.trim().to_ascii_lowercase());
        let risk = match obj.get("risk_level") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                Some(RiskLevel::parse(s).ok_or(format!("{origin}: risk_level {s:?} is not a level"))?)
            }
            Some(_) => return Err(format!("{origin}: risk_level is not text")),
        };
        out.push(Entry { origin, shop, risk, body });
    }
    Ok(out)
}

/// When each order is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// This many minutes after the order's own `created_at`.
    AfterCreated(i64),
    /// One instant for every order (epoch ms).
    Fixed(i64),
}

#[derive(Debug, Clone)]
pub struct Options {
    /// For bodies whose export names no shop.
    pub shop: String,
    /// For orders whose export carries no verdict; `None`: no verdict has arrived.
    pub risk: Option<RiskLevel>,
    /// `None`: every SKU an order needs is in stock.
    pub stock: Option<BTreeMap<String, i64>>,
    pub at: At,
}

/// A decision as replay compares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub lane: String,
    pub state: State,
    pub reason: Option<crate::core::types::Reason>,
    /// Every rule that fired, in evaluation order.
    pub rules: Vec<&'static str>,
    pub primary: Option<&'static str>,
}

impl Outcome {
    fn of(d: &Decision) -> Outcome {
        Outcome {
            lane: d.lane.clone(),
            state: d.state,
            reason: d.reason,
            rules: d.fired_ids(),
            primary: d.primary_rule,
        }
    }

    pub fn target(&self) -> Target {
        Target::new(self.state, self.reason)
    }

    /// `ready-for-fulfilment`, `hold/address`: the outcome without the lane.
    pub fn label(&self) -> String {
        self.target().to_string()
    }

    /// Rule ids, the primary one starred; `-` when none fired.
    pub fn rules_text(&self) -> String {
        if self.rules.is_empty() {
            return "-".into();
        }
        let starred: Vec<String> = self
            .rules
            .iter()
            .map(|r| if Some(*r) == self.primary { format!("{r}*") } else { r.to_string() })
            .collect();
        starred.join(",")
    }
}

/// How an order's decision moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Same,
    /// Same lane and outcome; other rules fired.
    RulesOnly,
    /// Lane or outcome differs.
    Changed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub origin: String,
    pub shop: String,
    pub order_id: String,
    pub name: String,
    pub baseline: Outcome,
    pub candidate: Outcome,
    pub change: Change,
}

/// A body that could not be read as an order.
#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    pub origin: String,
    pub error: String,
}

/// Orders in a lane and how many of them went to `hold`, under one matrix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LaneRate {
    pub orders: usize,
    pub held: usize,
}

impl LaneRate {
    /// `3/20 15.0%`.
    pub fn text(&self) -> String {
        format!("{}/{} {}", self.held, self.orders, percent(self.held, self.orders))
    }
}

/// `n` of `total` as a percentage with one decimal; `-` of nothing.
pub fn percent(n: usize, total: usize) -> String {
    if total == 0 {
        return "-".into();
    }
    // Tenths of a percent, rounded half up, in integers.
    let tenths = (n as u128 * 2000 + total as u128) / (2 * total as u128);
    format!("{}.{}%", tenths / 10, tenths % 10)
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub baseline_version: String,
    pub candidate_version: String,
    pub rows: Vec<Row>,
    pub unreadable: Vec<Unreadable>,
    /// Bodies of an order already in the corpus (the newest by `updated_at` is kept).
    pub duplicates: usize,
    /// `(from, to) → orders`, outcome labels, for changed orders whose outcome moved.
    pub transitions: BTreeMap<(String, String), usize>,
    /// `(from lane, to lane) → orders`, for changed orders whose lane moved.
    pub lane_moves: BTreeMap<(String, String), usize>,
    pub changed: usize,
    pub rules_only: usize,
    /// Lane → (baseline, candidate). Lanes of both matrices, the candidate's order first.
    pub rates: Vec<(String, LaneRate, LaneRate)>,
}

impl Report {
    pub fn decided(&self) -> usize {
        self.rows.len()
    }
}

/// Orders of `shop` with `email` created in `[at - window, at]`: the velocity count as the
/// Worker takes it from D1, taken from the corpus.
fn email_count(all: &[(String, Order)], shop: &str, order: &Order, window_min: u32, at: i64) -> u32 {
    let Some(email) = order.email.as_deref().map(|e| e.trim().to_lowercase()) else {
        return 0;
    };
    let since = at.saturating_sub(i64::from(window_min) * 60_000);
    let n = all
        .iter()
        .filter(|(s, o)| {
            s == shop
                && o.email.as_deref().is_some_and(|e| e.trim().to_lowercase() == email)
                && o.created_at_ms >= since
                && o.created_at_ms <= at
                && o.id != order.id
        })
        .count();
    u32::try_from(n).unwrap_or(u32::MAX).saturating_add(1)
}

fn decide_one(
    m: &Matrix,
    all: &[(String, Order)],
    i: usize,
    risk: Option<RiskLevel>,
    opt: &Options,
) -> Decision {
    let (shop, order) = &all[i];
    let at = match opt.at {
        At::AfterCreated(min) => order.created_at_ms.saturating_add(min.saturating_mul(60_000)),
        At::Fixed(t) => t,
    };
    let lane = m.lane_for(shop, order);
    let emails = lane.fraud.email_velocity.map_or(1, |v| email_count(all, shop, order, v.window_minutes, at));
    let ample;
    let stock = match &opt.stock {
        Some(s) => s,
        None => {
            ample = super::inventory::needed(order).0;
            &ample
        }
    };
    let input =
        RouteInput { shop, order, risk, stock, email_orders_in_window: emails, mode: Some(Mode::Auto) };
    decide(m, &input, at)
}

/// Decides every entry under both matrices and compares.
pub fn replay(baseline: &Matrix, candidate: &Matrix, entries: &[Entry], opt: &Options) -> Report {
    let mut unreadable = Vec::new();
    // (shop, order id) → index in `kept`; the newest body of an order wins.
    let mut index: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut kept: Vec<(String, Order, Option<RiskLevel>, String)> = Vec::new();
    let mut duplicates = 0;
    for e in entries {
        match parse_order(&e.body) {
            Err(err) => unreadable
                .push(Unreadable { origin: e.origin.clone(), error: format!("{} ({err})", err.code()) }),
            Ok(order) => {
                let shop = e.shop.clone().unwrap_or_else(|| opt.shop.clone());
                let risk = e.risk.or(opt.risk);
                let key = (shop.clone(), order.id.0.clone());
                match index.get(&key) {
                    Some(&k) => {
                        duplicates += 1;
                        let newer = |o: &Order| o.updated_at_ms.unwrap_or(o.created_at_ms);
                        if newer(&order) >= newer(&kept[k].1) {
                            kept[k] = (shop, order, risk, e.origin.clone());
                        }
                    }
                    None => {
                        index.insert(key, kept.len());
                        kept.push((shop, order, risk, e.origin.clone()));
                    }
                }
            }
        }
    }
    // Chronological, as an operator reads a week of orders.
    kept.sort_by(|a, b| (a.1.created_at_ms, &a.1.id.0, &a.0).cmp(&(b.1.created_at_ms, &b.1.id.0, &b.0)));
    let all: Vec<(String, Order)> = kept.iter().map(|(s, o, _, _)| (s.clone(), o.clone())).collect();
    let mut rows = Vec::new();
    let mut transitions = BTreeMap::new();
    let mut lane_moves = BTreeMap::new();
    let (mut changed, mut rules_only) = (0, 0);
    let mut rates: BTreeMap<String, (LaneRate, LaneRate)> = BTreeMap::new();
    for (i, (shop, order, risk, origin)) in kept.iter().enumerate() {
        let b = Outcome::of(&decide_one(baseline, &all, i, *risk, opt));
        let c = Outcome::of(&decide_one(candidate, &all, i, *risk, opt));
        let change = if b.lane != c.lane || b.target() != c.target() {
            changed += 1;
            if b.target() != c.target() {
                *transitions.entry((b.label(), c.label())).or_insert(0) += 1;
            }
            if b.lane != c.lane {
                *lane_moves.entry((b.lane.clone(), c.lane.clone())).or_insert(0) += 1;
            }
            Change::Changed
        } else if b.rules != c.rules || b.primary != c.primary {
            rules_only += 1;
            Change::RulesOnly
        } else {
            Change::Same
        };
        let held = |o: &Outcome| usize::from(o.state == State::Hold);
        let e = rates.entry(b.lane.clone()).or_default();
        e.0.orders += 1;
        e.0.held += held(&b);
        let e = rates.entry(c.lane.clone()).or_default();
        e.1.orders += 1;
        e.1.held += held(&c);
        rows.push(Row {
            origin: origin.clone(),
            shop: shop.clone(),
            order_id: order.id.0.clone(),
            name: order.name.clone(),
            baseline: b,
            candidate: c,
            change,
        });
    }
    let mut lanes: Vec<String> = Vec::new();
    for l in candidate.lanes.iter().chain(&baseline.lanes) {
        if !lanes.contains(&l.name) {
            lanes.push(l.name.clone());
        }
    }
    let rates = lanes
        .into_iter()
        .map(|l| {
            let (b, c) = rates.get(&l).copied().unwrap_or_default();
            (l, b, c)
        })
        .collect();
    Report {
        baseline_version: baseline.rules_version.clone(),
        candidate_version: candidate.rules_version.clone(),
        rows,
        unreadable,
        duplicates,
        transitions,
        lane_moves,
        changed,
        rules_only,
        rates,
    }
}

/// A limit: a count of orders, or a share of the orders decided (in hundredths of a percent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Max {
    Count(usize),
    BasisPoints(u64),
}

impl Max {
    /// `5` (orders) or `2%`, `0.5%` (of the orders decided).
    pub fn parse(s: &str) -> Option<Max> {
        let s = s.trim();
        match s.strip_suffix('%') {
            Some(p) => {
                let p = p.trim();
                let (int, frac) = p.split_once('.').unwrap_or((p, ""));
                if int.is_empty()
                    || frac.len() > 2
                    || !(int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()))
                {
                    return None;
                }
                let f: String = frac.chars().chain("00".chars()).take(2).collect();
                let bp = int.parse::<u64>().ok()?.checked_mul(100)?.checked_add(f.parse::<u64>().ok()?)?;
                (bp <= 10_000).then_some(Max::BasisPoints(bp))
            }
            None => s.parse().ok().map(Max::Count),
        }
    }

    fn exceeded(self, n: usize, total: usize) -> bool {
        match self {
            Max::Count(c) => n > c,
            Max::BasisPoints(bp) => (n as u128) * 10_000 > u128::from(bp) * total as u128,
        }
    }

    fn text(self) -> String {
        match self {
            Max::Count(c) => format!("{c} orders"),
            Max::BasisPoints(bp) => format!("{}.{:02}%", bp / 100, bp % 100),
        }
    }
}

/// A per-transition limit: `from->to=max`, either side `*` for any outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionLimit {
    pub from: Option<Target>,
    pub to: Option<Target>,
    pub max: Max,
}

impl TransitionLimit {
    /// `ready-for-fulfilment->hold/address=1%`, `*->ready-for-fulfilment=0` (`→` also works).
    pub fn parse(s: &str) -> Result<TransitionLimit, String> {
        let (pair, max) = s.rsplit_once('=').ok_or(format!("{s}: expected FROM->TO=MAX"))?;
        let max = Max::parse(max).ok_or(format!("{s}: {max} is not a count or a percentage"))?;
        let pair = pair.replace('→', "->");
        let (from, to) = pair.split_once("->").ok_or(format!("{s}: expected FROM->TO=MAX"))?;
        let side = |x: &str| -> Result<Option<Target>, String> {
            match x.trim() {
                "*" => Ok(None),
                t => super::cases::parse_target(t)
                    .map(Some)
                    .ok_or(format!("{s}: {t} is not an outcome (a state, hold/<reason>, or *)")),
            }
        };
        Ok(TransitionLimit { from: side(from)?, to: side(to)?, max })
    }

    fn label(&self) -> String {
        let side = |t: Option<Target>| t.map_or("*".to_string(), |t| t.to_string());
        format!("{} → {}", side(self.from), side(self.to))
    }
}

/// Limits the changes may not pass. Returns one line per limit passed; empty when within.
pub fn gate(report: &Report, max_changed: Option<Max>, limits: &[TransitionLimit]) -> Vec<String> {
    let total = report.decided();
    let mut out = Vec::new();
    if let Some(m) = max_changed {
        if m.exceeded(report.changed, total) {
            out.push(format!(
                "{} of {total} orders changed ({}), over the limit of {}",
                report.changed,
                percent(report.changed, total),
                m.text()
            ));
        }
    }
    for l in limits {
        let n: usize = report
            .rows
            .iter()
            .filter(|r| r.change == Change::Changed && r.baseline.target() != r.candidate.target())
            .filter(|r| {
                l.from.is_none_or(|f| f == r.baseline.target())
                    && l.to.is_none_or(|t| t == r.candidate.target())
            })
            .count();
        if l.max.exceeded(n, total) {
            out.push(format!(
                "{}: {n} orders ({}), over the limit of {}",
                l.label(),
                percent(n, total),
                l.max.text()
            ));
        }
    }
    out
}

/// The report as text: per order, then the changes by transition, then rates per lane.
pub fn render(report: &Report, changed_only: bool) -> String {
    let mut s = String::new();
    let total = report.decided();
    let cell = |o: &Outcome| format!("{} {} [{}]", o.lane, o.label(), o.rules_text());
    s += &format!(
        "per order (baseline {} | candidate {})\n",
        report.baseline_version, report.candidate_version
    );
    let shown: Vec<&Row> = report.rows.iter().filter(|r| !changed_only || r.change != Change::Same).collect();
    for r in &shown {
        let mark = match r.change {
            Change::Same => "=",
            Change::RulesOnly => "~",
            Change::Changed => "!",
        };
        let name = if r.name.is_empty() { "-" } else { r.name.as_str() };
        match r.change {
            Change::Same => s += &format!("  {mark} {} {name:<8} {}\n", r.order_id, cell(&r.baseline)),
            _ => {
                s += &format!(
                    "  {mark} {} {name:<8} {}  =>  {}\n",
                    r.order_id,
                    cell(&r.baseline),
                    cell(&r.candidate)
                )
            }
        }
    }
    if shown.is_empty() {
        s += "  (none)\n";
    }
    for u in &report.unreadable {
        s += &format!("  ? {}: not an order: {}\n", u.origin, u.error);
    }
    s += &format!("\nchanged: {} of {total} orders ({})", report.changed, percent(report.changed, total));
    let mut notes = Vec::new();
    if !report.unreadable.is_empty() {
        notes.push(format!("unreadable bodies: {}", report.unreadable.len()));
    }
    if report.duplicates > 0 {
        notes.push(format!("repeated bodies: {} (the newest kept)", report.duplicates));
    }
    if !notes.is_empty() {
        s += &format!("; {}", notes.join(", "));
    }
    s += "\n";
    for ((from, to), n) in &report.transitions {
        s += &format!("  {from} → {to}: {n}\n");
    }
    for ((from, to), n) in &report.lane_moves {
        s += &format!("  lane {from} → {to}: {n}\n");
    }
    s += &format!("same outcome, other rules fired: {}\n", report.rules_only);
    s += "\nexception rate by lane (held/orders)\n";
    let w = report.rates.iter().map(|(l, _, _)| l.len()).max().unwrap_or(4).max(4);
    s += &format!("  {:<w$}  {:<18}  {}\n", "lane", "baseline", "candidate");
    let (mut b_all, mut c_all) = (LaneRate::default(), LaneRate::default());
    for (lane, b, c) in &report.rates {
        s += &format!("  {lane:<w$}  {:<18}  {}\n", b.text(), c.text());
        b_all.orders += b.orders;
        b_all.held += b.held;
        c_all.orders += c.orders;
        c_all.held += c.held;
    }
    s += &format!("  {:<w$}  {:<18}  {}\n", "all", b_all.text(), c_all.text());
    s
}

/// Every distinct outcome label in the report (for checking limits against what happened).
pub fn outcomes(report: &Report) -> BTreeSet<String> {
    report.rows.iter().flat_map(|r| [r.baseline.label(), r.candidate.label()]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::tests::SHIPPED;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/replay");

    fn corpus() -> Vec<Entry> {
        let mut files: Vec<_> = std::fs::read_dir(format!("{DIR}/corpus"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .flat_map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                entries_from_file(&name, &std::fs::read(p).unwrap()).unwrap()
            })
            .collect()
    }

    fn options() -> Options {
        Options { shop: "corpus.myshopify.com".into(), risk: None, stock: None, at: At::AfterCreated(0) }
    }

    fn candidate() -> Matrix {
        Matrix::from_toml_str(&std::fs::read_to_string(format!("{DIR}/candidate.toml")).unwrap()).unwrap()
    }

    #[test]
    fn the_candidate_differs_from_the_shipped_matrix_in_one_rule() {
        let cand = std::fs::read_to_string(format!("{DIR}/candidate.toml")).unwrap();
        let diff: Vec<(&str, &str)> = SHIPPED.lines().zip(cand.lines()).filter(|(a, b)| a != b).collect();
        assert_eq!(
            diff,
            vec![("max_total_cents = 300000 # 3,000.00", "max_total_cents = 200000 # 2,000.00")]
        );
        assert_eq!(SHIPPED.lines().count(), cand.lines().count());
    }

    #[test]
    fn replay_gives_the_exact_diff() {
        let base = Matrix::from_toml_str(SHIPPED).unwrap();
        let r = replay(&base, &candidate(), &corpus(), &options());
        assert_eq!(r.decided(), 40);
        assert_eq!(r.unreadable.len(), 1, "{:?}", r.unreadable);
        assert_eq!(r.unreadable[0].origin, "z-not-an-order.json");
        assert_eq!(r.duplicates, 1);
        let changed: Vec<(&str, String, String)> = r
            .rows
            .iter()
            .filter(|x| x.change == Change::Changed)
            .map(|x| (x.name.as_str(), x.baseline.label(), x.candidate.label()))
            .collect();
        assert_eq!(
            changed,
            vec![
                ("#R2100", "ready-for-fulfilment".into(), "hold/fraud".into()),
                ("#R2999", "ready-for-fulfilment".into(), "hold/fraud".into()),
                ("#R2500E", "hold/inventory".into(), "hold/fraud".into()),
            ]
        );
        let t: Vec<_> = r.transitions.iter().map(|((a, b), n)| (a.as_str(), b.as_str(), *n)).collect();
        assert_eq!(t, vec![("hold/inventory", "hold/fraud", 1), ("ready-for-fulfilment", "hold/fraud", 2)]);
        assert!(r.lane_moves.is_empty());
        // Held for its address either way; the new limit fires beneath it.
        let same: Vec<&str> =
            r.rows.iter().filter(|x| x.change == Change::RulesOnly).map(|x| x.name.as_str()).collect();
        assert_eq!(same, vec!["#R2400A"]);
        let rates: Vec<(String, String, String)> =
            r.rates.iter().map(|(l, b, c)| (l.clone(), b.text(), c.text())).collect();
        assert_eq!(
            rates,
            vec![
                ("pos".into(), "1/5 20.0%".into(), "1/5 20.0%".into()),
                ("wholesale".into(), "2/5 40.0%".into(), "2/5 40.0%".into()),
                ("eu".into(), "5/8 62.5%".into(), "5/8 62.5%".into()),
                ("default".into(), "11/22 50.0%".into(), "13/22 59.1%".into()),
            ]
        );
        let text = render(&r, false);
        assert!(
            text.contains(
                "changed: 3 of 40 orders (7.5%); unreadable bodies: 1, repeated bodies: 1 (the newest kept)\n"
            ),
            "{text}"
        );
        assert!(text.contains("  ready-for-fulfilment → hold/fraud: 2\n"), "{text}");
        assert!(text.contains("  hold/inventory → hold/fraud: 1\n"), "{text}");
        assert!(text.contains("same outcome, other rules fired: 1\n"), "{text}");
        assert!(text.contains("  default    11/22 50.0%         13/22 59.1%\n"), "{text}");
        assert!(text.contains("  all        19/40 47.5%         21/40 52.5%\n"), "{text}");
        // The earlier, pending body of #R1001 lost to its newer, paid one.
        let r1001 = r.rows.iter().find(|x| x.name == "#R1001").unwrap();
        assert_eq!(r1001.baseline.label(), "ready-for-fulfilment");
        // Replayed against itself nothing moves.
        let same = replay(&base, &base, &corpus(), &options());
        assert_eq!((same.changed, same.rules_only), (0, 0));
    }

    #[test]
    fn the_gate_counts_changes_and_transitions() {
        let base = Matrix::from_toml_str(SHIPPED).unwrap();
        let r = replay(&base, &candidate(), &corpus(), &options());
        // 3 of 40 is 7.5%: at the limit passes, just under it fails.
        assert!(gate(&r, Max::parse("7.5%"), &[]).is_empty());
        assert_eq!(
            gate(&r, Max::parse("7.49%"), &[]),
            vec!["3 of 40 orders changed (7.5%), over the limit of 7.49%"]
        );
        assert!(gate(&r, Max::parse("3"), &[]).is_empty());
        assert_eq!(gate(&r, Max::parse("2"), &[]).len(), 1);
        let lim = |s: &str| TransitionLimit::parse(s).unwrap();
        assert!(gate(&r, None, &[lim("ready-for-fulfilment->hold/fraud=2")]).is_empty());
        assert_eq!(
            gate(&r, None, &[lim("ready-for-fulfilment → hold/fraud=1")]),
            vec!["ready-for-fulfilment → hold/fraud: 2 orders (5.0%), over the limit of 1 orders"]
        );
        assert_eq!(gate(&r, None, &[lim("*->hold/fraud=2")]).len(), 1);
        assert!(gate(&r, None, &[lim("*->ready-for-fulfilment=0")]).is_empty(), "nothing newly released");
        assert!(gate(&r, None, &[lim("hold/inventory->*=1")]).is_empty());
        for bad in
            ["ready->hold=1", "a=b", "*->*", "*->hold/fraud=x%", "*->hold/fraud=101%", "*->hold/fraud=1.234%"]
        {
            assert!(TransitionLimit::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Max::parse("0.5%"), Some(Max::BasisPoints(50)));
        assert_eq!(Max::parse("2 %"), Some(Max::BasisPoints(200)));
        assert_eq!(Max::parse("-1"), None);
    }

    #[test]
    fn d1_exports_and_lists_are_read() {
        let export = br#"[{"results":[
            {"shop":"A.myshopify.com","order_id":"1","risk_level":"high","encoding":"utf8","body":"{\"id\":1,\"created_at\":\"2026-01-01T00:00:00Z\",\"total_price\":\"1.00\"}"},
            {"shop":"a.myshopify.com","order_id":"2","risk_level":null,"encoding":"base64","body":"eyJpZCI6Mn0="}
        ],"success":true,"meta":{}}]"#;
        let e = entries_from_file("x.json", export).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].origin.as_str(), e[0].shop.as_deref(), e[0].risk),
            ("x.json#1", Some("a.myshopify.com"), Some(RiskLevel::High))
        );
        assert_eq!(e[1].body, br#"{"id":2}"#);
        let list = br#"[{"id":1,"created_at":"2026-01-01T00:00:00Z","total_price":"1.00"},{"id":2}]"#;
        assert_eq!(entries_from_file("l.json", list).unwrap().len(), 2);
        for (bad, words) in [
            (&br#"[{"results":[{"body":5}]}]"#[..], "body is not text"),
            (br#"[{"results":[{"body":"x","encoding":"rot13"}]}]"#, "unknown encoding"),
            (br#"[{"results":[{"body":"%%","encoding":"base64"}]}]"#, "not base64"),
            (br#"[{"results":[{"body":"{}","risk_level":"extreme"}]}]"#, "risk_level"),
            (br#"[{"results":[],"success":false}]"#, "failed statement"),
            (br#"nope"#, "not JSON"),
            (br#"7"#, "neither"),
        ] {
            let err = entries_from_file("b.json", bad).unwrap_err();
            assert!(err.contains(words), "{err}");
        }
    }

    #[test]
    fn velocity_is_counted_from_the_corpus() {
        let base = Matrix::from_toml_str(SHIPPED).unwrap();
        let r = replay(&base, &base, &corpus(), &options());
        let fired: Vec<&str> = r
            .rows
            .iter()
            .filter(|x| x.baseline.rules.contains(&crate::core::rules::fraud::EMAIL_VELOCITY))
            .map(|x| x.name.as_str())
            .collect();
        // Four orders from one email within the hour: the fourth passes the limit of 3.
        assert_eq!(fired, vec!["#R-VEL4"]);
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(2, 3), "66.7%");
        assert_eq!(percent(0, 0), "-");
    }
}
