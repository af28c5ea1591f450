//! Request routing and the JSON error convention: every error is
//! `{"error": "<stable code>", "detail": "<human text>"}` and never echoes internals.

use serde::Serialize;
use worker::{Env, Method, Request, Response};

use super::webhooks;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub async fn route(req: Request, env: &Env) -> Response {
    let path = req.path();
    match (path.as_str(), req.method()) {
        ("/healthz", Method::Get) => json(
            200,
            &serde_json::json!({
                "ok": super::context::matrix().is_ok(),
                "version": VERSION,
                "rules_version": crate::core::rules::RULES_VERSION,
            }),
        ),
        ("/webhooks/shopify", Method::Post) => webhooks::handle(req, env).await,
        (p, _) if p.starts_with("/admin/") => {
            let segments: Vec<&str> =
                p.trim_start_matches("/admin/").split('/').filter(|s| !s.is_empty()).collect();
            super::admin::handle(req, env, &segments).await
        }
        ("/webhooks/shopify", _) | ("/healthz", _) => {
            error(405, "method_not_allowed", "this endpoint does not accept that method")
        }
        _ => error(404, "not_found", "no such endpoint"),
    }
}

/// A JSON response. Serialising our own types cannot fail in practice; if it ever does the
/// caller still gets a well-formed 500 rather than a panic.
pub fn json<T: Serialize>(status: u16, body: &T) -> Response {
    let text = serde_json::to_string(body)
        .unwrap_or_else(|_| r#"{"error":"internal","detail":"response encoding failed"}"#.to_string());
    let resp = Response::ok(text).map(|r| r.with_status(status));
    match resp {
        Ok(mut r) => {
            let _ = r.headers_mut().set("content-type", "application/json");
            r
        }
        Err(_) => Response::empty().map(|r| r.with_status(500)).unwrap_or_else(|_| fallback()),
    }
}

pub fn error(status: u16, code: &str, detail: &str) -> Response {
    json(status, &serde_json::json!({ "error": code, "detail": detail }))
}

/// 503 with `Retry-After`, for when storage is unavailable: Shopify (and any client) retries.
pub fn unavailable(retry_after_secs: u32) -> Response {
    let mut r = error(503, "storage_unavailable", "storage is unavailable; retry later");
    let _ = r.headers_mut().set("retry-after", &retry_after_secs.to_string());
    r
}

fn fallback() -> Response {
    Response::builder().with_status(500).empty()
}
