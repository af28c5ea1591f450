//! Shipping-address rules. They run only when the lane checks addresses and at least one
//! line still requires shipping (digital goods and fully fulfilled lines need no address).
//!
//! All problems found are reported (an operator fixes them in one pass); each is
//! `hold/address`. Explanations name the missing parts and country codes, never the
//! address text itself.

use super::countries::{check_postcode, is_iso_alpha2, PostcodeCheck};
use super::{Effect, Lane, RuleHit};
use crate::core::order::{Address, Order};
use crate::core::types::Reason;

pub const MISSING: &str = "address.missing";
pub const INCOMPLETE: &str = "address.incomplete";
pub const COUNTRY_INVALID: &str = "address.country_invalid";
pub const POSTCODE_FORMAT: &str = "address.postcode_format";
pub const PO_BOX: &str = "address.po_box";
pub const COUNTRY_NOT_ALLOWED: &str = "address.country_not_allowed";

/// Address rules that fire for `order`.
pub fn evaluate(order: &Order, lane: &Lane) -> Vec<RuleHit> {
    if !lane.address.check || order.lines_to_ship().next().is_none() {
        return Vec::new();
    }
    let hold = |id, text: String| RuleHit::new(id, Effect::Hold(Reason::Address), text);
    let Some(a) = &order.shipping_address else {
        return vec![hold(MISSING, "no shipping address, but lines require shipping".into())];
    };
    let mut hits = Vec::new();
    let has_name = a.name.is_some() || (a.first_name.is_some() && a.last_name.is_some());
    let missing: Vec<&str> =
        [("recipient name", has_name), ("address1", a.address1.is_some()), ("city", a.city.is_some())]
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(part, _)| part)
            .collect();
    if !missing.is_empty() {
        hits.push(hold(INCOMPLETE, format!("shipping address lacks {}", missing.join(", "))));
    }
    match a.country_code.as_deref() {
        Some(c) if is_iso_alpha2(c) => {
            match check_postcode(c, a.zip.as_deref()) {
                PostcodeCheck::Missing => hits.push(hold(POSTCODE_FORMAT, format!("no postcode for {c}"))),
                PostcodeCheck::Malformed => {
                    hits.push(hold(POSTCODE_FORMAT, format!("postcode is not in the {c} format")))
                }
                PostcodeCheck::Ok | PostcodeCheck::Unchecked => {}
            }
            let allowed = &lane.address.allowed_countries;
            if !allowed.is_empty() && !allowed.iter().any(|x| x == c) {
                hits.push(hold(
                    COUNTRY_NOT_ALLOWED,
                    format!("lane {} does not ship to {c} (allowed: {})", lane.name, allowed.join(" ")),
                ));
            }
        }
        Some(_) => hits.push(hold(COUNTRY_INVALID, "country code is not ISO 3166-1 alpha-2".into())),
        None => hits.push(hold(COUNTRY_INVALID, "shipping address has no country code".into())),
    }
    if lane.address.refuse_po_box && is_po_box(a) {
        hits.push(hold(PO_BOX, format!("lane {} does not deliver to PO boxes", lane.name)));
    }
    hits
}

/// True when address1 or address2 reads as a post-office box: "PO Box", "P.O. Box",
/// "POBox", "Post Office Box", "Postfach", "Boîte postale" / "Boite postale", any case,
/// at a word start (so "Depot Boxing Lane" is not one).
pub fn is_po_box(a: &Address) -> bool {
    [a.address1.as_deref(), a.address2.as_deref()].into_iter().flatten().any(text_is_po_box)
}

fn text_is_po_box(text: &str) -> bool {
    // Lower-case, dots to spaces, runs of whitespace to one space, boîte → boite.
    let lowered = text.to_lowercase().replace('î', "i").replace(['.', ','], " ");
    let norm = format!(" {} ", lowered.split_whitespace().collect::<Vec<_>>().join(" "));
    [" po box", " p o box", " pobox", " post office box", " postfach", " boite postale"]
        .iter()
        .any(|p| norm.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::order::{order_from_value, tests::fixture_with};
    use crate::core::rules::tests::shipped;
    use serde_json::{json, Value};

    fn ids(lane: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<&'static str> {
        let m = shipped();
        let order = order_from_value(&fixture_with(edit)).unwrap();
        evaluate(&order, m.lane(lane).unwrap()).iter().map(|h| h.id).collect()
    }

    fn set_ship(o: &mut serde_json::Map<String, Value>, patch: Value) {
        for (k, v) in patch.as_object().unwrap() {
            o["shipping_address"][k] = v.clone();
        }
    }

    #[test]
    fn address_rules_table() {
        type Edit = Box<dyn Fn(&mut serde_json::Map<String, Value>)>;
        let cases: Vec<(&str, &str, Edit, Vec<&str>)> = vec![
            ("fixture US address passes", "default", Box::new(|_| {}), vec![]),
            (
                "no shipping address",
                "default",
                Box::new(|o| drop(o.remove("shipping_address"))),
                vec![MISSING],
            ),
            (
                "null shipping address",
                "default",
                Box::new(|o| drop(o.insert("shipping_address".into(), Value::Null))),
                vec![MISSING],
            ),
            (
                "digital goods need no address",
                "default",
                Box::new(|o| {
                    o.remove("shipping_address");
                    for l in o["line_items"].as_array_mut().unwrap() {
                        l["requires_shipping"] = false.into();
                    }
                }),
                vec![],
            ),
            (
                "already fulfilled lines need no address",
                "default",
                Box::new(|o| {
                    o.remove("shipping_address");
                    for l in o["line_items"].as_array_mut().unwrap() {
                        l["fulfillable_quantity"] = 0.into();
                    }
                }),
                vec![],
            ),
            ("pos lane does not check", "pos", Box::new(|o| drop(o.remove("shipping_address"))), vec![]),
            (
                "first and last name stand in for name",
                "default",
                Box::new(|o| set_ship(o, json!({"name": null}))),
                vec![],
            ),
            (
                "no name, no street",
                "default",
                Box::new(|o| set_ship(o, json!({"name": null, "last_name": " ", "address1": ""}))),
                vec![INCOMPLETE],
            ),
            ("no city", "default", Box::new(|o| set_ship(o, json!({"city": null}))), vec![INCOMPLETE]),
            (
                "bad US zip",
                "default",
                Box::new(|o| set_ship(o, json!({"zip": "4000"}))),
                vec![POSTCODE_FORMAT],
            ),
            (
                "missing US zip",
                "default",
                Box::new(|o| set_ship(o, json!({"zip": null}))),
                vec![POSTCODE_FORMAT],
            ),
            (
                "Canada with a good postcode",
                "default",
                Box::new(|o| set_ship(o, json!({"country_code": "CA", "zip": "K2H 7A8"}))),
                vec![],
            ),
            (
                "unknown country code",
                "default",
                Box::new(|o| set_ship(o, json!({"country_code": "UK"}))),
                vec![COUNTRY_INVALID],
            ),
            (
                "no country code",
                "default",
                Box::new(|o| set_ship(o, json!({"country_code": null}))),
                vec![COUNTRY_INVALID],
            ),
            (
                "Hong Kong needs no postcode but default lane does not ship there",
                "default",
                Box::new(|o| set_ship(o, json!({"country_code": "HK", "zip": null}))),
                vec![COUNTRY_NOT_ALLOWED],
            ),
            (
                "Hong Kong without postcode on a lane with no country list",
                "wholesale",
                Box::new(|o| set_ship(o, json!({"country_code": "HK", "zip": null}))),
                vec![],
            ),
            (
                "UAE without postcode",
                "wholesale",
                Box::new(|o| set_ship(o, json!({"country_code": "AE", "zip": ""}))),
                vec![],
            ),
            (
                "German address on the EU lane, unicode name",
                "eu",
                Box::new(|o| {
                    set_ship(
                        o,
                        json!({"country_code": "DE", "zip": "10115", "name": "Jürgen Groß", "city": "Berlin"}),
                    )
                }),
                vec![],
            ),
            (
                "Dutch postcode malformed",
                "eu",
                Box::new(|o| set_ship(o, json!({"country_code": "NL", "zip": "123 AB"}))),
                vec![POSTCODE_FORMAT],
            ),
            (
                "German address on the default lane",
                "default",
                Box::new(|o| set_ship(o, json!({"country_code": "DE", "zip": "10115"}))),
                vec![COUNTRY_NOT_ALLOWED],
            ),
            (
                "PO box refused on the EU lane",
                "eu",
                Box::new(|o| {
                    set_ship(o, json!({"country_code": "DE", "zip": "10115", "address1": "Postfach 12 34"}))
                }),
                vec![PO_BOX],
            ),
            (
                "PO box accepted on the default lane",
                "default",
                Box::new(|o| set_ship(o, json!({"address1": "P.O. Box 42"}))),
                vec![],
            ),
            (
                "several problems at once",
                "eu",
                Box::new(|o| set_ship(o, json!({"city": null, "zip": "x", "address2": "PO Box 9"}))),
                vec![INCOMPLETE, POSTCODE_FORMAT, PO_BOX],
            ),
        ];
        for (what, lane, edit, want) in cases {
            assert_eq!(ids(lane, edit), want, "{what}");
        }
    }

    #[test]
    fn explanations_carry_no_address_text() {
        let m = shipped();
        let v =
            fixture_with(|o| set_ship(o, json!({"city": null, "zip": "SECRET-ZIP", "address2": "PO Box 9"})));
        let order = order_from_value(&v).unwrap();
        for h in evaluate(&order, m.lane("eu").unwrap()) {
            for secret in ["SECRET", "Shipping Street", "Steve", "PO Box 9"] {
                assert!(!h.explanation.contains(secret), "{}: {}", h.id, h.explanation);
            }
        }
    }

    #[test]
    fn po_box_spellings() {
        for yes in [
            "PO Box 12",
            "P.O. Box 12",
            "p.o.box 12",
            "POBOX 12",
            "Post Office Box 7",
            "Postfach 10 20",
            "POSTFACH 1",
            "Boîte postale 45",
            "BOITE POSTALE 45",
            "c/o Smith, PO Box 3",
            "P. O. Box 1",
        ] {
            assert!(text_is_po_box(yes), "{yes}");
        }
        for no in [
            "123 Shipping Street",
            "Depot Boxing Lane 4",
            "Tempo Boxer Str. 1",
            "Expo Boulevard 1",
            "Bpost 1",
        ] {
            assert!(!text_is_po_box(no), "{no}");
        }
    }
}
