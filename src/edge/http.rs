//! The route table: each path to the module that answers it.

use worker::{Env, Method, Request, Response};

use super::api::{error, json};
#[cfg(feature = "lane")]
use super::webhooks;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub async fn route(req: Request, env: &Env) -> Response {
    let path = req.path();
    match (path.as_str(), req.method()) {
        ("/healthz", Method::Get) => {
            // What keeps deliveries from being accepted, named so a deploy can be checked.
            let mut incomplete = Vec::new();
            match super::config::webhook(env) {
                None => incomplete.push("SHOPIFY_WEBHOOK_SECRET"),
                Some(c) if !c.shops_configured() => incomplete.push("ALLOWED_SHOPS"),
                Some(_) => {}
            }
            if !cfg!(feature = "ops") && env.service(super::config::OPS).is_err() {
                incomplete.push(super::config::OPS);
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
            json(
                200,
                &serde_json::json!({
                    "ok": super::context::matrix().is_ok() && incomplete.is_empty(),
                    "version": VERSION,
                    "rules_version": crate::core::rules::RULES_VERSION,
                    "incomplete": incomplete,
                    // Holds mirrored, reconciliation and webhook health need the Admin API.
                    "shopify_admin_api": admin_api,
                }),
            )
        }
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

#[derive(serde::Deserialize)]
#[cfg(feature = "lane")]
struct FaultsBody {
    #[serde(default)]
    kv_read_failures: u32,
}

/// `POST /admin/faults` (only with `ALLOW_FAULTS=1`, on local test stacks): makes the next
/// `kv_read_failures` KV reads of this isolate fail, as a KV outage would. Answered by the lane
/// Worker, whose routing and consumer are what the faults are for.
#[cfg(feature = "lane")]
async fn faults(mut req: Request, env: &Env) -> Response {
    match super::api::bearer(&req, env) {
        Some(Ok(_)) => {}
        Some(Err(refused)) => return refused,
        None => return super::api::unauthorized(),
    }
    if !super::context::Settings::from_env(env).allow_faults {
        return error(404, "not_found", "no such admin endpoint");
    }
    match super::api::body::<FaultsBody>(&mut req).await {
        Ok(b) => {
            super::context::inject_kv_failures(b.kv_read_failures);
            json(200, &serde_json::json!({ "kv_read_failures": b.kv_read_failures }))
        }
        Err(refused) => refused,
    }
}
