//! The decisions around an order's attempts that are not state transitions: whether a queue
//! message may claim the next attempt, which mode a lane is in at send time, and which
//! retry-schedule position an attempt is at. Pure; the edge passes in what it read.

use super::types::Mode;

/// How long KV takes, at most, to show a change everywhere (Cloudflare documents about 60 s).
pub const KV_PROPAGATION_MS: i64 = 60_000;

/// Once an attempt is claimed, its POST must start within this long, or it is not made: the
/// POST then ends (timeout) before `claim + POST_START_MS + timeout`, which is when another
/// consumer may take the next attempt. So two POSTs under one key never overlap.
pub const POST_START_MS: i64 = 5_000;

/// What the edge knows about the order's current attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptView {
    /// Attempts claimed so far in this submission (or cancel request).
    pub attempts: u32,
    /// The lease of the attempt in flight, if any (epoch ms).
    pub lease_until: Option<i64>,
    /// When the latest attempt was claimed, if it has not finished.
    pub unfinished_since_ms: Option<i64>,
}

/// What a queue message for attempt `n` may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Claim attempt `n` and send.
    Go,
    /// Attempt `n` was already claimed (a repeated or overtaken message): drop it.
    Stale,
    /// An attempt may still be in flight: look again in this many seconds.
    Busy { retry_in_secs: u32 },
}

/// Whether a message for attempt `attempt` may claim it at `now_ms`. Only the attempt after
/// the last claimed one can be claimed — or the last one again when it never finished (its
/// consumer died, and the runtime redelivers the message) — and only once no POST of an
/// earlier attempt can still be in flight: the lease has ended and an unfinished attempt
/// claimed before `now − (POST_START_MS + timeout_ms)` cannot be sending any more.
pub fn claim(view: &AttemptView, attempt: u32, now_ms: i64, timeout_ms: i64) -> Claim {
    let next = attempt == view.attempts.saturating_add(1);
    let again = attempt == view.attempts && attempt > 0 && view.unfinished_since_ms.is_some();
    if !next && !again {
        return Claim::Stale;
    }
    let mut busy_until = view.lease_until.filter(|u| *u > now_ms);
    if let Some(since) = view.unfinished_since_ms {
        let quiet = since.saturating_add(POST_START_MS).saturating_add(timeout_ms);
        if quiet > now_ms {
            busy_until = Some(busy_until.map_or(quiet, |u| u.max(quiet)));
        }
    }
    match busy_until {
        Some(until) => {
            let secs = (until.saturating_sub(now_ms) + 999) / 1000;
            Claim::Busy { retry_in_secs: secs.clamp(1, 300) as u32 }
        }
        None => Claim::Go,
    }
}

/// What KV holds for a lane's mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvMode {
    Unset,
    Set(Mode),
    /// Not a mode: read as `manual`, the safe side.
    Invalid,
}

/// The lane's mode when an order is about to be sent. KV is the operator's switch. D1's
/// `segments` row is the record of the last change: a change away from `auto` recorded less
/// than [`KV_PROPAGATION_MS`] ago wins over KV, which may still show the old value at this
/// location (a rollback takes effect at once, not a minute later).
pub fn send_mode(kv: &KvMode, lane_default: Mode, recorded: Option<(Mode, i64)>, now_ms: i64) -> Mode {
    if let Some((mode, since)) = recorded {
        if mode != Mode::Auto && now_ms.saturating_sub(since) < KV_PROPAGATION_MS {
            return mode;
        }
    }
    match kv {
        KvMode::Set(m) => *m,
        KvMode::Unset => lane_default,
        KvMode::Invalid => Mode::Manual,
    }
}

/// The retry-schedule position of absolute attempt `attempt` in a round that started after
/// `base` attempts (a re-drive after transient failures starts a new round, same key).
pub fn schedule_position(attempt: u32, base: u32) -> u32 {
    attempt.saturating_sub(base).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn view(attempts: u32, lease_until: Option<i64>, unfinished: Option<i64>) -> AttemptView {
        AttemptView { attempts, lease_until, unfinished_since_ms: unfinished }
    }

    #[test]
    fn only_the_next_attempt_is_claimed() {
        assert_eq!(claim(&view(0, None, None), 1, NOW, 10_000), Claim::Go);
        assert_eq!(claim(&view(8, None, None), 9, NOW, 10_000), Claim::Go, "a re-drive continues the count");
        assert_eq!(claim(&view(1, None, None), 1, NOW, 10_000), Claim::Stale, "a repeated message");
        assert_eq!(claim(&view(3, None, None), 2, NOW, 10_000), Claim::Stale);
        assert_eq!(claim(&view(1, None, None), 3, NOW, 10_000), Claim::Stale);
        // The same attempt again only when it never finished, and once it cannot be sending.
        assert_eq!(claim(&view(2, None, Some(NOW - 20_000)), 2, NOW, 10_000), Claim::Go);
        assert_eq!(
            claim(&view(2, None, Some(NOW - 1_000)), 2, NOW, 10_000),
            Claim::Busy { retry_in_secs: 14 }
        );
        assert_eq!(claim(&view(0, None, Some(NOW - 20_000)), 0, NOW, 10_000), Claim::Stale);
    }

    #[test]
    fn never_while_a_post_may_be_in_flight() {
        // A live lease.
        assert_eq!(
            claim(&view(1, Some(NOW + 4_500), None), 2, NOW, 10_000),
            Claim::Busy { retry_in_secs: 5 }
        );
        // The lease was cut short (or ran out) but the attempt started too recently to be over.
        let started = NOW - 3_000;
        assert_eq!(
            claim(&view(1, Some(0), Some(started)), 2, NOW, 10_000),
            Claim::Busy { retry_in_secs: 12 }
        );
        // Long enough ago: its POST has ended, whatever happened to its consumer.
        assert_eq!(claim(&view(1, Some(0), Some(NOW - 15_001)), 2, NOW, 10_000), Claim::Go);
        assert_eq!(claim(&view(1, None, Some(NOW - 15_000)), 2, NOW, 10_000), Claim::Go);
        // Waits are bounded.
        assert_eq!(claim(&view(1, Some(i64::MAX), None), 2, NOW, 10_000), Claim::Busy { retry_in_secs: 300 });
    }

    #[test]
    fn send_mode_prefers_a_recent_recorded_rollback() {
        let kv_auto = KvMode::Set(Mode::Auto);
        assert_eq!(send_mode(&kv_auto, Mode::Manual, None, NOW), Mode::Auto);
        assert_eq!(send_mode(&KvMode::Unset, Mode::Manual, None, NOW), Mode::Manual);
        assert_eq!(send_mode(&KvMode::Invalid, Mode::Auto, None, NOW), Mode::Manual);
        // Rolled back 10 s ago: KV may still say auto here.
        assert_eq!(send_mode(&kv_auto, Mode::Manual, Some((Mode::Manual, NOW - 10_000)), NOW), Mode::Manual);
        assert_eq!(send_mode(&kv_auto, Mode::Manual, Some((Mode::Shadow, NOW - 59_999)), NOW), Mode::Shadow);
        // After KV's propagation window, KV is the switch again (a release by a KV write).
        assert_eq!(send_mode(&kv_auto, Mode::Manual, Some((Mode::Manual, NOW - 60_000)), NOW), Mode::Auto);
        // A recorded release never overrides KV.
        assert_eq!(
            send_mode(&KvMode::Set(Mode::Manual), Mode::Manual, Some((Mode::Auto, NOW)), NOW),
            Mode::Manual
        );
    }

    #[test]
    fn schedule_positions() {
        assert_eq!(schedule_position(1, 0), 1);
        assert_eq!(schedule_position(9, 8), 1);
        assert_eq!(schedule_position(16, 8), 8);
        assert_eq!(schedule_position(0, 3), 1);
    }
}
