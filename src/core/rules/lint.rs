//! The matrix linter: things a valid matrix can still get wrong, found from the matrix alone.
//!
//! - `unreachable`: a lane every one of whose orders an earlier lane takes first (or earlier
//!   lanes together, one value of one of its lists each).
//! - `overlap`: two lanes one order can match, where only their order in the file decides
//!   which takes it. Listing the later lane in the earlier one's `wins_over` says it is meant.
//! - `no_effect`: a policy key that cannot change any decision in its lane (an address
//!   setting with `address.check = false`, a country list the lane's match already ensures,
//!   a fraud total limit above the lane's own maximum total, a `wins_over` naming a lane it
//!   never meets).
//! - `default_not_last`: `default` takes what no other lane matched, wherever it is written;
//!   written anywhere but last it reads as if lanes below it were never tried.
//!
//! Findings are warnings: the build prints them, `explain lint --deny` fails on them.

use super::matrix::{find_line, Lane, LaneMatch, Matrix, DEFAULT_LANE};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LintKind {
    Unreachable,
    Overlap,
    NoEffect,
    DefaultNotLast,
}

impl LintKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LintKind::Unreachable => "unreachable",
            LintKind::Overlap => "overlap",
            LintKind::NoEffect => "no_effect",
            LintKind::DefaultNotLast => "default_not_last",
        }
    }
}

/// One finding, pinned to a line of the matrix source when it can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: LintKind,
    pub lane: String,
    /// Dotted key inside the lane, if the finding is about one.
    pub key: Option<String>,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}: ")?;
        }
        write!(f, "lane \"{}\"", self.lane)?;
        if let Some(k) = &self.key {
            write!(f, ", {k}")?;
        }
        write!(f, ": {} [{}]", self.message, self.kind.as_str())
    }
}

fn ci_contains(list: &[String], v: &str) -> bool {
    list.iter().any(|x| x.eq_ignore_ascii_case(v))
}

/// Both "any of" lists can hold for one order: either is unconstrained or they share a value.
fn lists_meet(a: &[String], b: &[String]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|x| ci_contains(b, x))
}

/// Every order meeting `b` meets `a`.
fn list_implies(b: &[String], a: &[String]) -> bool {
    a.is_empty() || (!b.is_empty() && b.iter().all(|x| ci_contains(a, x)))
}

/// Some order can match both lanes' conditions.
pub fn can_overlap(a: &LaneMatch, b: &LaneMatch) -> bool {
    let lo = a.min_total_cents.max(b.min_total_cents);
    let hi = match (a.max_total_cents, b.max_total_cents) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    lists_meet(&a.shop, &b.shop)
        && lists_meet(&a.source_name, &b.source_name)
        && lists_meet(&a.shipping_country, &b.shipping_country)
        && lists_meet(&a.currency, &b.currency)
        // Tags never exclude each other: one order can carry a tag from each list.
        && match (lo, hi) {
            (Some(l), Some(h)) => l <= h,
            _ => true,
        }
}

/// Every order matching `b` also matches `a` (so a lane `b` listed after `a` is never reached).
pub fn covers(a: &LaneMatch, b: &LaneMatch) -> bool {
    list_implies(&b.shop, &a.shop)
        && list_implies(&b.source_name, &a.source_name)
        && list_implies(&b.shipping_country, &a.shipping_country)
        && list_implies(&b.currency, &a.currency)
        && list_implies(&b.tags_any, &a.tags_any)
        && a.min_total_cents.is_none_or(|lo| b.min_total_cents.is_some_and(|x| x >= lo))
        && a.max_total_cents.is_none_or(|hi| b.max_total_cents.is_some_and(|x| x <= hi))
}

/// The earlier lanes that together take every order `b` matches: one lane covering it, or,
/// split on one of `b`'s lists, a covering lane for each of its values (`EUR` by one lane,
/// `USD` by another, then a lane for `EUR` or `USD`). Empty when `b` can be reached.
pub fn covered_by<'a>(earlier: &[&'a Lane], b: &LaneMatch) -> Vec<&'a str> {
    if let Some(a) = earlier.iter().find(|a| covers(&a.matches, b)) {
        return vec![a.name.as_str()];
    }
    type Field = fn(&mut LaneMatch) -> &mut Vec<String>;
    let dims: [Field; 5] = [
        |m| &mut m.shop,
        |m| &mut m.source_name,
        |m| &mut m.shipping_country,
        |m| &mut m.currency,
        |m| &mut m.tags_any,
    ];
    for dim in dims {
        let mut probe = b.clone();
        let values = dim(&mut probe).clone();
        if values.len() < 2 {
            continue;
        }
        let mut by = Vec::new();
        for v in values {
            *dim(&mut probe) = vec![v];
            match earlier.iter().find(|a| covers(&a.matches, &probe)) {
                Some(a) if !by.contains(&a.name.as_str()) => by.push(a.name.as_str()),
                Some(_) => {}
                None => {
                    by.clear();
                    break;
                }
            }
        }
        if !by.is_empty() {
            return by;
        }
    }
    Vec::new()
}

/// What the two lanes' conditions share, for a reader: `source_name pos + tags wholesale`.
fn describe_meeting(a: &LaneMatch, b: &LaneMatch) -> String {
    let mut parts = Vec::new();
    let mut list = |name: &str, x: &[String], y: &[String]| {
        let shared: Vec<&String> = if x.is_empty() {
            y.iter().collect()
        } else if y.is_empty() {
            x.iter().collect()
        } else {
            x.iter().filter(|v| ci_contains(y, v)).collect()
        };
        if !shared.is_empty() {
            let shown: Vec<&str> = shared.iter().take(3).map(|s| s.as_str()).collect();
            let more = if shared.len() > 3 { format!(" (+{})", shared.len() - 3) } else { String::new() };
            parts.push(format!("{name} {}{more}", shown.join("|")));
        }
    };
    list("shop", &a.shop, &b.shop);
    list("source_name", &a.source_name, &b.source_name);
    list("shipping_country", &a.shipping_country, &b.shipping_country);
    list("currency", &a.currency, &b.currency);
    let mut tags: Vec<String> = a.tags_any.iter().take(1).cloned().collect();
    tags.extend(b.tags_any.iter().take(1).cloned());
    if !tags.is_empty() {
        parts.push(format!("tags {}", tags.join("+")));
    }
    if a.min_total_cents.or(b.min_total_cents).is_some() || a.max_total_cents.or(b.max_total_cents).is_some()
    {
        parts.push("a total both allow".into());
    }
    parts.join(" + ")
}

/// Every finding for `m`, in file order; `source` is the TOML it was read from (for lines).
pub fn lint(m: &Matrix, source: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let at = |i: usize, lane: &Lane, kind: LintKind, key: &str, message: String| Finding {
        kind,
        lane: lane.name.clone(),
        key: (!key.is_empty()).then(|| key.to_string()),
        line: find_line(source, i, key),
        message,
    };
    let last = m.lanes.len().saturating_sub(1);
    for (i, lane) in m.lanes.iter().enumerate() {
        if lane.name == DEFAULT_LANE {
            if i != last {
                out.push(at(
                    i,
                    lane,
                    LintKind::DefaultNotLast,
                    "name",
                    "default is tried after every other lane, wherever it is written; move it last".into(),
                ));
            }
        } else {
            let earlier = m.lanes[..i].iter().enumerate().filter(|(_, a)| a.name != DEFAULT_LANE);
            let before: Vec<&Lane> = earlier.clone().map(|(_, a)| a).collect();
            let by = covered_by(&before, &lane.matches);
            if !by.is_empty() {
                let names: Vec<String> = by.iter().map(|n| format!("\"{n}\"")).collect();
                let whom = if names.len() == 1 {
                    format!("lane {}", names[0])
                } else {
                    format!("lanes {}", names.join(" and "))
                };
                out.push(at(
                    i,
                    lane,
                    LintKind::Unreachable,
                    "match",
                    format!("no order can reach it: every order it matches is taken by {whom} above"),
                ));
            } else {
                for (j, a) in earlier {
                    if can_overlap(&a.matches, &lane.matches) && !a.wins_over.contains(&lane.name) {
                        out.push(at(
                            j,
                            a,
                            LintKind::Overlap,
                            "match",
                            format!(
                                "an order can match both this lane and \"{}\" ({}); it goes here only because this lane is listed first. Say so with wins_over = [\"{}\"], or narrow one match",
                                lane.name,
                                describe_meeting(&a.matches, &lane.matches),
                                lane.name
                            ),
                        ));
                    }
                }
            }
        }
        for other in &lane.wins_over {
            if let Some(o) = m.lane(other) {
                if !can_overlap(&lane.matches, &o.matches) {
                    out.push(at(
                        i,
                        lane,
                        LintKind::NoEffect,
                        "wins_over",
                        format!("no order can match both this lane and \"{other}\"; the entry has no effect"),
                    ));
                }
            }
        }
        let a = &lane.address;
        if !a.check {
            if a.refuse_po_box {
                out.push(at(
                    i,
                    lane,
                    LintKind::NoEffect,
                    "address.refuse_po_box",
                    "has no effect: address.check = false skips every address rule".into(),
                ));
            }
            if !a.allowed_countries.is_empty() {
                out.push(at(
                    i,
                    lane,
                    LintKind::NoEffect,
                    "address.allowed_countries",
                    "has no effect: address.check = false skips every address rule".into(),
                ));
            }
        } else if !a.allowed_countries.is_empty()
            && !lane.matches.shipping_country.is_empty()
            && lane.matches.shipping_country.iter().all(|c| ci_contains(&a.allowed_countries, c))
        {
            out.push(at(
                i,
                lane,
                LintKind::NoEffect,
                "address.allowed_countries",
                "has no effect: the lane only matches orders shipped to these countries already".into(),
            ));
        }
        if let (Some(limit), Some(max)) = (lane.fraud.max_total_cents, lane.matches.max_total_cents) {
            if max <= limit {
                out.push(at(
                    i,
                    lane,
                    LintKind::NoEffect,
                    "fraud.max_total_cents",
                    format!(
                        "has no effect: the lane only matches totals up to {max}, within the limit {limit}"
                    ),
                ));
            }
        }
    }
    out.sort_by_key(|f| (f.line.unwrap_or(usize::MAX), f.kind));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::tests::SHIPPED;

    fn findings(src: &str) -> Vec<(LintKind, String, Option<usize>)> {
        let m = Matrix::from_toml_str(src).unwrap();
        lint(&m, src).into_iter().map(|f| (f.kind, f.lane, f.line)).collect()
    }

    fn line_of(src: &str, needle: &str, nth: usize) -> usize {
        let mut hits =
            src.lines().enumerate().filter(|(_, l)| !l.trim_start().starts_with('#') && l.contains(needle));
        hits.nth(nth - 1).unwrap().0 + 1
    }

    #[test]
    fn the_shipped_matrix_is_clean() {
        let m = Matrix::from_toml_str(SHIPPED).unwrap();
        let f = lint(&m, SHIPPED);
        assert!(f.is_empty(), "{}", f.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("\n"));
    }

    #[test]
    fn an_unacknowledged_overlap_is_found_on_the_earlier_lane() {
        // Without pos's wins_over, a POS order tagged wholesale goes to pos silently.
        let src = SHIPPED.replacen("wins_over = [\"wholesale\", \"eu\"]", "wins_over = [\"eu\"]", 1);
        assert_ne!(src, SHIPPED);
        let want = line_of(&src, "[lanes.match]", 1);
        assert_eq!(findings(&src), vec![(LintKind::Overlap, "pos".into(), Some(want))]);
        let m = Matrix::from_toml_str(&src).unwrap();
        let text = lint(&m, &src)[0].to_string();
        assert!(text.contains("\"wholesale\" (source_name pos + tags wholesale)"), "{text}");
        assert!(text.contains("wins_over = [\"wholesale\"]"), "{text}");
        // Lanes whose conditions exclude each other do not overlap.
        let a = LaneMatch { currency: vec!["EUR".into()], ..LaneMatch::default() };
        let b = LaneMatch { currency: vec!["usd".into(), "GBP".into()], ..LaneMatch::default() };
        assert!(!can_overlap(&a, &b));
        let big = LaneMatch { min_total_cents: Some(100), ..LaneMatch::default() };
        let small = LaneMatch { max_total_cents: Some(99), ..LaneMatch::default() };
        assert!(!can_overlap(&big, &small));
        assert!(can_overlap(&big, &LaneMatch { max_total_cents: Some(100), ..LaneMatch::default() }));
    }

    #[test]
    fn a_shadowed_lane_is_unreachable() {
        // A lane for French euro orders below the EU lane: the EU lane takes all of them.
        let lane = "\n[[lanes]]\nname = \"fr\"\ndefault_mode = \"manual\"\nbacklog_threshold = 10\n[lanes.match]\nshipping_country = [\"FR\"]\ncurrency = [\"EUR\"]\nmin_total_cents = 100\n[lanes.payment]\npending_window_minutes = 0\npass_authorized = false\n[lanes.address]\nrefuse_po_box = false\n[lanes.inventory]\nunknown_sku = \"hold\"\n[lanes.fraud]\nmedium = \"hold\"\nrequire_verdict = false\nverdict_timeout_minutes = 60\ncountry_mismatch = true\n";
        let at = SHIPPED.find("# Everything else").unwrap();
        let src = format!("{}{lane}\n{}", &SHIPPED[..at], &SHIPPED[at..]);
        let f = findings(&src);
        let want = line_of(&src, "[lanes.match]", 4);
        assert_eq!(f, vec![(LintKind::Unreachable, "fr".into(), Some(want))]);
        // Tags and totals: a narrower tag list and range is covered, a wider one is not.
        let wide = LaneMatch { tags_any: vec!["a".into(), "B".into()], ..LaneMatch::default() };
        let narrow =
            LaneMatch { tags_any: vec!["b".into()], max_total_cents: Some(5), ..LaneMatch::default() };
        assert!(covers(&wide, &narrow) && !covers(&narrow, &wide));
        let capped = LaneMatch { max_total_cents: Some(10), ..LaneMatch::default() };
        assert!(covers(&capped, &narrow) && !covers(&capped, &wide));
    }

    #[test]
    fn a_lane_taken_by_two_earlier_lanes_together_is_unreachable() {
        let lane = |name: &str, m: LaneMatch| {
            let mut l = Matrix::from_toml_str(SHIPPED).unwrap().lanes[3].clone();
            l.name = name.into();
            l.matches = m;
            l
        };
        let cur = |c: &[&str]| LaneMatch {
            currency: c.iter().map(|s| s.to_string()).collect(),
            ..LaneMatch::default()
        };
        let eur = lane("eur", cur(&["EUR"]));
        let usd = lane("usd", cur(&["USD"]));
        let both = LaneMatch { min_total_cents: Some(1), ..cur(&["EUR", "usd"]) };
        assert_eq!(covered_by(&[&eur, &usd], &both), vec!["eur", "usd"]);
        assert!(covered_by(&[&eur], &both).is_empty(), "USD orders still reach it");
        assert!(covered_by(&[&eur, &usd], &cur(&["EUR", "USD", "GBP"])).is_empty());
        // In a matrix: the finding names both lanes.
        let mut m = Matrix::from_toml_str(SHIPPED).unwrap();
        m.lanes.insert(3, lane("eur", cur(&["EUR"])));
        m.lanes.insert(4, lane("usd", cur(&["USD"])));
        m.lanes.insert(5, lane("money", cur(&["EUR", "USD"])));
        let f: Vec<String> = lint(&m, SHIPPED)
            .iter()
            .filter(|f| f.kind == LintKind::Unreachable)
            .map(|f| f.to_string())
            .collect();
        assert_eq!(f.len(), 1, "{f:?}");
        let want = "lane \"money\", match: no order can reach it: every order it matches is taken by lanes \"eur\" and \"usd\" above";
        assert!(f[0].contains(want), "{f:?}");
    }

    #[test]
    fn keys_without_effect() {
        // refuse_po_box on a lane that checks no address.
        let src = SHIPPED.replacen(
            "check = false\nrefuse_po_box = false",
            "check = false\nrefuse_po_box = true",
            1,
        );
        assert_eq!(
            findings(&src),
            vec![(LintKind::NoEffect, "pos".into(), Some(line_of(&src, "refuse_po_box = true", 1)))]
        );
        let src = SHIPPED.replacen(
            "check = false\nrefuse_po_box = false",
            "check = false\nallowed_countries = [\"US\"]\nrefuse_po_box = false",
            1,
        );
        assert_eq!(
            findings(&src),
            vec![(LintKind::NoEffect, "pos".into(), Some(line_of(&src, "allowed_countries = [\"US\"]", 1)))]
        );
        // A country list the match already ensures.
        let src = SHIPPED.replacen(
            "[lanes.address] # the match already limits the lane to these countries\nrefuse_po_box = true",
            "[lanes.address]\nallowed_countries = [\"FR\", \"DE\", \"AT\", \"BE\", \"ES\", \"FI\", \"IE\", \"IT\", \"LU\", \"NL\", \"PT\", \"CH\"]\nrefuse_po_box = true",
            1,
        );
        assert_ne!(src, SHIPPED);
        assert_eq!(
            findings(&src),
            vec![(LintKind::NoEffect, "eu".into(), Some(line_of(&src, "\"CH\"]", 1)))]
        );
        // A fraud limit above every total the lane matches.
        let src = SHIPPED.replacen(
            "tags_any = [\"wholesale\"]",
            "tags_any = [\"wholesale\"]\nmax_total_cents = 5000000",
            1,
        );
        assert_eq!(
            findings(&src),
            vec![(
                LintKind::NoEffect,
                "wholesale".into(),
                Some(line_of(&src, "max_total_cents = 5000000 #", 1))
            )]
        );
        // wins_over a lane it never meets.
        let src = SHIPPED.replacen(
            "tags_any = [\"wholesale\"]",
            "tags_any = [\"wholesale\"]\ncurrency = [\"USD\"]",
            1,
        );
        assert_eq!(
            findings(&src),
            vec![(LintKind::NoEffect, "wholesale".into(), Some(line_of(&src, "wins_over = [\"eu\"]", 1)))]
        );
    }

    #[test]
    fn default_written_before_other_lanes() {
        let at = SHIPPED.find("# Everything else").unwrap();
        let pos_at = SHIPPED.find("# Counter sales").unwrap();
        let src = format!("{}{}{}", &SHIPPED[..pos_at], &SHIPPED[at..], &SHIPPED[pos_at..at]);
        let f = findings(&src);
        assert_eq!(
            f,
            vec![(LintKind::DefaultNotLast, "default".into(), Some(line_of(&src, "name = \"default\"", 1)))]
        );
    }
}
