//! The fulfilment queue's consumer: for each message, decide whether its attempt may be made
//! (the order still waits, no earlier POST can be in flight, the lane is `auto` now), claim
//! it, POST the signed document (or cancel request) to `FULFILMENT_URL`, and record what the
//! warehouse said. Every move of the order is an `Action` applied by `core::apply` and written
//! by the one writer, guarded by the order's version: a newer event (a cancellation) always
//! wins over a late answer, which is then applied to the order as it is now.
//!
//! Storage or KV errors never decide anything: the message is retried after a delay. Also the
//! dead-letter queue's consumer. Every message is acked or retried here; the handler never
//! returns `Err` (that would redeliver the whole batch).

use std::time::Duration;

use futures_util::future::join_all;
use worker::{Delay, Message, MessageBatch, MessageExt, QueueRetryOptionsBuilder};

use super::context::{now_ms, random_id, random_unit, Edge};
use super::outbound;
use super::queue::enqueue;
use super::store::{
    AttemptEnd, DeadLetter, DocumentOp, LeaseOp, Lifecycle, OrderReads, OrderRow, ReadPlan, StoreError,
};
use super::writer::{self, Change};
use crate::core::apply::{apply_action, Action, Applied};
use crate::core::fulfilment::{
    CancelRequest, DocumentMeta, FulfilmentRequest, QueueMessage, RequestKind, SignedRequest,
};
use crate::core::lifecycle::{self, Claim};
use crate::core::retry::{self, Class, DeadLetterCause, Outcome, Step};
use crate::core::types::{CancelState, Mode, State};

pub const FULFILMENT_QUEUE_NAME: &str = "orderlane-fulfilment";
pub const DEAD_LETTER_QUEUE_NAME: &str = "orderlane-dead-letter";
const ACTOR: &str = "system:retry";
/// The lane-mode check at send time acts for routing.
const MODE_ACTOR: &str = "system:router";

pub async fn consume(batch: MessageBatch<String>, edge: &Edge) {
    let messages = match batch.messages() {
        Ok(m) => m,
        Err(e) => {
            worker::console_error!("queue batch unreadable: {e}");
            batch.retry_all();
            return;
        }
    };
    match batch.queue().as_str() {
        FULFILMENT_QUEUE_NAME => {
            join_all(messages.iter().map(|m| async move {
                if super::shopify::is_shopify_message(m.body()) {
                    super::shopify::consume(edge, m).await
                } else {
                    handle(edge, m).await
                }
            }))
            .await;
        }
        DEAD_LETTER_QUEUE_NAME => {
            join_all(messages.iter().map(|m| dead_lettered(edge, m))).await;
        }
        other => {
            worker::console_error!("message from unknown queue {other}: retrying the batch");
            batch.retry_all();
        }
    }
}

/// What to do with a message once it has been handled.
enum Disposition {
    Ack,
    /// Look again later: an attempt may still be in flight, or a write lost a race.
    Wait(u32),
    /// Storage or KV failed: the runtime retries the message after a delay.
    RetryIn(u32),
}

/// Storage or KV failed: nothing was decided; the message is retried after a delay.
#[derive(Debug)]
struct Retry(String);

impl From<StoreError> for Retry {
    fn from(e: StoreError) -> Self {
        Retry(format!("{e:?}"))
    }
}

async fn handle(edge: &Edge, m: &Message<String>) {
    let disposition = match process(edge, m.body()).await {
        Ok(d) => d,
        Err(Retry(e)) => {
            worker::console_error!("fulfilment message will be retried: {e}");
            Disposition::RetryIn(edge.settings.infra_retry_secs())
        }
    };
    match disposition {
        Disposition::Ack => m.ack(),
        // Waiting is not failing: the message is sent again as new (the runtime's retries,
        // which lead to the dead-letter queue, are kept for errors).
        Disposition::Wait(secs) => match requeue(edge, m.body(), secs).await {
            Ok(()) => m.ack(),
            Err(e) => {
                worker::console_error!("re-enqueue failed, retrying the message instead: {e}");
                m.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(secs).build())
            }
        },
        Disposition::RetryIn(secs) => {
            m.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(secs).build())
        }
    }
}

async fn requeue(edge: &Edge, raw: &str, delay_secs: u32) -> Result<(), String> {
    let q = edge.queue.as_ref().ok_or("FULFILMENT_QUEUE binding missing")?;
    let send = worker::MessageBuilder::new(raw.to_string()).delay_seconds(delay_secs).build();
    q.send(send).await.map_err(|e| e.to_string())
}

async fn process(edge: &Edge, raw: &str) -> Result<Disposition, Retry> {
    let now = now_ms();
    let msg = match QueueMessage::from_json(raw) {
        Ok(m) => m,
        Err(e) => {
            let why = e.to_string();
            let st = edge.store.dead_letter(&DeadLetter::unreadable(&why, raw), now)?;
            edge.store.batch(vec![st]).await?;
            return Ok(Disposition::Ack);
        }
    };
    let cancel = msg.kind == RequestKind::Cancel;
    let plan = ReadPlan {
        attempt_of_cancel: Some(cancel),
        lane_mode: !cancel,
        inputs: !cancel,
        ..ReadPlan::default()
    };
    let reads = edge.store.order_reads(&msg.shop, &msg.order_id, &plan).await?;
    let Some(row) = reads.row.as_ref() else {
        worker::console_warn!("fulfilment message for unknown order {}:{}", msg.shop, msg.order_id);
        return Ok(Disposition::Ack);
    };
    let waiting = if cancel {
        row.cancel_state == Some(CancelState::Requested)
    } else {
        row.state == State::ReadyForFulfilment
    };
    if !waiting || i64::from(msg.submission) != row.submission {
        // Sent, cancelled, held, or superseded by a newer submission: nothing to do.
        return Ok(Disposition::Ack);
    }
    let timeout_ms = edge.settings.timeout_ms as i64;
    match lifecycle::claim(&reads.attempt_view(row, cancel), msg.attempt, now, timeout_ms) {
        Claim::Stale => return Ok(Disposition::Ack),
        Claim::Busy { retry_in_secs } => return Ok(Disposition::Wait(retry_in_secs)),
        Claim::Go => {}
    }
    if !cancel {
        // Whether the order is sent is decided now, from the lane's current mode.
        let m = edge.matrix().map_err(Retry)?;
        let kv = edge.kv_mode(&row.segment).await.map_err(Retry)?;
        let default = m.lane(&row.segment).map(|l| l.default_mode).unwrap_or(Mode::Manual);
        let mode = lifecycle::send_mode(&kv, default, reads.recorded_mode, now);
        if mode != Mode::Auto {
            return hold_for_mode(edge, row, &reads, mode, now).await;
        }
    }
    let document = (!cancel).then(|| document(row, &reads));
    let lease = random_id();
    if !claim(edge, row, &reads, &msg, &lease, document.as_ref(), now).await? {
        // Another writer moved the order first: look at it again.
        return Ok(Disposition::Wait(1));
    }
    let sent = send(edge, row, &msg, document.as_ref(), now).await;
    finish(edge, &msg, &lease, &sent).await
}

/// This round's warehouse document: the one fixed at its first claim, else built now from
/// the order's typed inputs (rows from before them: from the stored body while it lasts).
/// `Err` says why there is none; the attempt then dead-letters for a person.
fn document(row: &OrderRow, reads: &OrderReads) -> Result<String, String> {
    let stored = reads.stored.as_ref();
    if let Some(d) = stored.and_then(|s| s.document.clone()) {
        return Ok(d);
    }
    let Some(order) = stored.and_then(|s| s.document_order(row)) else {
        return Err("the order has no typed inputs and its stored body is gone (purged or erased)".into());
    };
    let meta = document_meta(row);
    let body = FulfilmentRequest::from_order(&order, &meta).to_body().map_err(|e| e.to_string())?;
    String::from_utf8(body).map_err(|_| "the document is not UTF-8".to_string())
}

/// Claims the attempt: the lease, the attempt counter and row, and (for a submission) the
/// round's document, as one guarded write. False when another writer won.
async fn claim(
    edge: &Edge,
    row: &OrderRow,
    reads: &OrderReads,
    msg: &QueueMessage,
    lease: &str,
    document: Option<&Result<String, String>>,
    now: i64,
) -> Result<bool, Retry> {
    let store = &edge.store;
    let until = now + edge.settings.lease_ms();
    let attempt = i64::from(msg.attempt);
    let start =
        store.start_attempt(msg.kind, &row.shop, &row.order_id, row.submission, attempt, lease, now)?;
    if msg.kind == RequestKind::Cancel {
        let claim = store.claim_cancel(&row.shop, &row.order_id, row.seq, attempt, lease, until)?;
        let changes = store.batch_changes(vec![claim, start]).await?;
        return Ok(changes.first() == Some(&1));
    }
    let rec = writer::record_from(row, reads, now);
    let applied = apply_action(&rec, Action::SubmissionClaimed, None, now);
    let change = Change::to(row, &reads.open, ACTOR, now).with(Lifecycle {
        lease: LeaseOp::Take { id: lease, until_ms: until },
        attempts: Some(attempt),
        // If this consumer dies, the cron finds the order once the lease is over.
        next_attempt_ms: Some(Some(until)),
        document: document.and_then(|d| d.as_deref().ok()).map(DocumentOp::Fix),
        ..Lifecycle::default()
    });
    let mut statements = writer::statements(store, &change, &applied)?;
    statements.push(start);
    match store.batch(statements).await {
        Ok(()) => Ok(true),
        Err(StoreError::Conflict) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// What one attempt produced.
enum Sent {
    Answer(Outcome),
    /// The order cannot be turned into a document (no typed inputs and no body): needs a person.
    Unbuildable(String),
}

async fn send(
    edge: &Edge,
    row: &OrderRow,
    msg: &QueueMessage,
    document: Option<&Result<String, String>>,
    claimed_ms: i64,
) -> Sent {
    let s = &edge.settings;
    let (Some(url), Some(secret)) = (s.fulfilment_url.as_deref(), s.fulfilment_secret.as_deref()) else {
        return Sent::Answer(Outcome::Network("FULFILMENT_URL or FULFILMENT_SECRET is not set".into()));
    };
    let meta = document_meta(row);
    let signed = match (msg.kind, document) {
        (RequestKind::Cancel, _) => CancelRequest::new(&meta).signed(secret.as_bytes()),
        // The round's document, fixed at its first claim: retries repeat the same bytes.
        (RequestKind::Submit, Some(Ok(doc))) => {
            Ok(SignedRequest::sign(doc.as_bytes().to_vec(), meta.idempotency_key(), secret.as_bytes()))
        }
        (RequestKind::Submit, Some(Err(why))) => return Sent::Unbuildable(why.clone()),
        (RequestKind::Submit, None) => return Sent::Unbuildable("no document".into()),
    };
    let signed = match signed {
        Ok(s) => s,
        Err(e) => return Sent::Unbuildable(e.to_string()),
    };
    // A POST that starts late could outlive the lease's guarantee: do not start it.
    if now_ms() - claimed_ms > lifecycle::POST_START_MS {
        return Sent::Answer(Outcome::Network("not sent: the claim took too long".into()));
    }
    let headers: Vec<(&str, String)> = signed.headers().into_iter().collect();
    Sent::Answer(outbound::post(url, &headers, &signed.body, s.timeout_ms).await)
}

/// Records the attempt's answer. What the warehouse said must not be lost to a passing
/// storage error or a concurrent change: re-read and re-apply a few times before letting the
/// message retry (which repeats the call under the same key).
async fn finish(edge: &Edge, msg: &QueueMessage, lease: &str, sent: &Sent) -> Result<Disposition, Retry> {
    let mut last = String::new();
    for pause_ms in [0u64, 100, 400, 1600] {
        if pause_ms > 0 {
            Delay::from(Duration::from_millis(pause_ms)).await;
        }
        match record(edge, msg, lease, sent).await {
            Ok(follow) => {
                follow_up(edge, msg, follow).await;
                if transient_submission(msg, sent) {
                    super::alerts::after_transient_failure(edge, now_ms()).await;
                }
                return Ok(Disposition::Ack);
            }
            Err(e) => last = format!("{e:?}"),
        }
    }
    // Free the order for the retry of this message (best effort: storage may be down, in
    // which case the lease simply runs out).
    let _ = edge.store.free_lease(&msg.shop, &msg.order_id, lease).await;
    Err(Retry(last))
}

/// A submission the warehouse did not answer, or answered with a retryable failure: what
/// the "warehouse failing" alert counts.
fn transient_submission(msg: &QueueMessage, sent: &Sent) -> bool {
    msg.kind == RequestKind::Submit
        && matches!(sent, Sent::Answer(o) if matches!(retry::classify(o, now_ms()), Class::Transient { .. }))
}

/// What to send after the answer is recorded.
enum FollowUp {
    Nothing,
    Retry { next_attempt: u32, delay_secs: u32 },
    Cancel,
}

/// How one answer moves the order.
struct Ending<'a> {
    action: Action,
    attempt_outcome: &'a str,
    dead_letter: Option<&'a str>,
    next_due_ms: Option<i64>,
    cancel_state: Option<CancelState>,
    failed: bool,
    retry: Option<(u32, u32)>,
}

fn ending<'a>(msg: &QueueMessage, row: &OrderRow, sent: &'a Sent, edge: &Edge, now: i64) -> Ending<'a> {
    let base = Ending {
        action: Action::AttemptFailed,
        attempt_outcome: "transient",
        dead_letter: None,
        next_due_ms: None,
        cancel_state: None,
        failed: false,
        retry: None,
    };
    let cancel = msg.kind == RequestKind::Cancel;
    let outcome = match sent {
        Sent::Answer(o) => o,
        Sent::Unbuildable(_) => {
            return Ending {
                action: if cancel { Action::CancelFailed } else { Action::DeadLettered },
                attempt_outcome: "refused",
                dead_letter: Some("unbuildable"),
                cancel_state: cancel.then_some(CancelState::Failed),
                failed: !cancel,
                ..base
            };
        }
    };
    let class = if cancel { retry::classify_cancel(outcome, now) } else { retry::classify(outcome, now) };
    let base_attempts = if cancel { 0 } else { u32::try_from(row.attempt_base.max(0)).unwrap_or(0) };
    let position = lifecycle::schedule_position(msg.attempt, base_attempts);
    match retry::next_step(position, class, random_unit()) {
        Step::Done if cancel => Ending {
            action: Action::CancelConfirmed,
            attempt_outcome: "confirmed",
            cancel_state: Some(CancelState::Confirmed),
            ..base
        },
        Step::Done => Ending { action: Action::Submitted, attempt_outcome: "accepted", ..base },
        Step::HoldInventory => {
            Ending { action: Action::DownstreamOutOfStock, attempt_outcome: "out_of_stock", ..base }
        }
        Step::HoldShipped => Ending {
            action: Action::CancelShipped,
            attempt_outcome: "shipped",
            cancel_state: Some(CancelState::Shipped),
            ..base
        },
        Step::DeadLetter { cause } => {
            let refused = class == Class::Permanent;
            let cause = match (cancel, cause) {
                (true, DeadLetterCause::Refused) => DeadLetterCause::CancelRefused,
                (_, c) => c,
            };
            Ending {
                action: if cancel { Action::CancelFailed } else { Action::DeadLettered },
                attempt_outcome: if refused { "refused" } else { "transient" },
                dead_letter: Some(cause.as_str()),
                cancel_state: cancel.then_some(CancelState::Failed),
                failed: !cancel,
                ..base
            }
        }
        Step::RetryAfter { delay_secs, .. } => {
            let delay = retry::scaled_delay(delay_secs, class, edge.settings.delay_scale);
            // The message carries the absolute attempt number (the schedule counts per round).
            let next = msg.attempt.saturating_add(1);
            Ending {
                action: if cancel { Action::CancelAttemptFailed } else { Action::AttemptFailed },
                next_due_ms: Some(now + i64::from(delay) * 1000),
                retry: Some((next, delay)),
                ..base
            }
        }
    }
}

async fn record(edge: &Edge, msg: &QueueMessage, lease: &str, sent: &Sent) -> Result<FollowUp, StoreError> {
    let store = &edge.store;
    let now = now_ms();
    let cancel = msg.kind == RequestKind::Cancel;
    let kind = msg.kind;
    let plan = ReadPlan { attempt_of_cancel: Some(cancel), ..ReadPlan::default() };
    let reads = store.order_reads(&msg.shop, &msg.order_id, &plan).await?;
    let Some(row) = reads.row.as_ref() else { return Ok(FollowUp::Nothing) };
    let e = ending(msg, row, sent, edge, now);
    let (code, http_status, error, response) = match sent {
        Sent::Answer(o) => {
            let snippet = match o {
                Outcome::Status { body_snippet, .. } if !body_snippet.is_empty() => {
                    Some(body_snippet.as_str())
                }
                _ => None,
            };
            let status = match o {
                Outcome::Status { code, .. } => Some(*code),
                _ => None,
            };
            (o.code(), status, Some(o.describe()), snippet)
        }
        Sent::Unbuildable(why) => ("unbuildable".to_string(), None, Some(why.clone()), None),
    };
    let end = AttemptEnd { outcome: e.attempt_outcome, http_status, error: error.as_deref() };
    let finish = store.finish_attempt(
        kind,
        &msg.shop,
        &msg.order_id,
        i64::from(msg.submission),
        i64::from(msg.attempt),
        now,
        &end,
    )?;
    let ours = row.lease_id.as_deref() == Some(lease);
    let accepted = matches!(e.action, Action::Submitted);
    if !ours && !accepted {
        // Our lease ran out and another attempt holds the order: it decides. An acceptance
        // is a fact and is recorded below whoever holds the lease.
        store.batch(vec![finish]).await?;
        return Ok(FollowUp::Nothing);
    }
    let mut rec = writer::record_from(row, &reads, now);
    rec.in_flight = ours;
    let applied = apply_action(&rec, e.action, None, now);
    let moved = applied.applied();
    let mut detail_note = serde_json::json!({
        "attempt": msg.attempt, "submission": msg.submission, "http_status": http_status, "outcome": code,
    });
    if let Some(cause) = e.dead_letter {
        detail_note["cause"] = cause.into();
    }
    if let Some((next, delay)) = e.retry {
        detail_note["next_attempt"] = next.into();
        detail_note["delay_secs"] = delay.into();
    }
    let applied = with_detail(applied, &detail_note);
    let lifecycle = Lifecycle {
        lease: if ours { LeaseOp::Clear } else { LeaseOp::Keep },
        next_attempt_ms: e.next_due_ms.filter(|_| moved).map(Some),
        cancel_state: e.cancel_state.filter(|_| moved),
        failed: e.failed && moved,
        held: moved && applied.record.as_ref().is_some_and(|r| r.state == State::Hold),
        ..Lifecycle::default()
    };
    let change = Change::to(row, &reads.open, ACTOR, now).with(lifecycle);
    let mut statements = writer::statements(store, &change, &applied)?;
    let mirror = writer::shopify_desire(&change, &applied).is_some();
    statements.push(finish);
    if let (Some(cause), true) = (e.dead_letter, moved) {
        statements.push(store.dead_letter(
            &DeadLetter {
                shop: Some(&row.shop),
                order_id: Some(&row.order_id),
                submission: Some(i64::from(msg.submission)),
                cause,
                attempts: i64::from(msg.attempt),
                last_error: error.as_deref(),
                http_status,
                response,
                message: None,
            },
            now,
        )?);
    }
    store.batch(statements).await?;
    if mirror {
        super::shopify::nudge(edge, &row.shop, &row.order_id, 0).await;
    }
    Ok(if applied.cancel_downstream {
        FollowUp::Cancel
    } else {
        match e.retry {
            Some((next_attempt, delay_secs)) if moved => FollowUp::Retry { next_attempt, delay_secs },
            _ => FollowUp::Nothing,
        }
    })
}

/// Adds the attempt's facts (status, code, never the response text) to the audit detail.
fn with_detail(mut applied: Applied, extra: &serde_json::Value) -> Applied {
    for a in &mut applied.audit {
        if let (Some(obj), Some(add)) = (a.detail.as_object_mut(), extra.as_object()) {
            for (k, v) in add {
                obj.insert(k.clone(), v.clone());
            }
        }
    }
    applied
}

async fn follow_up(edge: &Edge, msg: &QueueMessage, follow: FollowUp) {
    let Some(q) = edge.queue.as_ref() else { return };
    let (next, delay) = match follow {
        FollowUp::Nothing => return,
        FollowUp::Retry { next_attempt, delay_secs } => (msg.retry(next_attempt), delay_secs),
        FollowUp::Cancel => (QueueMessage::cancel(&msg.shop, &msg.order_id, msg.submission, 1), 0),
    };
    // If this send fails the order waits with its next attempt due; the cron re-sends it.
    if let Err(e) = enqueue(q, &next, delay).await {
        worker::console_error!("re-enqueue failed, the cron will pick it up: {e}");
    }
}

/// The lane is not `auto` at send time: the order goes to hold/manual instead of the warehouse.
async fn hold_for_mode(
    edge: &Edge,
    row: &OrderRow,
    reads: &OrderReads,
    mode: Mode,
    now: i64,
) -> Result<Disposition, Retry> {
    let rec = writer::record_from(row, reads, now);
    let applied = apply_action(&rec, Action::ModeManual, None, now);
    let note = format!("lane {} is {mode} at send time: held instead of sent", row.segment);
    let change = Change { note: Some(&note), ..Change::to(row, &reads.open, MODE_ACTOR, now) }
        .with(Lifecycle { held: true, ..Lifecycle::default() });
    let mirror = writer::shopify_desire(&change, &applied).is_some();
    match edge.store.batch(writer::statements(&edge.store, &change, &applied)?).await {
        Ok(()) => {
            if mirror {
                super::shopify::nudge(edge, &row.shop, &row.order_id, 0).await;
            }
            Ok(Disposition::Ack)
        }
        Err(StoreError::Conflict) => Ok(Disposition::Wait(1)),
        Err(e) => Err(e.into()),
    }
}

/// The runtime dead-letter queue: a message the consumer kept failing on (its invocation
/// crashed, or storage stayed down). That decides nothing about the order: the message goes
/// back on the fulfilment queue after a pause (the consumer re-reads the order and drops it if
/// nothing waits any more); a message naming no usable order is kept in `dead_letters` for a
/// person.
async fn dead_lettered(edge: &Edge, m: &Message<String>) {
    let raw = m.body().clone();
    let now = now_ms();
    let store = &edge.store;
    if super::shopify::is_shopify_message(&raw) {
        // Back on the queue after a pause; if that fails the mirror stays due in D1 and the
        // cron sends it again.
        let pause = edge.settings.infra_retry_secs().saturating_mul(10);
        let _ = requeue(edge, &raw, pause).await;
        m.ack();
        return;
    }
    let result = async {
        let Ok(p) = QueueMessage::from_json(&raw) else {
            let st = store.dead_letter(&DeadLetter::unreadable("unreadable queue message", &raw), now)?;
            return store.batch(vec![st]).await;
        };
        match store.order(&p.shop, &p.order_id).await? {
            Some(_) => {
                // Back on the queue after a pause; if even that fails, due now for the cron.
                let pause = edge.settings.infra_retry_secs().saturating_mul(10);
                match requeue(edge, &raw, pause).await {
                    Ok(()) => {
                        worker::console_log!(
                            "dead-letter queue: {}:{} re-enqueued in {pause} s",
                            p.shop,
                            p.order_id
                        );
                        Ok(())
                    }
                    Err(e) => {
                        worker::console_error!(
                            "dead-letter queue: re-enqueue failed ({e}); due for the cron"
                        );
                        store.batch(vec![store.due_now(&p.shop, &p.order_id, now)?]).await
                    }
                }
            }
            None => {
                let st = store.dead_letter(
                    &DeadLetter {
                        shop: Some(&p.shop),
                        order_id: Some(&p.order_id),
                        submission: Some(i64::from(p.submission)),
                        cause: "dead_letter_queue",
                        attempts: i64::from(p.attempt),
                        last_error: Some("unknown order"),
                        http_status: None,
                        response: None,
                        message: Some(&raw),
                    },
                    now,
                )?;
                store.batch(vec![st]).await
            }
        }
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

/// What the warehouse's documents say about the order's round, from its row.
fn document_meta(row: &OrderRow) -> DocumentMeta<'_> {
    DocumentMeta {
        shop: &row.shop,
        order_id: &row.order_id,
        order_name: row.order_name.as_deref(),
        lane: &row.segment,
        rules_version: &row.rules_version,
        submission: row.submission_no(),
    }
}
