//! The order payload model: what routing reads from a Shopify order webhook body, and the
//! risk-assessment event.
//!
//! Parsing is tolerant of what Shopify really sends (null `customer` on POS orders, no
//! `shipping_address` when nothing ships, ids past 2^53, money as decimal strings) and strict
//! about what routing depends on: a field of the wrong type is a typed [`PayloadError`], never
//! a guess. Error details name fields, never their values, so they are safe to log.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use serde_json::Value;

use super::time::parse_rfc3339_ms;
use super::webhook::ShopifyId;

/// Why a body could not be read as an order or risk event. `code()` is stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadError {
    /// Not JSON at all.
    InvalidJson,
    /// JSON, but not an object.
    NotAnObject,
    /// A field routing needs is absent or null.
    MissingField(&'static str),
    /// A field has the wrong type or an unreadable value.
    InvalidField { field: &'static str, expected: &'static str },
}

impl PayloadError {
    pub fn code(&self) -> &'static str {
        match self {
            PayloadError::InvalidJson => "invalid_json",
            PayloadError::NotAnObject => "not_an_object",
            PayloadError::MissingField(_) => "missing_field",
            PayloadError::InvalidField { .. } => "invalid_field",
        }
    }
}

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PayloadError::InvalidJson => f.write_str("body is not JSON"),
            PayloadError::NotAnObject => f.write_str("body is not a JSON object"),
            PayloadError::MissingField(k) => write!(f, "field {k} is required"),
            PayloadError::InvalidField { field, expected } => write!(f, "field {field} must be {expected}"),
        }
    }
}

impl std::error::Error for PayloadError {}

/// A postal address as Shopify sends it. Every part may be absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Address {
    pub name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub address1: Option<String>,
    pub address2: Option<String>,
    pub city: Option<String>,
    pub zip: Option<String>,
    pub province_code: Option<String>,
    /// Upper-cased ISO 3166-1 alpha-2, as sent (not validated here).
    pub country_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineItem {
    pub id: Option<ShopifyId>,
    /// `None` when absent or blank.
    pub sku: Option<String>,
    pub quantity: i64,
    /// What is left to fulfil; `None` when Shopify did not say (treat as `quantity`).
    pub fulfillable_quantity: Option<i64>,
    pub requires_shipping: bool,
    pub title: String,
}

impl LineItem {
    /// Units still to send: `fulfillable_quantity` when present, else `quantity`, never < 0.
    pub fn open_quantity(&self) -> i64 {
        self.fulfillable_quantity.unwrap_or(self.quantity).max(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShippingLine {
    pub title: Option<String>,
    pub code: Option<String>,
}

/// The parts of a Shopify order routing reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    pub id: ShopifyId,
    /// `#1001`; empty when absent.
    pub name: String,
    /// `email`, else `contact_email`, else the customer's email.
    pub email: Option<String>,
    pub customer_id: Option<ShopifyId>,
    pub financial_status: Option<String>,
    pub fulfillment_status: Option<String>,
    pub source_name: Option<String>,
    pub currency: Option<String>,
    /// `total_price` in minor units, read exactly from the decimal string.
    pub total_price_cents: i64,
    /// Split on commas, trimmed, empties dropped; compare with [`Order::has_tag`].
    pub tags: Vec<String>,
    pub shipping_address: Option<Address>,
    pub billing_address: Option<Address>,
    pub line_items: Vec<LineItem>,
    pub shipping_lines: Vec<ShippingLine>,
    pub created_at_ms: i64,
    pub updated_at_ms: Option<i64>,
    pub cancelled_at_ms: Option<i64>,
}

impl Order {
    /// Case-insensitive tag test.
    pub fn has_tag(&self, tag: &str) -> bool {
        let tag = tag.trim().to_lowercase();
        self.tags.iter().any(|t| t.to_lowercase() == tag)
    }

    /// Lines the warehouse must still send: they require shipping and have units left.
    pub fn lines_to_ship(&self) -> impl Iterator<Item = &LineItem> {
        self.line_items.iter().filter(|l| l.requires_shipping && l.open_quantity() > 0)
    }

    pub fn shipping_country(&self) -> Option<&str> {
        self.shipping_address.as_ref().and_then(|a| a.country_code.as_deref())
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled_at_ms.is_some()
    }
}

/// Reads an order webhook body (`orders/create`, `updated`, `paid`, `cancelled`,
/// `fulfilled`, `partially_fulfilled`).
///
/// Required: `id`, `created_at` (RFC 3339), `total_price` (decimal string or integer).
/// Everything else may be absent or null.
pub fn parse_order(body: &[u8]) -> Result<Order, PayloadError> {
    // Only the keys routing reads are built, as a tree borrowing the body's strings; the rest
    // (price sets, tax lines, discounts: most of its bytes) is checked as JSON and skipped.
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = serde::de::DeserializeSeed::deserialize(Keep::Order, &mut de)
        .map_err(|_| PayloadError::InvalidJson)?;
    de.end().map_err(|_| PayloadError::InvalidJson)?;
    order_from_node(&v)
}

/// The order keys [`order_from_value`] reads, and those of each line item.
pub const ORDER_KEYS: &[&str] = &[
    "id",
    "name",
    "email",
    "contact_email",
    "customer",
    "financial_status",
    "fulfillment_status",
    "source_name",
    "currency",
    "total_price",
    "tags",
    "shipping_address",
    "billing_address",
    "line_items",
    "shipping_lines",
    "created_at",
    "updated_at",
    "cancelled_at",
];
const LINE_KEYS: &[&str] = &["id", "sku", "quantity", "fulfillable_quantity", "requires_shipping", "title"];
const CUSTOMER_KEYS: &[&str] = &["id", "email"];
const ADDRESS_KEYS: &[&str] = &[
    "name",
    "first_name",
    "last_name",
    "address1",
    "address2",
    "city",
    "zip",
    "province_code",
    "country_code",
];
const SHIPPING_LINE_KEYS: &[&str] = &["title", "code"];
/// The keys read inside a line item, the customer, an address and a shipping line.
pub const NESTED_KEYS: &[&[&str]] = &[LINE_KEYS, CUSTOMER_KEYS, ADDRESS_KEYS, SHIPPING_LINE_KEYS];
/// Order keys holding an object (or an array of objects: `[]`) and the keys read inside it;
/// the projection [`Keep`] follows exactly this table (a test holds them together).
pub const ORDER_NESTED: &[(&str, &[&str])] = &[
    ("customer", CUSTOMER_KEYS),
    ("shipping_address", ADDRESS_KEYS),
    ("billing_address", ADDRESS_KEYS),
    ("line_items[]", LINE_KEYS),
    ("shipping_lines[]", SHIPPING_LINE_KEYS),
];
/// The keys [`parse_risk_event`] reads; nothing else of the body is looked at.
pub const RISK_KEYS: &[&str] = &["order_id", "admin_graphql_api_order_id", "risk_level", "created_at"];

/// A projection of a JSON value: an object keeps only the keys its reader reads, nested
/// objects and arrays of objects projected in turn (the sample's customer, addresses and
/// shipping lines are mostly fields routing never reads); any other value is kept as one of
/// the same kind, so the reader's "is it an object / an array / null" checks and their
/// errors stay the same.
#[derive(Clone, Copy)]
enum Keep {
    Order,
    Customer,
    Address,
    /// An array of `Line`.
    Lines,
    Line,
    /// An array of `ShippingLine`.
    ShippingLines,
    ShippingLine,
    Risk,
    /// A value kept whole (`tags` may be an array of strings).
    All,
}

impl Keep {
    /// The keys kept in an object at this level; `None` where an array belongs.
    fn keys(self) -> Option<&'static [&'static str]> {
        match self {
            Keep::Order => Some(ORDER_KEYS),
            Keep::Customer => Some(CUSTOMER_KEYS),
            Keep::Address => Some(ADDRESS_KEYS),
            Keep::Line => Some(LINE_KEYS),
            Keep::ShippingLine => Some(SHIPPING_LINE_KEYS),
            Keep::Risk => Some(RISK_KEYS),
            Keep::Lines | Keep::ShippingLines | Keep::All => None,
        }
    }

    /// How the value under `key` of an order is projected, if it is.
    fn below(self, key: &str) -> Option<Keep> {
        match (self, key) {
            (Keep::Order, "customer") => Some(Keep::Customer),
            (Keep::Order, "shipping_address" | "billing_address") => Some(Keep::Address),
            (Keep::Order, "line_items") => Some(Keep::Lines),
            (Keep::Order, "shipping_lines") => Some(Keep::ShippingLines),
            _ => None,
        }
    }
}

/// What the readers below see of a JSON value: numbers as serde_json keeps them (so
/// `as_i64` answers as `serde_json::Value`'s does), strings borrowed from the body when they
/// hold no escapes, objects as their kept entries in body order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node<'a> {
    Null,
    Bool(bool),
    PosInt(u64),
    NegInt(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// The same reading of an already-parsed value (tests, rule cases).
    pub(crate) fn from_value(v: &'a Value) -> Node<'a> {
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Node::PosInt(u),
                (None, Some(i)) => Node::NegInt(i),
                _ => Node::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Node::Str(Cow::Borrowed(s)),
            Value::Array(a) => Node::Array(a.iter().map(Node::from_value).collect()),
            Value::Object(o) => Node::Object(
                o.iter().map(|(k, v)| (Cow::Borrowed(k.as_str()), Node::from_value(v))).collect(),
            ),
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match self {
            Node::PosInt(u) => i64::try_from(*u).ok(),
            Node::NegInt(i) => Some(*i),
            _ => None,
        }
    }

    fn as_object(&self) -> Option<Obj<'_, 'a>> {
        match self {
            Node::Object(entries) => Some(Obj(entries)),
            _ => None,
        }
    }
}

/// An object's entries; a key sent twice reads as its last value, as JSON parsers keep it.
#[derive(Clone, Copy)]
struct Obj<'n, 'a>(&'n [(Cow<'a, str>, Node<'a>)]);

impl<'n, 'a> Obj<'n, 'a> {
    fn get(self, k: &str) -> Option<&'n Node<'a>> {
        self.0.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v)
    }
}

/// An object key, borrowed from the body when it has no escapes (every key Shopify sends):
/// matching keys allocates nothing.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Which of the kept keys an object key is. Read as bytes: a key is only compared, so it is
/// neither copied nor checked as UTF-8 (skipped values are not checked either).
struct Known(&'static [&'static str]);

impl<'de> serde::de::DeserializeSeed<'de> for Known {
    type Value = Option<&'static str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_bytes(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Known {
    type Value = Option<&'static str>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(self.0.iter().copied().find(|w| w.as_bytes() == v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().copied().find(|w| *w == v))
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Keep {
    type Value = Node<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Keep {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut out = Vec::new();
        let keys = match (self, self.keys()) {
            (Keep::All, _) => {
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    out.push((k, map.next_value_seed(Keep::All)?));
                }
                return Ok(Node::Object(out));
            }
            (_, Some(keys)) => keys,
            (_, None) => {
                while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
                return Ok(Node::Object(out)); // an object where an array belongs
            }
        };
        out.reserve_exact(keys.len());
        while let Some(found) = map.next_key_seed(Known(keys))? {
            match found {
                Some(w) => {
                    let v = map.next_value_seed(self.below(w).unwrap_or(Keep::All))?;
                    out.push((Cow::Borrowed(w), v));
                }
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(Node::Object(out))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut out = Vec::new();
        let item = match self {
            Keep::Lines => Some(Keep::Line),
            Keep::ShippingLines => Some(Keep::ShippingLine),
            Keep::All => Some(Keep::All),
            _ => None,
        };
        match item {
            Some(item) => {
                while let Some(v) = seq.next_element_seed(item)? {
                    out.push(v);
                }
            }
            None => while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {},
        }
        Ok(Node::Array(out))
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
        Ok(if v < 0 { Node::NegInt(v) } else { Node::PosInt(v as u64) })
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
        Ok(Node::PosInt(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node<'de>, E> {
        Ok(Node::Float(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(v.to_string())))
    }
}

/// [`parse_order`] for an already-parsed JSON value.
pub fn order_from_value(v: &Value) -> Result<Order, PayloadError> {
    order_from_node(&Node::from_value(v))
}

fn order_from_node(v: &Node) -> Result<Order, PayloadError> {
    let o = v.as_object().ok_or(PayloadError::NotAnObject)?;
    let order_id = id(o, "id")?.ok_or(PayloadError::MissingField("id"))?;
    let customer = match o.get("customer") {
        None | Some(Node::Null) => None,
        Some(c @ Node::Object(_)) => c.as_object(),
        Some(_) => return Err(invalid("customer", "an object or null")),
    };
    let customer_id = match customer {
        Some(c) => id(c, "id").map_err(|_| invalid("customer.id", "an integer id"))?,
        None => None,
    };
    let customer_email = match customer {
        Some(c) => text(c, "email").map_err(|_| invalid("customer.email", "a string"))?,
        None => None,
    };
    let email = text(o, "email")?.or(text(o, "contact_email")?).or(customer_email);
    let total_price_cents = match o.get("total_price") {
        None | Some(Node::Null) => return Err(PayloadError::MissingField("total_price")),
        Some(Node::Str(s)) => parse_money_cents(s),
        Some(n @ (Node::PosInt(_) | Node::NegInt(_) | Node::Float(_))) => {
            n.as_i64().and_then(|u| u.checked_mul(100))
        }
        Some(_) => None,
    }
    .ok_or(invalid("total_price", "a decimal amount with at most 2 decimals"))?;
    let tags = match o.get("tags") {
        None | Some(Node::Null) => Vec::new(),
        Some(Node::Str(s)) => split_tags(s),
        Some(Node::Array(a)) => {
            let mut out = Vec::new();
            for t in a {
                out.extend(split_tags(match t {
                    Node::Str(t) => t,
                    _ => return Err(invalid("tags", "a string")),
                }));
            }
            out
        }
        Some(_) => return Err(invalid("tags", "a comma-separated string")),
    };
    let created_at_ms = time(o, "created_at")?.ok_or(PayloadError::MissingField("created_at"))?;
    let line_items = match o.get("line_items") {
        None | Some(Node::Null) => Vec::new(),
        Some(Node::Array(a)) => a.iter().map(line_item).collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("line_items", "an array")),
    };
    let shipping_lines = match o.get("shipping_lines") {
        None | Some(Node::Null) => Vec::new(),
        Some(Node::Array(a)) => a
            .iter()
            .map(|s| {
                let s = s.as_object().ok_or(invalid("shipping_lines", "an array of objects"))?;
                Ok(ShippingLine {
                    title: text(s, "title").map_err(|_| invalid("shipping_lines.title", "a string"))?,
                    code: text(s, "code").map_err(|_| invalid("shipping_lines.code", "a string"))?,
                })
            })
            .collect::<Result<_, PayloadError>>()?,
        Some(_) => return Err(invalid("shipping_lines", "an array")),
    };
    Ok(Order {
        id: order_id,
        name: text(o, "name")?.unwrap_or_default(),
        email,
        customer_id,
        financial_status: text(o, "financial_status")?.map(|s| s.to_ascii_lowercase()),
        fulfillment_status: text(o, "fulfillment_status")?.map(|s| s.to_ascii_lowercase()),
        source_name: text(o, "source_name")?,
        currency: text(o, "currency")?.map(|s| s.to_ascii_uppercase()),
        total_price_cents,
        tags,
        shipping_address: address(o, "shipping_address")?,
        billing_address: address(o, "billing_address")?,
        line_items,
        shipping_lines,
        created_at_ms,
        updated_at_ms: time(o, "updated_at")?,
        cancelled_at_ms: time(o, "cancelled_at")?,
    })
}

/// The email as the velocity rule counts it: HMAC-SHA256 under a per-deployment key of the
/// trimmed, lower-cased address, hex. Without the key it cannot be reversed by hashing
/// guessed addresses, as a plain SHA-256 could.
pub fn email_hash(key: &[u8], email: &str) -> String {
    use hmac::Mac;
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    };
    mac.update(email.trim().to_lowercase().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The key for [`email_hash`]: `EMAIL_HASH_KEY` when set, else derived from the webhook
/// secret (so a deployment is keyed without another secret; rotating that secret restarts
/// the velocity windows).
pub fn email_hash_key(explicit: Option<&str>, webhook_secret: &str) -> Vec<u8> {
    match explicit {
        Some(k) => k.as_bytes().to_vec(),
        None => email_hash(webhook_secret.as_bytes(), "orderlane email hash key").into_bytes(),
    }
}

/// Shopify's risk levels on `orders/risk_assessment_changed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    High,
    Medium,
    Low,
    None,
    Pending,
}

impl RiskLevel {
    pub const ALL: &'static [RiskLevel] =
        &[RiskLevel::High, RiskLevel::Medium, RiskLevel::Low, RiskLevel::None, RiskLevel::Pending];

    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::High => "high",
            RiskLevel::Medium => "medium",
            RiskLevel::Low => "low",
            RiskLevel::None => "none",
            RiskLevel::Pending => "pending",
        }
    }

    /// Case-insensitive; `None` for anything else.
    pub fn parse(s: &str) -> Option<RiskLevel> {
        RiskLevel::ALL.iter().copied().find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// An `orders/risk_assessment_changed` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RiskEvent {
    pub order_id: ShopifyId,
    pub risk_level: RiskLevel,
    /// When the assessment was made; orders risk events among themselves.
    pub created_at_ms: Option<i64>,
}

pub fn parse_risk_event(body: &[u8]) -> Result<RiskEvent, PayloadError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = serde::de::DeserializeSeed::deserialize(Keep::Risk, &mut de)
        .map_err(|_| PayloadError::InvalidJson)?;
    de.end().map_err(|_| PayloadError::InvalidJson)?;
    let o = v.as_object().ok_or(PayloadError::NotAnObject)?;
    let order_id = match id(o, "order_id")? {
        Some(i) => i,
        None => id(o, "admin_graphql_api_order_id")?.ok_or(PayloadError::MissingField("order_id"))?,
    };
    let level = text(o, "risk_level")?.ok_or(PayloadError::MissingField("risk_level"))?;
    let risk_level =
        RiskLevel::parse(&level).ok_or(invalid("risk_level", "high, medium, low, none or pending"))?;
    Ok(RiskEvent { order_id, risk_level, created_at_ms: time(o, "created_at")? })
}

/// Exact decimal money to minor units: `"404.95"` → 40495, `"10"` → 1000, `"-1.5"` → -150.
/// More than two decimals are accepted only when the extra digits are zeros (`"1.500"`);
/// anything else (exponents, blanks, overflow) is `None`.
pub fn parse_money_cents(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if s.contains('.') && frac.is_empty() {
        return None;
    }
    if frac.len() > 2 && frac.bytes().skip(2).any(|b| b != b'0') {
        return None;
    }
    let mut cents: i64 = 0;
    for b in int.bytes() {
        cents = cents.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    let f: Vec<u8> = frac.bytes().chain(std::iter::repeat(b'0')).take(2).collect();
    cents = cents.checked_mul(100)?.checked_add(i64::from(f[0] - b'0') * 10 + i64::from(f[1] - b'0'))?;
    Some(if neg { -cents } else { cents })
}

fn split_tags(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect()
}

fn invalid(field: &'static str, expected: &'static str) -> PayloadError {
    PayloadError::InvalidField { field, expected }
}

fn id(o: Obj, k: &'static str) -> Result<Option<ShopifyId>, PayloadError> {
    let id = match o.get(k) {
        None | Some(Node::Null) => return Ok(None),
        Some(Node::PosInt(u)) => Some(ShopifyId(u.to_string())),
        Some(Node::Str(s)) => ShopifyId::from_text(s),
        Some(_) => None,
    };
    id.map(Some).ok_or(invalid(k, "an integer id"))
}

/// A string field; blank strings count as absent.
fn text(o: Obj, k: &'static str) -> Result<Option<String>, PayloadError> {
    match o.get(k) {
        None | Some(Node::Null) => Ok(None),
        Some(Node::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(Node::Str(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(invalid(k, "a string")),
    }
}

fn time(o: Obj, k: &'static str) -> Result<Option<i64>, PayloadError> {
    match text(o, k)? {
        None => Ok(None),
        Some(s) => parse_rfc3339_ms(&s).map(Some).ok_or(invalid(k, "an RFC 3339 timestamp")),
    }
}

fn address(o: Obj, k: &'static str) -> Result<Option<Address>, PayloadError> {
    let a = match o.get(k) {
        None | Some(Node::Null) => return Ok(None),
        Some(Node::Object(a)) => Obj(a),
        Some(_) => return Err(invalid(k, "an object or null")),
    };
    let f = |name: &'static str| text(a, name).map_err(|_| invalid(k, "an object of string fields"));
    Ok(Some(Address {
        name: f("name")?,
        first_name: f("first_name")?,
        last_name: f("last_name")?,
        address1: f("address1")?,
        address2: f("address2")?,
        city: f("city")?,
        zip: f("zip")?,
        province_code: f("province_code")?,
        country_code: f("country_code")?.map(|c| c.to_ascii_uppercase()),
    }))
}

fn line_item(v: &Node) -> Result<LineItem, PayloadError> {
    let o = v.as_object().ok_or(invalid("line_items", "an array of objects"))?;
    let int = |k: &'static str, field: &'static str| match o.get(k) {
        None | Some(Node::Null) => Ok(None),
        Some(n @ (Node::PosInt(_) | Node::NegInt(_) | Node::Float(_))) => {
            n.as_i64().map(Some).ok_or(invalid(field, "an integer"))
        }
        Some(_) => Err(invalid(field, "an integer")),
    };
    let requires_shipping = match o.get("requires_shipping") {
        // Absent means unknown: assume it ships, so address checks are not skipped.
        None | Some(Node::Null) => true,
        Some(Node::Bool(b)) => *b,
        Some(_) => return Err(invalid("line_items.requires_shipping", "a boolean")),
    };
    Ok(LineItem {
        id: id(o, "id").map_err(|_| invalid("line_items.id", "an integer id"))?,
        sku: text(o, "sku").map_err(|_| invalid("line_items.sku", "a string"))?,
        quantity: int("quantity", "line_items.quantity")?
            .ok_or(PayloadError::MissingField("line_items.quantity"))?,
        fulfillable_quantity: int("fulfillable_quantity", "line_items.fulfillable_quantity")?,
        requires_shipping,
        title: text(o, "title").map_err(|_| invalid("line_items.title", "a string"))?.unwrap_or_default(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Map;

    #[test]
    fn the_projection_reads_what_the_full_value_reads() {
        let cases: Vec<Vec<u8>> = vec![
            FIXTURE.to_vec(),
            br#"{"id": 1, "created_at": "2026-01-01T00:00:00Z", "total_price": "1.00", "line_items": {"a": 1}}"#.to_vec(),
            br#"{"id": 1, "created_at": "2026-01-01T00:00:00Z", "total_price": "1.00", "line_items": [1, {"sku": 5}]}"#.to_vec(),
            br#"{"id": 1, "created_at": "2026-01-01T00:00:00Z", "total_price": "1.00", "line_items": null, "x": [{"y": 1}]}"#.to_vec(),
            br#"{"id": 1, "created_at": "2026-01-01T00:00:00Z", "total_price": 3, "customer": [], "tags": ["a,b", "c"]}"#.to_vec(),
            br#"[1, 2]"#.to_vec(),
            br#""order""#.to_vec(),
            br#"{"id": 1} trailing"#.to_vec(),
            br#"{"id": 1, "id": 2, "created_at": "2026-01-01T00:00:00Z", "total_price": "1"}"#.to_vec(),
            // Escaped keys and values, ids as text, a negative and a fractional quantity.
            br#"{"i\u0064": 7, "created_at": "2026-01-01T00:00:00Z", "total_price": "1", "name": "A\"B\u00e9"}"#.to_vec(),
            br#"{"id": "gid://shopify/Order/9", "created_at": "2026-01-01T00:00:00Z", "total_price": -2, "line_items": [{"quantity": -1}]}"#.to_vec(),
            br#"{"id": 9, "created_at": "2026-01-01T00:00:00Z", "total_price": "1", "line_items": [{"quantity": 1.5}]}"#.to_vec(),
            br#"{"id": -9, "created_at": "2026-01-01T00:00:00Z", "total_price": "1"}"#.to_vec(),
        ];
        for body in cases {
            let full = serde_json::from_slice::<Value>(&body)
                .map_err(|_| PayloadError::InvalidJson)
                .and_then(|v| order_from_value(&v));
            assert_eq!(parse_order(&body), full, "{}", String::from_utf8_lossy(&body));
        }
        // One difference, on purpose: a number too large for f64 in a field routing never
        // reads no longer makes the whole order unreadable.
        let odd = br#"{"id": 1, "created_at": "2026-01-01T00:00:00Z", "total_price": "1.00", "x": 1e400}"#;
        assert!(parse_order(odd).is_ok());
        assert_eq!(parse_order(br#"{"id": 1e400}"#), Err(PayloadError::InvalidJson));
    }

    #[test]
    fn the_projection_follows_the_key_tables() {
        for (parent, keys) in ORDER_NESTED {
            let (name, many) = match parent.strip_suffix("[]") {
                Some(n) => (n, true),
                None => (*parent, false),
            };
            assert!(ORDER_KEYS.contains(&name), "{name} is an order key");
            let below = Keep::Order.below(name).unwrap();
            let item = match (below, many) {
                (Keep::Lines, true) => Keep::Line,
                (Keep::ShippingLines, true) => Keep::ShippingLine,
                (k, false) => k,
                _ => panic!("{parent}: array marker disagrees with the projection"),
            };
            assert_eq!(item.keys(), Some(*keys), "{parent}");
        }
        let nested: Vec<&str> =
            ORDER_KEYS.iter().copied().filter(|k| Keep::Order.below(k).is_some()).collect();
        assert_eq!(nested.len(), ORDER_NESTED.len());
        // A risk body's other keys are never read: the same event without them.
        let full = br#"{"order_id": 7, "risk_level": "low", "created_at": "2026-04-01T12:00:00Z", "provider_id": {"x": 1}}"#;
        let bare = br#"{"order_id": 7, "risk_level": "low", "created_at": "2026-04-01T12:00:00Z"}"#;
        assert_eq!(parse_risk_event(full), parse_risk_event(bare));
    }

    pub(crate) const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/orders-create.json");

    /// The documented sample, edited through `f`.
    pub(crate) fn fixture_with(f: impl FnOnce(&mut Map<String, Value>)) -> Value {
        let mut v: Value = serde_json::from_slice(FIXTURE).unwrap();
        f(v.as_object_mut().unwrap());
        v
    }

    #[test]
    fn shopify_sample_parses_exactly() {
        let o = parse_order(FIXTURE).unwrap();
        assert_eq!(o.id.0, "820982911946154508");
        assert_eq!(o.name, "#9999");
        assert_eq!(o.email.as_deref(), Some("jon@example.com"));
        assert_eq!(o.customer_id.as_ref().map(|c| c.0.as_str()), Some("115310627314723950"));
        assert_eq!(o.financial_status.as_deref(), Some("voided"));
        assert_eq!(o.fulfillment_status, None);
        assert_eq!(o.source_name.as_deref(), Some("web"));
        assert_eq!(o.currency.as_deref(), Some("USD"));
        assert_eq!(o.total_price_cents, 40495);
        assert_eq!(o.tags, vec!["tag1", "tag2"]);
        assert!(o.has_tag("TAG1") && !o.has_tag("tag"));
        let ship = o.shipping_address.as_ref().unwrap();
        assert_eq!((ship.country_code.as_deref(), ship.zip.as_deref()), (Some("US"), Some("40003")));
        assert_eq!(o.line_items.len(), 5);
        assert_eq!(o.line_items[0].sku.as_deref(), Some("SKU2006-001"));
        assert_eq!(o.line_items[0].id.as_ref().unwrap().0, "487817672276298560");
        assert!(o.line_items.iter().all(|l| l.requires_shipping && l.open_quantity() == 1));
        assert_eq!(o.shipping_lines[0].title.as_deref(), Some("Generic Shipping"));
        assert_eq!(o.created_at_ms, 1_640_995_200_000);
        assert_eq!(o.updated_at_ms, Some(1_640_995_200_000));
        assert_eq!(o.cancelled_at_ms, Some(1_640_995_200_000));
    }

    #[test]
    fn tolerates_real_world_shapes() {
        // POS order: customer null, no shipping address, no email.
        let pos = fixture_with(|o| {
            o.insert("customer".into(), Value::Null);
            o.remove("shipping_address");
            o.insert("email".into(), Value::Null);
            o.insert("contact_email".into(), "".into());
            o.insert("source_name".into(), "pos".into());
            o.insert("cancelled_at".into(), Value::Null);
        });
        let o = order_from_value(&pos).unwrap();
        assert!(!o.is_cancelled());
        assert_eq!((o.customer_id, o.email, o.shipping_address), (None, None, None));
        // Huge ids: u64::MAX and GraphQL gid strings stay exact.
        let huge = fixture_with(|o| {
            o.insert("id".into(), serde_json::json!(18446744073709551615u64));
            o.insert("customer".into(), serde_json::json!({"id": "gid://shopify/Customer/9007199254740993"}));
        });
        let o = order_from_value(&huge).unwrap();
        assert_eq!(o.id.0, "18446744073709551615");
        assert_eq!(o.customer_id.unwrap().0, "9007199254740993");
        // Unicode names and odd tag spacing.
        let odd = fixture_with(|o| {
            o.insert("tags".into(), " Wholesale ,, VIP,  ,Ünïcode-tag ".into());
            o["shipping_address"]["name"] = "Zoë Ångström-李".into();
            o["shipping_address"]["country_code"] = "de".into();
            o.insert("currency".into(), "eur".into());
            o.insert("total_price".into(), "1234.5".into());
        });
        let o = order_from_value(&odd).unwrap();
        assert_eq!(o.tags, vec!["Wholesale", "VIP", "Ünïcode-tag"]);
        assert!(o.has_tag("wholesale") && o.has_tag("ÜNÏCODE-TAG"));
        assert_eq!(o.shipping_country(), Some("DE"));
        assert_eq!(o.currency.as_deref(), Some("EUR"));
        assert_eq!(o.total_price_cents, 123_450);
        assert_eq!(o.shipping_address.unwrap().name.as_deref(), Some("Zoë Ångström-李"));
    }

    #[test]
    fn email_hash_is_keyed_and_normalised() {
        let k = email_hash_key(None, "shpss_secret");
        let h = email_hash(&k, " Bob@Example.com ");
        assert_eq!(h, email_hash(&k, "bob@example.com"), "trimmed and lower-cased");
        assert_eq!(h.len(), 64);
        let plain = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"bob@example.com"));
        assert_ne!(h, plain, "not the guessable plain SHA-256");
        assert_ne!(h, email_hash(&email_hash_key(None, "other"), "bob@example.com"), "per deployment");
        assert_eq!(email_hash_key(Some("pinned"), "x"), b"pinned".to_vec());
    }

    #[test]
    fn typed_errors_name_fields_not_values() {
        let cases: Vec<(Value, &str, &str)> = vec![
            (serde_json::json!([1, 2]), "not_an_object", ""),
            (fixture_with(|o| drop(o.remove("id"))), "missing_field", "id"),
            (fixture_with(|o| drop(o.insert("id".into(), serde_json::json!(8.2e17)))), "invalid_field", "id"),
            (fixture_with(|o| drop(o.remove("created_at"))), "missing_field", "created_at"),
            (
                fixture_with(|o| drop(o.insert("created_at".into(), "yesterday".into()))),
                "invalid_field",
                "created_at",
            ),
            (
                fixture_with(|o| drop(o.insert("total_price".into(), "4.0e2".into()))),
                "invalid_field",
                "total_price",
            ),
            (
                fixture_with(|o| drop(o.insert("total_price".into(), serde_json::json!(404.95)))),
                "invalid_field",
                "total_price",
            ),
            (
                fixture_with(|o| drop(o.insert("total_price".into(), Value::Null))),
                "missing_field",
                "total_price",
            ),
            (
                fixture_with(|o| drop(o.insert("line_items".into(), "x".into()))),
                "invalid_field",
                "line_items",
            ),
            (
                fixture_with(|o| drop(o.insert("email".into(), serde_json::json!(5)))),
                "invalid_field",
                "email",
            ),
            (
                fixture_with(|o| o["line_items"][0]["quantity"] = "one".into()),
                "invalid_field",
                "line_items.quantity",
            ),
            (
                fixture_with(|o| o["shipping_address"]["zip"] = serde_json::json!({"secret": "x"})),
                "invalid_field",
                "shipping_address",
            ),
        ];
        for (v, code, field) in cases {
            let e = order_from_value(&v).unwrap_err();
            assert_eq!(e.code(), code, "{e}");
            assert!(e.to_string().contains(field), "{e}");
            assert!(!e.to_string().contains("secret") && !e.to_string().contains("example.com"));
        }
        assert_eq!(parse_order(b"{not json").unwrap_err(), PayloadError::InvalidJson);
    }

    #[test]
    fn money_is_exact() {
        let cases: &[(&str, Option<i64>)] = &[
            ("404.95", Some(40495)),
            ("0.00", Some(0)),
            ("10", Some(1000)),
            ("10.5", Some(1050)),
            ("1.500", Some(150)),
            ("-1.25", Some(-125)),
            (" 7.01 ", Some(701)),
            ("92233720368547758.07", Some(i64::MAX)),
            ("92233720368547758.08", None),
            ("1.005", None),
            ("1.", None),
            (".5", None),
            ("1e3", None),
            ("", None),
            ("1,00", None),
            ("0.1", Some(10)),
        ];
        for (s, want) in cases {
            assert_eq!(parse_money_cents(s), *want, "{s:?}");
        }
    }

    #[test]
    fn risk_events() {
        let r = parse_risk_event(include_bytes!("../../tests/fixtures/orders-risk_assessment_changed.json"))
            .unwrap();
        assert_eq!(r.order_id.0, "820982911946154508");
        assert_eq!(r.risk_level, RiskLevel::Medium);
        assert_eq!(r.created_at_ms, crate::core::time::parse_rfc3339_ms("2026-04-01T16:00:00Z"));
        let r = parse_risk_event(
            br#"{"admin_graphql_api_order_id":"gid://shopify/Order/7","risk_level":"HIGH"}"#,
        )
        .unwrap();
        assert_eq!((r.order_id.0.as_str(), r.risk_level, r.created_at_ms), ("7", RiskLevel::High, None));
        assert_eq!(
            parse_risk_event(br#"{"order_id":7,"risk_level":"severe"}"#).unwrap_err().code(),
            "invalid_field"
        );
        assert_eq!(
            parse_risk_event(br#"{"order_id":7}"#).unwrap_err(),
            PayloadError::MissingField("risk_level")
        );
        for r in RiskLevel::ALL {
            assert_eq!(RiskLevel::parse(r.as_str()), Some(*r));
        }
    }
}
