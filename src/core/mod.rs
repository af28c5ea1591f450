//! The pure core: no I/O, no clock, no `worker` crate. Everything here builds and is
//! tested natively; "now" is always a parameter.

pub mod admin;
pub mod alerts;
pub mod apply;
pub mod console;
pub mod fulfilment;
pub mod gates;
pub mod group;
pub mod health;
pub mod inputs;
pub mod kpi;
pub mod lifecycle;
pub mod order;
pub mod privacy;
pub mod query;
pub mod retry;
pub mod routing;
pub mod rules;
pub mod shopify;
pub mod state;
pub mod time;
pub mod types;
pub mod webhook;
