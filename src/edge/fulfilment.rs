//! The fulfilment queue: its producer (one message per ready order) and its consumer, which
//! claims each attempt in D1, POSTs the signed document to `FULFILMENT_URL`, and records what
//! happened. Also the dead-letter queue's consumer. Every message is acked or retried here;
//! the handler never returns `Err` (that would redeliver the whole batch).

use std::time::Duration;

use futures_util::future::{join_all, select, Either};
use wasm_bindgen::JsValue;
use worker::{
    AbortController, Date, Delay, Env, Fetch, Headers, Message, MessageBatch, MessageExt, Method, Queue,
    QueueRetryOptionsBuilder, Request, RequestInit,
};

use super::config;
use super::orders::fulfilment_request;
use super::store::{AttemptEnd, AuditRow, OrderRow, Store, StoreError};
use crate::core::fulfilment::{QueueMessage, HDR_IDEMPOTENCY_KEY, HDR_SIGNATURE};
use crate::core::retry::{self, Class, Outcome, Step};
use crate::core::types::Mode;

pub const FULFILMENT_QUEUE_NAME: &str = "orderlane-fulfilment";
const ACTOR: &str = "system:retry";
/// How long moving a ready order out of ready may hold it.
const LEASE_MS: i64 = 60_000;
const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// Settings read once per batch.
struct Settings {
    url: Option<String>,
    secret: Option<String>,
    timeout_ms: u64,
    /// Multiplies every retry delay; 1 in production. Local test stacks shrink it.
    delay_scale: f64,
}

impl Settings {
    fn from_env(env: &Env) -> Settings {
        Settings {
            url: config::text(env, "FULFILMENT_URL"),
            secret: config::text(env, "FULFILMENT_SECRET"),
            timeout_ms: config::text(env, "FULFILMENT_TIMEOUT_MS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_TIMEOUT_MS),
            delay_scale: config::text(env, "RETRY_DELAY_SCALE")
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| *v > 0.0 && *v <= 1.0)
                .unwrap_or(1.0),
        }
    }
}

fn now_ms() -> i64 {
    Date::now().as_millis() as i64
}

/// A draw in [0, 1) for jitter.
fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

/// Sends one message for a ready order. The order row is the truth; the message only names it.
pub async fn enqueue(queue: &Queue, msg: &QueueMessage, delay_secs: u32) -> Result<(), String> {
    let body = msg.to_json();
    let send = worker::MessageBuilder::new(body).delay_seconds(delay_secs).build();
    queue.send(send).await.map_err(|e| e.to_string())
}

pub async fn consume(batch: MessageBatch<String>, env: &Env) {
    let Ok(db) = env.d1(config::DB) else {
        worker::console_error!("D1 binding missing: retrying batch");
        batch.retry_all();
        return;
    };
    let store = Store::new(db);
    let messages = match batch.messages() {
        Ok(m) => m,
        Err(e) => {
            worker::console_error!("queue batch unreadable: {e}");
            batch.retry_all();
            return;
        }
    };
    if batch.queue() == FULFILMENT_QUEUE_NAME {
        let settings = Settings::from_env(env);
        let queue = env.queue(config::FULFILMENT_QUEUE).ok();
        let flags = env.kv(config::FLAGS).ok().map(super::flags::Flags::new);
        let ctx = Ctx { store: &store, settings: &settings, queue: queue.as_ref(), flags: flags.as_ref() };
        join_all(messages.iter().map(|m| handle(&ctx, m))).await;
    } else {
        join_all(messages.iter().map(|m| dead_lettered(&store, m))).await;
    }
}

struct Ctx<'a> {
    store: &'a Store,
    settings: &'a Settings,
    queue: Option<&'a Queue>,
    flags: Option<&'a super::flags::Flags>,
}

/// What to do with a message once its attempt is over.
enum Disposition {
    Ack,
    /// Another consumer holds this attempt: look again when its lease runs out, so the order
    /// is not stranded if that consumer died.
    RetryIn(u32),
}

/// Acks when the message's effect is durably recorded; retries it when storage failed.
async fn handle(ctx: &Ctx<'_>, m: &Message<String>) {
    match attempt(ctx, m.body()).await {
        Ok(Disposition::Ack) => m.ack(),
        Ok(Disposition::RetryIn(secs)) => {
            m.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(secs).build())
        }
        Err(e) => {
            worker::console_error!("fulfilment message will be retried: {e:?}");
            m.retry();
        }
    }
}

async fn attempt(ctx: &Ctx<'_>, raw: &str) -> Result<Disposition, StoreError> {
    let store = ctx.store;
    let now = now_ms();
    let msg = match QueueMessage::from_json(raw) {
        Ok(m) => m,
        Err(e) => {
            let st = store.dead_letter(
                None,
                None,
                None,
                "invalid_message",
                0,
                Some(&format!("{e}")),
                None,
                None,
                Some(raw),
                now,
            )?;
            return store.batch(vec![st]).await.map(|_| Disposition::Ack);
        }
    };
    let Some(row) = store.order(&msg.shop, &msg.order_id).await? else {
        worker::console_warn!("fulfilment message for unknown order {}:{}", msg.shop, msg.order_id);
        return Ok(Disposition::Ack);
    };
    if row.state != "ready-for-fulfilment" || i64::from(msg.submission) != row.submission {
        // Already submitted, cancelled, held, or superseded by a newer submission: nothing to do.
        return Ok(Disposition::Ack);
    }
    // A lane rolled back to manual or shadow after the decision: hold instead of sending.
    let lane_default =
        super::routing::matrix().ok().and_then(|m| m.lane(&row.segment)).map(|l| l.default_mode);
    let mode =
        super::routing::kv_mode(ctx.flags, &row.segment).await.or(lane_default).unwrap_or(Mode::Manual);
    if mode != Mode::Auto {
        return hold_for_mode(store, &row, now).await.map(|_| Disposition::Ack);
    }
    let lease = random_id();
    let attempt_no = i64::from(msg.attempt);
    let lease_ms = lease_ms(ctx.settings);
    if !store
        .claim_attempt(&row.shop, &row.order_id, row.submission, attempt_no, &lease, now, lease_ms)
        .await?
    {
        // Another delivery holds the attempt (come back when its lease ends), or the message
        // is stale (an older attempt than the order has made).
        return Ok(match row.lease_until {
            Some(until) if until > now => Disposition::RetryIn((((until - now) / 1000) as u32 + 1).min(300)),
            _ => Disposition::Ack,
        });
    }
    let outcome = send(ctx.settings, store, &row).await;
    // What the warehouse said must not be lost to a passing storage error: try a few times
    // before letting the message retry (which repeats the call under the same key).
    let mut result = record(ctx, &row, &msg, &lease, &outcome).await;
    for pause_ms in [100, 400, 1600] {
        if !matches!(result, Err(StoreError::Unavailable(_))) {
            break;
        }
        Delay::from(Duration::from_millis(pause_ms)).await;
        result = record(ctx, &row, &msg, &lease, &outcome).await;
    }
    match result {
        Ok(()) => Ok(Disposition::Ack),
        Err(e) => {
            // Free the order for the retry of this message (best effort: storage may be down,
            // in which case the lease simply runs out).
            let _ = store.free_lease(&row.shop, &row.order_id, &lease).await;
            Err(e)
        }
    }
}

/// How long an attempt may hold an order: the warehouse timeout plus room for D1.
fn lease_ms(s: &Settings) -> i64 {
    s.timeout_ms as i64 + 20_000
}

/// Moves a ready order of a lane that is no longer `auto` to hold/manual, unless an attempt
/// is in flight (then the attempt finishes and this message is dropped).
async fn hold_for_mode(store: &Store, row: &OrderRow, now: i64) -> Result<(), StoreError> {
    let lease = random_id();
    if !store.take_lease(&row.shop, &row.order_id, &lease, now, LEASE_MS).await? {
        return Ok(());
    }
    let detail = serde_json::json!({ "why": "segment is no longer in auto mode" });
    let st = store.leased_transition(
        row,
        &lease,
        "hold",
        Some("manual"),
        &["held_ms"],
        "held",
        "system:router",
        &detail,
        now,
    )?;
    store.batch(st).await
}

/// What one POST produced, or why it was not made.
enum Sent {
    Response(Outcome),
    /// The order cannot be turned into a document (body erased or unreadable): needs a person.
    Unbuildable(String),
}

async fn send(settings: &Settings, store: &Store, row: &OrderRow) -> Sent {
    let (Some(url), Some(secret)) = (settings.url.as_deref(), settings.secret.as_deref()) else {
        return Sent::Response(Outcome::Network("FULFILMENT_URL or FULFILMENT_SECRET is not set".into()));
    };
    let body = match row.payload_delivery_id {
        Some(id) => match store.body(id).await {
            Ok(Some(b)) => b,
            Ok(None) => return Sent::Unbuildable("the order's stored body is gone (erased?)".into()),
            Err(e) => return Sent::Response(Outcome::Network(format!("reading the order failed: {e:?}"))),
        },
        None => return Sent::Unbuildable("no stored body for this order".into()),
    };
    let doc = match fulfilment_request(row, &body) {
        Ok(d) => d,
        Err(e) => return Sent::Unbuildable(e),
    };
    let signed = match doc.signed(secret.as_bytes()) {
        Ok(s) => s,
        Err(e) => return Sent::Unbuildable(e.to_string()),
    };
    Sent::Response(
        post(url, settings.timeout_ms, &signed.body, &signed.idempotency_key, &signed.signature).await,
    )
}

async fn post(url: &str, timeout_ms: u64, body: &[u8], key: &str, signature: &str) -> Outcome {
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/json");
    let _ = headers.set(HDR_IDEMPOTENCY_KEY, key);
    let _ = headers.set(HDR_SIGNATURE, signature);
    let text = String::from_utf8_lossy(body).into_owned();
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(JsValue::from_str(&text)));
    let req = match Request::new_with_init(url, &init) {
        Ok(r) => r,
        Err(e) => return Outcome::Network(format!("bad FULFILMENT_URL: {e}")),
    };
    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async move {
        let mut resp = Fetch::Request(req).send_with_signal(&signal).await?;
        let code = resp.status_code();
        let retry_after = resp.headers().get("retry-after").ok().flatten();
        let bytes = resp.bytes().await.unwrap_or_default();
        Ok::<_, worker::Error>((code, retry_after, bytes))
    };
    let timer = Delay::from(Duration::from_millis(timeout_ms));
    match select(Box::pin(call), Box::pin(timer)).await {
        Either::Left((Ok((code, retry_after, bytes)), _)) => {
            Outcome::Status { code, retry_after, body_snippet: retry::snippet(&bytes) }
        }
        Either::Left((Err(e), _)) => Outcome::Network(e.to_string()),
        Either::Right(_) => {
            controller.abort();
            Outcome::Timeout
        }
    }
}

/// How an attempt that moves the order out of ready ends.
struct Ending<'a> {
    outcome: &'a str,
    http_status: Option<u16>,
    error: Option<&'a str>,
    to: &'a str,
    reason: Option<&'a str>,
    stamps: &'a [&'a str],
    event: &'a str,
    detail: &'a serde_json::Value,
}

/// The attempt's record, `extra`, then the order's audited move, as one batch.
fn ending(
    store: &Store,
    row: &OrderRow,
    lease: &str,
    attempt_no: i64,
    now: i64,
    e: &Ending<'_>,
    extra: Vec<worker::D1PreparedStatement>,
) -> Result<Vec<worker::D1PreparedStatement>, StoreError> {
    let end = AttemptEnd { outcome: e.outcome, http_status: e.http_status, error: e.error };
    let mut st =
        vec![store.finish_attempt(&row.shop, &row.order_id, row.submission, attempt_no, now, &end)?];
    st.extend(extra);
    st.extend(store.leased_transition(row, lease, e.to, e.reason, e.stamps, e.event, ACTOR, e.detail, now)?);
    Ok(st)
}

fn status_of(o: &Outcome) -> Option<u16> {
    match o {
        Outcome::Status { code, .. } => Some(*code),
        _ => None,
    }
}

async fn record(
    ctx: &Ctx<'_>,
    row: &OrderRow,
    msg: &QueueMessage,
    lease: &str,
    sent: &Sent,
) -> Result<(), StoreError> {
    let store = ctx.store;
    let now = now_ms();
    let attempt_no = i64::from(msg.attempt);
    let outcome = match sent {
        Sent::Response(o) => o,
        Sent::Unbuildable(why) => {
            let dead = store.dead_letter(
                Some(&row.shop),
                Some(&row.order_id),
                Some(row.submission),
                "unbuildable",
                attempt_no,
                Some(why),
                None,
                None,
                None,
                now,
            )?;
            let detail = serde_json::json!({ "cause": "unbuildable", "error": why });
            let end = Ending {
                outcome: "refused",
                http_status: None,
                error: Some(why),
                to: "hold",
                reason: Some("fulfilment"),
                stamps: &["held_ms", "failed_ms"],
                event: "dead_lettered",
                detail: &detail,
            };
            return store.batch(ending(store, row, lease, attempt_no, now, &end, vec![dead])?).await;
        }
    };
    let class = retry::classify(outcome, now);
    let step = retry::next_step(msg.attempt, class, random_unit());
    let http_status = status_of(outcome);
    let described = outcome.describe();
    let response = match &outcome {
        Outcome::Status { body_snippet, .. } => Some(body_snippet.as_str()),
        _ => None,
    };
    let base = serde_json::json!({
        "attempt": msg.attempt, "submission": msg.submission, "http_status": http_status, "outcome": described,
    });
    match step {
        Step::Done => {
            let end = Ending {
                outcome: "accepted",
                http_status,
                error: None,
                to: "submitted",
                reason: None,
                stamps: &["submitted_ms"],
                event: "submitted",
                detail: &base,
            };
            store.batch(ending(store, row, lease, attempt_no, now, &end, Vec::new())?).await
        }
        Step::HoldInventory => {
            // The warehouse says the units are not there: the claim is dropped, not returned.
            let drop = store.drop_reservations(&row.shop, &row.order_id)?;
            let end = Ending {
                outcome: "out_of_stock",
                http_status,
                error: response,
                to: "hold",
                reason: Some("inventory"),
                stamps: &["held_ms"],
                event: "downstream_out_of_stock",
                detail: &base,
            };
            store.batch(ending(store, row, lease, attempt_no, now, &end, vec![drop])?).await
        }
        Step::DeadLetter { cause } => {
            let dead = store.dead_letter(
                Some(&row.shop),
                Some(&row.order_id),
                Some(row.submission),
                cause.as_str(),
                attempt_no,
                Some(&described),
                http_status,
                response,
                None,
                now,
            )?;
            let mut detail = base.clone();
            detail["cause"] = cause.as_str().into();
            let outcome = if class == Class::Permanent { "refused" } else { "transient" };
            let end = Ending {
                outcome,
                http_status,
                error: Some(&described),
                to: "hold",
                reason: Some("fulfilment"),
                stamps: &["held_ms", "failed_ms"],
                event: "dead_lettered",
                detail: &detail,
            };
            store.batch(ending(store, row, lease, attempt_no, now, &end, vec![dead])?).await
        }
        Step::RetryAfter { delay_secs, next_attempt } => {
            // The schedule is scaled (local stacks shrink it); what the warehouse asked for is not.
            let scaled = ((f64::from(delay_secs) * ctx.settings.delay_scale).round() as u32)
                .clamp(1, retry::MAX_DELAY_SECS);
            let asked = match class {
                Class::Transient { retry_after_secs: Some(ra) } => ra.min(retry::MAX_DELAY_SECS),
                _ => 0,
            };
            let delay = scaled.max(asked);
            let mut detail = base.clone();
            detail["next_attempt"] = next_attempt.into();
            detail["delay_secs"] = delay.into();
            let audit = AuditRow {
                at_ms: now,
                shop: Some(&row.shop),
                order_id: Some(&row.order_id),
                seq: None,
                segment: Some(&row.segment),
                event: "retry_scheduled",
                from_state: Some(&row.state),
                to_state: Some(&row.state),
                reason: None,
                rule_id: None,
                rules_version: Some(&row.rules_version),
                actor: ACTOR,
                detail: &detail,
            };
            let mut st = vec![store.finish_attempt(
                &row.shop,
                &row.order_id,
                row.submission,
                attempt_no,
                now,
                &AttemptEnd { outcome: "transient", http_status, error: Some(&described) },
            )?];
            st.extend(store.release_lease(row, lease, now, &audit)?);
            store.batch(st).await?;
            // If this send fails the order stays ready with its lease released; the cron sweep
            // re-enqueues ready orders whose retry is overdue.
            if let Some(q) = ctx.queue {
                if let Err(e) = enqueue(q, &msg.retry(next_attempt), delay).await {
                    worker::console_error!("re-enqueue failed, the sweep will pick it up: {e}");
                }
            }
            Ok(())
        }
    }
}

/// The runtime dead-letter queue: a message the consumer kept failing on. If its order is
/// still waiting as ready it is moved to hold/fulfilment with a `dead_letters` row, so it shows
/// in the exception queue; an unreadable message or unknown order is recorded as is. An order
/// that has moved on (submitted, held, cancelled) or whose attempt is in flight needs nobody.
async fn dead_lettered(store: &Store, m: &Message<String>) {
    let raw = m.body().clone();
    let now = now_ms();
    let result = async {
        let record = |shop: Option<&str>, order: Option<&str>, submission, attempt, why: &str| {
            store.dead_letter(
                shop,
                order,
                submission,
                "dead_letter_queue",
                attempt,
                Some(why),
                None,
                None,
                Some(&raw),
                now,
            )
        };
        let Ok(p) = QueueMessage::from_json(&raw) else {
            return store.batch(vec![record(None, None, None, 0, "unreadable queue message")?]).await;
        };
        let Some(row) = store.order(&p.shop, &p.order_id).await? else {
            let st = record(
                Some(&p.shop),
                Some(&p.order_id),
                Some(i64::from(p.submission)),
                i64::from(p.attempt),
                "unknown order",
            )?;
            return store.batch(vec![st]).await;
        };
        let lease = random_id();
        if row.state != "ready-for-fulfilment"
            || !store.take_lease(&row.shop, &row.order_id, &lease, now, LEASE_MS).await?
        {
            worker::console_log!(
                "dead-letter queue: {}:{} needs nobody (state {})",
                p.shop,
                p.order_id,
                row.state
            );
            return Ok(());
        }
        let why = "delivery to the fulfilment consumer kept failing";
        let mut st = vec![record(
            Some(&p.shop),
            Some(&p.order_id),
            Some(i64::from(p.submission)),
            i64::from(p.attempt),
            why,
        )?];
        let detail = serde_json::json!({ "cause": "dead_letter_queue" });
        st.extend(store.leased_transition(
            &row,
            &lease,
            "hold",
            Some("fulfilment"),
            &["held_ms", "failed_ms"],
            "dead_lettered",
            ACTOR,
            &detail,
            now,
        )?);
        store.batch(st).await
    }
    .await;
    match result {
        Ok(()) => m.ack(),
        Err(e) => {
            worker::console_error!("dead-letter record failed, retrying: {e:?}");
            m.retry();
        }
    }
}
