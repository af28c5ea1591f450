//! Order-level glue between stored rows and the pure core.

use super::store::OrderRow;
use crate::core::fulfilment::{FulfilmentLine, FulfilmentRequest, ShippingAddress, ShippingLine};
use crate::core::order::parse_order;

/// The warehouse document for a ready order, from its stored body.
pub fn fulfilment_request(row: &OrderRow, body: &[u8]) -> Result<FulfilmentRequest, String> {
    let order = parse_order(body).map_err(|e| format!("stored order unreadable: {}", e.code()))?;
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
    Ok(FulfilmentRequest {
        order_id: row.order_id.clone(),
        order_name: row.order_name.clone().unwrap_or(order.name),
        shop: row.shop.clone(),
        lane: row.segment.clone(),
        rules_version: row.rules_version.clone(),
        submission: u32::try_from(row.submission).unwrap_or(1),
        lines,
        shipping_address,
        shipping_lines,
    })
}
