//! Binding names (they match wrangler.toml) and configuration read from the environment.

use crate::core::webhook::WebhookConfig;
use std::sync::OnceLock;

use worker::Env;

pub const DB: &str = "DB";
pub const FLAGS: &str = "FLAGS";
pub const FULFILMENT_QUEUE: &str = "FULFILMENT_QUEUE";
/// The ops Worker (admin API, console), bound to the lane Worker in wrangler.toml.
pub const OPS: &str = "OPS";

/// A secret or var as text; absent and empty read the same.
pub fn text(env: &Env, name: &str) -> Option<String> {
    let value = env.secret(name).map(|s| s.to_string()).or_else(|_| env.var(name).map(|v| v.to_string()));
    value.ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// Webhook secrets and the shop allow-list, read once per isolate (secrets and vars are
/// fixed for its life). `None` when the required secret is unset, so the Worker refuses every
/// delivery rather than accepting unsigned ones.
pub fn webhook(env: &Env) -> Option<&'static WebhookConfig> {
    static CFG: OnceLock<Option<WebhookConfig>> = OnceLock::new();
    CFG.get_or_init(|| {
        let secret = text(env, "SHOPIFY_WEBHOOK_SECRET")?;
        let previous = text(env, "SHOPIFY_WEBHOOK_SECRET_PREVIOUS");
        let allowed = text(env, "ALLOWED_SHOPS").unwrap_or_default();
        Some(WebhookConfig::new(&secret, previous.as_deref(), &allowed))
    })
    .as_ref()
}
