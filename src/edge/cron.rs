//! The 15-minute cron: sweeps and gate evaluation, each step isolated so one failure does
//! not stop the others, each logged.

use worker::{Date, Env};

use super::config;
use super::fulfilment::enqueue;
use super::store::Store;
use crate::core::fulfilment::QueueMessage;

/// A never-enqueued ready order younger than this is left to the webhook that made it ready.
const FRESH_MS: i64 = 60_000;
/// A scheduled retry later than its longest possible delay (12 h) by this much is stranded.
const OVERDUE_MARGIN_MS: i64 = 30 * 60_000;

pub async fn run(env: &Env) {
    let now = Date::now().as_millis() as i64;
    let Ok(db) = env.d1(config::DB) else {
        worker::console_error!("cron: D1 binding missing; nothing ran");
        return;
    };
    let store = Store::new(db);
    // Each step runs to completion whatever the others did; a step reports its own failure.
    let steps: [(&str, StepResult); 3] = [
        ("sweep_timeouts", sweep_timeouts(&store, now).await),
        ("requeue_stranded", requeue_stranded(env, &store, now).await),
        ("gates", super::gates::cron_step(env, &store, now).await),
    ];
    for (name, result) in steps {
        match result {
            Ok(summary) => worker::console_log!("cron step {name}: {summary}"),
            Err(e) => worker::console_error!("cron step {name} failed: {e}"),
        }
    }
}

type StepResult = Result<String, String>;

/// Puts ready orders that no message carries back on the queue.
async fn requeue_stranded(env: &Env, store: &Store, now: i64) -> StepResult {
    let queue = env.queue(config::FULFILMENT_QUEUE).map_err(|e| e.to_string())?;
    let scale = config::text(env, "RETRY_DELAY_SCALE")
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(1.0)
        .clamp(0.0001, 1.0);
    let overdue =
        ((f64::from(crate::core::retry::MAX_DELAY_SECS) * 1000.0) * scale) as i64 + OVERDUE_MARGIN_MS;
    let rows = store.stranded_ready(now, FRESH_MS, overdue).await.map_err(|e| format!("{e:?}"))?;
    let mut sent = 0;
    for r in &rows {
        let submission = u32::try_from(r.submission.max(1)).unwrap_or(1);
        let mut msg = QueueMessage::first(&r.shop, &r.order_id, submission);
        msg.attempt = u32::try_from(r.attempts + 1).unwrap_or(1);
        if enqueue(&queue, &msg, 0).await.is_ok() {
            let _ = store
                .batch(vec![store.mark_enqueued(&r.shop, &r.order_id, now).map_err(|e| format!("{e:?}"))?])
                .await;
            sent += 1;
        }
    }
    Ok(format!("{sent} of {} stranded ready orders re-enqueued", rows.len()))
}

/// `new` orders past their lane's payment window go to hold/payment; `fraud-check` orders past
/// their verdict timeout go to hold/fraud. Each order is its own guarded batch.
async fn sweep_timeouts(store: &Store, now: i64) -> StepResult {
    let m = super::routing::matrix()?;
    let keys = store.waiting_orders().await.map_err(|e| format!("{e:?}"))?;
    let (mut moved, mut failed) = (0, 0);
    for k in &keys {
        let reads = match store.route_reads(&k.shop, &k.order_id, &[], None, now).await {
            Ok(r) => r,
            Err(_) => {
                failed += 1;
                continue;
            }
        };
        let Some(row) = reads.row.as_ref() else { continue };
        let Some(rec) = super::routing::record_from(&k.order_id, row, reads.reservations.clone()) else {
            continue;
        };
        let Some(lane) = m.lane(&rec.lane) else { continue };
        let Some(applied) = crate::core::apply::sweep(&rec, lane, now) else { continue };
        let written = super::routing::write_applied_as(
            store,
            &k.shop,
            None,
            &k.order_id,
            Some(row),
            &reads.reservations,
            &applied,
            None,
            now,
            super::routing::ACTOR,
            None,
        );
        let ok = match written {
            Ok(st) => store.batch(st).await.is_ok(),
            Err(_) => false,
        };
        if ok {
            moved += 1;
        } else {
            failed += 1;
        }
    }
    Ok(format!(
        "{moved} of {} waiting orders timed out into hold ({failed} failed, retried next run)",
        keys.len()
    ))
}
