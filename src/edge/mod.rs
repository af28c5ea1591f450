//! The Workers edge: entry points and one adapter per binding. Only compiled for wasm32;
//! every decision it executes comes from `crate::core`.

mod config;
mod http;
mod store;
mod webhooks;

use worker::{event, Context, Env, Request, Response, Result};

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    Ok(http::route(req, &env).await)
}
