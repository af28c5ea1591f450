//! The Workers edge: entry points and one adapter per binding. Only compiled for wasm32;
//! every decision it executes comes from `crate::core`.
//!
//! Two Workers are built from it (Cargo features): `lane` answers Shopify and runs the queue
//! consumer and the cron; `ops` serves the admin API and the console. A build with one feature
//! leaves the other's helpers unused, hence the allowance below; the default build, with both,
//! is the one linted for dead code.
#![cfg_attr(not(all(feature = "lane", feature = "ops")), allow(dead_code, unused_imports))]

#[cfg(feature = "ops")]
mod admin;
mod alerts;
mod api;
mod config;
#[cfg(feature = "ops")]
mod console;
mod context;
mod cron;
mod flags;
mod fulfil;
mod gates;
mod group;
mod http;
mod ingest;
mod kpi_store;
mod memo;
mod outbound;
mod overrides;
mod queue;
mod shopify;
mod store;
mod webhooks;
mod writer;

use worker::{event, Context, Env, Request, Response, Result};
#[cfg(feature = "lane")]
use worker::{MessageBatch, ScheduleContext, ScheduledEvent};

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    Ok(http::route(req, &env).await)
}

/// Both queues land here; every message is acked or retried inside, so this never fails.
/// Alerts raised while handling the batch are sent after it, without holding it up.
#[cfg(feature = "lane")]
#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, ctx: Context) -> Result<()> {
    match context::Edge::new(&env) {
        Some(edge) => {
            fulfil::consume(batch, &edge).await;
            if edge.has_queued_alerts() {
                ctx.wait_until(async move { alerts::send_queued(&edge).await });
            }
        }
        None => {
            worker::console_error!("D1 binding missing: retrying batch");
            batch.retry_all();
        }
    }
    Ok(())
}

#[cfg(feature = "lane")]
#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, ctx: ScheduleContext) {
    match context::Edge::new(&env) {
        Some(edge) => {
            cron::run(&edge, &env, event.schedule() as i64).await;
            if edge.has_queued_alerts() {
                ctx.wait_until(async move { alerts::send_queued(&edge).await });
            }
        }
        None => worker::console_error!("cron: D1 binding missing; nothing ran"),
    }
}
