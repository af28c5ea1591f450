//! The document orderlane sends the warehouse, how it is signed, and the queue message
//! that triggers sending it.
//!
//! # The request
//!
//! `POST FULFILMENT_URL` with `Content-Type: application/json` and this body
//! ([`FulfilmentRequest`]; every id is a JSON string holding the exact decimal id, because
//! Shopify ids pass 2^53 and would lose digits as JSON numbers in many parsers):
//!
//! ```json
//! {
//!   "kind": "submit",
//!   "order_id": "820982911946154508",
//!   "order_name": "#1001",
//!   "shop": "demo.myshopify.com",
//!   "lane": "eu-retail",
//!   "rules_version": "2026-11-20.1",
//!   "submission": 1,
//!   "lines": [
//!     { "sku": "TEE-BLK-M", "quantity": 2, "title": "T-shirt", "line_item_id": "866550311766439020" },
//!     { "sku": null, "quantity": 1, "title": "Gift wrap", "line_item_id": "141249953214522974" }
//!   ],
//!   "shipping_address": {
//!     "name": "Ada Lovelace", "address1": "12 Example Street", "address2": null,
//!     "city": "Dublin", "province_code": null, "zip": "D02 XY45",
//!     "country_code": "IE", "phone": null
//!   },
//!   "shipping_lines": [ { "title": "Standard", "code": "STD" } ]
//! }
//! ```
//!
//! - `submission` counts submissions of this order, from 1; it grows only when an operator
//!   sends again an order the warehouse refused (or answered out of stock). Retries repeat the
//!   same bytes under the same key: the document is built when the round's first attempt is
//!   claimed and kept with the order until the round ends, so an edit in Shopify between two
//!   attempts does not change them (the order's stock claim stays what that document asks for).
//!   When the order leaves ready and comes back (a hold and a release, a re-drive after
//!   transient failures), a new round starts: same key, fresh schedule, the document rebuilt
//!   from the order's latest version.
//!   The warehouse must treat a repeated key as the same order whatever the body says.
//! - `sku`, `code` and every address field may be `null`; `shipping_address` is `null` for
//!   orders that need no shipping. Every key is always present. Receivers should ignore
//!   keys they do not know, so fields can be added.
//!
//! # Headers
//!
//! - `Idempotency-Key: orderlane:<shop>:<order_id>:<submission>` ([`idempotency_key`]) —
//!   the same for every retry of a submission. The warehouse must treat a repeated key as
//!   the same order (answer 2xx again, do not ship twice).
//! - `X-Orderlane-Signature: sha256=<hex>` ([`signature`]) — the lowercase hex
//!   HMAC-SHA256 of the exact body bytes under `FULFILMENT_SECRET`. To verify, compute the
//!   HMAC over the raw body as received (before any JSON parsing or re-encoding) and compare
//!   in constant time; [`verify_signature`] does exactly that.
//!
//! The warehouse answers 2xx when it has accepted the order, `409` with a body containing
//! `out_of_stock` when stock cannot cover it, other 4xx when it refuses it for good, and
//! 5xx/429 (optionally with `Retry-After`) when orderlane should try again (see `retry`).
//!
//! # The cancel request
//!
//! When an order the warehouse accepted is cancelled in Shopify (or the warehouse accepts an
//! attempt that was in flight when the order was cancelled), orderlane POSTs the same
//! `FULFILMENT_URL`, signed the same way, with [`CancelRequest`]:
//!
//! ```json
//! { "kind": "cancel", "order_id": "820982911946154508", "order_name": "#1001",
//!   "shop": "demo.myshopify.com", "lane": "eu-retail", "submission": 1,
//!   "reason": "cancelled in Shopify" }
//! ```
//!
//! Its `Idempotency-Key` is `orderlane:<shop>:<order_id>:<submission>:cancel`
//! ([`cancel_idempotency_key`]). The warehouse answers 2xx when it has cancelled (the units
//! come back to orderlane's stock), `409` with a body containing `already_shipped` when it is
//! too late (the order goes to `hold/fulfilment` for a person), other 4xx when it refuses
//! (dead letter `cancel_refused`, `hold/fulfilment`); transient answers are retried on the
//! submission schedule.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};

pub const HDR_IDEMPOTENCY_KEY: &str = "Idempotency-Key";
pub const HDR_SIGNATURE: &str = "X-Orderlane-Signature";
/// Prefix of the signature header value.
pub const SIGNATURE_PREFIX: &str = "sha256=";

/// The order as the warehouse receives it. See the module documentation for the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfilmentRequest {
    /// Always `submit`; tells it apart from a [`CancelRequest`] on the same URL.
    pub kind: RequestKind,
    /// Shopify order id, exact decimal text.
    pub order_id: String,
    /// Shopify order name, e.g. `#1001`.
    pub order_name: String,
    /// The shop domain, e.g. `demo.myshopify.com`.
    pub shop: String,
    /// The lane (segment) that routed the order.
    pub lane: String,
    /// The rules version that made the routing decision.
    pub rules_version: String,
    /// Which submission of this order this is, from 1.
    pub submission: u32,
    pub lines: Vec<FulfilmentLine>,
    pub shipping_address: Option<ShippingAddress>,
    pub shipping_lines: Vec<ShippingLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfilmentLine {
    pub sku: Option<String>,
    pub quantity: i64,
    pub title: String,
    /// Shopify line item id, exact decimal text.
    pub line_item_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingAddress {
    pub name: Option<String>,
    pub address1: Option<String>,
    pub address2: Option<String>,
    pub city: Option<String>,
    pub province_code: Option<String>,
    pub zip: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country_code: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingLine {
    pub title: String,
    pub code: Option<String>,
}

/// Which request a warehouse call is, and which queue message carries it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    #[default]
    Submit,
    Cancel,
}

/// What the document is built from besides the order body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentMeta<'a> {
    pub shop: &'a str,
    pub order_id: &'a str,
    /// The stored order name, preferred over the body's.
    pub order_name: Option<&'a str>,
    pub lane: &'a str,
    pub rules_version: &'a str,
    pub submission: u32,
}

impl DocumentMeta<'_> {
    /// The submission's `Idempotency-Key`.
    pub fn idempotency_key(&self) -> String {
        idempotency_key(self.shop, self.order_id, self.submission)
    }
}

impl FulfilmentRequest {
    /// The warehouse document for an order: the lines still to ship and where to.
    pub fn from_order(order: &super::order::Order, meta: &DocumentMeta<'_>) -> FulfilmentRequest {
        let lines = order
            .lines_to_ship()
            .map(|l| FulfilmentLine {
                sku: l.sku.clone(),
                quantity: l.open_quantity(),
                title: l.title.clone(),
                line_item_id: l.id.as_ref().map(|i| i.0.clone()).unwrap_or_default(),
            })
            .collect();
        let shipping_address = order.shipping_address.as_ref().map(|a| ShippingAddress {
            name: a.name.clone().or_else(|| {
                let full = [a.first_name.as_deref(), a.last_name.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                (!full.is_empty()).then_some(full)
            }),
            address1: a.address1.clone(),
            address2: a.address2.clone(),
            city: a.city.clone(),
            province_code: a.province_code.clone(),
            zip: a.zip.clone(),
            country_code: a.country_code.clone(),
            phone: None,
        });
        let shipping_lines = order
            .shipping_lines
            .iter()
            .map(|s| ShippingLine { title: s.title.clone().unwrap_or_default(), code: s.code.clone() })
            .collect();
        FulfilmentRequest {
            kind: RequestKind::Submit,
            order_id: meta.order_id.to_string(),
            order_name: meta.order_name.map(str::to_string).unwrap_or_else(|| order.name.clone()),
            shop: meta.shop.to_string(),
            lane: meta.lane.to_string(),
            rules_version: meta.rules_version.to_string(),
            submission: meta.submission,
            lines,
            shipping_address,
            shipping_lines,
        }
    }

    /// The exact bytes to POST and to sign. Encoding these plain structs cannot fail in
    /// practice; an error is still returned rather than hidden.
    pub fn to_body(&self) -> Result<Vec<u8>, FulfilmentError> {
        serde_json::to_vec(self).map_err(|e| FulfilmentError::Encode(e.to_string()))
    }

    /// The request's `Idempotency-Key`.
    pub fn idempotency_key(&self) -> String {
        idempotency_key(&self.shop, &self.order_id, self.submission)
    }

    /// Body plus the headers to send with it, signed under `secret`.
    pub fn signed(&self, secret: &[u8]) -> Result<SignedRequest, FulfilmentError> {
        Ok(SignedRequest::sign(self.to_body()?, self.idempotency_key(), secret))
    }
}

/// What the edge sends: [`HDR_IDEMPOTENCY_KEY`] = `idempotency_key`,
/// [`HDR_SIGNATURE`] = `signature`, and `body` byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub idempotency_key: String,
    pub signature: String,
    pub body: Vec<u8>,
}

impl SignedRequest {
    /// `body` as it is, signed under `secret`, sent under `idempotency_key`.
    pub fn sign(body: Vec<u8>, idempotency_key: String, secret: &[u8]) -> SignedRequest {
        SignedRequest { idempotency_key, signature: signature(secret, &body), body }
    }

    /// The request headers, in send order.
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("Content-Type", "application/json".to_string()),
            (HDR_IDEMPOTENCY_KEY, self.idempotency_key.clone()),
            (HDR_SIGNATURE, self.signature.clone()),
        ]
    }
}

/// `orderlane:{shop}:{order_id}:{submission}` — stable across retries of one submission,
/// different for each new submission of the same order.
pub fn idempotency_key(shop: &str, order_id: &str, submission: u32) -> String {
    format!("orderlane:{shop}:{order_id}:{submission}")
}

/// `orderlane:{shop}:{order_id}:{submission}:cancel` — the cancel request's own key.
pub fn cancel_idempotency_key(shop: &str, order_id: &str, submission: u32) -> String {
    format!("orderlane:{shop}:{order_id}:{submission}:cancel")
}

/// Asks the warehouse to cancel an order it accepted. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRequest {
    /// Always `cancel`.
    pub kind: RequestKind,
    pub order_id: String,
    pub order_name: String,
    pub shop: String,
    pub lane: String,
    /// The accepted submission to cancel.
    pub submission: u32,
    pub reason: String,
}

impl CancelRequest {
    pub fn new(meta: &DocumentMeta<'_>) -> CancelRequest {
        CancelRequest {
            kind: RequestKind::Cancel,
            order_id: meta.order_id.to_string(),
            order_name: meta.order_name.unwrap_or_default().to_string(),
            shop: meta.shop.to_string(),
            lane: meta.lane.to_string(),
            submission: meta.submission,
            reason: "cancelled in Shopify".to_string(),
        }
    }

    /// Body and headers, signed under `secret` like a submission.
    pub fn signed(&self, secret: &[u8]) -> Result<SignedRequest, FulfilmentError> {
        let body = serde_json::to_vec(self).map_err(|e| FulfilmentError::Encode(e.to_string()))?;
        let signature = signature(secret, &body);
        Ok(SignedRequest {
            idempotency_key: cancel_idempotency_key(&self.shop, &self.order_id, self.submission),
            signature,
            body,
        })
    }
}

fn new_mac(secret: &[u8]) -> Hmac<sha2::Sha256> {
    match Hmac::<sha2::Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    }
}

/// `sha256=` followed by the lowercase hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = new_mac(secret);
    mac.update(body);
    format!("{SIGNATURE_PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

/// The receiver's check: true when `header` is `sha256=<hex>` (hex in either case,
/// surrounding whitespace ignored) and the hex is the HMAC of `body` under `secret`.
/// Compared in constant time; an empty secret verifies nothing.
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_part) = header.trim().strip_prefix(SIGNATURE_PREFIX) else {
        return false;
    };
    let Ok(given) = hex::decode(hex_part) else {
        return false;
    };
    if secret.is_empty() || given.len() != 32 {
        return false;
    }
    let mut mac = new_mac(secret);
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// The fulfilment queue's message: which order to submit, and which attempt this is.
/// Never the order itself — the consumer re-reads the `orders` row.
///
/// On the queue it is a JSON *string* (the queue's JSON carriage cannot hold integers past
/// 2^53), e.g. `{"shop":"demo.myshopify.com","order_id":"820982911946154508","attempt":1,"submission":1}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMessage {
    pub shop: String,
    /// Exact decimal order id.
    pub order_id: String,
    /// 1-based number of the attempt this delivery makes (see `retry::next_step`).
    pub attempt: u32,
    /// Which submission of the order, from 1 (part of the idempotency key).
    pub submission: u32,
    /// What to send: the order (absent in the JSON) or a cancel request.
    #[serde(default)]
    pub kind: RequestKind,
}

impl QueueMessage {
    /// Attempt `attempt` (counted across the whole submission) of a submission.
    pub fn submit(shop: &str, order_id: &str, submission: u32, attempt: u32) -> Self {
        QueueMessage {
            shop: shop.to_string(),
            order_id: order_id.to_string(),
            attempt: attempt.max(1),
            submission,
            kind: RequestKind::Submit,
        }
    }

    /// The first attempt of a submission.
    pub fn first(shop: &str, order_id: &str, submission: u32) -> Self {
        QueueMessage::submit(shop, order_id, submission, 1)
    }

    /// Attempt `attempt` of the cancel request for `submission`.
    pub fn cancel(shop: &str, order_id: &str, submission: u32, attempt: u32) -> Self {
        QueueMessage {
            kind: RequestKind::Cancel,
            ..QueueMessage::submit(shop, order_id, submission, attempt)
        }
    }

    /// The same submission, at attempt `next_attempt` (from `retry::Step::RetryAfter`).
    pub fn retry(&self, next_attempt: u32) -> Self {
        QueueMessage { attempt: next_attempt, ..self.clone() }
    }

    pub fn idempotency_key(&self) -> String {
        idempotency_key(&self.shop, &self.order_id, self.submission)
    }

    /// The message as the JSON text the queue carries.
    pub fn to_json(&self) -> String {
        // Strings are escaped through `Value`, whose `Display` cannot fail; the key order is
        // fixed here rather than left to serde_json's map features.
        let text = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let kind = match self.kind {
            RequestKind::Submit => "",
            RequestKind::Cancel => r#","kind":"cancel""#,
        };
        format!(
            r#"{{"shop":{},"order_id":{},"attempt":{},"submission":{}{kind}}}"#,
            text(&self.shop),
            text(&self.order_id),
            self.attempt,
            self.submission
        )
    }

    /// Reads a message body. Unknown keys are ignored (newer producers may add some);
    /// `order_id` must be a JSON string of decimal digits (a number is refused, since it
    /// may already have lost digits), `shop` non-empty, `attempt` and `submission` ≥ 1.
    pub fn from_json(text: &str) -> Result<Self, QueueMessageError> {
        let m: QueueMessage =
            serde_json::from_str(text).map_err(|e| QueueMessageError::Json(e.to_string()))?;
        if m.shop.trim().is_empty() {
            return Err(QueueMessageError::Invalid("shop is empty"));
        }
        if m.order_id.is_empty() || m.order_id.len() > 20 || !m.order_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(QueueMessageError::Invalid("order_id is not a decimal id"));
        }
        if m.attempt == 0 {
            return Err(QueueMessageError::Invalid("attempt must be at least 1"));
        }
        if m.submission == 0 {
            return Err(QueueMessageError::Invalid("submission must be at least 1"));
        }
        Ok(m)
    }
}

/// Why a queue message body was not a [`QueueMessage`]. Such a message can never succeed;
/// the consumer acknowledges it and records it for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueMessageError {
    /// Not JSON, or a key missing or of the wrong type.
    Json(String),
    /// Well-formed JSON with an unusable value.
    Invalid(&'static str),
}

impl std::fmt::Display for QueueMessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueMessageError::Json(e) => write!(f, "queue message is not valid JSON: {e}"),
            QueueMessageError::Invalid(why) => write!(f, "queue message is invalid: {why}"),
        }
    }
}

impl std::error::Error for QueueMessageError {}

/// A fulfilment document could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FulfilmentError {
    Encode(String),
}

impl std::fmt::Display for FulfilmentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FulfilmentError::Encode(e) => write!(f, "cannot encode fulfilment request: {e}"),
        }
    }
}

impl std::error::Error for FulfilmentError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn sample() -> FulfilmentRequest {
        FulfilmentRequest {
            kind: RequestKind::Submit,
            order_id: "820982911946154508".into(),
            order_name: "#1001".into(),
            shop: "demo.myshopify.com".into(),
            lane: "eu-retail".into(),
            rules_version: "2026-11-20.1".into(),
            submission: 1,
            lines: vec![
                FulfilmentLine {
                    sku: Some("TEE-BLK-M".into()),
                    quantity: 2,
                    title: "T-shirt".into(),
                    line_item_id: "866550311766439020".into(),
                },
                FulfilmentLine {
                    sku: None,
                    quantity: 1,
                    title: "Gift wrap".into(),
                    line_item_id: "141249953214522974".into(),
                },
            ],
            shipping_address: Some(ShippingAddress {
                name: Some("Ada Lovelace".into()),
                address1: Some("12 Example Street".into()),
                city: Some("Dublin".into()),
                zip: Some("D02 XY45".into()),
                country_code: Some("IE".into()),
                ..Default::default()
            }),
            shipping_lines: vec![ShippingLine { title: "Standard".into(), code: Some("STD".into()) }],
        }
    }

    #[test]
    fn document_shape_matches_the_documentation() {
        let body = sample().to_body().unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({
                "kind": "submit",
                "order_id": "820982911946154508",
                "order_name": "#1001",
                "shop": "demo.myshopify.com",
                "lane": "eu-retail",
                "rules_version": "2026-11-20.1",
                "submission": 1,
                "lines": [
                    { "sku": "TEE-BLK-M", "quantity": 2, "title": "T-shirt", "line_item_id": "866550311766439020" },
                    { "sku": null, "quantity": 1, "title": "Gift wrap", "line_item_id": "141249953214522974" }
                ],
                "shipping_address": {
                    "name": "Ada Lovelace", "address1": "12 Example Street", "address2": null,
                    "city": "Dublin", "province_code": null, "zip": "D02 XY45",
                    "country_code": "IE", "phone": null
                },
                "shipping_lines": [ { "title": "Standard", "code": "STD" } ]
            })
        );
        // Ids travel as strings, digit for digit.
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains(r#""order_id":"820982911946154508""#));
        let back: FulfilmentRequest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, sample());
        let none = FulfilmentRequest { shipping_address: None, ..sample() };
        let v: Value = serde_json::from_slice(&none.to_body().unwrap()).unwrap();
        assert_eq!(v["shipping_address"], Value::Null);
    }

    #[test]
    fn idempotency_key_is_stable_per_submission() {
        let r = sample();
        assert_eq!(r.idempotency_key(), "orderlane:demo.myshopify.com:820982911946154508:1");
        assert_eq!(r.idempotency_key(), idempotency_key("demo.myshopify.com", "820982911946154508", 1));
        let again = FulfilmentRequest { submission: 2, ..sample() };
        assert_ne!(again.idempotency_key(), r.idempotency_key());
        let m = QueueMessage::first("demo.myshopify.com", "820982911946154508", 1);
        assert_eq!(m.retry(5).idempotency_key(), r.idempotency_key(), "retries reuse the key");
        // Same order, same submission: same bytes, same signature, retry after retry.
        assert_eq!(r.signed(b"k").unwrap(), sample().signed(b"k").unwrap());
    }

    #[test]
    fn cancel_request_shape_key_and_queue_message() {
        let meta = DocumentMeta {
            shop: "demo.myshopify.com",
            order_id: "820982911946154508",
            order_name: Some("#1001"),
            lane: "eu-retail",
            rules_version: "v",
            submission: 2,
        };
        let signed = CancelRequest::new(&meta).signed(b"k").unwrap();
        let v: Value = serde_json::from_slice(&signed.body).unwrap();
        assert_eq!(
            v,
            json!({ "kind": "cancel", "order_id": "820982911946154508", "order_name": "#1001",
                    "shop": "demo.myshopify.com", "lane": "eu-retail", "submission": 2,
                    "reason": "cancelled in Shopify" })
        );
        assert_eq!(signed.idempotency_key, "orderlane:demo.myshopify.com:820982911946154508:2:cancel");
        assert!(verify_signature(b"k", &signed.body, &signed.signature));
        let m = QueueMessage::cancel("demo.myshopify.com", "820982911946154508", 2, 1);
        assert_eq!(QueueMessage::from_json(&m.to_json()).unwrap(), m);
        assert!(m.to_json().ends_with(r#","kind":"cancel"}"#));
        // Messages from before the field existed read as submissions.
        let old =
            QueueMessage::from_json(r#"{"shop":"s","order_id":"1","attempt":1,"submission":1}"#).unwrap();
        assert_eq!(old.kind, RequestKind::Submit);
    }

    #[test]
    fn document_from_the_order_body() {
        let order = crate::core::order::parse_order(crate::core::order::tests::FIXTURE).unwrap();
        let meta = DocumentMeta {
            shop: "demo.myshopify.com",
            order_id: "820982911946154508",
            order_name: None,
            lane: "default",
            rules_version: "v",
            submission: 1,
        };
        let doc = FulfilmentRequest::from_order(&order, &meta);
        assert_eq!(doc.order_name, order.name);
        assert_eq!(doc.lines.len(), order.lines_to_ship().count());
        assert!(doc.lines.iter().all(|l| l.quantity > 0));
        // The same body gives the same bytes: retries repeat them.
        assert_eq!(doc.to_body().unwrap(), FulfilmentRequest::from_order(&order, &meta).to_body().unwrap());
    }

    #[test]
    fn signature_known_vector_and_verification() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let sig = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert!(verify_signature(b"Jefe", b"what do ya want for nothing?", &sig));
        assert!(verify_signature(
            b"Jefe",
            b"what do ya want for nothing?",
            &sig.to_uppercase().replace("SHA256=", "sha256=")
        ));
        assert!(verify_signature(b"Jefe", b"what do ya want for nothing?", &format!(" {sig}\n")));
        assert!(!verify_signature(b"Jefe", b"what do ya want for nothing!", &sig), "body changed");
        assert!(!verify_signature(b"jefe", b"what do ya want for nothing?", &sig), "secret changed");
        assert!(
            !verify_signature(b"Jefe", b"what do ya want for nothing?", &sig["sha256=".len()..]),
            "no prefix"
        );
        assert!(!verify_signature(b"Jefe", b"what do ya want for nothing?", &sig[..40]), "truncated");
        assert!(!verify_signature(b"Jefe", b"what do ya want for nothing?", "sha256=zz"));
        assert!(!verify_signature(b"Jefe", b"what do ya want for nothing?", ""));
        assert!(!verify_signature(b"", b"x", &signature(b"", b"x")), "an unset secret verifies nothing");
    }

    #[test]
    fn signed_request_covers_the_exact_body() {
        let s = sample().signed(b"fulfil-secret").unwrap();
        assert!(verify_signature(b"fulfil-secret", &s.body, &s.signature));
        assert_eq!(s.body, sample().to_body().unwrap());
        // Re-encoding the JSON differently breaks the signature: receivers verify raw bytes.
        let v: Value = serde_json::from_slice(&s.body).unwrap();
        let pretty = serde_json::to_vec_pretty(&v).unwrap();
        assert!(!verify_signature(b"fulfil-secret", &pretty, &s.signature));
        let h = s.headers();
        assert_eq!(h[0], ("Content-Type", "application/json".to_string()));
        assert_eq!(h[1].0, "Idempotency-Key");
        assert_eq!(h[1].1, "orderlane:demo.myshopify.com:820982911946154508:1");
        assert_eq!(h[2].0, "X-Orderlane-Signature");
        assert!(h[2].1.starts_with("sha256=") && h[2].1.len() == 7 + 64);
    }

    #[test]
    fn queue_message_round_trips_as_a_string() {
        let m = QueueMessage::first("demo.myshopify.com", "18446744073709551615", 2);
        let text = m.to_json();
        assert_eq!(
            text,
            r#"{"shop":"demo.myshopify.com","order_id":"18446744073709551615","attempt":1,"submission":2}"#
        );
        assert_eq!(QueueMessage::from_json(&text), Ok(m.clone()));
        let r = m.retry(3);
        assert_eq!(r.attempt, 3);
        assert_eq!(QueueMessage::from_json(&r.to_json()), Ok(r));
        let odd = QueueMessage::first("a\"b\\c.myshopify.com", "1", 1);
        assert_eq!(QueueMessage::from_json(&odd.to_json()), Ok(odd), "strings are escaped");
        // Unknown keys are tolerated.
        let extra = r#"{"shop":"s.myshopify.com","order_id":"1","attempt":1,"submission":1,"v":2}"#;
        assert!(QueueMessage::from_json(extra).is_ok());
    }

    #[test]
    fn queue_message_rejects_bad_bodies() {
        let json_err = |t: &str| matches!(QueueMessage::from_json(t), Err(QueueMessageError::Json(_)));
        assert!(json_err("not json"));
        assert!(json_err(""));
        assert!(json_err(r#"{"shop":"s","attempt":1,"submission":1}"#), "order_id missing");
        assert!(
            json_err(r#"{"shop":"s","order_id":820982911946154508,"attempt":1,"submission":1}"#),
            "numeric ids are refused"
        );
        assert!(json_err(r#"{"shop":"s","order_id":"1","attempt":-1,"submission":1}"#));
        assert!(json_err(r#""{\"shop\":\"s\"}""#), "a JSON string, not an object");
        let invalid = |t: &str| QueueMessage::from_json(t).unwrap_err();
        assert_eq!(
            invalid(r#"{"shop":" ","order_id":"1","attempt":1,"submission":1}"#),
            QueueMessageError::Invalid("shop is empty")
        );
        for id in ["", "12a", "gid://shopify/Order/1", "-1", "123456789012345678901"] {
            let t = format!(r#"{{"shop":"s","order_id":"{id}","attempt":1,"submission":1}}"#);
            assert_eq!(invalid(&t), QueueMessageError::Invalid("order_id is not a decimal id"), "{id}");
        }
        assert_eq!(
            invalid(r#"{"shop":"s","order_id":"1","attempt":0,"submission":1}"#),
            QueueMessageError::Invalid("attempt must be at least 1")
        );
        assert_eq!(
            invalid(r#"{"shop":"s","order_id":"1","attempt":1,"submission":0}"#),
            QueueMessageError::Invalid("submission must be at least 1")
        );
        assert!(invalid("{").to_string().starts_with("queue message is not valid JSON"));
    }
}
