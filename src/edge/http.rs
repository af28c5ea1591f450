//! The route table: each path to the module that answers it.

use worker::{Env, Method, Request, Response};

use super::api::{error, json};
#[cfg(feature = "lane")]
use super::webhooks;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub async fn route(req: Request, env: &Env) -> Response {
    let path = req.path();
    match (path.as_str(), req.method()) {
        ("/healthz", Method::Get) => healthz(&req, env).await,
        #[cfg(not(feature = "lane"))]
        ("/healthz", Method::Post) => compare_config(req, env).await,
        #[cfg(feature = "lane")]
        ("/webhooks/shopify", Method::Post) => webhooks::handle(req, env).await,
        #[cfg(feature = "lane")]
        ("/admin/faults", Method::Post) => faults(req, env).await,
        (p, _) if is_ops(p) => ops(req, env).await,
        #[cfg(feature = "lane")]
        ("/webhooks/shopify", _) => method_not_allowed(),
        ("/healthz", _) => method_not_allowed(),
        _ => error(404, "not_found", "no such endpoint"),
    }
}

/// What keeps this Worker from doing its job, named so a deploy can be checked, and how it
/// reaches the Shopify Admin API.
fn own_health(env: &Env) -> (Vec<&'static str>, &'static str) {
    let mut incomplete = Vec::new();
    match super::config::webhook(env) {
        None => incomplete.push("SHOPIFY_WEBHOOK_SECRET"),
        Some(c) if !c.shops_configured() => incomplete.push("ALLOWED_SHOPS"),
        Some(_) => {}
    }
    let shopify = &super::context::settings(env).shopify;
    if shopify.problem.is_some() {
        incomplete.push("SHOPIFY_ADMIN_TOKENS");
    }
    let admin_api = match (shopify.tokens.is_empty(), shopify.client.is_some()) {
        (_, true) => "client_credentials",
        (false, false) => "tokens",
        (true, false) => "off",
    };
    (incomplete, admin_api)
}

/// `GET /healthz`; with `?deep=1` the lane Worker also asks the ops Worker whether it runs the
/// same version, rules and configuration (one service-binding call, so not on the plain check,
/// which load balancers and the benchmark's floor call).
async fn healthz(req: &Request, env: &Env) -> Response {
    let (mut incomplete, admin_api) = own_health(env);
    let mut body = serde_json::json!({
        "version": VERSION,
        "rules_version": crate::core::rules::RULES_VERSION,
        // Holds mirrored, reconciliation and webhook health need the Admin API.
        "shopify_admin_api": admin_api,
    });
    if !cfg!(feature = "ops") {
        let deep = super::api::query_pairs(req).iter().any(|(k, v)| k == "deep" && v == "1");
        if deep {
            let ops = ops_health(env).await;
            if !ops_agrees(&ops) {
                incomplete.push(super::config::OPS);
            }
            body["ops"] = ops;
        } else if env.service(super::config::OPS).is_err() {
            incomplete.push(super::config::OPS);
        }
    }
    body["ok"] = (super::context::matrix().is_ok() && incomplete.is_empty()).into();
    body["incomplete"] = incomplete.into();
    json(200, &body)
}

/// The ops Worker's answer to the configuration check, or `{"error": ...}`.
#[cfg(not(feature = "ops"))]
async fn ops_health(env: &Env) -> serde_json::Value {
    async fn ask(env: &Env) -> std::result::Result<serde_json::Value, String> {
        let ops =
            env.service(super::config::OPS).map_err(|_| "the OPS service binding is missing".to_string())?;
        let prints = crate::core::health::fingerprints(|name| super::config::text(env, name));
        let body = serde_json::to_string(&prints).map_err(|e| e.to_string())?;
        let mut init = worker::RequestInit::new();
        init.with_method(Method::Post).with_body(Some(body.into()));
        let req =
            Request::new_with_init("https://orderlane-ops/healthz", &init).map_err(|e| e.to_string())?;
        let mut answer =
            ops.fetch_request(req).await.map_err(|e| format!("the ops Worker did not answer: {e}"))?;
        if answer.status_code() != 200 {
            return Err(format!("the ops Worker answered {}", answer.status_code()));
        }
        answer.json().await.map_err(|e| e.to_string())
    }
    ask(env).await.unwrap_or_else(|e| serde_json::json!({ "error": e }))
}

#[cfg(feature = "ops")]
async fn ops_health(_env: &Env) -> serde_json::Value {
    serde_json::Value::Null
}

/// True when the ops Worker answered, is complete, and runs this version, these rules and
/// this configuration.
fn ops_agrees(ops: &serde_json::Value) -> bool {
    let empty = |k: &str| ops[k].as_array().is_some_and(|a| a.is_empty());
    ops["version"] == VERSION
        && ops["rules_version"] == crate::core::rules::RULES_VERSION
        && empty("incomplete")
        && empty("differs")
}

/// The ops Worker's side of `GET /healthz?deep=1`: its own gaps, and the names of the settings
/// whose values differ from the lane Worker's (the body: a hash of each of the lane's values).
#[cfg(not(feature = "lane"))]
async fn compare_config(mut req: Request, env: &Env) -> Response {
    let theirs = match super::api::body::<std::collections::BTreeMap<String, String>>(&mut req).await {
        Ok(t) => t,
        Err(refused) => return refused,
    };
    let mine = crate::core::health::fingerprints(|name| super::config::text(env, name));
    let (incomplete, _) = own_health(env);
    json(
        200,
        &serde_json::json!({
            "version": VERSION,
            "rules_version": crate::core::rules::RULES_VERSION,
            "incomplete": incomplete,
            "differs": crate::core::health::differing(&theirs, &mine),
        }),
    )
}

fn method_not_allowed() -> Response {
    error(405, "method_not_allowed", "this endpoint does not accept that method")
}

/// The admin API and the console: everything an operator reaches, nothing Shopify does.
fn is_ops(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/") || path.starts_with("/admin/")
}

/// Answered here when this build carries the operator side.
#[cfg(feature = "ops")]
async fn ops(req: Request, env: &Env) -> Response {
    let path = req.path();
    if let Some(rest) = path.strip_prefix("/admin/") {
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        super::admin::handle(req, env, &segments).await
    } else {
        super::console::handle(req, env).await
    }
}

/// Otherwise passed whole to the ops Worker through the `OPS` service binding. The request
/// keeps its URL, method, headers and body, so authentication happens there, once.
#[cfg(not(feature = "ops"))]
async fn ops(req: Request, env: &Env) -> Response {
    let Ok(ops) = env.service(super::config::OPS) else {
        return error(
            503,
            "ops_unavailable",
            "the OPS service binding is missing: deploy orderlane-ops and bind it",
        );
    };
    match ops.fetch_request(req).await {
        Ok(r) => r,
        Err(e) => {
            worker::console_error!("ops worker: {e}");
            error(503, "ops_unavailable", "the ops Worker did not answer; try again")
        }
    }
}

/// `POST /admin/faults` (only with `ALLOW_FAULTS=1`, on local test stacks): sets the faults
/// of this isolate (`context::Faults`) and answers them with what was `left` of the previous
/// ones, so a test can tell that a fault fired. Answered by the lane
/// Worker, whose routing and consumer are what the faults are for.
#[cfg(feature = "lane")]
async fn faults(mut req: Request, env: &Env) -> Response {
    if let Err(refused) = super::api::bearer(&req, env).unwrap_or_else(|| Err(super::api::unauthorized())) {
        return refused;
    }
    if !super::context::Settings::from_env(env).allow_faults {
        return error(404, "not_found", "no such admin endpoint");
    }
    match super::api::body::<super::context::Faults>(&mut req).await {
        Ok(f) => {
            let left = super::context::inject(f);
            json(200, &serde_json::json!({ "set": f, "left": left }))
        }
        Err(refused) => refused,
    }
}
