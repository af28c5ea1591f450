//! Shopify webhook deliveries: authenticate the raw bytes, read the delivery headers,
//! and name what arrived. Nothing here parses the body before the HMAC has matched.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer};
use sha2::Sha256;

/// Largest body accepted, in bytes. Shopify order payloads are tens of KB; 1 MiB leaves
/// room for orders with hundreds of lines and stays under D1's 2 MB row limit.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub const HDR_HMAC: &str = "x-shopify-hmac-sha256";
pub const HDR_TOPIC: &str = "x-shopify-topic";
pub const HDR_SHOP: &str = "x-shopify-shop-domain";
pub const HDR_WEBHOOK_ID: &str = "x-shopify-webhook-id";
pub const HDR_EVENT_ID: &str = "x-shopify-event-id";
pub const HDR_TRIGGERED_AT: &str = "x-shopify-triggered-at";
pub const HDR_API_VERSION: &str = "x-shopify-api-version";

/// Why a delivery was refused. Each maps to one contract status and stable error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    TooLarge { limit: usize },
    Unauthorized,
    MissingHeader(&'static str),
    ShopNotAllowed,
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::TooLarge { .. } => 413,
            Rejection::Unauthorized => 401,
            Rejection::MissingHeader(_) => 400,
            Rejection::ShopNotAllowed => 403,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Rejection::TooLarge { .. } => "payload_too_large",
            Rejection::Unauthorized => "invalid_hmac",
            Rejection::MissingHeader(_) => "missing_header",
            Rejection::ShopNotAllowed => "shop_not_allowed",
        }
    }

    /// A human detail that never contains request data or secrets.
    pub fn detail(&self) -> String {
        match self {
            Rejection::TooLarge { limit } => format!("body exceeds {limit} bytes"),
            Rejection::Unauthorized => "X-Shopify-Hmac-Sha256 does not match the body".into(),
            Rejection::MissingHeader(h) => format!("header {h} is required"),
            Rejection::ShopNotAllowed => {
                "shop is not in ALLOWED_SHOPS (empty allows none; * allows any)".into()
            }
        }
    }
}

/// Webhook configuration read from secrets and vars.
#[derive(Debug, Clone, Default)]
pub struct WebhookConfig {
    pub secret: String,
    pub previous_secret: Option<String>,
    /// Lower-cased shop domains. Empty allows none (the configuration is incomplete: fail
    /// closed); `*` among them allows any shop, as an explicit choice.
    pub allowed_shops: Vec<String>,
}

/// The `ALLOWED_SHOPS` entry that allows any shop.
pub const ANY_SHOP: &str = "*";

impl WebhookConfig {
    pub fn new(secret: &str, previous: Option<&str>, allowed_shops: &str) -> Self {
        WebhookConfig {
            secret: secret.to_string(),
            previous_secret: previous.map(str::trim).filter(|s| !s.is_empty()).map(String::from),
            allowed_shops: parse_list(allowed_shops),
        }
    }

    pub fn shop_allowed(&self, shop: &str) -> bool {
        self.allowed_shops.iter().any(|s| s == ANY_SHOP || s.eq_ignore_ascii_case(shop))
    }

    /// False while `ALLOWED_SHOPS` names no shop: every delivery is refused.
    pub fn shops_configured(&self) -> bool {
        !self.allowed_shops.is_empty()
    }
}

/// Splits a comma-separated var, trimming and lower-casing, dropping empties.
pub fn parse_list(s: &str) -> Vec<String> {
    s.split(',').map(|p| p.trim().to_ascii_lowercase()).filter(|p| !p.is_empty()).collect()
}

/// The base64 HMAC-SHA256 of `body` under `secret`, as Shopify sends it.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = new_mac(secret);
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The hex HMAC-SHA256 of `body` under `secret`: how a delivery's body is identified
/// (`deliveries.body_hmac`), for bodies orderlane fetched itself.
pub fn digest_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = new_mac(secret);
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn new_mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    }
}

/// True when `header_b64` is the HMAC of `body` under `secret`. The comparison is
/// constant-time (`verify_slice`); a header that is not base64 of 32 bytes never matches.
pub fn verify(secret: &[u8], body: &[u8], header_b64: &str) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(header_b64.trim()) else {
        return false;
    };
    if secret.is_empty() || given.len() != 32 {
        return false;
    }
    let mut mac = new_mac(secret);
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// Headers of one request, looked up case-insensitively.
pub trait HeaderSource {
    fn header(&self, lower_name: &str) -> Option<String>;
}

impl HeaderSource for [(String, String)] {
    fn header(&self, lower_name: &str) -> Option<String> {
        self.iter().find(|(k, _)| k.eq_ignore_ascii_case(lower_name)).map(|(_, v)| v.clone())
    }
}

impl HeaderSource for Vec<(String, String)> {
    fn header(&self, lower_name: &str) -> Option<String> {
        self.as_slice().header(lower_name)
    }
}

/// An authenticated delivery's metadata, from its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub shop: String,
    pub webhook_id: String,
    pub event_id: Option<String>,
    pub triggered_at: Option<String>,
    pub api_version: Option<String>,
    pub body_size: usize,
    /// The verified `X-Shopify-Hmac-Sha256` as hex: a keyed SHA-256 digest of the raw body,
    /// so identifying the body costs no second pass over it.
    pub body_hmac: String,
}

/// Checks one delivery in contract order: size (413), HMAC (401) before anything is read
/// from the body or stored, required headers (400), allowed shop (403).
pub fn check<H: HeaderSource + ?Sized>(
    headers: &H,
    body: &[u8],
    cfg: &WebhookConfig,
) -> Result<Delivery, Rejection> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Rejection::TooLarge { limit: MAX_BODY_BYTES });
    }
    let hmac = headers.header(HDR_HMAC).ok_or(Rejection::Unauthorized)?;
    // The previous secret (during a rotation) is only tried when the current one fails.
    let authentic = verify(cfg.secret.as_bytes(), body, &hmac)
        || cfg.previous_secret.as_deref().is_some_and(|p| verify(p.as_bytes(), body, &hmac));
    if !authentic {
        return Err(Rejection::Unauthorized);
    }
    let required = |name: &'static str, shown: &'static str| {
        headers
            .header(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or(Rejection::MissingHeader(shown))
    };
    let topic = required(HDR_TOPIC, "X-Shopify-Topic")?.to_ascii_lowercase();
    let shop = required(HDR_SHOP, "X-Shopify-Shop-Domain")?.to_ascii_lowercase();
    let webhook_id = required(HDR_WEBHOOK_ID, "X-Shopify-Webhook-Id")?;
    if !cfg.shop_allowed(&shop) {
        return Err(Rejection::ShopNotAllowed);
    }
    let optional = |name: &str| headers.header(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    Ok(Delivery {
        topic,
        shop,
        webhook_id,
        event_id: optional(HDR_EVENT_ID),
        triggered_at: optional(HDR_TRIGGERED_AT),
        api_version: optional(HDR_API_VERSION),
        body_size: body.len(),
        body_hmac: base64::engine::general_purpose::STANDARD
            .decode(hmac.trim())
            .map(hex::encode)
            .unwrap_or_default(),
    })
}

/// The topics orderlane acts on; everything else is recorded as `ignored`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    OrdersCreate,
    OrdersPaid,
    OrdersUpdated,
    OrdersCancelled,
    OrdersFulfilled,
    OrdersPartiallyFulfilled,
    OrdersRiskAssessmentChanged,
    /// Mandatory privacy webhooks: a customer's data request, and erasing a customer's or a
    /// whole shop's stored data.
    CustomersDataRequest,
    CustomersRedact,
    ShopRedact,
    /// A hold placed on, or released from, one of an order's fulfillment orders in Shopify
    /// (by staff, another app, or orderlane itself).
    FulfillmentOrdersPlacedOnHold,
    FulfillmentOrdersHoldReleased,
}

impl Topic {
    pub fn parse(topic: &str) -> Option<Topic> {
        Some(match topic {
            "orders/create" => Topic::OrdersCreate,
            "orders/paid" => Topic::OrdersPaid,
            "orders/updated" => Topic::OrdersUpdated,
            "orders/cancelled" => Topic::OrdersCancelled,
            "orders/fulfilled" => Topic::OrdersFulfilled,
            "orders/partially_fulfilled" => Topic::OrdersPartiallyFulfilled,
            "orders/risk_assessment_changed" => Topic::OrdersRiskAssessmentChanged,
            "customers/data_request" => Topic::CustomersDataRequest,
            "customers/redact" => Topic::CustomersRedact,
            "shop/redact" => Topic::ShopRedact,
            "fulfillment_orders/placed_on_hold" => Topic::FulfillmentOrdersPlacedOnHold,
            "fulfillment_orders/hold_released" => Topic::FulfillmentOrdersHoldReleased,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::OrdersCreate => "orders/create",
            Topic::OrdersPaid => "orders/paid",
            Topic::OrdersUpdated => "orders/updated",
            Topic::OrdersCancelled => "orders/cancelled",
            Topic::OrdersFulfilled => "orders/fulfilled",
            Topic::OrdersPartiallyFulfilled => "orders/partially_fulfilled",
            Topic::OrdersRiskAssessmentChanged => "orders/risk_assessment_changed",
            Topic::CustomersDataRequest => "customers/data_request",
            Topic::CustomersRedact => "customers/redact",
            Topic::ShopRedact => "shop/redact",
            Topic::FulfillmentOrdersPlacedOnHold => "fulfillment_orders/placed_on_hold",
            Topic::FulfillmentOrdersHoldReleased => "fulfillment_orders/hold_released",
        }
    }

    /// Topics whose body is an order (or names one) and feeds routing.
    pub fn is_order_event(self) -> bool {
        !matches!(
            self,
            Topic::CustomersDataRequest
                | Topic::CustomersRedact
                | Topic::ShopRedact
                | Topic::FulfillmentOrdersPlacedOnHold
                | Topic::FulfillmentOrdersHoldReleased
        )
    }
}

/// A Shopify numeric id kept as its exact decimal text. Shopify ids pass 2^53
/// (`820982911946154508` in its own sample), so they must never go through f64.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShopifyId(pub String);

impl ShopifyId {
    /// An id sent as text: `"123"`, or a GraphQL id `"gid://shopify/Order/123"`.
    pub fn from_text(v: &str) -> Option<ShopifyId> {
        let digits = v.rsplit('/').next().unwrap_or(v);
        (!digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| ShopifyId(digits.to_string()))
    }
}

impl<'de> Deserialize<'de> for ShopifyId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ShopifyId;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a positive integer id or its decimal string")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ShopifyId, E> {
                Ok(ShopifyId(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ShopifyId, E> {
                if v < 0 {
                    return Err(E::custom("negative id"));
                }
                Ok(ShopifyId(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<ShopifyId, E> {
                Err(E::custom("id is not an integer"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ShopifyId, E> {
                ShopifyId::from_text(v).ok_or_else(|| E::custom("id is not a decimal integer"))
            }
        }
        d.deserialize_any(V)
    }
}

impl serde::Serialize for ShopifyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl std::fmt::Display for ShopifyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn signed(body: &[u8], secret: &str) -> Vec<(String, String)> {
        hdrs(&[
            ("X-Shopify-Hmac-Sha256", &sign(secret.as_bytes(), body)),
            ("X-Shopify-Topic", "orders/create"),
            ("X-Shopify-Shop-Domain", "Demo.myshopify.com"),
            ("X-Shopify-Webhook-Id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"),
            ("X-Shopify-Triggered-At", "2026-11-27T10:00:00.000Z"),
        ])
    }

    fn cfg() -> WebhookConfig {
        WebhookConfig::new("hush", Some("old-hush"), "demo.myshopify.com, other.myshopify.com")
    }

    #[test]
    fn shopify_published_vectors() {
        assert_eq!(
            sign(b"test_secret_key", br#"{"foo": "bar"}"#),
            "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="
        );
        assert_eq!(sign(b"secret", b"foo=anything"), "yCGX/RrK4fcuNtr3ztk5tQGsOBjcAzHpGLdMUrbV8yI=");
        assert!(verify(
            b"test_secret_key",
            br#"{"foo": "bar"}"#,
            "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="
        ));
        // One byte of whitespace changes the MAC: the raw bytes are what is signed.
        assert!(!verify(
            b"test_secret_key",
            br#"{"foo":"bar"}"#,
            "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="
        ));
    }

    #[test]
    fn malformed_mac_headers_never_match() {
        let body = b"{}";
        let good = sign(b"k", body);
        assert!(!verify(b"k", body, "not base64!"));
        assert!(!verify(b"k", body, &good[..20]));
        assert!(!verify(b"k", body, ""));
        assert!(!verify(b"", body, &sign(b"", body)), "an unset secret authenticates nothing");
        assert!(verify(b"k", body, &format!(" {good} ")));
    }

    #[test]
    fn accepts_current_and_previous_secret() {
        let body = br#"{"id":1}"#;
        let d = check(&signed(body, "hush"), body, &cfg()).unwrap();
        assert_eq!(d.shop, "demo.myshopify.com");
        assert_eq!(d.topic, "orders/create");
        assert_eq!(d.triggered_at.as_deref(), Some("2026-11-27T10:00:00.000Z"));
        assert_eq!(d.event_id, None);
        assert_eq!(d.body_size, 8);
        let tag = base64::engine::general_purpose::STANDARD.decode(sign(b"hush", body)).unwrap_or_default();
        assert_eq!((d.body_hmac.len(), d.body_hmac.clone()), (64, hex::encode(tag)));
        assert!(check(&signed(body, "old-hush"), body, &cfg()).is_ok());
        assert_eq!(check(&signed(body, "wrong"), body, &cfg()), Err(Rejection::Unauthorized));
        let no_prev = WebhookConfig::new("hush", Some("  "), "");
        assert_eq!(check(&signed(body, "old-hush"), body, &no_prev), Err(Rejection::Unauthorized));
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let body = b"{}";
        let h: Vec<_> = signed(body, "hush").into_iter().map(|(k, v)| (k.to_uppercase(), v)).collect();
        assert!(check(&h, body, &cfg()).is_ok());
        let h: Vec<_> = signed(body, "hush").into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect();
        assert!(check(&h, body, &cfg()).is_ok());
    }

    #[test]
    fn hmac_is_checked_before_headers_and_shop() {
        let body = b"{}";
        // Unauthenticated requests learn nothing about which header is missing.
        let h = hdrs(&[("X-Shopify-Hmac-Sha256", "AAAA")]);
        assert_eq!(check(&h, body, &cfg()), Err(Rejection::Unauthorized));
        assert_eq!(check(&hdrs(&[]), body, &cfg()), Err(Rejection::Unauthorized));
        for missing in ["X-Shopify-Topic", "X-Shopify-Shop-Domain", "X-Shopify-Webhook-Id"] {
            let h: Vec<_> = signed(body, "hush").into_iter().filter(|(k, _)| k != missing).collect();
            let err = check(&h, body, &cfg()).unwrap_err();
            assert_eq!(err, Rejection::MissingHeader(missing));
            assert_eq!(err.status(), 400);
            let mut blank = signed(body, "hush");
            blank.iter_mut().filter(|(k, _)| k == missing).for_each(|(_, v)| *v = " ".into());
            assert_eq!(check(&blank, body, &cfg()).unwrap_err(), Rejection::MissingHeader(missing));
        }
        let mut h = signed(body, "hush");
        h.retain(|(k, _)| k != "X-Shopify-Shop-Domain");
        h.push(("x-shopify-shop-domain".into(), "evil.myshopify.com".into()));
        assert_eq!(check(&h, body, &cfg()), Err(Rejection::ShopNotAllowed));
        assert_eq!(Rejection::ShopNotAllowed.status(), 403);
        assert!(!WebhookConfig::new("s", None, " ").shop_allowed("any.myshopify.com"), "unset allows none");
        assert!(!WebhookConfig::new("s", None, " , ").shops_configured());
        assert!(WebhookConfig::new("s", None, "*").shop_allowed("any.myshopify.com"), "* allows any");
        assert!(WebhookConfig::new("s", None, "a.myshopify.com, *").shops_configured());
    }

    #[test]
    fn body_limit_edge() {
        let at_limit = vec![b' '; MAX_BODY_BYTES];
        assert!(check(&signed(&at_limit, "hush"), &at_limit, &cfg()).is_ok());
        let over = vec![b' '; MAX_BODY_BYTES + 1];
        let err = check(&signed(&over, "hush"), &over, &cfg()).unwrap_err();
        assert_eq!(err, Rejection::TooLarge { limit: MAX_BODY_BYTES });
        assert_eq!(err.status(), 413);
        assert_eq!(err.code(), "payload_too_large");
    }

    #[test]
    fn ids_stay_exact() {
        let id = |json: &str| serde_json::from_str::<ShopifyId>(json).map(|i| i.0);
        assert_eq!(id("820982911946154508").unwrap(), "820982911946154508");
        assert_eq!(id("18446744073709551615").unwrap(), "18446744073709551615");
        assert_eq!(id(r#""gid://shopify/Order/820982911946154508""#).unwrap(), "820982911946154508");
        assert_eq!(id(r#""115310627314723954""#).unwrap(), "115310627314723954");
        assert!(id("8.2e17").is_err(), "a float id has already lost digits");
        assert!(id("-1").is_err());
        assert!(id(r#""12a""#).is_err());
        assert!(id(r#""""#).is_err());
        assert!(id("null").is_err());
    }

    #[test]
    fn topics() {
        for t in [
            "orders/create",
            "orders/paid",
            "orders/updated",
            "orders/cancelled",
            "orders/fulfilled",
            "orders/partially_fulfilled",
            "orders/risk_assessment_changed",
            "customers/redact",
            "shop/redact",
        ] {
            assert_eq!(Topic::parse(t).map(Topic::as_str), Some(t));
        }
        assert_eq!(Topic::parse("products/create"), None);
    }
}
