//! `POST /webhooks/shopify`: authenticate, record durably, answer. Routing of the recorded
//! order happens in the same D1 batch as the delivery record.

use futures_util::StreamExt;
use worker::{Date, Env, Request, Response};

use super::api::{error, json, unavailable};
use super::config;
use super::context::Edge;
use super::ingest;
use super::store::{NewDelivery, StoreError};
use crate::core::privacy;
use crate::core::webhook::{self, Rejection, Topic, MAX_BODY_BYTES};

/// How long Shopify should wait before retrying when storage is down.
const RETRY_AFTER_SECS: u32 = 10;

struct Headers<'a>(&'a worker::Headers);

impl webhook::HeaderSource for Headers<'_> {
    fn header(&self, lower_name: &str) -> Option<String> {
        self.0.get(lower_name).ok().flatten()
    }
}

fn reject(r: Rejection) -> Response {
    error(r.status(), r.code(), &r.detail())
}

pub async fn handle(mut req: Request, env: &Env) -> Response {
    let Some(cfg) = config::webhook(env) else {
        worker::console_error!("SHOPIFY_WEBHOOK_SECRET is not set: refusing deliveries");
        return reject(Rejection::Unauthorized);
    };
    // Refuse a declared oversize body before reading it; an undeclared one while reading.
    let declared =
        req.headers().get("content-length").ok().flatten().and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return reject(Rejection::TooLarge { limit: MAX_BODY_BYTES });
    }
    // A declared length within the limit is what the runtime reads (HTTP framing bounds it):
    // one copy. Only a body without one is read as a stream and stopped at the limit.
    let read = match declared {
        Some(_) => req.bytes().await.map_err(|_| None),
        None => read_limited(&mut req, MAX_BODY_BYTES).await,
    };
    let body = match read {
        Ok(b) => b,
        Err(Some(r)) => return reject(r),
        Err(None) => return error(400, "unreadable_body", "the request body could not be read"),
    };
    let delivery = match webhook::check(&Headers(req.headers()), &body, cfg) {
        Ok(d) => d,
        Err(r) => {
            if r == Rejection::ShopNotAllowed && !cfg.shops_configured() {
                worker::console_error!(
                    "ALLOWED_SHOPS is empty: refusing every delivery (name the shops, or * for any)"
                );
            }
            return reject(r);
        }
    };
    let Some(edge) = Edge::new(env) else {
        worker::console_error!("D1 binding {} missing", config::DB);
        return unavailable(RETRY_AFTER_SECS);
    };
    let resp = match record(&edge, &delivery, &body).await {
        Ok(Recorded { status, review }) => {
            json(200, &serde_json::json!({ "status": status, "held_for_review": review }))
        }
        Err(StoreError::Conflict) => json(200, &serde_json::json!({ "status": "duplicate" })),
        Err(StoreError::Unavailable(e)) => {
            worker::console_error!("recording delivery failed: {e}");
            unavailable(RETRY_AFTER_SECS)
        }
    };
    with_cost(resp, &edge)
}

/// `Server-Timing` with what the delivery cost in storage round trips, e.g.
/// `d1;desc="1 batch, 6 statements", kv;desc="0 reads"`: visible in any HTTP client, and what
/// the tests hold the common path to. A write that shared its D1 call with other deliveries
/// (`edge::group`) adds `group;desc="5 deliveries"`.
fn with_cost(mut resp: Response, edge: &Edge) -> Response {
    let (trips, statements) = edge.store.cost();
    let plural = |n: u32, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut value = format!(
        "d1;desc=\"{}, {}\", kv;desc=\"{}\"",
        plural(trips, "batch", "batches"),
        plural(statements, "statement", "statements"),
        plural(edge.kv_reads.get(), "read", "reads"),
    );
    if edge.store.shared() > 1 {
        value.push_str(&format!(", group;desc=\"{} deliveries\"", edge.store.shared()));
    }
    let _ = resp.headers_mut().set("Server-Timing", &value);
    resp
}

/// Reads the body as it streams in and stops at `limit`: a body sent without a
/// `Content-Length` (chunked) is refused once it passes the limit, never buffered whole.
/// `Err(Some(413))` over the limit, `Err(None)` when it cannot be read.
async fn read_limited(req: &mut Request, limit: usize) -> Result<Vec<u8>, Option<Rejection>> {
    // No body at all reads as empty (its HMAC then fails).
    let Ok(mut stream) = req.stream() else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| None)?;
        if out.len() + chunk.len() > limit {
            return Err(Some(Rejection::TooLarge { limit }));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

struct Recorded {
    status: &'static str,
    review: bool,
}

async fn record(edge: &Edge, d: &webhook::Delivery, body: &[u8]) -> Result<Recorded, StoreError> {
    let store = &edge.store;
    // No look-up first: every write below carries the delivery's (shop, webhook id) insert, so
    // a repeat fails its whole batch on the unique key and is answered `duplicate`.
    let received_ms = Date::now().as_millis() as i64;
    let mut new = NewDelivery {
        delivery: d,
        received_ms,
        outcome: "accepted",
        detail: None,
        order_id: None,
        customer_id: None,
        body: None,
    };
    let Some(topic) = Topic::parse(&d.topic) else {
        new.outcome = "ignored";
        store.batch(store.record_delivery(&new)?).await?;
        return Ok(Recorded { status: "ignored", review: false });
    };
    if topic.is_order_event() {
        // The order is parsed once, by routing; a body it cannot read is recorded for review.
        return match ingest::record_and_route(edge, d, topic, body, received_ms, ingest::ACTOR).await? {
            ingest::Recorded::Duplicate => Err(StoreError::Conflict),
            ingest::Recorded::Accepted { review } => Ok(Recorded { status: "accepted", review }),
        };
    }
    if matches!(topic, Topic::FulfillmentOrdersPlacedOnHold | Topic::FulfillmentOrdersHoldReleased) {
        let placed = topic == Topic::FulfillmentOrdersPlacedOnHold;
        let r = super::shopify::hold_event(edge, d, placed, body, received_ms).await?;
        return Ok(Recorded { status: r.status, review: r.review });
    }
    // Privacy requests: record or erase, and keep no copy of the request body itself (it
    // carries the customer's email and phone).
    let mut extra = Vec::new();
    let unreadable = match topic {
        Topic::ShopRedact => {
            extra.extend(store.erase_shop(&d.shop)?);
            false
        }
        Topic::CustomersDataRequest => match privacy::parse_data_request(body) {
            Ok(r) => {
                extra.push(store.record_data_request(&d.shop, &d.webhook_id, &r, received_ms)?);
                false
            }
            Err(_) => true,
        },
        _ => match privacy::parse_redact(body) {
            Ok(r) => {
                let ids: Vec<String> = r.orders.into_iter().map(|i| i.0).collect();
                let cust = r.customer_id.map(|i| i.0).unwrap_or_default();
                extra.extend(store.erase_customer(&d.shop, &cust, &ids)?);
                false
            }
            Err(_) => true,
        },
    };
    if unreadable {
        new.outcome = "review";
        new.detail = Some("privacy request body could not be read");
    }
    let mut statements = store.record_delivery(&new)?;
    statements.extend(extra);
    store.batch(statements).await?;
    Ok(Recorded { status: "accepted", review: new.outcome == "review" })
}
