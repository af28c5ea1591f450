//! `/admin/...`: the operator API. Every call needs `Authorization: Bearer <token>` from
//! `ADMIN_TOKENS`; the token's name is the audit actor. Every change takes a `note`.

use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{js_sys, Env, Method, Request, Response};

use super::api::{
    answer, authenticate, body, error, json, json_text, now_ms, query_pairs, store_error, unavailable,
    ApiError, Operator,
};
use super::config;
use super::flags::Flags;
use super::gates;
use super::overrides;
use super::store::{js_json, AuditRow, ModeSource, Store};
use crate::core::query::{self, encode_cursor, Built, QueryError};
use crate::core::types::Mode;

pub async fn handle(mut req: Request, env: &Env, segments: &[&str]) -> Response {
    let op = match authenticate(&req, env) {
        Ok(op) => op,
        Err(refused) => return refused,
    };
    let Ok(db) = env.d1(config::DB) else { return unavailable(5) };
    let store = Store::new(db);
    let method = req.method();
    match (method, segments) {
        (Method::Put, ["stock"]) => answer(put_stock(&mut req, &store, &op).await),
        (Method::Get, ["stock"]) => match store.stock_all().await {
            Ok(text) => json_text(200, text),
            Err(e) => store_error(e),
        },
        (Method::Put, ["segments", segment, "mode"]) => {
            let Ok(kv) = env.kv(config::FLAGS) else { return unavailable(5) };
            answer(put_mode(&mut req, &store, &Flags::new(kv), &op, segment).await)
        }
        (Method::Get, ["audit"]) => list(&req, &store, query::audit, true).await,
        (Method::Get, ["segments"]) => {
            let Ok(kv) = env.kv(config::FLAGS) else { return unavailable(5) };
            answer(lanes(&store, &Flags::new(kv)).await)
        }
        (Method::Get, ["exceptions", "summary"]) => match store.exception_summary().await {
            Ok(groups) => {
                let total: i64 = groups.iter().map(|g| g.count).sum();
                json(200, &serde_json::json!({ "total": total, "groups": groups }))
            }
            Err(e) => store_error(e),
        },
        (Method::Get, ["exceptions"]) => list(&req, &store, |p| query::exceptions(p, now_ms()), false).await,
        (Method::Get, ["dead-letters"]) => list(&req, &store, query::dead_letters, false).await,
        (Method::Get, ["orders", shop, order_id]) => match store.order_view(shop, order_id).await {
            Ok(Some(v)) => json_text(200, v),
            Ok(None) => error(404, "order_not_found", "no such order"),
            Err(e) => store_error(e),
        },
        (Method::Get, ["privacy", "requests"]) => match store.privacy_requests(500).await {
            Ok(rows) => json(
                200,
                &serde_json::json!({ "requests": rows.iter().map(|r| r.to_json()).collect::<Vec<_>>() }),
            ),
            Err(e) => store_error(e),
        },
        (Method::Get, ["privacy", "requests", id]) => answer(privacy_request(&store, &op, id).await),
        (Method::Post, ["orders", shop, order_id, action]) => {
            overrides::order_action(req, env, &op, shop, order_id, action).await
        }
        (Method::Post, ["dead-letters", "redrive"]) => overrides::redrive_bulk(req, env, &op).await,
        (Method::Post, ["dead-letters", id, "redrive"]) => overrides::redrive_one(req, env, &op, id).await,
        (Method::Put, ["segments", segment, "baseline"]) => {
            gates::put_baseline(&mut req, &store, &op, segment).await
        }
        (Method::Post, ["segments", segment, "baseline", "capture"]) => {
            gates::capture_baseline(&mut req, &store, &op, segment).await
        }
        (Method::Get, ["segments", segment, "kpis"]) => gates::get_kpis(&req, &store, segment).await,
        (Method::Get, ["segments", segment, "report"]) => gates::get_report(&req, env, &store, segment).await,
        (Method::Post, ["gates", "evaluate"]) => gates::post_evaluate(&mut req, env, &store, &op).await,
        (Method::Get, ["alerts"]) => super::alerts::get_alerts(&store).await,
        (Method::Post, ["alerts", "test"]) => super::alerts::post_test(&mut req, env, &op).await,
        (_, ["segments", _, "baseline"])
        | (_, ["segments", _, "baseline", "capture"])
        | (_, ["segments", _, "kpis"])
        | (_, ["segments", _, "report"])
        | (_, ["gates", "evaluate"])
        | (_, ["alerts"])
        | (_, ["alerts", "test"]) => {
            error(405, "method_not_allowed", "this endpoint does not accept that method")
        }
        (_, ["stock"])
        | (_, ["segments"])
        | (_, ["exceptions", "summary"])
        | (_, ["segments", _, "mode"])
        | (_, ["audit"])
        | (_, ["exceptions"])
        | (_, ["dead-letters"])
        | (_, ["privacy", "requests"])
        | (_, ["privacy", "requests", _]) => {
            error(405, "method_not_allowed", "this endpoint does not accept that method")
        }
        _ => error(404, "not_found", "no such admin endpoint"),
    }
}

#[derive(Deserialize)]
struct StockLine {
    sku: String,
    available: i64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StockBody {
    List(Vec<StockLine>),
    Wrapped { stock: Vec<StockLine>, note: Option<String> },
}

/// `PUT /admin/stock`: `[{"sku": "...", "available": N}, ...]` (or `{"stock": [...], "note": "..."}`)
/// sets what may be claimed per SKU, in one transaction.
async fn put_stock(req: &mut Request, store: &Store, op: &Operator) -> Result<Response, ApiError> {
    let (lines, note) = match body::<StockBody>(req).await? {
        StockBody::List(l) => (l, None),
        StockBody::Wrapped { stock, note } => (stock, note),
    };
    if lines.is_empty() || lines.len() > 1000 {
        return Err(ApiError::new(400, "invalid_stock", "send between 1 and 1000 stock lines"));
    }
    if let Some(bad) = lines.iter().find(|l| l.sku.trim().is_empty() || l.available < 0) {
        return Err(ApiError::new(
            400,
            "invalid_stock",
            format!("sku {:?}: sku must be non-empty and available >= 0", bad.sku),
        ));
    }
    let rows: Vec<(String, i64)> =
        lines.into_iter().map(|l| (l.sku.trim().to_string(), l.available)).collect();
    store.put_stock(&rows, now_ms(), &op.actor, note.as_deref()).await?;
    Ok(json(200, &serde_json::json!({ "updated": rows.len() })))
}

#[derive(Deserialize)]
struct ModeBody {
    mode: String,
    note: Option<String>,
}

/// `PUT /admin/segments/{segment}/mode` `{"mode": "auto|shadow|manual", "note": "..."}`.
async fn put_mode(
    req: &mut Request,
    store: &Store,
    flags: &Flags,
    op: &Operator,
    segment: &str,
) -> Result<Response, ApiError> {
    let b = body::<ModeBody>(req).await?;
    let mode = Mode::parse(b.mode.trim())
        .ok_or_else(|| ApiError::new(400, "invalid_mode", "mode must be auto, shadow or manual"))?;
    let note = b
        .note
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::new(400, "note_required", "every change needs a note"))?;
    if !super::context::matrix().is_ok_and(|m| m.lane(segment).is_some()) {
        return Err(ApiError::new(404, "unknown_segment", "no such segment in the route matrix"));
    }
    if let Err(e) = flags.set_mode(segment, mode).await {
        worker::console_error!("KV put failed: {e}");
        return Err(ApiError::Answered(unavailable(5)));
    }
    let now = now_ms();
    store.batch(store.note_mode(segment, mode, ModeSource::Set, now, &op.actor, Some(&note))?).await?;
    super::memo::noted(segment, mode, now);
    Ok(json(200, &serde_json::json!({ "segment": segment, "mode": mode })))
}

/// `GET /admin/segments`: every lane of the route matrix with the mode routing uses now (KV,
/// else the matrix default; a KV value that is not a mode reads as `manual`) and its release.
async fn lanes(store: &Store, flags: &Flags) -> Result<Response, ApiError> {
    let m = super::context::matrix().map_err(|e| {
        worker::console_error!("route matrix invalid: {e}");
        ApiError::new(500, "matrix_invalid", "the route matrix could not be loaded")
    })?;
    let mut lanes = Vec::with_capacity(m.lanes.len());
    for lane in &m.lanes {
        let flag = flags.mode(&lane.name).await.map_err(|e| {
            worker::console_error!("KV read failed: {e}");
            ApiError::Answered(unavailable(5))
        })?;
        let (mode, source) = match flag {
            super::flags::Flag::Set(m) => (m, "kv"),
            super::flags::Flag::Unset => (lane.default_mode, "default"),
            super::flags::Flag::Invalid(_) => (Mode::Manual, "invalid"),
        };
        let row = store.segment_row(&lane.name).await?;
        lanes.push(serde_json::json!({
            "segment": lane.name,
            "mode": mode,
            "mode_source": source,
            "default_mode": lane.default_mode,
            "backlog_threshold": lane.backlog_threshold,
            "released_at_ms": row.and_then(|r| r.released_ms),
        }));
    }
    Ok(json(200, &serde_json::json!({ "segments": lanes })))
}

/// `GET /admin/privacy/requests/{id}`: the request and everything orderlane holds for it.
/// Each look is audited (`privacy_request_viewed`, by the token's name).
async fn privacy_request(store: &Store, op: &Operator, id: &str) -> Result<Response, ApiError> {
    let Some(r) = id.parse::<i64>().ok() else {
        return Err(ApiError::new(404, "privacy_request_not_found", "no such privacy request"));
    };
    let Some(row) = store.privacy_request(r).await? else {
        return Err(ApiError::new(404, "privacy_request_not_found", "no such privacy request"));
    };
    let holdings = store.privacy_holdings(&row).await?;
    let detail = serde_json::json!({ "privacy_request": row.id });
    store
        .batch(vec![store.audit(&AuditRow {
            shop: Some(&row.shop),
            ..AuditRow::event(now_ms(), "privacy_request_viewed", &op.actor, &detail)
        })?])
        .await?;
    Ok(json(200, &serde_json::json!({ "request": row.to_json(), "holds": holdings })))
}

/// Runs a list query and answers `{"items": [...], "next_cursor": ...}`; with `explain=true`
/// (where allowed) answers SQLite's query plan instead, so operators can see which index
/// serves a filter.
async fn list(
    req: &Request,
    store: &Store,
    build: impl Fn(&[(String, String)]) -> Result<Built, QueryError>,
    explain: bool,
) -> Response {
    let pairs = query_pairs(req);
    let built = match build(&pairs) {
        Ok(b) => b,
        Err(QueryError(msg)) => return error(400, "invalid_filter", &msg),
    };
    if explain && pairs.iter().any(|(k, v)| k == "explain" && v == "true") {
        return match store.plan(&built).await {
            Ok(rows) => json(200, &serde_json::json!({ "sql": built.sql, "plan": rows })),
            Err(e) => store_error(e),
        };
    }
    match store.list(&built).await {
        Ok(rows) => {
            // One row past the page says there is another; the page ends at the row before it,
            // and the cursor is that row's (time, id).
            let limit = u32::try_from(built.limit).unwrap_or(u32::MAX);
            let page = if rows.length() > limit { rows.slice(0, limit) } else { rows.clone() };
            let next = if rows.length() > limit && limit > 0 {
                let last = page.get(limit - 1);
                let field = |k: &str| {
                    js_sys::Reflect::get(&last, &JsValue::from_str(k))
                        .ok()
                        .and_then(|v| v.as_f64())
                        .map(|v| v as i64)
                };
                field("at_ms").zip(field("id")).map(|(a, b)| encode_cursor(a, b))
            } else {
                None
            };
            let next =
                next.map(|c| serde_json::Value::String(c).to_string()).unwrap_or_else(|| "null".into());
            json_text(200, format!(r#"{{"items":{},"next_cursor":{next}}}"#, js_json(&page)))
        }
        Err(e) => store_error(e),
    }
}
