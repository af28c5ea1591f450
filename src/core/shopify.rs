//! Shopify's GraphQL Admin API as orderlane uses it, without I/O: the pinned version, the
//! fixed operations, how an answer is classified (data, throttled, transient, permanent),
//! what a hold mirror must change on an order's fulfillment orders, and how an order listed
//! by the API becomes the same webhook-shaped body routing reads.

use serde_json::{json, Map, Value};

use super::order::PayloadError;
use super::types::{Reason, State};

/// The Admin API version every call names (and `shopify.app.toml` subscribes with).
pub const API_VERSION: &str = "2025-10";
/// The `handle` of every hold orderlane places: its own holds are told apart from staff's and
/// other apps' by it, and Shopify refuses a second hold with the same handle.
pub const HOLD_HANDLE: &str = "orderlane";
/// Shopify's limit on `reasonNotes` is generous; the explanation is cut to stay readable.
const NOTES_MAX: usize = 255;
/// The longest wait a throttled answer is honoured with before the call is retried.
pub const MAX_THROTTLE_WAIT_SECS: u32 = 60;

/// The order topics and the fulfillment-order hold topics orderlane needs subscribed, as the
/// API's `WebhookSubscriptionTopic` names them. The compliance topics are app configuration,
/// not subscriptions, and are not listed by the API.
pub const NEEDED_TOPICS: &[&str] = &[
    "ORDERS_CREATE",
    "ORDERS_UPDATED",
    "ORDERS_PAID",
    "ORDERS_CANCELLED",
    "ORDERS_FULFILLED",
    "ORDERS_PARTIALLY_FULFILLED",
    "ORDERS_RISK_ASSESSMENT_CHANGED",
    "FULFILLMENT_ORDERS_PLACED_ON_HOLD",
    "FULFILLMENT_ORDERS_HOLD_RELEASED",
];

/// The webhook topic (`orders/create`) of an API topic name (`ORDERS_CREATE`).
pub fn webhook_topic(api_topic: &str) -> String {
    let lower = api_topic.to_ascii_lowercase();
    for prefix in ["fulfillment_orders_", "orders_"] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            return format!("{}/{rest}", prefix.trim_end_matches('_'));
        }
    }
    lower
}

pub const Q_FULFILLMENT_ORDERS: &str = "query OrderlaneFulfillmentOrders($id: ID!) { order(id: $id) { id fulfillmentOrders(first: 20) { nodes { id status fulfillmentHolds { id handle reason heldByRequestingApp } } } } }";
pub const M_HOLD: &str = "mutation OrderlaneHold($id: ID!, $fulfillmentHold: FulfillmentOrderHoldInput!) { fulfillmentOrderHold(id: $id, fulfillmentHold: $fulfillmentHold) { fulfillmentHold { id handle reason } fulfillmentOrder { id status } userErrors { field message code } } }";
pub const M_RELEASE: &str = "mutation OrderlaneRelease($id: ID!, $holdIds: [ID!]) { fulfillmentOrderReleaseHold(id: $id, holdIds: $holdIds) { fulfillmentOrder { id status } userErrors { field message code } } }";
pub const Q_FULFILLMENT_ORDER: &str =
    "query OrderlaneFulfillmentOrder($id: ID!) { fulfillmentOrder(id: $id) { id status orderId } }";
pub const Q_ORDERS: &str = "query OrderlaneOrders($first: Int!, $after: String, $query: String) { orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) { nodes { id legacyResourceId name email customer { legacyResourceId } displayFinancialStatus displayFulfillmentStatus sourceName currencyCode totalPriceSet { shopMoney { amount currencyCode } } tags shippingAddress { name firstName lastName address1 address2 city zip provinceCode countryCodeV2 } billingAddress { name firstName lastName address1 address2 city zip provinceCode countryCodeV2 } lineItems(first: 100) { nodes { id sku quantity unfulfilledQuantity requiresShipping title } } shippingLines(first: 10) { nodes { title code } } createdAt updatedAt cancelledAt } pageInfo { hasNextPage endCursor } } }";
pub const Q_SUBSCRIPTIONS: &str = "query OrderlaneSubscriptions($after: String) { webhookSubscriptions(first: 100, after: $after) { nodes { id topic uri } pageInfo { hasNextPage endCursor } } }";
/// Orders per reconciliation page.
pub const ORDERS_PAGE: u32 = 50;

/// The request body of one operation.
pub fn request(query: &str, variables: Value) -> String {
    json!({ "query": query, "variables": variables }).to_string()
}

pub fn order_gid(order_id: &str) -> String {
    format!("gid://shopify/Order/{order_id}")
}

/// A fulfillment order id as a GID, whether Shopify sent the GID or the bare number.
pub fn fulfillment_order_gid(id: &Value) -> Option<String> {
    let text = match id {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    if text.starts_with("gid://shopify/FulfillmentOrder/") {
        return Some(text);
    }
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("gid://shopify/FulfillmentOrder/{text}"))
}

/// What one Admin API answer means.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The `data` object.
    Data(Value),
    /// Shopify's cost bucket is empty (`THROTTLED`, or HTTP 429): try again after the wait.
    Throttled { wait_secs: u32 },
    /// Worth retrying on the usual schedule (5xx, timeouts, network).
    Transient(String),
    /// Retrying the same call cannot help (bad token, a query error, a missing scope).
    Permanent(String),
}

/// Classifies an HTTP answer from the GraphQL endpoint.
pub fn classify(status: u16, retry_after_secs: Option<u32>, body: &[u8]) -> Answer {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    match status {
        429 => {
            return Answer::Throttled {
                wait_secs: retry_after_secs.unwrap_or(2).clamp(1, MAX_THROTTLE_WAIT_SECS),
            }
        }
        401 | 403 => return Answer::Permanent(format!("http_{status}: token refused or scope missing")),
        408 | 500..=599 => return Answer::Transient(format!("http_{status}")),
        200..=299 => {}
        _ => return Answer::Permanent(format!("http_{status}")),
    }
    let Some(v) = parsed else { return Answer::Transient("unreadable answer".into()) };
    let errors = v.get("errors").filter(|e| !e.is_null());
    if let Some(errs) = errors {
        let throttled = errs.as_array().is_some_and(|a| {
            a.iter().any(|e| e.pointer("/extensions/code").and_then(Value::as_str) == Some("THROTTLED"))
        });
        if throttled {
            return Answer::Throttled { wait_secs: throttle_wait(&v) };
        }
        let first = errs
            .as_array()
            .and_then(|a| a.first())
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| errs.to_string());
        return Answer::Permanent(format!("graphql: {}", cut(&first, 200)));
    }
    match v.get("data") {
        Some(d) if d.is_object() => Answer::Data(d.clone()),
        _ => Answer::Transient("answer without data".into()),
    }
}

/// The wait Shopify's cost extension implies: what the query needs beyond what the bucket
/// holds, at the bucket's restore rate (at least 1 s).
pub fn throttle_wait(answer: &Value) -> u32 {
    let Some(t) = answer.pointer("/extensions/cost") else { return 2 };
    let requested = t.get("requestedQueryCost").and_then(Value::as_f64).unwrap_or(0.0);
    let status = t.get("throttleStatus");
    let available = status.and_then(|s| s.get("currentlyAvailable")).and_then(Value::as_f64).unwrap_or(0.0);
    let rate = status.and_then(|s| s.get("restoreRate")).and_then(Value::as_f64).unwrap_or(50.0);
    if rate <= 0.0 {
        return MAX_THROTTLE_WAIT_SECS;
    }
    let secs = ((requested - available).max(0.0) / rate).ceil();
    (secs as u32).clamp(1, MAX_THROTTLE_WAIT_SECS)
}

/// A mutation payload's `userErrors`, as one line each (`field: message (CODE)`).
pub fn user_errors(payload: &Value) -> Vec<String> {
    payload
        .get("userErrors")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| {
                    let field = e
                        .get("field")
                        .and_then(Value::as_array)
                        .map(|f| f.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("."))
                        .unwrap_or_default();
                    let msg = e.get("message").and_then(Value::as_str).unwrap_or("error");
                    let code =
                        e.get("code").and_then(Value::as_str).map(|c| format!(" ({c})")).unwrap_or_default();
                    cut(&format!("{field}: {msg}{code}"), 200)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// What orderlane wants Shopify to show for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Desired {
    /// Its own hold, with this reason, on every open fulfillment order.
    Hold { reason: Reason, notes: String },
    /// None of its own holds.
    Release,
}

impl Desired {
    pub fn as_str(&self) -> &'static str {
        match self {
            Desired::Hold { .. } => "hold",
            Desired::Release => "release",
        }
    }
}

/// Whether a change of an order calls for a change in Shopify: entering `hold` (or changing
/// its reason) places orderlane's hold; leaving `hold` releases it.
pub fn mirror_change(
    before: Option<(State, Option<Reason>)>,
    after: (State, Option<Reason>),
    explanation: Option<&str>,
) -> Option<Desired> {
    let was_held = before.filter(|(s, _)| *s == State::Hold).map(|(_, r)| r);
    match (was_held, after) {
        (held, (State::Hold, Some(reason))) if held != Some(Some(reason)) => {
            Some(Desired::Hold { reason, notes: cut(explanation.unwrap_or(reason.as_str()), NOTES_MAX) })
        }
        (Some(_), (s, _)) if s != State::Hold => Some(Desired::Release),
        _ => None,
    }
}

/// A hold on a fulfillment order, as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub id: String,
    pub handle: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FulfillmentOrder {
    pub id: String,
    pub status: String,
    pub holds: Vec<Hold>,
}

impl FulfillmentOrder {
    fn ours(&self) -> impl Iterator<Item = &Hold> {
        self.holds.iter().filter(|h| h.handle == HOLD_HANDLE)
    }

    /// A fulfillment order work can still happen on (a hold can be placed).
    fn open(&self) -> bool {
        matches!(self.status.as_str(), "OPEN" | "IN_PROGRESS" | "ON_HOLD" | "SCHEDULED")
    }
}

/// The order's fulfillment orders from `OrderlaneFulfillmentOrders`; `None` when Shopify does
/// not know the order.
pub fn parse_fulfillment_orders(data: &Value) -> Option<Vec<FulfillmentOrder>> {
    let order = data.get("order").filter(|o| o.is_object())?;
    let nodes = order.pointer("/fulfillmentOrders/nodes").and_then(Value::as_array)?;
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    Some(
        nodes
            .iter()
            .map(|n| FulfillmentOrder {
                id: text(n, "id"),
                status: text(n, "status"),
                holds: n
                    .get("fulfillmentHolds")
                    .and_then(Value::as_array)
                    .map(|hs| {
                        hs.iter()
                            .map(|h| Hold {
                                id: text(h, "id"),
                                handle: text(h, "handle"),
                                reason: text(h, "reason"),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect(),
    )
}

/// The order id (numeric) and status of `OrderlaneFulfillmentOrder`.
pub fn parse_fulfillment_order(data: &Value) -> Option<(String, String)> {
    let fo = data.get("fulfillmentOrder").filter(|f| f.is_object())?;
    let order = fo.get("orderId").and_then(Value::as_str)?.rsplit('/').next()?.to_string();
    let status = fo.get("status").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
    (!order.is_empty() && order.bytes().all(|b| b.is_ascii_digit())).then_some((order, status))
}

/// One mutation to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Hold { fulfillment_order: String, reason: &'static str, notes: String },
    Release { fulfillment_order: String, hold_ids: Vec<String> },
}

impl Mutation {
    pub fn request(&self) -> String {
        match self {
            Mutation::Hold { fulfillment_order, reason, notes } => request(
                M_HOLD,
                json!({ "id": fulfillment_order, "fulfillmentHold": {
                    "reason": reason, "reasonNotes": notes, "handle": HOLD_HANDLE, "notifyMerchant": false,
                }}),
            ),
            Mutation::Release { fulfillment_order, hold_ids } => {
                request(M_RELEASE, json!({ "id": fulfillment_order, "holdIds": hold_ids }))
            }
        }
    }

    /// The payload field of the mutation in `data`.
    pub fn field(&self) -> &'static str {
        match self {
            Mutation::Hold { .. } => "fulfillmentOrderHold",
            Mutation::Release { .. } => "fulfillmentOrderReleaseHold",
        }
    }
}

/// What to do to bring Shopify to `desired`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Shopify already shows what orderlane wants (a repeat changes nothing).
    Done,
    /// These mutations, in order.
    Mutate(Vec<Mutation>),
    /// A hold is wanted but the order has no fulfillment orders yet (Shopify creates them
    /// shortly after the order): try again later.
    NotYet,
}

pub fn plan(desired: &Desired, fos: &[FulfillmentOrder]) -> Plan {
    let mut out = Vec::new();
    match desired {
        Desired::Hold { reason, notes } => {
            if fos.is_empty() {
                return Plan::NotYet;
            }
            let want = reason.shopify_hold_reason();
            for fo in fos.iter().filter(|f| f.open()) {
                let ours: Vec<&Hold> = fo.ours().collect();
                if ours.iter().any(|h| h.reason == want) {
                    continue;
                }
                if !ours.is_empty() {
                    // Same handle, other reason: Shopify refuses a second hold with the handle.
                    out.push(Mutation::Release {
                        fulfillment_order: fo.id.clone(),
                        hold_ids: ours.iter().map(|h| h.id.clone()).collect(),
                    });
                }
                out.push(Mutation::Hold {
                    fulfillment_order: fo.id.clone(),
                    reason: want,
                    notes: notes.clone(),
                });
            }
        }
        Desired::Release => {
            for fo in fos {
                let ids: Vec<String> = fo.ours().map(|h| h.id.clone()).collect();
                if !ids.is_empty() {
                    out.push(Mutation::Release { fulfillment_order: fo.id.clone(), hold_ids: ids });
                }
            }
        }
    }
    if out.is_empty() {
        Plan::Done
    } else {
        Plan::Mutate(out)
    }
}

/// `SHOPIFY_ADMIN_TOKENS`: `shop.myshopify.com:token` pairs, comma-separated.
pub fn parse_admin_tokens(value: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (shop, token) = pair.split_once(':').ok_or_else(|| "a pair without ':'".to_string())?;
        let (shop, token) = (shop.trim().to_ascii_lowercase(), token.trim());
        if !shop.ends_with(".myshopify.com") || token.is_empty() {
            return Err(format!("{shop}: expected shop.myshopify.com:token"));
        }
        out.push((shop, token.to_string()));
    }
    Ok(out)
}

/// An access token from the client-credentials grant: the token and how long it lives.
pub fn parse_token_grant(body: &[u8]) -> Option<(String, i64)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let token = v.get("access_token")?.as_str()?.to_string();
    let secs = v.get("expires_in").and_then(Value::as_i64).unwrap_or(3600);
    (!token.is_empty()).then_some((token, secs))
}

/// The webhook id a reconciled order version is recorded under: the same order version
/// found twice is one delivery.
pub fn reconcile_webhook_id(order_id: &str, updated_ms: i64) -> String {
    format!("reconcile:{order_id}:{updated_ms}")
}

/// The search filter of a reconciliation run.
pub fn orders_filter(since_ms: i64) -> String {
    format!("updated_at:>='{}'", super::time::format_rfc3339_ms(since_ms))
}

/// One page of `OrderlaneOrders`: the order nodes and the cursor of the next page.
pub fn parse_orders_page(data: &Value) -> Option<(Vec<Value>, Option<String>)> {
    let orders = data.get("orders")?;
    let nodes = orders.get("nodes")?.as_array()?.clone();
    let info = orders.get("pageInfo");
    let more = info.and_then(|i| i.get("hasNextPage")).and_then(Value::as_bool).unwrap_or(false);
    let next = info.and_then(|i| i.get("endCursor")).and_then(Value::as_str).filter(|_| more);
    Some((nodes, next.map(str::to_string)))
}

/// The API topics of a `OrderlaneSubscriptions` page that deliver to `/webhooks/shopify`.
pub fn subscribed_topics(data: &Value) -> Vec<String> {
    data.pointer("/webhookSubscriptions/nodes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|n| {
                    n.get("uri")
                        .and_then(Value::as_str)
                        .is_some_and(|u| u.trim_end_matches('/').ends_with("/webhooks/shopify"))
                })
                .filter_map(|n| n.get("topic").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The needed topics not among `present`.
pub fn missing_topics(present: &[String]) -> Vec<&'static str> {
    NEEDED_TOPICS.iter().copied().filter(|t| !present.iter().any(|p| p == t)).collect()
}

/// An order listed by the GraphQL API, turned into the webhook's JSON shape (the keys routing
/// reads: `core::order::ORDER_KEYS`), so that it is recorded and routed exactly as a webhook
/// body is. Returns the order id, its `updatedAt` and the body.
pub fn webhook_body(node: &Value) -> Result<(String, i64, String), PayloadError> {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let id = text(node, "legacyResourceId")
        .or_else(|| text(node, "id").and_then(|g| g.rsplit('/').next().map(str::to_string)))
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .ok_or(PayloadError::MissingField("id"))?;
    let id_num: u64 =
        id.parse().map_err(|_| PayloadError::InvalidField { field: "id", expected: "a number" })?;
    let updated = text(node, "updatedAt")
        .or_else(|| text(node, "createdAt"))
        .ok_or(PayloadError::MissingField("updated_at"))?;
    let updated_ms = super::time::parse_rfc3339_ms(&updated)
        .ok_or(PayloadError::InvalidField { field: "updated_at", expected: "RFC 3339" })?;
    let lower = |v: Option<String>| v.map(|s| s.to_ascii_lowercase());
    let fulfillment_status = match text(node, "displayFulfillmentStatus").as_deref() {
        Some("FULFILLED") => Value::from("fulfilled"),
        Some("PARTIALLY_FULFILLED") => Value::from("partial"),
        _ => Value::Null,
    };
    let address = |k: &str| -> Value {
        match node.get(k) {
            Some(a) if a.is_object() => {
                let mut m = Map::new();
                for (from, to) in [
                    ("name", "name"),
                    ("firstName", "first_name"),
                    ("lastName", "last_name"),
                    ("address1", "address1"),
                    ("address2", "address2"),
                    ("city", "city"),
                    ("zip", "zip"),
                    ("provinceCode", "province_code"),
                    ("countryCodeV2", "country_code"),
                ] {
                    m.insert(to.into(), a.get(from).cloned().unwrap_or(Value::Null));
                }
                Value::Object(m)
            }
            _ => Value::Null,
        }
    };
    let nodes = |path: &str| node.pointer(path).and_then(Value::as_array).cloned().unwrap_or_default();
    let line_items: Vec<Value> = nodes("/lineItems/nodes")
        .iter()
        .map(|l| {
            let lid = text(l, "id").and_then(|g| g.rsplit('/').next().and_then(|n| n.parse::<u64>().ok()));
            json!({
                "id": lid,
                "sku": l.get("sku").cloned().unwrap_or(Value::Null),
                "quantity": l.get("quantity").cloned().unwrap_or(Value::from(0)),
                "fulfillable_quantity": l.get("unfulfilledQuantity").cloned().unwrap_or(Value::Null),
                "requires_shipping": l.get("requiresShipping").cloned().unwrap_or(Value::Bool(true)),
                "title": l.get("title").cloned().unwrap_or(Value::from("")),
            })
        })
        .collect();
    let shipping_lines: Vec<Value> = nodes("/shippingLines/nodes")
        .iter()
        .map(|s| json!({ "title": s.get("title").cloned().unwrap_or(Value::Null), "code": s.get("code").cloned().unwrap_or(Value::Null) }))
        .collect();
    let tags = node
        .get("tags")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    let customer = node
        .get("customer")
        .filter(|c| c.is_object())
        .map(|c| {
            let cid = text(c, "legacyResourceId").and_then(|s| s.parse::<u64>().ok());
            json!({ "id": cid, "email": node.get("email").cloned().unwrap_or(Value::Null) })
        })
        .unwrap_or(Value::Null);
    let body = json!({
        "id": id_num,
        "admin_graphql_api_id": order_gid(&id),
        "name": text(node, "name").unwrap_or_default(),
        "email": node.get("email").cloned().unwrap_or(Value::Null),
        "customer": customer,
        "financial_status": lower(text(node, "displayFinancialStatus")),
        "fulfillment_status": fulfillment_status,
        "source_name": node.get("sourceName").cloned().unwrap_or(Value::Null),
        "currency": node.get("currencyCode").cloned().unwrap_or(Value::Null),
        "total_price": node.pointer("/totalPriceSet/shopMoney/amount").cloned().unwrap_or(Value::Null),
        "tags": tags,
        "shipping_address": address("shippingAddress"),
        "billing_address": address("billingAddress"),
        "line_items": line_items,
        "shipping_lines": shipping_lines,
        "created_at": node.get("createdAt").cloned().unwrap_or(Value::Null),
        "updated_at": updated,
        "cancelled_at": node.get("cancelledAt").cloned().unwrap_or(Value::Null),
    });
    Ok((id, updated_ms, body.to_string()))
}

/// A `fulfillment_orders/placed_on_hold` or `fulfillment_orders/hold_released` delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldEvent {
    /// The fulfillment order, as a GID.
    pub fulfillment_order: String,
    /// The hold placed (`placed_on_hold`): its handle, empty when staff placed it.
    pub handle: Option<String>,
    /// The fulfillment order's status after the event (`on_hold`, `open`, ...).
    pub status: Option<String>,
}

pub fn parse_hold_event(body: &[u8]) -> Result<HoldEvent, PayloadError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| PayloadError::InvalidJson)?;
    let fo = v
        .get("fulfillment_order")
        .filter(|f| f.is_object())
        .ok_or(PayloadError::MissingField("fulfillment_order"))?;
    let id = fo
        .get("id")
        .and_then(fulfillment_order_gid)
        .ok_or(PayloadError::InvalidField { field: "fulfillment_order.id", expected: "an id" })?;
    let hold =
        v.get("created_fulfillment_hold").or_else(|| v.get("fulfillment_hold")).filter(|h| h.is_object());
    Ok(HoldEvent {
        fulfillment_order: id,
        handle: hold.map(|h| h.get("handle").and_then(Value::as_str).unwrap_or_default().to_string()),
        status: fo.get("status").and_then(Value::as_str).map(str::to_ascii_lowercase),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fo(id: &str, status: &str, holds: &[(&str, &str, &str)]) -> FulfillmentOrder {
        FulfillmentOrder {
            id: id.into(),
            status: status.into(),
            holds: holds
                .iter()
                .map(|(i, h, r)| Hold { id: (*i).into(), handle: (*h).into(), reason: (*r).into() })
                .collect(),
        }
    }

    fn hold(reason: Reason) -> Desired {
        Desired::Hold { reason, notes: "why".into() }
    }

    #[test]
    fn entering_hold_places_leaving_releases_staying_does_nothing() {
        use State::*;
        let addr = Some(Reason::Address);
        assert_eq!(
            mirror_change(Some((Paid, None)), (Hold, addr), Some("zip missing")),
            Some(Desired::Hold { reason: Reason::Address, notes: "zip missing".into() })
        );
        assert_eq!(mirror_change(None, (Hold, addr), None), Some(hold_notes(Reason::Address, "address")));
        assert_eq!(mirror_change(Some((Hold, addr)), (Hold, addr), Some("again")), None);
        assert_eq!(
            mirror_change(Some((Hold, addr)), (Hold, Some(Reason::Payment)), Some("p")),
            Some(Desired::Hold { reason: Reason::Payment, notes: "p".into() })
        );
        assert_eq!(
            mirror_change(Some((Hold, addr)), (ReadyForFulfilment, None), None),
            Some(Desired::Release)
        );
        assert_eq!(mirror_change(Some((Hold, addr)), (Cancelled, None), None), Some(Desired::Release));
        assert_eq!(mirror_change(Some((Paid, None)), (ReadyForFulfilment, None), None), None);
        assert_eq!(mirror_change(None, (ReadyForFulfilment, None), None), None);
    }

    fn hold_notes(reason: Reason, notes: &str) -> Desired {
        Desired::Hold { reason, notes: notes.into() }
    }

    #[test]
    fn a_hold_goes_on_every_open_fulfillment_order_once() {
        let fos = [fo("A", "OPEN", &[]), fo("B", "CLOSED", &[]), fo("C", "ON_HOLD", &[("h1", "", "OTHER")])];
        let Plan::Mutate(m) = plan(&hold(Reason::Address), &fos) else { panic!("expected mutations") };
        let targets: Vec<_> = m
            .iter()
            .map(|x| match x {
                Mutation::Hold { fulfillment_order, reason, .. } => {
                    format!("hold {fulfillment_order} {reason}")
                }
                Mutation::Release { fulfillment_order, .. } => format!("release {fulfillment_order}"),
            })
            .collect();
        assert_eq!(targets, ["hold A INCORRECT_ADDRESS", "hold C INCORRECT_ADDRESS"]);
        // Once placed, planning again changes nothing: a repeat makes no second mutation.
        let held = [
            fo("A", "ON_HOLD", &[("h2", HOLD_HANDLE, "INCORRECT_ADDRESS")]),
            fo("B", "CLOSED", &[]),
            fo("C", "ON_HOLD", &[("h1", "", "OTHER"), ("h3", HOLD_HANDLE, "INCORRECT_ADDRESS")]),
        ];
        assert_eq!(plan(&hold(Reason::Address), &held), Plan::Done);
    }

    #[test]
    fn a_new_reason_replaces_orderlanes_hold_and_release_touches_only_its_own() {
        let fos = [fo("A", "ON_HOLD", &[("h1", "", "OTHER"), ("h2", HOLD_HANDLE, "INCORRECT_ADDRESS")])];
        assert_eq!(
            plan(&hold(Reason::Payment), &fos),
            Plan::Mutate(vec![
                Mutation::Release { fulfillment_order: "A".into(), hold_ids: vec!["h2".into()] },
                Mutation::Hold {
                    fulfillment_order: "A".into(),
                    reason: "AWAITING_PAYMENT",
                    notes: "why".into()
                },
            ])
        );
        assert_eq!(
            plan(&Desired::Release, &fos),
            Plan::Mutate(vec![Mutation::Release {
                fulfillment_order: "A".into(),
                hold_ids: vec!["h2".into()]
            }])
        );
        assert_eq!(plan(&Desired::Release, &[fo("A", "ON_HOLD", &[("h1", "", "OTHER")])]), Plan::Done);
        assert_eq!(plan(&hold(Reason::Fraud), &[]), Plan::NotYet);
        assert_eq!(plan(&Desired::Release, &[]), Plan::Done);
    }

    #[test]
    fn mutations_carry_the_handle_reason_and_notes() {
        let m = Mutation::Hold {
            fulfillment_order: "gid://shopify/FulfillmentOrder/1".into(),
            reason: "OTHER",
            notes: "n".into(),
        };
        let v: Value = serde_json::from_str(&m.request()).unwrap();
        assert!(v["query"].as_str().unwrap().starts_with("mutation OrderlaneHold("));
        assert_eq!(v["variables"]["fulfillmentHold"]["handle"], HOLD_HANDLE);
        assert_eq!(v["variables"]["fulfillmentHold"]["reason"], "OTHER");
        assert_eq!(v["variables"]["fulfillmentHold"]["reasonNotes"], "n");
        let r = Mutation::Release { fulfillment_order: "X".into(), hold_ids: vec!["h".into()] };
        let v: Value = serde_json::from_str(&r.request()).unwrap();
        assert_eq!(v["variables"]["holdIds"], json!(["h"]));
    }

    #[test]
    fn answers_are_classified() {
        let throttled = br#"{"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED"}}],
            "extensions":{"cost":{"requestedQueryCost":250,"actualQueryCost":null,
            "throttleStatus":{"maximumAvailable":2000,"currentlyAvailable":50,"restoreRate":100}}}}"#;
        assert_eq!(classify(200, None, throttled), Answer::Throttled { wait_secs: 2 });
        assert_eq!(classify(429, Some(7), b"{}"), Answer::Throttled { wait_secs: 7 });
        assert_eq!(classify(429, Some(9999), b"{}"), Answer::Throttled { wait_secs: MAX_THROTTLE_WAIT_SECS });
        assert!(matches!(classify(503, None, b""), Answer::Transient(_)));
        assert!(matches!(classify(401, None, b"{}"), Answer::Permanent(_)));
        assert!(
            matches!(classify(200, None, br#"{"errors":[{"message":"Field 'x' doesn't exist"}]}"#), Answer::Permanent(m) if m.contains("doesn't exist"))
        );
        assert_eq!(classify(200, None, br#"{"data":{"a":1}}"#), Answer::Data(json!({"a":1})));
        assert!(matches!(classify(200, None, b"<html>"), Answer::Transient(_)));
    }

    #[test]
    fn user_errors_read_as_lines() {
        let p = json!({"userErrors":[{"field":["fulfillmentHold","handle"],"message":"in use","code":"DUPLICATE_FULFILLMENT_HOLD_HANDLE"}]});
        assert_eq!(user_errors(&p), ["fulfillmentHold.handle: in use (DUPLICATE_FULFILLMENT_HOLD_HANDLE)"]);
        assert!(user_errors(&json!({"userErrors": []})).is_empty());
    }

    #[test]
    fn admin_tokens_parse_and_refuse_bad_pairs() {
        assert_eq!(
            parse_admin_tokens(" A.myshopify.com:t1, b.myshopify.com:t:2 ").unwrap(),
            vec![("a.myshopify.com".to_string(), "t1".to_string()), ("b.myshopify.com".into(), "t:2".into())]
        );
        assert!(parse_admin_tokens("a.example.com:t").is_err());
        assert!(parse_admin_tokens("a.myshopify.com:").is_err());
        assert!(parse_admin_tokens("nocolon").is_err());
        assert_eq!(parse_admin_tokens("").unwrap(), vec![]);
    }

    #[test]
    fn topics_map_between_api_and_webhook_names() {
        assert_eq!(webhook_topic("ORDERS_CREATE"), "orders/create");
        assert_eq!(webhook_topic("ORDERS_RISK_ASSESSMENT_CHANGED"), "orders/risk_assessment_changed");
        assert_eq!(webhook_topic("FULFILLMENT_ORDERS_HOLD_RELEASED"), "fulfillment_orders/hold_released");
        for t in NEEDED_TOPICS {
            assert!(
                super::super::webhook::Topic::parse(&webhook_topic(t)).is_some(),
                "{t} is not a topic orderlane reads"
            );
        }
        let data = json!({"webhookSubscriptions":{"nodes":[
            {"topic":"ORDERS_CREATE","uri":"https://w.example/webhooks/shopify"},
            {"topic":"ORDERS_PAID","uri":"https://elsewhere.example/hook"}]}});
        let present = subscribed_topics(&data);
        assert_eq!(present, ["ORDERS_CREATE"]);
        assert_eq!(missing_topics(&present).len(), NEEDED_TOPICS.len() - 1);
    }

    #[test]
    fn a_listed_order_becomes_the_body_routing_reads() {
        let node = json!({
            "id": "gid://shopify/Order/820982911946154508", "legacyResourceId": "820982911946154508",
            "name": "#1001", "email": "jon@example.com", "customer": {"legacyResourceId": "115310627314723954"},
            "displayFinancialStatus": "PARTIALLY_PAID", "displayFulfillmentStatus": "UNFULFILLED",
            "sourceName": "web", "currencyCode": "USD", "totalPriceSet": {"shopMoney": {"amount": "598.94"}},
            "tags": ["vip", "gift"],
            "shippingAddress": {"name": "Jon", "address1": "1 Main", "city": "Town", "zip": "40003", "provinceCode": "KY", "countryCodeV2": "US"},
            "billingAddress": null,
            "lineItems": {"nodes": [{"id": "gid://shopify/LineItem/466157049", "sku": "IPOD2008GREEN", "quantity": 2,
                "unfulfilledQuantity": 1, "requiresShipping": true, "title": "IPod Nano"}]},
            "shippingLines": {"nodes": [{"title": "Ground", "code": "GRD"}]},
            "createdAt": "2026-11-20T10:00:00Z", "updatedAt": "2026-11-21T10:00:00Z", "cancelledAt": null
        });
        let (id, updated_ms, body) = webhook_body(&node).unwrap();
        assert_eq!(id, "820982911946154508");
        assert_eq!(updated_ms, super::super::time::parse_rfc3339_ms("2026-11-21T10:00:00Z").unwrap());
        assert!(body.contains(r#""id":820982911946154508"#), "the id stays exact: {body}");
        let o = super::super::order::parse_order(body.as_bytes()).unwrap();
        assert_eq!(o.id.0, "820982911946154508");
        assert_eq!(o.name, "#1001");
        assert_eq!(o.financial_status.as_deref(), Some("partially_paid"));
        assert_eq!(o.total_price_cents, 59894);
        assert!(o.has_tag("gift"));
        assert_eq!(o.shipping_country(), Some("US"));
        assert!(o.billing_address.is_none());
        assert_eq!(o.line_items[0].sku.as_deref(), Some("IPOD2008GREEN"));
        assert_eq!(o.line_items[0].open_quantity(), 1);
        assert_eq!(o.customer_id.as_ref().map(|c| c.0.as_str()), Some("115310627314723954"));
        assert_eq!(o.email.as_deref(), Some("jon@example.com"));
        assert!(webhook_body(&json!({"name": "#1"})).is_err());
    }

    #[test]
    fn hold_events_name_their_fulfillment_order_and_handle() {
        let e = parse_hold_event(br#"{"fulfillment_order":{"id":"gid://shopify/FulfillmentOrder/1","status":"on_hold"},
            "created_fulfillment_hold":{"id":"gid://shopify/FulfillmentHold/2","reason":"other","handle":""}}"#).unwrap();
        assert_eq!(e.fulfillment_order, "gid://shopify/FulfillmentOrder/1");
        assert_eq!(e.handle.as_deref(), Some(""));
        let e = parse_hold_event(br#"{"fulfillment_order":{"id":77,"status":"OPEN"}}"#).unwrap();
        assert_eq!(e.fulfillment_order, "gid://shopify/FulfillmentOrder/77");
        assert_eq!(e.status.as_deref(), Some("open"));
        assert_eq!(e.handle, None);
        assert!(parse_hold_event(b"{}").is_err());
        assert!(parse_hold_event(b"nope").is_err());
    }

    #[test]
    fn a_fulfillment_order_names_its_order() {
        let d = json!({"fulfillmentOrder": {"id": "gid://shopify/FulfillmentOrder/5", "status": "ON_HOLD", "orderId": "gid://shopify/Order/42"}});
        assert_eq!(parse_fulfillment_order(&d), Some(("42".into(), "on_hold".into())));
        assert_eq!(parse_fulfillment_order(&json!({"fulfillmentOrder": null})), None);
    }

    #[test]
    fn throttle_waits_follow_the_bucket() {
        let a = |req: f64, avail: f64, rate: f64| json!({"extensions":{"cost":{"requestedQueryCost":req,"throttleStatus":{"currentlyAvailable":avail,"restoreRate":rate}}}});
        assert_eq!(throttle_wait(&a(100.0, 0.0, 50.0)), 2);
        assert_eq!(throttle_wait(&a(10.0, 100.0, 50.0)), 1);
        assert_eq!(throttle_wait(&a(1e9, 0.0, 1.0)), MAX_THROTTLE_WAIT_SECS);
        assert_eq!(throttle_wait(&json!({})), 2);
    }
}
