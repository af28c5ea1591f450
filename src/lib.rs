//! orderlane: the order-routing lane between Shopify and a warehouse, as a Cloudflare Worker.
//!
//! # Layout
//! - `core/` — pure: webhook verification, the contract's names, and (as they land) the
//!   payload model, state machine, rules, retry policy and KPI arithmetic. Built and tested
//!   natively with `cargo test`; time is always a parameter.
//! - `edge/` — wasm32 only: the Worker entry points and one adapter per binding (HTTP
//!   routing and JSON errors, the D1 store holding all SQL, KV flags, the queue).
//! - `bin/` — native tools: `orderlane-send` signs and sends sample webhooks.

pub mod core;

#[cfg(target_arch = "wasm32")]
mod edge;
