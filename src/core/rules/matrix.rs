//! The route matrix: its schema, its semantic validation, and how a validation error is
//! pinned to a line of `rules/matrix.toml`.
//!
//! This file is also compiled into `build.rs`, which validates the shipped matrix at build
//! time, so it depends only on serde, sha2, `super::countries` and `super::super::types`.
//! Loading (`Matrix::builtin`, `Matrix::from_toml_str`) and lane selection live in
//! `rules/mod.rs`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::super::types::Mode;
use super::countries::is_iso_alpha2;

/// The name of the lane every unmatched order falls into. Required.
pub const DEFAULT_LANE: &str = "default";

/// The whole matrix: lanes in match order (first match wins; `default` catches the rest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    pub lanes: Vec<Lane>,
    /// First 12 hex characters of the SHA-256 of the TOML source. Not part of the file.
    #[serde(skip)]
    pub rules_version: String,
}

/// A lane's exception SLA when the matrix gives none: 4 hours.
pub const DEFAULT_SLA_MINUTES: u32 = 240;
/// The longest SLA accepted: 30 days.
pub const MAX_SLA_MINUTES: u32 = 60 * 24 * 30;

fn default_sla_minutes() -> u32 {
    DEFAULT_SLA_MINUTES
}

/// One segment of orders and the policy its orders are routed by. Its `name` is the
/// segment in KV (`segment:<name>:mode`) and in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lane {
    pub name: String,
    /// Mode used when KV holds no flag for this segment. Ship new lanes as `manual`.
    pub default_mode: Mode,
    /// Backlog size above which a later gate may flip the segment to manual.
    pub backlog_threshold: u32,
    /// Minutes an order may wait in the exception queue (`hold`, `fraud-check`) before the
    /// lane's SLA alert fires. Optional; [`DEFAULT_SLA_MINUTES`] when absent.
    #[serde(default = "default_sla_minutes")]
    pub sla_minutes: u32,
    /// Conditions an order must meet (all of them) to fall into this lane.
    #[serde(rename = "match", default)]
    pub matches: LaneMatch,
    pub payment: PaymentPolicy,
    pub address: AddressPolicy,
    pub inventory: InventoryPolicy,
    pub fraud: FraudPolicy,
    /// Lanes listed below this one that an order can also match, and that this lane is meant
    /// to take such orders from (the linter reports an overlap nobody declared).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wins_over: Vec<String>,
}

/// Lane conditions. Every list is "any of"; an empty list or absent bound does not constrain.
/// All present conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneMatch {
    /// Shop domains (`x.myshopify.com`), compared case-insensitively.
    #[serde(default)]
    pub shop: Vec<String>,
    /// Shopify `source_name` values (`web`, `pos`, `shopify_draft_order`, ...), case-insensitive.
    #[serde(default)]
    pub source_name: Vec<String>,
    /// Shipping address country codes; an order with no shipping address never matches.
    #[serde(default)]
    pub shipping_country: Vec<String>,
    /// The order carries at least one of these tags (case-insensitive).
    #[serde(default)]
    pub tags_any: Vec<String>,
    /// Order currency codes.
    #[serde(default)]
    pub currency: Vec<String>,
    /// Inclusive bounds on the order total, in minor units of its currency.
    #[serde(default)]
    pub min_total_cents: Option<i64>,
    #[serde(default)]
    pub max_total_cents: Option<i64>,
}

impl LaneMatch {
    pub fn is_empty(&self) -> bool {
        *self == LaneMatch::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentPolicy {
    /// How long after `created_at` a `pending` (or uncaptured `authorized`) order may wait
    /// in `new` before it is held for payment.
    pub pending_window_minutes: u32,
    /// Capture-later lanes: `authorized` counts as paid.
    pub pass_authorized: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressPolicy {
    /// Whether shipping-address rules run at all (off for counter sales).
    #[serde(default = "yes")]
    pub check: bool,
    /// Shipping countries this lane delivers to; empty means any.
    #[serde(default)]
    pub allowed_countries: Vec<String>,
    pub refuse_po_box: bool,
}

fn yes() -> bool {
    true
}

/// `pass` or `hold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Pass,
    Hold,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryPolicy {
    /// What to do with a SKU that has no stock row at all.
    pub unknown_sku: Policy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FraudPolicy {
    /// What a `medium` risk verdict does.
    pub medium: Policy,
    /// Wait in `fraud-check` for a verdict before releasing.
    pub require_verdict: bool,
    /// Minutes after `created_at` after which a missing verdict holds the order.
    pub verdict_timeout_minutes: u32,
    /// Totals above this (minor units) are held for fraud review.
    #[serde(default)]
    pub max_total_cents: Option<i64>,
    /// Hold when billing and shipping countries differ.
    pub country_mismatch: bool,
    #[serde(default)]
    pub email_velocity: Option<EmailVelocity>,
}

/// More than `max_orders` orders from one email within `window_minutes` is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailVelocity {
    pub max_orders: u32,
    pub window_minutes: u32,
}

/// A matrix that cannot be used, with where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixError {
    /// 1-based line in the TOML source, when known.
    pub line: Option<usize>,
    /// The lane concerned, if any.
    pub lane: Option<String>,
    /// Dotted key inside the lane (`fraud.medium`), if any.
    pub key: Option<String>,
    pub message: String,
    lane_index: Option<usize>,
}

impl MatrixError {
    pub fn new(message: impl Into<String>) -> Self {
        MatrixError { line: None, lane: None, key: None, message: message.into(), lane_index: None }
    }

    pub fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    fn in_lane(index: usize, lane: &Lane, key: &str, message: String) -> Self {
        MatrixError {
            line: None,
            lane: Some(lane.name.clone()),
            key: (!key.is_empty()).then(|| key.to_string()),
            message,
            lane_index: Some(index),
        }
    }

    /// Fills `line` by finding the lane (and key) in `source`.
    pub fn located(mut self, source: &str) -> Self {
        if self.line.is_none() {
            if let Some(i) = self.lane_index {
                self.line = find_line(source, i, self.key.as_deref().unwrap_or(""));
            }
        }
        self
    }
}

impl std::fmt::Display for MatrixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("route matrix")?;
        if let Some(l) = self.line {
            write!(f, " line {l}")?;
        }
        if let Some(lane) = &self.lane {
            write!(f, ", lane \"{lane}\"")?;
        }
        if let Some(k) = &self.key {
            write!(f, ", {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for MatrixError {}

/// 1-based line holding byte `offset` of `source`.
pub fn line_of_offset(source: &str, offset: usize) -> usize {
    source.as_bytes().iter().take(offset).filter(|b| **b == b'\n').count() + 1
}

/// First 12 hex characters of the SHA-256 of the matrix source bytes.
pub fn rules_version_of(source: &[u8]) -> String {
    Sha256::digest(source).iter().take(6).map(|b| format!("{b:02x}")).collect()
}

impl Matrix {
    /// Semantic checks the schema cannot express. Returns the first problem found, in file
    /// order, naming the lane and key; [`Matrix::validate_source`] adds the line. A second
    /// `default` lane is caught as a duplicate name.
    pub fn validate(&self) -> Result<(), MatrixError> {
        if !self.lanes.iter().any(|l| l.name == DEFAULT_LANE) {
            return Err(MatrixError::new("no lane named \"default\"; every matrix needs one"));
        }
        for (i, lane) in self.lanes.iter().enumerate() {
            let err = |key: &str, msg: String| Err(MatrixError::in_lane(i, lane, key, msg));
            let n = &lane.name;
            if n.is_empty()
                || n.len() > 40
                || !n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return err("name", "lane names are 1-40 characters of a-z, 0-9 and -".into());
            }
            if self.lanes[..i].iter().any(|o| &o.name == n) {
                return err("name", format!("lane \"{n}\" is defined twice"));
            }
            let m = &lane.matches;
            if n == DEFAULT_LANE && !m.is_empty() {
                return err(
                    "match",
                    "the default lane takes what no other lane matched; it has no match".into(),
                );
            }
            if n != DEFAULT_LANE && m.is_empty() {
                return err("match", "a lane other than default needs at least one match condition".into());
            }
            if let Some(j) = self.lanes[..i].iter().position(|o| o.name != DEFAULT_LANE && o.matches == *m) {
                let other = &self.lanes[j].name;
                return err("match", format!("same conditions as lane \"{other}\" above; never reached"));
            }
            for s in &m.shop {
                if s.is_empty() || s.to_ascii_lowercase() != *s || !s.ends_with(".myshopify.com") {
                    return err("match.shop", format!("\"{s}\" is not a lower-case *.myshopify.com domain"));
                }
            }
            if m.source_name.iter().any(|s| s.trim().is_empty()) {
                return err("match.source_name", "empty source_name".into());
            }
            if m.tags_any.iter().any(|t| t.trim().is_empty() || t.contains(',')) {
                return err("match.tags_any", "tags are non-empty and contain no commas".into());
            }
            for c in &m.shipping_country {
                if !is_iso_alpha2(c) {
                    return err(
                        "match.shipping_country",
                        format!("\"{c}\" is not an ISO 3166-1 alpha-2 code"),
                    );
                }
            }
            for c in &m.currency {
                if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                    return err(
                        "match.currency",
                        format!("\"{c}\" is not an ISO 4217 code (three capitals)"),
                    );
                }
            }
            if m.min_total_cents.is_some_and(|v| v < 0) || m.max_total_cents.is_some_and(|v| v < 0) {
                return err("match.min_total_cents", "totals are not negative".into());
            }
            if let (Some(lo), Some(hi)) = (m.min_total_cents, m.max_total_cents) {
                if lo > hi {
                    return err("match.max_total_cents", format!("max {hi} is below min {lo}"));
                }
            }
            if lane.payment.pending_window_minutes > 60 * 24 * 30 {
                return err("payment.pending_window_minutes", "longer than 30 days".into());
            }
            for c in &lane.address.allowed_countries {
                if !is_iso_alpha2(c) {
                    return err(
                        "address.allowed_countries",
                        format!("\"{c}\" is not an ISO 3166-1 alpha-2 code"),
                    );
                }
            }
            let f = &lane.fraud;
            if f.require_verdict && f.verdict_timeout_minutes == 0 {
                return err(
                    "fraud.verdict_timeout_minutes",
                    "must be at least 1 when require_verdict is on".into(),
                );
            }
            if f.max_total_cents.is_some_and(|v| v <= 0) {
                return err("fraud.max_total_cents", "must be positive (omit it for no limit)".into());
            }
            if let Some(v) = f.email_velocity {
                if v.max_orders == 0 {
                    return err("fraud.email_velocity.max_orders", "must be at least 1".into());
                }
                if v.window_minutes == 0 {
                    return err("fraud.email_velocity.window_minutes", "must be at least 1".into());
                }
            }
            if lane.backlog_threshold == 0 {
                return err("backlog_threshold", "must be at least 1".into());
            }
            if lane.sla_minutes == 0 || lane.sla_minutes > MAX_SLA_MINUTES {
                return err("sla_minutes", format!("must be between 1 and {MAX_SLA_MINUTES} (30 days)"));
            }
        }
        // Names are checked once every lane is known to be well formed.
        for (i, lane) in self.lanes.iter().enumerate() {
            let err = |key: &str, msg: String| Err(MatrixError::in_lane(i, lane, key, msg));
            for (k, other) in lane.wins_over.iter().enumerate() {
                let pos = self.lanes.iter().position(|o| &o.name == other);
                if other == DEFAULT_LANE || pos.is_some_and(|p| p <= i) {
                    return err(
                        "wins_over",
                        format!("\"{other}\" is not a lane listed below this one (default never competes)"),
                    );
                }
                if pos.is_none() {
                    return err("wins_over", format!("no lane named \"{other}\""));
                }
                if lane.wins_over[..k].contains(other) {
                    return err("wins_over", format!("\"{other}\" is named twice"));
                }
            }
        }
        Ok(())
    }

    /// [`Matrix::validate`], with the error pinned to its line in `source`.
    pub fn validate_source(&self, source: &str) -> Result<(), MatrixError> {
        self.validate().map_err(|e| e.located(source))
    }
}

/// 1-based line of `key` (dotted, relative to the lane) inside the `lane_index`-th
/// `[[lanes]]` block, falling back to the sub-table header and then the lane header.
pub fn find_line(source: &str, lane_index: usize, key: &str) -> Option<usize> {
    let mut lane_seen: Option<usize> = None;
    let mut lane_header = None;
    let mut section = String::new();
    let mut best: Option<(u8, usize)> = None; // (quality, line); higher quality wins
    for (n, raw) in source.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.starts_with("[[") {
            let next = lane_seen.map_or(0, |s| s + 1);
            if line.trim_start_matches('[').trim_end_matches(']').trim() == "lanes" {
                lane_seen = Some(next);
                if next == lane_index {
                    lane_header = Some(n + 1);
                }
                section.clear();
            }
            continue;
        }
        if lane_seen != Some(lane_index) {
            continue;
        }
        if line.starts_with('[') {
            let inner = line.trim_start_matches('[').trim_end_matches(']').trim();
            section = inner.strip_prefix("lanes.").unwrap_or(inner).trim().to_string();
            if !key.is_empty() && (key == section || key.starts_with(&format!("{section}."))) {
                best = best.max(Some((1, n + 1)));
            }
            continue;
        }
        let Some((k, _)) = line.split_once('=') else { continue };
        let k: String = k.split('.').map(|p| p.trim().trim_matches('"')).collect::<Vec<_>>().join(".");
        let full = if section.is_empty() { k } else { format!("{section}.{k}") };
        if key.is_empty() {
            continue;
        }
        if full == key {
            best = best.max(Some((3, n + 1)));
        } else if key.starts_with(&format!("{full}.")) {
            best = best.max(Some((2, n + 1)));
        }
    }
    best.map(|(_, l)| l).or(lane_header)
}
