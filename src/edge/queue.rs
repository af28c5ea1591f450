//! The fulfilment queue's producer. A message names an order, an attempt and what to send;
//! the order row is the truth. A send that fails is logged: the order's `next_attempt_ms`
//! is already set, so the cron re-sends it once it is overdue.

use worker::Queue;

use super::context::Edge;
use crate::core::apply::Applied;
use crate::core::fulfilment::QueueMessage;
use crate::core::types::CancelState;

/// Sends one message, delivered after `delay_secs`.
pub async fn enqueue(queue: &Queue, msg: &QueueMessage, delay_secs: u32) -> Result<(), String> {
    let send = worker::MessageBuilder::new(msg.to_json()).delay_seconds(delay_secs).build();
    queue.send(send).await.map_err(|e| e.to_string())
}

/// After a committed change: puts a freshly ready order on the queue (its next attempt), and
/// a requested cancellation (its first attempt). `created` says the change created the
/// order: its first submission's first attempt is known without reading the row back.
/// (`orders.enqueued_ms` is stamped by the write that makes the order ready.)
pub async fn follow_up(edge: &Edge, shop: &str, order_id: &str, applied: &Applied, created: bool) {
    if !applied.submit && !applied.cancel_downstream {
        return;
    }
    let Some(q) = edge.queue.as_ref() else { return };
    if created && applied.submit {
        send(q, shop, order_id, &QueueMessage::submit(shop, order_id, 1, 1)).await;
        return;
    }
    let row = match edge.store.order(shop, order_id).await {
        Ok(Some(r)) => r,
        _ => return,
    };
    let msg = if applied.submit && row.state == crate::core::types::State::ReadyForFulfilment {
        QueueMessage::submit(shop, order_id, row.submission_no(), row.attempts_no() + 1)
    } else if applied.cancel_downstream && row.cancel_state == Some(CancelState::Requested) {
        let attempts = u32::try_from(row.cancel_attempts.max(0)).unwrap_or(0);
        QueueMessage::cancel(shop, order_id, row.submission_no(), attempts + 1)
    } else {
        return;
    };
    send(q, shop, order_id, &msg).await;
}

async fn send(q: &Queue, shop: &str, order_id: &str, msg: &QueueMessage) {
    if let Err(e) = enqueue(q, msg, 0).await {
        worker::console_error!("enqueue failed for {shop}:{order_id}, the cron will re-send: {e}");
    }
}
