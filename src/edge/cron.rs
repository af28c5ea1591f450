//! The 15-minute cron: sweeps and gate evaluation, each step isolated so one failure does
//! not stop the others, each logged.

use super::context::{now_ms, Edge};
use super::queue::enqueue;
use super::store::OrderRow;
use super::writer::{self, Change};
use crate::core::apply::sweep;
use crate::core::fulfilment::QueueMessage;
use crate::core::rules::{fraud, payment};
use crate::core::types::State;

/// A waiting order whose next attempt is overdue by this much has lost its message.
const GRACE_MS: i64 = 60_000;
/// Writes per step and run: D1 allows 1,000 queries per invocation; the rest waits a run.
const STEP_LIMIT: i64 = 200;

/// `scheduled_ms`: the run's scheduled time. On a local stack with `ALLOW_CLOCK_OVERRIDE=1`
/// (`/__scheduled?cron=...&time=<ms>`) the alert step measures exception ages at it.
pub async fn run(edge: &Edge, env: &worker::Env, scheduled_ms: i64) {
    let now = now_ms();
    let clock = if edge.settings.allow_clock_override && scheduled_ms > 0 { scheduled_ms } else { now };
    // Each step runs to completion whatever the others did; a step reports its own failure.
    // Alerts come last, so they see what the other steps did.
    let steps: [(&str, StepResult); 8] = [
        ("sweep_timeouts", sweep_timeouts(edge, now).await),
        ("requeue_overdue", requeue_overdue(edge, now).await),
        ("shopify_mirrors", super::shopify::requeue_mirrors(edge, now).await),
        ("gates", super::gates::cron_step(env, &edge.store).await),
        ("purge_bodies", purge_bodies(edge, now).await),
        ("shopify_reconcile", super::shopify::reconcile(edge, env, now).await),
        ("shopify_health", shopify_health(edge, env, now).await),
        ("alerts", super::alerts::cron_step(edge, now, clock).await),
    ];
    for (name, result) in steps {
        match result {
            Ok(summary) => worker::console_log!("cron step {name}: {summary}"),
            Err(e) => worker::console_error!("cron step {name} failed: {e}"),
        }
    }
}

type StepResult = Result<String, String>;

/// Webhook subscriptions and quiet shops: each open incident is reported.
async fn shopify_health(edge: &Edge, env: &worker::Env, now: i64) -> StepResult {
    let (incidents, shops) = super::shopify::health(edge, env, now).await;
    let mut alerted = 0;
    for i in &incidents {
        worker::console_error!("{}: {}", i.title, i.text);
        let kind = i.key.split(':').next().unwrap_or_default();
        match super::alerts::raise(edge, kind, &i.key, &i.title, &i.text, None).await {
            Ok(true) => alerted += 1,
            Ok(false) => {}
            Err(e) => worker::console_error!("shopify health: alert for {} not recorded: {e}", i.key),
        }
    }
    // What is fine again is cleared: a recurrence alerts anew.
    for shop in &shops {
        for kind in super::shopify::HEALTH_KINDS {
            let key = format!("{kind}:{shop}");
            if !incidents.iter().any(|i| i.key == key) {
                if let Err(e) = super::alerts::clear(edge, &key).await {
                    worker::console_error!("shopify health: clearing {key} failed: {e}");
                }
            }
        }
    }
    Ok(format!("{} shops checked, {} incidents open, {alerted} alerted", shops.len(), incidents.len()))
}

/// Puts orders whose next attempt is overdue (their message was lost: a failed send, a
/// consumer that died, a dead-lettered message) back on the queue, and makes them due again.
async fn requeue_overdue(edge: &Edge, now: i64) -> StepResult {
    let queue = edge.queue.as_ref().ok_or("FULFILMENT_QUEUE binding missing")?;
    let rows = edge.store.overdue(now, GRACE_MS, STEP_LIMIT).await.map_err(|e| format!("{e:?}"))?;
    let mut sent = 0;
    let late_ms = rows.iter().filter_map(|r| r.next_attempt_ms).map(|due| now - due).max().unwrap_or(0);
    for r in &rows {
        let msg = if r.state == State::ReadyForFulfilment {
            QueueMessage::submit(&r.shop, &r.order_id, r.submission_no(), r.attempts_no() + 1)
        } else {
            let attempts = u32::try_from(r.cancel_attempts.max(0)).unwrap_or(0);
            QueueMessage::cancel(&r.shop, &r.order_id, r.submission_no(), attempts + 1)
        };
        if enqueue(queue, &msg, 0).await.is_ok() {
            let st = edge.store.due_now(&r.shop, &r.order_id, now).map_err(|e| format!("{e:?}"))?;
            let _ = edge.store.batch(vec![st]).await;
            sent += 1;
        }
    }
    Ok(format!("{sent} of {} overdue orders re-enqueued (most overdue by {} s)", rows.len(), late_ms / 1000))
}

/// Raw bodies older than `BODY_RETENTION_DAYS` are deleted, a page at a time (at most
/// `PURGE_PAGES` pages a run; the rest waits for the next run), whatever the state of their
/// orders: later paths read the orders' typed inputs (`core::inputs`).
async fn purge_bodies(edge: &Edge, now: i64) -> StepResult {
    let cutoff = now - edge.settings.body_retention_ms;
    let mut purged = 0;
    for _ in 0..PURGE_PAGES {
        let n = edge.store.purge_bodies(cutoff, PURGE_PAGE).await.map_err(|e| format!("{e:?}"))?;
        purged += n;
        if n < PURGE_PAGE as usize {
            return Ok(format!("{purged} raw bodies past retention deleted"));
        }
    }
    Ok(format!("{purged} raw bodies past retention deleted (more left for the next run)"))
}

/// Bodies deleted per statement, and statements per run.
const PURGE_PAGE: i64 = 500;
const PURGE_PAGES: usize = 20;

/// `new` orders past their lane's payment window go to hold/payment; `fraud-check` orders past
/// their verdict timeout go to hold/fraud. Only due orders are read, oldest first, per lane;
/// each is its own guarded batch.
async fn sweep_timeouts(edge: &Edge, now: i64) -> StepResult {
    let m = edge.matrix()?;
    let (mut due, mut moved, mut failed) = (0, 0, 0);
    let mut budget = STEP_LIMIT;
    for lane in &m.lanes {
        for (state, window_end) in [
            (State::New, payment::window_ends_ms(0, lane)),
            (State::FraudCheck, fraud::verdict_due_ms(0, lane)),
        ] {
            if budget <= 0 {
                break;
            }
            let rows = edge
                .store
                .due_waiting(&lane.name, state, now - window_end, budget)
                .await
                .map_err(|e| format!("{e:?}"))?;
            budget -= rows.len() as i64;
            due += rows.len();
            for row in &rows {
                if sweep_one(edge, row, lane, now).await {
                    moved += 1;
                } else {
                    failed += 1;
                }
            }
        }
    }
    Ok(format!("{moved} of {due} due waiting orders timed out into hold ({failed} failed, retried next run)"))
}

async fn sweep_one(edge: &Edge, row: &OrderRow, lane: &crate::core::rules::Lane, now: i64) -> bool {
    let rec = writer::record_with(row, &[], &[], now);
    let Some(applied) = sweep(&rec, lane, now) else { return true };
    let change = Change::to(row, &[], super::ingest::ACTOR, now);
    let mirror = writer::shopify_desire(&change, &applied).is_some();
    let Ok(st) = writer::statements(&edge.store, &change, &applied) else { return false };
    if edge.store.batch(st).await.is_err() {
        return false;
    }
    if mirror {
        super::shopify::nudge(edge, &row.shop, &row.order_id, 0).await;
    }
    true
}
