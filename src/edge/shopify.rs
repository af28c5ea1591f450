//! Shopify as a peer: the GraphQL Admin API client (tokens, throttling, timeouts), holds
//! mirrored onto an order's fulfillment orders through the queue, staff holds and releases
//! made in Shopify, reconciliation of orders whose webhooks never arrived, and the webhook
//! health check. What each answer means and what to change is decided in `core::shopify`.

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::{json, Value};
use worker::{Message, MessageExt, QueueRetryOptionsBuilder};

use super::context::{now_ms, random_unit, Edge};
use super::outbound;
use super::store::{AuditRow, DeadLetter, StoreError};
use crate::core::query::percent_encode as form_encode;
use crate::core::retry::{self, Outcome};
use crate::core::shopify::{self as sh, Answer, Desired, Plan};
use crate::core::types::Reason;

pub const ACTOR: &str = "system:shopify";
/// Staff acting in the Shopify admin.
pub const STAFF: &str = "shopify:staff";
pub const RECONCILE_ACTOR: &str = "system:reconcile";
const MESSAGE_OP: &str = "shopify_hold";
/// A staff hold on a fulfillment order orderlane has not seen: find its order.
const LOOKUP_OP: &str = "shopify_lookup";
/// The dead-letter cause of a mirror Shopify kept refusing or failing.
pub const DEAD_LETTER_CAUSE: &str = "shopify_hold";
/// A token from the client-credentials grant is renewed this long before it expires.
const TOKEN_MARGIN_MS: i64 = 300_000;

// Client-credentials tokens per shop, for this isolate: (token, expires at).
thread_local! {
    static TOKENS: RefCell<HashMap<String, (String, i64)>> = RefCell::new(HashMap::new());
}

fn origin(edge: &Edge, shop: &str) -> String {
    edge.settings.shopify.origin.clone().unwrap_or_else(|| format!("https://{shop}"))
}

/// The access token for `shop`: its static token, else one from the client-credentials grant
/// (cached until shortly before it expires).
async fn token(edge: &Edge, shop: &str) -> Result<String, Answer> {
    let cfg = &edge.settings.shopify;
    if let Some((_, t)) = cfg.tokens.iter().find(|(s, _)| s == shop) {
        return Ok(t.clone());
    }
    let Some((id, secret)) = cfg.client.as_ref() else {
        return Err(Answer::Permanent(format!("no Admin API credentials for {shop}")));
    };
    let now = now_ms();
    if let Some(t) =
        TOKENS.with(|m| m.borrow().get(shop).filter(|(_, exp)| *exp - TOKEN_MARGIN_MS > now).cloned())
    {
        return Ok(t.0);
    }
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        form_encode(id),
        form_encode(secret)
    );
    let url = format!("{}/admin/oauth/access_token", origin(edge, shop));
    let headers = [("content-type", "application/x-www-form-urlencoded".to_string())];
    let (code, _, bytes) = outbound::call(&url, &headers, form.as_bytes(), cfg.timeout_ms)
        .await
        .map_err(|o| Answer::Transient(format!("token grant: {}", o.code())))?;
    match (code, sh::parse_token_grant(&bytes)) {
        (200, Some((t, secs))) => {
            TOKENS.with(|m| m.borrow_mut().insert(shop.to_string(), (t.clone(), now + secs * 1000)));
            Ok(t)
        }
        (500..=599, _) => Err(Answer::Transient(format!("token grant: http_{code}"))),
        _ => Err(Answer::Permanent(format!("token grant refused: http_{code}"))),
    }
}

/// One GraphQL call to `shop`'s Admin API, bounded by `SHOPIFY_TIMEOUT_MS`.
pub async fn graphql(edge: &Edge, shop: &str, body: &str) -> Answer {
    let token = match token(edge, shop).await {
        Ok(t) => t,
        Err(a) => return a,
    };
    let url = format!("{}/admin/api/{}/graphql.json", origin(edge, shop), sh::API_VERSION);
    let headers = [("content-type", "application/json".to_string()), ("x-shopify-access-token", token)];
    match outbound::call(&url, &headers, body.as_bytes(), edge.settings.shopify.timeout_ms).await {
        Ok((code, retry_after, bytes)) => {
            if code == 401 {
                // A granted token may have been revoked: the next call asks for a new one.
                TOKENS.with(|m| m.borrow_mut().remove(shop));
            }
            let wait = retry_after.as_deref().and_then(|v| retry::parse_retry_after(v, now_ms()));
            sh::classify(code, wait, &bytes)
        }
        Err(Outcome::Timeout) => Answer::Transient("timeout".into()),
        Err(o) => Answer::Transient(o.code()),
    }
}

// ---------------------------------------------------------------------------------------
// Holds mirrored into Shopify.

/// Puts the order's mirror on the queue (after the change that asks for it is committed).
/// A failed send is picked up by the cron once the mirror is overdue.
pub async fn nudge(edge: &Edge, shop: &str, order_id: &str, delay_secs: u32) {
    let body = json!({ "op": MESSAGE_OP, "shop": shop, "order_id": order_id }).to_string();
    send_message(edge, &body, delay_secs).await;
}

#[derive(serde::Deserialize)]
struct ShopifyMessage {
    op: String,
    shop: String,
    order_id: Option<String>,
    fulfillment_order: Option<String>,
}

fn shopify_message(raw: &str) -> Option<ShopifyMessage> {
    serde_json::from_str::<ShopifyMessage>(raw).ok().filter(|m| m.op == MESSAGE_OP || m.op == LOOKUP_OP)
}

/// Whether a queue message is Shopify's (the warehouse's messages have no `op`).
pub fn is_shopify_message(raw: &str) -> bool {
    raw.contains("\"op\"") && shopify_message(raw).is_some()
}

async fn send_message(edge: &Edge, body: &str, delay_secs: u32) {
    let Some(q) = edge.queue.as_ref() else { return };
    let send = worker::MessageBuilder::new(body.to_string()).delay_seconds(delay_secs).build();
    if let Err(e) = q.send(send).await {
        worker::console_error!("shopify message not enqueued ({e}): {body}");
    }
}

enum Next {
    Ack,
    Later(u32),
}

/// Consumes one mirror message: acked when done or given up (a dead letter), re-sent with a
/// delay after a throttled or transient answer, retried by the runtime on storage errors.
pub async fn consume(edge: &Edge, m: &Message<String>) {
    let Some(msg) = shopify_message(m.body()) else {
        m.ack();
        return;
    };
    let done = match (msg.op.as_str(), msg.order_id.as_deref(), msg.fulfillment_order.as_deref()) {
        (MESSAGE_OP, Some(order_id), _) => carry_out(edge, &msg.shop, order_id).await,
        (LOOKUP_OP, _, Some(fo)) => look_up(edge, &msg.shop, fo).await,
        _ => Ok(Next::Ack),
    };
    match done {
        Ok(Next::Ack) => m.ack(),
        Ok(Next::Later(secs)) => {
            let again = worker::MessageBuilder::new(m.body().clone()).delay_seconds(secs).build();
            let sent = match edge.queue.as_ref() {
                Some(q) => q.send(again).await.is_ok(),
                None => false,
            };
            if sent {
                m.ack();
            } else {
                m.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(secs).build());
            }
        }
        Err(e) => {
            worker::console_error!("shopify message for {} will be retried: {e:?}", msg.shop);
            m.retry_with_options(
                &QueueRetryOptionsBuilder::new().with_delay_seconds(edge.settings.infra_retry_secs()).build(),
            );
        }
    }
}

/// What carrying out a mirror produced.
struct Carried {
    /// (fulfillment order, orderlane's hold on it now)
    seen: Vec<(String, Option<String>)>,
    placed: usize,
    released: usize,
}

async fn carry_out(edge: &Edge, shop: &str, order_id: &str) -> Result<Next, StoreError> {
    let store = &edge.store;
    let Some(row) = store.mirror_row(shop, order_id).await? else { return Ok(Next::Ack) };
    if row.done_version >= row.version {
        return Ok(Next::Ack);
    }
    let desired = match (row.desired.as_str(), row.reason.as_deref().and_then(Reason::parse)) {
        ("hold", Some(reason)) => Desired::Hold { reason, notes: row.notes.clone().unwrap_or_default() },
        _ => Desired::Release,
    };
    let now = now_ms();
    match apply(edge, shop, order_id, &desired).await {
        Ok(c) => {
            let mut statements = vec![store.mirror_done(shop, order_id, row.version, now)?];
            for (fo, hold) in &c.seen {
                statements.push(store.saw_fulfillment_order(shop, order_id, fo, hold.as_deref(), now)?);
            }
            if c.placed + c.released > 0 {
                let (event, detail) = match &desired {
                    Desired::Hold { reason, .. } => (
                        "shopify_hold_placed",
                        json!({ "shopify_reason": reason.shopify_hold_reason(), "handle": sh::HOLD_HANDLE,
                                "fulfillment_orders": c.placed, "replaced": c.released }),
                    ),
                    Desired::Release => {
                        ("shopify_hold_released", json!({ "fulfillment_orders": c.released }))
                    }
                };
                statements.push(audit(edge, shop, order_id, event, row.reason.as_deref(), &detail, now)?);
            }
            store.batch(statements).await?;
            Ok(Next::Ack)
        }
        Err(Answer::Throttled { wait_secs }) => {
            // Shopify said when: not a failure, and not counted as an attempt.
            let due = now + i64::from(wait_secs) * 1000 + super::store::MIRROR_GRACE_MS;
            let st =
                store.mirror_retry(shop, order_id, row.version, row.attempts, Some(due), "throttled", now)?;
            store.batch(vec![st]).await?;
            Ok(Next::Later(wait_secs))
        }
        Err(Answer::Transient(e)) => {
            let attempts = row.attempts + 1;
            match retry::scheduled_delay(u32::try_from(attempts).unwrap_or(u32::MAX)) {
                Some(base) => {
                    let delay = retry::scaled_delay(
                        retry::jittered(base, random_unit()),
                        retry::Class::Transient { retry_after_secs: None },
                        edge.settings.delay_scale,
                    );
                    let due = now + i64::from(delay) * 1000 + super::store::MIRROR_GRACE_MS;
                    let st = store.mirror_retry(shop, order_id, row.version, attempts, Some(due), &e, now)?;
                    store.batch(vec![st]).await?;
                    Ok(Next::Later(delay))
                }
                None => {
                    give_up(edge, shop, order_id, row.version, attempts, row.reason.as_deref(), &e, now).await
                }
            }
        }
        Err(Answer::Permanent(e)) => {
            give_up(edge, shop, order_id, row.version, row.attempts + 1, row.reason.as_deref(), &e, now).await
        }
        Err(Answer::Data(_)) => Ok(Next::Ack),
    }
}

#[allow(clippy::too_many_arguments)]
async fn give_up(
    edge: &Edge,
    shop: &str,
    order_id: &str,
    version: i64,
    attempts: i64,
    reason: Option<&str>,
    error: &str,
    now: i64,
) -> Result<Next, StoreError> {
    let store = &edge.store;
    let statements = vec![
        store.mirror_retry(shop, order_id, version, attempts, None, error, now)?,
        store.dead_letter(
            &DeadLetter {
                shop: Some(shop),
                order_id: Some(order_id),
                submission: None,
                cause: DEAD_LETTER_CAUSE,
                attempts,
                last_error: Some(error),
                http_status: None,
                response: None,
                message: None,
            },
            now,
        )?,
        audit(
            edge,
            shop,
            order_id,
            "shopify_hold_failed",
            reason,
            &json!({ "attempts": attempts, "error": error }),
            now,
        )?,
    ];
    store.batch(statements).await?;
    Ok(Next::Ack)
}

fn audit(
    edge: &Edge,
    shop: &str,
    order_id: &str,
    event: &str,
    reason: Option<&str>,
    detail: &Value,
    now: i64,
) -> Result<worker::D1PreparedStatement, StoreError> {
    edge.store.audit(&AuditRow {
        shop: Some(shop),
        order_id: Some(order_id),
        reason,
        ..AuditRow::event(now, event, ACTOR, detail)
    })
}

/// Reads the order's fulfillment orders and makes the mutations the plan asks for. Planned
/// from what Shopify shows now, so a repeat makes no second mutation.
async fn apply(edge: &Edge, shop: &str, order_id: &str, desired: &Desired) -> Result<Carried, Answer> {
    let q = sh::request(sh::Q_FULFILLMENT_ORDERS, json!({ "id": sh::order_gid(order_id) }));
    let data = match graphql(edge, shop, &q).await {
        Answer::Data(d) => d,
        other => return Err(other),
    };
    let Some(fos) = sh::parse_fulfillment_orders(&data) else {
        return Err(Answer::Permanent("the order is not known to Shopify".into()));
    };
    let mut holds: HashMap<String, Option<String>> = fos
        .iter()
        .map(|f| (f.id.clone(), f.holds.iter().find(|h| h.handle == sh::HOLD_HANDLE).map(|h| h.id.clone())))
        .collect();
    let mutations = match sh::plan(desired, &fos) {
        Plan::Done => Vec::new(),
        Plan::NotYet => return Err(Answer::Transient("the order has no fulfillment orders yet".into())),
        Plan::Mutate(m) => m,
    };
    let (mut placed, mut released) = (0, 0);
    for m in &mutations {
        let data = match graphql(edge, shop, &m.request()).await {
            Answer::Data(d) => d,
            other => return Err(other),
        };
        let payload = data.get(m.field()).cloned().unwrap_or(Value::Null);
        let errors = sh::user_errors(&payload);
        if !errors.is_empty() {
            // Someone placed the same handle meanwhile: planning again sees it in place.
            if errors.iter().all(|e| e.contains("DUPLICATE_FULFILLMENT_HOLD_HANDLE")) {
                return Err(Answer::Transient(errors.join("; ")));
            }
            return Err(Answer::Permanent(format!("userErrors: {}", errors.join("; "))));
        }
        match m {
            sh::Mutation::Hold { fulfillment_order, .. } => {
                let id = payload.pointer("/fulfillmentHold/id").and_then(Value::as_str).map(str::to_string);
                holds.insert(fulfillment_order.clone(), id);
                placed += 1;
            }
            sh::Mutation::Release { fulfillment_order, .. } => {
                holds.insert(fulfillment_order.clone(), None);
                released += 1;
            }
        }
    }
    Ok(Carried { seen: holds.into_iter().collect(), placed, released })
}

/// Cron: mirrors the queue did not carry out in time go back on it.
pub async fn requeue_mirrors(edge: &Edge, now: i64) -> Result<String, String> {
    let rows = edge.store.mirrors_due(now, 100).await.map_err(|e| format!("{e:?}"))?;
    for r in &rows {
        nudge(edge, &r.shop, &r.order_id, 0).await;
    }
    Ok(format!("{} overdue Shopify hold mirrors re-enqueued", rows.len()))
}

// ---------------------------------------------------------------------------------------
// Holds placed and released in Shopify.

/// What a hold webhook was, for the answer.
pub struct HoldEventOutcome {
    pub status: &'static str,
    pub review: bool,
}

/// `fulfillment_orders/placed_on_hold` and `fulfillment_orders/hold_released`. A hold staff
/// place in Shopify on an order orderlane routes puts it on `hold/manual` (actor
/// `shopify:staff`); staff releasing orderlane's hold is an operator release by
/// `shopify:staff`: the rules run again, and if they still hold the order, orderlane's hold
/// goes back on. orderlane's own holds and releases coming back are recorded as `ignored`. A
/// hold on a fulfillment order orderlane has not seen yet is looked up in Shopify through the
/// queue (the webhook answer never waits for Shopify).
pub async fn hold_event(
    edge: &Edge,
    d: &crate::core::webhook::Delivery,
    placed: bool,
    body: &[u8],
    now: i64,
) -> Result<HoldEventOutcome, StoreError> {
    use super::store::NewDelivery;

    let store = &edge.store;
    let record = |outcome, detail, order_id, body| NewDelivery {
        delivery: d,
        received_ms: now,
        outcome,
        detail,
        order_id,
        customer_id: None,
        body,
    };
    let event = match sh::parse_hold_event(body) {
        Ok(e) => e,
        Err(e) => {
            let detail = format!("{}: {e}", e.code());
            store.batch(store.record_delivery(&record("review", Some(&detail), None, Some(body)))?).await?;
            return Ok(HoldEventOutcome { status: "accepted", review: true });
        }
    };
    let ours = placed && event.handle.as_deref() == Some(sh::HOLD_HANDLE);
    let Some(fo) = store.fulfillment_order(&d.shop, &event.fulfillment_order).await? else {
        let (outcome, detail) = match (ours, placed) {
            (true, _) => ("ignored", "orderlane's own hold"),
            (false, true) => ("accepted", "held in Shopify by staff; looking up its order"),
            (false, false) => ("ignored", "no orderlane hold was in place"),
        };
        store.batch(store.record_delivery(&record(outcome, Some(detail), None, None))?).await?;
        if outcome == "accepted" {
            let msg =
                json!({ "op": LOOKUP_OP, "shop": d.shop, "fulfillment_order": event.fulfillment_order });
            send_message(edge, &msg.to_string(), 0).await;
        }
        return Ok(HoldEventOutcome { status: outcome, review: false });
    };
    let row = store.order(&d.shop, &fo.order_id).await?;
    let (action, detail) = match &row {
        Some(r) => decide(placed, &event, fo.hold_id.is_some(), r),
        None => (None, "an order orderlane has not seen"),
    };
    let outcome = if action.is_some() { "accepted" } else { "ignored" };
    let mut statements = store.record_delivery(&record(outcome, Some(detail), Some(&fo.order_id), None))?;
    if action == Some(crate::core::apply::Action::OperatorRelease) {
        statements.push(store.saw_fulfillment_order(
            &d.shop,
            &fo.order_id,
            &event.fulfillment_order,
            None,
            now,
        )?);
    }
    store.batch(statements).await?;
    if let (Some(action), Some(row)) = (action, row) {
        act(edge, &row, action, detail, now).await?;
    }
    Ok(HoldEventOutcome { status: outcome, review: false })
}

/// What a hold event means for an order orderlane routes, and why.
fn decide(
    placed: bool,
    event: &sh::HoldEvent,
    ours_in_place: bool,
    row: &super::store::OrderRow,
) -> (Option<crate::core::apply::Action>, &'static str) {
    use crate::core::apply::Action;
    use crate::core::types::State;
    if placed {
        if event.handle.as_deref() == Some(sh::HOLD_HANDLE) {
            return (None, "orderlane's own hold");
        }
        return match row.state {
            State::Hold => (None, "held in Shopify by staff; already held in orderlane"),
            State::Submitted | State::Fulfilled | State::Cancelled => {
                (None, "held in Shopify by staff; orderlane no longer routes this order")
            }
            _ => (Some(Action::OperatorHold), "held in Shopify by staff"),
        };
    }
    let ours_gone = ours_in_place && event.status.as_deref() != Some("on_hold");
    if ours_gone && row.state == State::Hold {
        (Some(Action::OperatorRelease), "orderlane's hold released in Shopify by staff")
    } else if !ours_in_place {
        (None, "no orderlane hold was in place")
    } else {
        (None, "another hold released; orderlane's stays")
    }
}

/// Applies a staff action as an operator action by `shopify:staff`. After a release the rules
/// may hold the order again: then orderlane's hold goes back on in Shopify.
async fn act(
    edge: &Edge,
    row: &super::store::OrderRow,
    action: crate::core::apply::Action,
    note: &str,
    now: i64,
) -> Result<(), StoreError> {
    use crate::core::apply::Action;
    use crate::core::types::State;
    let staff = super::api::Operator { actor: STAFF.to_string() };
    let state = row.state_text();
    let result =
        super::overrides::apply_operator(edge, &staff, &row.shop, &row.order_id, action, note, Some(&state))
            .await;
    let v = match result {
        Ok(v) => v,
        Err(e) => {
            let status = e.into_response().status_code();
            worker::console_warn!("{note} for {}:{}: not applied ({status})", row.shop, row.order_id);
            return Ok(());
        }
    };
    if action == Action::OperatorRelease {
        let held = v.get("state").and_then(Value::as_str) == Some(State::Hold.as_str());
        let reason = v.get("reason").and_then(Value::as_str).and_then(Reason::parse);
        if let (true, Some(reason)) = (held, reason) {
            let notes = v.get("explanation").and_then(Value::as_str).unwrap_or(reason.as_str()).to_string();
            let want = Desired::Hold { reason, notes };
            edge.store.batch(vec![edge.store.want_in_shopify(&row.shop, &row.order_id, &want, now)?]).await?;
            nudge(edge, &row.shop, &row.order_id, 0).await;
        }
    }
    Ok(())
}

/// A staff hold on a fulfillment order orderlane had not seen: which order is it? Then as if
/// the fulfillment order had been known.
async fn look_up(edge: &Edge, shop: &str, fulfillment_order: &str) -> Result<Next, StoreError> {
    let q = sh::request(sh::Q_FULFILLMENT_ORDER, json!({ "id": fulfillment_order }));
    let data = match graphql(edge, shop, &q).await {
        Answer::Data(d) => d,
        Answer::Throttled { wait_secs } => return Ok(Next::Later(wait_secs)),
        Answer::Transient(e) => {
            worker::console_warn!("looking up {fulfillment_order} of {shop} failed ({e}); trying again");
            return Ok(Next::Later(retry::scaled_delay(
                60,
                retry::Class::Transient { retry_after_secs: None },
                edge.settings.delay_scale,
            )));
        }
        Answer::Permanent(e) => {
            worker::console_error!("looking up {fulfillment_order} of {shop} failed: {e}");
            return Ok(Next::Ack);
        }
    };
    let Some((order_id, status)) = sh::parse_fulfillment_order(&data) else { return Ok(Next::Ack) };
    let Some(row) = edge.store.order(shop, &order_id).await? else { return Ok(Next::Ack) };
    let now = now_ms();
    let st = edge.store.saw_fulfillment_order(shop, &order_id, fulfillment_order, None, now)?;
    edge.store.batch(vec![st]).await?;
    let event = sh::HoldEvent {
        fulfillment_order: fulfillment_order.to_string(),
        handle: Some(String::new()),
        status: Some(status),
    };
    if let (Some(action), detail) = decide(true, &event, false, &row) {
        act(edge, &row, action, detail, now).await?;
    }
    Ok(Next::Ack)
}

// ---------------------------------------------------------------------------------------
// Reconciliation and webhook health (cron).

/// Shopify's order search trails its writes: each run lists again the last minutes before
/// the newest order it saw (those orders are found unchanged).
const RECONCILE_OVERLAP_MS: i64 = 10 * 60_000;

/// The shops the cron works for: those allowed by `ALLOWED_SHOPS` that have credentials
/// (with `*`, the shops named in `SHOPIFY_ADMIN_TOKENS`).
fn shops(edge: &Edge, env: &worker::Env) -> Vec<String> {
    let cfg = &edge.settings.shopify;
    let Some(webhook) = super::config::webhook(env) else { return Vec::new() };
    let mut out: Vec<String> = webhook
        .allowed_shops
        .iter()
        .filter(|s| s.as_str() != crate::core::webhook::ANY_SHOP && cfg.enabled_for(s))
        .cloned()
        .collect();
    if webhook.allowed_shops.iter().any(|s| s == crate::core::webhook::ANY_SHOP) {
        for (shop, _) in &cfg.tokens {
            if !out.contains(shop) {
                out.push(shop.clone());
            }
        }
    }
    out
}

/// Cron: per shop, the orders updated since the watermark, paged and bounded per run; each
/// one orderlane lacks or holds an older version of goes through the webhook path
/// (`system:reconcile`, keyed by order and version, so it is recorded once).
pub async fn reconcile(edge: &Edge, env: &worker::Env, now: i64) -> Result<String, String> {
    let shops = shops(edge, env);
    if shops.is_empty() {
        return Ok("no shop with Admin API credentials".into());
    }
    let mut out = Vec::new();
    for shop in &shops {
        match reconcile_shop(edge, shop, now).await {
            Ok(s) => out.push(format!("{shop}: {s}")),
            Err(e) => out.push(format!("{shop}: failed ({e:?})")),
        }
    }
    Ok(out.join("; "))
}

async fn reconcile_shop(edge: &Edge, shop: &str, now: i64) -> Result<String, StoreError> {
    let store = &edge.store;
    let cfg = &edge.settings.shopify;
    let state = store.sync_state(shop).await?;
    let watermark = state.as_ref().map(|s| s.watermark_ms).unwrap_or(now - cfg.lookback_ms);
    let (since, mut cursor) = match &state {
        Some(s) if s.cursor.is_some() => (s.cursor_since_ms.unwrap_or(watermark), s.cursor.clone()),
        _ => (watermark, None),
    };
    let filter = sh::orders_filter(since);
    let mut run =
        super::store::Run { kind: "reconcile", started_ms: now, since_ms: Some(since), ..Default::default() };
    let mut newest = since;
    let mut finished = false;
    let mut problem = None;
    for _ in 0..cfg.max_pages {
        let q =
            sh::request(sh::Q_ORDERS, json!({ "first": sh::ORDERS_PAGE, "after": cursor, "query": filter }));
        let data = match graphql(edge, shop, &q).await {
            Answer::Data(d) => d,
            other => {
                problem = Some(format!("{other:?}"));
                break;
            }
        };
        let Some((nodes, next)) = sh::parse_orders_page(&data) else {
            problem = Some("unreadable orders page".into());
            break;
        };
        run.pages += 1;
        run.listed += nodes.len() as i64;
        let mut bodies = Vec::new();
        for node in &nodes {
            match sh::webhook_body(node) {
                Ok(b) => bodies.push(b),
                Err(_) => run.failed += 1,
            }
        }
        let ids: Vec<String> = bodies.iter().map(|(id, _, _)| id.clone()).collect();
        let held = store.order_versions(shop, &ids).await?;
        for (id, updated_ms, body) in &bodies {
            newest = newest.max(*updated_ms);
            let version = held.iter().find(|v| &v.order_id == id).map(|v| v.order_updated_ms.unwrap_or(0));
            if version.is_some_and(|v| v >= *updated_ms) {
                run.unchanged += 1;
                continue;
            }
            match feed(edge, shop, id, *updated_ms, body, version.is_some(), now).await {
                Ok(true) => run.fed += 1,
                Ok(false) => run.unchanged += 1,
                Err(e) => {
                    worker::console_error!("reconcile {shop}:{id} failed: {e:?}");
                    run.failed += 1;
                }
            }
        }
        cursor = next;
        if cursor.is_none() {
            finished = true;
            break;
        }
    }
    let save = if finished {
        let mark = newest.min(now - RECONCILE_OVERLAP_MS).max(since);
        store.save_sync(shop, mark, None, now)?
    } else {
        // Stopped at the page bound or an error: the next run continues the same listing.
        store.save_sync(shop, watermark, cursor.as_deref().map(|c| (c, since)), now)?
    };
    run.detail = problem.as_deref();
    store.batch(vec![save, store.sync_run(shop, &run, now_ms())?]).await?;
    Ok(format!(
        "{} listed, {} fed, {} unchanged, {} failed over {} pages{}",
        run.listed,
        run.fed,
        run.unchanged,
        run.failed,
        run.pages,
        problem.map(|p| format!(" (stopped: {p})")).unwrap_or_default()
    ))
}

/// Records and routes one listed order as a webhook would be. False when it was recorded before.
async fn feed(
    edge: &Edge,
    shop: &str,
    order_id: &str,
    updated_ms: i64,
    body: &str,
    known: bool,
    now: i64,
) -> Result<bool, StoreError> {
    use crate::core::webhook::{self, Topic};
    let topic = if known { Topic::OrdersUpdated } else { Topic::OrdersCreate };
    let d = webhook::Delivery {
        topic: topic.as_str().to_string(),
        shop: shop.to_string(),
        webhook_id: sh::reconcile_webhook_id(order_id, updated_ms),
        event_id: None,
        triggered_at: None,
        api_version: Some(sh::API_VERSION.to_string()),
        body_size: body.len(),
        body_hmac: webhook::digest_hex(&edge.settings.email_key, body.as_bytes()),
    };
    match super::ingest::record_and_route(edge, &d, topic, body.as_bytes(), now, RECONCILE_ACTOR).await? {
        super::ingest::Recorded::Duplicate => Ok(false),
        super::ingest::Recorded::Accepted { .. } => Ok(true),
    }
}

/// The incident kinds of the webhook health check (keys `<kind>:<shop>`).
pub const HEALTH_KINDS: [&str; 2] = ["webhook_missing", "shop_quiet"];

/// A problem the webhook health check found for a shop.
pub struct Incident {
    /// Stable per incident: `webhook_missing:<shop>` or `shop_quiet:<shop>`.
    pub key: String,
    pub title: String,
    pub text: String,
}

/// Cron: the subscriptions orderlane needs are in place (shops on static tokens: apps
/// configured by `shopify.app.toml` declare theirs in the app, where the API does not list
/// them), and each shop has delivered within `SHOPIFY_QUIET_MINUTES`. Returns the incidents
/// open now and the shops checked.
pub async fn health(edge: &Edge, env: &worker::Env, now: i64) -> (Vec<Incident>, Vec<String>) {
    let cfg = &edge.settings.shopify;
    let mut incidents = Vec::new();
    let shops = shops(edge, env);
    for shop in &shops {
        let mut run = super::store::Run { kind: "health", started_ms: now, ..Default::default() };
        let mut notes = Vec::new();
        if cfg.tokens.iter().any(|(s, _)| s == shop) {
            let q = sh::request(sh::Q_SUBSCRIPTIONS, json!({}));
            match graphql(edge, shop, &q).await {
                Answer::Data(d) => {
                    let present = sh::subscribed_topics(&d);
                    let missing = sh::missing_topics(&present);
                    if !missing.is_empty() {
                        let topics: Vec<String> = missing.iter().map(|t| sh::webhook_topic(t)).collect();
                        notes.push(format!("missing subscriptions: {}", topics.join(", ")));
                        incidents.push(Incident {
                            key: format!("webhook_missing:{shop}"),
                            title: format!("{shop}: webhook subscriptions missing"),
                            text: format!(
                                "Shopify is not sending {} to orderlane for {shop}: orders may go unrouted. \
                                 Register them again (README, go-live runbook); reconciliation covers the gap meanwhile.",
                                topics.join(", ")
                            ),
                        });
                    }
                }
                other => notes.push(format!("subscriptions not checked: {other:?}")),
            }
        }
        match edge.store.last_delivery_ms(shop).await {
            Ok(last) => {
                let quiet_for = last.map(|l| now - l);
                if quiet_for.is_none_or(|q| q > cfg.quiet_ms) {
                    let since =
                        last.map(crate::core::time::format_rfc3339_ms).unwrap_or_else(|| "never".into());
                    notes.push(format!("no delivery since {since}"));
                    incidents.push(Incident {
                        key: format!("shop_quiet:{shop}"),
                        title: format!("{shop}: no webhook for {} minutes", cfg.quiet_ms / 60_000),
                        text: format!(
                            "orderlane has had no delivery from {shop} since {since}. Check the app's webhook \
                             subscriptions in Shopify (failing ones are removed after 8 failed retries)."
                        ),
                    });
                }
            }
            Err(e) => notes.push(format!("last delivery unknown: {e:?}")),
        }
        let detail = notes.join("; ");
        run.detail = Some(&detail);
        run.failed = incidents.iter().filter(|i| i.key.ends_with(shop.as_str())).count() as i64;
        if let Ok(st) = edge.store.sync_run(shop, &run, now_ms()) {
            let _ = edge.store.batch(vec![st]).await;
        }
    }
    (incidents, shops)
}
