//! The route matrix and the rule families that read it.
//!
//! - `matrix.rs`: the schema of `rules/matrix.toml` and its semantic validation (shared with
//!   `build.rs`, which validates the shipped file at build time).
//! - `countries.rs`: ISO 3166-1 codes and postcode formats.
//! - one file per exception family: `payment`, `address`, `fraud`, `inventory`. Each exposes
//!   `evaluate(..) -> Vec<RuleHit>`: every rule that fired, with its effect. A rule that
//!   passes does not appear. Combining hits into a state is `routing::decide`'s job.
//! - native tools only (not in the Worker): `cases` (the `[[tests]]` of `rules/tests.toml`,
//!   also run by `build.rs`), `lint` (the matrix linter), `replay` (a corpus under two
//!   matrices, and its gate), `intake` (which payload fields each rule reads).
//!
//! Rule ids are stable: they are written to the audit log and named in runbooks. The full
//! list is [`RULE_IDS`].

pub mod address;
#[cfg(not(target_arch = "wasm32"))]
pub mod cases;
pub mod countries;
pub mod fraud;
#[cfg(not(target_arch = "wasm32"))]
pub mod intake;
pub mod inventory;
#[cfg(not(target_arch = "wasm32"))]
pub mod lint;
pub mod matrix;
pub mod payment;
#[cfg(not(target_arch = "wasm32"))]
pub mod replay;

use std::sync::OnceLock;

use serde::Serialize;

pub use matrix::{
    AddressPolicy, EmailVelocity, FraudPolicy, InventoryPolicy, Lane, LaneMatch, Matrix, MatrixError,
    PaymentPolicy, Policy, DEFAULT_LANE,
};

use super::order::Order;
use super::types::{Mode, Reason, State};

// `build.rs` compiles this module too (to run the rule cases) before it has produced the
// JSON; it sets `orderlane_built` for the crate proper only.

/// The shipped matrix as JSON, produced from `rules/matrix.toml` by `build.rs`.
#[cfg(orderlane_built)]
const BUILTIN_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/matrix.json"));

/// Version of the shipped matrix: first 12 hex chars of the SHA-256 of `rules/matrix.toml`.
#[cfg(orderlane_built)]
pub const RULES_VERSION: &str = include_str!(concat!(env!("OUT_DIR"), "/rules_version.txt"));

/// Every rule id a decision can name.
pub const RULE_IDS: &[&str] = &[
    "order.cancelled",
    "mode.manual",
    "mode.shadow",
    payment::PENDING_WINDOW,
    payment::WINDOW_EXPIRED,
    payment::AWAITING_CAPTURE,
    payment::FAILED_STATUS,
    payment::UNKNOWN_STATUS,
    address::MISSING,
    address::INCOMPLETE,
    address::COUNTRY_INVALID,
    address::POSTCODE_FORMAT,
    address::PO_BOX,
    address::COUNTRY_NOT_ALLOWED,
    fraud::HIGH_RISK,
    fraud::MEDIUM_RISK,
    fraud::AWAITING_VERDICT,
    fraud::VERDICT_TIMEOUT,
    fraud::TOTAL_OVER_LIMIT,
    fraud::COUNTRY_MISMATCH,
    fraud::EMAIL_VELOCITY,
    inventory::SHORT,
    inventory::UNKNOWN_SKU,
    inventory::SKU_MISSING,
    "route.nothing_to_ship",
];

/// What a fired rule does to the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "effect", content = "value", rename_all = "snake_case")]
pub enum Effect {
    /// An exception: `hold` with this reason.
    Hold(Reason),
    /// Not yet: wait in this state (`new` for payment, `fraud-check` for a verdict).
    Wait(State),
    /// Recorded for the reader; changes nothing.
    Note,
}

/// One rule that fired. `explanation` is one line for an operator and never contains
/// customer personal data (names, emails, phones, addresses, postcodes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleHit {
    pub id: &'static str,
    #[serde(flatten)]
    pub effect: Effect,
    pub explanation: String,
}

impl RuleHit {
    pub fn new(id: &'static str, effect: Effect, explanation: impl Into<String>) -> Self {
        RuleHit { id, effect, explanation: explanation.into() }
    }
}

impl Matrix {
    /// The shipped matrix (validated at build time), stamped with [`RULES_VERSION`].
    /// Fails only if the generated JSON and this crate's schema disagree.
    #[cfg(orderlane_built)]
    pub fn builtin() -> Result<Matrix, MatrixError> {
        let mut m: Matrix = serde_json::from_str(BUILTIN_JSON)
            .map_err(|e| MatrixError::new(format!("built-in matrix JSON: {e}")))?;
        m.validate()?;
        m.rules_version = RULES_VERSION.to_string();
        Ok(m)
    }

    /// Parses and validates a matrix from TOML source (native tools and tests). Syntax,
    /// type and semantic errors all carry the 1-based line they concern.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_toml_str(source: &str) -> Result<Matrix, MatrixError> {
        let mut m: Matrix = toml::from_str(source).map_err(|e| {
            let err = MatrixError::new(e.message().trim().to_string());
            match e.span() {
                Some(s) => err.at_line(matrix::line_of_offset(source, s.start)),
                None => err,
            }
        })?;
        m.validate_source(source)?;
        m.rules_version = matrix::rules_version_of(source.as_bytes());
        Ok(m)
    }

    /// The lane named `name`.
    pub fn lane(&self, name: &str) -> Option<&Lane> {
        self.lanes.iter().find(|l| l.name == name)
    }

    /// The lane `order` from `shop` routes through: the first non-default lane whose
    /// conditions all hold, else `default`. Total: a matrix that skipped validation and
    /// has no `default` yields a built-in lane that holds everything for a person.
    pub fn lane_for(&self, shop: &str, order: &Order) -> &Lane {
        self.lanes
            .iter()
            .find(|l| l.name != DEFAULT_LANE && lane_matches(&l.matches, shop, order))
            .or_else(|| self.lane(DEFAULT_LANE))
            .unwrap_or_else(|| fallback_lane())
    }
}

fn lane_matches(m: &LaneMatch, shop: &str, order: &Order) -> bool {
    let any_ci = |list: &[String], v: Option<&str>| {
        list.is_empty() || v.is_some_and(|v| list.iter().any(|x| x.eq_ignore_ascii_case(v.trim())))
    };
    !m.is_empty()
        && any_ci(&m.shop, Some(shop))
        && any_ci(&m.source_name, order.source_name.as_deref())
        && any_ci(&m.shipping_country, order.shipping_country())
        && any_ci(&m.currency, order.currency.as_deref())
        && (m.tags_any.is_empty() || m.tags_any.iter().any(|t| order.has_tag(t)))
        && m.min_total_cents.is_none_or(|lo| order.total_price_cents >= lo)
        && m.max_total_cents.is_none_or(|hi| order.total_price_cents <= hi)
}

/// The strictest lane: manual mode, nothing passes unknown.
fn fallback_lane() -> &'static Lane {
    static LANE: OnceLock<Lane> = OnceLock::new();
    LANE.get_or_init(|| Lane {
        name: DEFAULT_LANE.to_string(),
        default_mode: Mode::Manual,
        backlog_threshold: 1,
        sla_minutes: matrix::DEFAULT_SLA_MINUTES,
        matches: LaneMatch::default(),
        payment: PaymentPolicy { pending_window_minutes: 0, pass_authorized: false },
        address: AddressPolicy { check: true, allowed_countries: Vec::new(), refuse_po_box: true },
        inventory: InventoryPolicy { unknown_sku: Policy::Hold },
        fraud: FraudPolicy {
            medium: Policy::Hold,
            require_verdict: true,
            verdict_timeout_minutes: 60,
            max_total_cents: None,
            country_mismatch: true,
            email_velocity: None,
        },
        wins_over: Vec::new(),
    })
}

/// `minutes` as milliseconds.
pub(crate) fn minutes_ms(minutes: u32) -> i64 {
    i64::from(minutes) * 60_000
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::order::order_from_value;
    use crate::core::order::tests::fixture_with;

    pub(crate) const SHIPPED: &str = include_str!("../../../rules/matrix.toml");

    pub(crate) fn shipped() -> Matrix {
        Matrix::from_toml_str(SHIPPED).unwrap()
    }

    #[test]
    fn shipped_matrix_validates_and_builtin_is_the_same() {
        let toml = shipped();
        let built = Matrix::builtin().unwrap();
        assert_eq!(toml, built, "build.rs JSON and the TOML agree");
        assert_eq!(RULES_VERSION.len(), 12);
        assert!(RULES_VERSION.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(built.rules_version, matrix::rules_version_of(SHIPPED.as_bytes()));
        let names: Vec<_> = built.lanes.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["pos", "wholesale", "eu", "default"]);
        assert!(built.lanes.iter().all(|l| l.default_mode == Mode::Manual), "new lanes ship manual");
        // Changing one byte changes the version.
        assert_ne!(matrix::rules_version_of(format!("{SHIPPED} ").as_bytes()), RULES_VERSION);
    }

    /// 1-based line of the `nth` (1-based) non-comment line containing `needle`.
    fn line_of(src: &str, needle: &str, nth: usize) -> usize {
        let mut hits =
            src.lines().enumerate().filter(|(_, l)| !l.trim_start().starts_with('#') && l.contains(needle));
        hits.nth(nth - 1).unwrap().0 + 1
    }

    #[test]
    fn broken_matrices_fail_naming_the_line() {
        // (text replaced once in the shipped file, replacement, the offending line's text and
        // which occurrence of it, words the message must contain)
        let cases: &[(&str, &str, &str, usize, &str)] = &[
            ("medium = \"hold\"\nrequire_verdict = true", "medium = \"maybe\"\nrequire_verdict = true", "medium = \"maybe\"", 1, "unknown variant"),
            ("allowed_countries = [\"US\", \"CA\"]", "allowed_countries = [\"US\", \"UK\"]", "\"UK\"]", 1, "\"UK\" is not an ISO 3166-1"),
            ("name = \"eu\"", "name = \"wholesale\"", "name = \"wholesale\"", 2, "defined twice"),
            ("tags_any = [\"wholesale\"]", "tags_any = []", "[lanes.match]", 2, "at least one match"),
            ("source_name = [\"pos\"]", "currency = [\"EUR\"]\nshipping_country = [\"AT\", \"BE\", \"DE\", \"ES\", \"FI\", \"FR\", \"IE\", \"IT\", \"LU\", \"NL\", \"PT\"]", "[lanes.match]", 3, "same conditions as lane \"pos\""),
            ("max_total_cents = 250000", "max_total_cents = 0", "max_total_cents = 0", 1, "must be positive"),
            ("max_orders = 5,", "max_orders = 0,", "max_orders = 0", 1, "at least 1"),
            ("verdict_timeout_minutes = 120", "verdict_timeout_minutes = 0", "verdict_timeout_minutes = 0", 1, "at least 1"),
            ("backlog_threshold = 200", "backlog_threshold = 0", "backlog_threshold = 0", 1, "at least 1"),
            ("sla_minutes = 240", "sla_minutes = 0", "sla_minutes = 0", 1, "between 1 and 43200"),
            ("sla_minutes = 240", "sla_minutes = 50000", "sla_minutes = 50000", 1, "between 1 and 43200"),
            ("sla_minutes = 240", "sla_minutes = -1", "sla_minutes = -1", 1, ""),
            ("currency = [\"EUR\"]", "currency = [\"euro\"]", "currency = [\"euro\"]", 1, "ISO 4217"),
            ("pending_window_minutes = 1440", "pending_window_minutes = -5", "pending_window_minutes = -5", 1, ""),
            ("refuse_po_box = true", "refuse_po_box = true\nrefuse_po_box = true", "refuse_po_box = true", 2, "duplicate"),
            ("require_verdict = false\nverdict_timeout_minutes = 60", "require_verdit = false\nverdict_timeout_minutes = 60", "require_verdit", 1, "unknown field"),
            ("backlog_threshold = 300", "backlog_threshold = 300\n[lanes.match]\ncurrency = [\"USD\"]", "[lanes.match]", 4, "has no match"),
            ("wins_over = [\"eu\"]", "wins_over = [\"pos\"]", "wins_over = [\"pos\"]", 1, "not a lane listed below"),
            ("wins_over = [\"eu\"]", "wins_over = [\"default\"]", "wins_over = [\"default\"]", 1, "default never competes"),
            ("wins_over = [\"eu\"]", "wins_over = [\"emea\"]", "wins_over = [\"emea\"]", 1, "no lane named \"emea\""),
            ("wins_over = [\"eu\"]", "wins_over = [\"eu\", \"eu\"]", "wins_over = [\"eu\", \"eu\"]", 1, "named twice"),
        ];
        for (from, to, needle, nth, words) in cases {
            assert!(SHIPPED.contains(from), "fixture edit {from:?} no longer applies");
            let src = SHIPPED.replacen(from, to, 1);
            let err = Matrix::from_toml_str(&src).unwrap_err();
            let want = line_of(&src, needle, *nth);
            assert_eq!(err.line, Some(want), "{to:?}: {err}");
            assert!(err.to_string().contains(&format!("line {want}")), "{err}");
            assert!(err.to_string().contains(words), "{err}");
        }
        // A syntax error, with the toml parser's own line.
        let err = Matrix::from_toml_str("[[lanes]]\nname = \"default\nx = 1\n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        // No default lane: the whole file is wrong, there is no line to point at.
        let no_default = SHIPPED.replace("name = \"default\"", "name = \"rest\"");
        let err = Matrix::from_toml_str(&no_default).unwrap_err();
        assert!(err.message.contains("no lane named \"default\""), "{err}");
    }

    #[test]
    fn lanes_match_first_wins_else_default() {
        let m = shipped();
        let lane = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
            let v = fixture_with(|o| f(o));
            m.lane_for("demo.myshopify.com", &order_from_value(&v).unwrap()).name.clone()
        };
        assert_eq!(lane(&|_| {}), "default");
        assert_eq!(lane(&|o| drop(o.insert("source_name".into(), "POS".into()))), "pos");
        assert_eq!(lane(&|o| drop(o.insert("tags".into(), " WholeSale , vip".into()))), "wholesale");
        // POS wins over wholesale because it is listed first.
        assert_eq!(
            lane(&|o| {
                o.insert("source_name".into(), "pos".into());
                o.insert("tags".into(), "wholesale".into());
            }),
            "pos"
        );
        let eu = |o: &mut serde_json::Map<String, serde_json::Value>| {
            o.insert("currency".into(), "EUR".into());
            o["shipping_address"]["country_code"] = "FR".into();
        };
        assert_eq!(lane(&eu), "eu");
        // All conditions must hold: EUR shipped to the US is not the EU lane.
        assert_eq!(lane(&|o| drop(o.insert("currency".into(), "EUR".into()))), "default");
        // No shipping address never matches a country condition.
        assert_eq!(
            lane(&|o| {
                eu(o);
                o.remove("shipping_address");
            }),
            "default"
        );
    }

    #[test]
    fn lane_bounds_and_shop_conditions() {
        let src = SHIPPED.replacen(
            "[lanes.match]\nsource_name = [\"pos\"]",
            "[lanes.match]\nshop = [\"big.myshopify.com\"]\nmin_total_cents = 10000\nmax_total_cents = 40495",
            1,
        );
        let m = Matrix::from_toml_str(&src).unwrap();
        let order = order_from_value(&fixture_with(|_| {})).unwrap();
        assert_eq!(m.lane_for("BIG.myshopify.com", &order).name, "pos");
        assert_eq!(m.lane_for("small.myshopify.com", &order).name, "default");
        let over = order_from_value(&fixture_with(|o| drop(o.insert("total_price".into(), "404.96".into()))))
            .unwrap();
        assert_eq!(m.lane_for("big.myshopify.com", &over).name, "default");
    }

    #[test]
    fn unvalidated_matrix_without_default_still_routes_strictly() {
        let m = Matrix { lanes: Vec::new(), rules_version: String::new() };
        let order = order_from_value(&fixture_with(|_| {})).unwrap();
        let lane = m.lane_for("x.myshopify.com", &order);
        assert_eq!((lane.name.as_str(), lane.default_mode), ("default", Mode::Manual));
    }
}
