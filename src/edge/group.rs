//! Group commit for the webhook path's write batch (the policy is `core::group`).
//!
//! Requests of one isolate meet here. Every wait is on a promise the waiting request made
//! itself, resolved by whichever request finishes first: the runtime runs the waiter's
//! continuation in the waiter's own request, so no request ever carries on inside another's
//! (which would end with it). Only the leader's request makes the D1 call. Each wait has a
//! timer of its own, so a request that is cancelled while it leads holds nobody up for long.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::{select, Either};
use wasm_bindgen::JsValue;
use worker::{js_sys, wasm_bindgen_futures::JsFuture, D1PreparedStatement, Delay};

use super::store::{Store, StoreError, StoreResult};
use crate::core::group::{self, After, Groups, Role};

/// A group being gathered: every member's statements in arrival order (the leader's first),
/// the members' answer resolvers, and the leader's wake-up.
struct Gathering {
    statements: js_sys::Array,
    members: Vec<js_sys::Function>,
    wake: Option<js_sys::Function>,
    since_ms: i64,
}

thread_local! {
    static GROUPS: RefCell<Groups> = RefCell::new(Groups::default());
    static GATHERING: RefCell<HashMap<u64, Gathering>> = RefCell::new(HashMap::new());
}

fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// A promise of this request's own, and its resolver.
fn own_promise() -> Option<(js_sys::Promise, js_sys::Function)> {
    let mut resolver = None;
    let promise = js_sys::Promise::new(&mut |resolve, _reject| resolver = Some(resolve));
    resolver.map(|r| (promise, r))
}

/// Writes one delivery's statements as one transaction, sharing the D1 call with other
/// deliveries of this isolate when a batch is already in flight. Same answers as
/// `Store::batch`: `Conflict` when one of these statements' guards refused them.
pub async fn write(store: &Store, statements: Vec<D1PreparedStatement>) -> StoreResult<()> {
    store.count(statements.len());
    let own: js_sys::Array = statements.iter().map(|st| JsValue::from(st.inner())).collect();
    let now = now_ms();
    let role = GROUPS.with(|g| g.borrow_mut().arrive(now));
    match role {
        Role::Solo => {
            let result = store.batch_raw(&own).await.map(drop);
            finished(0);
            result
        }
        Role::Lead(id) => lead(store, id, own, now).await,
        Role::Join { id, wake } => join(store, id, wake, own).await,
    }
}

async fn lead(store: &Store, id: u64, own: js_sys::Array, now: i64) -> StoreResult<()> {
    let Some((woken, wake)) = own_promise() else {
        GROUPS.with(|g| g.borrow_mut().close(id, now));
        let result = store.batch_raw(&own).await.map(drop);
        finished(id);
        return result;
    };
    GATHERING.with(|g| {
        let mut g = g.borrow_mut();
        // Groups whose leader never came back (a cancelled request): their members have
        // long since written alone.
        g.retain(|_, e| now - e.since_ms < i64::from(group::JOIN_WAIT_MS) * 2);
        let statements = js_sys::Array::new();
        for st in own.iter() {
            statements.push(&st);
        }
        g.insert(id, Gathering { statements, members: Vec::new(), wake: Some(wake), since_ms: now });
    });
    let timer = Delay::from(Duration::from_millis(u64::from(group::LEAD_WAIT_MS)));
    if let Either::Left(_) = select(JsFuture::from(woken), timer).await {
        if GROUPS.with(|g| g.borrow().has_room(id)) {
            Delay::from(Duration::from_millis(u64::from(group::GATHER_MS))).await;
        }
    }
    GROUPS.with(|g| g.borrow_mut().close(id, now_ms()));
    let gathered = GATHERING.with(|g| g.borrow_mut().remove(&id));
    let (statements, members) = match gathered {
        Some(e) => (e.statements, e.members),
        None => (own.clone(), Vec::new()),
    };
    if !members.is_empty() && super::context::take_injected_leader_drop() {
        // A local test stack's stand-in for a request cancelled while it leads.
        return Err(StoreError::Unavailable("injected fault: the group's leader dropped out".into()));
    }
    if !members.is_empty() && super::context::take_injected_group_failure() {
        if let Ok(refused) = store.stmt(
            "INSERT INTO stock (sku, available, updated_ms, updated_by) VALUES ('injected-fault', -1, 0, 'fault')",
            &[],
        ) {
            statements.push(&JsValue::from(refused.inner()));
        }
    }
    let result = store.batch_raw(&statements).await.map(drop);
    finished(id);
    let deliveries = members.len() as u32 + 1;
    if result.is_ok() {
        store.shared_by(deliveries);
    }
    let written = JsValue::from_f64(if result.is_ok() { f64::from(deliveries) } else { 0.0 });
    for m in &members {
        let _ = m.call1(&JsValue::NULL, &written);
    }
    match result {
        Err(_) if !members.is_empty() => {
            // Someone's guard failed the shared batch: each writes alone, the leader too.
            store.count(own.length() as usize);
            store.batch_raw(&own).await.map(drop)
        }
        other => other,
    }
}

async fn join(store: &Store, id: u64, wake: bool, own: js_sys::Array) -> StoreResult<()> {
    let promise = own_promise();
    let joined = promise.and_then(|(answer, resolve)| {
        GATHERING.with(|g| {
            let mut g = g.borrow_mut();
            let e = g.get_mut(&id)?;
            for st in own.iter() {
                e.statements.push(&st);
            }
            e.members.push(resolve);
            if wake {
                if let Some(w) = e.wake.take() {
                    let _ = w.call0(&JsValue::NULL);
                }
            }
            Some(answer)
        })
    });
    let answer = match joined {
        Some(answer) => {
            let timer = Delay::from(Duration::from_millis(u64::from(group::JOIN_WAIT_MS)));
            match select(JsFuture::from(answer), timer).await {
                Either::Left((Ok(v), _)) => v.as_f64().map(|n| n as u32),
                _ => None,
            }
        }
        None => None,
    };
    match group::after(answer) {
        After::Written(deliveries) => {
            store.shared_by(deliveries);
            Ok(())
        }
        After::Alone => {
            // Counted again if it already waited on a shared call that failed.
            if answer.is_some() {
                store.count(own.length() as usize);
            }
            store.batch_raw(&own).await.map(drop)
        }
    }
}

/// Group `id`'s batch (0: a solo one) is done: wake the leader of the group gathering behind it.
fn finished(id: u64) {
    let next = GROUPS.with(|g| g.borrow_mut().finish(id));
    if let Some(next) = next {
        let wake = GATHERING.with(|g| g.borrow_mut().get_mut(&next).and_then(|e| e.wake.take()));
        if let Some(w) = wake {
            let _ = w.call0(&JsValue::NULL);
        }
    }
}
