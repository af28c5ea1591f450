//! The intake map: each Shopify topic orderlane acts on, the payload fields it reads (from the
//! payload model's own key lists, the lists its parser projects the body through), and which
//! rule families and rule ids read each field, with the lanes of the matrix whose match reads
//! it. `explain intake` prints it; the README's intake table is that output (a test compares).

use super::{address, fraud, inventory, payment, Matrix};
use crate::core::order::{ORDER_KEYS, ORDER_NESTED, RISK_KEYS};
use crate::core::privacy::{DATA_REQUEST_KEYS, REDACT_KEYS};
use crate::core::routing::{RULE_CANCELLED, RULE_NOTHING_TO_SHIP};

/// The topics whose body is an order.
pub const ORDER_TOPICS: &[&str] = &[
    "orders/create",
    "orders/updated",
    "orders/paid",
    "orders/cancelled",
    "orders/fulfilled",
    "orders/partially_fulfilled",
];

const PAYMENT: &[&str] = &[
    payment::PENDING_WINDOW,
    payment::WINDOW_EXPIRED,
    payment::AWAITING_CAPTURE,
    payment::FAILED_STATUS,
    payment::UNKNOWN_STATUS,
];
/// Whether any line still ships decides whether address rules run at all.
const LINES_TO_SHIP: &[&str] = &[
    RULE_NOTHING_TO_SHIP,
    address::MISSING,
    inventory::SHORT,
    inventory::UNKNOWN_SKU,
    inventory::SKU_MISSING,
];
const VELOCITY: &[&str] = &[fraud::EMAIL_VELOCITY];
const INCOMPLETE: &[&str] = &[address::INCOMPLETE];
const NONE: &[&str] = &[];

/// (field, the rule ids that read it, what else reads it).
type Reader = (&'static str, &'static [&'static str], &'static str);

/// Who reads each order field besides the lane match: (field, rule ids, other use).
/// A field no rule reads says what it is read for instead.
const ORDER_READERS: &[Reader] = &[
    ("id", NONE, "order identity"),
    ("name", NONE, "shown to operators, warehouse document"),
    ("email", VELOCITY, "counted as a keyed hash"),
    ("contact_email", VELOCITY, "when email is blank"),
    ("customer.id", NONE, "privacy requests find the customer's orders and bodies"),
    ("customer.email", VELOCITY, "when email and contact_email are blank"),
    ("financial_status", PAYMENT, ""),
    ("fulfillment_status", NONE, "fulfilled and partially fulfilled events"),
    ("source_name", NONE, ""),
    ("currency", NONE, ""),
    ("total_price", &[fraud::TOTAL_OVER_LIMIT], ""),
    ("tags", NONE, ""),
    ("shipping_address", &[address::MISSING], ""),
    ("shipping_address.name", INCOMPLETE, "warehouse document"),
    ("shipping_address.first_name", INCOMPLETE, "warehouse document"),
    ("shipping_address.last_name", INCOMPLETE, "warehouse document"),
    ("shipping_address.address1", &[address::INCOMPLETE, address::PO_BOX], "warehouse document"),
    ("shipping_address.address2", &[address::PO_BOX], "warehouse document"),
    ("shipping_address.city", INCOMPLETE, "warehouse document"),
    ("shipping_address.zip", &[address::POSTCODE_FORMAT], "warehouse document"),
    ("shipping_address.province_code", NONE, "warehouse document"),
    (
        "shipping_address.country_code",
        &[
            address::COUNTRY_INVALID,
            address::POSTCODE_FORMAT,
            address::COUNTRY_NOT_ALLOWED,
            fraud::COUNTRY_MISMATCH,
        ],
        "warehouse document",
    ),
    ("billing_address.name", NONE, "parsed with the address model; unused"),
    ("billing_address.first_name", NONE, "parsed with the address model; unused"),
    ("billing_address.last_name", NONE, "parsed with the address model; unused"),
    ("billing_address.address1", NONE, "parsed with the address model; unused"),
    ("billing_address.address2", NONE, "parsed with the address model; unused"),
    ("billing_address.city", NONE, "parsed with the address model; unused"),
    ("billing_address.zip", NONE, "parsed with the address model; unused"),
    ("billing_address.province_code", NONE, "parsed with the address model; unused"),
    ("billing_address.country_code", &[fraud::COUNTRY_MISMATCH], ""),
    ("line_items[].id", NONE, "warehouse document"),
    (
        "line_items[].sku",
        &[inventory::SKU_MISSING, inventory::SHORT, inventory::UNKNOWN_SKU],
        "stock reservations",
    ),
    ("line_items[].quantity", LINES_TO_SHIP, "when fulfillable_quantity is absent"),
    ("line_items[].fulfillable_quantity", LINES_TO_SHIP, "units still to send"),
    ("line_items[].requires_shipping", LINES_TO_SHIP, ""),
    ("line_items[].title", NONE, "warehouse document"),
    ("shipping_lines[].title", NONE, "warehouse document"),
    ("shipping_lines[].code", NONE, "warehouse document"),
    (
        "created_at",
        &[
            payment::PENDING_WINDOW,
            payment::WINDOW_EXPIRED,
            payment::AWAITING_CAPTURE,
            fraud::AWAITING_VERDICT,
            fraud::VERDICT_TIMEOUT,
            fraud::EMAIL_VELOCITY,
        ],
        "windows count from it",
    ),
    ("updated_at", NONE, "orders deliveries of one order"),
    ("cancelled_at", &[RULE_CANCELLED], ""),
];

const RISK_READERS: &[Reader] = &[
    ("order_id", NONE, "the order it judges"),
    ("admin_graphql_api_order_id", NONE, "the order, when order_id is absent"),
    (
        "risk_level",
        &[fraud::HIGH_RISK, fraud::MEDIUM_RISK, fraud::AWAITING_VERDICT, fraud::VERDICT_TIMEOUT],
        "",
    ),
    ("created_at", NONE, "orders verdicts of one order"),
];

/// One field of one group of topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldUse {
    pub field: String,
    /// `fraud`, `payment`, ... and `lanes` when a lane's match reads it.
    pub families: Vec<String>,
    pub rule_ids: Vec<&'static str>,
    /// Lanes of the matrix whose match reads it.
    pub lanes: Vec<String>,
    pub other: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicGroup {
    pub topics: Vec<&'static str>,
    pub fields: Vec<FieldUse>,
}

/// Every field path the order model reads: top-level keys, and `parent.key` inside the
/// objects it descends into (`line_items[].sku`).
pub fn order_fields() -> Vec<String> {
    let mut out = Vec::new();
    for k in ORDER_KEYS {
        let nested = ORDER_NESTED.iter().find(|(p, _)| p.trim_end_matches("[]") == *k);
        match nested {
            Some((p, keys)) => {
                if ORDER_READERS.iter().any(|(f, _, _)| f == k) {
                    out.push(k.to_string());
                }
                out.extend(keys.iter().map(|s| format!("{p}.{s}")));
            }
            None => out.push(k.to_string()),
        }
    }
    out
}

fn lanes_reading(m: &Matrix, field: &str) -> Vec<String> {
    m.lanes
        .iter()
        .filter(|l| {
            let x = &l.matches;
            match field {
                "source_name" => !x.source_name.is_empty(),
                "currency" => !x.currency.is_empty(),
                "tags" => !x.tags_any.is_empty(),
                "total_price" => x.min_total_cents.is_some() || x.max_total_cents.is_some(),
                "shipping_address.country_code" => !x.shipping_country.is_empty(),
                _ => false,
            }
        })
        .map(|l| l.name.clone())
        .collect()
}

fn use_of(m: Option<&Matrix>, field: String, readers: &[Reader]) -> FieldUse {
    let (ids, other) = readers
        .iter()
        .find(|(f, _, _)| *f == field)
        .map_or((NONE, "not described"), |(_, ids, other)| (*ids, *other));
    let lanes = m.map_or_else(Vec::new, |m| lanes_reading(m, &field));
    let mut families: Vec<String> = Vec::new();
    if !lanes.is_empty() {
        families.push("lanes".into());
    }
    for id in ids {
        let fam = match id.split('.').next().unwrap_or("") {
            "order" | "route" => "routing",
            f => f,
        };
        if !families.iter().any(|x| x == fam) {
            families.push(fam.to_string());
        }
    }
    FieldUse { field, families, rule_ids: ids.to_vec(), lanes, other }
}

/// The intake map for matrix `m`.
pub fn intake(m: &Matrix) -> Vec<TopicGroup> {
    let keys = |list: &[&str], readers| list.iter().map(|k| use_of(None, k.to_string(), readers)).collect();
    vec![
        TopicGroup {
            topics: ORDER_TOPICS.to_vec(),
            fields: order_fields().into_iter().map(|f| use_of(Some(m), f, ORDER_READERS)).collect(),
        },
        TopicGroup { topics: vec!["orders/risk_assessment_changed"], fields: keys(RISK_KEYS, RISK_READERS) },
        TopicGroup { topics: vec!["customers/data_request"], fields: keys(DATA_REQUEST_KEYS, &[]) },
        TopicGroup { topics: vec!["customers/redact"], fields: keys(REDACT_KEYS, &[]) },
        TopicGroup { topics: vec!["shop/redact"], fields: Vec::new() },
        TopicGroup {
            topics: vec!["fulfillment_orders/placed_on_hold", "fulfillment_orders/hold_released"],
            fields: keys(crate::core::shopify::HOLD_EVENT_KEYS, &[]),
        },
    ]
}

/// The map as the README's markdown table.
pub fn markdown(m: &Matrix) -> String {
    let code = |s: &str| format!("`{s}`");
    let mut out = String::from(
        "| topics | field | rule families | rule ids and lanes | also read for |\n|---|---|---|---|---|\n",
    );
    for g in intake(m) {
        let topics = g.topics.iter().map(|t| code(t)).collect::<Vec<_>>().join(", ");
        if g.fields.is_empty() {
            out +=
                &format!("| {topics} | (none: the shop header alone) | - | - | erases the shop's data |\n");
        }
        for (i, f) in g.fields.iter().enumerate() {
            let first = if i == 0 { topics.as_str() } else { "" };
            let mut readers: Vec<String> = f.rule_ids.iter().map(|r| code(r)).collect();
            if !f.lanes.is_empty() {
                readers.push(format!(
                    "match of lane {}",
                    f.lanes.iter().map(|l| code(l)).collect::<Vec<_>>().join(", ")
                ));
            }
            let fams = if f.families.is_empty() { "-".to_string() } else { f.families.join(", ") };
            let readers = if readers.is_empty() { "-".to_string() } else { readers.join(", ") };
            let privacy = g.topics.iter().any(|t| t.starts_with("customers/") || t.starts_with("shop/"));
            let holds = g.topics.iter().any(|t| t.starts_with("fulfillment_orders/"));
            let other = if privacy {
                "privacy request"
            } else if holds {
                "holds placed or released in Shopify"
            } else if f.other.is_empty() {
                "-"
            } else {
                f.other
            };
            out += &format!("| {first} | {} | {fams} | {readers} | {other} |\n", code(&f.field));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::tests::shipped;
    use crate::core::rules::RULE_IDS;

    #[test]
    fn every_field_read_is_described_and_every_rule_reads_a_field() {
        let fields = order_fields();
        for f in &fields {
            assert!(
                ORDER_READERS.iter().any(|(r, _, _)| r == f),
                "order field {f} has no entry in ORDER_READERS"
            );
        }
        for (r, _, _) in ORDER_READERS {
            assert!(
                fields.iter().any(|f| f == r),
                "ORDER_READERS names {r}, which the order model does not read"
            );
        }
        let risk: Vec<&str> = RISK_READERS.iter().map(|(f, _, _)| *f).collect();
        assert_eq!(risk, RISK_KEYS);
        for id in RULE_IDS.iter().filter(|id| !id.starts_with("mode.")) {
            let read = ORDER_READERS.iter().chain(RISK_READERS).any(|(_, ids, _)| ids.contains(id));
            assert!(read, "rule {id} reads no payload field in the map");
        }
    }

    #[test]
    fn the_readme_intake_table_is_the_generated_map() {
        let readme = include_str!("../../../README.md");
        let begin = "<!-- intake:begin (generated by `explain intake`; a test compares) -->\n";
        let end = "<!-- intake:end -->";
        let from = readme.find(begin).expect("README has the intake markers") + begin.len();
        let to = readme[from..].find(end).expect("README has the intake end marker") + from;
        let want = markdown(&shipped());
        assert!(
            readme[from..to] == want,
            "the README intake table differs from `cargo run --bin explain -- intake`; paste its output between the markers:\n{want}"
        );
    }

    #[test]
    fn lanes_reading_a_field_come_from_the_matrix() {
        let m = shipped();
        let g = &intake(&m)[0];
        let get = |f: &str| g.fields.iter().find(|x| x.field == f).unwrap().clone();
        assert_eq!(get("tags").lanes, vec!["wholesale"]);
        assert_eq!(get("source_name").lanes, vec!["pos"]);
        assert_eq!(get("shipping_address.country_code").lanes, vec!["eu"]);
        assert_eq!(get("shipping_address.country_code").families, vec!["lanes", "address", "fraud"]);
        assert_eq!(get("total_price").lanes, Vec::<String>::new());
        assert_eq!(get("cancelled_at").families, vec!["routing"]);
    }
}
