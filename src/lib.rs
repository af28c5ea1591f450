//! orderlane: the order-routing lane between Shopify and a warehouse, as two Cloudflare
//! Workers built from this crate (features `lane` and `ops`; see `edge`).
//!
//! # Layout
//! - `core/` — pure: webhook verification, the contract's names, the payload model, state
//!   machine, rules, retry policy and KPI arithmetic. Built and tested natively with
//!   `cargo test`; time is always a parameter.
//! - `edge/` — wasm32 only: the Worker entry points and one adapter per binding (HTTP
//!   routing and JSON errors, the D1 store holding all SQL, KV flags, the queue).
//! - `bin/` — native tools: `orderlane-send` signs and sends sample webhooks.

pub mod core;

#[cfg(target_arch = "wasm32")]
mod edge;
