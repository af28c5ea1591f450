//! `alert_incidents` and `alert_messages`: incident state for deduplication, and the messages
//! waiting to be delivered. Also the reads each alert kind is evaluated from.

use serde::Deserialize;
use worker::D1PreparedStatement;

use super::{n, opt, s, Store, StoreResult};
use crate::core::alerts::{AttemptSeen, IncidentState, Message};

/// An open dead letter, with the order's name when there is an order.
#[derive(Debug, Deserialize)]
pub struct DeadLetterSeen {
    pub id: i64,
    pub shop: Option<String>,
    pub order_id: Option<String>,
    pub order_name: Option<String>,
    pub cause: String,
    pub attempts: i64,
    pub http_status: Option<i64>,
}

/// A delivery recorded for review.
#[derive(Debug, Deserialize)]
pub struct ReviewSeen {
    pub id: i64,
    pub shop: String,
    pub topic: String,
    pub order_id: Option<String>,
    pub detail: Option<String>,
    pub received_ms: i64,
}

/// An order waiting in a lane's exception queue.
#[derive(Debug, Deserialize)]
pub struct HeldSeen {
    pub shop: String,
    pub order_id: String,
    pub order_name: Option<String>,
    pub state: String,
    pub reason: Option<String>,
    pub state_since_ms: i64,
}

/// A message due for sending.
#[derive(Debug, Deserialize)]
pub struct DueMessage {
    pub id: String,
    pub message: String,
}

#[derive(Deserialize)]
struct Count {
    n: i64,
}

#[derive(Deserialize)]
struct Window {
    total: i64,
    failed: Option<i64>,
}

#[derive(Deserialize)]
struct Attempts {
    attempts: i64,
}

impl Store {
    /// Opens the incident, or marks it seen again. It is claimed for `message_id` (and its
    /// notice time moves to `now`) only when it is new, was cleared, or was last notified at
    /// or before `repeat_cutoff`: the rule of `core::alerts::notify_due`, applied atomically so
    /// that two raisers cannot both notify.
    pub fn raise_incident(
        &self,
        key: &str,
        m: &Message,
        now: i64,
        repeat_cutoff: i64,
    ) -> StoreResult<D1PreparedStatement> {
        let (kind, title, link, message_id) = (&m.kind, &m.title, m.link.as_deref(), &m.id);
        self.stmt(
            "INSERT INTO alert_incidents (key, kind, state, title, link, opened_ms, notified_ms, last_seen_ms, message_id) \
             VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?5, ?5, ?6) \
             ON CONFLICT (key) DO UPDATE SET \
               message_id = CASE WHEN state = 'cleared' OR notified_ms <= ?7 THEN excluded.message_id ELSE message_id END, \
               notified_ms = CASE WHEN state = 'cleared' OR notified_ms <= ?7 THEN excluded.notified_ms ELSE notified_ms END, \
               opened_ms = CASE WHEN state = 'cleared' THEN excluded.opened_ms ELSE opened_ms END, \
               state = 'open', cleared_ms = NULL, last_seen_ms = excluded.last_seen_ms, \
               title = excluded.title, link = excluded.link",
            &[s(key), s(kind), s(title), opt(link), n(now), s(message_id), n(repeat_cutoff)],
        )
    }

    /// A one-shot incident (a delivery for review), named by `m`: recorded once, already
    /// cleared, so it never notifies twice.
    pub fn note_incident_once(
        &self,
        key: &str,
        m: &Message,
        link: &str,
        now: i64,
    ) -> StoreResult<D1PreparedStatement> {
        let (kind, title, message_id) = (&m.kind, &m.title, &m.id);
        self.stmt(
            "INSERT OR IGNORE INTO alert_incidents (key, kind, state, title, link, opened_ms, notified_ms, last_seen_ms, cleared_ms, message_id) \
             VALUES (?1, ?2, 'cleared', ?3, ?4, ?5, ?5, ?5, ?5, ?6)",
            &[s(key), s(kind), s(title), s(link), n(now), s(message_id)],
        )
    }

    /// Queues `m` for sending, only if its first incident was claimed for it by the
    /// statements before this one in the same batch.
    pub fn queue_message(&self, m: &Message, now: i64) -> StoreResult<D1PreparedStatement> {
        let json = serde_json::to_string(m).unwrap_or_default();
        let guard = m.incidents.first().map(String::as_str).unwrap_or("");
        self.stmt(
            "INSERT INTO alert_messages (id, kind, title, message, state, attempts, next_attempt_ms, created_ms) \
             SELECT ?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5 \
             WHERE EXISTS (SELECT 1 FROM alert_incidents WHERE key = ?6 AND message_id = ?1)",
            &[s(&m.id), s(&m.kind), s(&m.title), s(&json), n(now), s(guard)],
        )
    }

    /// Queues `m` unconditionally (a notice that follows a clear the caller just made).
    pub fn queue_notice(&self, m: &Message, now: i64) -> StoreResult<D1PreparedStatement> {
        let json = serde_json::to_string(m).unwrap_or_default();
        self.stmt(
            "INSERT INTO alert_messages (id, kind, title, message, state, attempts, next_attempt_ms, created_ms) \
             VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5)",
            &[s(&m.id), s(&m.kind), s(&m.title), s(&json), n(now)],
        )
    }

    pub fn clear_incident(&self, key: &str, now: i64) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            "UPDATE alert_incidents SET state = 'cleared', cleared_ms = ?2 WHERE key = ?1 AND state = 'open'",
            &[s(key), n(now)],
        )
    }

    /// The open incidents of one kind.
    pub async fn open_incidents(&self, kind: &str) -> StoreResult<Vec<IncidentState>> {
        self.count(1);
        Ok(self
            .stmt(
                "SELECT key, state, notified_ms FROM alert_incidents WHERE kind = ?1 AND state = 'open'",
                &[s(kind)],
            )?
            .all()
            .await?
            .results()?)
    }

    /// The newest `consecutive` finished submission attempts (newest first), the attempts
    /// and transient failures finished since `since_ms`, and the warehouse incident: one trip.
    pub async fn warehouse_reads(
        &self,
        consecutive: u32,
        since_ms: i64,
        key: &str,
    ) -> StoreResult<(Vec<AttemptSeen>, (u64, u64), Option<IncidentState>)> {
        let statements = vec![
            self.stmt(
                "SELECT outcome, error FROM submission_attempts WHERE finished_ms IS NOT NULL \
                 ORDER BY started_ms DESC LIMIT ?1",
                &[n(i64::from(consecutive))],
            )?,
            self.stmt(
                "SELECT COUNT(*) AS total, SUM(outcome = 'transient') AS failed FROM submission_attempts \
                 WHERE started_ms >= ?1 AND finished_ms IS NOT NULL",
                &[n(since_ms)],
            )?,
            self.stmt("SELECT key, state, notified_ms FROM alert_incidents WHERE key = ?1", &[s(key)])?,
        ];
        self.count(statements.len());
        let results = self.db.batch(statements).await?;
        let recent = match results.first() {
            Some(r) => r.results::<AttemptSeen>()?,
            None => Vec::new(),
        };
        let window = match results.get(1) {
            Some(r) => r
                .results::<Window>()?
                .first()
                .map(|w| (w.total.max(0) as u64, w.failed.unwrap_or(0).max(0) as u64))
                .unwrap_or((0, 0)),
            None => (0, 0),
        };
        let incident = match results.get(2) {
            Some(r) => r.results::<IncidentState>()?.into_iter().next(),
            None => None,
        };
        Ok((recent, window, incident))
    }

    /// Open dead letters, oldest first.
    pub async fn open_dead_letters(&self, limit: i64) -> StoreResult<Vec<DeadLetterSeen>> {
        self.count(1);
        Ok(self
            .stmt(
                "SELECT d.id, d.shop, d.order_id, o.order_name, d.cause, d.attempts, d.http_status \
                 FROM dead_letters d LEFT JOIN orders o ON o.shop = d.shop AND o.order_id = d.order_id \
                 WHERE d.resolved_ms IS NULL ORDER BY d.created_ms LIMIT ?1",
                &[n(limit)],
            )?
            .all()
            .await?
            .results()?)
    }

    /// Deliveries recorded for review since `since_ms` that no alert has named yet.
    pub async fn unalerted_reviews(&self, since_ms: i64, limit: i64) -> StoreResult<Vec<ReviewSeen>> {
        self.count(1);
        Ok(self
            .stmt(
                "SELECT d.id, d.shop, d.topic, d.order_id, d.detail, d.received_ms FROM deliveries d \
                 WHERE d.outcome = 'review' AND d.received_ms >= ?1 \
                 AND NOT EXISTS (SELECT 1 FROM alert_incidents i WHERE i.key = 'review:' || d.id) \
                 ORDER BY d.received_ms LIMIT ?2",
                &[n(since_ms), n(limit)],
            )?
            .all()
            .await?
            .results()?)
    }

    /// How many of a lane's exceptions (`hold`, `fraud-check`) have waited since before
    /// `cutoff_ms`, and the oldest `limit` of them: one trip.
    pub async fn lane_overdue(
        &self,
        lane: &str,
        cutoff_ms: i64,
        limit: i64,
    ) -> StoreResult<(i64, Vec<HeldSeen>)> {
        let statements = vec![
            self.stmt(
                "SELECT COUNT(*) AS n FROM orders WHERE segment = ?1 AND state IN ('hold', 'fraud-check') \
                 AND state_since_ms <= ?2",
                &[s(lane), n(cutoff_ms)],
            )?,
            self.stmt(
                "SELECT shop, order_id, order_name, state, reason, state_since_ms FROM orders \
                 WHERE segment = ?1 AND state IN ('hold', 'fraud-check') AND state_since_ms <= ?2 \
                 ORDER BY state_since_ms LIMIT ?3",
                &[s(lane), n(cutoff_ms), n(limit)],
            )?,
        ];
        self.count(statements.len());
        let results = self.db.batch(statements).await?;
        let count = match results.first() {
            Some(r) => r.results::<Count>()?.first().map(|c| c.n).unwrap_or(0),
            None => 0,
        };
        let rows = match results.get(1) {
            Some(r) => r.results::<HeldSeen>()?,
            None => Vec::new(),
        };
        Ok((count, rows))
    }

    /// Messages due for sending, the longest waiting first.
    pub async fn due_messages(&self, now: i64, limit: i64) -> StoreResult<Vec<DueMessage>> {
        self.count(1);
        Ok(self
            .stmt(
                "SELECT id, message FROM alert_messages WHERE state = 'pending' AND next_attempt_ms <= ?1 \
                 ORDER BY next_attempt_ms LIMIT ?2",
                &[n(now), n(limit)],
            )?
            .all()
            .await?
            .results()?)
    }

    /// Takes a due message for one send until `hold_until`; answers the attempt number, or
    /// `None` when another sender holds it or it is no longer pending.
    pub async fn take_message(&self, id: &str, now: i64, hold_until: i64) -> StoreResult<Option<u32>> {
        self.count(1);
        let row = self
            .stmt(
                "UPDATE alert_messages SET attempts = attempts + 1, next_attempt_ms = ?3 \
                 WHERE id = ?1 AND state = 'pending' AND next_attempt_ms <= ?2 RETURNING attempts",
                &[s(id), n(now), n(hold_until)],
            )?
            .first::<Attempts>(None)
            .await?;
        Ok(row.map(|r| u32::try_from(r.attempts).unwrap_or(u32::MAX)))
    }

    /// Records a send's result: `sent`, due again at `next_ms`, or given up (`failed`).
    pub async fn message_result(
        &self,
        id: &str,
        state: &str,
        now: i64,
        next_ms: Option<i64>,
        error: Option<&str>,
    ) -> StoreResult<()> {
        self.count(1);
        self.stmt(
            "UPDATE alert_messages SET state = ?2, sent_ms = CASE WHEN ?2 = 'sent' THEN ?3 ELSE sent_ms END, \
             next_attempt_ms = COALESCE(?4, next_attempt_ms), last_error = ?5 WHERE id = ?1",
            &[s(id), s(state), n(now), next_ms.map(n).unwrap_or(wasm_bindgen::JsValue::NULL), opt(error)],
        )?
        .run()
        .await?;
        Ok(())
    }

    /// Deletes delivered or abandoned messages and cleared incidents older than `cutoff_ms`.
    pub async fn purge_alerts(&self, cutoff_ms: i64) -> StoreResult<()> {
        self.batch(vec![
            self.stmt(
                "DELETE FROM alert_messages WHERE state IN ('sent', 'failed') AND created_ms < ?1",
                &[n(cutoff_ms)],
            )?,
            self.stmt(
                "DELETE FROM alert_incidents WHERE state = 'cleared' AND cleared_ms < ?1",
                &[n(cutoff_ms)],
            )?,
        ])
        .await
    }

    /// Open incidents (newest first) and the latest messages, for `GET /admin/alerts`.
    pub async fn alerts_view(&self, limit: i64) -> StoreResult<String> {
        let statements = vec![
            self.stmt(
                "SELECT key, kind, state, title, link, opened_ms, notified_ms, last_seen_ms, cleared_ms, message_id \
                 FROM alert_incidents WHERE state = 'open' ORDER BY opened_ms DESC LIMIT ?1",
                &[n(limit)],
            )?,
            self.stmt(
                "SELECT id, kind, title, state, attempts, next_attempt_ms, created_ms, sent_ms, last_error \
                 FROM alert_messages ORDER BY created_ms DESC LIMIT ?1",
                &[n(limit)],
            )?,
        ];
        let results = self.rows_js(statements).await?;
        let rows = |i: usize| results.get(i).map(|r| super::js_json(r)).unwrap_or_else(|| "[]".into());
        Ok(format!(r#"{{"open_incidents":{},"messages":{}}}"#, rows(0), rows(1)))
    }
}
