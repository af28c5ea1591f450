//! The Workers edge: entry points and one adapter per binding. Only compiled for wasm32;
//! every decision it executes comes from `crate::core`.

mod admin;
mod config;
mod cron;
mod flags;
mod fulfilment;
mod gates;
mod http;
mod kpi_store;
mod orders;
mod overrides;
mod routing;
mod store;
mod webhooks;

use worker::{event, Context, Env, MessageBatch, Request, Response, Result, ScheduleContext, ScheduledEvent};

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    Ok(http::route(req, &env).await)
}

/// Both queues land here; every message is acked or retried inside, so this never fails.
#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> Result<()> {
    fulfilment::consume(batch, &env).await;
    Ok(())
}

#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    cron::run(&env).await;
}
