//! The pure core: no I/O, no clock, no `worker` crate. Everything here builds and is
//! tested natively; "now" is always a parameter.

pub mod fulfilment;
pub mod gates;
pub mod kpi;
pub mod retry;
pub mod types;
pub mod webhook;
