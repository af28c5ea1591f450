//! The HTTP toolkit every handler shares: JSON answers, the error convention — every error is
//! `{"error": "<stable code>", "detail": "<human text>"}` and never echoes internals — one
//! `ApiError` handlers return with `?`, request bodies, query strings and operator auth.

use serde::{Deserialize, Serialize};
use worker::{Env, Request, Response};

use super::config;
use super::store::StoreError;
use crate::core::admin::{actor, AdminTokens};
use crate::core::query;

pub use super::context::now_ms;

/// A JSON response. Serialising our own types cannot fail in practice; if it ever does the
/// caller still gets a well-formed 500 rather than a panic.
pub fn json<T: Serialize>(status: u16, body: &T) -> Response {
    let text = serde_json::to_string(body)
        .unwrap_or_else(|_| r#"{"error":"internal","detail":"response encoding failed"}"#.to_string());
    json_text(status, text)
}

/// A response of JSON text already built.
pub fn json_text(status: u16, text: String) -> Response {
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

/// An authenticated operator call.
pub struct Operator {
    pub actor: String,
}

/// The operator behind a call: a bearer token from `ADMIN_TOKENS`, or else the console's
/// session cookie (a change made with a cookie must also pass the console's Origin and CSRF
/// checks). Answers the 401/403 otherwise.
#[cfg(feature = "ops")]
pub fn authenticate(req: &Request, env: &Env) -> Result<Operator, Response> {
    if let Some(op) = bearer(req, env) {
        return op;
    }
    let Some(sessions) = super::console::Sessions::from_env(env) else { return Err(unauthorized()) };
    let session = sessions.session(req).map_err(|e| match e {
        crate::core::console::SessionError::Missing => unauthorized(),
        e => error(401, e.code(), "the console session is no longer valid; sign in again"),
    })?;
    if !matches!(req.method(), worker::Method::Get | worker::Method::Head) {
        super::console::check_change(req, &session)?;
    }
    Ok(Operator { actor: actor(&session.name) })
}

/// The operator named by an `Authorization` header, if the call carries one.
pub fn bearer(req: &Request, env: &Env) -> Option<Result<Operator, Response>> {
    let header = req.headers().get("authorization").ok().flatten()?;
    let tokens = AdminTokens::parse(&config::text(env, "ADMIN_TOKENS").unwrap_or_default());
    Some(
        tokens
            .authenticate(Some(&header))
            .map(|name| Operator { actor: actor(name) })
            .ok_or_else(unauthorized),
    )
}

pub fn unauthorized() -> Response {
    error(401, "unauthorized", "a valid bearer token from ADMIN_TOKENS is required")
}

pub fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::Conflict => {
            error(409, "conflict", "a concurrent change won; read the current state and retry")
        }
        StoreError::Unavailable(msg) => {
            worker::console_error!("admin storage error: {msg}");
            unavailable(5)
        }
    }
}

pub async fn body<T: for<'de> Deserialize<'de>>(req: &mut Request) -> Result<T, Response> {
    let bytes =
        req.bytes().await.map_err(|_| error(400, "unreadable_body", "the request body could not be read"))?;
    serde_json::from_slice(&bytes).map_err(|e| error(400, "invalid_json", &format!("request body: {e}")))
}

pub fn query_pairs(req: &Request) -> Vec<(String, String)> {
    query::parse_query_string(&req.inner().url())
}

/// What a handler answers when it cannot do what was asked. `?` turns a storage error into
/// 409 (a lost race) or 503 (storage down, logged).
pub enum ApiError {
    Http {
        status: u16,
        code: &'static str,
        detail: String,
    },
    /// An answer a shared helper already built (a bad body, a refused filter).
    Answered(Response),
    /// 409 with the order's current state, so the caller can decide again.
    Conflict {
        code: &'static str,
        detail: String,
        current: serde_json::Value,
    },
    Store(StoreError),
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::Http { status, code, detail: detail.into() }
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>, current: serde_json::Value) -> ApiError {
        ApiError::Conflict { code, detail: detail.into(), current }
    }

    pub fn into_response(self) -> Response {
        match self {
            ApiError::Http { status, code, detail } => error(status, code, &detail),
            ApiError::Conflict { code, detail, current } => {
                json(409, &serde_json::json!({ "error": code, "detail": detail, "current": current }))
            }
            ApiError::Answered(r) => r,
            ApiError::Store(e) => store_error(e),
        }
    }
}

impl From<Response> for ApiError {
    fn from(r: Response) -> Self {
        ApiError::Answered(r)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Store(e)
    }
}

/// A handler's answer either way.
pub fn answer(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(ApiError::into_response)
}
