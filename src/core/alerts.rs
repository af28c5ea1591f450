//! Alerts that reach people: what an incident is, when it notifies again, when the
//! warehouse counts as failing, and the two wire formats (Slack incoming webhook, signed JSON).
//!
//! An incident is one thing that needs a person, named by a key (`kind:subject`, e.g.
//! `warehouse_failing`, `dead_letter:shop.myshopify.com:1001`, `exception_sla:eu`). It is
//! `open` while the condition holds and `cleared` once it no longer does. Raising an incident
//! notifies when it is new, when it was cleared, or when its last notice is at least the
//! repeat window old ([`notify_due`]); otherwise it is only marked as still seen. A message
//! (one or more incidents of one kind, batched per run) is kept until it is delivered, and
//! retried on the schedule of [`retry_delay_ms`]. No I/O here: "now" is a parameter.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const DEAD_LETTER: &str = "dead_letter";
pub const WAREHOUSE_FAILING: &str = "warehouse_failing";
pub const EXCEPTION_SLA: &str = "exception_sla";
pub const REVIEW: &str = "review";
pub const GATE_FAILED: &str = "gate_failed";

/// Console pages that resolve each kind (paths agreed with the console).
pub const CONSOLE_QUEUE: &str = "/console";
pub const CONSOLE_DEAD_LETTERS: &str = "/console/dead-letters";

/// Lines listed in one message; the rest are counted ("and 12 more").
pub const MAX_LINES: usize = 20;
/// Slack refuses a header longer than 150 characters and a section longer than 3,000.
const SLACK_HEADER_MAX: usize = 150;
const SLACK_SECTION_MAX: usize = 2_900;

const MINUTE_MS: i64 = 60_000;

/// How an alert is sent: a Slack incoming-webhook body, or orderlane's signed JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Slack,
    Json,
}

impl Format {
    /// `ALERT_FORMAT`: `slack` (also when unset) or `json`. Anything else is an error, so a typo
    /// is logged rather than silently sending a body the receiver refuses.
    pub fn parse(v: Option<&str>) -> Result<Format, String> {
        match v.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("slack") => Ok(Format::Slack),
            Some("json") => Ok(Format::Json),
            Some(other) => Err(format!("ALERT_FORMAT {other:?} is neither slack nor json")),
        }
    }
}

/// When the warehouse counts as failing: `consecutive` transient failures in a row, or at
/// least `min_attempts` attempts in the last `window_ms` of which at least `rate` failed
/// transiently.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarehouseRule {
    pub consecutive: u32,
    pub rate: f64,
    pub window_ms: i64,
    pub min_attempts: u32,
}

impl Default for WarehouseRule {
    fn default() -> Self {
        WarehouseRule { consecutive: 3, rate: 0.5, window_ms: 15 * MINUTE_MS, min_attempts: 10 }
    }
}

/// Everything alerts read from vars, parsed once.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    pub url: Option<String>,
    pub format: Format,
    /// A problem with the vars, logged by the edge (the defaults apply meanwhile).
    pub problems: Vec<String>,
    /// Where console links point (`CONSOLE_ORIGIN`); links are relative paths without it.
    pub console_origin: Option<String>,
    /// An open incident notifies again once its last notice is this old (`ALERT_REPEAT_MINUTES`).
    pub repeat_ms: i64,
    pub warehouse: WarehouseRule,
    /// How long one alert POST may take (`ALERT_TIMEOUT_MS`).
    pub timeout_ms: u64,
}

pub const DEFAULT_REPEAT_MINUTES: i64 = 240;
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;

impl AlertConfig {
    /// Parses the alert vars; `get` answers a var's text (absent and empty read the same).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> AlertConfig {
        let mut problems = Vec::new();
        let format = Format::parse(get("ALERT_FORMAT").as_deref()).unwrap_or_else(|e| {
            problems.push(e);
            Format::Slack
        });
        let mut num = |name: &str, default: f64, ok: &dyn Fn(f64) -> bool| -> f64 {
            match get(name) {
                None => default,
                Some(v) => match v.trim().parse::<f64>() {
                    Ok(x) if x.is_finite() && ok(x) => x,
                    _ => {
                        problems.push(format!("{name} {v:?} is out of range; using {default}"));
                        default
                    }
                },
            }
        };
        let d = WarehouseRule::default();
        let repeat_min =
            num("ALERT_REPEAT_MINUTES", DEFAULT_REPEAT_MINUTES as f64, &|x| (1.0..=10_080.0).contains(&x));
        let consecutive =
            num("ALERT_WAREHOUSE_CONSECUTIVE", f64::from(d.consecutive), &|x| (1.0..=100.0).contains(&x));
        let rate = num("ALERT_WAREHOUSE_FAILURE_RATE", d.rate, &|x| x > 0.0 && x <= 1.0);
        let window_min = num("ALERT_WAREHOUSE_WINDOW_MINUTES", 15.0, &|x| (1.0..=1_440.0).contains(&x));
        let min_attempts = num("ALERT_WAREHOUSE_MIN_ATTEMPTS", f64::from(d.min_attempts), &|x| {
            (1.0..=10_000.0).contains(&x)
        });
        let timeout =
            num("ALERT_TIMEOUT_MS", DEFAULT_TIMEOUT_MS as f64, &|x| (100.0..=30_000.0).contains(&x));
        let console_origin = get("CONSOLE_ORIGIN").map(|o| o.trim().trim_end_matches('/').to_string());
        if let Some(o) = &console_origin {
            if !(o.starts_with("https://") || o.starts_with("http://")) {
                problems.push(format!("CONSOLE_ORIGIN {o:?} is not an http(s) origin; links stay relative"));
            }
        }
        AlertConfig {
            url: get("ALERT_URL"),
            format,
            console_origin: console_origin.filter(|o| o.starts_with("https://") || o.starts_with("http://")),
            repeat_ms: (repeat_min * MINUTE_MS as f64) as i64,
            warehouse: WarehouseRule {
                consecutive: consecutive as u32,
                rate,
                window_ms: (window_min * MINUTE_MS as f64) as i64,
                min_attempts: min_attempts as u32,
            },
            timeout_ms: timeout as u64,
            problems,
        }
    }
}

/// `kind:subject`, the key an incident is deduplicated on.
pub fn incident_key(kind: &str, subject: &str) -> String {
    if subject.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}:{subject}")
    }
}

/// A kind is a short lowercase slug; a key starts with its kind and stays short (it is a
/// primary key and appears in every message).
pub fn check_incident(kind: &str, key: &str) -> Result<(), String> {
    let slug = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    if !slug(kind) || kind.len() > 40 {
        return Err(format!("incident kind {kind:?} must be a lowercase slug of at most 40 characters"));
    }
    if !(key == kind || key.starts_with(&format!("{kind}:"))) || key.len() > 300 {
        return Err(format!(
            "incident key {key:?} must be {kind} or start with \"{kind}:\" (at most 300 characters)"
        ));
    }
    if key.chars().any(char::is_control) {
        return Err("incident key holds control characters".into());
    }
    Ok(())
}

/// What D1 holds for an incident, as far as deciding goes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IncidentState {
    pub key: String,
    pub state: String,
    pub notified_ms: i64,
}

impl IncidentState {
    pub fn is_open(&self) -> bool {
        self.state == "open"
    }
}

/// Notices at or before this time are old enough to be repeated.
pub fn repeat_cutoff(now_ms: i64, repeat_ms: i64) -> i64 {
    now_ms.saturating_sub(repeat_ms)
}

/// Whether raising the incident now sends a message: it is new, it had cleared, or its last
/// notice is at least `repeat_ms` old. (The store's upsert applies the same rule atomically.)
pub fn notify_due(prev: Option<&IncidentState>, now_ms: i64, repeat_ms: i64) -> bool {
    match prev {
        None => true,
        Some(p) => !p.is_open() || p.notified_ms <= repeat_cutoff(now_ms, repeat_ms),
    }
}

/// The incident after a raise at `now`, and whether the raise notifies: what the store's
/// upsert (`Store::raise_incident`) leaves in D1.
pub fn after_raise(
    prev: Option<&IncidentState>,
    key: &str,
    now_ms: i64,
    repeat_ms: i64,
) -> (IncidentState, bool) {
    let notify = notify_due(prev, now_ms, repeat_ms);
    let notified_ms = match prev {
        Some(p) if !notify => p.notified_ms,
        _ => now_ms,
    };
    (IncidentState { key: key.to_string(), state: "open".into(), notified_ms }, notify)
}

/// One run's decision for a kind whose subjects are all listed each run (dead letters,
/// lanes past their SLA): which active subjects notify, and which open incidents clear.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub notify: Vec<String>,
    pub still: Vec<String>,
    pub clear: Vec<String>,
}

/// `active`: every key whose condition holds now (complete, or `complete = false` when the
/// list was cut short, in which case nothing clears). `known`: the stored incidents of the kind.
pub fn reconcile(
    active: &[String],
    complete: bool,
    known: &[IncidentState],
    now_ms: i64,
    repeat_ms: i64,
) -> Plan {
    let mut plan = Plan::default();
    let mut seen = BTreeSet::new();
    for key in active {
        if !seen.insert(key.as_str()) {
            continue;
        }
        let prev = known.iter().find(|k| &k.key == key);
        if notify_due(prev, now_ms, repeat_ms) {
            plan.notify.push(key.clone());
        } else {
            plan.still.push(key.clone());
        }
    }
    if complete {
        plan.clear = known
            .iter()
            .filter(|k| k.is_open() && !seen.contains(k.key.as_str()))
            .map(|k| k.key.clone())
            .collect();
    }
    plan
}

/// One finished warehouse attempt, newest first in [`warehouse_failing`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AttemptSeen {
    pub outcome: Option<String>,
    pub error: Option<String>,
}

impl AttemptSeen {
    fn transient(&self) -> bool {
        self.outcome.as_deref() == Some("transient")
    }
}

/// Why the warehouse counts as failing, or `None`. `recent`: the newest finished attempts,
/// newest first (at least `rule.consecutive` when there are that many); `window`: (attempts,
/// transient failures) finished in the last `rule.window_ms`.
pub fn warehouse_failing(recent: &[AttemptSeen], window: (u64, u64), rule: &WarehouseRule) -> Option<String> {
    let n = rule.consecutive as usize;
    let last = recent.first().and_then(|a| a.error.clone()).unwrap_or_else(|| "no answer".into());
    if n > 0 && recent.len() >= n && recent[..n].iter().all(AttemptSeen::transient) {
        return Some(format!("the last {n} warehouse attempts failed in a row (last: {last})"));
    }
    let (total, failed) = window;
    if total >= u64::from(rule.min_attempts) && total > 0 && failed as f64 / total as f64 >= rule.rate {
        let pct = (failed as f64 * 100.0 / total as f64).round();
        let minutes = rule.window_ms / MINUTE_MS;
        return Some(format!(
            "{failed} of {total} warehouse attempts in the last {minutes} min failed ({pct}%, limit {}%; last: {last})",
            (rule.rate * 100.0).round()
        ));
    }
    None
}

/// The time after which a hold older than `sla_minutes` breaches it.
pub fn sla_cutoff(now_ms: i64, sla_minutes: u32) -> i64 {
    now_ms.saturating_sub(i64::from(sla_minutes) * MINUTE_MS)
}

/// "3 h 20 min", "45 min", "2 d 4 h": an age for people.
pub fn age_text(ms: i64) -> String {
    let min = (ms.max(0) / MINUTE_MS) as u64;
    match min {
        0..=59 => format!("{min} min"),
        60..=1_439 if min.is_multiple_of(60) => format!("{} h", min / 60),
        60..=1_439 => format!("{} h {} min", min / 60, min % 60),
        _ if (min / 60).is_multiple_of(24) => format!("{} d", min / 1_440),
        _ => format!("{} d {} h", min / 1_440, (min / 60) % 24),
    }
}

/// Percent-encodes one path segment (shop domains and ids pass unchanged).
pub fn path_segment(s: &str) -> String {
    super::query::percent_encode(s)
}

pub fn order_path(shop: &str, order_id: &str) -> String {
    format!("/console/orders/{}/{}", path_segment(shop), path_segment(order_id))
}

pub fn lane_path(lane: &str) -> String {
    format!("/console/lanes/{}", path_segment(lane))
}

/// An absolute link under `origin`, or the path itself when no origin is configured.
pub fn link(origin: Option<&str>, path: &str) -> String {
    match origin {
        Some(o) => format!("{}{path}", o.trim_end_matches('/')),
        None => path.to_string(),
    }
}

/// One listed item of a message: a line of text and the console page that resolves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// What is sent for one or more incidents of one kind. Links are console paths here; they
/// are made absolute (or not) when rendered, so a changed `CONSOLE_ORIGIN` applies to retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub kind: String,
    pub incidents: Vec<String>,
    pub title: String,
    pub text: String,
    #[serde(default)]
    pub lines: Vec<Line>,
    /// How many more items there were than `lines` lists.
    #[serde(default)]
    pub more: usize,
    pub link: Option<String>,
    pub at_ms: i64,
    #[serde(default)]
    pub details: Value,
}

impl Message {
    /// Keeps at most [`MAX_LINES`] lines, counting the rest.
    pub fn with_lines(mut self, mut lines: Vec<Line>) -> Message {
        if lines.len() > MAX_LINES {
            self.more = lines.len() - MAX_LINES;
            lines.truncate(MAX_LINES);
        }
        self.lines = lines;
        self
    }
}

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters; everything from Shopify is
/// escaped so it renders as text.
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn slack_link(origin: Option<&str>, path: &str, label: &str) -> String {
    let url = link(origin, path);
    if origin.is_some() {
        // Inside <url|label> the label may not hold `|` or `>`.
        format!("<{}|{}>", url.replace('|', "%7C").replace('>', "%3E"), slack_escape(label).replace('|', "/"))
    } else {
        format!("{} (`{}`)", slack_escape(label), slack_escape(&url).replace('`', "'"))
    }
}

/// The body for a Slack incoming webhook: `text` (the notification and fallback) and
/// `blocks` (header, the text with its listed items, a console button when links are
/// absolute, and a context line naming the incident).
pub fn render_slack(m: &Message, origin: Option<&str>) -> Value {
    let mut body = slack_escape(&m.text);
    for l in &m.lines {
        let item = match &l.link {
            Some(p) => slack_link(origin, p, &l.text),
            None => slack_escape(&l.text),
        };
        body.push_str(&format!("\n• {item}"));
    }
    if m.more > 0 {
        body.push_str(&format!("\n…and {} more", m.more));
    }
    let mut fallback = format!("{}: {}", slack_escape(&m.title), slack_escape(&m.text));
    if let Some(p) = &m.link {
        fallback.push_str(&format!(" {}", link(origin, p)));
    }
    let mut blocks = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "text": cut(&m.title, SLACK_HEADER_MAX), "emoji": false } }),
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": cut(&body, SLACK_SECTION_MAX) } }),
    ];
    match (&m.link, origin) {
        (Some(p), Some(_)) => blocks.push(json!({
            "type": "actions",
            "elements": [{ "type": "button", "text": { "type": "plain_text", "text": "Open in the console" }, "url": link(origin, p) }],
        })),
        (Some(p), None) => blocks.push(json!({
            "type": "section", "text": { "type": "mrkdwn", "text": format!("Console: `{}`", slack_escape(p).replace('`', "'")) },
        })),
        (None, _) => {}
    }
    let incident = m.incidents.first().map(String::as_str).unwrap_or(&m.kind);
    let also =
        if m.incidents.len() > 1 { format!(" (+{} more)", m.incidents.len() - 1) } else { String::new() };
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": cut(&format!("orderlane · {} · {}{also} · {}", m.kind, slack_escape(incident), crate::core::time::format_rfc3339_ms(m.at_ms)), 300) }],
    }));
    json!({ "text": cut(&fallback, SLACK_SECTION_MAX), "blocks": blocks })
}

/// The JSON body: the message with absolute (or relative) links, for any receiver that
/// verifies `X-Orderlane-Signature` as a warehouse does.
pub fn render_json(m: &Message, origin: Option<&str>) -> Value {
    let items: Vec<Value> = m
        .lines
        .iter()
        .map(|l| json!({ "text": l.text, "link": l.link.as_deref().map(|p| link(origin, p)) }))
        .collect();
    json!({
        "id": m.id,
        "kind": m.kind,
        "incidents": m.incidents,
        "title": m.title,
        "text": m.text,
        "items": items,
        "more": m.more,
        "link": m.link.as_deref().map(|p| link(origin, p)),
        "at_ms": m.at_ms,
        "at": crate::core::time::format_rfc3339_ms(m.at_ms),
        "details": m.details,
    })
}

/// What one delivery attempt's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Sent,
    /// Worth trying again (no answer, 408, 425, 429, 5xx).
    Retry,
    /// The receiver refuses this body for good (other 4xx, e.g. Slack's 400 invalid_payload).
    Refused,
}

pub fn classify_answer(status: Option<u16>) -> Answer {
    match status {
        Some(200..=299) => Answer::Sent,
        None | Some(408 | 425 | 429) | Some(500..=599) => Answer::Retry,
        Some(_) => Answer::Refused,
    }
}

/// Delays before attempt 2, 3, ...: the next cron runs (15 minutes apart) four times, then
/// 30 min, 1 h, 2 h and 4 h. After [`MAX_SEND_ATTEMPTS`] the message is given up (logged,
/// kept as `failed`).
const RETRY_DELAYS_MIN: [i64; 7] = [0, 0, 0, 30, 60, 120, 240];
pub const MAX_SEND_ATTEMPTS: u32 = RETRY_DELAYS_MIN.len() as u32 + 1;

/// After `attempts` failed sends: the delay before the next one, or `None` to give up.
pub fn retry_delay_ms(attempts: u32) -> Option<i64> {
    let i = attempts.checked_sub(1)? as usize;
    RETRY_DELAYS_MIN.get(i).map(|m| m * MINUTE_MS)
}

/// How long a sender holds a message it is sending: no second sender starts before this
/// passes (a sender that died leaves the message due again after it).
pub fn send_lease_ms(timeout_ms: u64) -> i64 {
    timeout_ms as i64 + 30_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(key: &str, state: &str, notified_ms: i64) -> IncidentState {
        IncidentState { key: key.into(), state: state.into(), notified_ms }
    }

    fn cfg(vars: &[(&str, &str)]) -> AlertConfig {
        let owned: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        AlertConfig::from_vars(|n| owned.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
    }

    #[test]
    fn config_defaults_and_bad_values() {
        let c = cfg(&[]);
        assert_eq!(c.format, Format::Slack);
        assert_eq!(c.url, None);
        assert_eq!(c.repeat_ms, 240 * MINUTE_MS);
        assert_eq!(c.warehouse, WarehouseRule::default());
        assert_eq!(c.timeout_ms, 5_000);
        assert!(c.problems.is_empty());

        let c = cfg(&[
            ("ALERT_FORMAT", "JSON"),
            ("ALERT_URL", "https://hooks.example/x"),
            ("ALERT_REPEAT_MINUTES", "30"),
            ("ALERT_WAREHOUSE_CONSECUTIVE", "5"),
            ("ALERT_WAREHOUSE_FAILURE_RATE", "0.25"),
            ("ALERT_WAREHOUSE_WINDOW_MINUTES", "60"),
            ("ALERT_WAREHOUSE_MIN_ATTEMPTS", "4"),
            ("CONSOLE_ORIGIN", "https://orderlane.example.com/"),
        ]);
        assert_eq!(c.format, Format::Json);
        assert_eq!(c.repeat_ms, 30 * MINUTE_MS);
        assert_eq!(
            c.warehouse,
            WarehouseRule { consecutive: 5, rate: 0.25, window_ms: 60 * MINUTE_MS, min_attempts: 4 }
        );
        assert_eq!(c.console_origin.as_deref(), Some("https://orderlane.example.com"));
        assert!(c.problems.is_empty(), "{:?}", c.problems);

        let c = cfg(&[
            ("ALERT_FORMAT", "teams"),
            ("ALERT_WAREHOUSE_FAILURE_RATE", "1.5"),
            ("ALERT_REPEAT_MINUTES", "soon"),
            ("CONSOLE_ORIGIN", "orderlane.example.com"),
        ]);
        assert_eq!(c.format, Format::Slack);
        assert_eq!(c.warehouse.rate, 0.5);
        assert_eq!(c.repeat_ms, 240 * MINUTE_MS);
        assert_eq!(c.console_origin, None);
        assert_eq!(c.problems.len(), 4, "{:?}", c.problems);
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(incident_key(WAREHOUSE_FAILING, ""), "warehouse_failing");
        assert_eq!(incident_key(EXCEPTION_SLA, "eu"), "exception_sla:eu");
        assert!(check_incident("shop_quiet", "shop_quiet:a.myshopify.com").is_ok());
        assert!(check_incident("shop_quiet", "shop_quiet").is_ok());
        assert!(check_incident("Shop Quiet", "Shop Quiet").is_err());
        assert!(check_incident("shop_quiet", "other:a").is_err());
        assert!(check_incident("shop_quiet", "shop_quietx").is_err());
        assert!(check_incident("shop_quiet", &format!("shop_quiet:{}", "x".repeat(300))).is_err());
        assert!(check_incident("shop_quiet", "shop_quiet:a\nb").is_err());
    }

    #[test]
    fn an_incident_notifies_when_new_reopened_or_repeated_after_the_window() {
        let w = 60 * MINUTE_MS;
        let now = 10 * w;
        assert!(notify_due(None, now, w), "new");
        assert!(!notify_due(Some(&inc("k", "open", now - w + 1)), now, w), "inside the window");
        assert!(notify_due(Some(&inc("k", "open", now - w)), now, w), "the window has passed");
        assert!(notify_due(Some(&inc("k", "cleared", now - 1)), now, w), "cleared, then raised again");
    }

    #[test]
    fn reconcile_notifies_new_keeps_seen_and_clears_gone() {
        let w = 60 * MINUTE_MS;
        let now = 100 * w;
        let known = vec![
            inc("d:a", "open", now - 5),
            inc("d:b", "open", now - 5),
            inc("d:c", "cleared", now - 5),
            inc("d:e", "open", now - w),
        ];
        let active: Vec<String> =
            ["d:a", "d:c", "d:new", "d:e", "d:new"].iter().map(|s| s.to_string()).collect();
        let p = reconcile(&active, true, &known, now, w);
        assert_eq!(p.notify, ["d:c", "d:new", "d:e"]);
        assert_eq!(p.still, ["d:a"]);
        assert_eq!(p.clear, ["d:b"]);
        // A list cut short clears nothing: what it missed may still hold.
        let p = reconcile(&active, false, &known, now, w);
        assert!(p.clear.is_empty());
    }

    fn seen(outcomes: &[&str]) -> Vec<AttemptSeen> {
        outcomes
            .iter()
            .map(|o| AttemptSeen { outcome: Some(o.to_string()), error: Some(format!("{o} answer")) })
            .collect()
    }

    #[test]
    fn warehouse_failing_by_consecutive_failures_or_rate() {
        let r = WarehouseRule::default();
        assert_eq!(
            warehouse_failing(&seen(&["transient", "transient"]), (2, 2), &r),
            None,
            "two are not three"
        );
        let why = warehouse_failing(&seen(&["transient", "transient", "transient", "accepted"]), (4, 3), &r)
            .unwrap();
        assert!(why.contains("last 3") && why.contains("transient answer"), "{why}");
        assert_eq!(
            warehouse_failing(&seen(&["accepted", "transient", "transient", "transient"]), (4, 3), &r),
            None,
            "an answer ends the run; 4 attempts are below the rate's minimum"
        );
        assert_eq!(warehouse_failing(&seen(&["transient", "refused", "transient"]), (3, 2), &r), None);
        // Rate: 5 of 10 in the window is 50 %.
        let why = warehouse_failing(&seen(&["accepted"]), (10, 5), &r).unwrap();
        assert!(why.contains("5 of 10") && why.contains("50%"), "{why}");
        assert_eq!(warehouse_failing(&seen(&["accepted"]), (10, 4), &r), None);
        assert_eq!(
            warehouse_failing(&seen(&["accepted"]), (9, 9), &r),
            None,
            "too few attempts to judge a rate"
        );
        assert_eq!(warehouse_failing(&[], (0, 0), &r), None);
    }

    #[test]
    fn ages_and_cutoffs() {
        assert_eq!(sla_cutoff(10 * MINUTE_MS, 4), 6 * MINUTE_MS);
        assert_eq!(age_text(45 * MINUTE_MS), "45 min");
        assert_eq!(age_text(120 * MINUTE_MS), "2 h");
        assert_eq!(age_text(200 * MINUTE_MS), "3 h 20 min");
        assert_eq!(age_text(2 * 1_440 * MINUTE_MS), "2 d");
        assert_eq!(age_text((2 * 1_440 + 240) * MINUTE_MS), "2 d 4 h");
        assert_eq!(age_text(-5), "0 min");
    }

    #[test]
    fn links_are_absolute_under_an_origin_and_encoded() {
        assert_eq!(
            order_path("a.myshopify.com", "820982911946154508"),
            "/console/orders/a.myshopify.com/820982911946154508"
        );
        assert_eq!(order_path("a b", "1/2"), "/console/orders/a%20b/1%2F2");
        assert_eq!(lane_path("eu"), "/console/lanes/eu");
        assert_eq!(link(Some("https://x.example"), "/console"), "https://x.example/console");
        assert_eq!(link(None, "/console"), "/console");
    }

    fn message() -> Message {
        Message {
            id: "m1".into(),
            kind: DEAD_LETTER.into(),
            incidents: vec!["dead_letter:s:1".into(), "dead_letter:s:2".into()],
            title: "2 orders dead-lettered".into(),
            text: "They need a person: <re-drive> or dismiss & note.".into(),
            lines: vec![],
            more: 0,
            link: Some(CONSOLE_DEAD_LETTERS.into()),
            at_ms: 1_700_000_000_000,
            details: json!({ "count": 2 }),
        }
        .with_lines(vec![
            Line { text: "#1001 <script>alert(1)</script>".into(), link: Some(order_path("s", "1")) },
            Line { text: "queue message unreadable".into(), link: None },
        ])
    }

    #[test]
    fn slack_body_has_text_and_blocks_with_escaped_strings() {
        let v = render_slack(&message(), Some("https://ol.example"));
        let text = v["text"].as_str().unwrap();
        assert!(text.starts_with("2 orders dead-lettered: They need a person: &lt;re-drive&gt;"), "{text}");
        assert!(text.ends_with("https://ol.example/console/dead-letters"), "{text}");
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        let section = blocks[1]["text"]["text"].as_str().unwrap();
        assert!(section.contains("&lt;re-drive&gt; or dismiss &amp; note"), "{section}");
        assert!(
            section.contains(
                "<https://ol.example/console/orders/s/1|#1001 &lt;script&gt;alert(1)&lt;/script&gt;>"
            ),
            "{section}"
        );
        assert!(!section.contains("<script>"));
        assert_eq!(blocks[2]["type"], "actions");
        assert_eq!(blocks[2]["elements"][0]["url"], "https://ol.example/console/dead-letters");
        assert_eq!(blocks[3]["type"], "context");
        // Without an origin, no button (Slack needs an absolute URL): the path is shown.
        let v = render_slack(&message(), None);
        let blocks = v["blocks"].as_array().unwrap();
        assert!(blocks.iter().all(|b| b["type"] != "actions"));
        assert!(blocks[1]["text"]["text"].as_str().unwrap().contains("(`/console/orders/s/1`)"));
    }

    #[test]
    fn slack_limits_are_kept() {
        let many: Vec<Line> =
            (0..45).map(|i| Line { text: format!("order {i} {}", "x".repeat(200)), link: None }).collect();
        let m = Message { title: "t".repeat(400), ..message() }.with_lines(many);
        assert_eq!(m.lines.len(), MAX_LINES);
        assert_eq!(m.more, 25);
        let v = render_slack(&m, None);
        assert!(v["blocks"][0]["text"]["text"].as_str().unwrap().chars().count() <= SLACK_HEADER_MAX);
        let section = v["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(section.chars().count() <= SLACK_SECTION_MAX);
    }

    #[test]
    fn json_body_carries_the_message_with_links() {
        let v = render_json(&message(), Some("https://ol.example"));
        assert_eq!(v["kind"], "dead_letter");
        assert_eq!(v["incidents"][1], "dead_letter:s:2");
        assert_eq!(v["items"][0]["link"], "https://ol.example/console/orders/s/1");
        assert_eq!(v["items"][1]["link"], Value::Null);
        assert_eq!(v["link"], "https://ol.example/console/dead-letters");
        assert_eq!(v["details"]["count"], 2);
        assert_eq!(v["at"], "2023-11-14T22:13:20.000Z");
        // A message survives the outbox round trip.
        let back: Message = serde_json::from_str(&serde_json::to_string(&message()).unwrap()).unwrap();
        assert_eq!(back, message());
    }

    proptest::proptest! {
        /// Over any sequence of raises and clears: while an incident stays open, two notices
        /// are at least the repeat window apart, and the first raise after a clear (or ever)
        /// always notifies.
        #[test]
        fn notices_are_spaced_and_reopening_always_notifies(
            steps in proptest::collection::vec((0i64..200, proptest::bool::ANY), 1..80),
            repeat_min in 1i64..120,
        ) {
            let repeat = repeat_min * MINUTE_MS;
            let mut now = 0i64;
            let mut inc: Option<IncidentState> = None;
            let mut last_notice: Option<i64> = None;
            for (gap_min, is_clear) in steps {
                now += gap_min * MINUTE_MS;
                if is_clear {
                    if let Some(i) = inc.as_mut() {
                        i.state = "cleared".into();
                    }
                    last_notice = None;
                    continue;
                }
                let reopening = inc.as_ref().is_none_or(|i| !i.is_open());
                let (next, notify) = after_raise(inc.as_ref(), "k", now, repeat);
                if reopening {
                    proptest::prop_assert!(notify, "a new or cleared incident notifies");
                }
                if notify {
                    if let Some(prev) = last_notice {
                        proptest::prop_assert!(now - prev >= repeat, "notices {prev} and {now} closer than {repeat}");
                    }
                    last_notice = Some(now);
                } else {
                    proptest::prop_assert!(now - last_notice.unwrap_or(i64::MIN / 2) < repeat, "a due repeat was missed");
                }
                inc = Some(next);
            }
        }

        /// Every active key is either notified or still; cleared keys are open, known and inactive.
        #[test]
        fn reconcile_partitions(
            active in proptest::collection::vec(0u8..12, 0..20),
            known in proptest::collection::vec((0u8..12, proptest::bool::ANY, 0i64..100), 0..12),
        ) {
            let w = 50 * MINUTE_MS;
            let now = 100 * MINUTE_MS;
            let active: Vec<String> = active.iter().map(|k| format!("d:{k}")).collect();
            let mut seen = BTreeSet::new();
            let known: Vec<IncidentState> = known
                .into_iter()
                .filter(|(k, _, _)| seen.insert(*k))
                .map(|(k, open, at)| inc(&format!("d:{k}"), if open { "open" } else { "cleared" }, at * MINUTE_MS))
                .collect();
            let p = reconcile(&active, true, &known, now, w);
            let unique: BTreeSet<&String> = active.iter().collect();
            let got: BTreeSet<&String> = p.notify.iter().chain(&p.still).collect();
            proptest::prop_assert_eq!(got, unique.clone());
            proptest::prop_assert_eq!(p.notify.len() + p.still.len(), unique.len());
            for c in &p.clear {
                proptest::prop_assert!(!unique.contains(c));
                proptest::prop_assert!(known.iter().any(|k| &k.key == c && k.is_open()));
            }
        }
    }

    #[test]
    fn answers_and_the_retry_schedule() {
        assert_eq!(classify_answer(Some(200)), Answer::Sent);
        assert_eq!(classify_answer(Some(500)), Answer::Retry);
        assert_eq!(classify_answer(Some(429)), Answer::Retry);
        assert_eq!(classify_answer(None), Answer::Retry);
        assert_eq!(classify_answer(Some(400)), Answer::Refused, "Slack's invalid_payload never improves");
        assert_eq!(classify_answer(Some(404)), Answer::Refused);
        assert_eq!(retry_delay_ms(0), None);
        assert_eq!(retry_delay_ms(1), Some(0));
        assert_eq!(retry_delay_ms(4), Some(30 * MINUTE_MS));
        assert_eq!(retry_delay_ms(7), Some(240 * MINUTE_MS));
        assert_eq!(retry_delay_ms(MAX_SEND_ATTEMPTS), None, "bounded");
        let total: i64 = (1..MAX_SEND_ATTEMPTS).filter_map(retry_delay_ms).sum();
        assert_eq!(total, 450 * MINUTE_MS, "given up after about 8 hours (plus cron spacing)");
    }
}
