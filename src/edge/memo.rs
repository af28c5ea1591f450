//! What one isolate remembers between requests, to spare the webhook path round trips. Only
//! guesses and copies with a stated lifetime live here, never a source of truth:
//!
//! - **lane modes read from KV**, for [`MODE_CACHE_MS`] (10 s; var `MODE_CACHE_MS`). KV itself takes up to 60 s to show a
//!   change at every location, so this adds at most 10 s to a `wrangler kv key put`. A gate
//!   rollback (the cron, in this Worker) updates this isolate at once; a switch through the
//!   admin API is made by the ops Worker, and routing here sees it when its copy expires. Both
//!   are recorded in D1, which the fulfilment consumer checks at send time, so a rollback
//!   stops sending at once either way.
//! - **modes already recorded in D1** by routing, so an unchanged mode is written at most once
//!   per [`MODE_NOTE_MS`] per isolate instead of with every delivery.
//! - **stock last seen per SKU**: the guess a fresh order is decided on. The write carries a
//!   guard that fails the batch when the guess was wrong (see `store::Guess`).
//!
//! Workers isolates are single-threaded; these are thread-locals.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::core::types::Mode;

use super::flags::Flag;

/// How long a lane mode read from KV is reused by routing (var `MODE_CACHE_MS` overrides).
pub const MODE_CACHE_MS: i64 = 10_000;
/// How often routing re-records an unchanged lane mode in D1.
pub const MODE_NOTE_MS: i64 = crate::core::lifecycle::KV_PROPAGATION_MS;
/// Bound on remembered SKUs (a guess for each; dropped wholesale when full).
const MAX_SKUS: usize = 20_000;

thread_local! {
    static MODES: RefCell<HashMap<String, (Flag, i64)>> = RefCell::new(HashMap::new());
    static NOTED: RefCell<HashMap<String, (Mode, i64)>> = RefCell::new(HashMap::new());
    static STOCK: RefCell<HashMap<String, Option<i64>>> = RefCell::new(HashMap::new());
}

/// The lane's KV flag if it was read less than `lifetime_ms` ago.
pub fn mode(lane: &str, now_ms: i64, lifetime_ms: i64) -> Option<Flag> {
    MODES.with(|m| {
        m.borrow()
            .get(lane)
            .filter(|(_, at)| now_ms - *at < lifetime_ms && now_ms >= *at)
            .map(|(f, _)| f.clone())
    })
}

pub fn remember_mode(lane: &str, flag: Flag, now_ms: i64) {
    MODES.with(|m| m.borrow_mut().insert(lane.to_string(), (flag, now_ms)));
}

/// True when this isolate recorded `mode` for `lane` less than [`MODE_NOTE_MS`] ago.
pub fn noted_recently(lane: &str, mode: Mode, now_ms: i64) -> bool {
    NOTED.with(|n| {
        n.borrow().get(lane).is_some_and(|(m, at)| *m == mode && now_ms - *at < MODE_NOTE_MS && now_ms >= *at)
    })
}

pub fn noted(lane: &str, mode: Mode, now_ms: i64) {
    NOTED.with(|n| n.borrow_mut().insert(lane.to_string(), (mode, now_ms)));
}

/// What this isolate last saw for `sku`: `Some(None)` means no stock row; `None` never read.
pub fn stock(sku: &str) -> Option<Option<i64>> {
    STOCK.with(|s| s.borrow().get(sku).copied())
}

/// Remembers a read of `asked` SKUs: those in `found` have rows, the others have none.
pub fn saw_stock<'a>(
    asked: impl IntoIterator<Item = &'a String>,
    found: &std::collections::BTreeMap<String, i64>,
) {
    STOCK.with(|s| {
        let mut s = s.borrow_mut();
        for sku in asked {
            if s.len() >= MAX_SKUS && !s.contains_key(sku) {
                s.clear();
            }
            s.insert(sku.clone(), found.get(sku).copied());
        }
    })
}
