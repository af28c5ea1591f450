//! Alerts at the edge: raising and clearing incidents in D1, queuing their messages, and
//! sending them to `ALERT_URL` (Slack or signed JSON) with a bounded timeout. A message that
//! cannot be sent stays pending and is retried by the cron; nothing here ever fails the path
//! that raised it. The decisions (keys, repeat window, the warehouse rule, the bodies, the
//! retry schedule) are `core::alerts`.
//!
//! Where each kind is evaluated:
//! - the warehouse failing: by the queue consumer after each transient failure (sent after the
//!   batch with `wait_until`), and by the cron, which also clears it;
//! - dead letters, deliveries for review, exceptions past their lane's SLA: by the cron, one
//!   message per kind and run listing what is new;
//! - a failed gate: by the gate evaluation itself, sent at once.
//!
//! The webhook path raises nothing and reads nothing here.

use futures_util::future::join_all;

use super::context::{random_id, Edge, Settings};
use super::outbound;
use super::store::{Store, StoreError};
use crate::core::alerts::{
    self, age_text, classify_answer, incident_key, lane_path, order_path, reconcile, render_json,
    render_slack, retry_delay_ms, send_lease_ms, warehouse_failing, AlertConfig, Answer, Format, Line,
    Message,
};
use crate::core::fulfilment::{signature, HDR_SIGNATURE};
use crate::core::retry::Outcome;

/// Messages sent per cron run (concurrently, so a run waits at most one timeout for them).
const SEND_PER_RUN: i64 = 10;
/// Dead letters read per run; past this the list is cut short and nothing clears.
const DEAD_LETTERS_READ: i64 = 500;
/// Deliveries for review are alerted when received within this long (so a first deploy does
/// not announce old ones), at most this many per run.
const REVIEW_LOOKBACK_MS: i64 = 7 * 86_400_000;
const REVIEWS_PER_RUN: i64 = 100;
/// Orders listed in an SLA message.
const SLA_LISTED: i64 = 10;
/// Delivered or abandoned messages and cleared incidents are deleted after this long.
const KEEP_MS: i64 = 30 * 86_400_000;

/// Alerts bound to a store and the settings.
pub struct Alerts<'a> {
    pub store: &'a Store,
    pub settings: &'a Settings,
}

/// What raising did.
pub enum Raised {
    /// A message was queued; it is sent by whoever delivers it (or by the next cron run).
    Queued(Message),
    /// The incident is open and was notified within the repeat window: nothing to send.
    Suppressed,
    /// No `ALERT_URL`: the incident is recorded, nothing is sent.
    NoUrl,
}

impl<'a> Alerts<'a> {
    pub fn of(edge: &'a Edge) -> Alerts<'a> {
        Alerts { store: &edge.store, settings: edge.settings }
    }

    fn cfg(&self) -> &AlertConfig {
        &self.settings.alerts
    }

    /// Raises one incident of `kind` keyed `key` (`kind` or `kind:subject`, see
    /// `core::alerts::check_incident`): opens it, or marks it seen again. A message with
    /// `title`, `text` and a link to the console page `link` (a path such as `/console`) is
    /// queued when the incident is new, had cleared, or was last notified a repeat window ago.
    pub async fn raise(
        &self,
        kind: &str,
        key: &str,
        title: &str,
        text: &str,
        link: Option<&str>,
        now: i64,
    ) -> Result<Raised, String> {
        alerts::check_incident(kind, key)?;
        let m = Message {
            id: random_id(),
            kind: kind.to_string(),
            incidents: vec![key.to_string()],
            title: title.to_string(),
            text: text.to_string(),
            lines: Vec::new(),
            more: 0,
            link: link.map(str::to_string),
            at_ms: now,
            details: serde_json::Value::Null,
        };
        self.raise_message(m, &[], now).await.map_err(|e| format!("{e:?}"))
    }

    /// Clears an open incident (its condition no longer holds); the next raise notifies
    /// again. True when it was open.
    pub async fn clear(&self, key: &str, now: i64) -> Result<bool, String> {
        let st = self.store.clear_incident(key, now).map_err(|e| format!("{e:?}"))?;
        let changes = self.store.batch_changes(vec![st]).await.map_err(|e| format!("{e:?}"))?;
        Ok(changes.first() == Some(&1))
    }

    /// Raises every incident of `m.incidents` (all of `m.kind`) and queues `m` when its first
    /// incident is claimed for it (atomically, in one batch); `still` are incidents of the same
    /// kind only marked as seen.
    async fn raise_message(&self, m: Message, still: &[String], now: i64) -> Result<Raised, StoreError> {
        let cutoff = alerts::repeat_cutoff(now, self.cfg().repeat_ms);
        let mut statements = Vec::with_capacity(m.incidents.len() + still.len() + 1);
        for key in m.incidents.iter().chain(still) {
            statements.push(self.store.raise_incident(key, &m, now, cutoff)?);
        }
        if m.incidents.is_empty() {
            if !statements.is_empty() {
                self.store.batch(statements).await?;
            }
            return Ok(Raised::Suppressed);
        }
        if self.cfg().url.is_none() {
            self.store.batch(statements).await?;
            return Ok(Raised::NoUrl);
        }
        statements.push(self.store.queue_message(&m, now)?);
        let changes = self.store.batch_changes(statements).await?;
        Ok(if changes.last() == Some(&1) { Raised::Queued(m) } else { Raised::Suppressed })
    }

    /// Sends one queued message now, if no other sender holds it. Answers `sent`,
    /// `pending: <why>` (retried later) or `failed: <why>` (given up), or `held elsewhere`.
    pub async fn send(&self, m: &Message, now: i64) -> String {
        let cfg = self.cfg();
        let Some(url) = cfg.url.as_deref() else { return "failed: ALERT_URL is not set".into() };
        let attempt = match self.store.take_message(&m.id, now, now + send_lease_ms(cfg.timeout_ms)).await {
            Ok(Some(a)) => a,
            Ok(None) => return "held elsewhere".into(),
            Err(e) => return format!("pending: storage {e:?}"),
        };
        let origin = cfg.console_origin.as_deref();
        let body = match cfg.format {
            Format::Slack => render_slack(m, origin),
            Format::Json => render_json(m, origin),
        }
        .to_string();
        let mut headers: Vec<(&str, String)> =
            vec![("Content-Type", "application/json".into()), ("Idempotency-Key", m.id.clone())];
        if cfg.format == Format::Json {
            match self.settings.fulfilment_secret.as_deref() {
                Some(secret) => headers.push((HDR_SIGNATURE, signature(secret.as_bytes(), body.as_bytes()))),
                None => {
                    let why = "FULFILMENT_SECRET is not set: a json alert cannot be signed";
                    let _ = self.store.message_result(&m.id, "failed", now, None, Some(why)).await;
                    worker::console_error!("alert {} ({}) not sent: {why}", m.id, m.kind);
                    return format!("failed: {why}");
                }
            }
        }
        let outcome = outbound::post(url, &headers, body.as_bytes(), cfg.timeout_ms).await;
        let (status, why) = match &outcome {
            Outcome::Status { code, body_snippet, .. } => {
                let snippet: String = body_snippet.chars().take(100).collect();
                (
                    Some(*code),
                    if snippet.is_empty() {
                        format!("HTTP {code}")
                    } else {
                        format!("HTTP {code}: {snippet}")
                    },
                )
            }
            other => (None, other.describe()),
        };
        let done = super::context::now_ms();
        let (state, next, result) = match classify_answer(status) {
            Answer::Sent => ("sent", None, "sent".to_string()),
            Answer::Retry => match retry_delay_ms(attempt) {
                Some(delay) => {
                    ("pending", Some(done + delay), format!("pending: {why} (attempt {attempt}, retried)"))
                }
                None => ("failed", None, format!("failed: {why} (gave up after {attempt} attempts)")),
            },
            Answer::Refused => ("failed", None, format!("failed: {why} (refused)")),
        };
        if state != "sent" {
            worker::console_error!("alert {} ({}) {result}", m.id, m.kind);
        }
        let error = (state != "sent").then_some(why.as_str());
        if let Err(e) = self.store.message_result(&m.id, state, done, next, error).await {
            // The hold runs out and the message is due again: a repeat is possible, a loss is not.
            worker::console_error!("alert {}: recording the send failed: {e:?}", m.id);
        }
        result
    }

    /// Sends messages concurrently: the wait is one timeout however many there are.
    pub async fn send_all(&self, messages: &[Message], now: i64) -> Vec<String> {
        join_all(messages.iter().map(|m| self.send(m, now))).await
    }

    /// Sends what is due (new messages and retries), at most `SEND_PER_RUN`.
    async fn flush(&self, now: i64) -> Result<String, StoreError> {
        let due = self.store.due_messages(now, SEND_PER_RUN).await?;
        let mut messages = Vec::with_capacity(due.len());
        for d in due {
            match serde_json::from_str::<Message>(&d.message) {
                Ok(m) => messages.push(m),
                Err(e) => {
                    let why = format!("stored message unreadable: {e}");
                    self.store.message_result(&d.id, "failed", now, None, Some(&why)).await?;
                }
            }
        }
        let results = self.send_all(&messages, now).await;
        let sent = results.iter().filter(|r| *r == "sent").count();
        Ok(format!("{sent} of {} due messages sent", results.len()))
    }
}

/// Raises an incident from any cron step or queue handler: `kind` a lowercase slug, `key`
/// `kind` or `kind:subject`, `link` a console path (`/console/...`). A message that is due is
/// sent once the event's work is done (`wait_until`), or else by the next cron run; a failure
/// to record it is returned, never a failure to send. True when a message was queued.
pub async fn raise(
    edge: &Edge,
    kind: &str,
    key: &str,
    title: &str,
    text: &str,
    link: Option<&str>,
) -> Result<bool, String> {
    let now = super::context::now_ms();
    match Alerts::of(edge).raise(kind, key, title, text, link, now).await? {
        Raised::Queued(m) => {
            edge.queue_alert(m);
            Ok(true)
        }
        Raised::Suppressed | Raised::NoUrl => Ok(false),
    }
}

/// Clears an incident raised with [`raise`] (its condition no longer holds). True when it was open.
pub async fn clear(edge: &Edge, key: &str) -> Result<bool, String> {
    Alerts::of(edge).clear(key, super::context::now_ms()).await
}

/// Sends what [`raise`] queued during this event (called by the entry points after the work).
pub async fn send_queued(edge: &Edge) {
    let queued = edge.take_alerts();
    if !queued.is_empty() {
        Alerts::of(edge).send_all(&queued, super::context::now_ms()).await;
    }
}

/// The warehouse check after a transient failure (queue consumer): raises the incident when
/// the rule holds; the message is sent after the batch (`Edge::take_alerts`).
pub async fn after_transient_failure(edge: &Edge, now: i64) {
    let a = Alerts::of(edge);
    match check_warehouse(&a, now, false).await {
        Ok(Some(m)) => edge.queue_alert(m),
        Ok(None) => {}
        Err(e) => worker::console_error!("alerts: warehouse check failed (the cron checks again): {e}"),
    }
}

/// Raises (or, from the cron, clears) the warehouse incident. Answers a queued message.
async fn check_warehouse(a: &Alerts<'_>, now: i64, may_clear: bool) -> Result<Option<Message>, String> {
    let rule = a.cfg().warehouse;
    let key = incident_key(alerts::WAREHOUSE_FAILING, "");
    let (recent, window, incident) = a
        .store
        .warehouse_reads(rule.consecutive, now - rule.window_ms, &key)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let Some(why) = warehouse_failing(&recent, window, &rule) else {
        if may_clear && incident.as_ref().is_some_and(|i| i.is_open()) && a.clear(&key, now).await? {
            recovered(a, &key, &recent, now).await?;
        }
        return Ok(None);
    };
    // Inside the repeat window there is nothing to write (the cron marks it seen).
    if !may_clear && !alerts::notify_due(incident.as_ref(), now, a.cfg().repeat_ms) {
        return Ok(None);
    }
    let m = Message {
        id: random_id(),
        kind: alerts::WAREHOUSE_FAILING.into(),
        incidents: vec![key],
        title: "Warehouse failing".into(),
        text: format!(
            "Orders are not reaching the warehouse: {why}. They are retried on the schedule and dead-lettered if it \
             does not recover; re-drive them from the dead letters once it answers."
        ),
        lines: Vec::new(),
        more: 0,
        link: Some(alerts::CONSOLE_DEAD_LETTERS.into()),
        at_ms: now,
        details: serde_json::json!({ "reason": why, "window_attempts": window.0, "window_failures": window.1 }),
    };
    match a.raise_message(m, &[], now).await.map_err(|e| format!("{e:?}"))? {
        Raised::Queued(m) => Ok(Some(m)),
        _ => Ok(None),
    }
}

/// The warehouse incident just cleared: people who were told it was failing are told it
/// answers again (the one kind that recovers without them).
async fn recovered(
    a: &Alerts<'_>,
    key: &str,
    recent: &[alerts::AttemptSeen],
    now: i64,
) -> Result<(), String> {
    if a.cfg().url.is_none() {
        return Ok(());
    }
    let last = recent.first().and_then(|r| r.outcome.clone()).unwrap_or_else(|| "none".into());
    let m = Message {
        id: random_id(),
        kind: alerts::WAREHOUSE_FAILING.into(),
        incidents: vec![key.to_string()],
        title: "Warehouse answering again".into(),
        text: format!(
            "The warehouse failure has cleared (latest attempt: {last}). Orders dead-lettered meanwhile wait for a \
             re-drive."
        ),
        lines: Vec::new(),
        more: 0,
        link: Some(alerts::CONSOLE_DEAD_LETTERS.into()),
        at_ms: now,
        details: serde_json::json!({ "cleared": true, "latest_outcome": last }),
    };
    let st = a.store.queue_notice(&m, now).map_err(|e| format!("{e:?}"))?;
    a.store.batch(vec![st]).await.map_err(|e| format!("{e:?}"))
}

/// Raises a failed gate's incident (one per lane and release) and sends it at once.
/// Answers the status kept in `gate_runs.alert_status`.
pub async fn gate_failed(
    a: &Alerts<'_>,
    lane: &str,
    released_ms: i64,
    title: &str,
    text: &str,
    details: serde_json::Value,
    now: i64,
) -> String {
    let key = incident_key(alerts::GATE_FAILED, &format!("{lane}:{released_ms}"));
    let m = Message {
        id: random_id(),
        kind: alerts::GATE_FAILED.into(),
        incidents: vec![key],
        title: title.to_string(),
        text: text.to_string(),
        lines: Vec::new(),
        more: 0,
        link: Some(lane_path(lane)),
        at_ms: now,
        details,
    };
    match a.raise_message(m, &[], now).await {
        Ok(Raised::Queued(m)) => a.send(&m, now).await,
        Ok(Raised::NoUrl) => "no_alert_url".into(),
        Ok(Raised::Suppressed) => "already_alerted".into(),
        Err(e) => format!("pending: recording the alert failed: {e:?}"),
    }
}

/// The cron step: evaluates every kind (each on its own: one failing does not stop the
/// others), then sends what is due. `clock_now` is the time SLA ages are measured at (the
/// scheduled time on a local stack with `ALLOW_CLOCK_OVERRIDE=1`, else now).
pub async fn cron_step(edge: &Edge, now: i64, clock_now: i64) -> Result<String, String> {
    let a = Alerts::of(edge);
    for p in &a.cfg().problems {
        worker::console_error!("alerts configuration: {p}");
    }
    let mut parts = Vec::new();
    let mut failed = false;
    let mut note = |name: &str, r: Result<String, String>| match r {
        Ok(s) => parts.push(format!("{name}: {s}")),
        Err(e) => {
            failed = true;
            parts.push(format!("{name}: error {e}"));
        }
    };
    note(
        "warehouse",
        check_warehouse(&a, now, true).await.map(|m| {
            if m.is_some() {
                "failing, raised".into()
            } else {
                "ok or already raised".into()
            }
        }),
    );
    note("dead_letters", dead_letters(&a, now).await);
    note("reviews", reviews(&a, now).await);
    note("sla", sla(&a, edge, now, clock_now).await);
    if let Err(e) = a.store.purge_alerts(now - KEEP_MS).await {
        note("purge", Err(format!("{e:?}")));
    }
    note("send", a.flush(now).await.map_err(|e| format!("{e:?}")));
    let line = parts.join("; ");
    if failed {
        Err(line)
    } else {
        Ok(line)
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One incident per order with an open dead letter (or per dead letter naming no order);
/// new ones are listed in one message per run; an incident clears when its dead letters are
/// resolved (re-driven or dismissed).
async fn dead_letters(a: &Alerts<'_>, now: i64) -> Result<String, String> {
    let rows = a.store.open_dead_letters(DEAD_LETTERS_READ + 1).await.map_err(|e| format!("{e:?}"))?;
    let complete = rows.len() as i64 <= DEAD_LETTERS_READ;
    let keyed: Vec<(String, &super::store::DeadLetterSeen)> = rows
        .iter()
        .map(|d| {
            let subject = match (&d.shop, &d.order_id) {
                (Some(s), Some(o)) => format!("{s}:{o}"),
                _ => format!("id:{}", d.id),
            };
            (incident_key(alerts::DEAD_LETTER, &subject), d)
        })
        .collect();
    let active: Vec<String> = keyed.iter().map(|(k, _)| k.clone()).collect();
    let known = a.store.open_incidents(alerts::DEAD_LETTER).await.map_err(|e| format!("{e:?}"))?;
    let plan = reconcile(&active, complete, &known, now, a.cfg().repeat_ms);
    clear_all(a, &plan.clear, now).await?;
    let lines: Vec<Line> = plan
        .notify
        .iter()
        .filter_map(|k| keyed.iter().find(|(key, _)| key == k))
        .map(|(_, d)| {
            let what = match (&d.order_name, &d.order_id) {
                (Some(name), _) => name.clone(),
                (None, Some(id)) => format!("order {id}"),
                (None, None) => format!("queue message (dead letter {})", d.id),
            };
            let status = d.http_status.map(|s| format!(", last answer HTTP {s}")).unwrap_or_default();
            let shop = d.shop.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
            Line {
                text: format!(
                    "{what}{shop}: {} after {}{status}",
                    d.cause,
                    plural(d.attempts.max(0) as usize, "attempt", "attempts")
                ),
                link: match (&d.shop, &d.order_id) {
                    (Some(s), Some(o)) => Some(order_path(s, o)),
                    _ => Some(alerts::CONSOLE_DEAD_LETTERS.into()),
                },
            }
        })
        .collect();
    let n = plan.notify.len();
    let m = Message {
        id: random_id(),
        kind: alerts::DEAD_LETTER.into(),
        incidents: plan.notify.clone(),
        title: format!("{} dead-lettered", plural(n, "order", "orders")),
        text: format!(
            "{} could not be handed to the warehouse and need a person: re-drive or dismiss each with a note.",
            plural(n, "order", "orders")
        ),
        lines: Vec::new(),
        more: 0,
        link: Some(alerts::CONSOLE_DEAD_LETTERS.into()),
        at_ms: now,
        details: serde_json::json!({ "count": n, "open_dead_letters": rows.len() }),
    }
    .with_lines(lines);
    let raised = a.raise_message(m, &plan.still, now).await.map_err(|e| format!("{e:?}"))?;
    Ok(format!("{} open, {n} new, {} cleared{}", rows.len(), plan.clear.len(), queued_note(&raised)))
}

fn queued_note(r: &Raised) -> &'static str {
    match r {
        Raised::Queued(_) => ", message queued",
        Raised::NoUrl => ", no ALERT_URL",
        Raised::Suppressed => "",
    }
}

async fn clear_all(a: &Alerts<'_>, keys: &[String], now: i64) -> Result<(), String> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut statements = Vec::with_capacity(keys.len());
    for k in keys {
        statements.push(a.store.clear_incident(k, now).map_err(|e| format!("{e:?}"))?);
    }
    a.store.batch(statements).await.map_err(|e| format!("{e:?}"))
}

/// Each delivery recorded for review is named once, in one message per run.
async fn reviews(a: &Alerts<'_>, now: i64) -> Result<String, String> {
    let rows = a
        .store
        .unalerted_reviews(now - REVIEW_LOOKBACK_MS, REVIEWS_PER_RUN)
        .await
        .map_err(|e| format!("{e:?}"))?;
    if rows.is_empty() {
        return Ok("none new".into());
    }
    let n = rows.len();
    let mut lines = Vec::with_capacity(n);
    let mut keyed = Vec::with_capacity(n);
    for r in &rows {
        let key = incident_key(alerts::REVIEW, &r.id.to_string());
        let path = match &r.order_id {
            Some(o) => order_path(&r.shop, o),
            None => alerts::CONSOLE_QUEUE.to_string(),
        };
        let order = r.order_id.as_deref().map(|o| format!(" order {o}")).unwrap_or_default();
        let why = r.detail.as_deref().unwrap_or("body could not be read");
        lines.push(Line {
            text: format!(
                "{} from {}{order} (delivery {}, {}): {why}",
                r.topic,
                r.shop,
                r.id,
                crate::core::time::format_rfc3339_ms(r.received_ms)
            ),
            link: Some(path.clone()),
        });
        keyed.push((key, path));
    }
    let m = Message {
        id: random_id(),
        kind: alerts::REVIEW.into(),
        incidents: keyed.iter().map(|(k, _)| k.clone()).collect(),
        title: format!("{} recorded for review", plural(n, "delivery", "deliveries")),
        text: format!(
            "Authentic Shopify {} could not be processed and {} recorded without routing: look at each and act on \
             the order by hand if needed.",
            if n == 1 { "delivery" } else { "deliveries" },
            if n == 1 { "was" } else { "were" }
        ),
        lines: Vec::new(),
        more: 0,
        link: Some(alerts::CONSOLE_QUEUE.into()),
        at_ms: now,
        details: serde_json::json!({ "count": n, "delivery_ids": rows.iter().map(|r| r.id).collect::<Vec<_>>() }),
    }
    .with_lines(lines);
    let mut statements = Vec::with_capacity(n + 1);
    for (key, path) in &keyed {
        statements.push(a.store.note_incident_once(key, &m, path, now).map_err(|e| format!("{e:?}"))?);
    }
    if a.cfg().url.is_none() {
        a.store.batch(statements).await.map_err(|e| format!("{e:?}"))?;
        return Ok(format!("{n} new, no ALERT_URL"));
    }
    statements.push(a.store.queue_message(&m, now).map_err(|e| format!("{e:?}"))?);
    a.store.batch(statements).await.map_err(|e| format!("{e:?}"))?;
    Ok(format!("{n} new, message queued"))
}

/// One incident per lane with exceptions waiting longer than its `sla_minutes`; clears when
/// none does.
async fn sla(a: &Alerts<'_>, edge: &Edge, now: i64, clock_now: i64) -> Result<String, String> {
    let m = edge.matrix()?;
    let known = a.store.open_incidents(alerts::EXCEPTION_SLA).await.map_err(|e| format!("{e:?}"))?;
    let mut breached = Vec::new();
    let mut raised = 0;
    for lane in &m.lanes {
        let key = incident_key(alerts::EXCEPTION_SLA, &lane.name);
        let (count, rows) = a
            .store
            .lane_overdue(&lane.name, alerts::sla_cutoff(clock_now, lane.sla_minutes), SLA_LISTED)
            .await
            .map_err(|e| format!("{e:?}"))?;
        if count == 0 {
            continue;
        }
        breached.push(key.clone());
        let prev = known.iter().find(|k| k.key == key);
        if !alerts::notify_due(prev, now, a.cfg().repeat_ms) {
            // Still breached and notified within the repeat window.
            continue;
        }
        let n = count.max(0) as usize;
        let sla_text = age_text(i64::from(lane.sla_minutes) * 60_000);
        let lines: Vec<Line> = rows
            .iter()
            .map(|r| {
                let name = r.order_name.clone().unwrap_or_else(|| format!("order {}", r.order_id));
                let at = match &r.reason {
                    Some(reason) => format!("{}/{reason}", r.state),
                    None => r.state.clone(),
                };
                Line {
                    text: format!("{name} ({}): {at} for {}", r.shop, age_text(clock_now - r.state_since_ms)),
                    link: Some(order_path(&r.shop, &r.order_id)),
                }
            })
            .collect();
        let msg = Message {
            id: random_id(),
            kind: alerts::EXCEPTION_SLA.into(),
            incidents: vec![key],
            title: format!("Lane {}: {} past the {sla_text} SLA", lane.name, plural(n, "exception", "exceptions")),
            text: format!(
                "{} in lane {} {} waited in the exception queue longer than its SLA of {sla_text}; the oldest first:",
                plural(n, "order", "orders"),
                lane.name,
                if n == 1 { "has" } else { "have" }
            ),
            lines: Vec::new(),
            more: 0,
            link: Some(alerts::CONSOLE_QUEUE.into()),
            at_ms: now,
            details: serde_json::json!({ "lane": lane.name, "sla_minutes": lane.sla_minutes, "count": n }),
        }
        .with_lines(lines);
        let more = n.saturating_sub(msg.lines.len());
        let msg = Message { more, ..msg };
        if let Raised::Queued(_) = a.raise_message(msg, &[], now).await.map_err(|e| format!("{e:?}"))? {
            raised += 1;
        }
    }
    let clear: Vec<String> =
        known.iter().filter(|k| !breached.contains(&k.key)).map(|k| k.key.clone()).collect();
    clear_all(a, &clear, now).await?;
    Ok(format!("{} lanes past SLA, {raised} raised, {} cleared", breached.len(), clear.len()))
}

/// `GET /admin/alerts`: open incidents and the latest messages with their delivery state.
pub async fn get_alerts(store: &Store) -> worker::Response {
    match store.alerts_view(100).await {
        Ok(text) => super::api::json_text(200, text),
        Err(e) => super::api::store_error(e),
    }
}

#[derive(serde::Deserialize)]
struct TestBody {
    note: Option<String>,
}

/// `POST /admin/alerts/test {"note": "..."}`: sends a test message now, to check `ALERT_URL`
/// and `ALERT_FORMAT` end to end. `200 {"status": "sent"}`, `502 alert_not_delivered` with the
/// receiver's answer, `409 alert_url_unset`.
pub async fn post_test(
    req: &mut worker::Request,
    env: &worker::Env,
    op: &super::api::Operator,
) -> worker::Response {
    use super::api::{body, error, json};
    let b: TestBody = match body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(note) = b.note.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()) else {
        return error(400, "note_required", "every change needs a note");
    };
    let Some(edge) = Edge::new(env) else { return super::api::unavailable(5) };
    if edge.settings.alerts.url.is_none() {
        return error(409, "alert_url_unset", "ALERT_URL is not set: there is nowhere to send alerts");
    }
    let key = incident_key("test", &random_id());
    let text = format!("Sent by {} to check the alert channel: {note}", op.actor);
    // The same path as every alert: raised, queued in D1, then sent (here at once, to answer).
    match raise(&edge, "test", &key, "Test alert from orderlane", &text, Some(alerts::CONSOLE_QUEUE)).await {
        Ok(true) => {
            let a = Alerts::of(&edge);
            let now = super::context::now_ms();
            let mut status = String::from("failed: nothing queued");
            let mut id = String::new();
            for m in edge.take_alerts() {
                status = a.send(&m, now).await;
                id = m.id;
            }
            // The test incident has done its job.
            let _ = clear(&edge, &key).await;
            if status == "sent" {
                json(
                    200,
                    &serde_json::json!({ "status": status, "message_id": id, "format": a.cfg().format }),
                )
            } else {
                error(502, "alert_not_delivered", &status)
            }
        }
        Ok(false) => error(409, "alert_url_unset", "ALERT_URL is not set: there is nowhere to send alerts"),
        Err(e) => {
            worker::console_error!("alerts: test raise failed: {e}");
            super::api::unavailable(5)
        }
    }
}
