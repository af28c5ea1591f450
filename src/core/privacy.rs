//! Shopify's mandatory privacy topics, read from their bodies.
//!
//! - `customers/data_request`: a customer asked the merchant for their data. Orderlane records
//!   the request (request id, customer id, orders named) and shows the merchant what it holds;
//!   the merchant answers the customer within 30 days.
//! - `customers/redact`, `shop/redact`: erase (the erasure itself is the edge's).
//!
//! Only ids are kept from these bodies: they also carry the customer's email and phone.

use serde::Deserialize;

use super::order::PayloadError;
use super::webhook::ShopifyId;

/// The fields read from a `customers/data_request` body (dotted paths); nothing else is kept.
pub const DATA_REQUEST_KEYS: &[&str] = &["customer.id", "orders_requested", "data_request.id"];
/// The fields read from a `customers/redact` body.
pub const REDACT_KEYS: &[&str] = &["customer.id", "orders_to_redact"];

/// How long the merchant has to answer a data request.
pub const DATA_REQUEST_DUE_MS: i64 = 30 * 24 * 3_600_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRequest {
    /// Shopify's `data_request.id`, when sent.
    pub request_id: Option<String>,
    pub customer_id: Option<ShopifyId>,
    pub orders_requested: Vec<ShopifyId>,
}

/// The body of `customers/redact` or `customers/data_request`: the ids in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRequest {
    pub customer_id: Option<ShopifyId>,
    /// `orders_to_redact` or `orders_requested`.
    pub orders: Vec<ShopifyId>,
}

#[derive(Deserialize)]
struct Body {
    customer: Option<Customer>,
    #[serde(default)]
    orders_to_redact: Vec<ShopifyId>,
    #[serde(default)]
    orders_requested: Vec<ShopifyId>,
    data_request: Option<RequestId>,
}

#[derive(Deserialize)]
struct Customer {
    id: Option<ShopifyId>,
}

#[derive(Deserialize)]
struct RequestId {
    id: Option<ShopifyId>,
}

fn body(b: &[u8]) -> Result<Body, PayloadError> {
    serde_json::from_slice(b).map_err(|_| PayloadError::InvalidJson)
}

/// Reads a `customers/data_request` body. A body naming neither a customer nor an order
/// is an error: there is nothing to look up.
pub fn parse_data_request(b: &[u8]) -> Result<DataRequest, PayloadError> {
    let b = body(b)?;
    let customer_id = b.customer.and_then(|c| c.id);
    if customer_id.is_none() && b.orders_requested.is_empty() {
        return Err(PayloadError::MissingField("customer.id"));
    }
    Ok(DataRequest {
        request_id: b.data_request.and_then(|r| r.id).map(|i| i.0),
        customer_id,
        orders_requested: b.orders_requested,
    })
}

/// Reads a `customers/redact` body.
pub fn parse_redact(b: &[u8]) -> Result<CustomerRequest, PayloadError> {
    let b = body(b)?;
    Ok(CustomerRequest { customer_id: b.customer.and_then(|c| c.id), orders: b.orders_to_redact })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = r#"{"shop_id":954889,"shop_domain":"s.myshopify.com","orders_requested":[299938,280263],
        "customer":{"id":191167,"email":"john@example.com","phone":"555-625-1199"},"data_request":{"id":9999}}"#;

    #[test]
    fn data_request_keeps_ids_only() {
        let r = parse_data_request(REQUEST.as_bytes()).unwrap();
        assert_eq!(r.request_id.as_deref(), Some("9999"));
        assert_eq!(r.customer_id, Some(ShopifyId("191167".into())));
        assert_eq!(r.orders_requested, vec![ShopifyId("299938".into()), ShopifyId("280263".into())]);
        assert_eq!(parse_data_request(b"{}"), Err(PayloadError::MissingField("customer.id")));
        assert_eq!(parse_data_request(b"nope"), Err(PayloadError::InvalidJson));
    }

    #[test]
    fn only_the_listed_keys_are_read() {
        let bare =
            r#"{"orders_requested":[299938,280263],"customer":{"id":191167},"data_request":{"id":9999}}"#;
        assert_eq!(parse_data_request(REQUEST.as_bytes()), parse_data_request(bare.as_bytes()));
        let full = r#"{"shop_id":1,"customer":{"id":5,"email":"a@b.c","phone":"1"},"orders_to_redact":[1]}"#;
        assert_eq!(
            parse_redact(full.as_bytes()),
            parse_redact(br#"{"customer":{"id":5},"orders_to_redact":[1]}"#)
        );
        for k in DATA_REQUEST_KEYS.iter().chain(REDACT_KEYS) {
            let top = k.split('.').next().unwrap();
            assert!(REQUEST.contains(&format!("\"{top}\"")) || full.contains(&format!("\"{top}\"")), "{k}");
        }
    }

    #[test]
    fn redact_reads_customer_and_orders() {
        let r = parse_redact(br#"{"customer":{"id":"191167"},"orders_to_redact":[1,2]}"#).unwrap();
        assert_eq!(r.customer_id, Some(ShopifyId("191167".into())));
        assert_eq!(r.orders.len(), 2);
        assert_eq!(parse_redact(b"{}").unwrap(), CustomerRequest { customer_id: None, orders: vec![] });
    }
}
