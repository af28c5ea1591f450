//! The route table: each path to the module that answers it.

use worker::{Env, Method, Request, Response};

use super::api::{error, json};
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
