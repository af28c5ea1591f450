//! Retry policy for fulfilment submissions, kept as data.
//!
//! One submission attempt ends in an [`Outcome`]; [`classify`] names its [`Class`], and
//! [`next_step`] turns the class and the attempt count into a [`Step`] for the queue
//! consumer: acknowledge, re-enqueue with a delay, hold for inventory, or dead-letter.
//! Delays come from [`SCHEDULE_SECS`]; nothing here sleeps, reads a clock or draws a
//! random number — `now_ms` and the jitter draw are parameters.
//!
//! Attempt numbering: a queue message carries the 1-based number of the attempt it makes.
//! After attempt `n` fails transiently, attempt `n + 1` is enqueued after
//! `SCHEDULE_SECS[n - 1]` (± jitter). Attempt [`MAX_ATTEMPTS`] is the last one: the first
//! attempt plus one retry per schedule entry.

use crate::core::types::Reason;

/// Delay before each retry, in seconds: entry `n - 1` follows failed attempt `n`.
/// Every entry is within `[MIN_DELAY_SECS, MAX_DELAY_SECS]` (checked at compile time).
pub const SCHEDULE_SECS: &[u32] = &[10, 60, 300, 1800, 7200, 21600, 43200];

/// The queue's largest delivery delay: 12 hours.
pub const MAX_DELAY_SECS: u32 = 43_200;

/// No retry is scheduled sooner than this.
pub const MIN_DELAY_SECS: u32 = 1;

/// Attempts made before dead-lettering: the first plus one per schedule entry.
pub const MAX_ATTEMPTS: u32 = SCHEDULE_SECS.len() as u32 + 1;

/// Relative jitter applied to scheduled delays: a delay `d` becomes a value in
/// `[d * (1 - JITTER), d * (1 + JITTER)]`, rounded, then clamped to
/// `[MIN_DELAY_SECS, MAX_DELAY_SECS]`.
pub const JITTER: f64 = 0.2;

/// Bytes of a downstream response body kept for classification and for `dead_letters`.
pub const BODY_SNIPPET_MAX: usize = 1024;

const _: () = {
    let mut i = 0;
    while i < SCHEDULE_SECS.len() {
        assert!(SCHEDULE_SECS[i] >= MIN_DELAY_SECS && SCHEDULE_SECS[i] <= MAX_DELAY_SECS);
        i += 1;
    }
};

/// What one POST to the warehouse produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP response arrived.
    Status {
        code: u16,
        /// The raw `Retry-After` header, if any.
        retry_after: Option<String>,
        /// The start of the response body (see [`snippet`]).
        body_snippet: String,
    },
    /// No response within the edge's deadline.
    Timeout,
    /// The request failed before a response (DNS, TLS, connection reset, ...).
    Network(String),
}

impl Outcome {
    /// A one-line description for attempt records and `dead_letters.last_error`, e.g.
    /// `HTTP 409`, `timeout`, `network: connection reset`. Never the warehouse's response text:
    /// a warehouse may echo the recipient, and only `dead_letters.response` keeps it.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Status { code, .. } => format!("HTTP {code}"),
            Outcome::Timeout => "timeout".into(),
            Outcome::Network(e) => format!("network: {e}"),
        }
    }
}

impl Outcome {
    /// A short code with no response text in it (`http_503`, `timeout`, `network`), for the
    /// audit log, which must hold no personal data a warehouse might echo.
    pub fn code(&self) -> String {
        match self {
            Outcome::Status { code, .. } => format!("http_{code}"),
            Outcome::Timeout => "timeout".into(),
            Outcome::Network(_) => "network".into(),
        }
    }
}

/// What an outcome means for the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 2xx: the warehouse accepted the order.
    Success,
    /// Worth retrying: timeouts, network errors, 408, 425, 429, 5xx.
    Transient {
        /// The response's `Retry-After`, parsed and clamped to `[1 s, 12 h]`.
        retry_after_secs: Option<u32>,
    },
    /// 409 whose body says the stock is not there: `hold/inventory`.
    OutOfStock,
    /// To a cancel request: 409 whose body says the order already shipped.
    AlreadyShipped,
    /// Retrying cannot help: other 4xx, 3xx, 1xx and codes outside 100..=599.
    Permanent,
}

/// Classifies an outcome. `now_ms` (epoch milliseconds) is needed only to turn an
/// HTTP-date `Retry-After` into a delay.
///
/// Codes outside 100..=599 are not HTTP and are treated as permanent: a person has to
/// look at a downstream that answers them.
pub fn classify(outcome: &Outcome, now_ms: i64) -> Class {
    match outcome {
        Outcome::Timeout | Outcome::Network(_) => Class::Transient { retry_after_secs: None },
        Outcome::Status { code, retry_after, body_snippet } => match *code {
            200..=299 => Class::Success,
            408 | 425 | 429 | 500..=599 => Class::Transient {
                retry_after_secs: retry_after.as_deref().and_then(|v| parse_retry_after(v, now_ms)),
            },
            409 if is_out_of_stock(body_snippet) => Class::OutOfStock,
            _ => Class::Permanent,
        },
    }
}

/// Classifies the answer to a cancel request: as [`classify`], except that a 409 saying the
/// order already shipped is [`Class::AlreadyShipped`] (and `out_of_stock` means nothing).
pub fn classify_cancel(outcome: &Outcome, now_ms: i64) -> Class {
    match outcome {
        Outcome::Status { code: 409, body_snippet, .. } if is_already_shipped(body_snippet) => {
            Class::AlreadyShipped
        }
        Outcome::Status { code: 409, .. } => Class::Permanent,
        other => classify(other, now_ms),
    }
}

/// True when a body says the order already left the warehouse: `already_shipped`,
/// `already shipped` or `already-shipped`, in any case.
pub fn is_already_shipped(body: &str) -> bool {
    let lower = body.to_ascii_lowercase();
    ["already_shipped", "already shipped", "already-shipped"].iter().any(|p| lower.contains(p))
}

/// True when a response body says the order cannot be covered by stock: it contains
/// `out_of_stock`, `out of stock`, `out-of-stock` or `insufficient stock`, in any case
/// (which covers a JSON body like `{"error":"out_of_stock"}`).
pub fn is_out_of_stock(body: &str) -> bool {
    let lower = body.to_ascii_lowercase();
    ["out_of_stock", "out of stock", "out-of-stock", "insufficient stock"].iter().any(|p| lower.contains(p))
}

/// Parses a `Retry-After` value into seconds from `now_ms`, clamped to
/// `[MIN_DELAY_SECS, MAX_DELAY_SECS]`.
///
/// Accepts delta-seconds (`120`) and an HTTP-date in IMF-fixdate form
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), plus the two obsolete forms RFC 9110 asks
/// recipients to accept (see [`parse_http_date`]). A date in the past gives the minimum.
/// Returns `None` for anything else (negative or fractional numbers, garbage), in which
/// case the schedule alone decides.
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<u32> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        // More than 10 digits is past any clamp; avoid overflow by saturating.
        let secs = if v.len() > 10 { u64::MAX } else { v.parse::<u64>().ok()? };
        return Some(clamp_secs(secs));
    }
    let at_ms = parse_http_date(v)?;
    let diff_ms = at_ms.saturating_sub(now_ms);
    if diff_ms <= 0 {
        return Some(MIN_DELAY_SECS);
    }
    // Round up so that retrying at now + delay is never before the date asked for.
    let secs = (diff_ms as u64).div_ceil(1000);
    Some(clamp_secs(secs))
}

fn clamp_secs(secs: u64) -> u32 {
    secs.clamp(u64::from(MIN_DELAY_SECS), u64::from(MAX_DELAY_SECS)) as u32
}

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const LONG_DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// Parses an HTTP-date into epoch milliseconds. Accepts the preferred IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`) and the obsolete RFC 850
/// (`Sunday, 06-Nov-94 08:49:37 GMT`, two-digit years 70–99 are 19xx, 00–69 are 20xx) and
/// asctime (`Sun Nov  6 08:49:37 1994`) forms. The weekday name must be a real one but is
/// not checked against the date. `None` for anything else.
pub fn parse_http_date(value: &str) -> Option<i64> {
    let tokens: Vec<&str> = value.split([' ', ',']).filter(|t| !t.is_empty()).collect();
    let (year, month, day, time) = match tokens.as_slice() {
        [wd, d, mon, y, t, "GMT"] if DAYS.contains(wd) && y.len() == 4 => {
            (num(y)?, month_of(mon)?, two_digits(d)?, *t)
        }
        [wd, dmy, t, "GMT"] if LONG_DAYS.contains(wd) => {
            let mut parts = dmy.split('-');
            let (d, mon, yy) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() || yy.len() != 2 {
                return None;
            }
            let yy = num(yy)?;
            let year = if yy >= 70 { 1900 + yy } else { 2000 + yy };
            (year, month_of(mon)?, two_digits(d)?, *t)
        }
        [wd, mon, d, t, y] if DAYS.contains(wd) && y.len() == 4 && (1..=2).contains(&d.len()) => {
            (num(y)?, month_of(mon)?, num(d)?, *t)
        }
        _ => return None,
    };
    let mut hms = time.split(':');
    let (h, m, s) = (two_digits(hms.next()?)?, two_digits(hms.next()?)?, two_digits(hms.next()?)?);
    if hms.next().is_some() || h > 23 || m > 59 || s > 60 {
        return None;
    }
    if day < 1 || day > super::time::days_in_month(year, month) {
        return None;
    }
    let days = super::time::days_from_civil(year, month, day);
    Some(((days * 24 + h) * 60 + m) * 60_000 + s * 1000)
}

fn num(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn two_digits(s: &str) -> Option<i64> {
    if s.len() == 2 {
        num(s)
    } else {
        None
    }
}

fn month_of(s: &str) -> Option<i64> {
    MONTHS.iter().position(|m| *m == s).map(|i| i as i64 + 1)
}

/// Why an order is dead-lettered; the `dead_letters.cause` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterCause {
    /// The warehouse refused it with a permanent status.
    Refused,
    /// Every scheduled attempt failed transiently.
    RetriesExhausted,
    /// The warehouse refused the cancel request (other than "already shipped").
    CancelRefused,
}

impl DeadLetterCause {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterCause::Refused => "refused",
            DeadLetterCause::RetriesExhausted => "retries_exhausted",
            DeadLetterCause::CancelRefused => "cancel_refused",
        }
    }
}

/// What the queue consumer does after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Accepted downstream: acknowledge; the order becomes `submitted`.
    Done,
    /// Acknowledge and re-enqueue the message with `attempt = next_attempt`, delivered
    /// after `delay_secs` (always within `[MIN_DELAY_SECS, MAX_DELAY_SECS]`).
    RetryAfter { delay_secs: u32, next_attempt: u32 },
    /// Write a `dead_letters` row (keeping the response), move the order to
    /// `hold/fulfilment`, audit it.
    DeadLetter { cause: DeadLetterCause },
    /// Move the order to `hold/inventory`.
    HoldInventory,
    /// The cancel request came too late: the order goes to `hold/fulfilment`.
    HoldShipped,
}

impl Step {
    /// The exception reason the order enters, for the steps that put it in `hold`.
    pub fn hold_reason(self) -> Option<Reason> {
        match self {
            Step::DeadLetter { .. } | Step::HoldShipped => Some(Reason::Fulfilment),
            Step::HoldInventory => Some(Reason::Inventory),
            Step::Done | Step::RetryAfter { .. } => None,
        }
    }
}

/// The delay the schedule assigns after failed attempt `attempt` (1-based), before
/// jitter; `None` when that attempt was the last.
pub fn scheduled_delay(attempt: u32) -> Option<u32> {
    let idx = attempt.max(1) as usize - 1;
    SCHEDULE_SECS.get(idx).copied()
}

/// `base_secs` scaled by a factor in `[1 - JITTER, 1 + JITTER]` chosen by `random`
/// (a draw in `[0, 1)`: 0 gives the low end, values near 1 the high end), rounded to whole
/// seconds and clamped to `[MIN_DELAY_SECS, MAX_DELAY_SECS]`. Out-of-range draws are
/// clamped into `[0, 1]`; NaN counts as 0.5 (no jitter).
pub fn jittered(base_secs: u32, random: f64) -> u32 {
    let r = unit(random);
    let factor = 1.0 - JITTER + 2.0 * JITTER * r;
    clamp_f64(f64::from(base_secs) * factor)
}

fn unit(random: f64) -> f64 {
    if random.is_nan() {
        0.5
    } else {
        random.clamp(0.0, 1.0)
    }
}

fn clamp_f64(secs: f64) -> u32 {
    secs.round().clamp(f64::from(MIN_DELAY_SECS), f64::from(MAX_DELAY_SECS)) as u32
}

/// Decides what follows attempt `attempt` (1-based count of attempts made, including the
/// one that produced `class`; 0 is read as 1), given one random draw in `[0, 1)`.
///
/// - `Success` → `Done`; `OutOfStock` → `HoldInventory`; `Permanent` →
///   `DeadLetter { Refused }` at once.
/// - `Transient` after attempt [`MAX_ATTEMPTS`] (or later) → `DeadLetter { RetriesExhausted }`.
/// - Otherwise `RetryAfter { next_attempt: attempt + 1, delay_secs }` where `delay_secs`
///   is the scheduled delay with ±[`JITTER`] (see [`jittered`]). A `Retry-After` is a
///   floor: when it asks for longer than that, the delay is the `Retry-After` plus up to
///   +`JITTER` of it (so messages refused together do not all come back in the same
///   second), never less than what was asked. Every delay is within
///   `[MIN_DELAY_SECS, MAX_DELAY_SECS]`; a `Retry-After` beyond 12 h is cut to 12 h.
pub fn next_step(attempt: u32, class: Class, random: f64) -> Step {
    let attempt = attempt.max(1);
    match class {
        Class::Success => Step::Done,
        Class::OutOfStock => Step::HoldInventory,
        Class::AlreadyShipped => Step::HoldShipped,
        Class::Permanent => Step::DeadLetter { cause: DeadLetterCause::Refused },
        Class::Transient { retry_after_secs } => {
            let Some(base) = scheduled_delay(attempt).filter(|_| attempt < MAX_ATTEMPTS) else {
                return Step::DeadLetter { cause: DeadLetterCause::RetriesExhausted };
            };
            let scheduled = jittered(base, random);
            let delay_secs = match retry_after_secs.map(|ra| ra.min(MAX_DELAY_SECS)) {
                // The factor is at least 1, so the result is never below `ra`.
                Some(ra) if ra > scheduled => clamp_f64(f64::from(ra) * (1.0 + JITTER * unit(random))),
                _ => scheduled,
            };
            Step::RetryAfter { delay_secs, next_attempt: attempt + 1 }
        }
    }
}

/// The delay to re-enqueue with: the step's delay times `scale` (1 in production; local test
/// stacks shrink the schedule), but never less than a `Retry-After` the warehouse asked for,
/// which is not scaled. Within `[MIN_DELAY_SECS, MAX_DELAY_SECS]`.
pub fn scaled_delay(delay_secs: u32, class: Class, scale: f64) -> u32 {
    let scale = if scale.is_finite() && scale > 0.0 && scale <= 1.0 { scale } else { 1.0 };
    let scaled = clamp_f64(f64::from(delay_secs) * scale);
    let asked = match class {
        Class::Transient { retry_after_secs: Some(ra) } => ra.min(MAX_DELAY_SECS),
        _ => 0,
    };
    scaled.max(asked)
}

/// The start of a response body as text, for [`Outcome::Status::body_snippet`]: invalid
/// UTF-8 is replaced, and the text is cut at a character boundary to at most
/// [`BODY_SNIPPET_MAX`] bytes.
pub fn snippet(body: &[u8]) -> String {
    let head = &body[..body.len().min(BODY_SNIPPET_MAX)];
    let mut s = String::from_utf8_lossy(head).into_owned();
    if s.len() > BODY_SNIPPET_MAX {
        let mut cut = BODY_SNIPPET_MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-27T10:00:00Z, a Friday.
    const NOW: i64 = 1_795_773_600_000;

    fn status(code: u16, body: &str) -> Outcome {
        Outcome::Status { code, retry_after: None, body_snippet: body.into() }
    }

    fn with_retry_after(code: u16, ra: &str) -> Outcome {
        Outcome::Status { code, retry_after: Some(ra.into()), body_snippet: String::new() }
    }

    #[test]
    fn cancel_answers_and_scaled_delays() {
        let st =
            |code: u16, body: &str| Outcome::Status { code, retry_after: None, body_snippet: body.into() };
        assert_eq!(classify_cancel(&st(409, r#"{"error":"already_shipped"}"#), 0), Class::AlreadyShipped);
        assert_eq!(classify_cancel(&st(409, r#"{"error":"out_of_stock"}"#), 0), Class::Permanent);
        assert_eq!(classify_cancel(&st(200, ""), 0), Class::Success);
        assert_eq!(classify_cancel(&st(503, ""), 0), Class::Transient { retry_after_secs: None });
        assert_eq!(next_step(1, Class::AlreadyShipped, 0.5), Step::HoldShipped);
        assert_eq!(st(503, "Ada Lovelace").code(), "http_503");
        assert_eq!(Outcome::Timeout.code(), "timeout");
        // Scaled schedule, but a Retry-After is honoured as asked.
        assert_eq!(scaled_delay(600, Class::Transient { retry_after_secs: None }, 0.01), 6);
        assert_eq!(scaled_delay(600, Class::Transient { retry_after_secs: Some(30) }, 0.01), 30);
        assert_eq!(scaled_delay(10, Class::Transient { retry_after_secs: None }, 0.0001), MIN_DELAY_SECS);
        assert_eq!(scaled_delay(10, Class::Transient { retry_after_secs: None }, f64::NAN), 10);
        assert_eq!(scaled_delay(10, Class::Transient { retry_after_secs: None }, 7.0), 10);
    }

    #[test]
    fn now_constant_is_what_it_says() {
        assert_eq!(parse_http_date("Fri, 27 Nov 2026 10:00:00 GMT"), Some(NOW));
    }

    #[test]
    fn schedule_bounds() {
        assert_eq!(SCHEDULE_SECS, &[10, 60, 300, 1800, 7200, 21600, 43200]);
        assert!(SCHEDULE_SECS.iter().all(|&d| (MIN_DELAY_SECS..=MAX_DELAY_SECS).contains(&d)));
        assert!(SCHEDULE_SECS.windows(2).all(|w| w[0] <= w[1]), "delays never shrink");
        assert_eq!(MAX_ATTEMPTS, 8);
        assert_eq!(MAX_DELAY_SECS, 12 * 3600);
        assert_eq!(scheduled_delay(0), Some(10));
        assert_eq!(scheduled_delay(1), Some(10));
        assert_eq!(scheduled_delay(7), Some(43200));
        assert_eq!(scheduled_delay(8), None);
    }

    #[test]
    fn walks_the_whole_schedule_then_dead_letters() {
        let t = Class::Transient { retry_after_secs: None };
        let mut attempt = 1;
        let mut delays = Vec::new();
        loop {
            match next_step(attempt, t, 0.5) {
                Step::RetryAfter { delay_secs, next_attempt } => {
                    assert_eq!(next_attempt, attempt + 1);
                    delays.push(delay_secs);
                    attempt = next_attempt;
                }
                Step::DeadLetter { cause } => {
                    assert_eq!(cause, DeadLetterCause::RetriesExhausted);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(attempt, MAX_ATTEMPTS);
        // random = 0.5 is the centre of the jitter band: exactly the schedule.
        assert_eq!(delays, SCHEDULE_SECS);
        assert_eq!(
            next_step(MAX_ATTEMPTS + 5, t, 0.5),
            Step::DeadLetter { cause: DeadLetterCause::RetriesExhausted }
        );
        assert_eq!(
            next_step(0, t, 0.5),
            Step::RetryAfter { delay_secs: 10, next_attempt: 2 },
            "attempt 0 is read as the first"
        );
    }

    #[test]
    fn class_boundaries() {
        let transient = Class::Transient { retry_after_secs: None };
        let cases: &[(u16, Class)] = &[
            (100, Class::Permanent),
            (199, Class::Permanent),
            (200, Class::Success),
            (201, Class::Success),
            (204, Class::Success),
            (299, Class::Success),
            (300, Class::Permanent),
            (301, Class::Permanent),
            (399, Class::Permanent),
            (400, Class::Permanent),
            (401, Class::Permanent),
            (404, Class::Permanent),
            (407, Class::Permanent),
            (408, transient),
            (409, Class::Permanent),
            (410, Class::Permanent),
            (422, Class::Permanent),
            (424, Class::Permanent),
            (425, transient),
            (426, Class::Permanent),
            (428, Class::Permanent),
            (429, transient),
            (430, Class::Permanent),
            (499, Class::Permanent),
            (500, transient),
            (502, transient),
            (503, transient),
            (504, transient),
            (599, transient),
            (0, Class::Permanent),
            (99, Class::Permanent),
            (600, Class::Permanent),
        ];
        for (code, want) in cases {
            assert_eq!(classify(&status(*code, ""), NOW), *want, "HTTP {code}");
        }
        assert_eq!(classify(&Outcome::Timeout, NOW), transient);
        assert_eq!(classify(&Outcome::Network("connection reset".into()), NOW), transient);
    }

    #[test]
    fn conflict_variants() {
        for body in [
            r#"{"error":"out_of_stock"}"#,
            r#"{"error":"OUT_OF_STOCK","sku":"A-1"}"#,
            r#"{ "error" : "out_of_stock" }"#,
            "SKU A-1 is out of stock",
            "Out-Of-Stock",
            "Insufficient stock for line 3",
        ] {
            assert_eq!(classify(&status(409, body), NOW), Class::OutOfStock, "{body}");
        }
        for body in ["", r#"{"error":"duplicate"}"#, "already exists", "stock level unknown", "instock"] {
            assert_eq!(classify(&status(409, body), NOW), Class::Permanent, "{body}");
        }
        // The stock wording only matters on a 409.
        assert_eq!(classify(&status(422, r#"{"error":"out_of_stock"}"#), NOW), Class::Permanent);
        assert_eq!(classify(&status(503, "out of stock"), NOW), Class::Transient { retry_after_secs: None });
        assert_eq!(classify(&status(200, "out of stock"), NOW), Class::Success);
    }

    #[test]
    fn steps_per_class() {
        assert_eq!(next_step(1, Class::Success, 0.3), Step::Done);
        assert_eq!(next_step(3, Class::OutOfStock, 0.3), Step::HoldInventory);
        assert_eq!(next_step(3, Class::OutOfStock, 0.3).hold_reason(), Some(Reason::Inventory));
        let refused = next_step(1, Class::Permanent, 0.3);
        assert_eq!(refused, Step::DeadLetter { cause: DeadLetterCause::Refused });
        assert_eq!(refused.hold_reason(), Some(Reason::Fulfilment));
        assert_eq!(DeadLetterCause::Refused.as_str(), "refused");
        assert_eq!(DeadLetterCause::RetriesExhausted.as_str(), "retries_exhausted");
        assert_eq!(Step::Done.hold_reason(), None);
    }

    #[test]
    fn jitter_bounds_over_many_draws() {
        // A deterministic sweep of [0, 1) plus the edges.
        let mut draws: Vec<f64> = (0..10_000).map(|i| i as f64 / 10_000.0).collect();
        draws.extend([0.0, 0.999_999_999, 1.0, -3.0, 7.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY]);
        for (i, &base) in SCHEDULE_SECS.iter().enumerate() {
            let lo = (f64::from(base) * 0.8).round() as u32;
            let hi = ((f64::from(base) * 1.2).round() as u32).min(MAX_DELAY_SECS);
            let (mut seen_lo, mut seen_hi) = (u32::MAX, 0);
            for &r in &draws {
                let Step::RetryAfter { delay_secs, .. } =
                    next_step(i as u32 + 1, Class::Transient { retry_after_secs: None }, r)
                else {
                    panic!("attempt {} must retry", i + 1);
                };
                assert!((lo..=hi).contains(&delay_secs), "base {base} r {r} gave {delay_secs}");
                assert!((MIN_DELAY_SECS..=MAX_DELAY_SECS).contains(&delay_secs));
                seen_lo = seen_lo.min(delay_secs);
                seen_hi = seen_hi.max(delay_secs);
            }
            assert_eq!(seen_lo, lo, "low end reached for {base}");
            assert_eq!(seen_hi, hi, "high end reached for {base}");
        }
        assert_eq!(jittered(10, 0.0), 8);
        assert_eq!(jittered(10, 0.5), 10);
        assert_eq!(jittered(43_200, 0.99), 43_200, "never above the queue's maximum");
        assert_eq!(jittered(43_200, 0.0), 34_560);
        assert_eq!(jittered(1, 0.0), 1, "never below one second");
        assert_eq!(jittered(0, 0.5), 1);
    }

    #[test]
    fn retry_after_delta_seconds() {
        assert_eq!(parse_retry_after("120", NOW), Some(120));
        assert_eq!(parse_retry_after(" 30 ", NOW), Some(30));
        assert_eq!(parse_retry_after("0", NOW), Some(1), "clamped up to one second");
        assert_eq!(parse_retry_after("43200", NOW), Some(43_200));
        assert_eq!(parse_retry_after("43201", NOW), Some(43_200), "clamped to 12 h");
        assert_eq!(parse_retry_after("99999999999999999999999", NOW), Some(43_200));
        for bad in ["", " ", "-5", "1.5", "soon", "12s", "+3"] {
            assert_eq!(parse_retry_after(bad, NOW), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_http_date_uses_injected_time() {
        assert_eq!(parse_retry_after("Fri, 27 Nov 2026 10:02:00 GMT", NOW), Some(120));
        // The same header read one minute later asks for one minute less.
        assert_eq!(parse_retry_after("Fri, 27 Nov 2026 10:02:00 GMT", NOW + 60_000), Some(60));
        // Sub-second remainders round up: never retry before the date.
        assert_eq!(parse_retry_after("Fri, 27 Nov 2026 10:02:00 GMT", NOW + 500), Some(120));
        assert_eq!(parse_retry_after("Fri, 27 Nov 2026 09:00:00 GMT", NOW), Some(1), "past date");
        assert_eq!(parse_retry_after("Fri, 27 Nov 2026 10:00:00 GMT", NOW), Some(1));
        assert_eq!(parse_retry_after("Sat, 28 Nov 2026 10:00:00 GMT", NOW), Some(43_200), "24 h → 12 h");
        assert_eq!(parse_retry_after("Fri, 27 Nov 2026 22:00:00 GMT", NOW), Some(43_200));
        assert_eq!(parse_retry_after("Fri, 27 Nov 2026 21:59:59 GMT", NOW), Some(43_199));
        // Obsolete forms.
        assert_eq!(parse_retry_after("Friday, 27-Nov-26 10:00:30 GMT", NOW), Some(30));
        assert_eq!(parse_retry_after("Fri Nov 27 10:00:30 2026", NOW), Some(30));
        for bad in [
            "Fri, 27 Nov 2026 10:00:30 UTC",
            "Fri, 27 Nov 2026 10:00:30",
            "Fri, 31 Nov 2026 10:00:30 GMT",
            "Fri, 27 Foo 2026 10:00:30 GMT",
            "Xyz, 27 Nov 2026 10:00:30 GMT",
            "Fri, 27 Nov 2026 24:00:00 GMT",
            "Fri, 27 Nov 26 10:00:30 GMT",
            "2026-11-27T10:00:30Z",
        ] {
            assert_eq!(parse_retry_after(bad, NOW), None, "{bad:?}");
        }
    }

    #[test]
    fn http_dates() {
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777_000));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(784_111_777_000));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(784_111_777_000));
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Tue, 29 Feb 2028 00:00:00 GMT"), Some(1_835_395_200_000));
        assert_eq!(parse_http_date("Thu, 29 Feb 2029 00:00:00 GMT"), None, "not a leap year");
        assert_eq!(parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT"), Some(951_782_400_000));
        assert_eq!(parse_http_date("Thu, 29 Feb 1900 00:00:00 GMT"), None);
    }

    #[test]
    fn retry_after_classified_and_honoured() {
        let class = classify(&with_retry_after(429, "120"), NOW);
        assert_eq!(class, Class::Transient { retry_after_secs: Some(120) });
        // Attempt 1 is scheduled for ~10 s; the server asked for 120 s: never sooner.
        for i in 0..1000 {
            let r = i as f64 / 1000.0;
            let Step::RetryAfter { delay_secs, next_attempt } = next_step(1, class, r) else { panic!() };
            assert_eq!(next_attempt, 2);
            assert!((120..=144).contains(&delay_secs), "r {r}: {delay_secs}");
        }
        // A shorter Retry-After than the schedule leaves the schedule in charge.
        let short = Class::Transient { retry_after_secs: Some(5) };
        assert_eq!(next_step(3, short, 0.5), Step::RetryAfter { delay_secs: 300, next_attempt: 4 });
        // Retry-After at the cap stays at the cap, jitter or not.
        let capped = classify(&with_retry_after(503, "Sat, 28 Nov 2026 10:00:00 GMT"), NOW);
        assert_eq!(capped, Class::Transient { retry_after_secs: Some(43_200) });
        for r in [0.0, 0.5, 0.99] {
            assert_eq!(next_step(2, capped, r), Step::RetryAfter { delay_secs: 43_200, next_attempt: 3 });
        }
        // Retry-After does not extend the number of attempts.
        assert_eq!(
            next_step(MAX_ATTEMPTS, class, 0.5),
            Step::DeadLetter { cause: DeadLetterCause::RetriesExhausted }
        );
        // Unparseable headers are ignored, not fatal.
        assert_eq!(
            classify(&with_retry_after(503, "later"), NOW),
            Class::Transient { retry_after_secs: None }
        );
        // Retry-After on a permanent refusal changes nothing.
        assert_eq!(classify(&with_retry_after(400, "10"), NOW), Class::Permanent);
    }

    #[test]
    fn descriptions_and_snippets() {
        assert_eq!(status(409, r#"{"name":"Jon Snow"}"#).describe(), "HTTP 409", "no response text");
        assert_eq!(status(500, "").describe(), "HTTP 500");
        assert_eq!(Outcome::Timeout.describe(), "timeout");
        assert_eq!(Outcome::Network("reset".into()).describe(), "network: reset");
        assert_eq!(snippet(b"short"), "short");
        let long = "é".repeat(BODY_SNIPPET_MAX);
        let s = snippet(long.as_bytes());
        assert!(s.len() <= BODY_SNIPPET_MAX && s.chars().all(|c| c == 'é'));
        assert_eq!(s.len(), BODY_SNIPPET_MAX);
        let odd = format!("a{}", "é".repeat(BODY_SNIPPET_MAX));
        let s = snippet(odd.as_bytes());
        // The cut byte becomes U+FFFD (3 bytes), which is then cut again.
        assert_eq!(s.len(), BODY_SNIPPET_MAX - 1);
        assert_eq!(snippet(&[0xff, b'o', b'k']), "\u{fffd}ok");
    }
}
