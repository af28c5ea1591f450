//! `submission_attempts`, `cancel_attempts` and `dead_letters`: what each call to the
//! warehouse did, and what needs a person.

use wasm_bindgen::JsValue;
use worker::D1PreparedStatement;

use super::{n, opt, s, Store, StoreResult};
use crate::core::fulfilment::RequestKind;

fn table(kind: RequestKind) -> &'static str {
    match kind {
        RequestKind::Submit => "submission_attempts",
        RequestKind::Cancel => "cancel_attempts",
    }
}

/// How one attempt ended.
pub struct AttemptEnd<'a> {
    pub outcome: &'a str,
    pub http_status: Option<u16>,
    pub error: Option<&'a str>,
}

/// One `dead_letters` row.
pub struct DeadLetter<'a> {
    pub shop: Option<&'a str>,
    pub order_id: Option<&'a str>,
    pub submission: Option<i64>,
    pub cause: &'a str,
    pub attempts: i64,
    pub last_error: Option<&'a str>,
    pub http_status: Option<u16>,
    pub response: Option<&'a str>,
    /// The raw queue message, for messages that name no usable order.
    pub message: Option<&'a str>,
}

impl DeadLetter<'_> {
    /// A queue message that cannot be read at all.
    pub fn unreadable<'a>(why: &'a str, raw: &'a str) -> DeadLetter<'a> {
        DeadLetter {
            shop: None,
            order_id: None,
            submission: None,
            cause: "invalid_message",
            attempts: 0,
            last_error: Some(why),
            http_status: None,
            response: None,
            message: Some(raw),
        }
    }
}

impl Store {
    /// Starts attempt `attempt` of `submission`, if the claim in the same batch gave this
    /// consumer the lease (upserts: an attempt whose consumer died is started again).
    #[allow(clippy::too_many_arguments)]
    pub fn start_attempt(
        &self,
        kind: RequestKind,
        shop: &str,
        order_id: &str,
        submission: i64,
        attempt: i64,
        lease_id: &str,
        now_ms: i64,
    ) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            &format!(
                "INSERT INTO {} (shop, order_id, submission, attempt, started_ms) SELECT ?1, ?2, ?3, ?4, ?5 \
                 WHERE EXISTS (SELECT 1 FROM orders WHERE shop = ?1 AND order_id = ?2 AND lease_id = ?6) \
                 ON CONFLICT DO UPDATE SET started_ms = excluded.started_ms, finished_ms = NULL, outcome = NULL, \
                 http_status = NULL, error = NULL",
                table(kind)
            ),
            &[s(shop), s(order_id), n(submission), n(attempt), n(now_ms), s(lease_id)],
        )
    }

    /// Takes the lease for a cancel attempt: no state changes, so the row's version is the
    /// guard (the batch's changes tell whether this consumer got it).
    #[allow(clippy::too_many_arguments)]
    pub fn claim_cancel(
        &self,
        shop: &str,
        order_id: &str,
        seq: i64,
        attempt: i64,
        lease_id: &str,
        until_ms: i64,
    ) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            "UPDATE orders SET lease_id = ?5, lease_until = ?6, cancel_attempts = ?4, next_attempt_ms = ?6 \
             WHERE shop = ?1 AND order_id = ?2 AND seq = ?3 AND cancel_state = 'requested'",
            &[s(shop), s(order_id), n(seq), n(attempt), s(lease_id), n(until_ms)],
        )
    }

    /// Makes a waiting order due now, so the cron re-sends it (no state change).
    pub fn due_now(&self, shop: &str, order_id: &str, now_ms: i64) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            "UPDATE orders SET next_attempt_ms = ?3 WHERE shop = ?1 AND order_id = ?2 \
             AND (state = 'ready-for-fulfilment' OR cancel_state = 'requested')",
            &[s(shop), s(order_id), n(now_ms)],
        )
    }

    /// Records how an attempt ended.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_attempt(
        &self,
        kind: RequestKind,
        shop: &str,
        order_id: &str,
        submission: i64,
        attempt: i64,
        now_ms: i64,
        end: &AttemptEnd<'_>,
    ) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            &format!(
                "UPDATE {} SET finished_ms = ?5, outcome = ?6, http_status = ?7, error = ?8 \
                 WHERE shop = ?1 AND order_id = ?2 AND submission = ?3 AND attempt = ?4",
                table(kind)
            ),
            &[
                s(shop),
                s(order_id),
                n(submission),
                n(attempt),
                n(now_ms),
                s(end.outcome),
                end.http_status.map(|c| n(i64::from(c))).unwrap_or(JsValue::NULL),
                opt(end.error),
            ],
        )
    }

    pub fn dead_letter(&self, d: &DeadLetter<'_>, now_ms: i64) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            "INSERT INTO dead_letters (shop, order_id, submission, cause, attempts, last_error, http_status, response, \
             message, created_at, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, strftime('%Y-%m-%dT%H:%M:%fZ', ?10 / 1000.0, 'unixepoch'), ?10)",
            &[
                opt(d.shop),
                opt(d.order_id),
                d.submission.map(n).unwrap_or(JsValue::NULL),
                s(d.cause),
                n(d.attempts),
                opt(d.last_error),
                d.http_status.map(|c| n(i64::from(c))).unwrap_or(JsValue::NULL),
                opt(d.response),
                opt(d.message),
                n(now_ms),
            ],
        )
    }
}
